"""The endpoint's deadline queue (a heap for the next seconds, buckets beyond) against a model.

The model is what the single heap it replaced answered: the earliest live deadline, and live
deadlines due at ``now`` in (deadline, order of scheduling) order. Live = the transaction is
still in the table and its ``scheduled_at`` is that deadline.
"""

from __future__ import annotations

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


@given(OPERATIONS, st.floats(min_value=0.0, max_value=1e6))
def test_the_queue_answers_what_one_heap_would(
    operations: list[tuple[str, int, float]], start: float
) -> None:
    transactions: dict[TxKey, Transaction] = {}
    deadlines = _Deadlines(transactions)
    model: dict[TxKey, tuple[float, int]] = {}  # live: key → (deadline, scheduling order)
    now = start
    for order, (what, index, seconds) in enumerate(operations):
        key = KEYS[index]
        if what == "schedule":
            tx = transactions.get(key)
            if tx is None:
                tx = transactions[key] = _transaction(key)
            if tx.scheduled_at != now + seconds:  # the endpoint pushes only a moved deadline
                tx.scheduled_at = now + seconds
                deadlines.push(now + seconds, key, now)
                model[key] = (now + seconds, order)
        elif what == "end":
            transactions.pop(key, None)
            model.pop(key, None)
        else:
            now += seconds
            due = sorted((at, seq, k) for k, (at, seq) in model.items() if at <= now)
            fired = []
            while (popped := deadlines.pop_due(now)) is not None:
                transactions[popped].scheduled_at = None  # as the endpoint does on firing
                fired.append(popped)
            assert fired == [k for _, _, k in due]
            for k in fired:
                del model[k]
        expected = min((at for at, _ in model.values()), default=None)
        assert deadlines.earliest() == expected


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
    assert deadlines.earliest() == 32.0  # the bucket merged: only its live entry joined
    assert len(deadlines._heap) == 1 and len(deadlines) == 1
    assert deadlines.pop_due(32.0) == KEYS[0]
    assert deadlines.earliest() is None and len(deadlines) == 0
