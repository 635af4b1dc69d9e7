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

import csv
import dataclasses
import datetime as dt
import gc
import io
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import store
from api.errors import Conflict, ErrorCode, InvalidInput, NotFound
from api.inventory import Inventory
from api.lists import Lists
from api.locks import KeyedLocks
from api.principal import visible_to
from api.reports import pool_changed
from api.tenants import Tenants
from config import Settings
from engine.logging import get_logger
from routing.geo import capital_of, city_key, province_key
from routing.index import BindConflictError, BindingIndex
from routing.model import (
    DEFAULT_RING_TIMEOUT_S,
    MAX_RING_TIMEOUT_S,
    MIN_RING_TIMEOUT_S,
    NO_RINGBACK,
    Binding,
    BindingType,
    GroupId,
    NumberSpec,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
    restore_binding,
)
from routing.numbers import InvalidNumberError, home_location, normalize
from routing.validation import InvalidBindingError
from store import AllocationMode, CallRecord, Database, NumberRow, NumberStatus, Pool, SmsMode
from store import pools as store_pools
from store.pools import PoolSettings

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
_EXPIRES_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})"
)
#: SPEC §2: an expiry must lie more than this far in the future.
MIN_EXPIRY_AHEAD_S: Final = 60.0
#: CSV columns of a number import, in order (header row required).
IMPORT_COLUMNS: Final = ("number", "city", "province", "carrier", "spec")
MAX_PURCHASE: Final = 1000
MAX_NAME_CHARS: Final = 128
MAX_OUT_ID_CHARS: Final = 128
MAX_CALLS_LIMIT: Final = 1000
MAX_IMPORT_ROWS: Final = 100_000
_MAX_EXTENSION: Final = 999


#: Enterprise ringback code names (SPEC §2): per direction, binding level first, else the pool's.
RINGBACK_CODES: Final = frozenset(
    {"AXBRing_A", "AXBRing_B", "AXNRing_AB", "AXNRing_A", "AXNRing_N", "AXGRing_AB",
     "AXGRing_A", "AXGRing_G"}
)  # fmt: skip
_MAX_TONE_ID_CHARS: Final = 64


def _check_ringback(codes: dict[str, str]) -> None:
    """Ringback codes: known names (SPEC §2) to non-empty tone ids."""
    for name, tone in codes.items():
        if name not in RINGBACK_CODES:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"unknown ringback code {name!r}; known: {', '.join(sorted(RINGBACK_CODES))}",
            )
        if not isinstance(tone, str) or not tone.strip() or len(tone) > _MAX_TONE_ID_CHARS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"ringback {name}: the tone id must be 1..{_MAX_TONE_ID_CHARS} characters",
            )


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
    # A regex and the datetime constructor instead of strptime (~10x faster on the bind path);
    # the same strings are accepted (1- or 2-digit fields, as strptime's %m %d %H %M %S).
    match = _EXPIRES_RE.fullmatch(text.strip())
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = map(int, match.groups())
        naive = dt.datetime(year, month, day, hour, minute, second)
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


_city_key = city_key


