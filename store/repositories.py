"""Repositories: typed async functions over ``Database`` for numbers, pools, bindings, groups and
call records.

Every write is one ``db.write`` op, so it is atomic (all or nothing) and acknowledged only once
durable; every read is one ``db.read`` (one snapshot).  Functions taking a ``now`` use it as the
UTC epoch-seconds timestamp to store; where ``now`` is optional the wall clock is read here (the
store is an I/O layer, the pure packages never read the clock).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from routing.model import (
    NO_RINGBACK,
    Binding,
    BindingProfile,
    BindingType,
    GroupId,
    NumberSpec,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
    binding_profile,
    restore_binding,
    sub_key,
)
from store.db import Database, StoreError
from store.records import CallRecord, CallType, ReleaseDir, UnconnectedCause

# ---------------------------------------------------------------------------------------------
# Errors


class NotEnoughStockError(StoreError):
    """A purchase asked for more free numbers than the inventory has (SPEC §3: ask the operator)."""

    def __init__(self, *, requested: int, available: int, city: str | None) -> None:
        """Carry the counts so the API can say exactly what is missing."""
        where = f" in {city}" if city else ""
        super().__init__(
            f"not enough free numbers{where}: requested {requested}, available {available}; "
            f"ask the operator to import more"
        )
        self.requested = requested
        self.available = available
        self.city = city


class PoolNotFoundError(StoreError):
    """No pool has this key."""

    def __init__(self, pool_key: str) -> None:
        """Name the missing key."""
        super().__init__(f"no pool {pool_key!r}")
        self.pool_key = pool_key


class GroupNotFoundError(StoreError):
    """No (undeleted) group has this id."""


class InvalidRowError(StoreError):
    """An import row is malformed; nothing of the import was written."""


class ConflictError(StoreError):
    """A write hit a uniqueness rule (duplicate sub_id, X already exclusively bound, ...)."""


# ---------------------------------------------------------------------------------------------
# Value types


class AllocationMode(StrEnum):
    """How a bind without X picks one (SPEC §3)."""

    DEFAULT = "default"
    STRICT = "strict"
    SMART = "smart"


class SmsMode(StrEnum):
    """Pool SMS handling (SPEC §5)."""

    OFF = "off"
    INTERCEPT = "intercept"
    FULL_INTERCEPT = "full_intercept"
    SMART = "smart"


class NumberStatus(StrEnum):
    """Inventory state of an X number."""

    FREE = "free"
    IN_POOL = "in_pool"
    LOCKED = "locked"


class Verification(StrEnum):
    """Real-person verification state of a number's user (SPEC §3)."""

    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class NumberRow:
    """One row of an inventory import (CSV columns ``number,city,province,carrier,spec``).

    ``number`` must already be normalised E.164 (``routing.numbers``); the store checks only
    its shape.
    """

    number: PhoneNumber
    city: str
    province: str
    carrier: str
    spec: NumberSpec


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """An inventory number with its state."""

    number: PhoneNumber
    city: str
    province: str
    carrier: str
    spec: NumberSpec
    status: NumberStatus
    pool_key: PoolKey | None
    verification: Verification
    verification_deadline: float | None
    imported_at: float
    purchased_at: float | None


@dataclass(frozen=True, slots=True)
class StockRow:
    """Free numbers per (city, spec): remaining stock and the covered-cities list (SPEC §3)."""

    city: str
    province: str
    spec: NumberSpec
    free: int


@dataclass(frozen=True, slots=True)
class Pool:
    """A number pool (SPEC §3)."""

    pool_key: PoolKey
    tenant_id: str | None
    type: BindingType
    name: str
    allocation_mode: AllocationMode
    sms_mode: SmsMode
    recording: bool
    ringback: dict[str, str]
    warn_free_numbers: int | None
    warn_utilisation_pct: float | None
    created_at: float


# ---------------------------------------------------------------------------------------------
# Ids


def new_pool_key() -> PoolKey:
    """A random pool key in the reference's style: ``FC`` + 16 upper-case hex digits."""
    return PoolKey("FC" + secrets.token_hex(8).upper())


