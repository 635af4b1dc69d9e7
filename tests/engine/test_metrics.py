"""engine.metrics: call counters, windows, histograms, and the collector reading real parts.

Real parts where the engine has them: a migrated SQLite database, the SIP endpoint fed real
datagrams, the RTP relay on loopback sockets, the Prometheus text parsed back with
prometheus-client's own parser. The call path is fed real ``Call`` objects and the records
``engine.records`` makes of them.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from engine.calls import Call, CallState, Leg
from engine.metrics import (
    Buckets,
    CallMetrics,
    CountingMediaRelay,
    LoopLagMonitor,
    Metrics,
    SecondWindows,
    read_udp_counters,
)
from engine.records import call_record_of
from engine.server import CallEventsFanOut, observed_write
from media.ports import PortAllocator
from sip.endpoint import Endpoint
from sip.transport import Peer
from store.db import Database
from store.records import CallRecord, ReleaseDir

LOOPBACK = "127.0.0.1"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _call(ref: str, *, at: float = 1_700_000_000.0, state: CallState = CallState.ROUTING) -> Call:
    leg = Leg(peer=Peer("UDP", LOOPBACK, 5060), call_id=f"in-{ref}", local_tag="t")
    call = Call(call_id=ref, inbound=leg, x="+8617000000001", caller="+8613800138000")
    call.call_time = at
    call.state = state
    call.call_type = 0  # routed, A calling (the B2BUA sets 4 for an intercepted call)
    return call


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) → value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    return samples[(name, tuple(sorted(labels.items())))]


# ------------------------------------------------------------------------------ buckets


def test_buckets_are_inclusive_upper_bounds_and_cumulative() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert buckets.count == 5 and buckets.sum == pytest.approx(8.65)


@pytest.mark.parametrize("bounds", [(), (1.0, 1.0), (2.0, 1.0)])
def test_buckets_refuse_bounds_that_are_not_increasing(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="increasing"):
        Buckets(bounds)


@settings(max_examples=200)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_buckets_agree_with_counting_by_hand(values: list[float]) -> None:
    bounds = (0.5, 1.0, 5.0, 50.0)
    buckets = Buckets(bounds)
    for value in values:
        buckets.observe(value)
    expected = [sum(1 for v in values if v <= bound) for bound in bounds] + [len(values)]
    assert [count for _, count in buckets.cumulative()] == expected
    assert buckets.sum == pytest.approx(sum(values))


# ------------------------------------------------------------------------------ windows


def test_windows_count_complete_seconds_only_and_forget_old_ones() -> None:
    windows = SecondWindows(61)
    for second in range(100, 110):  # 3 calls a second for 10 s, 2 answered
        for _ in range(3):
            windows.add_offered(second + 0.5)
        windows.add_answered(second + 0.5)
        windows.add_answered(second + 0.7)
    windows.add_offered(110.2)  # the current second: not in any window yet
    assert windows.offered_per_s(110.9, 10) == 3.0
    assert windows.offered_per_s(110.9, 5) == 3.0
    assert windows.asr(110.9, 60) == pytest.approx(2 / 3)
    # 60 s later the window has moved past all of it (the slots are reused, not summed).
    assert windows.offered_per_s(175.0, 10) == 0.0
    assert math.isnan(windows.asr(175.0, 10))
    windows.add_offered(175.5)  # reuses the slot of second 114 (175 % 61): cleared first
    assert windows.offered_per_s(176.0, 60) == pytest.approx(1 / 60)


def test_windows_average_durations_and_say_nan_with_nothing() -> None:
    windows = SecondWindows(301)
    assert math.isnan(windows.acd_s(10.0, 300))
    windows.add_duration(5.0, 30.0)
    windows.add_duration(6.0, 90.0)
    assert windows.acd_s(10.0, 300) == 60.0
    with pytest.raises(ValueError, match="window"):
        windows.acd_s(10.0, 301)


# ------------------------------------------------------------------------- call metrics


def _answered(metrics: CallMetrics, ref: str, *, ring_after_s: float, talk_s: float) -> Call:
    call = _call(ref)
    metrics.call_started(call)
    call.call_out_time = call.call_time + 0.002
    call.state = CallState.CALLING
    call.ring_time = call.call_time + ring_after_s
    metrics.call_ringing(call)
    call.start_time = call.ring_time + 1.0
    metrics.call_answered(call)
    call.release_time = call.start_time + talk_s
    call.release_dir = ReleaseDir.CALLER
    metrics.call_ended(call_record_of(call))
    return call


def test_call_outcomes_are_counted_once_by_kind_and_cause() -> None:
    clock = FakeClock()
    metrics = CallMetrics(clock=clock)
    _answered(metrics, "answered", ring_after_s=0.3, talk_s=42.0)

    busy = _call("busy")
    metrics.call_started(busy)
    metrics.call_started(busy)  # told twice: still one call
    busy.call_out_time = busy.call_time + 0.001
    busy.release_time, busy.release_cause = busy.call_time + 0.5, 17
    busy.release_dir = ReleaseDir.CALLEE
    metrics.call_ended(call_record_of(busy))

    stranger = _call("stranger")
    stranger.call_type, stranger.unconnected_cause, stranger.release_cause = 4, 2, 1
    metrics.call_started(stranger)
    stranger.release_time = stranger.call_time
    metrics.call_ended(call_record_of(stranger))

    assert (metrics.offered, metrics.answered) == (3, 1)
    assert metrics.failed == {17: 1}
    assert metrics.intercepted == {2: 1}
    assert (metrics.duration.count, metrics.duration.sum) == (1, 42.0)
    # PDD: only the call that rang; setup delay: both calls that sent an INVITE on.
    assert metrics.post_dial_delay.count == 1
    assert metrics.post_dial_delay.sum == pytest.approx(0.3)
    assert metrics.setup_delay.count == 2
    assert metrics.setup_delay.sum == pytest.approx(0.003, abs=1e-6)  # epoch floats: ~0.2 µs
    assert metrics.in_progress == 0


def test_answer_without_ringing_ends_the_post_dial_delay() -> None:
    metrics = CallMetrics(clock=FakeClock())
    call = _call("direct")
    metrics.call_started(call)
    call.start_time = call.call_time + 0.8
    metrics.call_answered(call)
    assert metrics.post_dial_delay.count == 1
    assert metrics.post_dial_delay.sum == pytest.approx(0.8, abs=1e-6)


def test_calls_of_the_extension_ivr_have_no_delays_and_hang_ups_before_routing_count() -> None:
    metrics = CallMetrics(clock=FakeClock())
    # Routed after the caller keyed the extension: started in state IVR, 9 s after its INVITE.
    keyed = _call("keyed", state=CallState.IVR)
    metrics.call_started(keyed)
    keyed.call_out_time = keyed.ring_time = keyed.call_time + 9.0
    metrics.call_ringing(keyed)
    keyed.release_time = keyed.call_time + 12
    metrics.call_ended(call_record_of(keyed))
    # The caller hung up while keying: no routing outcome was ever told, no binding found.
    gone = _call("gone", state=CallState.IVR)
    gone.call_type = 4
    gone.release_time = gone.call_time + 3
    metrics.call_ended(call_record_of(gone))
    assert metrics.offered == 2
    assert metrics.post_dial_delay.count == metrics.setup_delay.count == 0
    assert metrics.failed == {16: 2}


def test_windowed_gauges_follow_the_clock() -> None:
    clock = FakeClock(500.0)
    metrics = CallMetrics(clock=clock, rate_window_s=10, quality_window_s=60)
    assert math.isnan(metrics.asr()) and math.isnan(metrics.acd_s())
    for n in range(20):  # 2 calls a second for 10 s, every other one answered (60 s talk)
        clock.now = 500.0 + n / 2
        if n % 2:
            _answered(metrics, f"a{n}", ring_after_s=0.1, talk_s=60.0)
        else:
            call = _call(f"f{n}")
            metrics.call_started(call)
            call.release_time = call.call_time + 1
            metrics.call_ended(call_record_of(call))
    clock.now = 510.5
    assert metrics.calls_per_second() == 2.0
    assert metrics.asr() == 0.5
    assert metrics.acd_s() == 60.0
    clock.now = 600.0
    assert metrics.calls_per_second() == 0.0 and math.isnan(metrics.asr())


# ---------------------------------------------------------------- server wiring helpers


class _Recorder:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def call_started(self, call: Call) -> None:
        self.log.append(f"{self.name}:started:{call.call_id}")

    def call_ringing(self, call: Call) -> None:
        self.log.append(f"{self.name}:ringing:{call.call_id}")

    def call_answered(self, call: Call) -> None:
        self.log.append(f"{self.name}:answered:{call.call_id}")


def test_fan_out_tells_every_listener_in_order() -> None:
    log: list[str] = []
    fan_out = CallEventsFanOut(_Recorder(log, "reports"), _Recorder(log, "metrics"))
    call = _call("c1")
    fan_out.call_started(call)
    fan_out.call_ringing(call)
    fan_out.call_answered(call)
    assert log == [
        f"{who}:{what}:c1"
        for what in ("started", "ringing", "answered")
        for who in ("reports", "metrics")
    ]


async def test_observed_write_counts_the_record_even_when_the_write_fails() -> None:
    seen: list[str] = []

    async def failing_write(record: CallRecord) -> None:
        raise OSError("disk full")

    write = observed_write(failing_write, lambda record: seen.append(record.call_id))
    call = _call("c2")
    call.release_time = call.call_time
    with pytest.raises(OSError, match="disk full"):
        await write(call_record_of(call))
    assert seen == ["c2"]


# --------------------------------------------------------------------------- loop lag


def test_loop_lag_samples_are_kept_in_buckets_and_a_recent_maximum() -> None:
    monitor = LoopLagMonitor(interval_s=0.25, recent_s=1.0)  # 4 samples of memory
    for lag in (0.0005, 0.2, 0.003, -0.001, 0.002, 0.001):
        monitor.record(lag)
    assert monitor.histogram.count == 6
    assert monitor.last_s == 0.001
    assert monitor.recent_max_s == 0.003  # the 0.2 s sample is out of the last four
    assert dict(monitor.histogram.cumulative())["0.001"] == 3  # -0.001 counted as 0


async def test_loop_lag_sees_a_callback_that_blocks_the_loop() -> None:
    loop = asyncio.get_running_loop()
    monitor = LoopLagMonitor(interval_s=0.02)
    monitor.start(loop)
    monitor.start(loop)  # idempotent
    try:
        await asyncio.sleep(0.05)
        loop.call_soon(time.sleep, 0.15)  # a bug blocking the loop for 150 ms
        await asyncio.sleep(0.25)
    finally:
        monitor.stop()
    assert monitor.histogram.count >= 3
    assert monitor.recent_max_s >= 0.1


# ------------------------------------------------------------------------ /proc/net/snmp


def test_udp_counters_are_read_from_the_snmp_table(tmp_path: Path) -> None:
    snmp = tmp_path / "snmp"
    snmp.write_text(
        "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "Udp: 10 1 7 12 5 2\n"
        "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n"
        "UdpLite: 0 0 0 0 0 0\n",
        "ascii",
    )
    assert read_udp_counters(snmp)["RcvbufErrors"] == 5
    assert read_udp_counters(snmp)["InErrors"] == 7
    assert read_udp_counters(tmp_path / "missing") == {}
    snmp.write_text("Udp: InErrors\nUdp: many\n", "ascii")
    assert read_udp_counters(snmp) == {}


# --------------------------------------------------------------------- the collector


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "maskline.sqlite3")
    yield database
    await database.close()


def _store_rows(conn: object) -> None:
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    pools = (("P-AXB", "AXB"), ("P-AXN", "AXN"), ("P-EXT", "AXN_EXT"))
    conn.executemany(
        "INSERT INTO pools (pool_key, tenant_id, type, name, created_at) VALUES (?, NULL, ?, ?, 0)",
        [(key, kind, key) for key, kind in pools],
    )
    rows: list[tuple[str, str, str, str | None]] = [
        ("P-AXB", "AXB", f"+86170000000{n:02d}", None) for n in range(3)
    ]
    rows += [("P-AXN", "AXN", "+8617000000100", None), ("P-EXT", "AXN_EXT", "+861700000020", "1")]
    rows.append(("P-AXB", "AXB", "+8617000000099", None))  # unbound: not counted
    conn.executemany(
        "INSERT INTO bindings (sub_id, pool_key, type, x, a, b, extension, expires_at,"
        " ring_timeout_s, created_at, unbound_at) VALUES (?, ?, ?, ?, ?, ?, ?, 9e9, 60, 0, ?)",
        [
            (f"s{n}", pool, kind, x, f"+861380013800{n}", peer, extension, unbound_at)
            for n, (pool, kind, x, extension) in enumerate(rows)
            for peer, unbound_at in [
                ("+8613900139000" if kind == "AXB" else None, 1.0 if x.endswith("99") else None)
            ]
        ],
    )
    conn.executemany(
        "INSERT INTO report_outbox (id, kind, payload, created_at, next_attempt_at, delivered_at)"
        " VALUES (?, 'end', '{}', 0, 0, ?)",
        [("r1", None), ("r2", None), ("r3", 5.0)],
    )


class _Reports:
    buffered = 4
    dropped = 1


async def test_exposition_reads_every_source_at_scrape_time(db: Database) -> None:
    await db.write(_store_rows)
    loop = asyncio.get_running_loop()
    metrics = Metrics(clock=FakeClock(), process_metrics=False)
    endpoint = Endpoint(local_host=LOOPBACK, local_port=5060)
    relay = CountingMediaRelay(LOOPBACK, PortAllocator(40000, 40099), loop=loop)
    metrics.attach(
        endpoint=endpoint,
        active_calls=lambda: 7,
        relay=relay,
        bindings_indexed=lambda: 11,
        reports=_Reports(),
        db=db,
        overload_refused=lambda: {"calls": 2, "source_rate": 5},
        sip_not_sent=lambda: {"udp_write_queue_full": 3, "udp_unaddressable": 1},
    )
    _answered(metrics.calls, "c1", ring_after_s=0.2, talk_s=30.0)
    endpoint.receive_datagram(b"this is not SIP\r\n\r\n", (LOOPBACK, 5999), 0.0)

    body, content_type = await metrics.exposition()
    assert content_type.startswith("text/plain")
    samples = _samples(body.decode())
    assert _value(samples, "maskline_calls_offered_total") == 1
    assert _value(samples, "maskline_calls_answered_total") == 1
    assert _value(samples, "maskline_calls_active") == 7
    assert _value(samples, "maskline_call_duration_seconds_count") == 1
    assert _value(samples, "maskline_call_duration_seconds_sum") == 30.0
    assert _value(samples, "maskline_post_dial_delay_seconds_bucket", le="0.25") == 1
    assert _value(samples, "maskline_post_dial_delay_seconds_bucket", le="0.1") == 0
    assert _value(samples, "maskline_sip_messages_received_total") == 1
    assert _value(samples, "maskline_sip_malformed_dropped_total") == 1
    assert _value(samples, "maskline_sip_transactions") == 0
    assert _value(samples, "maskline_bindings", type="AXB") == 3
    assert _value(samples, "maskline_bindings", type="AXN") == 1
    assert _value(samples, "maskline_bindings", type="AXN_EXT") == 1
    assert _value(samples, "maskline_bindings", type="AXG") == 0
    assert _value(samples, "maskline_bindings_indexed") == 11
    assert _value(samples, "maskline_report_queue_depth", stage="buffered") == 4
    assert _value(samples, "maskline_report_queue_depth", stage="outbox") == 2
    assert _value(samples, "maskline_reports_dropped_total") == 1
    assert _value(samples, "maskline_overload_refused_total", reason="calls") == 2
    assert _value(samples, "maskline_overload_refused_total", reason="source_rate") == 5
    assert _value(samples, "maskline_sip_not_sent_total", reason="udp_write_queue_full") == 3
    assert _value(samples, "maskline_sip_not_sent_total", reason="udp_unaddressable") == 1
    assert _value(samples, "maskline_rtp_sessions") == 0
    assert _value(samples, "maskline_media_ports_capacity") == 50
    assert _value(samples, "maskline_db_write_ops_total") >= 1
    assert _value(samples, "maskline_db_loop_write_batches_total") == db.loop_batches
    assert _value(samples, "maskline_db_checkpoints_total") == db.checkpoints
    assert math.isnan(_value(samples, "maskline_acd_seconds"))  # the clock did not move
    assert ("maskline_event_loop_lag_seconds_count", ()) in samples
    assert not any(name.startswith("process_") for name, _ in samples)


async def test_store_figures_are_cached_between_scrapes(db: Database) -> None:
    clock = FakeClock()
    metrics = Metrics(clock=clock, store_refresh_s=10.0, process_metrics=False)
    metrics.attach(db=db)
    await metrics.refresh_store_figures()
    assert metrics.store_figures is not None and metrics.store_figures.outbox_pending == 0
    await db.write(_store_rows)
    await metrics.refresh_store_figures()
    assert metrics.store_figures.outbox_pending == 0  # cached
    clock.now += 10.0
    await metrics.refresh_store_figures()
    assert metrics.store_figures.outbox_pending == 2


async def test_process_metrics_are_exported_by_default() -> None:
    body, _ = await Metrics().exposition()
    names = {name for name, _ in _samples(body.decode())}
    assert "process_resident_memory_bytes" in names
    assert "maskline_calls_offered_total" in names


async def test_relay_packet_counters_stay_monotonic_when_sessions_close() -> None:
    loop = asyncio.get_running_loop()
    relay = CountingMediaRelay(LOOPBACK, PortAllocator(41000, 41099), loop=loop)
    metrics = Metrics(process_metrics=False)
    metrics.attach(relay=relay)
    a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    try:
        for sock in (a, b):
            sock.bind((LOOPBACK, 0))
            sock.settimeout(2.0)
        session = await relay.open_session("t")
        session.expect("a", a.getsockname())
        session.expect("b", b.getsockname())
        rtp = bytes([0x80, 8]) + bytes(10) + bytes(160)
        for _ in range(5):
            a.sendto(rtp, (LOOPBACK, session.port_a))
            await asyncio.to_thread(b.recv, 2048)  # relayed to b
        b.sendto(rtp, (LOOPBACK, session.port_b))
        await asyncio.to_thread(a.recv, 2048)
        a.sendto(b"\x00not rtp", (LOOPBACK, session.port_a))  # rejected
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.sendto(rtp, (LOOPBACK, session.port_b))  # b is latched: rejected
        stranger.close()
        for _ in range(100):  # both rejections counted
            if session.dropped == 2:
                break
            await asyncio.sleep(0.01)

        def relayed(text: str) -> tuple[float, float, float]:
            samples = _samples(text)
            return (
                _value(samples, "maskline_rtp_packets_relayed_total"),
                _value(samples, "maskline_rtp_packets_dropped_total", reason="rejected"),
                _value(samples, "maskline_rtp_sessions"),
            )

        open_body, _ = await metrics.exposition()
        assert relayed(open_body.decode()) == (6, 2, 1)
        await session.close()
        closed_body, _ = await metrics.exposition()
        assert relayed(closed_body.decode()) == (6, 2, 0)
        assert _value(_samples(closed_body.decode()), "maskline_rtp_sessions_closed_total") == 1
    finally:
        a.close()
        b.close()
        await relay.close_all()
