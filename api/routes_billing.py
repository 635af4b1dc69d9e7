"""REST routes (``/v1/tenants/{tenant_id}/...``) of billing: tariffs, minute packages,
discounts (SPEC §7); mounted by :func:`api.app.create_app`.  The use cases are
:class:`BillingAdmin`, over :mod:`store.billing`.

The operator sets tariffs, sells packages and grants discounts; a tenant may read its own
tariff, packages and discounts (another tenant's id answers 404 ``TENANT_NOT_EXIST``, exactly as
an id that does not exist) and gets 403 ``FORBIDDEN`` for the writes.  Money is a decimal
string (yuan); months are ``YYYY-MM``; package validity is local dates ``YYYY-MM-DD`` (both
inclusive) in ``[time] zone``.  A refused request writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AuthError, PrincipalDependency
from api.control import ControlPlane
from api.errors import Conflict, ErrorCode, InvalidInput, NotFound
from api.inventory import MAX_TOPUP, parse_amount
from api.principal import Principal, visible_to
from billing.rating import (
    FIRST_YEAR,
    LAST_YEAR,
    InvalidMonthError,
    PackageState,
    package_state,
    parse_month,
)
from billing.tariffs import DEFAULT_TARIFF, TARIFF_FIELDS, InvalidPriceError, parse_price
from routing.model import PoolKey
from store import billing as billing_store
from store.ledger import LedgerEntry, UnknownTenantError

__all__ = ["BillingAdmin", "DiscountView", "PackageView", "TariffView", "build_router"]

#: Most minutes one package may hold (a guard against a mistyped value).
MAX_PACKAGE_MINUTES: Final = 100_000_000
MAX_NAME_CHARS: Final = 128
_CENT: Final = Decimal("0.01")


# ------------------------------------------------------------------------------- use cases


@dataclass(frozen=True, slots=True)
class TariffView:
    """A tenant's effective prices and which of them are its own (the rest are defaults)."""

    tenant_id: str
    prices: dict[str, str]
    overrides: dict[str, str]


@dataclass(frozen=True, slots=True)
class PackageView:
    """A package as shown: dates local and inclusive, state at the time of the request."""

    package_id: str
    tenant_id: str
    name: str
    price: str
    minutes: int
    used_minutes: int
    remaining_minutes: int
    valid_from: str
    valid_to: str
    state: PackageState
    purchased: str


@dataclass(frozen=True, slots=True)
class DiscountView:
    """A discount line."""

    tenant_id: str
    month: str
    amount: str  # negative
    pool_key: str | None
    ref: str
    created: str


def _money(text: str, field: str, *, allow_zero: bool) -> Decimal:
    """A money amount of a request: ≥ 0 (or > 0), at most 2 decimals, at most MAX_TOPUP."""
    value = parse_amount(text)
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value > MAX_TOPUP or value != value.quantize(_CENT):
        floor = "0 or more" if allow_zero else "more than 0"
        raise InvalidInput(
            ErrorCode.AMOUNT_ILLEGAL,
            f"{field} is {floor} and at most {MAX_TOPUP}, with at most 2 decimals; got {text}",
        )
    return value.quantize(_CENT)


def _date(text: str, field: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise InvalidInput(
            ErrorCode.PARAMETER_ILLEGAL,
            f"{field} is a date YYYY-MM-DD in {FIRST_YEAR}-{LAST_YEAR}, got {text!r}",
        )
    return day


def _month(text: str) -> str:
    try:
        return parse_month(text)
    except InvalidMonthError as error:
        raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, str(error)) from None


def _no_tenant(tenant_id: str) -> NotFound:
    return NotFound(ErrorCode.TENANT_NOT_EXIST, f"no tenant {tenant_id!r}")


