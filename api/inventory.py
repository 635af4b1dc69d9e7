"""X-number inventory: stock, covered cities, purchase, release, lock, verification, migration.

A service of the control plane: constructed by :class:`api.control.ControlPlane` with itself,
so it shares the database, the clock, the binding index and the tenant scoping (``tenant``
None = operator; another tenant's resource answers as one that does not exist).

In memory it keeps what the call path and ``bind`` need without a database read: the numbers
whose real-person verification is due by a deadline (:meth:`Inventory.is_bindable`).  The
allocatable numbers of each pool stay in the control plane's maps, which this service updates
through ``control._remember_number`` / ``control._forget_number`` after each durable write.

Money: a purchase charges the pool's tenant the first month's rent of every number it buys, in
the same transaction as the purchase and only if the balance covers it (SPEC §3, §7); operator
pools are not charged.  The rents are the tenant's tariff (``billing``: SPEC §7 defaults,
:data:`RENT_BY_SPEC`, unless the operator set others for the tenant).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import store
from api.errors import Conflict, ErrorCode, InvalidInput, NotFound
from api.principal import visible_to
from billing.ledger_run import tariff_for
from engine.logging import get_logger
from routing.model import BindingType, NumberSpec, PhoneNumber, PoolKey
from routing.numbers import InvalidNumberError, normalize
from store import inventory as inventory_store
from store import ledger
from store.inventory import MigrationOutcome, VerificationPolicy
from store.repositories import NumberInfo, NumberStatus, StockRow, Verification

if TYPE_CHECKING:
    from api.control import ControlPlane

__all__ = [
    "MAX_MIGRATION_NUMBERS",
    "MAX_PREFIX_DIGITS",
    "MAX_PURCHASE_COUNT",
    "RENT_BY_SPEC",
    "Inventory",
    "InventoryCode",
    "MigrationJob",
    "MigrationOutcome",
    "NumberDetail",
    "PoolUsage",
    "SecretStatus",
    "VerificationPolicy",
    "parse_amount",
]

_log = get_logger("api.inventory")

#: SPEC §7 default monthly rent per number by resource spec (yuan); per-tenant tariffs of the
#: billing area replace this table later.
RENT_BY_SPEC: Final[Mapping[NumberSpec, Decimal]] = MappingProxyType(
    {
        NumberSpec.VIRTUAL: Decimal("5.00"),
        NumberSpec.CARRIER: Decimal("15.00"),
        NumberSpec.NATIONWIDE_95: Decimal("5.00"),
    }
)
MAX_PURCHASE_COUNT: Final = 1000
MAX_PREFIX_DIGITS: Final = 18
MAX_MIGRATION_NUMBERS: Final = 500
#: Longest grace period before a number must be verified (a year and a day).
MAX_GRACE_S: Final = 366 * 86400.0
#: Largest single top-up, a guard against a mistyped amount.
MAX_TOPUP: Final = Decimal("100000000.00")
_CENT: Final = Decimal("0.01")


class InventoryCode:
    """Error codes of this area beyond :class:`api.errors.ErrorCode` (string constants)."""

    NUMBER_NOT_EXIST: Final = "NUMBER_NOT_EXIST"  # 404
    MIGRATION_NOT_EXIST: Final = "MIGRATION_NOT_EXIST"  # 404
    NOT_ENOUGH_BALANCE: Final = "NOT_ENOUGH_BALANCE"  # 409
    NUMBER_IN_USE: Final = "NUMBER_IN_USE"  # 409
    VERIFICATION_STATE_ILLEGAL: Final = "VERIFICATION_STATE_ILLEGAL"  # 409
    POOL_TENANT_MISMATCH: Final = "POOL_TENANT_MISMATCH"  # 400
    AMOUNT_ILLEGAL: Final = "AMOUNT_ILLEGAL"  # 400


class SecretStatus(IntEnum):
    """A pool number's state as the reference's ``SecretStatus`` (QuerySecretNoDetail)."""

    FREE = 0  # no binding
    BOUND = 1  # at least one binding that is not unbound
    LOCKED = 2  # locked: never allocated

    @property
    def label(self) -> str:
        """``free`` / ``bound`` / ``locked``."""
        return self.name.lower()


# Carrier names as imports write them → the reference's ``Vendor`` (1 China Mobile, 2 China
# Unicom, 3 China Telecom).
_VENDORS: Final[Mapping[str, int]] = MappingProxyType(
    {
        **dict.fromkeys(("cmcc", "china mobile", "中国移动", "移动"), 1),
        **dict.fromkeys(("cucc", "china unicom", "中国联通", "联通"), 2),
        **dict.fromkeys(("ctcc", "china telecom", "中国电信", "电信"), 3),
    }
)


def vendor_of(carrier: str) -> int | None:
    """The reference's ``Vendor`` code of a carrier name, None when it is none of the three."""
    return _VENDORS.get(carrier.strip().lower())


