"""``maskline`` control commands of the lists area (registered by ``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage).

- ``maskline groups list POOL`` — one line per group; ``groups show POOL GROUP_ID``;
  ``groups add|remove POOL GROUP_ID NUMBER...``, ``groups overwrite POOL GROUP_ID [NUMBER...]``
  (numbers as separate arguments or comma-separated; each prints the group after the change);
  ``groups delete POOL GROUP_ID``. (``group create`` stays in ``engine.cli``.)
- ``maskline blacklist add|remove POOL NUMBER``, ``blacklist list POOL`` (pool-wide, AXN and
  AXN_EXT pools); ``blacklist pair-add|pair-remove POOL FIRST SECOND [--direction D]``,
  ``blacklist pairs POOL`` (point-to-point, D = BOTH, FIRST_TO_SECOND or SECOND_TO_FIRST).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from engine.cli import _add_group, _api, _control, _control_parser, _display, display_number

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]

_DIRECTIONS: Final = ("BOTH", "FIRST_TO_SECOND", "SECOND_TO_FIRST")

Lines = list[dict[str, Any]]


def _path(*parts: str) -> str:
    """``/v1/pools/...`` with each user-given part percent-encoded (``+`` in numbers, ``/``)."""
    return "/v1/pools/" + "/".join(quote(part, safe="") for part in parts)


def _numbers(values: list[str]) -> list[str]:
    """Numbers given as arguments, each possibly comma-separated."""
    return [n.strip() for value in values for n in value.split(",") if n.strip()]


def _pair(payload: dict[str, Any]) -> dict[str, Any]:
    shown = _display(payload)
    for side in ("first", "second"):
        if side in shown:
            shown[side] = display_number(shown[side])
    return shown


# groups --------------------------------------------------------------------------


def _groups_list(args: argparse.Namespace) -> Lines:
    answer = _api(args, "GET", _path(args.pool, "groups"))
    return [_display(group) for group in answer.get("groups", []) if isinstance(group, dict)]


def _groups_show(args: argparse.Namespace) -> Lines:
    return [_display(_api(args, "GET", _path(args.pool, "groups", args.group_id)))]


def _groups_operate(operation: str) -> Callable[[argparse.Namespace], Lines]:
    def run(args: argparse.Namespace) -> Lines:
        answer = _api(
            args,
            "POST",
            _path(args.pool, "groups", args.group_id, "numbers"),
            json_body={"operation": operation, "numbers": _numbers(args.numbers)},
        )
        return [_display(answer)]

    return run


def _groups_delete(args: argparse.Namespace) -> Lines:
    _api(args, "DELETE", _path(args.pool, "groups", args.group_id))
    return [{"ok": True}]


def _pool_and_group(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pool", metavar="POOL", help="pool key")
    parser.add_argument("group_id", metavar="GROUP_ID")


def _add_groups(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="groups",
        help_text="AXG number groups: list, show, change members, delete",
        json_errors=True,
    )
    listing = _control_parser(group, "list", help_text="print the pool's groups, one per line")
    listing.add_argument("pool", metavar="POOL", help="pool key")
    listing.set_defaults(handler=_control(_groups_list))

    show = _control_parser(group, "show", help_text="print a group with its numbers")
    _pool_and_group(show)
    show.set_defaults(handler=_control(_groups_show))

    variants = (
        ("add", "add", "+", "add numbers (members already in are kept)"),
        ("remove", "delete", "+", "remove numbers (non-members are ignored)"),
        ("overwrite", "overwrite", "*", "replace the members (none: empty the group)"),
    )
    for name, operation, arity, text in variants:
        parser = _control_parser(
            group,
            name,
            help_text=f"{text}; prints the group after the change",
            description=f"{text[0].upper()}{text[1:]}: at most 200 numbers per call, at most 200 "
            "in the group afterwards; one invalid number refuses the whole call.",
        )
        _pool_and_group(parser)
        parser.add_argument(
            "numbers", nargs=arity, metavar="NUMBER", help="numbers, or N1,N2,... lists"
        )
        parser.set_defaults(handler=_control(_groups_operate(operation)))

    delete = _control_parser(
        group,
        "delete",
        help_text='delete a group no binding uses; prints {"ok": true}',
        description="Delete a group. Refused (GROUP_IN_USE) while a binding that is not unbound "
        "names it.",
    )
    _pool_and_group(delete)
    delete.set_defaults(handler=_control(_groups_delete))


# blacklist -----------------------------------------------------------------------


def _blacklist_add(args: argparse.Namespace) -> Lines:
    answer = _api(args, "POST", _path(args.pool, "blacklist"), json_body={"number": args.number})
    return [_display(answer)]


def _blacklist_remove(args: argparse.Namespace) -> Lines:
    _api(args, "DELETE", _path(args.pool, "blacklist", args.number))
    return [{"ok": True}]


def _blacklist_list(args: argparse.Namespace) -> Lines:
    answer = _api(args, "GET", _path(args.pool, "blacklist"))
    return [_display(entry) for entry in answer.get("numbers", []) if isinstance(entry, dict)]


def _pair_add(args: argparse.Namespace) -> Lines:
    answer = _api(
        args,
        "POST",
        _path(args.pool, "blacklist-pairs"),
        json_body={"first": args.first, "second": args.second, "direction": args.direction},
    )
    return [_pair(answer)]


def _pair_remove(args: argparse.Namespace) -> Lines:
    answer = _api(
        args,
        "DELETE",
        _path(args.pool, "blacklist-pairs"),
        params={"first": args.first, "second": args.second, "direction": args.direction},
    )
    remaining = answer.get("remaining")
    return [{"ok": True, "remaining": _pair(remaining) if isinstance(remaining, dict) else None}]


def _pairs_list(args: argparse.Namespace) -> Lines:
    answer = _api(args, "GET", _path(args.pool, "blacklist-pairs"))
    return [_pair(pair) for pair in answer.get("pairs", []) if isinstance(pair, dict)]


def _add_blacklist(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="blacklist",
        help_text="pool-wide blacklists (AXN, AXN_EXT pools) and point-to-point blocks",
        json_errors=True,
    )
    for name, run, text in (
        ("add", _blacklist_add, "refuse NUMBER's calls to every X of the pool (idempotent)"),
        ("remove", _blacklist_remove, 'lift NUMBER\'s pool-wide block; prints {"ok": true}'),
    ):
        parser = _control_parser(group, name, help_text=text)
        parser.add_argument("pool", metavar="POOL", help="pool key")
        parser.add_argument("number", metavar="NUMBER")
        parser.set_defaults(handler=_control(run))
    listing = _control_parser(group, "list", help_text="print the pool-wide blacklist")
    listing.add_argument("pool", metavar="POOL", help="pool key")
    listing.set_defaults(handler=_control(_blacklist_list))

    for name, run, text in (
        (
            "pair-add",
            _pair_add,
            "block calls between FIRST and SECOND through the pool's X numbers (merged into "
            "the pair's entry; idempotent); prints the pair",
        ),
        (
            "pair-remove",
            _pair_remove,
            "lift direction(s) of a pair; prints what is left of it (remaining: null when gone)",
        ),
    ):
        parser = _control_parser(group, name, help_text=text)
        parser.add_argument("pool", metavar="POOL", help="pool key")
        parser.add_argument("first", metavar="FIRST")
        parser.add_argument("second", metavar="SECOND")
        parser.add_argument(
            "--direction",
            type=str.upper,
            choices=_DIRECTIONS,
            default="BOTH",
            help="BOTH (default), FIRST_TO_SECOND or SECOND_TO_FIRST",
        )
        parser.set_defaults(handler=_control(run))
    pairs = _control_parser(group, "pairs", help_text="print the pool's point-to-point blocks")
    pairs.add_argument("pool", metavar="POOL", help="pool key")
    pairs.set_defaults(handler=_control(_pairs_list))


#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (_add_groups, _add_blacklist)