def new_numeric_id() -> str:
    """A random 18-digit decimal id (fits a signed 64-bit Long, as the reference's ids do)."""
    return str(10**17 + secrets.randbelow(9 * 10**17))


# ---------------------------------------------------------------------------------------------
# Tenants


async def create_tenant(
    db: Database, *, tenant_id: str, name: str, now: float | None = None
) -> None:
    """Create a tenant; ``ConflictError`` if the id exists."""
    created = time.time() if now is None else now

    def op(conn: sqlite3.Connection) -> None:
        try:
            conn.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                (tenant_id, name, created),
            )
        except sqlite3.IntegrityError as error:
            raise ConflictError(f"tenant {tenant_id!r} exists") from error

    await db.write(op)


# ---------------------------------------------------------------------------------------------
# Numbers and pools


def _check_row(row: NumberRow) -> tuple[str, str, str, str, int, float]:
    number = str(row.number)
    if not (number.startswith("+") and number[1:].isdigit() and 3 <= len(number) <= 16):
        raise InvalidRowError(f"number {number!r} is not E.164 (+ and up to 15 digits)")
    try:
        spec = NumberSpec(int(row.spec))
    except ValueError as error:
        raise InvalidRowError(f"number {number}: spec {row.spec!r} is not 1, 2 or 3") from error
    if not row.city.strip():
        raise InvalidRowError(f"number {number}: city is empty")
    return (number, row.city.strip(), row.province.strip(), row.carrier.strip(), int(spec), 0.0)


async def import_numbers(
    db: Database, rows: Iterable[NumberRow], *, now: float | None = None
) -> int:
    """Add numbers to the inventory as free stock; returns how many were inserted.

    A number already in the inventory is skipped (not updated): re-importing the carrier's full
    list after a partial failure is safe and only adds what is new.  Duplicates within ``rows``
    count once.  A malformed row (not E.164, spec not 1/2/3, empty city) raises
    ``InvalidRowError`` and nothing is written.
    """
    imported_at = time.time() if now is None else now
    checked = [(*_check_row(row)[:5], imported_at) for row in rows]

    def op(conn: sqlite3.Connection) -> int:
        before = conn.total_changes
        # ON CONFLICT DO NOTHING, not INSERT OR IGNORE: OR IGNORE would also drop CHECK failures.
        conn.executemany(
            "INSERT INTO numbers (number, city, province, carrier, spec, imported_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (number) DO NOTHING",
            checked,
        )
        return conn.total_changes - before

    return await db.write(op)


def _number_info(row: sqlite3.Row) -> NumberInfo:
    return NumberInfo(
        number=PhoneNumber(row["number"]),
        city=row["city"],
        province=row["province"],
        carrier=row["carrier"],
        spec=NumberSpec(row["spec"]),
        status=NumberStatus(row["status"]),
        pool_key=None if row["pool_key"] is None else PoolKey(row["pool_key"]),
        verification=Verification(row["verification"]),
        verification_deadline=row["verification_deadline"],
        imported_at=row["imported_at"],
        purchased_at=row["purchased_at"],
    )


async def get_number(db: Database, number: PhoneNumber) -> NumberInfo | None:
    """One inventory number, or None."""

    def fn(conn: sqlite3.Connection) -> NumberInfo | None:
        row = conn.execute("SELECT * FROM numbers WHERE number = ?", (number,)).fetchone()
        return None if row is None else _number_info(row)

    return await db.read(fn)


async def stock(db: Database) -> list[StockRow]:
    """Free numbers per (city, province, spec), for stock reports and the covered-cities list."""

    def fn(conn: sqlite3.Connection) -> list[StockRow]:
        rows = conn.execute(
            "SELECT city, province, spec, count(*) AS free FROM numbers WHERE status = 'free'"
            " GROUP BY city, province, spec ORDER BY province, city, spec"
        ).fetchall()
        return [StockRow(r["city"], r["province"], NumberSpec(r["spec"]), r["free"]) for r in rows]

    return await db.read(fn)


