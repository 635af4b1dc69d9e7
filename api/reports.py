"""The reports of SPEC §6: written to the outbox by the engine and the control plane, delivered
by push (:mod:`api.report_push`) or pull (``/v1/reports/pull``), at least once, in order per call.

Writing (:class:`CallReports`):

* ``call_started`` / ``call_ringing`` / ``call_answered`` are called by the B2BUA on the call
  path. They never wait: they copy the call's facts into an in-memory buffer (O(1), no I/O) and
  return. A writer task turns everything buffered into rows in **one** ``Database.write`` op per
  round, as soon as the previous round is committed and at most every ``round_interval_s``
  (50 ms: under load a round carries more calls and shares one COMMIT among them; the
  database's group commit also shares the fsync with whatever else is being written), so the
  buffer drains within a tenth of a second.
* ``call_ended(record)`` is awaited by the engine's call recorder *instead of*
  ``store.insert_call_record``: the call record, its end-of-call report and — when the call's
  recording is already attached — its recording-ready report are written in one transaction, in
  the same FIFO as the buffered reports, so a call's start, ring and pick-up reports always get
  a lower ``seq`` than its end report.
* ``pool_changed(pool_key)`` (via :func:`pool_changed`, called by the control plane after
  binds, unbinds and pool number changes) marks the pool; its thresholds are evaluated a few
  milliseconds later, once for many changes, and a crossing writes the warning state and the
  warning report in one transaction (:class:`PoolWarnings`): one report per crossing.

What a crash can lose: the start, ring and pick-up reports still in the buffer (at most the last
round and the one being gathered, up to about a tenth of a second of calls), which nobody was ever
told about. Nothing acknowledged is lost: a call record exists only together with its end
report, a warning state only with its report, and a report leaves the outbox only when a
receiver answered 2xx or a puller acked it.

Push and pull for one tenant: a report type with a push URL (its own or the tenant's
``default``) is pushed; the types without one wait in the pull queue. See ``docs/api.md``
("Reports").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import time
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol
from zoneinfo import ZoneInfo

import httpx

import store.tenants as tenant_store
from api.errors import ErrorCode, InvalidInput, NotFound
from api.principal import Principal
from engine.ids import time_ordered_id
from engine.logging import get_logger
from routing.model import PhoneNumber, PoolKey
from routing.numbers import home_location
from store import outbox
from store.db import Database, DatabaseClosedError
from store.outbox import (
    DEFAULT_URL_TYPE,
    PUSH_URL_TYPES,
    NewReport,
    PoolWarning,
    PushUrl,
    QueueStatus,
    RecordingEvent,
    ReportType,
)
from store.records import REPORT_FIELDS, TIME_FIELDS, CallRecord, local_time

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = [
    "MAX_PULL",
    "MAX_VISIBILITY_TIMEOUT_S",
    "REPORT_URL_NOT_EXIST",
    "CallEvent",
    "CallFacts",
    "CallReports",
    "PoolUsage",
    "PoolWarnings",
    "attach_reports",
    "call_event_payload",
    "end_payload",
    "pool_changed",
    "pool_warning_payload",
    "recording_payload",
    "recording_report_id",
    "reports_of",
    "warning_changes",
]

_log = get_logger("api.reports")

REPORT_URL_NOT_EXIST: Final = "REPORT_URL_NOT_EXIST"
MAX_PULL: Final = 1000
MAX_VISIBILITY_TIMEOUT_S: Final = 43_200  # 12 h
MAX_URL_CHARS: Final = 2048
MAX_ACK_IDS: Final = 1000
#: Reports buffered for the writer beyond this are dropped (logged): the database is not
#: keeping up, and the call path must not pay for it with memory without bound.
DEFAULT_MAX_BUFFERED: Final = 200_000
#: Write rounds start at most this often: under load a round then carries more calls, and its
#: COMMIT (page writes and fsync, ~60 µs of CPU per call in rounds of 5 calls, ~30 in rounds of
#: 20) is shared by more of them. An idle writer starts a round at once. Each round is also a
#: batch of CDR lines (the recorder appends them when the round commits), and it was a batch of
#: the database writer's thread, whose every SQLite call let go of the GIL and took it back,
#: often from the event loop: at 900 calls/s, 20 ms rounds were ~59 commits a second and
#: 50-100 ms rounds 15-27, with ~10 % less CPU per call for the whole process (bench/README.md,
#: cps section; rounds now commit on the loop, the fsync alone in the thread). What it costs: a
#: call's records and reports are durable up to this much later under load; what a crash can
#: lose is still only what nobody was told about (the module docstring).
DEFAULT_ROUND_INTERVAL_S: Final = 0.05
#: Items one write round takes at most: its ops (below) stay within one batch of the database
#: (``store.db.MAX_LOOP_BATCH_OPS``), one transaction, one fsync. A round runs on the event
#: loop's thread (``Database.write(in_loop=True)``: no GIL hand-offs with the writer thread); a
#: backlog (a slow disk, a burst) is written in full rounds one after another.
MAX_ROUND_ITEMS: Final = 1024
#: Items of one op of a round: the event loop serves its I/O between two (the database's
#: batches on the loop pause between ops), so a call waits for one op at most: ~25 µs an item
#: (the loop's CPU per call rose ~0.1 ms with a call's four items), under 1 ms.
ROUND_OP_ITEMS: Final = 32
#: Pool thresholds are evaluated this long after the first change that marked the pool.
DEFAULT_WARNING_DELAY_S: Final = 0.05
# After a failed write round the buffered reports are retried after this pause.
_RETRY_PAUSE_S: Final = 0.5
_SAVEPOINT: Final = "report_item"
# Reports a round builds and inserts at a time (_Round.step).
_ITEMS_PER_CHUNK: Final = outbox.MAX_ROWS_PER_INSERT
_TIME_FIELDS: Final = frozenset(TIME_FIELDS)


# ------------------------------------------------------------------------------- payloads


class CallFacts(Protocol):
    """What a report reads of a call: ``engine.calls.Call`` has these attributes."""

    @property
    def call_id(self) -> str: ...
    @property
    def x(self) -> str: ...
    @property
    def pool_key(self) -> str | None: ...
    @property
    def sub_id(self) -> str | None: ...
    @property
    def out_id(self) -> str | None: ...
    @property
    def call_type(self) -> int: ...
    @property
    def phone_no(self) -> str | None: ...
    @property
    def peer_no(self) -> str | None: ...
    @property
    def call_time(self) -> float: ...
    @property
    def call_out_time(self) -> float | None: ...
    @property
    def ring_time(self) -> float | None: ...
    @property
    def start_time(self) -> float | None: ...


@dataclass(slots=True, init=False)
class CallEvent:
    """A call's facts when a start, ring or pick-up happened (the call object moves on).

    Immutable by convention, not ``frozen``: a frozen class's fields can only be set through
    ``object.__setattr__`` (~0.2 µs each, even compiled), thirteen fields, three times a call;
    compiled, a plain assignment stores the field directly.
    """

    type: ReportType
    call_id: str
    x: str
    pool_key: str | None
    sub_id: str | None
    out_id: str | None
    call_type: int
    phone_no: str | None
    peer_no: str | None
    call_time: float
    call_out_time: float | None
    ring_time: float | None
    start_time: float | None

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted (build_compiled.py).
    def __init__(
        self,
        *,
        type: ReportType,
        call_id: str,
        x: str,
        pool_key: str | None,
        sub_id: str | None,
        out_id: str | None,
        call_type: int,
        phone_no: str | None,
        peer_no: str | None,
        call_time: float,
        call_out_time: float | None,
        ring_time: float | None,
        start_time: float | None,
    ) -> None:
        self.type = type
        self.call_id = call_id
        self.x = x
        self.pool_key = pool_key
        self.sub_id = sub_id
        self.out_id = out_id
        self.call_type = call_type
        self.phone_no = phone_no
        self.peer_no = peer_no
        self.call_time = call_time
        self.call_out_time = call_out_time
        self.ring_time = ring_time
        self.start_time = start_time

    @classmethod
    def of(cls, report_type: ReportType, call: CallFacts) -> CallEvent:
        """Copy ``call``'s facts now."""
        # The class by name, not ``cls``: compiled, a call of a known class is a direct native
        # call, while ``cls(...)`` is a generic one that parses its thirteen keywords (~4 µs).
        return CallEvent(
            type=report_type,
            call_id=call.call_id,
            x=call.x,
            pool_key=call.pool_key,
            sub_id=call.sub_id,
            out_id=call.out_id,
            call_type=call.call_type,
            phone_no=call.phone_no,
            peer_no=call.peer_no,
            call_time=call.call_time,
            call_out_time=call.call_out_time,
            ring_time=call.ring_time,
            start_time=call.start_time,
        )


