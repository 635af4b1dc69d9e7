"""`sip` and `config` are also names of other PyPI distributions: make sure ours are imported."""

import importlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["sip", "config", "engine", "routing", "media", "store"])
def test_package_resolves_to_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    # __file__ is None for a namespace package, which could merge directories from anywhere.
    assert module.__file__ is not None, f"{name} is a namespace package (no __init__.py?)"
    assert Path(module.__file__).resolve().is_relative_to(REPO_ROOT)


def test_sip_is_ours() -> None:
    import sip

    assert Path(sip.__file__ or "").resolve().is_relative_to(REPO_ROOT)
    assert hasattr(sip, "parse_message")
