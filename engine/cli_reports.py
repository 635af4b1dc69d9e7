"""``maskline reports ...``: push URLs and queues of the reports (registered by
``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): one JSON object per
line on stdout, errors as ``{"code", "message"}`` with exit code 1 (or 2 for usage). The
commands talk to the running server's REST API with the operator token.

- ``reports url-set --tenant ID --type TYPE URL`` → the URL as stored
  (TYPE: start, ring, pickup, end, recording, sms_intercept, pool_warning or default)
- ``reports url-list --tenant ID`` → one URL per line
- ``reports url-remove --tenant ID --type TYPE`` → ``{"ok": true}``
- ``reports queue --tenant ID`` → the tenant's undelivered reports by type, latest push error
- ``reports pull [--tenant ID] [--max N] [--visibility-timeout S]`` → one leased report per line
- ``reports ack [--tenant ID] REPORT_ID...`` → ``{"acked": [...]}``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from engine.cli import _add_group, _api, _control, _control_parser, _positive_int
from store.outbox import PUSH_URL_TYPES

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]


def _segment(value: str) -> str:
    """``value`` as one URL path segment (an id typed by hand may hold anything)."""
    return quote(value, safe="")


def _urls_path(args: argparse.Namespace) -> str:
    return f"/v1/tenants/{_segment(args.tenant)}/report-urls"


def _url_set(args: argparse.Namespace) -> list[dict[str, Any]]:
    path = f"{_urls_path(args)}/{_segment(args.type)}"
    return [_api(args, "PUT", path, json_body={"url": args.url})]


def _url_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    urls = _api(args, "GET", _urls_path(args)).get("urls", [])
    return [url for url in urls if isinstance(url, dict)]


def _url_remove(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "DELETE", f"{_urls_path(args)}/{_segment(args.type)}")]


def _queue(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/tenants/{_segment(args.tenant)}/report-queue")]


def _pull(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"max": args.max, "visibility_timeout_s": args.visibility_timeout}
    if args.tenant is not None:
        body["tenant_id"] = args.tenant
    reports = _api(args, "POST", "/v1/reports/pull", json_body=body).get("reports", [])
    return [report for report in reports if isinstance(report, dict)]


def _ack(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"ids": list(args.ids)}
    if args.tenant is not None:
        body["tenant_id"] = args.tenant
    return [_api(args, "POST", "/v1/reports/ack", json_body=body)]


def _with_tenant(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--tenant",
        required=required,
        metavar="ID",
        default=None,
        help=None if required else "whose queue (default: the operator's own pools)",
    )


def _with_type(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--type", required=True, choices=PUSH_URL_TYPES, metavar="TYPE")


def _add_reports(commands: Commands) -> None:
    group = _add_group(
        commands, name="reports", help_text="call reports: push URLs and queues", json_errors=True
    )
    url_set = _control_parser(
        group,
        "url-set",
        help_text="set the URL a tenant's reports of one type are POSTed to (JSON arrays); "
        f"TYPE: {', '.join(PUSH_URL_TYPES)}",
    )
    _with_tenant(url_set, required=True)
    _with_type(url_set)
    url_set.add_argument("url", metavar="URL", help="http:// or https://")
    url_set.set_defaults(handler=_control(_url_set))

    url_list = _control_parser(group, "url-list", help_text="print a tenant's push URLs")
    _with_tenant(url_list, required=True)
    url_list.set_defaults(handler=_control(_url_list))

    url_remove = _control_parser(
        group,
        "url-remove",
        help_text='remove a push URL (that type then waits for pull); prints {"ok": true}',
    )
    _with_tenant(url_remove, required=True)
    _with_type(url_remove)
    url_remove.set_defaults(handler=_control(_url_remove))

    queue = _control_parser(
        group, "queue", help_text="print a tenant's undelivered reports by type, last push error"
    )
    _with_tenant(queue, required=True)
    queue.set_defaults(handler=_control(_queue))

    pull = _control_parser(
        group,
        "pull",
        help_text="lease reports of the types without a push URL; prints one per line",
    )
    _with_tenant(pull, required=False)
    pull.add_argument("--max", type=_positive_int, default=100, metavar="N")
    pull.add_argument(
        "--visibility-timeout",
        type=_positive_int,
        default=60,
        metavar="S",
        help="seconds before unacknowledged reports come back (default 60)",
    )
    pull.set_defaults(handler=_control(_pull))

    ack = _control_parser(
        group, "ack", help_text='acknowledge pulled reports; prints {"acked": [...]}'
    )
    _with_tenant(ack, required=False)
    ack.add_argument("ids", nargs="+", metavar="REPORT_ID")
    ack.set_defaults(handler=_control(_ack))


#: One registration function per top-level command or group of this area.
COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (_add_reports,)