# ``store.records.local_time`` is cached per second: a call's reports render the same few
# instants, and calls of one second share them.
_local: Final = local_time


def _city_of(x: str) -> str | None:
    return home_location(PhoneNumber(x)).city if x else None


def call_event_payload(event: CallEvent, report_id: str, zone: ZoneInfo) -> dict[str, object]:
    """The start, ring or pick-up report: the end-of-call fields known at that moment (the
    reference names of SPEC §6; times local ``YYYY-MM-DD HH:MM:SS``, null when not reached)."""
    x = event.x or None
    # The callee sees X; an intercepted call (call_type 4) has no callee.
    routed = event.call_type in (0, 1)
    return {
        "id": report_id,
        "report_type": str(event.type),
        "pool_key": event.pool_key,
        "sub_id": event.sub_id,
        "call_id": event.call_id,
        "phone_no": event.phone_no,
        "secret_no": x,
        "peer_no": event.peer_no,
        "called_display_no": x if routed else None,
        "city": _city_of(event.x),
        "call_type": event.call_type,
        "call_time": _local(event.call_time, zone),
        "call_out_time": _local(event.call_out_time, zone),
        "ring_time": _local(event.ring_time, zone),
        "start_time": _local(event.start_time, zone),
        "out_id": event.out_id,
    }


def end_payload(record: CallRecord, zone: ZoneInfo) -> dict[str, object]:
    """The end-of-call report: the call record as the API shows it (``CallRecord.to_report``:
    every SPEC §6 field, its ``id`` is the record's) plus ``report_type``. Rendered here with
    the per-second time cache; a test holds it equal to ``to_report``."""
    payload: dict[str, object] = {}
    for name in REPORT_FIELDS:
        value = getattr(record, name)
        if name in _TIME_FIELDS:
            payload[name] = _local(value, zone)
        elif isinstance(value, IntEnum):
            payload[name] = int(value)
        else:
            payload[name] = value
    payload["report_type"] = str(ReportType.END)
    return payload


