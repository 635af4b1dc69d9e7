# maskline — two commands on a fresh Debian machine that has python3 and make:
#
#   make run    set everything up, then start maskline on loopback with the example config
#   make test   set everything up, then ruff, mypy --strict and the whole pytest suite
#
# "Set everything up" is idempotent and cheap when done: a virtualenv in .venv (re-installed only
# when pyproject.toml changes), plus the Debian packages sip-tester (sipp) and espeak-ng when
# their commands are missing. apt-get runs directly as root, through sudo otherwise.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# A recipe that fails must not leave a half-made target that looks done next time.
.DELETE_ON_ERROR:

PYTHON ?= python3
CONFIG ?= config/maskline.example.toml
PYTEST_ARGS ?=

VENV := .venv
VENV_BIN := $(VENV)/bin
# Stamp of the last `pip install -e '.[dev]'`; older than pyproject.toml means install again.
STAMP := $(VENV)/.maskline-installed
PACKAGES := sip engine config routing media store api billing
LINT_PATHS := $(PACKAGES) tests bench

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test lint fmt install venv deps system-deps clean distclean

help:
	@echo "make run        set up, then start maskline serve --config $(CONFIG)"
	@echo "make test       set up, then ruff, mypy --strict, pytest (hypothesis CI profile)"
	@echo "make lint       ruff check and mypy only"
	@echo "make fmt        ruff format and import sorting"
	@echo "make venv       create .venv"
	@echo "make deps       install the project into .venv and the Debian packages it needs"
	@echo "make clean      remove caches (keeps .venv and var/)"
	@echo "make distclean  clean, and remove .venv"

run: deps
	mkdir -p var
	# Announcement prompts (8 kHz WAV from espeak-ng) where the operator has not put their own.
	$(VENV_BIN)/maskline prompts build --config $(CONFIG)
	exec $(VENV_BIN)/maskline serve --config $(CONFIG)

# Every check runs even when an earlier one fails, so one CI run reports everything;
# the exit status is non-zero if any of them failed.
test: deps
	@status=0; \
	echo "== ruff check"; $(VENV_BIN)/ruff check $(LINT_PATHS) || status=1; \
	echo "== mypy --strict"; $(VENV_BIN)/mypy $(PACKAGES) || status=1; \
	echo "== pytest"; HYPOTHESIS_PROFILE=ci $(VENV_BIN)/pytest $(PYTEST_ARGS) || status=1; \
	exit $$status

lint: install
	$(VENV_BIN)/ruff check $(LINT_PATHS)
	$(VENV_BIN)/mypy $(PACKAGES)

fmt: install
	$(VENV_BIN)/ruff check --select I --fix $(LINT_PATHS)
	$(VENV_BIN)/ruff format $(LINT_PATHS)

deps: install system-deps

install: $(STAMP)

venv: $(VENV_BIN)/pip

# Target is pip, not python: `python3 -m venv` without ensurepip (Debian without python3-venv)
# fails after creating bin/python, and that half-made venv must not count as done.
$(VENV_BIN)/pip:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "maskline needs Python >= 3.11 ($(PYTHON) is $$($(PYTHON) --version 2>&1))"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed (ensurepip missing?): installing python3-venv"; \
	  rm -rf $(VENV); \
	  $(APT_GET) update && $(APT_GET) install -y python3-venv; \
	  $(PYTHON) -m venv $(VENV); \
	}

$(STAMP): pyproject.toml | $(VENV_BIN)/pip
	$(VENV_BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Debian packages, installed only when their command is missing:
#   sipp       (package sip-tester)  real SIP peer for the end-to-end tests
#   espeak-ng  (package espeak-ng)   text-to-speech for prompts and ringback
system-deps:
	@missing=""; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null 2>&1 || \
	    { echo "missing:$$missing; install them (no apt-get on this machine)"; exit 1; }; \
	  echo "installing Debian packages:$$missing"; \
	  $(APT_GET) update; \
	  $(APT_GET) install -y --no-install-recommends $$missing; \
	fi

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build bench/out *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
