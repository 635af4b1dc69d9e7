"""The SIP endpoint's deadline queue at a steady state, beside the single heap it replaced.

Every transaction of a finished call stays 64*T1 = 32 s to absorb retransmissions, so under
load the endpoint keeps tens of thousands of deadlines, nearly all of them ~32 s away, while the
ones it fires are the oldest: from 32 s into a load, each new call's deadlines come with the
firing of an old call's, whose entries and transactions are long out of the CPU's caches. That
phase is what ``cps.py``'s 10 s steps never reach and what a service is always in.

This replays, on a simulated clock in 1 ms ticks, the deadlines ``cps.py``'s AXB calls make —
per call four transactions (INVITE server and client, BYE server and client) and the nine
deadlines the endpoint pushes for them: Timers A, E and the 2xx retransmission at 0.5 s (stale
once answered), B and F at 32 s (stale), M, L and J at 32 s and K at 5 s (live: each ends its
transaction) — through two queues with the same interface, one after the other, same traffic:

* *reference*: one heap of (deadline, order, key), stale entries dropped when they come up;
* *endpoint*: ``sip.endpoint._Deadlines`` (compiled when ``make compiled`` ran), whatever it
  does now.

Both hold real ``sip.transaction.Transaction`` objects in a dict, as the endpoint does; only the
queue operations are timed (push, ``pop_due`` until nothing is due, ``earliest``), in seconds of
``time.perf_counter`` with the garbage collector paused. Before timing, the two are checked to
fire the same transactions at the same ticks in the same order. Printed: µs of queue work per
call, best of ``--repeats``, for each, and reference/endpoint (higher = the endpoint faster).

Usage (from the repository root, after ``make deps``)::

    .venv/bin/python bench/deadlines.py                  # 900 calls/s, 60 s simulated, 3 repeats
    .venv/bin/python bench/deadlines.py --rate 1200 --seconds 90 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages

from sip.endpoint import _Deadlines
from sip.events import TxKey
from sip.message import Request
from sip.parser import parse_message
from sip.transaction import TimerConfig, Transaction, TxKind
from sip.transport import Peer

TICK_S = 0.001
# (which of the call's four transactions, seconds from the call's start): in push order.
CALL_DEADLINES: tuple[tuple[int, float], ...] = (
    (0, 0.5), (0, 32.0), (0, 32.001),  # INVITE client: A, B; M after the 2xx
    (1, 0.5), (1, 32.002),  # INVITE server: 2xx retransmission; L after the ACK
    (2, 0.5), (2, 32.0), (2, 5.003),  # BYE client: E, F; K after the 200
    (3, 32.0),  # BYE server: J
)  # fmt: skip
METHODS = ("INVITE", "INVITE", "BYE", "BYE")
PEER = Peer("UDP", "127.0.0.1", 5060)


class Queue(Protocol):
    def push(self, deadline: float, key: TxKey, now: float) -> None: ...
    def pop_due(self, now: float) -> TxKey | None: ...
    def earliest(self) -> float | None: ...


class SingleHeap:
    """The reference: one heap of (deadline, order, key), stale entries dropped lazily."""

    def __init__(self, transactions: dict[TxKey, Transaction]) -> None:
        self._transactions = transactions
        self._heap: list[tuple[float, int, TxKey]] = []
        self._order = itertools.count()

    def push(self, deadline: float, key: TxKey, now: float) -> None:
        heapq.heappush(self._heap, (deadline, next(self._order), key))

    def earliest(self) -> float | None:
        heap = self._heap
        while heap:
            at, _, key = heap[0]
            tx = self._transactions.get(key)
            if tx is not None and tx.scheduled_at == at:
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> TxKey | None:
        at = self.earliest()
        if at is None or at > now:
            return None
        return heapq.heappop(self._heap)[2]


def _request() -> Request:
    message = parse_message(
        b"OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bench\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\n"
        b"Call-ID: bench-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return message


def replay(
    make_queue: Callable[[dict[TxKey, Transaction]], Queue],
    *,
    rate: int,
    seconds: float,
    fired: list[tuple[int, TxKey]] | None = None,
) -> float:
    """Run the traffic through a new queue; the seconds its operations took. ``fired``, when
    given, collects (tick, key) of every transaction fired, in order."""
    request = _request()
    timers = TimerConfig()
    transactions: dict[TxKey, Transaction] = {}
    queue = make_queue(transactions)
    clock = time.perf_counter
    spent = 0.0
    owed = 0.0
    calls = 0
    tick = 0
    while tick * TICK_S < seconds:
        now = tick * TICK_S
        owed += rate * TICK_S
        while owed >= 1:
            owed -= 1
            calls += 1
            keys = [(f"z9hG4bK-{calls}-{leg}", "127.0.0.1:5070", METHODS[leg]) for leg in range(4)]
            legs = [
                Transaction(
                    kind=TxKind.SERVER_NON_INVITE, key=key, request=request, peer=PEER,
                    timers=timers, now=now,
                )
                for key in keys
            ]  # fmt: skip
            for key, tx in zip(keys, legs, strict=True):
                transactions[key] = tx
            started = clock()
            for leg, after_s in CALL_DEADLINES:
                tx = legs[leg]
                at = now + after_s
                if tx.scheduled_at != at:  # as the endpoint: pushed only when it moved
                    tx.scheduled_at = at
                    queue.push(at, keys[leg], now)
            spent += clock() - started
        started = clock()
        while (key := queue.pop_due(now)) is not None:
            tx = transactions.pop(key)  # each live deadline here ends its transaction
            tx.scheduled_at = None
            if fired is not None:
                fired.append((tick, key))
        queue.earliest()  # what the transport asks to arm its timer
        spent += clock() - started
        tick += 1
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=int, default=900, help="calls per second (900)")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds (60)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each queue (3)")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error("--rate, --seconds and --repeats must be positive")

    # The same transactions fire at the same ticks in the same order (40 s: past the 32 s).
    check_s = min(args.seconds, 40.0)
    expected: list[tuple[int, TxKey]] = []
    got: list[tuple[int, TxKey]] = []
    replay(SingleHeap, rate=min(args.rate, 200), seconds=check_s, fired=expected)
    replay(_Deadlines, rate=min(args.rate, 200), seconds=check_s, fired=got)
    if got != expected or not expected:
        print("the endpoint's queue fires differently from the reference heap", file=sys.stderr)
        return 1

    calls = round(args.rate * args.seconds)
    best = {"reference": float("inf"), "endpoint": float("inf")}
    gc.disable()
    try:
        for _ in range(args.repeats):  # alternating, so a change in load hits both
            best["reference"] = min(
                best["reference"], replay(SingleHeap, rate=args.rate, seconds=args.seconds)
            )
            best["endpoint"] = min(
                best["endpoint"], replay(_Deadlines, rate=args.rate, seconds=args.seconds)
            )
    finally:
        gc.enable()
    module = sys.modules[_Deadlines.__module__].__file__ or ""
    compiled = "compiled" if not module.endswith(".py") else "pure Python"
    print(
        f"deadline queue, {args.rate} calls/s for {args.seconds:g} simulated s ({calls} calls), "
        f"best of {args.repeats}; endpoint: {compiled}"
    )
    for name, spent in best.items():
        print(f"  {name:<10} {spent * 1e6 / calls:7.2f} µs of queue work per call")
    print(f"  reference/endpoint: {best['reference'] / best['endpoint']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