def recording_report_id(call_id: str) -> str:
    """The recording-ready report's id: derived from the call, so it is written once."""
    return f"{call_id}-recording"


def recording_payload(
    event: RecordingEvent, record: CallRecord, zone: ZoneInfo
) -> dict[str, object]:
    """The recording-ready report of ``record``'s call."""
    return {
        "id": recording_report_id(record.call_id),
        "report_type": str(ReportType.RECORDING),
        "pool_key": record.pool_key or event.pool_key,
        "sub_id": record.sub_id,
        "call_id": record.call_id,
        "secret_no": record.secret_no or None,
        "out_id": record.out_id,
        "start_time": local_time(record.start_time, zone),
        "duration_s": round(event.duration_s, 3),
        "size_bytes": event.size_bytes,
        "ready_time": local_time(event.created_at, zone),
    }


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """A pool's figures when its thresholds are evaluated."""

    numbers: int  # X numbers available to bindings
    bound: int  # numbers carrying at least one binding

    @property
    def free(self) -> int:
        """Numbers carrying no binding."""
        return self.numbers - self.bound

    @property
    def utilisation_pct(self) -> float:
        """Share of the numbers carrying a binding, in percent (0 for an empty pool)."""
        return 100.0 * self.bound / self.numbers if self.numbers else 0.0


def pool_warning_payload(
    report_id: str,
    *,
    pool_key: str,
    warning: PoolWarning,
    threshold: float,
    usage: PoolUsage,
    now: float,
    zone: ZoneInfo,
) -> dict[str, object]:
    """The pool-warning report of one crossing."""
    return {
        "id": report_id,
        "report_type": str(ReportType.POOL_WARNING),
        "pool_key": pool_key,
        "warning": str(warning),
        "threshold": threshold,
        "free_numbers": usage.free,
        "numbers": usage.numbers,
        "bound_numbers": usage.bound,
        "utilisation_pct": round(usage.utilisation_pct, 1),
        "time": local_time(now, zone),
    }


def warning_changes(
    *,
    usage: PoolUsage,
    warn_free_numbers: int | None,
    warn_utilisation_pct: float | None,
    active: dict[PoolWarning, bool],
) -> dict[PoolWarning, bool]:
    """The warnings whose state changes (True: crossed into warning, False: cleared).

    Free numbers warn when they fall below ``warn_free_numbers``; utilisation warns when it
    reaches ``warn_utilisation_pct``. A threshold removed clears its warning. A warning that is
    already active stays quiet however often it is evaluated: one report per crossing.
    """
    now_active = {
        PoolWarning.FREE_NUMBERS: warn_free_numbers is not None and usage.free < warn_free_numbers,
        PoolWarning.UTILISATION: (
            warn_utilisation_pct is not None
            and usage.numbers > 0
            # bound/numbers >= pct/100 without the float rounding of a percentage
            and usage.bound * 100 >= warn_utilisation_pct * usage.numbers
        ),
    }
    return {
        warning: state
        for warning, state in now_active.items()
        if state != active.get(warning, False)
    }


# ------------------------------------------------------------------------------- the writer

# An item of a write round: runs inside the round's transaction (under its own savepoint), on
# the event loop's thread, and returns the tenants that got reports.
_ItemOp = Callable[[sqlite3.Connection, float], set[str | None]]


@dataclass(slots=True, init=False)
class _Item:
    op: _ItemOp | None = None  # None: a call-path event or record, written with its neighbours
    event: CallEvent | None = None
    record: CallRecord | None = None  # a call record and its end report (no recording)
    future: asyncio.Future[None] | None = None  # None: nobody waits (call-path reports)
    what: str = "report"

    # Explicit, as CallEvent's: four per call.
    def __init__(
        self,
        *,
        op: _ItemOp | None = None,
        event: CallEvent | None = None,
        record: CallRecord | None = None,
        future: asyncio.Future[None] | None = None,
        what: str = "report",
    ) -> None:
        self.op = op
        self.event = event
        self.record = record
        self.future = future
        self.what = what


_Result = tuple[bool, set[str | None] | BaseException]


def _event_report(event: CallEvent, zone: ZoneInfo) -> NewReport:
    report_id = time_ordered_id()
    return NewReport(
        id=report_id,
        type=event.type,
        payload=call_event_payload(event, report_id, zone),
        call_id=event.call_id,
        pool_key=event.pool_key,
        secret_no=event.x or None,
    )


def _in_savepoint(
    conn: sqlite3.Connection, run: Callable[[], set[str | None]], *, name: str = _SAVEPOINT
) -> _Result:
    conn.execute(f"SAVEPOINT {name}")
    try:
        tenants = run()
    except Exception as error:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        return False, error
    conn.execute(f"RELEASE {name}")
    return True, tenants


