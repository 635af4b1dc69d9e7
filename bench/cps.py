"""Call-setup benchmark: calls per second through SIPp direct, the sippy B2BUA and maskline.

DESIGN "Performance": ≥ 1,000 AXB calls/s through the B2BUA with 0 failed calls, ≥ 3× (issue 7:
≥ 4×) the sippy B2BUA measured in the same run, ≤ 0.6 ms of CPU per call, added post-dial delay
p99 < 5 ms at half that load. One run on loopback steps the offered load up through

* ``direct``: SIPp caller → SIPp callee, nothing between them (the machine's ceiling);
* ``sippy``: the sippy 2.5 B2BUA (``b2bua_simple``, pip ``sippy``, a dev dependency);
* ``maskline``: a real ``maskline serve`` (temporary config and database) with AXB bindings
  provisioned through its REST API, one binding per caller line of SIPp's ``-inf`` file;
* ``maskline+stalled-push`` (issue 6 acceptance 5): the same, but the pool belongs to a tenant
  whose report push URL points at an HTTP receiver that accepts and never answers.

The same SIPp scenarios (``sipp_scenarios/bench_uac.xml``, ``bench_uas.xml``) and the same
caller file drive every system. Per step: achieved calls/s, failed calls, retransmissions,
p50/p99 INVITE → 200 response time (SIPp ``-trace_rtt``, 1 ms resolution), CPU of the system
under test (``/proc``). Printed at the end: the highest clean rate of each system, the ratios
maskline/sippy and maskline/direct, CPU per call, the added post-dial delay p99 at half
maskline's clean rate, the reports-stalled comparison; a PNG of achieved vs offered load and
the figures as JSON go to ``bench/out/``.

A ladder step is short (10 s): it ends before the first ended call's state is let go (64*T1 =
32 s after it ended), so it never sees the steady state of a running service, where every new
call's work comes with releasing an old one's. Full runs therefore also hold maskline's highest
clean rate for ``--sustain`` seconds (75; stepping down 10 % while that is not clean) and print
the rate held and its CPU per call once the kept state is full (from 40 s in).

Usage (from the repository root; the first form sets up ``.venv`` with ``make deps`` if needed)::

    python3 bench/cps.py                      # full run: 10 s steps + a 75 s hold (~12-16 min)
    python3 bench/cps.py --quick              # smoke run, 3 s steps, no hold (~2-3 min)
    .venv/bin/python bench/cps.py --systems maskline --rates 200,400,600 --seconds 5 --sustain 0
    .venv/bin/python bench/cps.py --systems maskline --rates 1000 --no-half --sustain 75
    .venv/bin/python bench/cps.py --profile   # + py-spy profile of maskline at its knee
    .venv/bin/python bench/cps.py --systems maskline --rates 400 --profile --native  # C frames
    .venv/bin/python bench/cps.py --systems maskline --rates 500 --wire  # PDD from tcpdump
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
OUT = ROOT / "bench" / "out"
SCENARIOS = ROOT / "sipp_scenarios"
UAC_SCENARIO = SCENARIOS / "bench_uac.xml"
UAS_SCENARIO = SCENARIOS / "bench_uas.xml"
LOOPBACK = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")

# The load: 100 ms calls (ACK → BYE), as in the issue's reference figures.
CALL_HOLD_MS = 100
FULL_RATES = (100, 200, 300, 400, 500, 650, 800, 1000, 1250, 1500, 2000, 2500, 3000, 3500)
QUICK_RATES = (100, 300, 600, 1000, 1500, 2000, 3000)
# A step is clean when no call failed, the calls were set up at ≥ 95 % of the offered rate
# (a system that falls behind is not keeping up, even if every call ends well), and at most
# 0.1 % of the calls needed a retransmission (each means a message lost or > T1 = 500 ms late).
CLEAN_MIN_ACHIEVED = 0.95
CLEAN_MAX_RETRANS_PER_CALL = 0.001
# Kernel socket buffers asked of SIPp (capped by net.core.rmem_max / wmem_max): at thousands of
# calls per second the default ~200 KiB overflows during bursts and drops datagrams.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
# Caller lines / AXB bindings: distinct A and B per binding, BINDINGS_PER_X on each X.
X_COUNT = 10
BINDINGS_PER_X = 200
BINDING_EXPIRES = "2030-01-01 00:00:00"
TOKEN = "bench-operator-token"
READY_DEADLINE_S = 60.0  # maskline's first start makes the prompts with espeak-ng
SUMMARY_TOP = 25
# 64*T1 (32 s) and a margin: how long a step's transactions (absorbing retransmissions) and
# ended calls (kept for late in-dialog requests) outlive it; the half-load PDD step waits this
# long after the ladder's overloaded steps, whose expiring timers are not the load measured.
RETENTION_WINDOW_S = 34.0
# --sustain: the highest clean rate held this long (0: not run). The ladder's steps end before
# the first ended call's state is let go (RETENTION_WINDOW_S), so they never see the steady
# state, where every new call's work comes with an old call's release (measured 2026-12-05:
# 3-46 % more CPU a call after t = 32 s, median 17 % over seven runs; 1,000 calls/s clean for
# 10 s, and held for 40-75 s clean in one run of four).
SUSTAIN_S = 75.0
# The steady-state window of a sustained step starts this long after its first call (the kept
# state is full) and ends this long before its last.
STEADY_FROM_S = RETENTION_WINDOW_S + 6.0
STEADY_TAIL_S = 3.0
# Tries of --sustain: each unclean one steps the rate down by this fraction (to the 25 below).
SUSTAIN_TRIES = 3
SUSTAIN_STEP_DOWN = 0.1
# Put before maskline's console script, e.g. [python, "-m", "cProfile", "-o", FILE] to profile
# it deterministically from a script that imports this one (the figures then count that cost).
MASKLINE_PREFIX: list[str] = []


# ======================================================================== pure helpers
def parse_stat_rows(text: str) -> list[dict[str, str]]:
    """Rows of a SIPp ``-trace_stat`` file (``;``-separated, header first)."""
    rows = csv.DictReader(io.StringIO(text), delimiter=";")
    return [{k: v for k, v in row.items() if k and v is not None} for row in rows]


def stat_counter(row: dict[str, str], name: str) -> int:
    """An integer counter of a stat row, 0 when absent or empty."""
    value = row.get(name, "").strip()
    return int(value) if value.lstrip("-").isdigit() else 0


def parse_rtt(text: str) -> list[tuple[float, float]]:
    """``(time_ms, response_time_ms)`` of every rtd 1 sample of a SIPp ``-trace_rtt`` file
    (header ``Date_ms;response_time_ms;rtd_no``; times in ms since SIPp started)."""
    samples: list[tuple[float, float]] = []
    for line in text.splitlines()[1:]:
        parts = line.strip().split(";")
        if len(parts) < 3 or parts[2].strip() != "1":
            continue
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return samples


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def achieved_rate(times_ms: Sequence[float]) -> float:
    """Calls set up per second: answers (200s) over the time they took to arrive.

    n answers spaced evenly at rate r span (n - 1) / r seconds, so the rate is (n - 1) / span.
    The span is floored at one SIPp clock tick (1 ms) so that a burst reads as fast, not as a
    division by zero. With fewer than two answers there is no span: the rate is 0.
    """
    if len(times_ms) < 2:
        return 0.0
    span_s = max((max(times_ms) - min(times_ms)) / 1000, 0.001)
    return (len(times_ms) - 1) / span_s


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step: ``calls`` offered at ``offered_cps`` through ``system``."""

    system: str
    offered_cps: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    achieved_cps: float
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None
    sut_cpu_s: float
    sut_main_cpu_s: float  # of which its main thread (the event loop)
    uac_cpu_s: float
    uas_cpu_s: float
    machine_busy_s: float
    wall_s: float
    note: str = ""
    # Sustained steps only (--sustain): CPU per call of the SUT and of its main thread over the
    # window after the kept state filled (steady_cpu_per_call).
    steady_cpu_ms_per_call: float | None = None
    steady_main_ms_per_call: float | None = None

    @property
    def cpu_ms_per_call(self) -> float | None:
        """CPU of the system under test per successful call, ms."""
        return self.sut_cpu_s * 1000 / self.successful if self.successful else None

    @property
    def main_ms_per_call(self) -> float | None:
        """CPU of the system under test's main thread (event loop) per successful call, ms."""
        return self.sut_main_cpu_s * 1000 / self.successful if self.successful else None

    @property
    def sut_cpu_pct(self) -> float:
        return 100 * self.sut_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def foreign_cpu_pct(self) -> float:
        """CPU the machine spent outside the SIPp pair and the system under test (other users'
        processes, the kernel's softirq work is counted in the processes it ran for)."""
        ours = self.sut_cpu_s + self.uac_cpu_s + (0 if self.system == "direct" else self.uas_cpu_s)
        return max(0.0, 100 * (self.machine_busy_s - ours) / self.wall_s) if self.wall_s else 0.0

    @property
    def clean(self) -> bool:
        return is_clean(self)