class BillingAdmin:
    """Billing use cases over the control plane's database, clock and zone."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def _visible(self, tenant_id: str, tenant: str | None) -> None:
        if not visible_to(tenant_id, tenant):
            raise _no_tenant(tenant_id)

    def _local_date(self, epoch_s: float) -> dt.date:
        return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(self.control.zone).date()

    def _midnight(self, day: dt.date) -> float:
        return dt.datetime(day.year, day.month, day.day, tzinfo=self.control.zone).timestamp()

    # --------------------------------------------------------------------- tariffs

    async def tariff(self, tenant_id: str, *, tenant: str | None = None) -> TariffView:
        """The tenant's effective tariff (the operator, or the tenant itself)."""
        self._visible(tenant_id, tenant)
        try:
            overrides = await billing_store.tariff_overrides(self.control.db, tenant_id)
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        return self._tariff_view(tenant_id, overrides)

    @staticmethod
    def _tariff_view(tenant_id: str, overrides: Mapping[str, Decimal]) -> TariffView:
        effective = DEFAULT_TARIFF.with_overrides(overrides)
        return TariffView(
            tenant_id=tenant_id,
            prices=effective.as_strings(),
            overrides={name: str(value) for name, value in overrides.items()},
        )

    async def set_tariff(self, tenant_id: str, changes: Mapping[str, str | None]) -> TariffView:
        """Operator: set prices (``None``: back to the SPEC default); unnamed prices stay.

        A price is ≥ 0 with at most 3 decimals; it applies to what is rated from now on.
        """
        parsed: dict[str, Decimal | None] = {}
        for name, text in changes.items():
            if name not in TARIFF_FIELDS:
                raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, f"no price named {name!r}")
            if text is None:
                parsed[name] = None
                continue
            try:
                parsed[name] = parse_price(text)
            except InvalidPriceError as error:
                raise InvalidInput(ErrorCode.AMOUNT_ILLEGAL, f"{name}: {error}") from None
        if not parsed:
            raise InvalidInput(ErrorCode.PARAMETER_ILLEGAL, "name at least one price to set")
        try:
            overrides = await billing_store.set_tariff_overrides(
                self.control.db, tenant_id, parsed, now=self.control.clock()
            )
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        return self._tariff_view(tenant_id, overrides)

    # --------------------------------------------------------------------- packages

    def _package_view(self, row: billing_store.PackageRow, now: float) -> PackageView:
        return PackageView(
            package_id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            price=str(row.price),
            minutes=row.minutes,
            used_minutes=row.used_minutes,
            remaining_minutes=row.remaining,
            valid_from=self._local_date(row.valid_from).isoformat(),
            # valid_until is the midnight after the last valid day.
            valid_to=self._local_date(row.valid_until - 1).isoformat(),
            state=package_state(
                minutes=row.minutes,
                used_minutes=row.used_minutes,
                valid_from=row.valid_from,
                valid_until=row.valid_until,
                now=now,
            ),
            purchased=self.control.local_time(row.created_at),
        )

    async def add_package(
        self,
        tenant_id: str,
        *,
        name: str,
        price: str,
        minutes: int,
        valid_to: str,
        valid_from: str | None = None,
    ) -> PackageView:
        """Operator: sell a call-minute package, valid ``valid_from`` (default: today) through
        ``valid_to`` (local dates, inclusive).  Its price is charged (a ``package`` ledger line)
        only if the balance covers it: ``NOT_ENOUGH_BALANCE`` otherwise, nothing written."""
        label = name.strip()
        if not label or len(label) > MAX_NAME_CHARS:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"name is 1-{MAX_NAME_CHARS} characters"
            )
        cost = _money(price, "price", allow_zero=True)
        if not 1 <= minutes <= MAX_PACKAGE_MINUTES:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"minutes is 1-{MAX_PACKAGE_MINUTES}, got {minutes}",
            )
        now = self.control.clock()
        today = self._local_date(now)
        first = today if valid_from is None else _date(valid_from, "valid_from")
        last = _date(valid_to, "valid_to")
        if last < first:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL,
                f"valid_to {last} is before valid_from {first}",
            )
        if last < today:
            raise InvalidInput(
                ErrorCode.PARAMETER_ILLEGAL, f"valid_to {last} is in the past (today is {today})"
            )
        try:
            row = await billing_store.insert_package(
                self.control.db,
                tenant_id=tenant_id,
                name=label,
                price=cost,
                minutes=minutes,
                valid_from=self._midnight(first),
                valid_until=self._midnight(last + dt.timedelta(days=1)),
                period=today.strftime("%Y%m"),
                now=now,
            )
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        except billing_store.BalanceTooLowError as error:
            raise Conflict(
                ErrorCode.NOT_ENOUGH_BALANCE,
                f"the package costs {error.needed}, the balance is {error.balance}; top up "
                "first (nothing was bought)",
            ) from None
        return self._package_view(row, now)

    async def packages(self, tenant_id: str, *, tenant: str | None = None) -> list[PackageView]:
        """The tenant's packages with remaining minutes and state, oldest purchase first."""
        self._visible(tenant_id, tenant)
        try:
            rows = await billing_store.list_packages(self.control.db, tenant_id)
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        now = self.control.clock()
        return [self._package_view(row, now) for row in rows]

    # --------------------------------------------------------------------- discounts

    def _discount_view(self, entry: LedgerEntry) -> DiscountView:
        period = entry.period or ""
        return DiscountView(
            tenant_id=entry.tenant_id,
            month=f"{period[:4]}-{period[4:]}" if period else "",
            amount=str(entry.amount),
            pool_key=entry.pool_key,
            ref=entry.ref or "",
            created=self.control.local_time(entry.created_at),
        )

    async def add_discount(
        self, tenant_id: str, *, month: str, amount: str, pool_key: str | None = None
    ) -> DiscountView:
        """Operator: grant ``amount`` off a tenant's month (a negative ``discount`` line), for
        one of its pools or (``pool_key`` None) the whole tenant."""
        period = _month(month)
        value = _money(amount, "amount", allow_zero=False)
        pool = None
        if pool_key is not None and pool_key.strip():
            pool = PoolKey(pool_key.strip())
        try:
            entry = await billing_store.insert_discount(
                self.control.db,
                tenant_id=tenant_id,
                period=period,
                amount=value,
                pool_key=pool,
                now=self.control.clock(),
            )
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        except billing_store.PoolNotOfTenantError:
            raise NotFound(
                ErrorCode.POOL_NOT_EXIST, f"no pool {pool} of tenant {tenant_id!r}"
            ) from None
        return self._discount_view(entry)

    async def discounts(
        self, tenant_id: str, *, month: str | None = None, tenant: str | None = None
    ) -> list[DiscountView]:
        """The tenant's discounts (optionally of one month), oldest first."""
        self._visible(tenant_id, tenant)
        period = None if month is None else _month(month)
        try:
            entries = await billing_store.list_discounts(self.control.db, tenant_id, period=period)
        except UnknownTenantError:
            raise _no_tenant(tenant_id) from None
        return [self._discount_view(e) for e in entries]