def _name(raw: str, field: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"{field} must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL, f"{field} is at most {MAX_NAME_CHARS} characters"
        )
    return name


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
        # City (without 市) → its province (short form), from the inventory: smart allocation.
        self._city_province: dict[str, str] = {}
        self._x_locks = KeyedLocks()
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
        self._x_weight.update(self.index.x_counts())  # one entry per X, not one call per binding
        if refused:
            _log.error("bindings_not_indexed", count=len(refused), sub_ids=sorted(refused)[:20])
        groups = await store.load_groups(self.db)
        for group_id, members in groups.items():
            self.index.set_group(group_id, members)
        self._group_pool = await self.db.read(_group_pools)
        for pool_key, number, city, province in await self.db.read(_allocatable_numbers):
            self._remember_number(pool_key, number, city, province)
        await self.tenants.load()
        await self.inventory.load()
        await self.lists.load()
        return len(bindings)

    def _remember_number(
        self, pool_key: PoolKey, number: PhoneNumber, city: str, province: str = ""
    ) -> None:
        """Make ``number`` allocatable in ``pool_key`` (bought, unlocked, migrated in)."""
        if self._number_pool.get(number) == pool_key:
            return
        if province:
            self._city_province.setdefault(_city_key(city), province_key(province))
        self._pool_numbers.setdefault(pool_key, []).append(number)
        cities = self._pool_city_numbers.setdefault(pool_key, {})
        cities.setdefault(_city_key(city), []).append(number)
        self._number_pool[number] = pool_key
        self._x_weight.setdefault(number, 0)
        pool_changed(self, pool_key)  # pool warnings (api.reports): evaluated soon after

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
        pool_changed(self, pool_key)

    def _add_weight(self, x: PhoneNumber, delta: int) -> None:
        weight = self._x_weight.get(x)
        if weight is None and delta < 0:
            return  # x left its pool (released, locked, migrated) while a bind was in flight
        self._x_weight[x] = (weight or 0) + delta

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

    async def list_pools(self, *, tenant: str | None = None) -> list[Pool]:
        """The pools ``tenant`` sees (the operator: all), oldest first."""
        pools = await store.list_pools(self.db, tenant_id=tenant)
        for pool in pools:
            self._pools[pool.pool_key] = pool
        return pools

    async def configure_pool(
        self, pool_key: str, settings: PoolSettings, *, tenant: str | None = None
    ) -> Pool:
        """Change a pool's name, allocation mode, SMS mode, recording default, ringback codes or
        warning thresholds (SPEC §3); the type and the owner never change."""
        pool = await self.get_pool(pool_key, tenant=tenant)
        if settings.name is not None:
            settings = dataclasses.replace(settings, name=_name(settings.name, "name"))
        if settings.ringback is not None:
            _check_ringback(settings.ringback)
        if settings.warn_free_numbers is not None and settings.warn_free_numbers < 0:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "warn_free_numbers must be >= 0")
        pct = settings.warn_utilisation_pct
        if pct is not None and not 0 < pct <= 100:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, "warn_utilisation_pct must be in (0, 100]"
            )
        if pool.type is BindingType.AXN95 and settings.sms_mode not in (None, SmsMode.OFF):
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "95AXN pools carry no SMS")
        if not await store_pools.update_pool(self.db, pool.pool_key, settings):
            raise NotFound(ErrorCode.POOL_NOT_EXIST, f"no pool {pool_key!r}")
        self._pools.pop(pool.pool_key, None)
        updated = await self.get_pool(pool.pool_key)
        pool_changed(self, pool.pool_key)  # thresholds may have changed
        _log.info("pool_configured", pool_key=pool.pool_key)
        return updated

    def pool_usage(self, pool_key: PoolKey) -> tuple[int, int, float]:
        """(allocatable numbers, numbers carrying a binding, binding utilisation %) from memory.

        Utilisation is the share of the pool's numbers that carry at least one binding that is
        not unbound (expired ones included: they still hold their X until unbound).
        """
        numbers = self._pool_numbers.get(pool_key, ())
        bound = sum(1 for x in numbers if self.index.x_type(x) is not None)
        pct = round(100.0 * bound / len(numbers), 1) if numbers else 0.0
        return len(numbers), bound, pct

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
        places = await self.db.read(lambda conn: _cities(conn, numbers))
        for number in numbers:
            city, province = places.get(number, ("", ""))
            self._remember_number(pool.pool_key, number, city, province)
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
        record: bool | None = None,
        group_id: str | None = None,
        extension: str | None = None,
        restriction: Restriction = Restriction.NONE,
        ring_timeout_s: int | None = None,
        out_id: str | None = None,
        expect_city: str | None = None,
        ringback: dict[str, str] | None = None,
        tenant: str | None = None,
    ) -> Binding:
        """Bind real numbers to an X of the pool; returns the binding once durable and routable.

        ``x`` omitted: one is allocated among the pool's numbers that the index accepts, by the
        pool's allocation mode (SPEC §3) for ``expect_city`` (else A's home city), least loaded
        first.
        """
        now = self.clock()
        pool = await self.get_pool(pool_key, tenant=tenant)
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
        if ringback:
            _check_ringback(ringback)
        group = await self._check_group(type, pool.pool_key, group_id)
        ext = self._check_extension(type, extension)
        number_x: PhoneNumber | None = None
        if x is not None and x.strip():
            number_x = _number(x, "x")
            if self._number_pool.get(number_x) != pool.pool_key:
                raise InvalidInput(
                    ErrorCode.NUMBER_NOT_IN_POOL, f"x is not a number of pool {pool.pool_key}"
                )
            if not self._bindable(number_x, now):
                raise Conflict(
                    ErrorCode.NUMBER_UNVERIFIED,
                    "x awaits real-person verification past its grace period",
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
            record=pool.recording if record is None else record,  # the pool's default
            restriction=restriction,
            ring_timeout_s=timeout_s,
            out_id=out_id,
            created_at=now,
            ringback=dict(ringback) if ringback else NO_RINGBACK,
        )
        if number_x is not None:
            await self._x_locks.acquire(number_x)
            try:
                if self._number_pool.get(number_x) != pool.pool_key:  # left while we waited
                    raise InvalidInput(
                        ErrorCode.NUMBER_NOT_IN_POOL, f"x is not a number of pool {pool.pool_key}"
                    )
                binding = self._checked(template, number_x, now)
                if binding is None:
                    raise self._conflict(template, number_x, now)
                await self._commit(binding, now)
            finally:
                self._x_locks.release(number_x)
        else:
            binding = await self._allocate_and_commit(pool, template, expect_city, now)
        _log.info(
            "bound",
            sub_id=binding.sub_id,
            pool_key=binding.pool_key,
            type=binding.type.value,
            x=binding.x,
        )
        return binding

    async def _check_group(
        self, type: BindingType, pool_key: PoolKey, group_id: str | None
    ) -> GroupId | None:
        """The AXG group of a binding in ``pool_key``: it must exist in that very pool.

        A group of another pool of the same owner is named as such; a group of another
        tenant's pool answers exactly as a group that does not exist.
        """
        if type is not BindingType.AXG:
            if group_id:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "group_id is only for AXG bindings")
            return None
        if not group_id:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "group_id is required for AXG")
        owner = self._group_pool.get(GroupId(group_id))
        missing = NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {group_id!r}")
        if owner is None:
            raise missing
        if owner != pool_key:
            owners = {(await self.get_pool(key)).tenant_id for key in (owner, pool_key)}
            if len(owners) != 1:
                raise missing
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
        if template.x == x and template.extension == extension:
            binding = template  # an explicit X: built complete, nothing to copy
        else:
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
        if binding.group_id is not None and binding.group_id not in self._group_pool:
            # Deleted while this bind waited for the lock of X.
            raise NotFound(ErrorCode.GROUP_NOT_EXIST, f"no group {binding.group_id!r}")
        try:
            await store.insert_binding(self.db, binding)
        except store.ConflictError as error:
            # The index should have refused first; the database's backstop caught it.
            _log.warning("bind_backstop_conflict", sub_id=binding.sub_id, error=str(error))
            raise Conflict(
                ErrorCode.BIND_CONFLICT, "x already holds a conflicting binding"
            ) from None
        # _checked ran index.check under X's lock
        self.index.add(_for_index(binding), now, checked=True)
        self._add_weight(binding.x, 1)
        pool_changed(self, binding.pool_key)

    def _bindable(self, x: PhoneNumber, now: float) -> bool:
        """False for an X whose user's real-person verification is overdue (SPEC §3)."""
        return self.inventory.is_bindable(x, now)

    def _city_groups(
        self, pool: Pool, city: str | None, province: str | None
    ) -> list[list[PhoneNumber]]:
        """The candidate groups of the pool's allocation mode, in order of preference (SPEC §3).

        *default*: the city's numbers, then any; *strict*: the city's only; *smart*: the city's,
        then the province capital's, then any.
        """
        by_city = self._pool_city_numbers.get(pool.pool_key, {})
        groups: list[list[PhoneNumber]] = []
        if city:
            local = by_city.get(_city_key(city))
            if local:
                groups.append(local)
        if pool.allocation_mode is AllocationMode.STRICT:
            return groups
        if pool.allocation_mode is AllocationMode.SMART and province:
            capital = capital_of(province)
            if capital is not None and (not city or _city_key(city) != capital):
                capital_numbers = by_city.get(capital)
                if capital_numbers:
                    groups.append(capital_numbers)
        groups.append(self._pool_numbers.get(pool.pool_key, []))
        return groups

    def _candidates(self, groups: list[list[PhoneNumber]]) -> Iterator[PhoneNumber]:
        """The X numbers to try: group by group, each least loaded first.

        Lazy, because the first candidate almost always takes the binding: the least loaded X
        is found with ``min`` (O(n), in C); only when it is refused are the others sorted.
        Weights are read as the iteration goes, so they include binds that started meanwhile.
        """
        weight = self._x_weight.__getitem__
        tried: set[PhoneNumber] = set()
        for group in groups:
            if not group or (len(tried) >= len(group) and tried.issuperset(group)):
                continue
            best = min(group, key=weight)
            if best not in tried:
                tried.add(best)
                yield best
            for x in sorted(group, key=weight):
                if x not in tried:
                    tried.add(x)
                    yield x

    async def _wanted_place(
        self, template: Binding, expect_city: str | None
    ) -> tuple[str | None, str | None]:
        """(city, province) a bind without X asks for: ``expect_city``, else A's home city."""
        if expect_city and expect_city.strip():
            city = expect_city.strip()
            province = self._city_province.get(_city_key(city))
            if province is None:
                province = await self.db.read(lambda conn: _province_of_city(conn, city))
            return city, province
        home = home_location(template.a)
        return home.city, home.province

    async def _allocate_and_commit(
        self, pool: Pool, template: Binding, expect_city: str | None, now: float
    ) -> Binding:
        if not self._pool_numbers.get(template.pool_key):
            raise Conflict(
                ErrorCode.NO_AVAILABLE_NUMBER,
                f"pool {template.pool_key} holds no numbers; add numbers to it first",
            )
        city, province = await self._wanted_place(template, expect_city)
        groups = self._city_groups(pool, city, province)
        for x in self._candidates(groups):
            if not self._bindable(x, now):
                continue
            self._add_weight(x, 1)  # in flight on x from here on
            try:
                await self._x_locks.acquire(x)
                try:
                    if self._number_pool.get(x) != pool.pool_key:
                        continue  # released, locked or migrated while we waited for its lock
                    binding = self._checked(template, x, now)
                    if binding is None:
                        continue
                    await self._commit(binding, now)
                    return binding
                finally:
                    self._x_locks.release(x)
            finally:
                self._add_weight(x, -1)
        if pool.allocation_mode is AllocationMode.STRICT:
            where = f"in {city}" if city else "(the wanted city is unknown: give expect_city)"
            raise Conflict(
                ErrorCode.NO_AVAILABLE_NUMBER,
                f"strict allocation: no number of pool {template.pool_key} {where} can take "
                "this binding",
            )
        raise Conflict(
            ErrorCode.NO_AVAILABLE_NUMBER,
            f"no number of pool {template.pool_key} can take this binding; add numbers to the pool",
        )

    async def unbind(
        self, pool_key: str | None, sub_id: str, *, tenant: str | None = None, x: str | None = None
    ) -> None:
        """Unbind (kept as history): database first, then the index.

        ``x`` given (the reference's ``SecretNo``): it must be the binding's X, else not found.
        """
        binding = await self.get_binding(pool_key, sub_id, tenant=tenant, x=x)
        await self._x_locks.acquire(binding.x)
        try:
            if not await store.unbind(self.db, binding.sub_id, self.clock()):
                raise NotFound(ErrorCode.BINDING_NOT_EXIST, f"no binding {sub_id!r}")
            if self.index.remove(binding.sub_id, binding.x) is not None:
                self._add_weight(binding.x, -1)
        finally:
            self._x_locks.release(binding.x)
        pool_changed(self, binding.pool_key)
        _log.info("unbound", sub_id=binding.sub_id, pool_key=binding.pool_key)

    async def get_binding(
        self,
        pool_key: str | None,
        sub_id: str,
        *,
        tenant: str | None = None,
        x: str | None = None,
    ) -> Binding:
        """An active (not unbound) binding, from the database.

        ``pool_key`` None: any pool ``tenant`` sees. ``x`` given: it must be the binding's X.
        Every mismatch (other pool, other tenant, other X) answers as a binding that does not
        exist.
        """
        pool = None if pool_key is None else await self.get_pool(pool_key, tenant=tenant)
        binding = await store.get_binding(self.db, SubId(sub_id.strip()))
        missing = NotFound(ErrorCode.BINDING_NOT_EXIST, f"no binding {sub_id!r}")
        if binding is None or (pool is not None and binding.pool_key != pool.pool_key):
            raise missing
        if pool is None:
            owner = await self.get_pool(binding.pool_key)
            if not visible_to(owner.tenant_id, tenant):
                raise missing
        if x is not None and x.strip():
            try:
                number_x = normalize(x)
            except InvalidNumberError:
                raise missing from None
            if number_x != binding.x:
                raise missing
        return binding

    async def update_binding(
        self,
        pool_key: str | None,
        sub_id: str,
        *,
        tenant: str | None = None,
        x: str | None = None,
        a: str | None = None,
        b: str | None = None,
        expires: str | None = None,
        group_id: str | None = None,
        restriction: Restriction | None = None,
        out_id: str | None = None,
        record: bool | None = None,
        ring_timeout_s: int | None = None,
        ringback: dict[str, str] | None = None,
    ) -> Binding:
        """Change a binding (SPEC §2: A, B, expiry, group, restriction, out_id, recording,
        ringing timeout, ringback codes); None leaves a field as it is.

        The new version passes the same checks as a new binding (the index's sharing rules
        against every other binding on X), is written, then swapped into the index; a refusal
        changes nothing. A new expiry must lie more than 60 s ahead, as for a bind.
        """
        now = self.clock()
        current = await self.get_binding(pool_key, sub_id, tenant=tenant, x=x)
        changes: dict[str, object] = {}
        if a is not None:
            changes["a"] = _number(a, "a")
        if b is not None:
            changes["b"] = _number(b, "b") if b.strip() else None
        if expires is not None:
            changes["expires_at"] = parse_expires(expires, zone=self.zone, now=now)
        if group_id is not None:
            changes["group_id"] = await self._check_group(current.type, current.pool_key, group_id)
        if restriction is not None:
            changes["restriction"] = restriction
        if out_id is not None:
            if len(out_id) > MAX_OUT_ID_CHARS:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL, f"out_id is at most {MAX_OUT_ID_CHARS} characters"
                )
            changes["out_id"] = out_id or None
        if record is not None:
            changes["record"] = record
        if ring_timeout_s is not None:
            if not MIN_RING_TIMEOUT_S <= ring_timeout_s <= MAX_RING_TIMEOUT_S:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL,
                    f"ring_timeout_s must be {MIN_RING_TIMEOUT_S}..{MAX_RING_TIMEOUT_S}",
                )
            changes["ring_timeout_s"] = ring_timeout_s
        if ringback is not None:
            _check_ringback(ringback)
            changes["ringback"] = dict(ringback)
        updated = dataclasses.replace(current, **changes)
        if updated.type is BindingType.AXB:
            if updated.b is None:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "b is required for an AXB binding")
            if updated.a == updated.b:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "a and b must differ")
        await self._x_locks.acquire(current.x)
        try:
            try:
                self.index.check(updated, now)
            except BindConflictError as error:
                code = error.reference_code.removeprefix("isv.")
                raise Conflict(code, f"{error.code}: {error.message}") from None
            except InvalidBindingError as error:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL, f"{error.code}: {error.message}"
                ) from None
            try:
                written = await store.update_binding(self.db, updated, now=now)
            except store.ConflictError:
                raise Conflict(
                    ErrorCode.BIND_CONFLICT, "x already holds a conflicting binding"
                ) from None
            if not written:
                raise NotFound(ErrorCode.BINDING_NOT_EXIST, f"no binding {sub_id!r}")
            if self.index.get(updated.sub_id, updated.x) is not None:
                self.index.replace(_for_index(updated), now)
            else:
                self.index.add(_for_index(updated), now)
        finally:
            self._x_locks.release(current.x)
        _log.info("binding_updated", sub_id=updated.sub_id, fields=sorted(changes))
        return updated

    async def bindings_by_x(
        self, pool_key: str, x: str, *, tenant: str | None = None
    ) -> list[Binding]:
        """The pool's not-unbound bindings on X, oldest first (SPEC §2: list by X)."""
        pool = await self.get_pool(pool_key, tenant=tenant)
        number_x = _number(x, "x")
        if self._number_pool.get(number_x) not in (None, pool.pool_key):
            return []
        found = await store.bindings_by_x(self.db, number_x)
        return [b for b in found if b.pool_key == pool.pool_key]

    async def bindings_by_number(
        self, number: str, *, pool_key: str | None = None, tenant: str | None = None
    ) -> list[Binding]:
        """Not-unbound bindings where ``number`` is A or B, in one pool or every visible one."""
        real = _number(number, "number")
        if pool_key is not None:
            scope: list[PoolKey] | None = [(await self.get_pool(pool_key, tenant=tenant)).pool_key]
        elif tenant is not None:
            scope = await self._pool_keys_of(tenant)
        else:
            scope = None
        return await store_pools.bindings_by_number(self.db, real, scope)

    # ------------------------------------------------------------------------- call records

    async def recent_calls(self, limit: int = 20, *, tenant: str | None = None) -> list[CallRecord]:
        """The latest ``limit`` call records ``tenant`` sees (its pools'), newest first."""
        if not 1 <= limit <= MAX_CALLS_LIMIT:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"limit must be 1..{MAX_CALLS_LIMIT}, got {limit}"
            )
        pools = None if tenant is None else await self._pool_keys_of(tenant)
        return await store.recent_call_records(self.db, limit, pool_keys=pools)

    async def _pool_keys_of(self, tenant: str) -> list[PoolKey]:
        return [pool.pool_key for pool in await self.list_pools(tenant=tenant)]

    async def calls_of_binding(
        self, pool_key: str | None, sub_id: str, *, tenant: str | None = None, limit: int = 200
    ) -> list[CallRecord]:
        """The latest call records of a binding ``tenant`` sees, newest first."""
        binding = await self.get_binding(pool_key, sub_id, tenant=tenant)
        return await store.recent_call_records(self.db, limit, sub_id=binding.sub_id)

    async def get_call_record(
        self, call_id: str, *, tenant: str | None = None, pool_key: str | None = None
    ) -> CallRecord:
        """The record of call ``call_id`` (of ``pool_key`` when given) ``tenant`` may see."""
        scope = None if pool_key is None else await self.get_pool(pool_key, tenant=tenant)
        records = await store.recent_call_records(self.db, MAX_CALLS_LIMIT, call_id=call_id.strip())
        for record in records:
            if record.pool_key is None:
                if tenant is None and scope is None:
                    return record
                continue
            if scope is not None and record.pool_key != scope.pool_key:
                continue
            owner = await self.get_pool(record.pool_key)
            if visible_to(owner.tenant_id, tenant):
                return record
        raise NotFound(ErrorCode.CALL_NOT_EXIST, f"no call {call_id!r}")

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
            "ringback": dict(binding.ringback),
            "created": self.local_time(binding.created_at),
        }