def _run_items(
    conn: sqlite3.Connection,
    *,
    items: Sequence[_Item],
    now: float,
    zone: ZoneInfo,
    owners: outbox.PoolOwners,
) -> list[_Result]:
    """One op of a round (up to ``ROUND_OP_ITEMS`` of its items), in order, under one
    savepoint; consecutive call-path events and call records are inserted together (multi-row
    INSERTs for the reports, in FIFO order so that a call's end report follows its earlier ones,
    then for the records). Should an item fail (a duplicate call record), the op's items are
    rolled back and run again one by one, each under its own savepoint, so that the failing
    item alone is left out."""
    round_ = _Round(conn, items, now=now, zone=zone, owners=owners)
    ok, value = _in_savepoint(conn, round_.whole, name="report_round")
    if ok:
        return [(True, value)] + [(True, set())] * (len(items) - 1)
    results: list[_Result] = []
    for start, end in round_.groups:
        if items[start].op is not None:
            results.append(_in_savepoint(conn, partial(round_.step, start, end)))
            continue
        for item in items[start:end]:  # one by one: the failing record alone is left out
            results.append(_in_savepoint(conn, partial(round_.alone, item)))
    return results


class _Round:
    """The items of one writer round and the database work of each part of it.

    A class, not functions nested in ``_run_items``: compiled by mypyc, nested functions share
    an environment object that refers to each of them while each refers to it — a reference
    cycle per round holding the round's items (its calls' events and records), which only the
    scheduled full collection of the serving process would free (engine.gc_policy)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        items: Sequence[_Item],
        *,
        now: float,
        zone: ZoneInfo,
        owners: outbox.PoolOwners,
    ) -> None:
        self.conn = conn
        self.items = items
        self.now = now
        self.zone = zone
        self.owners = owners
        groups: list[tuple[int, int]] = []  # [start, end) of the items of one step
        index = 0
        while index < len(items):
            end = index + 1
            if items[index].op is None:
                while end < len(items) and items[end].op is None:
                    end += 1
            groups.append((index, end))
            index = end
        self.groups = groups

    def _insert(self, reports: list[NewReport]) -> set[str | None]:
        return outbox.insert_reports(self.conn, reports, now=self.now, owners=self.owners)

    def step(self, start: int, end: int) -> set[str | None]:
        """The items ``[start, end)``: one operation, or call-path events and records."""
        items = self.items
        op = items[start].op
        if op is not None:
            return op(self.conn, self.now)
        zone = self.zone
        tenants: set[str | None] = set()
        records: list[CallRecord] = []
        # The reports in chunks, each built then inserted: every item makes one report and a
        # chunk is the largest multi-row INSERT (outbox.insert_rows), so a chunk is one
        # statement. (When rounds ran in the writer thread, this also bounded how long the
        # event loop waited for that thread's building with the GIL held.) The records
        # (another table, its rows built as they are inserted) go in at the end.
        for chunk_start in range(start, end, _ITEMS_PER_CHUNK):
            reports: list[NewReport] = []
            for item in items[chunk_start : min(chunk_start + _ITEMS_PER_CHUNK, end)]:
                if item.event is not None:
                    reports.append(_event_report(item.event, zone))
                elif item.record is not None:
                    records.append(item.record)
                    reports.append(_end_report(item.record, zone))
            tenants |= self._insert(reports)
        if records:
            outbox.insert_call_record_rows(self.conn, records)
        return tenants

    def alone(self, item: _Item) -> set[str | None]:
        """One call-path item by itself (the retry of a failed round)."""
        if item.record is not None:
            outbox.insert_call_record_rows(self.conn, [item.record])
            return self._insert([_end_report(item.record, self.zone)])
        assert item.event is not None
        return self._insert([_event_report(item.event, self.zone)])

    def whole(self) -> set[str | None]:
        """Every step of the round, in order."""
        tenants: set[str | None] = set()
        for start, end in self.groups:
            tenants |= self.step(start, end)
        return tenants


WrittenListener = Callable[[set[str | None]], None]
UrlsListener = Callable[[str], None]


class CallReports:
    """The reports of one control plane: the outbox writer, pool warnings, and the use cases
    of the push URL, pull and ack API. Made by :func:`attach_reports`."""

    def __init__(
        self,
        control: ControlPlane,
        *,
        clock: Callable[[], float] = time.time,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        warning_delay_s: float = DEFAULT_WARNING_DELAY_S,
        round_interval_s: float = DEFAULT_ROUND_INTERVAL_S,
    ) -> None:
        """``clock``: UTC epoch seconds for queue times (created, lease, back-off);
        ``round_interval_s``: the least time between the starts of two write rounds."""
        self.control = control
        self.clock = clock
        self.max_buffered = max_buffered
        self.round_interval_s = round_interval_s
        self._buffer: list[_Item] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._written_listeners: list[WrittenListener] = []
        self._url_listeners: list[UrlsListener] = []
        # Owners of pools, read once (pools are never deleted and never change owner); used
        # only inside the write rounds' transactions.
        self._owners: outbox.PoolOwners = {}
        self.warnings = PoolWarnings(self, delay_s=warning_delay_s)
        # Observability (metrics): reports dropped because the buffer was full or closed.
        self.dropped = 0
        self.rounds = 0

    @property
    def db(self) -> Database:
        """The control plane's database."""
        return self.control.db

    @property
    def zone(self) -> ZoneInfo:
        """Local time of the reports (``[time] zone``)."""
        return self.control.zone

    @property
    def buffered(self) -> int:
        """Reports waiting for the writer (metrics: part of the report queue depth)."""
        return len(self._buffer)

    def on_written(self, listener: WrittenListener) -> None:
        """Call ``listener(tenants)`` after a transaction queued reports for ``tenants``."""
        self._written_listeners.append(listener)

    def on_urls_changed(self, listener: UrlsListener) -> None:
        """Call ``listener(tenant_id)`` after the tenant's push URLs changed."""
        self._url_listeners.append(listener)

    def notify_written(self, tenants: set[str | None]) -> None:
        """Tell the listeners (the push worker) that ``tenants`` have new reports."""
        if not tenants:
            return
        for listener in self._written_listeners:
            listener(tenants)

    # --------------------------------------------------------------------- call path

    def call_started(self, call: CallFacts) -> None:
        """The call reached X and was routed or intercepted (pool, binding, type known)."""
        self._event(ReportType.START, call)

    def call_ringing(self, call: CallFacts) -> None:
        """The callee rings (first 180/183; ``ring_time`` set)."""
        self._event(ReportType.RING, call)

    def call_answered(self, call: CallFacts) -> None:
        """The callee answered (``start_time`` set)."""
        self._event(ReportType.PICKUP, call)

    def _event(self, report_type: ReportType, call: CallFacts) -> None:
        if self._closing or len(self._buffer) >= self.max_buffered:
            self._drop(report_type)
            return
        self._submit(_Item(event=CallEvent.of(report_type, call)))

    def _drop(self, report_type: ReportType) -> None:
        self.dropped += 1
        if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
            _log.error(
                "reports_dropped",
                report_type=str(report_type),
                dropped=self.dropped,
                why="closed" if self._closing else "buffer full",
            )

    async def call_ended(self, record: CallRecord) -> None:
        """Write ``record`` with its end-of-call report (and its recording-ready report when the
        recording is attached already) in one transaction, after the call's earlier reports.

        Replaces ``store.insert_call_record`` for the engine: returns once durable; raises
        ``store.ConflictError`` (nothing written) for a record id that exists.
        """
        if record.recording_path is None and not self._closing:
            # The common case: written with the round's other call-path rows (executemany).
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._submit(_Item(record=record, future=future, what="call_record"))
            await future
            return
        zone = self.zone

        def op(conn: sqlite3.Connection, now: float) -> set[str | None]:
            outbox.insert_call_record_row(conn, record)
            end = _end_report(record, zone)
            tenants = outbox.insert_reports(conn, [end], now=now, owners=self._owners)
            if record.recording_path is None:
                # No WAV attached before this record (the engine notes the path on the call
                # before attaching it): nothing to look up; a later attach goes through
                # ``recording_ready``.
                return tenants
            return tenants | _recording_report(conn, record, zone, now)

        await self._submit_and_wait(op, "call_record")

    async def recording_ready(self, call_id: str) -> None:
        """Queue the recording-ready report of ``call_id`` if its recording is attached and its
        record written — for a recording attached *after* the call record (``call_ended``
        covers the other order). Idempotent: the report is written once."""
        zone = self.zone

        def op(conn: sqlite3.Connection, now: float) -> set[str | None]:
            record = outbox.call_record_row(conn, call_id)
            if record is None:
                return set()
            return _recording_report(conn, record, zone, now)

        await self._submit_and_wait(op, "recording_report")

    async def flush(self) -> None:
        """Wait until everything buffered before this call is committed."""
        await self._submit_and_wait(lambda _conn, _now: set(), "flush")

    async def close(self) -> None:
        """Write what is buffered, stop the writer and the warning checks (before the database
        closes). Reports of calls after this are dropped; ``call_ended`` still writes."""
        self.warnings.close()
        await self.warnings.wait_idle()
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    # --------------------------------------------------------------------- writer internals

    def _submit(self, item: _Item) -> None:
        self._buffer.append(item)
        if len(self._buffer) == 1:
            # The writer waits on the event only with the buffer empty (it takes the whole
            # buffer each round): one set() per round, not one interpreted call per report.
            self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._write_loop(), name="maskline-report-writer"
            )

    async def _submit_and_wait(self, op: _ItemOp, what: str) -> None:
        if self._closing:
            # The writer is gone (shutdown): write directly, still one transaction.
            tenants = await self.db.write(lambda conn: op(conn, self.clock()))
            self.notify_written(tenants)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Item(op=op, future=future, what=what))
        await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        round_started = -math.inf
        catching_up = False
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            pause = round_started + self.round_interval_s - loop.time()
            if pause > 0 and not self._closing and not catching_up:
                # Under load: let this round gather more calls (one COMMIT for all of them).
                await asyncio.sleep(pause)
            round_started = loop.time()
            items = self._buffer[:MAX_ROUND_ITEMS]
            del self._buffer[:MAX_ROUND_ITEMS]
            # A backlog is written in full rounds one after the other, without the pause.
            catching_up = bool(self._buffer)
            written, failed, error = await self._write_round(items)
            if written:
                self.rounds += 1
                self._settle(written)
            # A transaction that failed as a whole (only part of a round when the database
            # split it): its items are retried, or dropped when the database is closed.
            if error is not None and await self._round_failed(failed, error):
                return

    def _settle(self, written: list[tuple[_Item, _Result]]) -> None:
        """Answer the waiting callers of written items; tell the listeners who got reports."""
        tenants: set[str | None] = set()
        for item, (ok, value) in written:
            if ok:
                assert isinstance(value, set)
                tenants |= value
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
            elif item.future is not None:
                if not item.future.done():
                    assert isinstance(value, BaseException)
                    item.future.set_exception(value)
            else:
                _log.error("report_not_written", what=item.what, error=repr(value))
        self.notify_written(tenants)

    async def _write_round(
        self, items: list[_Item]
    ) -> tuple[list[tuple[_Item, _Result]], list[_Item], Exception | None]:
        """Write a round's items as ops of ``ROUND_OP_ITEMS`` on the event loop: one batch of
        the database, which serves the loop's I/O between two of them. Returns each written
        item with its result, and the items of ops whose transaction failed with the error."""
        now = self.clock()
        chunks = [items[i : i + ROUND_OP_ITEMS] for i in range(0, len(items), ROUND_OP_ITEMS)]
        writes = [
            self.db.write(
                partial(_run_items, items=chunk, now=now, zone=self.zone, owners=self._owners),
                in_loop=True,
            )
            for chunk in chunks
        ]
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        written: list[tuple[_Item, _Result]] = []
        failed: list[_Item] = []
        first_error: Exception | None = None
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failed.extend(chunk)
                first_error = first_error or outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                written.extend(zip(chunk, outcome, strict=True))
        return written, failed, first_error

    async def _round_failed(self, items: list[_Item], error: Exception) -> bool:
        """A round's transaction failed: waiting callers get the error, call-path reports are
        tried again after a pause (unless the database is closed). True: stop the writer."""
        keep: list[_Item] = []
        for item in items:
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(error)
            else:
                keep.append(item)
        if isinstance(error, DatabaseClosedError):
            self.dropped += len(keep) + len(self._buffer)
            _log.error("reports_lost_database_closed", count=len(keep) + len(self._buffer))
            for pending in self._buffer:
                if pending.future is not None and not pending.future.done():
                    pending.future.set_exception(error)
            self._buffer.clear()
            return True
        _log.error("report_round_failed", error=repr(error), retrying=len(keep))
        self._buffer[:0] = keep
        await asyncio.sleep(_RETRY_PAUSE_S)
        return False

    # --------------------------------------------------------------------- pool warnings

    def pool_changed(self, pool_key: str) -> None:
        """The pool's numbers or bindings changed: evaluate its thresholds soon."""
        self.warnings.note(pool_key)

    # --------------------------------------------------------------------- API use cases

    async def visible_tenant(self, principal: Principal, tenant_id: str) -> None:
        """404 ``TENANT_NOT_EXIST`` unless ``tenant_id`` exists and ``principal`` may act for it
        (another tenant's id answers exactly as an unknown one)."""
        if not principal.is_operator and principal.tenant_id != tenant_id:
            raise _tenant_not_found(tenant_id)
        if await tenant_store.get_tenant(self.db, tenant_id) is None:
            raise _tenant_not_found(tenant_id)

    async def _queue_owner(self, principal: Principal, tenant_id: str | None) -> str | None:
        """Whose queue a pull or ack reads: ``tenant_id`` when given (checked), else the
        caller's own (the operator's: the reports of pools without a tenant)."""
        if tenant_id is None:
            return principal.tenant_id
        await self.visible_tenant(principal, tenant_id)
        return tenant_id

    async def set_push_url(
        self, principal: Principal, tenant_id: str, report_type: str, url: str
    ) -> PushUrl:
        """Create or replace the tenant's push URL of ``report_type`` (or ``default``)."""
        await self.visible_tenant(principal, tenant_id)
        kind = _check_report_type(report_type)
        checked = check_push_url(url)
        stored = await outbox.set_push_url(self.db, tenant_id, kind, checked, now=self.clock())
        _log.info("report_url_set", tenant_id=tenant_id, report_type=kind)
        self._urls_changed(tenant_id)
        return stored

    async def push_urls(self, principal: Principal, tenant_id: str) -> list[PushUrl]:
        """The tenant's push URLs by type."""
        await self.visible_tenant(principal, tenant_id)
        return await outbox.list_push_urls(self.db, tenant_id)

    async def delete_push_url(self, principal: Principal, tenant_id: str, report_type: str) -> None:
        """Remove the tenant's push URL of ``report_type``: its reports wait for pull (or the
        ``default`` URL). 404 ``REPORT_URL_NOT_EXIST`` when there is none."""
        await self.visible_tenant(principal, tenant_id)
        kind = _check_report_type(report_type)
        if not await outbox.delete_push_url(self.db, tenant_id, kind):
            raise NotFound(REPORT_URL_NOT_EXIST, f"no push URL for {kind!r} reports")
        _log.info("report_url_deleted", tenant_id=tenant_id, report_type=kind)
        self._urls_changed(tenant_id)

    def _urls_changed(self, tenant_id: str) -> None:
        for listener in self._url_listeners:
            listener(tenant_id)

    async def pull(
        self,
        principal: Principal,
        *,
        tenant_id: str | None = None,
        max_reports: int = 100,
        visibility_timeout_s: float = 60.0,
    ) -> list[dict[str, object]]:
        """Lease up to ``max_reports`` undelivered reports of the types without a push URL, in
        order; each is invisible for ``visibility_timeout_s`` and comes back unless acked."""
        if not 1 <= max_reports <= MAX_PULL:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"max must be 1..{MAX_PULL}")
        if not 1 <= visibility_timeout_s <= MAX_VISIBILITY_TIMEOUT_S:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"visibility_timeout_s must be 1..{MAX_VISIBILITY_TIMEOUT_S}",
            )
        owner = await self._queue_owner(principal, tenant_id)
        pushed = await self._pushed_types(owner)
        now = self.clock()

        def op(conn: sqlite3.Connection) -> list[outbox.QueuedReport]:
            return outbox.lease_rows(
                conn,
                owner,
                pushed_types=pushed,
                limit=max_reports,
                now=now,
                until=now + visibility_timeout_s,
            )

        leased = await self.db.write(op)
        return [_parsed(row.payload) for row in leased]

    async def ack(
        self, principal: Principal, ids: Sequence[str], *, tenant_id: str | None = None
    ) -> list[str]:
        """Acknowledge pulled reports: they are delivered. Returns the ids that are (the
        caller's own; unknown and foreign ids are left out)."""
        if len(ids) > MAX_ACK_IDS:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"at most {MAX_ACK_IDS} ids per ack")
        owner = await self._queue_owner(principal, tenant_id)
        now = self.clock()
        wanted = [i for i in ids if isinstance(i, str) and i]
        return await self.db.write(lambda conn: outbox.ack_rows(conn, owner, wanted, now=now))

    async def queue_status(self, principal: Principal, tenant_id: str) -> QueueStatus:
        """The tenant's undelivered reports: count by type, oldest, latest push error."""
        await self.visible_tenant(principal, tenant_id)
        return await self.db.read(lambda conn: outbox.queue_status(conn, tenant_id))

    async def _pushed_types(self, tenant_id: str | None) -> frozenset[str] | None:
        """Types of ``tenant_id``'s reports that go by push; None: all (a ``default`` URL)."""
        if tenant_id is None:
            return frozenset()  # the operator's pools: pull only
        urls = await outbox.list_push_urls(self.db, tenant_id)
        types = frozenset(u.report_type for u in urls)
        return None if DEFAULT_URL_TYPE in types else types


