"""The endpoint stamps received/rport into the top Via it echoes (RFC 3261 §18.2.1, RFC 3581 §4)."""

from __future__ import annotations

import sip
from sip.endpoint import Endpoint

OPTIONS = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc1{rport}, "
    b"SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKlow\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
    b"Call-ID: recv-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _answer(data: bytes, source: tuple[str, int]) -> tuple[sip.Response, tuple[str, int]]:
    endpoint = Endpoint(local_host="127.0.0.1", local_port=5060)
    endpoint.receive_datagram(data, source, 0.0)
    event = endpoint.next_event()
    assert isinstance(event, sip.events.RequestReceived)
    endpoint.send_response(event.tx_key, endpoint.response_for(event.tx_key, 200), 0.0)
    (out,) = endpoint.datagrams_to_send()
    response = sip.parse_message(out.data)
    assert isinstance(response, sip.Response)
    return response, (out.peer.host, out.peer.port)


def test_rport_gets_source_port_and_received() -> None:
    response, destination = _answer(OPTIONS.replace(b"{rport}", b";rport"), ("192.0.2.7", 40000))
    top = response.vias[0]
    assert top.received == "192.0.2.7"
    assert top.rport == 40000
    assert destination == ("192.0.2.7", 40000)
    # The second Via value on the same line is kept untouched.
    assert [v.host for v in response.vias] == ["10.0.0.1", "10.9.9.9"]


def test_received_without_rport_goes_to_via_port() -> None:
    response, destination = _answer(OPTIONS.replace(b"{rport}", b""), ("192.0.2.7", 40000))
    top = response.vias[0]
    assert top.received == "192.0.2.7"
    assert not top.rport_requested
    assert destination == ("192.0.2.7", 5062)


def test_no_received_when_sent_by_is_the_source() -> None:
    response, _ = _answer(OPTIONS.replace(b"{rport}", b""), ("10.0.0.1", 5062))
    assert response.vias[0].received is None
