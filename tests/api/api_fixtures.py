"""The API tests' fixtures, shared by every test directory that drives the control plane: a real
SQLite file, a loaded control plane, the ASGI app with an operator client, and the CLI.

Time is a settable fake clock (UTC epoch seconds) so expiry rules are exact; the zone is
Asia/Shanghai as in production. A ``conftest.py`` brings them in with
``from api_fixtures import api, cli, clock, control``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_support import START, TOKEN, ZONE, Api, Clock
from cli_support import Cli, serve_cli

from api.app import create_app
from api.control import ControlPlane
from routing.index import BindingIndex
from store import Database

__all__ = ["api", "cli", "clock", "control"]


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
