"""Rating into the ledger: call records, monthly rent, and the periodic job that runs both.

Every write is idempotent on the ledger's unique ``(item, ref)`` and checks it inside the same
transaction that writes (and draws packages), so rating a record twice — from the engine at call
end and from the periodic job, or after a crash — writes its lines once.  The rules are the pure
functions of :mod:`billing.rating`; what the lines look like is in the :mod:`billing` docstring.

Entry points:

* :func:`rate_call_record` — one call record (the engine may call it at call end);
* :func:`bill_rent` — one month's rent of every number held by a tenant;
* :func:`rate_sms_messages` — SMS that reached a final state since the last pass (per segment:
  ``sms_smart`` when delivered, ``sms_intercept`` when kept, failed or discarded);
* :func:`billing_cycle` — one pass of the job: new call records, late recordings, SMS, rent of
  every month begun since the last pass;
* :func:`run_billing` — that pass every ``interval_s`` seconds until cancelled.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

import structlog

from billing.rating import (
    PackageBalance,
    Period,
    Tenancy,
    allocate_minutes,
    call_usage,
    month_bounds,
    next_period,
    parse_month,
    period_of,
    rent_due,
    rent_ref,
    sms_charge,
)
from billing.tariffs import DEFAULT_TARIFF, Item, Tariff
from config import Settings
from store import billing as billing_store
from store import sms as sms_store
from store.db import Database, DatabaseClosedError
from store.ledger import insert_entry_in, ref_taken_in
from store.records import CallRecord, CallType

__all__ = [
    "CycleResult",
    "RatedCall",
    "RentRun",
    "bill_rent",
    "billing_cycle",
    "rate_call_record",
    "rate_call_record_in",
    "rate_sms_messages",
    "run_billing",
    "tariff_for",
    "tariff_in",
]

_log = structlog.get_logger("billing.ledger_run")

#: Call records rated per transaction by the job (bounds one write's time under a backlog).
BATCH: Final = 500
#: Rent lines written per transaction.
RENT_BATCH: Final = 2000
#: Call types that are calls (SMS records and intercepted calls have no answered time anyway).
_CALL_TYPES: Final = frozenset({CallType.A_TO_PEER, CallType.PEER_TO_A})

#: The unit price of minutes a package paid for.
_FREE: Final = Decimal("0.00")

_CALLS_CURSOR: Final = "calls_rowid"
_RECORDINGS_CURSOR: Final = "recording_event_id"
_RENT_DONE: Final = "rent_period"


def tariff_in(conn: sqlite3.Connection, tenant_id: str) -> Tariff:
    """The tenant's effective tariff: the SPEC defaults with its stored overrides."""
    return DEFAULT_TARIFF.with_overrides(billing_store.tariff_overrides_in(conn, tenant_id))


async def tariff_for(db: Database, tenant_id: str | None) -> Tariff:
    """The tenant's effective tariff (None, an operator pool: the defaults), e.g. for the rent
    a purchase charges (``tariff.rent_by_spec()``)."""
    if tenant_id is None:
        return DEFAULT_TARIFF
    return await db.read(lambda conn: tariff_in(conn, tenant_id))


# ------------------------------------------------------------------------------- calls


@dataclass(frozen=True, slots=True)
class RatedCall:
    """What rating one call record found and wrote.

    ``call_minutes`` / ``recording_minutes``: what the record is billed for (0 for a call that
    costs nothing); ``package_minutes``, ``pay_minutes``, ``amount`` and ``lines``: what this
    rating wrote (all 0 when the record had been rated before).
    """

    record_id: str
    tenant_id: str | None
    period: Period | None
    call_minutes: int = 0
    recording_minutes: int = 0
    package_minutes: int = 0
    pay_minutes: int = 0
    amount: Decimal = Decimal(0)
    lines: int = 0


