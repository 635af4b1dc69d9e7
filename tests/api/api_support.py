"""Helpers of the API tests: inventory, a settable clock, the ``Api`` bundle and DB snapshots."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from api.control import ControlPlane

TOKEN = "test-operator-token"
ZONE = ZoneInfo("Asia/Shanghai")
# 2030-01-01 12:00:00 Asia/Shanghai.
START = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=ZONE).timestamp()
TABLES = (
    "numbers", "pools", "number_tenancies", "groups", "group_members", "bindings", "call_records",
    "tenants", "api_keys", "ledger", "blacklists", "blacklist_pairs",
)  # fmt: skip

# Inventory: ten 170 virtual numbers in Beijing, five carrier numbers in Shenzhen, two 950s.
CSV_HEADER = "number,city,province,carrier,spec\n"
BEIJING_X = [f"1700000{i:04d}" for i in range(10)]
SHENZHEN_X = [f"1710000{i:04d}" for i in range(5)]
NATIONWIDE_X = ["950130000001", "950130000002"]
INVENTORY_CSV = (
    CSV_HEADER
    + "".join(f"{n},北京,北京,CMCC,1\n" for n in BEIJING_X)
    + "".join(f"{n},深圳,广东,CUCC,2\n" for n in SHENZHEN_X)
    + "".join(f"{n},全国,全国,CTCC,3\n" for n in NATIONWIDE_X)
)


Snapshot = dict[str, list[tuple[object, ...]]]


def snapshot_tables(db_path: Path, tables: Iterable[str] | None = None) -> Snapshot:
    """Every row of ``tables`` (None: every table of the database), sorted, read through a
    separate connection: "nothing written" means two equal snapshots."""
    conn = sqlite3.connect(db_path)
    try:
        if tables is None:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
        return {
            table: sorted(
                (tuple(row) for row in conn.execute(f"SELECT * FROM {table}")),
                key=repr,
            )
            for table in tables
        }
    finally:
        conn.close()


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def local(epoch_s: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in Asia/Shanghai."""
    return dt.datetime.fromtimestamp(epoch_s, tz=ZONE).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Api:
    """Everything a test needs: the client, the control plane, the clock, the db file."""

    client: httpx.AsyncClient
    control: ControlPlane
    clock: Clock
    db_path: Path

    def counts(self) -> dict[str, int]:
        """Row counts of every table the control plane writes (through a separate connection)."""
        return {table: len(rows) for table, rows in self.snapshot().items()}

    def snapshot(self) -> Snapshot:
        """Every row of every table the control plane writes: "nothing written" means equal."""
        return snapshot_tables(self.db_path, TABLES)

    async def import_inventory(self) -> None:
        response = await self.client.post(
            "/v1/numbers/import",
            content=INVENTORY_CSV.encode(),
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 200, response.text

    async def pool(self, type_: str, *, count: int = 0, city: str | None = None) -> str:
        response = await self.client.post(
            "/v1/pools", json={"type": type_, "name": f"{type_} pool"}
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["pool_key"]
        if count:
            added = await self.client.post(
                f"/v1/pools/{key}/numbers", json={"count": count, "city": city}
            )
            assert added.status_code == 200, added.text
        return key

    def expires(self, ahead_s: float = 3600) -> str:
        return local(self.clock.now + ahead_s)
