"""SMS charges (SPEC §7): per segment through the tariffs, rated by the billing job once, shown
by the full and classified statistics. Messages go through the real SmsService and SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from api_support import ZONE, Api
from test_sms_support import A_NO, B_NO, STRANGER, SmsScene, make_sms_scene, rows

from billing.ledger_run import billing_cycle, rate_sms_messages
from billing.rating import sms_charge
from billing.statistics import (
    Month,
    call_record_id,
    classified_statistics,
    full_statistics,
    parse_day_range,
)
from billing.tariffs import DEFAULT_TARIFF, Item
from store import SmsMode
from store.billing import set_tariff_overrides


@pytest.fixture
async def scene(api: Api) -> AsyncIterator[SmsScene]:
    made = await make_sms_scene(api)
    yield made
    await made.service.close()
    await made.reports.close()


def ledger(scene: SmsScene) -> list[tuple[object, ...]]:
    return rows(
        scene.db_path,
        "SELECT item, quantity, unit, unit_price, amount, ref, pool_key, number, period"
        " FROM ledger WHERE item LIKE 'sms_%' ORDER BY id",
    )


@pytest.mark.parametrize(
    ("state", "segments", "expected"),
    [
        ("delivered", 2, ("sms_smart", 2)),
        ("intercepted", 1, ("sms_intercept", 1)),
        ("failed", 3, ("sms_intercept", 3)),
        ("discarded", 1, ("sms_intercept", 1)),
        ("unsubscribe", 1, None),
        ("pending", 1, None),
        ("sending", 1, None),
    ],
)
def test_sms_charge_rules(state: str, segments: int, expected: tuple[str, int] | None) -> None:
    assert sms_charge(state, segments) == expected


def test_sms_charge_refuses_zero_segments() -> None:
    with pytest.raises(ValueError, match="segment"):
        sms_charge("delivered", 0)


def test_tariff_prices_per_segment() -> None:
    assert DEFAULT_TARIFF.sms_per_segment(Item.SMS_SMART) == Decimal("0.1")
    assert DEFAULT_TARIFF.sms_per_segment(Item.SMS_INTERCEPT) == Decimal("0.025")
    with pytest.raises(ValueError, match="SMS"):
        DEFAULT_TARIFF.sms_per_segment(Item.CALL)


# Texts by length (code points) and the segments they are billed as, delivered (the 14 code
# points of signature and suffix added) and intercepted (as received).
CHARGE_TABLE = [
    # chars, letter, smart segments, intercept segments
    (0, "a", 1, 1),
    (1, "中", 1, 1),
    (56, "中", 1, 1),
    (57, "a", 2, 1),
    (70, "中", 2, 1),
    (71, "a", 2, 2),
    (140, "中", 3, 2),
    (141, "a", 3, 3),
]


@pytest.mark.parametrize(("chars", "letter", "smart", "intercept"), CHARGE_TABLE)
async def test_segments_and_charges(
    api: Api, chars: int, letter: str, smart: int, intercept: int
) -> None:
    scene = await make_sms_scene(api)
    try:
        x = scene.axb_binding.x
        text = letter * chars
        await scene.mode(scene.axb, SmsMode.SMART)
        assert (await scene.text(x, A_NO, text)).status == 202
        await scene.service.settle()
        await scene.mode(scene.axb, SmsMode.INTERCEPT)
        assert (await scene.text(x, A_NO, text)).status == 202
        await rate_sms_messages(scene.api.control.db, zone=ZONE, now=scene.api.clock.now)
        # Both end at the same instant of the fake clock: compared by item, not by order.
        lines = {item: (quantity, unit, Decimal(amount)) for item, quantity, unit, _p, amount, *_
                 in ledger(scene)}  # fmt: skip
        assert lines == {
            "sms_smart": (smart, "segment", smart * Decimal("0.1")),
            "sms_intercept": (intercept, "segment", intercept * Decimal("0.025")),
        }
    finally:
        await scene.service.close()
        await scene.reports.close()


async def test_billing_cycle_rates_each_sms_once(scene: SmsScene) -> None:
    x = scene.axb_binding.x
    await scene.mode(scene.axb, SmsMode.SMART)
    await scene.text(x, A_NO, "到了")  # delivered: 1 segment smart
    await scene.service.settle()
    await scene.text(x, B_NO, "T")  # unsubscribe: free
    await scene.text(x, A_NO, "再发一条")  # B unsubscribed: intercepted, 1 segment
    scene.trunk.status = 480
    await scene.text(x, B_NO, "失败")  # delivery fails: billed as an intercept
    await scene.service.settle()
    await scene.mode(scene.other, SmsMode.FULL_INTERCEPT)  # tenant B's pool, no binding
    other_x = scene.api.control.pool_numbers(scene.other)[0]
    await scene.text(other_x, STRANGER, "hello")
    # A tariff override for tenant B applies to its lines.
    db = scene.api.control.db
    await set_tariff_overrides(
        db, scene.b.tenant_id, {"sms_intercept_per_segment": Decimal("0.02")}, now=0
    )
    now = scene.api.clock.now
    first = await billing_cycle(db, zone=ZONE, now=now)
    lines = ledger(scene)
    # Messages of one instant of the fake clock: compared as a multiset.
    assert sorted((item, unit_price, amount) for item, _q, _u, unit_price, amount, *_ in lines) == [
        ("sms_intercept", "0.02", "0.02"),  # tenant B's override
        ("sms_intercept", "0.025", "0.025"),
        ("sms_intercept", "0.025", "0.025"),
        ("sms_smart", "0.1", "0.1"),
    ]
    assert all(line[7] in (x, other_x) and line[8] == "203001" for line in lines)
    # Each line's ref is the SMS's message id, which is its call record's id.
    record_ids = {r[0] for r in rows(scene.db_path, "SELECT id FROM call_records")}
    assert {line[5] for line in lines} <= record_ids
    assert call_record_id("sms_smart", str(lines[0][5])) == lines[0][5]
    assert first.amount == Decimal("0.17")
    again = await billing_cycle(db, zone=ZONE, now=now + 60)
    assert len(ledger(scene)) == 4 and again.lines == 0
    assert rows(scene.db_path, "SELECT COUNT(*) FROM sms_messages WHERE billed = 0") == [(0,)]


async def test_statistics_show_sms(scene: SmsScene) -> None:
    x = scene.axb_binding.x
    await scene.mode(scene.axb, SmsMode.SMART)
    await scene.text(x, A_NO, "a" * 100)  # 114 sent → 2 smart segments
    await scene.service.settle()
    await scene.mode(scene.axb, SmsMode.INTERCEPT)
    await scene.text(x, B_NO, "b" * 141)  # 3 intercept segments
    db = scene.api.control.db
    await billing_cycle(db, zone=ZONE, now=scene.api.clock.now)
    full = await full_statistics(db, Month(2030, 1), tenant_id=scene.a.tenant_id)
    sms_rows = {
        row.item: (row.count, row.unit, row.amount) for row in full.rows if "sms" in row.item
    }
    assert sms_rows == {
        "sms_smart": (2, "segment", Decimal("0.2")),
        "sms_intercept": (3, "segment", Decimal("0.075")),
    }
    today = dt.datetime.fromtimestamp(scene.api.clock.now, tz=ZONE).date().isoformat()
    classified = await classified_statistics(
        db, parse_day_range(today, today), ZONE, tenant_id=scene.a.tenant_id
    )
    [axb_row] = [row for row in classified.rows if row.pool_key == scene.axb]
    assert axb_row.call_fees == Decimal("0.275")  # the SMS fees of the day
    assert axb_row.calls == 0  # an SMS is not a voice call
    assert axb_row.sms == 2 and classified.total.sms == 2
