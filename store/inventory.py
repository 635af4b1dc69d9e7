"""Inventory persistence: stock, purchase with first-month rent, release, lock, verification,
migration jobs (SPEC §3, §7).

Same conventions as ``store.repositories``: times UTC epoch seconds, numbers E.164, money
``Decimal`` as TEXT, one transaction per write (``db.write``).  Every write op re-checks the
state it relies on inside its transaction and raises a :class:`store.StoreError` subclass
before changing anything, so a refused operation writes nothing.

City names: the stock shows and sells numbers under a *canonical city* (SPEC §3): a 95 number
is ``全国`` (nationwide) whatever its import row says, every Hainan number is sold as ``海口``
(Haikou: the province has a single city entry), other cities compare without their ``市``
suffix (the geocoder writes ``深圳市``, imports usually ``深圳``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from routing.model import BindingType, NumberSpec, PhoneNumber, PoolKey
from store.db import Database, StoreError
from store.ledger import balance_in, insert_entry_in, ref_taken_in
from store.repositories import (
    NotEnoughStockError,
    NumberInfo,
    StockRow,
    Verification,
    _number_info,
    new_numeric_id,
)

__all__ = [
    "HAIKOU",
    "NATIONWIDE",
    "InsufficientBalanceError",
    "MigrationJobRow",
    "MigrationOutcome",
    "NumberInUseError",
    "NumberNotInPoolError",
    "PurchaseOrder",
    "VerificationPolicy",
    "VerificationStateError",
    "canonical_city",
    "city_key",
    "decide_verification",
    "get_migration",
    "lock",
    "migrate",
    "number_in_pool",
    "pick_for_migration",
    "pick_for_migration_in",
    "pool_numbers_info",
    "purchase",
    "release",
    "rent_ref",
    "set_verification_policy",
    "stock",
    "submit_verification",
    "unlock",
    "unverified_deadlines",
    "verification_policies",
]

#: Canonical city of 95 numbers (SPEC §3: "nationwide"); the reference's City value is
#: ``Nationwide``.
NATIONWIDE: Final = "全国"
#: The single city entry of Hainan province.
HAIKOU: Final = "海口"
_NATIONWIDE_ALIASES: Final = frozenset({"全国", "nationwide"})
_HAIKOU_ALIASES: Final = frozenset({"海口", "haikou"})
_HAINAN: Final = ("海南", "海南省", "Hainan", "hainan")


class InsufficientBalanceError(StoreError):
    """The tenant's balance does not cover the first month's rent of a purchase."""

    def __init__(self, *, balance: Decimal, needed: Decimal) -> None:
        """Carry both amounts so the API can say what is missing."""
        super().__init__(f"balance {balance} does not cover the first month's rent {needed}")
        self.balance = balance
        self.needed = needed


class NumberNotInPoolError(StoreError):
    """The number is not held by the pool (or does not exist at all: same answer)."""


class NumberInUseError(StoreError):
    """The number still carries a binding that is not unbound."""


class VerificationStateError(StoreError):
    """The verification state does not allow the requested transition."""

    def __init__(self, message: str, *, state: Verification) -> None:
        """Name the current state."""
        super().__init__(message)
        self.state = state


def city_key(city: str) -> str:
    """A city as given (import row or request) → the canonical spelling, aliases resolved."""
    text = city.strip()
    if text.lower() in _NATIONWIDE_ALIASES:
        return NATIONWIDE
    if text.lower() in _HAIKOU_ALIASES or text == "海口市":
        return HAIKOU
    return text.removesuffix("市")


def canonical_city(*, city: str, province: str, spec: NumberSpec) -> str:
    """The city a stored number is listed and sold under (see the module docstring)."""
    if spec is NumberSpec.NATIONWIDE_95:
        return NATIONWIDE
    if province.strip() in _HAINAN:
        return HAIKOU
    return city_key(city)


def _city_condition(wanted: str) -> tuple[str, list[object]]:
    """SQL condition (on ``numbers``) selecting the numbers sold under canonical city ``wanted``."""
    if wanted == NATIONWIDE:
        return "spec = 3", []
    marks = ", ".join("?" * len(_HAINAN))
    if wanted == HAIKOU:
        return f"spec <> 3 AND (province IN ({marks}) OR city IN ('海口', '海口市'))", [*_HAINAN]
    return (
        f"spec <> 3 AND city IN (?, ?) AND province NOT IN ({marks})",
        [wanted, wanted + "市", *_HAINAN],
    )


def _prefix_condition(prefix: str | None) -> tuple[str, list[object]]:
    """``prefix`` (national digits) against the national significant number of +86 numbers."""
    if not prefix:
        return "1", []
    return "number LIKE '+86%' AND substr(number, 4, ?) = ?", [len(prefix), prefix]


# ---------------------------------------------------------------------------------------------
# Stock


async def stock(db: Database, *, prefix: str | None = None) -> list[StockRow]:
    """Free numbers per (canonical city, spec), sorted by spec then city.

    ``province`` is the import's province (the first seen when a canonical city merges several,
    e.g. Hainan's cities under 海口; ``全国`` for 95 numbers).
    """
    where, params = _prefix_condition(prefix)

    def fn(conn: sqlite3.Connection) -> list[StockRow]:
        rows = conn.execute(
            "SELECT city, province, spec, count(*) FROM numbers"  # noqa: S608
            f" WHERE status = 'free' AND {where} GROUP BY city, province, spec",
            params,
        ).fetchall()
        merged: dict[tuple[str, NumberSpec], StockRow] = {}
        for city, province, spec_value, free in rows:
            spec = NumberSpec(spec_value)
            name = canonical_city(city=city, province=province, spec=spec)
            shown_province = NATIONWIDE if spec is NumberSpec.NATIONWIDE_95 else province
            known = merged.get((name, spec))
            merged[(name, spec)] = StockRow(
                city=name,
                province=shown_province if known is None else known.province,
                spec=spec,
                free=free + (0 if known is None else known.free),
            )
        return sorted(merged.values(), key=lambda r: (int(r.spec), r.city))

    return await db.read(fn)


# ---------------------------------------------------------------------------------------------
# Purchase


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    """A validated purchase: ``count`` random free numbers into a pool, first month charged."""

    pool_key: PoolKey
    tenant_id: str | None  # None: an operator pool, not charged
    count: int
    city: str  # canonical city
    specs: tuple[NumberSpec, ...]
    prefix: str | None  # national digits
    rent_by_spec: Mapping[NumberSpec, Decimal]
    period: str  # YYYYMM, local
    verification_deadline: float | None
    now: float


def rent_ref(number: str, period: str) -> str:
    """The ledger ref of a number's rent for a month (one rent line per number and month)."""
    return f"rent:{number}:{period}"


