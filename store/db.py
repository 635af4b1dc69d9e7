"""The SQLite database: open + migrate, one writer with group commit, a read connection.

Durability contract: ``await db.write(op)`` returns only after the transaction holding ``op``
is committed with ``PRAGMA synchronous=FULL`` in WAL mode, i.e. after the WAL has been fsynced.
That survives a crash of the process *and* of the machine (power loss).  ``NORMAL`` would already
survive a process crash (a committed transaction sits in the WAL file, which the OS keeps after
the process dies) but may lose the last commits on power loss; since group commit pays one fsync
per batch rather than per bind, FULL costs little under load and "acknowledged" can mean durable
without qualification.  ``Database.open(path, synchronous="NORMAL")`` exists for benchmarks.

Why a private thread per connection rather than ``aiosqlite``'s public API: group commit runs a
whole batch of synchronous ops (with a SAVEPOINT around each) in one hop to the database thread.
aiosqlite's public API hops threads per statement; running a batch there would need its private
``Connection._execute``.  A single-worker executor per connection is the same model (sqlite3 in
one dedicated thread, futures back to the loop) with a typed, public surface.

Time in the store: UTC epoch seconds as ``REAL`` (the unit of ``routing.model.Binding``); money:
``Decimal`` as ``TEXT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

# An op runs synchronously in the writer thread, inside the batch transaction, under its own
# SAVEPOINT.  It must not commit, roll back or open transactions itself.
WriteOp = Callable[[sqlite3.Connection], T]
ReadOp = Callable[[sqlite3.Connection], T]

Synchronous = Literal["FULL", "NORMAL"]

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Upper bound of ops per transaction: keeps one batch's latency bounded under a flood.
MAX_BATCH_OPS = 5_000


class StoreError(Exception):
    """Root of the store's errors."""


class MigrationError(StoreError):
    """The migration files or the database's migration history are inconsistent."""


class SchemaTooNewError(MigrationError):
    """The database was migrated by a newer maskline; refusing to touch it."""


class DatabaseClosedError(StoreError):
    """A write or read was submitted after ``Database.close``."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file ``store/migrations/NNNN_name.sql``."""

    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in ``store/migrations``, in version order, checked contiguous."""
    folder = resources.files("store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migrations must be numbered 1, 2, 3, ... without gaps or duplicates; "
                f"found {migration.version:04d}_{migration.name} where {expected:04d} belongs"
            )
    return found


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    # isolation_level=None: no implicit BEGIN; transactions are explicit below.
    # check_same_thread=False: the connection is created on the loop thread's executor worker and
    # only ever used by that single worker, but sqlite3 checks the creating thread.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch {path} to WAL mode (got {mode!r})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Statement and savepoint journals in memory, not temporary files: every write op runs
    # under a SAVEPOINT (``_run_batch``), and each transaction that touched a page inside one
    # created, wrote and deleted a sub-journal file. They hold the transaction's pages once.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def _migrate(conn: sqlite3.Connection, migrations: list[Migration]) -> list[int]:
    """Apply the pending migrations, each in its own transaction; returns the versions applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at REAL NOT NULL)"
    )
    applied = {
        int(row["version"]): str(row["name"])
        for row in conn.execute("SELECT version, name FROM schema_migrations")
    }
    known = {m.version: m.name for m in migrations}
    newest_known = max(known, default=0)
    if applied and max(applied) > newest_known:
        raise SchemaTooNewError(
            f"database schema version {max(applied)} is newer than this maskline "
            f"(knows up to {newest_known}); run the newer maskline or restore a backup"
        )
    for version, name in applied.items():
        if known.get(version) != name:
            raise MigrationError(
                f"database records migration {version:04d}_{name} which this maskline "
                f"does not have under that number"
            )
    done: list[int] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        # executescript runs the file as-is; the BEGIN ... COMMIT around it makes the DDL and the
        # history row one transaction, so a failing migration leaves no half-applied schema.
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{migration.sql}\n;\n"
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES "
            f"({migration.version}, '{migration.name}', {time.time()!r});\n"
            "COMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} failed: {error}"
            ) from error
        done.append(migration.version)
    return done


