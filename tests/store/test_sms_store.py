"""store.sms against a real SQLite file: messages (insert, update, lists of work), unsubscribes,
pool SMS settings, retention of texts, and the schema's own checks."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routing.model import BindingType, NumberSpec, PhoneNumber, PoolKey
from store import (
    ConflictError,
    Database,
    NumberRow,
    SmsMessage,
    SmsMode,
    SmsState,
    add_numbers_to_pool,
    create_pool,
    create_tenant,
    import_numbers,
)
from store import sms as sms_store

X = PhoneNumber("+8617000000001")
A = PhoneNumber("+8613800138000")
B = PhoneNumber("+8613900139000")
T0 = 1_900_000_000.0


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "m.sqlite3")
    await create_tenant(database, tenant_id="T1", name="t", now=T0)
    yield database
    await database.close()


@pytest.fixture
async def pool(db: Database) -> PoolKey:
    await import_numbers(db, [NumberRow(X, "北京", "北京", "CMCC", NumberSpec.VIRTUAL)], now=T0)
    key = await create_pool(db, type=BindingType.AXB, name="p", tenant_id="T1", now=T0)
    assert await add_numbers_to_pool(db, pool_key=key, count=1, city=None, now=T0) == [X]
    return key


def message(pool: PoolKey, message_id: str = "m1", **changes: object) -> SmsMessage:
    base = SmsMessage(
        id=message_id,
        sip_call_id="call-1",
        pool_key=pool,
        tenant_id="T1",
        x=X,
        state=SmsState.INTERCEPTED,
        cause="intercept_mode",
        text="你好",
        text_chars=2,
        text_sha256="0" * 64,
        segments=1,
        received_at=T0,
        sender=A,
        recipient=B,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_insert_get_update(db: Database, pool: PoolKey) -> None:
    stored = message(pool, finished_at=T0, content_reported=True)
    await db.write(lambda conn: sms_store.insert_message_in(conn, stored))
    assert await sms_store.get_message(db, "m1") == stored
    assert await sms_store.get_message(db, "nope") is None
    with pytest.raises(ConflictError):
        await db.write(lambda conn: sms_store.insert_message_in(conn, stored))
    changed = dataclasses.replace(stored, state=SmsState.DELIVERED, sip_status=200, billed=True)
    await db.write(lambda conn: sms_store.update_message_in(conn, changed))
    assert await sms_store.get_message(db, "m1") == changed
    with pytest.raises(ConflictError):
        ghost = dataclasses.replace(stored, id="ghost")
        await db.write(lambda conn: sms_store.update_message_in(conn, ghost))


async def test_work_lists(db: Database, pool: PoolKey) -> None:
    rows = [
        message(pool, "held-late", state=SmsState.PENDING, confirm_deadline=T0 + 100),
        message(pool, "held-soon", state=SmsState.PENDING, confirm_deadline=T0 + 10),
        message(pool, "sending", state=SmsState.SENDING, received_at=T0 + 1),
        message(pool, "done", finished_at=T0 + 2),
    ]
    for row in rows:
        await db.write(lambda conn, row=row: sms_store.insert_message_in(conn, row))
    assert [m.id for m in await sms_store.due_pending(db, T0 + 10)] == ["held-soon"]
    assert [m.id for m in await sms_store.due_pending(db, T0 + 100)] == ["held-soon", "held-late"]
    assert [m.id for m in await sms_store.sending_messages(db)] == ["sending"]
    unbilled = await db.read(lambda conn: sms_store.unbilled_in(conn, 10))
    assert [m.id for m in unbilled] == ["done"]  # only final rows are billed
    await db.write(lambda conn: sms_store.mark_billed_in(conn, ["done"]))
    assert await db.read(lambda conn: sms_store.unbilled_in(conn, 10)) == []
    pending = await sms_store.list_messages(db, pool_keys=[pool], state=SmsState.PENDING)
    assert {m.id for m in pending} == {"held-late", "held-soon"}
    assert len(await sms_store.list_messages(db, pool_keys=None)) == 4
    assert await sms_store.list_messages(db, pool_keys=[]) == []
    assert len(await sms_store.list_messages(db, pool_keys=None, limit=2)) == 2


async def test_delete_old_texts_spares_held_and_sending(db: Database, pool: PoolKey) -> None:
    for row in (
        message(pool, "old", finished_at=T0),
        message(pool, "old-held", state=SmsState.PENDING, confirm_deadline=T0 + 9),
        message(pool, "old-sending", state=SmsState.SENDING),
        message(pool, "new", received_at=T0 + 50, finished_at=T0 + 50),
    ):
        await db.write(lambda conn, row=row: sms_store.insert_message_in(conn, row))
    deleted = await sms_store.delete_old_texts(db, before=T0 + 10, now=T0 + 99)
    assert deleted == 1
    texts = {
        m.id: (m.text, m.text_deleted_at) for m in await sms_store.list_messages(db, pool_keys=None)
    }
    assert texts == {
        "old": (None, T0 + 99),
        "old-held": ("你好", None),
        "old-sending": ("你好", None),
        "new": ("你好", None),
    }
    assert await sms_store.delete_old_texts(db, before=T0 + 10, now=T0 + 100) == 0


async def test_unsubscribes_are_idempotent(db: Database, pool: PoolKey) -> None:
    def add(conn: sqlite3.Connection) -> bool:
        return sms_store.add_unsubscribe_in(
            conn, x=X, number=B, pool_key=pool, message_id="t1", now=T0
        )

    assert await db.write(add) is True
    assert await db.write(add) is False
    assert await db.read(lambda conn: sms_store.is_unsubscribed_in(conn, X, B)) is True
    assert await db.read(lambda conn: sms_store.is_unsubscribed_in(conn, X, A)) is False
    assert await sms_store.unsubscribes(db, pool) == [(X, B)]


async def test_pool_settings(db: Database, pool: PoolKey) -> None:
    settings = await sms_store.get_pool_sms(db, pool)
    assert settings is not None
    assert (settings.mode, settings.keywords, settings.confirm) == (SmsMode.OFF, (), False)
    assert await sms_store.set_pool_sms(db, pool, keywords=["验证码", "code"], confirm=True)
    found = await sms_store.pool_of_number(db, X)
    assert found is not None and found.pool_key == pool and found.tenant_id == "T1"
    assert (found.keywords, found.confirm) == (("验证码", "code"), True)
    assert await sms_store.set_pool_sms(db, pool) is True  # nothing to change, pool exists
    assert await sms_store.set_pool_sms(db, PoolKey("FC0"), confirm=True) is False
    assert await sms_store.pool_of_number(db, PhoneNumber("+8617000009999")) is None
    assert await sms_store.get_pool_sms(db, PoolKey("FC0")) is None


async def test_schema_refuses_unknown_states(db: Database, pool: PoolKey) -> None:
    bad = message(pool, state=SmsState.PENDING)

    def op(conn: sqlite3.Connection) -> None:
        sms_store.insert_message_in(conn, bad)
        conn.execute("UPDATE sms_messages SET state = 'lost' WHERE id = ?", (bad.id,))

    with pytest.raises(sqlite3.IntegrityError):
        await db.write(op)
    assert await sms_store.get_message(db, bad.id) is None  # the op rolled back whole
