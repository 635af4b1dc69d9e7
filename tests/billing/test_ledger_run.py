"""Rating into the real ledger (SQLite): calls, recordings, packages, rent, discounts, the job.

Golden cases of issue 6 acceptance 3: 59 s → 1 min, 61 s → 2 min, unanswered → 0; month
boundaries (call across midnight at month end, number bought on the 31st, released mid-month,
migrated mid-month); package order and exhaustion mid-call; discounts; idempotency; a whole
month computed by hand, exact to the fen.  Numbers are bought, released and migrated through
the control plane, so tenancies and first-month rent are the real ones.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from api_support import ZONE, Clock
from billing_support import Line, add_recording, at, call, ledger, store_call, total
from inventory_support import (
    BEIJING,
    SHENZHEN,
    TENANT_A,
    TENANT_B,
    e164,
    funded,
    setup_stock,
    tenant_pool,
)

from api.control import ControlPlane
from billing import ledger_run
from billing.ledger_run import bill_rent, billing_cycle, rate_call_record
from billing.tariffs import Tariff
from config.settings import Settings, TimeSettings
from routing.model import NumberSpec, PoolKey
from store import CallType
from store import billing as billing_store

pytestmark = pytest.mark.asyncio

DB = "maskline.sqlite3"


@pytest.fixture
async def pool(control: ControlPlane) -> PoolKey:
    """Tenant A's AXB pool, with 1000.00 on A's account."""
    await setup_stock(control)
    await funded(control, TENANT_A, "1000")
    return await tenant_pool(control)


async def buy(control: ControlPlane, pool: PoolKey, national: str, city: str = "北京") -> str:
    """Buy exactly this number (its full digits as the prefix) into the pool."""
    [number] = await control.inventory.buy(pool, count=1, city=city, prefix=national)
    assert number == e164(national)
    return number


# ------------------------------------------------------------------------------- calls


@pytest.mark.parametrize(
    "case", [(59, 1, "0.11"), (60, 1, "0.11"), (61, 2, "0.22")], ids=["59s", "60s", "61s"]
)
async def test_call_minutes_golden(
    control: ControlPlane, pool: PoolKey, tmp_path: Path, case: tuple[int, int, str]
) -> None:
    answered_s, minutes, amount = case
    x = await buy(control, pool, BEIJING[0])
    start = at(2030, 1, 5, 10, 0, 0)
    record = await store_call(
        control.db, call("r1", pool_key=pool, x=x, start=start, release=start + answered_s)
    )
    rated = await rate_call_record(control.db, record, zone=ZONE, now=start + 100)
    assert (rated.call_minutes, rated.pay_minutes, rated.lines) == (minutes, minutes, 1)
    assert rated.amount == Decimal(amount)
    assert ledger(tmp_path / DB, item="call") == [
        Line(
            tenant_id=TENANT_A,
            pool_key=pool,
            number=x,
            item="call",
            period="203001",
            quantity=minutes,
            unit="minute",
            unit_price=Decimal("0.11"),
            amount=Decimal(amount),
            ref="r1",
        )
    ]


async def test_unanswered_intercepted_and_operator_calls_cost_nothing(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    operator_pool = await tenant_pool(control, tenant=None)
    release = at(2030, 1, 5, 10, 0, 30)
    before = ledger(tmp_path / DB)
    for record in (
        call("unanswered", pool_key=pool, x=x, start=None, release=release),
        call(
            "intercepted",
            pool_key=pool,
            x=x,
            start=None,
            release=release,
            call_type=CallType.CALL_INTERCEPTED,
        ),
        call("no-pool", pool_key=None, x=x, start=release - 90, release=release),
        call("operator", pool_key=operator_pool, x=x, start=release - 90, release=release),
    ):
        await store_call(control.db, record)
        rated = await rate_call_record(control.db, record, zone=ZONE, now=release)
        assert (rated.lines, rated.amount) == (0, Decimal(0))
    assert ledger(tmp_path / DB) == before


async def test_rating_twice_writes_once(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    start = at(2030, 1, 5, 10)
    record = await store_call(
        control.db,
        call("r1", pool_key=pool, x=x, start=start, release=start + 150, recording_path="a.wav"),
    )
    first = await rate_call_record(control.db, record, zone=ZONE, now=start + 200)
    second = await rate_call_record(control.db, record, zone=ZONE, now=start + 300)
    assert (first.lines, first.amount) == (2, Decimal("0.33") + Decimal("0.03"))
    assert (second.lines, second.amount, second.call_minutes) == (0, Decimal(0), 3)
    # The job reading the same record afterwards adds nothing either.
    await billing_cycle(control.db, zone=ZONE, now=start + 400)
    assert [(ln.item, ln.ref) for ln in ledger(tmp_path / DB) if ln.ref == "r1"] == [
        ("call", "r1"),
        ("recording", "r1"),
    ]


async def test_tenant_tariff_applies(control: ControlPlane, pool: PoolKey, tmp_path: Path) -> None:
    x = await buy(control, pool, BEIJING[0])
    await billing_store.set_tariff_overrides(
        control.db,
        TENANT_A,
        {"call_per_minute": Decimal("0.09"), "recording_per_minute": Decimal("0.005")},
        now=0.0,
    )
    start = at(2030, 1, 5, 10)
    record = await store_call(
        control.db, call("r1", pool_key=pool, x=x, start=start, release=start + 61)
    )
    await add_recording(control.db, record, 61.0, tmp_path)
    rated = await rate_call_record(control.db, record, zone=ZONE, now=start + 100)
    assert rated.amount == Decimal("0.18") + Decimal("0.010")
    # An explicit tariff wins over the stored one (the engine may pass one it holds).
    other = await store_call(
        control.db, call("r2", pool_key=pool, x=x, start=start, release=start + 61)
    )
    explicit = await rate_call_record(
        control.db, other, Tariff(call_per_minute=Decimal("1.5")), zone=ZONE, now=start + 100
    )
    assert explicit.amount == Decimal("3.0")


async def test_recording_from_its_event_and_late_recordings(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    start = at(2030, 1, 5, 10)
    # The WAV first, then the record (the CallRecorder's order): 61 s call, 60.4 s of audio.
    early = call("early", pool_key=pool, x=x, start=start, release=start + 61)
    await add_recording(control.db, early, 60.4, tmp_path)
    await store_call(control.db, early)
    # The record first, its recording attached only after the record was rated.
    late = await store_call(
        control.db, call("late", pool_key=pool, x=x, start=start, release=start + 200)
    )
    await billing_cycle(control.db, zone=ZONE, now=start + 300)
    recordings = ledger(tmp_path / DB, item="recording")
    assert [(ln.ref, ln.quantity, ln.amount) for ln in recordings] == [
        ("early", 1, Decimal("0.01"))
    ]
    await add_recording(control.db, late, 199.7, tmp_path)
    await billing_cycle(control.db, zone=ZONE, now=start + 400)
    recordings = ledger(tmp_path / DB, item="recording")
    assert [(ln.ref, ln.quantity, ln.amount) for ln in recordings] == [
        ("early", 1, Decimal("0.01")),
        ("late", 4, Decimal("0.04")),
    ]
    # The call itself was billed once.
    assert [ln.ref for ln in ledger(tmp_path / DB, item="call")] == ["early", "late"]


async def test_call_across_midnight_at_month_end(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    record = await store_call(
        control.db,
        call(
            "midnight",
            pool_key=pool,
            x=x,
            start=at(2030, 1, 31, 23, 59, 30),
            release=at(2030, 2, 1, 0, 1, 10),
        ),
    )
    rated = await rate_call_record(control.db, record, zone=ZONE, now=at(2030, 2, 1, 0, 2))
    assert (rated.period, rated.call_minutes) == ("203002", 2)
    [line] = ledger(tmp_path / DB, item="call")
    assert (line.period, line.quantity, line.amount) == ("203002", 2, Decimal("0.22"))


# ------------------------------------------------------------------------------- packages


async def test_packages_oldest_expiring_first_exhausted_mid_call(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    clock.now = at(2030, 3, 1, 9)
    long_one = await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="year",
        price=Decimal("50.00"),
        minutes=100,
        valid_from=at(2030, 3, 1),
        valid_until=at(2031, 3, 1),
        period="203003",
        now=clock.now,
    )
    short_one = await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="march",
        price=Decimal("3.00"),
        minutes=4,
        valid_from=at(2030, 3, 1),
        valid_until=at(2030, 4, 1),
        period="203003",
        now=clock.now + 1,
    )
    start = at(2030, 3, 10, 12)
    # 3 minutes: all from the March package (it expires first although bought later).
    first = await store_call(
        control.db, call("c1", pool_key=pool, x=x, start=start, release=start + 150)
    )
    rated = await rate_call_record(control.db, first, zone=ZONE, now=start + 200)
    assert (rated.package_minutes, rated.pay_minutes, rated.amount) == (3, 0, Decimal("0.00"))
    # 5 minutes: the last minute of the March package, then 4 of the year package.
    second = await store_call(
        control.db, call("c2", pool_key=pool, x=x, start=start, release=start + 290)
    )
    rated = await rate_call_record(control.db, second, zone=ZONE, now=start + 300)
    assert (rated.package_minutes, rated.pay_minutes) == (5, 0)
    draws = [(ln.ref, ln.quantity, ln.amount) for ln in ledger(tmp_path / DB, item="call_package")]
    assert draws == [
        (f"c1:{short_one.id}", 3, Decimal("0.00")),
        (f"c2:{short_one.id}", 1, Decimal("0.00")),
        (f"c2:{long_one.id}", 4, Decimal("0.00")),
    ]
    calls = [(ln.ref, ln.quantity, ln.amount) for ln in ledger(tmp_path / DB, item="call")]
    assert calls == [("c1", 0, Decimal("0.00")), ("c2", 0, Decimal("0.00"))]
    used = {p.id: p.used_minutes for p in await billing_store.list_packages(control.db, TENANT_A)}
    assert used == {short_one.id: 4, long_one.id: 4}


async def test_package_runs_out_mid_call_rest_is_pay_as_you_go(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    x = await buy(control, pool, BEIJING[0])
    package = await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="small",
        price=Decimal("1.00"),
        minutes=2,
        valid_from=at(2030, 1, 1),
        valid_until=at(2030, 2, 1),
        period="203001",
        now=at(2030, 1, 2),
    )
    start = at(2030, 1, 5, 10)
    record = await store_call(
        control.db, call("c1", pool_key=pool, x=x, start=start, release=start + 300)
    )
    rated = await rate_call_record(control.db, record, zone=ZONE, now=start + 400)
    assert (rated.call_minutes, rated.package_minutes, rated.pay_minutes) == (5, 2, 3)
    assert rated.amount == Decimal("0.33")
    assert [
        (ln.item, ln.quantity, ln.amount)
        for ln in ledger(tmp_path / DB)
        if ln.ref and ln.ref.startswith("c1")
    ] == [
        ("call_package", 2, Decimal("0.00")),
        ("call", 3, Decimal("0.33")),
    ]
    [after] = await billing_store.list_packages(control.db, TENANT_A)
    assert (after.id, after.remaining) == (package.id, 0)
    # Rating again draws nothing more.
    again = await rate_call_record(control.db, record, zone=ZONE, now=start + 500)
    assert again.lines == 0
    [after] = await billing_store.list_packages(control.db, TENANT_A)
    assert after.used_minutes == 2


async def test_package_purchase_is_a_ledger_line_and_needs_the_balance(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="p",
        price=Decimal("90.00"),
        minutes=1000,
        valid_from=at(2030, 1, 1),
        valid_until=at(2031, 1, 1),
        period="203001",
        now=at(2030, 1, 1, 12),
    )
    [line] = ledger(tmp_path / DB, item="package")
    assert (line.tenant_id, line.period, line.quantity, line.unit) == (
        TENANT_A,
        "203001",
        1,
        "package",
    )
    assert (line.unit_price, line.amount) == (Decimal("90.00"), Decimal("90.00"))
    before = ledger(tmp_path / DB)
    with pytest.raises(billing_store.BalanceTooLowError):
        await billing_store.insert_package(
            control.db,
            tenant_id=TENANT_A,
            name="too dear",
            price=Decimal("910.01"),  # 1000 − 90 left
            minutes=10,
            valid_from=at(2030, 1, 1),
            valid_until=at(2031, 1, 1),
            period="203001",
            now=at(2030, 1, 1, 12),
        )
    assert ledger(tmp_path / DB) == before
    assert len(await billing_store.list_packages(control.db, TENANT_A)) == 1


# ------------------------------------------------------------------------------- rent


async def test_number_bought_on_the_31st_pays_that_month(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    clock.now = at(2030, 1, 31, 23, 30)
    late_january = await buy(control, pool, BEIJING[0])
    # 07:00 on February 1st in Shanghai is still January 31st in UTC: a February purchase.
    clock.now = at(2030, 2, 1, 7, 0)
    early_february = await buy(control, pool, BEIJING[1])
    purchases = [(ln.number, ln.period) for ln in ledger(tmp_path / DB, item="rent")]
    assert purchases == [(late_january, "203001"), (early_february, "203002")]
    january = await bill_rent(control.db, "2030-01", zone=ZONE, now=clock.now)
    february = await bill_rent(control.db, "2030-02", zone=ZONE, now=clock.now)
    assert (january.lines, february.lines) == (0, 1)
    clock.now = at(2030, 3, 1, 0, 0, 1)
    march = await bill_rent(control.db, "2030-03", zone=ZONE, now=clock.now)
    assert (march.lines, march.amount) == (2, Decimal("10.00"))
    by_month: dict[str, list[str | None]] = {}
    for line in ledger(tmp_path / DB, item="rent"):
        assert line.period is not None
        by_month.setdefault(line.period, []).append(line.number)
    assert by_month == {
        "203001": [late_january],
        "203002": [early_february, late_january],
        "203003": [late_january, early_february],
    }


async def test_released_mid_month_pays_that_month_not_the_next(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    clock.now = at(2030, 1, 10, 9)
    number = await buy(control, pool, SHENZHEN[0], city="深圳")
    clock.now = at(2030, 2, 15, 9)
    await control.inventory.release(pool, number)
    clock.now = at(2030, 3, 2)
    assert (await bill_rent(control.db, "2030-02", zone=ZONE, now=clock.now)).lines == 1
    assert (await bill_rent(control.db, "2030-03", zone=ZONE, now=clock.now)).lines == 0
    rents = [(ln.period, ln.amount, ln.unit) for ln in ledger(tmp_path / DB, item="rent")]
    assert rents == [("203001", Decimal("15.00"), "month"), ("203002", Decimal("15.00"), "month")]


async def test_migrated_mid_month_old_pool_this_month_new_pool_next(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    other = await tenant_pool(control)
    clock.now = at(2030, 1, 10, 9)
    number = await buy(control, pool, BEIJING[0])
    clock.now = at(2030, 2, 15, 9)
    job = await control.inventory.migrate(pool, other, numbers=[number])
    assert job.moved == 1
    clock.now = at(2030, 3, 2)
    await bill_rent(control.db, "2030-02", zone=ZONE, now=clock.now)
    await bill_rent(control.db, "2030-03", zone=ZONE, now=clock.now)
    rents = [(ln.period, ln.pool_key) for ln in ledger(tmp_path / DB, item="rent")]
    assert rents == [("203001", pool), ("203002", pool), ("203003", other)]


async def test_released_and_bought_again_by_another_tenant_in_one_month(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    """Both holders pay the month: A (held it at the first instant), B (its purchase)."""
    await funded(control, TENANT_B, "100")
    pool_b = await tenant_pool(control, tenant=TENANT_B)
    clock.now = at(2030, 1, 10)
    number = await buy(control, pool, BEIJING[0])
    clock.now = at(2030, 2, 10)
    await control.inventory.release(pool, number)
    clock.now = at(2030, 2, 20)
    assert await buy(control, pool_b, BEIJING[0]) == number
    # The job bills February late, after the re-purchase: still one line per holder.
    await bill_rent(control.db, "2030-02", zone=ZONE, now=clock.now)
    february = [
        (ln.tenant_id, ln.pool_key)
        for ln in ledger(tmp_path / DB, item="rent")
        if ln.period == "203002"
    ]
    assert sorted(february) == sorted([(TENANT_B, pool_b), (TENANT_A, pool)])


async def test_operator_pools_pay_no_rent_and_packages_never_pay_rent(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    clock.now = at(2030, 1, 10)
    await buy(control, pool, BEIJING[0])
    operator_pool = await tenant_pool(control, tenant=None)
    await control.add_numbers(operator_pool, 2, city="北京")
    package = await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="p",
        price=Decimal("0.00"),
        minutes=1000,
        valid_from=at(2030, 1, 1),
        valid_until=at(2031, 1, 1),
        period="203001",
        now=clock.now,
    )
    run = await bill_rent(control.db, "2030-02", zone=ZONE, now=at(2030, 2, 1, 0, 0, 1))
    assert (run.lines, run.amount) == (1, Decimal("5.00"))
    [line] = [ln for ln in ledger(tmp_path / DB, item="rent") if ln.period == "203002"]
    assert (line.tenant_id, line.amount) == (TENANT_A, Decimal("5.00"))
    [after] = await billing_store.list_packages(control.db, TENANT_A)
    assert after.used_minutes == 0 and after.id == package.id


async def test_bill_rent_is_idempotent_and_never_ahead(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    clock.now = at(2030, 1, 10)
    await buy(control, pool, BEIJING[0])
    await buy(control, pool, SHENZHEN[0], city="深圳")
    now = at(2030, 2, 3)
    first = await bill_rent(control.db, "203002", zone=ZONE, now=now)
    second = await bill_rent(control.db, "2030-02", zone=ZONE, now=now)
    assert (first.lines, first.amount) == (2, Decimal("20.00"))
    assert (second.lines, second.amount) == (0, Decimal(0))
    with pytest.raises(ValueError, match="not begun"):
        await bill_rent(control.db, "2030-03", zone=ZONE, now=now)
    assert len(ledger(tmp_path / DB, item="rent")) == 4


# ------------------------------------------------------------------------------- discounts


async def test_discount_is_a_negative_line_that_raises_the_balance(
    control: ControlPlane, pool: PoolKey, tmp_path: Path
) -> None:
    before = await control.inventory.balance(TENANT_A)
    entry = await billing_store.insert_discount(
        control.db,
        tenant_id=TENANT_A,
        period="203001",
        amount=Decimal("12.50"),
        pool_key=pool,
        now=at(2030, 1, 20),
    )
    assert (entry.item, entry.amount, entry.unit_price, entry.quantity) == (
        "discount",
        Decimal("-12.50"),
        Decimal("-12.50"),
        1,
    )
    assert await control.inventory.balance(TENANT_A) == before + Decimal("12.50")
    with pytest.raises(billing_store.PoolNotOfTenantError):
        await billing_store.insert_discount(
            control.db,
            tenant_id=TENANT_B,
            period="203001",
            amount=Decimal("1.00"),
            pool_key=pool,
            now=at(2030, 1, 20),
        )
    assert len(ledger(tmp_path / DB, item="discount")) == 1


# ------------------------------------------------------------------------------- a month


async def test_a_month_by_hand_exact_to_the_fen(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    """February: buy two virtual numbers and a carrier number.  March: rent, a package, calls on
    both sides of both month boundaries, a recording, a release, a migration, a discount.
    Every figure below is computed by hand from SPEC §7's default tariff."""
    other = await tenant_pool(control)
    clock.now = at(2030, 2, 10, 10)
    kept = await buy(control, pool, BEIJING[0])
    moved = await buy(control, pool, BEIJING[1])
    released = await buy(control, pool, SHENZHEN[0], city="深圳")  # 5 + 5 + 15 = 25.00
    first_pass = await billing_cycle(control.db, zone=ZONE, now=clock.now)  # February: bought
    assert first_pass.lines == 0

    # March 1, 00:00:05: the job bills March's rent; a 10-minute package is sold (9.00).
    clock.now = at(2030, 3, 1, 0, 0, 5)
    pass_march = await billing_cycle(control.db, zone=ZONE, now=clock.now)
    assert [(r.period, r.lines, r.amount) for r in pass_march.rent] == [
        ("203003", 3, Decimal("25.00"))
    ]
    package = await billing_store.insert_package(
        control.db,
        tenant_id=TENANT_A,
        name="10 minutes",
        price=Decimal("9.00"),
        minutes=10,
        valid_from=at(2030, 3, 1),
        valid_until=at(2030, 4, 1),
        period="203003",
        now=clock.now,
    )
    # A call answered on February 28 at 23:59:50 and released in March: March's (the
    # package, valid from March 1, pays for it).
    await store_call(
        control.db,
        call(
            "c0",
            pool_key=pool,
            x=kept,
            start=at(2030, 2, 28, 23, 59, 50),
            release=at(2030, 3, 1, 0, 0, 50),
        ),
    )
    start = at(2030, 3, 12, 15)
    records = [
        call("c1", pool_key=pool, x=kept, start=start, release=start + 59),  # 1: package
        call("c2", pool_key=pool, x=moved, start=start, release=start + 61),  # 2: package
        call("c3", pool_key=pool, x=kept, start=start, release=start + 485),  # 9: 6 pkg, 3 pay
        call("c4", pool_key=pool, x=kept, start=None, release=start + 20),  # unanswered
        call("c5", pool_key=pool, x=released, start=start, release=start + 30),  # 1: pay
    ]
    for record in records:
        await store_call(control.db, record)
    await add_recording(control.db, records[1], 61.0, tmp_path)  # 2 min × 0.01
    clock.now = at(2030, 3, 14)
    await billing_cycle(control.db, zone=ZONE, now=clock.now)

    clock.now = at(2030, 3, 15, 9)
    await control.inventory.release(pool, released)
    clock.now = at(2030, 3, 20, 9)
    await control.inventory.migrate(pool, other, numbers=[moved])
    await billing_store.insert_discount(
        control.db,
        tenant_id=TENANT_A,
        period="203003",
        amount=Decimal("3.00"),
        pool_key=pool,
        now=clock.now,
    )
    # Across midnight at the end of March: April's, and the March package no longer pays.
    await store_call(
        control.db,
        call(
            "c6",
            pool_key=pool,
            x=kept,
            start=at(2030, 3, 31, 23, 59),
            release=at(2030, 4, 1, 0, 0, 30),
        ),
    )
    clock.now = at(2030, 4, 1, 0, 5)
    pass_april = await billing_cycle(control.db, zone=ZONE, now=clock.now)
    # April's rent: the kept number (pool), the migrated one (now in the other pool).
    assert [(r.period, r.lines, r.amount) for r in pass_april.rent] == [
        ("203004", 2, Decimal("10.00"))
    ]

    lines = ledger(tmp_path / DB, tenant=TENANT_A)
    # February: the three purchases.
    assert total(lines, period="203002") == Decimal("25.00")
    # March: rent 25.00 + package 9.00 + c3's 3 minutes 0.33 + c5 0.11 + c2's recording 0.02
    #        − discount 3.00 (c0, c1, c2 and 6 of c3's minutes came from the package).
    assert total(lines, period="203003") == Decimal("31.46")
    # April: rent 10.00 + c6's 2 minutes 0.22.
    assert total(lines, period="203004") == Decimal("10.22")
    march_calls = {
        ln.ref: (ln.item, ln.quantity, ln.amount)
        for ln in lines
        if ln.period == "203003" and ln.item in ("call", "recording")
    }
    assert march_calls == {
        "c0": ("call", 0, Decimal("0.00")),
        "c1": ("call", 0, Decimal("0.00")),
        "c2": ("recording", 2, Decimal("0.02")),  # c2's call line is keyed the same: see below
        "c3": ("call", 3, Decimal("0.33")),
        "c5": ("call", 1, Decimal("0.11")),
    }
    c2_call = [ln for ln in lines if ln.ref == "c2" and ln.item == "call"]
    assert [(ln.quantity, ln.amount) for ln in c2_call] == [(0, Decimal("0.00"))]
    drawn = sum(ln.quantity for ln in lines if ln.item == "call_package")
    assert drawn == 1 + 1 + 2 + 6
    [after] = await billing_store.list_packages(control.db, TENANT_A)
    assert (after.id, after.remaining) == (package.id, 0)
    march_rent_pools = sorted(
        (ln.number, ln.pool_key) for ln in lines if ln.item == "rent" and ln.period == "203003"
    )
    assert march_rent_pools == sorted([(kept, pool), (moved, pool), (released, pool)])
    april_rent_pools = sorted(
        (ln.number, ln.pool_key) for ln in lines if ln.item == "rent" and ln.period == "203004"
    )
    assert april_rent_pools == sorted([(kept, pool), (moved, other)])
    # Every amount is quantity × unit price, and the balance is exact.
    for line in lines:
        if line.item != "topup":
            assert line.unit_price is not None
            assert line.amount == line.quantity * line.unit_price
    assert await control.inventory.balance(TENANT_A) == Decimal("1000") - Decimal("66.68")
    # A second pass over the same month writes nothing.
    again = await billing_cycle(control.db, zone=ZONE, now=clock.now + 60)
    assert (again.lines, again.rated_records) == (0, 0)
    assert ledger(tmp_path / DB, tenant=TENANT_A) == lines


