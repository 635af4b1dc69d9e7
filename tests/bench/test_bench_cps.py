"""The pure parts of bench/cps.py: SIPp stat and rtt files, percentiles, achieved rate, what
counts as clean, the summary ratios, the py-spy profile digest. No timing here: the benchmark's
figures are measured by running it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from bench_scripts import load_bench_script
from hypothesis import given, settings
from hypothesis import strategies as st

bench = load_bench_script("cps")


def _step(**changes: object) -> object:
    base = bench.StepResult(
        system="maskline",
        offered_cps=1000,
        calls=10_000,
        successful=10_000,
        failed=0,
        retransmissions=0,
        achieved_cps=999.0,
        rtt_p50_ms=1.0,
        rtt_p99_ms=3.0,
        sut_cpu_s=5.0,
        sut_main_cpu_s=4.0,
        uac_cpu_s=1.0,
        uas_cpu_s=1.0,
        machine_busy_s=8.0,
        wall_s=10.0,
    )
    return replace(base, **changes)


# --- SIPp files ----------------------------------------------------------------------------

STAT = (
    "StartTime;CurrentTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n"
    "2026-12-04\t22:55:12;2026-12-04\t22:55:13;100;0;0;\n"
    "2026-12-04\t22:55:12;2026-12-04\t22:55:18;2497;3;12;\n"
)


def test_stat_rows_are_read_by_column_name_and_the_last_row_is_the_total() -> None:
    rows = bench.parse_stat_rows(STAT)
    assert len(rows) == 2
    last = rows[-1]
    assert bench.stat_counter(last, "SuccessfulCall(C)") == 2497
    assert bench.stat_counter(last, "FailedCall(C)") == 3
    assert bench.stat_counter(last, "Retransmissions(C)") == 12
    assert bench.stat_counter(last, "NoSuchCounter") == 0


def test_rtt_keeps_rtd_one_samples_and_skips_garbage() -> None:
    text = "Date_ms;response_time_ms;rtd_no\n4.001;0;1\n2000;7;1\n2001;9;2\nbroken\nx;1;1\n"
    assert bench.parse_rtt(text) == [(4.001, 0.0), (2000.0, 7.0)]


# --- statistics ----------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert bench.percentile([5.0], 99) == 5.0
    assert bench.percentile([], 50) is None


@settings(max_examples=200)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200), st.floats(1, 100))
def test_percentile_is_one_of_the_values_and_monotonic(values: list[float], q: float) -> None:
    p = bench.percentile(values, q)
    assert p in values
    assert bench.percentile(values, min(100.0, q + 10)) >= p


def test_achieved_rate_is_answers_over_their_span() -> None:
    # 1001 answers 1 ms apart: 1000 calls/s.
    assert bench.achieved_rate([float(t) for t in range(1001)]) == pytest.approx(1000)
    # Half as fast when the answers take twice as long to come; faster than one per ms too.
    assert bench.achieved_rate([2.0 * t for t in range(1001)]) == pytest.approx(500)
    assert bench.achieved_rate([t / 3 for t in range(3001)]) == pytest.approx(3000)
    assert bench.achieved_rate([5.0]) == 0.0
    assert bench.achieved_rate([]) == 0.0


def test_achieved_rate_of_a_burst_is_bounded() -> None:
    # All answers in one SIPp clock tick: the span is floored at 1 ms, not a division by zero.
    assert bench.achieved_rate([7.0] * 51) == pytest.approx(50_000)


# --- clean steps ---------------------------------------------------------------------------


def test_a_step_is_clean_only_without_failures_lag_or_retransmission_bursts() -> None:
    assert _step().clean
    assert not _step(failed=1).clean
    assert not _step(successful=9_999).clean
    assert not _step(achieved_cps=940.0).clean  # < 95 % of offered
    assert _step(achieved_cps=951.0).clean
    assert _step(retransmissions=10).clean  # 0.1 % of 10,000 calls
    assert not _step(retransmissions=11).clean


def test_cpu_per_call_and_shares() -> None:
    step = _step()
    assert step.cpu_ms_per_call == pytest.approx(0.5)  # 5 s over 10,000 calls
    assert step.main_ms_per_call == pytest.approx(0.4)
    assert step.sut_cpu_pct == pytest.approx(50)
    # 8 s busy, of which SUT 5 + caller 1 + callee 1: 1 s foreign over 10 s.
    assert step.foreign_cpu_pct == pytest.approx(10)
    assert _step(successful=0).cpu_ms_per_call is None


def test_max_clean_and_unclean_streak() -> None:
    steps = [
        _step(offered_cps=500),
        _step(offered_cps=1000),
        _step(offered_cps=1500, failed=4),
        _step(offered_cps=2000, failed=40),
        _step(offered_cps=800, system="sippy"),
    ]
    best = bench.max_clean(steps, "maskline")
    assert best is not None and best.offered_cps == 1000
    assert bench.max_clean(steps, "direct") is None
    assert bench.unclean_streak(steps[:4]) == 2
    assert bench.unclean_streak(steps[:2]) == 0


def test_refine_picks_the_middle_of_a_wide_gap_once() -> None:
    steps = [_step(offered_cps=500), _step(offered_cps=800, failed=3)]
    assert bench.refine_rate(steps) == 650
    assert bench.refine_rate([*steps, _step(offered_cps=650, failed=1)]) == 575
    # Gap of 10 % or less, nothing unclean above, nothing clean: no refinement.
    assert bench.refine_rate([_step(offered_cps=1000), _step(offered_cps=1100, failed=1)]) is None
    assert bench.refine_rate([_step(offered_cps=1000)]) is None
    assert bench.refine_rate([_step(offered_cps=1000, failed=1)]) is None


# --- summary -------------------------------------------------------------------------------


def test_summary_ratios_and_added_post_dial_delay() -> None:
    steps = [
        _step(system="direct", offered_cps=3000, achieved_cps=3000.0),
        _step(system="sippy", offered_cps=250, sut_cpu_s=9.25, successful=2500, calls=2500),
        _step(system="sippy", offered_cps=300, failed=100),
        _step(system="maskline", offered_cps=1000),
    ]
    half = [
        _step(system="maskline", offered_cps=500, rtt_p99_ms=4.0),
        _step(system="direct", offered_cps=500, rtt_p99_ms=1.0),
    ]
    summary = bench.summarise(steps, ["direct", "sippy", "maskline"], half)
    assert summary.max_clean_cps == {"direct": 3000, "sippy": 250, "maskline": 1000}
    assert summary.maskline_over_sippy == pytest.approx(4.0)
    assert summary.maskline_over_direct == pytest.approx(1 / 3)
    assert summary.cpu_ms_per_call["sippy"] == pytest.approx(3.7)
    assert summary.pdd_rate == 500
    assert summary.added_pdd_p99_ms == pytest.approx(3.0)
    text = bench.format_summary(summary)
    assert "4.00x" in text and "added 3 ms" in text


def test_summary_without_a_clean_maskline_step_has_no_ratios() -> None:
    steps = [_step(system="sippy", offered_cps=200), _step(system="maskline", failed=1)]
    summary = bench.summarise(steps, ["sippy", "maskline"])
    assert summary.max_clean_cps["maskline"] is None
    assert summary.maskline_over_sippy is None
    assert summary.added_pdd_p99_ms is None
    assert "-x" in bench.format_summary(summary)


# --- sustained steps: the steady state -----------------------------------------------------


def _samples(*points: tuple[float, float, float]) -> list[object]:
    return [bench.CpuSample(at, cpu, main) for at, cpu, main in points]


def test_cpu_between_samples_is_interpolated_and_none_outside_them() -> None:
    samples = _samples((10.0, 1.0, 0.5), (11.0, 2.0, 1.5), (12.0, 4.0, 2.5))
    assert bench.cpu_at(samples, 10.5) == pytest.approx((1.5, 1.0))
    assert bench.cpu_at(samples, 12.0) == pytest.approx((4.0, 2.5))
    assert bench.cpu_at(samples, 9.9) is None
    assert bench.cpu_at(samples, 12.1) is None


def test_steady_cpu_counts_only_the_window_cpu_and_calls() -> None:
    # CPU grows 1 s a second (0.8 of it the main thread); 10 calls a second, answered at
    # k/10; the window [20, 30) holds 100 calls and 10 s of CPU: 100 ms a call.
    samples = _samples(*[(float(t), t * 1.0, t * 0.8) for t in range(0, 41)])
    answered = [k / 10 for k in range(400)]
    cpu_ms, main_ms, calls = bench.steady_cpu_per_call(samples, answered, 20.0, 30.0)
    assert calls == 100
    assert cpu_ms == pytest.approx(100.0)
    assert main_ms == pytest.approx(80.0)
    # More CPU in the late window than early shows up there and only there.
    late = _samples((0.0, 0.0, 0.0), (10.0, 10.0, 8.0), (20.0, 25.0, 20.0))
    answered = [k / 10 for k in range(200)]
    assert bench.steady_cpu_per_call(late, answered, 0.0, 10.0)[0] == pytest.approx(100.0)
    assert bench.steady_cpu_per_call(late, answered, 10.0, 20.0)[0] == pytest.approx(150.0)


def test_steady_cpu_is_none_without_calls_samples_or_width() -> None:
    samples = _samples((0.0, 0.0, 0.0), (10.0, 5.0, 4.0))
    assert bench.steady_cpu_per_call(samples, [], 1.0, 9.0) is None
    assert bench.steady_cpu_per_call(samples, [5.0], 1.0, 11.0) is None  # past the samples
    assert bench.steady_cpu_per_call(samples, [5.0], 6.0, 6.0) is None


def test_step_down_is_lower_and_a_multiple_of_the_granularity() -> None:
    assert bench.step_down(1250) == 1125
    assert bench.step_down(1000) == 900
    assert bench.step_down(100) == 75  # 90 rounds down to 75
    assert bench.step_down(25) == 25  # never below one step of granularity
    for rate in range(50, 4000, 25):
        lower = bench.step_down(rate)
        assert lower < rate and lower % 25 == 0


def test_summary_names_the_sustained_rate_held_clean_and_its_steady_cpu() -> None:
    steps = [_step(offered_cps=1250)]
    sustained = [
        _step(offered_cps=1250, calls=93_750, failed=2991, note="sustained"),
        _step(
            offered_cps=1125,
            calls=84_375,
            successful=84_375,
            achieved_cps=1124.0,
            steady_cpu_ms_per_call=0.98,
            steady_main_ms_per_call=0.77,
        ),
    ]
    summary = bench.summarise(steps, ["maskline"], sustained=sustained)
    assert summary.sustained_tried == (1250, 1125)
    assert summary.sustained_cps == 1125
    assert summary.sustained_s == pytest.approx(75.0)
    assert summary.steady_cpu_ms_per_call == pytest.approx(0.98)
    text = bench.format_summary(summary)
    assert "sustained 75 s: 1125 calls/s clean (tried 1250, 1125)" in text
    assert "0.980 ms, loop 0.770" in text
    none_held = bench.summarise(steps, ["maskline"], sustained=sustained[:1])
    assert none_held.sustained_cps is None
    assert "no rate held clean (tried 1250" in bench.format_summary(none_held)
    assert "sustained" not in bench.format_summary(bench.summarise(steps, ["maskline"]))


def test_sustain_defaults_to_full_runs_and_refuses_a_hold_too_short_to_reach_steady_state() -> None:
    assert bench.parse_args([]).sustain == bench.SUSTAIN_S
    assert bench.parse_args(["--quick"]).sustain == 0
    assert bench.parse_args(["--sustain", "0"]).sustain == 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--sustain", "30"])


def test_stalled_comparison_lines_up_rates_both_ran_clean() -> None:
    variant = "maskline+stalled-push"
    steps = [
        _step(offered_cps=500, sut_cpu_s=2.5, successful=5000, calls=5000),
        _step(offered_cps=1000),
        _step(system=variant, offered_cps=500, sut_cpu_s=2.6, successful=5000, calls=5000),
        _step(system=variant, offered_cps=1000, failed=2),
    ]
    result = bench.stalled_comparison(steps)
    assert result["base_max_clean_cps"] == 1000
    assert result["stalled_max_clean_cps"] == 500
    assert [row["offered_cps"] for row in result["rows"]] == [500]
    assert result["rows"][0]["base_cpu_ms"] == pytest.approx(0.5)
    assert result["rows"][0]["stalled_cpu_ms"] == pytest.approx(0.52)


# --- load plan -----------------------------------------------------------------------------


def test_bindings_have_distinct_callers_and_callees_spread_over_x() -> None:
    plan = bench.bindings_plan(x_count=4, per_x=25)
    assert len(plan) == 100
    assert len({b.a for b in plan}) == 100
    assert len({b.b for b in plan}) == 100
    assert not {b.a for b in plan} & {b.b for b in plan}
    per_x: dict[str, int] = {}
    for b in plan:
        per_x[b.x] = per_x.get(b.x, 0) + 1
    assert sorted(per_x.values()) == [25, 25, 25, 25]
    assert plan[0].x != plan[1].x  # round-robin: consecutive calls go to different X
    assert all(len(n) == 11 and n.isdigit() for b in plan for n in (b.a, b.b, b.x))
    inf = bench.sipp_inf(plan).splitlines()
    assert inf[0] == "SEQUENTIAL"
    assert inf[1] == f"{plan[0].a};{plan[0].x};"
    assert len(inf) == 101


# --- profile digest ------------------------------------------------------------------------


def test_profile_top_sums_self_and_inclusive_per_function() -> None:
    raw = (
        "main (engine/cli.py:10);run (engine/server.py:5);send (engine/transport.py:40) 60\n"
        "main (engine/cli.py:10);run (engine/server.py:5);send (engine/transport.py:41) 20\n"
        "main (engine/cli.py:10);write (store/db.py:7) 20\n"
        "not a stack line\n"
    )
    top = bench.profile_top(raw)
    self_share = dict(top["self"])
    inclusive = dict(top["inclusive"])
    # The two lines of send are one function; shares are of the 100 samples.
    assert self_share["send (engine/transport.py)"] == pytest.approx(80)
    assert self_share["write (store/db.py)"] == pytest.approx(20)
    assert inclusive["main (engine/cli.py)"] == pytest.approx(100)
    assert inclusive["run (engine/server.py)"] == pytest.approx(80)
    assert dict(top["by_file"]) == pytest.approx({"engine/transport.py": 80.0, "store/db.py": 20.0})
    assert bench.profile_top("")["self"] == []


def test_profile_splits_the_main_thread_from_the_workers() -> None:
    raw = (
        "<module> (bin/maskline:8);run (engine/server.py:5);send (engine/transport.py:40) 30\n"
        "_bootstrap (threading.py:1);Thread._bootstrap_inner (threading.py:2);"
        "_run_batch (store/db.py:7) 70\n"
    )
    loop = bench.profile_top(raw, main_thread=True)
    workers = bench.profile_top(raw, main_thread=False)
    assert dict(loop["self"]) == {"send (engine/transport.py)": pytest.approx(100)}
    assert dict(workers["self"]) == {"_run_batch (store/db.py)": pytest.approx(100)}
    text = bench.format_profile(raw)
    assert "30 samples" in text and "70 samples" in text


def test_recursive_frames_count_once_inclusively() -> None:
    raw = "f (a/x.py:1);f (a/x.py:2);g (a/y.py:3) 10\n"
    inclusive = dict(bench.profile_top(raw)["inclusive"])
    assert inclusive["f (a/x.py)"] == pytest.approx(100)


# --- one step's files ----------------------------------------------------------------------


def _stat_file(path: Path, successful: int, failed: int, retrans: int) -> None:
    path.write_text(
        "StartTime;SuccessfulCall(C);FailedCall(C);Retransmissions(C);\n"
        f"t0;0;0;0;\nt1;{successful};{failed};{retrans};\n",
        encoding="utf-8",
    )


def test_collect_step_reads_both_sipps_and_the_response_times(tmp_path: Path) -> None:
    _stat_file(tmp_path / "uac_stat.csv", successful=100, failed=2, retrans=3)
    # Two calls the caller saw end well never got their BYE to the callee; the callee's own
    # failures (stale BYEs of an earlier step) are noted, not counted.
    _stat_file(tmp_path / "uas_stat.csv", successful=98, failed=5, retrans=1)
    rtt = "Date_ms;response_time_ms;rtd_no\n" + "".join(f"{10 * i};{i % 7};1\n" for i in range(100))
    (tmp_path / "bench_uac_123_rtt.csv").write_text(rtt, encoding="utf-8")
    step = bench.collect_step(
        "maskline", 100, 102, tmp_path, cpu=(0.5, 0.4, 0.1, 0.1, 1.5), wall=1.2, note=""
    )
    assert step.successful == 100
    assert step.failed == 2 + 2
    assert step.retransmissions == 4
    assert step.achieved_cps == pytest.approx(100, rel=0.02)  # 99 gaps over 990 ms
    assert step.rtt_p50_ms == 3
    assert step.rtt_p99_ms == 6
    assert step.cpu_ms_per_call == pytest.approx(5.0)
    assert "2 BYE(s) not at callee" in step.note and "callee: 5" in step.note
    assert not step.clean


def test_collect_step_without_files_is_an_unclean_empty_step(tmp_path: Path) -> None:
    step = bench.collect_step(
        "sippy", 100, 100, tmp_path, cpu=(0.0, 0.0, 0.0, 0.0, 0.0), wall=1.0, note="x"
    )
    assert (step.successful, step.failed, step.achieved_cps) == (0, 0, 0.0)
    assert step.rtt_p99_ms is None
    assert not step.clean


# --- wire capture (--wire) -----------------------------------------------------------------

SIP_PORT, UAS_PORT, UAC_PORT = 5070, 5090, 5060


def _sip(first_line: str, call_id: str, cseq: str, from_user: str, to_user: str) -> bytes:
    return (
        f"{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
        f"From: <sip:{from_user}@127.0.0.1>;tag=1\r\nTo: <sip:{to_user}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _pcap(packets: list[tuple[float, int, int, bytes]], *, link_type: int = 1) -> bytes:
    """A classic little-endian µs pcap of IPv4/UDP packets on loopback."""
    out = bytearray(bench.struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type))
    link = b"\x00" * {0: 4, 1: 14, 113: 16}[link_type]
    for stamp, source, destination, payload in packets:
        udp = bench.struct.pack(">HHHH", source, destination, 8 + len(payload), 0) + payload
        ip = bytes([0x45, 0]) + bench.struct.pack(">H", 20 + len(udp)) + b"\x00" * 5
        ip += bytes([17]) + b"\x00" * 2 + bytes([127, 0, 0, 1, 127, 0, 0, 1]) + udp
        frame = link + ip
        seconds, micros = int(stamp), round((stamp - int(stamp)) * 1e6)
        out += bench.struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame
    return bytes(out)


def _call(t0: float, i: int, *, ours_ms: float, callee_ms: float) -> list:
    """One call's four INVITE-transaction datagrams; maskline takes ``ours_ms`` in all."""
    a, x, b = f"138{i:08d}", f"170{i % 10:08d}", f"139{i:08d}"
    forward = t0 + ours_ms / 2000
    answered = forward + callee_ms / 1000
    relayed = t0 + (ours_ms + callee_ms) / 1000
    return [
        (t0, UAC_PORT, SIP_PORT, _sip("INVITE sip:x SIP/2.0", f"in{i}", "1 INVITE", a, x)),
        (forward, SIP_PORT, UAS_PORT, _sip("INVITE sip:b SIP/2.0", f"out{i}", "1 INVITE", x, b)),
        (answered, UAS_PORT, SIP_PORT, _sip("SIP/2.0 200 OK", f"out{i}", "1 INVITE", x, b)),
        (relayed, SIP_PORT, UAC_PORT, _sip("SIP/2.0 200 OK", f"in{i}", "1 INVITE", a, x)),
    ]


