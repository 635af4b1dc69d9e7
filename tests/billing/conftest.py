"""Fixtures of the billing tests: the API tests' real SQLite control plane, ASGI client and CLI
(``tests/api/api_fixtures.py``).

The helpers of ``tests/api`` (``api_support``, ``cli_support``, ``inventory_support``) are put on
``sys.path`` here: pytest (``prepend`` import mode, no ``__init__.py``) only adds a test
directory when it collects it, and these tests must run on their own too.
"""

from __future__ import annotations

import sys
from pathlib import Path

_API_TESTS = str(Path(__file__).resolve().parent.parent / "api")
if _API_TESTS not in sys.path:
    sys.path.insert(0, _API_TESTS)

from api_fixtures import api, cli, clock, control  # noqa: E402

__all__ = ["api", "cli", "clock", "control"]
