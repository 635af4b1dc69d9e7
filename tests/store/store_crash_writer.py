"""Helper process for test_store_crash: write bindings, print each sub_id once acknowledged.

Usage: ``python store_crash_writer.py DB_PATH COUNT CONCURRENCY [in-loop]``.  Prints ``pool
<key>`` first, then one sub_id per line after ``insert_binding`` returned (the write is durable),
flushing each line, so whatever the parent read before it SIGKILLs this process must survive the
kill. With ``in-loop``: rows of a table ``kv`` instead, each written by an op on the event loop
(``Database.write(op, in_loop=True)``); it prints ``table kv``, then each acknowledged key.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

from routing.model import Binding, BindingType, PhoneNumber, SubId
from store import Database, create_pool, insert_binding

X = PhoneNumber("+8617000000001")


async def main(path: Path, count: int, concurrency: int) -> None:
    """Write ``count`` bindings from ``concurrency`` tasks, reporting each acknowledgement."""
    db = await Database.open(path)
    pool = await create_pool(db, type=BindingType.AXB, name="crash", tenant_id=None)
    sys.stdout.write(f"pool {pool}\n")
    sys.stdout.flush()

    async def worker(first: int) -> None:
        for n in range(first, count, concurrency):
            sub_id = SubId(f"crash-{n:07d}")
            await insert_binding(
                db,
                Binding(
                    sub_id=sub_id,
                    pool_key=pool,
                    type=BindingType.AXB,
                    x=X,
                    a=PhoneNumber(f"+86138{n:08d}"),
                    b=PhoneNumber(f"+86139{n:08d}"),
                    expires_at=4_000_000_000.0,
                ),
            )
            sys.stdout.write(f"{sub_id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await db.close()


async def main_in_loop(path: Path, count: int, concurrency: int) -> None:
    """Write ``count`` rows of ``kv`` from ``concurrency`` tasks with ops run on the loop."""
    db = await Database.open(path)
    await db.write(lambda conn: conn.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"))
    sys.stdout.write("table kv\n")
    sys.stdout.flush()

    def insert(n: int) -> Callable[[sqlite3.Connection], object]:
        return lambda conn: conn.execute("INSERT INTO kv VALUES (?, 'x')", (n,))

    async def worker(first: int) -> None:
        for n in range(first, count, concurrency):
            await db.write(insert(n), in_loop=True)
            sys.stdout.write(f"{n}\n")
            sys.stdout.flush()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    await db.close()


if __name__ == "__main__":
    arguments = (Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    if sys.argv[4:] == ["in-loop"]:
        asyncio.run(main_in_loop(*arguments))
    else:
        asyncio.run(main(*arguments))