# ------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


_PRICE = Field(default=None, description="yuan, ≥ 0, ≤ 3 decimals; null: back to the default")


class TariffIn(_Model):
    """Prices to change; absent fields stay, ``null`` returns a price to the SPEC default."""

    rent_virtual: str | None = _PRICE
    rent_carrier: str | None = _PRICE
    rent_95: str | None = _PRICE
    call_per_minute: str | None = _PRICE
    recording_per_minute: str | None = _PRICE
    sms_intercept_per_segment: str | None = _PRICE
    sms_smart_per_segment: str | None = _PRICE


class TariffOut(_Model):
    """A tenant's effective prices (yuan) and the ones that are its own."""

    tenant_id: str
    prices: dict[str, str] = Field(
        description="rent_virtual, rent_carrier, rent_95 per number and month; call_per_minute,"
        " recording_per_minute per started minute; sms_* per SMS segment of 70 characters"
    )
    overrides: dict[str, str] = Field(description="prices set for this tenant (others: default)")


class PackageIn(_Model):
    """A call-minute package sold to the tenant (its price is charged now)."""

    name: str = Field(examples=["1000 minutes"])
    price: str = Field(examples=["90.00"], description="yuan, ≥ 0, ≤ 2 decimals")
    minutes: int = Field(description="call minutes it holds, ≥ 1")
    valid_from: str | None = Field(
        default=None, examples=["2026-12-01"], description="local date, default today"
    )
    valid_to: str = Field(examples=["2027-11-30"], description="local date, inclusive")


class PackageOut(_Model):
    """A package: quota, use and state (pending, active, exhausted, expired)."""

    package_id: str
    tenant_id: str
    name: str
    price: str
    minutes: int
    used_minutes: int
    remaining_minutes: int
    valid_from: str
    valid_to: str
    state: PackageState
    purchased: str


