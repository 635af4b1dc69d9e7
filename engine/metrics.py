"""Prometheus metrics of the running engine, served as ``GET /metrics`` on the API listener.

Cheap by construction. The call path pays for a handful of integer updates and nothing else:

* :class:`CallMetrics` hears the B2BUA's call events (it is a ``CallEvents``, fanned out beside
  the reports service by ``engine.server``) and the end of every call (the call record, on its
  way to the store). It keeps plain ``int`` counters, histogram buckets filled with one
  ``bisect`` (:class:`Buckets`) and per-second slots for the windowed gauges
  (:class:`SecondWindows`); no prometheus-client object, lock or label lookup is touched
  per call.
* Everything else already counts for itself and is read only when Prometheus scrapes:
  the SIP endpoint's ``EndpointStats`` and live transactions, the B2BUA's active calls, the
  relay's per-session packet counters (plus the totals of closed sessions, which
  :class:`CountingMediaRelay` folds in when a session is forgotten, once per session), the
  port allocator, the binding index, the reports writer's buffer, the database's commit
  counters, and the kernel's UDP drop counters.
* Figures that need the database (bindings by type, undelivered reports in the outbox) are
  read in the database's read thread, at most once per ``store_refresh_s`` (a scrape between
  two refreshes gets the cached figures).
* Event-loop lag: one timer, re-armed every ``interval_s`` (:class:`LoopLagMonitor`).

:class:`Metrics` ties them together: ``engine.server`` makes one before the API starts (the
route exists from the first request), attaches the engine's parts once they exist, and the
route awaits :meth:`Metrics.exposition`. Metric names and their meaning are listed in
``docs/operations.md``; the Grafana dashboard is ``docs/grafana-maskline.json``.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from engine.calls import Call, CallState
from engine.logging import get_logger
from media.ports import PortAllocator
from media.relay import (
    DEFAULT_MAX_PARKED_PAIRS,
    DEFAULT_SOCKET_BUFFER_BYTES,
    MediaRelay,
    MediaSession,
)
from sip.endpoint import Endpoint, EndpointStats
from store.db import Database, DatabaseClosedError
from store.records import CallRecord, CallType, UnconnectedCause

__all__ = [
    "DURATION_BUCKETS_S",
    "LOOP_LAG_BUCKETS_S",
    "POST_DIAL_DELAY_BUCKETS_S",
    "SETUP_DELAY_BUCKETS_S",
    "Buckets",
    "CallMetrics",
    "CountingMediaRelay",
    "LoopLagMonitor",
    "Metrics",
    "RtpTotals",
    "SecondWindows",
    "StoreFigures",
    "read_store_figures",
]

_log = get_logger("engine.metrics")

# Histogram bucket bounds (upper, inclusive), seconds.
# tuple[float, ...], not the fixed-length tuple mypy infers: mypyc (build_compiled.py) keeps a
# fixed-length tuple of floats unboxed, and its "was it set" check of one such constant came out
# inverted (NameError in LoopLagMonitor); a boxed tuple is checked against NULL.
# Post-dial delay as the caller hears it: its INVITE to the first ringing (or the answer).
POST_DIAL_DELAY_BUCKETS_S: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip
# maskline's own share of it: the caller's INVITE to our INVITE towards the callee.
SETUP_DELAY_BUCKETS_S: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
DURATION_BUCKETS_S: Final[tuple[float, ...]] = (
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip
# uvloop's timers tick in milliseconds: below 1 ms there is nothing to resolve.
LOOP_LAG_BUCKETS_S: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

# Help and name of every EndpointStats counter known today; a counter added later is exported
# as maskline_sip_<field>_total with a generic help text, so none is ever missing.
# Enum members as module constants: the call path compares against them per call.
_IVR: Final = CallState.IVR
_INTERCEPTED: Final = CallType.CALL_INTERCEPTED
_CONNECTED: Final = UnconnectedCause.NORMAL

_ENDPOINT_COUNTERS: Final[Mapping[str, tuple[str, str]]] = {
    "messages_received": ("sip_messages_received", "SIP messages received (UDP and TCP)"),
    "requests_rejected": (
        "sip_requests_rejected",
        "requests answered with an error by the transaction layer (bad or unsupported)",
    ),
    "malformed_dropped": ("sip_malformed_dropped", "datagrams dropped as unparsable SIP"),
    "responses_dropped": (
        "sip_responses_dropped",
        "responses matching no client transaction (stray or late)",
    ),
    "retransmissions_absorbed": (
        "sip_retransmissions_received",
        "request retransmissions received and answered from their transaction (not ACK)",
    ),
    "retransmissions_sent": (
        "sip_retransmissions_sent",
        "requests and responses re-sent by transaction timers (RFC 3261 timers A, E, G)",
    ),
    "overload_rejected": (
        "sip_overload_rejected",
        "new requests refused with 503 and Retry-After (overload)",
    ),
    "flood_dropped": (
        "sip_flood_dropped",
        "new requests dropped unanswered (per-source rate limit)",
    ),
    "internal_errors": ("sip_internal_errors", "messages whose handling raised a bug"),
}

_UDP_COUNTERS: Final[Mapping[str, tuple[str, str]]] = {
    "RcvbufErrors": (
        "udp_receive_buffer_errors",
        "UDP datagrams the kernel dropped because a socket's receive buffer was full "
        "(RTP and SIP alike; the whole network namespace)",
    ),
    "SndbufErrors": (
        "udp_send_buffer_errors",
        "UDP datagrams the kernel could not send for a full send buffer (network namespace)",
    ),
    "InErrors": ("udp_receive_errors", "UDP datagrams received with errors (network namespace)"),
}


# ------------------------------------------------------------------------------------ pure


class Buckets:
    """A histogram kept as plain counts: ``observe`` is one ``bisect`` and two additions."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        """``bounds``: increasing upper bounds; values above the last go to ``+Inf``."""
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bucket bounds must be distinct and increasing")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` (a bound is inclusive: ``le`` means less than or equal)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus ``le`` buckets: (bound as text, observations at or below it)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


class SecondWindows:
    """Per-second slots of offered and answered calls and of ended answered calls' durations,
    for the windowed gauges (calls per second, ASR, ACD) without a timestamp per call.

    Slot ``s % size`` holds second ``s``; a slot found holding an older second is cleared
    first. Sums cover the complete seconds before ``now``.
    """

    __slots__ = ("answered", "duration_count", "duration_sum", "offered", "seconds", "size")

    def __init__(self, size: int) -> None:
        """``size``: the longest window asked for, in seconds (plus the current second)."""
        if size < 2:
            raise ValueError("a window holds at least two seconds")
        self.size = size
        self.seconds = [-1] * size
        self.offered = [0] * size
        self.answered = [0] * size
        self.duration_sum = [0.0] * size
        self.duration_count = [0] * size

    def _slot(self, now: float) -> int:
        second = int(now)
        slot = second % self.size
        if self.seconds[slot] != second:
            self.seconds[slot] = second
            self.offered[slot] = self.answered[slot] = self.duration_count[slot] = 0
            self.duration_sum[slot] = 0.0
        return slot

    def add_offered(self, now: float) -> None:
        """One call offered at ``now``."""
        self.offered[self._slot(now)] += 1

    def add_answered(self, now: float) -> None:
        """One call answered at ``now``."""
        self.answered[self._slot(now)] += 1

    def add_duration(self, now: float, duration_s: float) -> None:
        """An answered call of ``duration_s`` ended at ``now``."""
        slot = self._slot(now)
        self.duration_sum[slot] += duration_s
        self.duration_count[slot] += 1

    def _seconds(self, now: float, window_s: int) -> Iterator[int]:
        """Slots of the ``window_s`` complete seconds before ``now``."""
        if not 1 <= window_s < self.size:
            raise ValueError(f"window must be 1..{self.size - 1} s")
        current = int(now)
        for second in range(current - window_s, current):
            slot = second % self.size
            if self.seconds[slot] == second:
                yield slot

    def offered_per_s(self, now: float, window_s: int) -> float:
        """Calls offered per second over the window."""
        return sum(self.offered[s] for s in self._seconds(now, window_s)) / window_s

    def asr(self, now: float, window_s: int) -> float:
        """Answered / offered over the window; NaN with no call offered."""
        slots = list(self._seconds(now, window_s))
        offered = sum(self.offered[s] for s in slots)
        if offered == 0:
            return math.nan
        return sum(self.answered[s] for s in slots) / offered

    def acd_s(self, now: float, window_s: int) -> float:
        """Mean duration of the answered calls that ended in the window; NaN with none."""
        slots = list(self._seconds(now, window_s))
        count = sum(self.duration_count[s] for s in slots)
        if count == 0:
            return math.nan
        return sum(self.duration_sum[s] for s in slots) / count


class CallMetrics:
    """Counts calls from the B2BUA's events and their records (see the module docstring).

    A call is *offered* when the B2BUA reports its routing outcome (``call_started``), or, for
    a call that ended before one (the caller hung up while keying an extension), when it ends.
    It ends *answered* (``start_time`` set: duration histogram), *intercepted* (call type 4
    with an SPEC §6 ``unconnected_cause``: blacklist, no binding, restriction, other) or
    *failed* (not answered otherwise — busy, no answer, the caller gave up, also while keying
    an extension — by Q.850 release cause).

    Delays come from the call's own wall-clock stamps: post-dial delay is the caller's INVITE
    to the first ringing relayed (or to the answer, with no ringing before it); setup delay is
    the caller's INVITE to our INVITE towards the callee, i.e. what maskline adds. Calls that
    went through the extension IVR are left out of both (the caller's keying is not delay).
    """

    __slots__ = (
        "_measured",
        "_window",
        "acd_window_s",
        "answered",
        "asr_window_s",
        "clock",
        "duration",
        "failed",
        "intercepted",
        "offered",
        "post_dial_delay",
        "rate_window_s",
        "setup_delay",
    )

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_window_s: int = 10,
        quality_window_s: int = 300,
    ) -> None:
        """``rate_window_s``: window of the calls-per-second gauge; ``quality_window_s``: of
        the ASR and ACD gauges. ``clock``: any monotonic seconds (windows only)."""
        self.clock = clock
        self.rate_window_s = rate_window_s
        self.asr_window_s = self.acd_window_s = quality_window_s
        self.offered = 0
        self.answered = 0
        self.failed: dict[int, int] = {}  # Q.850 release cause → calls
        self.intercepted: dict[int, int] = {}  # unconnected_cause → calls
        self.post_dial_delay = Buckets(POST_DIAL_DELAY_BUCKETS_S)
        self.setup_delay = Buckets(SETUP_DELAY_BUCKETS_S)
        self.duration = Buckets(DURATION_BUCKETS_S)
        self._window = SecondWindows(max(rate_window_s, quality_window_s) + 1)
        # Calls started and not ended → whether their delays are measured (False: IVR call).
        self._measured: dict[str, bool] = {}

    # -- CallEvents (engine.b2bua): each returns at once --------------------------------------

    def call_started(self, call: Call) -> None:
        """The call's routing outcome is known: it is offered."""
        if call.call_id in self._measured:
            return
        # A routed call starts in ROUTING; one routed by the extension IVR starts in IVR.
        self._measured[call.call_id] = call.state is not _IVR
        self.offered += 1
        self._window.add_offered(self.clock())

    def call_ringing(self, call: Call) -> None:
        """The callee rings: the post-dial delay is over."""
        if self._measured.get(call.call_id) and call.ring_time is not None:
            self.post_dial_delay.observe(max(0.0, call.ring_time - call.call_time))

    def call_answered(self, call: Call) -> None:
        """The callee answered."""
        self.answered += 1
        self._window.add_answered(self.clock())
        if (
            call.ring_time is None
            and call.start_time is not None
            and self._measured.get(call.call_id)
        ):
            self.post_dial_delay.observe(max(0.0, call.start_time - call.call_time))

    # -- the end ----------------------------------------------------------------------------

    def call_ended(self, record: CallRecord) -> None:
        """``record`` is the ended call's record (``engine.records.call_record_of``)."""
        measured = self._measured.pop(record.call_id, None)
        if measured is None:  # ended before its routing outcome was known
            self.offered += 1
            self._window.add_offered(self.clock())
            measured = False
        if measured and record.call_out_time is not None:
            self.setup_delay.observe(max(0.0, record.call_out_time - record.call_time))
        if record.start_time is not None:
            self.duration.observe(record.duration_s)
            self._window.add_duration(self.clock(), record.duration_s)
        elif record.call_type is _INTERCEPTED and record.unconnected_cause is not _CONNECTED:
            cause = int(record.unconnected_cause)
            self.intercepted[cause] = self.intercepted.get(cause, 0) + 1
        else:
            self.failed[record.release_cause] = self.failed.get(record.release_cause, 0) + 1

    @property
    def in_progress(self) -> int:
        """Calls started and not yet ended (as far as these events tell)."""
        return len(self._measured)

    # -- windowed gauges ----------------------------------------------------------------------

    def calls_per_second(self) -> float:
        """Calls offered per second over the last ``rate_window_s`` complete seconds."""
        return self._window.offered_per_s(self.clock(), self.rate_window_s)

    def asr(self) -> float:
        """Answer-seizure ratio over the last ``asr_window_s`` s (NaN: no call offered)."""
        return self._window.asr(self.clock(), self.asr_window_s)

    def acd_s(self) -> float:
        """Average duration of answered calls ended in the last ``acd_window_s`` s (NaN: none)."""
        return self._window.acd_s(self.clock(), self.acd_window_s)


# ------------------------------------------------------------------------- media counters


@dataclass(slots=True)
class RtpTotals:
    """Packet counters of a set of relay sessions (see ``media.relay.MediaSession``)."""

    relayed: int = 0
    dropped: int = 0  # not RTP, or not from the latched/expected source
    unrouted: int = 0  # valid, but the other side had no address yet
    send_errors: int = 0

    def add(self, session: MediaSession) -> None:
        """Add ``session``'s counters."""
        self.relayed += session.packets_a_to_b + session.packets_b_to_a
        self.dropped += session.dropped
        self.unrouted += session.unrouted
        self.send_errors += session.send_errors


class CountingMediaRelay(MediaRelay):
    """The relay, plus the packet totals of the sessions it has closed, so that the packet
    counters exported stay monotonic when sessions go away. One addition of four counters per
    closed session; nothing per packet."""

    def __init__(
        self,
        address: str,
        allocator: PortAllocator,
        *,
        loop: asyncio.AbstractEventLoop,
        socket_buffer_bytes: int = DEFAULT_SOCKET_BUFFER_BYTES,
        reuse_after_s: float | None = None,
        max_parked_pairs: int = DEFAULT_MAX_PARKED_PAIRS,
        spare_pairs: int = 0,
    ) -> None:
        """As ``MediaRelay``."""
        super().__init__(
            address,
            allocator,
            loop=loop,
            socket_buffer_bytes=socket_buffer_bytes,
            reuse_after_s=reuse_after_s,
            max_parked_pairs=max_parked_pairs,
            spare_pairs=spare_pairs,
        )
        self.closed_totals = RtpTotals()
        self.sessions_closed = 0

    def session_ended(self, session: MediaSession) -> None:
        """Fold a session's counters into ``closed_totals`` (``MediaRelay`` calls this exactly
        once per session, when it stopped relaying)."""
        self.closed_totals.add(session)
        self.sessions_closed += 1

    def totals(self) -> RtpTotals:
        """Counters of every session so far: the closed ones and those open now."""
        closed = self.closed_totals
        totals = RtpTotals(closed.relayed, closed.dropped, closed.unrouted, closed.send_errors)
        for session in self.sessions:
            totals.add(session)
        return totals


def read_udp_counters(path: Path = Path("/proc/net/snmp")) -> dict[str, int]:
    """The kernel's UDP counters (``Udp:`` lines of ``/proc/net/snmp``); empty where absent."""
    try:
        lines = path.read_text("ascii").splitlines()
    except OSError:
        return {}
    rows = [line.split()[1:] for line in lines if line.startswith("Udp:")]
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return {}
    names, values = rows[0], rows[1]
    try:
        return {name: int(value) for name, value in zip(names, values, strict=True)}
    except ValueError:
        return {}


# ---------------------------------------------------------------------------- event loop


class LoopLagMonitor:
    """How late the event loop runs a timer due every ``interval_s``: the time every other
    callback (a SIP datagram, an RTP packet, an API request) may have waited too."""

    __slots__ = ("_due", "_handle", "_loop", "_recent", "histogram", "interval_s", "last_s")

    def __init__(self, *, interval_s: float = 0.25, recent_s: float = 10.0) -> None:
        """``recent_s``: span of :attr:`recent_max_s`."""
        self.interval_s = interval_s
        self.histogram = Buckets(LOOP_LAG_BUCKETS_S)
        self.last_s = 0.0
        self._recent: deque[float] = deque(maxlen=max(1, round(recent_s / interval_s)))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start sampling on ``loop`` (idempotent)."""
        if self._handle is not None:
            return
        self._loop = loop
        self._due = loop.time() + self.interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        """Stop sampling."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self.record(now - self._due)
        self._due = now + self.interval_s
        self._handle = loop.call_at(self._due, self._tick)

    def record(self, lag_s: float) -> None:
        """Count one sample (negative lag, a timer fired early by rounding, counts as 0)."""
        lag_s = max(0.0, lag_s)
        self.last_s = lag_s
        self._recent.append(lag_s)
        self.histogram.observe(lag_s)

    @property
    def recent_max_s(self) -> float:
        """The largest lag of the last ``recent_s`` seconds of samples."""
        return max(self._recent, default=0.0)


# ------------------------------------------------------------------------------ the store


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """What the metrics read from the database (see :func:`read_store_figures`)."""

    bindings_by_type: Mapping[str, int]
    outbox_pending: int


_BINDING_TYPES: Final = ("AXB", "AXN", "AXN_EXT", "95AXN", "AXG")
# Counted per pool over the partial index bindings_active (pool_key, unbound_at IS NULL): an
# index-only scan, no table row read; the pools table gives each pool's (and so its bindings')
# type.
_BINDINGS_BY_TYPE_SQL: Final = """
    SELECT p.type AS type, SUM(c.n) AS n
    FROM (SELECT pool_key, COUNT(*) AS n FROM bindings WHERE unbound_at IS NULL
          GROUP BY pool_key) AS c
    JOIN pools AS p ON p.pool_key = c.pool_key
    GROUP BY p.type
"""
# Served by the partial index report_outbox_tenant_pending (delivered_at IS NULL).
_OUTBOX_PENDING_SQL: Final = "SELECT COUNT(*) FROM report_outbox WHERE delivered_at IS NULL"


def read_store_figures(conn: sqlite3.Connection) -> StoreFigures:
    """Bindings not unbound (expired ones included until purged: they hold their X) per type,
    and reports not yet delivered (push back-off, pull queue, leased). A read op."""
    by_type = dict.fromkeys(_BINDING_TYPES, 0)
    for row in conn.execute(_BINDINGS_BY_TYPE_SQL):
        by_type[str(row[0])] = int(row[1])
    (pending,) = conn.execute(_OUTBOX_PENDING_SQL).fetchone()
    return StoreFigures(bindings_by_type=by_type, outbox_pending=int(pending))


# ----------------------------------------------------------------------------- collector


class ReportQueue(Protocol):
    """The reports writer as the metrics see it (``api.reports.CallReports``)."""

    @property
    def buffered(self) -> int:
        """Reports waiting for the writer."""

    @property
    def dropped(self) -> int:
        """Reports dropped (buffer full or closing)."""


@dataclass(slots=True)
class _Sources:
    """The engine's parts, attached once they exist (each may be missing: not exported)."""

    endpoint: Endpoint | None = None
    active_calls: Callable[[], int] | None = None
    relay: MediaRelay | None = None
    bindings_indexed: Callable[[], int] | None = None
    reports: ReportQueue | None = None
    db: Database | None = None
    overload_refused: Callable[[], Mapping[str, int]] | None = None
    sip_not_sent: Callable[[], Mapping[str, int]] | None = None


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"maskline_{name}", documentation, value=value)


