"""The endpoint's deadline queue (a heap for the next seconds, buckets beyond) against the
single heap it replaced: the same earliest live deadline, the same transactions due at ``now``
in the same order. Live = the transaction is still in the table and its ``scheduled_at`` is
that deadline.
"""

from __future__ import annotations

import heapq
import itertools

from hypothesis import given
from hypothesis import strategies as st

from sip.endpoint import _FAR_AFTER_S, _Deadlines
from sip.events import TxKey
from sip.message import Request
from sip.parser import parse_message
from sip.transaction import TimerConfig, Transaction, TxKind
from sip.transport import Peer

PEER = Peer("UDP", "192.0.2.7", 5060)
KEYS: list[TxKey] = [(f"z9hG4bK-deadline-{n}", "sent-by", "OPTIONS") for n in range(6)]


def _options() -> Request:
    message = parse_message(
        b"OPTIONS sip:bob@192.0.2.9 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-deadline\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:bob@192.0.2.9>\r\nFrom: <sip:alice@192.0.2.7>;tag=a1\r\n"
        b"Call-ID: deadline-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return message


def _transaction(key: TxKey) -> Transaction:
    return Transaction(
        kind=TxKind.SERVER_NON_INVITE, key=key, request=_options(), peer=PEER,
        timers=TimerConfig(), now=0.0,
    )  # fmt: skip


# (what, which transaction, seconds): schedule it that far from now, end it, or let time pass.
OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["schedule", "end", "advance"]),
        st.integers(min_value=0, max_value=len(KEYS) - 1),
        st.one_of(
            st.floats(min_value=0.0, max_value=40.0),
            st.sampled_from([0.0, 0.5, _FAR_AFTER_S, 5.0, 32.0]),
        ),
    ),
    max_size=60,
)


class SingleHeap:
    """The reference: one heap of (deadline, order, key), stale entries dropped lazily — what
    the endpoint kept before the two tiers."""

    def __init__(self, transactions: dict[TxKey, Transaction]) -> None:
        self._transactions = transactions
        self._heap: list[tuple[float, int, TxKey]] = []
        self._order = itertools.count()

    def push(self, deadline: float, key: TxKey) -> None:
        heapq.heappush(self._heap, (deadline, next(self._order), key))

    def earliest(self) -> float | None:
        while self._heap:
            at, _, key = self._heap[0]
            tx = self._transactions.get(key)
            if tx is not None and tx.scheduled_at == at:
                return at
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> TxKey | None:
        at = self.earliest()
        if at is None or at > now:
            return None
        return heapq.heappop(self._heap)[2]


def _drain(
    queue: _Deadlines | SingleHeap, transactions: dict[TxKey, Transaction], now: float
) -> list[tuple[float, TxKey]]:
    """Fire everything due at ``now`` as the endpoint does; (deadline, key) in firing order."""
    fired: list[tuple[float, TxKey]] = []
    while (key := queue.pop_due(now)) is not None:
        tx = transactions[key]
        assert tx.scheduled_at is not None and tx.scheduled_at <= now
        fired.append((tx.scheduled_at, key))
        tx.scheduled_at = None  # as the endpoint does on firing
    return fired


@given(OPERATIONS, st.floats(min_value=0.0, max_value=1e6))
def test_the_queue_answers_what_one_heap_would(
    operations: list[tuple[str, int, float]], start: float
) -> None:
    # Each queue has a table of its own: they must fire the same transactions at the same
    # deadlines, in deadline order. Among equal deadlines the order may differ: an entry that
    # went stale and became live again (its transaction moved back to that deadline, which also
    # pushed a fresh entry) is kept by one heap and may be gone from the run.
    transactions: dict[TxKey, Transaction] = {}
    reference_transactions: dict[TxKey, Transaction] = {}
    deadlines = _Deadlines(transactions)
    reference = SingleHeap(reference_transactions)
    now = start
    for what, index, seconds in operations:
        key = KEYS[index]
        if what == "schedule":
            tx = transactions.get(key)
            if tx is None:
                tx = transactions[key] = _transaction(key)
                reference_transactions[key] = _transaction(key)
            if tx.scheduled_at != now + seconds:  # the endpoint pushes only a moved deadline
                tx.scheduled_at = reference_transactions[key].scheduled_at = now + seconds
                deadlines.push(now + seconds, key, now)
                reference.push(now + seconds, key)
        elif what == "end":
            transactions.pop(key, None)
            reference_transactions.pop(key, None)
        else:
            now += seconds
            fired = _drain(deadlines, transactions, now)
            expected = _drain(reference, reference_transactions, now)
            assert [at for at, _ in fired] == [at for at, _ in expected]  # deadline order
            assert sorted(fired) == sorted(expected)  # the same transactions at each deadline
            # Everything due fired: what is still scheduled is later.
            assert all(
                tx.scheduled_at is None or tx.scheduled_at > now for tx in transactions.values()
            )
        live = [tx.scheduled_at for tx in transactions.values() if tx.scheduled_at is not None]
        assert deadlines.earliest() == reference.earliest() == min(live, default=None)


