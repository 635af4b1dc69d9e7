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
def test_serving_keeps_young_collections_and_never_starts_an_older_one() -> None:
    gc.set_threshold(700, 10, 10)
    gc_policy.tune_for_serving()
    young, middle, old = gc.get_threshold()
    assert young == 700
    # A middle-generation collection needs `middle` young ones, each after `young` net new
    # tracked objects: more than a process makes in years (a full one needs more again).
    assert young * middle > 10**12 and old >= middle


@pytest.mark.usefixtures("restored_thresholds")
def test_serving_never_walks_a_survivor_of_a_young_collection_again() -> None:
    gc.set_threshold(700, 10, 10)
    gc_policy.tune_for_serving()
    walked: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            walked.append(info["generation"])

    gc.callbacks.append(record)
    try:
        # Objects that stay alive (as a call's state does) through a hundred young collections.
        kept = [[index] for index in range(100 * 700)]
    finally:
        gc.callbacks.remove(record)
    assert len(kept) == 70_000
    assert walked.count(0) >= 90
    assert set(walked) == {0}  # with CPython's default middle threshold: ~10 of generation 1


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


async def test_no_full_collection_with_an_interval_of_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []
    monkeypatch.setattr(gc_policy, "collect_full", lambda: runs.append(1) or 0)
    async with asyncio.timeout(1):
        await gc_policy.run_full_collections(interval_s=0)  # returns at once
    assert runs == []
