"""Statistics of SPEC §7: full statistics of a month, classified statistics of a day range.

Data contract (read only, nothing here writes):

- ``ledger`` (store/migrations/0001_initial.sql): one immutable line per rated thing, ``item``
  ``rent | call | recording | sms_intercept | sms_smart | discount | package | topup``, ``period``
  the local billing month ``YYYYMM``, ``quantity`` and ``unit``, ``amount`` a signed Decimal
  (discounts negative).  ``topup`` lines are payments, not charges: statistics leave them out.
- ``call_records``: one row per call.  A ledger line belongs to a call when it is one of the
  per-call items (``call``, ``recording``, ``sms_intercept`` and ``sms_smart`` with ref
  ``<call record id>``, ``call_package`` with ref ``<call record id>:<package id>``, see the
  :mod:`billing` docstring;
  :func:`call_record_id` / :data:`CALL_REF_JOIN`); every other line is a *monthly* line (rent,
  package purchases, discounts) placed in time by its ``period`` alone.
- A call belongs to the local day (and month) of its ``release_time``, as the daily CDR files
  (``store.cdr``), the export (``billing.export``) and rating (the period of a call's lines) do;
  ``call_records`` is indexed on it.

**Full statistics** (:func:`full_statistics`): the ledger lines of one month grouped by
(tenant, number type, pool, billing item, unit) with the summed quantity (``count``) and amount,
and, on request, the lines behind each row (rent: one line per number; call and recording: one
line per call record).  The number type is the type of the line's pool (AXB, AXN ...).

**Classified statistics** (:func:`classified_statistics`): per pool of a type / one pool, over
a range of local days: billed numbers (numbers with a rent line in a month the range touches),
voice calls (call types 0, 1 and 4: intercepted calls are calls that reached X too), answered
calls (a ``start_time``), connection rate (answered / calls), total and average talk time
(answered seconds), SMS (records of call types 2, 3, 5, counted apart from calls), fees: those
of the calls and SMS that ended in the range plus the monthly lines of every month the range
touches (rent is monthly: a one-day range shows the whole month's rent).
Over a whole month with no filter, ``fees`` equals the full statistics' total less the lines of
no pool.

**Packages** (:func:`package_statistics`): a tenant's prepaid minute packages (name, price,
validity, state at ``now``, minutes, used, remaining — ``billing_packages`` through
``store.billing``) with the minutes each gave in a month (its ``call_package`` lines), and the
quota still usable (remaining minutes of active and pending packages).

The aggregation is pure (:func:`summarise_ledger`, :func:`classify`, :func:`summarise_packages`);
the async functions only read the rows they need and hand them over.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final
from zoneinfo import ZoneInfo

from billing.rating import PackageState, package_state
from routing.model import BindingType, PhoneNumber, PoolKey
from store import billing as billing_store
from store.db import Database
from store.ledger import TOPUP
from store.records import CallType
from store.repositories import Pool, list_pools
from store.tenants import list_tenants

__all__ = [
    "CALL_REF_JOIN",
    "ITEM_ORDER",
    "MAX_RANGE_DAYS",
    "PER_CALL_ITEMS",
    "SMS_CALL_TYPES",
    "VOICE_CALL_TYPES",
    "CallCounts",
    "ClassifiedRow",
    "ClassifiedStatistics",
    "DayRange",
    "FeeLine",
    "FullRow",
    "FullStatistics",
    "LedgerLine",
    "LineGroup",
    "Month",
    "PackageRecord",
    "PackageStatistics",
    "StatisticsInputError",
    "call_record_id",
    "classified_statistics",
    "classify",
    "full_statistics",
    "money_text",
    "package_statistics",
    "parse_day_range",
    "parse_month",
    "summarise_groups",
    "summarise_ledger",
    "summarise_packages",
]

#: Billing items in the order statistics list them; other items follow alphabetically.
ITEM_ORDER: Final = (
    "rent",
    "call",
    "call_package",
    "recording",
    "sms_intercept",
    "sms_smart",
    "package",
    "discount",
)
#: Items rating writes once per call record (ref: the record id; ``call_package``: id:package).
#: An SMS's line has the id of its message, which is also its call record's id (call_type 2, 3
#: or 5), so its fee counts where and when the SMS does, as a call's.
PER_CALL_ITEMS: Final = frozenset(
    {"call", "call_package", "recording", "sms_intercept", "sms_smart"}
)
#: Call types of voice calls (SPEC §6): A→peer, peer→A, intercepted. SMS records are not calls.
VOICE_CALL_TYPES: Final = (
    CallType.A_TO_PEER,
    CallType.PEER_TO_A,
    CallType.CALL_INTERCEPTED,
)
#: Call types of SMS records (SPEC §6): sent, received, intercepted (``api.sms`` writes them).
SMS_CALL_TYPES: Final = (CallType.SMS_SENT, CallType.SMS_RECEIVED, CallType.SMS_INTERCEPTED)
#: SQL condition tying a ledger line ``l`` to the call record ``c`` it rates (as
#: :func:`call_record_id`); a monthly line's ref (``rent:...``, ``package:...``) matches no record.
CALL_REF_JOIN: Final = (
    "c.id = (CASE WHEN l.item = 'call_package'"
    " THEN substr(l.ref, 1, instr(l.ref, ':') - 1) ELSE l.ref END)"
)
#: The longest day range of classified statistics.
MAX_RANGE_DAYS: Final = 366

_MONTH_RE: Final = re.compile(r"([0-9]{4})-?([0-9]{2})")
_DAY_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_CENT: Final = Decimal("0.01")
_TYPE_ORDER: Final = {kind: rank for rank, kind in enumerate(BindingType)}


class StatisticsInputError(ValueError):
    """A statistics query names an impossible month or day range (nothing was read)."""


# ------------------------------------------------------------------------------ time


def _local_midnight(day: dt.date, zone: ZoneInfo) -> float:
    """UTC epoch seconds of 00:00 local time on ``day``."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp()


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month (local time)."""

    year: int
    month: int

    @property
    def period(self) -> str:
        """The ledger's ``YYYYMM``."""
        return f"{self.year:04d}{self.month:02d}"

    @property
    def label(self) -> str:
        """``YYYY-MM`` as the CLI and the API write it."""
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> dt.date:
        """Its first day."""
        return dt.date(self.year, self.month, 1)

    def next(self) -> Month:
        """The following month."""
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def previous(self) -> Month:
        """The month before."""
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def bounds(self, zone: ZoneInfo) -> tuple[float, float]:
        """``[start, end)`` in UTC epoch seconds: local midnight of its first day and the next's."""
        return _local_midnight(self.first_day, zone), _local_midnight(self.next().first_day, zone)

    @classmethod
    def of(cls, day: dt.date) -> Month:
        """The month of ``day``."""
        return cls(day.year, day.month)