@dataclass(frozen=True, slots=True)
class NumberDetail:
    """A pool number as the API shows it (times local ``YYYY-MM-DD HH:MM:SS``)."""

    number: PhoneNumber
    city: str
    province: str
    carrier: str
    vendor: int | None
    spec: NumberSpec
    status: SecretStatus
    pool_key: PoolKey
    purchased: str | None
    verification: Verification
    verification_deadline: str | None

    @property
    def certify_status(self) -> int:
        """The reference's ``CertifyStatus``: 1 verified, else 0."""
        return int(self.verification is Verification.VERIFIED)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """How much of a pool is in use: numbers, bound numbers, utilisation %."""

    pool_key: PoolKey
    numbers: int
    bound: int
    locked: int
    utilisation_pct: float


@dataclass(frozen=True, slots=True)
class MigrationJob:
    """A migration job and its per-number results (request order)."""

    job_id: str
    from_pool: PoolKey
    to_pool: PoolKey
    city: str | None
    requested: int
    moved: int
    failed: int
    created: str
    results: tuple[MigrationOutcome, ...]


def parse_amount(text: str | Decimal) -> Decimal:
    """A money amount as given (``"100"``, ``"12.50"``) → ``Decimal``; InvalidInput otherwise."""
    try:
        amount = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidInput(
            InventoryCode.AMOUNT_ILLEGAL, f"amount must be a decimal number, got {text!r}"
        ) from None
    if not amount.is_finite():
        raise InvalidInput(InventoryCode.AMOUNT_ILLEGAL, f"amount must be finite, got {text!r}")
    return amount


def _number(raw: str, field: str) -> PhoneNumber:
    try:
        return normalize(raw)
    except InvalidNumberError as error:
        raise InvalidInput(error.code, f"{field}: {error.message}") from None


def _prefix(raw: str | None) -> str | None:
    """A number prefix (≤ 18 digits, national or +86 form) → national significant digits."""
    if raw is None:
        return None
    text = raw.strip().replace(" ", "").replace("-", "")
    if not text:
        return None
    digits = text.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"prefix must be digits, got {raw!r}")
    if len(digits) > MAX_PREFIX_DIGITS:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"prefix is at most {MAX_PREFIX_DIGITS} digits, got {len(digits)}",
        )
    if text.startswith("+"):
        if not digits.startswith("86"):
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "prefix: only +86 numbers are sold")
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = digits[1:]  # a landline's trunk 0 is not part of the stored number
    return digits or None


def _spec(value: int | None) -> NumberSpec | None:
    if value is None:
        return None
    try:
        return NumberSpec(int(value))
    except ValueError:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"spec must be 1 (virtual 170/171), 2 (carrier) or 3 (95), got {value!r}",
        ) from None


def _count(value: int, *, limit: int, field: str = "count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL, f"{field} must be 1..{limit}, got {value!r}"
        )
    return value


def _not_in_pool(number: PhoneNumber, pool_key: PoolKey) -> NotFound:
    # The same answer for a number of another pool, of another tenant, or of no one.
    return NotFound(InventoryCode.NUMBER_NOT_EXIST, f"no number {number} in pool {pool_key}")


