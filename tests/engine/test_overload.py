"""engine.overload on a fake clock: per-source token buckets, the capacity guard, the lag monitor.

The guard is driven with real parsed requests and fake counters; the e2e test
(tests/e2e/test_overload_e2e.py) drives the whole process with SIPp.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import sip
from config.settings import OverloadSettings
from engine.overload import (
    OverloadGuard,
    ShedReason,
    SipLagMonitor,
    SourceRateLimiter,
)
from sip.endpoint import Admission
from sip.message import Request
from sip.transport import Peer

TRUNK = Peer("UDP", "192.0.2.1", 5060)
OTHER = Peer("UDP", "192.0.2.99", 5060)


# --------------------------------------------------------------------------- token buckets


def test_bucket_allows_the_burst_then_the_rate() -> None:
    limiter = SourceRateLimiter(rate_per_s=10, burst=5, max_sources=10)
    assert [limiter.allow("a", "INVITE", 0.0) for _ in range(6)] == [True] * 5 + [False]
    # 0.1 s at 10/s is one token; 0.05 s more is half of one: not enough.
    assert limiter.allow("a", "INVITE", 0.1) is True
    assert limiter.allow("a", "INVITE", 0.15) is False
    assert limiter.allow("a", "INVITE", 0.2) is True
    # A long pause refills to the burst, never beyond.
    assert [limiter.allow("a", "INVITE", 100.0) for _ in range(6)] == [True] * 5 + [False]


def test_buckets_are_per_source_and_per_kind() -> None:
    limiter = SourceRateLimiter(rate_per_s=1, burst=2, max_sources=10)
    assert [limiter.allow("a", "INVITE", 0.0) for _ in range(3)] == [True, True, False]
    # The same source's OPTIONS and another source's INVITEs have buckets of their own.
    assert [limiter.allow("a", "OPTIONS", 0.0) for _ in range(3)] == [True, True, False]
    assert [limiter.allow("b", "INVITE", 0.0) for _ in range(3)] == [True, True, False]
    assert len(limiter) == 3


def test_rate_zero_allows_everything_and_keeps_nothing() -> None:
    limiter = SourceRateLimiter(rate_per_s=0, burst=1, max_sources=1)
    assert all(limiter.allow(f"s{i}", "INVITE", 0.0) for i in range(1000))
    assert len(limiter) == 0


def test_table_is_bounded_and_forgets_the_oldest_source() -> None:
    limiter = SourceRateLimiter(rate_per_s=1, burst=1, max_sources=3)
    for source in ("a", "b", "c"):
        assert limiter.allow(source, "INVITE", 0.0)
        assert not limiter.allow(source, "INVITE", 0.0)
    assert limiter.allow("d", "INVITE", 0.0)  # "a" is evicted to make room
    assert len(limiter) == 3
    assert not limiter.allow("b", "INVITE", 0.0)  # still remembered: still empty
    assert limiter.allow("a", "INVITE", 0.0)  # forgotten: a full bucket again
    for index in range(10_000):
        limiter.allow(f"spoofed-{index}", "INVITE", 0.0)
    assert len(limiter) == 3


def test_limiter_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="burst"):
        SourceRateLimiter(rate_per_s=1, burst=0, max_sources=1)
    with pytest.raises(ValueError, match="max_sources"):
        SourceRateLimiter(rate_per_s=1, burst=1, max_sources=0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: int, burst: int, gaps: list[float]
) -> None:
    """Over any window [t0, t1] the source gets at most burst + rate * (t1 - t0) requests in."""
    limiter = SourceRateLimiter(rate_per_s=rate, burst=burst, max_sources=4)
    now = 0.0
    taken: list[float] = []
    for gap in gaps:
        now += gap
        if limiter.allow("src", "INVITE", now):
            taken.append(now)
    for first in range(len(taken)):
        for last in range(first, len(taken)):
            allowed = burst + rate * (taken[last] - taken[first])
            assert last - first + 1 <= allowed + 1e-6


# --------------------------------------------------------------------------- the guard


def _parse(text: str) -> Request:
    message = sip.parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return message


def _request(method: str, *, to_tag: str | None = None, call_id: str = "c1") -> Request:
    tag = f";tag={to_tag}" if to_tag else ""
    return _parse(
        f"{method} sip:17000000001@127.0.0.1 SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKg1\n"
        "From: <sip:13800138000@192.0.2.1>;tag=f1\n"
        f"To: <sip:17000000001@127.0.0.1>{tag}\n"
        f"Call-ID: {call_id}\nCSeq: 2 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


INVITE = _request("INVITE")
OPTIONS = _request("OPTIONS")
REGISTER = _request("REGISTER")
BYE_KNOWN = _request("BYE", to_tag="ours", call_id="up-1")
BYE_STRAY = _request("BYE", to_tag="nobody", call_id="gone-1")
REINVITE_KNOWN = _request("INVITE", to_tag="ours", call_id="up-1")


@dataclass
class Load:
    """The fake counters the guard reads."""

    calls: int = 0
    transactions: int = 0
    lag_s: float = 0.0
    media_room: int = 100


LIMITS = OverloadSettings(
    max_calls=10,
    max_transactions=100,
    max_loop_lag_ms=50,
    retry_after_s=3,
    source_rate_per_s=0,
    source_burst=1,
    max_sources=16,
)


def _guard(load: Load, limits: OverloadSettings = LIMITS) -> OverloadGuard:
    return OverloadGuard(
        limits,
        active_calls=lambda: load.calls,
        transactions=lambda: load.transactions,
        loop_lag_s=lambda: load.lag_s,
        known_dialog=lambda call_id, tag: (call_id, tag) == ("up-1", "ours"),
        media_room=lambda: load.media_room,
    )


def test_under_every_limit_everything_is_taken() -> None:
    load = Load(calls=9, transactions=99, lag_s=0.049)
    guard = _guard(load)
    for request in (INVITE, OPTIONS, REGISTER, BYE_KNOWN, BYE_STRAY):
        assert guard.admit(request, TRUNK, request.to_tag, 0.0) is Admission.ACCEPT
    assert guard.retry_after_s == 3
    assert guard.shedding is None
    assert sum(guard.counters.as_dict().values()) == 0


@pytest.mark.parametrize(
    ("load", "reason"),
    [
        (Load(calls=10), ShedReason.CALLS),
        (Load(media_room=0), ShedReason.MEDIA_PORTS),
        (Load(transactions=100), ShedReason.TRANSACTIONS),
        (Load(lag_s=0.051), ShedReason.LOOP_LAG),
    ],
)
def test_past_a_capacity_limit_only_new_invites_are_refused(load: Load, reason: ShedReason) -> None:
    guard = _guard(load)
    assert guard.admit(INVITE, TRUNK, INVITE.to_tag, 0.0) is Admission.REJECT
    assert guard.shedding is reason
    assert guard.counters.as_dict()[reason.value] == 1
    # OPTIONS keep being answered, calls already up keep working, strays get their 481.
    for request in (OPTIONS, REGISTER, BYE_KNOWN, REINVITE_KNOWN, BYE_STRAY):
        assert guard.admit(request, TRUNK, request.to_tag, 0.0) is Admission.ACCEPT, request.method


def test_hard_bound_refuses_everything_but_established_calls() -> None:
    load = Load(transactions=125)  # 5/4 of max_transactions
    guard = _guard(load)
    for request in (INVITE, OPTIONS, REGISTER, BYE_STRAY):
        assert guard.admit(request, TRUNK, request.to_tag, 0.0) is Admission.REJECT, request.method
    assert guard.counters.table_full == 4
    for request in (BYE_KNOWN, REINVITE_KNOWN):
        assert guard.admit(request, TRUNK, request.to_tag, 0.0) is Admission.ACCEPT
    load.transactions = 199  # requests of established calls pass up to twice the limit
    assert guard.admit(BYE_KNOWN, TRUNK, "ours", 0.0) is Admission.ACCEPT
    load.transactions = 200  # the absolute bound: nothing new at all
    assert guard.admit(BYE_KNOWN, TRUNK, "ours", 0.0) is Admission.REJECT
    load.transactions = 124
    assert guard.admit(OPTIONS, TRUNK, None, 0.0) is Admission.ACCEPT
    # Still past max_transactions: no new call.
    assert guard.admit(INVITE, TRUNK, None, 0.0) is Admission.REJECT


def test_recovery_takes_invites_again() -> None:
    load = Load(calls=10)
    guard = _guard(load)
    assert guard.admit(INVITE, TRUNK, INVITE.to_tag, 0.0) is Admission.REJECT
    load.calls = 9
    assert guard.admit(INVITE, TRUNK, INVITE.to_tag, 0.1) is Admission.ACCEPT
    assert guard.shedding is ShedReason.CALLS  # the episode is not over yet (no quiet second)
    assert guard.admit(INVITE, TRUNK, INVITE.to_tag, 1.2) is Admission.ACCEPT
    assert guard.shedding is None


def test_shedding_is_logged_once_per_episode() -> None:
    load = Load(calls=10)
    guard = _guard(load)
    with structlog.testing.capture_logs() as logs:
        for step in range(100):
            load.calls = 10 if step % 2 == 0 else 9  # flapping at the limit
            guard.admit(INVITE, TRUNK, INVITE.to_tag, step * 0.01)
        load.calls = 0
        guard.admit(INVITE, TRUNK, INVITE.to_tag, 5.0)
    events = [entry["event"] for entry in logs]
    assert events == ["overload_shedding_started", "overload_shedding_stopped"]
    assert logs[0]["reason"] == "calls"
    assert logs[1]["shed"] == 50


def test_flooding_source_is_dropped_per_kind_and_others_are_not() -> None:
    limits = replace(LIMITS, source_rate_per_s=10, source_burst=3)
    guard = _guard(Load(), limits)
    verdicts = [guard.admit(INVITE, OTHER, INVITE.to_tag, 0.0) for _ in range(5)]
    assert verdicts == [Admission.ACCEPT] * 3 + [Admission.DROP] * 2
    assert guard.counters.source_rate == 2
    # Its OPTIONS, the trunk's INVITEs and its requests inside calls are not affected.
    assert guard.admit(OPTIONS, OTHER, OPTIONS.to_tag, 0.0) is Admission.ACCEPT
    assert guard.admit(INVITE, TRUNK, INVITE.to_tag, 0.0) is Admission.ACCEPT
    assert guard.admit(BYE_KNOWN, OTHER, BYE_KNOWN.to_tag, 0.0) is Admission.ACCEPT
    # Stray in-dialog requests share the "other" bucket of the source.
    assert [guard.admit(BYE_STRAY, OTHER, BYE_STRAY.to_tag, 0.0) for _ in range(4)] == [
        Admission.ACCEPT
    ] * 3 + [Admission.DROP]
    # A tenth of a second later the INVITE bucket has one token again.
    assert guard.admit(INVITE, OTHER, INVITE.to_tag, 0.1) is Admission.ACCEPT
    assert guard.admit(INVITE, OTHER, INVITE.to_tag, 0.1) is Admission.DROP


def test_flood_is_logged_at_most_once_per_interval() -> None:
    limits = replace(LIMITS, source_rate_per_s=1, source_burst=1)
    guard = _guard(Load(), limits)
    with structlog.testing.capture_logs() as logs:
        for index in range(1000):
            guard.admit(OPTIONS, OTHER, OPTIONS.to_tag, index * 0.001)  # 1000/s for 1 s
        guard.admit(OPTIONS, OTHER, OPTIONS.to_tag, 11.0)
        guard.admit(OPTIONS, OTHER, OPTIONS.to_tag, 11.0)
    assert [entry["event"] for entry in logs] == ["flood_dropping", "flood_dropping"]
    assert logs[1]["dropped"] == guard.counters.source_rate - 1


def test_dropped_flood_is_not_also_counted_as_overload() -> None:
    limits = replace(LIMITS, source_rate_per_s=1, source_burst=1)
    guard = _guard(Load(calls=10), limits)
    assert (
        guard.admit(INVITE, OTHER, INVITE.to_tag, 0.0) is Admission.REJECT
    )  # the bucket let it through
    assert guard.admit(INVITE, OTHER, INVITE.to_tag, 0.0) is Admission.DROP
    assert guard.counters.as_dict() == {
        "calls": 1,
        "media_ports": 0,
        "transactions": 0,
        "loop_lag": 0,
        "table_full": 0,
        "source_rate": 1,
    }


# --------------------------------------------------------------------------- loop lag


class FakeLoop:
    """``time`` and ``call_at`` on a clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.scheduled: list[tuple[float, Callable[[], object], bool]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        handle = _Handle(self, when, callback)
        self.scheduled.append((when, callback, True))
        return handle  # type: ignore[return-value]

    def run_due(self, at: float) -> None:
        """Move the clock to ``at`` and run what was due (late by however much)."""
        self.now = at
        due = [entry for entry in self.scheduled if entry[0] <= at and entry[2]]
        self.scheduled = [entry for entry in self.scheduled if entry not in due]
        for _, callback, _ in due:
            callback()


@dataclass
class _Handle:
    loop: FakeLoop
    when: float
    callback: Callable[[], object]

    def cancel(self) -> None:
        self.loop.scheduled = [
            entry for entry in self.loop.scheduled if entry[1] is not self.callback
        ]


def test_timer_lag_counts_once_sustained() -> None:
    loop = FakeLoop()
    monitor = SipLagMonitor(interval_s=0.05, window=3)
    monitor.start(loop)
    assert monitor.running
    [(due, _, _)] = loop.scheduled
    assert due == pytest.approx(100.05)
    loop.run_due(100.05)  # on time
    assert monitor.lag_s == monitor.sample_s == 0.0
    loop.run_due(100.40)  # due at 100.10: a 300 ms stall, once
    assert monitor.sample_s == pytest.approx(0.30)
    assert monitor.max_sample_s == pytest.approx(0.30)
    assert monitor.lag_s == 0.0  # one late sample is a pause, not an overload
    [(due, _, _)] = loop.scheduled  # re-armed from when it ran, not from when it was due
    assert due == pytest.approx(100.45)
    # Late again and again: three samples in a row over 100 ms.
    for at in (100.60, 100.75, 100.90):  # late by 0.15, 0.10, 0.10
        loop.run_due(at)
    assert monitor.lag_s == pytest.approx(0.10)
    loop.run_due(100.95)  # on time once: the lag falls back at once
    assert monitor.lag_s == pytest.approx(0.0, abs=1e-9)


def test_probe_wait_is_the_lag_when_the_socket_queue_grows() -> None:
    """Timers on time, but the SIP socket's queue growing: the probes' wait is the lag."""
    loop = FakeLoop()
    sent: list[bytes] = []
    heard: list[float] = []
    monitor = SipLagMonitor(
        interval_s=0.05, window=3, probe_timeout_s=1.0, send_probe=sent.append, on_lag=heard.append
    )
    monitor.start(loop)
    loop.run_due(100.05)
    [first] = sent
    assert first.startswith(b"\x00")  # never mistaken for SIP
    monitor.probe_received(first, 100.051)  # back in 1 ms: no queue
    assert monitor.receive_delay_s == pytest.approx(0.001)
    # Now the queue builds up: the next probe is not back for 400 ms; its age counts meanwhile.
    for step in range(1, 9):
        loop.run_due(100.05 + step * 0.05)
    second = sent[1]
    assert len(sent) == 2  # one probe out at a time
    assert monitor.lag_s == pytest.approx(0.25)  # ages 0.25, 0.30, 0.35 (sent at 100.10)
    monitor.probe_received(second, 100.52)
    assert monitor.receive_delay_s == pytest.approx(0.42)
    loop.run_due(100.55)
    assert monitor.sample_s == pytest.approx(0.42)  # the last wait measured still stands
    third = sent[2]
    monitor.probe_received(third, 100.552)  # the queue has drained
    for at in (100.60, 100.65, 100.70):
        loop.run_due(at)
        monitor.probe_received(sent[-1], at + 0.001)
    assert monitor.lag_s == pytest.approx(0.002, abs=1e-3)
    assert heard[-1] == monitor.lag_s
    assert monitor.probes_lost == 0


def test_stale_or_foreign_probe_is_ignored_and_a_lost_one_counts() -> None:
    loop = FakeLoop()
    sent: list[bytes] = []
    monitor = SipLagMonitor(interval_s=0.05, window=1, probe_timeout_s=0.2, send_probe=sent.append)
    monitor.start(loop)
    loop.run_due(100.05)
    monitor.probe_received(b"\x00maskline-lag-probe 999", 100.06)
    assert monitor.receive_delay_s == 0.0
    for at in (100.10, 100.15, 100.20):
        loop.run_due(at)
    assert monitor.sample_s == pytest.approx(0.15)
    loop.run_due(100.25)  # 200 ms out: lost (a full queue drops datagrams), a new one goes
    assert monitor.probes_lost == 1
    assert len(sent) == 2
    assert monitor.lag_s == pytest.approx(0.20)
    monitor.probe_received(sent[0], 100.26)  # the lost one after all: too late to count
    assert monitor.receive_delay_s == pytest.approx(0.20)
    monitor.probe_received(sent[1], 100.26)
    assert monitor.receive_delay_s == pytest.approx(0.01)


def test_stopped_monitor_reads_zero_and_schedules_nothing() -> None:
    loop = FakeLoop()
    monitor = SipLagMonitor(interval_s=0.05, window=1)
    monitor.start(loop)
    loop.run_due(101.0)
    assert monitor.lag_s > 0.9
    monitor.stop()
    assert not monitor.running
    assert monitor.lag_s == 0.0
    assert loop.scheduled == []


async def test_monitor_on_a_real_loop_sees_a_blocking_call() -> None:
    loop = asyncio.get_running_loop()
    monitor = SipLagMonitor(interval_s=0.01)
    monitor.start(loop)
    try:
        await asyncio.sleep(0.03)
        blocked_s = 0.15
        until = loop.time() + blocked_s
        while loop.time() < until:  # a callback that does not yield
            pass
        await asyncio.sleep(0.001)
        assert monitor.max_sample_s >= blocked_s - 0.02
    finally:
        monitor.stop()
