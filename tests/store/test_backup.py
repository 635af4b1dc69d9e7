"""store.db.backup_database and ``maskline backup``: a consistent copy while the database is
being written, and clear refusals that leave nothing behind.

Real parts: a migrated SQLite database written by ``store.db.Database`` (its writer thread, WAL,
FULL sync) while the backup runs in another thread, as ``maskline backup`` runs beside a
serving maskline.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import cli
from store.db import BackupError, Database, backup_database, bundled_migrations

NEWEST_SCHEMA = bundled_migrations()[-1].version

PRELOAD = 20_000  # enough pages that a backup takes a while, so writes overlap it


def _write_pair(n: int) -> Callable[[sqlite3.Connection], None]:
    """One transaction's op: pool P<n> and its report row R<n> — in a copy, both or neither."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO pools (pool_key, tenant_id, type, name, created_at)"
            " VALUES (?, NULL, 'AXB', 'p', 0)",
            (f"P{n:06d}",),
        )
        conn.execute(
            "INSERT INTO report_outbox (id, pool_key, kind, payload, created_at, next_attempt_at)"
            " VALUES (?, ?, 'end', ?, 0, 0)",
            (f"R{n:06d}", f"P{n:06d}", "x" * 200),
        )

    return op


def _preload(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO report_outbox (id, kind, payload, created_at, next_attempt_at)"
        " VALUES (?, 'end', ?, 0, 0)",
        ((f"old-{n}", "y" * 200) for n in range(PRELOAD)),
    )


def _pairs_in(path: Path, *, preloaded: int = 0) -> tuple[list[int], list[int]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        pools = [int(r[0][1:]) for r in conn.execute("SELECT pool_key FROM pools ORDER BY 1")]
        reports = [
            int(r[0][1:])
            for r in conn.execute("SELECT id FROM report_outbox WHERE id LIKE 'R%' ORDER BY 1")
        ]
        (old,) = conn.execute("SELECT COUNT(*) FROM report_outbox WHERE id LIKE 'old-%'").fetchone()
        assert old == preloaded
    finally:
        conn.close()
    return pools, reports


async def test_backup_while_writing_is_one_consistent_snapshot(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "live.sqlite3")
    await db.write(_preload)
    committed = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal committed
        while not stop.is_set():
            await db.write(_write_pair(committed))  # one after the other: a prefix is durable
            committed += 1

    task = asyncio.create_task(writer())
    try:
        while committed < 20:
            await asyncio.sleep(0.005)
        copies = []
        for n in range(3):
            before = committed
            result = await asyncio.to_thread(
                backup_database, db.path, tmp_path / f"copy{n}.sqlite3"
            )
            copies.append((before, committed, result))
    finally:
        stop.set()
        await task
        await db.close()
    overlapped = 0
    for before, after, result in copies:
        assert result.schema_version == NEWEST_SCHEMA and result.pages > 0
        assert result.size_bytes == result.path.stat().st_size
        assert not Path(f"{result.path}-wal").exists()  # self-contained, rollback journal
        pools, reports = _pairs_in(result.path, preloaded=PRELOAD)
        # Whole transactions only, and every one committed before the snapshot: a prefix.
        assert pools == reports == list(range(len(pools)))
        assert before <= len(pools) <= after
        overlapped += after > before
    assert overlapped, "the writer never committed while a backup ran: nothing was tested"
    assert not list(tmp_path.glob(".*partial*"))


async def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "live.sqlite3")
    await db.write(_write_pair(1))
    await db.close()
    out = tmp_path / "copy.sqlite3"
    with pytest.raises(BackupError, match="no database"):
        backup_database(tmp_path / "missing.sqlite3", out)
    with pytest.raises(BackupError, match="does not exist"):
        backup_database(db.path, tmp_path / "nowhere" / "copy.sqlite3")
    with pytest.raises(BackupError, match="directory"):
        backup_database(db.path, tmp_path)
    with pytest.raises(BackupError, match="itself"):
        backup_database(db.path, db.path, overwrite=True)
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(BackupError, match="not a maskline database"):
        backup_database(other, out)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BackupError, match=r"backup of .* failed|cannot open"):
        backup_database(garbage, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "garbage.sqlite3",
        "live.sqlite3",
        "other.sqlite3",
    ]

    out.write_bytes(b"keep me")
    with pytest.raises(BackupError, match="exists"):
        backup_database(db.path, out)
    assert out.read_bytes() == b"keep me"
    result = backup_database(db.path, out, overwrite=True)
    assert _pairs_in(result.path) == ([1], [1])


# ---------------------------------------------------------------------------- the command


def _config(tmp_path: Path, db_path: Path) -> Path:
    config = tmp_path / "maskline.toml"
    config.write_text(f'[store]\npath = "{db_path}"\n', "utf-8")
    return config


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = cli.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert isinstance(printed, dict)
    return code, printed


async def test_backup_command_prints_the_copy_and_refuses_to_clobber(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("MASKLINE_")]:
        monkeypatch.delenv(name)
    db = await Database.open(tmp_path / "live.sqlite3")
    await db.write(_write_pair(7))
    config = _config(tmp_path, db.path)
    out = tmp_path / "backup.sqlite3"
    try:
        # The database is open (WAL, writer thread alive): the command runs beside it.
        code, printed = await asyncio.to_thread(
            _run, ["backup", "--out", str(out), "--config", str(config)], capsys
        )
        assert code == 0, printed
        assert printed["path"] == str(out) and printed["size_bytes"] == out.stat().st_size
        assert printed["schema_version"] == NEWEST_SCHEMA
        assert _pairs_in(out) == ([7], [7])

        await db.write(_write_pair(8))
        code, printed = _run(["backup", "--out", str(out), "--config", str(config)], capsys)
        assert (code, printed["code"]) == (2, "USAGE")
        assert _pairs_in(out) == ([7], [7])  # untouched
        code, printed = _run(
            ["backup", "--out", str(out), "--force", "--config", str(config)], capsys
        )
        assert code == 0, printed
        assert _pairs_in(out) == ([7, 8], [7, 8])
    finally:
        await db.close()

    missing = _config(tmp_path, tmp_path / "gone.sqlite3")
    elsewhere = tmp_path / "b2.sqlite3"
    code, printed = _run(["backup", "--out", str(elsewhere), "--config", str(missing)], capsys)
    assert (code, printed["code"]) == (1, "BACKUP_FAILED")
    assert "no database" in str(printed["message"]) and not elsewhere.exists()
    code, printed = _run(
        ["backup", "--out", str(tmp_path / "no" / "b.sqlite3"), "--config", str(config)], capsys
    )
    assert (code, printed["code"]) == (2, "USAGE")
    assert cli.main(["backup", "--config", str(config)]) == 2  # --out is required
