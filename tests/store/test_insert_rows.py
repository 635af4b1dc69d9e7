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


@pytest.mark.parametrize(
    ("count", "statements"), [(1, 1), (2, 1), (3, 2), (31, 5), (32, 1), (33, 2), (100, 4)]
)
def test_every_row_goes_in_in_order_in_statements_of_up_to_32(
    conn: sqlite3.Connection, count: int, statements: int
) -> None:
    rows = [(f"id-{n}", None if n % 3 else f"name {n}", n / 4) for n in range(count)]
    seen = statements_run(conn)
    insert_rows(conn, INSERT, rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT id, name, weight FROM t ORDER BY seq").fetchall() == rows
    # 32 rows a statement, the rest in power-of-two statements: 100 = 3 x 32 + 4.
    assert len(seen) == statements
    assert all(
        statement.startswith("INSERT INTO t (id, name, weight) VALUES") for statement in seen
    )


def test_no_rows_run_nothing(conn: sqlite3.Connection) -> None:
    seen = statements_run(conn)
    insert_rows(conn, INSERT, [])
    assert seen == [] and conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_wide_rows_stay_within_sqlites_bound_variables(conn: sqlite3.Connection) -> None:
    # 32 rows of 1,500 columns would bind 48,000 variables; SQLite takes 32,766.
    columns = [f"c{n}" for n in range(1500)]
    conn.execute(f"CREATE TABLE wide ({', '.join(columns)})")
    insert = f"INSERT INTO wide ({', '.join(columns)}) VALUES ({', '.join('?' * 1500)})"
    rows = [tuple(range(row, row + 1500)) for row in range(40)]
    seen = statements_run(conn)
    insert_rows(conn, insert, rows)
    conn.set_trace_callback(None)
    assert conn.execute("SELECT c0, c1499 FROM wide").fetchall() == [
        (r, r + 1499) for r in range(40)
    ]
    assert len(seen) == 3  # 16 + 16 + 8 rows


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
