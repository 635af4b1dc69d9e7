"""``maskline`` control commands of billing (registered by ``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage).  Parity
with ``api.routes_billing``::

    maskline tariff show --tenant T
    maskline tariff set --tenant T [--rent-virtual P] [--rent-carrier P] [--rent-95 P]
                        [--call P] [--recording P] [--sms-intercept P] [--sms-smart P]
        (P: yuan, or "default" to return that price to the SPEC §7 default)
    maskline package add --tenant T --name NAME --price P --minutes N --valid-to YYYY-MM-DD
                         [--valid-from YYYY-MM-DD]
    maskline package list --tenant T
    maskline discount add --tenant T --month YYYY-MM --amount A [--pool KEY]
    maskline discount list --tenant T [--month YYYY-MM]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from engine.cli import _add_group, _api, _control, _control_parser, _positive_int

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]

#: Option → tariff field of ``PATCH /v1/tenants/{id}/tariff``.
_PRICE_OPTIONS: Final = (
    ("--rent-virtual", "rent_virtual", "monthly rent of a virtual (spec 1) number"),
    ("--rent-carrier", "rent_carrier", "monthly rent of a carrier (spec 2) number"),
    ("--rent-95", "rent_95", "monthly rent of a 95 (spec 3) number"),
    ("--call", "call_per_minute", "per started minute of answered call time"),
    ("--recording", "recording_per_minute", "per started minute of recording"),
    ("--sms-intercept", "sms_intercept_per_segment", "per segment of an intercepted SMS"),
    ("--sms-smart", "sms_smart_per_segment", "per segment of a delivered smart SMS"),
)
#: The value that returns a price to its default.
_DEFAULT: Final = "default"


def _tenant_path(args: argparse.Namespace, tail: str) -> str:
    return f"/v1/tenants/{quote(args.tenant, safe='')}/{tail}"


def _tariff_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", _tenant_path(args, "tariff"))]


def _tariff_set(args: argparse.Namespace) -> list[dict[str, Any]]:
    changes: dict[str, Any] = {}
    for _option, field, _help in _PRICE_OPTIONS:
        value = getattr(args, field)
        if value is not None:
            changes[field] = None if value.strip().lower() == _DEFAULT else value
    # An empty change is refused by the server with PARAMETER_ILLEGAL, like any bad request.
    return [_api(args, "PATCH", _tenant_path(args, "tariff"), json_body=changes)]


def _package_add(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "name": args.name,
        "price": args.price,
        "minutes": args.minutes,
        "valid_to": args.valid_to,
    }
    if args.valid_from is not None:
        body["valid_from"] = args.valid_from
    return [_api(args, "POST", _tenant_path(args, "packages"), json_body=body)]


def _package_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    packages = _api(args, "GET", _tenant_path(args, "packages")).get("packages", [])
    return [p for p in packages if isinstance(p, dict)]


def _discount_add(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"month": args.month, "amount": args.amount}
    if args.pool is not None:
        body["pool_key"] = args.pool
    return [_api(args, "POST", _tenant_path(args, "discounts"), json_body=body)]


def _discount_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = {"month": args.month} if args.month is not None else None
    answer = _api(args, "GET", _tenant_path(args, "discounts"), params=params)
    return [d for d in answer.get("discounts", []) if isinstance(d, dict)]


def _tenant_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, metavar="T", help="tenant id")


def _add_tariff(commands: Commands) -> None:
    group = _add_group(
        commands, name="tariff", help_text="a tenant's prices (SPEC §7)", json_errors=True
    )
    show = _control_parser(
        group, "show", help_text='print {"tenant_id", "prices", "overrides"} of a tenant'
    )
    _tenant_option(show)
    show.set_defaults(handler=_control(_tariff_show))

    change = _control_parser(
        group,
        "set",
        help_text="set some of a tenant's prices (yuan, ≤ 3 decimals; 'default' resets one)",
        description="Set prices of a tenant; prices not named stay as they are. A value of "
        "'default' returns that price to the SPEC §7 default. New prices apply to what is "
        "rated from now on.",
    )
    _tenant_option(change)
    for option, field, help_text in _PRICE_OPTIONS:
        change.add_argument(option, dest=field, default=None, metavar="P", help=help_text)
    change.set_defaults(handler=_control(_tariff_set))


def _add_package(commands: Commands) -> None:
    group = _add_group(
        commands, name="package", help_text="prepaid call-minute packages", json_errors=True
    )
    add = _control_parser(
        group,
        "add",
        help_text="sell a call-minute package to a tenant (its price is charged now)",
        description="Sell a package of call minutes, valid from --valid-from (default today) "
        "through --valid-to (local dates, inclusive). Refused with NOT_ENOUGH_BALANCE when the "
        "tenant's balance does not cover the price. Packages pay call minutes before "
        "pay-as-you-go, the one expiring first first; never rent or recordings.",
    )
    _tenant_option(add)
    add.add_argument("--name", required=True, help="1-128 characters")
    add.add_argument("--price", required=True, metavar="P", help="yuan, ≤ 2 decimals")
    add.add_argument("--minutes", required=True, type=_positive_int, metavar="N")
    add.add_argument("--valid-from", default=None, metavar="YYYY-MM-DD")
    add.add_argument("--valid-to", required=True, metavar="YYYY-MM-DD")
    add.set_defaults(handler=_control(_package_add))

    listing = _control_parser(
        group, "list", help_text="print a tenant's packages (quota, used, remaining, state)"
    )
    _tenant_option(listing)
    listing.set_defaults(handler=_control(_package_list))


def _add_discount(commands: Commands) -> None:
    group = _add_group(
        commands, name="discount", help_text="discounts off a tenant's month", json_errors=True
    )
    add = _control_parser(
        group,
        "add",
        help_text="grant an amount off a tenant's month (a negative ledger line)",
    )
    _tenant_option(add)
    add.add_argument("--month", required=True, metavar="YYYY-MM")
    add.add_argument("--amount", required=True, metavar="A", help="yuan, > 0, ≤ 2 decimals")
    add.add_argument("--pool", default=None, metavar="KEY", help="one of its pools (default: all)")
    add.set_defaults(handler=_control(_discount_add))

    listing = _control_parser(group, "list", help_text="print a tenant's discounts")
    _tenant_option(listing)
    listing.add_argument("--month", default=None, metavar="YYYY-MM")
    listing.set_defaults(handler=_control(_discount_list))


#: One registration function per top-level command group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_tariff,
    _add_package,
    _add_discount,
)
