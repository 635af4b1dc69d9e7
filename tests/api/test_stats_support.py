"""A small billed month for the statistics REST and CLI tests (no tests here).

January 2030 (Asia/Shanghai), inserted directly through the store: tenant A with an AXB pool
(rent of one number; a 61 s call rated 2 minutes, a busy call) and tenant B with one pool (rent,
a 30 s call) — the ledger lines rating would have written for them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from api_support import Api, local
from tenants_support import basic

from routing.model import BindingType, PhoneNumber, PoolKey
from store import CallRecord, CallType, ReleaseDir
from store.ledger import insert_entry_in
from store.repositories import insert_call_record

# 2030-01-05 10:00:00 Asia/Shanghai (START of the api fixture is 2030-01-01 12:00:00).
JAN_5 = 1_893_808_800.0
XA = PhoneNumber("+8617000000001")
XB = PhoneNumber("+8617000000002")


@dataclass
class World:
    """Two tenants with a pool each and their credentials."""

    a: str
    b: str
    pool_a: PoolKey
    pool_b: PoolKey
    as_a: dict[str, str]
    as_b: dict[str, str]


def _call(
    record_id: str, pool: PoolKey, x: PhoneNumber, *, at: float, talk_s: float | None
) -> CallRecord:
    answered = talk_s is not None
    return CallRecord(
        id=record_id,
        call_id=f"call-{record_id}",
        secret_no=x,
        call_type=CallType.A_TO_PEER,
        call_time=at,
        release_time=at + 5 + (talk_s or 0),
        release_dir=ReleaseDir.CALLER,
        release_cause=16 if answered else 17,
        pool_key=pool,
        phone_no=PhoneNumber("+8613800138000"),
        peer_no=PhoneNumber("+8613900139000"),
        called_display_no=x,
        city="北京",
        call_out_time=at + 1,
        ring_time=at + 2 if answered else None,
        start_time=at + 5 if answered else None,
        out_id="订单一" if answered else None,
        duration_s=talk_s or 0.0,
    )


async def build_world(api: Api) -> World:
    """Insert the month; returns its identifiers."""
    assert local(JAN_5) == "2030-01-05 10:00:00"
    control = api.control
    a = await control.tenants.create_tenant("Tenant A")
    b = await control.tenants.create_tenant("Tenant B")
    pool_a = await control.create_pool(BindingType.AXB, "A's", a.tenant_id)
    pool_b = await control.create_pool(BindingType.AXB, "B's", b.tenant_id)
    for record in (
        _call("ca1", pool_a, XA, at=JAN_5, talk_s=61.0),
        _call("ca2", pool_a, XA, at=JAN_5 + 3600, talk_s=None),
        _call("cb1", pool_b, XB, at=JAN_5, talk_s=30.0),
    ):
        await insert_call_record(control.db, record)
    lines: list[dict[str, Any]] = [
        dict(tenant_id=a.tenant_id, item="rent", pool_key=pool_a, number=XA, unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{XA}:203001"),
        dict(tenant_id=a.tenant_id, item="call", pool_key=pool_a, number=XA, quantity=2,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.22"), ref="ca1"),
        dict(tenant_id=b.tenant_id, item="rent", pool_key=pool_b, number=XB, unit="month",
             unit_price=Decimal("5.00"), amount=Decimal("5.00"), ref=f"rent:{XB}:203001"),
        dict(tenant_id=b.tenant_id, item="call", pool_key=pool_b, number=XB, quantity=1,
             unit="minute", unit_price=Decimal("0.11"), amount=Decimal("0.11"), ref="cb1"),
    ]  # fmt: skip

    def op(conn: sqlite3.Connection) -> None:
        for line in lines:
            insert_entry_in(conn, period="203001", created_at=JAN_5 + 7200, **line)

    await control.db.write(op)
    return World(
        a=a.tenant_id,
        b=b.tenant_id,
        pool_a=pool_a,
        pool_b=pool_b,
        as_a=basic(a.access_key_id, a.access_key_secret),
        as_b=basic(b.access_key_id, b.access_key_secret),
    )