def is_clean(step: StepResult) -> bool:
    """No failed call, every call answered, set up at ≥ 95 % of the offered rate, retransmissions
    on at most 0.1 % of the calls."""
    return (
        step.failed == 0
        and step.successful == step.calls
        and step.achieved_cps >= CLEAN_MIN_ACHIEVED * step.offered_cps
        and step.retransmissions <= CLEAN_MAX_RETRANS_PER_CALL * step.calls
    )


def max_clean(steps: Sequence[StepResult], system: str) -> StepResult | None:
    """The clean step of ``system`` at the highest offered rate."""
    clean = [s for s in steps if s.system == system and s.clean]
    return max(clean, key=lambda s: s.offered_cps) if clean else None


def unclean_streak(steps: Sequence[StepResult]) -> int:
    """How many of the last steps in a row were unclean."""
    streak = 0
    for step in reversed(steps):
        if step.clean:
            break
        streak += 1
    return streak


def refine_rate(steps: Sequence[StepResult], *, granularity: int = 25) -> int | None:
    """A rate between the highest clean step and the first unclean step above it, when they are
    more than 10 % apart (rounded to ``granularity``, not one already run); None otherwise."""
    clean = [s.offered_cps for s in steps if s.clean]
    if not clean:
        return None
    best = max(clean)
    above = [s.offered_cps for s in steps if not s.clean and s.offered_cps > best]
    if not above:
        return None
    first_bad = min(above)
    if first_bad <= best * 1.1:
        return None
    mid = round((best + first_bad) / 2 / granularity) * granularity
    done = {s.offered_cps for s in steps}
    return mid if best < mid < first_bad and mid not in done else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True, slots=True)
class Binding:
    """One caller line: A calls X and reaches B."""

    a: str
    x: str
    b: str


@dataclass(frozen=True, slots=True)
class CpuSample:
    """The SUT's CPU seconds (all threads, main thread) at ``at_s`` (time.monotonic())."""

    at_s: float
    cpu_s: float
    main_cpu_s: float


def cpu_at(samples: Sequence[CpuSample], at_s: float) -> tuple[float, float] | None:
    """CPU seconds (all, main) at ``at_s``, linear between the samples around it; None outside
    the sampled span."""
    for before, after in itertools.pairwise(samples):
        if before.at_s <= at_s <= after.at_s:
            span = after.at_s - before.at_s
            part = (at_s - before.at_s) / span if span > 0 else 0.0
            return (
                before.cpu_s + part * (after.cpu_s - before.cpu_s),
                before.main_cpu_s + part * (after.main_cpu_s - before.main_cpu_s),
            )
    return None


def steady_cpu_per_call(
    samples: Sequence[CpuSample], answered_at_s: Sequence[float], start_s: float, end_s: float
) -> tuple[float, float, int] | None:
    """CPU ms per call (all threads, main thread) and the calls, over ``[start_s, end_s]``: the
    CPU spent in the window over the calls answered in it (``answered_at_s``, same clock as the
    samples). None when the window is empty or not sampled."""
    if end_s <= start_s:
        return None
    first, last = cpu_at(samples, start_s), cpu_at(samples, end_s)
    calls = sum(1 for t in answered_at_s if start_s <= t < end_s)
    if first is None or last is None or calls == 0:
        return None
    return (
        (last[0] - first[0]) * 1000 / calls,
        (last[1] - first[1]) * 1000 / calls,
        calls,
    )


def step_down(rate: int, fraction: float = SUSTAIN_STEP_DOWN, granularity: int = 25) -> int:
    """``rate`` less ``fraction``, down to a multiple of ``granularity`` (at least that)."""
    lower = int(rate * (1 - fraction)) // granularity * granularity
    return max(granularity, min(lower, rate - granularity))


def bindings_plan(x_count: int = X_COUNT, per_x: int = BINDINGS_PER_X) -> list[Binding]:
    """Distinct A and B numbers (Chinese mobiles, 138… and 139…) on ``x_count`` X numbers
    (170…), ``per_x`` bindings each; ordered round-robin over X so consecutive calls spread."""
    return [
        Binding(a=f"138{i:08d}", x=f"170{i % x_count:08d}", b=f"139{i:08d}")
        for i in range(x_count * per_x)
    ]


def sipp_inf(plan: Sequence[Binding]) -> str:
    """SIPp ``-inf`` file: SEQUENTIAL, ``field0`` = A, ``field1`` = X."""
    return "SEQUENTIAL\n" + "".join(f"{b.a};{b.x};\n" for b in plan)


