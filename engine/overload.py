"""Overload protection: which new SIP requests the engine takes on, before any transaction exists.

Two mechanisms, both consulted by the sans-IO endpoint (``sip.endpoint.AdmissionPolicy``) for
every new request except ACK and a CANCEL of a pending INVITE:

- **Capacity** (``OverloadGuard``): while the engine is past a limit — calls between INVITE and
  release, media relay ports, live SIP transactions, event-loop lag — a new INVITE gets 503
  with Retry-After, statelessly, before 100 Trying: no transaction, no call, no call record;
  the carrier retries elsewhere or later. A well-behaved peer needs that answer, so it is
  given (and the endpoint answers the INVITE's retransmissions with the same 503).
  Other requests outside calls (OPTIONS, REGISTER, stray in-dialog requests) are still served
  up to 5/4 of the transaction limit, the table's hard bound: OPTIONS keep being answered while
  calls are shed, and no flood can grow the table (and memory) without limit.
- **Per-source flood limit** (``SourceRateLimiter``): a token bucket per source IP address and
  request kind (INVITE, REGISTER, OPTIONS, other). A request past its bucket is **dropped
  silently**: the source is sending more than any configured peer should, answering it would
  cost as much as what the limit protects and would reflect traffic to an address that may be
  spoofed, and a genuine UA retransmits (RFC 3261 Timers A/E) and is served once its bucket
  refills. One kind flooding does not starve another (a trunk's OPTIONS keep-alives are not
  dropped because of its INVITEs). The table is bounded; when full the oldest source is
  forgotten and starts again with a full bucket. A flood spread over many addresses is caught
  by the capacity limits instead.

Requests inside an established call (BYE, re-INVITE, UPDATE, PRACK, INFO) pass both: the calls
already up keep working, and their BYEs free what the overload is short of. Only the absolute
bound, twice the transaction limit, stops them (a party flooding inside its own call).

"Loop lag" is how late SIP is served (``SipLagMonitor``, run by the SIP transport): the lateness
of a timer, or the wait of a probe datagram in the SIP socket's queue, whichever is larger,
sustained over three samples (150 ms) so a single GC pause is not taken for an overload.

Cost on the hot path: about 1.2 us per new request (a To-tag check, one dict lookup and a few
float operations in the bucket, three counter reads for an INVITE); the lag monitor wakes 20
times a second. Everything but the monitor is pure and driven by the ``now`` it is given.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Protocol

from config.settings import OverloadSettings
from engine.logging import get_logger
from sip.endpoint import Admission
from sip.message import Request
from sip.transport import Peer

_log = get_logger("engine.overload")

# The table's hard bound, as a multiple of ``max_transactions`` (which sheds new INVITEs):
# the headroom keeps OPTIONS and stray requests answered while INVITEs are refused.
HARD_TRANSACTIONS_NUM, HARD_TRANSACTIONS_DEN = 5, 4
# Requests inside established calls pass every limit but this one (twice max_transactions).
ABSOLUTE_TRANSACTIONS_FACTOR = 2
# The SIP lag monitor: a sample every LAG_SAMPLE_INTERVAL_S; the lag is the smallest of the
# last LAG_WINDOW samples (150 ms); a probe not back after PROBE_TIMEOUT_S counts as lost.
LAG_SAMPLE_INTERVAL_S = 0.05
LAG_WINDOW = 3
PROBE_TIMEOUT_S = 1.0
# Probe datagrams start with a NUL byte: never the start of a SIP message (nor of a CRLF
# keep-alive), so a probe that reached the parser by mistake would be dropped as malformed.
PROBE_PREFIX = b"\x00maskline-lag-probe "
# At most one log line per this many seconds about sources being dropped.
_FLOOD_LOG_INTERVAL_S = 10.0
# A shedding episode ends (and is logged as ended) after this long without a refused INVITE.
_SHEDDING_QUIET_S = 1.0

_LIMITED_KINDS = frozenset({"INVITE", "REGISTER", "OPTIONS"})


class ShedReason(StrEnum):
    """Why a new request was refused (503) or dropped."""

    CALLS = "calls"  # max_calls calls up
    MEDIA_PORTS = "media_ports"  # the RTP relay's port range taken (one session per call)
    TRANSACTIONS = "transactions"  # max_transactions live transactions (new INVITEs)
    LOOP_LAG = "loop_lag"  # the event loop is late by more than max_loop_lag_ms
    TABLE_FULL = "table_full"  # the hard bound of the transaction table (any new request)
    SOURCE_RATE = "source_rate"  # the source's bucket for this kind is empty (dropped)


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class SourceRateLimiter:
    """Token buckets per (source address, request kind), at most ``max_sources`` of them.

    ``rate_per_s`` of 0 allows everything. A new source starts with a full bucket of ``burst``.
    """

    def __init__(self, *, rate_per_s: float, burst: int, max_sources: int) -> None:
        if rate_per_s < 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate_per_s >= 0, burst >= 1 and max_sources >= 1 are required")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.max_sources = max_sources
        # Insertion order is age: the front is evicted when full (OrderedDict pops it in O(1)).
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, kind: str, now: float) -> bool:
        """Take one token from the bucket of ``source`` for ``kind``; False when it is empty."""
        if not self.rate_per_s:
            return True
        key = (source, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            self._buckets[key] = _Bucket(self.burst - 1.0, now)
            return True
        tokens = bucket.tokens + (now - bucket.stamp) * self.rate_per_s
        tokens = min(tokens, self.burst)
        bucket.stamp = now
        if tokens < 1.0:
            bucket.tokens = tokens
            return False
        bucket.tokens = tokens - 1.0
        return True


@dataclass(slots=True)
class OverloadCounters:
    """What the guard refused, by reason (for metrics and the stop log line)."""

    calls: int = 0
    media_ports: int = 0
    transactions: int = 0
    loop_lag: int = 0
    table_full: int = 0
    source_rate: int = 0

    def add(self, reason: ShedReason) -> None:
        """Count one request refused for ``reason``."""
        setattr(self, reason.value, getattr(self, reason.value) + 1)

    def as_dict(self) -> dict[str, int]:
        """The counters by reason name."""
        # The fields, not __slots__: a class compiled by mypyc (build_compiled.py) has none.
        return {field.name: getattr(self, field.name) for field in fields(self)}


class OverloadGuard:
    """The engine's admission policy for new SIP requests (see the module docstring)."""

    def __init__(
        self,
        settings: OverloadSettings,
        *,
        active_calls: Callable[[], int],
        transactions: Callable[[], int],
        loop_lag_s: Callable[[], float],
        known_dialog: Callable[[str, str], bool],
        media_room: Callable[[], int] | None = None,
    ) -> None:
        """``active_calls``: calls between INVITE and release; ``transactions``: live SIP
        transactions; ``loop_lag_s``: how late SIP is served; ``known_dialog(call_id,
        to_tag)``: True when a request with these belongs to a call the engine has;
        ``media_room``: relay sessions still free for new calls (those free less those the
        calls still setting up will take): a call that could not open its media would fail
        after its 100 Trying, so it is refused before."""
        self._active_calls = active_calls
        self._transactions = transactions
        self._loop_lag_s = loop_lag_s
        self._known_dialog = known_dialog
        self._max_calls = settings.max_calls
        self._media_room = media_room
        self._shed_transactions = settings.max_transactions
        self._hard_transactions = (
            settings.max_transactions * HARD_TRANSACTIONS_NUM // HARD_TRANSACTIONS_DEN
        )
        self._absolute_transactions = settings.max_transactions * ABSOLUTE_TRANSACTIONS_FACTOR
        self._max_lag_s = settings.max_loop_lag_ms / 1000
        self._retry_after_s = settings.retry_after_s
        self.limiter = SourceRateLimiter(
            rate_per_s=settings.source_rate_per_s,
            burst=settings.source_burst,
            max_sources=settings.max_sources,
        )
        self.counters = OverloadCounters()
        # Why new INVITEs were last refused, None once none was for _SHEDDING_QUIET_S.
        self.shedding: ShedReason | None = None
        self._shed_since_log = 0
        self._last_shed = 0.0
        self._dropped_since_log = 0
        self._next_flood_log = 0.0

    @property
    def retry_after_s(self) -> int:
        """Retry-After of the 503s (``[overload] retry_after_s``)."""
        return self._retry_after_s

    def admit(self, request: Request, source: Peer, to_tag: str | None, now: float) -> Admission:
        """The verdict for a new request (``sip.endpoint.AdmissionPolicy``)."""
        method = request.method
        if to_tag is not None and self._known_dialog(request.call_id, to_tag):
            # A call already up keeps working whatever the load, short of the absolute bound
            # (a party flooding requests inside its own call must not grow the table forever).
            if self._transactions() < self._absolute_transactions:
                return Admission.ACCEPT
            return self._refuse(ShedReason.TABLE_FULL, now, new_call=False)
        new_call = to_tag is None and method == "INVITE"
        kind = method if to_tag is None and method in _LIMITED_KINDS else "other"
        if not self.limiter.allow(source.host, kind, now):
            self._dropped(source, now)
            return Admission.DROP
        transactions = self._transactions()
        if transactions >= self._hard_transactions:
            return self._refuse(ShedReason.TABLE_FULL, now, new_call=new_call)
        if not new_call:
            return Admission.ACCEPT
        if self._active_calls() >= self._max_calls:
            return self._refuse(ShedReason.CALLS, now, new_call=True)
        media_room = self._media_room
        if media_room is not None and media_room() < 1:
            return self._refuse(ShedReason.MEDIA_PORTS, now, new_call=True)
        if transactions >= self._shed_transactions:
            return self._refuse(ShedReason.TRANSACTIONS, now, new_call=True)
        if self._loop_lag_s() > self._max_lag_s:
            return self._refuse(ShedReason.LOOP_LAG, now, new_call=True)
        if self.shedding is not None and now - self._last_shed >= _SHEDDING_QUIET_S:
            _log.warning(
                "overload_shedding_stopped", reason=self.shedding.value, shed=self._shed_since_log
            )
            self.shedding = None
            self._shed_since_log = 0
        return Admission.ACCEPT

    def _refuse(self, reason: ShedReason, now: float, *, new_call: bool) -> Admission:
        self.counters.add(reason)
        if new_call:
            self._last_shed = now
            self._shed_since_log += 1
            if self.shedding is None:
                # Logged once per episode: near a limit INVITEs are taken and refused in turn,
                # and that must not become a line per INVITE.
                _log.warning(
                    "overload_shedding_started",
                    reason=reason.value,
                    active_calls=self._active_calls(),
                    transactions=self._transactions(),
                    loop_lag_ms=round(self._loop_lag_s() * 1000, 1),
                )
            self.shedding = reason
        return Admission.REJECT

    def _dropped(self, source: Peer, now: float) -> None:
        self.counters.source_rate += 1
        self._dropped_since_log += 1
        if now >= self._next_flood_log:
            # One line per interval however many sources flood: the log must not be one.
            _log.warning("flood_dropping", source=source.host, dropped=self._dropped_since_log)
            self._dropped_since_log = 0
            self._next_flood_log = now + _FLOOD_LOG_INTERVAL_S


