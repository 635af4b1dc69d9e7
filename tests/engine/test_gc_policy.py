"""The serving process's GC policy: no automatic full collections, a scheduled one that reports."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import structlog.testing

from engine import gc_policy


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _cycle() -> None:
    class Node:
        other: object

    first, second = Node(), Node()
    first.other, second.other = second, first


@pytest.mark.usefixtures("restored_thresholds")
def test_serving_keeps_young_collections_and_never_starts_a_full_one() -> None:
    gc.set_threshold(700, 10, 10)
    gc_policy.tune_for_serving()
    young, middle, old = gc.get_threshold()
    assert (young, middle) == (700, 10)
    # A full collection needs `old` middle-generation collections, each needing `middle` young
    # ones of `young` allocations: more allocations than a process makes in years.
    assert young * middle * old > 10**13


def test_a_full_collection_reports_what_it_found() -> None:
    with structlog.testing.capture_logs() as logs:
        gc_policy.collect_full()  # whatever the test process holds already: not counted below
        _cycle()
        found = gc_policy.collect_full()
    assert found >= 2  # the two nodes (and their dicts)
    clean, dirty = logs[-2], logs[-1]
    assert dirty["event"] == "gc_full_collection" and dirty["log_level"] == "warning"
    assert dirty["unreachable"] == found and dirty["pause_ms"] >= 0
    assert clean["event"] == "gc_full_collection"


async def test_full_collections_run_on_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    monkeypatch.setattr(gc_policy, "collect_full", lambda: runs.append(1) or 0)
    task = asyncio.create_task(gc_policy.run_full_collections(interval_s=0.01))
    try:
        async with asyncio.timeout(5):
            while len(runs) < 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
    assert len(runs) >= 3
