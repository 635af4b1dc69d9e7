"""AXG groups and blacklists in the store (tables ``groups``, ``group_members``, ``blacklists``,
``blacklist_pairs`` of migration 0001).

Complements :mod:`store.repositories` (which creates groups, overwrites members and loads them
for the index): reads of a group with its details, the soft delete that refuses a group still
used by a binding, and the pool-wide and point-to-point blacklists. Every write is one
``db.write`` op (one transaction); numbers must already be normalised E.164.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from routing.model import BlockDirection, GroupId, PhoneNumber, PoolKey
from store.db import Database, StoreError
from store.repositories import MAX_GROUP_NUMBERS, GroupNotFoundError

__all__ = [
    "GroupInUseError",
    "GroupRow",
    "GroupTooLargeError",
    "PairBlockRow",
    "PoolBlacklistRow",
    "add_group_members",
    "delete_pair_block",
    "get_group",
    "insert_pool_blacklist",
    "list_groups",
    "list_pair_blocks",
    "list_pool_blacklist",
    "load_pair_blocks",
    "load_pool_blacklists",
    "remove_group_members",
    "remove_pool_blacklist",
    "set_pair_block",
    "soft_delete_group",
]


class GroupInUseError(StoreError):
    """A group still named by a binding that is not unbound; it was not deleted."""

    def __init__(self, group_id: str, bindings: int) -> None:
        """Carry how many bindings hold the group, for the message."""
        super().__init__(
            f"group {group_id} is used by {bindings} binding(s) that are not unbound; "
            "unbind them (or move them to another group) first"
        )
        self.group_id = group_id
        self.bindings = bindings


class GroupTooLargeError(StoreError):
    """The change would leave the group above :data:`MAX_GROUP_NUMBERS`; nothing was written."""

    def __init__(self, size: int) -> None:
        """Name the size the change would have produced."""
        super().__init__(f"the group would hold {size} numbers; at most {MAX_GROUP_NUMBERS}")
        self.size = size


@dataclass(frozen=True, slots=True)
class GroupRow:
    """An undeleted AXG number group with its members (sorted)."""

    group_id: GroupId
    pool_key: PoolKey
    name: str
    remark: str | None
    created_at: float
    numbers: tuple[PhoneNumber, ...]


@dataclass(frozen=True, slots=True)
class PoolBlacklistRow:
    """A number that may call no X of the pool."""

    pool_key: PoolKey
    number: PhoneNumber
    created_at: float


@dataclass(frozen=True, slots=True)
class PairBlockRow:
    """A point-to-point block between ``first`` and ``second`` in ``direction``."""

    pool_key: PoolKey
    first: PhoneNumber
    second: PhoneNumber
    direction: BlockDirection
    created_at: float


# ``blacklist_pairs.direction`` is written in lower case (0001's CHECK); the model's enum in upper.
_DB_DIRECTION: Final = {direction: direction.value.lower() for direction in BlockDirection}
_DIRECTION_OF: Final = {text: direction for direction, text in _DB_DIRECTION.items()}


# ---------------------------------------------------------------------------------------------
# Groups


def _members(conn: sqlite3.Connection, group_id: str) -> list[PhoneNumber]:
    return [
        PhoneNumber(row[0])
        for row in conn.execute(
            "SELECT number FROM group_members WHERE group_id = ? ORDER BY number", (group_id,)
        )
    ]


def _live_group(conn: sqlite3.Connection, group_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT group_id, pool_key, name, remark, created_at FROM groups"
        " WHERE group_id = ? AND deleted_at IS NULL",
        (group_id,),
    ).fetchone()
    if row is None:
        raise GroupNotFoundError(f"no group {group_id!r}")
    return row


def _group_row(row: sqlite3.Row, numbers: Iterable[PhoneNumber]) -> GroupRow:
    return GroupRow(
        group_id=GroupId(row["group_id"]),
        pool_key=PoolKey(row["pool_key"]),
        name=row["name"],
        remark=row["remark"],
        created_at=float(row["created_at"]),
        numbers=tuple(numbers),
    )


async def get_group(db: Database, group_id: GroupId) -> GroupRow | None:
    """The group with its members, None when unknown or deleted."""

    def fn(conn: sqlite3.Connection) -> GroupRow | None:
        try:
            row = _live_group(conn, group_id)
        except GroupNotFoundError:
            return None
        return _group_row(row, _members(conn, group_id))

    return await db.read(fn)


async def list_groups(db: Database, pool_key: PoolKey) -> list[GroupRow]:
    """The pool's undeleted groups with their members, oldest first."""

    def fn(conn: sqlite3.Connection) -> list[GroupRow]:
        rows = conn.execute(
            "SELECT group_id, pool_key, name, remark, created_at FROM groups"
            " WHERE pool_key = ? AND deleted_at IS NULL ORDER BY created_at, group_id",
            (pool_key,),
        ).fetchall()
        members: dict[str, list[PhoneNumber]] = {row["group_id"]: [] for row in rows}
        for group_id, number in conn.execute(
            "SELECT m.group_id, m.number FROM group_members m JOIN groups g USING (group_id)"
            " WHERE g.pool_key = ? AND g.deleted_at IS NULL ORDER BY m.group_id, m.number",
            (pool_key,),
        ):
            members[group_id].append(PhoneNumber(number))
        return [_group_row(row, members[row["group_id"]]) for row in rows]

    return await db.read(fn)


