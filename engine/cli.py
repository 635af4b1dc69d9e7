"""The ``maskline`` command line.

Layout of the parser, made for many subcommands::

    maskline [--config FILE] COMMAND [args]        e.g. maskline serve
    maskline [--config FILE] GROUP COMMAND [args]  e.g. maskline numbers import FILE (later)

Each command is one ``_add_<name>(commands)`` function that builds its sub-parser and sets
``handler`` (``(args) -> exit code``); it is listed in ``_COMMANDS``. Commands that read the
settings accept ``--config`` after their own name as well (``maskline serve --config F``), via
``_add_config_option``. A group of commands (``numbers``, ``pool``, ``bind``) is a sub-parser made
by ``_add_group`` whose own sub-commands are registered the same way.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

Control commands (``numbers``, ``pool``, ``bind``, ``group``, ``unbind``, ``binding``, ``calls``)
talk to the running ``maskline serve`` over its HTTP API (``[api] listen``, bearer
``[api] operator_token``) and print one JSON object per line on stdout: the result, or on failure
``{"code": ..., "message": ...}`` with exit code 1 (refused by the server, or
``SERVER_UNREACHABLE``) or 2 (usage or configuration error, ``USAGE`` / ``CONFIG_ILLEGAL``).
Phone numbers are printed in national digits for Chinese numbers (``13800138000``,
``01012345678``, ``95013...``), as the reference service writes them; numbers abroad in E.164.
Input numbers may be given in any common form (``+86 138 0013 8000``, ``010-12345678``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO, TypeAlias, cast

from config import ConfigError, Settings, load_settings

__all__ = ["build_parser", "main"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
# 128 + SIGINT, as a shell reports a process ended by Ctrl-C.
EXIT_INTERRUPTED: Final = 130

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    # argparse has no public name for what add_subparsers() returns (and it is not
    # subscriptable at run time, hence only for the type checker).
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose control commands report usage errors as JSON on stdout too."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        """Usage on stderr as usual; for control commands also ``{"code": "USAGE"}`` on stdout."""
        if self.json_errors:
            self.print_usage(sys.stderr)
            _print_json({"code": "USAGE", "message": f"{self.prog}: {message}"})
            raise SystemExit(EXIT_USAGE)
        super().error(message)


def _version() -> str:
    try:
        return metadata.version("maskline")
    except metadata.PackageNotFoundError:  # running from a tree that was never installed
        return "unknown"


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    """Accept ``--config FILE`` after a subcommand too; it wins over the global one."""
    # SUPPRESS: when absent here, the namespace keeps the global option's value.
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="settings file (TOML); same as the global --config",
    )


def _add_group(
    commands: Commands, *, name: str, help_text: str, json_errors: bool = False
) -> Commands:
    """A command group (``maskline NAME COMMAND``); without a command it prints its help."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, json_errors=json_errors
    )

    def _group_help(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(handler=_group_help)
    group: Commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    return group


def _print_json(payload: dict[str, object], *, stream: TextIO | None = None) -> None:
    """One JSON object on one line, to ``stream`` (default: stdout at the time of the call)."""
    print(json.dumps(payload, ensure_ascii=False), file=sys.stdout if stream is None else stream)


def _load(path: str | None) -> Settings:
    """Settings from ``path`` (None: defaults) plus ``MASKLINE_*`` environment overrides."""
    return load_settings(path, env=os.environ)


# --------------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = _load(args.config)
    except ConfigError as err:
        _print_json({"ok": False, "error": str(err)}, stream=sys.stderr)
        return EXIT_USAGE
    # Imported here: logging set-up and the server pull in structlog, uvloop and the rest of the
    # engine, which config-only commands have no use for.
    from engine.logging import configure_logging, get_logger, write_out_logs  # noqa: PLC0415

    log = settings.log
    configure_logging(
        log.level,
        log.format,
        batch_interval_s=log.batch_ms / 1000 if log.batch_ms else None,
    )
    get_logger("engine.cli").info(
        "starting",
        config=str(args.config) if args.config else None,
        sip_listen=str(settings.sip.listen),
        api_listen=str(settings.api.listen),
        version=_version(),
    )
    from api.tenants import MasterKeyError  # noqa: PLC0415
    from engine import server  # noqa: PLC0415

    try:
        return server.run(settings)
    except MasterKeyError as err:  # refuses to start rather than invalidate every tenant key
        write_out_logs()  # the batched lines before the error, in order
        _print_json({"ok": False, "error": str(err)}, stream=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        write_out_logs()


def _add_serve(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the engine (SIP on UDP and TCP, media, HTTP API) until SIGTERM",
        description="Run the engine in the foreground until SIGTERM or Ctrl-C.",
    )
    _add_config_option(parser)
    parser.set_defaults(handler=_serve)


# --------------------------------------------------------------------------- check-config


def _check_config(args: argparse.Namespace) -> int:
    path: str | None = args.file if args.file is not None else args.config
    if path is None:
        _print_json(
            {"ok": False, "error": "no config file given (check-config FILE)"}, stream=sys.stderr
        )
        return EXIT_USAGE
    try:
        _load(path)
    except ConfigError as err:
        _print_json({"ok": False, "error": str(err)}, stream=sys.stderr)
        return EXIT_USAGE
    _print_json({"ok": True})
    return EXIT_OK


def _add_check_config(commands: Commands) -> None:
    parser = commands.add_parser(
        "check-config",
        help="validate a settings file (with MASKLINE_* overrides) and exit",
        description=(
            'Validate FILE as maskline would load it. Prints {"ok": true} and exits 0, or prints '
            '{"ok": false, "error": "<key>: <problem>"} on stderr and exits 2.'
        ),
    )
    parser.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="settings file (default: --config)"
    )
    _add_config_option(parser)
    parser.set_defaults(handler=_check_config)


# --------------------------------------------------------------------------- control commands
# Each talks to the running server's HTTP API; see the module docstring for the output contract.

# Seconds to wait for the server; a bind is acknowledged once durable, well inside this.
_HTTP_TIMEOUT_S: Final = 30.0
_BIND_TYPES: Final = ("AXB", "AXN", "AXN_EXT", "95AXN", "AXG")
_RESTRICTIONS: Final = ("NONE", "CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE")
# Fields holding phone numbers in API answers, printed in national form.
_NUMBER_FIELDS: Final = frozenset(
    {"a", "b", "secret_no", "phone_no", "peer_no", "called_display_no", "number"}
)


class _CliError(Exception):
    """A failure to report as ``{"code", "message"}`` with an exit code."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


def display_number(value: object) -> object:
    """National digits for a Chinese E.164 number, as ``routing.numbers.national`` writes them.

    ``+8613800138000`` → ``13800138000``, ``+861012345678`` → ``01012345678`` (landlines get
    their trunk 0), ``+8695013000001`` → ``95013000001``; other values are returned unchanged.
    Written out here rather than imported: ``routing.numbers`` loads phonenumbers' metadata and
    geocoder (~0.8 s), too slow for every CLI call; a test pins the two together.
    """
    if not isinstance(value, str) or not value.startswith("+86"):
        return value
    nsn = value[3:]
    if not nsn.isascii() or not nsn.isdigit():
        return value
    is_mobile = len(nsn) == 11 and nsn[0] == "1" and nsn[1] in "3456789"
    if is_mobile or nsn.startswith(("950", "400", "800")):
        return nsn
    return "0" + nsn


def _display(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its phone-number fields in display form (one level of nesting)."""
    shown: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _NUMBER_FIELDS:
            shown[key] = display_number(value)
        elif key == "numbers" and isinstance(value, list):
            shown[key] = [display_number(n) for n in value]
        elif isinstance(value, dict):
            shown[key] = _display(value)
        else:
            shown[key] = value
    return shown


def _base_url(settings: Settings) -> str:
    host = settings.api.listen_host
    # A server listening on every address is reached on loopback.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api.listen_port}"


def _api(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    json_body: dict[str, Any] | None = None,
    content: bytes | None = None,
    content_type: str | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One request to the running server; the decoded JSON answer, or ``_CliError``."""
    try:
        settings = _load(args.config)
    except ConfigError as err:
        raise _CliError("CONFIG_ILLEGAL", str(err), EXIT_USAGE) from None
    import httpx  # noqa: PLC0415  (only control commands need it)

    base = _base_url(settings)
    headers = {"accept": "application/json"}
    if settings.api.operator_token:
        headers["authorization"] = f"Bearer {settings.api.operator_token}"
    if content_type is not None:
        headers["content-type"] = content_type
    try:
        with httpx.Client(base_url=base, timeout=_HTTP_TIMEOUT_S, headers=headers) as client:
            response = client.request(method, path, json=json_body, content=content, params=params)
    except httpx.TransportError as err:
        raise _CliError(
            "SERVER_UNREACHABLE",
            f"cannot reach the maskline API at {base} ({type(err).__name__}); "
            f"is maskline serve running on {base.removeprefix('http://')}?",
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise _CliError(
            "BAD_RESPONSE", f"HTTP {response.status_code} from {base}{path} without a JSON object"
        )
    if response.is_error:
        raise _CliError(
            str(answer.get("code") or f"HTTP_{response.status_code}"),
            str(answer.get("message") or response.reason_phrase),
        )
    return answer


def _control(run: Callable[[argparse.Namespace], list[dict[str, Any]]]) -> Handler:
    """A handler printing ``run``'s objects as JSON lines, or the error object."""

    def handler(args: argparse.Namespace) -> int:
        try:
            lines = run(args)
        except _CliError as err:
            _print_json({"code": err.code, "message": err.message})
            return err.exit_code
        for line in lines:
            _print_json(line)
        return EXIT_OK

    return handler


def _control_parser(
    commands: Commands, name: str, *, help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=description or help_text, json_errors=True
    )
    _add_config_option(parser)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# numbers import ------------------------------------------------------------------


def _numbers_import(args: argparse.Namespace) -> list[dict[str, Any]]:
    try:
        data = Path(args.file).read_bytes()
    except OSError as err:
        raise _CliError(
            "FILE_UNREADABLE", f"cannot read {args.file}: {err.strerror}", EXIT_USAGE
        ) from None
    answer = _api(
        args, "POST", "/v1/numbers/import", content=data, content_type="text/csv; charset=utf-8"
    )
    return [{"imported": answer["imported"]}]


def _add_numbers(commands: Commands) -> None:
    group = _add_group(commands, name="numbers", help_text="X number inventory", json_errors=True)
    parser = _control_parser(
        group,
        "import",
        help_text="import X numbers from a CSV file",
        description="Import X numbers from a UTF-8 CSV with the header row "
        'number,city,province,carrier,spec (spec 1 virtual, 2 carrier, 3 95). Prints {"imported": '
        "n}, the count of numbers new to the inventory (known numbers are skipped). One bad row "
        "refuses the whole file.",
    )
    parser.add_argument("file", metavar="FILE.csv")
    parser.set_defaults(handler=_control(_numbers_import))


# pool ----------------------------------------------------------------------------


_ALLOCATION_MODES: Final = ("default", "strict", "smart")
_SMS_MODES: Final = ("off", "intercept", "full_intercept", "smart")


def _pool_create(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"type": args.type, "name": args.name, "tenant_id": args.tenant}
    if args.mode is not None:
        body["allocation_mode"] = args.mode
    answer = _api(args, "POST", "/v1/pools", json_body=body)
    return [{"pool_key": answer["pool_key"]}]


def _pool_add_numbers(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(
        args,
        "POST",
        f"/v1/pools/{args.pool}/numbers",
        json_body={"count": args.count, "city": args.city, "tenant_id": args.tenant},
    )
    return [_display({"numbers": answer["numbers"]})]


def _pool_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    return list(_api(args, "GET", "/v1/pools")["pools"])


def _pool_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_api(args, "GET", f"/v1/pools/{args.pool}")]


def _ringback_codes(pairs: list[str] | None) -> dict[str, str] | None:
    """``["AXBRing_A=tone-1", ...]`` → a dict; None when the option was not given."""
    if pairs is None:
        return None
    codes: dict[str, str] = {}
    for pair in pairs:
        name, sep, tone = pair.partition("=")
        if not sep:
            raise _CliError("USAGE", f"--ringback takes CODE=TONE, got {pair!r}", EXIT_USAGE)
        codes[name.strip()] = tone.strip()
    return codes


def _pool_configure(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "name": args.name,
        "allocation_mode": args.mode,
        "sms_mode": args.sms_mode,
        "recording": args.recording,
        "ringback": _ringback_codes(args.ringback),
        "warn_free_numbers": args.warn_free,
        "warn_utilisation_pct": args.warn_utilisation,
        "clear_warnings": args.clear_warnings,
    }
    changes = {key: value for key, value in body.items() if value not in (None, False)}
    return [_api(args, "PATCH", f"/v1/pools/{args.pool}", json_body=changes)]


def _add_pool(commands: Commands) -> None:
    group = _add_group(commands, name="pool", help_text="number pools", json_errors=True)
    create = _control_parser(group, "create", help_text='create a pool; prints {"pool_key": ...}')
    create.add_argument("--type", required=True, type=str.upper, choices=_BIND_TYPES)
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", default=None, metavar="ID", help="the tenant owning the pool")
    create.add_argument(
        "--mode", default=None, type=str.lower, choices=_ALLOCATION_MODES, help="allocation mode"
    )
    create.set_defaults(handler=_control(_pool_create))
    listing = _control_parser(group, "list", help_text="print every pool as a JSON line")
    listing.set_defaults(handler=_control(_pool_list))
    show = _control_parser(group, "show", help_text="print a pool with its usage")
    show.add_argument("--pool", required=True, metavar="KEY")
    show.set_defaults(handler=_control(_pool_show))
    configure = _control_parser(
        group, "configure", help_text="change a pool's settings; prints the pool"
    )
    configure.add_argument("--pool", required=True, metavar="KEY")
    configure.add_argument("--name", default=None)
    configure.add_argument("--mode", default=None, type=str.lower, choices=_ALLOCATION_MODES)
    configure.add_argument("--sms-mode", default=None, type=str.lower, choices=_SMS_MODES)
    configure.add_argument(
        "--recording",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="default of a binding's record flag",
    )
    configure.add_argument(
        "--ringback",
        action="append",
        default=None,
        metavar="CODE=TONE",
        help="ringback code (AXBRing_A ...) and tone id; repeat; replaces the pool's map",
    )
    configure.add_argument("--warn-free", type=int, default=None, metavar="N")
    configure.add_argument("--warn-utilisation", type=float, default=None, metavar="PCT")
    configure.add_argument("--clear-warnings", action="store_true")
    configure.set_defaults(handler=_control(_pool_configure))
    add = _control_parser(
        group,
        "add-numbers",
        help_text='buy random free numbers into a pool; prints {"numbers": [...]}',
    )
    add.add_argument("--pool", required=True, metavar="KEY")
    add.add_argument("--count", required=True, type=_positive_int, metavar="N")
    add.add_argument("--city", default=None)
    add.add_argument(
        "--tenant", default=None, metavar="ID", help="refuse unless the pool is this tenant's"
    )
    add.set_defaults(handler=_control(_pool_add_numbers))


# bind ----------------------------------------------------------------------------


def _bind(kind: str) -> Callable[[argparse.Namespace], list[dict[str, Any]]]:
    def run(args: argparse.Namespace) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "type": kind,
            "a": args.a,
            "b": args.b,
            "x": args.x,
            "expires": args.expires,
            "record": args.record,
            "restriction": args.restriction,
            "ring_timeout_s": args.ring_timeout,
            "out_id": args.out_id,
            "expect_city": args.city,
        }
        if kind == "AXG":
            body["group_id"] = args.group
        if kind == "AXN_EXT":
            body["extension"] = args.extension
        answer = _api(args, "POST", f"/v1/pools/{args.pool}/bindings", json_body=body)
        result: dict[str, Any] = {"sub_id": answer["sub_id"], "secret_no": answer["secret_no"]}
        if kind == "AXN_EXT":
            result["extension"] = answer.get("extension")
        return [_display(result)]

    return run


def _add_bind(commands: Commands) -> None:
    group = _add_group(
        commands,
        name="bind",
        help_text='bind real numbers to an X; prints {"sub_id": ..., "secret_no": X}',
        json_errors=True,
    )
    variants = (
        ("axb", "AXB", "A and B call each other through X"),
        ("axn", "AXN", "anyone calling X rings A; A calling X rings the default B"),
        ("axn-ext", "AXN_EXT", "callers key an extension after dialling X to reach A"),
        ("95axn", "95AXN", "AXN on a 95 (nationwide) number"),
        ("axg", "AXG", "members of a number group calling X ring A"),
    )
    for name, kind, text in variants:
        parser = _control_parser(
            group,
            name,
            help_text=f"{kind}: {text}",
            description=f"{kind} binding: {text}. Without --x an X is allocated from the pool "
            "(A's home city first, least loaded first). --expires is local time in the "
            "configured [time] zone, more than 60 s ahead.",
        )
        parser.add_argument("--pool", required=True, metavar="KEY")
        parser.add_argument("--a", required=True, metavar="A", help="A's real number")
        parser.add_argument(
            "--b",
            required=kind == "AXB",
            default=None,
            metavar="B",
            help="B's real number" if kind == "AXB" else "default B (what A reaches via X)",
        )
        parser.add_argument("--x", default=None, metavar="X", help="use this X of the pool")
        parser.add_argument(
            "--expires", required=True, metavar='"YYYY-MM-DD HH:MM:SS"', help="local time"
        )
        parser.add_argument(
            "--record",
            default=None,
            action=argparse.BooleanOptionalAction,
            help="record the calls (default: the pool's setting)",
        )
        parser.add_argument("--restriction", type=str.upper, choices=_RESTRICTIONS, default="NONE")
        parser.add_argument(
            "--ring-timeout", type=int, default=None, metavar="S", help="5..180 s (default 60)"
        )
        parser.add_argument("--out-id", default=None, help="echoed in every call record")
        parser.add_argument("--city", default=None, help="wanted city of an allocated X")
        if kind == "AXG":
            parser.add_argument("--group", required=True, metavar="GID")
        if kind == "AXN_EXT":
            parser.add_argument(
                "--extension",
                default=None,
                metavar="DIGITS",
                help="1-3 digits (default: the next free one)",
            )
        parser.set_defaults(handler=_control(_bind(kind)))


# group, unbind, binding show, calls tail ---------------------------------------------


def _group_create(args: argparse.Namespace) -> list[dict[str, Any]]:
    numbers = [n.strip() for n in args.numbers.split(",") if n.strip()]
    answer = _api(
        args,
        "POST",
        f"/v1/pools/{args.pool}/groups",
        json_body={"name": args.name, "numbers": numbers},
    )
    return [{"group_id": answer["group_id"]}]


def _add_group_commands(commands: Commands) -> None:
    group = _add_group(commands, name="group", help_text="AXG number groups", json_errors=True)
    create = _control_parser(
        group, "create", help_text='create a number group; prints {"group_id": ...}'
    )
    create.add_argument("--pool", required=True, metavar="KEY")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--numbers", required=True, metavar="N1,N2", help="comma-separated, up to 200"
    )
    create.set_defaults(handler=_control(_group_create))