async def create_pool(
    db: Database,
    *,
    type: BindingType,
    name: str,
    tenant_id: str | None,
    allocation_mode: AllocationMode = AllocationMode.DEFAULT,
    now: float | None = None,
) -> PoolKey:
    """Create a pool and return its new random key (``FC`` + 16 hex)."""
    created = time.time() if now is None else now

    def op(conn: sqlite3.Connection) -> PoolKey:
        # 64 random bits: a collision is practically impossible, but retrying costs nothing.
        for _ in range(5):
            key = new_pool_key()
            try:
                conn.execute(
                    "INSERT INTO pools (pool_key, tenant_id, type, name, allocation_mode,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (key, tenant_id, str(type), name, str(allocation_mode), created),
                )
            except sqlite3.IntegrityError as error:
                if "FOREIGN KEY" in str(error):
                    raise ConflictError(f"no tenant {tenant_id!r}") from error
                continue
            return key
        raise ConflictError("could not allocate a unique pool key")

    return await db.write(op)


def _pool(row: sqlite3.Row) -> Pool:
    return Pool(
        pool_key=PoolKey(row["pool_key"]),
        tenant_id=row["tenant_id"],
        type=BindingType(row["type"]),
        name=row["name"],
        allocation_mode=AllocationMode(row["allocation_mode"]),
        sms_mode=SmsMode(row["sms_mode"]),
        recording=bool(row["recording"]),
        ringback=json.loads(row["ringback"]),
        warn_free_numbers=row["warn_free_numbers"],
        warn_utilisation_pct=row["warn_utilisation_pct"],
        created_at=row["created_at"],
    )


async def get_pool(db: Database, pool_key: PoolKey) -> Pool | None:
    """The pool with this key, or None."""

    def fn(conn: sqlite3.Connection) -> Pool | None:
        row = conn.execute("SELECT * FROM pools WHERE pool_key = ?", (pool_key,)).fetchone()
        return None if row is None else _pool(row)

    return await db.read(fn)


async def list_pools(db: Database, *, tenant_id: str | None = None) -> list[Pool]:
    """All pools (of one tenant when ``tenant_id`` is given), oldest first."""

    def fn(conn: sqlite3.Connection) -> list[Pool]:
        if tenant_id is None:
            rows = conn.execute("SELECT * FROM pools ORDER BY created_at, pool_key").fetchall()
        else:
            rows = conn.execute(
                "SELECT * FROM pools WHERE tenant_id = ? ORDER BY created_at, pool_key",
                (tenant_id,),
            ).fetchall()
        return [_pool(r) for r in rows]

    return await db.read(fn)


def specs_for(pool_type: BindingType) -> tuple[NumberSpec, ...]:
    """Resource specs a pool of this type may hold: 95AXN takes 95 numbers, the others not."""
    if pool_type is BindingType.AXN95:
        return (NumberSpec.NATIONWIDE_95,)
    return (NumberSpec.VIRTUAL, NumberSpec.CARRIER)


