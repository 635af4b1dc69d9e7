"""Repository of the report outbox (SPEC §6): the queue that push and pull both read.

Schema: ``report_outbox`` (migration 0001) plus ``report_push_urls``, ``pool_warning_states``
and the delivery indexes of migration 0007, which also documents the rules. In short: one row
per report, ``seq`` is the delivery order, ``id`` is unique (a receiver de-duplicates on it),
``next_attempt_at`` is "not before" (push back-off or pull lease), ``delivered_at`` ends it.

Two kinds of function:

* ``*_rows`` / ``insert_*`` / ``mark_*`` taking a ``sqlite3.Connection`` are synchronous op
  building blocks: they run inside a ``Database.write`` op, so that a report is written in the
  same transaction as the state it describes (a call record, a pool warning state);
* the ``async`` ones are whole transactions (``db.write`` / ``db.read``).

A report is queued for the tenant owning its pool. The pool is the report's own ``pool_key``,
else the pool holding the call's X (a call intercepted for want of a binding still belongs to
the pool of the X it reached); a report that belongs to no pool has nobody to go to and is not
queued (the call record and the CDR line keep the call).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from operator import attrgetter
from typing import Final

import orjson

from store.db import Database
from store.records import CallRecord, CallType, ReleaseDir, UnconnectedCause
from store.repositories import _CALL_COLUMNS, _INSERT_CALL, ConflictError

__all__ = [
    "DEFAULT_URL_TYPE",
    "MAX_ROWS_PER_INSERT",
    "PUSH_URL_TYPES",
    "DeliveryVia",
    "NewReport",
    "PoolOwners",
    "PoolWarning",
    "PushUrl",
    "QueueStatus",
    "QueuedReport",
    "RecordingEvent",
    "ReportType",
    "ack_rows",
    "delete_push_url",
    "insert_call_record_row",
    "insert_call_record_rows",
    "insert_call_record_with_report",
    "insert_reports",
    "lease_rows",
    "list_push_urls",
    "load_warning_states",
    "mark_delivered_rows",
    "mark_failed_rows",
    "pending_rows",
    "queue_status",
    "recording_event_row",
    "set_push_url",
    "set_warning_state_row",
    "sweep_rows",
    "tenants_with_pending",
]


class ReportType(StrEnum):
    """The reports of SPEC §6 (the ``kind`` column)."""

    START = "start"  # the call reached X
    RING = "ring"  # the callee is ringing
    PICKUP = "pickup"  # the callee answered
    END = "end"  # end of call: the call record
    RECORDING = "recording"  # the call's recording is ready
    SMS_INTERCEPT = "sms_intercept"  # an SMS was stored instead of delivered (with its text)
    POOL_WARNING = "pool_warning"  # a pool crossed a warning threshold


#: The push URL of every report type that has no URL of its own.
DEFAULT_URL_TYPE: Final = "default"
#: What a push URL can be configured for.
PUSH_URL_TYPES: Final = (DEFAULT_URL_TYPE, *(t.value for t in ReportType))


class DeliveryVia(StrEnum):
    """How a report was delivered."""

    PUSH = "push"
    PULL = "pull"


class PoolWarning(StrEnum):
    """The two thresholds of a pool (SPEC §3)."""

    FREE_NUMBERS = "free_numbers"  # free numbers fell below ``warn_free_numbers``
    UTILISATION = "utilisation"  # binding utilisation rose above ``warn_utilisation_pct``


@dataclass(slots=True, init=False)
class NewReport:
    """A report to queue. ``payload`` is the JSON object as delivered (it holds ``id``).

    Immutable by convention, not ``frozen``: see ``__init__``.
    """

    id: str
    type: ReportType
    payload: dict[str, object]
    call_id: str | None = None
    pool_key: str | None = None
    # The call's X: finds the pool of a call that has no binding (``pool_key`` None).
    secret_no: str | None = None

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted; and not frozen, so that compiled it stores each
    # field directly (a frozen class's go through object.__setattr__): the frozen generated
    # one took ~3 µs, four times a call (each report of the call path).
    def __init__(  # noqa: PLR0917 - the dataclass's positional signature, as before
        self,
        id: str,
        type: ReportType,
        payload: dict[str, object],
        call_id: str | None = None,
        pool_key: str | None = None,
        secret_no: str | None = None,
    ) -> None:
        self.id = id
        self.type = type
        self.payload = payload
        self.call_id = call_id
        self.pool_key = pool_key
        self.secret_no = secret_no


@dataclass(frozen=True, slots=True)
class QueuedReport:
    """A queued report as stored; ``payload`` is the JSON text as delivered."""

    seq: int
    id: str
    tenant_id: str | None
    pool_key: str | None
    call_id: str | None
    type: ReportType
    payload: str
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PushUrl:
    """A tenant's push URL of one report type (or of ``default``)."""

    tenant_id: str
    report_type: str
    url: str
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """A tenant's undelivered reports."""

    pending: int
    pending_by_type: dict[str, int]
    oldest_created_at: float | None
    next_attempt_at: float | None
    last_error: str | None  # of the most recent failed push among the pending reports
    failing: int  # pending reports that failed at least one push


