"""Monthly CSV export of call records (SPEC §7): one file per pool per month.

- Name: ``<pool key><YYYYMM>.csv`` (e.g. ``FC0123456789ABCDEF202612.csv``): the pool key and the
  local month, nothing else (no phone number in a file name).
- Content: UTF-8 **with a BOM**, so a spreadsheet opens the Chinese city names as such; RFC 4180
  (comma, ``"`` quoting, CRLF line ends); a header row of :data:`EXPORT_COLUMNS`, then one row per
  call record of the pool that ended in the month (local ``[time] zone``), oldest first.
- Columns: the SPEC §6 end-of-call fields with their reference names (times local
  ``YYYY-MM-DD HH:MM:SS``, empty when the call never reached that point), then ``duration_s``
  (answered seconds), ``billed_minutes`` (the call's minutes in the ledger: pay-as-you-go plus
  those drawn from prepaid packages), ``fee`` (Σ of the ledger lines rating the call: call time
  and recording; ``0.00`` for none),
  ``time_zone``.  Free text a tenant controls (``out_id``, ``city``, ``call_id``) that would start a
  spreadsheet formula is prefixed with ``'``.
- Files are written atomically (temporary file, fsync, rename, fsync of the directory): a reader
  sees either the previous file or the complete new one.

:func:`render_csv` is pure; :func:`pool_month_csv` reads the records and fees of a pool-month;
:func:`export_month` writes the files of several pools into a directory.
"""

from __future__ import annotations

import asyncio
import csv
import io
import operator
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from billing.statistics import PER_CALL_ITEMS, Month, call_record_id, money_text
from routing.model import PoolKey
from store.db import Database
from store.records import REPORT_FIELDS, TIME_FIELDS, CallRecord, local_time

# The store's own column list and row mapping of call records (one definition of the row).
from store.repositories import _CALL_COLUMNS, Pool, _call_record

__all__ = [
    "EXPORT_COLUMNS",
    "CallFee",
    "ExportFile",
    "PoolMonthCsv",
    "export_file_name",
    "export_month",
    "pool_month_csv",
    "pools_of_month",
    "render_csv",
    "write_atomically",
]

EXPORT_COLUMNS: Final = (*REPORT_FIELDS, "duration_s", "billed_minutes", "fee", "time_zone")
BOM: Final = "\ufeff"
# Cells a spreadsheet would evaluate as a formula; only free text a tenant controls is guarded.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT: Final = frozenset({"out_id", "city", "call_id"})
# A pool key as a file name part: no path separators, no dot-files (keys are FC + hex).
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class CallFee:
    """What the ledger charged for one call."""

    billed_minutes: int = 0
    amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PoolMonthCsv:
    """One export file's name and bytes."""

    pool_key: PoolKey
    month: Month
    name: str
    data: bytes
    calls: int


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A file :func:`export_month` wrote."""

    pool_key: PoolKey
    path: Path
    calls: int


def export_file_name(pool_key: str, month: Month) -> str:
    """``<pool key><YYYYMM>.csv``; ``ValueError`` for a key unfit for a file name."""
    if _SAFE_KEY.fullmatch(pool_key) is None:
        raise ValueError(f"pool key {pool_key!r} cannot name a file")
    return f"{pool_key}{month.period}.csv"


_FIELDS_OF: Final = operator.attrgetter(*REPORT_FIELDS)
_TIME_AT: Final = tuple(i for i, name in enumerate(REPORT_FIELDS) if name in TIME_FIELDS)
_FREE_TEXT_AT: Final = tuple(i for i, name in enumerate(REPORT_FIELDS) if name in _FREE_TEXT)
_NO_FEE: Final = CallFee()


def _cells(record: CallRecord, zone: ZoneInfo, fee: CallFee) -> list[str]:
    """One record's row in ``EXPORT_COLUMNS`` order."""
    values = _FIELDS_OF(record)
    # IntEnum fields (call_type ...) print as their number (Python >= 3.11).
    cells = ["" if value is None else str(value) for value in values]
    for at in _TIME_AT:
        cells[at] = local_time(values[at], zone) or ""
    for at in _FREE_TEXT_AT:
        if cells[at].startswith(_FORMULA_START):
            cells[at] = "'" + cells[at]  # CSV/formula injection guard for spreadsheet users
    cells += (
        f"{record.duration_s:g}",
        str(fee.billed_minutes),
        money_text(fee.amount),
        zone.key,
    )
    return cells


