"""Rating rules (SPEC §7), pure: started minutes, billing months, package draws, rent due.

No I/O and no clock: every function takes the instants and the zone it needs.  The rules and
why they were chosen are in the :mod:`billing` docstring; :mod:`billing.ledger_run` applies them
to the store.

Times are UTC epoch seconds (``float``) as everywhere in the store; a billing month is a
:data:`Period` ``YYYYMM`` in the configured local zone.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NewType

__all__ = [
    "SMS_INTERCEPT_STATES",
    "SMS_SMART_STATES",
    "Allocation",
    "CallUsage",
    "Draw",
    "InvalidMonthError",
    "PackageBalance",
    "PackageState",
    "Period",
    "RentDue",
    "Tenancy",
    "allocate_minutes",
    "answered_seconds",
    "call_usage",
    "month_bounds",
    "next_period",
    "package_state",
    "parse_month",
    "period_of",
    "recording_seconds",
    "rent_due",
    "rent_ref",
    "sms_charge",
    "started_minutes",
]

#: A billing month, ``YYYYMM`` (local), the ledger's ``period``.
Period = NewType("Period", str)

_MONTH = re.compile(r"^(\d{4})-?(\d{2})$")
#: Months the system accepts from a person (a guard against typos like 0202-12).
FIRST_YEAR: Final = 2000
LAST_YEAR: Final = 2099


class InvalidMonthError(ValueError):
    """Not a month ``YYYY-MM`` (or ``YYYYMM``) between 2000-01 and 2099-12."""


# ------------------------------------------------------------------------------- months


def period_of(epoch_s: float, zone: dt.tzinfo) -> Period:
    """The local month ``YYYYMM`` of a UTC instant."""
    return Period(dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(zone).strftime("%Y%m"))


def parse_month(text: str) -> Period:
    """``"2026-12"`` or ``"202612"`` → ``Period("202612")``; :class:`InvalidMonthError` else."""
    match = _MONTH.match(text.strip())
    if match is None:
        raise InvalidMonthError(f"a month is YYYY-MM, got {text!r}")
    year, month = int(match.group(1)), int(match.group(2))
    if not (FIRST_YEAR <= year <= LAST_YEAR and 1 <= month <= 12):
        raise InvalidMonthError(f"no such month {text!r} (2000-01 … 2099-12)")
    return Period(f"{year:04d}{month:02d}")


def next_period(period: Period) -> Period:
    """The month after ``period``."""
    year, month = int(period[:4]), int(period[4:])
    return Period(f"{year + 1:04d}01") if month == 12 else Period(f"{year:04d}{month + 1:02d}")


def month_bounds(period: Period, zone: dt.tzinfo) -> tuple[float, float]:
    """``[start, end)`` of the local month as UTC epoch seconds (local midnight of the 1st)."""
    following = next_period(period)
    start = dt.datetime(int(period[:4]), int(period[4:]), 1, tzinfo=zone)
    end = dt.datetime(int(following[:4]), int(following[4:]), 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


# ------------------------------------------------------------------------------- minutes


def answered_seconds(start_time: float | None, release_time: float) -> int:
    """Billed seconds of a call: whole seconds from the answer to the release, each instant
    truncated to its second as the end-of-call report shows it; 0 when never answered."""
    if start_time is None:
        return 0
    return max(0, math.floor(release_time) - math.floor(start_time))


def started_minutes(seconds: int) -> int:
    """Started minutes: 0 → 0, 1…60 → 1, 61…120 → 2, …"""
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    return -(-seconds // 60)


def recording_seconds(duration_s: float) -> int:
    """A recording's length in whole seconds, rounded half up (a WAV is a few samples or one
    packet longer or shorter than the call; rounding absorbs that)."""
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"a recording length is a finite number >= 0, got {duration_s}")
    return math.floor(duration_s + 0.5)


@dataclass(frozen=True, slots=True)
class CallUsage:
    """What one call record is billed for."""

    period: Period  # local month of the release
    call_minutes: int
    recording_minutes: int


def call_usage(
    *,
    start_time: float | None,
    release_time: float,
    zone: dt.tzinfo,
    recorded: bool = False,
    recording_duration_s: float | None = None,
) -> CallUsage:
    """Call and recording minutes of a call and the month they belong to.

    ``recording_duration_s``: the length of the call's recording (``recording_events``), None
    when there is no recording event; ``recorded``: the record names a WAV (then, without an
    event, the recording is billed the call's minutes).  Recording minutes never exceed the
    call's minutes: the recording runs from the answer to the release.
    """
    minutes = started_minutes(answered_seconds(start_time, release_time))
    if recording_duration_s is not None:
        recording = min(minutes, started_minutes(recording_seconds(recording_duration_s)))
    elif recorded:
        recording = minutes
    else:
        recording = 0
    return CallUsage(
        period=period_of(release_time, zone), call_minutes=minutes, recording_minutes=recording
    )


# ------------------------------------------------------------------------------- packages


class PackageState(StrEnum):
    """Where a prepaid minute package stands at an instant."""

    PENDING = "pending"  # not valid yet
    ACTIVE = "active"  # valid, minutes left
    EXHAUSTED = "exhausted"  # every minute used
    EXPIRED = "expired"  # validity over with minutes left (they are lost)


def package_state(
    *, minutes: int, used_minutes: int, valid_from: float, valid_until: float, now: float
) -> PackageState:
    """The state of a package at ``now`` (exhausted wins over expired: nothing was lost)."""
    if used_minutes >= minutes:
        return PackageState.EXHAUSTED
    if now >= valid_until:
        return PackageState.EXPIRED
    if now < valid_from:
        return PackageState.PENDING
    return PackageState.ACTIVE


@dataclass(frozen=True, slots=True)
class PackageBalance:
    """A package as the drawing rule sees it."""

    package_id: str
    remaining: int
    valid_from: float
    valid_until: float  # exclusive
    created_at: float


@dataclass(frozen=True, slots=True)
class Draw:
    """Minutes of one call taken from one package."""

    package_id: str
    minutes: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """How a call's minutes are paid: package draws (in drawing order), then pay-as-you-go."""

    draws: tuple[Draw, ...]
    pay_minutes: int

    @property
    def package_minutes(self) -> int:
        """Minutes the packages covered."""
        return sum(d.minutes for d in self.draws)


def allocate_minutes(minutes: int, packages: Iterable[PackageBalance], *, at: float) -> Allocation:
    """Draw ``minutes`` from the packages valid ``at`` that have minutes left, the one expiring
    first first (then the one bought first); what they do not cover is pay-as-you-go."""
    if minutes < 0:
        raise ValueError(f"minutes must not be negative, got {minutes}")
    usable = sorted(
        (p for p in packages if p.remaining > 0 and p.valid_from <= at < p.valid_until),
        key=lambda p: (p.valid_until, p.created_at, p.package_id),
    )
    draws: list[Draw] = []
    left = minutes
    for package in usable:
        if left == 0:
            break
        taken = min(left, package.remaining)
        draws.append(Draw(package.package_id, taken))
        left -= taken
    return Allocation(draws=tuple(draws), pay_minutes=left)


# ------------------------------------------------------------------------------- rent


@dataclass(frozen=True, slots=True)
class Tenancy:
    """A pool's holding of a number (``number_tenancies``): ``[from_at, until_at)``."""

    id: int
    number: str
    pool_key: str
    from_at: float
    until_at: float | None  # None: still held
    reason: str  # "purchase" starts a holding; "migration" continues one in another pool


@dataclass(frozen=True, slots=True)
class RentDue:
    """One month of rent ``bill_rent`` must write: the number, the pool that pays, why."""

    number: str
    pool_key: str
    tenancy_id: int
    period: Period


def rent_due(tenancies: Sequence[Tenancy], *, period: Period, month_start: float) -> list[RentDue]:
    """The rent lines of ``period`` beyond the purchase month, sorted by number.

    A number pays the month to the pool holding it at the month's first instant
    (``month_start``): released mid-month → paid this month, not the next; migrated mid-month →
    this month to the old pool, the next to the new one.  A number bought in this month (even
    at its very first instant) is charged by its purchase, so it is not due here.
    """
    due: list[RentDue] = []
    for tenancy in tenancies:
        held = tenancy.from_at <= month_start and (
            tenancy.until_at is None or tenancy.until_at > month_start
        )
        bought_now = tenancy.reason == "purchase" and tenancy.from_at == month_start
        if held and not bought_now:
            due.append(RentDue(tenancy.number, tenancy.pool_key, tenancy.id, period))
    return sorted(due, key=lambda d: (d.number, d.tenancy_id))


def rent_ref(number: str, period: Period, tenancy_id: int) -> str:
    """The ledger ref of a later month's rent (the purchase month uses
    ``store.inventory.rent_ref``; the two forms never collide)."""
    return f"rent:{number}:{period}:h{tenancy_id}"


# ------------------------------------------------------------------------------- SMS

#: Message states (``store.sms.SmsState`` values) billed per segment as a smart SMS ...
SMS_SMART_STATES: Final = frozenset({"delivered"})
#: ... and as an intercept: kept and reported instead of delivered (SPEC §7: a failed smart SMS
#: is charged as an intercept; so is one held for confirmation and never confirmed).
SMS_INTERCEPT_STATES: Final = frozenset({"intercepted", "failed", "discarded"})


def sms_charge(state: str, segments: int) -> tuple[str, int] | None:
    """(ledger item, segments) a message in final ``state`` is billed, None when it is free
    (an unsubscribe reply ``T``) or not final yet. ``segments`` is what ``api.sms`` stored:
    the text as sent for a delivered smart SMS, as received otherwise (``routing.sms``)."""
    if segments < 1:
        raise ValueError(f"a message has at least one segment, got {segments}")
    if state in SMS_SMART_STATES:
        return "sms_smart", segments
    if state in SMS_INTERCEPT_STATES:
        return "sms_intercept", segments
    return None
