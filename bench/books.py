"""Per-call bookkeeping cost: reports, call record, CDR line and call metrics, as the B2BUA drives
them, on uvloop with a real SQLite file. See bench/README.md ("books.py").

    .venv/bin/python bench/books.py                      # 600 calls/s, 3000 calls per mode
    .venv/bin/python bench/books.py --rate 1000 --calls 5000 --repeats 2
    .venv/bin/python bench/books.py --profile out.prof   # cProfile of the loop thread (books)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

from api.reports import CallReports
from engine.calls import Call, CallState, Leg
from engine.logging import configure_logging, write_out_logs
from engine.metrics import CallMetrics
from engine.records import CallRecorder, call_record_of
from engine.server import CallEventsFanOut, observed_write
from routing.model import BindingType
from sip.transport import Peer
from store.cdr import CdrWriter
from store.db import Database
from store.records import ReleaseDir
from store.repositories import create_pool, create_tenant, insert_call_record

ZONE = ZoneInfo("Asia/Shanghai")
TICK_S = 0.01  # calls are issued in 10 ms ticks
HOLD_S = 0.1  # a call ends this long after it was answered (cps.py's 100 ms calls)
MODES = ("books", "record_only", "harness")


@dataclass(frozen=True, slots=True)
class Result:
    mode: str
    calls: int
    wall_s: float
    loop_cpu_s: float
    process_cpu_s: float
    ops_per_batch: float
    report_rounds: int
    per_thread: dict[str, float]  # CPU seconds per call of each worker thread

    @property
    def threads_cpu_s(self) -> float:
        return max(0.0, self.process_cpu_s - self.loop_cpu_s)


class _Control:
    """What ``CallReports`` reads of the control plane on the write path."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.zone = ZONE


def _thread_cpu() -> dict[str, float]:
    """CPU seconds so far of every live thread, by name."""
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is not None:
            clock = time.pthread_getcpuclockid(thread.ident)
            cpu[thread.name] = cpu.get(thread.name, 0.0) + time.clock_gettime(clock)
    return cpu


def _call(index: int, pool_key: str, now: float) -> Call:
    peer = Peer("UDP", "127.0.0.1", 5060)
    call = Call(
        call_id=f"bench{index:012d}",
        inbound=Leg(peer=peer, call_id=f"in-{index}@bench", local_tag=f"t{index}"),
        x="13800138000",
        caller="13900139000",
        callee="13700137000",
        state=CallState.ROUTING,
        sub_id=f"{index:016d}",
        pool_key=pool_key,
        out_id="order-42",
        call_type=0,
        phone_no="13900139000",
        peer_no="13700137000",
        call_time=now,
    )
    return call


