"""The money ledger (SPEC §7): immutable rows, exact ``Decimal`` amounts stored as TEXT.

Sign convention: top-ups and charges are written as positive amounts, discounts (and reversals
of charges) as negative ones; an entry's ``item`` says which side of the account it is on.

    balance = Σ amount of ``topup`` entries − Σ amount of every other entry

so a negative discount line adds back to the balance.  The sync helpers (``*_in``) run inside a
caller's write op, so a charge and the balance check that allows it are one transaction.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from store.db import Database

__all__ = [
    "TOPUP",
    "LedgerEntry",
    "UnknownTenantError",
    "balance",
    "balance_in",
    "entries",
    "insert_entry_in",
    "ref_taken_in",
    "topup",
]

#: The ledger item that credits the account; every other item debits it.
TOPUP: Final = "topup"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row."""

    id: int
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
    created_at: float


def balance_in(conn: sqlite3.Connection, tenant_id: str) -> Decimal:
    """The tenant's balance as seen by ``conn`` (inside a read or write transaction)."""
    total = Decimal(0)
    for item, amount in conn.execute(
        "SELECT item, amount FROM ledger WHERE tenant_id = ?", (tenant_id,)
    ):
        # Summed in Python: SQLite's sum() would go through REAL and lose exactness.
        value = Decimal(amount)
        total = total + value if item == TOPUP else total - value
    return total


def insert_entry_in(
    conn: sqlite3.Connection,
    *,
    tenant_id: str,
    item: str,
    amount: Decimal,
    created_at: float,
    pool_key: str | None = None,
    number: str | None = None,
    period: str | None = None,
    quantity: int = 1,
    unit: str | None = None,
    unit_price: Decimal | None = None,
    ref: str | None = None,
) -> int:
    """Append one entry inside the caller's transaction; returns its id."""
    cursor = conn.execute(
        "INSERT INTO ledger (tenant_id, pool_key, number, item, period, quantity, unit,"
        " unit_price, amount, ref, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            tenant_id,
            pool_key,
            number,
            item,
            period,
            quantity,
            unit,
            None if unit_price is None else str(unit_price),
            str(amount),
            ref,
            created_at,
        ),
    )
    return int(cursor.lastrowid or 0)


def ref_taken_in(conn: sqlite3.Connection, item: str, ref: str) -> bool:
    """Whether an entry of ``item`` with ``ref`` exists (rating is idempotent per (item, ref))."""
    row = conn.execute("SELECT 1 FROM ledger WHERE item = ? AND ref = ?", (item, ref)).fetchone()
    return row is not None


class UnknownTenantError(LookupError):
    """The tenant of a ledger operation does not exist."""


async def topup(
    db: Database, tenant_id: str, amount: Decimal, *, now: float | None = None
) -> Decimal:
    """Credit ``amount`` to the tenant; returns the new balance.

    The caller validates the amount; ``UnknownTenantError`` for a tenant that does not exist.
    """
    created = time.time() if now is None else now

    def op(conn: sqlite3.Connection) -> Decimal:
        if conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
            raise UnknownTenantError(tenant_id)
        insert_entry_in(conn, tenant_id=tenant_id, item=TOPUP, amount=amount, created_at=created)
        return balance_in(conn, tenant_id)

    return await db.write(op)


async def balance(db: Database, tenant_id: str) -> Decimal:
    """The tenant's balance; ``UnknownTenantError`` for a tenant that does not exist."""

    def fn(conn: sqlite3.Connection) -> Decimal:
        if conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
            raise UnknownTenantError(tenant_id)
        return balance_in(conn, tenant_id)

    return await db.read(fn)


def _entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        id=row["id"],
        tenant_id=row["tenant_id"],
        pool_key=row["pool_key"],
        number=row["number"],
        item=row["item"],
        period=row["period"],
        quantity=row["quantity"],
        unit=row["unit"],
        unit_price=None if row["unit_price"] is None else Decimal(row["unit_price"]),
        amount=Decimal(row["amount"]),
        ref=row["ref"],
        created_at=row["created_at"],
    )


async def entries(
    db: Database, tenant_id: str, *, item: str | None = None, number: str | None = None
) -> list[LedgerEntry]:
    """The tenant's entries (optionally of one item and/or number), oldest first."""
    where = "tenant_id = ?"
    params: list[object] = [tenant_id]
    if item is not None:
        where += " AND item = ?"
        params.append(item)
    if number is not None:
        where += " AND number = ?"
        params.append(number)

    def fn(conn: sqlite3.Connection) -> list[LedgerEntry]:
        rows = conn.execute(
            f"SELECT * FROM ledger WHERE {where} ORDER BY id",  # noqa: S608
            params,
        ).fetchall()
        return [_entry(r) for r in rows]

    return await db.read(fn)
