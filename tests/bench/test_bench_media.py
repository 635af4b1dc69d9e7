"""The pure parts of bench/media.py: loss and latency accounting, the knee search, the profile
categories. No timing here: the benchmark's figures are measured by running it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from bench_scripts import load_bench_script
from hypothesis import given, settings
from hypothesis import strategies as st

bench = load_bench_script("media")


# --- accounting ----------------------------------------------------------------------------


def test_on_time_late_and_missing_split_at_the_cut_off() -> None:
    # 10 µs buckets: bucket 9,999 ends at 100,000 µs (on time), bucket 10,000 starts there.
    delivery = bench.account(
        sent=1_000, histogram=[[5, 900], [9_999, 50], [10_000, 30]], bucket_us=10, stale=7
    )
    assert delivery.on_time == 950
    assert delivery.late == 37  # 30 measured late + 7 that came after their slot was reused
    assert delivery.missing == 13
    assert delivery.lost == 50
    assert delivery.loss_pct == pytest.approx(5.0)


def test_percentiles_are_bucket_upper_edges() -> None:
    histogram = [[2, 98], [40, 1], [700, 1]]  # 100 packets
    delivery = bench.account(sent=100, histogram=histogram, bucket_us=10)
    assert delivery.p50_us == 30  # bucket 2 = [20, 30) µs
    assert delivery.p99_us == 410
    assert delivery.max_us == 7_010
    assert bench.latency_percentile_us(histogram, 10, 0.98) == 30
    assert bench.latency_percentile_us(histogram, 10, 0.985) == 410


def test_histogram_order_does_not_matter() -> None:
    ordered = [[1, 5], [3, 5], [9, 1]]
    assert bench.latency_percentile_us(ordered[::-1], 10, 0.5) == bench.latency_percentile_us(
        ordered, 10, 0.5
    )


def test_nothing_received_is_total_loss_with_no_latency() -> None:
    delivery = bench.account(sent=500, histogram=[], bucket_us=10)
    assert delivery.loss_pct == 100
    assert math.isnan(delivery.p50_us)
    assert not bench.is_clean(delivery, misrouted=0)


def test_more_arrivals_than_sent_is_refused() -> None:
    with pytest.raises(ValueError, match="arrived"):
        bench.account(sent=10, histogram=[[1, 11]], bucket_us=10)


@pytest.mark.parametrize("q", [0, -0.5, 1.5])
def test_quantile_outside_range_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        bench.latency_percentile_us([[1, 1]], 10, q)


def test_clean_needs_less_than_a_tenth_of_a_percent_and_nothing_misrouted() -> None:
    def delivery(lost: int) -> Any:
        return bench.account(sent=100_000, histogram=[[3, 100_000 - lost]], bucket_us=10)

    assert bench.is_clean(delivery(99), misrouted=0)
    assert not bench.is_clean(delivery(100), misrouted=0)  # exactly 0.1 %: not below it
    assert not bench.is_clean(delivery(0), misrouted=1)
    assert not bench.is_clean(bench.account(sent=0, histogram=[], bucket_us=10), misrouted=0)


@settings(max_examples=200)
@given(
    counts=st.lists(st.tuples(st.integers(0, 30_000), st.integers(1, 50)), max_size=30),
    extra=st.integers(0, 100),
    stale=st.integers(0, 20),
)
def test_every_packet_is_counted_exactly_once(
    counts: list[tuple[int, int]], extra: int, stale: int
) -> None:
    received = sum(c for _, c in counts) + stale
    delivery = bench.account(
        sent=received + extra, histogram=[list(p) for p in counts], bucket_us=10, stale=stale
    )
    assert delivery.on_time + delivery.late + delivery.missing == delivery.sent
    assert delivery.missing == extra
    assert delivery.on_time == sum(c for b, c in counts if b < 10_000)


# --- knee search ---------------------------------------------------------------------------


def _search_against(capacity: int, **bounds: int) -> tuple[Any, list[int]]:
    """Run a search against a relay that is clean up to ``capacity`` calls."""
    search = bench.KneeSearch(**bounds)
    tried = []
    while (calls := search.next_calls()) is not None:
        tried.append(calls)
        search.record(calls, calls <= capacity)
    return search, tried


def test_steps_up_then_bisects_to_the_resolution() -> None:
    search, tried = _search_against(1_234, start=400, step=200, resolution=50, limit=4_000)
    assert tried == [400, 600, 800, 1_000, 1_200, 1_400, 1_300, 1_250]
    assert search.clean_max == 1_200
    assert search.failed_min == 1_250
    assert not search.capped


def test_failing_at_the_start_bisects_down_from_it() -> None:
    search, tried = _search_against(120, start=400, step=200, resolution=50, limit=4_000)
    assert tried == [400, 200, 100, 150]
    assert search.clean_max == 100


def test_nothing_clean_ends_at_zero() -> None:
    search, _ = _search_against(10, start=400, step=200, resolution=50, limit=4_000)
    assert search.clean_max == 0


def test_a_clean_limit_stops_the_search_capped() -> None:
    search, tried = _search_against(10_000, start=400, step=250, resolution=50, limit=1_000)
    assert tried == [400, 650, 900, 1_000]
    assert search.capped


@settings(max_examples=300)
@given(
    capacity=st.integers(0, 5_000),
    start=st.integers(1, 1_000),
    step=st.integers(1, 500),
    resolution=st.integers(1, 200),
)
def test_the_knee_is_within_the_resolution_of_the_capacity(
    capacity: int, start: int, step: int, resolution: int
) -> None:
    search, tried = _search_against(
        capacity, start=start, step=step, resolution=resolution, limit=6_000
    )
    assert search.clean_max <= capacity
    assert capacity - search.clean_max < resolution or search.clean_max == capacity
    assert len(tried) == len(set(tried))  # never the same count twice


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="start"):
        bench.KneeSearch(start=500, step=100, resolution=50, limit=400)
    with pytest.raises(ValueError, match="resolution"):
        bench.KneeSearch(start=100, step=100, resolution=0, limit=400)


# --- profile categories --------------------------------------------------------------------

_PERF_SCRIPT = """\
python 4242
\tffffffff81ba6ab8 import_iovec ([kernel.kallsyms])
\tffffffff81e76e00 __sys_sendmsg ([kernel.kallsyms])
\t          10ac4d __libc_sendmsg (/usr/lib/x86_64-linux-gnu/libc.so.6)