async def purchase(db: Database, order: PurchaseOrder) -> list[NumberInfo]:
    """Buy the order's numbers at random, with their first month's rent, in one transaction.

    ``NotEnoughStockError`` when fewer matching free numbers exist than ``count`` (nothing
    bought), ``InsufficientBalanceError`` when the tenant's balance is below the total first
    month's rent (nothing bought, nothing charged).  Returns the numbers sorted.
    """
    city_sql, city_params = _city_condition(order.city)
    prefix_sql, prefix_params = _prefix_condition(order.prefix)
    spec_marks = ", ".join("?" * len(order.specs))

    def op(conn: sqlite3.Connection) -> list[NumberInfo]:
        # Picked at random by the database, never chosen by hand (SPEC §3).
        rows = conn.execute(
            f"SELECT * FROM numbers WHERE status = 'free' AND spec IN ({spec_marks})"  # noqa: S608
            f" AND {city_sql} AND {prefix_sql} ORDER BY random() LIMIT ?",
            [*(int(s) for s in order.specs), *city_params, *prefix_params, order.count],
        ).fetchall()
        if len(rows) < order.count:
            raise NotEnoughStockError(requested=order.count, available=len(rows), city=order.city)
        picked = [_number_info(r) for r in rows]
        if order.tenant_id is not None:
            needed = sum((order.rent_by_spec[n.spec] for n in picked), Decimal(0))
            available = balance_in(conn, order.tenant_id)
            if available < needed:
                raise InsufficientBalanceError(balance=available, needed=needed)
        for info in picked:
            conn.execute(
                "UPDATE numbers SET status = 'in_pool', pool_key = ?, purchased_at = ?,"
                " verification = 'unverified', verification_deadline = ?"
                " WHERE number = ? AND status = 'free'",
                (order.pool_key, order.now, order.verification_deadline, info.number),
            )
            tenancy = conn.execute(
                "INSERT INTO number_tenancies (number, pool_key, from_at, reason)"
                " VALUES (?, ?, ?, 'purchase')",
                (info.number, order.pool_key, order.now),
            ).lastrowid
            if order.tenant_id is None:
                continue
            price = order.rent_by_spec[info.spec]
            ref = rent_ref(info.number, order.period)
            if ref_taken_in(conn, "rent", ref):
                # Released and bought again within one month: a new tenancy pays its month.
                ref = f"{ref}:{tenancy}"
            insert_entry_in(
                conn,
                tenant_id=order.tenant_id,
                item="rent",
                amount=price,
                created_at=order.now,
                pool_key=order.pool_key,
                number=info.number,
                period=order.period,
                quantity=1,
                unit="month",
                unit_price=price,
                ref=ref,
            )
        fresh = conn.execute(
            f"SELECT * FROM numbers WHERE number IN ({', '.join('?' * len(picked))})"  # noqa: S608
            " ORDER BY number",
            [n.number for n in picked],
        ).fetchall()
        return [_number_info(r) for r in fresh]

    return await db.write(op)