@pytest.mark.parametrize("link_type", [0, 1, 113])
def test_wire_pdd_is_our_time_less_the_callees_per_call(link_type: int) -> None:
    packets = [
        *_call(100.0, 1, ours_ms=1.5, callee_ms=0.2),
        *_call(100.0004, 2, ours_ms=3.0, callee_ms=7.0),
        # A 200 retransmitted later and the BYE's 200 do not count.
        (100.5, SIP_PORT, UAC_PORT, _sip("SIP/2.0 200 OK", "in1", "1 INVITE", "a", "x")),
        (100.6, SIP_PORT, UAC_PORT, _sip("SIP/2.0 200 OK", "in2", "2 BYE", "a", "x")),
    ]
    packets.sort(key=lambda packet: packet[0])
    datagrams = list(bench.pcap_udp_datagrams(_pcap(packets, link_type=link_type)))
    assert len(datagrams) == len(packets)
    added = bench.wire_added_pdd_s(iter(datagrams), sip_port=SIP_PORT, uas_port=UAS_PORT)
    assert [round(value * 1000, 3) for value in sorted(added)] == [1.5, 3.0]


def test_wire_pdd_pairs_a_caller_with_the_next_invite_to_its_callee() -> None:
    # The same binding twice (its A calls again 1 s later): each leg pairs with its own.
    first = _call(10.0, 7, ours_ms=2.0, callee_ms=1.0)
    second = _call(11.0, 7, ours_ms=4.0, callee_ms=1.0)
    second = [
        (t, s, d, p.replace(b"in7", b"in7b").replace(b"out7", b"out7b")) for t, s, d, p in second
    ]
    # An unanswered call (no 200 from the callee) is left out, not counted as zero.
    lost = _call(12.0, 8, ours_ms=1.0, callee_ms=1.0)[:2]
    data = _pcap([*first, *second, *lost])
    added = bench.wire_added_pdd_s(
        bench.pcap_udp_datagrams(data), sip_port=SIP_PORT, uas_port=UAS_PORT
    )
    assert [round(value * 1000, 3) for value in added] == [2.0, 4.0]
    summary = bench.wire_summary(added, 250)
    assert summary["calls"] == 2 and summary["rate"] == 250
    assert summary["p50_ms"] == pytest.approx(2.0) and summary["max_ms"] == pytest.approx(4.0)
    assert "p99 4.00 ms" in bench.format_wire(summary)


def test_wire_without_tcpdump_is_refused_before_any_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found missing only at the half-load step, a full run ended after its whole ladder.
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit):
        bench.parse_args(["--wire"])
    assert "needs tcpdump" in capsys.readouterr().err
    assert bench.parse_args(["--quick"]).wire is False
