"""The call state table: every pair either has a row or raises and changes nothing."""

from __future__ import annotations

import collections
import itertools
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import engine.calls as calls_module
from engine.b2bua import KEEP_ENDED_CALL_S, keep_ended_call_s
from engine.calls import (
    CALL_TRANSITIONS,
    Call,
    CallInput,
    CallState,
    CallStateError,
    DelayQueue,
    KeptFor,
    Leg,
    new_call_ref,
    q850_for_status,
    ref_time_letters,
)
from sip.transport import Peer


def _call(state: CallState) -> Call:
    leg = Leg(peer=Peer("UDP", "127.0.0.1", 5060), call_id="c", local_tag="t")
    call = Call(call_id="id", inbound=leg, x="+8617000000001", caller=None)
    call.state = state
    return call


@pytest.mark.parametrize(("state", "call_input"), list(itertools.product(CallState, CallInput)))
def test_every_pair_follows_the_table(state: CallState, call_input: CallInput) -> None:
    call = _call(state)
    expected = CALL_TRANSITIONS.get((state, call_input))
    assert call.can(call_input) == (expected is not None)
    if expected is None:
        with pytest.raises(CallStateError):
            call.fire(call_input)
        assert call.state is state
    else:
        assert call.fire(call_input) is expected


def test_every_state_reaches_ended() -> None:
    reachable = {CallState.ENDED}
    changed = True
    while changed:
        changed = False
        for (state, _), target in CALL_TRANSITIONS.items():
            if target in reachable and state not in reachable:
                reachable.add(state)
                changed = True
    assert reachable == set(CallState)


def test_ended_is_final() -> None:
    assert not any(state is CallState.ENDED for state, _ in CALL_TRANSITIONS)


@pytest.mark.parametrize(
    ("status", "cause"), [(486, 17), (404, 1), (480, 18), (603, 21), (408, 102), (499, 31)]
)
def test_q850_mapping_follows_rfc3398(status: int, cause: int) -> None:
    assert q850_for_status(status) == cause


def test_call_refs_are_24_letters_without_digits_and_do_not_repeat() -> None:
    refs = [new_call_ref() for _ in range(2000)]
    assert len(set(refs)) == len(refs)
    assert all(len(ref) == 24 and ref.isalpha() and ref.islower() for ref in refs)
    # The 14 random letters: every letter of the alphabet turns up at its share — 28,000
    # letters drawn from 23 give each ~1,217; a digit-order bug (a letter never drawn) shows.
    random_parts = [ref[10:] for ref in refs]
    letters = collections.Counter("".join(random_parts))
    assert set(letters) == set("abcdefghjkmnpqrstuvwxyz")
    assert min(letters.values()) > 900
    first_letters = collections.Counter(part[0] for part in random_parts)
    last_letters = collections.Counter(part[-1] for part in random_parts)
    assert len(first_letters) == 23 and len(last_letters) == 23


def test_call_refs_begin_with_their_time_so_later_ones_sort_later() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = new_call_ref()
    time.sleep(0.003)
    second = new_call_ref()
    after_ms = time.time_ns() // 1_000_000
    assert first < second
    assert ref_time_letters(before_ms) <= first[:10] <= second[:10] <= ref_time_letters(after_ms)
    # Fixed width, most significant letter first: letter order is number order.
    samples = [0, 1, 22, 23, 529, 10**9, 1_764_000_000_000, 23**10 - 1]
    encoded = [ref_time_letters(ms) for ms in samples]
    assert all(len(text) == 10 for text in encoded)
    assert encoded == sorted(encoded) and len(set(encoded)) == len(samples)
    assert ref_time_letters(0) == "aaaaaaaaaa" and ref_time_letters(23) == "aaaaaaaaba"