# ---------------------------------------------------------------------------------------------
# One number of a pool: lookup, release, lock, unlock


def _in_pool(conn: sqlite3.Connection, pool_key: PoolKey, number: PhoneNumber) -> NumberInfo:
    row = conn.execute(
        "SELECT * FROM numbers WHERE number = ? AND pool_key = ?", (number, pool_key)
    ).fetchone()
    if row is None:
        raise NumberNotInPoolError(f"no number {number} in pool {pool_key}")
    return _number_info(row)


def _bound_in(conn: sqlite3.Connection, number: PhoneNumber) -> bool:
    found = conn.execute(
        "SELECT 1 FROM bindings WHERE x = ? AND unbound_at IS NULL LIMIT 1", (number,)
    ).fetchone()
    return found is not None


async def number_in_pool(db: Database, pool_key: PoolKey, number: PhoneNumber) -> NumberInfo:
    """The number as held by the pool; ``NumberNotInPoolError`` otherwise."""
    return await db.read(lambda conn: _in_pool(conn, pool_key, number))


async def pool_numbers_info(db: Database, pool_key: PoolKey) -> list[NumberInfo]:
    """Every number the pool holds (locked ones included), sorted."""

    def fn(conn: sqlite3.Connection) -> list[NumberInfo]:
        rows = conn.execute(
            "SELECT * FROM numbers WHERE pool_key = ? ORDER BY number", (pool_key,)
        ).fetchall()
        return [_number_info(r) for r in rows]

    return await db.read(fn)


async def release(
    db: Database, pool_key: PoolKey, number: PhoneNumber, *, now: float
) -> NumberInfo:
    """Return an unbound number of the pool to the stock; its tenancy ends at ``now``.

    Rent stops from the next month: nothing is refunded or credited.  ``NumberInUseError``
    while a binding on it is not unbound.
    """

    def op(conn: sqlite3.Connection) -> NumberInfo:
        info = _in_pool(conn, pool_key, number)
        if _bound_in(conn, number):
            raise NumberInUseError(f"number {number} still has a binding; unbind it first")
        conn.execute(
            "UPDATE numbers SET status = 'free', pool_key = NULL, purchased_at = NULL,"
            " verification = 'unverified', verification_deadline = NULL WHERE number = ?",
            (number,),
        )
        conn.execute(
            "UPDATE number_tenancies SET until_at = ?"
            " WHERE number = ? AND pool_key = ? AND until_at IS NULL",
            (now, number, pool_key),
        )
        return info

    return await db.write(op)


async def lock(db: Database, pool_key: PoolKey, number: PhoneNumber) -> NumberInfo:
    """Lock a number of the pool (kept in the pool, never allocated); no-op when locked."""

    def op(conn: sqlite3.Connection) -> NumberInfo:
        info = _in_pool(conn, pool_key, number)
        conn.execute("UPDATE numbers SET status = 'locked' WHERE number = ?", (number,))
        return info

    return await db.write(op)


async def unlock(db: Database, pool_key: PoolKey, number: PhoneNumber) -> NumberInfo:
    """Unlock a locked number of the pool; no-op when it is not locked."""

    def op(conn: sqlite3.Connection) -> NumberInfo:
        info = _in_pool(conn, pool_key, number)
        conn.execute("UPDATE numbers SET status = 'in_pool' WHERE number = ?", (number,))
        return info

    return await db.write(op)


# ---------------------------------------------------------------------------------------------
# Real-person verification


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    """Whether numbers of a binding type must be verified, and the grace period of new ones."""

    type: BindingType
    required: bool
    grace_s: float


async def verification_policies(db: Database) -> list[VerificationPolicy]:
    """Every policy set by the operator (types without one require nothing)."""

    def fn(conn: sqlite3.Connection) -> list[VerificationPolicy]:
        return [
            VerificationPolicy(BindingType(t), bool(r), float(g))
            for t, r, g in conn.execute(
                "SELECT type, required, grace_s FROM verification_policies ORDER BY type"
            )
        ]

    return await db.read(fn)


