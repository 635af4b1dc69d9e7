"""Crash safety: every binding acknowledged before a SIGKILL is in the database after reopening."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from routing.model import PoolKey, SubId
from store import Database, get_binding, get_pool, load_active_bindings

HELPER = Path(__file__).with_name("store_crash_writer.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("concurrency", [1, 64])
async def test_acknowledged_bindings_survive_sigkill(tmp_path: Path, concurrency: int) -> None:
    path = tmp_path / "crash.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(HELPER), str(path), "1000000", str(concurrency)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert process.stdout is not None
    header = process.stdout.readline().decode()
    assert header.startswith("pool "), header
    pool = PoolKey(header.split()[1])
    acknowledged: list[str] = []
    # Kill mid-stream, while writes are in flight.
    while len(acknowledged) < 300:
        line = process.stdout.readline().decode()
        assert line, "helper ended early"
        acknowledged.append(line.strip())
    process.send_signal(signal.SIGKILL)
    tail = process.stdout.read().decode()
    process.wait()
    assert process.returncode == -signal.SIGKILL
    # Lines printed before the kill count too; a torn last line (no newline) does not.
    acknowledged += [line for line in tail.split("\n")[:-1] if line]

    db = await Database.open(path)
    try:
        assert await get_pool(db, pool) is not None
        stored = {b.sub_id for b in await load_active_bindings(db, 0.0)}
        missing = [s for s in acknowledged if s not in stored]
        assert missing == []
        assert await get_binding(db, SubId(acknowledged[-1])) is not None
        ok = await db.read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])
        assert ok == "ok"
    finally:
        await db.close()


async def test_rows_acknowledged_from_ops_on_the_loop_survive_sigkill(tmp_path: Path) -> None:
    # Ops on the event loop commit without fsync; their callers are answered after the
    # writer thread's fsync of the WAL. Whatever was answered must be there after a kill.
    path = tmp_path / "crash.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(HELPER), str(path), "1000000", "16", "in-loop"],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdout.readline().decode() == "table kv\n"
    acknowledged: list[int] = []
    while len(acknowledged) < 300:
        line = process.stdout.readline().decode()
        assert line, "helper ended early"
        acknowledged.append(int(line))
    process.send_signal(signal.SIGKILL)
    tail = process.stdout.read().decode()
    process.wait()
    assert process.returncode == -signal.SIGKILL
    acknowledged += [int(line) for line in tail.split("\n")[:-1] if line]

    db = await Database.open(path)
    try:
        stored = await db.read(lambda c: {row[0] for row in c.execute("SELECT k FROM kv")})
        assert [k for k in acknowledged if k not in stored] == []
        ok = await db.read(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0])
        assert ok == "ok"
    finally:
        await db.close()