def test_a_deadline_made_stale_then_live_again_still_fires_once() -> None:
    # The case hypothesis found: k0's far entry goes stale (moved near), then k0 moves back to
    # the same far deadline (a fresh entry); the run had dropped the old one, one heap kept it.
    transactions = {key: _transaction(key) for key in KEYS[:2]}
    deadlines = _Deadlines(transactions)
    for key, at in ((KEYS[0], 3.0), (KEYS[1], 3.0), (KEYS[0], 0.0), (KEYS[0], 3.0)):
        transactions[key].scheduled_at = at
        deadlines.push(at, key, 0.0)
        deadlines.earliest()
    assert sorted(key for _, key in _drain(deadlines, transactions, 3.0)) == KEYS[:2]
    assert deadlines.earliest() is None


def test_far_deadlines_wait_in_buckets_and_stale_ones_never_reach_the_heap() -> None:
    transactions: dict[TxKey, Transaction] = {}
    deadlines = _Deadlines(transactions)
    for key in KEYS:
        transactions[key] = tx = _transaction(key)
        tx.scheduled_at = 32.0
        deadlines.push(32.0, key, 0.0)
    assert deadlines._heap == [] and len(deadlines) == len(KEYS)
    for key in KEYS[1:]:
        transactions[key].scheduled_at = 0.5  # moved nearer: the 32 s entries are stale now
        deadlines.push(0.5, key, 0.0)
    assert deadlines.earliest() == 0.5
    assert len(deadlines._heap) == len(KEYS) - 1  # the bucket is not merged yet
    assert deadlines.pop_due(0.4) is None
    for key in KEYS[1:]:
        assert deadlines.pop_due(0.5) == key
        transactions[key].scheduled_at = None
    assert deadlines.earliest() == 32.0  # the bucket taken up: only its live entry is kept
    assert deadlines._heap == [] and [entry[2] for entry in deadlines._run] == [KEYS[0]]
    assert len(deadlines) == 1
    assert deadlines.pop_due(32.0) == KEYS[0]
    assert deadlines.earliest() is None and len(deadlines) == 0


def test_a_taken_up_bucket_is_sorted_and_interleaves_with_near_deadlines() -> None:
    transactions: dict[TxKey, Transaction] = {}
    deadlines = _Deadlines(transactions)
    # Far entries of one second, appended out of order; then near ones among them.
    for key, at in zip(KEYS[:4], (32.7, 32.2, 32.9, 32.2), strict=True):
        transactions[key] = tx = _transaction(key)
        tx.scheduled_at = at
        deadlines.push(at, key, 0.0)
    for key, at in zip(KEYS[4:], (32.5, 32.2), strict=True):
        transactions[key] = tx = _transaction(key)
        tx.scheduled_at = at
        deadlines.push(at, key, 31.0)  # pushed 31 s later: near, into the heap
    assert len(deadlines._heap) == 2
    fired = []
    while (popped := deadlines.pop_due(40.0)) is not None:
        fired.append(popped)
        transactions[popped].scheduled_at = None
    # By deadline, then in the order pushed (as one heap): the run and the heap interleaved.
    assert fired == [KEYS[1], KEYS[3], KEYS[5], KEYS[4], KEYS[0], KEYS[2]]
    assert deadlines.earliest() is None and len(deadlines) == 0
