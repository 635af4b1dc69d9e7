"""The SQLite database: open + migrate, one writer with group commit, a read connection.

Durability contract: ``await db.write(op)`` returns only after the transaction holding ``op``
is committed in WAL mode *and* the WAL has been fsynced (what ``PRAGMA synchronous=FULL`` does
at each commit). That survives a crash of the process *and* of the machine (power loss).
``NORMAL`` alone would already survive a process crash (a committed transaction sits in the WAL
file, which the OS keeps after the process dies) but may lose the last commits on power loss;
since group commit pays one fsync per batch rather than per bind, the fsync costs little under
load and "acknowledged" can mean durable without qualification. ``Database.open(path,
synchronous="NORMAL")`` (no fsync before the acknowledgement) exists for benchmarks.

How: the writer connection commits with ``synchronous=NORMAL`` and checkpoints nothing itself
(``wal_autocheckpoint=0``); the writer thread then fsyncs the WAL file (``_WalFile``) before
the batch's callers are answered, and a third connection checkpoints in a thread of its own
(``PASSIVE``: it never holds the write lock). The fsync is SQLite's own under FULL, moved out of
COMMIT so that a commit can run on the event loop's thread: ``write(op, in_loop=True)``, for
short ops on the call path. There it needs no hand-off of the GIL between the loop and the
writer thread, which costs the loop more than the op (every SQLite statement lets go of the GIL,
and the loop, running each uvloop callback under it, then wakes the writer and waits for it:
bench/README "Twelfth session"). A commit seen by a reader before its fsync is not yet
acknowledged; a power loss may take it back, as it may any write not yet acknowledged.

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
import itertools
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

T = TypeVar("T")

# sqlite3 binds an int, float, str or bytearray parameter as it is, and looks every other value
# (None too) up among its adapters first: for None that lookup fails by raising and clearing an
# AttributeError, ~1.3 k instructions a parameter (a call record's row binds several Nones).
# An adapter registered for None ends the lookup at once; it must give None back (bound as
# NULL), which an empty dict's ``get`` does from C, without a Python frame. Process-wide, and
# the same binding as without it.
_RETURNS_NONE: Final = cast(Callable[[None], None], {}.get)  # get(key) of an empty dict: None
sqlite3.register_adapter(type(None), _RETURNS_NONE)

_log = logging.getLogger("store.db")

# An op runs synchronously in the writer thread (or on the loop: ``write(op, in_loop=True)``),
# inside the batch transaction, under its own SAVEPOINT.  It must not commit, roll back or open
# transactions itself.
WriteOp = Callable[[sqlite3.Connection], T]
ReadOp = Callable[[sqlite3.Connection], T]

Synchronous = Literal["FULL", "NORMAL"]

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Upper bound of ops per transaction: keeps one batch's latency bounded under a flood.
MAX_BATCH_OPS = 5_000
# Upper bound of ops per transaction run on the event loop (``write(op, in_loop=True)``): the
# loop serves its I/O between two ops, but the transaction holds the write lock all along, so a
# backlog is committed in several transactions of bounded length.
MAX_LOOP_BATCH_OPS = 64
# Least seconds between two checkpoints (one a second copies what the WAL gathered meanwhile
# into the database file: at 1,000 calls/s a few hundred pages, well under SQLite's automatic
# 1,000), and the busy timeout of the connections that may wait for a lock.
CHECKPOINT_INTERVAL_S = 1.0
BUSY_TIMEOUT_MS = 5000
# The WAL file is truncated back to this size after a checkpoint emptied it (a bulk import may
# have grown it far beyond what the steady state needs).
WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


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
    # check_same_thread=False: the connection is created in an executor's worker; the writer's is
    # then used by that worker and, for batches run on the loop, by the loop's thread — never by
    # both at once (the write loop runs one batch at a time); sqlite3 checks the creating thread.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
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


def _connect_writer(path: Path) -> sqlite3.Connection:
    """The writer connection: commits without fsync and without checkpointing (the writer
    thread fsyncs the WAL, the checkpointer checkpoints) and never waits for a lock itself —
    it may run on the event loop, which must not sleep in SQLite's busy handler;
    ``_batch_steps`` is told when it may wait."""
    conn = _connect(path, "NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


class _WalFile:
    """The database's ``-wal`` file, fsynced before a batch is acknowledged.

    fsync acts on the file, not on the descriptor: SQLite's own descriptor need not be reached.
    The file is looked up again when its inode changed (SQLite deletes the WAL when the last
    connection closes; another process may then have made a new one).
    """

    def __init__(self, database_path: Path) -> None:
        self.path = database_path.with_name(database_path.name + "-wal")
        self._fd: int | None = None
        self._inode = -1

    def sync(self) -> None:
        """fdatasync the WAL (in the writer thread); raises ``OSError`` when it fails."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return  # no WAL: nothing was committed since the last connection closed it
        if inode != self._inode:
            self.close()
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._inode = os.fstat(self._fd).st_ino
            _fsync_directory(self.path.parent)  # the WAL's name, new, durable too
        assert self._fd is not None
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._inode = -1


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


