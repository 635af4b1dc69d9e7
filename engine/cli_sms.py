"""``maskline sms ...``: pool SMS settings and held messages (registered by
``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage). The
commands talk to the running server's REST API with the operator token.

- ``sms pool-show --pool KEY`` → the pool's SMS mode, keywords, confirm flag
- ``sms pool-set --pool KEY [--mode MODE] [--keywords K1,K2 | --no-keywords]
  [--confirm | --no-confirm]`` → the settings after the change
- ``sms list [--pool KEY] [--state STATE] [--limit N]`` → one message per line, newest first
- ``sms show ID`` → one message (its text while retention keeps it)
- ``sms confirm ID`` → the message, now being sent
- ``sms discard ID`` → the message, discarded
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

_MODES: Final = ("off", "intercept", "full_intercept", "smart")
_STATES: Final = (
    "intercepted", "unsubscribe", "pending", "sending", "delivered", "failed", "discarded",
)  # fmt: skip


def _segment(value: str) -> str:
    """``value`` as one URL path segment (an id typed by hand may hold anything)."""
    return quote(value, safe="")


def _pool_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/pools/{_segment(args.pool)}/sms")]


def _pool_set(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {}
    if args.mode is not None:
        body["sms_mode"] = args.mode
    if args.no_keywords:
        body["keywords"] = []
    elif args.keywords is not None:
        body["keywords"] = [k for k in args.keywords.split(",") if k.strip()]
    if args.confirm is not None:
        body["confirm"] = args.confirm
    return [_api(args, "PUT", f"/v1/pools/{_segment(args.pool)}/sms", json_body=body)]


def _list(args: argparse.Namespace) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": args.limit}
    if args.pool is not None:
        params["pool_key"] = args.pool
    if args.state is not None:
        params["state"] = args.state
    found = _api(args, "GET", "/v1/sms", params=params).get("messages", [])
    return [message for message in found if isinstance(message, dict)]


def _show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/sms/{_segment(args.id)}")]


def _confirm(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "POST", f"/v1/sms/{_segment(args.id)}/confirm")]


def _discard(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "POST", f"/v1/sms/{_segment(args.id)}/discard")]


def _add_sms(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="sms",
        help_text="SMS through X: pool settings, stored and held messages",
        json_errors=True,
    )
    show_pool = _control_parser(group, "pool-show", help_text="print a pool's SMS settings")
    show_pool.add_argument("--pool", required=True, metavar="KEY")
    show_pool.set_defaults(handler=_control(_pool_show))

    set_pool = _control_parser(
        group,
        "pool-set",
        help_text="change a pool's SMS mode, keyword whitelist or confirm-before-send",
    )
    set_pool.add_argument("--pool", required=True, metavar="KEY")
    set_pool.add_argument("--mode", default=None, type=str.lower, choices=_MODES)
    keywords = set_pool.add_mutually_exclusive_group()
    keywords.add_argument(
        "--keywords",
        default=None,
        metavar="K1,K2",
        help="whitelist (comma-separated): in an intercept mode a message containing one is"
        " delivered as a smart SMS; replaces the list",
    )
    keywords.add_argument("--no-keywords", action="store_true", help="empty the whitelist")
    confirm = set_pool.add_mutually_exclusive_group()
    confirm.add_argument(
        "--confirm",
        dest="confirm",
        action="store_const",
        const=True,
        default=None,
        help="hold smart SMS until confirmed (sms confirm ID) or expired",
    )
    confirm.add_argument("--no-confirm", dest="confirm", action="store_const", const=False)
    set_pool.set_defaults(handler=_control(_pool_set))

    listing = _control_parser(
        group, "list", help_text="print stored messages, newest first, one per line"
    )
    listing.add_argument("--pool", default=None, metavar="KEY")
    listing.add_argument("--state", default=None, choices=_STATES)
    listing.add_argument("--limit", type=_positive_int, default=100, metavar="N")
    listing.set_defaults(handler=_control(_list))

    for name, run, text in (
        ("show", _show, "print one message (its text while retention keeps it)"),
        ("confirm", _confirm, "send a message held for confirmation now"),
        ("discard", _discard, "drop a message held for confirmation (reported)"),
    ):
        command = _control_parser(group, name, help_text=text)
        command.add_argument("id", metavar="ID")
        command.set_defaults(handler=_control(run))


#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (_add_sms,)