@dataclass(frozen=True, slots=True)
class RecordingEvent:
    """What the recording-ready report says of a call's recording (``recording_events``)."""

    call_id: str
    pool_key: str | None
    duration_s: float
    size_bytes: int
    created_at: float


_ROW_COLUMNS: Final = (
    "seq, id, tenant_id, pool_key, call_id, kind, payload, created_at, attempts,"
    " next_attempt_at, last_error"
)


def _queued(row: Sequence[object]) -> QueuedReport:
    seq, id_, tenant, pool, call, kind, payload, created, attempts, next_at, error = row
    return QueuedReport(
        seq=int(seq),  # type: ignore[call-overload]
        id=str(id_),
        tenant_id=None if tenant is None else str(tenant),
        pool_key=None if pool is None else str(pool),
        call_id=None if call is None else str(call),
        type=ReportType(str(kind)),
        payload=str(payload),
        created_at=float(created),  # type: ignore[arg-type]
        attempts=int(attempts),  # type: ignore[call-overload]
        next_attempt_at=float(next_at),  # type: ignore[arg-type]
        last_error=None if error is None else str(error),
    )


# Compact, UTF-8 as is: Chinese city names stay readable in the stored and pushed text.
# orjson writes what this encoder writes for the payloads' values (str, int, None, bool,
# their enums; floats but for an exponent's form, 1e-7 for 1e-07, which the payloads'
# millisecond-rounded seconds never need), ~8x faster — 0.5 µs a report where the encoder took
# 4, on the event loop's thread (the report rounds commit there). The encoder stays
# for what orjson refuses (an int beyond 64 bits). tests/store/test_report_json.py compares.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(payload: dict[str, object]) -> str:
    try:
        return orjson.dumps(payload).decode()
    except TypeError:  # orjson.JSONEncodeError: the standard encoder's text, or its error
        return _ENCODER.encode(payload)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


# ------------------------------------------------------------------------------- writing


#: pool key → (the pool exists, its tenant). Pools are never deleted and never change owner,
#: so a writer may keep one such cache for good and pass it to every :func:`insert_reports`.
PoolOwners = dict[str, tuple[bool, str | None]]

_INSERT_REPORT: Final = (
    " INTO report_outbox"
    " (id, tenant_id, pool_key, call_id, kind, payload, created_at, next_attempt_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

# Rows per multi-row INSERT, largest first: 32 rows of call_records bind 736 variables (SQLite
# allows 32,766), i.e. tens of µs of binding with the GIL held. Power-of-two sizes only, so
# that a table has at most six statements, always in sqlite3's statement cache (128 entries):
# a statement per batch size, up to 256 rows, would be hundreds, prepared again and again.
_ROWS_PER_INSERT: Final = (32, 16, 8, 4, 2, 1)
#: The most rows one INSERT of ``insert_rows`` carries (writers chunk their work by it).
MAX_ROWS_PER_INSERT: Final = _ROWS_PER_INSERT[0]
_MAX_VARIABLES: Final = 32_766
_multi_row_sql: dict[tuple[str, int], str] = {}


def insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[object]]) -> None:
    """Run ``insert`` (an INSERT of one row: "... VALUES (?, ?)") for every row of ``rows``, in
    order, as few statements: INSERTs of 32 rows, then of 16, 8, 4, 2, 1 for the rest.

    Not ``executemany``: the sqlite3 module lets go of the GIL around each row's step, and the
    writer thread then waits for the event loop to hand it back — a thread switch per row
    (~4 futex calls on this 2-core machine, the loop thread's among them) where one per
    statement does. Rows go in in the order given (``report_outbox.seq`` is delivery order).
    A constraint failure fails the statement it is in as a whole; callers run it under a
    savepoint anyway.
    """
    if not rows:
        return
    head, values, tuple_sql = insert.rpartition(" VALUES ")
    if not values or not tuple_sql.startswith("(") or not tuple_sql.endswith(")"):
        raise ValueError(f"no one row of placeholders at the end of {insert!r}")
    start = 0
    left = len(rows)
    width = len(rows[0])
    for count in _ROWS_PER_INSERT:
        if count > 1 and count * width > _MAX_VARIABLES:
            continue
        while left >= count:
            sql = _multi_row_sql.get((insert, count))
            if sql is None:
                if len(_multi_row_sql) >= 64:  # bounded: a few INSERTs x six sizes
                    _multi_row_sql.clear()
                sql = _multi_row_sql[insert, count] = (
                    head + " VALUES " + ", ".join([tuple_sql] * count)
                )
            conn.execute(sql, list(chain.from_iterable(rows[start : start + count])))
            start += count
            left -= count