def _unbind(args: argparse.Namespace) -> list[dict[str, Any]]:
    _api(args, "DELETE", f"/v1/pools/{args.pool}/bindings/{args.sub_id}")
    return [{"ok": True}]


def _add_unbind(commands: Commands) -> None:
    parser = _control_parser(commands, "unbind", help_text='unbind; prints {"ok": true}')
    parser.add_argument("--pool", required=True, metavar="KEY")
    parser.add_argument("--sub-id", required=True, metavar="ID")
    parser.set_defaults(handler=_control(_unbind))


def _binding_show(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [_display(_api(args, "GET", f"/v1/pools/{args.pool}/bindings/{args.sub_id}"))]


def _binding_update(args: argparse.Namespace) -> list[dict[str, Any]]:
    body: dict[str, Any] = {
        "a": args.a,
        "b": args.b,
        "expires": args.expires,
        "group_id": args.group,
        "restriction": args.restriction,
        "out_id": args.out_id,
        "record": args.record,
        "ring_timeout_s": args.ring_timeout,
        "ringback": _ringback_codes(args.ringback),
    }
    changes = {key: value for key, value in body.items() if value is not None}
    if not changes:
        raise _CliError("USAGE", "nothing to change: give at least one option", EXIT_USAGE)
    path = f"/v1/pools/{args.pool}/bindings/{args.sub_id}"
    return [_display(_api(args, "PATCH", path, json_body=changes))]


def _binding_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.pool is None:
        if args.number is None:
            raise _CliError("USAGE", "without --pool, give --number", EXIT_USAGE)
        answer = _api(args, "GET", "/v1/bindings", params={"number": args.number})
    else:
        params = {"x": args.x} if args.x is not None else {"number": args.number}
        answer = _api(args, "GET", f"/v1/pools/{args.pool}/bindings", params=params)
    return [_display(binding) for binding in answer["bindings"]]


def _add_binding(commands: Commands) -> None:
    group = _add_group(commands, name="binding", help_text="query bindings", json_errors=True)
    show = _control_parser(group, "show", help_text="print a binding as JSON")
    show.add_argument("--pool", required=True, metavar="KEY")
    show.add_argument("--sub-id", required=True, metavar="ID")
    show.set_defaults(handler=_control(_binding_show))
    update = _control_parser(
        group, "update", help_text="change a binding's fields; prints the binding"
    )
    update.add_argument("--pool", required=True, metavar="KEY")
    update.add_argument("--sub-id", required=True, metavar="ID")
    update.add_argument("--a", default=None, metavar="A")
    update.add_argument("--b", default=None, metavar="B", help='"" clears a default B')
    update.add_argument("--expires", default=None, metavar='"YYYY-MM-DD HH:MM:SS"')
    update.add_argument("--group", default=None, metavar="GID")
    update.add_argument("--restriction", type=str.upper, choices=_RESTRICTIONS, default=None)
    update.add_argument("--out-id", default=None)
    update.add_argument("--record", default=None, action=argparse.BooleanOptionalAction)
    update.add_argument("--ring-timeout", type=int, default=None, metavar="S")
    update.add_argument("--ringback", action="append", default=None, metavar="CODE=TONE")
    update.set_defaults(handler=_control(_binding_update))
    listing = _control_parser(
        group,
        "list",
        help_text="print the bindings on an X (--pool --x) or of a real number (--number)",
    )
    listing.add_argument("--pool", default=None, metavar="KEY")
    which = listing.add_mutually_exclusive_group(required=True)
    which.add_argument("--x", default=None, metavar="X")
    which.add_argument("--number", default=None, metavar="N", help="a real number, A or B")
    listing.set_defaults(handler=_control(_binding_list))


def _calls_tail(args: argparse.Namespace) -> list[dict[str, Any]]:
    answer = _api(args, "GET", "/v1/calls", params={"limit": args.limit})
    calls = answer.get("calls", [])
    # Newest last, as tail(1) shows a growing file.
    return [_display(call) for call in reversed(calls) if isinstance(call, dict)]


def _add_calls(commands: Commands) -> None:
    group = _add_group(commands, name="calls", help_text="call records", json_errors=True)
    tail = _control_parser(
        group,
        "tail",
        help_text="print the latest call records as JSON lines (oldest first, newest last)",
    )
    tail.add_argument("--limit", type=_positive_int, default=20, metavar="N")
    tail.set_defaults(handler=_control(_calls_tail))


CONTROL_COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_numbers,
    _add_pool,
    _add_bind,
    _add_group_commands,
    _add_unbind,
    _add_binding,
    _add_calls,
)