async def add_group_members(
    db: Database, group_id: GroupId, numbers: Iterable[PhoneNumber]
) -> list[PhoneNumber]:
    """Add members (those already in are kept); returns the new member list, sorted.

    Read and write in one transaction, so concurrent changes cannot lose one another.
    ``GroupNotFoundError`` for an unknown or deleted group, ``GroupTooLargeError`` when the
    group would exceed :data:`MAX_GROUP_NUMBERS` (nothing written then).
    """
    wanted = set(numbers)

    def op(conn: sqlite3.Connection) -> list[PhoneNumber]:
        _live_group(conn, group_id)
        current = set(_members(conn, group_id))
        after = current | wanted
        if len(after) > MAX_GROUP_NUMBERS:
            raise GroupTooLargeError(len(after))
        conn.executemany(
            "INSERT INTO group_members (group_id, number) VALUES (?, ?)",
            [(group_id, number) for number in sorted(wanted - current)],
        )
        return sorted(after)

    return await db.write(op)


async def remove_group_members(
    db: Database, group_id: GroupId, numbers: Iterable[PhoneNumber]
) -> list[PhoneNumber]:
    """Remove members (numbers not in the group are ignored); returns the members left, sorted.

    ``GroupNotFoundError`` for an unknown or deleted group.
    """
    unwanted = sorted(set(numbers))

    def op(conn: sqlite3.Connection) -> list[PhoneNumber]:
        _live_group(conn, group_id)
        conn.executemany(
            "DELETE FROM group_members WHERE group_id = ? AND number = ?",
            [(group_id, number) for number in unwanted],
        )
        return _members(conn, group_id)

    return await db.write(op)


async def soft_delete_group(db: Database, group_id: GroupId, *, now: float) -> None:
    """Mark the group deleted (kept for reports), unless a binding not unbound still names it.

    Bindings that are expired but not yet unbound count as users: they are still indexed and
    could be extended. ``GroupNotFoundError`` for an unknown or already deleted group,
    ``GroupInUseError`` when in use (nothing written).
    """

    def op(conn: sqlite3.Connection) -> None:
        _live_group(conn, group_id)
        (users,) = conn.execute(
            "SELECT count(*) FROM bindings WHERE group_id = ? AND unbound_at IS NULL",
            (group_id,),
        ).fetchone()
        if users:
            raise GroupInUseError(group_id, int(users))
        conn.execute("UPDATE groups SET deleted_at = ? WHERE group_id = ?", (now, group_id))

    await db.write(op)


# ---------------------------------------------------------------------------------------------
# Pool-wide blacklist