@dataclass(slots=True)
class _Pending:
    op: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _run_batch(
    conn: sqlite3.Connection, ops: list[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[bool, Any]]:
    """Run ``ops`` in one transaction, each under a SAVEPOINT (a lone op: the transaction
    itself); commit once.

    Returns per op ``(True, value)`` or ``(False, exception)``.  A failing op is rolled back to its
    savepoint and does not affect the others.  If the COMMIT itself fails, everything is rolled
    back and the commit error is raised (every caller of the batch gets it).
    """
    results: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(ops) == 1:
            # Alone in its batch, an op needs no savepoint: the transaction is one. Under load
            # most batches are one report round (api.reports), and every statement is a GIL
            # hand-off with the event loop (the sqlite3 module lets go of the GIL five times in
            # each): two fewer of ~14 a round.
            try:
                value = ops[0](conn)
            except Exception as error:  # the op's own failure is its caller's business
                conn.execute("ROLLBACK")
                return [(False, error)]
            conn.execute("COMMIT")
            return [(True, value)]
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as error:  # the op's own failure is its caller's business
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((False, error))
            else:
                conn.execute("RELEASE op")
                results.append((True, value))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


class Database:
    """A maskline SQLite database: one writer task (group commit) and one read connection.

    Create with ``await Database.open(path)``; finish with ``await db.close()``.
    """

    def __init__(
        self,
        *,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        write_executor: ThreadPoolExecutor,
        read_executor: ThreadPoolExecutor,
    ) -> None:
        """Internal: use ``Database.open``."""
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_executor = write_executor
        self._read_executor = read_executor
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(), name="maskline-db-writer"
        )
        self.batches_committed = 0  # observability: ops per batch = writes / batches
        self.ops_committed = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        migrations: list[Migration] | None = None,
    ) -> Database:
        """Open (creating parent directories and the file) and migrate the database at ``path``.

        Raises ``SchemaTooNewError`` for a database migrated by a newer maskline and
        ``MigrationError`` when a migration fails (nothing of it is applied).
        """
        loop = asyncio.get_running_loop()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        wanted = bundled_migrations() if migrations is None else migrations
        write_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskline-db-write")
        read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskline-db-read")
        writer: sqlite3.Connection | None = None
        try:
            writer = await loop.run_in_executor(write_executor, _connect, path, synchronous)
            await loop.run_in_executor(write_executor, _migrate, writer, wanted)
            reader = await loop.run_in_executor(read_executor, _connect, path, synchronous)
        except BaseException:
            if writer is not None:
                await loop.run_in_executor(write_executor, writer.close)
            write_executor.shutdown(wait=True)
            read_executor.shutdown(wait=True)
            raise
        return cls(
            path=path,
            writer=writer,
            reader=reader,
            write_executor=write_executor,
            read_executor=read_executor,
        )

    async def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op(conn)`` in the writer's next transaction; return its value once durable.

        ``op`` is synchronous and runs in the writer thread under its own SAVEPOINT: if it raises,
        only its own changes are rolled back and the exception is raised here; the other ops of
        the batch still commit.  It must not commit or roll back itself.  If this await is
        cancelled, the op may still commit.
        """
        if self._closing:
            raise DatabaseClosedError("database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, future))
        if len(self._queue) == 1:  # the writer waits only with the queue empty
            self._wakeup.set()
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the read connection inside one read transaction (one snapshot).

        Sees every write acknowledged before the call.  Reads are serialised on one connection;
        they never wait for the writer (WAL).
        """
        if self._closing:
            raise DatabaseClosedError("database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_executor, _run_read, self._reader, fn)

    async def close(self) -> None:
        """Refuse new work, commit every queued write, stop the writer, close both connections."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_executor, self._writer.close)
        await loop.run_in_executor(self._read_executor, self._reader.close)
        self._write_executor.shutdown(wait=True)
        self._read_executor.shutdown(wait=True)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Group commit: everything queued while the previous batch was committing goes into
            # this one transaction, so one fsync acknowledges many writers.
            batch = self._queue[:MAX_BATCH_OPS]
            del self._queue[:MAX_BATCH_OPS]
            try:
                results = await loop.run_in_executor(
                    self._write_executor, _run_batch, self._writer, [p.op for p in batch]
                )
            except Exception as error:  # the batch as a whole failed (e.g. disk full at COMMIT)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.batches_committed += 1
            self.ops_committed += len(batch)
            for pending, (ok, value) in zip(batch, results, strict=True):
                if pending.future.done():  # the caller gave up waiting
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)


def _run_read(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # A deferred BEGIN takes its snapshot at the first SELECT, so multi-query reads are consistent.
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("ROLLBACK")


# ------------------------------------------------------------------------------ backup


class BackupError(StoreError):
    """An online backup could not be made; nothing was left at the destination."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup: where it is and what it holds."""

    path: Path
    size_bytes: int
    pages: int
    schema_version: int  # the newest migration applied in the copy
    elapsed_s: float


def backup_database(source: Path, destination: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the maskline database at ``source`` to ``destination`` while it may be in use.

    SQLite's online backup API copies every page in **one** step, i.e. inside one read
    transaction of the source: the copy is the database as of one commit (never half a
    transaction), and, the source being in WAL mode, maskline's writer goes on committing
    meanwhile (a reader never blocks it). The copy is then made self-contained (rollback
    journal, no ``-wal`` file beside it), checked with ``PRAGMA quick_check``, fsynced, and only
    then moved to ``destination`` — atomically, so a crash or an error never leaves a partial
    file there. Blocking: run it in a thread from async code.

    Raises ``BackupError`` (with nothing created) when ``source`` is missing or not a maskline
    database, ``destination`` exists (unless ``overwrite``), is the source itself, or its
    directory does not exist, and when the copy fails its check.
    """
    started = time.perf_counter()
    source = Path(source)
    destination = Path(destination)
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if destination.is_dir():
        raise BackupError(f"{destination} is a directory; give the backup file's name")
    if destination.exists():
        if destination.resolve() == source.resolve():
            raise BackupError("the backup cannot overwrite the database itself")
        if not overwrite:
            raise BackupError(f"{destination} exists (overwrite it explicitly)")
    if not destination.parent.is_dir():
        raise BackupError(f"directory {destination.parent} does not exist")
    partial = destination.parent / f".{destination.name}.{os.getpid()}.partial"
    try:
        pages, schema_version = _copy_checked(source, partial)
        _fsync_file(partial)
        _move_into_place(partial, destination, overwrite=overwrite)
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    _fsync_directory(destination.parent)
    return BackupResult(
        path=destination,
        size_bytes=destination.stat().st_size,
        pages=pages,
        schema_version=schema_version,
        elapsed_s=time.perf_counter() - started,
    )


def _copy_checked(source: Path, target: Path) -> tuple[int, int]:
    """Back ``source`` up into the new file ``target``; (pages, schema version) of the copy."""
    # mode=rw: never create a database where there was none.
    uri = f"{source.resolve().as_uri()}?mode=rw"
    try:
        src = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise BackupError(f"cannot open {source}: {error}") from error
    try:
        src.execute("PRAGMA busy_timeout = 5000")
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            try:
                src.backup(dst)  # pages=-1: everything in one step (one snapshot)
            except sqlite3.Error as error:
                raise BackupError(f"backup of {source} failed: {error}") from error
            # The pages carry the source's WAL flag: turn the copy into one plain file.
            dst.execute("PRAGMA journal_mode = DELETE")
            (check,) = dst.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise BackupError(f"the copy failed its integrity check: {check}")
            try:
                (version,) = dst.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            except sqlite3.OperationalError:
                raise BackupError(f"{source} is not a maskline database") from None
            (pages,) = dst.execute("PRAGMA page_count").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return int(pages), int(version or 0)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_into_place(partial: Path, destination: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(partial, destination)
        return
    # A hard link never replaces an existing file: a destination created meanwhile is kept.
    try:
        os.link(partial, destination)
    except FileExistsError:
        raise BackupError(f"{destination} exists (overwrite it explicitly)") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if destination.exists():  # no hard links here: check, then rename
            raise BackupError(f"{destination} exists (overwrite it explicitly)") from None
        os.replace(partial, destination)