def insert_reports(
    conn: sqlite3.Connection,
    reports: Iterable[NewReport],
    *,
    now: float,
    if_absent: bool = False,
    owners: PoolOwners | None = None,
) -> set[str | None]:
    """Queue ``reports`` in order (op building block); returns the tenants that got rows.

    The tenant is the owner of the report's pool (see the module docstring); a report of no
    pool is skipped. A duplicate ``id`` raises ``ConflictError`` (nothing of ``reports`` is
    written if the caller rolls back its savepoint) — or, with ``if_absent``, is skipped (a
    report whose id is derived from what it describes, written at most once). ``owners``: a
    cache of pool owners kept by the caller across calls.
    """
    known: PoolOwners = {} if owners is None else owners
    tenants: set[str | None] = set()
    rows: list[tuple[object, ...]] = []
    for report in reports:
        pool_key = report.pool_key
        payload = report.payload
        if pool_key is None and report.secret_no:
            found = conn.execute(
                "SELECT pool_key FROM numbers WHERE number = ?", (report.secret_no,)
            ).fetchone()
            if found is not None and found[0] is not None:
                pool_key = str(found[0])
                if "pool_key" in payload and payload["pool_key"] is None:
                    payload = {**payload, "pool_key": pool_key}
        if pool_key is None:
            continue
        owner = known.get(pool_key)
        if owner is None:
            row = conn.execute(
                "SELECT tenant_id FROM pools WHERE pool_key = ?", (pool_key,)
            ).fetchone()
            owner = known[pool_key] = (False, None) if row is None else (True, row[0])
        exists, tenant = owner
        if not exists:
            continue  # a pool key that names no pool: nobody to tell
        rows.append(
            (
                report.id,
                tenant,
                pool_key,
                report.call_id,
                str(report.type),
                _json(payload),
                now,
                now,
            )
        )
        tenants.add(tenant)
    if not rows:
        return set()
    try:
        if if_absent:
            written: set[str | None] = set()
            for row in rows:
                if conn.execute("INSERT OR IGNORE" + _INSERT_REPORT, row).rowcount:
                    written.add(row[1])  # type: ignore[arg-type]
            return written
        insert_rows(conn, "INSERT" + _INSERT_REPORT, rows)
    except sqlite3.IntegrityError as error:
        raise ConflictError(f"reports: {error}") from error
    return tenants


# The record's values in ``_CALL_COLUMNS`` order, read in one C call.
_record_values: Final = attrgetter(*_CALL_COLUMNS)
_ENUM_COLUMNS: Final = tuple(
    _CALL_COLUMNS.index(name) for name in ("call_type", "release_dir", "unconnected_cause")
)


def insert_call_record_row(conn: sqlite3.Connection, record: CallRecord) -> None:
    """Insert ``record`` into ``call_records`` (op building block, the SQL of
    ``store.repositories.insert_call_record``); ``ConflictError`` for a duplicate id."""
    params = list(_record_values(record))
    for index in _ENUM_COLUMNS:  # the IntEnums as plain ints, as stored
        params[index] = int(params[index])
    try:
        conn.execute(_INSERT_CALL, params)
    except sqlite3.IntegrityError as error:
        raise ConflictError(f"call record {record.id}: {error}") from error