async def insert_pool_blacklist(
    db: Database, pool_key: PoolKey, number: PhoneNumber, *, now: float
) -> bool:
    """Blacklist ``number`` in the pool; True when new, False when it already was (kept as is)."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "INSERT INTO blacklists (pool_key, number, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (pool_key, number) DO NOTHING",
            (pool_key, number, now),
        )
        return cursor.rowcount == 1

    return await db.write(op)


async def remove_pool_blacklist(db: Database, pool_key: PoolKey, number: PhoneNumber) -> bool:
    """Lift a pool blacklist entry; False when there was none."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "DELETE FROM blacklists WHERE pool_key = ? AND number = ?", (pool_key, number)
        )
        return cursor.rowcount == 1

    return await db.write(op)


def _blacklist_row(row: sqlite3.Row) -> PoolBlacklistRow:
    return PoolBlacklistRow(
        pool_key=PoolKey(row["pool_key"]),
        number=PhoneNumber(row["number"]),
        created_at=float(row["created_at"]),
    )


async def list_pool_blacklist(db: Database, pool_key: PoolKey) -> list[PoolBlacklistRow]:
    """The pool's blacklisted numbers, sorted by number."""

    def fn(conn: sqlite3.Connection) -> list[PoolBlacklistRow]:
        return [
            _blacklist_row(row)
            for row in conn.execute(
                "SELECT pool_key, number, created_at FROM blacklists WHERE pool_key = ?"
                " ORDER BY number",
                (pool_key,),
            )
        ]

    return await db.read(fn)


async def load_pool_blacklists(db: Database) -> list[PoolBlacklistRow]:
    """Every pool's blacklisted numbers: the index's start-up load."""

    def fn(conn: sqlite3.Connection) -> list[PoolBlacklistRow]:
        return [
            _blacklist_row(row)
            for row in conn.execute(
                "SELECT pool_key, number, created_at FROM blacklists ORDER BY pool_key, number"
            )
        ]

    return await db.read(fn)


# ---------------------------------------------------------------------------------------------
# Point-to-point blocks


async def set_pair_block(
    db: Database,
    pool_key: PoolKey,
    first: PhoneNumber,
    second: PhoneNumber,
    direction: BlockDirection,
    *,
    now: float,
) -> None:
    """Create the pair ``first:second`` or change its direction (its ``created_at`` is kept).

    The caller keeps one row per unordered pair: ``second:first`` must not exist as well.
    """

    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO blacklist_pairs (pool_key, first, second, direction, created_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (pool_key, first, second) DO UPDATE SET direction = excluded.direction",
            (pool_key, first, second, _DB_DIRECTION[direction], now),
        )

    await db.write(op)


async def delete_pair_block(
    db: Database, pool_key: PoolKey, first: PhoneNumber, second: PhoneNumber
) -> bool:
    """Delete the pair row ``first:second`` (that orientation); False when there was none."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "DELETE FROM blacklist_pairs WHERE pool_key = ? AND first = ? AND second = ?",
            (pool_key, first, second),
        )
        return cursor.rowcount == 1

    return await db.write(op)


def _pair_row(row: sqlite3.Row) -> PairBlockRow:
    return PairBlockRow(
        pool_key=PoolKey(row["pool_key"]),
        first=PhoneNumber(row["first"]),
        second=PhoneNumber(row["second"]),
        direction=_DIRECTION_OF[row["direction"]],
        created_at=float(row["created_at"]),
    )


_PAIR_COLUMNS: Final = "pool_key, first, second, direction, created_at"


async def list_pair_blocks(db: Database, pool_key: PoolKey) -> list[PairBlockRow]:
    """The pool's pair blocks, sorted by ``first``, ``second``."""

    def fn(conn: sqlite3.Connection) -> list[PairBlockRow]:
        return [
            _pair_row(row)
            for row in conn.execute(
                f"SELECT {_PAIR_COLUMNS} FROM blacklist_pairs WHERE pool_key = ?"  # noqa: S608
                " ORDER BY first, second",
                (pool_key,),
            )
        ]

    return await db.read(fn)


async def load_pair_blocks(db: Database) -> list[PairBlockRow]:
    """Every pair block of every pool: the index's start-up load."""

    def fn(conn: sqlite3.Connection) -> list[PairBlockRow]:
        return [
            _pair_row(row)
            for row in conn.execute(
                f"SELECT {_PAIR_COLUMNS} FROM blacklist_pairs"  # noqa: S608
                " ORDER BY pool_key, first, second"
            )
        ]

    return await db.read(fn)