def parse_month(text: str) -> Month:
    """``YYYY-MM`` or ``YYYYMM`` (as the ledger's period); ``StatisticsInputError`` otherwise."""
    found = _MONTH_RE.fullmatch(text.strip())
    if found is None:
        raise StatisticsInputError(f"a month is YYYY-MM (e.g. 2026-12), got {text!r}")
    year, month = int(found[1]), int(found[2])
    if not 1 <= month <= 12 or year < 1970:
        raise StatisticsInputError(f"no such month: {text!r}")
    return Month(year, month)


@dataclass(frozen=True, slots=True)
class DayRange:
    """Local days ``first`` to ``last``, both included."""

    first: dt.date
    last: dt.date

    def bounds(self, zone: ZoneInfo) -> tuple[float, float]:
        """``[start, end)`` in UTC epoch seconds: ``first`` 00:00 to the day after ``last``."""
        return (
            _local_midnight(self.first, zone),
            _local_midnight(self.last + dt.timedelta(days=1), zone),
        )

    def months(self) -> tuple[Month, ...]:
        """The months the range touches, in order."""
        months = [Month.of(self.first)]
        while months[-1] < Month.of(self.last):
            months.append(months[-1].next())
        return tuple(months)


def _day(text: str, name: str) -> dt.date:
    found = _DAY_RE.fullmatch(text.strip())
    if found is None:
        raise StatisticsInputError(f"{name} is a day YYYY-MM-DD, got {text!r}")
    try:
        return dt.date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        raise StatisticsInputError(f"{name}: no such day {text!r}") from None


