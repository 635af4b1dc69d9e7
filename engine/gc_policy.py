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
* one full collection every ``[overload] full_gc_interval_s`` (default
  ``FULL_COLLECTION_INTERVAL_S``), a bound on what an unforeseen cycle (an error path's
  traceback, a library's) can hold, logged with its pause and what it found: anything found is
  a cycle to fix, not a normal event (``/metrics``: python_gc_objects_collected_total of
  generation 2, the only collections of that generation; tests/e2e/test_metrics_e2e.py checks
  that real calls leave it at 0). One such cycle was mypyc's: functions nested in a compiled
  function share an environment object that refers to each of them (api.reports ``_Round``).

Objects that live as long as the process (the binding index) are frozen by the loader
(``api.control.open_control_plane``) and never walked at all.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Final

from engine.logging import get_logger

_log = get_logger("engine.gc")

#: Seconds between two full collections of the serving process.
FULL_COLLECTION_INTERVAL_S: Final = 600.0
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


async def run_full_collections(interval_s: float = FULL_COLLECTION_INTERVAL_S) -> None:
    """Until cancelled: :func:`collect_full` every ``interval_s``; 0 or less: never (returns)."""
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        collect_full()