async def add_numbers_to_pool(
    db: Database,
    *,
    pool_key: PoolKey,
    count: int,
    city: str | None,
    prefix: str | None = None,
    now: float | None = None,
) -> list[PhoneNumber]:
    """Buy ``count`` random free numbers (of a spec fitting the pool's type) into the pool.

    ``city`` limits to one city; ``prefix`` to numbers whose E.164 digits (after the ``+``,
    country code included: the caller turns a national prefix such as ``170`` into ``86170``)
    start with it.  All or nothing: with fewer matching free numbers than ``count`` nothing
    changes and ``NotEnoughStockError`` carries the counts.  ``PoolNotFoundError`` for an
    unknown pool, ``ValueError`` for a count outside 1..1000 (SPEC §3).  Returns them sorted.
    """
    if not 1 <= count <= 1000:
        raise ValueError(f"count must be 1..1000, got {count}")
    bought_at = time.time() if now is None else now

    def op(conn: sqlite3.Connection) -> list[PhoneNumber]:
        pool = conn.execute("SELECT type FROM pools WHERE pool_key = ?", (pool_key,)).fetchone()
        if pool is None:
            raise PoolNotFoundError(pool_key)
        specs = specs_for(BindingType(pool["type"]))
        where = f"status = 'free' AND spec IN ({', '.join('?' * len(specs))})"
        params: list[object] = [int(s) for s in specs]
        if city is not None:
            where += " AND city = ?"
            params.append(city)
        if prefix:
            where += " AND substr(number, 2, ?) = ?"
            params.extend([len(prefix), prefix])
        # Picked at random, never by hand (SPEC §3).
        picked = [
            r[0]
            for r in conn.execute(
                f"SELECT number FROM numbers WHERE {where} ORDER BY random() LIMIT ?",  # noqa: S608
                [*params, count],
            )
        ]
        if len(picked) < count:
            raise NotEnoughStockError(requested=count, available=len(picked), city=city)
        conn.executemany(
            "UPDATE numbers SET status = 'in_pool', pool_key = ?, purchased_at = ?"
            " WHERE number = ? AND status = 'free'",
            [(pool_key, bought_at, n) for n in picked],
        )
        conn.executemany(
            "INSERT INTO number_tenancies (number, pool_key, from_at) VALUES (?, ?, ?)",
            [(n, pool_key, bought_at) for n in picked],
        )
        return sorted(PhoneNumber(n) for n in picked)

    return await db.write(op)


async def pool_numbers(db: Database, pool_key: PoolKey) -> list[PhoneNumber]:
    """The numbers held by the pool (locked ones included), sorted."""

    def fn(conn: sqlite3.Connection) -> list[PhoneNumber]:
        return [
            PhoneNumber(r[0])
            for r in conn.execute(
                "SELECT number FROM numbers WHERE pool_key = ? ORDER BY number", (pool_key,)
            )
        ]

    return await db.read(fn)


async def load_pool_inventory(db: Database) -> list[NumberInfo]:
    """Every number held by any pool, with city/province/status: the allocator's start-up load."""

    def fn(conn: sqlite3.Connection) -> list[NumberInfo]:
        rows = conn.execute(
            "SELECT * FROM numbers WHERE pool_key IS NOT NULL ORDER BY pool_key, number"
        ).fetchall()
        return [_number_info(r) for r in rows]

    return await db.read(fn)


# ---------------------------------------------------------------------------------------------
# Bindings

# Columns in ``Binding``'s field order, so a row maps positionally onto the constructor: the
# start-up load of up to 1,000,000 bindings (DESIGN: ≤ 5 s) is dominated by object construction,
# and positional arguments cost ~40 % less than keywords.
_BINDING_COLUMNS = (
    "sub_id, pool_key, type, x, a, expires_at, b, group_id, extension, record, restriction,"
    " ring_timeout_s, out_id, created_at, ringback"
)
_TYPES = {t.value: t for t in BindingType}
_RESTRICTIONS = {r.value: r for r in Restriction}
_EMPTY_JSON = "{}"


def _binding_params(binding: Binding) -> tuple[object, ...]:
    """Values for ``_BINDING_COLUMNS``, in that order (the shared settings read off the
    binding's profile directly: this runs on every bind)."""
    profile = binding.profile
    ringback = (
        json.dumps(dict(profile.ringback), sort_keys=True)
        if profile.ringback_codes
        else _EMPTY_JSON
    )
    return (
        binding.sub_id,
        profile.pool_key,
        profile.type.value,
        binding.x,
        binding.a,
        binding.expires_at,
        binding.b,
        profile.group_id,
        profile.extension,
        int(profile.record),
        profile.restriction.value,
        profile.ring_timeout_s,
        binding.out_id,
        binding.created_at,
        ringback,
    )


def _binding(row: Sequence[Any]) -> Binding:
    """A ``Binding`` from a row of ``_BINDING_COLUMNS``."""
    ringback = row[14]
    return Binding(
        row[0],
        row[1],
        _TYPES[row[2]],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9] == 1,
        _RESTRICTIONS[row[10]],
        row[11],
        row[12],
        row[13],
        NO_RINGBACK if ringback == _EMPTY_JSON else json.loads(ringback),
    )


