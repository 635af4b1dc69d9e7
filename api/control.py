"""The control plane's use cases: inventory, pools, bindings, groups, call records.

Transport-free and async: the HTTP API (``api.app``) and tests call these methods; the CLI talks
to the HTTP API of the running server. Every method validates *everything* before it writes, so
a refused request leaves the database untouched (each store write is one transaction). Errors are
:class:`api.errors.ControlError` with a specific code.

Bindings follow the order the call path relies on: validate → ``index.check`` → durable
``insert_binding`` → ``index.add``. The check, the write and the add run under a lock per X (the
index's sharing rules of SPEC §2 are all per X), so two concurrent binds on one X cannot both
pass the check, while binds on different X numbers share the database's group commit.

Besides the binding index, the control plane keeps two small maps in memory, loaded at start and
updated by its own writes: which pool holds which X (allocation and the "X belongs to the pool"
check) and which pool owns which AXG group. Pools themselves are cached once read (they are never
deleted and never change type).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import gc
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import store
from api.errors import Conflict, ErrorCode, InvalidInput, NotFound
from api.inventory import Inventory
from api.lists import Lists
from api.principal import visible_to
from api.tenants import Tenants
from config import Settings
from engine.logging import get_logger
from routing.index import BindConflictError, BindingIndex
from routing.model import (
    DEFAULT_RING_TIMEOUT_S,
    MAX_RING_TIMEOUT_S,
    MIN_RING_TIMEOUT_S,
    Binding,
    BindingType,
    GroupId,
    NumberSpec,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
)
from routing.numbers import InvalidNumberError, home_location, normalize
from routing.validation import InvalidBindingError
from store import CallRecord, Database, NumberRow, NumberStatus, Pool

__all__ = [
    "EXPIRES_FORMAT",
    "IMPORT_COLUMNS",
    "MIN_EXPIRY_AHEAD_S",
    "ControlPlane",
    "ImportRow",
    "open_control_plane",
    "parse_expires",
    "parse_number_csv",
]

_log = get_logger("api.control")

#: Local-time format of ``expires`` (the reference service's ``Expiration``).
EXPIRES_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
#: SPEC §2: an expiry must lie more than this far in the future.
MIN_EXPIRY_AHEAD_S: Final = 60.0
#: CSV columns of a number import, in order (header row required).
IMPORT_COLUMNS: Final = ("number", "city", "province", "carrier", "spec")
MAX_PURCHASE: Final = 1000
MAX_GROUP_NUMBERS: Final = 200
MAX_NAME_CHARS: Final = 128
MAX_OUT_ID_CHARS: Final = 128
MAX_CALLS_LIMIT: Final = 1000
MAX_IMPORT_ROWS: Final = 100_000
_MAX_EXTENSION: Final = 999


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One inventory row as given (CSV or JSON), before validation."""

    number: str
    city: str
    province: str
    carrier: str
    spec: str | int