def _end_report(record: CallRecord, zone: ZoneInfo) -> NewReport:
    return NewReport(
        id=record.id,
        type=ReportType.END,
        payload=end_payload(record, zone),
        call_id=record.call_id,
        pool_key=record.pool_key,
        secret_no=record.secret_no or None,
    )


def _recording_report(
    conn: sqlite3.Connection, record: CallRecord, zone: ZoneInfo, now: float
) -> set[str | None]:
    event = outbox.recording_event_row(conn, record.call_id)
    if event is None:
        return set()
    report = NewReport(
        id=recording_report_id(record.call_id),
        type=ReportType.RECORDING,
        payload=recording_payload(event, record, zone),
        call_id=record.call_id,
        pool_key=record.pool_key or event.pool_key,
        secret_no=record.secret_no or None,
    )
    return outbox.insert_reports(conn, [report], now=now, if_absent=True)


def _parsed(payload: str) -> dict[str, object]:
    value = json.loads(payload)
    assert isinstance(value, dict)
    return value


def _tenant_not_found(tenant_id: str) -> NotFound:
    return NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")


def _check_report_type(report_type: str) -> str:
    if report_type not in PUSH_URL_TYPES:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"unknown report type {report_type!r}; known: {', '.join(PUSH_URL_TYPES)}",
        )
    return report_type


