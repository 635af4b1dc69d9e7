"""The end-of-call record of SPEC §6, as stored (UTC) and as reported (local time).

Times are UTC epoch seconds (``float``) everywhere inside maskline, the same unit as
``routing.model.Binding``; ``None`` means the call never reached that point (an intercepted call
has no ``ring_time``, an unanswered one no ``start_time``).  Local time exists only at the edges:
``CallRecord.to_report`` renders the reference service's ``YYYY-MM-DD HH:MM:SS`` in a given zone.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from routing.model import PhoneNumber, PoolKey, SubId


class CallType(IntEnum):
    """SPEC §6 ``call_type``."""

    A_TO_PEER = 0  # the binding's A side called X
    PEER_TO_A = 1  # B / N / a G member called X
    SMS_SENT = 2
    SMS_RECEIVED = 3
    CALL_INTERCEPTED = 4
    SMS_INTERCEPTED = 5


class ReleaseDir(IntEnum):
    """SPEC §6 ``release_dir``: who ended the call."""

    PLATFORM = 0
    CALLER = 1
    CALLEE = 2


class UnconnectedCause(IntEnum):
    """SPEC §6 ``unconnected_cause`` (same codes as ``InterceptCause.unconnected_cause``)."""

    NORMAL = 0
    BLACKLIST = 1
    NO_BINDING = 2
    RESTRICTION = 3
    OTHER = 4


# Report field order: the reference service's end-of-call push, SPEC §6.
REPORT_FIELDS: tuple[str, ...] = (
    "id",
    "pool_key",
    "sub_id",
    "call_id",
    "phone_no",
    "secret_no",
    "peer_no",
    "called_display_no",
    "city",
    "call_type",
    "call_time",
    "call_out_time",
    "ring_time",
    "start_time",
    "release_time",
    "release_dir",
    "release_cause",
    "unconnected_cause",
    "record_url",
    "ring_record_url",
    "out_id",
)

TIME_FIELDS: tuple[str, ...] = (
    "call_time",
    "call_out_time",
    "ring_time",
    "start_time",
    "release_time",
)


def local_time(epoch_s: float | None, zone: ZoneInfo) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` in ``zone`` (seconds truncated, as the reference), or None.

    Cached per whole second: every call renders a few instants (its reports, its record, its
    CDR line) and the calls of one second share them, so the datetime arithmetic and
    ``strftime`` (~2.5 µs) run about once per second and zone instead of a dozen times a call.
    """
    if epoch_s is None:
        return None
    return _local_second(math.floor(epoch_s), zone)


@lru_cache(maxsize=4096)
def _local_second(epoch_s: int, zone: ZoneInfo) -> str:
    moment = dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call (connected or intercepted), SPEC §6 end-of-call fields plus internal ones.

    ``phone_no`` is the binding's A side of this call and ``peer_no`` the other real party, so for
    ``call_type`` 0 the caller is ``phone_no`` and for 1 it is ``peer_no``.  For a call with no
    binding at all, ``sub_id``/``pool_key`` may be None and ``phone_no`` is None.
    """

    id: str  # unique report id (also the primary key); a duplicate push carries the same id
    call_id: str  # maskline's id of the call (not a SIP Call-ID of either leg)
    secret_no: PhoneNumber  # X
    call_type: CallType
    call_time: float  # the call reached X (UTC epoch seconds)
    release_time: float  # both legs ended
    release_dir: ReleaseDir
    release_cause: int  # Q.850 cause value (16 normal clearing, 17 busy, 19 no answer, ...)
    unconnected_cause: UnconnectedCause = UnconnectedCause.NORMAL
    pool_key: PoolKey | None = None
    sub_id: SubId | None = None
    phone_no: PhoneNumber | None = None
    peer_no: PhoneNumber | None = None
    called_display_no: PhoneNumber | None = None  # the number the callee saw: X
    city: str | None = None  # X's city
    call_out_time: float | None = None  # outbound leg sent
    ring_time: float | None = None  # callee ringing (first 180/183)
    start_time: float | None = None  # callee answered
    record_url: str | None = None
    ring_record_url: str | None = None
    out_id: str | None = None
    # Internal, not part of the pushed report.
    duration_s: float = 0.0  # answered time (release - start); billing rates started minutes
    recording_path: str | None = None  # as written by the engine (absolute or relative to cwd)

    def to_report(self, zone: ZoneInfo) -> dict[str, object]:
        """The end-of-call report with the reference field names, times local to ``zone``.

        Fields the call never reached are ``None`` (JSON ``null``); enums become their ints.
        """
        report: dict[str, object] = {}
        for name in REPORT_FIELDS:
            value = getattr(self, name)
            if name in TIME_FIELDS:
                report[name] = local_time(value, zone)
            elif isinstance(value, IntEnum):
                report[name] = int(value)
            else:
                report[name] = value
        return report