def insert_call_record_rows(conn: sqlite3.Connection, records: Sequence[CallRecord]) -> None:
    """Insert ``records`` into ``call_records`` with multi-row INSERTs (op building block,
    ``insert_rows``); ``ConflictError`` when an id exists (the caller's savepoint undoes the
    others)."""
    rows: list[list[object]] = []
    for record in records:
        params = list(_record_values(record))
        for index in _ENUM_COLUMNS:
            params[index] = int(params[index])
        rows.append(params)
    try:
        insert_rows(conn, _INSERT_CALL, rows)
    except sqlite3.IntegrityError as error:
        ids = ", ".join(r.id for r in records)
        raise ConflictError(f"call record {ids}: {error}") from error


async def insert_call_record_with_report(
    db: Database, record: CallRecord, report: NewReport, *, now: float
) -> set[str | None]:
    """The call record and its end-of-call report in one transaction: both or neither.

    ``ConflictError`` (nothing written) when the record's or the report's id exists. Returns
    the tenants that got a report (empty when the call belongs to no pool).
    """

    def op(conn: sqlite3.Connection) -> set[str | None]:
        insert_call_record_row(conn, record)
        return insert_reports(conn, [report], now=now)

    return await db.write(op)


def recording_event_row(conn: sqlite3.Connection, call_id: str) -> RecordingEvent | None:
    """The kept recording of ``call_id`` (``recording_events``), or None."""
    row = conn.execute(
        "SELECT call_id, pool_key, duration_s, size_bytes, created_at FROM recording_events"
        " WHERE call_id = ? AND deleted_at IS NULL",
        (call_id,),
    ).fetchone()
    if row is None:
        return None
    return RecordingEvent(
        call_id=str(row[0]),
        pool_key=None if row[1] is None else str(row[1]),
        duration_s=float(row[2]),
        size_bytes=int(row[3]),
        created_at=float(row[4]),
    )


def call_record_row(conn: sqlite3.Connection, call_id: str) -> CallRecord | None:
    """The record of call ``call_id`` (the latest if several), or None."""
    row = conn.execute(
        f"SELECT {', '.join(_CALL_COLUMNS)} FROM call_records WHERE call_id = ?"  # noqa: S608
        " ORDER BY rowid DESC LIMIT 1",
        (call_id,),
    ).fetchone()
    if row is None:
        return None
    values = dict(zip(_CALL_COLUMNS, tuple(row), strict=True))
    values["call_type"] = CallType(values["call_type"])
    values["release_dir"] = ReleaseDir(values["release_dir"])
    values["unconnected_cause"] = UnconnectedCause(values["unconnected_cause"])
    return CallRecord(**values)


# ------------------------------------------------------------------------------- delivery


def pending_rows(
    conn: sqlite3.Connection,
    tenant_id: str | None,
    types: frozenset[str] | None,
    limit: int,
) -> list[QueuedReport]:
    """The tenant's first ``limit`` undelivered reports of ``types`` (None: all), in order."""
    where = ""
    params: list[object] = [tenant_id]
    if types is not None:
        if not types:
            return []
        where = f" AND kind IN ({_marks(len(types))})"
        params += sorted(types)
    rows = conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM report_outbox"  # noqa: S608
        f" WHERE tenant_id IS ? AND delivered_at IS NULL{where} ORDER BY seq LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_queued(tuple(row)) for row in rows]


def mark_delivered_rows(
    conn: sqlite3.Connection, seqs: Sequence[int], *, now: float, via: DeliveryVia
) -> int:
    """Mark the undelivered rows ``seqs`` delivered; returns how many were."""
    if not seqs:
        return 0
    cursor = conn.execute(
        "UPDATE report_outbox SET delivered_at = ?, delivered_via = ?,"  # noqa: S608
        " attempts = attempts + 1, last_error = NULL"
        f" WHERE seq IN ({_marks(len(seqs))}) AND delivered_at IS NULL",
        (now, str(via), *seqs),
    )
    return cursor.rowcount


def mark_failed_rows(
    conn: sqlite3.Connection, seqs: Sequence[int], *, next_attempt_at: float, error: str
) -> int:
    """A push of ``seqs`` failed: one more attempt, the error, and when to try again."""
    if not seqs:
        return 0
    cursor = conn.execute(
        "UPDATE report_outbox SET attempts = attempts + 1, last_error = ?,"  # noqa: S608
        f" next_attempt_at = ? WHERE seq IN ({_marks(len(seqs))}) AND delivered_at IS NULL",
        (error[:500], next_attempt_at, *seqs),
    )
    return cursor.rowcount