def parse_day_range(first: str, last: str) -> DayRange:
    """Days ``first``..``last`` (``YYYY-MM-DD``, both included, at most 366 days)."""
    days = DayRange(_day(first, "from"), _day(last, "to"))
    if days.last < days.first:
        raise StatisticsInputError(f"to ({last}) is before from ({first})")
    if (days.last - days.first).days + 1 > MAX_RANGE_DAYS:
        raise StatisticsInputError(f"a day range is at most {MAX_RANGE_DAYS} days")
    if days.first.year < 1970:
        raise StatisticsInputError(f"no such day: {first!r}")
    return days


def call_record_id(item: str, ref: str | None) -> str | None:
    """The call record a per-call ledger line rates, None for any other line."""
    if item not in PER_CALL_ITEMS or not ref:
        return None
    return ref.partition(":")[0] if item == "call_package" else ref


def money_text(amount: Decimal) -> str:
    """An amount as text with at least two decimals (``0.1`` → ``0.10``, ``0.025`` stays)."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(_CENT)
    return f"{amount:f}"


# ------------------------------------------------------------------------------ full statistics


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One ledger line with the type of its pool (None: a line of no pool)."""

    id: int
    tenant_id: str
    pool_key: PoolKey | None
    pool_type: BindingType | None
    number: PhoneNumber | None
    item: str
    period: str
    quantity: int
    unit: str | None
    unit_price: Decimal | None
    amount: Decimal
    ref: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class FullRow:
    """One row of the full statistics: Σ quantity (``count``) and Σ amount of its lines."""

    tenant_id: str
    number_type: BindingType | None
    pool_key: PoolKey | None
    item: str
    unit: str | None
    count: int
    amount: Decimal
    lines: int  # how many ledger lines the row sums
    details: tuple[LedgerLine, ...]  # those lines, oldest first (empty unless asked for)


@dataclass(frozen=True, slots=True)
class FullStatistics:
    """The full statistics of one month for one tenant (``tenant_id`` None: every tenant)."""

    month: Month
    tenant_id: str | None
    rows: tuple[FullRow, ...]

    @property
    def total(self) -> Decimal:
        """Σ of every row: the month's charges less its discounts."""
        return sum((row.amount for row in self.rows), Decimal(0))


def _item_rank(item: str) -> tuple[int, str]:
    return (ITEM_ORDER.index(item), "") if item in ITEM_ORDER else (len(ITEM_ORDER), item)


def _type_rank(kind: BindingType | None) -> int:
    return len(_TYPE_ORDER) if kind is None else _TYPE_ORDER[kind]


_RowKey = tuple[str, BindingType | None, PoolKey | None, str, str | None]


@dataclass(frozen=True, slots=True)
class LineGroup:
    """Ledger lines of one row key taken together: how many, Σ quantity, Σ amount."""

    tenant_id: str
    pool_type: BindingType | None
    pool_key: PoolKey | None
    item: str
    unit: str | None
    lines: int
    quantity: int
    amount: Decimal

    @classmethod
    def of(cls, line: LedgerLine) -> LineGroup:
        """A group of the one ``line``."""
        return cls(line.tenant_id, line.pool_type, line.pool_key, line.item, line.unit, 1,
                   line.quantity, line.amount)  # fmt: skip


def _row_key(group: LineGroup | LedgerLine) -> _RowKey:
    return (group.tenant_id, group.pool_type, group.pool_key, group.item, group.unit)


def summarise_groups(
    groups: Iterable[LineGroup],
    details: Mapping[_RowKey, Sequence[LedgerLine]] | None = None,
) -> tuple[FullRow, ...]:
    """Rows by (tenant, number type, pool, item, unit) from groups of lines; ``topup`` skipped.

    Rows are ordered by tenant, number type (AXB, AXN, AXN_EXT, 95AXN, AXG, none), pool key,
    item (:data:`ITEM_ORDER`) and unit. ``details``: the lines of each row, by its key.
    """
    totals: dict[_RowKey, tuple[int, int, Decimal]] = {}
    for group in groups:
        if group.item == TOPUP:
            continue
        key = _row_key(group)
        lines, quantity, amount = totals.get(key, (0, 0, Decimal(0)))
        totals[key] = (lines + group.lines, quantity + group.quantity, amount + group.amount)

    def order(key: _RowKey) -> tuple[object, ...]:
        tenant, kind, pool, item, unit = key
        return (tenant, _type_rank(kind), pool or "", _item_rank(item), unit or "")

    rows: list[FullRow] = []
    for key in sorted(totals, key=order):
        lines, quantity, amount = totals[key]
        tenant, kind, pool, item, unit = key
        members = () if details is None else tuple(details.get(key, ()))
        rows.append(
            FullRow(
                tenant_id=tenant,
                number_type=kind,
                pool_key=pool,
                item=item,
                unit=unit,
                count=quantity,
                amount=amount,
                lines=lines,
                details=members,
            )
        )
    return tuple(rows)