def _integrity(error: sqlite3.IntegrityError, what: str) -> StoreError:
    text = str(error)
    if "FOREIGN KEY" in text:
        return ConflictError(f"{what}: unknown pool or group ({text})")
    return ConflictError(f"{what}: {text}")


async def insert_binding(db: Database, binding: Binding) -> None:
    """Persist a new binding; returns once durable (then update the in-memory index).

    ``ConflictError`` on a duplicate sub_id, an unknown pool/group, or a backstop rule (X of an
    exclusive type or (X, extension) already held by a not-unbound binding).
    """
    params = _binding_params(binding)

    def op(conn: sqlite3.Connection) -> None:
        try:
            conn.execute(
                f"INSERT INTO bindings ({_BINDING_COLUMNS}) VALUES ({', '.join('?' * 15)})",  # noqa: S608
                params,
            )
        except sqlite3.IntegrityError as error:
            raise _integrity(error, f"binding {binding.sub_id}") from error

    await db.write(op)


async def update_binding(db: Database, binding: Binding, *, now: float | None = None) -> bool:
    """Replace a not-unbound binding's fields by ``binding``'s (same sub_id); False if none.

    The pool, type and created_at of the stored binding are kept.
    """
    updated = time.time() if now is None else now
    p = _binding_params(binding)

    def op(conn: sqlite3.Connection) -> bool:
        try:
            cursor = conn.execute(
                "UPDATE bindings SET x = ?, a = ?, expires_at = ?, b = ?, group_id = ?,"
                " extension = ?, record = ?, restriction = ?, ring_timeout_s = ?, out_id = ?,"
                " ringback = ?, updated_at = ? WHERE sub_id = ? AND unbound_at IS NULL",
                (*p[3:13], p[14], updated, binding.sub_id),
            )
        except sqlite3.IntegrityError as error:
            raise _integrity(error, f"binding {binding.sub_id}") from error
        return cursor.rowcount == 1

    return await db.write(op)


