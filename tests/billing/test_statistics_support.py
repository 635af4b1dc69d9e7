"""A hand-made month of calls and ledger lines for the statistics and export tests.

Everything is inserted directly through the store (no rating code runs): two tenants, their
pools, call records of December 2026 (Asia/Shanghai) and around it, and the ledger lines rating
would have written for them (per the contract in the ``billing`` docstring). The expected
figures are written out by hand in the tests that use it.

No tests here; the module name keeps it inside the files of the statistics tests.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from routing.model import BindingType, PhoneNumber, PoolKey, SubId
from store import CallRecord, CallType, Database, ReleaseDir, UnconnectedCause
from store.ledger import insert_entry_in
from store.repositories import create_pool, create_tenant, insert_call_record

ZONE = ZoneInfo("Asia/Shanghai")

X1 = PhoneNumber("+8617000000001")
X2 = PhoneNumber("+8617000000002")
X3 = PhoneNumber("+8617100000001")
Y1 = PhoneNumber("+8617000000009")
A = PhoneNumber("+8613800138000")
B = PhoneNumber("+8613900139000")
N = PhoneNumber("+8613700137000")


def at(*wall_clock: int) -> float:
    """UTC epoch seconds of a local (Asia/Shanghai) time: year, month, day[, h[, m[, s]]]."""
    year, month, day, hour, minute, second = (*wall_clock, 0, 0, 0)[:6]
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=ZONE).timestamp()


@dataclass
class Month:
    """The identifiers of the fixture."""

    db: Database
    t1: str
    t2: str
    axb: PoolKey  # T1's AXB pool: X1, X2
    axn: PoolKey  # T1's AXN pool: X3
    other: PoolKey  # T2's AXB pool: Y1
    late: PoolKey  # T1's AXB pool created in January 2027


def _record(
    record_id: str,
    pool: PoolKey,
    x: PhoneNumber,
    *,
    call_type: CallType,
    call_time: float,
    release_time: float,
    start_time: float | None = None,
    cause: int = 16,
    unconnected: UnconnectedCause = UnconnectedCause.NORMAL,
    out_id: str | None = None,
    city: str | None = "北京",
) -> CallRecord:
    answered = start_time is not None
    return CallRecord(
        id=record_id,
        call_id=f"call-{record_id}",
        secret_no=x,
        call_type=call_type,
        call_time=call_time,
        release_time=release_time,
        release_dir=ReleaseDir.CALLER,
        release_cause=cause,
        unconnected_cause=unconnected,
        pool_key=pool,
        sub_id=SubId("100000000000000001"),
        phone_no=A,
        peer_no=None if call_type is CallType.CALL_INTERCEPTED else B,
        called_display_no=x,
        city=city,
        call_out_time=None if call_type is CallType.CALL_INTERCEPTED else call_time + 1,
        ring_time=call_time + 2 if answered else None,
        start_time=start_time,
        out_id=out_id,
        duration_s=0.0 if start_time is None else release_time - start_time,
    )


async def build_month(db: Database) -> Month:
    """Insert the fixture into ``db`` (a migrated, empty database)."""
    t1, t2 = "T1000000000001", "T2000000000002"
    created = at(2026, 11, 1)
    await create_tenant(db, tenant_id=t1, name="Tenant One", now=created)
    await create_tenant(db, tenant_id=t2, name="Tenant Two", now=created)
    # One second apart: pools are listed in creation order.
    axb = await create_pool(db, type=BindingType.AXB, name="AXB", tenant_id=t1, now=created)
    axn = await create_pool(db, type=BindingType.AXN, name="AXN", tenant_id=t1, now=created + 1)
    other = await create_pool(db, type=BindingType.AXB, name="B", tenant_id=t2, now=created + 2)
    late = await create_pool(
        db, type=BindingType.AXB, name="late", tenant_id=t1, now=at(2027, 1, 2)
    )

    records = [
        # T1 AXB, December: answered 90 s (2 min, recorded), answered 45 s, busy, intercepted,
        # an SMS record; one in November and one across midnight into January.
        _record(
            "r1", axb, X1, call_type=CallType.A_TO_PEER, call_time=at(2026, 12, 5, 10),
            start_time=at(2026, 12, 5, 10, 0, 10), release_time=at(2026, 12, 5, 10, 1, 40),
            out_id="订单-甲",
        ),
        _record(
            "r2", axb, X2, call_type=CallType.PEER_TO_A, call_time=at(2026, 12, 20, 9),
            start_time=at(2026, 12, 20, 9, 0, 5), release_time=at(2026, 12, 20, 9, 0, 50),
            out_id="=HYPERLINK(1)",
        ),
        _record(
            "r6", axb, X1, call_type=CallType.A_TO_PEER, call_time=at(2026, 12, 20, 11),
            release_time=at(2026, 12, 20, 11, 0, 8), cause=17,
        ),
        _record(
            "s1", axb, X1, call_type=CallType.SMS_RECEIVED, call_time=at(2026, 12, 21, 8),
            release_time=at(2026, 12, 21, 8),
        ),
        _record(
            "r7", axb, X2, call_type=CallType.CALL_INTERCEPTED, call_time=at(2026, 12, 31, 23, 59),
            release_time=at(2026, 12, 31, 23, 59, 3), cause=21,
            unconnected=UnconnectedCause.NO_BINDING, city="深圳",
        ),
        _record(
            "r0", axb, X1, call_type=CallType.A_TO_PEER, call_time=at(2026, 11, 30, 23, 58),
            start_time=at(2026, 11, 30, 23, 58, 30), release_time=at(2026, 11, 30, 23, 59, 59),
        ),
        _record(
            "r5", axb, X1, call_type=CallType.A_TO_PEER, call_time=at(2026, 12, 31, 23, 59),
            start_time=at(2026, 12, 31, 23, 59, 30), release_time=at(2027, 1, 1, 0, 0, 30),
        ),
        # T1 AXN: answered 150 s (3 min), paid by a package.
        _record(
            "r3", axn, X3, call_type=CallType.PEER_TO_A, call_time=at(2026, 12, 10, 8),
            start_time=at(2026, 12, 10, 8, 0, 1), release_time=at(2026, 12, 10, 8, 2, 31),
        ),
        # T2: answered 30 s.
        _record(
            "r4", other, Y1, call_type=CallType.A_TO_PEER, call_time=at(2026, 12, 15, 12),
            start_time=at(2026, 12, 15, 12, 0, 2), release_time=at(2026, 12, 15, 12, 0, 32),
        ),
    ]  # fmt: skip
    for record in records:
        await insert_call_record(db, record)

    rated = at(2027, 1, 1, 1)
    lines: list[dict[str, object]] = [
        # T1, December.
        dict(tenant_id=t1, item="topup", amount=Decimal("100.00")),
        dict(tenant_id=t1, item="rent", pool_key=axb, number=X1, period="202612", unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{X1}:202612:h1"),
        dict(tenant_id=t1, item="rent", pool_key=axb, number=X2, period="202612", unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{X2}:202612:h2"),
        dict(tenant_id=t1, item="rent", pool_key=axn, number=X3, period="202612", unit="month",
             unit_price=Decimal("15.00"), amount=Decimal("15.00"), ref=f"rent:{X3}:202612:h3"),
        dict(tenant_id=t1, item="call", pool_key=axb, number=X1, period="202612", quantity=2,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.22"), ref="r1"),
        dict(tenant_id=t1, item="recording", pool_key=axb, number=X1, period="202612", quantity=2,
             unit="minute", unit_price=Decimal("0.01"), amount=Decimal("0.02"), ref="r1"),
        dict(tenant_id=t1, item="call", pool_key=axb, number=X2, period="202612", quantity=1,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.11"), ref="r2"),
        dict(tenant_id=t1, item="call", pool_key=axn, number=X3, period="202612", quantity=0,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0"), ref="r3"),
        dict(tenant_id=t1, item="call_package", pool_key=axn, number=X3, period="202612",
             quantity=3, unit="minute", unit_price=Decimal("0"), amount=Decimal("0"),
             ref="r3:pkg1"),
        dict(tenant_id=t1, item="package", period="202612", unit="package",
             unit_price=Decimal("30.00"), amount=Decimal("30.00"), ref="package:pkg1"),
        dict(tenant_id=t1, item="discount", pool_key=axb, period="202612",
             unit_price=Decimal("-1.50"), amount=Decimal("-1.50"), ref="discount:d1"),
        # T1, November and January.
        dict(tenant_id=t1, item="rent", pool_key=axb, number=X1, period="202611", unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{X1}:202611"),
        dict(tenant_id=t1, item="call", pool_key=axb, number=X1, period="202611", quantity=2,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.22"), ref="r0"),
        dict(tenant_id=t1, item="call", pool_key=axb, number=X1, period="202701", quantity=1,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.11"), ref="r5"),
        dict(tenant_id=t1, item="rent", pool_key=axb, number=X1, period="202701", unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{X1}:202701:h1"),
        # T2, December.
        dict(tenant_id=t2, item="rent", pool_key=other, number=Y1, period="202612", unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{Y1}:202612:h4"),
        dict(tenant_id=t2, item="call", pool_key=other, number=Y1, period="202612", quantity=1,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.11"), ref="r4"),
    ]  # fmt: skip

    def op(conn: sqlite3.Connection) -> None:
        for line in lines:
            insert_entry_in(conn, created_at=rated, **line)  # type: ignore[arg-type]

    await db.write(op)
    return Month(db=db, t1=t1, t2=t2, axb=axb, axn=axn, other=other, late=late)