async def set_verification_policy(db: Database, policy: VerificationPolicy, *, now: float) -> None:
    """Store ``policy``.  Switching a type to *required* starts a grace period of ``grace_s``
    from ``now`` for every number of that type's pools that is not verified yet.
    """

    def op(conn: sqlite3.Connection) -> None:
        before = conn.execute(
            "SELECT required FROM verification_policies WHERE type = ?", (str(policy.type),)
        ).fetchone()
        conn.execute(
            "INSERT INTO verification_policies (type, required, grace_s, updated_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (type) DO UPDATE SET required = excluded.required,"
            " grace_s = excluded.grace_s, updated_at = excluded.updated_at",
            (str(policy.type), int(policy.required), policy.grace_s, now),
        )
        if policy.required and (before is None or not before[0]):
            conn.execute(
                "UPDATE numbers SET verification_deadline = ? WHERE verification <> 'verified'"
                " AND pool_key IN (SELECT pool_key FROM pools WHERE type = ?)",
                (now + policy.grace_s, str(policy.type)),
            )

    await db.write(op)


async def unverified_deadlines(db: Database) -> dict[PhoneNumber, float]:
    """Pool numbers that must be verified by a deadline and are not verified yet → deadline."""

    def fn(conn: sqlite3.Connection) -> dict[PhoneNumber, float]:
        return {
            PhoneNumber(number): float(deadline)
            for number, deadline in conn.execute(
                "SELECT n.number, n.verification_deadline FROM numbers n"
                " JOIN pools p ON p.pool_key = n.pool_key"
                " JOIN verification_policies v ON v.type = p.type AND v.required = 1"
                " WHERE n.verification <> 'verified' AND n.verification_deadline IS NOT NULL"
            )
        }

    return await db.read(fn)


async def submit_verification(db: Database, pool_key: PoolKey, number: PhoneNumber) -> NumberInfo:
    """unverified/rejected → pending; ``VerificationStateError`` from pending or verified."""

    def op(conn: sqlite3.Connection) -> NumberInfo:
        info = _in_pool(conn, pool_key, number)
        if info.verification not in (Verification.UNVERIFIED, Verification.REJECTED):
            raise VerificationStateError(
                f"number {number} is already {info.verification.value}", state=info.verification
            )
        conn.execute("UPDATE numbers SET verification = 'pending' WHERE number = ?", (number,))
        return _in_pool(conn, pool_key, number)

    return await db.write(op)


async def decide_verification(db: Database, number: PhoneNumber, *, approved: bool) -> NumberInfo:
    """pending → verified (``approved``) or rejected.

    ``NumberNotInPoolError`` for a number in no pool, ``VerificationStateError`` when not pending.
    """

    def op(conn: sqlite3.Connection) -> NumberInfo:
        row = conn.execute(
            "SELECT * FROM numbers WHERE number = ? AND pool_key IS NOT NULL", (number,)
        ).fetchone()
        if row is None:
            raise NumberNotInPoolError(f"no number {number} in any pool")
        info = _number_info(row)
        if info.verification is not Verification.PENDING:
            raise VerificationStateError(
                f"number {number} is {info.verification.value}, not pending",
                state=info.verification,
            )
        state = Verification.VERIFIED if approved else Verification.REJECTED
        conn.execute("UPDATE numbers SET verification = ? WHERE number = ?", (state.value, number))
        return _number_info(
            conn.execute("SELECT * FROM numbers WHERE number = ?", (number,)).fetchone()
        )

    return await db.write(op)


# ---------------------------------------------------------------------------------------------
# Migration


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    """One number of a migration job: moved or why not."""

    number: str
    ok: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class MigrationJobRow:
    """A stored migration job with its per-number outcomes (in request order)."""

    job_id: str
    tenant_id: str | None
    from_pool: PoolKey
    to_pool: PoolKey
    city: str | None
    requested: int
    moved: int
    failed: int
    created_at: float
    results: tuple[MigrationOutcome, ...]


def pick_for_migration_in(
    conn: sqlite3.Connection, pool_key: PoolKey, city: str, exclude: frozenset[str]
) -> list[PhoneNumber]:
    """The pool's unlocked numbers of canonical ``city`` with no binding (random order)."""
    city_sql, params = _city_condition(city)
    return [
        PhoneNumber(r[0])
        for r in conn.execute(
            f"SELECT number FROM numbers WHERE pool_key = ? AND status = 'in_pool'"  # noqa: S608
            f" AND {city_sql} AND NOT EXISTS (SELECT 1 FROM bindings b"
            " WHERE b.x = numbers.number AND b.unbound_at IS NULL) ORDER BY random()",
            [pool_key, *params],
        )
        if r[0] not in exclude
    ]