def lease_rows(
    conn: sqlite3.Connection,
    tenant_id: str | None,
    *,
    pushed_types: frozenset[str] | None,
    limit: int,
    now: float,
    until: float,
) -> list[QueuedReport]:
    """Lease up to ``limit`` of the tenant's due reports of the types pull serves, in order.

    ``pushed_types``: the types that have a push URL (not served by pull); None: every type is
    pushed (a ``default`` URL), so nothing is leased. A leased row is invisible to both
    channels until ``until``. A report waits while an earlier report of its call is leased and
    not acknowledged, so that a consumer never sees a call's reports out of order.
    """
    if pushed_types is None:
        return []
    excluded = ""
    params: list[object] = [tenant_id, now]
    if pushed_types:
        excluded = f" AND o.kind NOT IN ({_marks(len(pushed_types))})"
        params += sorted(pushed_types)
    blocking = excluded.replace("o.kind", "p.kind")
    rows = conn.execute(
        f"SELECT {', '.join('o.' + c.strip() for c in _ROW_COLUMNS.split(','))}"  # noqa: S608
        " FROM report_outbox o"
        f" WHERE o.tenant_id IS ? AND o.delivered_at IS NULL AND o.next_attempt_at <= ?{excluded}"
        " AND (o.call_id IS NULL OR NOT EXISTS ("
        "   SELECT 1 FROM report_outbox p WHERE p.call_id = o.call_id AND p.seq < o.seq"
        f"   AND p.delivered_at IS NULL AND p.next_attempt_at > ?{blocking}))"
        " ORDER BY o.seq LIMIT ?",
        (*params, now, *params[2:], limit),
    ).fetchall()
    leased = [_queued(tuple(row)) for row in rows]
    if leased:
        conn.execute(
            "UPDATE report_outbox SET next_attempt_at = ?, attempts = attempts + 1"  # noqa: S608
            f" WHERE seq IN ({_marks(len(leased))})",
            (until, *(r.seq for r in leased)),
        )
    return leased


def ack_rows(
    conn: sqlite3.Connection, tenant_id: str | None, ids: Sequence[str], *, now: float
) -> list[str]:
    """Acknowledge the tenant's reports ``ids`` (pull): the ids that are now delivered.

    Ids of other tenants and unknown ids are left out, as are reports already delivered by
    another channel; acknowledging twice answers the id again (idempotent).
    """
    if not ids:
        return []
    wanted = sorted(set(ids))
    marks = _marks(len(wanted))
    conn.execute(
        "UPDATE report_outbox SET delivered_at = ?, delivered_via = 'pull'"  # noqa: S608
        f" WHERE tenant_id IS ? AND delivered_at IS NULL AND id IN ({marks})",
        (now, tenant_id, *wanted),
    )
    rows = conn.execute(
        "SELECT id FROM report_outbox"  # noqa: S608
        f" WHERE tenant_id IS ? AND delivered_via = 'pull' AND id IN ({marks}) ORDER BY seq",
        (tenant_id, *wanted),
    ).fetchall()
    return [str(row[0]) for row in rows]


def tenants_with_pending(conn: sqlite3.Connection) -> set[str | None]:
    """Every tenant (None: the operator's pools) with an undelivered report."""
    rows = conn.execute(
        "SELECT DISTINCT tenant_id FROM report_outbox WHERE delivered_at IS NULL"
    ).fetchall()
    return {None if row[0] is None else str(row[0]) for row in rows}


def queue_status(conn: sqlite3.Connection, tenant_id: str | None) -> QueueStatus:
    """How many of the tenant's reports wait, by type, and the latest push error."""
    by_type = {
        str(row[0]): int(row[1])
        for row in conn.execute(
            "SELECT kind, count(*) FROM report_outbox WHERE tenant_id IS ?"
            " AND delivered_at IS NULL GROUP BY kind ORDER BY kind",
            (tenant_id,),
        )
    }
    oldest, next_at, failing = conn.execute(
        "SELECT min(created_at), min(next_attempt_at), count(last_error) FROM report_outbox"
        " WHERE tenant_id IS ? AND delivered_at IS NULL",
        (tenant_id,),
    ).fetchone()
    error = conn.execute(
        "SELECT last_error FROM report_outbox WHERE tenant_id IS ? AND delivered_at IS NULL"
        " AND last_error IS NOT NULL ORDER BY seq DESC LIMIT 1",
        (tenant_id,),
    ).fetchone()
    return QueueStatus(
        pending=sum(by_type.values()),
        pending_by_type=by_type,
        oldest_created_at=None if oldest is None else float(oldest),
        next_attempt_at=None if next_at is None else float(next_at),
        last_error=None if error is None else str(error[0]),
        failing=int(failing),
    )


