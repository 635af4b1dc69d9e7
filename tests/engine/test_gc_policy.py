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


class _Heap:
    """What a FullCollections sees: a settable object count, a clock its collections advance."""

    def __init__(self, objects: int, seconds_per_object: float) -> None:
        self.objects = objects
        self.seconds_per_object = seconds_per_object
        self.now = 0.0
        self.collected_at: list[int] = []
        self.counted = 0  # times the scheduler counted the objects (each check)

    def count(self) -> int:
        self.counted += 1
        return self.objects

    def collect(self) -> int:
        self.collected_at.append(self.objects)
        self.now += self.objects * self.seconds_per_object
        return 0

    def scheduler(self, *, interval_s: float, max_pause_s: float) -> gc_policy.FullCollections:
        return gc_policy.FullCollections(
            interval_s=interval_s,
            max_pause_s=max_pause_s,
            recheck_s=0.001,
            count_objects=self.count,
            collect=self.collect,
            clock=lambda: self.now,
        )


async def test_full_collections_run_on_schedule() -> None:
    heap = _Heap(objects=1000, seconds_per_object=1e-6)
    task = asyncio.create_task(heap.scheduler(interval_s=0.01, max_pause_s=0.1).run())
    try:
        async with asyncio.timeout(5):
            while len(heap.collected_at) < 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
    assert len(heap.collected_at) >= 3


async def test_a_collection_longer_than_the_budget_waits_until_the_heap_shrinks() -> None:
    heap = _Heap(objects=1000, seconds_per_object=1e-6)
    scheduler = heap.scheduler(interval_s=0.01, max_pause_s=0.05)
    assert scheduler.collect_if_quick()  # 1 ms: runs, and measures 1 µs an object
    assert scheduler.seconds_per_object == pytest.approx(1e-6)
    heap.objects = 200_000  # 200 ms expected: over the 50 ms budget
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(scheduler.run())
        try:
            async with asyncio.timeout(5):
                while scheduler.deferrals == 0:
                    await asyncio.sleep(0.005)
                checks_when_deferred = heap.counted
                while heap.counted < checks_when_deferred + 3:
                    await asyncio.sleep(0.005)
                assert heap.collected_at == [1000]  # rechecked three times, never run
                heap.objects = 40_000  # the load fell: 40 ms fits
                while len(heap.collected_at) < 2:
                    await asyncio.sleep(0.005)
        finally:
            task.cancel()
    assert heap.collected_at[:2] == [1000, 40_000]
    deferred = [entry for entry in logs if entry["event"] == "gc_full_collection_deferred"]
    assert deferred[0]["objects"] == 200_000
    assert deferred[0]["expected_pause_ms"] == pytest.approx(200.0)
    assert deferred[0]["max_pause_ms"] == pytest.approx(50.0)


def test_the_cost_per_object_follows_the_last_collection() -> None:
    heap = _Heap(objects=10_000, seconds_per_object=3e-6)
    scheduler = heap.scheduler(interval_s=1, max_pause_s=1.0)
    assert scheduler.collect_if_quick()
    assert scheduler.seconds_per_object == pytest.approx(3e-6)
    assert scheduler.expected_pause_s(100_000) == pytest.approx(0.3)


async def test_no_full_collection_with_an_interval_of_zero() -> None:
    heap = _Heap(objects=10, seconds_per_object=1e-6)
    async with asyncio.timeout(1):
        await heap.scheduler(interval_s=0, max_pause_s=1.0).run()  # returns at once
    assert heap.collected_at == []


def test_tracked_objects_counts_what_a_collection_walks() -> None:
    gc.collect()
    before = gc_policy.tracked_objects()
    kept = [[index] for index in range(1000)]  # 1,000 tracked lists (and the outer one)
    assert gc_policy.tracked_objects() >= before + 1000
    del kept
