"""Transactions: the four tables exhaustively, then RFC 3261 §17 / RFC 6026 behaviour of two
endpoints talking to each other on a fake clock (EXAMPLES.md §1.7, §3).

Timer values with the defaults T1 = 0.5 s, T2 = 4 s, T4 = 5 s: A doubles from T1 without cap;
E and G double from T1 capped at T2; B, F, H, J, L, M = 64·T1 = 32 s; D = 32 s; I, K = T4.
On a reliable transport A, E, G never run and D, I, J, K are 0.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from helpers import (
    UAC_ADDR,
    UAS_ADDR,
    EndpointPair,
    Side,
    make_2xx_ack,
    make_bye,
    make_cancel_without_invite,
    make_invite,
    make_options,
    tx_state,
)

from sip.builders import make_response
from sip.endpoint import Endpoint
from sip.errors import SipUsageError
from sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TxKey,
)
from sip.headers import HeaderList
from sip.message import Request, Response
from sip.parser import parse_message
from sip.transaction import (
    INITIAL_STATE,
    REQUEST_DONE_STATES,
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

I = TxInput  # noqa: E741
S = TxState

# =====================================================================================
# 1. The tables, exhaustively
# =====================================================================================

CLIENT_KINDS = (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE)
RECV_RESPONSES = (I.RECV_1XX, I.RECV_2XX, I.RECV_3XX_6XX)
STATUS_FOR = {
    I.RECV_1XX: 180,
    I.RECV_2XX: 200,
    I.RECV_3XX_6XX: 486,
    I.SEND_1XX: 180,
    I.SEND_2XX: 200,
    I.SEND_3XX_6XX: 486,
}
UDP_PEER = Peer("UDP", *UAC_ADDR)


def _request(method: str) -> Request:
    headers = HeaderList()
    for name, value in (
        ("Via", f"SIP/2.0/UDP {UAC_ADDR[0]}:{UAC_ADDR[1]};branch=z9hG4bKtable1;rport"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@192.0.2.10>;tag=a1"),
        ("To", "<sip:bob@192.0.2.20>"),
        ("Call-ID", "table@192.0.2.10"),
        ("CSeq", f"1 {method}"),
    ):
        headers.add(name, value)
    return Request(method, "sip:bob@192.0.2.20", headers)


def _new_transaction(kind: TxKind) -> Transaction:
    method = "INVITE" if kind in (TxKind.CLIENT_INVITE, TxKind.SERVER_INVITE) else "OPTIONS"
    tx = Transaction(
        kind=kind,
        key=("t", kind.name),
        request=_request(method),
        peer=UDP_PEER,
        timers=TimerConfig(),
        now=0.0,
    )
    if kind in CLIENT_KINDS:
        tx.start()
    return tx


def _request_of(tx: Transaction) -> Request:
    """The request ``tx`` was created with (rebuilt: the transaction drops it once answered)."""
    return _request(
        "INVITE" if tx.kind in (TxKind.CLIENT_INVITE, TxKind.SERVER_INVITE) else "OPTIONS"
    )


def _feed(tx: Transaction, tx_input: TxInput, now: float) -> object:
    """Apply ``tx_input`` through the public method the endpoint would call."""
    if tx_input in RECV_RESPONSES:
        response = make_response(_request_of(tx), STATUS_FOR[tx_input], to_tag="b")
        return tx.receive_response(response, now)
    if tx_input in (I.SEND_1XX, I.SEND_2XX, I.SEND_3XX_6XX):
        response = make_response(_request_of(tx), STATUS_FOR[tx_input], to_tag="b")
        return tx.send_response(response, now)
    if tx_input is I.RECV_REQUEST:
        return tx.receive_request(_request_of(tx), now)
    if tx_input is I.RECV_ACK:
        ack = _request("ACK")
        return tx.receive_request(ack, now)
    if tx_input is I.TRANSPORT_ERROR:
        return tx.transport_error(now)
    return tx.fire_timer(tx_input, now)


def _states_of(kind: TxKind) -> set[TxState]:
    table = TABLES[kind]
    return {state for state, _ in table} | {row[1] for row in table.values()}


def _path_to(kind: TxKind, target: TxState) -> list[TxInput] | None:
    """Shortest sequence of inputs leading from the initial state to ``target``."""
    table = TABLES[kind]
    start = INITIAL_STATE[kind]
    paths: dict[TxState, list[TxInput]] = {start: []}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        for (source, tx_input), (_, next_state) in table.items():
            if source is state and next_state not in paths:
                paths[next_state] = [*paths[state], tx_input]
                queue.append(next_state)
    return paths.get(target)


def _transaction_in(kind: TxKind, state: TxState) -> Transaction:
    """A transaction driven into ``state`` through public inputs.

    Only a state that no row of this kind's table leads to (e.g. CONFIRMED for a client
    transaction) is set directly: there is no public path to it, and it has no rows.
    """
    tx = _new_transaction(kind)
    path = _path_to(kind, state)
    if path is None:
        tx.state = state
        return tx
    for step, tx_input in enumerate(path, start=1):
        _feed(tx, tx_input, float(step))
    assert tx.state is state
    return tx


def _snapshot(tx: Transaction) -> tuple[object, ...]:
    return (
        tx.state,
        dict(tx.deadlines),
        dict(tx.intervals),
        tx.last_response,
        tx.last_response_status,
        tx.ack_bytes,
        tx.ack_received,
        tx.request_bytes,
    )


TABLE_CASES = [
    pytest.param(kind, state, tx_input, id=f"{kind.name}-{state.name}-{tx_input.name}")
    for kind in TxKind
    for state, tx_input in itertools.product(TxState, TxInput)
]


@pytest.mark.parametrize(("kind", "state", "tx_input"), TABLE_CASES)
def test_every_state_input_pair_follows_the_table(
    kind: TxKind, state: TxState, tx_input: TxInput
) -> None:
    tx = _transaction_in(kind, state)
    row = TABLES[kind].get((state, tx_input))
    if row is None:
        before = _snapshot(tx)
        with pytest.raises(TransactionError):
            _feed(tx, tx_input, 100.0)
        assert _snapshot(tx) == before, "a refused input must change nothing"
        return
    _feed(tx, tx_input, 100.0)
    assert tx.state is row[1]
    # Whatever is armed now must have a row, or it would fire into a TransactionError.
    for armed in tx.deadlines:
        assert (tx.state, armed) in TABLES[kind], f"{armed.name} armed in {tx.state.name}"
    if tx.state is S.TERMINATED:
        assert tx.deadlines == {}


@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_every_state_can_reach_terminated(kind: TxKind) -> None:
    table = TABLES[kind]
    for state in _states_of(kind):
        seen = {state}
        queue = deque([state])
        while queue:
            current = queue.popleft()
            for (source, _), (_, next_state) in table.items():
                if source is current and next_state not in seen:
                    seen.add(next_state)
                    queue.append(next_state)
        assert S.TERMINATED in seen, f"{kind.name}: {state.name} is a dead end"


@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_every_state_is_reachable_from_the_initial_state(kind: TxKind) -> None:
    for state in _states_of(kind):
        assert _path_to(kind, state) is not None, f"{kind.name}: {state.name} unreachable"


@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_the_request_and_its_bytes_are_kept_exactly_until_the_final_response(kind: TxKind) -> None:
    # Kept while a response may still be built from it (server) or a non-2xx ACK (client);
    # dropped once answered, so 64*T1 of absorbing retransmissions keeps only bytes.
    for state in _states_of(kind):
        if _path_to(kind, state) is None:
            continue
        tx = _transaction_in(kind, state)
        if state in REQUEST_DONE_STATES:
            assert tx.request is None, f"{kind.name} in {state.name} still holds its request"
            # Nor its bytes: nothing re-sends the request after a final response.
            assert tx.request_bytes is None, f"{kind.name} in {state.name} holds its bytes"
        else:
            assert tx.request is not None, f"{kind.name} in {state.name} lost its request"
            client = kind in (TxKind.CLIENT_INVITE, TxKind.CLIENT_NON_INVITE)
            assert (tx.request_bytes is not None) == client, f"{kind.name} in {state.name}"


# What a peer can make happen to each kind (the endpoint filters the rest: a response never
# reaches a server transaction, an ACK only ever matches an INVITE server transaction).
NETWORK_INPUTS: dict[TxKind, tuple[TxInput, ...]] = {
    TxKind.CLIENT_INVITE: RECV_RESPONSES,
    TxKind.CLIENT_NON_INVITE: RECV_RESPONSES,
    TxKind.SERVER_INVITE: (I.RECV_REQUEST, I.RECV_ACK),
    TxKind.SERVER_NON_INVITE: (I.RECV_REQUEST,),
}


@pytest.mark.parametrize(
    ("kind", "state", "tx_input"),
    [
        pytest.param(kind, state, tx_input, id=f"{kind.name}-{state.name}-{tx_input.name}")
        for kind, inputs in NETWORK_INPUTS.items()
        for state in sorted(_states_of(kind) - {S.TERMINATED}, key=lambda s: s.value)
        for tx_input in inputs
    ],
)
def test_a_peer_can_never_trigger_a_transaction_error(
    kind: TxKind, state: TxState, tx_input: TxInput
) -> None:
    assert (state, tx_input) in TABLES[kind]


@pytest.mark.parametrize("kind", list(TxKind), ids=lambda k: k.name)
def test_state_timers_have_rows(kind: TxKind) -> None:
    for state, (entry, carried) in STATE_TIMERS[kind].items():
        for timer in (*entry, *carried):
            assert (state, timer) in TABLES[kind], f"{timer.name} armed in {state.name}"


# =====================================================================================
# 2. Two endpoints: retransmission schedules and timeouts
# =====================================================================================

TIMER_A_SCHEDULE = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # doubling, no cap
CAPPED_SCHEDULE = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # E and G


def _answer(pair: EndpointPair, tx_key: TxKey, status: int) -> Response:
    response = pair.uas.response_for(tx_key, status)
    pair.uas.send_response(tx_key, response, pair.now_s)
    return response


def _invite_at_uas(pair: EndpointPair) -> tuple[TxKey, TxKey, Request]:
    """UAC sends an INVITE, the UAS receives it; returns (client key, server key, INVITE)."""
    invite = make_invite()
    client_key = pair.uac.send_request(invite, pair.uas_peer, pair.now_s)
    pair.deliver("uac")
    (event,) = pair.events("uas")
    assert isinstance(event, RequestReceived)
    assert event.request.method == "INVITE"
    return client_key, event.tx_key, invite


def _options_at_uas(pair: EndpointPair) -> tuple[TxKey, TxKey]:
    client_key = pair.uac.send_request(make_options(), pair.uas_peer, pair.now_s)
    pair.deliver("uac")
    (event,) = pair.events("uas")
    assert isinstance(event, RequestReceived)
    return client_key, event.tx_key


def test_invite_lost_timer_a_doubles_then_timer_b(pair: EndpointPair) -> None:
    key = pair.uac.send_request(make_invite(), pair.uas_peer, pair.now_s)
    trace = pair.run(lose={"uac"})
    assert trace.times("uac", "INVITE") == TIMER_A_SCHEDULE
    assert len(set(trace.datas("uac", "INVITE"))) == 1, "retransmissions are the same bytes"
    assert trace.events_of("uac") == [(32.0, TransactionTimedOut(key, "B"))]
    assert trace.events_of("uas") == []
    assert pair.uac.transaction_count == 0
    assert pair.next_timer() is None


def test_timer_a_with_other_t1() -> None:
    timers = TimerConfig(t1_s=0.1, t2_s=4.0)
    uac = Endpoint(local_host=UAC_ADDR[0], local_port=UAC_ADDR[1], timers=timers)
    pair = EndpointPair(uac=uac)
    key = pair.uac.send_request(make_invite(), pair.uas_peer, pair.now_s)
    trace = pair.run(lose={"uac"})
    # 64·T1 = 6.4 s: sends at 0, .1, .3, .7, 1.5, 3.1 (next would be 6.3 < 6.4 too).
    assert trace.times("uac", "INVITE") == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert trace.events_of("uac") == [(pytest.approx(6.4), TransactionTimedOut(key, "B"))]


def test_non_invite_lost_timer_e_capped_at_t2_then_timer_f(pair: EndpointPair) -> None:
    key = pair.uac.send_request(make_options(), pair.uas_peer, pair.now_s)
    trace = pair.run(lose={"uac"})
    assert trace.times("uac", "OPTIONS") == CAPPED_SCHEDULE
    assert trace.events_of("uac") == [(32.0, TransactionTimedOut(key, "F"))]
    assert pair.uac.transaction_count == 0


def test_non_invite_after_1xx_timer_e_fires_every_t2(pair: EndpointPair) -> None:
    client_key, server_key = _options_at_uas(pair)
    pair.now_s = 0.25
    _answer(pair, server_key, 100)
    pair.deliver("uas")
    (event,) = pair.events("uac")
    assert isinstance(event, ResponseReceived)
    assert event.response.status_code == 100
    assert tx_state(pair.uac, client_key) is S.PROCEEDING
    trace = pair.run(lose={"uac", "uas"})
    # E armed in Trying (due 0.5) keeps running; from then on it is reset to T2 each time.
    assert trace.times("uac", "OPTIONS") == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert trace.events_of("uac") == [(32.0, TransactionTimedOut(client_key, "F"))]


def test_486_ack_lost_timer_g_then_timer_h(pair: EndpointPair) -> None:
    _client_key, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 486)
    # Every ACK the UAC sends (the first, and one per retransmitted 486) is lost.
    trace = pair.run(lose={"uac"})
    assert trace.times("uas", "SIP/2.0 100") == [0.0]
    assert trace.times("uas", "SIP/2.0 486") == CAPPED_SCHEDULE
    assert len(set(trace.datas("uas", "SIP/2.0 486"))) == 1
    assert trace.events_of("uas") == [(32.0, TransactionTimedOut(server_key, "H"))]
    # The UAC saw 100 and 486 once each; each 486 copy was answered with the same ACK.
    uac_events = [event for _, event in trace.events_of("uac")]
    assert [e.response.status_code for e in uac_events if isinstance(e, ResponseReceived)] == [
        100,
        486,
    ]
    assert len(uac_events) == 2
    acks = trace.datas("uac", "ACK")
    assert trace.times("uac", "ACK") == CAPPED_SCHEDULE
    assert len(set(acks)) == 1
    assert pair.uas.transaction_count == 0
    assert pair.uac.transaction_count == 0


def test_ack_arrives_confirmed_then_timer_i(pair: EndpointPair) -> None:
    client_key, server_key, invite = _invite_at_uas(pair)
    _answer(pair, server_key, 486)
    pair.deliver("uas")  # 100, 486
    assert [e.response.status_code for e in pair.events("uac")] == [100, 486]  # type: ignore[union-attr]
    (ack,) = pair.deliver("uac")
    assert ack.startswith(b"ACK ")
    assert parse_message(ack).top_via.branch == invite.top_via.branch  # §17.1.1.3
    assert tx_state(pair.uas, server_key) is S.CONFIRMED
    assert pair.events("uas") == [], "the ACK of a non-2xx stays in the transaction"
    assert pair.uas.next_timer() == 5.0  # Timer I = T4
    assert pair.uac.next_timer() == 32.0  # Timer D
    trace = pair.run()
    assert trace.sent == [], "nothing re-sent after the ACK"
    assert trace.events == []
    assert pair.uas.transaction_count == 0
    assert tx_state(pair.uac, client_key) is S.TERMINATED


def test_timer_d_keeps_the_client_invite_completed_32s_over_udp(pair: EndpointPair) -> None:
    client_key, server_key, _ = _invite_at_uas(pair)
    pair.now_s = 1.0
    _answer(pair, server_key, 486)
    pair.deliver("uas")
    pair.deliver("uac")
    assert tx_state(pair.uac, client_key) is S.COMPLETED
    assert pair.uac.next_timer() == 33.0
    pair.advance(31.5)
    assert tx_state(pair.uac, client_key) is S.COMPLETED
    pair.advance(0.5)
    assert tx_state(pair.uac, client_key) is S.TERMINATED
    statuses = [e.response.status_code for e in pair.events("uac")]  # type: ignore[union-attr]
    assert statuses == [100, 486], "Timer D ends the transaction without an event"


def test_timer_d_is_zero_over_tcp(tcp_pair: EndpointPair) -> None:
    pair = tcp_pair
    client_key, server_key, _ = _invite_at_uas(pair)
    pair.now_s = 1.0
    _answer(pair, server_key, 486)
    pair.deliver("uas")
    (ack,) = pair.deliver("uac")
    assert ack.startswith(b"ACK ")
    assert tx_state(pair.uac, client_key) is S.COMPLETED
    assert pair.uac.next_timer() == 1.0  # Timer D = 0: gone at the next handle_timer
    assert tx_state(pair.uas, server_key) is S.CONFIRMED
    assert pair.uas.next_timer() == 1.0  # Timer I = 0
    trace = pair.run()
    assert trace.sent == []
    assert pair.now_s == 1.0
    assert pair.uac.transaction_count == 0
    assert pair.uas.transaction_count == 0


def test_reliable_transport_never_retransmits_invite(tcp_pair: EndpointPair) -> None:
    key = tcp_pair.uac.send_request(make_invite(), tcp_pair.uas_peer, 0.0)
    trace = tcp_pair.run(lose={"uac"})
    assert trace.times("uac", "INVITE") == [0.0]
    assert trace.events_of("uac") == [(32.0, TransactionTimedOut(key, "B"))]


def test_reliable_transport_never_retransmits_non_invite(tcp_pair: EndpointPair) -> None:
    key = tcp_pair.uac.send_request(make_options(), tcp_pair.uas_peer, 0.0)
    trace = tcp_pair.run(lose={"uac"})
    assert trace.times("uac", "OPTIONS") == [0.0]
    assert trace.events_of("uac") == [(32.0, TransactionTimedOut(key, "F"))]


def test_reliable_transport_never_retransmits_final_responses(tcp_pair: EndpointPair) -> None:
    pair = tcp_pair
    _, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 486)
    trace = pair.run(lose={"uac"})
    assert trace.times("uas", "SIP/2.0 486") == [0.0]
    assert trace.events_of("uas") == [(32.0, TransactionTimedOut(server_key, "H"))]


def test_reliable_transport_never_retransmits_2xx(tcp_pair: EndpointPair) -> None:
    pair = tcp_pair
    _, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 200)
    trace = pair.run(lose={"uac"})
    assert trace.times("uas", "SIP/2.0 200") == [0.0]
    assert trace.events_of("uas") == [(32.0, TransactionTimedOut(server_key, "L"))]


@pytest.mark.parametrize(
    ("transport", "timer_j", "timer_k"), [("UDP", 32.0, 5.0), ("TCP", 0.0, 0.0)]
)
def test_timer_j_and_k(transport: str, timer_j: float, timer_k: float) -> None:
    pair = EndpointPair(transport=transport)
    client_key, server_key = _options_at_uas(pair)
    _answer(pair, server_key, 200)
    assert tx_state(pair.uas, server_key) is S.COMPLETED
    assert pair.uas.next_timer() == timer_j
    pair.deliver("uas")
    assert tx_state(pair.uac, client_key) is S.COMPLETED
    assert pair.uac.next_timer() == timer_k
    trace = pair.run()
    assert trace.sent == []
    assert pair.uas.transaction_count == 0
    assert pair.uac.transaction_count == 0
    assert pair.now_s == max(timer_j, timer_k)


def test_timer_k_ends_before_timer_j(pair: EndpointPair) -> None:
    client_key, server_key = _options_at_uas(pair)
    _answer(pair, server_key, 200)
    pair.deliver("uas")
    pair.advance(5.0)
    assert tx_state(pair.uac, client_key) is S.TERMINATED
    assert tx_state(pair.uas, server_key) is S.COMPLETED
    pair.advance(27.0)
    assert tx_state(pair.uas, server_key) is S.TERMINATED


# =====================================================================================
# 3. Absorption of retransmissions
# =====================================================================================


def test_invite_retransmission_in_proceeding_resends_last_provisional(
    pair: EndpointPair,
) -> None:
    _, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 180)
    first = pair.drop("uas")  # 100 and 180 are lost, so the UAC retransmits
    assert [m.split(b"\r\n", 1)[0] for m in first] == [
        b"SIP/2.0 100 Trying",
        b"SIP/2.0 180 Ringing",
    ]
    assert pair.advance_to_next_timer() == 0.5  # Timer A
    (retransmitted,) = pair.deliver("uac")
    assert retransmitted.startswith(b"INVITE ")
    assert pair.drop("uas") == [first[1]], "the last provisional, byte for byte"
    assert pair.events("uas") == [], "no second RequestReceived"
    assert tx_state(pair.uas, server_key) is S.PROCEEDING
    assert pair.uas.stats.retransmissions_absorbed == 1


def test_non_invite_retransmission_in_completed_resends_final(pair: EndpointPair) -> None:
    _, server_key = _options_at_uas(pair)
    _answer(pair, server_key, 200)
    (final,) = pair.drop("uas")
    assert pair.advance_to_next_timer() == 0.5  # Timer E
    (retransmitted,) = pair.deliver("uac")
    assert retransmitted.startswith(b"OPTIONS ")
    assert pair.drop("uas") == [final]
    assert pair.events("uas") == []
    assert tx_state(pair.uas, server_key) is S.COMPLETED


def test_non_invite_retransmission_in_trying_is_absorbed_silently(pair: EndpointPair) -> None:
    _, server_key = _options_at_uas(pair)
    assert pair.advance_to_next_timer() == 0.5
    pair.deliver("uac")
    assert pair.drop("uas") == [], "nothing to re-send before the TU answers"
    assert pair.events("uas") == []
    assert tx_state(pair.uas, server_key) is S.TRYING


def test_final_response_retransmission_at_uac_resends_ack(pair: EndpointPair) -> None:
    client_key, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 486)
    responses = pair.drop("uas")
    final = responses[-1]
    pair.uac.receive_datagram(final, UAS_ADDR, pair.now_s)
    (ack,) = pair.drop("uac")
    events = pair.events("uac")
    assert [type(e) for e in events] == [ResponseReceived]
    pair.now_s = 0.5
    pair.uac.receive_datagram(final, UAS_ADDR, pair.now_s)
    assert pair.drop("uac") == [ack], "the same ACK, byte for byte"
    assert pair.events("uac") == [], "no second ResponseReceived"
    assert tx_state(pair.uac, client_key) is S.COMPLETED
    # A late provisional is absorbed too.
    pair.uac.receive_datagram(responses[0], UAS_ADDR, pair.now_s)
    assert pair.drop("uac") == []
    assert pair.events("uac") == []


def test_ack_before_any_final_response_is_absorbed(pair: EndpointPair) -> None:
    """A peer ACKing an INVITE we have not answered must not reach the table as an error."""
    _client_key, server_key, invite = _invite_at_uas(pair)
    pair.drop("uas")
    bogus_ack = Request("ACK", invite.uri, invite.headers.copy())
    bogus_ack.headers.set("CSeq", f"{invite.cseq.seq} ACK")
    bogus_ack.body = b""
    bogus_ack.headers.remove("Content-Type")
    pair.uas.receive_datagram(bogus_ack.to_bytes(), UAC_ADDR, pair.now_s)
    assert pair.uas.stats.internal_errors == 0, pair.uas.last_internal_error
    assert pair.drop("uas") == []
    assert pair.events("uas") == []
    assert tx_state(pair.uas, server_key) is S.PROCEEDING


# =====================================================================================
# 4. RFC 6026: 2xx, Accepted, Timers L and M
# =====================================================================================


def _ack_each_2xx(invite: Request) -> object:
    """Play the UAC core: every 2xx (first or retransmitted) gets an ACK (§13.2.2.4)."""

    def on_event(pair: EndpointPair, side: Side, event: Event) -> None:
        if (
            side == "uac"
            and isinstance(event, ResponseReceived)
            and 200 <= event.response.status_code < 300
        ):
            pair.uac.send_ack(make_2xx_ack(invite, event.response), pair.uas_peer)

    return on_event


def test_2xx_resent_on_timer_g_until_the_ack(pair: EndpointPair) -> None:
    client_key, server_key, invite = _invite_at_uas(pair)
    _answer(pair, server_key, 200)
    assert tx_state(pair.uas, server_key) is S.ACCEPTED
    # The first 2xx copies are lost; from 7.5 s on the network works again.
    lost = pair.run(lose={"uas"}, until=7.4)
    assert lost.times("uas", "SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5]
    trace = pair.run(on_event=_ack_each_2xx(invite))  # type: ignore[arg-type]
    assert trace.times("uas", "SIP/2.0 200") == [7.5]
    acks = trace.datas("uac", "ACK")
    assert len(acks) == 1
    ack = parse_message(acks[0])
    assert ack.top_via.branch != invite.top_via.branch, "the 2xx ACK is a new transaction"
    uas_events = [event for _, event in trace.events_of("uas")]
    assert len(uas_events) == 1
    (ack_event,) = uas_events
    assert isinstance(ack_event, AckReceived)
    assert ack_event.tx_key == server_key
    # The ACK stops the 2xx; Timer L ends the transaction quietly at 32 s.
    assert [s.at for s in trace.sent if s.at > 7.5] == []
    assert pair.uas.transaction_count == 0
    assert pair.now_s == 39.5  # the UAC's Timer M: 64·T1 after its first 2xx at 7.5
    assert tx_state(pair.uac, client_key) is S.TERMINATED


def test_invite_retransmission_in_accepted_is_absorbed(pair: EndpointPair) -> None:
    _, server_key, _ = _invite_at_uas(pair)
    pair.drop("uas")
    pair.now_s = 0.2
    _answer(pair, server_key, 200)
    pair.drop("uas")
    assert pair.advance_to_next_timer() == 0.5  # the UAC's Timer A (it saw nothing)
    (retransmitted,) = pair.deliver("uac")
    assert retransmitted.startswith(b"INVITE ")
    assert pair.drop("uas") == [], "no response re-sent for the INVITE copy"
    assert pair.events("uas") == []
    assert tx_state(pair.uas, server_key) is S.ACCEPTED
    assert pair.uas.next_timer() == pytest.approx(0.7)  # Timer G keeps its own schedule


def test_2xx_never_acked_timer_l(pair: EndpointPair) -> None:
    _, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 200)
    trace = pair.run(lose={"uac"})
    assert trace.times("uas", "SIP/2.0 200") == CAPPED_SCHEDULE
    assert len(set(trace.datas("uas", "SIP/2.0 200"))) == 1
    assert trace.events_of("uas") == [(32.0, TransactionTimedOut(server_key, "L"))]
    assert pair.uas.transaction_count == 0


def test_uac_passes_every_2xx_retransmission_up_then_timer_m(pair: EndpointPair) -> None:
    client_key, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 200)
    # The UAC's ACKs are lost, so the UAS keeps re-sending and the UAC keeps seeing the 2xx.
    trace = pair.run(lose={"uac"}, until=10.0)
    oks = [
        (at, event)
        for at, event in trace.events_of("uac")
        if isinstance(event, ResponseReceived) and event.response.status_code == 200
    ]
    assert [at for at, _ in oks] == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert all(event.tx_key == client_key for _, event in oks)
    assert tx_state(pair.uac, client_key) is S.ACCEPTED
    last_ok = trace.datas("uas", "SIP/2.0 200")[-1]
    # Timer M = 64·T1 after the first 2xx.
    assert pair.uac.next_timer() == 32.0
    pair.uas = Endpoint(local_host=UAS_ADDR[0], local_port=UAS_ADDR[1])  # the UAS falls silent
    pair.advance(31.9 - pair.now_s)
    assert tx_state(pair.uac, client_key) is S.ACCEPTED
    assert pair.advance_to_next_timer() == 32.0
    assert tx_state(pair.uac, client_key) is S.TERMINATED
    assert pair.events("uac") == [], "Timer M ends Accepted without an event"
    # A 2xx after that is a stray the dialog layer still has to ACK.
    pair.uac.receive_datagram(last_ok, UAS_ADDR, pair.now_s)
    (stray,) = pair.events("uac")
    assert isinstance(stray, ResponseReceived)
    assert stray.tx_key is None
    assert stray.response.status_code == 200
    assert pair.drop("uac") == []


def test_bye_after_2xx_is_its_own_transaction(pair: EndpointPair) -> None:
    _client_key, server_key, invite = _invite_at_uas(pair)
    ok = _answer(pair, server_key, 200)
    pair.deliver("uas")
    pair.events("uac")
    response = parse_message(ok.to_bytes())
    assert isinstance(response, Response)
    pair.uac.send_ack(make_2xx_ack(invite, response), pair.uas_peer)
    pair.deliver("uac")
    assert [type(e) for e in pair.events("uas")] == [AckReceived]
    bye_key = pair.uac.send_request(make_bye(invite, response), pair.uas_peer, pair.now_s)
    pair.deliver("uac")
    (bye,) = pair.events("uas")
    assert isinstance(bye, RequestReceived)
    assert bye.in_dialog
    _answer(pair, bye.tx_key, 200)
    pair.deliver("uas")
    (done,) = pair.events("uac")
    assert isinstance(done, ResponseReceived)
    assert done.tx_key == bye_key
    assert done.response.status_code == 200


def _delayed_trying_pair() -> EndpointPair:
    uas = Endpoint(
        local_host=UAS_ADDR[0], local_port=UAS_ADDR[1], timers=TimerConfig(trying_delay_s=0.2)
    )
    return EndpointPair(uas=uas)


def _status_lines(sent: list[bytes]) -> list[bytes]:
    return [data.split(b"\r\n", 1)[0] for data in sent]


def test_delayed_trying_is_left_out_when_the_answer_is_quick() -> None:
    pair = _delayed_trying_pair()
    _, server_key, _ = _invite_at_uas(pair)
    assert pair.drop("uas") == []  # no 100 on receipt
    pair.advance(0.1)
    _answer(pair, server_key, 180)
    assert _status_lines(pair.drop("uas")) == [b"SIP/2.0 180 Ringing"]
    pair.advance(0.5)  # past the 200 ms: still no 100 after the 180
    assert pair.drop("uas") == []


def test_delayed_trying_goes_out_after_200_ms_of_silence() -> None:
    pair = _delayed_trying_pair()
    client_key, server_key, _ = _invite_at_uas(pair)
    pair.advance(0.19)
    assert pair.drop("uas") == []
    pair.advance(0.02)
    (trying,) = pair.deliver("uas")
    assert trying.startswith(b"SIP/2.0 100 Trying")
    assert tx_state(pair.uac, client_key) is S.PROCEEDING  # the caller stops retransmitting
    _answer(pair, server_key, 486)
    assert _status_lines(pair.drop("uas")) == [b"SIP/2.0 486 Busy Here"]


def test_a_retransmitted_invite_gets_the_delayed_trying_at_once_and_only_once() -> None:
    pair = _delayed_trying_pair()
    _, _, invite = _invite_at_uas(pair)
    pair.now_s = 0.1
    pair.uas.receive_datagram(invite.to_bytes(), UAC_ADDR, pair.now_s)  # a retransmission
    assert pair.events("uas") == []
    (trying,) = pair.drop("uas")
    assert trying.startswith(b"SIP/2.0 100 Trying")
    pair.advance(0.5)  # the delayed timer was disarmed by the 100 already sent
    assert pair.drop("uas") == []


# =====================================================================================
# 5. CANCEL
# =====================================================================================


def test_cancel_pending_invite(pair: EndpointPair) -> None:
    client_key, server_key, invite = _invite_at_uas(pair)
    pair.deliver("uas")  # 100 Trying
    assert [e.response.status_code for e in pair.events("uac")] == [100]  # type: ignore[union-attr]
    assert tx_state(pair.uac, client_key) is S.PROCEEDING
    pair.now_s = 2.0
    cancel_key = pair.uac.send_cancel(client_key, pair.now_s)
    (cancel_bytes,) = pair.deliver("uac")
    cancel = parse_message(cancel_bytes)
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch  # §9.1
    assert cancel.cseq.seq == invite.cseq.seq
    (event,) = pair.events("uas")
    assert isinstance(event, CancelReceived)
    assert event.invite_tx_key == server_key
    # The 200 to the CANCEL is already queued; the application answers the INVITE 487.
    _answer(pair, server_key, 487)
    sent = pair.deliver("uas")
    assert [m.split(b"\r\n", 1)[0] for m in sent] == [
        b"SIP/2.0 200 OK",
        b"SIP/2.0 487 Request Terminated",
    ]
    assert b"CSeq: 1 CANCEL" in sent[0]
    events = pair.events("uac")
    assert [(e.tx_key, e.response.status_code) for e in events] == [  # type: ignore[union-attr]
        (cancel_key, 200),
        (client_key, 487),
    ]
    (ack_bytes,) = pair.deliver("uac")
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.top_via.branch == invite.top_via.branch  # ACK of a non-2xx: same branch
    assert ack.to_tag == parse_message(sent[1]).to_tag
    assert tx_state(pair.uas, server_key) is S.CONFIRMED
    assert pair.events("uas") == []


def test_cancel_for_unknown_transaction_gets_481(pair: EndpointPair) -> None:
    cancel = make_cancel_without_invite(make_invite())
    key = pair.uac.send_request(cancel, pair.uas_peer, pair.now_s)
    pair.deliver("uac")
    assert pair.events("uas") == []
    pair.deliver("uas")
    (event,) = pair.events("uac")
    assert isinstance(event, ResponseReceived)
    assert event.tx_key == key
    assert event.response.status_code == 481
    assert event.response.to_tag


def test_cancel_after_final_response_gets_200_and_no_event(pair: EndpointPair) -> None:
    client_key, server_key, _ = _invite_at_uas(pair)
    pair.deliver("uas")
    pair.events("uac")
    _answer(pair, server_key, 486)
    pair.drop("uas")
    pair.uac.send_cancel(client_key, pair.now_s)
    pair.deliver("uac")
    assert pair.events("uas") == []
    (response,) = pair.drop("uas")
    assert response.startswith(b"SIP/2.0 200 ")


def test_nothing_is_built_from_an_answered_transaction(pair: EndpointPair) -> None:
    # The transactions dropped their requests with the final response: a CANCEL of the
    # answered INVITE or a second answer is refused plainly instead of going out.
    client_key, server_key, _ = _invite_at_uas(pair)
    pair.deliver("uas")
    _answer(pair, server_key, 486)
    pair.deliver("uas")
    assert [e.response.status_code for e in pair.events("uac")] == [100, 486]  # type: ignore[union-attr]
    pair.deliver("uac")  # the ACK of the 486
    with pytest.raises(SipUsageError, match="final response"):
        pair.uac.send_cancel(client_key, pair.now_s)
    with pytest.raises(SipUsageError, match="final response"):
        pair.uas.response_for(server_key, 500)
    assert pair.drop("uac") == [] and pair.drop("uas") == []


# =====================================================================================
# 6. RFC 2543 matching (§17.2.3) and the bare magic cookie (RFC 4475 §3.2.1)
# =====================================================================================

INVITE_2543 = (
    b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062\r\n"
    b"From: <sip:alice@192.0.2.10>\r\n"
    b"To: <sip:bob@192.0.2.20>\r\n"
    b"Call-ID: rfc2543-1@192.0.2.10\r\n"
    b"CSeq: 5 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_rfc2543_invite_retransmission_and_ack_match_one_transaction(
    pair: EndpointPair,
) -> None:
    uas = pair.uas
    uas.receive_datagram(INVITE_2543, UAC_ADDR, 0.0)
    (event,) = pair.events("uas")
    assert isinstance(event, RequestReceived)
    key = event.tx_key
    (trying,) = pair.drop("uas")
    assert trying.startswith(b"SIP/2.0 100 ")
    uas.receive_datagram(INVITE_2543, UAC_ADDR, 0.5)
    assert pair.events("uas") == [], "the retransmission maps to the same transaction"
    assert pair.drop("uas") == [trying]
    response = uas.response_for(key, 486)
    uas.send_response(key, response, 1.0)
    (busy,) = pair.drop("uas")
    uas.receive_datagram(INVITE_2543, UAC_ADDR, 1.2)
    assert pair.drop("uas") == [busy]
    to_tag = parse_message(busy).to_tag
    assert to_tag
    ack = (
        INVITE_2543.replace(b"INVITE sip:", b"ACK sip:")
        .replace(b"CSeq: 5 INVITE", b"CSeq: 5 ACK")
        .replace(b"To: <sip:bob@192.0.2.20>", b"To: <sip:bob@192.0.2.20>;tag=" + to_tag.encode())
    )
    uas.receive_datagram(ack, UAC_ADDR, 1.3)
    assert tx_state(uas, key) is S.CONFIRMED
    assert pair.events("uas") == []
    assert uas.stats.internal_errors == 0


def _bare_cookie_options(call_id: str) -> bytes:
    return (
        b"OPTIONS sip:user@192.0.2.20 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:caller@192.0.2.1>;tag=1\r\n"
        b"To: <sip:user@192.0.2.20>\r\n"
        b"Call-ID: " + call_id.encode() + b"\r\n"
        b"CSeq: 8 OPTIONS\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_bare_magic_cookie_branch_does_not_collide(pair: EndpointPair) -> None:
    uas = pair.uas
    uas.receive_datagram(_bare_cookie_options("badbranch-1"), ("192.0.2.1", 5060), 0.0)
    uas.receive_datagram(_bare_cookie_options("badbranch-2"), ("192.0.2.1", 5060), 0.0)
    first, second = pair.events("uas")
    assert isinstance(first, RequestReceived)
    assert isinstance(second, RequestReceived)
    assert first.tx_key != second.tx_key
    assert first.request.call_id == "badbranch-1"
    assert second.request.call_id == "badbranch-2"
    for event in (first, second):
        uas.send_response(event.tx_key, uas.response_for(event.tx_key, 200), 0.0)
    answers = [parse_message(out.data) for out in uas.datagrams_to_send()]
    assert [a.call_id for a in answers] == ["badbranch-1", "badbranch-2"]
    # A retransmission of the first still finds its own transaction.
    uas.receive_datagram(_bare_cookie_options("badbranch-1"), ("192.0.2.1", 5060), 0.2)
    assert pair.events("uas") == []
    (again,) = uas.datagrams_to_send()
    assert parse_message(again.data).call_id == "badbranch-1"


def test_cancel_matches_an_rfc2543_invite(pair: EndpointPair) -> None:
    uas = pair.uas
    uas.receive_datagram(INVITE_2543, UAC_ADDR, 0.0)
    (invite_event,) = pair.events("uas")
    assert isinstance(invite_event, RequestReceived)
    pair.drop("uas")
    cancel = INVITE_2543.replace(b"INVITE sip:", b"CANCEL sip:").replace(
        b"CSeq: 5 INVITE", b"CSeq: 5 CANCEL"
    )
    uas.receive_datagram(cancel, UAC_ADDR, 1.0)
    (event,) = pair.events("uas")
    assert isinstance(event, CancelReceived)
    assert event.invite_tx_key == invite_event.tx_key
    (ok,) = pair.drop("uas")
    assert ok.startswith(b"SIP/2.0 200 ")
    assert b"CSeq: 5 CANCEL" in ok


def test_ack_matching_nothing_is_reported_without_a_transaction(pair: EndpointPair) -> None:
    invite = make_invite()
    ok = make_response(invite, 200, to_tag="late")
    pair.uac.send_ack(make_2xx_ack(invite, ok), pair.uas_peer)
    pair.deliver("uac")
    (event,) = pair.events("uas")
    assert isinstance(event, AckReceived)
    assert event.tx_key is None
    assert pair.drop("uas") == []


def test_a_late_handle_timer_fires_every_due_timer_in_order(pair: EndpointPair) -> None:
    """The event loop stalled: one handle_timer(100) call must catch up without raising."""
    client_key, server_key, _ = _invite_at_uas(pair)
    _answer(pair, server_key, 486)
    pair.drop("uas")
    pair.uas.handle_timer(100.0)
    resent = pair.drop("uas")
    assert len(resent) == 1, "G fires once, then H ends the transaction"
    assert pair.events("uas") == [TransactionTimedOut(server_key, "H")]
    pair.uac.handle_timer(100.0)
    assert pair.events("uac") == [TransactionTimedOut(client_key, "B")]
    assert pair.uas.transaction_count == pair.uac.transaction_count == 0


def test_retransmissions_sent_count_timer_resends_but_not_the_delayed_trying() -> None:
    pair = _delayed_trying_pair()
    _, server_key, _ = _invite_at_uas(pair)
    pair.advance(0.21)
    (trying,) = pair.drop("uas")  # sent by the Trying timer: a first response, not a resend
    assert trying.startswith(b"SIP/2.0 100 Trying")
    assert pair.uas.stats.retransmissions_sent == 0
    _answer(pair, server_key, 486)
    (busy,) = pair.drop("uas")  # lost: Timer G re-sends it at 0.5 s, 1 s, ...
    pair.advance(1.6)
    resent = pair.drop("uas")
    assert resent == [busy] * 2
    assert pair.uas.stats.retransmissions_sent == 2
    # The caller's side: an OPTIONS nobody hears is re-sent by Timer E at 0.5, 1.5, 3.5 s.
    caller = EndpointPair()
    caller.uac.send_request(make_options(), caller.uas_peer, caller.now_s)
    (options,) = caller.drop("uac")
    caller.advance(3.6)
    assert caller.drop("uac") == [options] * 3
    assert caller.uac.stats.retransmissions_sent == 3