def parse_number_csv(text: str) -> list[ImportRow]:
    """Rows of an inventory CSV with the header ``number,city,province,carrier,spec``.

    Raises ``InvalidInput(CSV_ILLEGAL)`` for a missing/other header or a row with the wrong
    number of fields (the message names the line).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows: list[ImportRow] = []
    header: list[str] | None = None
    for fields in reader:
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            header = [f.strip().lower() for f in fields]
            if tuple(header) != IMPORT_COLUMNS:
                raise InvalidInput(
                    ErrorCode.CSV_ILLEGAL,
                    f"the first line must be the header {','.join(IMPORT_COLUMNS)}",
                )
            continue
        if len(fields) != len(IMPORT_COLUMNS):
            raise InvalidInput(
                ErrorCode.CSV_ILLEGAL,
                f"line {reader.line_num}: expected {len(IMPORT_COLUMNS)} fields, got {len(fields)}",
            )
        number, city, province, carrier, spec = (f.strip() for f in fields)
        rows.append(ImportRow(number, city, province, carrier, spec))
    if header is None:
        raise InvalidInput(ErrorCode.CSV_ILLEGAL, "the CSV is empty (no header row)")
    return rows


def parse_expires(text: str, *, zone: ZoneInfo, now: float) -> float:
    """``YYYY-MM-DD HH:MM:SS`` local to ``zone`` → UTC epoch seconds, > ``now`` + 60 s.

    Raises ``InvalidInput(EXPIRE_DATE_ILLEGAL)`` for another format or a time too early.
    """
    try:
        naive = dt.datetime.strptime(text.strip(), EXPIRES_FORMAT)
    except ValueError:
        raise InvalidInput(
            ErrorCode.EXPIRE_DATE_ILLEGAL,
            f"expires must be local time 'YYYY-MM-DD HH:MM:SS' ({zone.key}), got {text!r}",
        ) from None
    expires_at = naive.replace(tzinfo=zone).timestamp()
    if expires_at <= now + MIN_EXPIRY_AHEAD_S:
        raise InvalidInput(
            ErrorCode.EXPIRE_DATE_ILLEGAL,
            f"expires {text!r} ({zone.key}) must be more than {int(MIN_EXPIRY_AHEAD_S)} s "
            "in the future",
        )
    return expires_at


def _number(raw: str, field: str) -> PhoneNumber:
    """Normalise ``raw``; the error names ``field`` and keeps the routing code."""
    try:
        return normalize(raw)
    except InvalidNumberError as error:
        raise InvalidInput(error.code, f"{field}: {error.message}") from None


def _city_key(city: str) -> str:
    """City names compare without the 市 suffix (the geocoder writes 深圳市, imports 深圳)."""
    return city.strip().removesuffix("市")


def _name(raw: str, field: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"{field} must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL, f"{field} is at most {MAX_NAME_CHARS} characters"
        )
    return name


class _KeyedLocks:
    """One ``asyncio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, key: str) -> None:
        """Acquire the lock of ``key`` (returns without yielding when it is free)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._drop(key)
            raise

    def release(self, key: str) -> None:
        """Release the lock of ``key``."""
        self._locks[key].release()
        self._drop(key)

    def _drop(self, key: str) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key]
            del self._locks[key]


class ControlPlane:
    """Use cases of the operator API over the database and the in-memory binding index."""

    def __init__(
        self,
        *,
        db: Database,
        index: BindingIndex,
        zone: ZoneInfo,
        clock: Callable[[], float] = time.time,
        master_key_path: Path | None = None,
    ) -> None:
        """``clock`` returns UTC epoch seconds; call :meth:`load` before serving.

        ``master_key_path``: the file tenants' API secrets are derived from (see
        :mod:`api.tenants`); None: ``master.key`` beside the database file.
        """
        self.db = db
        self.master_key_path = master_key_path
        self.index = index
        self.zone = zone
        self.clock = clock
        self._pools: dict[PoolKey, Pool] = {}
        # X numbers available to bindings (status in_pool), per pool, and the reverse map.
        self._pool_numbers: dict[PoolKey, list[PhoneNumber]] = {}
        self._number_pool: dict[PhoneNumber, PoolKey] = {}
        # Per pool: city (without 市) → its X numbers, for allocation in a wanted city.
        self._pool_city_numbers: dict[PoolKey, dict[str, list[PhoneNumber]]] = {}
        self._group_pool: dict[GroupId, PoolKey] = {}
        self._x_locks = _KeyedLocks()
        # The allocator's load figure per X: bindings indexed on it (active or expired, until
        # unbound) plus binds in flight on it (trying, holding or waiting for its lock), so that
        # concurrent binds spread over the pool instead of queueing on one X. Every pool number
        # has an entry (``min(..., key=weight.__getitem__)`` stays in C).
        self._x_weight: dict[PhoneNumber, int] = {}
        # The areas' services (each gets this control plane: db, clock, index, tenant scoping).
        self.tenants = Tenants(self)
        self.inventory = Inventory(self)
        self.lists = Lists(self)

    # ------------------------------------------------------------------------- start-up

    async def load(self) -> int:
        """Load bindings, groups and pool inventory from the database; returns the binding count.

        Bindings go into the index before the SIP side starts routing calls.
        """
        now = self.clock()
        bindings = await store.load_active_bindings(self.db, now)
        refused = {b.sub_id for b in self.index.load(bindings)}
        for binding in bindings:
            if binding.sub_id not in refused:
                self._add_weight(binding.x, 1)
        if refused:
            _log.error("bindings_not_indexed", count=len(refused), sub_ids=sorted(refused)[:20])
        groups = await store.load_groups(self.db)
        for group_id, members in groups.items():
            self.index.set_group(group_id, members)
        self._group_pool = await self.db.read(_group_pools)
        for info in await store.load_pool_inventory(self.db):
            if info.status is NumberStatus.IN_POOL and info.pool_key is not None:
                self._remember_number(info.pool_key, info.number, info.city)
        await self.tenants.load()
        await self.inventory.load()
        await self.lists.load()
        return len(bindings)

    def _remember_number(self, pool_key: PoolKey, number: PhoneNumber, city: str) -> None:
        self._pool_numbers.setdefault(pool_key, []).append(number)
        cities = self._pool_city_numbers.setdefault(pool_key, {})
        cities.setdefault(_city_key(city), []).append(number)
        self._number_pool[number] = pool_key
        self._x_weight.setdefault(number, 0)

    def _forget_number(self, number: PhoneNumber) -> None:
        """Take ``number`` out of its pool's allocatable set (released, locked, migrated)."""
        pool_key = self._number_pool.pop(number, None)
        if pool_key is None:
            return
        numbers = self._pool_numbers.get(pool_key, [])
        if number in numbers:
            numbers.remove(number)
        for city_numbers in self._pool_city_numbers.get(pool_key, {}).values():
            if number in city_numbers:
                city_numbers.remove(number)
                break
        self._x_weight.pop(number, None)

    def _add_weight(self, x: PhoneNumber, delta: int) -> None:
        self._x_weight[x] = self._x_weight.get(x, 0) + delta

    async def close(self) -> None:
        """Commit queued writes and close the database."""
        await self.db.close()

    # ------------------------------------------------------------------------- inventory

    async def import_numbers(self, rows: Sequence[ImportRow]) -> int:
        """Add X numbers to the inventory; returns how many were new (known ones are skipped).

        Every row is validated first (number, city, spec 1/2/3): one bad row refuses the whole
        import and nothing is written.
        """
        if len(rows) > MAX_IMPORT_ROWS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"at most {MAX_IMPORT_ROWS} rows per import"
            )
        checked: list[NumberRow] = []
        for line, row in enumerate(rows, start=1):
            number = _number(row.number, f"row {line} number")
            try:
                spec = NumberSpec(int(row.spec))
            except ValueError:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL,
                    f"row {line}: spec must be 1 (virtual 170/171), 2 (carrier) or 3 (95), "
                    f"got {row.spec!r}",
                ) from None
            if not row.city.strip():
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"row {line}: city is empty")
            if spec is NumberSpec.NATIONWIDE_95 and not number.startswith("+86950"):
                raise InvalidInput(
                    ErrorCode.NUMBER_ILLEGAL, f"row {line}: spec 3 needs a 950 number"
                )
            checked.append(
                NumberRow(
                    number=number,
                    city=row.city.strip(),
                    province=row.province.strip(),
                    carrier=row.carrier.strip(),
                    spec=spec,
                )
            )
        try:
            imported = await store.import_numbers(self.db, checked, now=self.clock())
        except store.InvalidRowError as error:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, str(error)) from None
        _log.info("numbers_imported", rows=len(checked), imported=imported)
        return imported

    # ------------------------------------------------------------------------- pools

    async def create_pool(
        self, type: BindingType, name: str, tenant_id: str | None = None
    ) -> PoolKey:
        """Create a pool of ``type``; returns its key."""
        pool_name = _name(name, "name")
        try:
            key = await store.create_pool(
                self.db, type=type, name=pool_name, tenant_id=tenant_id, now=self.clock()
            )
        except store.ConflictError as error:  # the only cause: an unknown tenant
            raise NotFound(ErrorCode.TENANT_NOT_EXIST, str(error)) from None
        _log.info("pool_created", pool_key=key, type=type.value)
        return key

    async def get_pool(self, pool_key: str, *, tenant: str | None = None) -> Pool:
        """The pool, or ``NotFound(POOL_NOT_EXIST)`` — also when ``tenant`` does not own it."""
        key = PoolKey(pool_key)
        pool = self._pools.get(key)
        if pool is None:
            pool = await store.get_pool(self.db, key)
            if pool is None:
                raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}")
            self._pools[key] = pool
        if not visible_to(pool.tenant_id, tenant):
            raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}")
        return pool

    def pool_numbers(self, pool_key: PoolKey) -> list[PhoneNumber]:
        """The X numbers of the pool that bindings may use (not locked)."""
        return list(self._pool_numbers.get(pool_key, ()))

    async def add_numbers(
        self, pool_key: str, count: int, city: str | None = None
    ) -> list[PhoneNumber]:
        """Buy ``count`` random free numbers (of ``city``) into the pool; all or nothing."""
        if not 1 <= count <= MAX_PURCHASE:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"count must be 1..{MAX_PURCHASE}, got {count}"
            )
        wanted_city = city.strip() if city is not None and city.strip() else None
        pool = await self.get_pool(pool_key)
        try:
            numbers = await store.add_numbers_to_pool(
                self.db, pool_key=pool.pool_key, count=count, city=wanted_city, now=self.clock()
            )
        except store.NotEnoughStockError as error:
            raise Conflict(ErrorCode.NO_AVAILABLE_NUMBER, str(error)) from None
        except store.PoolNotFoundError:
            raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}") from None
        cities = await self.db.read(lambda conn: _cities(conn, numbers))
        for number in numbers:
            self._remember_number(pool.pool_key, number, cities.get(number, ""))
        _log.info("pool_numbers_added", pool_key=pool.pool_key, count=len(numbers))
        return numbers

    # ------------------------------------------------------------------------- bindings

    async def bind(
        self,
        type: BindingType,
        pool_key: str,
        a: str,
        b: str | None = None,
        x: str | None = None,
        *,
        expires: str,
        record: bool = False,
        group_id: str | None = None,
        extension: str | None = None,
        restriction: Restriction = Restriction.NONE,
        ring_timeout_s: int | None = None,
        out_id: str | None = None,
        expect_city: str | None = None,
    ) -> Binding:
        """Bind real numbers to an X of the pool; returns the binding once durable and routable.

        ``x`` omitted: one is allocated among the pool's numbers that the index accepts, in
        ``expect_city`` (else A's home city) when possible, least loaded first.
        """
        now = self.clock()
        pool = await self.get_pool(pool_key)
        if pool.type is not type:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"pool {pool.pool_key} is an {pool.type.value} pool, not {type.value}",
            )
        number_a = _number(a, "a")
        number_b = _number(b, "b") if b is not None and b.strip() else None
        expires_at = parse_expires(expires, zone=self.zone, now=now)
        if type is BindingType.AXB:
            if number_b is None:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "b is required for an AXB binding")
            if number_b == number_a:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "a and b must differ")
        timeout_s = DEFAULT_RING_TIMEOUT_S if ring_timeout_s is None else ring_timeout_s
        if not MIN_RING_TIMEOUT_S <= timeout_s <= MAX_RING_TIMEOUT_S:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"ring_timeout_s must be {MIN_RING_TIMEOUT_S}..{MAX_RING_TIMEOUT_S}",
            )
        if out_id is not None and len(out_id) > MAX_OUT_ID_CHARS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"out_id is at most {MAX_OUT_ID_CHARS} characters"
            )
        group = self._check_group(type, pool.pool_key, group_id)
        ext = self._check_extension(type, extension)
        number_x: PhoneNumber | None = None
        if x is not None and x.strip():
            number_x = _number(x, "x")
            if self._number_pool.get(number_x) != pool.pool_key:
                raise InvalidInput(
                    ErrorCode.NUMBER_NOT_IN_POOL, f"x is not a number of pool {pool.pool_key}"
                )
        template = Binding(
            sub_id=SubId(store.new_numeric_id()),
            pool_key=pool.pool_key,
            type=type,
            x=number_x or PhoneNumber(""),
            a=number_a,
            expires_at=expires_at,
            b=number_b,
            group_id=group,
            extension=ext,
            record=record,
            restriction=restriction,
            ring_timeout_s=timeout_s,
            out_id=out_id,
            created_at=now,
        )
        if number_x is not None:
            await self._x_locks.acquire(number_x)
            try:
                binding = self._checked(template, number_x, now)
                if binding is None:
                    raise self._conflict(template, number_x, now)
                await self._commit(binding, now)
            finally:
                self._x_locks.release(number_x)
        else:
            binding = await self._allocate_and_commit(template, expect_city, now)
        _log.info(
            "bound",
            sub_id=binding.sub_id,
            pool_key=binding.pool_key,
            type=binding.type.value,
            x=binding.x,
        )
        return binding

    def _check_group(
        self, type: BindingType, pool_key: PoolKey, group_id: str | None
    ) -> GroupId | None:
        if type is not BindingType.AXG:
            if group_id:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "group_id is only for AXG bindings")
            return None
        if not group_id:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "group_id is required for AXG")
        owner = self._group_pool.get(GroupId(group_id))
        if owner is None:
            raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}")
        if owner != pool_key:
            raise InvalidInput(
                ErrorCode.GROUP_NOT_IN_POOL, f"group {group_id} belongs to another pool"
            )
        return GroupId(group_id)

    @staticmethod
    def _check_extension(type: BindingType, extension: str | None) -> str | None:
        if type is not BindingType.AXN_EXT:
            if extension:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL, "extension is only for AXN_EXT bindings"
                )
            return None
        if extension is None or not extension.strip():
            return None  # allocated with X
        ext = extension.strip()
        if not (ext.isascii() and ext.isdigit() and 1 <= len(ext) <= 3):
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "extension must be 1 to 3 digits")
        return ext

    def _checked(self, template: Binding, x: PhoneNumber, now: float) -> Binding | None:
        """``template`` on ``x`` (with an extension allocated if needed) if the index accepts it.

        The caller holds the lock of ``x``.
        """
        extension = template.extension
        if template.type is BindingType.AXN_EXT and extension is None:
            extension = self._free_extension(x)
            if extension is None:
                return None
        binding = dataclasses.replace(template, x=x, extension=extension)
        try:
            self.index.check(binding, now)
        except BindConflictError:
            return None
        except InvalidBindingError as error:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"{error.code}: {error.message}"
            ) from None
        return binding

    def _conflict(self, template: Binding, x: PhoneNumber, now: float) -> Conflict:
        """The error for ``template`` refused on ``x``, with the index's own explanation.

        The code is the reference service's (``BIND_CONFLICT``; ``NO_AVAILABLE_NUMBER`` when X
        is occupied or full), the message starts with the index's precise code.
        """
        extension = template.extension
        if template.type is BindingType.AXN_EXT and extension is None:
            return Conflict(
                ErrorCode.BIND_CONFLICT, f"x has no free extension (1..{_MAX_EXTENSION})"
            )
        probe = dataclasses.replace(template, x=x)
        try:
            self.index.check(probe, now)
        except BindConflictError as error:
            code = error.reference_code.removeprefix("isv.")
            detail = error.message if code == error.code else f"{error.code}: {error.message}"
            return Conflict(code, detail)
        return Conflict(ErrorCode.BIND_CONFLICT, "x already holds a conflicting binding")

    def _free_extension(self, x: PhoneNumber) -> str | None:
        used = {b.extension for b in self.index.by_x(x)}
        for candidate in range(1, _MAX_EXTENSION + 1):
            if str(candidate) not in used:
                return str(candidate)
        return None

    async def _commit(self, binding: Binding, now: float) -> None:
        """Durable write, then the index; the caller holds the lock of ``binding.x``."""
        try:
            await store.insert_binding(self.db, binding)
        except store.ConflictError as error:
            # The index should have refused first; the database's backstop caught it.
            _log.warning("bind_backstop_conflict", sub_id=binding.sub_id, error=str(error))
            raise Conflict(
                ErrorCode.BIND_CONFLICT, "x already holds a conflicting binding"
            ) from None
        self.index.add(binding, now)
        self._add_weight(binding.x, 1)

    def _candidates(self, pool_key: PoolKey, city: str | None) -> Iterator[PhoneNumber]:
        """The pool's X numbers to try: ``city``'s first, each group least loaded first.

        Lazy, because the first candidate almost always takes the binding: the least loaded X
        is found with ``min`` (O(n), in C); only when it is refused are the others sorted.
        Weights are read as the iteration goes, so they include binds that started meanwhile.
        """
        weight = self._x_weight.__getitem__
        groups: list[list[PhoneNumber]] = []
        if city:
            local = self._pool_city_numbers.get(pool_key, {}).get(_city_key(city))
            if local:
                groups.append(local)
        groups.append(self._pool_numbers.get(pool_key, []))
        tried: set[PhoneNumber] = set()
        for group in groups:
            if len(tried) == len(group) and tried.issuperset(group):
                continue
            best = min(group, key=weight)
            if best not in tried:
                tried.add(best)
                yield best
            for x in sorted(group, key=weight):
                if x not in tried:
                    tried.add(x)
                    yield x

    async def _allocate_and_commit(
        self, template: Binding, expect_city: str | None, now: float
    ) -> Binding:
        city = expect_city or home_location(template.a).city
        if not self._pool_numbers.get(template.pool_key):
            raise Conflict(
                ErrorCode.NO_AVAILABLE_NUMBER,
                f"pool {template.pool_key} holds no numbers; add numbers to it first",
            )
        for x in self._candidates(template.pool_key, city):
            self._add_weight(x, 1)  # in flight on x from here on
            try:
                await self._x_locks.acquire(x)
                try:
                    binding = self._checked(template, x, now)
                    if binding is None:
                        continue
                    await self._commit(binding, now)
                    return binding
                finally:
                    self._x_locks.release(x)
            finally:
                self._add_weight(x, -1)
        raise Conflict(
            ErrorCode.NO_AVAILABLE_NUMBER,
            f"no number of pool {template.pool_key} can take this binding; add numbers to the pool",
        )

    async def unbind(self, pool_key: str, sub_id: str) -> None:
        """Unbind (kept as history): database first, then the index."""
        binding = await self.get_binding(pool_key, sub_id)
        await self._x_locks.acquire(binding.x)
        try:
            if not await store.unbind(self.db, binding.sub_id, self.clock()):
                raise NotFound(ErrorCode.BINDING_NOT_EXIST, f"no binding {sub_id!r}")
            if self.index.remove(binding.sub_id) is not None:
                self._add_weight(binding.x, -1)
        finally:
            self._x_locks.release(binding.x)
        _log.info("unbound", sub_id=binding.sub_id, pool_key=binding.pool_key)

    async def get_binding(self, pool_key: str, sub_id: str) -> Binding:
        """An active (not unbound) binding of the pool, from the database."""
        pool = await self.get_pool(pool_key)
        binding = await store.get_binding(self.db, SubId(sub_id))
        if binding is None or binding.pool_key != pool.pool_key:
            raise NotFound(
                ErrorCode.BINDING_NOT_EXIST, f"no binding {sub_id!r} in pool {pool.pool_key}"
            )
        return binding

    # ------------------------------------------------------------------------- groups

    async def create_group(
        self, pool_key: str, name: str, numbers: Iterable[str], remark: str | None = None
    ) -> GroupId:
        """Create an AXG number group (≤ 200 numbers) in an AXG pool."""
        pool = await self.get_pool(pool_key)
        if pool.type is not BindingType.AXG:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"groups belong to AXG pools; pool {pool.pool_key} is {pool.type.value}",
            )
        group_name = _name(name, "name")
        raw = list(numbers)
        if not raw:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "a group needs at least one number")
        if len(raw) > MAX_GROUP_NUMBERS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"a group holds at most {MAX_GROUP_NUMBERS} numbers, got {len(raw)}",
            )
        if remark is not None and len(remark) > 256:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "remark is at most 256 characters")
        members = sorted({_number(n, f"numbers[{i}]") for i, n in enumerate(raw)})
        try:
            group_id = await store.create_group(
                self.db,
                pool_key=pool.pool_key,
                name=group_name,
                numbers=members,
                remark=remark,
                now=self.clock(),
            )
        except store.PoolNotFoundError:
            raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}") from None
        self._group_pool[group_id] = pool.pool_key
        self.index.set_group(group_id, members)
        _log.info("group_created", group_id=group_id, pool_key=pool.pool_key, size=len(members))
        return group_id

    # ------------------------------------------------------------------------- call records

    async def recent_calls(self, limit: int = 20) -> list[CallRecord]:
        """The latest ``limit`` call records, newest first."""
        if not 1 <= limit <= MAX_CALLS_LIMIT:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"limit must be 1..{MAX_CALLS_LIMIT}, got {limit}"
            )
        return await store.recent_call_records(self.db, limit)

    # ------------------------------------------------------------------------- views

    def local_time(self, epoch_s: float) -> str:
        """``YYYY-MM-DD HH:MM:SS`` in the configured zone."""
        moment = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(self.zone)
        return moment.strftime(EXPIRES_FORMAT)

    def binding_view(self, binding: Binding) -> dict[str, object]:
        """A binding as the API shows it (E.164 numbers, local times)."""
        return {
            "sub_id": binding.sub_id,
            "pool_key": binding.pool_key,
            "type": binding.type.value,
            "secret_no": binding.x,
            "a": binding.a,
            "b": binding.b,
            "group_id": binding.group_id,
            "extension": binding.extension,
            "expires": self.local_time(binding.expires_at),
            "record": binding.record,
            "restriction": binding.restriction.value,
            "ring_timeout_s": binding.ring_timeout_s,
            "out_id": binding.out_id,
            "created": self.local_time(binding.created_at),
        }


