"""Helpers of the reports tests: a scene (two tenants, pools, a binding), calls driven through
their events as the B2BUA does, the outbox read through a separate connection, and a tiny real
HTTP receiver on loopback that records what it got and can refuse, fail or stall."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_support import Api, Clock

from api.control import ControlPlane
from api.reports import CallReports, attach_reports
from api.tenants import NewTenant
from engine.calls import Call, Leg, new_call_ref
from engine.records import call_record_of
from routing.model import Binding, BindingType, PoolKey
from sip.transport import Peer
from store import CallRecord, ReleaseDir

A_NO = "13800138000"
B_NO = "13900139000"
# 2030-01-01 12:00:00 Asia/Shanghai: the reports clock starts here too.
REPORTS_START = 1_893_470_400.0


@dataclass
class Scene:
    """Tenants A and B, each with an AXB pool of two Beijing numbers; A has a binding."""

    api: Api
    reports: CallReports
    clock: Clock  # the reports' clock (queue times: created, lease, back-off)
    a: NewTenant
    b: NewTenant
    pool_a: PoolKey
    pool_b: PoolKey
    binding: Binding

    @property
    def control(self) -> ControlPlane:
        return self.api.control


async def make_scene(api: Api, *, clock: Clock | None = None) -> Scene:
    """The scene over ``api`` with a reports service on ``clock`` (default: a settable one)."""
    reports_clock = clock or Clock(REPORTS_START)
    control = api.control
    reports = attach_reports(control, clock=reports_clock, warning_delay_s=0.01)
    await api.import_inventory()
    a = await control.tenants.create_tenant("Tenant A")
    b = await control.tenants.create_tenant("Tenant B")
    pool_a = await control.create_pool(BindingType.AXB, "A's", a.tenant_id)
    await control.add_numbers(pool_a, 2, city="北京")
    pool_b = await control.create_pool(BindingType.AXB, "B's", b.tenant_id)
    await control.add_numbers(pool_b, 2, city="北京")
    binding = await control.bind(
        BindingType.AXB,
        pool_a,
        A_NO,
        B_NO,
        expires=api.expires(86_400),
        out_id="order-17",
        tenant=a.tenant_id,
    )
    return Scene(api, reports, reports_clock, a, b, pool_a, pool_b, binding)


def new_call(*, x: str, caller: str | None, at: float) -> Call:
    """A call as the B2BUA makes it when the INVITE arrives."""
    inbound = Leg(peer=Peer("UDP", "127.0.0.1", 5060), call_id="carrier-call", local_tag="tag")
    return Call(call_id=new_call_ref(), inbound=inbound, x=x, caller=caller, call_time=at)


def routed_call(binding: Binding, *, at: float) -> Call:
    """A → X → B: the routing facts the B2BUA copies from the binding."""
    call = new_call(x=binding.x, caller=binding.a, at=at)
    call.sub_id = binding.sub_id
    call.pool_key = binding.pool_key
    call.out_id = binding.out_id
    call.call_type = 0
    call.phone_no = binding.a
    call.peer_no = binding.b
    call.callee = binding.b
    return call


async def answered_call(reports: CallReports, binding: Binding, *, at: float) -> CallRecord:
    """Start, ring, pick-up, then the end (record + report), as the B2BUA reports them."""
    call = routed_call(binding, at=at)
    reports.call_started(call)
    call.call_out_time = at + 0.1
    call.ring_time = at + 1
    reports.call_ringing(call)
    call.start_time = at + 5
    reports.call_answered(call)
    call.release_time = at + 65
    call.release_dir = ReleaseDir.CALLER
    record = call_record_of(call)
    await reports.call_ended(record)
    return record


async def busy_call(reports: CallReports, binding: Binding, *, at: float) -> CallRecord:
    """The callee rings, then answers 486 Busy Here."""
    call = routed_call(binding, at=at)
    reports.call_started(call)
    call.call_out_time = at + 0.1
    call.ring_time = at + 1
    reports.call_ringing(call)
    call.release_time = at + 3
    call.release_dir = ReleaseDir.CALLEE
    call.release_cause = 17
    record = call_record_of(call)
    await reports.call_ended(record)
    return record


async def intercepted_call(
    reports: CallReports, *, x: str, caller: str, at: float, pool_key: str | None = None
) -> CallRecord:
    """A stranger calls X: no binding (unconnected_cause 2), start then end."""
    call = new_call(x=x, caller=caller, at=at)
    call.pool_key = pool_key
    call.call_type = 4
    call.unconnected_cause = 2
    call.release_cause = 1
    reports.call_started(call)
    call.release_time = at + 0.2
    record = call_record_of(call)
    await reports.call_ended(record)
    return record


@dataclass(frozen=True)
class Row:
    """A report_outbox row as read through a separate connection."""

    seq: int
    id: str
    tenant_id: str | None
    pool_key: str | None
    call_id: str | None
    kind: str
    payload: dict[str, Any]
    delivered_at: float | None
    delivered_via: str | None
    attempts: int
    next_attempt_at: float
    last_error: str | None


def outbox_rows(db_path: Path) -> list[Row]:
    """Every report in ``seq`` order."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT seq, id, tenant_id, pool_key, call_id, kind, payload, delivered_at,"
            " delivered_via, attempts, next_attempt_at, last_error FROM report_outbox"
            " ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    return [
        Row(
            seq=row[0],
            id=row[1],
            tenant_id=row[2],
            pool_key=row[3],
            call_id=row[4],
            kind=row[5],
            payload=json.loads(row[6]),
            delivered_at=row[7],
            delivered_via=row[8],
            attempts=row[9],
            next_attempt_at=row[10],
            last_error=row[11],
        )
        for row in rows
    ]


# ------------------------------------------------------------------------------- the receiver


@dataclass
class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records each POSTed JSON array.

    ``mode``: ``ok`` (204), ``fail`` (500), ``stall`` (reads the request, never answers).
    ``stop()`` closes the listening socket and every connection: then connections are refused.
    """

    port: int = 0
    mode: str = "ok"
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    requests: int = 0
    got: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _unstall: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/reports") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def reports(self) -> list[dict[str, Any]]:
        """Every report received, in arrival order (duplicates included)."""
        return [report for batch in self.batches for report in batch]

    async def start(self) -> None:
        self._unstall = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._unstall.set()  # a stalled request ends with its connection
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_for(self, count: int, *, timeout_s: float = 10.0) -> None:
        """Until ``count`` distinct report ids arrived."""
        async with asyncio.timeout(timeout_s):
            while len({r["id"] for r in self.reports}) < count:
                self.got.clear()
                await self.got.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                if self.mode == "stall":
                    await self._unstall.wait()
                    break
                if self.mode == "fail":
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
                else:
                    self.paths.append(path)
                    self.batches.append(json.loads(body))
                    self.got.set()
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def receiving(mode: str = "ok") -> AsyncIterator[Receiver]:
    """A started :class:`Receiver`, stopped afterwards."""
    receiver = Receiver(mode=mode)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