async def _drive(
    *,
    rate: float,
    calls: int,
    pool_key: str,
    events: Any,
    sink: Callable[[Call], Coroutine[Any, Any, None]],
    profile: cProfile.Profile | None,
) -> tuple[float, float, float]:
    """Issue ``calls`` calls at ``rate`` as the B2BUA does: started and call-out, ringing,
    answered, and HOLD_S later the record sink in a task of its own. Returns (wall, loop CPU,
    process CPU) from the first call to the last record written."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    per_tick = rate * TICK_S
    issued = 0
    owed = 0.0

    def end(call: Call) -> None:
        call.release_time = time.time()
        call.release_dir = ReleaseDir.CALLER
        task = loop.create_task(sink(call))
        pending.add(task)
        task.add_done_callback(pending.discard)

    wall0, loop0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
    if profile is not None:
        profile.enable()
    start = loop.time()
    tick = 0
    while issued < calls:
        owed += per_tick
        while owed >= 1 and issued < calls:
            owed -= 1
            now = time.time()
            call = _call(issued, pool_key, now)
            issued += 1
            events.call_started(call)
            call.call_out_time = now
            call.ring_time = now
            events.call_ringing(call)
            call.start_time = now
            events.call_answered(call)
            loop.call_later(HOLD_S, end, call)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * TICK_S - loop.time()))
    await asyncio.sleep(HOLD_S * 1.5)
    while pending:
        await asyncio.gather(*list(pending))
    if profile is not None:
        profile.disable()
    return (
        time.perf_counter() - wall0,
        time.thread_time() - loop0,
        time.process_time() - proc0,
    )


class _NoEvents:
    def call_started(self, call: Call) -> None: ...
    def call_ringing(self, call: Call) -> None: ...
    def call_answered(self, call: Call) -> None: ...


async def _run_mode(
    mode: str, *, rate: float, calls: int, workdir: Path, profile: cProfile.Profile | None
) -> Result:
    db = await Database.open(workdir / "maskline.db")  # as `maskline serve` (synchronous FULL)
    try:
        await create_tenant(db, tenant_id="t1", name="bench")
        pool_key = await create_pool(db, type=BindingType.AXB, name="p", tenant_id="t1")
        reports = CallReports(cast(Any, _Control(db)))
        metrics = CallMetrics(clock=time.monotonic)
        cdr = CdrWriter(workdir / "cdr", ZONE)
        events: Any
        sink: Callable[[Call], Coroutine[Any, Any, None]]
        if mode == "books":
            events = CallEventsFanOut(reports, metrics)
            recorder = CallRecorder(
                db,
                cdr,
                recording_dir=workdir / "rec",
                zone=ZONE,
                write_record=observed_write(reports.call_ended, metrics.call_ended),
            )

            async def books_sink(call: Call) -> None:
                await recorder(call, None)

            sink = books_sink
        elif mode == "record_only":
            events = _NoEvents()

            async def record_sink(call: Call) -> None:
                await insert_call_record(db, call_record_of(call))

            sink = record_sink
        else:
            events = _NoEvents()

            async def harness_sink(call: Call) -> None:
                call_record_of(call)

            sink = harness_sink
        batches0, ops0 = db.batches_committed, db.ops_committed
        threads0 = _thread_cpu()
        wall, loop_cpu, proc_cpu = await _drive(
            rate=rate,
            calls=calls,
            pool_key=pool_key,
            events=events,
            sink=sink,
            profile=profile if mode == "books" else None,
        )
        await reports.close()
        await cdr.close()
        threads1 = _thread_cpu()
        per_thread = {
            name: (cpu - threads0.get(name, 0.0)) / calls
            for name, cpu in threads1.items()
            if name != "MainThread"
        }
        batches = db.batches_committed - batches0
        ops = db.ops_committed - ops0
        if mode == "books":
            await _check(db, calls, workdir / "cdr")
        return Result(
            mode,
            calls,
            wall,
            loop_cpu,
            proc_cpu,
            ops / batches if batches else 0.0,
            reports.rounds,
            per_thread,
        )
    finally:
        await db.close()


async def _check(db: Database, calls: int, cdr_dir: Path) -> None:
    """Everything was written: a record and four reports per call, one CDR line per call."""

    def counts(conn: Any) -> tuple[int, int]:
        records = conn.execute("SELECT count(*) FROM call_records").fetchone()[0]
        reports = conn.execute("SELECT count(*) FROM report_outbox").fetchone()[0]
        return int(records), int(reports)

    records, reports = await db.read(counts)
    lines = sum(len(p.read_text("utf-8").splitlines()) - 1 for p in cdr_dir.glob("cdr-*.csv"))
    if (records, reports, lines) != (calls, 4 * calls, calls):
        raise SystemExit(f"check failed: {records} records, {reports} reports, {lines} CDR lines")


def _table(results: list[Result]) -> str:
    out = io.StringIO()
    out.write(
        f"{'mode':<12} {'calls':>6} {'wall s':>7} {'loop µs/call':>13} {'threads µs/call':>16}"
        f" {'total µs/call':>14} {'ops/batch':>10} {'rounds':>7}\n"
    )
    for r in results:
        per = 1e6 / r.calls
        out.write(
            f"{r.mode:<12} {r.calls:>6} {r.wall_s:>7.2f} {r.loop_cpu_s * per:>13.1f}"
            f" {r.threads_cpu_s * per:>16.1f} {r.process_cpu_s * per:>14.1f}"
            f" {r.ops_per_batch:>10.1f} {r.report_rounds:>7}\n"
        )
    return out.getvalue()


async def _main(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    profile = cProfile.Profile() if args.profile else None
    for _ in range(args.repeats):
        for mode in MODES:
            with tempfile.TemporaryDirectory(prefix="books-") as tmp:
                results.append(
                    await _run_mode(
                        mode, rate=args.rate, calls=args.calls, workdir=Path(tmp), profile=profile
                    )
                )
    if profile is not None:
        profile.dump_stats(args.profile)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=600.0, help="calls per second")
    parser.add_argument("--calls", type=int, default=3000, help="calls per mode and repeat")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--log-level", default="info", help="of the serving process's JSON log (default info)"
    )
    parser.add_argument("--profile", help="write a cProfile of the loop thread (books mode)")
    args = parser.parse_args()
    # Log as the serving process does (JSON, info, 50 ms batches), into the temp dir's null.
    sink = open(os.devnull, "w")  # noqa: SIM115
    configure_logging(args.log_level, "json", stream=sink, batch_interval_s=0.05)
    uvloop.install()
    print(
        f"books.py: {args.calls} calls at {args.rate:g}/s per mode, {args.repeats} repeat(s),"
        f" python {sys.version.split()[0]}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC,"
        f" threads at start {threading.active_count()}"
    )
    results = asyncio.run(_main(args))
    write_out_logs()
    print(_table(results))
    by_mode: dict[str, list[Result]] = {}
    for r in results:
        by_mode.setdefault(r.mode, []).append(r)
    harness = min(r.process_cpu_s / r.calls for r in by_mode["harness"])
    harness_loop = min(r.loop_cpu_s / r.calls for r in by_mode["harness"])
    for mode in ("books", "record_only"):
        best = min(by_mode[mode], key=lambda r: r.process_cpu_s)
        print(
            f"{mode:<12} best, harness subtracted: loop"
            f" {(best.loop_cpu_s / best.calls - harness_loop) * 1e6:.1f} µs/call, threads"
            f" {best.threads_cpu_s / best.calls * 1e6:.1f} µs/call, total"
            f" {(best.process_cpu_s / best.calls - harness) * 1e6:.1f} µs/call"
        )
    best_books = min(by_mode["books"], key=lambda r: r.process_cpu_s)
    threads = ", ".join(
        f"{name} {cpu * 1e6:.1f}" for name, cpu in sorted(best_books.per_thread.items()) if cpu
    )
    print(f"books        worker threads, µs/call: {threads}")
    books = min(r.process_cpu_s for r in by_mode["books"]) / args.calls - harness
    ref = min(r.process_cpu_s for r in by_mode["record_only"]) / args.calls - harness
    print(f"books / record_only (the reference): {books / ref:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