def rate_call_record_in(
    conn: sqlite3.Connection,
    record: CallRecord,
    *,
    zone: dt.tzinfo,
    now: float,
    tariff: Tariff | None = None,
) -> RatedCall:
    """Rate one call record inside the caller's write transaction (see :func:`rate_call_record`)."""
    nothing = RatedCall(record.id, None, None)
    if record.call_type not in _CALL_TYPES or record.pool_key is None:
        return nothing
    tenant_id = billing_store.pool_tenant_in(conn, record.pool_key)
    if tenant_id is None:  # an operator pool, or none: nobody to bill
        return nothing
    usage = call_usage(
        start_time=record.start_time,
        release_time=record.release_time,
        zone=zone,
        recorded=record.recording_path is not None,
        recording_duration_s=billing_store.recording_duration_in(conn, record.call_id),
    )
    if usage.call_minutes == 0:
        return RatedCall(record.id, tenant_id, usage.period)
    prices = tariff if tariff is not None else tariff_in(conn, tenant_id)

    def line(item: Item, quantity: int, unit_price: Decimal, ref: str) -> Decimal:
        charged = quantity * unit_price
        insert_entry_in(
            conn,
            tenant_id=tenant_id,
            item=item,
            amount=charged,
            created_at=now,
            pool_key=record.pool_key,
            number=record.secret_no,
            period=usage.period,
            quantity=quantity,
            unit="minute",
            unit_price=unit_price,
            ref=ref,
        )
        return charged

    lines = 0
    amount = Decimal(0)
    package_minutes = pay_minutes = 0
    if not ref_taken_in(conn, Item.CALL, record.id):
        packages = billing_store.usable_packages_in(conn, tenant_id, record.release_time)
        allocation = allocate_minutes(
            usage.call_minutes,
            (
                PackageBalance(p.id, p.remaining, p.valid_from, p.valid_until, p.created_at)
                for p in packages
            ),
            at=record.release_time,
        )
        for draw in allocation.draws:
            billing_store.draw_in(conn, draw.package_id, draw.minutes)
            line(Item.CALL_PACKAGE, draw.minutes, _FREE, f"{record.id}:{draw.package_id}")
            lines += 1
        # Written even when packages paid every minute: it counts the call and anchors the
        # idempotency of the whole call (draws included).
        amount += line(Item.CALL, allocation.pay_minutes, prices.call_per_minute, record.id)
        lines += 1
        package_minutes, pay_minutes = allocation.package_minutes, allocation.pay_minutes
    # Rated on its own ref: a recording attached after the call was rated is still billed once.
    if usage.recording_minutes > 0 and not ref_taken_in(conn, Item.RECORDING, record.id):
        amount += line(
            Item.RECORDING, usage.recording_minutes, prices.recording_per_minute, record.id
        )
        lines += 1
    return RatedCall(
        record.id,
        tenant_id,
        usage.period,
        call_minutes=usage.call_minutes,
        recording_minutes=usage.recording_minutes,
        package_minutes=package_minutes,
        pay_minutes=pay_minutes,
        amount=amount,
        lines=lines,
    )


async def rate_call_record(
    db: Database,
    record: CallRecord,
    tariff: Tariff | None = None,
    *,
    zone: dt.tzinfo,
    now: float | None = None,
) -> RatedCall:
    """Write the ledger lines of one call record (once: a second rating writes nothing).

    A call of a tenant's pool answered for N started minutes gets a ``call`` line (after its
    minutes were drawn from the tenant's packages, ``call_package`` lines) and, when recorded, a
    ``recording`` line, in one transaction, in the local month (``zone``) of its release.
    ``tariff`` None: the tenant's tariff as stored.  Calls of operator pools, unanswered,
    intercepted calls and SMS records write nothing.
    """
    written_at = time.time() if now is None else now
    return await db.write(
        lambda conn: rate_call_record_in(conn, record, zone=zone, now=written_at, tariff=tariff)
    )


# ------------------------------------------------------------------------------- rent


@dataclass(frozen=True, slots=True)
class RentRun:
    """What :func:`bill_rent` wrote for a month."""

    period: Period
    lines: int
    amount: Decimal


