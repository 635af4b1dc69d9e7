"""The pure parts of bench/instructions.py: callgrind's file format (own cost per function,
compressed names, call costs not counted as the caller's own), thread numbers from file names,
and the per-call arithmetic (window minus the idle rate). The counts themselves come from
running the benchmark under valgrind."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from bench_scripts import load_bench_script

bench = load_bench_script("instructions")

# What callgrind writes with --dump-instr=no --compress-strings=yes (its default): the first
# mention of a name defines its number; "calls=" is followed by the call's inclusive cost line.
DUMP = """\
version: 1
creator: callgrind-3.19.0
pid: 3615
cmd:  maskline serve
part: 1
thread: 1
positions: line
events: Ir
summary: 1750

ob=(1) /usr/lib/libpython3.11.so
fl=(1) Objects/dictobject.c
fn=(1) _Py_dict_lookup
12 100
+2 50
cfl=(2) Objects/obmalloc.c
cfn=(2) _PyObject_Malloc
calls=3 40
* 900
fl=(2)
fn=(2)
40 600
-3 100
fn=(3) main
1 0
cfn=(1)
calls=1 12
5 1150
"""


def test_own_cost_sums_a_functions_cost_lines_but_not_the_costs_of_its_calls() -> None:
    cost = bench.parse_callgrind(DUMP, thread=1)
    assert cost.thread == 1
    assert cost.total == 1750  # the summary line
    assert cost.own["_Py_dict_lookup"] == 150  # 100 + 50; the 900 of its call is the callee's
    assert cost.own["_PyObject_Malloc"] == 700  # defined by cfn=(2), used later as fn=(2)
    assert cost.own["main"] == 0  # its 1150 is the inclusive cost of calling _Py_dict_lookup
    assert sum(cost.own.values()) == 850


def test_a_file_without_summary_totals_its_own_costs() -> None:
    text = "fn=(1) f\n1 10\n2 5\n"
    cost = bench.parse_callgrind(text, thread=2)
    assert cost.total == 15
    assert cost.own == Counter({"f": 15})


@pytest.mark.parametrize(
    ("name", "thread"),
    [("cg.3615.1-01", 1), ("cg.3615.2-07", 7), ("cg.3615-03", 3), ("cg.3615", 1)],
)
def test_thread_number_comes_from_the_file_name(name: str, thread: int) -> None:
    assert bench.thread_of(Path(name)) == thread


def _cost(thread: int, total: int, **own: int) -> object:
    return bench.ThreadCost(thread=thread, total=total, own=Counter(own))


def test_per_call_subtracts_the_idle_rate_over_the_windows_length() -> None:
    window = [_cost(1, 10_000_000, f=6_000_000, g=1_000_000), _cost(2, 3_000_000)]
    # 10 s idle: 100,000 a second on the loop, 20,000 on the writer; the window was 20 s.
    idle = [_cost(1, 1_000_000, f=0, g=500_000), _cost(2, 200_000)]
    result = bench.per_call(window, idle, calls=100, window_s=20.0, idle_s=10.0, top=5)
    assert result.loop == pytest.approx((10_000_000 - 2_000_000) / 100)
    assert result.other_threads == pytest.approx((3_000_000 - 400_000) / 100)
    assert result.total == pytest.approx(result.loop + result.other_threads)
    assert result.top[0] == ("f", 60_000.0)
    assert ("g", 0.0) in result.top  # 1,000,000 in the window, 2 × 500,000 of idle


def test_short_name_keeps_the_symbol_and_the_file() -> None:
    long = "/tmp/Python-3.11.7/Objects/dictobject.c:_Py_dict_lookup [/usr/lib/libpython3.11.so]"
    assert bench.short_name(long) == "_Py_dict_lookup (dictobject.c)"
    assert bench.short_name("0x0000000004936718") == "0x0000000004936718"


def test_the_report_names_the_threads_and_the_share_of_each_function() -> None:
    result = bench.PerCall(calls=10, loop=2_000_000.0, other_threads=500_000.0, top=[("f", 1e6)])
    text = bench.format_result(result, label="tree A")
    assert "tree A: 10 calls" in text
    assert "2.000 M" in text and "0.500 M" in text and "2.500 M" in text
    assert "50.0 %  f" in text