def fmt(value: float | None, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_steps(steps: Sequence[StepResult]) -> str:
    """The per-step table."""
    header = (
        f"{'system':<22} {'offered':>7} {'achieved':>8} {'calls':>6} {'ok':>6} {'failed':>6} "
        f"{'retrans':>7} {'p50ms':>5} {'p99ms':>5} {'SUT cpu%':>8} {'ms/call':>7} {'loop':>5} "
        f"{'uac%':>5} {'uas%':>5} {'other%':>6} clean"
    )
    lines = [header, "-" * len(header)]
    for s in steps:
        lines.append(
            f"{s.system:<22} {s.offered_cps:>7} {s.achieved_cps:>8.0f} {s.calls:>6} "
            f"{s.successful:>6} {s.failed:>6} {s.retransmissions:>7} "
            f"{fmt(s.rtt_p50_ms):>5} {fmt(s.rtt_p99_ms):>5} {s.sut_cpu_pct:>8.0f} "
            f"{fmt(s.cpu_ms_per_call, '.3f'):>7} {fmt(s.main_ms_per_call, '.2f'):>5} "
            f"{100 * s.uac_cpu_s / s.wall_s:>5.0f} "
            f"{100 * s.uas_cpu_s / s.wall_s:>5.0f} {s.foreign_cpu_pct:>6.0f} "
            f"{'yes' if s.clean else 'NO'}{'  ' + s.note if s.note else ''}"
        )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Summary:
    """The headline figures of one run."""

    max_clean_cps: dict[str, int | None]
    cpu_ms_per_call: dict[str, float | None]  # at each system's highest clean step
    maskline_over_sippy: float | None
    maskline_over_direct: float | None
    pdd_rate: int | None
    pdd_p99_ms: dict[str, float | None] = field(default_factory=dict)  # at pdd_rate
    added_pdd_p99_ms: float | None = None
    stalled: dict[str, Any] = field(default_factory=dict)
    # --sustain: the rates tried (highest first) and the one held clean, with its steady state.
    sustained_tried: tuple[int, ...] = ()
    sustained_s: float | None = None
    sustained_cps: int | None = None
    steady_cpu_ms_per_call: float | None = None
    steady_main_ms_per_call: float | None = None


def summarise(
    steps: Sequence[StepResult],
    systems: Sequence[str],
    half_steps: Sequence[StepResult] = (),
    stalled: dict[str, Any] | None = None,
    sustained: Sequence[StepResult] = (),
) -> Summary:
    """Max clean rate and CPU per call of each system, the ratios, the added PDD at half the
    maskline clean rate (maskline p99 minus direct p99 at that same rate), and the rate held
    clean in ``sustained`` (--sustain) with its steady-state CPU per call."""
    best = {name: max_clean(steps, name) for name in systems}
    cps = {name: (s.offered_cps if s else None) for name, s in best.items()}
    cpu = {name: (s.cpu_ms_per_call if s else None) for name, s in best.items()}
    pdd = {s.system: s.rtt_p99_ms for s in half_steps}
    rate = half_steps[0].offered_cps if half_steps else None
    added = None
    held = next((step for step in sustained if step.clean), None)
    if pdd.get("maskline") is not None and pdd.get("direct") is not None:
        added = max(0.0, float(pdd["maskline"] or 0) - float(pdd["direct"] or 0))
    return Summary(
        max_clean_cps=cps,
        cpu_ms_per_call=cpu,
        maskline_over_sippy=ratio(cps.get("maskline"), cps.get("sippy")),
        maskline_over_direct=ratio(cps.get("maskline"), cps.get("direct")),
        pdd_rate=rate,
        pdd_p99_ms=pdd,
        added_pdd_p99_ms=added,
        stalled=stalled or {},
        sustained_tried=tuple(step.offered_cps for step in sustained),
        sustained_s=(sustained[0].calls / sustained[0].offered_cps) if sustained else None,
        sustained_cps=held.offered_cps if held else None,
        steady_cpu_ms_per_call=held.steady_cpu_ms_per_call if held else None,
        steady_main_ms_per_call=held.steady_main_ms_per_call if held else None,
    )


def stalled_comparison(
    steps: Sequence[StepResult], base: str = "maskline", variant: str = "maskline+stalled-push"
) -> dict[str, Any]:
    """Max clean rate of both, and CPU per call side by side at every rate both ran clean."""
    by_rate = {
        name: {s.offered_cps: s for s in steps if s.system == name and s.clean}
        for name in (base, variant)
    }
    common = sorted(set(by_rate[base]) & set(by_rate[variant]))
    rows = [
        {
            "offered_cps": rate,
            "base_achieved": round(by_rate[base][rate].achieved_cps),
            "stalled_achieved": round(by_rate[variant][rate].achieved_cps),
            "base_cpu_ms": by_rate[base][rate].cpu_ms_per_call,
            "stalled_cpu_ms": by_rate[variant][rate].cpu_ms_per_call,
        }
        for rate in common
    ]
    base_best = max_clean(steps, base)
    variant_best = max_clean(steps, variant)
    return {
        "base_max_clean_cps": base_best.offered_cps if base_best else None,
        "stalled_max_clean_cps": variant_best.offered_cps if variant_best else None,
        "rows": rows,
    }


def format_summary(summary: Summary) -> str:
    cps, cpu = summary.max_clean_cps, summary.cpu_ms_per_call
    lines = ["system                 max clean calls/s   CPU ms/call there"]
    for name in cps:
        lines.append(f"{name:<22} {fmt(cps[name]):>17}   {fmt(cpu[name], '.3f'):>17}")
    lines.append(f"maskline / sippy  = {fmt(summary.maskline_over_sippy, '.2f')}x   (target >= 4x)")
    lines.append(f"maskline / direct = {fmt(summary.maskline_over_direct, '.2f')}x")
    lines.append(
        f"maskline CPU per call = {fmt(cpu.get('maskline'), '.3f')} ms   (target <= 0.6 ms)"
    )
    if summary.sustained_tried:
        tried = ", ".join(str(rate) for rate in summary.sustained_tried)
        if summary.sustained_cps is None:
            lines.append(
                f"maskline sustained {fmt(summary.sustained_s)} s: no rate held clean "
                f"(tried {tried} calls/s)"
            )
        else:
            lines.append(
                f"maskline sustained {fmt(summary.sustained_s)} s: {summary.sustained_cps} "
                f"calls/s clean (tried {tried}); CPU per call once the kept state is full "
                f"(from {STEADY_FROM_S:g} s in): {fmt(summary.steady_cpu_ms_per_call, '.3f')} ms, "
                f"loop {fmt(summary.steady_main_ms_per_call, '.3f')}   (target <= 0.6 ms)"
            )
    if summary.pdd_rate is not None:
        p99 = summary.pdd_p99_ms
        lines.append(
            f"post-dial delay p99 at {summary.pdd_rate} calls/s (half maskline's clean rate): "
            f"direct {fmt(p99.get('direct'))} ms, maskline {fmt(p99.get('maskline'))} ms -> "
            f"added {fmt(summary.added_pdd_p99_ms)} ms   (target < 5 ms; SIPp's clock: 4 ms ticks)"
        )
    if summary.stalled:
        st = summary.stalled
        lines.append(
            "reports stalled (issue 6 acc. 5): max clean calls/s "
            f"{fmt(st.get('base_max_clean_cps'))} (no push) vs "
            f"{fmt(st.get('stalled_max_clean_cps'))} (push URL stalled)"
        )
        for row in st.get("rows", []):
            lines.append(
                f"  at {row['offered_cps']:>5} calls/s: achieved {row['base_achieved']:>5} vs "
                f"{row['stalled_achieved']:>5}, CPU ms/call {fmt(row['base_cpu_ms'], '.3f')} vs "
                f"{fmt(row['stalled_cpu_ms'], '.3f')}"
            )
        if "queue" in st:
            lines.append(f"  stalled tenant's report queue at the end: {st['queue']}")
    return "\n".join(lines)


def is_main_thread_stack(stack: str) -> bool:
    """A py-spy stack of the main thread: every other thread's starts in ``Thread._bootstrap``."""
    return not stack.startswith(("_bootstrap ", "Thread._bootstrap "))


def profile_top(
    collapsed: str, top: int = SUMMARY_TOP, *, main_thread: bool | None = None
) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares (%) per function, and shares per project source file, of
    py-spy ``--format raw`` output (one ``frame;frame;...;leaf count`` line per stack; frames
    ``function (file:line)``, the line dropped so one function is one entry). A sample counts
    for the project file nearest its leaf (``sip/headers.py`` for a ``str.split`` it called;
    the loop itself when no project frame is on the stack). ``main_thread`` True/False keeps
    only the main thread's / the other threads' stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if main_thread is not None and is_main_thread_stack(stack) != main_thread:
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        by_file[_nearest_project_file(frames)] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"self": [], "inclusive": [], "by_file": [], "samples": []}
    return {
        "self": [(name, 100 * n / total) for name, n in self_time.most_common(top)],
        "inclusive": [(name, 100 * n / total) for name, n in inclusive.most_common(top)],
        "by_file": [(name, 100 * n / total) for name, n in by_file.most_common(top)],
        "samples": [("samples", float(total))],
    }


PROJECT_DIRS = ("sip/", "engine/", "media/", "routing/", "store/", "api/", "billing/", "config/")
_LOOP_STARTERS = ("main (engine/cli.py)", "_serve (engine/cli.py)", "run (engine/server.py)")


def _nearest_project_file(frames: Sequence[str]) -> str:
    """The project source file of the frame nearest the leaf (``_frame_name`` form)."""
    for frame in reversed(frames):
        where = frame.rpartition(" (")[2].rstrip(")")
        # engine/cli.py and server.run only start the loop: what runs under them directly is
        # the loop's own work (uvloop's C code, asyncio glue).
        if where.startswith(PROJECT_DIRS) and not frame.startswith(_LOOP_STARTERS):
            return where
    return "(event loop, no project frame)"


def _frame_name(frame: str) -> str:
    """``function (path/to/file.py:123)`` → ``function (to/file.py)``; threads' idle frames
    and process markers keep their text."""
    name, sep, where = frame.strip().partition(" (")
    if not sep:
        return frame.strip()
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{name} ({short})"


# ============================================================================ processes
def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the main thread of ``pid`` (its event loop, for maskline and sippy)."""
    with open(f"/proc/{pid}/task/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / TICKS


def wait_reaped(proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Wait for ``proc`` (killing it at the deadline) and return its CPU seconds (rusage)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            deadline = time.monotonic() + 10
        time.sleep(0.02)


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for both UDP and TCP")


def udp_ports_in_use() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in handle.readlines()[1:]:
                local = line.split()[1]
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def media_port_range(size: int = 8000) -> tuple[int, int]:
    """A UDP range below the ephemeral ports with nothing bound in it now."""
    used = udp_ports_in_use()
    for start in range(20000, 32000 - size + 1, 1000):
        if not any(start <= p < start + size for p in used):
            return start, start + size - 1
    raise RuntimeError(f"no free UDP range of {size} ports between 20000 and 32000")


def wait_udp_bound(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 10.0) -> None:
    """Until something (``proc``) has bound UDP ``port``: our own bind attempt fails then."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} at start")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing bound UDP {port} within {deadline_s} s")


