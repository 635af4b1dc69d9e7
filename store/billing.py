"""Billing persistence (SPEC §7): tariff overrides, prepaid minute packages, discounts, the
rating job's cursors, and the reads rating needs (migration 0006; ledger lines in ``ledger``).

Same conventions as the other repositories: times UTC epoch seconds, money ``Decimal`` stored as
TEXT, one transaction per write.  The ``*_in`` functions run inside a caller's transaction
(``db.write(op)`` / ``db.read(fn)``) so that rating reads, checks and writes in one.  Refused
writes raise a :class:`store.StoreError` subclass before changing anything.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from routing.model import NumberSpec, PhoneNumber, PoolKey
from store.db import Database, StoreError
from store.ledger import (
    LedgerEntry,
    UnknownTenantError,
    _entry,
    balance_in,
    insert_entry_in,
)
from store.records import CallRecord, CallType, ReleaseDir, UnconnectedCause
from store.repositories import _CALL_COLUMNS, new_numeric_id

__all__ = [
    "TARIFF_COLUMNS",
    "BalanceTooLowError",
    "HeldNumber",
    "PackageRow",
    "PoolNotOfTenantError",
    "UnknownTenantError",
    "call_records_after_in",
    "draw_in",
    "first_tenancy_in",
    "get_state_in",
    "held_numbers_in",
    "insert_discount",
    "insert_package",
    "last_recording_event_in",
    "list_discounts",
    "list_packages",
    "pool_tenant_in",
    "recording_duration_in",
    "recording_events_after_in",
    "set_state_in",
    "set_tariff_overrides",
    "tariff_overrides",
    "tariff_overrides_in",
    "usable_packages_in",
]

#: Price columns of ``billing_tariffs`` (the field names of ``billing.tariffs.Tariff``).
TARIFF_COLUMNS: Final[tuple[str, ...]] = (
    "rent_virtual",
    "rent_carrier",
    "rent_95",
    "call_per_minute",
    "recording_per_minute",
    "sms_intercept_per_segment",
    "sms_smart_per_segment",
)


class BalanceTooLowError(StoreError):
    """The tenant's balance does not cover a purchase (a minute package)."""

    def __init__(self, *, balance: Decimal, needed: Decimal) -> None:
        """Carry both amounts so the API can say what is missing."""
        super().__init__(f"balance {balance} does not cover {needed}")
        self.balance = balance
        self.needed = needed


class PoolNotOfTenantError(StoreError):
    """The pool named for a discount does not exist or belongs to another tenant."""


def _check_tenant(conn: sqlite3.Connection, tenant_id: str) -> None:
    if conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
        raise UnknownTenantError(tenant_id)


# ---------------------------------------------------------------------------------------------
# Tariff overrides


def tariff_overrides_in(conn: sqlite3.Connection, tenant_id: str) -> dict[str, Decimal]:
    """The tenant's overridden prices by column (absent: the default applies)."""
    row = conn.execute(
        f"SELECT {', '.join(TARIFF_COLUMNS)} FROM billing_tariffs"  # noqa: S608
        " WHERE tenant_id = ?",
        (tenant_id,),
    ).fetchone()
    if row is None:
        return {}
    return {
        name: Decimal(value)
        for name, value in zip(TARIFF_COLUMNS, tuple(row), strict=True)
        if value is not None
    }


async def tariff_overrides(db: Database, tenant_id: str) -> dict[str, Decimal]:
    """See :func:`tariff_overrides_in`; ``UnknownTenantError`` for a tenant that does not exist."""

    def fn(conn: sqlite3.Connection) -> dict[str, Decimal]:
        _check_tenant(conn, tenant_id)
        return tariff_overrides_in(conn, tenant_id)

    return await db.read(fn)


