"""``maskline`` commands of statistics, export and finding a call's files (registered by
``engine.cli.build_parser``).

Same output contract as the other control commands (see ``engine.cli``): JSON on stdout, errors
as ``{"code", "message"}`` with exit code 1 (or 2 for usage). They ask the running server
(``/v1/stats/...``, ``/v1/pools/{key}/export``, ``/v1/calls/{id}/files``; see
``api.routes_stats``), except ``calls find --cdr``, which reads the daily CDR files alone.

- ``stats full --month 2026-12 [--tenant T] [--details]`` → the month's full statistics, one
  object (rows by number type, pool and billing item; ``details``: the ledger lines of each row)
- ``stats classified --from 2026-12-01 --to 2026-12-31 [--type AXB] [--pool P] [--tenant T]`` →
  one object (a row per pool and the total)
- ``stats packages [--tenant T] [--month 2026-12]`` → prepaid minute packages with their use in
  the month (default: the current one) and the remaining usable quota, one object
- ``export --month 2026-12 --out DIR [--pool P] [--tenant T]`` → writes ``<pool key><YYYYMM>.csv``
  per pool (UTF-8 with BOM) into DIR atomically; one line per file
  ``{"pool_key", "file", "calls"}``. Without ``--pool``: every pool the key sees that existed
  in the month.
- ``calls find --call-id ID [--cdr]`` → ``{"call": {...}, "recording_path", "recording_kept",
  "recording_exists", "cdr_file"}``: the call record and where its recording is. With ``--cdr``
  the record is looked up in the CDR files of ``[cdr] dir`` (newest first) without a server, and
  the recording is the file the CDR row names, relative to that directory.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from config import ConfigError
from engine.cli import (
    _HTTP_TIMEOUT_S,
    EXIT_USAGE,
    _add_group,
    _api,
    _base_url,
    _CliError,
    _control,
    _control_parser,
    _load,
    display_number,
)

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS", "find_in_cdr_files"]

_BIND_TYPES: Final = ("AXB", "AXN", "AXN_EXT", "95AXN", "AXG")
_NUMBER_FIELDS: Final = frozenset(
    {"number", "secret_no", "phone_no", "peer_no", "called_display_no"}
)
_INT_FIELDS: Final = frozenset({"call_type", "release_dir", "release_cause", "unconnected_cause"})

Run = Callable[[argparse.Namespace], list[dict[str, Any]]]


def _segment(value: str) -> str:
    return quote(value, safe="")


def _shown(value: Any) -> Any:
    """``value`` with every phone-number field, at any depth, in national display form."""
    if isinstance(value, dict):
        return {
            key: display_number(item) if key in _NUMBER_FIELDS else _shown(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


# ------------------------------------------------------------------------------ stats


def _stats_full(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = _params(month=args.month, tenant_id=args.tenant, details=args.details or None)
    return [_shown(_api(args, "GET", "/v1/stats/full", params=params))]


def _stats_classified(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = {
        "from": args.first,
        "to": args.last,
        **_params(type=args.type, pool_key=args.pool, tenant_id=args.tenant),
    }
    return [_api(args, "GET", "/v1/stats/classified", params=params)]


def _stats_packages(args: argparse.Namespace) -> list[dict[str, Any]]:
    params = _params(tenant_id=args.tenant, month=args.month)
    return [_api(args, "GET", "/v1/stats/packages", params=params)]


def _add_stats(commands: Commands) -> None:
    group = _add_group(
        commands, name="stats", help_text="billing statistics (SPEC §7)", json_errors=True
    )
    full = _control_parser(
        group,
        "full",
        help_text="full statistics of a month: count and amount per number type, pool, item",
    )
    full.add_argument("--month", required=True, metavar="YYYY-MM")
    full.add_argument("--tenant", default=None, metavar="ID", help="one tenant (default: all)")
    full.add_argument(
        "--details", action="store_true", help="include the ledger lines behind each row"
    )
    full.set_defaults(handler=_control(_stats_full))
    classified = _control_parser(
        group,
        "classified",
        help_text="classified statistics of a day range per pool: calls, answered, talk time, fees",
    )
    classified.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    classified.add_argument(
        "--to", dest="last", required=True, metavar="YYYY-MM-DD", help="included"
    )
    classified.add_argument("--type", default=None, type=str.upper, choices=_BIND_TYPES)
    classified.add_argument("--pool", default=None, metavar="KEY")
    classified.add_argument("--tenant", default=None, metavar="ID")
    classified.set_defaults(handler=_control(_stats_classified))
    packages = _control_parser(
        group,
        "packages",
        help_text="prepaid minute packages: records, minutes used in a month, remaining quota",
    )
    packages.add_argument("--tenant", default=None, metavar="ID", help="one tenant (default: all)")
    packages.add_argument(
        "--month", default=None, metavar="YYYY-MM", help="default: the current month"
    )
    packages.set_defaults(handler=_control(_stats_packages))


# ------------------------------------------------------------------------------ export


def _download(args: argparse.Namespace, path: str, params: dict[str, Any]) -> tuple[bytes, int]:
    """A file from the running server: (its bytes, the ``x-maskline-calls`` count)."""
    try:
        settings = _load(args.config)
    except ConfigError as err:
        raise _CliError("CONFIG_ILLEGAL", str(err), EXIT_USAGE) from None
    import httpx  # noqa: PLC0415  (only control commands need it)

    base = _base_url(settings)
    headers = {"accept": "text/csv, application/json"}
    if settings.api.operator_token:
        headers["authorization"] = f"Bearer {settings.api.operator_token}"
    try:
        with httpx.Client(base_url=base, timeout=_HTTP_TIMEOUT_S, headers=headers) as client:
            response = client.get(path, params=params)
    except httpx.TransportError as err:
        raise _CliError(
            "SERVER_UNREACHABLE",
            f"cannot reach the maskline API at {base} ({type(err).__name__}); "
            f"is maskline serve running on {base.removeprefix('http://')}?",
        ) from None
    if response.is_error:
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        raise _CliError(
            str(answer.get("code") or f"HTTP_{response.status_code}"),
            str(answer.get("message") or response.reason_phrase),
        )
    calls = response.headers.get("x-maskline-calls", "")
    return response.content, int(calls) if calls.isdigit() else 0


def _export(args: argparse.Namespace) -> list[dict[str, Any]]:
    # Imported here: the file writer and month rules pull in the store modules.
    from billing.export import write_atomically  # noqa: PLC0415
    from billing.statistics import StatisticsInputError, parse_month  # noqa: PLC0415

    try:
        month = parse_month(args.month)
    except StatisticsInputError as error:
        raise _CliError("USAGE", str(error), EXIT_USAGE) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _CliError("FILE_UNWRITABLE", f"{out} is not a directory", EXIT_USAGE)
    if args.pool is not None:
        pools = [_api(args, "GET", f"/v1/pools/{_segment(args.pool)}")]
    else:
        pools = list(_api(args, "GET", "/v1/pools")["pools"])
        # Pools created after the month have no calls in it (``created`` is local time).
        month_end = f"{month.next().first_day.isoformat()} 00:00:00"
        pools = [pool for pool in pools if str(pool["created"]) < month_end]
    if args.tenant is not None:
        pools = [pool for pool in pools if pool.get("tenant_id") == args.tenant]
    written: list[dict[str, Any]] = []
    for pool in pools:
        key = str(pool["pool_key"])
        data, calls = _download(args, f"/v1/pools/{_segment(key)}/export", {"month": month.label})
        name = f"{key}{month.period}.csv"
        try:
            path = write_atomically(out, name, data)
        except OSError as err:
            raise _CliError(
                "FILE_UNWRITABLE", f"cannot write {out / name}: {err.strerror}"
            ) from None
        written.append({"pool_key": key, "file": str(path), "calls": calls})
    return written


def _add_export(commands: Commands) -> None:
    parser = _control_parser(
        commands,
        "export",
        help_text="write the month's call records as one CSV per pool (<pool key><YYYYMM>.csv)",
        description="Write one CSV per pool for the month into DIR: UTF-8 with BOM, one row per "
        "call record (SPEC §6 fields in local time, answered seconds, billed minutes, fee). "
        'Prints {"pool_key", "file", "calls"} per file. Existing files of the same name are '
        "replaced atomically.",
    )
    parser.add_argument("--month", required=True, metavar="YYYY-MM")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--pool", default=None, metavar="KEY", help="this pool only")
    parser.add_argument("--tenant", default=None, metavar="ID", help="this tenant's pools only")
    parser.set_defaults(handler=_control(_export))


# ------------------------------------------------------------------------------ calls find


def _cdr_files(directory: Path) -> list[Path]:
    """The daily CDR files, newest first (their names sort by date)."""
    try:
        return sorted(directory.glob("cdr-*.csv"), reverse=True)
    except OSError:
        return []


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from csv.DictReader(handle)


def find_in_cdr_files(directory: Path, call_id: str) -> tuple[Path, dict[str, str]] | None:
    """The CDR file and row of ``call_id`` (or of the record id ``call_id``), newest file first."""
    for path in _cdr_files(directory):
        for row in _rows(path):
            if call_id in (row.get("call_id"), row.get("id")):
                return path, row
    return None


def _from_cdr(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        settings = _load(args.config)
    except ConfigError as err:
        raise _CliError("CONFIG_ILLEGAL", str(err), EXIT_USAGE) from None
    directory = settings.cdr.dir
    try:
        found = find_in_cdr_files(directory, args.call_id)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise _CliError(
            "FILE_UNREADABLE", f"cannot read the CDR files in {directory}: {err}"
        ) from None
    if found is None:
        raise _CliError(
            "CALL_NOT_EXIST", f"no call {args.call_id!r} in the CDR files of {directory}"
        )
    path, row = found
    recording = row.pop("recording_file", "") or None
    recording_path = None if recording is None else os.path.abspath(directory / recording)
    call: dict[str, Any] = {
        key: int(value) if key in _INT_FIELDS and value.isdigit() else (value or None)
        for key, value in row.items()
    }
    return [
        {
            "call": _shown(call),
            "recording_path": recording_path,
            "recording_kept": None,
            "recording_exists": None if recording_path is None else Path(recording_path).is_file(),
            "cdr_file": os.path.abspath(path),
        }
    ]


def _calls_find(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.cdr:
        return _from_cdr(args)
    answer = _api(args, "GET", f"/v1/calls/{_segment(args.call_id)}/files")
    try:
        cdr_dir = _load(args.config).cdr.dir
    except ConfigError as err:  # pragma: no cover - _api loaded the same settings already
        raise _CliError("CONFIG_ILLEGAL", str(err), EXIT_USAGE) from None
    recording = answer.get("recording")
    call = dict(answer.get("call") or {})
    call["duration_s"] = answer.get("duration_s")
    return [
        {
            "call": _shown(call),
            "recording_path": None if recording is None else recording["path"],
            "recording_kept": None if recording is None else recording["kept"],
            "recording_exists": None if recording is None else recording["exists"],
            "cdr_file": os.path.abspath(cdr_dir / str(answer["cdr_file"])),
        }
    ]


def _subcommands_of(commands: Commands, name: str) -> Commands:
    """The sub-command set of the existing group ``name`` (``calls`` is ``engine.cli``'s)."""
    parser = commands.choices.get(name)
    if parser is not None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                group: Commands = action
                return group
    return _add_group(commands, name=name, help_text="call records", json_errors=True)


def _add_calls_find(commands: Commands) -> None:
    parser = _control_parser(
        _subcommands_of(commands, "calls"),
        "find",
        help_text="print a call's record and the local path of its recording",
        description="Print the call record of ID (maskline's call id, as in the CDR files and "
        "reports), the path of its recording and the daily CDR file holding it. --cdr: look the "
        "call up in the CDR files of [cdr] dir, without the server.",
    )
    parser.add_argument("--call-id", required=True, metavar="ID")
    parser.add_argument(
        "--cdr", action="store_true", help="search the CDR files instead of asking the server"
    )
    parser.set_defaults(handler=_control(_calls_find))


COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_stats,
    _add_export,
    _add_calls_find,
)
