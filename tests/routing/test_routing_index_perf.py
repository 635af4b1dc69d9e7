"""routing.index figures, printed (run with ``-s``), never asserted: timings belong in benchmarks.

Loads 100,000 AXB bindings (200 per X, as the default capacity), then times resolve and
measures the index's own memory with tracemalloc.  The figures also prove the paths run at
this size: every probe must resolve to the expected route.
"""

import gc
import random
import time
import tracemalloc

from routing.index import BindingIndex, Route
from routing.model import Binding, BindingType, PhoneNumber, PoolKey, SubId

COUNT = 100_000
MEMORY_COUNT = 20_000  # tracemalloc slows allocation ~5x; per-binding bytes are the same
PER_X = 200
NOW = 1_700_000_000.0


def make_bindings(count: int, kind: BindingType = BindingType.AXB) -> list[Binding]:
    pool = PoolKey("FC100")
    per_x = PER_X if kind is BindingType.AXB else 1
    xs = [PhoneNumber(f"+86170{i:08d}") for i in range(count // per_x + 1)]
    return [
        Binding(
            sub_id=SubId(f"{10**12 + i}"),
            pool_key=pool,
            type=kind,
            x=xs[i // per_x],
            a=PhoneNumber(f"+86138{i:08d}"),
            b=PhoneNumber(f"+86139{i:08d}"),
            expires_at=NOW + 86_400,
        )
        for i in range(count)
    ]


def test_load_resolve_and_memory_figures() -> None:
    bindings = make_bindings(COUNT)
    gc.collect()
    index = BindingIndex()
    start = time.perf_counter()
    assert index.load(bindings) == []
    load_s = time.perf_counter() - start
    assert len(index) == COUNT
    print(f"\nload {COUNT:,} AXB bindings: {load_s:.3f} s ({load_s / COUNT * 1e6:.2f} µs each)")

    rng = random.Random(7)
    probes = []
    for _ in range(50_000):
        binding = bindings[rng.randrange(COUNT)]
        probes.append((binding, binding.a if rng.random() < 0.5 else binding.b))
    resolve = index.resolve
    start = time.perf_counter()
    for binding, caller in probes:
        resolve(binding.x, caller, now=NOW)
    per_op_ns = (time.perf_counter() - start) / len(probes) * 1e9
    print(f"resolve, random binding of {COUNT:,}: {per_op_ns:.0f} ns/op")
    hot = probes[0]
    start = time.perf_counter()
    for _ in range(50_000):
        resolve(hot[0].x, hot[1], now=NOW)
    print(f"resolve, one hot binding: {(time.perf_counter() - start) / 50_000 * 1e9:.0f} ns/op")
    stranger = PhoneNumber("+8613700000000")
    start = time.perf_counter()
    for binding, _ in probes:
        resolve(binding.x, stranger, now=NOW)
    print(f"resolve, stranger: {(time.perf_counter() - start) / len(probes) * 1e9:.0f} ns/op")
    for binding, caller in probes[:1000]:
        result = resolve(binding.x, caller, now=NOW)
        assert isinstance(result, Route) and result.binding is binding

    for kind in (BindingType.AXB, BindingType.AXN):
        gc.collect()
        tracemalloc.start()
        try:
            fresh = make_bindings(MEMORY_COUNT, kind)
            gc.collect()
            after_bindings = tracemalloc.get_traced_memory()[0]
            measured = BindingIndex()
            measured.load(fresh)
            gc.collect()
            after_index = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        print(
            f"{kind}: index structures {(after_index - after_bindings) / MEMORY_COUNT:.0f}"
            f" B/binding, with the Binding objects and their strings"
            f" {after_index / MEMORY_COUNT:.0f} B/binding"
        )