async def unbind(db: Database, sub_id: SubId, now: float) -> bool:
    """Mark a binding unbound at ``now`` (kept as history); False if unknown or already unbound."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "UPDATE bindings SET unbound_at = ? WHERE sub_id = ? AND unbound_at IS NULL",
            (now, sub_id),
        )
        return cursor.rowcount == 1

    return await db.write(op)


async def get_binding(
    db: Database, sub_id: SubId, *, include_unbound: bool = False
) -> Binding | None:
    """The binding with this id; unbound ones only with ``include_unbound``."""
    active = "" if include_unbound else " AND unbound_at IS NULL"

    def fn(conn: sqlite3.Connection) -> Binding | None:
        row = conn.execute(
            f"SELECT {_BINDING_COLUMNS} FROM bindings WHERE sub_id = ?{active}",  # noqa: S608
            (sub_id,),
        ).fetchone()
        return None if row is None else _binding(tuple(row))

    return await db.read(fn)


async def bindings_by_x(db: Database, x: PhoneNumber) -> list[Binding]:
    """Not-unbound bindings on X, oldest first (SPEC §2: list by X)."""

    def fn(conn: sqlite3.Connection) -> list[Binding]:
        rows = conn.execute(
            f"SELECT {_BINDING_COLUMNS} FROM bindings WHERE x = ? AND unbound_at IS NULL"  # noqa: S608
            " ORDER BY created_at, sub_id",
            (x,),
        ).fetchall()
        return [_binding(tuple(r)) for r in rows]

    return await db.read(fn)


# The start-up load reads, pool by pool, what the index and the call path use of each binding —
# not created_at (a float object per binding; nothing in memory reads it) — in few, cheap
# columns: a canonical decimal sub_id (routing.model.sub_key) comes back as an INTEGER, the
# type, record flag, restriction and ring timeout as one INTEGER (_SETTINGS_BITS), a ringback
# of '{}' (nearly all) as NULL.  No str is made per row but for X, A, B and an out_id.
_TYPE_CODES = {kind.value: code for code, kind in enumerate(BindingType)}
_RESTRICTION_CODES = {restriction.value: code for code, restriction in enumerate(Restriction)}
_TYPE_BY_CODE = list(BindingType)
_RESTRICTION_BY_CODE = list(Restriction)


def _sql_code(column: str, codes: dict[str, int]) -> str:
    # No ELSE: a value the schema's CHECK would refuse gives NULL, refused by _load_profile.
    return f"CASE {column} " + " ".join(f"WHEN '{v}' THEN {c}" for v, c in codes.items()) + " END"


# Bits 0-2 type, 3 record, 4-5 restriction, 6 and up ring timeout.
_SETTINGS_BITS = (
    f"({_sql_code('type', _TYPE_CODES)}) + 8 * (record != 0)"
    f" + 16 * ({_sql_code('restriction', _RESTRICTION_CODES)}) + 64 * ring_timeout_s"
)
_LOAD_COLUMNS = (
    "CASE WHEN length(sub_id) BETWEEN 1 AND 18 AND sub_id GLOB '[1-9]*'"
    " AND sub_id NOT GLOB '*[^0-9]*' THEN CAST(sub_id AS INTEGER) ELSE sub_id END,"
    f" x, a, b, expires_at, out_id, {_SETTINGS_BITS}, group_id, extension,"
    " NULLIF(ringback, '{}')"
)


async def load_active_bindings(
    db: Database, now: float, *, expired_grace_s: float | None = None
) -> list[Binding]:
    """Every binding not unbound, expired ones included (the index reports EXPIRED for them).

    Built for the index (DESIGN: a million bindings, ≤ 400 bytes each, loaded in ≤ 5 s): every
    field but ``created_at``, which is 0.0 (unknown) — read a binding with :func:`get_binding`
    for it.  With ``expired_grace_s``, bindings that expired more than that long before ``now``
    are left out (they then resolve as NO_BINDING, the same ``unconnected_cause``) to bound
    memory.  ``StoreError`` for a stored type or restriction this version does not know.
    """

    def fn(conn: sqlite3.Connection) -> list[Binding]:
        # A plain tuple row factory: sqlite3.Row costs ~30 % more on a million rows.
        cursor = conn.cursor()
        cursor.row_factory = None
        pool_keys = [row[0] for row in cursor.execute("SELECT pool_key FROM pools")]
        # The partial index bindings_active (pool_key, not unbound) keeps each query a read of
        # the pool's active rows only, however much unbound history the table holds.
        sql = f"SELECT {_LOAD_COLUMNS} FROM bindings WHERE unbound_at IS NULL AND pool_key = ?"  # noqa: S608
        if expired_grace_s is not None:
            sql += " AND expires_at >= ?"
        # One str object per distinct X (an AXB X carries up to 200 bindings), one profile per
        # distinct combination of the shared settings in a pool, looked up by the values as
        # read: the settings bits alone for nearly every binding.
        shared: dict[Any, Any] = {}
        share = shared.setdefault
        loaded: list[Binding] = []
        append = loaded.append
        restore = restore_binding
        for pool_key in pool_keys:
            profiles: dict[object, BindingProfile] = {}
            profile_of = profiles.get
            args = (pool_key,) if expired_grace_s is None else (pool_key, now - expired_grace_s)
            # Each row unpacked in one step rather than indexed (~8 % of the load).
            for (
                sub,
                x,
                a,
                b,
                expires_at,
                out_id,
                bits,
                group_id,
                extension,
                ringback,
            ) in cursor.execute(sql, args):
                if group_id is None and extension is None and ringback is None:
                    settings: object = bits
                else:
                    settings = (bits, group_id, extension, ringback)
                profile = profile_of(settings)
                if profile is None:
                    profile = profiles[settings] = _load_profile(
                        pool_key, bits, group_id, extension, ringback
                    )
                if type(sub) is not int:  # not canonical decimal: kept as the str it is
                    sub = sub_key(sub)  # noqa: PLW2901
                append(restore(sub, share(x, x), a, b, expires_at, out_id, profile))
        return loaded

    return await db.read(fn)


def _load_profile(
    pool_key: PoolKey,
    bits: int | None,
    group_id: GroupId | None,
    extension: str | None,
    ringback: str | None,
) -> BindingProfile:
    if bits is None:
        raise StoreError(f"pool {pool_key}: a binding with a type or restriction not known here")
    return binding_profile(
        pool_key,
        _TYPE_BY_CODE[bits & 7],
        record=bool(bits & 8),
        restriction=_RESTRICTION_BY_CODE[(bits >> 4) & 3],
        ring_timeout_s=bits >> 6,
        group_id=group_id,
        extension=extension,
        ringback=NO_RINGBACK if ringback is None else json.loads(ringback),
    )


# ---------------------------------------------------------------------------------------------
# Groups (AXG)

MAX_GROUP_NUMBERS = 200


async def create_group(
    db: Database,
    *,
    pool_key: PoolKey,
    name: str,
    numbers: Iterable[PhoneNumber],
    remark: str | None = None,
    now: float | None = None,
) -> GroupId:
    """Create a number group in a pool (SPEC §3: name ≤128, remark ≤256, ≤200 numbers).

    Returns a new numeric group id.  ``PoolNotFoundError`` for an unknown pool, ``ValueError``
    for limits exceeded.  Numbers must already be normalised E.164.
    """
    members = sorted(set(numbers))
    if len(members) > MAX_GROUP_NUMBERS:
        raise ValueError(f"a group holds at most {MAX_GROUP_NUMBERS} numbers, got {len(members)}")
    if len(name) > 128 or (remark is not None and len(remark) > 256):
        raise ValueError("group name is at most 128 characters, remark at most 256")
    created = time.time() if now is None else now

    def op(conn: sqlite3.Connection) -> GroupId:
        if conn.execute("SELECT 1 FROM pools WHERE pool_key = ?", (pool_key,)).fetchone() is None:
            raise PoolNotFoundError(pool_key)
        group_id = GroupId(new_numeric_id())
        conn.execute(
            "INSERT INTO groups (group_id, pool_key, name, remark, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (group_id, pool_key, name, remark, created),
        )
        conn.executemany(
            "INSERT INTO group_members (group_id, number) VALUES (?, ?)",
            [(group_id, n) for n in members],
        )
        return group_id

    return await db.write(op)


async def group_members(db: Database, group_id: GroupId) -> list[PhoneNumber]:
    """The members of a group, sorted (empty for an unknown or deleted group)."""

    def fn(conn: sqlite3.Connection) -> list[PhoneNumber]:
        return [
            PhoneNumber(r[0])
            for r in conn.execute(
                "SELECT m.number FROM group_members m JOIN groups g USING (group_id)"
                " WHERE m.group_id = ? AND g.deleted_at IS NULL ORDER BY m.number",
                (group_id,),
            )
        ]

    return await db.read(fn)


async def set_group_members(
    db: Database, group_id: GroupId, numbers: Iterable[PhoneNumber]
) -> None:
    """Overwrite a group's members (SPEC §3 overwrite); ``GroupNotFoundError`` if none."""
    members = sorted(set(numbers))
    if len(members) > MAX_GROUP_NUMBERS:
        raise ValueError(f"a group holds at most {MAX_GROUP_NUMBERS} numbers, got {len(members)}")

    def op(conn: sqlite3.Connection) -> None:
        found = conn.execute(
            "SELECT 1 FROM groups WHERE group_id = ? AND deleted_at IS NULL", (group_id,)
        ).fetchone()
        if found is None:
            raise GroupNotFoundError(f"no group {group_id!r}")
        conn.execute("DELETE FROM group_members WHERE group_id = ?", (group_id,))
        conn.executemany(
            "INSERT INTO group_members (group_id, number) VALUES (?, ?)",
            [(group_id, n) for n in members],
        )

    await db.write(op)