async def bill_rent(
    db: Database, month: str, *, zone: dt.tzinfo, now: float | None = None
) -> RentRun:
    """Write the rent of ``month`` (``YYYY-MM`` or ``YYYYMM``) for every number a tenant's pool
    held at the month's first local instant, except numbers bought in that month (their
    purchase charged it).  Idempotent per number and month.

    ``ValueError`` for a month that has not begun at ``now`` (rent is never billed ahead: a
    number released before the month starts must not pay it).
    """
    written_at = time.time() if now is None else now
    period = parse_month(month)
    month_start, _ = month_bounds(period, zone)
    if month_start > written_at:
        raise ValueError(f"month {period} has not begun; rent is billed from its first instant")
    held = await db.read(lambda conn: billing_store.held_numbers_in(conn, month_start))
    by_tenancy = {h.tenancy_id: h for h in held if h.tenant_id is not None}
    dues = rent_due(
        [
            Tenancy(h.tenancy_id, h.number, h.pool_key, h.from_at, h.until_at, h.reason)
            for h in by_tenancy.values()
        ],
        period=period,
        month_start=month_start,
    )

    def op(chunk: list[billing_store.HeldNumber]) -> Callable[[sqlite3.Connection], RentRun]:
        def write(conn: sqlite3.Connection) -> RentRun:
            tariffs: dict[str, Tariff] = {}
            lines = 0
            amount = Decimal(0)
            for holding in chunk:
                assert holding.tenant_id is not None
                ref = rent_ref(holding.number, period, holding.tenancy_id)
                if ref_taken_in(conn, Item.RENT, ref):
                    continue
                tariff = tariffs.get(holding.tenant_id)
                if tariff is None:
                    tariff = tariffs[holding.tenant_id] = tariff_in(conn, holding.tenant_id)
                price = tariff.rent_for(holding.spec)
                insert_entry_in(
                    conn,
                    tenant_id=holding.tenant_id,
                    item=Item.RENT,
                    amount=price,
                    created_at=written_at,
                    pool_key=holding.pool_key,
                    number=holding.number,
                    period=period,
                    quantity=1,
                    unit="month",
                    unit_price=price,
                    ref=ref,
                )
                lines += 1
                amount += price
            return RentRun(period, lines, amount)

        return write

    holdings = [by_tenancy[d.tenancy_id] for d in dues]
    lines = 0
    amount = Decimal(0)
    for start in range(0, len(holdings), RENT_BATCH):
        part = await db.write(op(holdings[start : start + RENT_BATCH]))
        lines += part.lines
        amount += part.amount
    return RentRun(period, lines, amount)


# ------------------------------------------------------------------------------- SMS


def _rate_sms_batch(
    conn: sqlite3.Connection, *, zone: dt.tzinfo, now: float
) -> tuple[int, int, Decimal]:
    """Rate up to ``BATCH`` final, unrated messages and mark them rated, in one transaction."""
    found = sms_store.unbilled_in(conn, BATCH)
    tariffs: dict[str, Tariff] = {}
    lines = 0
    amount = Decimal(0)
    for message in found:
        charge = sms_charge(str(message.state), message.segments)
        if charge is None or message.tenant_id is None or message.finished_at is None:
            continue  # free (an unsubscribe reply), or an operator pool: nobody to bill
        item = Item(charge[0])
        if ref_taken_in(conn, item, message.id):
            continue
        tariff = tariffs.get(message.tenant_id)
        if tariff is None:
            tariff = tariffs[message.tenant_id] = tariff_in(conn, message.tenant_id)
        unit_price = tariff.sms_per_segment(item)
        charged = charge[1] * unit_price
        insert_entry_in(
            conn,
            tenant_id=message.tenant_id,
            item=item,
            amount=charged,
            created_at=now,
            pool_key=message.pool_key,
            number=message.x,
            # The month of the message's end, as its call record's release time.
            period=period_of(message.finished_at, zone),
            quantity=charge[1],
            unit="segment",
            unit_price=unit_price,
            ref=message.id,
        )
        lines += 1
        amount += charged
    sms_store.mark_billed_in(conn, [m.id for m in found])
    return len(found), lines, amount


async def rate_sms_messages(
    db: Database, *, zone: dt.tzinfo, now: float | None = None
) -> tuple[int, int, Decimal]:
    """Write the ledger line of every SMS that reached a final state and was not rated yet
    (once: the ledger's ``(item, ref)`` and the message's ``billed`` flag); returns (messages
    rated, lines written, amount). ``ref`` is the message id, which is also the id of its call
    record, so statistics and the export find the SMS's fee beside its record."""
    written_at = time.time() if now is None else now
    total = [0, 0]
    amount = Decimal(0)
    while True:
        count, lines, money = await db.write(
            functools.partial(_rate_sms_batch, zone=zone, now=written_at)
        )
        total[0] += count
        total[1] += lines
        amount += money
        if count < BATCH:
            return total[0], total[1], amount


# ------------------------------------------------------------------------------- the job


@dataclass(frozen=True, slots=True)
class CycleResult:
    """One pass of the billing job."""

    rated_records: int = 0
    lines: int = 0
    amount: Decimal = Decimal(0)
    rent: tuple[RentRun, ...] = field(default=())


