"""Repository of SMS through X (SPEC §5): messages, unsubscribes, pool SMS settings.

Schema and the meaning of each state: ``store/migrations/0008_sms.sql``. Same conventions as
the other repositories: times UTC epoch seconds, numbers E.164, ``*_in`` functions are op
building blocks running inside the caller's ``Database.write`` transaction, the ``async`` ones
are whole transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final

from routing.model import BindingType, PhoneNumber, PoolKey
from store.db import Database
from store.repositories import ConflictError, SmsMode

__all__ = [
    "FINAL_STATES",
    "MAX_KEYWORDS",
    "MAX_KEYWORD_CHARS",
    "PoolSms",
    "SmsMessage",
    "SmsState",
    "add_unsubscribe_in",
    "delete_old_texts",
    "due_pending",
    "get_message",
    "get_pool_sms",
    "insert_message_in",
    "is_unsubscribed_in",
    "list_messages",
    "mark_billed_in",
    "message_in",
    "pool_of_number",
    "sending_messages",
    "set_pool_sms",
    "unbilled_in",
    "unsubscribes",
    "update_message_in",
]

#: Keywords of one pool's whitelist, and characters of one keyword.
MAX_KEYWORDS: Final = 200
MAX_KEYWORD_CHARS: Final = 64


class SmsState(StrEnum):
    """Where a message stands (0008_sms.sql)."""

    INTERCEPTED = "intercepted"
    UNSUBSCRIBE = "unsubscribe"
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISCARDED = "discarded"


#: States a message never leaves.
FINAL_STATES: Final = frozenset(
    {
        SmsState.INTERCEPTED,
        SmsState.UNSUBSCRIBE,
        SmsState.DELIVERED,
        SmsState.FAILED,
        SmsState.DISCARDED,
    }
)


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One stored message (a row of ``sms_messages``)."""

    id: str
    sip_call_id: str
    pool_key: PoolKey
    tenant_id: str | None
    x: PhoneNumber
    state: SmsState
    cause: str
    text: str | None  # None once retention deleted it
    text_chars: int
    text_sha256: str
    segments: int
    received_at: float
    sub_id: str | None = None
    out_id: str | None = None
    sender: PhoneNumber | None = None
    recipient: PhoneNumber | None = None
    phone_no: PhoneNumber | None = None
    peer_no: PhoneNumber | None = None
    call_type: int | None = None
    confirm_deadline: float | None = None
    confirmed_at: float | None = None
    sent_at: float | None = None
    sip_status: int | None = None
    finished_at: float | None = None
    content_reported: bool = False
    billed: bool = False
    text_deleted_at: float | None = None


_COLUMNS: Final = tuple(f.name for f in fields(SmsMessage))
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM sms_messages"  # noqa: S608


def _message(row: Sequence[object]) -> SmsMessage:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["state"] = SmsState(str(values["state"]))
    values["content_reported"] = bool(values["content_reported"])
    values["billed"] = bool(values["billed"])
    return SmsMessage(**values)  # type: ignore[arg-type]


def _params(message: SmsMessage) -> tuple[object, ...]:
    return tuple(
        int(v) if isinstance(v, bool) else str(v) if isinstance(v, StrEnum) else v
        for v in (getattr(message, c) for c in _COLUMNS)
    )


def insert_message_in(conn: sqlite3.Connection, message: SmsMessage) -> None:
    """Insert ``message``; ``ConflictError`` for an id that exists."""
    marks = ", ".join("?" * len(_COLUMNS))
    try:
        conn.execute(
            f"INSERT INTO sms_messages ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608
            _params(message),
        )
    except sqlite3.IntegrityError as error:
        raise ConflictError(f"sms message {message.id}: {error}") from error


def update_message_in(conn: sqlite3.Connection, message: SmsMessage) -> None:
    """Write every column of ``message`` over the row of its id (it must exist)."""
    others = [c for c in _COLUMNS if c != "id"]
    assignments = ", ".join(f"{c} = ?" for c in others)
    values = _params(message)[1:]
    cursor = conn.execute(
        f"UPDATE sms_messages SET {assignments} WHERE id = ?",  # noqa: S608
        (*values, message.id),
    )
    if cursor.rowcount != 1:
        raise ConflictError(f"sms message {message.id} does not exist")


