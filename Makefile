# maskline — two commands on a fresh Debian machine that has python3 and make:
#
#   make run    set everything up, then start maskline on loopback with the example config
#   make test   set everything up, then ruff, mypy --strict and the whole pytest suite
#
# "Set everything up" is idempotent and cheap when done: a virtualenv in .venv (re-installed only
# when pyproject.toml changes), plus the Debian packages sip-tester (sipp) and espeak-ng when
# their commands are missing, plus the hot pure modules of sip/ and media/ compiled in place with
# mypyc (build_compiled.py; again only when one of them changes; `make test COMPILED=no` runs
# the pure modules). apt-get runs directly as root, through sudo otherwise.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# A recipe that fails must not leave a half-made target that looks done next time.
.DELETE_ON_ERROR:

# The interpreter of the virtualenv: the distribution's /usr/bin/python3 when it is 3.11 or later,
# else the python3 on PATH; `make PYTHON=...` chooses another. On Debian that one is a static
# build with profile-guided and link-time optimisation: the SIP layer ~20 % less CPU a call, the
# whole process ~9 % at 900 calls/s, than on a default source build (pyenv's: shared libpython,
# neither; bench/README.md, "The interpreter"); and it is what a deployment on Debian runs.
SYSTEM_PYTHON := /usr/bin/python3
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell $(SYSTEM_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
endif
CONFIG ?= config/maskline.example.toml
PYTEST_ARGS ?=

VENV := .venv
VENV_BIN := $(VENV)/bin
# Stamp of the last `pip install -e '.[dev]'`; older than pyproject.toml means install again.
STAMP := $(VENV)/.maskline-installed
PACKAGES := sip engine config routing media store api billing
BUILD_SCRIPT := build_compiled.py
LINT_PATHS := $(PACKAGES) tests bench $(BUILD_SCRIPT)

# yes: `make deps` compiles the modules listed in build_compiled.py with mypyc (same code, less
# CPU per call; issue 7); no: `make deps` removes the compiled modules and the pure ones run.
COMPILED ?= yes
# The compiled modules' sources: an edit to one of them (or to the script, or a re-install of the
# venv, which may bring another mypy) compiles again. build/ is gitignored.
COMPILED_SOURCES := $(shell $(PYTHON) $(BUILD_SCRIPT) --list)
COMPILED_STAMP := build/mypyc/stamp
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

SUDO := $(shell [ "$$(id -u)" -eq 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test lint fmt install venv deps system-deps compiled uncompiled clean distclean

help:
	@echo "make run        set up, then start maskline serve --config $(CONFIG)"
	@echo "make test       set up, then ruff, mypy --strict, pytest (hypothesis CI profile)"
	@echo "make lint       ruff check and mypy only"
	@echo "make fmt        ruff format and import sorting"
	@echo "make venv       create .venv"
	@echo "make deps       install the project into .venv and the Debian packages it needs,"
	@echo "                then compile the hot modules (COMPILED=no: remove them, run pure)"
	@echo "make compiled   compile the modules of build_compiled.py with mypyc (if changed)"
	@echo "make uncompiled remove the compiled modules: pure Python"
	@echo "make clean      remove caches (keeps .venv and var/)"
	@echo "make distclean  clean, remove the compiled modules and .venv"

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
	echo "== mypy --strict"; $(VENV_BIN)/mypy $(PACKAGES) $(BUILD_SCRIPT) || status=1; \
	echo "== pytest"; HYPOTHESIS_PROFILE=ci $(VENV_BIN)/pytest $(PYTEST_ARGS) || status=1; \
	exit $$status

lint: install
	$(VENV_BIN)/ruff check $(LINT_PATHS)
	$(VENV_BIN)/mypy $(PACKAGES) $(BUILD_SCRIPT)

fmt: install
	$(VENV_BIN)/ruff check --select I --fix $(LINT_PATHS)
	$(VENV_BIN)/ruff format $(LINT_PATHS)

ifeq ($(COMPILED),no)
deps: install system-deps uncompiled
else
deps: install system-deps compiled
endif

install: $(STAMP)

venv: $(VENV_BIN)/pip

# A virtualenv made from another interpreter than $(PYTHON) (PYTHON changed, or one made before
# the system interpreter was preferred) is made again, and so are its packages and the compiled
# modules (their C is built for one interpreter).
VENV_BASE := $(shell [ -x $(VENV_BIN)/python ] && $(VENV_BIN)/python -c \
	'import os, sys; print(os.path.realpath(sys._base_executable))' 2>/dev/null)
WANTED_BASE := $(shell $(PYTHON) -c 'import os, sys; print(os.path.realpath(sys.executable))' \
	2>/dev/null)
ifneq ($(VENV_BASE),$(WANTED_BASE))
.PHONY: $(VENV_BIN)/pip $(STAMP)
endif

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

compiled: $(COMPILED_STAMP)

uncompiled:
	$(PYTHON) $(BUILD_SCRIPT) --clean
	rm -f $(COMPILED_STAMP)

# gcc and the Python headers when missing (Debian packages; python3.X-dev only helps a Debian
# Python, whose headers live under /usr/include). If the compilation still fails the script says
# so in one line, removes what it built and exits 0: the pure modules run (the code is the same).
# The stamp is written either way, so a machine that cannot compile tries again only on a change.
$(COMPILED_STAMP): $(BUILD_SCRIPT) $(COMPILED_SOURCES) $(STAMP)
	@missing=""; \
	command -v gcc >/dev/null 2>&1 || missing="gcc libc6-dev"; \
	include=$$($(VENV_BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	if [ ! -e "$$include/Python.h" ]; then \
	  case "$$include" in \
	    /usr/include/*) missing="$$missing $$(basename "$$include")-dev";; \
	    *) echo "no Python.h under $$include; not a Debian Python, so no package for it";; \
	  esac; \
	fi; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages to compile modules:$$missing"; \
	  { $(APT_GET) update && $(APT_GET) install -y --no-install-recommends $$missing; } || \
	    echo "could not install$$missing"; \
	fi
	$(VENV_BIN)/python $(BUILD_SCRIPT) --jobs $(JOBS)
	mkdir -p $(@D)
	touch $@

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build bench/out *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean uncompiled
	rm -rf $(VENV)
