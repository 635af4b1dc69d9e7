"""Repository of call recordings: the "recording ready" events and the call → WAV link.

Schema and ordering rules: ``store/migrations/0004_recordings.sql``. ``recording_events`` is the
authoritative link from a call (maskline's call reference, ``call_records.call_id``) to its WAV;
``call_records.recording_path`` mirrors it for the CDR and the reports, filled by whichever of
the two writes comes second (:func:`attach_recording` or the insert trigger).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from media.recording import RecordingFile
from routing.model import PoolKey
from store.db import Database
from store.repositories import ConflictError

__all__ = [
    "RecordingRow",
    "attach_recording",
    "expired_recordings",
    "kept_recording_paths",
    "mark_recordings_deleted",
    "recording_events_after",
    "recording_of",
]

_COLUMNS: Final = (
    "id, call_id, pool_key, tenant_id, path, duration_s, size_bytes, created_at, deleted_at"
)


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One recording: its "ready" event and where the WAV is (``deleted_at``: removed)."""

    id: int  # event order
    call_id: str
    pool_key: PoolKey | None
    tenant_id: str | None
    path: str
    duration_s: float
    size_bytes: int
    created_at: float  # UTC epoch seconds
    deleted_at: float | None

    @property
    def present(self) -> bool:
        """Whether the file is still kept (not removed by retention)."""
        return self.deleted_at is None


def _row(row: sqlite3.Row) -> RecordingRow:
    return RecordingRow(
        id=int(row[0]),
        call_id=str(row[1]),
        pool_key=None if row[2] is None else PoolKey(row[2]),
        tenant_id=row[3],
        path=str(row[4]),
        duration_s=float(row[5]),
        size_bytes=int(row[6]),
        created_at=float(row[7]),
        deleted_at=None if row[8] is None else float(row[8]),
    )


def _select_by_call(conn: sqlite3.Connection, call_id: str) -> RecordingRow | None:
    found = conn.execute(
        f"SELECT {_COLUMNS} FROM recording_events WHERE call_id = ?",  # noqa: S608
        (call_id,),
    ).fetchone()
    return None if found is None else _row(found)


async def attach_recording(
    db: Database,
    *,
    call_id: str,
    file: RecordingFile,
    pool_key: str | None,
    now: float | None = None,
) -> RecordingRow:
    """Record that ``call_id``'s WAV is ready, in one transaction: the "recording ready" event
    (with the pool's tenant) and ``call_records.recording_path`` of the call's record if it is
    already written (otherwise the insert trigger fills it in later).

    Idempotent for a retry with the same file: the existing event is returned. Another file for
    the same call raises ``ConflictError`` and changes nothing.
    """
    created = time.time() if now is None else now
    path = str(file.path)

    def op(conn: sqlite3.Connection) -> RecordingRow:
        existing = _select_by_call(conn, call_id)
        if existing is not None:
            if existing.path != path or existing.deleted_at is not None:
                raise ConflictError(f"call {call_id} already has a recording")
            return existing
        owner = conn.execute("SELECT tenant_id FROM pools WHERE pool_key = ?", (pool_key,))
        tenant = owner.fetchone()
        conn.execute(
            "INSERT INTO recording_events"
            " (call_id, pool_key, tenant_id, path, duration_s, size_bytes, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                call_id,
                pool_key,
                None if tenant is None else tenant[0],
                path,
                file.duration_s,
                file.size_bytes,
                created,
            ),
        )
        conn.execute(
            "UPDATE call_records SET recording_path = ? WHERE call_id = ?", (path, call_id)
        )
        row = _select_by_call(conn, call_id)
        assert row is not None  # inserted just above, same transaction
        return row

    return await db.write(op)


async def recording_of(db: Database, call_id: str) -> RecordingRow | None:
    """The recording of ``call_id`` (present or removed by retention), or None."""

    def fn(conn: sqlite3.Connection) -> RecordingRow | None:
        return _select_by_call(conn, call_id)

    return await db.read(fn)


async def expired_recordings(
    db: Database, *, created_before: float, limit: int = 500
) -> list[RecordingRow]:
    """Up to ``limit`` kept recordings created before ``created_before``, oldest first."""

    def fn(conn: sqlite3.Connection) -> list[RecordingRow]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM recording_events"  # noqa: S608
            " WHERE deleted_at IS NULL AND created_at < ? ORDER BY created_at, id LIMIT ?",
            (created_before, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    return await db.read(fn)


async def mark_recordings_deleted(db: Database, call_ids: Sequence[str], *, now: float) -> int:
    """Mark the recordings of ``call_ids`` removed and clear their call records' path, in one
    transaction; returns how many recordings changed (already removed ones are skipped)."""
    if not call_ids:
        return 0
    ids = list(call_ids)

    def op(conn: sqlite3.Connection) -> int:
        changed = 0
        for call_id in ids:
            row = _select_by_call(conn, call_id)
            if row is None or row.deleted_at is not None:
                continue
            conn.execute("UPDATE recording_events SET deleted_at = ? WHERE id = ?", (now, row.id))
            conn.execute(
                "UPDATE call_records SET recording_path = NULL"
                " WHERE call_id = ? AND recording_path = ?",
                (call_id, row.path),
            )
            changed += 1
        return changed

    return await db.write(op)


async def recording_events_after(
    db: Database, after_id: int, *, limit: int = 500
) -> list[RecordingRow]:
    """ "Recording ready" events with an id above ``after_id``, in id order (for the reports)."""

    def fn(conn: sqlite3.Connection) -> list[RecordingRow]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM recording_events WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after_id, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    return await db.read(fn)


async def kept_recording_paths(db: Database) -> frozenset[str]:
    """The paths of every recording still kept (retention has not removed it)."""

    def fn(conn: sqlite3.Connection) -> frozenset[str]:
        rows = conn.execute("SELECT path FROM recording_events WHERE deleted_at IS NULL")
        return frozenset(str(row[0]) for row in rows)

    return await db.read(fn)