async def test_job_restarted_without_its_cursors_charges_nothing_twice(
    control: ControlPlane, pool: PoolKey, clock: Clock, tmp_path: Path
) -> None:
    clock.now = at(2030, 1, 10)
    x = await buy(control, pool, BEIJING[0])
    start = at(2030, 1, 12)
    for i in range(3):
        await store_call(
            control.db, call(f"r{i}", pool_key=pool, x=x, start=start, release=start + 61 * (i + 1))
        )
    await billing_cycle(control.db, zone=ZONE, now=at(2030, 2, 1, 1))
    before = ledger(tmp_path / DB)
    await control.db.write(lambda conn: conn.execute("DELETE FROM billing_state"))
    result = await billing_cycle(control.db, zone=ZONE, now=at(2030, 2, 1, 2))
    assert (result.rated_records, result.lines) == (3, 0)
    assert ledger(tmp_path / DB) == before


async def test_run_billing_passes_and_survives_a_failing_pass(
    control: ControlPlane,
    pool: PoolKey,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock.now = at(2030, 1, 10)
    x = await buy(control, pool, BEIJING[0])
    start = at(2030, 1, 12)
    await store_call(control.db, call("r1", pool_key=pool, x=x, start=start, release=start + 61))
    real_cycle = ledger_run.billing_cycle
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> ledger_run.CycleResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk hiccup")
        return await real_cycle(*args, **kwargs)

    monkeypatch.setattr(ledger_run, "billing_cycle", flaky)
    settings = Settings(time=TimeSettings(zone="Asia/Shanghai"))
    await ledger_run.run_billing(
        control.db, settings, interval_s=0, clock=lambda: at(2030, 2, 1, 0, 1), passes=2
    )
    assert calls == 2
    assert [(ln.item, ln.period) for ln in ledger(tmp_path / DB) if ln.item != "topup"] == [
        ("rent", "203001"),  # the purchase
        ("call", "203001"),
        ("rent", "203002"),  # the job's first pass bills the current month
    ]


async def test_tariff_for_purchases(control: ControlPlane, pool: PoolKey) -> None:
    assert await ledger_run.tariff_for(control.db, None) == Tariff()
    await billing_store.set_tariff_overrides(
        control.db, TENANT_A, {"rent_virtual": Decimal("4.20")}, now=0.0
    )
    rents = (await ledger_run.tariff_for(control.db, TENANT_A)).rent_by_spec()
    assert rents == {
        NumberSpec.VIRTUAL: Decimal("4.20"),
        NumberSpec.CARRIER: Decimal("15.00"),
        NumberSpec.NATIONWIDE_95: Decimal("5.00"),
    }