def check_push_url(url: str) -> str:
    """An absolute ``http``/``https`` URL with a host, at most 2048 characters."""
    text = url.strip()
    problem: str | None = None
    if not text or len(text) > MAX_URL_CHARS:
        problem = f"1..{MAX_URL_CHARS} characters"
    elif any(c.isspace() or unicodedata.category(c) == "Cc" for c in text):
        problem = "no spaces or control characters"
    else:
        try:
            parsed = httpx.URL(text)
        except (httpx.InvalidURL, ValueError):
            problem = "a valid URL"
        else:
            if parsed.scheme not in ("http", "https") or not parsed.host:
                problem = "an absolute http:// or https:// URL with a host"
    if problem is not None:
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"the push URL must be {problem}")
    return text


# ------------------------------------------------------------------------------- pool warnings


class PoolWarnings:
    """Evaluates pools' thresholds after changes, a few milliseconds later, once for many.

    The state of each warning is kept in ``pool_warning_states`` (loaded on first use), so a
    warning that is active stays quiet after a restart too. A pool that changes back and forth
    across a threshold within one delay is seen once, at the end of it.
    """

    def __init__(self, reports: CallReports, *, delay_s: float) -> None:
        self._reports = reports
        self._delay_s = delay_s
        self._dirty: set[str] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._states: dict[tuple[str, PoolWarning], bool] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def note(self, pool_key: str) -> None:
        """``pool_key`` changed: evaluate it after the delay (O(1), never waits)."""
        if self._closed:
            return
        self._dirty.add(pool_key)
        if self._handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a synchronous caller): evaluated with the next change
            self._handle = loop.call_later(self._delay_s, self._due)

    def _due(self) -> None:
        self._handle = None
        if self._closed or (self._task is not None and not self._task.done()):
            if not self._closed and self._dirty:  # a check is running: look again after it
                self._handle = asyncio.get_running_loop().call_later(self._delay_s, self._due)
            return
        pools, self._dirty = self._dirty, set()
        self._task = asyncio.get_running_loop().create_task(self._check_logged(pools))

    async def _check_logged(self, pools: Iterable[str]) -> None:
        try:
            await self.check(pools)
        except Exception:
            _log.exception("pool_warning_check_failed")

    async def check(self, pool_keys: Iterable[str] | None = None) -> int:
        """Evaluate ``pool_keys`` (None: every pool with a threshold or an active warning) now;
        returns how many warning reports were written."""
        reports = self._reports
        control = reports.control
        async with self._lock:
            if self._states is None:
                self._states = await outbox.load_warning_states(reports.db)
            states = self._states
            if pool_keys is None:
                pools = await control.list_pools()
                wanted = [
                    p.pool_key
                    for p in pools
                    if p.warn_free_numbers is not None
                    or p.warn_utilisation_pct is not None
                    or any(states.get((p.pool_key, w), False) for w in PoolWarning)
                ]
            else:
                wanted = sorted({PoolKey(key) for key in pool_keys})
            written = 0
            for pool_key in wanted:
                try:
                    pool = await control.get_pool(pool_key)
                except NotFound:
                    continue
                numbers, bound, _pct = control.pool_usage(pool.pool_key)
                usage = PoolUsage(numbers=numbers, bound=bound)
                active = {w: states.get((pool.pool_key, w), False) for w in PoolWarning}
                changes = warning_changes(
                    usage=usage,
                    warn_free_numbers=pool.warn_free_numbers,
                    warn_utilisation_pct=pool.warn_utilisation_pct,
                    active=active,
                )
                if not changes:
                    continue
                thresholds: dict[PoolWarning, float] = {
                    PoolWarning.FREE_NUMBERS: float(pool.warn_free_numbers or 0),
                    PoolWarning.UTILISATION: float(pool.warn_utilisation_pct or 0),
                }
                tenants = await reports.db.write(
                    _warning_op(
                        pool_key=pool.pool_key,
                        changes=changes,
                        thresholds=thresholds,
                        usage=usage,
                        now=reports.clock(),
                        zone=reports.zone,
                    )
                )
                for warning, state in changes.items():
                    states[(pool.pool_key, warning)] = state
                    if state:
                        written += 1
                        _log.info(
                            "pool_warning",
                            pool_key=pool.pool_key,
                            warning=str(warning),
                            free_numbers=usage.free,
                            utilisation_pct=round(usage.utilisation_pct, 1),
                        )
                reports.notify_written(tenants)
            return written

    def close(self) -> None:
        """No more evaluations (shutdown)."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def wait_idle(self) -> None:
        """Wait for a running evaluation to end."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def settle(self) -> None:
        """Wait until every change noted so far is evaluated (tests, shutdown)."""
        while self._handle is not None or (self._task is not None and not self._task.done()):
            if self._task is not None and not self._task.done():
                await self.wait_idle()
            else:
                await asyncio.sleep(self._delay_s)


