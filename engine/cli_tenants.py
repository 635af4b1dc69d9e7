"""``maskline`` control commands of the tenants area (registered by ``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage).

- ``tenant create NAME`` → ``{"tenant_id", "name", "access_key_id", "access_key_secret"}`` (a
  public contract: scripts read the secret from it; it is shown this once)
- ``tenant list`` → one tenant per line; ``tenant show ID`` → the tenant (keys without secrets)
- ``tenant key-create ID`` → ``{"tenant_id", "access_key_id", "access_key_secret"}``
- ``tenant key-disable AK`` / ``tenant key-enable AK`` → ``{"access_key_id", "status"}``
- ``tenant suspend ID`` / ``tenant resume ID`` → ``{"tenant_id", "status"}``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from engine.cli import _add_group, _api, _control, _control_parser

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]


def _segment(value: str) -> str:
    """``value`` as one URL path segment (an id typed by hand may hold anything)."""
    return quote(value, safe="")


def _create(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(args, "POST", "/v1/tenants", json_body={"name": args.name})
    return [
        {
            "tenant_id": answer["tenant_id"],
            "name": answer["name"],
            "access_key_id": answer["access_key_id"],
            "access_key_secret": answer["access_key_secret"],
        }
    ]


def _list(args: argparse.Namespace) -> list[dict[str, Any]]:
    tenants = _api(args, "GET", "/v1/tenants").get("tenants", [])
    return [tenant for tenant in tenants if isinstance(tenant, dict)]


def _show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/tenants/{_segment(args.tenant_id)}")]


def _key_create(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(args, "POST", f"/v1/tenants/{_segment(args.tenant_id)}/keys")
    return [
        {
            "tenant_id": args.tenant_id,
            "access_key_id": answer["access_key_id"],
            "access_key_secret": answer["access_key_secret"],
        }
    ]


def _key_action(action: str) -> Callable[[argparse.Namespace], list[dict[str, Any]]]:
    def run(args: argparse.Namespace) -> list[dict[str, Any]]:
        return [_api(args, "POST", f"/v1/keys/{_segment(args.access_key_id)}/{action}")]

    return run


def _tenant_action(action: str) -> Callable[[argparse.Namespace], list[dict[str, Any]]]:
    def run(args: argparse.Namespace) -> list[dict[str, Any]]:
        return [_api(args, "POST", f"/v1/tenants/{_segment(args.tenant_id)}/{action}")]

    return run


def _add_tenant(commands: Commands) -> None:
    group = _add_group(
        commands, name="tenant", help_text="tenants and their access keys", json_errors=True
    )
    create = _control_parser(
        group,
        "create",
        help_text="create a tenant and its first access key pair; prints "
        '{"tenant_id", "name", "access_key_id", "access_key_secret"} (the secret only this once)',
    )
    create.add_argument("name", metavar="NAME", help="1-128 characters")
    create.set_defaults(handler=_control(_create))

    listing = _control_parser(group, "list", help_text="print every tenant as a JSON line")
    listing.set_defaults(handler=_control(_list))

    show = _control_parser(group, "show", help_text="print a tenant and its keys (no secrets)")
    show.add_argument("tenant_id", metavar="ID")
    show.set_defaults(handler=_control(_show))

    key_create = _control_parser(
        group,
        "key-create",
        help_text="create another access key pair for a tenant; prints "
        '{"tenant_id", "access_key_id", "access_key_secret"} (the secret only this once)',
    )
    key_create.add_argument("tenant_id", metavar="ID")
    key_create.set_defaults(handler=_control(_key_create))

    for name, action, help_text in (
        ("key-disable", "disable", "disable an access key"),
        ("key-enable", "enable", "enable a disabled access key"),
    ):
        parser = _control_parser(
            group, name, help_text=f'{help_text}; prints {{"access_key_id", "status"}}'
        )
        parser.add_argument("access_key_id", metavar="AK")
        parser.set_defaults(handler=_control(_key_action(action)))

    for name, help_text in (
        ("suspend", "suspend a tenant (its keys authenticate nothing)"),
        ("resume", "resume a suspended tenant"),
    ):
        parser = _control_parser(
            group, name, help_text=f'{help_text}; prints {{"tenant_id", "status"}}'
        )
        parser.add_argument("tenant_id", metavar="ID")
        parser.set_defaults(handler=_control(_tenant_action(name)))


#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (_add_tenant,)
