"""store.outbox.insert_rows: many rows as few multi-row INSERTs, in order, all or nothing per
statement — on a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.outbox import insert_rows

INSERT = "INSERT INTO t (id, name, weight) VALUES (?, ?, ?)"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    connection.execute(
        "CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT, weight REAL)"
    )
    yield connection
    connection.close()


def statements_run(conn: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    return seen


@pytest.mark.parametrize("count", [1, 2, 255, 256, 257, 600])
def test_every_row_goes_in_in_order_in_statements_of_up_to_256(
    conn: sqlite3.Connection, count: int
) -> None:
    rows = [(f"id-{n}", None if n % 3 else f"name {n}", n / 4) for n in range(count)]
    seen = statements_run(conn)
    insert_rows(conn, INSERT, rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT id, name, weight FROM t ORDER BY seq").fetchall() == rows
    assert len(seen) == -(-count // 256)  # one statement per 256 rows, rounded up
    assert all(
        statement.startswith("INSERT INTO t (id, name, weight) VALUES") for statement in seen
    )


def test_no_rows_run_nothing(conn: sqlite3.Connection) -> None:
    seen = statements_run(conn)
    insert_rows(conn, INSERT, [])
    assert seen == [] and conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_wide_rows_stay_within_sqlites_bound_variables(conn: sqlite3.Connection) -> None:
    columns = [f"c{n}" for n in range(200)]
    conn.execute(f"CREATE TABLE wide ({', '.join(columns)})")
    insert = f"INSERT INTO wide ({', '.join(columns)}) VALUES ({', '.join('?' * 200)})"
    rows = [tuple(range(row, row + 200)) for row in range(300)]  # 60,000 values
    seen = statements_run(conn)
    insert_rows(conn, insert, rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT c0, c199 FROM wide").fetchall() == [
        (r, r + 199) for r in range(300)
    ]
    assert len(seen) == 2  # 163 rows (32,600 variables) then 137


def test_a_duplicate_fails_its_statement_whole(conn: sqlite3.Connection) -> None:
    insert_rows(conn, INSERT, [("taken", "first", 1.0)])
    with pytest.raises(sqlite3.IntegrityError):
        insert_rows(
            conn, INSERT, [("new-1", "a", 1.0), ("taken", "again", 2.0), ("new-2", "b", 3.0)]
        )
    assert conn.execute("SELECT id, name FROM t").fetchall() == [("taken", "first")]


def test_a_statement_not_of_one_row_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError, match="one row of placeholders"):
        insert_rows(conn, "INSERT INTO t SELECT * FROM t", [("x",)])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