def message_in(conn: sqlite3.Connection, message_id: str) -> SmsMessage | None:
    """The message with this id, or None."""
    row = conn.execute(f"{_SELECT} WHERE id = ?", (message_id,)).fetchone()
    return None if row is None else _message(tuple(row))


async def get_message(db: Database, message_id: str) -> SmsMessage | None:
    """The message with this id, or None."""
    return await db.read(lambda conn: message_in(conn, message_id))


async def list_messages(
    db: Database,
    *,
    pool_keys: Sequence[PoolKey] | None,
    state: SmsState | None = None,
    limit: int = 100,
) -> list[SmsMessage]:
    """Messages of ``pool_keys`` (None: every pool), newest first, of ``state`` if given."""
    where: list[str] = []
    params: list[object] = []
    if pool_keys is not None:
        if not pool_keys:
            return []
        where.append(f"pool_key IN ({', '.join('?' * len(pool_keys))})")
        params += list(pool_keys)
    if state is not None:
        where.append("state = ?")
        params.append(str(state))
    clause = f" WHERE {' AND '.join(where)}" if where else ""

    def fn(conn: sqlite3.Connection) -> list[SmsMessage]:
        rows = conn.execute(
            f"{_SELECT}{clause} ORDER BY received_at DESC, id LIMIT ?", (*params, limit)
        ).fetchall()
        return [_message(tuple(r)) for r in rows]

    return await db.read(fn)


