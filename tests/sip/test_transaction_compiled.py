"""The compiled tables and timer slots of ``sip.transaction`` against the §17 data they come from.

``Transaction`` resolves ``TABLES`` and ``STATE_TIMERS`` once per timer configuration and keeps
its deadlines in three slots.  These tests hold that cache to the tables: every compiled row
is its table row, every state entry arms what ``STATE_TIMERS`` says with the RFC 3261
durations, and random input sequences leave exactly the deadlines a plain dict model of the
tables would have.  The endpoint's bookkeeping (timer heap, shared peers) is checked too.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip import endpoint as endpoint_module
from sip import transaction as transaction_module
from sip.builders import make_response
from sip.endpoint import Endpoint
from sip.events import RequestReceived
from sip.message import Request
from sip.parser import parse_message
from sip.transaction import (
    INITIAL_STATE,
    RETRANSMIT_TIMERS,
    STATE_TIMERS,
    TABLES,
    TimerConfig,
    Transaction,
    TransactionError,
    TxInput,
    TxKind,
    TxState,
)
from sip.transport import Peer

I = TxInput  # noqa: E741 - as in the module under test
S = TxState
UDP = Peer("UDP", "192.0.2.7", 5060)
TCP = Peer("TCP", "192.0.2.7", 5060, 3)

# RFC 3261 §17 durations for T1 = 0.5 s, T4 = 5 s (table 4), by transport.
UDP_DURATIONS = {
    I.TIMER_B: 32.0,
    I.TIMER_D: 32.0,
    I.TIMER_F: 32.0,
    I.TIMER_H: 32.0,
    I.TIMER_I: 5.0,
    I.TIMER_J: 32.0,
    I.TIMER_K: 5.0,
    I.TIMER_L: 32.0,
    I.TIMER_M: 32.0,
}
TCP_DURATIONS = {**UDP_DURATIONS, I.TIMER_D: 0.0, I.TIMER_I: 0.0, I.TIMER_J: 0.0, I.TIMER_K: 0.0}


def _request(method: str) -> Request:
    data = (
        f"{method} sip:bob@192.0.2.9 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-compiled-1\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bob@192.0.2.9>\r\nFrom: <sip:alice@192.0.2.7>;tag=a1\r\n"
        f"Call-ID: compiled-1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def _method(kind: TxKind) -> str:
    return "INVITE" if kind in (TxKind.CLIENT_INVITE, TxKind.SERVER_INVITE) else "OPTIONS"


def _new(kind: TxKind, peer: Peer, timers: TimerConfig, now: float = 0.0) -> Transaction:
    tx = Transaction(
        kind=kind, key=("k", kind.name), request=_request(_method(kind)), peer=peer,
        timers=timers, now=now,
    )  # fmt: skip
    if kind in (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE):
        tx.start()
    return tx


@pytest.mark.parametrize("peer", [UDP, TCP], ids=["udp", "tcp"])
@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_compiled_rows_are_the_table_rows(kind: TxKind, peer: Peer) -> None:
    tx = _new(kind, peer, TimerConfig())
    assert {key: (step.actions, step.next_state) for key, step in tx.rows.items()} == TABLES[kind]
    for (state, _), step in tx.rows.items():
        assert (step.entry is None) == (step.next_state is state)


@pytest.mark.parametrize("peer", [UDP, TCP], ids=["udp", "tcp"])
@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_each_state_entry_arms_its_state_timers_with_rfc_durations(
    kind: TxKind, peer: Peer
) -> None:
    durations = UDP_DURATIONS if peer is UDP else TCP_DURATIONS
    entering = [step for step in _new(kind, peer, TimerConfig()).rows.values() if step.entry]
    assert entering, "every kind changes state"
    for step in entering:
        entry_timers, carried = STATE_TIMERS[kind].get(step.next_state, ((), ()))
        expected: dict[TxInput, float] = {}
        for timer in entry_timers:
            if timer not in RETRANSMIT_TIMERS:
                expected[timer] = 100.0 + durations[timer]
            elif peer is UDP:  # retransmissions only over unreliable transports
                expected[timer] = 100.0 + 0.5
        tx = _new(kind, peer, TimerConfig())
        tx.state = step.next_state
        assert step.entry is not None
        tx._enter(step.entry, 100.0)
        armed = {t: at for t, at in tx.deadlines.items() if t not in carried}
        assert armed == expected, f"{kind.name} entering {step.next_state.name}"


def test_durations_follow_the_configuration() -> None:
    # The rows cache starts over when full (256 entries); earlier tests' configurations could
    # fill it between the two lookups compared with ``is`` below.
    transaction_module._COMPILED.clear()
    timers = TimerConfig(t1_s=1.0, t2_s=8.0, t4_s=2.0)
    tx = _new(TxKind.CLIENT_INVITE, UDP, timers)
    assert tx.deadlines == {I.TIMER_A: 1.0, I.TIMER_B: 64.0}
    tx.receive_response(make_response(_request("INVITE"), 486, to_tag="b"), 3.0)
    assert tx.deadlines == {I.TIMER_D: 3.0 + 64.0}  # max(32 s, 64*T1)
    server = _new(TxKind.SERVER_NON_INVITE, UDP, timers)
    server.send_response(make_response(_request("OPTIONS"), 200, to_tag="b"), 1.0)
    assert server.deadlines == {I.TIMER_J: 65.0}
    # The same configuration object later, and an equal one, give the same rows.
    assert _new(TxKind.CLIENT_INVITE, UDP, timers).rows is tx.rows
    assert _new(TxKind.CLIENT_INVITE, UDP, TimerConfig(1.0, 8.0, 2.0)).rows == tx.rows


# -- differential: the slots against a dict model of the tables -------------------------------


class DictModel:
    """The deadlines of one transaction as a dict, straight from the tables (the former code)."""

    def __init__(self, kind: TxKind, reliable: bool, timers: TimerConfig, now: float) -> None:
        self.kind = kind
        self.reliable = reliable
        self.timers = timers
        self.durations = TCP_DURATIONS if reliable else UDP_DURATIONS
        self.state = INITIAL_STATE[kind]
        self.deadlines: dict[TxInput, float] = {}
        self.intervals: dict[TxInput, float] = {}
        self.answered = False
        self.ack_received = False
        self._enter(now)
        if kind is TxKind.SERVER_INVITE and timers.trying_delay_s is not None:
            self.deadlines[I.TIMER_TRYING] = now + timers.trying_delay_s

    def _enter(self, now: float) -> None:
        entry, carried = STATE_TIMERS[self.kind].get(self.state, ((), ()))
        self.deadlines = {t: at for t, at in self.deadlines.items() if t in carried}
        for timer in entry:
            if timer in RETRANSMIT_TIMERS:
                if not self.reliable:
                    self.intervals[timer] = self.timers.t1_s
                    self.deadlines[timer] = now + self.timers.t1_s
            else:
                self.deadlines[timer] = now + self.durations[timer]

    def feed(self, tx_input: TxInput, now: float) -> bool:
        """False when the table has no row (nothing changes)."""
        row = TABLES[self.kind].get((self.state, tx_input))
        if row is None:
            return False
        actions, next_state = row
        if tx_input in self.deadlines and tx_input.name.startswith("TIMER_"):
            del self.deadlines[tx_input]
        for action in actions:
            if action.name == "SEND_RESPONSE" or (
                action.name in ("SEND_TRYING", "RESEND_RESPONSE")
                and not self.answered
                and self.kind is TxKind.SERVER_INVITE
            ):
                self.deadlines.pop(I.TIMER_TRYING, None)
                self.answered = True
            if action.name == "PASS_ACK":
                self.deadlines.pop(I.TIMER_G, None)
        if next_state is not self.state:
            self.state = next_state
            self._enter(now)
        elif tx_input in RETRANSMIT_TIMERS:
            interval = self.intervals[tx_input] * 2
            if tx_input is I.TIMER_E and self.state is S.PROCEEDING:
                interval = self.timers.t2_s
            elif tx_input is not I.TIMER_A:
                interval = min(interval, self.timers.t2_s)
            self.intervals[tx_input] = interval
            self.deadlines[tx_input] = now + interval
        return True


RESPONSE_STATUS = {I.RECV_1XX: 180, I.RECV_2XX: 200, I.RECV_3XX_6XX: 486}
SEND_STATUS = {I.SEND_1XX: 180, I.SEND_2XX: 200, I.SEND_3XX_6XX: 486}


def _drive(tx: Transaction, tx_input: TxInput, now: float) -> None:
    request = _request(_method(tx.kind))
    if tx_input in RESPONSE_STATUS:
        tx.receive_response(make_response(request, RESPONSE_STATUS[tx_input], to_tag="b"), now)
    elif tx_input in SEND_STATUS:
        tx.send_response(make_response(request, SEND_STATUS[tx_input], to_tag="b"), now)
    elif tx_input is I.RECV_REQUEST:
        tx.receive_request(request, now)
    elif tx_input is I.RECV_ACK:
        tx.receive_request(_request("ACK"), now)
    elif tx_input is I.TRANSPORT_ERROR:
        tx.transport_error(now)
    else:
        tx.fire_timer(tx_input, now)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(TxKind)),
    reliable=st.booleans(),
    trying_delay=st.sampled_from([None, 0.2]),
    data=st.data(),
)
def test_slots_hold_the_deadlines_of_the_dict_model(
    kind: TxKind, reliable: bool, trying_delay: float | None, data: st.DataObject
) -> None:
    timers = TimerConfig(trying_delay_s=trying_delay)
    tx = _new(kind, TCP if reliable else UDP, timers)
    model = DictModel(kind, reliable, timers, 0.0)
    now = 0.0
    for _ in range(data.draw(st.integers(0, 12), label="steps")):
        # Mostly an input the current state has a row for, so the walks reach every state;
        # sometimes any input, which must be refused without a change.
        with_rows = sorted(
            (tx_input for state, tx_input in TABLES[kind] if state is model.state),
            key=lambda tx_input: tx_input.value,
        )
        any_input = st.sampled_from(list(TxInput))
        choice = st.sampled_from(with_rows) | any_input if with_rows else any_input
        tx_input = data.draw(choice, label="input")
        now += data.draw(st.floats(min_value=0.0, max_value=5.0), label="wait")
        if tx_input in RETRANSMIT_TIMERS and tx_input not in model.intervals:
            continue  # firing by hand a retransmit timer that was never armed: no model
        if tx_input is I.TIMER_TRYING and model.answered:
            continue  # the model does not keep last_response
        has_row = model.feed(tx_input, now)
        if has_row:
            _drive(tx, tx_input, now)
        else:
            with pytest.raises(TransactionError):
                _drive(tx, tx_input, now)
        assert tx.state is model.state
        assert tx.deadlines == model.deadlines
        expected_next = min(model.deadlines.values()) if model.deadlines else None
        assert tx.next_deadline() == expected_next
        by_deadline = sorted(model.deadlines.items(), key=lambda item: item[1])
        assert tx.due_timers(now + 100.0) == [timer for timer, _ in by_deadline]


# -- the endpoint ------------------------------------------------------------------------------


def _invite(branch: str) -> bytes:
    return (
        "INVITE sip:bob@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bob@192.0.2.1>\r\nFrom: <sip:alice@192.0.2.7>;tag=a1\r\n"
        f"Call-ID: {branch}@192.0.2.7\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.7>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_timer_heap_gets_an_entry_only_when_a_deadline_moves() -> None:
    endpoint = Endpoint(local_host="192.0.2.1", local_port=5060)
    endpoint.receive_datagram(_invite("heap1"), ("192.0.2.7", 5060), 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    assert len(endpoint._deadlines) == 0  # Proceeding: nothing armed (100 sent at once)
    endpoint.send_response(event.tx_key, endpoint.response_for(event.tx_key, 180), 0.1)
    assert len(endpoint._deadlines) == 0
    endpoint.send_response(event.tx_key, endpoint.response_for(event.tx_key, 486), 0.2)
    assert [at for at, _, _ in endpoint._deadlines._heap] == [0.7]  # G (H at 32.2 comes later)
    # A retransmitted INVITE re-sends the 486 and moves no deadline: no new entry.
    endpoint.receive_datagram(_invite("heap1"), ("192.0.2.7", 5060), 0.3)
    assert len(endpoint._deadlines) == 1
    assert endpoint.next_timer() == 0.7
    endpoint.handle_timer(0.7)  # G re-sends and doubles: next at 0.7 + 1.0
    assert endpoint.next_timer() == pytest.approx(1.7)
    assert len(endpoint.datagrams_to_send()) == 5  # 100, 180, 486, 486 again, 486 on G


def test_messages_and_transactions_from_one_address_share_one_peer() -> None:
    endpoint = Endpoint(local_host="192.0.2.1", local_port=5060)
    for branch in ("p1", "p2"):
        endpoint.receive_datagram(_invite(branch), ("192.0.2.7", 5060), 0.0)
    first, second = endpoint.next_event(), endpoint.next_event()
    assert isinstance(first, RequestReceived) and isinstance(second, RequestReceived)
    assert first.peer == Peer("UDP", "192.0.2.7", 5060)
    assert first.peer is second.peer


def test_the_peer_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "_MAX_UDP_PEERS_CACHED", 8)
    endpoint = Endpoint(local_host="192.0.2.1", local_port=5060)
    for port in range(5000, 5100):
        endpoint.receive_datagram(_invite(f"b{port}"), ("192.0.2.7", port), 0.0)
    assert len(endpoint._udp_peers) <= 8
    assert endpoint.transaction_count == 100


def test_a_finished_transaction_keeps_one_gc_tracked_object() -> None:
    # Completed (486 sent) on UDP: the transaction lives on for 64*T1; its deadlines and
    # intervals are floats in slots and its peer is shared, so only the object itself is tracked.
    endpoint = Endpoint(local_host="192.0.2.1", local_port=5060)
    endpoint.receive_datagram(_invite("warm"), ("192.0.2.7", 5060), 0.0)
    gc.collect()
    before = len(gc.get_objects())
    count = 200
    for n in range(count):
        endpoint.receive_datagram(_invite(f"gc{n}"), ("192.0.2.7", 5060), 0.0)
        event = endpoint.next_event()
        assert isinstance(event, RequestReceived)
        endpoint.send_response(event.tx_key, endpoint.response_for(event.tx_key, 486), 0.0)
    endpoint.datagrams_to_send()
    gc.collect()
    gc.collect()
    per_transaction = (len(gc.get_objects()) - before) / count
    assert per_transaction <= 1.1
