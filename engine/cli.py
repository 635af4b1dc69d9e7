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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO, TypeAlias

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


def _add_group(commands: Commands, *, name: str, help_text: str) -> Commands:
    """A command group (``maskline NAME COMMAND``); without a command it prints its help."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)

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
    from engine.logging import configure_logging, get_logger  # noqa: PLC0415

    configure_logging(settings.log.level, settings.log.format)
    get_logger("engine.cli").info(
        "starting",
        config=str(args.config) if args.config else None,
        sip_listen=str(settings.sip.listen),
        api_listen=str(settings.api.listen),
        version=_version(),
    )
    from engine import server  # noqa: PLC0415

    try:
        return server.run(settings)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


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


# --------------------------------------------------------------------------- parser

# One entry per top-level command or group, in the order shown by --help.
_COMMANDS: Final[tuple[Callable[[Commands], None], ...]] = (
    _add_serve,
    _add_check_config,
)


def build_parser() -> argparse.ArgumentParser:
    """The complete ``maskline`` argument parser."""
    parser = argparse.ArgumentParser(
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
    commands: Commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in _COMMANDS:
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
