"""Serve an ASGI app with uvicorn inside the engine's own event loop.

``uvicorn.run`` would own the process (its own loop, its own SIGINT/SIGTERM handlers). The
engine already owns both, so the API runs as one more task on the running loop:

* the listening socket is bound here, before uvicorn starts, so a busy port is an ``OSError``
  raised by :func:`start_api` (uvicorn would ``sys.exit`` inside a task instead);
* signal capture is switched off — the engine's SIGTERM handler decides when to stop and then
  calls :meth:`ApiServer.stop`;
* ``lifespan="off"`` and ``log_config=None``: the app needs no lifespan events, and uvicorn's
  loggers propagate to the root logger that ``engine.logging`` formats (with masking).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Final

import uvicorn
from fastapi import FastAPI

from engine.logging import get_logger

__all__ = ["ApiServer", "start_api"]

_log = get_logger("api.server")

# Open connections get this long to finish their request after stop() before they are cut.
GRACEFUL_SHUTDOWN_S: Final = 5.0


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and reports when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """No signal handlers: the engine owns SIGTERM/SIGINT."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up, then wake :func:`start_api`."""
        await super().startup(sockets=sockets)
        self.listening.set()


class ApiServer:
    """A running embedded API server; :meth:`stop` shuts it down gracefully."""

    def __init__(
        self, server: _EmbeddedServer, task: asyncio.Task[None], sock: socket.socket
    ) -> None:
        self._server = server
        self._task = task
        self._socket = sock

    @property
    def port(self) -> int:
        """The TCP port actually listened on (useful when started on port 0)."""
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def host(self) -> str:
        """The address listened on."""
        host: str = self._socket.getsockname()[0]
        return host

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), and wait for the task."""
        if self._task.done():
            with contextlib.suppress(asyncio.CancelledError):
                self._task.result()
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._socket.close()
        _log.info("api_stopped")


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Made by hand rather than with ``socket.create_server``: that one leaves ``proto`` 0, and
    asyncio switches Nagle off (TCP_NODELAY) only on accepted sockets whose ``proto`` is
    IPPROTO_TCP. With Nagle on, uvicorn's two writes per response (head, body) meet the peer's
    delayed ACK and every request takes ~40 ms on loopback.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets on Linux; asyncio sets it on them as well.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_api(app: FastAPI, host: str, port: int) -> ApiServer:
    """Bind ``host:port`` and serve ``app`` on the running loop; returns once it is listening.

    Raises ``OSError`` when the address cannot be bound (port in use, unknown host).
    """
    sock = _bind(host, port)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        # httptools: ~10 % less CPU per request than h11 (bench/bind.py, HTTP section).
        http="httptools",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
        server_header=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="api-server")
    listening = asyncio.create_task(server.listening.wait())
    try:
        done, _ = await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        listening.cancel()
        task.cancel()
        sock.close()
        raise
    if listening not in done:
        listening.cancel()
        sock.close()
        error = task.exception()
        raise OSError(f"the HTTP API did not start on {host}:{port}: {error!r}")
    api = ApiServer(server, task, sock)
    _log.info("api_listening", address=f"{host}:{api.port}")
    return api