def wait_quiet(pid: int, *, below_pct: float = 5.0, limit_s: float = 60.0) -> float:
    """Until process ``pid`` uses less than ``below_pct`` of a core over half a second (the
    backlog of an overloaded step drained, its timers fired), at most ``limit_s``; returns the
    seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = proc_cpu_s(pid)
        time.sleep(0.5)
        if (proc_cpu_s(pid) - before) / 0.5 * 100 < below_pct:
            break
    return time.monotonic() - started


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ================================================================ systems under test
@dataclass
class System:
    """Where the caller SIPp sends, where the callee SIPp listens, whose CPU is measured."""

    name: str
    target_port: int
    uas_port: int
    sut_pid: int | None  # None: the callee SIPp itself (direct)
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def direct_system() -> Iterator[System]:
    port = free_port()
    yield System("direct", target_port=port, uas_port=port, sut_pid=None)


@contextlib.contextmanager
def sippy_system(workdir: Path) -> Iterator[System]:
    """``b2bua_simple`` in the foreground, its SIP log off (SIPLOG_BEND=none: logging every
    message to stderr would be measured, not the B2BUA)."""
    script = Path(sys.executable).parent / "b2bua_simple"
    if not script.exists():
        raise RuntimeError("b2bua_simple not found next to this interpreter: pip install sippy")
    port, uas_port = free_port(), free_port()
    env = {**os.environ, "SIPLOG_BEND": "none"}
    log = (workdir / "sippy.stderr").open("ab")
    proc = subprocess.Popen(
        [str(script), "-f", "-l", LOOPBACK, "-p", str(port), "-n", f"{LOOPBACK}:{uas_port}"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    try:
        wait_udp_bound(port, proc)
        yield System("sippy", target_port=port, uas_port=uas_port, sut_pid=proc.pid)
    finally:
        stop_process(proc)
        log.close()


class StalledReceiver:
    """An HTTP receiver that accepts connections, reads what comes, and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self.bytes_read = 0
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                self.bytes_read += len(chunk)

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()


def maskline_config(
    workdir: Path,
    sip_port: int,
    api_port: int,
    uas_port: int,
    log: str,
    *,
    overload: Mapping[str, int] | None = None,
) -> Path:
    media_min, media_max = media_port_range()
    prompts = OUT / "cps-prompts"  # made once with espeak-ng, shared by every run
    config = workdir / "maskline.toml"
    text = f"""\
[sip]
listen = "{LOOPBACK}:{sip_port}"

[api]
listen = "{LOOPBACK}:{api_port}"
operator_token = "{TOKEN}"
master_key_file = "{workdir / "master.key"}"

[store]
path = "{workdir / "maskline.sqlite3"}"

[media]
address = "{LOOPBACK}"
port_min = {media_min}
port_max = {media_max}

[cdr]
dir = "{workdir / "cdr"}"

[recording]
dir = "{workdir / "recordings"}"

[audio]
prompts_dir = "{prompts}"
ringback_dir = "{workdir / "ringback"}"

[log]
level = "{log}"
format = "json"

[[trunks]]
name = "bench"
inbound_cidrs = ["127.0.0.1/32"]
outbound = "{LOOPBACK}:{uas_port}"
transport = "udp"
number_format = "national"
"""
    if overload:
        text += "\n[overload]\n" + "".join(f"{key} = {value}\n" for key, value in overload.items())
    config.write_text(text, encoding="utf-8")
    return config