def _cities(conn: sqlite3.Connection, numbers: Sequence[PhoneNumber]) -> dict[str, tuple[str, str]]:
    """Inventory (city, province) of each of ``numbers`` (one query)."""
    marks = ", ".join("?" * len(numbers))
    query = f"SELECT number, city, province FROM numbers WHERE number IN ({marks})"  # noqa: S608
    return {row[0]: (row[1], row[2]) for row in conn.execute(query, list(numbers))}


def _province_of_city(conn: sqlite3.Connection, city: str) -> str | None:
    """The province the inventory gives for ``city`` (with or without 市), None if unknown."""
    row = conn.execute(
        "SELECT province FROM numbers WHERE city IN (?, ?) AND province != '' LIMIT 1",
        (city, city + "市"),
    ).fetchone()
    return None if row is None else str(row[0])


def _for_index(binding: Binding) -> Binding:
    """``binding`` as the index keeps it: without ``created_at``, like the bindings loaded at
    start (views read the store), so a binding made at run time costs the index no more than
    a loaded one (its own float and a cold-fields object, 80 bytes)."""
    if not binding.created_at:
        return binding
    return restore_binding(
        binding.sub_key,
        binding.x,
        binding.a,
        binding.b,
        binding.expires_at,
        binding.out_id,
        binding.profile,
    )


def _allocatable_numbers(conn: sqlite3.Connection) -> list[tuple[PoolKey, PhoneNumber, str, str]]:
    """(pool, number, city, province) of every number in a pool, as ``load_pool_inventory``
    orders them: the allocator's start-up load, four columns as plain tuples (the full
    ``NumberInfo`` rows cost ~0.5 s more per 100,000 numbers)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(
        "SELECT pool_key, number, city, province FROM numbers"
        " WHERE pool_key IS NOT NULL AND status = ? ORDER BY pool_key, number",
        (NumberStatus.IN_POOL.value,),
    )
    return cursor.fetchall()


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