def summarise_ledger(lines: Iterable[LedgerLine], *, details: bool = False) -> tuple[FullRow, ...]:
    """:func:`summarise_groups` of single lines; ``details``: keep them, oldest first."""
    kept = [line for line in lines if line.item != TOPUP]
    by_key: dict[_RowKey, list[LedgerLine]] = {}
    if details:
        for line in sorted(kept, key=lambda line: line.id):
            by_key.setdefault(_row_key(line), []).append(line)
    return summarise_groups((LineGroup.of(line) for line in kept), by_key if details else None)


def _ledger_line(row: sqlite3.Row) -> LedgerLine:
    return LedgerLine(
        id=int(row["id"]),
        tenant_id=str(row["tenant_id"]),
        pool_key=None if row["pool_key"] is None else PoolKey(row["pool_key"]),
        pool_type=None if row["type"] is None else BindingType(row["type"]),
        number=None if row["number"] is None else PhoneNumber(row["number"]),
        item=str(row["item"]),
        period=str(row["period"]),
        quantity=int(row["quantity"]),
        unit=row["unit"],
        unit_price=None if row["unit_price"] is None else Decimal(row["unit_price"]),
        amount=Decimal(row["amount"]),
        ref=row["ref"],
        created_at=float(row["created_at"]),
    )


