"""Helpers of the inventory and migration tests: stock, tenants, pools, money, DB snapshots."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from api_support import Snapshot, snapshot_tables

from api.control import ControlPlane, ImportRow
from routing.model import BindingType, PhoneNumber, PoolKey
from store import create_tenant

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
# Every table an inventory operation may write.
INVENTORY_TABLES = (
    "numbers", "pools", "number_tenancies", "bindings", "ledger", "verification_policies",
    "migration_jobs", "migration_results",
)  # fmt: skip

# Stock: 40 virtual numbers in Beijing, 6 carrier numbers in Shenzhen, 3 numbers of Hainan
# (two cities), 3 95 numbers (one imported with a city name: 95 numbers are nationwide anyway).
BEIJING = [f"1700001{i:04d}" for i in range(40)]
SHENZHEN = [f"1710002{i:04d}" for i in range(6)]
HAINAN = {"17000030000": "海口", "17000030001": "三亚", "17000030002": "三亚市"}
NINE_FIVE = ["950130000101", "950130000102", "950130000103"]


def e164(national: str) -> PhoneNumber:
    """``+86`` + national digits (the test numbers are mobiles, 170s and 950s)."""
    return PhoneNumber("+86" + national)


def stock_rows() -> list[ImportRow]:
    """The test stock as import rows."""
    rows = [ImportRow(n, "北京", "北京", "CMCC", 1) for n in BEIJING]
    rows += [ImportRow(n, "深圳", "广东", "CUCC", 2) for n in SHENZHEN]
    rows += [ImportRow(n, city, "海南", "CTCC", 1) for n, city in HAINAN.items()]
    rows += [ImportRow(NINE_FIVE[0], "全国", "全国", "CTCC", 3)]
    rows += [ImportRow(n, "北京", "北京", "CTCC", 3) for n in NINE_FIVE[1:]]
    return rows


async def setup_stock(control: ControlPlane) -> None:
    """Import the test stock and create tenants A and B (no money yet)."""
    assert await control.import_numbers(stock_rows()) == len(stock_rows())
    now = control.clock()
    await create_tenant(control.db, tenant_id=TENANT_A, name="A", now=now)
    await create_tenant(control.db, tenant_id=TENANT_B, name="B", now=now)


async def tenant_pool(
    control: ControlPlane, type_: BindingType = BindingType.AXB, tenant: str | None = TENANT_A
) -> PoolKey:
    """A new pool of ``tenant`` (None: an operator pool)."""
    return await control.create_pool(type_, f"{type_.value} pool", tenant_id=tenant)


async def funded(control: ControlPlane, tenant: str, amount: str) -> None:
    """Top up ``tenant`` by ``amount``."""
    await control.inventory.topup(tenant, Decimal(amount))


def snapshot(db_path: Path) -> Snapshot:
    """Every row of every inventory table: "nothing written" means equal snapshots."""
    return snapshot_tables(db_path, INVENTORY_TABLES)


def rows(db_path: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    """The rows of one query (through a separate connection)."""
    conn = sqlite3.connect(db_path)
    try:
        return [tuple(r) for r in conn.execute(query, params)]
    finally:
        conn.close()
