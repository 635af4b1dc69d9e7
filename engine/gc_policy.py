"""When the serving process lets the cyclic garbage collector walk its whole heap.

CPython frees almost everything by reference counting; the cyclic collector is only needed for
reference cycles. Its young generations are cheap (they walk only objects made since the last
collection), but a *full* collection walks every live tracked object, and by default it runs
whenever the objects that survived into the old generation grew by a quarter. A call's state
(its transactions absorbing retransmissions, the call kept 64*T1 for late requests) lives tens
of seconds, so under load the old generation grows all the time: measured at 300 calls/s, a full
collection every ~2 s, each pausing the event loop 50–400 ms as the heap grew to 300,000
objects — those pauses set the post-dial delay p99 and, past 300 calls/s, caused retransmissions
and failed calls (bench/README.md, cps section).

The call path makes no cyclic garbage: under load (``gc.DEBUG_SAVEALL`` in a wrapper of the
served process, 2,000 calls) the only cyclic garbage was the relay's closed sessions, which are
now freed by reference counting (``tests/media/test_media_relay.py`` checks it). So nothing is
lost by not walking the heap on every growth. The policy:

* young-generation collections as CPython's defaults (every 700 net new tracked objects): they
  walk only what was made since the last one, ~0.2 ms;
* nothing older walked automatically: the middle generation's threshold, like the old one's,
  is out of reach. By default every tenth young collection also walks the middle generation —
  everything that survived the last ten — measured over ~10,000 calls at 200–400 calls/s:
  200 such passes, 1.8 ms each (p99 3.2 ms), 0.32 s of pauses, each one holding up the calls
  in flight (post-dial delay's tail). A call's objects outlive several young collections (the
  call lasts seconds, its state is kept 32 s after), so those passes walked live objects again
  and again and found nothing; now a survivor of one young collection is walked next by the
  scheduled full one;
* one full collection every ``[overload] full_gc_interval_s`` (600 s by default; 0: never)
  when its pause fits ``[overload] max_gc_pause_ms`` (:class:`FullCollections`: under
  sustained load it waits for a quieter time), a bound on
  what an unforeseen cycle (an error path's traceback, a library's) can hold, logged with its
  pause and what it found: anything found is a cycle to fix, not a normal event (``/metrics``:
  python_gc_objects_collected_total of generation 2, the only collections of that generation;
  tests/e2e/test_metrics_e2e.py checks that a real call makes no cycle). One such cycle was
  mypyc's: functions nested in a compiled function share an environment object that refers to
  each of them (api.reports ``_Round``).

Objects that live as long as the process (the binding index) are frozen by the loader
(``api.control.open_control_plane``) and never walked at all.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Final

from engine.logging import get_logger

_log = get_logger("engine.gc")

# CPython's default threshold of the youngest generation (gc.get_threshold() of a new process).
_YOUNG_THRESHOLD: Final = 700
# An older generation is collected after this many collections of the one below: never reached.
_THRESHOLD_NEVER: Final = 2**31 - 1


def tune_for_serving() -> None:
    """Young collections as usual; the older generations only when :func:`collect_full` runs."""
    gc.set_threshold(_YOUNG_THRESHOLD, _THRESHOLD_NEVER, _THRESHOLD_NEVER)


def collect_full() -> int:
    """One full collection, logged with its pause; returns the unreachable objects found."""
    started = time.perf_counter()
    found = gc.collect()
    pause_ms = (time.perf_counter() - started) * 1000
    log = _log.warning if found else _log.info
    log("gc_full_collection", pause_ms=round(pause_ms, 1), unreachable=found)
    return found


def tracked_objects() -> int:
    """Objects a full collection would walk now (the frozen ones are not walked)."""
    return sum(len(gc.get_objects(generation)) for generation in range(3))


class FullCollections:
    """The scheduled full collections, each run only when its pause fits ``max_pause_s``.

    A full collection stops the event loop while it walks every live object: under a sustained
    1,000 calls/s (~1.2 M objects: each call's state lives ~32 s) that was ~1 s — SIP waited,
    peers retransmitted, new calls were shed for loop lag (bench/README.md, heap.py: the steps
    where one ran lost calls, though 1,000 calls/s held that long can lose some without one
    too). So when one is due, its pause is estimated (the objects it
    would walk × what the last one cost per object); over the budget, it waits, checked again
    every ``recheck_s``, until the load — and with it the heap — is down. Deferring loses
    nothing while the call path makes no reference cycles, which a test checks
    (tests/e2e/test_metrics_e2e.py); what an unforeseen one holds is freed on the next quiet
    collection.
    """

    def __init__(
        self,
        *,
        interval_s: float,
        max_pause_s: float,
        recheck_s: float = 30.0,
        count_objects: Callable[[], int] = tracked_objects,
        collect: Callable[[], int] = collect_full,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.interval_s = interval_s
        self.max_pause_s = max_pause_s
        self.recheck_s = recheck_s
        self._count_objects = count_objects
        self._collect = collect
        self._clock = clock
        # What walking one object costs, as the last collection measured it (a first guess
        # until then: ~0.8 µs was measured at 1.2 M objects, ~0.9 at a few thousand).
        self.seconds_per_object = 1e-6
        self.objects_at_last_check = 0
        self.deferrals = 0

    def expected_pause_s(self, objects: int) -> float:
        """The pause of a full collection walking ``objects``, from the last one's cost."""
        return objects * self.seconds_per_object

    def collect_if_quick(self) -> bool:
        """Run a full collection if its expected pause fits the budget; True when it ran."""
        objects = self.objects_at_last_check = self._count_objects()
        if self.expected_pause_s(objects) > self.max_pause_s:
            return False
        started = self._clock()
        self._collect()
        if objects > 0:
            self.seconds_per_object = (self._clock() - started) / objects
        return True

    async def run(self) -> None:
        """Until cancelled: a full collection every ``interval_s`` (when quick enough; see the
        class docstring); 0 or less: never (returns at once)."""
        if self.interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.interval_s)
            if self.collect_if_quick():
                continue
            self.deferrals += 1
            objects = self.objects_at_last_check  # counting them again costs ~20 ms per million
            _log.info(
                "gc_full_collection_deferred",
                objects=objects,
                expected_pause_ms=round(self.expected_pause_s(objects) * 1000, 1),
                max_pause_ms=round(self.max_pause_s * 1000, 1),
            )
            while True:
                await asyncio.sleep(self.recheck_s)
                if self.collect_if_quick():
                    break
