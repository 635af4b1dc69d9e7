"""store.repositories against a real SQLite file."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routing.model import (
    Binding,
    BindingType,
    GroupId,
    NumberSpec,
    PhoneNumber,
    PoolKey,
    Restriction,
    SubId,
)
from store import (
    AllocationMode,
    CallRecord,
    CallType,
    ConflictError,
    Database,
    GroupNotFoundError,
    InvalidRowError,
    NotEnoughStockError,
    NumberRow,
    NumberStatus,
    PoolNotFoundError,
    ReleaseDir,
    SmsMode,
    StoreError,
    UnconnectedCause,
    add_numbers_to_pool,
    bindings_by_x,
    create_group,
    create_pool,
    create_tenant,
    get_binding,
    get_call_record,
    get_number,
    get_pool,
    group_members,
    import_numbers,
    insert_binding,
    insert_call_record,
    list_pools,
    load_active_bindings,
    load_groups,
    load_pool_inventory,
    pool_numbers,
    recent_call_records,
    set_group_members,
    stock,
    unbind,
    update_binding,
)

NOW = 1_700_000_000.0
A = PhoneNumber("+8613800138000")
B = PhoneNumber("+8613900139000")


def _row(n: int, *, city: str = "北京", spec: NumberSpec = NumberSpec.VIRTUAL) -> NumberRow:
    prefix = "+8695" if spec is NumberSpec.NATIONWIDE_95 else "+86170"
    return NumberRow(PhoneNumber(f"{prefix}{n:08d}"), city, city, "CMCC", spec)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "maskline.sqlite3")
    yield database
    await database.close()


def _binding(sub_id: str, pool_key: PoolKey, x: PhoneNumber, **kw: object) -> Binding:
    base = Binding(
        sub_id=SubId(sub_id),
        pool_key=pool_key,
        type=BindingType.AXB,
        x=x,
        a=A,
        b=B,
        expires_at=NOW + 3600,
        created_at=NOW,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


async def test_import_numbers_counts_and_skips_duplicates(db: Database) -> None:
    rows = [_row(1), _row(2), _row(2)]
    assert await import_numbers(db, rows, now=NOW) == 2
    assert await import_numbers(db, [_row(1), _row(3)], now=NOW) == 1
    info = await get_number(db, PhoneNumber("+8617000000001"))
    assert info is not None
    assert (info.city, info.spec, info.status, info.pool_key) == (
        "北京",
        NumberSpec.VIRTUAL,
        NumberStatus.FREE,
        None,
    )
    assert await get_number(db, PhoneNumber("+8617099999999")) is None


@pytest.mark.parametrize(
    "bad",
    [
        NumberRow(PhoneNumber("17000000001"), "北京", "北京", "CMCC", NumberSpec.VIRTUAL),
        NumberRow(PhoneNumber("+86170abc"), "北京", "北京", "CMCC", NumberSpec.VIRTUAL),
        NumberRow(PhoneNumber("+8617000000009"), "北京", "北京", "CMCC", 7),  # type: ignore[arg-type]
        NumberRow(PhoneNumber("+8617000000009"), " ", "北京", "CMCC", NumberSpec.VIRTUAL),
    ],
)
async def test_import_refuses_malformed_rows_atomically(db: Database, bad: NumberRow) -> None:
    with pytest.raises(InvalidRowError):
        await import_numbers(db, [_row(1), bad])
    assert await stock(db) == []


async def test_stock_per_city_and_spec(db: Database) -> None:
    await import_numbers(
        db,
        [
            _row(1),
            _row(2),
            _row(3, city="上海"),
            _row(4, spec=NumberSpec.NATIONWIDE_95, city="全国"),
        ],
    )
    rows = {(s.city, s.spec): s.free for s in await stock(db)}
    assert rows == {
        ("北京", NumberSpec.VIRTUAL): 2,
        ("上海", NumberSpec.VIRTUAL): 1,
        ("全国", NumberSpec.NATIONWIDE_95): 1,
    }


async def test_create_and_get_pool(db: Database) -> None:
    key = await create_pool(db, type=BindingType.AXN, name="rides", tenant_id=None, now=NOW)
    assert re.fullmatch(r"FC[0-9A-F]{16}", key)
    pool = await get_pool(db, key)
    assert pool is not None
    assert (pool.pool_key, pool.type, pool.name, pool.tenant_id) == (
        key,
        BindingType.AXN,
        "rides",
        None,
    )
    assert pool.allocation_mode is AllocationMode.DEFAULT
    assert pool.sms_mode is SmsMode.OFF
    assert pool.created_at == NOW
    assert await get_pool(db, PoolKey("FC0000000000000000")) is None
    other = await create_pool(db, type=BindingType.AXB, name="b", tenant_id=None)
    assert other != key
    assert [p.pool_key for p in await list_pools(db)] == [key, other]


async def test_pool_of_tenant(db: Database) -> None:
    await create_tenant(db, tenant_id="t1", name="Rides Inc", now=NOW)
    with pytest.raises(ConflictError):
        await create_tenant(db, tenant_id="t1", name="again")
    key = await create_pool(db, type=BindingType.AXB, name="p", tenant_id="t1")
    assert [p.pool_key for p in await list_pools(db, tenant_id="t1")] == [key]
    with pytest.raises(ConflictError, match="tenant"):
        await create_pool(db, type=BindingType.AXB, name="p", tenant_id="nobody")


async def test_add_numbers_to_pool_by_city_and_spec(db: Database) -> None:
    await import_numbers(
        db,
        [_row(n) for n in range(5)]
        + [_row(n, city="上海") for n in range(10, 13)]
        + [_row(n, spec=NumberSpec.NATIONWIDE_95, city="全国") for n in range(20, 22)],
    )
    axb = await create_pool(db, type=BindingType.AXB, name="axb", tenant_id=None)
    got = await add_numbers_to_pool(db, pool_key=axb, count=3, city="北京", now=NOW)
    assert len(got) == 3 and got == sorted(got)
    assert all(n.startswith("+86170") for n in got)
    assert await pool_numbers(db, axb) == got
    info = await get_number(db, got[0])
    assert info is not None
    assert (info.status, info.pool_key, info.purchased_at) == (NumberStatus.IN_POOL, axb, NOW)
    # No city: any city, but never a 95 number in an AXB pool.
    rest = await add_numbers_to_pool(db, pool_key=axb, count=5, city=None)
    assert not any(n.startswith("+8695") for n in rest)
    # 95AXN pools take only spec 3.
    p95 = await create_pool(db, type=BindingType.AXN95, name="95", tenant_id=None)
    assert len(await add_numbers_to_pool(db, pool_key=p95, count=2, city=None)) == 2
    inventory = await load_pool_inventory(db)
    assert len(inventory) == 10
    assert {i.pool_key for i in inventory} == {axb, p95}


async def test_add_numbers_prefix(db: Database) -> None:
    await import_numbers(db, [_row(1), _row(2)])
    await import_numbers(
        db, [NumberRow(PhoneNumber("+8617112345678"), "北京", "北京", "CU", NumberSpec.VIRTUAL)]
    )
    pool = await create_pool(db, type=BindingType.AXB, name="p", tenant_id=None)
    got = await add_numbers_to_pool(db, pool_key=pool, count=1, city=None, prefix="86171")
    assert got == ["+8617112345678"]


async def test_add_numbers_all_or_nothing(db: Database) -> None:
    await import_numbers(db, [_row(n) for n in range(3)])
    pool = await create_pool(db, type=BindingType.AXB, name="p", tenant_id=None)
    with pytest.raises(NotEnoughStockError) as caught:
        await add_numbers_to_pool(db, pool_key=pool, count=4, city="北京")
    assert (caught.value.requested, caught.value.available, caught.value.city) == (4, 3, "北京")
    assert await pool_numbers(db, pool) == []
    with pytest.raises(NotEnoughStockError) as caught:
        await add_numbers_to_pool(db, pool_key=pool, count=1, city="广州")
    assert caught.value.available == 0
    with pytest.raises(PoolNotFoundError):
        await add_numbers_to_pool(db, pool_key=PoolKey("FCNOPE"), count=1, city=None)
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        await add_numbers_to_pool(db, pool_key=pool, count=0, city=None)


async def _pool_with_x(db: Database, pool_type: BindingType = BindingType.AXB) -> PoolKey:
    await import_numbers(db, [_row(n) for n in range(5)])
    return await create_pool(db, type=pool_type, name="p", tenant_id=None)


X1 = PhoneNumber("+8617000000001")
X2 = PhoneNumber("+8617000000002")


async def test_binding_round_trip_and_unbind(db: Database) -> None:
    pool = await _pool_with_x(db)
    full = _binding(
        "s1",
        pool,
        X1,
        record=True,
        restriction=Restriction.BX_DISABLE,
        ring_timeout_s=30,
        out_id="order-1",
        ringback={"AXBRing_A": "tone-1"},
    )
    await insert_binding(db, full)
    await insert_binding(db, _binding("s2", pool, X1, a=PhoneNumber("+8613700137000")))
    assert await get_binding(db, SubId("s1")) == full
    assert [b.sub_id for b in await bindings_by_x(db, X1)] == ["s1", "s2"]
    with pytest.raises(ConflictError):
        await insert_binding(db, full)  # duplicate sub_id
    assert await unbind(db, SubId("s1"), NOW + 10) is True
    assert await unbind(db, SubId("s1"), NOW + 20) is False
    assert await unbind(db, SubId("nope"), NOW) is False
    assert await get_binding(db, SubId("s1")) is None
    assert await get_binding(db, SubId("s1"), include_unbound=True) == full
    assert [b.sub_id for b in await load_active_bindings(db, NOW)] == ["s2"]
    # History is kept.
    count = await db.read(lambda c: c.execute("SELECT count(*) FROM bindings").fetchone()[0])
    assert count == 2


async def test_update_binding(db: Database) -> None:
    pool = await _pool_with_x(db)
    original = _binding("s1", pool, X1)
    await insert_binding(db, original)
    changed = dataclasses.replace(
        original,
        b=PhoneNumber("+8613600136000"),
        expires_at=NOW + 7200,
        out_id="o2",
        restriction=Restriction.AX_DISABLE,
        record=True,
    )
    assert await update_binding(db, changed) is True
    assert await get_binding(db, SubId("s1")) == changed
    await unbind(db, SubId("s1"), NOW)
    assert await update_binding(db, changed) is False
    assert await update_binding(db, _binding("ghost", pool, X1)) is False


async def test_load_active_bindings_keeps_expired_with_optional_grace(db: Database) -> None:
    pool = await _pool_with_x(db)
    await insert_binding(db, _binding("live", pool, X1))
    await insert_binding(db, _binding("old", pool, X2, expires_at=NOW - 86_400))
    loaded = {b.sub_id for b in await load_active_bindings(db, NOW)}
    assert loaded == {"live", "old"}
    loaded = {b.sub_id for b in await load_active_bindings(db, NOW, expired_grace_s=3600)}
    assert loaded == {"live"}


async def test_load_active_bindings_reads_every_field_but_created_at(db: Database) -> None:
    """The start-up load builds compact bindings its own way: they must equal the stored ones
    (created_at aside, which it leaves unknown), whatever form the sub_id has."""
    pool = await _pool_with_x(db)
    other_pool = await create_pool(db, type=BindingType.AXG, name="q", tenant_id=None)
    group = await create_group(db, pool_key=other_pool, name="g", numbers=[A])
    stored = [
        # maskline's own ids: 18 digits, held as an int
        _binding("123456789012345678", pool, X1, out_id="order-7", record=True),
        _binding("100000000000000000", pool, X1, a=PhoneNumber("+8613700137000"), b=None),
        # anything else stays a str: a leading zero, 19 digits, letters, non-ASCII digits
        _binding("012345678901234567", pool, X1, a=PhoneNumber("+8613700137001")),
        _binding("1234567890123456789", pool, X1, a=PhoneNumber("+8613700137002")),
        _binding("sub-1", pool, X1, a=PhoneNumber("+8613700137003")),
        _binding("١٢٣", pool, X1, a=PhoneNumber("+8613700137004")),
        _binding(
            "42",
            pool,
            X2,
            restriction=Restriction.AX_DISABLE,
            ring_timeout_s=30,
            ringback={"AXBRing_A": "tone-1", "AXBRing_B": "tone-2"},
        ),
        _binding(
            "43",
            pool,
            PhoneNumber("+8617000000003"),
            type=BindingType.AXN_EXT,
            extension="7",
            b=None,
        ),
        # every type and restriction code, a long ring timeout, another pool
        _binding(
            "44",
            other_pool,
            PhoneNumber("+8617000000004"),
            type=BindingType.AXG,
            group_id=group,
            restriction=Restriction.BX_DISABLE,
            ring_timeout_s=180,
        ),
        _binding("45", pool, PhoneNumber("+8617000000005"), type=BindingType.AXN95, b=None),
        _binding("46", pool, PhoneNumber("+8617000000006"), type=BindingType.AXN, record=True),
    ]
    held_as_int = {"123456789012345678", "100000000000000000", "42", "43", "44", "45", "46"}
    for binding in stored:
        await insert_binding(db, binding)
    loaded = {b.sub_id: b for b in await load_active_bindings(db, NOW)}
    assert sorted(loaded) == sorted(b.sub_id for b in stored)
    for binding in stored:
        got = loaded[binding.sub_id]
        assert type(got.sub_id) is str and got.created_at == 0.0
        assert got == dataclasses.replace(binding, created_at=0.0), binding.sub_id
        assert type(got.sub_key) is (int if binding.sub_id in held_as_int else str)
    # Equal settings: one shared profile object, and one X object per X.
    same = [loaded["012345678901234567"], loaded["1234567890123456789"], loaded["sub-1"]]
    assert len({id(b.profile) for b in same}) == 1 and len({id(b.x) for b in same}) == 1
    assert loaded["42"].ringback == {"AXBRing_A": "tone-1", "AXBRing_B": "tone-2"}


async def test_load_refuses_a_type_or_restriction_it_does_not_know(db: Database) -> None:
    pool = await _pool_with_x(db)
    await insert_binding(db, _binding("s1", pool, X1))

    def newer_version_wrote(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute("UPDATE bindings SET restriction = 'CONTROL_ALL_DISABLE'")
        conn.execute("PRAGMA ignore_check_constraints = OFF")

    await db.write(newer_version_wrote)
    with pytest.raises(StoreError, match="not known"):
        await load_active_bindings(db, NOW)


async def test_binding_backstops(db: Database) -> None:
    pool = await _pool_with_x(db, BindingType.AXN)
    axn = dataclasses.replace(_binding("n1", pool, X1), type=BindingType.AXN)
    await insert_binding(db, axn)
    with pytest.raises(ConflictError):
        await insert_binding(db, dataclasses.replace(axn, sub_id=SubId("n2")))
    await unbind(db, SubId("n1"), NOW)
    await insert_binding(db, dataclasses.replace(axn, sub_id=SubId("n2")))  # X free again
    ext = dataclasses.replace(_binding("e1", pool, X2), type=BindingType.AXN_EXT, extension="12")
    await insert_binding(db, ext)
    with pytest.raises(ConflictError):
        await insert_binding(db, dataclasses.replace(ext, sub_id=SubId("e2")))
    await insert_binding(db, dataclasses.replace(ext, sub_id=SubId("e3"), extension="13"))
    with pytest.raises(ConflictError, match="unknown pool"):
        await insert_binding(db, _binding("s9", PoolKey("FCNOPE"), X1))


async def test_groups(db: Database) -> None:
    pool = await _pool_with_x(db, BindingType.AXG)
    members = [PhoneNumber("+8613600000002"), PhoneNumber("+8613600000001")]
    gid = await create_group(db, pool_key=pool, name="drivers", numbers=members, remark="r")
    assert gid.isdigit()
    assert await group_members(db, gid) == sorted(members)
    other = await create_group(db, pool_key=pool, name="empty", numbers=[])
    assert await load_groups(db) == {gid: sorted(members), other: []}
    await set_group_members(db, other, [A])
    assert await group_members(db, other) == [A]
    with pytest.raises(GroupNotFoundError):
        await set_group_members(db, GroupId("404"), [A])
    with pytest.raises(PoolNotFoundError):
        await create_group(db, pool_key=PoolKey("FCNOPE"), name="x", numbers=[])
    too_many = [PhoneNumber(f"+86136{n:08d}") for n in range(201)]
    with pytest.raises(ValueError, match="200"):
        await create_group(db, pool_key=pool, name="x", numbers=too_many)
    # A binding may name the group.
    axg = dataclasses.replace(_binding("g1", pool, X1), type=BindingType.AXG, group_id=gid, b=None)
    await insert_binding(db, axg)
    assert await get_binding(db, SubId("g1")) == axg


def _record(n: int, **kw: object) -> CallRecord:
    values: dict[str, object] = {
        "id": f"r{n}",
        "call_id": f"c{n}",
        "secret_no": X1,
        "call_type": CallType.A_TO_PEER,
        "call_time": NOW + n,
        "release_time": NOW + n + 60,
        "release_dir": ReleaseDir.CALLER,
        "release_cause": 16,
        "pool_key": PoolKey("FC1"),
        "sub_id": SubId("s1"),
        "phone_no": A,
        "peer_no": B,
        "called_display_no": X1,
        "city": "北京",
        "call_out_time": NOW + n + 0.1,
        "ring_time": NOW + n + 2,
        "start_time": NOW + n + 5,
        "out_id": "order-1",
        "duration_s": 55.0,
        "recording_path": "/var/rec/r.wav",
    }
    values.update(kw)
    return CallRecord(**values)  # type: ignore[arg-type]


async def test_call_records(db: Database) -> None:
    first = _record(1)
    intercepted = CallRecord(
        id="r2",
        call_id="c2",
        secret_no=X2,
        call_type=CallType.CALL_INTERCEPTED,
        call_time=NOW,
        release_time=NOW + 1,
        release_dir=ReleaseDir.PLATFORM,
        release_cause=21,
        unconnected_cause=UnconnectedCause.NO_BINDING,
    )
    await insert_call_record(db, first)
    await insert_call_record(db, intercepted)
    with pytest.raises(ConflictError):
        await insert_call_record(db, first)
    assert await recent_call_records(db, 10) == [intercepted, first]
    assert await recent_call_records(db, 1) == [intercepted]
    assert await get_call_record(db, "r1") == first
    assert await get_call_record(db, "nope") is None


async def test_ledger_is_immutable(db: Database) -> None:
    await create_tenant(db, tenant_id="t1", name="T")

    def add(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO ledger (tenant_id, item, amount, ref, created_at)"
            " VALUES ('t1', 'call', '0.11', 'r1', 0)"
        )

    await db.write(add)
    with pytest.raises(sqlite3.IntegrityError):
        await db.write(add)  # rated once per (item, ref)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        await db.write(lambda c: c.execute("UPDATE ledger SET amount = '0'"))
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        await db.write(lambda c: c.execute("DELETE FROM ledger"))
