"""bench/heap.py's hook: in a process whose arguments say ``serve``, SIGUSR1 writes the tracked
objects by type and what one full collection found unreachable, by type."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench_scripts import load_bench_script

bench = load_bench_script("heap")

_PROGRAM = """
import gc, os, signal
gc.disable()  # the cycle below must wait for the hook's collection
class Ring:
    pass
class Kept:
    pass
first, second = Ring(), Ring()
first.other, second.other = second, first
del first, second
kept = [Kept() for _ in range(50)]
os.kill(os.getpid(), signal.SIGUSR1)
"""


def _run(tmp_path: Path, *argv: str) -> tuple[int, Path]:
    bench.write_sitecustomize(tmp_path)
    report = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BENCH_HEAP_REPORT": str(report)}
    done = subprocess.run([sys.executable, "-c", _PROGRAM, *argv], check=False, env=env, timeout=60)
    return done.returncode, report


def test_the_hook_counts_tracked_objects_and_the_cycles_a_collection_finds(
    tmp_path: Path,
) -> None:
    returncode, report = _run(tmp_path, "serve")
    assert returncode == 0
    figures = json.loads(report.read_text())
    tracked = dict(figures["tracked_by_type"])
    assert tracked["Kept"] == 50
    assert figures["tracked_objects"] >= 50
    assert dict(figures["unreachable_by_type"])["Ring"] == 2
    assert figures["unreachable"] >= 2  # the two rings (and their attribute dicts)
    assert figures["full_collection_pause_ms"] >= 0


def test_the_hook_stays_out_of_other_processes(tmp_path: Path) -> None:
    returncode, report = _run(tmp_path, "backup")
    assert returncode == -signal.SIGUSR1  # no handler: the signal's default action
    assert not report.exists()
