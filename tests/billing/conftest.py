"""Fixtures of the billing tests: the API tests' real SQLite control plane, ASGI client and CLI.

The helpers of ``tests/api`` (``api_support``, ``cli_support``, ``inventory_support``) are put on
``sys.path`` here: pytest (``prepend`` import mode, no ``__init__.py``) only adds a test
directory when it collects it, and these tests must run on their own too.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

_API_TESTS = str(Path(__file__).resolve().parent.parent / "api")
if _API_TESTS not in sys.path:
    sys.path.insert(0, _API_TESTS)

from api_support import START, TOKEN, ZONE, Api, Clock  # noqa: E402
from cli_support import Cli, serve_cli  # noqa: E402

from api.app import create_app  # noqa: E402
from api.control import ControlPlane  # noqa: E402
from routing.index import BindingIndex  # noqa: E402
from store import Database  # noqa: E402


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def control(tmp_path: Path, clock: Clock) -> AsyncIterator[ControlPlane]:
    db = await Database.open(tmp_path / "maskline.sqlite3")
    plane = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
    await plane.load()
    yield plane
    await plane.close()


@pytest.fixture
async def api(control: ControlPlane, clock: Clock, tmp_path: Path) -> AsyncIterator[Api]:
    app = create_app(control, operator_token=TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://maskline.test",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield Api(client, control, clock, tmp_path / "maskline.sqlite3")


@pytest.fixture
async def cli(api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Cli]:
    """``maskline`` control commands against a real API server over ``api.control``."""
    async with serve_cli(api, tmp_path, capsys) as runner:
        yield runner