python 4242
\tffffffff81eaf5c8 net_rx_action ([kernel.kallsyms])
\tffffffff8209b7c0 udp_sendmsg ([kernel.kallsyms])
\tffffffff81e76e00 __sys_sendmsg ([kernel.kallsyms])

python 4242
\tffffffff8209ccbb udp_recvmsg ([kernel.kallsyms])
\tffffffff81e772ad __sys_recvmsg ([kernel.kallsyms])

python 4243
\t          10aae7 __libc_read (/usr/lib/x86_64-linux-gnu/libc.so.6)

python 4242
\t          1d2f00 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)
\t              10 [unknown] ([unknown])

python 4242
\t           5a1c0 __printf_buffer (/usr/lib/x86_64-linux-gnu/libc.so.6)

python 4242
\t          135210 uv__udp_try_send (/venv/uvloop/loop.cpython-311-x86_64-linux-gnu.so)

python 4242
\tffffffff8116a0f0 do_epoll_wait ([kernel.kallsyms])
"""


def test_perf_samples_are_read_per_thread_leaf_first() -> None:
    samples = bench.parse_perf_script(_PERF_SCRIPT, tid=4242)
    assert len(samples) == 7  # the other thread's sample is left out
    assert samples[0][0] == ("import_iovec", "[kernel.kallsyms]")
    assert samples[0][-1] == ("__libc_sendmsg", "/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert len(bench.parse_perf_script(_PERF_SCRIPT)) == 8


def test_samples_are_charged_to_their_system_call_else_their_library() -> None:
    categories = [
        bench.categorize_sample(s) for s in bench.parse_perf_script(_PERF_SCRIPT, tid=4242)
    ]
    assert categories == [
        bench.SEND,
        bench.DELIVERY,
        bench.RECV,
        bench.PYTHON,
        bench.FORMATTING,
        bench.UVLOOP,
        bench.EPOLL,
    ]
    assert bench.categorize_sample([]) == bench.OTHER


def test_shares_cover_every_category_and_sum_to_one() -> None:
    shares = bench.profile_shares(bench.parse_perf_script(_PERF_SCRIPT, tid=4242))
    assert set(shares) == set(bench.PROFILE_CATEGORIES)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares[bench.SEND] == pytest.approx(1 / 7)
    assert bench.profile_shares([]) == dict.fromkeys(bench.PROFILE_CATEGORIES, 0.0)
