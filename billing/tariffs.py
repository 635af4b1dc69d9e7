"""Tariffs (SPEC §7): the prices rating applies, per tenant, with the SPEC defaults.

Pure: no I/O.  A tenant's stored overrides (``store.billing``) are a mapping of field name to a
price or None (None: the default); :meth:`Tariff.with_overrides` makes the effective tariff.
Prices are yuan as :class:`~decimal.Decimal` with at most :data:`PRICE_PLACES` decimals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from routing.model import NumberSpec

__all__ = [
    "DEFAULT_TARIFF",
    "MAX_PRICE",
    "PRICE_PLACES",
    "TARIFF_FIELDS",
    "InvalidPriceError",
    "Item",
    "Tariff",
    "parse_price",
]

#: Decimals a price may have (SPEC §7: "yuan, 2–3 places"; 0.025 per SMS segment needs 3).
PRICE_PLACES: Final = 3
#: Highest price of one unit: a guard against a mistyped value, not a business rule.
MAX_PRICE: Final = Decimal("100000.000")


class Item(StrEnum):
    """The ``item`` of a ledger line written by billing (see :mod:`billing`)."""

    RENT = "rent"
    CALL = "call"
    CALL_PACKAGE = "call_package"
    RECORDING = "recording"
    PACKAGE = "package"
    DISCOUNT = "discount"
    # Per segment (SPEC §7), rated by billing.ledger_run.rate_sms_messages.
    SMS_INTERCEPT = "sms_intercept"
    SMS_SMART = "sms_smart"


@dataclass(frozen=True, slots=True)
class Tariff:
    """Prices in yuan: rent per number and month by spec, calls and recordings per started
    minute, SMS per segment (intercepted or smart)."""

    rent_virtual: Decimal = Decimal("5.00")
    rent_carrier: Decimal = Decimal("15.00")
    rent_95: Decimal = Decimal("5.00")
    call_per_minute: Decimal = Decimal("0.11")
    recording_per_minute: Decimal = Decimal("0.01")
    sms_intercept_per_segment: Decimal = Decimal("0.025")
    sms_smart_per_segment: Decimal = Decimal("0.1")

    def rent_for(self, spec: NumberSpec) -> Decimal:
        """The monthly rent of a number of ``spec``."""
        if spec is NumberSpec.VIRTUAL:
            return self.rent_virtual
        if spec is NumberSpec.CARRIER:
            return self.rent_carrier
        return self.rent_95

    def sms_per_segment(self, item: Item) -> Decimal:
        """The price of one segment of ``item`` (``SMS_INTERCEPT`` or ``SMS_SMART``)."""
        if item is Item.SMS_SMART:
            return self.sms_smart_per_segment
        if item is Item.SMS_INTERCEPT:
            return self.sms_intercept_per_segment
        raise ValueError(f"{item} is not an SMS item")

    def rent_by_spec(self) -> dict[NumberSpec, Decimal]:
        """Rent per spec, the shape ``store.inventory.PurchaseOrder.rent_by_spec`` takes."""
        return {spec: self.rent_for(spec) for spec in NumberSpec}

    def with_overrides(self, overrides: Mapping[str, Decimal | None]) -> Tariff:
        """This tariff with the given fields replaced; a None value keeps this tariff's price.

        ``KeyError`` for a name that is not a field (callers validate names first).
        """
        changes = {}
        for name, value in overrides.items():
            if name not in TARIFF_FIELDS:
                raise KeyError(name)
            if value is not None:
                changes[name] = value
        return dataclasses.replace(self, **changes)

    def as_strings(self) -> dict[str, str]:
        """Every field as a decimal string (for JSON)."""
        return {name: str(getattr(self, name)) for name in TARIFF_FIELDS}


#: SPEC §7 defaults (a tenant without overrides pays these).
DEFAULT_TARIFF: Final = Tariff()
#: The price fields, in declaration order (also the column names of ``billing_tariffs``).
TARIFF_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(Tariff))


class InvalidPriceError(ValueError):
    """A price that is not a decimal number of yuan with at most 3 decimals in range."""


def parse_price(text: str | Decimal, *, places: int = PRICE_PLACES) -> Decimal:
    """``"0.11"`` → ``Decimal("0.11")``: a finite, non-negative amount with at most ``places``
    decimals, at most :data:`MAX_PRICE`; :class:`InvalidPriceError` otherwise.

    The value keeps the decimals it was written with (``"5"`` stays ``5``, ``"5.00"`` ``5.00``).
    """
    try:
        value = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidPriceError(f"not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise InvalidPriceError(f"not a finite number: {text!r}")
    if value < 0 or value > MAX_PRICE:
        raise InvalidPriceError(f"a price is between 0 and {MAX_PRICE}, got {text}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite values have an int exponent
    if exponent < -places:
        # A value like 0.1100 is fine: only significant decimals count.
        normal = value.normalize()
        normal_exponent = normal.as_tuple().exponent
        assert isinstance(normal_exponent, int)
        if normal_exponent < -places:
            raise InvalidPriceError(f"at most {places} decimals, got {text}")
        value = value.quantize(Decimal(1).scaleb(-places))
    return value