async def set_tariff_overrides(
    db: Database, tenant_id: str, changes: Mapping[str, Decimal | None], *, now: float
) -> dict[str, Decimal]:
    """Apply ``changes`` (column → price, None: back to the default) to the tenant's overrides;
    returns the overrides after the change.  Columns not named keep their value.

    ``UnknownTenantError`` for a tenant that does not exist, ``KeyError`` for an unknown column.
    """
    for name in changes:
        if name not in TARIFF_COLUMNS:
            raise KeyError(name)

    def op(conn: sqlite3.Connection) -> dict[str, Decimal]:
        _check_tenant(conn, tenant_id)
        merged: dict[str, Decimal | None] = dict(tariff_overrides_in(conn, tenant_id))
        merged.update(changes)
        values = [None if merged.get(c) is None else str(merged[c]) for c in TARIFF_COLUMNS]
        conn.execute(
            f"INSERT INTO billing_tariffs (tenant_id, {', '.join(TARIFF_COLUMNS)}, updated_at)"  # noqa: S608
            f" VALUES (?, {', '.join('?' * len(TARIFF_COLUMNS))}, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in TARIFF_COLUMNS)
            + ", updated_at = excluded.updated_at",
            (tenant_id, *values, now),
        )
        return tariff_overrides_in(conn, tenant_id)

    return await db.write(op)


# ---------------------------------------------------------------------------------------------
# Packages


@dataclass(frozen=True, slots=True)
class PackageRow:
    """A prepaid call-minute package as stored."""

    id: str
    tenant_id: str
    name: str
    price: Decimal
    minutes: int
    used_minutes: int
    valid_from: float
    valid_until: float  # exclusive
    created_at: float

    @property
    def remaining(self) -> int:
        """Minutes not used yet (expired or not)."""
        return self.minutes - self.used_minutes


_PACKAGE_COLUMNS: Final = (
    "id, tenant_id, name, price, minutes, used_minutes, valid_from, valid_until, created_at"
)


def _package(row: sqlite3.Row) -> PackageRow:
    return PackageRow(
        id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        name=str(row["name"]),
        price=Decimal(row["price"]),
        minutes=int(row["minutes"]),
        used_minutes=int(row["used_minutes"]),
        valid_from=float(row["valid_from"]),
        valid_until=float(row["valid_until"]),
        created_at=float(row["created_at"]),
    )


async def insert_package(
    db: Database,
    *,
    tenant_id: str,
    name: str,
    price: Decimal,
    minutes: int,
    valid_from: float,
    valid_until: float,
    period: str,
    now: float,
) -> PackageRow:
    """Sell a package: its row and its ``package`` ledger line (ref ``package:<id>``, period
    ``period``), in one transaction, only if the balance covers ``price``.

    ``UnknownTenantError``, ``BalanceTooLowError``: nothing written.
    """
    package_id = new_numeric_id()

    def op(conn: sqlite3.Connection) -> PackageRow:
        _check_tenant(conn, tenant_id)
        available = balance_in(conn, tenant_id)
        if available < price:
            raise BalanceTooLowError(balance=available, needed=price)
        conn.execute(
            f"INSERT INTO billing_packages ({_PACKAGE_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
            (package_id, tenant_id, name, str(price), minutes, valid_from, valid_until, now),
        )
        insert_entry_in(
            conn,
            tenant_id=tenant_id,
            item="package",
            amount=price,
            created_at=now,
            period=period,
            quantity=1,
            unit="package",
            unit_price=price,
            ref=f"package:{package_id}",
        )
        row = conn.execute(
            f"SELECT {_PACKAGE_COLUMNS} FROM billing_packages WHERE id = ?",  # noqa: S608
            (package_id,),
        ).fetchone()
        return _package(row)

    return await db.write(op)


async def list_packages(db: Database, tenant_id: str) -> list[PackageRow]:
    """The tenant's packages, oldest purchase first; ``UnknownTenantError`` for no tenant."""

    def fn(conn: sqlite3.Connection) -> list[PackageRow]:
        _check_tenant(conn, tenant_id)
        rows = conn.execute(
            f"SELECT {_PACKAGE_COLUMNS} FROM billing_packages"  # noqa: S608
            " WHERE tenant_id = ? ORDER BY created_at, rowid",
            (tenant_id,),
        ).fetchall()
        return [_package(r) for r in rows]

    return await db.read(fn)


