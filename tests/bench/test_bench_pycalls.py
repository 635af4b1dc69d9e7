"""The pure parts of bench/pycalls.py: a dump's rows as counts, the per-call arithmetic (window
minus the idle rate, loop and other threads apart), the names of code objects, and the counter
itself on this process's own calls. The counts of a server come from running the benchmark."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from bench_scripts import load_bench_script

bench = load_bench_script("pycalls")


def test_rows_of_one_name_are_added_up() -> None:
    rows = [["loop", "a.py:1 f", 3], ["loop", "a.py:1 f", 2], ["other", "a.py:1 f", 7]]
    assert bench.as_counts(rows) == {("loop", "a.py:1 f"): 5, ("other", "a.py:1 f"): 7}


def test_per_call_is_the_window_less_the_idle_rate() -> None:
    before = {("loop", "f"): 100, ("loop", "timer"): 10, ("other", "g"): 0}
    # 10 s window with 200 calls: f ran 1,000 times, the timer 20 times, g 400 times.
    after_calls = {("loop", "f"): 1_100, ("loop", "timer"): 30, ("other", "g"): 400}
    # 5 s idle: the timer ran 10 times (2 a second), nothing else.
    after_idle = {("loop", "f"): 1_100, ("loop", "timer"): 40, ("other", "g"): 400}
    result = bench.per_call(
        before, after_calls, after_idle, calls=200, window_s=10.0, idle_s=5.0, top=10
    )
    assert result.top == [("loop", "f", 5.0), ("other", "g", 2.0)]  # the timer: 20 - 2 x 10 = 0
    assert result.loop == 5.0 and result.other_threads == 2.0
    assert result.calls == 200


def test_top_keeps_the_most_called() -> None:
    after = {("loop", f"f{n}"): n * 100 for n in range(1, 6)}
    result = bench.per_call({}, after, after, calls=100, window_s=1.0, idle_s=1.0, top=2)
    assert [name for _, name, _ in result.top] == ["f5", "f4"]
    assert result.loop == pytest.approx(15.0)  # all five count in the total


def test_format_names_the_threads_and_the_totals() -> None:
    result = bench.PerCall(calls=10, loop=3.5, other_threads=1.0, top=[("loop", "x.py:3 f", 3.5)])
    text = bench.format_result(result, label="tree")
    assert "tree: interpreted calls per call over 10 calls" in text
    assert "event loop 3.5, other threads 1.0" in text
    assert "    3.50  loop    x.py:3 f" in text


def test_code_objects_are_named_by_file_line_and_qualified_name() -> None:
    assert bench.describe(json.dumps.__code__).startswith("stdlib/json/__init__.py:")
    assert bench.describe(json.dumps.__code__).endswith(" dumps")
    described = bench.describe(test_code_objects_are_named_by_file_line_and_qualified_name.__code__)
    assert described.startswith("tests/bench/test_bench_pycalls.py:")


def test_the_counter_counts_calls_per_thread_and_dumps_on_sigusr1(tmp_path: Path) -> None:
    def counted() -> None:
        pass

    previous = signal.getsignal(signal.SIGUSR1)
    try:
        bench.install_counter(tmp_path)
        for _ in range(3):
            counted()
        worker = threading.Thread(target=counted)
        worker.start()
        worker.join()
        os.kill(
            os.getpid(), signal.SIGUSR1
        )  # the handler runs in this thread, before the next line
        sys.setprofile(None)
        threading.setprofile(None)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        signal.signal(signal.SIGUSR1, previous)
    counts = bench.as_counts(json.loads((tmp_path / "1.json").read_text("utf-8")))
    name = bench.describe(counted.__code__)
    assert counts[("loop", name)] == 3
    assert counts[("other", name)] == 1