async def load_groups(db: Database) -> dict[GroupId, list[PhoneNumber]]:
    """Every undeleted group with its members (sorted): the index's start-up load."""

    def fn(conn: sqlite3.Connection) -> dict[GroupId, list[PhoneNumber]]:
        groups: dict[GroupId, list[PhoneNumber]] = {
            GroupId(r[0]): []
            for r in conn.execute("SELECT group_id FROM groups WHERE deleted_at IS NULL")
        }
        for group_id, number in conn.execute(
            "SELECT m.group_id, m.number FROM group_members m JOIN groups g USING (group_id)"
            " WHERE g.deleted_at IS NULL ORDER BY m.group_id, m.number"
        ):
            groups[GroupId(group_id)].append(PhoneNumber(number))
        return groups

    return await db.read(fn)


# ---------------------------------------------------------------------------------------------
# Call records

_CALL_COLUMNS = (
    "id", "pool_key", "sub_id", "call_id", "phone_no", "secret_no", "peer_no",
    "called_display_no", "city", "call_type", "call_time", "call_out_time", "ring_time",
    "start_time", "release_time", "release_dir", "release_cause", "unconnected_cause",
    "record_url", "ring_record_url", "out_id", "duration_s", "recording_path",
)  # fmt: skip
_INSERT_CALL = (
    f"INSERT INTO call_records ({', '.join(_CALL_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' * len(_CALL_COLUMNS))})"
)