class Inventory:
    """X-number inventory and the tenants' balance."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        # Numbers that must be verified and are not: number → deadline (UTC epoch seconds).
        self._deadlines: dict[PhoneNumber, float] = {}
        self._policies: dict[BindingType, VerificationPolicy] = {}

    async def load(self) -> None:
        """Load this service's in-memory state at start-up (before calls are routed)."""
        await self._load_verification()

    async def _load_verification(self) -> None:
        policies = await inventory_store.verification_policies(self.control.db)
        self._policies = {p.type: p for p in policies}
        self._deadlines = await inventory_store.unverified_deadlines(self.control.db)

    # ------------------------------------------------------------------------- helpers

    def _local(self, epoch_s: float | None) -> str | None:
        if epoch_s is None:
            return None
        moment = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(self.control.zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    def _period(self, epoch_s: float) -> str:
        """The local billing month ``YYYYMM`` of ``epoch_s``."""
        moment = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(self.control.zone)
        return moment.strftime("%Y%m")

    def _is_bound(self, number: PhoneNumber) -> bool:
        # Every binding not unbound is indexed (expired ones too), so the index is enough.
        return self.control.index.x_type(number) is not None

    def _detail(self, info: NumberInfo) -> NumberDetail:
        if info.status is NumberStatus.LOCKED:
            status = SecretStatus.LOCKED
        elif self._is_bound(info.number):
            status = SecretStatus.BOUND
        else:
            status = SecretStatus.FREE
        return NumberDetail(
            number=info.number,
            city=info.city,
            province=info.province,
            carrier=info.carrier,
            vendor=vendor_of(info.carrier),
            spec=info.spec,
            status=status,
            pool_key=info.pool_key or PoolKey(""),
            purchased=self._local(info.purchased_at),
            verification=info.verification,
            verification_deadline=self._local(info.verification_deadline),
        )

    def _remember(self, pool_key: PoolKey, info: NumberInfo) -> None:
        """Make a pool number allocatable (its city and province feed the allocation modes)."""
        self.control._remember_number(pool_key, info.number, info.city, info.province)

    async def _pool_number(
        self, pool_key: str, number: str, tenant: str | None
    ) -> tuple[store.Pool, NumberInfo]:
        """The visible pool and its number, or NotFound (pool or number) as if absent."""
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        x = _number(number, "number")
        try:
            info = await inventory_store.number_in_pool(self.control.db, pool.pool_key, x)
        except inventory_store.NumberNotInPoolError:
            raise _not_in_pool(x, pool.pool_key) from None
        return pool, info

    # ------------------------------------------------------------------------- balance

    async def topup(self, tenant_id: str, amount: Decimal) -> Decimal:
        """Credit ``amount`` (> 0, at most 2 decimals) to a tenant; returns the new balance."""
        value = parse_amount(amount)
        # The cap first: quantize() of a huge value raises instead of answering.
        if value <= 0 or value > MAX_TOPUP or value != value.quantize(_CENT):
            raise InvalidInput(
                InventoryCode.AMOUNT_ILLEGAL,
                f"a top-up is more than 0 and at most {MAX_TOPUP}, with at most 2 decimals; "
                f"got {amount}",
            )
        try:
            balance = await ledger.topup(
                self.control.db, tenant_id, value.quantize(_CENT), now=self.control.clock()
            )
        except ledger.UnknownTenantError:
            raise NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}") from None
        _log.info("tenant_topup", tenant_id=tenant_id, amount=str(value))
        return balance

    async def balance(self, tenant_id: str, *, tenant: str | None = None) -> Decimal:
        """A tenant's balance (Σ top-ups − Σ charges); a tenant may read only its own."""
        if not visible_to(tenant_id, tenant):
            raise NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")
        try:
            return await ledger.balance(self.control.db, tenant_id)
        except ledger.UnknownTenantError:
            raise NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}") from None

    # ------------------------------------------------------------------------- stock

    async def stock(
        self, *, city: str | None = None, spec: int | None = None, prefix: str | None = None
    ) -> list[StockRow]:
        """Remaining free stock per canonical city and spec (``city``: 全国/Nationwide for 95)."""
        wanted_spec = _spec(spec)
        wanted_city = inventory_store.city_key(city) if city and city.strip() else None
        rows = await inventory_store.stock(self.control.db, prefix=_prefix(prefix))
        return [
            row
            for row in rows
            if (wanted_spec is None or row.spec is wanted_spec)
            and (wanted_city is None or row.city == wanted_city)
        ]

    async def covered_cities(self, *, spec: int | None = None) -> list[str]:
        """Cities with free stock (95 numbers: the single entry 全国; Hainan: only 海口)."""
        cities: dict[str, None] = {}
        for row in await self.stock(spec=spec):
            if row.free > 0:
                cities.setdefault(row.city)
        return list(cities)

    # ------------------------------------------------------------------------- purchase

    def _grace_deadline(self, pool_type: BindingType, now: float) -> float | None:
        policy = self._policies.get(pool_type)
        if policy is None or not policy.required:
            return None
        return now + policy.grace_s

    async def buy(
        self,
        pool_key: str,
        *,
        count: int,
        city: str,
        spec: int | None = None,
        prefix: str | None = None,
        tenant: str | None = None,
    ) -> list[PhoneNumber]:
        """Buy ``count`` (1..1000) random free numbers of ``city`` into the pool.

        The pool's tenant pays the first month's rent of each (one ``rent`` ledger line per
        number) in the same transaction; refused with ``NOT_ENOUGH_BALANCE`` when the balance
        does not cover it, ``NO_AVAILABLE_NUMBER`` when the stock does not hold ``count``
        matching numbers — nothing bought either way.
        """
        wanted = _count(count, limit=MAX_PURCHASE_COUNT)
        if not city or not city.strip():
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "city is required")
        wanted_city = inventory_store.city_key(city)
        wanted_prefix = _prefix(prefix)
        wanted_spec = _spec(spec)
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        specs = store.specs_for(pool.type)
        if wanted_spec is not None:
            if wanted_spec not in specs:
                raise InvalidInput(
                    ErrorCode.POOL_TYPE_MISMATCH,
                    f"a {pool.type.value} pool holds numbers of spec "
                    f"{'/'.join(str(int(s)) for s in specs)}, not {int(wanted_spec)}",
                )
            specs = (wanted_spec,)
        nationwide_specs = specs == (NumberSpec.NATIONWIDE_95,)
        if nationwide_specs and wanted_city != inventory_store.NATIONWIDE:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"95 numbers are nationwide: city must be {inventory_store.NATIONWIDE} or "
                f"Nationwide, got {city!r}",
            )
        if not nationwide_specs and wanted_city == inventory_store.NATIONWIDE:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"nationwide numbers are 95 numbers (spec 3), for 95AXN pools; "
                f"pool {pool.pool_key} is {pool.type.value}",
            )
        now = self.control.clock()
        order = inventory_store.PurchaseOrder(
            pool_key=pool.pool_key,
            tenant_id=pool.tenant_id,
            count=wanted,
            city=wanted_city,
            specs=specs,
            prefix=wanted_prefix,
            rent_by_spec=(await tariff_for(self.control.db, pool.tenant_id)).rent_by_spec(),
            period=self._period(now),
            verification_deadline=self._grace_deadline(pool.type, now),
            now=now,
        )
        try:
            bought = await inventory_store.purchase(self.control.db, order)
        except store.NotEnoughStockError as error:
            matching = f"{wanted_city}" + (f", prefix {wanted_prefix}" if wanted_prefix else "")
            if error.available == 0:
                message = (
                    f"no free number in stock for {matching}; ask the operator to add numbers "
                    "of this city"
                )
            else:
                message = (
                    f"only {error.available} free numbers in stock for {matching}, {wanted} "
                    "requested; nothing was bought — buy fewer or ask the operator to add numbers"
                )
            raise Conflict(ErrorCode.NO_AVAILABLE_NUMBER, message) from None
        except inventory_store.InsufficientBalanceError as error:
            raise Conflict(
                InventoryCode.NOT_ENOUGH_BALANCE,
                f"the first month's rent of {wanted} numbers is {error.needed}, the balance is "
                f"{error.balance}; top up first (nothing was bought)",
            ) from None
        for info in bought:
            self._remember(pool.pool_key, info)
            if info.verification_deadline is not None:
                self._deadlines[info.number] = info.verification_deadline
        _log.info("numbers_bought", pool_key=pool.pool_key, count=len(bought))
        return [info.number for info in bought]

    # ------------------------------------------------------------------------- one number

    async def release(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> PhoneNumber:
        """Give an unbound number back to the stock (rent stops next month; no refund).

        Returns the number (E.164).
        """
        pool, info = await self._pool_number(pool_key, number, tenant)
        x = info.number
        # Under X's lock no bind on X is between its check and its index add.  X leaves the
        # allocatable set before the write, so no bind starting meanwhile can pick it.
        async with self.control._x_locks.hold(x):
            if self._is_bound(x):
                raise Conflict(
                    InventoryCode.NUMBER_IN_USE,
                    f"number {x} still has a binding; unbind it before releasing the number",
                )
            allocatable = self.control._number_pool.get(x) == pool.pool_key
            self.control._forget_number(x)
            try:
                await inventory_store.release(
                    self.control.db, pool.pool_key, x, now=self.control.clock()
                )
            except BaseException as error:  # back in the pool, whatever refused the write
                if allocatable:
                    self._remember(pool.pool_key, info)
                if isinstance(error, inventory_store.NumberInUseError):
                    raise Conflict(InventoryCode.NUMBER_IN_USE, str(error)) from None
                if isinstance(error, inventory_store.NumberNotInPoolError):
                    raise _not_in_pool(x, pool.pool_key) from None
                raise
            self._deadlines.pop(x, None)
        _log.info("number_released", pool_key=pool.pool_key, number=x)
        return x

    async def lock(self, pool_key: str, number: str, *, tenant: str | None = None) -> NumberDetail:
        """Lock a number of the pool: it stays in the pool but is never allocated."""
        pool, info = await self._pool_number(pool_key, number, tenant)
        if info.status is not NumberStatus.LOCKED:
            await inventory_store.lock(self.control.db, pool.pool_key, info.number)
            self.control._forget_number(info.number)
            _log.info("number_locked", pool_key=pool.pool_key, number=info.number)
        return await self.number_detail(pool.pool_key, info.number, tenant=tenant)

    async def unlock(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> NumberDetail:
        """Unlock a locked number of the pool: allocatable again."""
        pool, info = await self._pool_number(pool_key, number, tenant)
        if info.status is NumberStatus.LOCKED:
            await inventory_store.unlock(self.control.db, pool.pool_key, info.number)
            self._remember(pool.pool_key, info)
            _log.info("number_unlocked", pool_key=pool.pool_key, number=info.number)
        return await self.number_detail(pool.pool_key, info.number, tenant=tenant)

    async def number_detail(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> NumberDetail:
        """One number of the pool (QuerySecretNoDetail)."""
        _pool, info = await self._pool_number(pool_key, number, tenant)
        return self._detail(info)

    async def list_numbers(self, pool_key: str, *, tenant: str | None = None) -> list[NumberDetail]:
        """Every number of the pool (locked ones included), sorted."""
        pool = await self.control.get_pool(pool_key, tenant=tenant)
        infos = await inventory_store.pool_numbers_info(self.control.db, pool.pool_key)
        return [self._detail(info) for info in infos]

    async def pool_usage(self, pool_key: str, *, tenant: str | None = None) -> PoolUsage:
        """Numbers of the pool, how many are bound and locked, binding utilisation %."""
        details = await self.list_numbers(pool_key, tenant=tenant)
        bound = sum(1 for d in details if self._is_bound(d.number))
        locked = sum(1 for d in details if d.status is SecretStatus.LOCKED)
        return PoolUsage(
            pool_key=PoolKey(pool_key),
            numbers=len(details),
            bound=bound,
            locked=locked,
            utilisation_pct=round(100.0 * bound / len(details), 1) if details else 0.0,
        )

    # ------------------------------------------------------------------------- verification

    def is_bindable(self, x: PhoneNumber, now: float) -> bool:
        """False when ``x``'s pool type requires real-person verification, ``x`` is not verified
        and its grace period ended before ``now`` (in memory: for ``bind`` and the call path).
        """
        deadline = self._deadlines.get(x)
        return deadline is None or now <= deadline

    def verification_policies(self) -> list[VerificationPolicy]:
        """The policies set by the operator (types without one require nothing)."""
        return sorted(self._policies.values(), key=lambda p: p.type.value)

    async def set_verification_policy(
        self, type: BindingType, *, required: bool, grace_s: float
    ) -> VerificationPolicy:
        """Operator: whether numbers of ``type`` need real-person verification, and the grace
        period of a new number.  Switching it on gives every unverified number of the type's
        pools ``grace_s`` from now.  Never for 95AXN (SPEC §3).
        """
        if type is BindingType.AXN95:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                "real-person verification is never required for 95AXN numbers",
            )
        if (
            isinstance(grace_s, bool)
            or not math.isfinite(grace_s)
            or not 0 <= grace_s <= MAX_GRACE_S
        ):
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"grace_s must be 0..{int(MAX_GRACE_S)} seconds, got {grace_s!r}",
            )
        policy = VerificationPolicy(type, required=bool(required), grace_s=float(grace_s))
        await inventory_store.set_verification_policy(
            self.control.db, policy, now=self.control.clock()
        )
        await self._load_verification()
        _log.info("verification_policy_set", type=type.value, required=required, grace_s=grace_s)
        return policy

    async def submit_verification(
        self, pool_key: str, number: str, *, tenant: str | None = None
    ) -> NumberDetail:
        """Tenant: ask for the real-person verification of a number (→ pending)."""
        pool, info = await self._pool_number(pool_key, number, tenant)
        try:
            updated = await inventory_store.submit_verification(
                self.control.db, pool.pool_key, info.number
            )
        except inventory_store.NumberNotInPoolError:
            raise _not_in_pool(info.number, pool.pool_key) from None
        except inventory_store.VerificationStateError as error:
            raise Conflict(InventoryCode.VERIFICATION_STATE_ILLEGAL, str(error)) from None
        return self._detail(updated)

    async def decide_verification(self, number: str, *, approved: bool) -> NumberDetail:
        """Operator: a pending verification is approved (verified) or rejected."""
        x = _number(number, "number")
        try:
            updated = await inventory_store.decide_verification(
                self.control.db, x, approved=approved
            )
        except inventory_store.NumberNotInPoolError:
            raise NotFound(InventoryCode.NUMBER_NOT_EXIST, f"no number {x} in any pool") from None
        except inventory_store.VerificationStateError as error:
            raise Conflict(InventoryCode.VERIFICATION_STATE_ILLEGAL, str(error)) from None
        if updated.verification is Verification.VERIFIED:
            self._deadlines.pop(x, None)
        _log.info("verification_decided", number=x, approved=approved)
        return self._detail(updated)

    # ------------------------------------------------------------------------- migration

    async def migrate(
        self,
        from_pool: str,
        to_pool: str,
        *,
        tenant: str | None = None,
        city: str | None = None,
        count: int | None = None,
        numbers: Sequence[str] | None = None,
    ) -> MigrationJob:
        """Move unbound numbers between two pools of the same type and tenant (free of charge).

        Either ``count`` (1..500) numbers of ``city``, or the explicit ``numbers`` (≤ 500).
        Each number gets a result (moved, or why not); bound ones stay.  The old tenancy ends,
        a ``migration`` tenancy starts; the month's rent stays with the old pool.
        """
        source = await self.control.get_pool(from_pool, tenant=tenant)
        target = await self.control.get_pool(to_pool, tenant=tenant)
        if source.pool_key == target.pool_key:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "from_pool and to_pool are the same")
        if source.type is not target.type:
            raise InvalidInput(
                ErrorCode.POOL_TYPE_MISMATCH,
                f"numbers move between pools of one type; {source.pool_key} is "
                f"{source.type.value}, {target.pool_key} is {target.type.value}",
            )
        if source.tenant_id != target.tenant_id:
            raise InvalidInput(
                InventoryCode.POOL_TENANT_MISMATCH,
                "numbers move only between pools of the same tenant",
            )
        by_list = numbers is not None
        if by_list == (city is not None or count is not None):
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                "give either city and count, or an explicit list of numbers",
            )
        wanted_city: str | None = None
        candidates: list[tuple[str, str | None]]
        if numbers is not None:
            # One number per line when given as text (the reference console's form).
            lines = numbers.splitlines() if isinstance(numbers, str) else numbers
            listed = [line.strip() for line in lines if line.strip()]
            if not 1 <= len(listed) <= MAX_MIGRATION_NUMBERS:
                raise InvalidInput(
                    ErrorCode.PARAMETER_ILLEGAL,
                    f"a migration moves 1..{MAX_MIGRATION_NUMBERS} numbers, got {len(listed)}",
                )
            requested = len(listed)
            candidates = self._listed_candidates(
                [_number(n, f"numbers line {i}") for i, n in enumerate(listed, start=1)],
                source.pool_key,
            )
        else:
            if city is None or not city.strip():
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "city is required with count")
            requested = _count(count or 0, limit=MAX_MIGRATION_NUMBERS)
            wanted_city = inventory_store.city_key(city)
            picked = await inventory_store.pick_for_migration(
                self.control.db, source.pool_key, wanted_city
            )
            free = [n for n in picked if not self._is_bound(n)][:requested]
            if not free:
                raise Conflict(
                    ErrorCode.NO_AVAILABLE_NUMBER,
                    f"pool {source.pool_key} has no unbound number of {wanted_city} to migrate",
                )
            candidates = [(n, None) for n in free]
        job = await self._move(
            source=source.pool_key,
            target=target.pool_key,
            tenant_id=source.tenant_id,
            city=wanted_city,
            requested=requested,
            candidates=candidates,
        )
        _log.info(
            "numbers_migrated",
            job_id=job.job_id,
            from_pool=source.pool_key,
            to_pool=target.pool_key,
            moved=job.moved,
            failed=job.failed,
        )
        return job

    def _listed_candidates(
        self, listed: Iterable[PhoneNumber], source: PoolKey
    ) -> list[tuple[str, str | None]]:
        seen: set[PhoneNumber] = set()
        candidates: list[tuple[str, str | None]] = []
        for number in listed:
            if number in seen:
                candidates.append((number, "DUPLICATE: listed more than once"))
                continue
            seen.add(number)
            # Only the source pool's own bindings are looked at here, so a number of another
            # pool answers "not in pool" (from the store), never whether it is bound.
            if any(b.pool_key == source for b in self.control.index.by_x(number)):
                candidates.append((number, "NUMBER_IN_USE: the number has a binding"))
            else:
                candidates.append((number, None))
        return candidates

    async def _move(
        self,
        *,
        source: PoolKey,
        target: PoolKey,
        tenant_id: str | None,
        city: str | None,
        requested: int,
        candidates: list[tuple[str, str | None]],
    ) -> MigrationJob:
        moving = sorted({PhoneNumber(n) for n, reason in candidates if reason is None})
        infos = {
            info.number: info
            for info in await inventory_store.pool_numbers_info(self.control.db, source)
        }
        locked: list[PhoneNumber] = []
        allocatable: list[PhoneNumber] = []
        try:
            # Sorted acquisition: two migrations never wait on each other in a cycle.
            for number in moving:
                await self.control._x_locks.acquire(number)
                locked.append(number)
            rechecked = [
                (n, "NUMBER_IN_USE: the number has a binding")
                if reason is None and n in infos and self._is_bound(PhoneNumber(n))
                else (n, reason)
                for n, reason in candidates
            ]
            # Out of the source's allocatable set before the write (as in release), back in
            # the pool it ends up in after it.
            for number in moving:
                if self.control._number_pool.get(number) == source and number in infos:
                    allocatable.append(number)
                    self.control._forget_number(number)
            try:
                row = await inventory_store.migrate(
                    self.control.db,
                    tenant_id=tenant_id,
                    from_pool=source,
                    to_pool=target,
                    city=city,
                    requested=requested,
                    candidates=rechecked,
                    now=self.control.clock(),
                )
            except BaseException:
                for number in allocatable:
                    self._remember(source, infos[number])
                raise
            moved = {PhoneNumber(o.number) for o in row.results if o.ok}
            for number in allocatable:
                self._remember(target if number in moved else source, infos[number])
        finally:
            for number in locked:
                self.control._x_locks.release(number)
        return self._job(row)

    def _job(self, row: inventory_store.MigrationJobRow) -> MigrationJob:
        return MigrationJob(
            job_id=row.job_id,
            from_pool=row.from_pool,
            to_pool=row.to_pool,
            city=row.city,
            requested=row.requested,
            moved=row.moved,
            failed=row.failed,
            created=self._local(row.created_at) or "",
            results=row.results,
        )

    async def get_migration(self, job_id: str, *, tenant: str | None = None) -> MigrationJob:
        """A migration job with its per-number results."""
        row = await inventory_store.get_migration(self.control.db, job_id.strip())
        if row is None or not visible_to(row.tenant_id, tenant):
            raise NotFound(InventoryCode.MIGRATION_NOT_EXIST, f"no migration job {job_id!r}")
        return self._job(row)