def _cities(conn: sqlite3.Connection, numbers: Sequence[PhoneNumber]) -> dict[str, str]:
    """Inventory city of each of ``numbers`` (one query)."""
    marks = ", ".join("?" * len(numbers))
    query = f"SELECT number, city FROM numbers WHERE number IN ({marks})"  # noqa: S608
    return {row[0]: row[1] for row in conn.execute(query, list(numbers))}


def _group_pools(conn: sqlite3.Connection) -> dict[GroupId, PoolKey]:
    """Owner pool of every undeleted group (the store's ``load_groups`` gives members only)."""
    return {
        GroupId(row[0]): PoolKey(row[1])
        for row in conn.execute("SELECT group_id, pool_key FROM groups WHERE deleted_at IS NULL")
    }


async def open_control_plane(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> ControlPlane:
    """Open the database of ``[store] path`` and load a fresh index from it (timed, logged)."""
    started = time.perf_counter()
    db = await Database.open(settings.store.path)
    control = ControlPlane(
        db=db,
        index=BindingIndex(),
        zone=settings.time.tzinfo,
        clock=clock,
        master_key_path=settings.api.master_key_file or settings.store.path.with_name("master.key"),
    )
    # A million bindings are a million objects that only ever live: without the cyclic GC the
    # load is ~2x faster, and freezing them afterwards keeps every later collection (on the
    # call path too) from scanning them again.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        count = await control.load()
    except BaseException:
        await db.close()
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
    gc.freeze()
    _log.info(
        "control_plane_loaded",
        bindings=count,
        groups=len(control._group_pool),
        pool_numbers=len(control._number_pool),
        load_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return control