def _call_record(row: sqlite3.Row) -> CallRecord:
    values = dict(zip(_CALL_COLUMNS, tuple(row), strict=True))
    values["call_type"] = CallType(values["call_type"])
    values["release_dir"] = ReleaseDir(values["release_dir"])
    values["unconnected_cause"] = UnconnectedCause(values["unconnected_cause"])
    return CallRecord(**values)


async def insert_call_record(db: Database, record: CallRecord) -> None:
    """Persist one call record; ``ConflictError`` if its id exists (a duplicate write)."""
    params = tuple(
        int(v) if isinstance(v, CallType | ReleaseDir | UnconnectedCause) else v
        for v in (getattr(record, c) for c in _CALL_COLUMNS)
    )

    def op(conn: sqlite3.Connection) -> None:
        try:
            conn.execute(_INSERT_CALL, params)
        except sqlite3.IntegrityError as error:
            raise ConflictError(f"call record {record.id}: {error}") from error

    await db.write(op)


async def recent_call_records(
    db: Database,
    limit: int,
    *,
    pool_keys: Sequence[PoolKey] | None = None,
    call_id: str | None = None,
    sub_id: SubId | None = None,
) -> list[CallRecord]:
    """The latest ``limit`` call records, newest (last written) first.

    Optionally only those of ``pool_keys`` (a tenant's pools), of one call, of one binding.
    """
    conditions: list[str] = []
    params: list[object] = []
    if pool_keys is not None:
        if not pool_keys:
            return []
        conditions.append(f"pool_key IN ({', '.join('?' * len(pool_keys))})")
        params += pool_keys
    if call_id is not None:
        conditions.append("call_id = ?")
        params.append(call_id)
    if sub_id is not None:
        conditions.append("sub_id = ?")
        params.append(sub_id)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def fn(conn: sqlite3.Connection) -> list[CallRecord]:
        rows = conn.execute(
            f"SELECT {', '.join(_CALL_COLUMNS)} FROM call_records{where}"  # noqa: S608
            " ORDER BY rowid DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_call_record(r) for r in rows]

    return await db.read(fn)


async def get_call_record(db: Database, record_id: str) -> CallRecord | None:
    """One call record by its id, or None."""

    def fn(conn: sqlite3.Connection) -> CallRecord | None:
        row = conn.execute(
            f"SELECT {', '.join(_CALL_COLUMNS)} FROM call_records WHERE id = ?",  # noqa: S608
            (record_id,),
        ).fetchone()
        return None if row is None else _call_record(row)

    return await db.read(fn)