def _migrate_waiting(conn: sqlite3.Connection, migrations: list[Migration]) -> list[int]:
    """``_migrate`` on the writer connection, which may wait for a lock meanwhile (another
    maskline starting on the same file)."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        return _migrate(conn, migrations)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


@dataclass(slots=True)
class _Pending:
    op: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    in_loop: bool


class _LockBusyError(Exception):
    """Another process holds the database's write lock: the batch waits in the writer thread."""


def _batch_steps(
    conn: sqlite3.Connection,
    ops: list[Callable[[sqlite3.Connection], Any]],
    *,
    may_wait: bool,
) -> Generator[None, None, list[tuple[bool, Any]]]:
    """Run ``ops`` in one transaction, each under a SAVEPOINT (a lone op: the transaction
    itself); commit once. A generator that pauses between two ops (the event loop serves its
    I/O there, the transaction open); it returns the results.

    Results are per op ``(True, value)`` or ``(False, exception)``.  A failing op is rolled back
    to its savepoint and does not affect the others.  If the COMMIT itself fails, everything is
    rolled back and the commit error is raised (every caller of the batch gets it); so it is
    when the generator is closed before its end. ``may_wait``: wait up to ``BUSY_TIMEOUT_MS``
    for a write lock another process holds (the writer thread); otherwise ``_LockBusyError`` at
    once, nothing run (the event loop).
    """
    results: list[tuple[bool, Any]] = []
    if may_wait:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")
    else:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            primary_code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # extended → primary
            if primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _LockBusyError from error
            raise
    try:
        if len(ops) == 1:
            # Alone in its batch, an op needs no savepoint: the transaction is one (two
            # statements fewer; in the writer thread each is a GIL hand-off with the loop).
            try:
                value = ops[0](conn)
            except Exception as error:  # the op's own failure is its caller's business
                conn.execute("ROLLBACK")
                return [(False, error)]
            conn.execute("COMMIT")
            return [(True, value)]
        for index, op in enumerate(ops):
            if index:
                yield
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
    except BaseException:  # GeneratorExit included: closed half-way, nothing is kept
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def _run_batch(
    conn: sqlite3.Connection,
    ops: list[Callable[[sqlite3.Connection], Any]],
    *,
    may_wait: bool,
) -> list[tuple[bool, Any]]:
    """``_batch_steps`` without pauses (the writer thread); its results."""
    steps = _batch_steps(conn, ops, may_wait=may_wait)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            results: list[tuple[bool, Any]] = done.value
            return results


