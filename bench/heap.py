"""What the serving process holds under load, and what a full collection of it costs.

One ``bench/cps.py`` step of maskline alone (``--rate`` calls/s for ``--seconds``), with a
``sitecustomize`` module put first on the served process's path: on SIGUSR1 it counts the
objects the cyclic garbage collector tracks, by type; runs one full collection (``gc.collect()``
under ``DEBUG_SAVEALL``, timed), counting what it found unreachable, by type; and writes both as
JSON. This script sends the signal ``--at`` seconds after the server started (the step begins
after ~5 s of provisioning; the call state reaches its steady size ~33 s into the load: a call's
objects are kept 64*T1 = 32 s after it ends), prints the report and the step's line.

What it answers: how many objects a call keeps, what a full collection pauses the event loop
for at that load (engine/gc_policy.py: scheduled ones wait while that is over
``[overload] max_gc_pause_ms``), and whether the call path leaves reference cycles behind
(anything in "unreachable" is one; under load, cycles the young collections miss stay until a
full one). The timed collection itself stops the loop at load: the step usually shows the
failed calls and retransmissions that pause causes.

Usage (from the repository root, after ``make deps``)::

    .venv/bin/python bench/heap.py                          # 1,000 calls/s, signal at 50 s
    .venv/bin/python bench/heap.py --rate 300 --seconds 60 --at 50
    PYTHONPATH=/path/to/other/tree .venv/bin/python bench/heap.py   # another tree
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

# Runs in every Python process that has the temporary directory first on its path; acts only
# in `maskline serve`.
_SITECUSTOMIZE = """
import os, sys
if "serve" in sys.argv and os.environ.get("BENCH_HEAP_REPORT"):
    import collections, gc, json, signal, time

    def _report(*_):
        objects = gc.get_objects()
        tracked = collections.Counter(type(o).__qualname__ for o in objects)
        count = len(objects)
        del objects
        gc.set_debug(gc.DEBUG_SAVEALL)
        started = time.perf_counter()
        found = gc.collect()
        pause_s = time.perf_counter() - started
        garbage = collections.Counter(type(o).__qualname__ for o in gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        with open(os.environ["BENCH_HEAP_REPORT"], "w") as out:
            json.dump({
                "tracked_objects": count,
                "tracked_by_type": tracked.most_common(30),
                "full_collection_pause_ms": round(pause_s * 1000, 1),
                "unreachable": found,
                "unreachable_by_type": garbage.most_common(30),
            }, out)

    signal.signal(signal.SIGUSR1, _report)
"""


def write_sitecustomize(directory: Path) -> None:
    """The hook, as ``directory/sitecustomize.py`` (put ``directory`` first on PYTHONPATH; the
    process reports to the file named by ``BENCH_HEAP_REPORT``)."""
    Path(directory, "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")


def _served_pid(after: float, timeout_s: float) -> int:
    """The ``maskline serve`` process started after ``after`` (time.time())."""
    deadline = time.monotonic() + timeout_s
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as handle:
        boot = next(float(line.split()[1]) for line in handle if line.startswith("btime"))
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                started = (
                    boot + int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
                )
            except (OSError, IndexError, ValueError):
                continue
            if (
                b"serve" in argv
                and any(a.endswith(b"maskline") for a in argv)
                and started >= after - 1
            ):
                return int(entry.name)
        time.sleep(0.2)
    raise RuntimeError("no `maskline serve` started")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="calls/s offered (1000)")
    parser.add_argument("--seconds", type=float, default=60, help="the step's length (60)")
    parser.add_argument(
        "--at", type=float, default=50, help="seconds after the server's start (50)"
    )
    parser.add_argument("--out", default=str(_ROOT / "bench" / "out" / "heap"), help="work files")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maskline-heap-") as site:
        write_sitecustomize(Path(site))
        report = out / "report.json"
        report.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        # Not a MASKLINE_* name: cps.py keeps those away from the served process.
        env["BENCH_HEAP_REPORT"] = str(report)
        started = time.time()
        bench = subprocess.Popen(
            [sys.executable, str(_ROOT / "bench" / "cps.py"), "--systems", "maskline",
             "--rates", str(args.rate), "--seconds", str(args.seconds), "--no-half",
             "--patience", "1", "--refine", "0", "--sustain", "0", "--out", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        pid = _served_pid(started, timeout_s=60)
        time.sleep(max(0.0, args.at - (time.time() - started)))
        rss_kb = _rss_kb(pid)
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        output, _ = bench.communicate(timeout=args.seconds + 300)
    step = [
        line
        for line in output.decode("utf-8", "replace").splitlines()
        if line.startswith("maskline ")
    ]
    if not report.exists():
        print(output.decode("utf-8", "replace")[-3000:])
        print("no report: the hook did not run (is the served process a Python one?)")
        return 1
    figures = json.loads(report.read_text())
    print(f"maskline at {args.rate} calls/s, {args.at:.0f} s after start: RSS {rss_kb // 1024} MB")
    print(f"  tracked objects {figures['tracked_objects']:,}; "
          f"a full collection: {figures['full_collection_pause_ms']} ms, "
          f"{figures['unreachable']} unreachable")  # fmt: skip
    print(
        "  tracked, by type: "
        + ", ".join(f"{name} {n:,}" for name, n in figures["tracked_by_type"][:15])
    )
    if figures["unreachable_by_type"]:
        print(
            "  unreachable, by type: "
            + ", ".join(f"{name} {n:,}" for name, n in figures["unreachable_by_type"])
        )
    if step:
        print("  the step (the collection above paused it):")
        print("  " + step[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