def usable_packages_in(conn: sqlite3.Connection, tenant_id: str, at: float) -> list[PackageRow]:
    """The tenant's packages valid at ``at`` with minutes left, in drawing order."""
    rows = conn.execute(
        f"SELECT {_PACKAGE_COLUMNS} FROM billing_packages"  # noqa: S608
        " WHERE tenant_id = ? AND valid_from <= ? AND valid_until > ? AND used_minutes < minutes"
        " ORDER BY valid_until, created_at, id",
        (tenant_id, at, at),
    ).fetchall()
    return [_package(r) for r in rows]


def draw_in(conn: sqlite3.Connection, package_id: str, minutes: int) -> None:
    """Use ``minutes`` more of a package (the table's CHECK refuses drawing more than it has)."""
    conn.execute(
        "UPDATE billing_packages SET used_minutes = used_minutes + ? WHERE id = ?",
        (minutes, package_id),
    )


# ---------------------------------------------------------------------------------------------
# Discounts


async def insert_discount(
    db: Database,
    *,
    tenant_id: str,
    period: str,
    amount: Decimal,
    pool_key: PoolKey | None,
    now: float,
) -> LedgerEntry:
    """Grant ``amount`` (> 0) off the tenant's ``period``: a negative ``discount`` ledger line.

    ``pool_key``: the pool it is granted for (must be the tenant's), None for the whole tenant.
    ``UnknownTenantError``, ``PoolNotOfTenantError``: nothing written.
    """
    if amount <= 0:
        raise ValueError(f"a discount is a positive amount, got {amount}")
    ref = f"discount:{new_numeric_id()}"

    def op(conn: sqlite3.Connection) -> LedgerEntry:
        _check_tenant(conn, tenant_id)
        if pool_key is not None and pool_tenant_in(conn, pool_key) != tenant_id:
            raise PoolNotOfTenantError(f"no pool {pool_key} of tenant {tenant_id}")
        entry_id = insert_entry_in(
            conn,
            tenant_id=tenant_id,
            item="discount",
            amount=-amount,
            created_at=now,
            pool_key=pool_key,
            period=period,
            quantity=1,
            unit=None,
            unit_price=-amount,
            ref=ref,
        )
        return _entry(conn.execute("SELECT * FROM ledger WHERE id = ?", (entry_id,)).fetchone())

    return await db.write(op)


async def list_discounts(
    db: Database, tenant_id: str, *, period: str | None = None
) -> list[LedgerEntry]:
    """The tenant's discount lines (optionally of one month), oldest first."""

    def fn(conn: sqlite3.Connection) -> list[LedgerEntry]:
        _check_tenant(conn, tenant_id)
        sql = "SELECT * FROM ledger WHERE tenant_id = ? AND item = 'discount'"
        params: list[object] = [tenant_id]
        if period is not None:
            sql += " AND period = ?"
            params.append(period)
        return [_entry(r) for r in conn.execute(sql + " ORDER BY id", params)]

    return await db.read(fn)


# ---------------------------------------------------------------------------------------------
# What rating reads


