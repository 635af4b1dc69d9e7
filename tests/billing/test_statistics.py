"""Full and classified statistics against a hand-computed month (issue 6, acceptance 4).

The fixture (``test_statistics_support``) inserts call records and ledger lines directly; every
expected figure below is worked out by hand from those rows, in the comments.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_statistics_support import X1, X2, X3, ZONE, Month, at, build_month

from billing.rating import PackageState
from billing.statistics import (
    ClassifiedRow,
    DayRange,
    FullRow,
    LedgerLine,
    StatisticsInputError,
    call_record_id,
    classified_statistics,
    full_statistics,
    money_text,
    package_statistics,
    parse_day_range,
    parse_month,
    summarise_ledger,
)
from billing.statistics import Month as BillingMonth
from routing.model import BindingType, PoolKey
from store import Database
from store import billing as billing_store
from store.ledger import UnknownTenantError, insert_entry_in, topup
from store.repositories import create_pool, create_tenant, get_pool

D = Decimal


@pytest.fixture
async def month(tmp_path: Path) -> AsyncIterator[Month]:
    db = await Database.open(tmp_path / "maskline.sqlite3")
    try:
        yield await build_month(db)
    finally:
        await db.close()


def _shape(row: FullRow) -> tuple[object, ...]:
    return (row.tenant_id, row.number_type, row.pool_key, row.item, row.count, row.unit,
            row.amount, row.lines)  # fmt: skip


# ------------------------------------------------------------------------------ full


async def test_full_statistics_of_a_tenant_month(month: Month) -> None:
    stats = await full_statistics(month.db, parse_month("2026-12"), tenant_id=month.t1)
    t1, axb, axn = month.t1, month.axb, month.axn
    # By hand, December lines of T1 (the top-up, November and January lines left out):
    assert [_shape(row) for row in stats.rows] == [
        # AXB pool: rent X1 + X2; calls r1 (2 min) + r2 (1 min); r1's recording; a discount.
        (t1, BindingType.AXB, axb, "rent", 2, "month", D("10.00"), 2),
        (t1, BindingType.AXB, axb, "call", 3, "minute", D("0.33"), 2),
        (t1, BindingType.AXB, axb, "recording", 2, "minute", D("0.02"), 1),
        (t1, BindingType.AXB, axb, "discount", 1, None, D("-1.50"), 1),
        # AXN pool: rent X3; r3's 3 minutes all from the package.
        (t1, BindingType.AXN, axn, "rent", 1, "month", D("15.00"), 1),
        (t1, BindingType.AXN, axn, "call", 0, "minute", D("0"), 1),
        (t1, BindingType.AXN, axn, "call_package", 3, "minute", D("0"), 1),
        # No pool: the package purchase.
        (t1, None, None, "package", 1, "package", D("30.00"), 1),
    ]
    # 10.00 + 0.33 + 0.02 - 1.50 + 15.00 + 30.00
    assert stats.total == D("53.85")
    assert all(row.details == () for row in stats.rows)


async def test_full_statistics_details_are_the_lines_behind_each_row(month: Month) -> None:
    stats = await full_statistics(month.db, parse_month("202612"), tenant_id=month.t1, details=True)
    rent, call = stats.rows[0], stats.rows[1]
    assert [(line.number, line.amount) for line in rent.details] == [
        (X1, D("5.00")),
        (X2, D("5.00")),
    ]
    assert [(line.ref, line.quantity, line.unit_price) for line in call.details] == [
        ("r1", 2, D("0.11")),
        ("r2", 1, D("0.11")),
    ]
    # Details never change the figures.
    for row in stats.rows:
        assert row.count == sum(line.quantity for line in row.details)
        assert row.amount == sum((line.amount for line in row.details), D(0))
        assert row.lines == len(row.details)


async def test_full_statistics_of_every_tenant_and_other_months(month: Month) -> None:
    everyone = await full_statistics(month.db, parse_month("2026-12"))
    t2_rows = [_shape(row) for row in everyone.rows if row.tenant_id == month.t2]
    assert t2_rows == [
        (month.t2, BindingType.AXB, month.other, "rent", 1, "month", D("5.00"), 1),
        (month.t2, BindingType.AXB, month.other, "call", 1, "minute", D("0.11"), 1),
    ]
    assert everyone.total == D("53.85") + D("5.11")
    # November: X1's rent and r0; January: r5 (released after midnight) and X1's rent.
    november = await full_statistics(month.db, parse_month("2026-11"), tenant_id=month.t1)
    assert [(r.item, r.amount) for r in november.rows] == [("rent", D("5.00")), ("call", D("0.22"))]
    january = await full_statistics(month.db, parse_month("2027-01"), tenant_id=month.t1)
    assert [(r.item, r.amount) for r in january.rows] == [("rent", D("5.00")), ("call", D("0.11"))]
    empty = await full_statistics(month.db, parse_month("2026-10"), tenant_id=month.t1)
    assert (empty.rows, empty.total) == ((), D(0))


def _line(**fields: object) -> LedgerLine:
    base: dict[str, object] = dict(
        id=1, tenant_id="T", pool_key=PoolKey("P"), pool_type=BindingType.AXB, number=None,
        item="call", period="202612", quantity=1, unit="minute", unit_price=D("0.11"),
        amount=D("0.11"), ref=None, created_at=0.0,
    )  # fmt: skip
    base.update(fields)
    return LedgerLine(**base)  # type: ignore[arg-type]


def test_summarise_orders_items_types_and_skips_topups() -> None:
    lines = [
        _line(id=1, item="zz_future", unit="thing", amount=D("1")),
        _line(id=2, item="topup", amount=D("100")),
        _line(id=3, item="discount", unit=None, amount=D("-2")),
        _line(id=4, item="rent", unit="month", amount=D("5")),
        _line(id=5, pool_type=BindingType.AXG, pool_key=PoolKey("A"), item="call"),
        _line(id=6, pool_type=None, pool_key=None, item="package", unit="package"),
    ]
    rows = summarise_ledger(lines)
    assert [(r.number_type, r.item) for r in rows] == [
        (BindingType.AXB, "rent"),
        (BindingType.AXB, "discount"),
        (BindingType.AXB, "zz_future"),
        (BindingType.AXG, "call"),
        (None, "package"),
    ]


# ------------------------------------------------------------------------------ classified


def _figures(row: ClassifiedRow) -> tuple[object, ...]:
    return (
        row.billed_numbers, row.calls, row.answered, row.intercepted, row.connection_rate_pct,
        row.total_talk_s, row.average_talk_s, row.call_fees, row.monthly_fees, row.fees,
    )  # fmt: skip


async def test_classified_statistics_of_a_month(month: Month) -> None:
    stats = await classified_statistics(
        month.db, parse_day_range("2026-12-01", "2026-12-31"), ZONE, tenant_id=month.t1
    )
    # The January pool did not exist yet; T2's pool is not T1's.
    assert [(row.number_type, row.pool_key) for row in stats.rows] == [
        (BindingType.AXB, month.axb),
        (BindingType.AXN, month.axn),
    ]
    axb, axn = stats.rows
    # AXB: calls r1, r2, r6, r7 (the SMS is no call; r0 ended in November, r5 in January);
    # answered r1 (90 s) and r2 (45 s); r7 intercepted; 2/4 = 50 %; 135 s, 67.5 s each;
    # call fees r1 0.22 + 0.02, r2 0.11; monthly: rent 5.00 + 5.00, discount -1.50.
    assert _figures(axb) == (2, 4, 2, 1, 50.0, 135.0, 67.5, D("0.35"), D("8.50"), D("8.85"))
    # AXN: r3 answered 150 s, paid by the package; rent 15.00.
    assert _figures(axn) == (1, 1, 1, 0, 100.0, 150.0, 150.0, D("0"), D("15.00"), D("15.00"))
    # Total: 3/5 = 60 %, 285 s / 3 = 95 s.
    assert _figures(stats.total) == (
        3, 5, 3, 1, 60.0, 285.0, 95.0, D("0.35"), D("23.50"), D("23.85"),
    )  # fmt: skip
    # Over a whole month the fees are the full statistics' total less the lines of no pool.
    full = await full_statistics(month.db, parse_month("2026-12"), tenant_id=month.t1)
    no_pool = sum((row.amount for row in full.rows if row.pool_key is None), D(0))
    assert stats.total.fees == full.total - no_pool


async def test_classified_statistics_of_one_day_and_across_a_month_end(month: Month) -> None:
    axb = await get_pool(month.db, month.axb)
    assert axb is not None
    one_day = await classified_statistics(
        month.db, parse_day_range("2026-12-20", "2026-12-20"), ZONE, pool=axb
    )
    # r2 (answered 45 s) and r6 (busy); the month's rent and discount are monthly.
    assert [_figures(row) for row in one_day.rows] == [
        (2, 2, 1, 0, 50.0, 45.0, 45.0, D("0.11"), D("8.50"), D("8.61")),
    ]
    across = await classified_statistics(
        month.db, parse_day_range("2026-12-31", "2027-01-01"), ZONE, pool=axb
    )
    # r7 (intercepted on the 31st) and r5 (ended 00:00:30 on the 1st, 60 s, 0.11);
    # monthly: December 5.00 + 5.00 - 1.50 and January's rent of X1 5.00; X1 and X2 billed.
    assert [_figures(row) for row in across.rows] == [
        (2, 2, 1, 1, 50.0, 60.0, 60.0, D("0.11"), D("13.50"), D("13.61")),
    ]


async def test_classified_statistics_filters(month: Month) -> None:
    days = parse_day_range("2026-12-01", "2026-12-31")
    by_type = await classified_statistics(
        month.db, days, ZONE, tenant_id=month.t1, number_type=BindingType.AXN
    )
    assert [row.pool_key for row in by_type.rows] == [month.axn]
    assert by_type.total.number_type is BindingType.AXN
    assert _figures(by_type.total) == _figures(by_type.rows[0])
    t2 = await classified_statistics(month.db, days, ZONE, tenant_id=month.t2)
    # r4 answered 30 s, 0.11; rent 5.00.
    assert [_figures(row) for row in t2.rows] == [
        (1, 1, 1, 0, 100.0, 30.0, 30.0, D("0.11"), D("5.00"), D("5.11")),
    ]
    everyone = await classified_statistics(month.db, days, ZONE)
    assert {row.pool_key for row in everyone.rows} == {month.axb, month.axn, month.other}
    assert everyone.total.calls == 6
    none = await classified_statistics(
        month.db, days, ZONE, tenant_id=month.t2, number_type=BindingType.AXG
    )
    assert none.rows == ()
    assert _figures(none.total) == (0, 0, 0, 0, 0.0, 0.0, 0.0, D(0), D(0), D(0))
    # The pool created in January shows from then on, with nothing in it.
    january = await classified_statistics(
        month.db, parse_day_range("2027-01-02", "2027-01-31"), ZONE, tenant_id=month.t1
    )
    assert [row.pool_key for row in january.rows] == [month.axb, month.axn, month.late]
    assert january.rows[2].calls == 0


# ------------------------------------------------------------------------------ input


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "26-12", "2026/12", "december", "", "1969-12"]
)
def test_parse_month_refuses(text: str) -> None:
    with pytest.raises(StatisticsInputError):
        parse_month(text)


def test_month_bounds_are_local_midnights() -> None:
    december = parse_month(" 2026-12 ")
    assert (december.period, december.label) == ("202612", "2026-12")
    assert december.bounds(ZONE) == (at(2026, 12, 1), at(2027, 1, 1))
    # 16:00 UTC on 30 November is midnight on 1 December in Shanghai.
    assert december.bounds(ZONE)[0] == dt.datetime(2026, 11, 30, 16, tzinfo=dt.UTC).timestamp()
    assert december.next() == BillingMonth(2027, 1)
    assert BillingMonth(2027, 1).previous() == december


@pytest.mark.parametrize(
    ("first", "last"),
    [("2026-12-02", "2026-12-01"), ("2026-02-30", "2026-03-01"), ("2026-12-1", "2026-12-31"),
     ("2025-01-01", "2026-01-02"), ("x", "2026-12-01")],
)  # fmt: skip
def test_parse_day_range_refuses(first: str, last: str) -> None:
    with pytest.raises(StatisticsInputError):
        parse_day_range(first, last)


@settings(max_examples=200)
@given(
    st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 1, 1)),
    st.integers(min_value=0, max_value=365),
)
def test_day_range_months_cover_exactly_its_days(first: dt.date, length: int) -> None:
    days = DayRange(first, first + dt.timedelta(days=length))
    months = days.months()
    touched = {(d.year, d.month) for d in (first + dt.timedelta(n) for n in range(length + 1))}
    assert [(m.year, m.month) for m in months] == sorted(touched)
    start, end = days.bounds(ZONE)
    assert end - start == (length + 1) * 86400  # Shanghai has no daylight saving


def test_call_record_id_and_money_text() -> None:
    assert call_record_id("call", "abc") == "abc"
    assert call_record_id("recording", "abc") == "abc"
    assert call_record_id("call_package", "abc:pkg") == "abc"
    assert call_record_id("rent", f"rent:{X3}:202612") is None
    assert call_record_id("call", None) is None
    assert [money_text(D(v)) for v in ("0", "0.1", "5", "0.025", "-1.5", "12.345")] == [
        "0.00", "0.10", "5.00", "0.025", "-1.50", "12.345",
    ]  # fmt: skip


# ------------------------------------------------------------------------------ packages


async def _package(
    db: Database, tenant: str, name: str, *, minutes: int, valid: tuple[float, float], at: float
) -> str:
    row = await billing_store.insert_package(
        db, tenant_id=tenant, name=name, price=D("10.00"), minutes=minutes,
        valid_from=valid[0], valid_until=valid[1], period="202611", now=at,
    )  # fmt: skip
    return row.id


async def _draw(db: Database, tenant: str, package_id: str, record: str, *, minutes: int,
                period: str) -> None:  # fmt: skip
    def op(conn: sqlite3.Connection) -> None:
        insert_entry_in(
            conn, tenant_id=tenant, item="call_package", amount=D(0), created_at=0.0,
            period=period, quantity=minutes, unit="minute", unit_price=D(0),
            ref=f"{record}:{package_id}",
        )  # fmt: skip
        billing_store.draw_in(conn, package_id, minutes)

    await db.write(op)


async def test_package_records_and_remaining_quota(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "packages.sqlite3")
    try:
        for tenant in ("T1", "T2"):
            await create_tenant(db, tenant_id=tenant, name=tenant, now=at(2026, 11, 1))
            await topup(db, tenant, D("1000.00"), now=at(2026, 11, 1))
        december = (at(2026, 12, 1), at(2027, 1, 1))
        p1 = await _package(db, "T1", "100 分钟", minutes=100, valid=december, at=at(2026, 11, 20))
        p2 = await _package(db, "T1", "old", minutes=10, valid=(at(2026, 11, 1), at(2026, 12, 1)),
                            at=at(2026, 11, 21))  # fmt: skip
        p3 = await _package(db, "T1", "next", minutes=50, valid=(at(2027, 1, 1), at(2027, 2, 1)),
                            at=at(2026, 11, 22))  # fmt: skip
        p4 = await _package(db, "T1", "small", minutes=5, valid=december, at=at(2026, 11, 23))
        p5 = await _package(db, "T2", "other", minutes=20, valid=december, at=at(2026, 11, 24))
        await _draw(db, "T1", p1, "ra", minutes=3, period="202612")
        await _draw(db, "T1", p1, "rb", minutes=5, period="202611")
        await _draw(db, "T1", p2, "rc", minutes=4, period="202611")
        await _draw(db, "T1", p4, "rd", minutes=5, period="202612")
        now = at(2026, 12, 15, 12)
        stats = await package_statistics(db, parse_month("2026-12"), now=now, tenant_id="T1")
        shape = [
            (p.package_id, p.name, p.minutes, p.used_minutes, p.remaining_minutes, p.state,
             p.month_minutes, p.price)
            for p in stats.packages
        ]  # fmt: skip
        assert shape == [
            # 100 min, 3 used in December and 5 in November: active, 92 left.
            (p1, "100 分钟", 100, 8, 92, PackageState.ACTIVE, 3, D("10.00")),
            # Valid in November only: expired with 6 minutes lost.
            (p2, "old", 10, 4, 6, PackageState.EXPIRED, 0, D("10.00")),
            # Valid from January: pending, all 50 usable later.
            (p3, "next", 50, 0, 50, PackageState.PENDING, 0, D("10.00")),
            # All 5 minutes used in December.
            (p4, "small", 5, 5, 0, PackageState.EXHAUSTED, 5, D("10.00")),
        ]
        assert (stats.packages[0].valid_from, stats.packages[0].valid_until) == december
        assert stats.packages[0].purchased_at == at(2026, 11, 20)
        # Usable quota: 92 (active) + 50 (pending); the expired 6 are gone.
        assert (stats.remaining_minutes, stats.month_minutes) == (142, 8)
        november = await package_statistics(db, parse_month("2026-11"), now=now, tenant_id="T1")
        assert [p.month_minutes for p in november.packages] == [5, 4, 0, 0]
        everyone = await package_statistics(db, parse_month("2026-12"), now=now)
        assert [p.package_id for p in everyone.packages] == [p1, p2, p3, p4, p5]
        assert (everyone.remaining_minutes, everyone.month_minutes) == (162, 8)
        with pytest.raises(UnknownTenantError):
            await package_statistics(db, parse_month("2026-12"), now=now, tenant_id="T9")
    finally:
        await db.close()


async def test_sums_are_exact_decimals_whatever_the_amount_text(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "exact.sqlite3")
    try:
        await create_tenant(db, tenant_id="T1", name="t", now=at(2026, 12, 1))
        pool = await create_pool(db, type=BindingType.AXB, name="p", tenant_id="T1",
                                 now=at(2026, 12, 1))  # fmt: skip
        # As floats 0.1 + 0.1 + 0.1 is 0.30000000000000004; "0.20" and "0.2" are one value.
        amounts = ["0.1", "0.1", "0.1", "0.20", "0.2", "0.025", "-0.3"]

        def op(conn: sqlite3.Connection) -> None:
            for n, amount in enumerate(amounts):
                insert_entry_in(
                    conn, tenant_id="T1", item="discount" if amount.startswith("-") else "call",
                    pool_key=pool, period="202612", quantity=1, unit="minute",
                    amount=D(amount), ref=f"x{n}", created_at=at(2026, 12, 2),
                )  # fmt: skip

        await db.write(op)
        for details in (False, True):
            stats = await full_statistics(db, parse_month("2026-12"), details=details)
            assert [(r.item, r.count, r.lines, r.amount) for r in stats.rows] == [
                ("call", 6, 6, D("0.725")),
                ("discount", 1, 1, D("-0.3")),
            ]
            assert stats.total == D("0.425")
            assert money_text(stats.total) == "0.425"
    finally:
        await db.close()
