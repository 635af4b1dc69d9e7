"""bench/deadlines.py: the steady-state deadline traffic fires every call's transactions once,
at their live deadlines, and the endpoint's queue fires as the reference heap does."""

from __future__ import annotations

import pytest
from bench_scripts import load_bench_script

from sip.endpoint import _Deadlines
from sip.events import TxKey

bench = load_bench_script("deadlines")


def test_every_transaction_ends_at_its_live_deadline() -> None:
    fired: list[tuple[int, TxKey]] = []
    bench.replay(bench.SingleHeap, rate=10, seconds=40.0, fired=fired)
    ticks = {key: tick for tick, key in fired}
    assert len(ticks) == len(fired)  # each fired once
    # Call n starts at tick 100*(n-1)+99 (10 calls/s in 1 ms ticks, the first when 1 is owed).
    first = "z9hG4bK-1-"
    assert ticks[(first + "0", "127.0.0.1:5070", "INVITE")] == 99 + 32_001  # M, not B
    assert ticks[(first + "1", "127.0.0.1:5070", "INVITE")] == 99 + 32_002  # L
    assert ticks[(first + "2", "127.0.0.1:5070", "BYE")] == 99 + 5_003  # K, not F
    assert ticks[(first + "3", "127.0.0.1:5070", "BYE")] == 99 + 32_000  # J
    # Calls up to 40 s: K ends the BYE client of every call started before 35 s, and the
    # 32 s deadlines of those started before 8 s.
    assert sum(1 for _, key in fired if key[2] == "BYE" and key[0].endswith("-2")) == 349
    assert sum(1 for _, key in fired if key[0].endswith("-3")) == 80


def test_the_endpoints_queue_fires_as_the_reference_does() -> None:
    expected: list[tuple[int, TxKey]] = []
    got: list[tuple[int, TxKey]] = []
    bench.replay(bench.SingleHeap, rate=50, seconds=36.0, fired=expected)
    bench.replay(_Deadlines, rate=50, seconds=36.0, fired=got)
    assert got == expected and len(expected) > 1000


def test_a_run_prints_both_figures_and_their_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--rate", "50", "--seconds", "34", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "endpoint" in out and "reference/endpoint:" in out