def test_call_ref_byte_table_is_uniform_over_the_bytes_it_keeps() -> None:
    # Every letter stands for the same number of kept byte values, and the deleted ones are
    # exactly those the table does not map: a draw's letters are then uniform.
    kept = [value for value in range(256) if value not in calls_module._REF_REJECTED_BYTES]
    per_letter = collections.Counter(calls_module._REF_LETTER_OF_BYTE[value] for value in kept)
    assert set(per_letter) == {ord(letter) for letter in "abcdefghjkmnpqrstuvwxyz"}
    assert set(per_letter.values()) == {len(kept) // 23}
    assert len(kept) == 253


def test_states_and_inputs_hash_by_identity() -> None:
    # Enum's own __hash__ is Python code, run twice per transition lookup on the call path.
    assert CallState.__hash__ is object.__hash__
    assert CallInput.__hash__ is object.__hash__


# --- ended calls kept for late requests (KeptFor) -----------------------------------------


def test_kept_items_are_let_go_in_order_once_their_time_is_up() -> None:
    kept: KeptFor[str] = KeptFor(keep_s=32.0, batch_s=0.1)
    assert kept.next_due() is None
    assert kept.add("first", now=10.0) is True  # empty before: the caller arms its timer
    assert kept.add("second", now=10.05) is False
    assert kept.add("third", now=10.3) is False
    assert kept.next_due() == pytest.approx(42.1)
    assert kept.pop_due(41.99) == []  # kept at least keep_s
    # One run at the due time lets go of every item due by then, oldest first.
    assert kept.pop_due(42.1) == ["first", "second"]
    assert len(kept) == 1
    assert kept.next_due() == pytest.approx(42.4)
    assert kept.pop_due(42.4) == ["third"]
    assert kept.next_due() is None
    assert kept.add("fourth", now=50.0) is True


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=50))
@example(gaps=[1.0724669134491582, 0.1])  # due - added is 32.0 less a rounding error (CI found it)
def test_no_item_goes_early_and_none_stays_past_its_batch(gaps: list[float]) -> None:
    kept: KeptFor[int] = KeptFor(keep_s=32.0, batch_s=0.1)
    added: dict[int, float] = {}
    now = 0.0
    for item, gap in enumerate(gaps):
        now += gap
        kept.add(item, now)
        added[item] = now
    # Run the timer as the caller does: at each next_due until nothing is kept.
    let_go: dict[int, float] = {}
    while (due := kept.next_due()) is not None:
        for item in kept.pop_due(due):
            let_go[item] = due
    assert list(let_go) == sorted(added)  # all of them, in the order they came
    for item, at in let_go.items():
        assert 32.0 - 1e-9 <= at - added[item] <= 32.1 + 1e-9  # sums of floats


def test_ended_calls_are_kept_as_long_as_our_transactions_live() -> None:
    # A 2xx retransmission our INVITE client transaction passes up (64*T1, RFC 6026) must
    # still find its call to be ACKed; never less than a default-T1 peer re-sends a 2xx.
    assert KEEP_ENDED_CALL_S == 32.0
    assert keep_ended_call_s(0.5) == 32.0  # the default T1
    assert keep_ended_call_s(0.1) == 32.0  # a short T1 of ours: the peers' 2xx still counts
    assert keep_ended_call_s(2.0) == 128.0  # [sip] t1_ms = 2000


# --- timers of one delay for many calls (DelayQueue) -----------------------------------------


def test_items_fall_due_in_the_order_added_and_one_at_a_time() -> None:
    queue: DelayQueue[str, str] = DelayQueue(delay_s=60.0)
    assert queue.next_due() is None and queue.pop_due(1e9) is None
    queue.add("call-1", "first", now=10.0)
    queue.add("call-2", "second", now=10.5)
    queue.add("call-3", "third", now=11.0)
    assert queue.next_due() == 70.0
    assert queue.pop_due(69.99) is None  # not before its delay
    assert queue.pop_due(70.6) == "first"
    assert queue.pop_due(70.6) == "second"
    assert queue.pop_due(70.6) is None  # the third is due at 71
    assert len(queue) == 1 and queue.next_due() == 71.0


def test_a_cancelled_item_never_falls_due_and_leaves_nothing() -> None:
    queue: DelayQueue[str, str] = DelayQueue(delay_s=5.0)
    for n in range(1000):
        queue.add(f"call-{n}", f"item-{n}", now=float(n))
    for n in range(0, 1000, 2):
        queue.cancel(f"call-{n}")
    queue.cancel("never-added")  # nothing
    assert len(queue) == 500 and queue.next_due() == 6.0  # call-1's
    due = []
    while (item := queue.pop_due(1e9)) is not None:
        due.append(item)
    assert due == [f"item-{n}" for n in range(1, 1000, 2)]
    assert len(queue) == 0 and queue.next_due() is None


def test_an_item_added_again_is_due_from_the_new_time() -> None:
    queue: DelayQueue[str, str] = DelayQueue(delay_s=5.0)
    queue.add("call-1", "old", now=0.0)
    queue.add("call-2", "other", now=1.0)
    queue.add("call-1", "new", now=2.0)  # after call-2 now
    assert queue.pop_due(6.0) == "other"
    assert queue.pop_due(6.0) is None
    assert queue.pop_due(7.0) == "new" and len(queue) == 0
