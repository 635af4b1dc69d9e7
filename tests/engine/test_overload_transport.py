"""engine.transport bounds what peers make it hold: TCP connections, TCP and UDP write queues."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from engine.signalling import Signalling
from engine.transport import (
    TCP_WRITE_QUEUE_LIMIT,
    UDP_WRITE_QUEUE_LIMIT,
    SipTransport,
    _TcpConnection,
)
from sip.endpoint import Endpoint
from sip.transport import Outgoing, Peer

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    """A loopback port free for both TCP and UDP (the transport binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both TCP and UDP")


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes the connection (EOF or reset)."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=5.0)
    except ConnectionResetError:
        return True
    return data == b""


async def _answers_options(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True when an OPTIONS sent on the connection is answered 200 on it."""
    host, port = writer.get_extra_info("sockname")[:2]
    writer.write(
        (
            f"OPTIONS sip:x@{LOOPBACK} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {host}:{port};branch=z9hG4bK{port}\r\n"
            "From: <sip:t@example.com>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
            f"Call-ID: tcp-{port}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=5.0)
    return status_line.startswith(b"SIP/2.0 200")


async def test_inbound_tcp_connections_beyond_the_limit_are_closed() -> None:
    endpoint = Endpoint(local_host=LOOPBACK, local_port=0)
    signalling = Signalling(endpoint, clock=asyncio.get_running_loop().time)
    transport = SipTransport(endpoint, on_events=signalling.handle_events, max_tcp_connections=2)
    port = _free_port()
    await transport.start(LOOPBACK, port)
    writers: list[asyncio.StreamWriter] = []
    try:
        first = await asyncio.open_connection(LOOPBACK, port)
        second = await asyncio.open_connection(LOOPBACK, port)
        third = await asyncio.open_connection(LOOPBACK, port)
        writers += [first[1], second[1], third[1]]
        assert await _closed_by_server(third[0])
        assert transport.tcp_refused == 1
        assert await _answers_options(*first)
        # One leaves: room for a new one.
        first[1].close()
        await first[1].wait_closed()
        for _ in range(500):
            if len(transport._connections) == 1:
                break
            await asyncio.sleep(0.01)
        assert len(transport._connections) == 1
        fourth = await asyncio.open_connection(LOOPBACK, port)
        writers.append(fourth[1])
        assert await _answers_options(*fourth)
        assert transport.tcp_refused == 1
    finally:
        for writer in writers:
            writer.close()
        transport.close()
        await transport.wait_closed()


@dataclass
class FakeTransport:
    """Just what the connection and the UDP path call on an asyncio transport."""

    queued: int = 0
    written: list[bytes] = field(default_factory=list)
    aborted: bool = False

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.queued

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True


async def test_tcp_peer_that_does_not_read_is_disconnected() -> None:
    endpoint = Endpoint(local_host=LOOPBACK, local_port=5060)
    transport = SipTransport(endpoint, on_events=lambda: None)
    connection = _TcpConnection(transport)
    fake = FakeTransport()
    connection._transport = fake  # type: ignore[assignment]
    connection.write(b"a")
    fake.queued = TCP_WRITE_QUEUE_LIMIT + 1
    connection.write(b"b")
    assert fake.written == [b"a"]
    assert fake.aborted
    connection.write(b"c")  # closing: nothing more is queued
    assert fake.written == [b"a"]


async def test_udp_datagrams_are_dropped_while_the_write_queue_is_over_its_limit() -> None:
    endpoint = Endpoint(local_host=LOOPBACK, local_port=5060)
    transport = SipTransport(endpoint, on_events=lambda: None)
    fake = FakeTransport()
    transport._udp = fake  # type: ignore[assignment]
    peer = Peer("UDP", "192.0.2.1", 5060)
    transport._send(Outgoing(b"one", peer))
    fake.queued = UDP_WRITE_QUEUE_LIMIT + 1
    transport._send(Outgoing(b"two", peer))
    fake.queued = 0
    transport._send(Outgoing(b"three", peer))
    assert fake.written == [b"one", b"three"]
    assert transport.udp_send_dropped == 1


async def test_lag_probes_go_through_the_sip_socket_and_never_reach_the_endpoint() -> None:
    endpoint = Endpoint(local_host=LOOPBACK, local_port=0)
    signalling = Signalling(endpoint, clock=asyncio.get_running_loop().time)
    transport = SipTransport(endpoint, on_events=signalling.handle_events)
    transport.lag.interval_s = 0.01
    await transport.start(LOOPBACK, _free_port())
    try:
        assert transport.lag.running
        for _ in range(200):
            if transport.lag.receive_delay_s > 0.0:
                break
            await asyncio.sleep(0.01)
        assert 0.0 < transport.lag.receive_delay_s < 1.0  # a probe came back through the queue
        assert transport.lag.probes_lost == 0
        assert endpoint.stats.messages_received == 0  # probes are not SIP
        endpoint.loop_lag_s = -1.0
        for _ in range(200):  # each sample is handed to the endpoint
            if endpoint.loop_lag_s >= 0.0:
                break
            await asyncio.sleep(0.01)
        assert endpoint.loop_lag_s >= 0.0
    finally:
        transport.close()
        await transport.wait_closed()
    assert not transport.lag.running
    assert endpoint.loop_lag_s == 0.0
