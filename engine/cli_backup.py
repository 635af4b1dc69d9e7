"""``maskline backup --out FILE``: an online backup of the SQLite database (registered by
``engine.cli.build_parser``).

Runs beside a serving maskline (or without one) on the database file of ``[store] path``, with
SQLite's online backup API (``store.db.backup_database``): a consistent copy as of one commit,
while the server keeps writing. Prints one JSON object on stdout: ``{"path", "size_bytes",
"pages", "schema_version", "elapsed_s"}``; on failure ``{"code", "message"}`` with exit code 1
(``BACKUP_FAILED``: no database, not a maskline database, the copy failed its check) or 2
(``USAGE``: the output exists without ``--force`` or its directory is missing;
``CONFIG_ILLEGAL``). Nothing is left at ``--out`` unless the backup is complete.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from config import ConfigError
from engine.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, _add_config_option, _load, _print_json
from store.db import BackupError, backup_database

if TYPE_CHECKING:
    from engine.cli import Commands

__all__ = ["COMMANDS"]


def _backup(args: argparse.Namespace) -> int:
    try:
        settings = _load(args.config)
    except ConfigError as err:
        _print_json({"code": "CONFIG_ILLEGAL", "message": str(err)})
        return EXIT_USAGE
    out: Path = args.out
    if out.exists() and not args.force:
        _print_json({"code": "USAGE", "message": f"{out} exists; add --force to replace it"})
        return EXIT_USAGE
    if not out.parent.is_dir():
        _print_json({"code": "USAGE", "message": f"directory {out.parent} does not exist"})
        return EXIT_USAGE
    try:
        result = backup_database(settings.store.path, out, overwrite=args.force)
    except (BackupError, sqlite3.Error, OSError) as err:
        _print_json({"code": "BACKUP_FAILED", "message": str(err)})
        return EXIT_FAILURE
    _print_json(
        {
            "path": str(result.path),
            "size_bytes": result.size_bytes,
            "pages": result.pages,
            "schema_version": result.schema_version,
            "elapsed_s": round(result.elapsed_s, 3),
        }
    )
    return EXIT_OK


def _add_backup(commands: Commands) -> None:
    parser = commands.add_parser(
        "backup",
        help="copy the SQLite database online (consistent, while maskline runs)",
        description=(
            "Copy the database of [store] path to FILE with SQLite's online backup API: one "
            "consistent snapshot, taken while maskline keeps serving and writing. The copy is a "
            "single self-contained SQLite file, integrity-checked before it appears at FILE."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="backup file")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _add_config_option(parser)
    parser.set_defaults(handler=_backup)


COMMANDS = (_add_backup,)
