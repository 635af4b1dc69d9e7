"""store.db: open, migrations, group-commit writer, reads."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from store.db import (
    Database,
    DatabaseClosedError,
    Migration,
    MigrationError,
    SchemaTooNewError,
    StoreError,
    bundled_migrations,
)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _history(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT version, name FROM schema_migrations ORDER BY version"))


async def test_open_creates_parent_dirs_wal_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "maskline.sqlite3"
    db = await Database.open(path)
    try:
        journal = await db.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        sync = await db.read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        fks = await db.read(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0])
        temp_store = await db.write(lambda c: c.execute("PRAGMA temp_store").fetchone()[0])
    finally:
        await db.close()
    assert journal == "wal"
    assert sync == 2  # FULL
    assert fks == 1
    assert temp_store == 2  # MEMORY: savepoint journals are no temporary files
    expected = {
        "tenants", "pools", "numbers", "number_tenancies", "groups", "group_members",
        "bindings", "blacklists", "blacklist_pairs", "call_records", "report_outbox", "ledger",
        "schema_migrations",
    }  # fmt: skip
    assert expected <= _tables(path)


async def test_migrations_apply_once_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    for _ in range(3):
        db = await Database.open(path)
        await db.close()
    bundled = bundled_migrations()
    assert _history(path) == [(m.version, m.name) for m in bundled]
    assert bundled[0].version == 1 and bundled[0].name == "initial"


async def test_new_migration_applied_on_next_open(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await (await Database.open(path)).close()
    extra = Migration(
        version=len(bundled_migrations()) + 1, name="extra", sql="CREATE TABLE t (x);"
    )
    db = await Database.open(path, migrations=[*bundled_migrations(), extra])
    await db.close()
    assert "t" in _tables(path)
    assert _history(path)[-1] == (extra.version, "extra")


async def test_failing_migration_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await (await Database.open(path)).close()
    bad = Migration(
        version=len(bundled_migrations()) + 1,
        name="bad",
        sql="CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);",
    )
    with pytest.raises(MigrationError, match=f"{len(bundled_migrations()) + 1:04d}_bad"):
        await Database.open(path, migrations=[*bundled_migrations(), bad])
    assert "half" not in _tables(path)
    assert len(_history(path)) == len(bundled_migrations())


async def test_refuses_database_newer_than_code(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await (await Database.open(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(SchemaTooNewError, match="999"):
        await Database.open(path)


async def test_refuses_renamed_migration(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    await (await Database.open(path)).close()
    renamed = [Migration(version=1, name="other", sql="SELECT 1;"), *bundled_migrations()[1:]]
    with pytest.raises(MigrationError, match="0001_initial"):
        await Database.open(path, migrations=renamed)


async def _scratch(tmp_path: Path) -> Database:
    db = await Database.open(tmp_path / "db.sqlite3")
    await db.write(lambda c: c.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"))
    return db


async def test_write_returns_value_and_read_sees_it(tmp_path: Path) -> None:
    db = await _scratch(tmp_path)
    try:
        rowid = await db.write(
            lambda c: c.execute("INSERT INTO kv (k, v) VALUES (7, 'seven')").lastrowid
        )
        assert rowid == 7
        assert await db.read(lambda c: c.execute("SELECT v FROM kv").fetchone()[0]) == "seven"
    finally:
        await db.close()


async def test_thousand_concurrent_writes_grouped_and_acknowledged(tmp_path: Path) -> None:
    db = await _scratch(tmp_path)
    try:
        before = db.batches_committed

        def insert(k: int) -> Callable[[sqlite3.Connection], int | None]:
            return lambda c: c.execute("INSERT INTO kv (k, v) VALUES (?, 'x')", (k,)).lastrowid

        results = await asyncio.gather(*(db.write(insert(k)) for k in range(1000)))
        assert results == list(range(1000))
        batches = db.batches_committed - before
        # Group commit: far fewer transactions than writes.
        assert batches < 100
        count = await db.read(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0])
        assert count == 1000
    finally:
        await db.close()


async def test_failing_op_does_not_fail_its_batch(tmp_path: Path) -> None:
    db = await _scratch(tmp_path)
    try:

        def good(k: int) -> Callable[[sqlite3.Connection], None]:
            def op(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO kv (k, v) VALUES (?, 'ok')", (k,))

            return op

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv (k, v) VALUES (1000, 'partial')")  # rolled back
            raise ValueError("op refuses")

        def duplicate(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv (k, v) VALUES (0, 'dup')")  # PK conflict with good(0)

        ops: list[Awaitable[None]] = [db.write(good(k)) for k in range(50)]
        ops.insert(10, db.write(bad))
        ops.insert(30, db.write(duplicate))
        results = await asyncio.gather(*ops, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 2
        assert any(isinstance(e, ValueError) for e in errors)
        assert any(isinstance(e, sqlite3.IntegrityError) for e in errors)
        rows = await db.read(lambda c: c.execute("SELECT k, v FROM kv ORDER BY k").fetchall())
        assert [(r[0], r[1]) for r in rows] == [(k, "ok") for k in range(50)]
    finally:
        await db.close()


async def test_a_failing_op_alone_in_its_batch_leaves_nothing(tmp_path: Path) -> None:
    # A batch of one op runs without a savepoint (the transaction is one): its failure must
    # still undo what it wrote, raise to its caller and leave the writer working.
    db = await _scratch(tmp_path)
    try:

        def bad(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv (k, v) VALUES (1, 'partial')")
            raise ValueError("op refuses")

        batches = db.batches_committed
        with pytest.raises(ValueError, match="op refuses"):
            await db.write(bad)
        assert db.batches_committed == batches + 1  # a batch of its own
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0]) == 0
        await db.write(lambda c: c.execute("INSERT INTO kv (k, v) VALUES (1, 'ok')"))
        rows = await db.read(lambda c: c.execute("SELECT k, v FROM kv").fetchall())
        assert [(r[0], r[1]) for r in rows] == [(1, "ok")]
    finally:
        await db.close()


async def test_close_commits_queued_writes_then_refuses(tmp_path: Path) -> None:
    db = await _scratch(tmp_path)

    def insert(k: int) -> Callable[[sqlite3.Connection], None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO kv (k) VALUES (?)", (k,))

        return op

    pending = [asyncio.ensure_future(db.write(insert(k))) for k in range(20)]
    await asyncio.sleep(0)  # let the writes enqueue
    await db.close()
    await asyncio.gather(*pending)
    with pytest.raises(DatabaseClosedError):
        await db.write(lambda c: c.execute("SELECT 1"))
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM kv").fetchone()[0] == 20


async def test_read_is_one_snapshot(tmp_path: Path) -> None:
    db = await _scratch(tmp_path)
    try:
        await db.write(lambda c: c.execute("INSERT INTO kv (k) VALUES (1)"))

        def in_transaction(conn: sqlite3.Connection) -> bool:
            conn.execute("SELECT count(*) FROM kv").fetchone()
            return conn.in_transaction

        assert await db.read(in_transaction)
    finally:
        await db.close()


# ------------------------------------------------------------------ commits on the event loop


def _wal_inode(tmp_path: Path) -> int:
    return os.stat(tmp_path / "db.sqlite3-wal").st_ino


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    """Every fdatasync appends ``fsync <inode>`` to ``events`` (then really syncs)."""
    real_fdatasync = os.fdatasync

    def fdatasync(fd: int) -> None:
        events.append(f"fsync {os.fstat(fd).st_ino}")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)


@pytest.mark.parametrize("in_loop", [True, False])
async def test_a_write_is_acknowledged_after_the_wal_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_loop: bool
) -> None:
    # The writer commits without fsync (synchronous=NORMAL) so that a commit may run on the
    # loop; the durability of FULL comes from the fsync of the WAL before the answer.
    db = await _scratch(tmp_path)
    try:
        events: list[str] = []
        _record_fsyncs(monkeypatch, events)

        def op(conn: sqlite3.Connection) -> int:
            events.append("op")
            conn.execute("INSERT INTO kv (k, v) VALUES (1, 'one')")
            return threading.get_ident()

        thread = await db.write(op, in_loop=in_loop)
        events.append("acknowledged")
        assert events == ["op", f"fsync {_wal_inode(tmp_path)}", "acknowledged"]
        ran_on_the_loop = thread == threading.get_ident()
        assert ran_on_the_loop is in_loop
        assert db.loop_batches == (1 if in_loop else 0)
    finally:
        await db.close()


async def test_ops_on_the_loop_share_one_transaction_and_let_the_loop_run_between_them(
    tmp_path: Path,
) -> None:
    db = await _scratch(tmp_path)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    try:
        await asyncio.sleep(0)
        batches = db.batches_committed

        def insert(k: int) -> Callable[[sqlite3.Connection], int]:
            def op(conn: sqlite3.Connection) -> int:
                conn.execute("INSERT INTO kv (k) VALUES (?)", (k,))
                return turns

            return op

        seen = await asyncio.gather(*(db.write(insert(k), in_loop=True) for k in range(5)))
        assert db.batches_committed == batches + 1  # one transaction, one fsync
        assert seen == sorted(seen) and len(set(seen)) == 5  # the loop turned between ops
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM kv").fetchone()[0]) == 5
    finally:
        counter.cancel()
        await db.close()


async def test_a_loop_batch_waits_in_the_writer_thread_for_a_lock_another_process_holds(
    tmp_path: Path,
) -> None:
    # The loop must never sleep in SQLite's busy handler: with the write lock taken elsewhere,
    # the batch goes to the writer thread, which waits for it (busy timeout), the loop free.
    db = await _scratch(tmp_path)
    other = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(
            db.write(lambda c: c.execute("INSERT INTO kv (k) VALUES (1)").lastrowid, in_loop=True)
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(0.2)
        assert loop.time() - started < 0.5  # the loop was not blocked
        assert not write.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 5) == 1
        assert db.loop_batches == 0  # it ran in the thread
    finally:
        other.close()
        await db.close()


async def test_a_failed_wal_fsync_fails_its_batch_and_refuses_later_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await _scratch(tmp_path)
    try:

        def failing_fdatasync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        with pytest.raises(OSError, match="Input/output error"):
            await db.write(lambda c: c.execute("INSERT INTO kv (k) VALUES (1)"), in_loop=True)
        monkeypatch.undo()  # the disk "works" again: what it lost stays lost, writes stay refused
        for in_loop in (True, False):
            with pytest.raises(StoreError, match="could not be fsynced"):
                await db.write(
                    lambda c: c.execute("INSERT INTO kv (k) VALUES (2)"), in_loop=in_loop
                )
    finally:
        await db.close()


async def test_the_checkpointer_keeps_the_wal_small(tmp_path: Path) -> None:
    # The writer never checkpoints (wal_autocheckpoint=0: a checkpoint's fsyncs must not run on
    # the loop): without the checkpointer's thread the WAL would hold every page of every write.
    db = await Database.open(tmp_path / "db.sqlite3", checkpoint_interval_s=0.0)
    try:
        await db.write(lambda c: c.execute("CREATE TABLE blobs (k INTEGER PRIMARY KEY, b BLOB)"))

        def insert(k: int) -> Callable[[sqlite3.Connection], object]:
            return lambda c: c.execute("INSERT INTO blobs VALUES (?, ?)", (k, os.urandom(8192)))

        for k in range(200):
            await db.write(insert(k), in_loop=k % 2 == 0)
            if k % 5 == 0:
                await asyncio.sleep(0.02)  # a moment for the checkpointer to finish
        assert db.checkpoints >= 10
        # Not restarted, the WAL would hold every page written: over 1.6 MB of blobs alone.
        wal_bytes = os.stat(tmp_path / "db.sqlite3-wal").st_size
        assert wal_bytes < 200 * 8192 / 2, wal_bytes
    finally:
        await db.close()
    assert not (tmp_path / "db.sqlite3-wal").exists()  # the last connection removed it


def test_none_binds_as_null_through_the_short_adapter() -> None:
    # store.db registers an adapter for None (it skips sqlite3's failing adapter lookup); a
    # None parameter must still be stored as NULL, in any connection of the process.
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE t (a, b)")
        conn.execute("INSERT INTO t VALUES (?, ?)", (None, "x"))
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(None, None), (1, None)])
        rows = conn.execute("SELECT a IS NULL, b IS NULL, typeof(a) FROM t").fetchall()
    assert rows == [(1, 0, "null"), (1, 1, "null"), (0, 1, "integer")]