def _rate_batch(
    conn: sqlite3.Connection,
    rows: Iterable[tuple[int, CallRecord]],
    *,
    cursor_key: str,
    zone: dt.tzinfo,
    now: float,
) -> tuple[int, int, Decimal]:
    """Rate ``rows`` and move the cursor past them, in the caller's transaction."""
    count = lines = 0
    amount = Decimal(0)
    last = None
    for position, record in rows:
        rated = rate_call_record_in(conn, record, zone=zone, now=now)
        count += 1
        lines += rated.lines
        amount += rated.amount
        last = position
    if last is not None:
        billing_store.set_state_in(conn, cursor_key, str(last))
    return count, lines, amount


async def _rate_new(
    db: Database,
    *,
    cursor_key: str,
    read: Callable[[sqlite3.Connection, int, int], list[tuple[int, CallRecord]]],
    zone: dt.tzinfo,
    now: float,
) -> tuple[int, int, Decimal]:
    """Rate every row ``read`` yields after the stored cursor, ``BATCH`` per transaction."""
    total = [0, 0]
    amount = Decimal(0)
    while True:

        def op(conn: sqlite3.Connection) -> tuple[int, int, Decimal]:
            cursor = int(billing_store.get_state_in(conn, cursor_key) or 0)
            return _rate_batch(
                conn, read(conn, cursor, BATCH), cursor_key=cursor_key, zone=zone, now=now
            )

        count, lines, money = await db.write(op)
        total[0] += count
        total[1] += lines
        amount += money
        if count < BATCH:
            return total[0], total[1], amount


def _set_state(conn: sqlite3.Connection, *, key: str, value: str) -> None:
    billing_store.set_state_in(conn, key, value)


async def billing_cycle(db: Database, *, zone: dt.tzinfo, now: float) -> CycleResult:
    """One pass: rate call records written since the last pass, bill recordings attached after
    their call was rated, rate SMS that reached a final state, and bill the rent of every month
    begun since the last month billed (on the very first pass: the current month only — months
    before billing ran are not charged retroactively)."""
    rated, lines, amount = await _rate_new(
        db,
        cursor_key=_CALLS_CURSOR,
        read=billing_store.call_records_after_in,
        zone=zone,
        now=now,
    )
    # Recording events are read after the records: an event whose record is not written yet
    # is skipped for good, and the record's own rating (next pass) sees the event.
    _, late_lines, late_amount = await _rate_new(
        db,
        cursor_key=_RECORDINGS_CURSOR,
        read=billing_store.recording_events_after_in,
        zone=zone,
        now=now,
    )
    _, sms_lines, sms_amount = await rate_sms_messages(db, zone=zone, now=now)
    current = period_of(now, zone)
    done = await db.read(lambda conn: billing_store.get_state_in(conn, _RENT_DONE))
    month = current if done is None else next_period(Period(done))
    runs: list[RentRun] = []
    while month <= current:
        runs.append(await bill_rent(db, month, zone=zone, now=now))
        await db.write(functools.partial(_set_state, key=_RENT_DONE, value=month))
        month = next_period(month)
    rent_lines = sum(r.lines for r in runs)
    rent_amount = sum((r.amount for r in runs), Decimal(0))
    return CycleResult(
        rated_records=rated,
        lines=lines + late_lines + sms_lines + rent_lines,
        amount=amount + late_amount + sms_amount + rent_amount,
        rent=tuple(runs),
    )


async def run_billing(
    db: Database,
    settings: Settings,
    interval_s: float = 60.0,
    *,
    clock: Callable[[], float] = time.time,
    passes: int | None = None,
) -> None:
    """Run :func:`billing_cycle` now and then every ``interval_s`` seconds until cancelled (or
    the database closes, or after ``passes`` passes when given).  A failing pass is logged and
    retried at the next interval."""
    zone = settings.time.tzinfo
    done = 0
    while passes is None or done < passes:
        if done:
            await asyncio.sleep(interval_s)
        done += 1
        try:
            result = await billing_cycle(db, zone=zone, now=clock())
        except DatabaseClosedError:
            return
        except Exception:
            _log.exception("billing_cycle_failed")
        else:
            if result.lines:
                _log.info(
                    "billing_cycle",
                    rated_records=result.rated_records,
                    lines=result.lines,
                    amount=str(result.amount),
                    rent_months=[r.period for r in result.rent],
                )
