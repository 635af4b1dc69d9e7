"""The pure rating rules (billing.rating, billing.tariffs): golden cases and properties."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.rating import (
    InvalidMonthError,
    PackageBalance,
    PackageState,
    Period,
    Tenancy,
    allocate_minutes,
    answered_seconds,
    call_usage,
    month_bounds,
    next_period,
    package_state,
    parse_month,
    period_of,
    recording_seconds,
    rent_due,
    started_minutes,
)
from billing.tariffs import DEFAULT_TARIFF, TARIFF_FIELDS, InvalidPriceError, Tariff, parse_price
from routing.model import NumberSpec

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*parts: int) -> float:
    """A local Shanghai time as UTC epoch seconds."""
    return dt.datetime(*parts, tzinfo=SHANGHAI).timestamp()  # type: ignore[misc]


# ------------------------------------------------------------------------------- minutes


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [(0, 0), (1, 1), (59, 1), (60, 1), (61, 2), (119, 2), (120, 2), (121, 3), (3600, 60)],
)
def test_started_minutes(seconds: int, minutes: int) -> None:
    assert started_minutes(seconds) == minutes


def test_started_minutes_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        started_minutes(-1)


@pytest.mark.parametrize(
    ("answered", "minutes"), [(59, 1), (60, 1), (61, 2)], ids=["59s", "60s", "61s"]
)
def test_call_minutes_golden(answered: int, minutes: int) -> None:
    start = at(2030, 3, 10, 12, 0, 0)
    usage = call_usage(start_time=start, release_time=start + answered, zone=SHANGHAI)
    assert usage.call_minutes == minutes
    assert usage.recording_minutes == 0
    assert usage.period == "203003"


def test_unanswered_call_is_zero_minutes() -> None:
    release = at(2030, 3, 10, 12, 0, 45)
    usage = call_usage(start_time=None, release_time=release, zone=SHANGHAI, recorded=True)
    assert (usage.call_minutes, usage.recording_minutes) == (0, 0)


def test_answered_and_released_in_the_same_second_is_zero() -> None:
    start = at(2030, 3, 10, 12, 0, 0) + 0.2
    assert call_usage(start_time=start, release_time=start + 0.5, zone=SHANGHAI).call_minutes == 0


def test_seconds_count_as_the_report_shows_them() -> None:
    """Times are truncated to the second as in the end-of-call report, then subtracted."""
    base = at(2030, 3, 10, 12, 0, 0)
    # Answer 12:00:00.9, release 12:01:00.1: the report says 60 s (really 59.2 s).
    assert answered_seconds(base + 0.9, base + 60.1) == 60
    # Answer 12:00:00.1, release 12:01:00.9: the report says 60 s (really 60.8 s) → 1 minute.
    assert answered_seconds(base + 0.1, base + 60.9) == 60
    assert started_minutes(answered_seconds(base + 0.1, base + 60.9)) == 1
    # Answer 12:00:00.9, release 12:01:01.0: 61 s → 2 minutes.
    assert started_minutes(answered_seconds(base + 0.9, base + 61.0)) == 2


def test_call_across_midnight_at_month_end_belongs_to_the_month_it_ended() -> None:
    answered = at(2030, 1, 31, 23, 59, 30)
    released = at(2030, 2, 1, 0, 1, 10)  # 100 s
    usage = call_usage(start_time=answered, release_time=released, zone=SHANGHAI)
    assert usage.period == "203002"
    assert usage.call_minutes == 2


def test_month_is_local_not_utc() -> None:
    # 2030-02-01 07:00 in Shanghai is still January 31 in UTC.
    early_february = at(2030, 2, 1, 7, 0, 0)
    assert dt.datetime.fromtimestamp(early_february, tz=dt.UTC).month == 1
    assert period_of(early_february, SHANGHAI) == "203002"
    assert period_of(early_february, dt.UTC) == "203001"


@pytest.mark.parametrize(
    ("duration_s", "call_s", "expected"),
    [
        (59.4, 59, 1),  # a recording as long as its call
        (60.02, 60, 1),  # one packet longer than the call: rounded, not a second minute
        (60.6, 61, 2),
        (30.0, 125, 1),  # shorter than the call (late start): billed its own length
        (200.0, 61, 2),  # never more than the call's minutes
        (0.0, 61, 0),
    ],
)
def test_recording_minutes(duration_s: float, call_s: int, expected: int) -> None:
    start = at(2030, 3, 10, 12, 0, 0)
    usage = call_usage(
        start_time=start,
        release_time=start + call_s,
        zone=SHANGHAI,
        recorded=True,
        recording_duration_s=duration_s,
    )
    assert usage.recording_minutes == expected


def test_recorded_without_an_event_bills_the_call_minutes() -> None:
    start = at(2030, 3, 10, 12, 0, 0)
    usage = call_usage(start_time=start, release_time=start + 125, zone=SHANGHAI, recorded=True)
    assert (usage.call_minutes, usage.recording_minutes) == (3, 3)


def test_recording_seconds_rounds_half_up_and_refuses_nonsense() -> None:
    assert [recording_seconds(v) for v in (0.0, 0.49, 0.5, 59.5, 60.49)] == [0, 0, 1, 60, 60]
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            recording_seconds(bad)


# ------------------------------------------------------------------------------- months


def test_parse_month_forms_and_errors() -> None:
    assert parse_month("2026-12") == "202612"
    assert parse_month(" 202601 ") == "202601"
    for bad in ("2026-13", "2026-00", "26-12", "1999-12", "2100-01", "2026/12", "", "abcd-ef"):
        with pytest.raises(InvalidMonthError):
            parse_month(bad)


def test_next_period_and_bounds() -> None:
    assert next_period(Period("203012")) == "203101"
    assert next_period(Period("203001")) == "203002"
    start, end = month_bounds(Period("203002"), SHANGHAI)
    assert start == at(2030, 2, 1)
    assert end == at(2030, 3, 1)
    assert (end - start) / 86400 == 28


@settings(max_examples=300)
@given(st.integers(min_value=int(at(2001, 1, 1)), max_value=int(at(2098, 12, 1))))
def test_every_instant_lies_in_the_bounds_of_its_period(epoch_s: int) -> None:
    period = period_of(epoch_s, SHANGHAI)
    start, end = month_bounds(period, SHANGHAI)
    assert start <= epoch_s < end


# ------------------------------------------------------------------------------- packages


def package(
    package_id: str,
    remaining: int,
    *,
    until: float,
    since: float = 0.0,
    bought: float = 0.0,
) -> PackageBalance:
    return PackageBalance(package_id, remaining, since, until, bought)


def test_packages_draw_oldest_expiring_first_then_pay() -> None:
    now = at(2030, 3, 10, 12)
    packages = [
        package("late", 100, until=at(2030, 12, 31)),
        package("soon", 3, until=at(2030, 3, 31)),
    ]
    allocation = allocate_minutes(5, packages, at=now)
    assert [(d.package_id, d.minutes) for d in allocation.draws] == [("soon", 3), ("late", 2)]
    assert allocation.pay_minutes == 0
    assert allocation.package_minutes == 5


def test_package_exhausted_mid_call_leaves_the_rest_to_pay() -> None:
    now = at(2030, 3, 10, 12)
    allocation = allocate_minutes(5, [package("only", 2, until=at(2030, 4, 1))], at=now)
    assert [(d.package_id, d.minutes) for d in allocation.draws] == [("only", 2)]
    assert allocation.pay_minutes == 3


def test_same_expiry_draws_the_package_bought_first() -> None:
    now = at(2030, 3, 10, 12)
    packages = [
        package("second", 10, until=at(2030, 4, 1), bought=2.0),
        package("first", 10, until=at(2030, 4, 1), bought=1.0),
    ]
    assert allocate_minutes(12, packages, at=now).draws[0].package_id == "first"


def test_packages_not_valid_at_the_call_or_empty_are_skipped() -> None:
    now = at(2030, 3, 10, 12)
    packages = [
        package("expired", 50, until=now),  # valid_until is exclusive
        package("pending", 50, since=now + 1, until=at(2030, 12, 1)),
        package("empty", 0, until=at(2030, 12, 1)),
    ]
    allocation = allocate_minutes(4, packages, at=now)
    assert allocation.draws == ()
    assert allocation.pay_minutes == 4


@settings(max_examples=300)
@given(
    minutes=st.integers(min_value=0, max_value=500),
    balances=st.lists(
        st.tuples(st.integers(0, 100), st.integers(-5, 5), st.integers(-5, 5)), max_size=6
    ),
)
def test_allocation_covers_exactly_the_minutes(
    minutes: int, balances: list[tuple[int, int, int]]
) -> None:
    now = 1000.0
    packages = [
        PackageBalance(f"p{i}", left, now + since, now + 10 + until, float(i))
        for i, (left, since, until) in enumerate(balances)
    ]
    allocation = allocate_minutes(minutes, packages, at=now)
    assert allocation.package_minutes + allocation.pay_minutes == minutes
    by_id = {p.package_id: p for p in packages}
    for draw in allocation.draws:
        chosen = by_id[draw.package_id]
        assert 0 < draw.minutes <= chosen.remaining
        assert chosen.valid_from <= now < chosen.valid_until
    # Pay-as-you-go only once every usable package is empty.
    usable = sum(p.remaining for p in packages if p.valid_from <= now < p.valid_until)
    assert allocation.pay_minutes == max(0, minutes - usable)
    expiries = [by_id[d.package_id].valid_until for d in allocation.draws]
    assert expiries == sorted(expiries)


def test_package_state() -> None:
    window = {"valid_from": 100.0, "valid_until": 200.0}
    assert package_state(minutes=10, used_minutes=0, now=50.0, **window) is PackageState.PENDING
    assert package_state(minutes=10, used_minutes=3, now=150.0, **window) is PackageState.ACTIVE
    assert package_state(minutes=10, used_minutes=10, now=150.0, **window) is (
        PackageState.EXHAUSTED
    )
    assert package_state(minutes=10, used_minutes=3, now=200.0, **window) is PackageState.EXPIRED
    assert package_state(minutes=10, used_minutes=10, now=300.0, **window) is (
        PackageState.EXHAUSTED
    )


# ------------------------------------------------------------------------------- rent


def test_rent_due_goes_to_the_pool_holding_the_number_at_the_first_instant() -> None:
    march = Period("203003")
    start, _ = month_bounds(march, SHANGHAI)
    tenancies = [
        # Held since January, still held: due.
        Tenancy(1, "+8617000000001", "P1", at(2030, 1, 5), None, "purchase"),
        # Released mid-February: not due in March.
        Tenancy(2, "+8617000000002", "P1", at(2030, 1, 5), at(2030, 2, 14), "purchase"),
        # Released mid-March: due in March (the month of the release).
        Tenancy(3, "+8617000000003", "P1", at(2030, 1, 5), at(2030, 3, 14), "purchase"),
        # Migrated mid-March from P1 to P2: March to P1 …
        Tenancy(4, "+8617000000004", "P1", at(2030, 1, 5), at(2030, 3, 20), "purchase"),
        Tenancy(5, "+8617000000004", "P2", at(2030, 3, 20), None, "migration"),
        # … migrated at the very first instant of March: March to the new pool.
        Tenancy(6, "+8617000000005", "P1", at(2030, 1, 5), start, "purchase"),
        Tenancy(7, "+8617000000005", "P2", start, None, "migration"),
        # Bought at the first instant of March: its purchase charged March.
        Tenancy(8, "+8617000000006", "P1", start, None, "purchase"),
        # Bought on the last day of February: due in March.
        Tenancy(9, "+8617000000007", "P1", at(2030, 2, 28, 23, 59, 59), None, "purchase"),
        # Released at the first instant of March: not due.
        Tenancy(10, "+8617000000008", "P1", at(2030, 1, 5), start, "purchase"),
    ]
    due = rent_due(tenancies, period=march, month_start=start)
    assert [(d.number[-1], d.pool_key, d.tenancy_id) for d in due] == [
        ("1", "P1", 1),
        ("3", "P1", 3),
        ("4", "P1", 4),
        ("5", "P2", 7),
        ("7", "P1", 9),
    ]
    assert {d.period for d in due} == {"203003"}


# ------------------------------------------------------------------------------- tariffs


def test_default_tariff_is_spec_7() -> None:
    assert DEFAULT_TARIFF.rent_for(NumberSpec.VIRTUAL) == Decimal("5.00")
    assert DEFAULT_TARIFF.rent_for(NumberSpec.CARRIER) == Decimal("15.00")
    assert DEFAULT_TARIFF.rent_for(NumberSpec.NATIONWIDE_95) == Decimal("5.00")
    assert DEFAULT_TARIFF.call_per_minute == Decimal("0.11")
    assert DEFAULT_TARIFF.recording_per_minute == Decimal("0.01")
    assert DEFAULT_TARIFF.sms_intercept_per_segment == Decimal("0.025")
    assert DEFAULT_TARIFF.sms_smart_per_segment == Decimal("0.1")
    assert all(isinstance(getattr(DEFAULT_TARIFF, f), Decimal) for f in TARIFF_FIELDS)


def test_overrides_replace_only_what_they_name() -> None:
    mine = DEFAULT_TARIFF.with_overrides({"call_per_minute": Decimal("0.09"), "rent_95": None})
    assert mine.call_per_minute == Decimal("0.09")
    assert mine.rent_95 == Decimal("5.00")
    assert mine.rent_by_spec()[NumberSpec.CARRIER] == Decimal("15.00")
    assert mine == Tariff(call_per_minute=Decimal("0.09"))
    with pytest.raises(KeyError):
        DEFAULT_TARIFF.with_overrides({"call": Decimal(1)})


def test_parse_price() -> None:
    assert parse_price("0.11") == Decimal("0.11")
    assert parse_price("0.025") == Decimal("0.025")
    assert parse_price("0.1100") == Decimal("0.110")
    assert parse_price("0") == Decimal(0)
    for bad in ("0.0001", "-1", "abc", "NaN", "Infinity", "1e9", ""):
        with pytest.raises(InvalidPriceError):
            parse_price(bad)
