"""AXG groups and blacklists (pool-wide and point-to-point).

A service of the control plane: constructed by :class:`api.control.ControlPlane` with itself,
so it shares the database, the clock, the binding index and the tenant scoping (``tenant``
None = operator; another tenant's resource answers as one that does not exist).

Every change is written durably first, then applied to the binding index at once, so the next
call resolves with it. Changes to one pool's groups and blacklists are serialised by a lock per
pool: the write and the index update of one change never interleave with another's.

**Groups** (SPEC §3 "G groups", AXG pools only): name ≤ 128 characters, remark ≤ 256, 0..200
numbers at creation (the reference's CreateAxgGroup makes ``Numbers`` optional); ``add`` /
``delete`` / ``overwrite`` take ≤ 200 numbers per call and never leave more than 200 in the group.
Adding a member twice or deleting a number that is not a member is not an error (the group ends
as asked). A group is deleted only when no binding that is not unbound names it (``GROUP_IN_USE``);
deletion is soft (reports may name old groups).

**Pool blacklist** (AXN and AXN_EXT pools only, SPEC §3): these callers reach no X of the pool.

**Pair blocks** (any pool type): ``first:second`` with a :class:`~routing.model.BlockDirection`.
A pair is one entry whichever way round it is written: ``b:a`` names the entry ``a:b`` (in the
orientation it was first added), with the directions swapped. Adding merges directions (``a:b``
FIRST_TO_SECOND then ``a:b`` SECOND_TO_FIRST leaves ``a:b`` BOTH); removing lifts the given
directions that are blocked and deletes the entry once none is left.

Adding an entry that exists (same number, same or covered direction) is an idempotent success,
as the reference's AddSecretBlacklist; removing one that does not exist (or none of whose
directions are blocked) is ``NotFound(BLACKLIST_NOT_EXIST)``.

Reference mapping (DYPLSAPI.md §6; for the RPC layer): OperateAxgGroup ``OperateType``
``addNumbers`` / ``deleteNumbers`` / ``overwriteNumbers`` → :data:`GROUP_OPERATIONS_RPC`;
AddSecretBlacklist / DeleteSecretBlacklist ``WayControl`` → :data:`WAY_CONTROL`:
``DUPLEX_REJECT`` (the default) → BOTH, ``PHONEA_REJECT`` → FIRST_TO_SECOND (the first number of
``BlackNo`` = ``a:b``, phone A, is refused when it calls b), ``PHONEB_REJECT`` → SECOND_TO_FIRST.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import store
from api.errors import Conflict, ErrorCode, InvalidInput, NotFound
from api.locks import KeyedLocks
from engine.logging import get_logger
from routing.model import BindingType, BlockDirection, GroupId, PhoneNumber, PoolKey
from routing.numbers import InvalidNumberError, normalize
from store import lists as store_lists
from store.lists import GroupRow, PairBlockRow, PoolBlacklistRow
from store.repositories import MAX_GROUP_NUMBERS as STORE_MAX_GROUP_NUMBERS

if TYPE_CHECKING:
    from api.control import ControlPlane
    from store import Pool

__all__ = [
    "BLACKLIST_NOT_EXIST",
    "GROUP_IN_USE",
    "GROUP_OPERATIONS_RPC",
    "MAX_GROUP_NAME_CHARS",
    "MAX_GROUP_NUMBERS",
    "MAX_GROUP_REMARK_CHARS",
    "WAY_CONTROL",
    "BlacklistEntry",
    "GroupOperation",
    "GroupView",
    "Lists",
    "PairBlock",
]

_log = get_logger("api.lists")

#: A group holds at most this many numbers; one operation names at most this many too.
MAX_GROUP_NUMBERS: Final = STORE_MAX_GROUP_NUMBERS
MAX_GROUP_NAME_CHARS: Final = 128
MAX_GROUP_REMARK_CHARS: Final = 256

#: Error codes of this area (string literals: ``api.errors.ErrorCode`` is not ours to extend).
GROUP_IN_USE: Final = "GROUP_IN_USE"
BLACKLIST_NOT_EXIST: Final = "BLACKLIST_NOT_EXIST"

#: Pool types that have a pool-wide blacklist (SPEC §3).
_BLACKLIST_POOL_TYPES: Final = (BindingType.AXN, BindingType.AXN_EXT)

GroupView = GroupRow
BlacklistEntry = PoolBlacklistRow
PairBlock = PairBlockRow


class GroupOperation(StrEnum):
    """What :meth:`Lists.operate_group` does with the numbers given."""

    ADD = "add"
    DELETE = "delete"
    OVERWRITE = "overwrite"


#: The reference's OperateAxgGroup ``OperateType`` values.
GROUP_OPERATIONS_RPC: Final[dict[str, GroupOperation]] = {
    "addNumbers": GroupOperation.ADD,
    "deleteNumbers": GroupOperation.DELETE,
    "overwriteNumbers": GroupOperation.OVERWRITE,
}

#: The reference's AddSecretBlacklist / DeleteSecretBlacklist ``WayControl`` values.
WAY_CONTROL: Final[dict[str, BlockDirection]] = {
    "DUPLEX_REJECT": BlockDirection.BOTH,
    "PHONEA_REJECT": BlockDirection.FIRST_TO_SECOND,
    "PHONEB_REJECT": BlockDirection.SECOND_TO_FIRST,
}

_Edge = tuple[PhoneNumber, PhoneNumber]


def _number(raw: str, field: str) -> PhoneNumber:
    """Normalise ``raw``; the error names ``field`` and keeps the routing code."""
    try:
        return normalize(raw)
    except InvalidNumberError as error:
        raise InvalidInput(error.code, f"{field}: {error.message}") from None


def _numbers(raw: Iterable[str], field: str, *, least: int) -> list[PhoneNumber]:
    """``least``..200 numbers, each normalised, duplicates dropped (order kept)."""
    given = list(raw)
    if not least <= len(given) <= MAX_GROUP_NUMBERS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"{field}: {least}..{MAX_GROUP_NUMBERS} numbers per request, got {len(given)}",
        )
    if any(not isinstance(item, str) for item in given):
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"{field}: numbers must be strings")
    return list(dict.fromkeys(_number(item, f"{field}[{i}]") for i, item in enumerate(given)))


def _edges(first: PhoneNumber, second: PhoneNumber, direction: BlockDirection) -> set[_Edge]:
    """The directed (caller, callee) pairs a block refuses."""
    if direction is BlockDirection.FIRST_TO_SECOND:
        return {(first, second)}
    if direction is BlockDirection.SECOND_TO_FIRST:
        return {(second, first)}
    return {(first, second), (second, first)}


def _direction(first: PhoneNumber, second: PhoneNumber, edges: set[_Edge]) -> BlockDirection | None:
    """The direction of ``first:second`` refusing exactly ``edges`` (None: no edge)."""
    forward = (first, second) in edges
    backward = (second, first) in edges
    if forward and backward:
        return BlockDirection.BOTH
    if forward:
        return BlockDirection.FIRST_TO_SECOND
    if backward:
        return BlockDirection.SECOND_TO_FIRST
    return None


def _pair_key(first: PhoneNumber, second: PhoneNumber) -> tuple[PhoneNumber, PhoneNumber]:
    """One key per unordered pair."""
    return (first, second) if first <= second else (second, first)


class Lists:
    """AXG groups and blacklists (pool-wide and point-to-point)."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self._locks = KeyedLocks()  # one per pool: a pool's lists change one at a time
        # Mirrors of the durable lists, kept to rebuild the index's view after each change.
        self._blacklists: dict[PoolKey, dict[PhoneNumber, float]] = {}
        self._pairs: dict[PoolKey, dict[tuple[PhoneNumber, PhoneNumber], PairBlockRow]] = {}

    async def load(self) -> None:
        """Put every pool blacklist and pair block into the index (before calls are routed).

        Groups are not loaded here: :meth:`api.control.ControlPlane.load` already puts them in
        the index and in its group → pool map.
        """
        index = self.control.index
        for row in await store_lists.load_pool_blacklists(self.control.db):
            self._blacklists.setdefault(row.pool_key, {})[row.number] = row.created_at
        for pool_key, entries in self._blacklists.items():
            index.set_pool_blacklist(pool_key, entries)
        pairs = await store_lists.load_pair_blocks(self.control.db)
        for pair in pairs:
            self._remember_pair(pair)
            index.add_pair_block(
                pair.pool_key, first=pair.first, second=pair.second, direction=pair.direction
            )
        _log.info(
            "lists_loaded",
            blacklisted=sum(len(numbers) for numbers in self._blacklists.values()),
            pair_blocks=len(pairs),
        )

    # ------------------------------------------------------------------------- groups

    async def _axg_pool(self, pool_key: str, tenant: str | None) -> Pool:
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        if pool.type is not BindingType.AXG:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"groups belong to AXG pools; pool {pool.pool_key} is {pool.type.value}",
            )
        return pool

    def _group_of(self, pool: Pool, group_id: str) -> GroupId:
        """``group_id`` when it is an undeleted group of ``pool``, else GROUP_NOT_EXIST."""
        gid = GroupId(str(group_id).strip())
        if self.control._group_pool.get(gid) != pool.pool_key:
            # Unknown, deleted, or another pool's (another tenant's): the same answer.
            raise NotFound(
                ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r} in pool {pool.pool_key}"
            )
        return gid

    async def create_group(
        self,
        pool_key: str,
        name: str,
        numbers: Iterable[str] = (),
        remark: str | None = None,
        *,
        tenant: str | None = None,
    ) -> GroupId:
        """Create a number group (0..200 numbers) in an AXG pool; returns its id."""
        pool = await self._axg_pool(pool_key, tenant)
        group_name = name.strip() if isinstance(name, str) else ""
        if not group_name:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "name must not be empty")
        if len(group_name) > MAX_GROUP_NAME_CHARS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"name is at most {MAX_GROUP_NAME_CHARS} characters"
            )
        note = (remark.strip() or None) if remark is not None else None
        if note is not None and len(note) > MAX_GROUP_REMARK_CHARS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"remark is at most {MAX_GROUP_REMARK_CHARS} characters",
            )
        members = sorted(_numbers(numbers, "numbers", least=0))
        async with self._locks.hold(pool.pool_key):
            try:
                group_id = await store.create_group(
                    self.control.db,
                    pool_key=pool.pool_key,
                    name=group_name,
                    numbers=members,
                    remark=note,
                    now=self.control.clock(),
                )
            except store.PoolNotFoundError:
                raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}") from None
            self.control.index.set_group(group_id, members)
            self.control._group_pool[group_id] = pool.pool_key
        _log.info("group_created", group_id=group_id, pool_key=pool.pool_key, size=len(members))
        return group_id

    async def get_group(
        self, pool_key: str, group_id: str, *, tenant: str | None = None
    ) -> GroupView:
        """The group with its members; ``NotFound(GROUP_NOT_EXIST)`` unless it is the pool's."""
        pool = await self._axg_pool(pool_key, tenant)
        gid = self._group_of(pool, group_id)
        group = await store_lists.get_group(self.control.db, gid)
        if group is None:  # deleted meanwhile
            raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}")
        return group

    async def list_groups(self, pool_key: str, *, tenant: str | None = None) -> list[GroupView]:
        """The pool's groups with their members, oldest first."""
        pool = await self._axg_pool(pool_key, tenant)
        return await store_lists.list_groups(self.control.db, pool.pool_key)

    async def operate_group(
        self,
        pool_key: str,
        group_id: str,
        operation: GroupOperation | str,
        numbers: Iterable[str],
        *,
        tenant: str | None = None,
    ) -> GroupView:
        """Add, delete or overwrite members (≤ 200 per call); returns the group after it.

        All or nothing: every number is checked first, and a change that would leave more than
        200 members is refused without writing.
        """
        pool = await self._axg_pool(pool_key, tenant)
        gid = self._group_of(pool, group_id)
        try:
            action = GroupOperation(operation)
        except ValueError:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"operation must be one of {', '.join(op.value for op in GroupOperation)}",
            ) from None
        # An overwrite may empty the group (a group may be created empty); add/delete need one.
        least = 0 if action is GroupOperation.OVERWRITE else 1
        given = _numbers(numbers, "numbers", least=least)
        db = self.control.db
        async with self._locks.hold(pool.pool_key):
            try:
                if action is GroupOperation.ADD:
                    members = await store_lists.add_group_members(db, gid, given)
                elif action is GroupOperation.DELETE:
                    members = await store_lists.remove_group_members(db, gid, given)
                else:
                    members = sorted(given)
                    await store.set_group_members(db, gid, members)
            except store.GroupNotFoundError:
                raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}") from None
            except store_lists.GroupTooLargeError as error:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, str(error)) from None
            self.control.index.set_group(gid, members)
            group = await store_lists.get_group(db, gid)
        _log.info(
            "group_changed",
            group_id=gid,
            pool_key=pool.pool_key,
            operation=action.value,
            given=len(given),
            size=len(members),
        )
        if group is None:  # cannot happen under the pool lock; keeps the type honest
            raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}")
        return group

    async def delete_group(
        self, pool_key: str, group_id: str, *, tenant: str | None = None
    ) -> None:
        """Delete (softly) a group no binding uses; ``Conflict(GROUP_IN_USE)`` otherwise."""
        pool = await self._axg_pool(pool_key, tenant)
        gid = self._group_of(pool, group_id)
        async with self._locks.hold(pool.pool_key):
            # Out of the group → pool map first, so no new bind can name the group while the
            # delete is being written; put back if the delete is refused.
            self.control._group_pool.pop(gid, None)
            try:
                await store_lists.soft_delete_group(self.control.db, gid, now=self.control.clock())
            except store_lists.GroupInUseError as error:
                self.control._group_pool[gid] = pool.pool_key
                raise Conflict(GROUP_IN_USE, str(error)) from None
            except store.GroupNotFoundError:
                raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}") from None
            except BaseException:
                self.control._group_pool[gid] = pool.pool_key
                raise
            self.control.index.remove_group(gid)
        _log.info("group_deleted", group_id=gid, pool_key=pool.pool_key)

    # ------------------------------------------------------------------------- pool blacklist

    async def _blacklist_pool(self, pool_key: str, tenant: str | None) -> Pool:
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        if pool.type not in _BLACKLIST_POOL_TYPES:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"pool-wide blacklists belong to AXN and AXN_EXT pools; pool {pool.pool_key} is "
                f"{pool.type.value} (point-to-point blocks work in every pool)",
            )
        return pool

    async def add_pool_blacklist(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> BlacklistEntry:
        """Blacklist a caller for every X of the pool; idempotent (returns the entry)."""
        pool = await self._blacklist_pool(pool_key, tenant)
        caller = _number(number, "number")
        async with self._locks.hold(pool.pool_key):
            entries = self._blacklists.setdefault(pool.pool_key, {})
            created = entries.get(caller)
            if created is None:
                created = self.control.clock()
                await store_lists.insert_pool_blacklist(
                    self.control.db, pool.pool_key, caller, now=created
                )
                entries[caller] = created
                self.control.index.set_pool_blacklist(pool.pool_key, entries)
                _log.info("blacklist_added", pool_key=pool.pool_key, size=len(entries))
        return BlacklistEntry(pool_key=pool.pool_key, number=caller, created_at=created)

    async def remove_pool_blacklist(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> None:
        """Lift a pool blacklist entry; ``NotFound(BLACKLIST_NOT_EXIST)`` when there is none."""
        pool = await self._blacklist_pool(pool_key, tenant)
        caller = _number(number, "number")
        async with self._locks.hold(pool.pool_key):
            entries = self._blacklists.get(pool.pool_key, {})
            if caller not in entries:
                raise NotFound(
                    BLACKLIST_NOT_EXIST, f"the number is not blacklisted in pool {pool.pool_key}"
                )
            await store_lists.remove_pool_blacklist(self.control.db, pool.pool_key, caller)
            del entries[caller]
            self.control.index.set_pool_blacklist(pool.pool_key, entries)
        _log.info("blacklist_removed", pool_key=pool.pool_key, size=len(entries))

    async def list_pool_blacklist(
        self, pool_key: str, *, tenant: str | None = None
    ) -> list[BlacklistEntry]:
        """The pool's blacklisted numbers, sorted."""
        pool = await self._blacklist_pool(pool_key, tenant)
        return await store_lists.list_pool_blacklist(self.control.db, pool.pool_key)

    # ------------------------------------------------------------------------- pair blocks

    def _remember_pair(self, pair: PairBlockRow) -> None:
        self._pairs.setdefault(pair.pool_key, {})[_pair_key(pair.first, pair.second)] = pair

    def _pair_numbers(self, first: str, second: str) -> tuple[PhoneNumber, PhoneNumber]:
        one = _number(first, "first")
        other = _number(second, "second")
        if one == other:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "first and second must differ")
        return one, other

    @staticmethod
    def _direction_of(direction: BlockDirection | str) -> BlockDirection:
        try:
            return BlockDirection(direction)
        except ValueError:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"direction must be one of {', '.join(d.value for d in BlockDirection)}",
            ) from None

    async def add_pair_block(
        self,
        pool_key: str,
        first: str,
        second: str,
        direction: BlockDirection | str = BlockDirection.BOTH,
        *,
        tenant: str | None = None,
    ) -> PairBlock:
        """Block calls between two numbers through the pool's X numbers; returns the entry.

        Merged into the pair's entry when there is one (see the module docstring); blocking a
        direction already blocked changes nothing.
        """
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        one, other = self._pair_numbers(first, second)
        wanted = self._direction_of(direction)
        key = _pair_key(one, other)
        async with self._locks.hold(pool.pool_key):
            pairs = self._pairs.setdefault(pool.pool_key, {})
            existing = pairs.get(key)
            if existing is None:
                entry = PairBlockRow(
                    pool_key=pool.pool_key,
                    first=one,
                    second=other,
                    direction=wanted,
                    created_at=self.control.clock(),
                )
            else:
                edges = _edges(existing.first, existing.second, existing.direction)
                merged = _direction(
                    existing.first, existing.second, edges | _edges(one, other, wanted)
                )
                assert merged is not None
                if merged is existing.direction:
                    return existing
                entry = PairBlockRow(
                    pool_key=pool.pool_key,
                    first=existing.first,
                    second=existing.second,
                    direction=merged,
                    created_at=existing.created_at,
                )
            await store_lists.set_pair_block(
                self.control.db,
                pool.pool_key,
                entry.first,
                entry.second,
                entry.direction,
                now=entry.created_at,
            )
            pairs[key] = entry
            self.control.index.add_pair_block(
                pool.pool_key, first=entry.first, second=entry.second, direction=entry.direction
            )
        _log.info("pair_block_added", pool_key=pool.pool_key, direction=entry.direction.value)
        return entry

    async def remove_pair_block(
        self,
        pool_key: str,
        first: str,
        second: str,
        direction: BlockDirection | str = BlockDirection.BOTH,
        *,
        tenant: str | None = None,
    ) -> PairBlock | None:
        """Lift the given direction(s) of a pair block; returns what is left (None: nothing).

        ``NotFound(BLACKLIST_NOT_EXIST)`` when the pair blocks none of those directions.
        """
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        one, other = self._pair_numbers(first, second)
        lifted_direction = self._direction_of(direction)
        key = _pair_key(one, other)
        async with self._locks.hold(pool.pool_key):
            pairs = self._pairs.get(pool.pool_key, {})
            existing = pairs.get(key)
            edges = (
                set()
                if existing is None
                else _edges(existing.first, existing.second, existing.direction)
            )
            lifted = edges & _edges(one, other, lifted_direction)
            if existing is None or not lifted:
                raise NotFound(
                    BLACKLIST_NOT_EXIST,
                    f"no such point-to-point block ({lifted_direction.value}) in pool "
                    f"{pool.pool_key}",
                )
            left = _direction(existing.first, existing.second, edges - lifted)
            db = self.control.db
            remaining: PairBlockRow | None = None
            if left is None:
                await store_lists.delete_pair_block(
                    db, pool.pool_key, existing.first, existing.second
                )
                del pairs[key]
            else:
                remaining = PairBlockRow(
                    pool_key=pool.pool_key,
                    first=existing.first,
                    second=existing.second,
                    direction=left,
                    created_at=existing.created_at,
                )
                await store_lists.set_pair_block(
                    db,
                    pool.pool_key,
                    existing.first,
                    existing.second,
                    left,
                    now=existing.created_at,
                )
                pairs[key] = remaining
            index = self.control.index
            index.remove_pair_block(
                pool.pool_key,
                first=existing.first,
                second=existing.second,
                direction=BlockDirection.BOTH,
            )
            if remaining is not None:
                index.add_pair_block(
                    pool.pool_key,
                    first=remaining.first,
                    second=remaining.second,
                    direction=remaining.direction,
                )
        _log.info("pair_block_removed", pool_key=pool.pool_key, left=left and left.value)
        return remaining

    async def list_pair_blocks(
        self, pool_key: str, *, tenant: str | None = None
    ) -> list[PairBlock]:
        """The pool's point-to-point blocks."""
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        return await store_lists.list_pair_blocks(self.control.db, pool.pool_key)

    # ------------------------------------------------------------------------- views

    def group_view(self, group: GroupView) -> dict[str, object]:
        """A group as the API shows it (E.164 numbers, local time)."""
        return {
            "group_id": group.group_id,
            "pool_key": group.pool_key,
            "name": group.name,
            "remark": group.remark,
            "numbers": list(group.numbers),
            "created": self.control.local_time(group.created_at),
        }

    def blacklist_view(self, entry: BlacklistEntry) -> dict[str, object]:
        """A pool blacklist entry as the API shows it."""
        return {
            "pool_key": entry.pool_key,
            "number": entry.number,
            "created": self.control.local_time(entry.created_at),
        }

    def pair_view(self, pair: PairBlock) -> dict[str, object]:
        """A point-to-point block as the API shows it."""
        return {
            "pool_key": pair.pool_key,
            "first": pair.first,
            "second": pair.second,
            "direction": pair.direction.value,
            "created": self.control.local_time(pair.created_at),
        }