async def due_pending(db: Database, now: float, limit: int = 500) -> list[SmsMessage]:
    """Held messages whose confirmation deadline has passed, oldest deadline first."""

    def fn(conn: sqlite3.Connection) -> list[SmsMessage]:
        rows = conn.execute(
            f"{_SELECT} WHERE state = 'pending' AND confirm_deadline <= ?"
            " ORDER BY confirm_deadline LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_message(tuple(r)) for r in rows]

    return await db.read(fn)


async def sending_messages(db: Database) -> list[SmsMessage]:
    """Messages taken for delivery whose outcome was never written (a crash), oldest first."""

    def fn(conn: sqlite3.Connection) -> list[SmsMessage]:
        rows = conn.execute(f"{_SELECT} WHERE state = 'sending' ORDER BY received_at").fetchall()
        return [_message(tuple(r)) for r in rows]

    return await db.read(fn)


def unbilled_in(conn: sqlite3.Connection, limit: int) -> list[SmsMessage]:
    """Final messages the billing job has not rated yet, in the order they finished."""
    rows = conn.execute(
        f"{_SELECT} WHERE billed = 0 AND finished_at IS NOT NULL ORDER BY finished_at, id LIMIT ?",
        (limit,),
    ).fetchall()
    return [_message(tuple(r)) for r in rows]


def mark_billed_in(conn: sqlite3.Connection, message_ids: Sequence[str]) -> None:
    """The billing job rated these messages."""
    conn.executemany("UPDATE sms_messages SET billed = 1 WHERE id = ?", [(i,) for i in message_ids])


async def delete_old_texts(
    db: Database,
    *,
    before: float,
    now: float,
    report_ids: Sequence[str] = (),
    limit: int = 1000,
) -> int:
    """Delete the text of up to ``limit`` messages received before ``before`` that are no
    longer held or in delivery (their record, reports and charges stay); the content in their
    ``sms_intercept`` reports (``report_ids`` suffixes, see ``api.sms``) is blanked too.
    Returns how many texts were deleted."""

    def op(conn: sqlite3.Connection) -> int:
        rows = conn.execute(
            "SELECT id FROM sms_messages WHERE text IS NOT NULL AND received_at < ?"
            " AND state NOT IN ('pending', 'sending') ORDER BY received_at LIMIT ?",
            (before, limit),
        ).fetchall()
        ids = [str(r[0]) for r in rows]
        conn.executemany(
            "UPDATE sms_messages SET text = NULL, text_deleted_at = ? WHERE id = ?",
            [(now, i) for i in ids],
        )
        # The reports' copies of the content (delivered or not): same retention.
        conn.executemany(
            "UPDATE report_outbox SET payload = json_set(payload, '$.sms_content', NULL,"
            " '$.sms_content_deleted', json('true')) WHERE id = ?",
            [(f"{i}{suffix}",) for i in ids for suffix in report_ids],
        )
        return len(ids)

    return await db.write(op)


# ------------------------------------------------------------------------------ unsubscribes


def is_unsubscribed_in(conn: sqlite3.Connection, x: PhoneNumber, number: PhoneNumber) -> bool:
    """Whether ``number`` replied T to ``x``."""
    found = conn.execute(
        "SELECT 1 FROM sms_unsubscribes WHERE x = ? AND number = ?", (x, number)
    ).fetchone()
    return found is not None


def add_unsubscribe_in(
    conn: sqlite3.Connection,
    *,
    x: PhoneNumber,
    number: PhoneNumber,
    pool_key: PoolKey,
    message_id: str,
    now: float,
) -> bool:
    """Record that ``number`` unsubscribed from ``x``; False when it already had."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO sms_unsubscribes (x, number, pool_key, message_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (x, number, pool_key, message_id, now),
    )
    return cursor.rowcount == 1


async def unsubscribes(db: Database, pool_key: PoolKey) -> list[tuple[PhoneNumber, PhoneNumber]]:
    """(X, number) of every unsubscribe in the pool, oldest first."""

    def fn(conn: sqlite3.Connection) -> list[tuple[PhoneNumber, PhoneNumber]]:
        rows = conn.execute(
            "SELECT x, number FROM sms_unsubscribes WHERE pool_key = ? ORDER BY created_at",
            (pool_key,),
        ).fetchall()
        return [(PhoneNumber(r[0]), PhoneNumber(r[1])) for r in rows]

    return await db.read(fn)


# ------------------------------------------------------------------------------ pool settings


@dataclass(frozen=True, slots=True)
class PoolSms:
    """A pool's SMS settings (SPEC §5)."""

    pool_key: PoolKey
    tenant_id: str | None
    type: BindingType
    mode: SmsMode
    keywords: tuple[str, ...]
    confirm: bool


def _pool_sms(row: Sequence[object]) -> PoolSms:
    keywords = json.loads(str(row[4]))
    return PoolSms(
        pool_key=PoolKey(str(row[0])),
        tenant_id=None if row[1] is None else str(row[1]),
        type=BindingType(str(row[2])),
        mode=SmsMode(str(row[3])),
        keywords=tuple(str(k) for k in keywords) if isinstance(keywords, list) else (),
        confirm=bool(row[5]),
    )


_POOL_SMS: Final = (
    "SELECT pool_key, tenant_id, type, sms_mode, sms_keywords, sms_confirm FROM pools"
)


async def get_pool_sms(db: Database, pool_key: PoolKey) -> PoolSms | None:
    """The pool's SMS settings, or None when there is no such pool."""

    def fn(conn: sqlite3.Connection) -> PoolSms | None:
        row = conn.execute(f"{_POOL_SMS} WHERE pool_key = ?", (pool_key,)).fetchone()
        return None if row is None else _pool_sms(tuple(row))

    return await db.read(fn)


async def pool_of_number(db: Database, x: PhoneNumber) -> PoolSms | None:
    """The SMS settings of the pool holding ``x`` (locked numbers keep their pool), or None."""

    def fn(conn: sqlite3.Connection) -> PoolSms | None:
        row = conn.execute(
            f"{_POOL_SMS} WHERE pool_key = (SELECT pool_key FROM numbers WHERE number = ?)",  # noqa: S608
            (x,),
        ).fetchone()
        return None if row is None else _pool_sms(tuple(row))

    return await db.read(fn)


async def set_pool_sms(
    db: Database,
    pool_key: PoolKey,
    *,
    keywords: Sequence[str] | None = None,
    confirm: bool | None = None,
) -> bool:
    """Replace the pool's keyword whitelist and/or its confirm-before-send flag (None:
    unchanged); False when there is no such pool. Keywords are stored as given (checked by
    the caller)."""
    assignments: list[str] = []
    values: list[object] = []
    if keywords is not None:
        assignments.append("sms_keywords = ?")
        values.append(json.dumps(list(keywords), ensure_ascii=False))
    if confirm is not None:
        assignments.append("sms_confirm = ?")
        values.append(int(confirm))

    def op(conn: sqlite3.Connection) -> bool:
        if not assignments:
            return (
                conn.execute("SELECT 1 FROM pools WHERE pool_key = ?", (pool_key,)).fetchone()
                is not None
            )
        cursor = conn.execute(
            f"UPDATE pools SET {', '.join(assignments)} WHERE pool_key = ?",  # noqa: S608
            (*values, pool_key),
        )
        return cursor.rowcount == 1

    return await db.write(op)