def _line_groups(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> list[LineGroup]:
    # Grouped by the amount's text too: SQLite would sum TEXT through REAL; the few distinct
    # amounts of a row (a price times a few minute counts) are multiplied out exactly here.
    rows = conn.execute(
        "SELECT l.tenant_id, p.type, l.pool_key, l.item, l.unit, l.amount,"  # noqa: S608
        " COUNT(*), SUM(l.quantity)"
        " FROM ledger l LEFT JOIN pools p ON p.pool_key = l.pool_key"
        f" WHERE {where} GROUP BY l.tenant_id, l.pool_key, l.item, l.unit, l.amount",
        params,
    ).fetchall()
    return [
        LineGroup(
            tenant_id=str(row[0]),
            pool_type=None if row[1] is None else BindingType(row[1]),
            pool_key=None if row[2] is None else PoolKey(row[2]),
            item=str(row[3]),
            unit=row[4],
            lines=int(row[6]),
            quantity=int(row[7]),
            amount=Decimal(row[5]) * int(row[6]),
        )
        for row in rows
    ]


async def full_statistics(
    db: Database, month: Month, *, tenant_id: str | None = None, details: bool = False
) -> FullStatistics:
    """The full statistics of ``month`` for ``tenant_id`` (None: every tenant).

    ``details``: keep the ledger lines behind each row (rent: per number, calls: per record).
    """
    where = "l.period = ? AND l.item != ?"
    params: list[object] = [month.period, TOPUP]
    if tenant_id is not None:
        where += " AND l.tenant_id = ?"
        params.append(tenant_id)

    def grouped(conn: sqlite3.Connection) -> list[LineGroup]:
        return _line_groups(conn, where, params)

    def each(conn: sqlite3.Connection) -> list[LedgerLine]:
        rows = conn.execute(
            "SELECT l.id, l.tenant_id, l.pool_key, p.type, l.number, l.item, l.period,"  # noqa: S608
            " l.quantity, l.unit, l.unit_price, l.amount, l.ref, l.created_at"
            " FROM ledger l LEFT JOIN pools p ON p.pool_key = l.pool_key"
            f" WHERE {where} ORDER BY l.id",
            params,
        ).fetchall()
        return [_ledger_line(row) for row in rows]

    if details:
        rows = summarise_ledger(await db.read(each), details=True)
    else:
        rows = summarise_groups(await db.read(grouped))
    return FullStatistics(month, tenant_id, rows)


# ------------------------------------------------------------------------------ classified


@dataclass(frozen=True, slots=True)
class CallCounts:
    """Voice calls of one pool in a day range."""

    calls: int = 0
    answered: int = 0
    intercepted: int = 0
    talk_s: float = 0.0  # Σ answered seconds
    sms: int = 0  # SMS records (call types 2, 3, 5): not calls, counted apart


@dataclass(frozen=True, slots=True)
class FeeLine:
    """Charges (not top-ups) of a pool alike for classified statistics, taken together.

    ``call_in_range``: None for monthly lines; for lines rating calls, whether those calls ended
    in the day range. ``number``: the rented number of rent lines (None for other items).
    """

    pool_key: PoolKey
    item: str
    number: PhoneNumber | None
    amount: Decimal  # Σ of the lines
    period: str
    call_in_range: bool | None


@dataclass(frozen=True, slots=True)
class ClassifiedRow:
    """One pool's figures (the total row has no pool and no type)."""

    number_type: BindingType | None
    pool_key: PoolKey | None
    tenant_id: str | None
    billed_numbers: int
    calls: int
    answered: int
    intercepted: int
    total_talk_s: float
    call_fees: Decimal  # lines of calls (and SMS) that ended in the range
    monthly_fees: Decimal  # rent and other monthly lines of the months the range touches
    sms: int = 0  # SMS that reached a final state in the range (delivered or kept)

    @property
    def fees(self) -> Decimal:
        """Everything charged: call fees plus monthly fees."""
        return self.call_fees + self.monthly_fees

    @property
    def connection_rate_pct(self) -> float:
        """Answered calls per call, in per cent to two decimals (0 without calls)."""
        if self.calls == 0:
            return 0.0
        rate = Decimal(self.answered) * 100 / Decimal(self.calls)
        return float(rate.quantize(_CENT, ROUND_HALF_UP))

    @property
    def average_talk_s(self) -> float:
        """Talk time per answered call, seconds to one decimal (0 without answered calls)."""
        if self.answered == 0:
            return 0.0
        return round(self.total_talk_s / self.answered, 1)


@dataclass(frozen=True, slots=True)
class ClassifiedStatistics:
    """Classified statistics of a day range: a row per pool in scope and their total."""

    days: DayRange
    number_type: BindingType | None
    rows: tuple[ClassifiedRow, ...]
    total: ClassifiedRow


def classify(
    pools: Sequence[Pool],
    counts: Mapping[PoolKey, CallCounts],
    fee_lines: Iterable[FeeLine],
    *,
    days: DayRange,
    number_type: BindingType | None = None,
) -> ClassifiedStatistics:
    """Classified statistics of ``pools`` (in that order) from their calls and ledger lines.

    A call's fee line counts when its call ended in ``days``; a monthly line when its period is
    a month ``days`` touches. Billed numbers: distinct numbers of counted rent lines.
    """
    periods = {month.period for month in days.months()}
    in_scope = {pool.pool_key for pool in pools}
    call_fees: dict[PoolKey, Decimal] = {}
    monthly_fees: dict[PoolKey, Decimal] = {}
    billed: dict[PoolKey, set[PhoneNumber]] = {}
    for line in fee_lines:
        if line.pool_key not in in_scope:
            continue
        if line.call_in_range is not None:
            if line.call_in_range:
                call_fees[line.pool_key] = call_fees.get(line.pool_key, Decimal(0)) + line.amount
            continue
        if line.period not in periods:
            continue
        monthly_fees[line.pool_key] = monthly_fees.get(line.pool_key, Decimal(0)) + line.amount
        if line.item == "rent" and line.number is not None:
            billed.setdefault(line.pool_key, set()).add(line.number)
    rows: list[ClassifiedRow] = []
    for pool in pools:
        figures = counts.get(pool.pool_key, CallCounts())
        rows.append(
            ClassifiedRow(
                number_type=pool.type,
                pool_key=pool.pool_key,
                tenant_id=pool.tenant_id,
                billed_numbers=len(billed.get(pool.pool_key, ())),
                calls=figures.calls,
                answered=figures.answered,
                intercepted=figures.intercepted,
                total_talk_s=round(figures.talk_s, 3),
                call_fees=call_fees.get(pool.pool_key, Decimal(0)),
                monthly_fees=monthly_fees.get(pool.pool_key, Decimal(0)),
                sms=figures.sms,
            )
        )
    every_billed: set[PhoneNumber] = set()
    for numbers in billed.values():
        every_billed |= numbers
    total = ClassifiedRow(
        number_type=number_type,
        pool_key=None,
        tenant_id=None,
        billed_numbers=len(every_billed),
        calls=sum(row.calls for row in rows),
        answered=sum(row.answered for row in rows),
        intercepted=sum(row.intercepted for row in rows),
        total_talk_s=round(sum(counts.get(p.pool_key, CallCounts()).talk_s for p in pools), 3),
        call_fees=sum((row.call_fees for row in rows), Decimal(0)),
        monthly_fees=sum((row.monthly_fees for row in rows), Decimal(0)),
        sms=sum(row.sms for row in rows),
    )
    return ClassifiedStatistics(days=days, number_type=number_type, rows=tuple(rows), total=total)


def _call_counts(
    conn: sqlite3.Connection, start: float, end: float, pool_key: PoolKey | None
) -> dict[PoolKey, CallCounts]:
    voice = ", ".join(str(int(kind)) for kind in VOICE_CALL_TYPES)
    texts = ", ".join(str(int(kind)) for kind in SMS_CALL_TYPES)
    where = f"release_time >= ? AND release_time < ? AND call_type IN ({voice}, {texts})"
    params: list[object] = [start, end]
    if pool_key is not None:  # one pool: the (pool_key, release_time) index
        where += " AND pool_key = ?"
        params.append(pool_key)
    else:
        where += " AND pool_key IS NOT NULL"
    rows = conn.execute(
        f"SELECT pool_key, SUM(call_type IN ({voice})),"  # noqa: S608  (fixed text, values bound)
        f" SUM(call_type IN ({voice}) AND start_time IS NOT NULL),"
        f" SUM(call_type = {int(CallType.CALL_INTERCEPTED)}),"
        f" TOTAL(CASE WHEN call_type IN ({voice}) AND start_time IS NOT NULL"
        " THEN duration_s ELSE 0 END),"
        f" SUM(call_type IN ({texts}))"
        f" FROM call_records WHERE {where} GROUP BY pool_key",
        params,
    ).fetchall()
    return {
        PoolKey(row[0]): CallCounts(
            calls=int(row[1]),
            answered=int(row[2]),
            intercepted=int(row[3]),
            talk_s=float(row[4]),
            sms=int(row[5]),
        )
        for row in rows
    }


def _fee_lines(
    conn: sqlite3.Connection, tenant_id: str, periods: Sequence[str], start: float, end: float
) -> list[FeeLine]:
    marks = ", ".join("?" * len(periods))
    # Grouped in SQL (a month has a line or two per call); amounts multiplied out exactly here.
    rows = conn.execute(
        "SELECT l.pool_key, l.item, CASE WHEN l.item = 'rent' THEN l.number END,"  # noqa: S608
        " l.amount, l.period,"
        " CASE WHEN c.id IS NULL THEN NULL"
        " WHEN c.release_time >= ? AND c.release_time < ? THEN 1 ELSE 0 END,"
        " COUNT(*)"
        f" FROM ledger l LEFT JOIN call_records c ON {CALL_REF_JOIN}"
        f" WHERE l.tenant_id = ? AND l.period IN ({marks}) AND l.item != ?"
        " AND l.pool_key IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6",
        (start, end, tenant_id, *periods, TOPUP),
    ).fetchall()
    return [
        FeeLine(
            pool_key=PoolKey(row[0]),
            item=str(row[1]),
            number=None if row[2] is None else PhoneNumber(row[2]),
            amount=Decimal(row[3]) * int(row[6]),
            period=str(row[4]),
            call_in_range=None if row[5] is None else bool(row[5]),
        )
        for row in rows
    ]


async def classified_statistics(
    db: Database,
    days: DayRange,
    zone: ZoneInfo,
    *,
    tenant_id: str | None = None,
    number_type: BindingType | None = None,
    pool: Pool | None = None,
) -> ClassifiedStatistics:
    """Classified statistics of ``days`` for the pools of ``tenant_id`` (None: every pool).

    ``number_type`` keeps the pools of that type; ``pool`` (already checked visible to the
    caller) keeps that pool alone. Pools created after the range are left out.
    """
    start, end = days.bounds(zone)
    if pool is not None:
        candidates = [pool]
    else:
        candidates = await list_pools(db, tenant_id=tenant_id)
    pools = [
        p
        for p in candidates
        if (number_type is None or p.type is number_type)
        and (tenant_id is None or p.tenant_id == tenant_id)
        and p.created_at < end
    ]
    # Rating gives a call's lines the period of its release month, so the months the range
    # touches hold every line of its calls as well as its monthly lines.
    periods = [month.period for month in days.months()]
    tenants = sorted({p.tenant_id for p in pools if p.tenant_id is not None})

    def fn(conn: sqlite3.Connection) -> tuple[dict[PoolKey, CallCounts], list[FeeLine]]:
        counts = _call_counts(conn, start, end, pool.pool_key if pool is not None else None)
        lines = [
            line for tenant in tenants for line in _fee_lines(conn, tenant, periods, start, end)
        ]
        return counts, lines

    counts, lines = await db.read(fn) if pools else ({}, [])
    return classify(pools, counts, lines, days=days, number_type=number_type)


# ------------------------------------------------------------------------------ packages

#: States whose remaining minutes can still pay for calls.
_USABLE: Final = frozenset({PackageState.ACTIVE, PackageState.PENDING})


@dataclass(frozen=True, slots=True)
class PackageRecord:
    """A prepaid minute package: its purchase, quota and use."""

    package_id: str
    tenant_id: str
    name: str
    price: Decimal
    minutes: int
    used_minutes: int
    remaining_minutes: int
    valid_from: float  # UTC epoch seconds
    valid_until: float  # exclusive
    purchased_at: float
    state: PackageState  # at the time of the query
    month_minutes: int  # minutes it paid for in the month asked about


@dataclass(frozen=True, slots=True)
class PackageStatistics:
    """Package records of one tenant (``tenant_id`` None: every tenant) and their quota."""

    tenant_id: str | None
    month: Month
    packages: tuple[PackageRecord, ...]

    @property
    def remaining_minutes(self) -> int:
        """Minutes still usable: the remaining minutes of active and pending packages."""
        return sum(p.remaining_minutes for p in self.packages if p.state in _USABLE)

    @property
    def month_minutes(self) -> int:
        """Minutes the packages paid for in the month."""
        return sum(p.month_minutes for p in self.packages)


def summarise_packages(
    rows: Iterable[billing_store.PackageRow],
    draws: Iterable[tuple[str, int]],
    *,
    now: float,
) -> tuple[PackageRecord, ...]:
    """Package records from stored packages and a month's draws (``call_package`` lines as
    (ref, quantity)); states at ``now``; in the order of ``rows``."""
    drawn: dict[str, int] = {}
    for ref, quantity in draws:
        package_id = ref.partition(":")[2]  # ref: <call record id>:<package id>
        drawn[package_id] = drawn.get(package_id, 0) + quantity
    return tuple(
        PackageRecord(
            package_id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            price=row.price,
            minutes=row.minutes,
            used_minutes=row.used_minutes,
            remaining_minutes=row.remaining,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
            purchased_at=row.created_at,
            state=package_state(
                minutes=row.minutes,
                used_minutes=row.used_minutes,
                valid_from=row.valid_from,
                valid_until=row.valid_until,
                now=now,
            ),
            month_minutes=drawn.get(row.id, 0),
        )
        for row in rows
    )


async def package_statistics(
    db: Database, month: Month, *, now: float, tenant_id: str | None = None
) -> PackageStatistics:
    """The packages of ``tenant_id`` (None: every tenant), oldest purchase first per tenant,
    with what each paid for in ``month``; ``store.ledger.UnknownTenantError`` for no tenant."""
    if tenant_id is None:
        tenants = [row.tenant_id for row in await list_tenants(db)]
    else:
        tenants = [tenant_id]
    rows: list[billing_store.PackageRow] = []
    for tenant in tenants:
        rows += await billing_store.list_packages(db, tenant)

    def fn(conn: sqlite3.Connection) -> list[tuple[str, int]]:
        where = "period = ? AND item = 'call_package'"
        params: list[object] = [month.period]
        if tenant_id is not None:
            where += " AND tenant_id = ?"
            params.append(tenant_id)
        found = conn.execute(
            f"SELECT ref, quantity FROM ledger WHERE {where}",  # noqa: S608  (fixed text)
            params,
        ).fetchall()
        return [(str(ref), int(quantity)) for ref, quantity in found]

    draws = await db.read(fn)
    return PackageStatistics(
        tenant_id=tenant_id, month=month, packages=summarise_packages(rows, draws, now=now)
    )
