"""Migration of unbound numbers between two pools of one type and tenant (SPEC §3)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from api_support import TOKEN, ZONE, Clock, local
from inventory_support import (
    TENANT_A,
    TENANT_B,
    e164,
    funded,
    rows,
    setup_stock,
    snapshot,
    tenant_pool,
)

from api.app import create_app
from api.control import ControlPlane
from api.errors import Conflict, InvalidInput, NotFound
from routing.index import BindingIndex
from routing.model import BindingType, PhoneNumber, PoolKey
from store import Database, ledger

A = "13800138000"
B = "13900139000"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "maskline.sqlite3"


@pytest.fixture
async def stocked(control: ControlPlane) -> ControlPlane:
    await setup_stock(control)
    await funded(control, TENANT_A, "1000")
    await funded(control, TENANT_B, "1000")
    return control


async def two_pools(
    control: ControlPlane, count: int = 4, type_: BindingType = BindingType.AXN
) -> tuple[PoolKey, PoolKey, list[PhoneNumber]]:
    source = await tenant_pool(control, type_)
    target = await tenant_pool(control, type_)
    bought = sorted(await control.inventory.buy(source, count=count, city="北京"))
    return source, target, bought


async def test_explicit_list_moves_unbound_numbers_and_reports_the_rest(
    stocked: ControlPlane, clock: Clock
) -> None:
    source, target, bought = await two_pools(stocked)
    bound = await stocked.bind(
        BindingType.AXN, source, A, x=bought[0], expires=local(clock.now + 3600)
    )
    assert bound.x == bought[0]
    unknown = "17099999999"
    listed = [bought[0], bought[1].removeprefix("+86"), unknown, bought[2], bought[1]]
    job = await stocked.inventory.migrate(source, target, tenant=TENANT_A, numbers=listed)
    outcome = {(r.number, r.ok): r.reason for r in job.results}
    assert [(r.number, r.ok) for r in job.results] == [
        (bought[0], False), (bought[1], True), (e164(unknown), False), (bought[2], True),
        (bought[1], False),
    ]  # fmt: skip
    assert (outcome[(bought[0], False)] or "").startswith("NUMBER_IN_USE")
    assert (outcome[(e164(unknown), False)] or "").startswith("NUMBER_NOT_IN_POOL")
    assert (job.requested, job.moved, job.failed) == (5, 2, 3)
    # Allocation follows the move at once; the bound number stays where it was.
    assert sorted(stocked.pool_numbers(target)) == [bought[1], bought[2]]
    assert sorted(stocked.pool_numbers(source)) == [bought[0], bought[3]]
    detail = await stocked.inventory.number_detail(target, bought[1], tenant=TENANT_A)
    assert detail.pool_key == target
    # The job is stored and readable later.
    stored = await stocked.inventory.get_migration(job.job_id, tenant=TENANT_A)
    assert stored == job


async def test_city_and_count(stocked: ControlPlane) -> None:
    source, target, bought = await two_pools(stocked, count=5)
    job = await stocked.inventory.migrate(source, target, city="北京市", count=3)
    assert (job.requested, job.moved, job.failed, job.city) == (3, 3, 0, "北京")
    moved = {PhoneNumber(r.number) for r in job.results}
    assert moved <= set(bought) and len(moved) == 3
    assert set(stocked.pool_numbers(target)) == moved
    # More than there is: what is there moves, the job says how many were asked for.
    rest = await stocked.inventory.migrate(source, target, city="北京", count=10)
    assert (rest.requested, rest.moved) == (10, 2)
    with pytest.raises(Conflict) as empty:
        await stocked.inventory.migrate(source, target, city="北京", count=1)
    assert empty.value.code == "NO_AVAILABLE_NUMBER"
    with pytest.raises(Conflict):
        await stocked.inventory.migrate(source, target, city="深圳", count=1)


async def test_city_mode_skips_bound_and_locked_numbers(
    stocked: ControlPlane, clock: Clock
) -> None:
    source, target, bought = await two_pools(stocked, count=3)
    await stocked.bind(BindingType.AXN, source, A, x=bought[0], expires=local(clock.now + 3600))
    await stocked.inventory.lock(source, bought[1])
    job = await stocked.inventory.migrate(source, target, city="北京", count=3)
    assert [(r.number, r.ok) for r in job.results] == [(bought[2], True)]


async def test_locked_number_moves_locked(stocked: ControlPlane) -> None:
    source, target, bought = await two_pools(stocked, count=2)
    await stocked.inventory.lock(source, bought[0])
    job = await stocked.inventory.migrate(source, target, numbers=[bought[0]])
    assert job.moved == 1
    assert stocked.pool_numbers(target) == []  # still locked: not allocatable
    await stocked.inventory.unlock(target, bought[0])
    assert stocked.pool_numbers(target) == [bought[0]]


async def test_rent_of_the_month_stays_with_the_old_pool(
    stocked: ControlPlane, clock: Clock, db_path: Path
) -> None:
    source, target, bought = await two_pools(stocked, count=1, type_=BindingType.AXB)
    balance = await stocked.inventory.balance(TENANT_A)
    clock.now += 3 * 86400
    job = await stocked.inventory.migrate(source, target, numbers=bought)
    assert job.moved == 1
    assert await stocked.inventory.balance(TENANT_A) == balance  # free of charge
    [rent] = await ledger.entries(stocked.db, TENANT_A, item="rent", number=bought[0])
    assert (rent.pool_key, rent.period) == (source, "203001")
    tenancies = rows(
        db_path,
        "SELECT pool_key, from_at, until_at, reason FROM number_tenancies WHERE number = ?"
        " ORDER BY id",
        bought[0],
    )
    start = clock.now - 3 * 86400
    assert tenancies == [
        (source, start, clock.now, "purchase"),
        (target, clock.now, None, "migration"),
    ]


@pytest.mark.parametrize(
    "request_args",
    [
        {"numbers": [f"170{i:08d}" for i in range(501)]},
        {"numbers": []},
        {"numbers": ["  "]},
        {"numbers": ["12"]},
        {"city": "北京", "count": 501},
        {"city": "北京", "count": 0},
        {"city": "北京"},
        {"count": 1},
        {},
        {"city": "北京", "count": 1, "numbers": ["17000010000"]},
    ],
)
async def test_bad_requests_write_nothing(
    stocked: ControlPlane, db_path: Path, request_args: dict[str, object]
) -> None:
    source, target, _bought = await two_pools(stocked, count=1)
    before = snapshot(db_path)
    with pytest.raises(InvalidInput):
        await stocked.inventory.migrate(source, target, **request_args)  # type: ignore[arg-type]
    assert snapshot(db_path) == before


async def test_numbers_as_text_one_per_line(stocked: ControlPlane) -> None:
    source, target, bought = await two_pools(stocked, count=2)
    text = f"{bought[0]}\r\n\n {bought[1].removeprefix('+86')} \n"
    job = await stocked.inventory.migrate(source, target, numbers=text)
    assert [(r.number, r.ok) for r in job.results] == [(bought[0], True), (bought[1], True)]


async def test_500_numbers_are_accepted(stocked: ControlPlane) -> None:
    source, target, _bought = await two_pools(stocked, count=1)
    numbers = [f"170{i:08d}" for i in range(500)]
    job = await stocked.inventory.migrate(source, target, numbers=numbers)
    assert (job.requested, job.moved, job.failed) == (500, 0, 500)


async def test_pools_must_share_type_and_tenant(stocked: ControlPlane, db_path: Path) -> None:
    source, _target, bought = await two_pools(stocked, count=1)
    axb = await tenant_pool(stocked, BindingType.AXB)
    foreign = await tenant_pool(stocked, BindingType.AXN, tenant=TENANT_B)
    operator = await tenant_pool(stocked, BindingType.AXN, tenant=None)
    before = snapshot(db_path)
    with pytest.raises(InvalidInput) as mismatch:
        await stocked.inventory.migrate(source, axb, tenant=TENANT_A, numbers=bought)
    assert mismatch.value.code == "POOL_TYPE_MISMATCH"
    with pytest.raises(NotFound) as hidden:
        await stocked.inventory.migrate(source, foreign, tenant=TENANT_A, numbers=bought)
    assert hidden.value.code == "POOL_NOT_EXIST"
    with pytest.raises(NotFound):
        await stocked.inventory.migrate(foreign, source, tenant=TENANT_A, numbers=bought)
    with pytest.raises(NotFound):  # tenant B cannot move A's numbers into its own pool
        await stocked.inventory.migrate(source, foreign, tenant=TENANT_B, numbers=bought)
    with pytest.raises(InvalidInput) as tenants:  # the operator sees both, still refused
        await stocked.inventory.migrate(source, foreign, numbers=bought)
    assert tenants.value.code == "POOL_TENANT_MISMATCH"
    with pytest.raises(InvalidInput):
        await stocked.inventory.migrate(source, operator, numbers=bought)
    with pytest.raises(InvalidInput):
        await stocked.inventory.migrate(source, source, numbers=bought)
    assert snapshot(db_path) == before
    assert stocked.pool_numbers(source) == bought


async def test_another_tenants_numbers_in_a_list_are_not_in_pool(stocked: ControlPlane) -> None:
    source, target, _bought = await two_pools(stocked, count=1)
    foreign = await tenant_pool(stocked, BindingType.AXN, tenant=TENANT_B)
    [theirs] = await stocked.inventory.buy(foreign, count=1, city="北京", tenant=TENANT_B)
    await stocked.bind(BindingType.AXN, foreign, A, x=theirs, expires=local(stocked.clock() + 3600))
    job = await stocked.inventory.migrate(source, target, tenant=TENANT_A, numbers=[theirs])
    # Bound or not, another tenant's number answers exactly as one that does not exist.
    [result] = job.results
    assert not result.ok and (result.reason or "").startswith("NUMBER_NOT_IN_POOL")
    assert stocked.pool_numbers(foreign) == [theirs]


async def test_job_of_another_tenant_is_not_found(stocked: ControlPlane) -> None:
    source, target, bought = await two_pools(stocked, count=1)
    job = await stocked.inventory.migrate(source, target, tenant=TENANT_A, numbers=bought)
    assert (await stocked.inventory.get_migration(job.job_id)).job_id == job.job_id
    for job_id, tenant in ((job.job_id, TENANT_B), ("123", TENANT_A), ("123", None)):
        with pytest.raises(NotFound) as missing:
            await stocked.inventory.get_migration(job_id, tenant=tenant)
        assert missing.value.code == "MIGRATION_NOT_EXIST"


async def test_moved_numbers_stay_moved_after_a_restart(
    stocked: ControlPlane, db_path: Path, clock: Clock
) -> None:
    source, target, bought = await two_pools(stocked, count=2)
    await stocked.inventory.migrate(source, target, numbers=[bought[1]])
    db = await Database.open(db_path)
    try:
        again = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
        await again.load()
        assert again.pool_numbers(target) == [bought[1]]
        assert again.pool_numbers(source) == [bought[0]]
    finally:
        await db.close()


async def test_rest_migration(stocked: ControlPlane) -> None:
    source, target, bought = await two_pools(stocked, count=3)
    app = create_app(stocked, operator_token=TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://maskline.test",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as client:
        lines = "\n".join(n.removeprefix("+86") for n in bought[:2]) + "\n\n"
        created = await client.post(
            "/v1/migrations", json={"from_pool": source, "to_pool": target, "numbers": lines}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["requested"], body["moved"], body["failed"]) == (2, 2, 0)
        assert body["results"] == [
            {"number": bought[0], "ok": True, "reason": None},
            {"number": bought[1], "ok": True, "reason": None},
        ]
        assert body["created"] == "2030-01-01 12:00:00"
        shown = await client.get(f"/v1/migrations/{body['job_id']}")
        assert shown.json() == body
        refused = await client.post(
            "/v1/migrations",
            json={"from_pool": source, "to_pool": target, "city": "北京", "count": 501},
        )
        assert (refused.status_code, refused.json()["code"]) == (400, "PARAMETER_ILLEGAL")
        missing = await client.get("/v1/migrations/42")
        assert (missing.status_code, missing.json()["code"]) == (404, "MIGRATION_NOT_EXIST")
    assert await stocked.inventory.balance(TENANT_A) == Decimal("985.00")  # 3 x 5.00 rent only