async def pick_for_migration(
    db: Database, pool_key: PoolKey, city: str, *, exclude: frozenset[str] = frozenset()
) -> list[PhoneNumber]:
    """See :func:`pick_for_migration_in` (a read: the write re-checks every number)."""
    return await db.read(lambda conn: pick_for_migration_in(conn, pool_key, city, exclude))


async def migrate(
    db: Database,
    *,
    tenant_id: str | None,
    from_pool: PoolKey,
    to_pool: PoolKey,
    city: str | None,
    requested: int,
    candidates: Sequence[tuple[str, str | None]],
    now: float,
) -> MigrationJobRow:
    """Move the candidates that may move and store the job, in one transaction.

    ``candidates``: (number, reason it already failed or None) in request order; a number whose
    reason is None moves if it is still in ``from_pool`` without a binding.  A moved number's
    tenancy in the old pool ends at ``now`` and one with reason ``migration`` starts; no rent is
    charged (the month's rent stays with the old pool).
    """
    job_id = new_numeric_id()

    def op(conn: sqlite3.Connection) -> MigrationJobRow:
        outcomes: list[MigrationOutcome] = []
        for number, reason in candidates:
            why = reason
            if why is None:
                row = conn.execute(
                    "SELECT pool_key FROM numbers WHERE number = ?", (number,)
                ).fetchone()
                if row is None or row[0] != from_pool:
                    why = "NUMBER_NOT_IN_POOL: not a number of the source pool"
                elif _bound_in(conn, PhoneNumber(number)):
                    why = "NUMBER_IN_USE: the number has a binding"
            if why is not None:
                outcomes.append(MigrationOutcome(number, ok=False, reason=why))
                continue
            conn.execute("UPDATE numbers SET pool_key = ? WHERE number = ?", (to_pool, number))
            conn.execute(
                "UPDATE number_tenancies SET until_at = ?"
                " WHERE number = ? AND pool_key = ? AND until_at IS NULL",
                (now, number, from_pool),
            )
            conn.execute(
                "INSERT INTO number_tenancies (number, pool_key, from_at, reason)"
                " VALUES (?, ?, ?, 'migration')",
                (number, to_pool, now),
            )
            outcomes.append(MigrationOutcome(number, ok=True, reason=None))
        moved = sum(1 for o in outcomes if o.ok)
        conn.execute(
            "INSERT INTO migration_jobs (job_id, tenant_id, from_pool, to_pool, city, requested,"
            " moved, failed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                tenant_id,
                from_pool,
                to_pool,
                city,
                requested,
                moved,
                len(outcomes) - moved,
                now,
            ),
        )
        conn.executemany(
            "INSERT INTO migration_results (job_id, seq, number, ok, reason)"
            " VALUES (?, ?, ?, ?, ?)",
            [(job_id, i, o.number, int(o.ok), o.reason) for i, o in enumerate(outcomes)],
        )
        return MigrationJobRow(
            job_id=job_id,
            tenant_id=tenant_id,
            from_pool=from_pool,
            to_pool=to_pool,
            city=city,
            requested=requested,
            moved=moved,
            failed=len(outcomes) - moved,
            created_at=now,
            results=tuple(outcomes),
        )

    return await db.write(op)


async def get_migration(db: Database, job_id: str) -> MigrationJobRow | None:
    """A stored migration job, or None."""

    def fn(conn: sqlite3.Connection) -> MigrationJobRow | None:
        job = conn.execute("SELECT * FROM migration_jobs WHERE job_id = ?", (job_id,)).fetchone()
        if job is None:
            return None
        results = tuple(
            MigrationOutcome(r["number"], ok=bool(r["ok"]), reason=r["reason"])
            for r in conn.execute(
                "SELECT number, ok, reason FROM migration_results WHERE job_id = ? ORDER BY seq",
                (job_id,),
            )
        )
        return MigrationJobRow(
            job_id=job["job_id"],
            tenant_id=job["tenant_id"],
            from_pool=PoolKey(job["from_pool"]),
            to_pool=PoolKey(job["to_pool"]),
            city=job["city"],
            requested=job["requested"],
            moved=job["moved"],
            failed=job["failed"],
            created_at=job["created_at"],
            results=results,
        )

    return await db.read(fn)