def _warning_op(
    *,
    pool_key: str,
    changes: dict[PoolWarning, bool],
    thresholds: dict[PoolWarning, float],
    usage: PoolUsage,
    now: float,
    zone: ZoneInfo,
) -> Callable[[sqlite3.Connection], set[str | None]]:
    def op(conn: sqlite3.Connection) -> set[str | None]:
        tenants: set[str | None] = set()
        for warning, state in changes.items():
            outbox.set_warning_state_row(conn, pool_key, warning, active=state, now=now)
            if not state:
                continue
            report_id = time_ordered_id()
            threshold = thresholds[warning]
            report = NewReport(
                id=report_id,
                type=ReportType.POOL_WARNING,
                payload=pool_warning_payload(
                    report_id,
                    pool_key=pool_key,
                    warning=warning,
                    threshold=int(threshold) if threshold.is_integer() else threshold,
                    usage=usage,
                    now=now,
                    zone=zone,
                ),
                pool_key=pool_key,
            )
            tenants |= outbox.insert_reports(conn, [report], now=now)
        return tenants

    return op


# ------------------------------------------------------------------------------- wiring

_SERVICES: weakref.WeakKeyDictionary[ControlPlane, CallReports] = weakref.WeakKeyDictionary()


def attach_reports(
    control: ControlPlane,
    *,
    clock: Callable[[], float] = time.time,
    max_buffered: int = DEFAULT_MAX_BUFFERED,
    warning_delay_s: float = DEFAULT_WARNING_DELAY_S,
    round_interval_s: float = DEFAULT_ROUND_INTERVAL_S,
) -> CallReports:
    """Make the reports service of ``control`` (see :class:`CallReports`)."""
    service = CallReports(
        control,
        clock=clock,
        max_buffered=max_buffered,
        warning_delay_s=warning_delay_s,
        round_interval_s=round_interval_s,
    )
    _SERVICES[control] = service
    return service


def reports_of(control: ControlPlane) -> CallReports:
    """The reports service of ``control`` (made with the defaults when not attached)."""
    service = _SERVICES.get(control)
    if service is None:
        service = attach_reports(control)
    return service


def pool_changed(control: ControlPlane, pool_key: str) -> None:
    """For the control plane: a pool's numbers or bindings changed (no-op without a reports
    service: nothing evaluates warnings then)."""
    service = _SERVICES.get(control)
    if service is not None:
        service.pool_changed(pool_key)