def options_ok(port: int, timeout_s: float = 0.3) -> bool:
    """True when an OPTIONS to ``port`` over UDP is answered 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local = sock.getsockname()[1]
        call_id = f"bench-ready-{time.monotonic_ns()}"
        request = (
            f"OPTIONS sip:ping@{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@{LOOPBACK}:{local}>;tag=bench\r\n"
            f"To: <sip:ping@{LOOPBACK}:{port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        try:
            sock.sendto(request.encode(), (LOOPBACK, port))
            data = sock.recv(65536)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 200")


def provision(api: Any, plan: Sequence[Binding], tenant_name: str | None) -> dict[str, Any]:
    """Numbers, one AXB pool (of a new tenant when ``tenant_name``), one binding per line."""
    xs = sorted({b.x for b in plan})
    rows = "number,city,province,carrier,spec\n" + "".join(f"{x},北京,北京,CMCC,1\n" for x in xs)
    _ok(api.post("/numbers/import", content=rows, headers={"Content-Type": "text/csv"}))
    pool_body: dict[str, Any] = {"type": "AXB", "name": "bench"}
    tenant_id = None
    if tenant_name is not None:
        tenant_id = str(_ok(api.post("/tenants", json={"name": tenant_name}))["tenant_id"])
        pool_body["tenant_id"] = tenant_id
    pool = str(_ok(api.post("/pools", json=pool_body))["pool_key"])
    _ok(api.post(f"/pools/{pool}/numbers", json={"count": len(xs)}))
    for b in plan:
        _ok(
            api.post(
                f"/pools/{pool}/bindings",
                json={"type": "AXB", "a": b.a, "b": b.b, "x": b.x, "expires": BINDING_EXPIRES},
            )
        )
    return {"pool": pool, "tenant_id": tenant_id}


def _ok(response: Any) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:300]}"
        )
    body: dict[str, Any] = response.json()
    return body


@contextlib.contextmanager
def maskline_system(
    workdir: Path,
    plan: Sequence[Binding],
    *,
    stalled_push: bool,
    log_level: str,
    overload: Mapping[str, int] | None = None,
) -> Iterator[System]:
    """A real ``maskline serve`` on a fresh config and database, provisioned over REST."""
    import httpx  # noqa: PLC0415 - a project dependency, imported where used

    workdir.mkdir(parents=True, exist_ok=True)
    sip_port, api_port, uas_port = free_port(), free_port(), free_port()
    config = maskline_config(workdir, sip_port, api_port, uas_port, log_level, overload=overload)
    script = Path(sys.executable).parent / "maskline"
    command = (
        [*MASKLINE_PREFIX, str(script), "serve", "--config", str(config)]
        if script.exists()
        else [sys.executable, "-m", "engine.cli", "serve", "--config", str(config)]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLINE_")}
    log = (workdir / "maskline.stderr").open("ab")
    proc = subprocess.Popen(
        command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    receiver = StalledReceiver() if stalled_push else None
    api = httpx.Client(
        base_url=f"http://{LOOPBACK}:{api_port}/v1",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    try:
        deadline = time.monotonic() + READY_DEADLINE_S
        while not options_ok(sip_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"maskline did not start (exit {proc.poll()}); see {workdir}/maskline.stderr"
                )
            time.sleep(0.1)
        started = time.monotonic()
        ids = provision(api, plan, "bench tenant" if stalled_push else None)
        print(
            f"  maskline: {len(plan)} AXB bindings provisioned over REST in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        if receiver is not None:
            url = f"http://{LOOPBACK}:{receiver.port}/reports"
            _ok(api.put(f"/tenants/{ids['tenant_id']}/report-urls/default", json={"url": url}))
        system = System(
            "maskline+stalled-push" if stalled_push else "maskline",
            target_port=sip_port,
            uas_port=uas_port,
            sut_pid=proc.pid,
            extra={"api": api, "tenant_id": ids["tenant_id"], "receiver": receiver},
        )
        yield system
    finally:
        api.close()
        stop_process(proc)
        log.close()
        if receiver is not None:
            receiver.close()


# ================================================================================= steps
def sipp_binary() -> str:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "sipp"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("SIPp is not installed: run `make deps` (Debian package sip-tester)")


class CpuSampler:
    """Samples the CPU of ``pid`` (all threads, main thread) every ``period_s`` in a thread."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        self.pid = pid
        self.period_s = period_s
        self.samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            at = time.monotonic()
            cpu, main = proc_cpu_s(self.pid), main_thread_cpu_s(self.pid)
            self.samples.append(CpuSample(at, cpu, main))

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.period_s):
            self._sample()
        self._sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_step(
    system: System,
    rate: int,
    seconds: float,
    workdir: Path,
    inf: Path,
    *,
    note: str = "",
    steady: bool = False,
) -> StepResult:
    """Offer ``rate`` calls/s for ``seconds`` (``rate * seconds`` calls) to ``system``; with
    ``steady``, also its CPU per call from STEADY_FROM_S after the first call to STEADY_TAIL_S
    before the end (``steady_cpu_per_call``)."""
    sipp = sipp_binary()
    if system.sut_pid is not None:
        wait_quiet(system.sut_pid)
    step_dir = workdir / f"{system.name}-{rate}-{time.monotonic_ns()}"
    step_dir.mkdir(parents=True)
    calls = max(1, round(rate * seconds))
    common = ["-nostdin", "-buff_size", str(SOCKET_BUFFER_BYTES), "-max_log_size", "2000000"]
    uas_command = [sipp, "-sf", str(UAS_SCENARIO), "-i", LOOPBACK, "-p", str(system.uas_port)]
    uas_command += [*common, "-trace_stat", "-stf", "uas_stat.csv", "-trace_err"]
    uas = subprocess.Popen(
        uas_command,
        cwd=step_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sampler: CpuSampler | None = None
    try:
        wait_udp_bound(system.uas_port, uas)
        sut_pid = system.sut_pid if system.sut_pid is not None else uas.pid
        cpu_before, main_before = proc_cpu_s(sut_pid), main_thread_cpu_s(sut_pid)
        sampler = CpuSampler(sut_pid) if steady else None
        if sampler is not None:
            sampler.start()
        busy_before, started = machine_busy_s(), time.monotonic()
        uac_command = [sipp, "-sf", str(UAC_SCENARIO), "-inf", str(inf), "-i", LOOPBACK]
        uac_command += ["-p", str(free_port()), "-r", str(rate), "-rp", "1000", "-m", str(calls)]
        # No cap on open calls below what the rate needs for 8 s (the answer timeout): a slow
        # system must see the offered load, not a throttled one.
        uac_command += ["-l", str(rate * 10 + 100), "-d", str(CALL_HOLD_MS), *common]
        uac_command += ["-trace_stat", "-stf", "uac_stat.csv", "-trace_rtt", "-rtt_freq", "1"]
        uac_command += ["-trace_err", "-timeout", f"{int(seconds * 3 + 40)}s"]
        uac = subprocess.Popen(
            [*uac_command, f"{LOOPBACK}:{system.target_port}"],
            cwd=step_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        uac_cpu = wait_reaped(uac, seconds * 3 + 60)
        wall = time.monotonic() - started
        sut_cpu = proc_cpu_s(sut_pid) - cpu_before
        sut_main_cpu = main_thread_cpu_s(sut_pid) - main_before
        busy = machine_busy_s() - busy_before
        # The last BYEs reach the callee right after the caller's final 200; let them land.
        time.sleep(0.5)
        uas.send_signal(signal.SIGTERM)  # SIPp writes its final statistics row on SIGTERM
        uas_cpu = wait_reaped(uas, 15)
    finally:
        if sampler is not None:
            sampler.stop()
        if uas.poll() is None:
            uas.kill()
            uas.wait()
    result = collect_step(
        system.name,
        rate,
        calls,
        step_dir,
        cpu=(sut_cpu, sut_main_cpu, uac_cpu, uas_cpu, busy),
        wall=wall,
        note=note,
    )
    if sampler is None:
        return result
    # The caller SIPp's -trace_rtt times are ms since it started (≈ ``started``).
    answered = [
        started + t_ms / 1000
        for rtt_file in step_dir.glob("*_rtt.csv")
        for t_ms, _ in parse_rtt(rtt_file.read_text("utf-8", "replace"))
    ]
    first_call = min(answered, default=started)
    window = steady_cpu_per_call(
        sampler.samples,
        answered,
        first_call + STEADY_FROM_S,
        started + seconds - STEADY_TAIL_S,
    )
    if window is None:
        return result
    cpu_ms, main_ms, _ = window
    return replace(result, steady_cpu_ms_per_call=cpu_ms, steady_main_ms_per_call=main_ms)


@dataclass(frozen=True)
class CountedWindow:
    """A step measured between marks (instructions.py, pycalls.py): the calls, then idle."""

    pid: int  # of the maskline that served it
    step: StepResult
    window_s: float  # from the "start" mark to the "calls" mark: the calls and the tail
    idle_s: float  # from the "calls" mark to the "idle" mark: nothing offered


# The small AXB plan of a counted window: few calls, each one routed and bound.
COUNTED_X_COUNT, COUNTED_BINDINGS_PER_X = 2, 20


def run_counted_window(
    out: Path,
    *,
    label: str,
    settle_s: float,
    rate: int,
    calls: int,
    tail_s: float,
    idle_s: float,
    mark_for: Callable[[int], Callable[[str], None]],
    counter: str,
    warmup_calls: int = 0,
) -> CountedWindow:
    """Start maskline (behind ``MASKLINE_PREFIX``) in ``out`` with a small AXB plan, let it
    settle ``settle_s``; place ``warmup_calls`` calls first and wait ``tail_s`` for their
    transactions to end (what a first call pays once — a number's home location looked up
    and cached, a regular expression compiled, a module's data loaded — then stays out of the
    window); then, with ``mark = mark_for(its pid)``: ``mark("start")``, ``calls``
    calls at ``rate`` (all clean, else RuntimeError naming ``counter``), ``tail_s`` for every
    transaction to end through its timers, ``mark("calls")``, ``idle_s`` with nothing offered,
    ``mark("idle")``. Per call is then (window − idle rate × window) / calls, whatever the
    marks count."""
    plan = bindings_plan(x_count=COUNTED_X_COUNT, per_x=COUNTED_BINDINGS_PER_X)
    inf = out / "callers.csv"
    inf.write_text(sipp_inf(plan), encoding="ascii")
    print(f"{label}: work files in {out}", flush=True)
    with maskline_system(out / "maskline", plan, stalled_push=False, log_level="info") as system:
        pid = system.sut_pid
        assert pid is not None
        time.sleep(settle_s)
        if warmup_calls:
            warmup = run_step(system, rate, warmup_calls / rate, out / "warmup", inf)
            if warmup.successful != warmup.calls or warmup.failed:
                raise RuntimeError(
                    f"warm-up calls not clean under {counter}: {warmup.successful}/"
                    f"{warmup.calls} ok, {warmup.failed} failed (lower --rate)"
                )
            time.sleep(tail_s)
        mark = mark_for(pid)
        mark("start")
        started = time.monotonic()
        step = run_step(system, rate, calls / rate, out, inf)
        if step.successful != step.calls or step.failed or step.retransmissions:
            raise RuntimeError(
                f"calls not clean under {counter}: {step.successful}/{step.calls} ok, "
                f"{step.failed} failed, {step.retransmissions} retransmissions (lower --rate)"
            )
        time.sleep(tail_s)
        mark("calls")
        window_s = time.monotonic() - started
        idle_started = time.monotonic()
        time.sleep(idle_s)
        mark("idle")
        idle_window_s = time.monotonic() - idle_started
    return CountedWindow(pid=pid, step=step, window_s=window_s, idle_s=idle_window_s)


def collect_step(
    name: str,
    rate: int,
    calls: int,
    step_dir: Path,
    *,
    cpu: tuple[float, float, float, float, float],
    wall: float,
    note: str,
) -> StepResult:
    """A step's result from the SIPp files in ``step_dir``; ``cpu`` is the CPU seconds of the
    system under test, of its main thread, the caller SIPp, the callee SIPp, the machine."""
    sut_cpu, sut_main_cpu, uac_cpu, uas_cpu, busy = cpu

    def last_row(path: Path) -> dict[str, str]:
        rows = parse_stat_rows(path.read_text("utf-8", "replace")) if path.exists() else []
        return rows[-1] if rows else {}

    uac, uas = last_row(step_dir / "uac_stat.csv"), last_row(step_dir / "uas_stat.csv")
    samples: list[tuple[float, float]] = []
    for rtt_file in step_dir.glob("*_rtt.csv"):
        samples += parse_rtt(rtt_file.read_text("utf-8", "replace"))
    rtts = [r for _, r in samples]
    successful = stat_counter(uac, "SuccessfulCall(C)")
    # A call the caller saw end well but whose BYE never reached the callee is a half-released
    # call in the system under test: counted as failed.
    unreleased = max(0, successful - stat_counter(uas, "SuccessfulCall(C)"))
    failed = stat_counter(uac, "FailedCall(C)") + unreleased
    if unreleased:
        note = (note + " " if note else "") + f"{unreleased} BYE(s) not at callee"
    # The callee's own failures are not this step's: after an overloaded step the system under
    # test still releases (BYE) calls of that step whose caller gave up, and the callee SIPp of
    # the next step counts each such BYE of a dialog it never saw as a failed call.
    callee_failed = stat_counter(uas, "FailedCall(C)")
    if callee_failed:
        note = (note + " " if note else "") + f"callee: {callee_failed} unknown/failed dialogs"
    return StepResult(
        system=name,
        offered_cps=rate,
        calls=calls,
        successful=successful,
        failed=failed,
        retransmissions=stat_counter(uac, "Retransmissions(C)")
        + stat_counter(uas, "Retransmissions(C)"),
        achieved_cps=achieved_rate([t for t, _ in samples]),
        rtt_p50_ms=percentile(rtts, 50),
        rtt_p99_ms=percentile(rtts, 99),
        sut_cpu_s=sut_cpu,
        sut_main_cpu_s=sut_main_cpu,
        uac_cpu_s=uac_cpu,
        uas_cpu_s=uas_cpu,
        machine_busy_s=busy,
        wall_s=wall,
        note=note,
    )


def ladder(
    system: System,
    rates: Sequence[int],
    args: argparse.Namespace,
    *,
    workdir: Path,
    inf: Path,
    all_steps: list[StepResult],
) -> list[StepResult]:
    """Step the offered load up until ``args.patience`` unclean steps in a row, then (full
    runs) one step between the highest clean rate and the first unclean one."""
    mine: list[StepResult] = []

    def step(rate: int, note: str = "") -> None:
        result = run_step(system, rate, args.seconds, workdir, inf, note=note)
        mine.append(result)
        all_steps.append(result)
        print(format_steps([result]).splitlines()[-1], flush=True)

    for rate in rates:
        step(rate)
        if unclean_streak(mine) >= args.patience:
            break
    for _ in range(args.refine):
        mid = refine_rate(mine)
        if mid is None:
            break
        step(mid, "refine")
    return mine


def sustain(
    system: System,
    rate: int,
    args: argparse.Namespace,
    *,
    workdir: Path,
    inf: Path,
    quiet_since: float,
) -> list[StepResult]:
    """Hold ``rate`` for ``args.sustain`` s, measuring the steady state; an unclean hold is
    tried again SUSTAIN_STEP_DOWN lower, up to SUSTAIN_TRIES holds. Each starts
    RETENTION_WINDOW_S after the step before it (``quiet_since``, time.monotonic()), whose
    kept state would otherwise be released during it."""
    held: list[StepResult] = []
    for _ in range(SUSTAIN_TRIES):
        time.sleep(max(0.0, quiet_since + RETENTION_WINDOW_S - time.monotonic()))
        step = run_step(system, rate, args.sustain, workdir, inf, note="sustained", steady=True)
        quiet_since = time.monotonic()
        held.append(step)
        line = format_steps([step]).splitlines()[-1]
        print(
            f"{line}   steady CPU ms/call {fmt(step.steady_cpu_ms_per_call, '.3f')} "
            f"(loop {fmt(step.steady_main_ms_per_call, '.3f')})",
            flush=True,
        )
        if step.clean:
            break
        rate = step_down(rate)
    return held


# ======================================================================== wire capture
# SIPp times responses with a coarse clock (every figure here is a multiple of 4 ms), so its p99
# cannot tell 1 ms from 4. --wire measures maskline's own share on the wire instead: tcpdump on
# loopback during the half-load step, and per call (caller leg INVITE in → its 200 out) minus
# (callee leg INVITE out → its 200 in), from the kernel's capture timestamps (µs).
_CALL_ID_RE = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_CSEQ_RE = re.compile(rb"\r\ncseq[ \t]*:[ \t]*\d+[ \t]+([A-Za-z]+)", re.IGNORECASE)
_FROM_USER_RE = re.compile(rb"\r\n(?:from|f)[ \t]*:[^\r\n]*?sips?:([^@;>\r\n]+)@", re.IGNORECASE)
_TO_USER_RE = re.compile(rb"\r\n(?:to|t)[ \t]*:[^\r\n]*?sips?:([^@;>\r\n]+)@", re.IGNORECASE)
TCPDUMP_MISSING = "needs tcpdump (Debian: apt-get install tcpdump), and the right to capture"

# Link-layer header lengths of the pcap link types tcpdump writes for "lo".
_LINK_HEADER_BYTES = {0: 4, 1: 14, 113: 16, 276: 20}
PAIRING_DIGITS = 8  # A = 138 + i, B = 139 + i (bindings_plan): the last 8 digits pair the legs


def pcap_udp_datagrams(data: bytes) -> Iterator[tuple[float, int, int, bytes]]:
    """``(time_s, source port, destination port, payload)`` of each IPv4 UDP packet of a
    classic pcap file's bytes (µs or ns timestamps, either byte order)."""
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (link_type,) = struct.unpack(order + "I", data[20:24])
    link_bytes = _LINK_HEADER_BYTES.get(link_type & 0xFFFF)
    if link_bytes is None:
        raise ValueError(f"pcap link type {link_type} not handled")
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        packet = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ip = packet[link_bytes:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            continue
        udp = (ip[0] & 0x0F) * 4
        source, destination = struct.unpack(">HH", ip[udp : udp + 4])
        stamp = seconds + fraction / (1e9 if nanos else 1e6)
        yield stamp, source, destination, ip[udp + 8 :]


def wire_added_pdd_s(
    datagrams: Iterator[tuple[float, int, int, bytes]], *, sip_port: int, uas_port: int
) -> list[float]:
    """maskline's added post-dial delay of each complete call, seconds: its time from the
    caller's INVITE to the 200 it relays, less the callee's time from our INVITE to its 200.
    A caller leg pairs with the next outbound INVITE to its B (same last digits as its A)."""
    inbound: dict[bytes, list[float]] = {}  # caller Call-ID → [INVITE in, 200 out]
    outbound: dict[bytes, list[float]] = {}  # callee Call-ID → [INVITE out, 200 in]
    waiting: dict[bytes, list[bytes]] = {}  # pairing digits → caller legs not yet forwarded
    pairs: list[tuple[bytes, bytes]] = []
    for stamp, source, destination, payload in datagrams:
        call_id = _CALL_ID_RE.search(payload)
        cseq = _CSEQ_RE.search(payload)
        if call_id is None or cseq is None or cseq.group(1).upper() != b"INVITE":
            continue
        key = call_id.group(1).strip()
        if payload.startswith(b"INVITE "):
            if destination == sip_port and source != uas_port and key not in inbound:
                found = _FROM_USER_RE.search(payload)
                if found is not None:
                    inbound[key] = [stamp, math.nan]
                    waiting.setdefault(found.group(1)[-PAIRING_DIGITS:], []).append(key)
            elif source == sip_port and destination == uas_port and key not in outbound:
                found = _TO_USER_RE.search(payload)
                queue = waiting.get(found.group(1)[-PAIRING_DIGITS:]) if found else None
                if queue:
                    outbound[key] = [stamp, math.nan]
                    pairs.append((queue.pop(0), key))
        elif payload.startswith(b"SIP/2.0 200"):
            if source == sip_port and key in inbound and math.isnan(inbound[key][1]):
                inbound[key][1] = stamp
            elif destination == sip_port and key in outbound and math.isnan(outbound[key][1]):
                outbound[key][1] = stamp
    added: list[float] = []
    for caller, callee in pairs:
        (invite_in, ok_out), (invite_out, ok_in) = inbound[caller], outbound[callee]
        if not (math.isnan(ok_out) or math.isnan(ok_in)):
            added.append((ok_out - invite_in) - (ok_in - invite_out))
    return added


@contextlib.contextmanager
def wire_capture(pcap: Path, ports: Sequence[int]) -> Iterator[None]:
    """tcpdump on loopback, UDP to or from ``ports``, into ``pcap`` while the block runs."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise RuntimeError(f"--wire {TCPDUMP_MISSING}")
    command = [tcpdump, "-i", "lo", "-n", "-s", "2048", "-B", "32768", "-w", str(pcap)]
    command.append(" or ".join(f"udp port {port}" for port in ports))
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on lo, ..." once it captures
    if proc.poll() is not None or b"listening" not in line:
        proc.wait()
        raise RuntimeError(f"tcpdump did not start: {line.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # flushes the file
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wire_summary(added_s: Sequence[float], rate: int) -> dict[str, Any]:
    """Percentiles of the added delays, ms."""
    ms = [value * 1000 for value in added_s]
    return {
        "rate": rate,
        "calls": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "p999_ms": percentile(ms, 99.9),
        "max_ms": max(ms, default=None),
    }


def format_wire(wire: dict[str, Any]) -> str:
    """One line: the added post-dial delay measured on the wire."""
    return (
        f"added post-dial delay on the wire at {wire['rate']} calls/s (maskline, tcpdump, "
        f"{wire['calls']} calls): p50 {fmt(wire['p50_ms'], '.2f')} ms, p99 "
        f"{fmt(wire['p99_ms'], '.2f')} ms, p99.9 {fmt(wire['p999_ms'], '.2f')} ms, max "
        f"{fmt(wire['max_ms'], '.2f')} ms   (target p99 < 5 ms)"
    )


# ======================================================================== profile
def profile_at(
    system: System, rate: int, args: argparse.Namespace, workdir: Path, inf: Path
) -> tuple[StepResult, str, Path] | None:
    """One step at ``rate`` with py-spy sampling the system under test (collapsed stacks)."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  py-spy not in .venv: `.venv/bin/pip install py-spy` to profile", flush=True)
        return None
    assert system.sut_pid is not None
    raw = OUT / f"cps-profile-{system.name}-{rate}.txt"
    duration = max(2, int(args.seconds))
    # Native unwinding pauses the process per sample: sampled less often, it stays unloaded.
    sample_hz = "40" if args.native else "250"
    command = [str(spy), "record", "--pid", str(system.sut_pid), "--rate", sample_hz]
    command += ["--duration", str(duration), "--format", "raw"]
    if args.native:  # the compiled modules' and CPython's C functions as frames too
        command.append("--native")
    spy_proc = subprocess.Popen(
        [*command, "--output", str(raw)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # py-spy attaches
    step = run_step(system, rate, args.seconds, workdir, inf, note="py-spy attached")
    try:
        spy_proc.wait(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        spy_proc.kill()
        spy_proc.wait()
    return step, raw.read_text("utf-8", "replace") if raw.exists() else "", raw


def format_profile(collapsed: str, rows: int = 20) -> str:
    """The main thread (event loop: self, by file, inclusive), then the other threads (SQLite
    writer, CDR and recording workers: self)."""
    loop = profile_top(collapsed, main_thread=True)
    others = profile_top(collapsed, main_thread=False)
    n_loop = int(loop["samples"][0][1]) if loop["samples"] else 0
    n_other = int(others["samples"][0][1]) if others["samples"] else 0
    lines = [f"main thread (event loop), {n_loop} samples", "self %   function (where)"]
    lines += [f"{share:6.1f}   {name}" for name, share in loop["self"][:rows]]
    lines += ["", "share %  nearest project file (main thread)"]
    lines += [f"{share:6.1f}   {name}" for name, share in loop["by_file"][:rows]]
    lines += ["", "incl %   function (main thread)"]
    lines += [f"{share:6.1f}   {name}" for name, share in loop["inclusive"][:rows]]
    lines += ["", f"other threads, {n_other} samples", "self %   function (where)"]
    lines += [f"{share:6.1f}   {name}" for name, share in others["self"][: rows // 2]]
    return "\n".join(lines)


# ============================================================================== plot
def plot(steps: Sequence[StepResult], path: Path) -> None:
    """Achieved vs offered load (left) and the system under test's CPU per call (right)."""
    import matplotlib  # noqa: PLC0415 - only where the plot is drawn
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax, cpu_ax) = plt.subplots(1, 2, figsize=(13, 5.5), width_ratios=(3, 2))
    systems = list(dict.fromkeys(s.system for s in steps))
    top = max((s.offered_cps for s in steps), default=100)
    low = min((s.offered_cps for s in steps), default=100) * 0.8
    ax.plot([low, top], [low, top], color="0.75", linestyle=":", label="achieved = offered")
    styles = {"direct": "o-", "sippy": "s-", "maskline": "D-", "maskline+stalled-push": "x--"}
    for name in systems:
        mine = sorted((s for s in steps if s.system == name), key=lambda s: s.offered_cps)
        style = styles.get(name, "^-")
        offered = [s.offered_cps for s in mine]
        ax.plot(offered, [s.achieved_cps for s in mine], style, label=name)
        bad = [s for s in mine if not s.clean]
        ax.scatter(
            [s.offered_cps for s in bad],
            [s.achieved_cps for s in bad],
            s=90,
            facecolors="none",
            edgecolors="red",
            zorder=3,
        )
        best = max_clean(mine, name)
        if best is not None:
            ax.annotate(
                f"{best.offered_cps}",
                (best.offered_cps, best.achieved_cps),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize=8,
            )
        cpu_ax.plot(offered, [s.cpu_ms_per_call or 0 for s in mine], style, label=name)
    # Log-log: the B2BUAs' few hundred calls/s stay readable beside direct's thousands.
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [t for t in (50, 100, 200, 300, 500, 1000, 2000, 3000, 5000) if t <= top * 1.5]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("offered load (calls/s)")
    ax.set_ylabel("achieved call setups (calls/s)")
    ax.set_title(
        f"Call setup on loopback ({CALL_HOLD_MS} ms calls); red rings: unclean steps", fontsize=10
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    cpu_ax.set_xlabel("offered load (calls/s)")
    cpu_ax.set_ylabel("CPU of the system under test per call (ms)")
    cpu_ax.set_yscale("log")
    cpu_ax.axhline(
        0.6, color="green", linestyle="--", linewidth=1, label="target 0.6 ms (maskline)"
    )
    cpu_ax.yaxis.set_major_formatter(plain)
    cpu_ax.yaxis.set_minor_formatter(plain)
    cpu_ax.legend(loc="best", fontsize=8)
    cpu_ax.set_title("CPU per answered call (direct: the callee SIPp)", fontsize=10)
    cpu_ax.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================== main
def bootstrap() -> None:
    """Run from a fresh clone with any python3: set up .venv (``make deps``: the project, its
    dev extras — sippy, matplotlib — and SIPp) and re-run this script with it."""
    if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve():
        return
    if not VENV_PYTHON.exists() or _needs_deps():
        print("setting up .venv and SIPp with `make deps` ...", flush=True)
        subprocess.run(["make", "-C", str(ROOT), "deps"], check=True)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


def _needs_deps() -> bool:
    probe = "import matplotlib, sippy, httpx"
    done = subprocess.run([str(VENV_PYTHON), "-c", probe], capture_output=True, check=False)
    return done.returncode != 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s steps, coarse rates (~2 min)")
    parser.add_argument("--seconds", type=float, help="seconds per step (default 10; quick 3)")
    parser.add_argument("--rates", help="comma-separated offered rates (calls/s) to step through")
    parser.add_argument(
        "--systems",
        default="direct,sippy,maskline,stalled",
        help="any of direct, sippy, maskline, stalled (default: all)",
    )
    parser.add_argument(
        "--patience", type=int, help="stop a system after this many unclean steps in a row"
    )
    parser.add_argument("--refine", type=int, help="extra steps between clean and unclean")
    parser.add_argument("--profile", action="store_true", help="py-spy maskline at its knee")
    parser.add_argument(
        "--native", action="store_true", help="with --profile: C frames too (compiled modules)"
    )
    parser.add_argument(
        "--wire",
        action="store_true",
        help="tcpdump the half-load step: maskline's added post-dial delay to the µs",
    )
    parser.add_argument(
        "--half-rate",
        type=int,
        default=None,
        help="run the post-dial delay step at this rate, not at half maskline's highest clean"
        " one (A/B runs of the delay at a fixed load)",
    )
    parser.add_argument(
        "--no-half",
        action="store_true",
        help="skip the half-load post-dial delay step (short A/B runs of the ladder alone)",
    )
    parser.add_argument(
        "--sustain",
        type=float,
        help=(
            "hold maskline's highest clean rate this many seconds, past the 32 s its ended "
            f"calls are kept, and measure the steady state (default {SUSTAIN_S:g}; quick and "
            "0: not run)"
        ),
    )
    parser.add_argument("--log-level", default="info", help="maskline's [log] level (info)")
    parser.add_argument(
        "--overload",
        action="append",
        default=[],
        metavar="KEY=N",
        help="a key of maskline's [overload] section (repeatable), e.g. full_gc_interval_s=10",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where figures go (bench/out)")
    args = parser.parse_args(argv)
    args.overload_settings = {}
    for setting in args.overload:
        key, _, value = setting.partition("=")
        if not key.isidentifier() or not value.strip().isdigit():
            parser.error(f"--overload {setting!r}: expected KEY=N")
        args.overload_settings[key] = int(value)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    if args.sustain is None:
        args.sustain = 0.0 if args.quick else SUSTAIN_S
    shortest = STEADY_FROM_S + STEADY_TAIL_S + 10
    if 0 < args.sustain < shortest:
        parser.error(f"--sustain {args.sustain:g}: 0 or at least {shortest:g} s")
    args.rate_list = (
        tuple(int(r) for r in args.rates.split(","))
        if args.rates
        else (QUICK_RATES if args.quick else FULL_RATES)
    )
    args.patience = args.patience or (1 if args.quick else 2)
    args.refine = args.refine if args.refine is not None else (0 if args.quick else 1)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.system_list) - {"direct", "sippy", "maskline", "stalled"}
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.wire and args.no_half:
        parser.error("--wire measures the half-load step, which --no-half skips")
    if args.wire and shutil.which("tcpdump") is None:
        # Checked before the ladder: found missing only at the half-load step, a full run
        # would end after ~15 minutes with nothing printed.
        parser.error(f"--wire {TCPDUMP_MISSING}")
    if args.half_rate is not None and (args.no_half or args.half_rate < 1):
        parser.error("--half-rate needs a rate of 1 or more, and the half-load step")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = out / f"cps-{stamp}"
    workdir.mkdir(parents=True)
    plan = bindings_plan()
    inf = workdir / "callers.csv"
    inf.write_text(sipp_inf(plan), encoding="ascii")
    print(
        f"cps bench: {args.seconds:g} s steps, rates {list(args.rate_list)}, {CALL_HOLD_MS} ms "
        f"calls, {len(plan)} caller lines; load average {os.getloadavg()[0]:.2f}; "
        f"work files in {workdir}",
        flush=True,
    )
    # maskline runs on this interpreter; its build moves CPU per call by ~10 % (bench/README).
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    print(f"maskline's interpreter: {interpreter}, Python {platform.python_version()}", flush=True)
    print(format_steps([]).splitlines()[0], flush=True)
    steps: list[StepResult] = []
    half_steps: list[StepResult] = []
    sustained: list[StepResult] = []
    stalled: dict[str, Any] = {}
    wire: dict[str, Any] = {}
    profile_text = ""
    started = time.monotonic()
    chosen = args.system_list
    if "direct" in chosen:
        with direct_system() as system:
            ladder(system, args.rate_list, args, workdir=workdir, inf=inf, all_steps=steps)
    if "sippy" in chosen:
        with sippy_system(workdir) as system:
            ladder(system, args.rate_list, args, workdir=workdir, inf=inf, all_steps=steps)
    if "maskline" in chosen:
        with maskline_system(
            workdir / "maskline",
            plan,
            stalled_push=False,
            log_level=args.log_level,
            overload=args.overload_settings,
        ) as system:
            ladder(system, args.rate_list, args, workdir=workdir, inf=inf, all_steps=steps)
            ladder_ended = time.monotonic()
            best = max_clean(steps, "maskline")
            half = args.half_rate or (max(1, best.offered_cps // 2) if best else None)
            if half and not args.no_half:
                # The ladder ends with overloaded steps: their transactions and ended calls
                # live on for 64*T1 and their timers would all fire during the half step.
                time.sleep(max(0.0, ladder_ended + RETENTION_WINDOW_S - time.monotonic()))
                pcap = workdir / f"wire-maskline-{half}.pcap"
                ports = (system.target_port, system.uas_port)
                capture = wire_capture(pcap, ports) if args.wire else contextlib.nullcontext()
                with capture:
                    step = run_step(system, half, args.seconds, workdir, inf, note="half")
                half_steps.append(step)
                if args.wire:
                    added = wire_added_pdd_s(
                        pcap_udp_datagrams(pcap.read_bytes()), sip_port=ports[0], uas_port=ports[1]
                    )
                    wire = wire_summary(added, half)
                print(format_steps(half_steps[-1:]).splitlines()[-1], flush=True)
                if wire:
                    print(format_wire(wire), flush=True)
            if best is not None and args.sustain > 0:
                last_step_ended = ladder_ended if args.no_half else time.monotonic()
                sustained = sustain(
                    system,
                    best.offered_cps,
                    args,
                    workdir=workdir,
                    inf=inf,
                    quiet_since=last_step_ended,
                )
            if best is not None and args.profile:
                profiled = profile_at(system, best.offered_cps, args, workdir, inf)
                if profiled is not None:
                    step, collapsed, raw = profiled
                    print(format_steps([step]).splitlines()[-1], flush=True)
                    profile_text = format_profile(collapsed)
                    print(f"\nprofile ({raw}):\n{profile_text}\n", flush=True)
    if "stalled" in chosen:
        with maskline_system(
            workdir / "stalled",
            plan,
            stalled_push=True,
            log_level=args.log_level,
            overload=args.overload_settings,
        ) as system:
            ladder(system, args.rate_list, args, workdir=workdir, inf=inf, all_steps=steps)
            queue = _ok(
                system.extra["api"].get(f"/tenants/{system.extra['tenant_id']}/report-queue")
            )
            receiver: StalledReceiver = system.extra["receiver"]
            stalled = stalled_comparison(steps)
            stalled["queue"] = {
                **{k: v for k, v in queue.items() if k != "tenant_id"},
                "receiver_connections": receiver.connections,
                "receiver_bytes_read": receiver.bytes_read,
            }
    if half_steps and "direct" in chosen:
        with direct_system() as system:
            rate = half_steps[0].offered_cps
            half_steps.append(run_step(system, rate, args.seconds, workdir, inf, note="half"))
            print(format_steps(half_steps[-1:]).splitlines()[-1], flush=True)
    names = [n for n in ("direct", "sippy", "maskline") if n in chosen]
    summary = summarise(steps, names, half_steps, stalled, sustained)
    print(f"\n{format_steps([*steps, *half_steps, *sustained])}\n", flush=True)
    print(format_summary(summary), flush=True)
    if wire:
        print(format_wire(wire), flush=True)
    png = out / "cps.png"
    plot(steps, png)
    result = {
        "when": stamp,
        "seconds_per_step": args.seconds,
        "call_hold_ms": CALL_HOLD_MS,
        "load_average_start": os.getloadavg(),
        "run_s": round(time.monotonic() - started, 1),
        "steps": [{**asdict(s), "clean": s.clean} for s in steps],
        "half_steps": [{**asdict(s), "clean": s.clean} for s in half_steps],
        "sustained_steps": [{**asdict(s), "clean": s.clean} for s in sustained],
        "summary": asdict(summary),
        "profile": profile_text,
        "wire_added_pdd": wire,
    }
    (out / "cps.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    print(f"\nplot: {png}\nfigures: {out / 'cps.json'}\nrun took {result['run_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    bootstrap()
    sys.exit(main())
