"""Helpers of the RPC API tests: signers for raw requests and a real server for the official SDK.

- :func:`sign_v2` / :func:`sign_v3` build the query string and headers of a signed request
  (DYPLSAPI.md §3/§4) for raw-HTTP tests through ``httpx.ASGITransport``.
- :class:`RpcServer` serves ``create_app`` with uvicorn on a free loopback port, from a thread
  running its own event loop that also owns the SQLite control plane; tests (sync, like the
  SDK) run control-plane coroutines there with :meth:`RpcServer.run`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import uvicorn
from api_support import Snapshot, snapshot_tables

from api.app import create_app
from api.control import ControlPlane, ImportRow
from api.rpc_signing import canonical_request_v3, string_to_sign_v2, string_to_sign_v3
from routing.index import BindingIndex
from store import Database

T = TypeVar("T")
ZONE = ZoneInfo("Asia/Shanghai")
TOKEN = "rpc-operator-token"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Inventory: Beijing 170 numbers (spec 1), Shenzhen carrier numbers (spec 2), 950 numbers.
BEIJING = [f"1700001{i:04d}" for i in range(600)]
SHENZHEN = [f"1710001{i:04d}" for i in range(100)]
NATIONWIDE = [f"95013000{i:04d}" for i in range(4)]
INVENTORY = [
    *(ImportRow(n, "北京", "北京", "CMCC", 1) for n in BEIJING),
    *(ImportRow(n, "深圳", "广东", "CUCC", 2) for n in SHENZHEN),
    *(ImportRow(n, "全国", "全国", "CTCC", 3) for n in NATIONWIDE),
]


def local(epoch_s: float) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Asia/Shanghai (the RPC API's zone)."""
    return dt.datetime.fromtimestamp(epoch_s, tz=ZONE).strftime("%Y-%m-%d %H:%M:%S")


def iso_utc(epoch_s: float) -> str:
    """The SDK's request time form, ``2025-01-01T00:00:00Z``."""
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nonce() -> str:
    """32 lower-case hex digits, like the SDK's nonces."""
    return secrets.token_hex(16)


# --------------------------------------------------------------------------- raw signers


def sign_v2(
    *,
    action: str,
    params: Mapping[str, str],
    key_id: str,
    secret: str,
    now: float,
    method: str = "POST",
    version: str = "2017-05-25",
    request_nonce: str | None = None,
    form: Mapping[str, str] | None = None,
) -> str:
    """The query string of a v2 (HMAC-SHA1) request; ``form`` parameters are signed too (§7)."""
    query = {
        "Action": action,
        "Format": "json",
        "Version": version,
        "Timestamp": iso_utc(now),
        "SignatureNonce": request_nonce or nonce(),
        **params,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": key_id,
    }
    signed = {**query, **(form or {})}
    string_to_sign = string_to_sign_v2(method, "/", signed)
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    query["Signature"] = base64.b64encode(digest).decode()
    return urlencode(query)


def sign_v3(
    *,
    action: str,
    params: Mapping[str, str],
    key_id: str,
    secret: str,
    now: float,
    host: str = "maskline.test",
    method: str = "POST",
    version: str = "2017-05-25",
    request_nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The query string and headers of a v3 (ACS3-HMAC-SHA256) request, action in headers only."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": iso_utc(now),
        "x-acs-signature-nonce": request_nonce or nonce(),
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    signed_headers = ";".join(sorted(headers))
    canonical = canonical_request_v3(
        method,
        "/",
        dict(params),
        headers={name: [value] for name, value in headers.items()},
        signed_headers=signed_headers,
        hashed_payload=EMPTY_SHA256,
    )
    signature = hmac.new(
        secret.encode(), string_to_sign_v3(canonical).encode(), hashlib.sha256
    ).hexdigest()
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
    return urlencode(dict(params)), headers


# --------------------------------------------------------------------------- real server


class OffsetClock:
    """The system clock moved by ``offset`` seconds (the SDK signs with the real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class RpcServer:
    """uvicorn serving the maskline app on 127.0.0.1, with its control plane, in a thread."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.clock = OffsetClock()
        self.loop = asyncio.new_event_loop()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self.control: ControlPlane
        self._thread = threading.Thread(target=self._main, name="rpc-server", daemon=True)

    @property
    def endpoint(self) -> str:
        """``host:port`` as the SDK's ``Config.endpoint`` wants it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> RpcServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the RPC test server did not start")
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        db = await Database.open(self.db_path)
        self.control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=self.clock)
        await self.control.load()
        config = uvicorn.Config(
            create_app(self.control, operator_token=TOKEN), log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        serving = asyncio.ensure_future(self._server.serve(sockets=[self._socket]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        try:
            await serving
        finally:
            await self.control.close()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)
        self._socket.close()


def snapshot(db_path: Path) -> Snapshot:
    """Every row of every table: "nothing written" means equal."""
    return snapshot_tables(db_path)
