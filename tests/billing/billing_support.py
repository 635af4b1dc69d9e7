"""Helpers of the billing tests: local times, call records, recordings, ledger reads."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from api_support import ZONE

from media.recording import RecordingFile
from routing.model import PhoneNumber, PoolKey
from store import CallRecord, CallType, Database, ReleaseDir
from store.recordings import attach_recording
from store.repositories import insert_call_record

A_REAL = PhoneNumber("+8613800138000")
B_REAL = PhoneNumber("+8613900139000")


def at(*parts: int) -> float:
    """A local (Asia/Shanghai) time ``year, month, day[, hour, minute, second]`` as UTC epoch s."""
    year, month, day, *clock = parts
    return dt.datetime(year, month, day, *clock, tzinfo=ZONE).timestamp()


def call(
    record_id: str,
    *,
    pool_key: str | None,
    x: str,
    start: float | None,
    release: float,
    call_type: CallType = CallType.A_TO_PEER,
    recording_path: str | None = None,
) -> CallRecord:
    """A call record as the engine writes it (answered when ``start`` is given)."""
    call_time = (start if start is not None else release) - 5
    return CallRecord(
        id=record_id,
        call_id=f"call-{record_id}",
        secret_no=PhoneNumber(x),
        call_type=call_type,
        call_time=call_time,
        release_time=release,
        release_dir=ReleaseDir.CALLER,
        release_cause=16 if start is not None else 19,
        pool_key=None if pool_key is None else PoolKey(pool_key),
        phone_no=A_REAL,
        peer_no=B_REAL,
        ring_time=call_time + 1,
        start_time=start,
        duration_s=0.0 if start is None else release - start,
        recording_path=recording_path,
    )


async def store_call(db: Database, record: CallRecord) -> CallRecord:
    """Insert the record (as the engine's CallRecorder does) and return it."""
    await insert_call_record(db, record)
    return record


async def add_recording(db: Database, record: CallRecord, duration_s: float, folder: Path) -> None:
    """A real WAV-sized file and its "recording ready" event for the record's call."""
    path = folder / f"{record.call_id}.wav"
    path.write_bytes(b"\0" * 44)
    await attach_recording(
        db,
        call_id=record.call_id,
        file=RecordingFile(path=path, duration_s=duration_s, size_bytes=44),
        pool_key=record.pool_key,
    )


@dataclass(frozen=True)
class Line:
    """A ledger row as the tests compare it."""

    tenant_id: str
    pool_key: str | None
    number: str | None
    item: str
    period: str | None
    quantity: int
    unit: str | None
    unit_price: Decimal | None
    amount: Decimal
    ref: str | None


def ledger(db_path: Path, *, tenant: str | None = None, item: str | None = None) -> list[Line]:
    """Ledger rows in write order, read through a separate connection."""
    sql = (
        "SELECT tenant_id, pool_key, number, item, period, quantity, unit, unit_price, amount,"
        " ref FROM ledger WHERE 1"
    )
    params: list[object] = []
    if tenant is not None:
        sql += " AND tenant_id = ?"
        params.append(tenant)
    if item is not None:
        sql += " AND item = ?"
        params.append(item)
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(sql + " ORDER BY id", params).fetchall()
    finally:
        conn.close()
    return [
        Line(
            tenant_id=r[0],
            pool_key=r[1],
            number=r[2],
            item=r[3],
            period=r[4],
            quantity=r[5],
            unit=r[6],
            unit_price=None if r[7] is None else Decimal(r[7]),
            amount=Decimal(r[8]),
            ref=r[9],
        )
        for r in rows
    ]


def total(lines: list[Line], *, period: str | None = None) -> Decimal:
    """Σ amount of the charge lines (top-ups excluded), optionally of one month."""
    return sum(
        (
            line.amount
            for line in lines
            if line.item != "topup" and (period is None or line.period == period)
        ),
        Decimal(0),
    )
