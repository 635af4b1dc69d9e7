"""Running ``maskline`` control commands against a real API server in the test's process.

The CLI is synchronous (httpx.Client), so it runs in a worker thread while uvicorn answers on
the test's event loop. ``serve_cli(api, tmp_path, capsys)`` starts the server and yields a
:class:`Cli`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_support import TOKEN, Api

from api.app import create_app
from api.server import start_api
from engine.cli import main


@dataclass
class Cli:
    """Runs ``maskline --config <file> ...`` in a thread; returns (exit code, JSON lines)."""

    config: Path
    capsys: pytest.CaptureFixture[str]

    async def __call__(self, *argv: str) -> tuple[int, list[dict[str, Any]]]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(main, ["--config", str(self.config), *argv])
        out = self.capsys.readouterr().out
        # The server logs to stdout too (same process): keep the CLI's JSON lines only.
        return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@asynccontextmanager
async def serve_cli(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Cli]:
    """A real API server over ``api.control`` on a loopback port and a CLI configured for it."""
    server = await start_api(create_app(api.control, operator_token=TOKEN), "127.0.0.1", 0)
    config = tmp_path / "maskline.toml"
    config.write_text(
        f'[api]\nlisten = "127.0.0.1:{server.port}"\noperator_token = "{TOKEN}"\n',
        encoding="utf-8",
    )
    try:
        yield Cli(config, capsys)
    finally:
        await server.stop()
