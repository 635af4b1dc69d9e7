"""Inventory: balance, stock, covered cities, purchase with first-month rent, release, lock,
verification, number views — the service directly and its REST routes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from api_support import TOKEN, ZONE, Clock, local
from inventory_support import (
    BEIJING,
    HAINAN,
    NINE_FIVE,
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
from api.inventory import RENT_BY_SPEC, SecretStatus
from routing.index import BindingIndex
from routing.model import BindingType, NumberSpec, PhoneNumber
from store import Database, Verification, ledger
from store.billing import set_tariff_overrides

A = "13800138000"
B = "13900139000"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "maskline.sqlite3"


@pytest.fixture
async def stocked(control: ControlPlane) -> ControlPlane:
    await setup_stock(control)
    return control


async def bind_axb(control: ControlPlane, pool: str, x: str | None = None, a: str = A) -> str:
    binding = await control.bind(
        BindingType.AXB, pool, a, B, x, expires=local(control.clock() + 3600)
    )
    return binding.x


# ------------------------------------------------------------------------------- balance


async def test_topup_and_balance(stocked: ControlPlane) -> None:
    inventory = stocked.inventory
    assert await inventory.balance(TENANT_A) == Decimal(0)
    assert await inventory.topup(TENANT_A, Decimal("12.5")) == Decimal("12.50")
    assert await inventory.topup(TENANT_A, Decimal("0.01")) == Decimal("12.51")
    assert await inventory.balance(TENANT_A) == Decimal("12.51")
    assert await inventory.balance(TENANT_B) == Decimal(0)
    # A tenant reads its own balance; another's is "not found", as a tenant that does not exist.
    assert await inventory.balance(TENANT_A, tenant=TENANT_A) == Decimal("12.51")
    with pytest.raises(NotFound) as foreign:
        await inventory.balance(TENANT_A, tenant=TENANT_B)
    with pytest.raises(NotFound) as missing:
        await inventory.balance("nobody", tenant=TENANT_B)
    assert foreign.value.code == missing.value.code == "TENANT_NOT_EXIST"


async def test_balance_counts_discounts_as_credits(stocked: ControlPlane) -> None:
    await funded(stocked, TENANT_A, "10")

    def charges(conn: object) -> None:
        for item, amount in (("call", "0.33"), ("discount", "-0.10")):
            ledger.insert_entry_in(
                conn,  # type: ignore[arg-type]
                tenant_id=TENANT_A,
                item=item,
                amount=Decimal(amount),
                created_at=stocked.clock(),
            )

    await stocked.db.write(charges)
    assert await stocked.inventory.balance(TENANT_A) == Decimal("9.77")


@pytest.mark.parametrize(
    "amount", ["0", "-1", "0.001", "NaN", "Infinity", "100000000.01", "1e999999"]
)
async def test_bad_topups_write_nothing(stocked: ControlPlane, db_path: Path, amount: str) -> None:
    before = snapshot(db_path)
    with pytest.raises(InvalidInput) as refused:
        await stocked.inventory.topup(TENANT_A, Decimal(amount))
    assert refused.value.code == "AMOUNT_ILLEGAL"
    assert snapshot(db_path) == before


async def test_topup_of_unknown_tenant(stocked: ControlPlane, db_path: Path) -> None:
    before = snapshot(db_path)
    with pytest.raises(NotFound) as refused:
        await stocked.inventory.topup("nobody", Decimal("5"))
    assert refused.value.code == "TENANT_NOT_EXIST"
    assert snapshot(db_path) == before


# ------------------------------------------------------------------------------- stock


async def test_stock_per_canonical_city(stocked: ControlPlane) -> None:
    stock = {(r.city, int(r.spec)): r.free for r in await stocked.inventory.stock()}
    assert stock == {("北京", 1): 40, ("海口", 1): 3, ("深圳", 2): 6, ("全国", 3): 3}
    nationwide = await stocked.inventory.stock(city="Nationwide")
    assert [(r.city, r.spec, r.free) for r in nationwide] == [("全国", NumberSpec(3), 3)]
    assert [r.free for r in await stocked.inventory.stock(city="北京市", spec=1)] == [40]
    assert await stocked.inventory.stock(city="北京", spec=2) == []
    prefixed = await stocked.inventory.stock(prefix="1700001000")
    assert [(r.city, r.free) for r in prefixed] == [("北京", 10)]


async def test_covered_cities(stocked: ControlPlane) -> None:
    cities = await stocked.inventory.covered_cities()
    assert sorted(cities) == sorted(["北京", "海口", "深圳", "全国"])
    assert "三亚" not in cities  # Hainan has the single entry Haikou
    assert await stocked.inventory.covered_cities(spec=3) == ["全国"]
    assert await stocked.inventory.covered_cities(spec=2) == ["深圳"]


async def test_cities_leave_the_list_when_sold_out(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    await stocked.inventory.buy(pool, count=6, city="深圳")
    assert "深圳" not in await stocked.inventory.covered_cities()


# ------------------------------------------------------------------------------- purchase


@pytest.mark.parametrize(
    ("count", "prefix"), [(0, None), (1001, None), (-1, None), (1, "1" * 19), (1, "17x")]
)
async def test_purchase_limits(
    stocked: ControlPlane, db_path: Path, count: int, prefix: str | None
) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "10000")
    before = snapshot(db_path)
    with pytest.raises(InvalidInput) as refused:
        await stocked.inventory.buy(pool, count=count, city="北京", prefix=prefix)
    assert refused.value.code == "PARAMETER_ILLEGAL"
    assert snapshot(db_path) == before


async def test_prefix_of_18_digits_is_accepted(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "100")
    with pytest.raises(Conflict) as refused:
        await stocked.inventory.buy(pool, count=1, city="北京", prefix="1" * 18)
    assert refused.value.code == "NO_AVAILABLE_NUMBER"  # valid, but no number matches


async def test_prefix_selects_numbers(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "100")
    assert await stocked.inventory.buy(pool, count=1, city="北京", prefix=BEIJING[7]) == [
        e164(BEIJING[7])
    ]
    bought = await stocked.inventory.buy(pool, count=3, city="北京", prefix="+86 170 0001 003")
    assert {n.removeprefix("+86")[:10] for n in bought} == {"1700001003"}


async def test_not_enough_balance_writes_nothing(stocked: ControlPlane, db_path: Path) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "14.99")
    before = snapshot(db_path)
    with pytest.raises(Conflict) as refused:
        await stocked.inventory.buy(pool, count=3, city="北京")
    assert refused.value.code == "NOT_ENOUGH_BALANCE"
    assert "15.00" in refused.value.message and "14.99" in refused.value.message
    assert snapshot(db_path) == before
    assert stocked.pool_numbers(pool) == []


async def test_exact_balance_buys_and_charges_first_month(
    stocked: ControlPlane, db_path: Path, clock: Clock
) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "15.00")
    bought = await stocked.inventory.buy(pool, count=3, city="北京")
    assert len(set(bought)) == 3
    assert set(bought) <= {e164(n) for n in BEIJING}
    assert await stocked.inventory.balance(TENANT_A) == Decimal("0.00")
    rent = await ledger.entries(stocked.db, TENANT_A, item="rent")
    assert sorted(e.number or "" for e in rent) == sorted(bought)
    for entry in rent:
        assert entry.amount == entry.unit_price == Decimal("5.00")
        assert (entry.period, entry.unit, entry.quantity) == ("203001", "month", 1)
        assert entry.pool_key == pool
        assert entry.ref == f"rent:{entry.number}:203001"
    held = rows(
        db_path,
        "SELECT n.status, n.pool_key, n.purchased_at, t.reason, t.until_at FROM numbers n"
        " JOIN number_tenancies t USING (number) WHERE n.pool_key = ?",
        pool,
    )
    assert held == [("in_pool", pool, clock.now, "purchase", None)] * 3
    assert sorted(stocked.pool_numbers(pool)) == sorted(bought)  # allocatable at once


async def test_rent_follows_the_spec(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "30")
    await stocked.inventory.buy(pool, count=2, city="深圳", spec=2)
    assert RENT_BY_SPEC[NumberSpec.CARRIER] == Decimal("15.00")
    assert await stocked.inventory.balance(TENANT_A) == Decimal("0.00")
    nine_five = await tenant_pool(stocked, BindingType.AXN95)
    await funded(stocked, TENANT_A, "5")
    assert await stocked.inventory.buy(nine_five, count=1, city="Nationwide", spec=3)
    assert await stocked.inventory.balance(TENANT_A) == Decimal("0.00")


async def test_month_is_local(stocked: ControlPlane, clock: Clock) -> None:
    # 2030-01-31 16:30 UTC is already February in Asia/Shanghai.
    clock.now = 1_896_107_400.0
    assert local(clock.now).startswith("2030-02-01")
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "5")
    await stocked.inventory.buy(pool, count=1, city="北京")
    [entry] = await ledger.entries(stocked.db, TENANT_A, item="rent")
    assert entry.period == "203002"


async def test_operator_pool_is_not_charged(stocked: ControlPlane, db_path: Path) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    assert len(await stocked.inventory.buy(pool, count=5, city="北京")) == 5
    assert rows(db_path, "SELECT count(*) FROM ledger") == [(0,)]


async def test_operator_buys_into_a_tenant_pool_at_the_tenants_cost(
    stocked: ControlPlane,
) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "20")
    await stocked.inventory.buy(pool, count=2, city="北京")  # tenant=None: the operator
    assert await stocked.inventory.balance(TENANT_A) == Decimal("10.00")


async def test_numbers_are_picked_at_random(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    seen: list[frozenset[PhoneNumber]] = []
    for _ in range(3):
        bought = await stocked.inventory.buy(pool, count=5, city="北京")
        assert len(set(bought)) == 5 and set(bought) <= {e164(n) for n in BEIJING}
        seen.append(frozenset(bought))
        for number in bought:
            await stocked.inventory.release(pool, number)
    # Picked in a fixed order, the three orders would be the same 5 numbers; at random, three
    # equal picks out of C(40, 5) = 658,008 combinations would be a 1-in-4e11 event.
    assert len(set(seen)) > 1


async def test_two_orders_never_get_the_same_number(stocked: ControlPlane) -> None:
    first = await tenant_pool(stocked, tenant=None)
    second = await tenant_pool(stocked, tenant=None)
    one = await stocked.inventory.buy(first, count=20, city="北京")
    two = await stocked.inventory.buy(second, count=20, city="北京")
    assert set(one).isdisjoint(two)
    assert set(one) | set(two) == {e164(n) for n in BEIJING}


@pytest.mark.parametrize(
    "case",
    [
        (BindingType.AXB, "全国", 3, "POOL_TYPE_MISMATCH"),
        (BindingType.AXB, "Nationwide", None, "POOL_TYPE_MISMATCH"),
        (BindingType.AXN95, "北京", 1, "POOL_TYPE_MISMATCH"),
        (BindingType.AXN95, "北京", None, "PARAMETER_ILLEGAL"),
        (BindingType.AXB, "北京", 4, "PARAMETER_ILLEGAL"),
        (BindingType.AXB, " ", None, "PARAMETER_ILLEGAL"),
    ],
)
async def test_spec_must_fit_the_pool(
    stocked: ControlPlane, db_path: Path, case: tuple[BindingType, str, int | None, str]
) -> None:
    pool_type, city, spec, code = case
    pool = await tenant_pool(stocked, pool_type, tenant=None)
    before = snapshot(db_path)
    with pytest.raises(InvalidInput) as refused:
        await stocked.inventory.buy(pool, count=1, city=city, spec=spec)
    assert refused.value.code == code
    assert snapshot(db_path) == before


async def test_zero_stock_tells_to_ask_the_operator(stocked: ControlPlane, db_path: Path) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "100")
    before = snapshot(db_path)
    with pytest.raises(Conflict) as refused:
        await stocked.inventory.buy(pool, count=1, city="上海")
    assert refused.value.code == "NO_AVAILABLE_NUMBER"
    assert "ask the operator" in refused.value.message
    with pytest.raises(Conflict) as short:
        await stocked.inventory.buy(pool, count=7, city="深圳")
    assert short.value.code == "NO_AVAILABLE_NUMBER"
    assert "only 6" in short.value.message and "nothing was bought" in short.value.message
    assert snapshot(db_path) == before


async def test_hainan_is_sold_as_haikou(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    bought = await stocked.inventory.buy(pool, count=3, city="Haikou")
    assert set(bought) == {e164(n) for n in HAINAN}
    assert "海口" not in await stocked.inventory.covered_cities()


async def test_nationwide_numbers_whatever_their_import_city(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, BindingType.AXN95, tenant=None)
    bought = await stocked.inventory.buy(pool, count=3, city="全国")
    assert set(bought) == {e164(n) for n in NINE_FIVE}


# ------------------------------------------------------------------------------- release / lock


async def test_release_refused_while_bound(stocked: ControlPlane, db_path: Path) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "5")
    [x] = await stocked.inventory.buy(pool, count=1, city="北京")
    binding = await stocked.bind(
        BindingType.AXB, pool, A, B, x, expires=local(stocked.clock() + 3600)
    )
    before = snapshot(db_path)
    with pytest.raises(Conflict) as refused:
        await stocked.inventory.release(pool, x, tenant=TENANT_A)
    assert refused.value.code == "NUMBER_IN_USE"
    assert snapshot(db_path) == before
    assert stocked.pool_numbers(pool) == [x]
    await stocked.unbind(pool, binding.sub_id)
    assert await stocked.inventory.release(pool, x.removeprefix("+86"), tenant=TENANT_A) == x


async def test_release_refused_by_the_store_keeps_the_number_allocatable(
    stocked: ControlPlane, db_path: Path, clock: Clock
) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    [x] = await stocked.inventory.buy(pool, count=1, city="北京")
    # A binding the database holds but the index does not (the store's backstop decides).
    written = await stocked.bind(BindingType.AXB, pool, A, B, x, expires=local(clock.now + 3600))
    stocked.index.remove(written.sub_id)
    before = snapshot(db_path)
    with pytest.raises(Conflict) as refused:
        await stocked.inventory.release(pool, x)
    assert refused.value.code == "NUMBER_IN_USE"
    assert snapshot(db_path) == before
    assert stocked.pool_numbers(pool) == [x]


async def test_release_returns_to_stock_without_refund(
    stocked: ControlPlane, db_path: Path, clock: Clock
) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "10")
    bought = await stocked.inventory.buy(pool, count=2, city="北京")
    clock.now += 86400
    await stocked.inventory.release(pool, bought[0], tenant=TENANT_A)
    assert await stocked.inventory.balance(TENANT_A) == Decimal("0.00")  # nothing credited
    assert rows(db_path, "SELECT status, pool_key FROM numbers WHERE number = ?", bought[0]) == [
        ("free", None)
    ]
    assert rows(db_path, "SELECT until_at FROM number_tenancies WHERE number = ?", bought[0]) == [
        (clock.now,)
    ]
    assert stocked.pool_numbers(pool) == [bought[1]]
    free_beijing = [r.free for r in await stocked.inventory.stock(city="北京")]
    assert free_beijing == [39]
    with pytest.raises(NotFound) as again:
        await stocked.inventory.release(pool, bought[0], tenant=TENANT_A)
    assert again.value.code == "NUMBER_NOT_EXIST"


async def test_bought_again_in_the_release_month_pays_again(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, BindingType.AXB)
    await funded(stocked, TENANT_A, "5")
    await funded(stocked, TENANT_B, "5")
    [x] = await stocked.inventory.buy(pool, count=1, city="北京", prefix=BEIJING[0])
    await stocked.inventory.release(pool, x)
    other = await tenant_pool(stocked, tenant=TENANT_B)
    assert await stocked.inventory.buy(other, count=1, city="北京", prefix=BEIJING[0]) == [x]
    [entry] = await ledger.entries(stocked.db, TENANT_B, item="rent")
    assert entry.ref is not None and entry.ref.startswith(f"rent:{x}:203001:")
    assert await stocked.inventory.balance(TENANT_B) == Decimal("0.00")


async def test_locked_number_is_never_allocated(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked, BindingType.AXN, tenant=None)
    first, second = await stocked.inventory.buy(pool, count=2, city="北京")
    detail = await stocked.inventory.lock(pool, first)
    assert detail.status is SecretStatus.LOCKED
    assert stocked.pool_numbers(pool) == [second]
    expires = local(stocked.clock() + 3600)
    bound = await stocked.bind(BindingType.AXN, pool, A, expires=expires)
    assert bound.x == second
    with pytest.raises(Conflict) as exhausted:
        await stocked.bind(BindingType.AXN, pool, B, expires=expires)
    assert exhausted.value.code == "NO_AVAILABLE_NUMBER"
    with pytest.raises(InvalidInput) as explicit:
        await stocked.bind(BindingType.AXN, pool, B, x=first, expires=expires)
    assert explicit.value.code == "NUMBER_NOT_IN_POOL"
    # Locking again changes nothing; unlocking makes it allocatable again.
    assert (await stocked.inventory.lock(pool, first)).status is SecretStatus.LOCKED
    assert (await stocked.inventory.unlock(pool, first)).status is SecretStatus.FREE
    assert (await stocked.bind(BindingType.AXN, pool, B, expires=expires)).x == first
    assert (await stocked.inventory.unlock(pool, first)).status is SecretStatus.BOUND


async def test_lock_survives_a_restart(stocked: ControlPlane, db_path: Path, clock: Clock) -> None:
    pool = await tenant_pool(stocked, tenant=None)
    first, second = await stocked.inventory.buy(pool, count=2, city="北京")
    await stocked.inventory.lock(pool, first)
    db = await Database.open(db_path)
    try:
        again = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
        await again.load()
        assert again.pool_numbers(pool) == [second]
        detail = await again.inventory.number_detail(pool, first)
        assert detail.status is SecretStatus.LOCKED and detail.pool_key == pool
    finally:
        await db.close()


# ------------------------------------------------------------------------------- views


async def test_number_detail_and_usage(stocked: ControlPlane, clock: Clock) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "15")
    bought = sorted(await stocked.inventory.buy(pool, count=3, city="北京"))
    await bind_axb(stocked, pool, bought[0])
    await stocked.inventory.lock(pool, bought[2])
    detail = await stocked.inventory.number_detail(pool, bought[0], tenant=TENANT_A)
    assert (detail.number, detail.city, detail.province, detail.carrier) == (
        bought[0], "北京", "北京", "CMCC",
    )  # fmt: skip
    assert (detail.vendor, detail.spec, detail.status) == (1, NumberSpec(1), SecretStatus.BOUND)
    assert detail.purchased == "2030-01-01 12:00:00"
    assert (detail.verification, detail.certify_status) == (Verification.UNVERIFIED, 0)
    listed = await stocked.inventory.list_numbers(pool, tenant=TENANT_A)
    assert [(d.number, int(d.status)) for d in listed] == [
        (bought[0], 1), (bought[1], 0), (bought[2], 2),
    ]  # fmt: skip
    usage = await stocked.inventory.pool_usage(pool, tenant=TENANT_A)
    assert (usage.numbers, usage.bound, usage.locked, usage.utilisation_pct) == (3, 1, 1, 33.3)
    empty = await tenant_pool(stocked)
    assert (await stocked.inventory.pool_usage(empty)).utilisation_pct == 0.0


# ------------------------------------------------------------------------------- verification


async def test_verification_grace_period(stocked: ControlPlane, clock: Clock) -> None:
    inventory = stocked.inventory
    await inventory.set_verification_policy(BindingType.AXB, required=True, grace_s=3600)
    pool = await tenant_pool(stocked, tenant=None)
    [x, y] = await inventory.buy(pool, count=2, city="北京")
    detail = await inventory.number_detail(pool, x)
    assert detail.verification_deadline == "2030-01-01 13:00:00"
    assert inventory.is_bindable(x, clock.now + 3600)
    assert not inventory.is_bindable(x, clock.now + 3601)
    pending = await inventory.submit_verification(pool, x)
    assert pending.verification is Verification.PENDING
    assert not inventory.is_bindable(x, clock.now + 3601)  # pending is not verified
    verified = await inventory.decide_verification(x, approved=True)
    assert (verified.verification, verified.certify_status) == (Verification.VERIFIED, 1)
    assert inventory.is_bindable(x, clock.now + 10**6)
    await inventory.submit_verification(pool, y)
    rejected = await inventory.decide_verification(y, approved=False)
    assert rejected.verification is Verification.REJECTED
    assert not inventory.is_bindable(y, clock.now + 3601)
    # A rejected number may be submitted again.
    assert (await inventory.submit_verification(pool, y)).verification is Verification.PENDING


async def test_overdue_number_cannot_bind_until_verified(
    stocked: ControlPlane, clock: Clock
) -> None:
    inventory = stocked.inventory
    await inventory.set_verification_policy(BindingType.AXN, required=True, grace_s=600)
    pool = await tenant_pool(stocked, BindingType.AXN, tenant=None)
    [x] = await inventory.buy(pool, count=1, city="北京")
    clock.now += 601
    expires = local(clock.now + 3600)
    with pytest.raises(Conflict) as explicit:
        await stocked.bind(BindingType.AXN, pool, A, x=x, expires=expires)
    assert explicit.value.code == "NUMBER_UNVERIFIED"
    with pytest.raises(Conflict) as allocated:
        await stocked.bind(BindingType.AXN, pool, A, expires=expires)
    assert allocated.value.code == "NO_AVAILABLE_NUMBER"
    await inventory.submit_verification(pool, x)
    await inventory.decide_verification(x, approved=True)
    assert (await stocked.bind(BindingType.AXN, pool, A, expires=expires)).x == x


async def test_concurrent_purchases_share_one_balance(stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "5.00")
    outcomes = await asyncio.gather(
        *(stocked.inventory.buy(pool, count=1, city="北京") for _ in range(3)),
        return_exceptions=True,
    )
    bought = [o for o in outcomes if isinstance(o, list)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(bought) == 1 and len(refused) == 2
    assert {r.code for r in refused} == {"NOT_ENOUGH_BALANCE"}
    assert await stocked.inventory.balance(TENANT_A) == Decimal("0.00")
    assert stocked.pool_numbers(pool) == bought[0]


async def test_verification_transitions(stocked: ControlPlane, db_path: Path) -> None:
    inventory = stocked.inventory
    pool = await tenant_pool(stocked, tenant=None)
    [x] = await inventory.buy(pool, count=1, city="北京")
    before = snapshot(db_path)
    with pytest.raises(Conflict) as not_pending:
        await inventory.decide_verification(x, approved=True)
    assert not_pending.value.code == "VERIFICATION_STATE_ILLEGAL"
    await inventory.submit_verification(pool, x)
    with pytest.raises(Conflict) as twice:
        await inventory.submit_verification(pool, x)
    assert twice.value.code == "VERIFICATION_STATE_ILLEGAL"
    in_stock = next(n for n in BEIJING if e164(n) != x)
    with pytest.raises(NotFound) as stock_number:
        await inventory.decide_verification(in_stock, approved=True)
    assert stock_number.value.code == "NUMBER_NOT_EXIST"
    changed = snapshot(db_path)
    assert changed["numbers"] != before["numbers"]  # only the submission was written
    changed.pop("numbers"), before.pop("numbers")
    assert changed == before


async def test_policy_switched_on_gives_existing_numbers_a_grace_period(
    stocked: ControlPlane, clock: Clock, db_path: Path
) -> None:
    inventory = stocked.inventory
    pool = await tenant_pool(stocked, BindingType.AXN, tenant=None)
    [x] = await inventory.buy(pool, count=1, city="北京")
    assert inventory.is_bindable(x, clock.now + 10**6)  # nothing required yet
    clock.now += 100
    await inventory.set_verification_policy(BindingType.AXN, required=True, grace_s=60)
    assert inventory.is_bindable(x, clock.now + 60)
    assert not inventory.is_bindable(x, clock.now + 61)
    # Other types are not concerned, and the state survives a restart.
    db = await Database.open(db_path)
    try:
        again = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
        await again.load()
        assert not again.inventory.is_bindable(x, clock.now + 61)
        assert [p.type for p in again.inventory.verification_policies()] == [BindingType.AXN]
    finally:
        await db.close()
    await inventory.set_verification_policy(BindingType.AXN, required=False, grace_s=0)
    assert inventory.is_bindable(x, clock.now + 10**6)


async def test_95axn_never_requires_verification(stocked: ControlPlane, db_path: Path) -> None:
    before = snapshot(db_path)
    with pytest.raises(InvalidInput):
        await stocked.inventory.set_verification_policy(BindingType.AXN95, required=True, grace_s=0)
    assert snapshot(db_path) == before
    await stocked.inventory.set_verification_policy(BindingType.AXB, required=True, grace_s=0)
    pool = await tenant_pool(stocked, BindingType.AXN95, tenant=None)
    [x] = await stocked.inventory.buy(pool, count=1, city="Nationwide")
    assert stocked.inventory.is_bindable(x, stocked.clock() + 10**6)


@pytest.mark.parametrize("grace_s", [-1.0, float("nan"), float("inf"), 366 * 86400 + 1.0])
async def test_bad_grace_period(stocked: ControlPlane, grace_s: float) -> None:
    with pytest.raises(InvalidInput):
        await stocked.inventory.set_verification_policy(
            BindingType.AXB, required=True, grace_s=grace_s
        )
    assert stocked.inventory.verification_policies() == []


# ------------------------------------------------------------------------------- isolation


async def test_another_tenant_sees_nothing_and_changes_nothing(
    stocked: ControlPlane, db_path: Path
) -> None:
    inventory = stocked.inventory
    pool = await tenant_pool(stocked)
    spare = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "100")
    await funded(stocked, TENANT_B, "100")
    x, y = await inventory.buy(pool, count=2, city="北京", tenant=TENANT_A)
    before = snapshot(db_path)
    attempts = [
        inventory.buy(pool, count=1, city="北京", tenant=TENANT_B),
        inventory.release(pool, x, tenant=TENANT_B),
        inventory.lock(pool, x, tenant=TENANT_B),
        inventory.unlock(pool, x, tenant=TENANT_B),
        inventory.number_detail(pool, x, tenant=TENANT_B),
        inventory.list_numbers(pool, tenant=TENANT_B),
        inventory.pool_usage(pool, tenant=TENANT_B),
        inventory.submit_verification(pool, x, tenant=TENANT_B),
        inventory.balance(TENANT_A, tenant=TENANT_B),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as refused:
            await attempt
        assert refused.value.code in ("POOL_NOT_EXIST", "TENANT_NOT_EXIST")
    # B's own pool with A's number: the number answers as one that does not exist.
    own = await tenant_pool(stocked, tenant=TENANT_B)
    after_pool = snapshot(db_path)
    for attempt in (
        inventory.release(own, x, tenant=TENANT_B),
        inventory.lock(own, y, tenant=TENANT_B),
        inventory.number_detail(own, x, tenant=TENANT_B),
        inventory.submit_verification(own, x, tenant=TENANT_B),
    ):
        with pytest.raises(NotFound) as hidden:
            await attempt
        assert hidden.value.code == "NUMBER_NOT_EXIST"
    with pytest.raises(NotFound) as nonexistent:
        await inventory.number_detail(own, "17099999999", tenant=TENANT_B)
    assert nonexistent.value.message.replace("+8617099999999", "N") == (
        f"no number N in pool {own}"
    )
    assert snapshot(db_path) == after_pool
    after_pool["pools"] = [r for r in after_pool["pools"] if r[0] != own]
    assert after_pool == before
    assert spare  # A's other pool is as invisible to B (checked in the migration tests)


# ------------------------------------------------------------------------------- REST


def _basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:secret".encode()).decode()}


@pytest.fixture
async def rest(
    stocked: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    # Tenants' keys are another area: here a key named after its tenant authenticates it.
    async def authenticate(key_id: str, secret: str) -> str | None:
        return key_id if key_id in (TENANT_A, TENANT_B) and secret == "secret" else None

    monkeypatch.setattr(stocked.tenants, "authenticate", authenticate)
    app = create_app(stocked, operator_token=TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://maskline.test",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


async def test_rest_operator_routes(rest: httpx.AsyncClient, stocked: ControlPlane) -> None:
    stock = await rest.get("/v1/stock", params={"spec": 2})
    assert stock.status_code == 200, stock.text
    assert stock.json() == {"stock": [{"city": "深圳", "province": "广东", "spec": 2, "free": 6}]}
    cities = await rest.get("/v1/stock/cities", params={"spec": 3})
    assert cities.json() == {"cities": ["全国"]}
    topup = await rest.post(f"/v1/tenants/{TENANT_A}/topup", json={"amount": "25.50"})
    assert topup.json() == {"tenant_id": TENANT_A, "balance": "25.50"}
    bad = await rest.post(f"/v1/tenants/{TENANT_A}/topup", json={"amount": "abc"})
    assert (bad.status_code, bad.json()["code"]) == (400, "AMOUNT_ILLEGAL")
    extra = await rest.post(f"/v1/tenants/{TENANT_A}/topup", json={"amount": "1", "x": 1})
    assert extra.status_code == 400
    missing = await rest.post("/v1/tenants/nobody/topup", json={"amount": "1"})
    assert (missing.status_code, missing.json()["code"]) == (404, "TENANT_NOT_EXIST")
    balance = await rest.get(f"/v1/tenants/{TENANT_A}/balance")
    assert balance.json()["balance"] == "25.50"
    policy = await rest.put("/v1/verification-policy/AXB", json={"required": True, "grace_s": 60})
    assert policy.json() == {"type": "AXB", "required": True, "grace_s": 60.0}
    no95 = await rest.put("/v1/verification-policy/95AXN", json={"required": True})
    assert no95.status_code == 400
    listed = await rest.get("/v1/verification-policy")
    assert listed.json() == {"policies": [{"type": "AXB", "required": True, "grace_s": 60.0}]}


async def test_rest_pool_routes(rest: httpx.AsyncClient, stocked: ControlPlane) -> None:
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "10")
    bought = await rest.post(
        f"/v1/pools/{pool}/purchase",
        json={"count": 2, "city": "北京", "prefix": "170-0001-000"},
        headers=_basic(TENANT_A),
    )
    assert bought.status_code == 200, bought.text
    x, y = bought.json()["numbers"]
    assert x.startswith("+861700001000")
    broke = await rest.post(f"/v1/pools/{pool}/purchase", json={"count": 1, "city": "北京"})
    assert (broke.status_code, broke.json()["code"]) == (409, "NOT_ENOUGH_BALANCE")
    own_balance = await rest.get(f"/v1/tenants/{TENANT_A}/balance", headers=_basic(TENANT_A))
    assert own_balance.json()["balance"] == "0.00"
    national = x.removeprefix("+86")
    detail = await rest.get(f"/v1/pools/{pool}/numbers/{national}", headers=_basic(TENANT_A))
    assert detail.json()["number"] == x
    assert detail.json()["status"] == "free" and detail.json()["secret_status"] == 0
    locked = await rest.post(f"/v1/pools/{pool}/numbers/{x}/lock")
    assert locked.json()["status"] == "locked"
    unlocked = await rest.post(f"/v1/pools/{pool}/numbers/{national}/unlock")
    assert unlocked.json()["secret_status"] == 0
    asked = await rest.post(f"/v1/pools/{pool}/numbers/{x}/verification-request")
    assert asked.json()["verification"] == "pending"
    decided = await rest.post(f"/v1/numbers/{national}/verification", json={"approved": True})
    assert decided.json()["certify_status"] == 1
    listing = await rest.get(f"/v1/pools/{pool}/numbers")
    assert [n["number"] for n in listing.json()["items"]] == sorted([x, y])
    usage = await rest.get(f"/v1/pools/{pool}/usage")
    assert usage.json() == {
        "pool_key": pool, "numbers": 2, "bound": 0, "locked": 0, "utilisation_pct": 0.0,
    }  # fmt: skip
    released = await rest.post(f"/v1/pools/{pool}/numbers/{y}/release", headers=_basic(TENANT_A))
    assert released.json() == {"number": y, "ok": True}
    gone = await rest.get(f"/v1/pools/{pool}/numbers/{y}")
    assert (gone.status_code, gone.json()["code"]) == (404, "NUMBER_NOT_EXIST")
    bad_number = await rest.get(f"/v1/pools/{pool}/numbers/12")
    assert bad_number.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/v1/tenants/{TENANT_B}/topup", {"amount": "1"}),
        ("GET", "/v1/verification-policy", None),
        ("PUT", "/v1/verification-policy/AXB", {"required": True, "grace_s": 1}),
        ("POST", f"/v1/numbers/{BEIJING[0]}/verification", {"approved": True}),
        ("POST", f"/v1/tenants/{TENANT_B}/topup", {"bad": "body"}),
    ],
)
async def test_rest_operator_only_routes_refuse_tenants(
    rest: httpx.AsyncClient, db_path: Path, method: str, path: str, body: object
) -> None:
    before = snapshot(db_path)
    response = await rest.request(method, path, json=body, headers=_basic(TENANT_B))
    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN")
    assert snapshot(db_path) == before


async def test_rest_tenants_read_the_stock_like_the_operator(
    rest: httpx.AsyncClient, stocked: ControlPlane
) -> None:
    for path in ("/v1/stock", "/v1/stock/cities"):
        as_operator = await rest.get(path)
        as_tenant = await rest.get(path, headers=_basic(TENANT_B))
        assert as_operator.status_code == as_tenant.status_code == 200, as_tenant.text
        assert as_tenant.json() == as_operator.json()
        assert all(as_tenant.json().values())  # the stocked inventory shows (not empty lists)


async def test_rest_tenant_isolation(
    rest: httpx.AsyncClient, stocked: ControlPlane, db_path: Path
) -> None:
    pool = await tenant_pool(stocked)
    other = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "10")
    await funded(stocked, TENANT_B, "10")
    x, y = await stocked.inventory.buy(pool, count=2, city="北京")
    migration = await rest.post(
        "/v1/migrations", json={"from_pool": pool, "to_pool": other, "numbers": y}
    )
    assert migration.json()["moved"] == 1
    job_id = migration.json()["job_id"]
    before = snapshot(db_path)
    calls: list[tuple[str, str, object]] = [
        ("POST", f"/v1/pools/{pool}/purchase", {"count": 1, "city": "北京"}),
        ("GET", f"/v1/pools/{pool}/numbers", None),
        ("GET", f"/v1/pools/{pool}/numbers/{x}", None),
        ("POST", f"/v1/pools/{pool}/numbers/{x}/release", None),
        ("POST", f"/v1/pools/{pool}/numbers/{x}/lock", None),
        ("POST", f"/v1/pools/{pool}/numbers/{x}/unlock", None),
        ("POST", f"/v1/pools/{pool}/numbers/{x}/verification-request", None),
        ("GET", f"/v1/pools/{pool}/usage", None),
        ("POST", "/v1/migrations", {"from_pool": pool, "to_pool": other, "numbers": x}),
        ("GET", f"/v1/migrations/{job_id}", None),
        ("GET", f"/v1/tenants/{TENANT_A}/balance", None),
    ]
    for method, path, body in calls:
        foreign = await rest.request(method, path, json=body, headers=_basic(TENANT_B))
        assert foreign.status_code == 404, (path, foreign.text)
        assert foreign.json()["code"] in (
            "POOL_NOT_EXIST", "MIGRATION_NOT_EXIST", "TENANT_NOT_EXIST",
        )  # fmt: skip
        owner = (
            await rest.request("GET", path, headers=_basic(TENANT_A)) if method == "GET" else None
        )
        assert owner is None or owner.status_code == 200, path
    assert snapshot(db_path) == before


# ------------------------------------------------------------------------------- CLI


_CLI_CASES: list[tuple[list[str], tuple[str, str, object]]] = [
    (["inventory", "stock", "--city", "北京", "--spec", "1"], ("GET", "/v1/stock", None)),
    (["inventory", "cities", "--spec", "3"], ("GET", "/v1/stock/cities", None)),
    (
        ["inventory", "buy", "--pool", "P1", "--count", "2", "--city", "北京", "--prefix", "170"],
        ("POST", "/v1/pools/P1/purchase", {"count": 2, "city": "北京", "prefix": "170"}),
    ),
    (["inventory", "list", "--pool", "P1"], ("GET", "/v1/pools/P1/numbers", None)),
    (["inventory", "usage", "--pool", "P1"], ("GET", "/v1/pools/P1/usage", None)),
    (
        ["inventory", "show", "--pool", "P1", "+86 170 0001 0000"],
        ("GET", "/v1/pools/P1/numbers/%2B86%20170%200001%200000", None),
    ),
    (
        ["inventory", "release", "--pool", "P1", "17000010000"],
        ("POST", "/v1/pools/P1/numbers/17000010000/release", None),
    ),
    (
        ["inventory", "lock", "--pool", "P1", "17000010000"],
        ("POST", "/v1/pools/P1/numbers/17000010000/lock", None),
    ),
    (
        ["inventory", "unlock", "--pool", "P1", "17000010000"],
        ("POST", "/v1/pools/P1/numbers/17000010000/unlock", None),
    ),
    (
        ["inventory", "verify-request", "--pool", "P1", "17000010000"],
        ("POST", "/v1/pools/P1/numbers/17000010000/verification-request", None),
    ),
    (
        ["inventory", "verify", "17000010000", "--reject"],
        ("POST", "/v1/numbers/17000010000/verification", {"approved": False}),
    ),
    (
        ["inventory", "policy", "axb", "--required", "--grace", "60"],
        ("PUT", "/v1/verification-policy/AXB", {"required": True, "grace_s": 60.0}),
    ),
    (["inventory", "policies"], ("GET", "/v1/verification-policy", None)),
    (
        ["migration", "start", "--from", "P1", "--to", "P2", "--city", "北京", "--count", "3"],
        (
            "POST",
            "/v1/migrations",
            {"from_pool": "P1", "to_pool": "P2", "city": "北京", "count": 3},
        ),
    ),
    (
        ["migration", "start", "--from", "P1", "--to", "P2", "--numbers", "170 1, 170 2"],
        (
            "POST",
            "/v1/migrations",
            {"from_pool": "P1", "to_pool": "P2", "numbers": ["170 1", "170 2"]},
        ),
    ),
    (["migration", "show", "123"], ("GET", "/v1/migrations/123", None)),
    (["balance", "show", TENANT_A], ("GET", f"/v1/tenants/{TENANT_A}/balance", None)),
    (
        ["balance", "topup", TENANT_A, "12.50"],
        ("POST", f"/v1/tenants/{TENANT_A}/topup", {"amount": "12.50"}),
    ),
]


@pytest.mark.parametrize(("argv", "expected"), _CLI_CASES)
async def test_cli_commands_call_their_rest_route(
    control: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: tuple[str, str, object],
) -> None:
    import json
    from urllib.parse import unquote

    from starlette.routing import Match

    from engine import cli, cli_inventory

    sent: list[tuple[str, str, object]] = []

    def fake_api(
        _args: object, method: str, path: str, *, json_body: object = None, **_: object
    ) -> dict[str, object]:
        sent.append((method, path, json_body))
        row = {"number": "+8617000010000"}
        answer: dict[str, object] = {"numbers": [row["number"]], **row}
        for key in ("results", "stock", "items", "policies"):
            answer[key] = [row]
        return answer

    monkeypatch.setattr(cli_inventory, "_api", fake_api)
    assert cli.main(argv) == 0, capsys.readouterr()
    assert sent == [expected]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed and all(isinstance(line, dict) for line in printed)
    # Parity: the request lands on a REST route of the app (not the catch-all RPC endpoint).
    app = create_app(control, operator_token=TOKEN)
    method, path, _body = expected
    scope = {"type": "http", "method": method, "path": unquote(path), "root_path": ""}
    matched = [
        route
        for route in app.router.routes
        if route.matches(scope)[0] is Match.FULL and getattr(route, "path", None) != "/"
    ]
    assert matched, path


@pytest.mark.parametrize(
    "argv",
    [
        ["inventory", "buy", "--pool", "P", "--count", "0", "--city", "x"],
        ["inventory", "buy", "--pool", "P", "--count", "1"],
        ["inventory", "stock", "--spec", "4"],
        ["inventory", "verify", "17000010000"],
        ["inventory", "policy", "AXB", "--required"],
        ["migration", "start", "--from", "P1", "--to", "P2"],
        ["migration", "start", "--from", "P1", "--to", "P2", "--numbers", "1", "--city", "x"],
        ["balance", "topup", TENANT_A],
    ],
)
def test_cli_usage_errors_are_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from engine import cli

    assert cli.main(argv) == 2
    assert json.loads(capsys.readouterr().out)["code"] == "USAGE"


async def test_purchase_charges_the_tenants_own_rent(stocked: ControlPlane) -> None:
    await set_tariff_overrides(
        stocked.db, TENANT_A, {"rent_virtual": Decimal("7.30")}, now=stocked.clock()
    )
    pool = await tenant_pool(stocked)
    await funded(stocked, TENANT_A, "10")
    await stocked.inventory.buy(pool, count=1, city="北京")
    [entry] = await ledger.entries(stocked.db, TENANT_A, item="rent")
    assert entry.amount == entry.unit_price == Decimal("7.30")
    assert await stocked.inventory.balance(TENANT_A) == Decimal("2.70")