class Database:
    """A maskline SQLite database: one writer task (group commit: batches run in the writer
    thread, or on the event loop for ``write(op, in_loop=True)``, each acknowledged after the
    WAL's fsync), one read connection, and a checkpointer in a thread of its own.

    Create with ``await Database.open(path)``; finish with ``await db.close()``.
    """

    def __init__(
        self,
        *,
        path: Path,
        synchronous: Synchronous,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        checkpointer: sqlite3.Connection,
        write_executor: ThreadPoolExecutor,
        read_executor: ThreadPoolExecutor,
        checkpoint_executor: ThreadPoolExecutor,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ) -> None:
        """Internal: use ``Database.open``."""
        self.path = path
        self._writer = writer
        self._reader = reader
        self._checkpointer = checkpointer
        self._write_executor = write_executor
        self._read_executor = read_executor
        self._checkpoint_executor = checkpoint_executor
        self._wal = _WalFile(path) if synchronous == "FULL" else None
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpoint: asyncio.Future[None] | None = None
        self._checkpoint_after = -math.inf
        self._sync_failure: OSError | None = None
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(), name="maskline-db-writer"
        )
        self.batches_committed = 0  # observability: ops per batch = writes / batches
        self.ops_committed = 0
        self.loop_batches = 0  # of batches_committed, those run on the event loop
        self.checkpoints = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        migrations: list[Migration] | None = None,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
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
        checkpoint_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="maskline-db-checkpoint"
        )
        opened: list[tuple[ThreadPoolExecutor, sqlite3.Connection]] = []
        try:
            writer = await loop.run_in_executor(write_executor, _connect_writer, path)
            opened.append((write_executor, writer))
            await loop.run_in_executor(write_executor, _migrate_waiting, writer, wanted)
            reader = await loop.run_in_executor(read_executor, _connect, path, synchronous)
            opened.append((read_executor, reader))
            checkpointer = await loop.run_in_executor(
                checkpoint_executor, _connect, path, synchronous
            )
        except BaseException:
            for executor, conn in opened:
                await loop.run_in_executor(executor, conn.close)
            for executor in (write_executor, read_executor, checkpoint_executor):
                executor.shutdown(wait=True)
            raise
        return cls(
            path=path,
            synchronous=synchronous,
            writer=writer,
            reader=reader,
            checkpointer=checkpointer,
            write_executor=write_executor,
            read_executor=read_executor,
            checkpoint_executor=checkpoint_executor,
            checkpoint_interval_s=checkpoint_interval_s,
        )

    async def write(self, op: Callable[[sqlite3.Connection], T], *, in_loop: bool = False) -> T:
        """Run ``op(conn)`` in the writer's next transaction; return its value once durable.

        ``op`` is synchronous and runs in the writer thread under its own SAVEPOINT: if it raises,
        only its own changes are rolled back and the exception is raised here; the other ops of
        the batch still commit.  It must not commit or roll back itself.  If this await is
        cancelled, the op may still commit.

        ``in_loop``: run ``op`` on the event loop's own thread instead (still in a batch, still
        acknowledged only after the WAL's fsync, which the writer thread does). For short ops
        of bounded size that touch nothing but the connection, such as a round of call reports:
        the loop serves nothing else while it runs, and it saves the loop the GIL hand-offs with
        the writer thread. When another process holds the write lock, the batch goes to the
        writer thread after all (which may wait for the lock; the loop may not).
        """
        if self._closing:
            raise DatabaseClosedError("database is closed")
        if self._sync_failure is not None:
            raise StoreError(
                f"the database's WAL could not be fsynced ({self._sync_failure}); "
                "nothing is acknowledged until maskline restarts"
            )
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, future, in_loop))
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
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoint_executor, self._checkpointer.close)
        await loop.run_in_executor(self._read_executor, self._reader.close)
        # The writer closes last: the last connection checkpoints everything and removes the WAL.
        await loop.run_in_executor(self._write_executor, self._writer.close)
        if self._wal is not None:
            self._wal.close()
        for executor in (self._write_executor, self._read_executor, self._checkpoint_executor):
            executor.shutdown(wait=True)

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
            batch = self._next_batch()
            ops = [pending.op for pending in batch]
            try:
                if batch[0].in_loop:
                    results = await self._commit_in_loop(ops)
                else:
                    results = await loop.run_in_executor(
                        self._write_executor, self._commit_durably, ops
                    )
            except Exception as error:  # the batch as a whole failed (e.g. disk full at COMMIT)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            finally:
                self._start_checkpoint(loop)
            self.batches_committed += 1
            self.ops_committed += len(batch)
            for pending, (ok, value) in zip(batch, results, strict=True):
                if pending.future.done():  # the caller gave up waiting
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)

    def _next_batch(self) -> list[_Pending]:
        """The queue's first ops that run alike: all in the loop, or all in the writer thread."""
        in_loop = self._queue[0].in_loop
        limit = MAX_LOOP_BATCH_OPS if in_loop else MAX_BATCH_OPS
        size = 1
        for pending in itertools.islice(self._queue, 1, limit):
            if pending.in_loop is not in_loop:
                break
            size += 1
        batch = self._queue[:size]
        del self._queue[:size]
        return batch

    async def _commit_in_loop(
        self, ops: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        loop = asyncio.get_running_loop()
        steps = _batch_steps(self._writer, ops, may_wait=False)
        try:
            while True:
                next(steps)
                # Between two ops the loop serves what came meanwhile: a batch of many ops
                # (a report round in chunks) delays a call by one op, not by the batch.
                await asyncio.sleep(0)
        except StopIteration as done:
            results: list[tuple[bool, Any]] = done.value
        except _LockBusyError:  # another process writes: the thread waits for it, not the loop
            return await loop.run_in_executor(self._write_executor, self._commit_durably, ops)
        finally:
            steps.close()  # cancelled half-way: rolled back
        self.loop_batches += 1
        if self._wal is not None:
            await loop.run_in_executor(self._write_executor, self._sync_wal)
        return results

    def _commit_durably(
        self, ops: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        """In the writer thread: the batch, committed, then the WAL fsynced."""
        results = _run_batch(self._writer, ops, may_wait=True)
        self._sync_wal()
        return results

    def _sync_wal(self) -> None:
        """In the writer thread: fsync the WAL unless the database is not FULL. A failed fsync
        fails this batch and refuses every later write: after one, Linux may report the next
        fsync as a success with the lost pages still lost (PostgreSQL's "fsyncgate")."""
        if self._wal is None:
            return
        if self._sync_failure is not None:
            raise self._sync_failure
        try:
            self._wal.sync()
        except OSError as error:
            self._sync_failure = error
            raise

    def _start_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a commit: a PASSIVE checkpoint in its own thread, at most one at a time and one
        every ``checkpoint_interval_s``. PASSIVE copies what no reader still needs into the
        database file without taking the write lock, so the writer never waits for it."""
        now = loop.time()
        if self._checkpoint is not None or now < self._checkpoint_after:
            return
        self._checkpoint_after = now + self._checkpoint_interval_s
        self._checkpoint = loop.run_in_executor(self._checkpoint_executor, self._run_checkpoint)
        self._checkpoint.add_done_callback(self._checkpoint_done)

    def _run_checkpoint(self) -> None:
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint_done(self, done: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            # A failed checkpoint loses nothing (the WAL still holds every commit); the next one
            # tries again.
            _log.warning("checkpoint_failed", extra={"error": repr(error)})
        else:
            self.checkpoints += 1


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
