"""Fixtures of the API tests (defined in ``api_fixtures``, shared with tests/billing)."""

from api_fixtures import api, cli, clock, control

__all__ = ["api", "cli", "clock", "control"]
