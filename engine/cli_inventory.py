"""``maskline`` control commands of the inventory area (registered by ``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage).

Commands (parity with ``api.routes_inventory``)::

    maskline inventory stock [--city C] [--spec 1|2|3] [--prefix DIGITS]
    maskline inventory cities [--spec 1|2|3]
    maskline inventory buy --pool KEY --count N --city C [--spec S] [--prefix DIGITS]
    maskline inventory list|usage --pool KEY
    maskline inventory show|release|lock|unlock|verify-request --pool KEY NUMBER
    maskline inventory verify NUMBER (--approve | --reject)
    maskline inventory policy TYPE (--required --grace S | --not-required)
    maskline inventory policies
    maskline migration start --from KEY --to KEY (--city C --count N | --numbers N1,N2 | --file F)
    maskline migration show JOB_ID
    maskline balance show TENANT
    maskline balance topup TENANT AMOUNT
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from engine.cli import (
    EXIT_USAGE,
    _add_group,
    _api,
    _CliError,
    _control,
    _control_parser,
    _display,
    _positive_int,
)

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]

_POOL_TYPES: Final = ("AXB", "AXN", "AXN_EXT", "95AXN", "AXG")
_SPECS: Final = (1, 2, 3)

Run = Callable[[argparse.Namespace], list[dict[str, Any]]]


def _path_number(number: str) -> str:
    # Numbers go into the URL path as given (any common form); quote keeps "+" and spaces intact.
    return quote(number.strip(), safe="")


def _number_path(args: argparse.Namespace, action: str = "") -> str:
    path = f"/v1/pools/{quote(args.pool, safe='')}/numbers/{_path_number(args.number)}"
    return f"{path}/{action}" if action else path


def _with_pool(parser: argparse.ArgumentParser, *, number: bool) -> None:
    parser.add_argument("--pool", required=True, metavar="KEY")
    if number:
        parser.add_argument("number", metavar="NUMBER", help="an X of the pool, any common form")


# inventory ----------------------------------------------------------------------------


def _stock(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = {"city": args.city, "spec": args.spec, "prefix": args.prefix}
    answer = _api(args, "GET", "/v1/stock", params={k: v for k, v in params.items() if v})
    return [row for row in answer.get("stock", []) if isinstance(row, dict)]


def _cities(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = {"spec": args.spec} if args.spec else None
    return [_api(args, "GET", "/v1/stock/cities", params=params)]


def _buy(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"count": args.count, "city": args.city}
    if args.spec is not None:
        body["spec"] = args.spec
    if args.prefix is not None:
        body["prefix"] = args.prefix
    answer = _api(args, "POST", f"/v1/pools/{quote(args.pool, safe='')}/purchase", json_body=body)
    return [_display({"numbers": answer["numbers"]})]


def _list(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(args, "GET", f"/v1/pools/{quote(args.pool, safe='')}/numbers")
    return [_display(item) for item in answer.get("items", []) if isinstance(item, dict)]


def _usage(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/pools/{quote(args.pool, safe='')}/usage")]


def _number_command(method: str, action: str) -> Run:
    def run(args: argparse.Namespace) -> list[dict[str, Any]]:
        return [_display(_api(args, method, _number_path(args, action)))]

    return run


def _verify(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(
        args,
        "POST",
        f"/v1/numbers/{_path_number(args.number)}/verification",
        json_body={"approved": args.approved},
    )
    return [_display(answer)]


def _policy(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.required and args.grace is None:
        raise _CliError("USAGE", "--required needs --grace SECONDS", EXIT_USAGE)
    body = {"required": args.required, "grace_s": args.grace or 0.0}
    return [_api(args, "PUT", f"/v1/verification-policy/{args.type}", json_body=body)]


def _policies(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(args, "GET", "/v1/verification-policy")
    return [p for p in answer.get("policies", []) if isinstance(p, dict)]


def _add_inventory(commands: Commands) -> None:
    group = _add_group(
        commands, name="inventory", help_text="X number stock and pool numbers", json_errors=True
    )
    stock = _control_parser(
        group, "stock", help_text="free stock per city and spec, one JSON line per row"
    )
    stock.add_argument("--city", default=None)
    stock.add_argument("--spec", type=int, choices=_SPECS, default=None)
    stock.add_argument("--prefix", default=None, metavar="DIGITS")
    stock.set_defaults(handler=_control(_stock))

    cities = _control_parser(
        group, "cities", help_text='cities with free stock; prints {"cities": [...]}'
    )
    cities.add_argument("--spec", type=int, choices=_SPECS, default=None)
    cities.set_defaults(handler=_control(_cities))

    buy = _control_parser(
        group,
        "buy",
        help_text='buy random free numbers into a pool; prints {"numbers": [...]}',
        description="Buy N random free numbers of a city into a pool (95 numbers: city 全国 or "
        "Nationwide). The pool's tenant pays the first month's rent of each; nothing is bought "
        "when the balance or the stock falls short.",
    )
    buy.add_argument("--pool", required=True, metavar="KEY")
    buy.add_argument("--count", required=True, type=_positive_int, metavar="N")
    buy.add_argument("--city", required=True)
    buy.add_argument("--spec", type=int, choices=_SPECS, default=None)
    buy.add_argument("--prefix", default=None, metavar="DIGITS", help="up to 18 digits")
    buy.set_defaults(handler=_control(_buy))

    listing = _control_parser(group, "list", help_text="a pool's numbers, one JSON line each")
    _with_pool(listing, number=False)
    listing.set_defaults(handler=_control(_list))

    usage = _control_parser(group, "usage", help_text="a pool's numbers, bound, utilisation %%")
    _with_pool(usage, number=False)
    usage.set_defaults(handler=_control(_usage))

    for name, method, action, text in (
        ("show", "GET", "", "print a number of a pool"),
        ("release", "POST", "release", "give an unbound number back to the stock"),
        ("lock", "POST", "lock", "lock a number: kept in the pool, never allocated"),
        ("unlock", "POST", "unlock", "unlock a locked number"),
        ("verify-request", "POST", "verification-request", "submit for verification"),
    ):
        parser = _control_parser(group, name, help_text=text)
        _with_pool(parser, number=True)
        parser.set_defaults(handler=_control(_number_command(method, action)))

    verify = _control_parser(
        group, "verify", help_text="approve or reject a pending real-person verification"
    )
    verify.add_argument("number", metavar="NUMBER")
    decision = verify.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", dest="approved", action="store_true")
    decision.add_argument("--reject", dest="approved", action="store_false")
    verify.set_defaults(handler=_control(_verify))

    policy = _control_parser(
        group,
        "policy",
        help_text="require real-person verification for a binding type (never 95AXN)",
    )
    policy.add_argument("type", type=str.upper, choices=_POOL_TYPES, metavar="TYPE")
    required = policy.add_mutually_exclusive_group(required=True)
    required.add_argument("--required", dest="required", action="store_true")
    required.add_argument("--not-required", dest="required", action="store_false")
    policy.add_argument(
        "--grace", type=float, default=None, metavar="S", help="seconds a new number may bind"
    )
    policy.set_defaults(handler=_control(_policy))

    policies = _control_parser(group, "policies", help_text="the verification policies")
    policies.set_defaults(handler=_control(_policies))


# migration ----------------------------------------------------------------------------


def _migration_lines(job: dict[str, Any]) -> list[dict[str, Any]]:
    results = job.get("results", [])
    summary = {k: v for k, v in job.items() if k != "results"}
    return [summary] + [_display(r) for r in results if isinstance(r, dict)]


def _migrate(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"from_pool": args.source, "to_pool": args.target}
    if args.file is not None:
        try:
            body["numbers"] = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise _CliError(
                "FILE_UNREADABLE", f"cannot read {args.file}: {err}", EXIT_USAGE
            ) from None
    elif args.numbers is not None:
        body["numbers"] = [n.strip() for n in args.numbers.split(",") if n.strip()]
    else:
        if args.city is None or args.count is None:
            raise _CliError("USAGE", "give --city and --count, or --numbers, or --file", EXIT_USAGE)
        body["city"] = args.city
        body["count"] = args.count
    return _migration_lines(_api(args, "POST", "/v1/migrations", json_body=body))


def _migration_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return _migration_lines(_api(args, "GET", f"/v1/migrations/{quote(args.job_id, safe='')}"))


def _add_migration(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="migration",
        help_text="move unbound numbers between two pools of one type and tenant",
        json_errors=True,
    )
    start = _control_parser(
        group,
        "start",
        help_text="migrate numbers; prints the job, then one JSON line per number",
        description="Move unbound numbers (free of charge) from one pool to another of the same "
        "type and tenant: N numbers of a city, or an explicit list (at most 500).",
    )
    start.add_argument("--from", dest="source", required=True, metavar="KEY")
    start.add_argument("--to", dest="target", required=True, metavar="KEY")
    which = start.add_mutually_exclusive_group()
    which.add_argument("--numbers", default=None, metavar="N1,N2", help="comma-separated")
    which.add_argument("--file", default=None, metavar="FILE", help="one number per line")
    which.add_argument("--city", default=None)
    start.add_argument("--count", type=_positive_int, default=None, metavar="N")
    start.set_defaults(handler=_control(_migrate))

    show = _control_parser(group, "show", help_text="a migration job and its results")
    show.add_argument("job_id", metavar="JOB_ID")
    show.set_defaults(handler=_control(_migration_show))


# balance ------------------------------------------------------------------------------


def _balance_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/tenants/{quote(args.tenant, safe='')}/balance")]


def _balance_topup(args: argparse.Namespace) -> list[dict[str, Any]]:
    path = f"/v1/tenants/{quote(args.tenant, safe='')}/topup"
    return [_api(args, "POST", path, json_body={"amount": args.amount})]


def _add_balance(commands: Commands) -> None:
    group = _add_group(commands, name="balance", help_text="tenants' accounts", json_errors=True)
    show = _control_parser(group, "show", help_text='a tenant\'s balance; prints {"balance": ...}')
    show.add_argument("tenant", metavar="TENANT")
    show.set_defaults(handler=_control(_balance_show))
    topup = _control_parser(group, "topup", help_text="credit a tenant's account")
    topup.add_argument("tenant", metavar="TENANT")
    topup.add_argument("amount", metavar="AMOUNT", help="decimal, at most 2 places: 100.00")
    topup.set_defaults(handler=_control(_balance_topup))


#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_inventory,
    _add_migration,
    _add_balance,
)