class LoopClock(Protocol):
    """The part of an event loop the lag monitor uses (a fake in tests)."""

    def time(self) -> float:
        """The loop's monotonic clock."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """Run ``callback`` at ``when``."""
        ...


class SipLagMonitor:
    """How late the engine serves SIP: the lag ``[overload] max_loop_lag_ms`` is compared with.

    Two measures, taken every ``interval_s``, and the larger counts:

    - **timer lag**: how late a timer due now runs (a callback that does not yield, a GC pause);
    - **receive delay**: how long a probe datagram, sent to the SIP socket by ``send_probe``,
      waits in its queue before the loop reads it (``probe_received``). This is the one that
      grows when the loop is saturated by SIP itself: the event loop reads a bounded number of
      datagrams per iteration and runs its timers in between, so timers stay punctual while
      the socket's queue — and every caller's wait for its 100 Trying — grows. While a probe
      is out its age counts; one not back after ``probe_timeout_s`` (dropped from a full
      queue) counts as that long, and the next one is sent.

    ``lag_s`` is the smallest of the last ``window`` samples: a single stall (a GC pause) lifts
    one or two samples and is not an overload; a loop that stays late lifts them all.
    ``on_lag`` hears ``lag_s`` after every sample (the transport hands it to the endpoint).
    """

    def __init__(
        self,
        *,
        interval_s: float = LAG_SAMPLE_INTERVAL_S,
        window: int = LAG_WINDOW,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        send_probe: Callable[[bytes], None] | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.probe_timeout_s = probe_timeout_s
        self.lag_s = 0.0  # sustained: the smallest of the last ``window`` samples
        self.sample_s = 0.0  # the last sample
        self.max_sample_s = 0.0  # the largest sample seen (for whoever reports it)
        self.receive_delay_s = 0.0  # the wait of the last probe back (or lost)
        self.probes_lost = 0
        self._send_probe = send_probe
        self._on_lag = on_lag
        self._samples: deque[float] = deque(maxlen=window)
        self._loop: LoopClock | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._probe_seq = 0
        self._probe: bytes | None = None  # the probe out, None when none is
        self._probe_sent_at = 0.0

    def start(self, loop: LoopClock) -> None:
        """Start sampling on ``loop`` (again after ``stop``)."""
        self.stop()
        self._loop = loop
        self._schedule(loop.time())

    def stop(self) -> None:
        """Stop sampling; the lag reads 0."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None
        self._probe = None
        self._samples.clear()
        self.lag_s = self.sample_s = self.receive_delay_s = 0.0

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._handle is not None

    def probe_received(self, data: bytes, now: float) -> None:
        """A probe came back through the SIP socket (a stale or unknown one is ignored)."""
        if self._probe is None or data != self._probe:
            return
        self._probe = None
        self.receive_delay_s = max(0.0, now - self._probe_sent_at)

    def _schedule(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        sample = max(0.0, now - self._due)
        if self._send_probe is not None:
            sample = max(sample, self._probe_delay(now))
        self.sample_s = sample
        self.max_sample_s = max(self.max_sample_s, sample)
        self._samples.append(sample)
        self.lag_s = min(self._samples)
        if self._on_lag is not None:
            self._on_lag(self.lag_s)
        self._schedule(now)

    def _probe_delay(self, now: float) -> float:
        """The receive delay as known now; sends the next probe when none is out."""
        assert self._send_probe is not None
        if self._probe is not None:
            age = now - self._probe_sent_at
            if age < self.probe_timeout_s:
                return max(self.receive_delay_s, age)
            self.probes_lost += 1  # dropped by a full socket queue, or never sent
            self.receive_delay_s = age
            self._probe = None
        self._probe_seq += 1
        self._probe = PROBE_PREFIX + str(self._probe_seq).encode()
        self._probe_sent_at = now
        self._send_probe(self._probe)
        return self.receive_delay_s
