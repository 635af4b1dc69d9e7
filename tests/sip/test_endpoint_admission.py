"""The endpoint's admission hook: a policy judges each new request before any transaction exists.

REJECT → a stateless 503 with the policy's Retry-After (no transaction, no 100 Trying, no event);
DROP → nothing at all; retransmissions of a taken request, ACKs and CANCELs of a pending INVITE
never reach the policy. Without a policy, ``max_transactions`` bounds the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sip
from sip.endpoint import Admission, Endpoint
from sip.events import CancelReceived, RequestReceived
from sip.message import Request, Response
from sip.transport import Peer

SOURCE = ("192.0.2.7", 5062)


def _request(method: str, *, branch: str = "z9hG4bKadm1", cseq_method: str | None = None) -> bytes:
    return (
        f"{method} sip:17000000001@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.7:5062;branch={branch};rport\r\n"
        "From: <sip:13800138000@192.0.2.7>;tag=a1\r\nTo: <sip:17000000001@127.0.0.1>\r\n"
        f"Call-ID: adm-{branch}\r\nCSeq: 1 {cseq_method or method}\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:13800138000@192.0.2.7:5062>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@dataclass
class FakePolicy:
    verdict: Admission = Admission.ACCEPT
    retry_after_s: int = 7
    seen: list[tuple[str, str, float]] = field(default_factory=list)
    to_tags: list[str | None] = field(default_factory=list)

    def admit(self, request: Request, source: Peer, to_tag: str | None, now: float) -> Admission:
        self.seen.append((request.method, source.host, now))
        self.to_tags.append(to_tag)
        return self.verdict


def _endpoint(policy: FakePolicy | None = None, *, max_transactions: int = 200_000) -> Endpoint:
    return Endpoint(
        local_host="127.0.0.1",
        local_port=5060,
        admission=policy,
        max_transactions=max_transactions,
    )


def _responses(endpoint: Endpoint) -> list[Response]:
    out = []
    for outgoing in endpoint.datagrams_to_send():
        message = sip.parse_message(outgoing.data)
        assert isinstance(message, Response)
        assert (outgoing.peer.host, outgoing.peer.port) == SOURCE  # rport: back to the source
        out.append(message)
    return out


def test_rejected_invite_gets_a_stateless_503_with_retry_after() -> None:
    policy = FakePolicy(Admission.REJECT)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 3.5)
    [response] = _responses(endpoint)  # no 100 Trying before it
    assert response.status_code == 503
    assert response.headers.get("Retry-After") == "7"
    assert response.to_tag  # a final response carries a To tag
    assert endpoint.transaction_count == 0
    assert endpoint.next_event() is None
    assert endpoint.stats.overload_rejected == 1
    assert policy.seen == [("INVITE", "192.0.2.7", 3.5)]


def test_retransmission_of_a_rejected_invite_gets_the_same_503_never_a_call() -> None:
    """A copy of the INVITE still queued when the 503 went out must not start a call its
    caller has given up: it gets the same 503 (same To tag), the policy is not asked again."""
    policy = FakePolicy(Admission.REJECT)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 0.0)
    [first] = _responses(endpoint)
    policy.verdict = Admission.ACCEPT  # the overload is over by the time the copy is read
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 0.5)
    [again] = _responses(endpoint)
    assert (again.status_code, again.to_tag) == (503, first.to_tag)
    assert again.headers.get("Retry-After") == "7"
    assert endpoint.next_event() is None
    assert endpoint.transaction_count == 0
    assert len(policy.seen) == 1
    assert (endpoint.stats.overload_rejected, endpoint.stats.retransmissions_absorbed) == (1, 1)
    # Its ACK is taken quietly (no stray-ACK event) and ends the memory of it.
    endpoint.receive_datagram(_request("ACK", cseq_method="ACK"), SOURCE, 0.6)
    assert endpoint.next_event() is None
    assert endpoint.datagrams_to_send() == []
    # The same INVITE after that is a new request, judged afresh.
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 1.0)
    assert [r.status_code for r in _responses(endpoint)] == [100]
    assert isinstance(endpoint.next_event(), RequestReceived)
    assert len(policy.seen) == 2


def test_rejected_invites_are_forgotten_after_64_t1_and_beyond_the_bound() -> None:
    policy = FakePolicy(Admission.REJECT)
    endpoint = _endpoint(policy)
    endpoint.max_rejected_remembered = 3
    for index in range(5):
        endpoint.receive_datagram(_request("INVITE", branch=f"z9hG4bKr{index}"), SOURCE, 0.0)
    endpoint.datagrams_to_send()
    assert len(endpoint._rejected) == 3  # the two oldest forgotten
    policy.verdict = Admission.ACCEPT
    endpoint.receive_datagram(_request("INVITE", branch="z9hG4bKr0"), SOURCE, 1.0)
    assert [r.status_code for r in _responses(endpoint)] == [100]  # forgotten: judged afresh
    endpoint.receive_datagram(_request("INVITE", branch="z9hG4bKr4"), SOURCE, 1.0)
    assert [r.status_code for r in _responses(endpoint)] == [503]  # remembered
    # 64*T1 (32 s) on, its UAC has stopped retransmitting (Timer B): a copy is new.
    endpoint.receive_datagram(_request("INVITE", branch="z9hG4bKr4"), SOURCE, 32.0)
    assert [r.status_code for r in _responses(endpoint)] == [100]


def test_dropped_request_gets_nothing() -> None:
    policy = FakePolicy(Admission.DROP)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("OPTIONS"), SOURCE, 0.0)
    assert endpoint.datagrams_to_send() == []
    assert endpoint.next_event() is None
    assert endpoint.transaction_count == 0
    assert endpoint.stats.flood_dropped == 1
    assert endpoint.stats.overload_rejected == 0


def test_retransmission_of_a_taken_request_is_not_judged() -> None:
    policy = FakePolicy(Admission.ACCEPT)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 0.0)
    assert [r.status_code for r in _responses(endpoint)] == [100]
    policy.verdict = Admission.DROP
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 0.5)
    # Answered from the transaction (the 100 again), the policy never asked.
    assert [r.status_code for r in _responses(endpoint)] == [100]
    assert len(policy.seen) == 1


def test_cancel_of_a_pending_invite_bypasses_the_policy() -> None:
    policy = FakePolicy(Admission.ACCEPT)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("INVITE"), SOURCE, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, RequestReceived)
    endpoint.datagrams_to_send()
    policy.verdict = Admission.DROP  # even a flooding source's CANCEL ends its INVITE
    endpoint.receive_datagram(_request("CANCEL"), SOURCE, 0.1)
    assert [r.status_code for r in _responses(endpoint)] == [200]
    assert isinstance(endpoint.next_event(), CancelReceived)
    assert [method for method, _, _ in policy.seen] == ["INVITE"]


def test_cancel_of_nothing_is_judged() -> None:
    policy = FakePolicy(Admission.DROP)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("CANCEL"), SOURCE, 0.0)
    assert endpoint.datagrams_to_send() == []
    assert [method for method, _, _ in policy.seen] == ["CANCEL"]


def test_ack_is_never_judged() -> None:
    policy = FakePolicy(Admission.DROP)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("ACK", branch="z9hG4bKack"), SOURCE, 0.0)
    assert policy.seen == []
    assert endpoint.stats.flood_dropped == 0


def test_without_policy_max_transactions_bounds_the_table() -> None:
    endpoint = _endpoint(None, max_transactions=3)
    for index in range(5):
        endpoint.receive_datagram(_request("OPTIONS", branch=f"z9hG4bKn{index}"), SOURCE, 0.0)
    assert endpoint.transaction_count == 3
    assert endpoint.stats.overload_rejected == 2
    # Events for the three taken; the two refused got a 503 with the default Retry-After.
    statuses = [(r.status_code, r.headers.get("Retry-After")) for r in _responses(endpoint)]
    assert statuses == [(503, "5"), (503, "5")]


def test_policy_is_told_the_to_tag() -> None:
    policy = FakePolicy(Admission.ACCEPT)
    endpoint = _endpoint(policy)
    endpoint.receive_datagram(_request("OPTIONS"), SOURCE, 0.0)
    bye = _request("BYE", branch="z9hG4bKbye").replace(
        b"To: <sip:17000000001@127.0.0.1>", b"To: <sip:17000000001@127.0.0.1>;tag=ours"
    )
    endpoint.receive_datagram(bye, SOURCE, 0.0)
    assert policy.to_tags == [None, "ours"]
    events = [endpoint.next_event(), endpoint.next_event()]
    assert [e.in_dialog for e in events if isinstance(e, RequestReceived)] == [False, True]