def _counter_by_reason(
    name: str, documentation: str, counts: Mapping[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(f"maskline_{name}", documentation, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], count)
    return family


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"maskline_{name}", documentation, value=value)


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        f"maskline_{name}", documentation, buckets=buckets.cumulative(), sum_value=buckets.sum
    )


def _cause_name(cause: int) -> str:
    try:
        return UnconnectedCause(cause).name.lower()
    except ValueError:
        return str(cause)


class _EngineCollector:
    """A prometheus-client collector reading the engine's counters at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self._metrics
        yield from self._calls(metrics.calls)
        sources = metrics.sources
        if sources.active_calls is not None:
            yield _gauge(
                "calls_active",
                "calls between their INVITE and their release",
                sources.active_calls(),
            )
        if sources.endpoint is not None:
            yield from self._sip(sources.endpoint)
        if sources.relay is not None:
            yield from self._media(sources.relay)
        yield from self._udp()
        yield from self._bindings(sources, metrics.store_figures)
        yield from self._reports(sources, metrics.store_figures)
        if sources.overload_refused is not None:
            yield _counter_by_reason(
                "overload_refused",
                "new requests refused (503) or dropped by overload protection, by reason",
                sources.overload_refused(),
            )
        if sources.sip_not_sent is not None:
            yield _counter_by_reason(
                "sip_not_sent",
                "SIP datagrams the transport could not send, by reason",
                sources.sip_not_sent(),
            )
        if sources.db is not None:
            yield _counter(
                "db_write_batches",
                "write transactions committed (group commit)",
                sources.db.batches_committed,
            )
            yield _counter("db_write_ops", "write operations committed", sources.db.ops_committed)
            yield _counter(
                "db_loop_write_batches",
                "write transactions committed on the event loop (the call path's report rounds)",
                sources.db.loop_batches,
            )
            yield _counter(
                "db_checkpoints",
                "WAL checkpoints completed (PASSIVE, in the checkpointer's thread)",
                sources.db.checkpoints,
            )
        lag = metrics.loop_lag
        yield _histogram(
            "event_loop_lag_seconds",
            f"lateness of a timer due every {lag.interval_s} s on the engine's event loop",
            lag.histogram,
        )
        yield _gauge(
            "event_loop_lag_max_seconds",
            "largest event-loop lag of the last 10 s of samples",
            lag.recent_max_s,
        )

    @staticmethod
    def _calls(calls: CallMetrics) -> Iterator[Metric]:
        yield _counter(
            "calls_offered", "calls that reached an X number (routed or intercepted)", calls.offered
        )
        yield _counter("calls_answered", "calls answered by the callee", calls.answered)
        failed = CounterMetricFamily(
            "maskline_calls_failed",
            "calls that ended unanswered and not intercepted, by Q.850 release cause (16 the "
            "caller gave up, 17 busy, 19 no answer, 102 timer, ...)",
            labels=["cause"],
        )
        for cause, count in sorted(calls.failed.items()):
            failed.add_metric([str(cause)], count)
        yield failed
        intercepted = CounterMetricFamily(
            "maskline_calls_intercepted",
            "calls not connected by policy, by reason (SPEC §6 unconnected_cause)",
            labels=["reason"],
        )
        for cause, count in sorted(calls.intercepted.items()):
            intercepted.add_metric([_cause_name(cause)], count)
        yield intercepted
        yield _gauge(
            "calls_per_second",
            f"calls offered per second over the last {calls.rate_window_s} s",
            calls.calls_per_second(),
        )
        yield _gauge(
            "asr_ratio",
            f"answered / offered calls over the last {calls.asr_window_s} s (NaN: none offered)",
            calls.asr(),
        )
        yield _gauge(
            "acd_seconds",
            "average duration of the answered calls ended in the last "
            f"{calls.acd_window_s} s (NaN: none)",
            calls.acd_s(),
        )
        yield _histogram(
            "post_dial_delay_seconds",
            "caller's INVITE to the first ringing relayed (or the answer)",
            calls.post_dial_delay,
        )
        yield _histogram(
            "call_setup_delay_seconds",
            "caller's INVITE to maskline's INVITE towards the callee (the delay maskline adds)",
            calls.setup_delay,
        )
        yield _histogram(
            "call_duration_seconds", "duration of answered calls (sum/count: ACD)", calls.duration
        )

    @staticmethod
    def _sip(endpoint: Endpoint) -> Iterator[Metric]:
        yield _gauge("sip_transactions", "live SIP transactions", endpoint.transaction_count)
        stats = endpoint.stats
        for field in fields(EndpointStats):
            value = getattr(stats, field.name)
            if not isinstance(value, int):
                continue
            name, documentation = _ENDPOINT_COUNTERS.get(
                field.name, (f"sip_{field.name}", f"SIP endpoint counter {field.name}")
            )
            yield _counter(name, documentation, value)

    @staticmethod
    def _media(relay: MediaRelay) -> Iterator[Metric]:
        yield _gauge("rtp_sessions", "open media relay sessions", relay.active_sessions)
        ports: PortAllocator = relay.allocator
        yield _gauge(
            "media_ports_in_use",
            "RTP ports (even, with RTCP beside) of open relay sessions",
            relay.ports_in_use,
        )
        yield _gauge(
            "media_ports_parked",
            "RTP ports kept bound for a later call: ended calls' (reused once quiet, or at once "
            "when the range runs short) and spares bound ahead",
            2 * (relay.parked_pairs + relay.spare_pairs),
        )
        yield _gauge(
            "media_ports_capacity", "RTP ports (even) in [media] port_min..port_max", ports.capacity
        )
        if not isinstance(relay, CountingMediaRelay):
            return  # no totals of closed sessions: the counters would not be monotonic
        totals = relay.totals()
        yield _counter(
            "rtp_packets_relayed", "RTP/RTCP packets relayed between the parties", totals.relayed
        )
        dropped = CounterMetricFamily(
            "maskline_rtp_packets_dropped",
            "packets received on relay ports and not relayed: rejected (not RTP, or not from "
            "the party's address), unrouted (the other side had no address yet)",
            labels=["reason"],
        )
        dropped.add_metric(["rejected"], totals.dropped)
        dropped.add_metric(["unrouted"], totals.unrouted)
        yield dropped
        yield _counter(
            "rtp_send_errors", "ICMP errors reported for relayed packets", totals.send_errors
        )
        yield _counter("rtp_sessions_closed", "media relay sessions closed", relay.sessions_closed)

    @staticmethod
    def _udp() -> Iterator[Metric]:
        counters = read_udp_counters()
        for key, (name, documentation) in _UDP_COUNTERS.items():
            if key in counters:
                yield _counter(name, documentation, counters[key])

    @staticmethod
    def _bindings(sources: _Sources, figures: StoreFigures | None) -> Iterator[Metric]:
        if sources.bindings_indexed is not None:
            yield _gauge(
                "bindings_indexed",
                "bindings in the in-memory index (active and expired until purged)",
                sources.bindings_indexed(),
            )
        if figures is not None:
            by_type = GaugeMetricFamily(
                "maskline_bindings",
                "bindings not unbound, by type (from the store, refreshed at most every "
                "few seconds)",
                labels=["type"],
            )
            for kind, count in sorted(figures.bindings_by_type.items()):
                by_type.add_metric([kind], count)
            yield by_type

    @staticmethod
    def _reports(sources: _Sources, figures: StoreFigures | None) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "maskline_report_queue_depth",
            "reports not yet delivered: buffered (in memory, for the outbox writer) and outbox "
            "(written, awaiting push or pull)",
            labels=["stage"],
        )
        if sources.reports is not None:
            depth.add_metric(["buffered"], sources.reports.buffered)
        if figures is not None:
            depth.add_metric(["outbox"], figures.outbox_pending)
        yield depth
        if sources.reports is not None:
            yield _counter(
                "reports_dropped",
                "call reports dropped because the writer's buffer was full",
                sources.reports.dropped,
            )


# --------------------------------------------------------------------------------- facade


class Metrics:
    """The engine's metrics: call counters, sources read at scrape, the loop-lag timer, and
    the Prometheus text of all of them plus the process's own (CPU, memory, descriptors)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        store_refresh_s: float = 10.0,
        process_metrics: bool = True,
    ) -> None:
        """``store_refresh_s``: oldest age of the database figures a scrape accepts."""
        self.calls = CallMetrics(clock=clock)
        self.loop_lag = LoopLagMonitor()
        self.sources = _Sources()
        self.store_figures: StoreFigures | None = None
        self.store_refresh_s = store_refresh_s
        self._clock = clock
        self._store_read_at = -math.inf
        self._store_read: asyncio.Task[None] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def attach(
        self,
        *,
        endpoint: Endpoint | None = None,
        active_calls: Callable[[], int] | None = None,
        relay: MediaRelay | None = None,
        bindings_indexed: Callable[[], int] | None = None,
        reports: ReportQueue | None = None,
        db: Database | None = None,
        overload_refused: Callable[[], Mapping[str, int]] | None = None,
        sip_not_sent: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Make the given parts of the engine visible (those not given stay as they are).

        ``overload_refused``: requests refused by overload protection, by reason (e.g. the
        overload guard's counters ``as_dict``); ``sip_not_sent``: what the SIP transport could
        not send, by reason (``SipTransport.not_sent``)."""
        for name, value in (
            ("endpoint", endpoint),
            ("active_calls", active_calls),
            ("relay", relay),
            ("bindings_indexed", bindings_indexed),
            ("reports", reports),
            ("db", db),
            ("overload_refused", overload_refused),
            ("sip_not_sent", sip_not_sent),
        ):
            if value is not None:
                setattr(self.sources, name, value)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the event-loop lag timer."""
        self.loop_lag.start(loop)

    def stop(self) -> None:
        """Stop the timer (the figures stay readable)."""
        self.loop_lag.stop()

    async def refresh_store_figures(self, *, force: bool = False) -> None:
        """Re-read the database figures if older than ``store_refresh_s`` (or ``force``).

        Concurrent scrapes share one read. A failed read keeps the previous figures (logged).
        """
        db = self.sources.db
        if db is None:
            return
        if not force and self._clock() - self._store_read_at < self.store_refresh_s:
            return
        if self._store_read is None or self._store_read.done():
            self._store_read = asyncio.get_running_loop().create_task(self._read_store(db))
        await asyncio.shield(self._store_read)

    async def _read_store(self, db: Database) -> None:
        try:
            self.store_figures = await db.read(read_store_figures)
        except DatabaseClosedError:
            return
        except sqlite3.Error as error:
            _log.error("metrics_store_read_failed", error=str(error))
            return
        self._store_read_at = self._clock()

    async def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type (``GET /metrics``)."""
        await self.refresh_store_figures()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
