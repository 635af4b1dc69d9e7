"""Tenants' enterprise ringback tones in the store (table ``ringback_tones``, migration 0005).

A row records a tone that exists, the name of its WAV file in ``[audio] ringback_dir`` and how
it was made; the audio is the file. Every write is one ``db.write`` op (one transaction).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from store.db import Database

__all__ = [
    "RingbackToneRow",
    "ToneSource",
    "delete_tone",
    "get_tone",
    "list_tones",
    "upsert_tone",
]


class ToneSource(StrEnum):
    """How a tone's audio was made."""

    UPLOAD = "upload"  # decoded from an uploaded file
    TTS = "tts"  # spoken by espeak-ng from text


@dataclass(frozen=True, slots=True)
class RingbackToneRow:
    """A tenant's tone; times UTC epoch seconds."""

    tenant_id: str
    tone_id: str
    file_name: str
    source: ToneSource
    duration_ms: int
    created_at: float
    updated_at: float
    voice: str | None = None
    text: str | None = None


_COLUMNS = "tenant_id, tone_id, file_name, source, duration_ms, created_at, updated_at, voice, text"


def _row(row: sqlite3.Row) -> RingbackToneRow:
    return RingbackToneRow(
        tenant_id=row["tenant_id"],
        tone_id=row["tone_id"],
        file_name=row["file_name"],
        source=ToneSource(row["source"]),
        duration_ms=row["duration_ms"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        voice=row["voice"],
        text=row["text"],
    )


async def upsert_tone(db: Database, tone: RingbackToneRow) -> RingbackToneRow:
    """Insert the tone, or replace an existing one of the same (tenant, tone id) in place.

    A replacement keeps the first ``created_at``; the stored row is returned. A tenant that
    does not exist fails the foreign key (``sqlite3.IntegrityError``).
    """

    def op(conn: sqlite3.Connection) -> RingbackToneRow:
        conn.execute(
            "INSERT INTO ringback_tones (tenant_id, tone_id, file_name, source, duration_ms,"
            " created_at, updated_at, voice, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, tone_id) DO UPDATE SET"
            " file_name = excluded.file_name, source = excluded.source,"
            " duration_ms = excluded.duration_ms, updated_at = excluded.updated_at,"
            " voice = excluded.voice, text = excluded.text",
            (
                tone.tenant_id,
                tone.tone_id,
                tone.file_name,
                str(tone.source),
                tone.duration_ms,
                tone.created_at,
                tone.updated_at,
                tone.voice,
                tone.text,
            ),
        )
        stored = conn.execute(
            "SELECT * FROM ringback_tones WHERE tenant_id = ? AND tone_id = ?",
            (tone.tenant_id, tone.tone_id),
        ).fetchone()
        return _row(stored)

    return await db.write(op)


async def get_tone(db: Database, tenant_id: str, tone_id: str) -> RingbackToneRow | None:
    """The tenant's tone ``tone_id``, or None."""

    def fn(conn: sqlite3.Connection) -> RingbackToneRow | None:
        row = conn.execute(
            "SELECT * FROM ringback_tones WHERE tenant_id = ? AND tone_id = ?",
            (tenant_id, tone_id),
        ).fetchone()
        return None if row is None else _row(row)

    return await db.read(fn)


async def list_tones(db: Database, tenant_id: str) -> list[RingbackToneRow]:
    """The tenant's tones, by tone id."""

    def fn(conn: sqlite3.Connection) -> list[RingbackToneRow]:
        rows = conn.execute(
            "SELECT * FROM ringback_tones WHERE tenant_id = ? ORDER BY tone_id",
            (tenant_id,),
        ).fetchall()
        return [_row(row) for row in rows]

    return await db.read(fn)


async def delete_tone(db: Database, tenant_id: str, tone_id: str) -> RingbackToneRow | None:
    """Delete the tenant's tone; the deleted row (for its file), or None when there was none."""

    def op(conn: sqlite3.Connection) -> RingbackToneRow | None:
        row = conn.execute(
            "SELECT * FROM ringback_tones WHERE tenant_id = ? AND tone_id = ?",
            (tenant_id, tone_id),
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "DELETE FROM ringback_tones WHERE tenant_id = ? AND tone_id = ?", (tenant_id, tone_id)
        )
        return _row(row)

    return await db.write(op)