def sweep_rows(
    conn: sqlite3.Connection, *, delivered_before: float, created_before: float
) -> tuple[int, int]:
    """Retention: delete reports delivered before ``delivered_before`` and undelivered ones
    created before ``created_before`` (expired: nobody took them in time). Returns both counts.
    """
    delivered = conn.execute(
        "DELETE FROM report_outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
        (delivered_before,),
    ).rowcount
    expired = conn.execute(
        "DELETE FROM report_outbox WHERE delivered_at IS NULL AND created_at < ?",
        (created_before,),
    ).rowcount
    return delivered, expired


# ------------------------------------------------------------------------------- push URLs


def _push_url(row: Sequence[object]) -> PushUrl:
    tenant, kind, url, created, updated = row
    return PushUrl(
        tenant_id=str(tenant),
        report_type=str(kind),
        url=str(url),
        created_at=float(created),  # type: ignore[arg-type]
        updated_at=float(updated),  # type: ignore[arg-type]
    )


async def set_push_url(
    db: Database, tenant_id: str, report_type: str, url: str, *, now: float
) -> PushUrl:
    """Create or replace the tenant's push URL of ``report_type``."""

    def op(conn: sqlite3.Connection) -> PushUrl:
        conn.execute(
            "INSERT INTO report_push_urls (tenant_id, report_type, url, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, report_type)"
            " DO UPDATE SET url = excluded.url, updated_at = excluded.updated_at",
            (tenant_id, report_type, url, now, now),
        )
        row = conn.execute(
            "SELECT tenant_id, report_type, url, created_at, updated_at FROM report_push_urls"
            " WHERE tenant_id = ? AND report_type = ?",
            (tenant_id, report_type),
        ).fetchone()
        return _push_url(tuple(row))

    return await db.write(op)


async def delete_push_url(db: Database, tenant_id: str, report_type: str) -> bool:
    """Remove the tenant's push URL of ``report_type``; False when it had none."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "DELETE FROM report_push_urls WHERE tenant_id = ? AND report_type = ?",
            (tenant_id, report_type),
        )
        return cursor.rowcount == 1

    return await db.write(op)


async def list_push_urls(db: Database, tenant_id: str | None = None) -> list[PushUrl]:
    """The push URLs of ``tenant_id`` (None: of every tenant), by tenant and type."""

    def fn(conn: sqlite3.Connection) -> list[PushUrl]:
        sql = "SELECT tenant_id, report_type, url, created_at, updated_at FROM report_push_urls"
        if tenant_id is None:
            rows = conn.execute(sql + " ORDER BY tenant_id, report_type").fetchall()
        else:
            rows = conn.execute(
                sql + " WHERE tenant_id = ? ORDER BY report_type", (tenant_id,)
            ).fetchall()
        return [_push_url(tuple(row)) for row in rows]

    return await db.read(fn)


# ------------------------------------------------------------------------------- pool warnings


async def load_warning_states(db: Database) -> dict[tuple[str, PoolWarning], bool]:
    """Every pool warning's state: (pool key, warning) → active."""

    def fn(conn: sqlite3.Connection) -> dict[tuple[str, PoolWarning], bool]:
        return {
            (str(row[0]), PoolWarning(str(row[1]))): bool(row[2])
            for row in conn.execute("SELECT pool_key, warning, active FROM pool_warning_states")
        }

    return await db.read(fn)


def set_warning_state_row(
    conn: sqlite3.Connection, pool_key: str, warning: PoolWarning, *, active: bool, now: float
) -> None:
    """Record whether the pool is past the threshold of ``warning`` (op building block)."""
    conn.execute(
        "INSERT INTO pool_warning_states (pool_key, warning, active, changed_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (pool_key, warning)"
        " DO UPDATE SET active = excluded.active, changed_at = excluded.changed_at",
        (pool_key, str(warning), int(active), now),
    )