# --------------------------------------------------------------------------- parser

# One entry per top-level command or group, in the order shown by --help.
_COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_serve,
    _add_check_config,
    *CONTROL_COMMANDS,
)


def build_parser() -> argparse.ArgumentParser:
    """The complete ``maskline`` argument parser."""
    parser = _Parser(
        prog="maskline",
        description="maskline: self-hosted number-privacy (masked calling) SIP B2BUA.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="settings file (TOML); without it, built-in defaults. "
        "MASKLINE_<SECTION>__<KEY> environment variables override either.",
    )
    parser.add_argument("--version", action="version", version=f"maskline {_version()}")
    # Sub-parsers are _Parser too (argparse uses the parent's class); typed as the base class.
    commands = cast("Commands", parser.add_subparsers(title="commands", metavar="COMMAND"))
    # The areas' command modules import this module's helpers (``_api``, ``_control`` ...), so
    # they are imported here, once this module is complete.
    from engine import (  # noqa: PLC0415
        cli_audio,
        cli_backup,
        cli_billing,
        cli_inventory,
        cli_lists,
        cli_reports,
        cli_sms,
        cli_stats,
        cli_tenants,
    )

    for register in (
        *_COMMANDS,
        *cli_tenants.COMMANDS,
        *cli_inventory.COMMANDS,
        *cli_lists.COMMANDS,
        *cli_audio.COMMANDS,
        *cli_billing.COMMANDS,
        *cli_reports.COMMANDS,
        *cli_sms.COMMANDS,
        *cli_stats.COMMANDS,
        *cli_backup.COMMANDS,
    ):
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors exit inside argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