class PackagesOut(_Model):
    """A tenant's packages, oldest purchase first."""

    packages: list[PackageOut]


class DiscountIn(_Model):
    """A discount off a tenant's month."""

    month: str = Field(examples=["2026-12"], description="YYYY-MM")
    amount: str = Field(examples=["10.00"], description="yuan, > 0, ≤ 2 decimals")
    pool_key: str | None = Field(default=None, description="one of its pools; null: all")


class DiscountOut(_Model):
    """A discount line (``amount`` negative)."""

    tenant_id: str
    month: str
    amount: str
    pool_key: str | None
    ref: str
    created: str


class DiscountsOut(_Model):
    """A tenant's discounts, oldest first."""

    discounts: list[DiscountOut]


def _package_out(view: PackageView) -> PackageOut:
    return PackageOut(**{name: getattr(view, name) for name in PackageOut.model_fields})


def _discount_out(view: DiscountView) -> DiscountOut:
    return DiscountOut(**{name: getattr(view, name) for name in DiscountOut.model_fields})


def _tariff_out(view: TariffView) -> TariffOut:
    return TariffOut(tenant_id=view.tenant_id, prices=view.prices, overrides=view.overrides)


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes its tenant on."""
    router = APIRouter(tags=["billing"])
    admin = BillingAdmin(control)
    caller = Depends(principal)

    async def operator_only(who: Principal = caller) -> Principal:
        # A dependency, so a tenant is refused (403) before its body is even validated.
        if not who.is_operator:
            raise AuthError(403, ErrorCode.FORBIDDEN, "this route is reserved to the operator")
        return who

    operator = Depends(operator_only)

    @router.get(
        "/tenants/{tenant_id}/tariff",
        response_model=TariffOut,
        summary="A tenant's tariff (operator, or the tenant itself)",
    )
    async def get_tariff(tenant_id: str, who: Principal = caller) -> TariffOut:
        return _tariff_out(await admin.tariff(tenant_id, tenant=who.tenant_id))

    @router.patch(
        "/tenants/{tenant_id}/tariff",
        response_model=TariffOut,
        summary="Set a tenant's prices (operator; null: back to the default)",
    )
    async def set_tariff(tenant_id: str, body: TariffIn, _who: Principal = operator) -> TariffOut:
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        return _tariff_out(await admin.set_tariff(tenant_id, changes))

    @router.get(
        "/tenants/{tenant_id}/packages",
        response_model=PackagesOut,
        summary="A tenant's call-minute packages with remaining quota",
    )
    async def list_packages(tenant_id: str, who: Principal = caller) -> PackagesOut:
        views = await admin.packages(tenant_id, tenant=who.tenant_id)
        return PackagesOut(packages=[_package_out(v) for v in views])

    @router.post(
        "/tenants/{tenant_id}/packages",
        response_model=PackageOut,
        status_code=201,
        summary="Sell a call-minute package to a tenant (operator; price charged)",
    )
    async def add_package(
        tenant_id: str, body: PackageIn, _who: Principal = operator
    ) -> PackageOut:
        view = await admin.add_package(
            tenant_id,
            name=body.name,
            price=body.price,
            minutes=body.minutes,
            valid_from=body.valid_from,
            valid_to=body.valid_to,
        )
        return _package_out(view)

    @router.get(
        "/tenants/{tenant_id}/discounts",
        response_model=DiscountsOut,
        summary="A tenant's discounts",
    )
    async def list_discounts(
        tenant_id: str,
        who: Principal = caller,
        month: Annotated[str | None, Query(description="YYYY-MM")] = None,
    ) -> DiscountsOut:
        views = await admin.discounts(tenant_id, month=month, tenant=who.tenant_id)
        return DiscountsOut(discounts=[_discount_out(v) for v in views])

    @router.post(
        "/tenants/{tenant_id}/discounts",
        response_model=DiscountOut,
        status_code=201,
        summary="Grant a discount off a tenant's month (operator; a negative ledger line)",
    )
    async def add_discount(
        tenant_id: str, body: DiscountIn, _who: Principal = operator
    ) -> DiscountOut:
        view = await admin.add_discount(
            tenant_id, month=body.month, amount=body.amount, pool_key=body.pool_key
        )
        return _discount_out(view)

    return router