def render_csv(records: Iterable[CallRecord], fees: Mapping[str, CallFee], zone: ZoneInfo) -> bytes:
    """The export file's bytes: BOM, header, one row per record (``fees`` by record id)."""
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(_cells(record, zone, fees.get(record.id, _NO_FEE)) for record in records)
    return buffer.getvalue().encode("utf-8")


def _records_of(
    conn: sqlite3.Connection, pool_key: PoolKey, start: float, end: float
) -> list[CallRecord]:
    rows = conn.execute(
        f"SELECT {', '.join(_CALL_COLUMNS)} FROM call_records"  # noqa: S608
        " WHERE pool_key = ? AND release_time >= ? AND release_time < ?"
        " ORDER BY release_time, call_time, id",
        (pool_key, start, end),
    ).fetchall()
    return [_call_record(row) for row in rows]


def _fees_of(conn: sqlite3.Connection, pool: Pool, month: Month) -> dict[str, CallFee]:
    """Fees per call record id: the per-call ledger lines of the pool in the month.

    Rating writes a call's lines with the period of its release month, the month the export
    file covers, so the (tenant, period) index finds them all.
    """
    if pool.tenant_id is None:
        return {}  # the operator's own pools are not billed
    items = sorted(PER_CALL_ITEMS)
    marks = ", ".join("?" * len(items))
    rows = conn.execute(
        "SELECT item, ref, quantity, amount FROM ledger"  # noqa: S608  (marks only)
        f" WHERE tenant_id = ? AND period = ? AND pool_key = ? AND item IN ({marks})",
        (pool.tenant_id, month.period, pool.pool_key, *items),
    ).fetchall()
    minutes: dict[str, int] = {}
    amounts: dict[str, Decimal] = {}
    for item, ref, quantity, amount in rows:
        record_id = call_record_id(item, ref)
        if record_id is None:
            continue
        if item in ("call", "call_package"):  # pay-as-you-go and package minutes
            minutes[record_id] = minutes.get(record_id, 0) + int(quantity)
        amounts[record_id] = amounts.get(record_id, Decimal(0)) + Decimal(amount)
    return {
        record_id: CallFee(billed_minutes=minutes.get(record_id, 0), amount=amount)
        for record_id, amount in amounts.items()
    }


async def pool_month_csv(db: Database, pool: Pool, month: Month, zone: ZoneInfo) -> PoolMonthCsv:
    """The export file of ``pool`` for ``month`` (the caller checked the pool is visible)."""
    name = export_file_name(pool.pool_key, month)
    start, end = month.bounds(zone)

    def fn(conn: sqlite3.Connection) -> tuple[list[CallRecord], dict[str, CallFee]]:
        return _records_of(conn, pool.pool_key, start, end), _fees_of(conn, pool, month)

    records, fees = await db.read(fn)
    # Rendering is CPU work (tens of µs a row): off the event loop, which carries the calls.
    data = await asyncio.to_thread(render_csv, records, fees, zone)
    return PoolMonthCsv(
        pool_key=pool.pool_key, month=month, name=name, data=data, calls=len(records)
    )


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` atomically (and durably); returns the path.

    The directory is created if needed. ``name`` must be a plain file name.
    """
    if Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"not a plain file name: {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)
    return target


def pools_of_month(pools: Sequence[Pool], month: Month, zone: ZoneInfo) -> list[Pool]:
    """The pools that existed in ``month`` (created before its end), in the given order."""
    _, end = month.bounds(zone)
    return [pool for pool in pools if pool.created_at < end]


async def export_month(
    db: Database, pools: Sequence[Pool], month: Month, zone: ZoneInfo, directory: Path
) -> list[ExportFile]:
    """Write the export file of each of ``pools`` that existed in ``month`` into ``directory``.

    A pool without calls in the month gets a file with the header row only.
    """
    written: list[ExportFile] = []
    for pool in pools_of_month(pools, month, zone):
        export = await pool_month_csv(db, pool, month, zone)
        path = await asyncio.to_thread(write_atomically, directory, export.name, export.data)
        written.append(ExportFile(pool_key=pool.pool_key, path=path, calls=export.calls))
    return written
