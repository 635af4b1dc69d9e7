"""Fixtures of the end-to-end tests; the helpers live in ``e2e_support``.

Every test directory has a ``conftest.py`` and pytest imports them all as
``conftest``, so test modules must not ``from conftest import …`` (which one
they get depends on collection order); they import ``e2e_support`` instead.
"""

from e2e_support import maskline, sipp_binary

__all__ = ["maskline", "sipp_binary"]
