"""engine.transport sends what the endpoint queued at the end of the loop's turn, together,
and still sends it when the transport is closed first (the BYEs of a shutdown)."""

from __future__ import annotations

import asyncio

from engine.transport import SipTransport
from sip.endpoint import Endpoint
from sip.headers import HeaderList
from sip.message import Request
from sip.transport import Peer

PEER = Peer("UDP", "192.0.2.9", 5060)


class RecordingDatagramTransport:
    """Stands in for the loop's UDP transport: keeps what is sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.closed = False

    def get_write_buffer_size(self) -> int:
        return 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        assert not self.closed, "sent after close"
        if not addr[0][0].isdigit():  # what uvloop's sendto does with a host name
            raise ValueError(f"{addr!r}: socket family mismatch or a DNS lookup is required")
        self.sent.append((data, addr))

    def close(self) -> None:
        self.closed = True


def _options(n: int) -> Request:
    headers = HeaderList()
    for name, value in (
        ("Max-Forwards", "70"),
        ("To", "<sip:probe@192.0.2.9>"),
        ("From", f"<sip:maskline@192.0.2.1>;tag=f{n}"),
        ("Call-ID", f"flush-{n}"),
        ("CSeq", "1 OPTIONS"),
    ):
        headers.add(name, value)
    return Request("OPTIONS", "sip:probe@192.0.2.9", headers)


def _transport() -> tuple[SipTransport, Endpoint, RecordingDatagramTransport]:
    endpoint = Endpoint(local_host="192.0.2.1", local_port=5060)
    transport = SipTransport(endpoint, on_events=lambda: None)
    udp = RecordingDatagramTransport()
    transport._udp = udp  # type: ignore[assignment]
    return transport, endpoint, udp


def _call_ids(udp: RecordingDatagramTransport) -> list[str]:
    return [
        next(line for line in data.decode().split("\r\n") if line.startswith("Call-ID:"))[9:]
        for data, _ in udp.sent
    ]


async def test_messages_queued_in_one_turn_are_sent_together_at_its_end() -> None:
    transport, endpoint, udp = _transport()
    now = transport.now()
    endpoint.send_request(_options(1), PEER, now)
    transport.flush()
    endpoint.send_request(_options(2), PEER, now)
    transport.flush()
    assert udp.sent == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert _call_ids(udp) == ["flush-1", "flush-2"]
    assert {addr for _, addr in udp.sent} == {("192.0.2.9", 5060)}
    await asyncio.sleep(0)
    assert len(udp.sent) == 2  # each sent once
    # The timer was re-armed with the sends: the requests' retransmissions are due.
    assert transport._timer_at is not None and transport._timer_at > now
    transport.close()


async def test_close_sends_what_is_still_queued_and_nothing_fires_after() -> None:
    transport, endpoint, udp = _transport()
    endpoint.send_request(_options(3), PEER, transport.now())
    transport.flush()
    transport.close()
    assert _call_ids(udp) == ["flush-3"]
    assert udp.closed
    assert transport._timer is None  # the re-arm of that send was cancelled with the rest
    await asyncio.sleep(0)
    assert len(udp.sent) == 1


async def test_a_peer_the_socket_cannot_address_loses_only_its_own_datagram() -> None:
    transport, endpoint, udp = _transport()
    now = transport.now()
    endpoint.send_request(_options(4), PEER, now)
    endpoint.send_request(_options(5), Peer("UDP", "sbc.example.invalid", 5060), now)
    endpoint.send_request(_options(6), PEER, now)
    transport.flush()
    await asyncio.sleep(0)
    assert _call_ids(udp) == ["flush-4", "flush-6"]
    assert transport.udp_send_failed == 1
    assert transport.not_sent()["udp_unaddressable"] == 1  # what /metrics reads
    transport.close()