def pool_tenant_in(conn: sqlite3.Connection, pool_key: str) -> str | None:
    """The tenant owning the pool; None for an operator pool or a pool that does not exist."""
    row = conn.execute("SELECT tenant_id FROM pools WHERE pool_key = ?", (pool_key,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def recording_duration_in(conn: sqlite3.Connection, call_id: str) -> float | None:
    """The length of the call's recording (``recording_events``), None when it has none."""
    row = conn.execute(
        "SELECT duration_s FROM recording_events WHERE call_id = ?", (call_id,)
    ).fetchone()
    return None if row is None else float(row[0])


def _call_record_of(values: Sequence[Any]) -> CallRecord:
    fields = dict(zip(_CALL_COLUMNS, values, strict=True))
    fields["call_type"] = CallType(fields["call_type"])
    fields["release_dir"] = ReleaseDir(fields["release_dir"])
    fields["unconnected_cause"] = UnconnectedCause(fields["unconnected_cause"])
    return CallRecord(**fields)


def call_records_after_in(
    conn: sqlite3.Connection, rowid: int, limit: int
) -> list[tuple[int, CallRecord]]:
    """Up to ``limit`` call records written after ``rowid`` (insertion order), with rowids.

    Rowids grow with every insert (one writer, rows never deleted), so a cursor on them reads
    each record once in the order it was written.
    """
    cursor = conn.cursor()
    cursor.row_factory = None
    rows = cursor.execute(
        f"SELECT rowid, {', '.join(_CALL_COLUMNS)} FROM call_records"  # noqa: S608
        " WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (rowid, limit),
    ).fetchall()
    return [(int(row[0]), _call_record_of(row[1:])) for row in rows]


def recording_events_after_in(
    conn: sqlite3.Connection, event_id: int, limit: int
) -> list[tuple[int, CallRecord]]:
    """Recording events after ``event_id`` whose call record exists: (event id, the record).

    Events whose record is not written yet are skipped: rating the record later sees the event.
    """
    cursor = conn.cursor()
    cursor.row_factory = None
    columns = ", ".join(f"c.{c}" for c in _CALL_COLUMNS)
    rows = cursor.execute(
        f"SELECT e.id, {columns} FROM recording_events e"  # noqa: S608
        " JOIN call_records c ON c.call_id = e.call_id"
        " WHERE e.id > ? ORDER BY e.id LIMIT ?",
        (event_id, limit),
    ).fetchall()
    return [(int(row[0]), _call_record_of(row[1:])) for row in rows]


def last_recording_event_in(conn: sqlite3.Connection) -> int:
    """The id of the newest recording event (0: none)."""
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM recording_events").fetchone()[0])


@dataclass(frozen=True, slots=True)
class HeldNumber:
    """A tenancy of a number with what rent needs: the number's spec and the pool's tenant."""

    tenancy_id: int
    number: PhoneNumber
    pool_key: PoolKey
    from_at: float
    until_at: float | None
    reason: str
    spec: NumberSpec
    tenant_id: str | None  # None: an operator pool


def held_numbers_in(conn: sqlite3.Connection, at: float) -> list[HeldNumber]:
    """Every tenancy holding a number at instant ``at`` (``from_at <= at < until_at``)."""
    rows = conn.execute(
        "SELECT t.id, t.number, t.pool_key, t.from_at, t.until_at, t.reason, n.spec, p.tenant_id"
        " FROM number_tenancies t JOIN numbers n ON n.number = t.number"
        " JOIN pools p ON p.pool_key = t.pool_key"
        " WHERE t.from_at <= ? AND (t.until_at IS NULL OR t.until_at > ?)"
        " ORDER BY t.number, t.id",
        (at, at),
    ).fetchall()
    return [
        HeldNumber(
            tenancy_id=int(r[0]),
            number=PhoneNumber(r[1]),
            pool_key=PoolKey(r[2]),
            from_at=float(r[3]),
            until_at=None if r[4] is None else float(r[4]),
            reason=str(r[5]),
            spec=NumberSpec(r[6]),
            tenant_id=None if r[7] is None else str(r[7]),
        )
        for r in rows
    ]


def first_tenancy_in(conn: sqlite3.Connection) -> float | None:
    """When the earliest tenancy started (None: no number was ever held)."""
    value = conn.execute("SELECT min(from_at) FROM number_tenancies").fetchone()[0]
    return None if value is None else float(value)


# ---------------------------------------------------------------------------------------------
# The rating job's progress


def get_state_in(conn: sqlite3.Connection, key: str) -> str | None:
    """A value of ``billing_state`` (None: never set)."""
    row = conn.execute("SELECT value FROM billing_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_state_in(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a value of ``billing_state``."""
    conn.execute(
        "INSERT INTO billing_state (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
