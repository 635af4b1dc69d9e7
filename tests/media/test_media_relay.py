"""The latching RTP relay (media/relay.py) over real UDP sockets on loopback.

Every test runs on uvloop (production) and on the standard asyncio loop (fallback).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from media.ports import PortAllocator, PortsExhaustedError
from media.relay import MediaRelay, MediaSession, PacketDirection, parked_pairs_limit

# Overriding event_loop_policy is deprecated in pytest-asyncio 1.x in favour of a conftest hook
# (pytest_asyncio_loop_factories); this module runs every test on both loops until one exists.
pytestmark = pytest.mark.filterwarnings(
    'ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning'
)

HOST = "127.0.0.1"
WAIT_S = 5.0


@pytest.fixture(params=["uvloop", "asyncio"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
        return policy
    return asyncio.DefaultEventLoopPolicy()


def rtp(seq: int, payload_size: int = 160, ssrc: int = 0x1234) -> bytes:
    """An RTP packet (RFC 3550 §5.1): V=2, PT 0 (PCMU), 20 ms of 8 kHz audio per sequence step."""
    header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, ssrc)
    return header + bytes([seq & 0xFF]) * payload_size


class Endpoint(asyncio.DatagramProtocol):
    """A far party: one UDP socket that records what it receives and can be awaited."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport
        self._changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))
        self._changed.set()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def payloads(self) -> list[bytes]:
        return [data for data, _ in self.received]

    def send(self, data: bytes, port: int, host: str = HOST) -> None:
        self.transport.sendto(data, (host, port))

    async def wait_for(self, count: int) -> None:
        """Until ``count`` datagrams have arrived (fails after WAIT_S)."""
        async with asyncio.timeout(WAIT_S):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (fails after WAIT_S).

    For packets that are counted but not delivered anywhere: nothing to await but the counter.
    Packets on *different* sockets are not read in send order, so tests wait here between them.
    """
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.001)


async def endpoint(host: str = HOST) -> Endpoint:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(Endpoint, local_addr=(host, 0))
    return proto


@pytest.fixture
def allocator() -> PortAllocator:
    return PortAllocator(41000, 41999)


@pytest.fixture
async def relay(allocator: PortAllocator) -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop())
    yield relay
    await relay.close_all()
    assert allocator.in_use == 0


@pytest.fixture
async def session(relay: MediaRelay) -> MediaSession:
    return await relay.open_session("call-1")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


@pytest.fixture
def occupied() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


# --- relaying ----------------------------------------------------------------------------------


async def test_relays_both_ways_exact_counts_and_payloads(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    session.expect("a", a.address)
    session.expect("b", b.address)
    assert session.port_a % 2 == 0 and session.port_b % 2 == 0
    assert session.port_a != session.port_b

    to_b = [rtp(i) for i in range(200)]
    to_a = [rtp(1000 + i, payload_size=20 + i) for i in range(150)]
    for packet in to_b:
        a.send(packet, session.port_a)
    for packet in to_a:
        b.send(packet, session.port_b)
    await b.wait_for(len(to_b))
    await a.wait_for(len(to_a))

    assert b.payloads == to_b  # byte for byte, in order (loopback keeps order)
    assert a.payloads == to_a
    # each far party sees only the relay's port facing it
    assert {addr for _, addr in b.received} == {(HOST, session.port_b)}
    assert {addr for _, addr in a.received} == {(HOST, session.port_a)}
    assert (session.packets_a_to_b, session.packets_b_to_a) == (200, 150)
    assert (session.dropped, session.unrouted) == (0, 0)
    assert session.latched("a") and session.latched("b")
    assert session.activity == 350


async def test_latches_to_nated_source_port(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    # A's SDP names a port it never sends from (its NAT maps it to another one).
    session.expect("a", (HOST, 9))
    session.expect("b", b.address)
    assert session.remote("a") == (HOST, 9)
    assert not session.latched("a")

    a.send(rtp(1), session.port_a)
    await b.wait_for(1)
    assert session.latched("a")
    assert session.remote("a") == a.address

    b.send(rtp(2), session.port_b)
    await a.wait_for(1)  # B's media reaches A at its real source, not the SDP port
    assert a.payloads == [rtp(2)]


async def test_stranger_after_latching_is_dropped(session: MediaSession) -> None:
    a, b, stranger = await endpoint(), await endpoint(), await endpoint()
    session.expect("a", a.address)
    session.expect("b", b.address)
    a.send(rtp(1), session.port_a)
    await b.wait_for(1)

    stranger.send(rtp(666), session.port_a)  # same IP, other port: after latching, a stranger
    a.send(rtp(2), session.port_a)
    await b.wait_for(2)  # loopback delivers in send order: the stranger's packet came first
    assert b.payloads == [rtp(1), rtp(2)]
    assert session.dropped == 1
    assert session.packets_a_to_b == 2
    assert session.remote("a") == a.address


async def test_source_off_the_sdp_ip_does_not_latch(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    other_ip = await endpoint("127.0.0.2")
    session.expect("a", a.address)
    session.expect("b", b.address)
    other_ip.send(rtp(666), session.port_a)
    a.send(rtp(1), session.port_a)
    await b.wait_for(1)
    assert b.payloads == [rtp(1)]
    assert session.dropped == 1
    assert session.remote("a") == a.address


async def test_without_sdp_first_source_latches(session: MediaSession) -> None:
    a, b, late = await endpoint(), await endpoint(), await endpoint()
    session.expect("b", b.address)
    a.send(rtp(1), session.port_a)
    late.send(rtp(2), session.port_a)
    a.send(rtp(3), session.port_a)
    await b.wait_for(2)
    assert b.payloads == [rtp(1), rtp(3)]
    assert session.remote("a") == a.address
    assert session.dropped == 1


async def test_unrouted_until_the_other_side_is_known(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    session.expect("a", a.address)
    a.send(rtp(1), session.port_a)
    a.send(rtp(2), session.port_a)
    await until(lambda: session.unrouted == 2)
    b.send(rtp(3), session.port_b)  # latches b (no SDP yet) and is relayed to a
    await a.wait_for(1)
    assert (session.unrouted, session.packets_a_to_b, session.packets_b_to_a) == (2, 0, 1)
    a.send(rtp(4), session.port_a)  # b is latched now: a's media flows
    await b.wait_for(1)
    assert b.payloads == [rtp(4)]


async def test_non_rtp_is_dropped_and_does_not_latch(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    session.expect("b", b.address)
    stun_like = b"\x00\x01\x00\x00" + bytes(16)
    a.send(stun_like, session.port_a)
    a.send(b"\x40" + rtp(0)[1:], session.port_a)  # RTP version 1
    a.send(rtp(1), session.port_a)
    await b.wait_for(1)
    assert b.payloads == [rtp(1)]
    assert session.dropped == 2


async def test_reinvite_to_new_address_relatches(session: MediaSession) -> None:
    a1, a2, b = await endpoint(), await endpoint(), await endpoint()
    session.expect("a", a1.address)
    session.expect("b", b.address)
    a1.send(rtp(1), session.port_a)
    await b.wait_for(1)

    session.expect("a", a1.address)  # the same SDP again (session refresh): latch kept
    assert session.latched("a")

    session.expect("a", a2.address)  # re-INVITE moved A's media
    assert not session.latched("a") and session.remote("a") == a2.address
    a2.send(rtp(2), session.port_a)
    await b.wait_for(2)
    assert session.remote("a") == a2.address

    session.expect("a", None)  # c=0.0.0.0 hold: nothing is sent to A
    b.send(rtp(3), session.port_b)
    b.send(rtp(4), session.port_b)
    await until(lambda: session.unrouted == 2)
    a2.send(rtp(5), session.port_a)  # and the first source latches A again
    await b.wait_for(3)
    assert session.remote("a") == a2.address


async def test_expect_rejects_other_family_and_side(session: MediaSession) -> None:
    with pytest.raises(ValueError, match="cannot send"):
        session.expect("a", ("2001:db8::1", 4000))
    with pytest.raises(ValueError, match="side"):
        session.expect("c", ("127.0.0.1", 4000))  # type: ignore[arg-type]


async def test_on_packet_hook_and_send_to(session: MediaSession) -> None:
    a, b = await endpoint(), await endpoint()
    session.expect("a", a.address)
    session.expect("b", b.address)
    seen: list[tuple[PacketDirection, bytes]] = []
    session.on_packet = lambda direction, data: seen.append((direction, data))
    a.send(rtp(1), session.port_a)
    b.send(rtp(2), session.port_b)
    await b.wait_for(1)
    await a.wait_for(1)
    assert sorted(seen) == [("a_to_b", rtp(1)), ("b_to_a", rtp(2))]

    assert session.send_to("a", rtp(99))  # ringback to the caller, from the port it sends to
    await a.wait_for(2)
    assert a.received[-1] == (rtp(99), (HOST, session.port_a))


async def test_hook_hears_the_caller_before_any_other_side_exists(session: MediaSession) -> None:
    """The extension IVR: no callee leg yet, the caller's keys must still reach the hook; a
    stranger's packet never does, and dead-media accounting counts the caller as alive."""
    a, stranger = await endpoint(), await endpoint()
    session.expect("a", a.address)
    seen: list[tuple[PacketDirection, bytes]] = []
    session.on_packet = lambda direction, data: seen.append((direction, data))
    a.send(rtp(1), session.port_a)
    a.send(rtp(2), session.port_a)
    await until(lambda: session.unrouted == 2)
    stranger.send(rtp(3, ssrc=0x666), session.port_a)  # a's side is latched on a by now
    await until(lambda: session.dropped == 1)
    assert seen == [("a_to_b", rtp(1)), ("a_to_b", rtp(2))]
    assert (session.packets_a_to_b, session.activity) == (0, 2)


# --- dead media --------------------------------------------------------------------------------


async def test_sweep_reports_a_session_idle_for_the_timeout(relay: MediaRelay) -> None:
    """Counters compared sweep to sweep: packets move the clock, silence lets it run out."""
    session = await relay.open_session()
    quiet = await relay.open_session()  # open but never watched: never reported
    a, b = await endpoint(), await endpoint()
    session.expect("a", a.address)
    session.expect("b", b.address)
    assert relay.sweep_idle(100.0, 5.0) == [] and relay.watched_sessions == 0

    session.watch_inactivity(100.0)  # answered at t=100, no packet yet: the clock runs
    assert relay.watched_sessions == 1 and session.watched and not quiet.watched
    assert relay.sweep_idle(104.9, 5.0) == []
    assert relay.sweep_idle(105.0, 5.0) == [session]  # media that never started is dead too

    b.send(rtp(1), session.port_b)  # the callee speaks: the next sweep sees the count move
    await a.wait_for(1)
    assert relay.sweep_idle(106.0, 5.0) == []
    assert session.last_activity_at == 106.0
    assert relay.sweep_idle(110.5, 5.0) == []
    assert relay.sweep_idle(111.0, 5.0) == [session]
    await quiet.close()
    await session.close()
    assert relay.watched_sessions == 0


async def test_sweep_counts_unrouted_packets_but_not_strangers(relay: MediaRelay) -> None:
    session = await relay.open_session()
    a, stranger = await endpoint(), await endpoint()
    session.expect("a", a.address)
    a.send(rtp(1), session.port_a)  # from A, but B has no address yet: unrouted, still alive
    await until(lambda: session.unrouted == 1)
    session.watch_inactivity(0.0)
    assert session.activity == 1
    a.send(rtp(2), session.port_a)
    await until(lambda: session.unrouted == 2)
    assert relay.sweep_idle(3.0, 5.0) == []
    assert session.last_activity_at == 3.0

    stranger.send(rtp(3), session.port_a)  # A latched: a stranger's packet is no sign of life
    await until(lambda: session.dropped == 1)
    assert relay.sweep_idle(8.0, 5.0) == [session]
    await session.close()


async def test_stop_watching_pauses_the_sweep(relay: MediaRelay) -> None:
    session = await relay.open_session()
    session.watch_inactivity(0.0)
    session.stop_watching()  # on hold, a=inactive: no RTP expected
    assert relay.sweep_idle(60.0, 5.0) == [] and not session.watched
    assert session.idle_s(60.0) == 0.0
    session.watch_inactivity(60.0)  # media resumed: the clock restarts there
    assert relay.sweep_idle(64.0, 5.0) == []
    assert relay.sweep_idle(65.0, 5.0) == [session]
    await session.close()
    session.watch_inactivity(70.0)  # a closed session never goes back into the sweep
    assert relay.watched_sessions == 0


async def test_send_to_without_remote(session: MediaSession) -> None:
    assert session.send_to("b", rtp(1)) is False
    await session.close()
    assert session.send_to("a", rtp(1)) is False


# --- lifecycle ---------------------------------------------------------------------------------


async def test_close_releases_ports(relay: MediaRelay, allocator: PortAllocator) -> None:
    first = await relay.open_session()
    second = await relay.open_session()
    assert allocator.in_use == 4 and relay.active_sessions == 2
    ports = [first.port_a, first.port_b]
    assert not any(port_is_free(p) for p in ports)

    await first.close()
    await first.close()  # idempotent
    assert first.closed
    assert allocator.in_use == 2 and relay.active_sessions == 1
    assert relay.sessions == frozenset({second})
    assert all(port_is_free(p) for p in ports)  # the sockets are really closed

    await relay.close_all()
    assert allocator.in_use == 0 and relay.active_sessions == 0
    assert port_is_free(second.port_a) and port_is_free(second.port_b)


async def test_closed_session_relays_nothing(relay: MediaRelay) -> None:
    a, b = await endpoint(), await endpoint()
    session = await relay.open_session()
    session.expect("a", a.address)
    session.expect("b", b.address)
    port_a = session.port_a
    await session.close()
    a.send(rtp(1), port_a)  # nobody listens now
    assert session.packets_a_to_b == 0


async def test_a_closed_session_leaves_no_cyclic_garbage(relay: MediaRelay) -> None:
    # Freed by reference counting alone: the cyclic GC, whose full collections pause the loop,
    # has nothing to find after a call's media (it used to find 9 objects per session).
    a, b = await endpoint(), await endpoint()
    gc.collect()
    gc.disable()
    try:
        session = await relay.open_session()
        session.expect("a", a.address)
        session.expect("b", b.address)
        a.send(rtp(1), session.port_a)
        await b.wait_for(1)
        await session.close()
        assert session.packets_a_to_b == 1  # the counters stay readable after close
        del session
        garbage_before = len(gc.garbage)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = [type(o).__qualname__ for o in gc.garbage[garbage_before:]]
        finally:
            gc.set_debug(0)
            del gc.garbage[garbage_before:]
    finally:
        gc.enable()
    assert not [name for name in found if name in {"MediaSession", "_Leg", "UDPTransport"}], found


async def test_exhaustion(occupied: list[socket.socket]) -> None:
    allocator = PortAllocator(41500, 41503)  # two pairs: one session
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop())
    session = await relay.open_session()
    with pytest.raises(PortsExhaustedError):
        await relay.open_session()
    assert allocator.in_use == 2 and relay.active_sessions == 1
    await session.close()
    assert allocator.in_use == 0


async def test_exhaustion_on_second_socket_releases_first() -> None:
    allocator = PortAllocator(41600, 41601)  # one pair: not enough for one session
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop())
    with pytest.raises(PortsExhaustedError):
        await relay.open_session()
    assert allocator.in_use == 0


async def test_port_taken_by_another_program_is_skipped(occupied: list[socket.socket]) -> None:
    allocator = PortAllocator(41700, 41709)  # 41700 .. 41708
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    occupied.append(taken)
    taken.bind((HOST, 41700))
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop())
    session = await relay.open_session()
    assert (session.port_a, session.port_b) == (41702, 41704)
    assert allocator.in_use == 2 and not allocator.is_allocated(41700)
    await session.close()


async def test_ipv6_relay(allocator: PortAllocator) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python was built without IPv6 support: the IPv6 relay path cannot run")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this host has no IPv6 loopback (::1) to bind: the IPv6 relay path cannot run")
    relay = MediaRelay("::1", allocator, loop=asyncio.get_running_loop())
    session = await relay.open_session()
    a, b = await endpoint("::1"), await endpoint("::1")
    session.expect("a", a.address)
    session.expect("b", b.address)
    a.send(rtp(1), session.port_a, host="::1")
    await b.wait_for(1)
    b.send(rtp(2), session.port_b, host="::1")
    await a.wait_for(1)
    assert (b.payloads, a.payloads) == ([rtp(1)], [rtp(2)])
    await relay.close_all()


# --- throughput (printed, not asserted) --------------------------------------------------------


async def test_throughput_report(relay: MediaRelay) -> None:
    sessions_n, packets_n = 50, 500
    pairs = []
    for _ in range(sessions_n):
        session = await relay.open_session()
        a, b = await endpoint(), await endpoint()
        session.expect("a", a.address)
        session.expect("b", b.address)
        pairs.append((session, a, b))
    start = time.perf_counter()
    for seq in range(packets_n):
        for session, a, b in pairs:
            a.send(rtp(seq), session.port_a)
            b.send(rtp(seq), session.port_b)
        # let the relay and the endpoints drain a round before the next (bounded queues, no sleep)
        await asyncio.sleep(0)
    expected = packets_n
    try:
        for _, a, b in pairs:
            await a.wait_for(expected)
            await b.wait_for(expected)
    except TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    sent = 2 * sessions_n * packets_n
    received = sum(len(a.received) + len(b.received) for _, a, b in pairs)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"\n[{loop_name}] relay {sessions_n} sessions x {packets_n} packets each way: "
        f"{received / elapsed:,.0f} packets/s relayed, loss {100 * (sent - received) / sent:.3f} %"
        " (relay and endpoints share one loop)"
    )


# --- socket reuse ------------------------------------------------------------------------------

REUSE_AFTER_S = 0.05


@pytest.fixture
async def reusing_relay(allocator: PortAllocator) -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(
        HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=REUSE_AFTER_S
    )
    yield relay
    await relay.close_all()
    assert allocator.in_use == 0 and relay.parked_pairs == 0


async def test_a_closed_sessions_sockets_serve_a_later_session(
    reusing_relay: MediaRelay, allocator: PortAllocator
) -> None:
    relay = reusing_relay
    first = await relay.open_session("call-1")
    ports = (first.port_a, first.port_b)
    a, b = await endpoint(), await endpoint()
    first.expect("a", a.address)
    first.expect("b", b.address)
    a.send(rtp(1), first.port_a)
    await b.wait_for(1)
    await first.close()
    # Parked: still bound (nobody else gets the ports), not an open session, counted available.
    assert relay.parked_pairs == 1 and relay.active_sessions == 0
    assert not any(port_is_free(p) for p in ports)
    assert relay.ports_in_use == 0 and allocator.in_use == 2
    assert relay.ports_available == allocator.capacity
    # Too soon: a fresh pair. Once quiet long enough: the parked one.
    too_soon = await relay.open_session("call-2")
    assert (too_soon.port_a, too_soon.port_b) != ports
    await asyncio.sleep(REUSE_AFTER_S * 2)
    second = opened_without_waiting(relay.open_session("call-3"))
    assert (second.port_a, second.port_b) == ports and relay.parked_pairs == 0
    # A new session in every respect: no latch, no counters, relays between its own parties.
    assert not second.latched("a") and second.packets_a_to_b == 0
    await relays_between_new_parties(second)
    assert first.packets_a_to_b == 1  # the closed session's own counters stay as they were
    await too_soon.close()
    await second.close()


async def test_a_parked_pair_still_hearing_its_old_party_is_not_handed_out(
    reusing_relay: MediaRelay,
) -> None:
    relay = reusing_relay
    first = await relay.open_session("call-1")
    ports = (first.port_a, first.port_b)
    await first.close()
    far = await endpoint()
    for seq in range(6):  # the old far party missed the BYE and keeps sending
        far.send(rtp(seq), ports[0])
        await asyncio.sleep(REUSE_AFTER_S / 3)
        fresh = await relay.open_session("call-2")
        assert (fresh.port_a, fresh.port_b) != ports
        await fresh.close()
        await asyncio.sleep(0)
    # Others parked behind it wait too (FIFO) until it has been quiet long enough.
    await asyncio.sleep(REUSE_AFTER_S * 2)
    reused = await relay.open_session("call-3")
    assert (reused.port_a, reused.port_b) == ports
    await reused.close()


def free_port_block(size: int, *, start: int = 24000) -> int:
    """The first port of ``size`` consecutive UDP ports, from an even one, all free now. Below
    the kernel's ephemeral range (32768 up), where no other test's outgoing socket lands: a
    range there was once half taken by one, and the relay rightly skipped the taken port."""
    for first in range(start, 32768 - size, size):
        if all(port_is_free(port) for port in range(first, first + size)):
            return first
    raise AssertionError(f"no {size} free ports from {start}")


async def relays_between_new_parties(session: MediaSession) -> None:
    """``session`` relays one packet each way between two parties it never saw; their sockets
    are closed at once, not whenever collected (a later test counts descriptors)."""
    c, d = await endpoint(), await endpoint()
    try:
        session.expect("a", c.address)
        session.expect("b", d.address)
        c.send(rtp(5), session.port_a)
        await d.wait_for(1)
        d.send(rtp(6), session.port_b)
        await c.wait_for(1)
        assert (d.payloads, c.payloads) == ([rtp(5)], [rtp(6)])
        assert session.packets_a_to_b == 1 and session.packets_b_to_a == 1
    finally:
        for far in (c, d):
            far.transport.close()


def opened_without_waiting(opening: Coroutine[Any, Any, MediaSession]) -> MediaSession:
    """The session ``opening`` returns when it runs to its end without suspending once."""
    with pytest.raises(StopIteration) as done:
        opening.send(None)
    session = done.value.value
    assert isinstance(session, MediaSession)
    return session


async def test_parked_pairs_serve_at_once_when_the_range_runs_out() -> None:
    first_port = free_port_block(8)
    # 4 even ports (RTCP beside): two sessions
    allocator = PortAllocator(first_port, first_port + 7)
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0)
    try:
        first = await relay.open_session()
        second = await relay.open_session()
        await first.close()
        await second.close()
        assert relay.parked_pairs == 2 and allocator.available == 0
        assert relay.ports_available == 4
        # Neither parked pair is quiet for 60 s yet, but no port is free: the oldest one serves
        # (closed for fresh sockets, its own ports would be bound again), without the set-up
        # ever waiting for sockets to close or open.
        third = opened_without_waiting(relay.open_session())
        assert (third.port_a, third.port_b) == (first.port_a, first.port_b)
        assert relay.parked_pairs == 1 and allocator.available == 0
        await relays_between_new_parties(third)  # a new session in every respect
        await third.close()
    finally:
        await relay.close_all()
    assert allocator.in_use == 0 and relay.parked_pairs == 0
    assert all(port_is_free(p) for p in range(first_port, first_port + 8, 2))


async def test_no_parking_beyond_the_cap(allocator: PortAllocator) -> None:
    relay = MediaRelay(
        HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0, max_parked_pairs=1
    )
    try:
        sessions = [await relay.open_session() for _ in range(3)]
        for session in sessions:
            await session.close()
        assert relay.parked_pairs == 1 and allocator.in_use == 2
        assert all(port_is_free(s.port_a) for s in sessions[1:])
    finally:
        await relay.close_all()
    assert allocator.in_use == 0


async def test_spare_pairs_bound_ahead_serve_a_session_without_waiting(
    allocator: PortAllocator,
) -> None:
    relay = MediaRelay(
        HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0, spare_pairs=2
    )
    try:
        # No spare yet: the first session binds its own pair, and the refill starts.
        first = await relay.open_session("first")
        await until(lambda: relay.spare_pairs == 2)
        assert relay.ports_in_use == 2 and allocator.in_use == 6
        assert relay.ports_available == allocator.available + 4
        # Spares are bound, never used: no port of theirs is free for anyone else.
        spare_ports = [
            p
            for p in range(allocator.port_min, allocator.port_max, 2)
            if allocator.is_allocated(p) and p not in (first.port_a, first.port_b)
        ]
        assert len(spare_ports) == 4 and not any(port_is_free(p) for p in spare_ports)
        # A session now (the ended first one is parked, not quiet for 60 s): a spare, at once.
        await first.close()
        second = opened_without_waiting(relay.open_session("second"))
        assert {second.port_a, second.port_b} <= set(spare_ports)
        assert relay.parked_pairs == 1  # the first call's pair still waits for its quiet
        await until(lambda: relay.spare_pairs == 2)  # topped up in the background
        await relays_between_new_parties(second)
        await second.close()
    finally:
        await relay.close_all()
    assert allocator.in_use == 0 and relay.spare_pairs == 0 and relay.parked_pairs == 0


async def test_spares_take_no_more_than_the_free_ports() -> None:
    first_port = free_port_block(8)
    allocator = PortAllocator(first_port, first_port + 7)  # 4 even ports: two pairs
    relay = MediaRelay(
        HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0, spare_pairs=5
    )
    try:
        session = await relay.open_session()
        await until(lambda: relay.spare_pairs == 1)  # all the range has left
        assert relay.spare_pairs == 1 and allocator.available == 0
        assert relay.ports_available == 2 and relay.ports_in_use == 2
        await session.close()
    finally:
        await relay.close_all()
    assert allocator.in_use == 0 and relay.spare_pairs == 0 and relay.parked_pairs == 0
    assert all(port_is_free(p) for p in range(first_port, first_port + 8, 2))


async def test_close_all_during_a_refill_leaves_no_socket_bound(allocator: PortAllocator) -> None:
    relay = MediaRelay(
        HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0, spare_pairs=4
    )
    session = await relay.open_session()
    await asyncio.sleep(0)  # the refill runs: its eight sockets bound, their transports opening
    assert allocator.in_use == 2 + 8 and relay.spare_pairs == 0
    await relay.close_all()
    assert allocator.in_use == 0 and relay.spare_pairs == 0
    assert port_is_free(session.port_a)


def test_parked_pairs_are_bounded_by_the_port_range_and_half_the_open_files() -> None:
    # 10,000 ports hold 5,000 pairs; 20,000 descriptors allow 10,000 parked sockets = 5,000.
    assert parked_pairs_limit(port_count=10_000, open_files_limit=20_000) == 5_000
    assert parked_pairs_limit(port_count=10_000, open_files_limit=65_536) == 5_000
    # The common soft limit outside systemd: 512 parked sockets at most, half of it.
    assert parked_pairs_limit(port_count=10_000, open_files_limit=1_024) == 256
    assert parked_pairs_limit(port_count=3, open_files_limit=1_024) == 1
    assert parked_pairs_limit(port_count=10_000, open_files_limit=3) == 0


def _fill_descriptors_below(limit: int) -> list[int]:
    """Open /dev/null on every free descriptor number below ``limit`` (the kernel hands out
    the lowest free one), so that the next socket() below it fails with EMFILE."""
    taken: list[int] = []
    try:
        while True:
            try:
                fd = os.open(os.devnull, os.O_RDONLY)
            except OSError as error:
                if error.errno != errno.EMFILE:
                    raise
                return taken  # the soft limit is ``limit`` already
            if fd >= limit:
                os.close(fd)
                return taken
            taken.append(fd)
    except BaseException:
        for fd in taken:
            os.close(fd)
        raise


async def test_a_parked_pair_gives_its_descriptors_to_a_new_call_when_none_are_left(
    allocator: PortAllocator,
) -> None:
    relay = MediaRelay(HOST, allocator, loop=asyncio.get_running_loop(), reuse_after_s=60.0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    filler: list[int] = []
    try:
        ended = await relay.open_session("ended")
        parked_fds = [
            leg.transport.get_extra_info("socket").fileno()
            for leg in (ended._a, ended._b)  # the sockets' descriptor numbers
            if leg.transport is not None
        ]
        await ended.close()
        assert relay.parked_pairs == 1  # not quiet for 60 s: not reusable, only closable
        # Every descriptor number up to the parked sockets' is in use, and none above allowed.
        limit = max(parked_fds) + 1
        # Earlier tests' transports left with their loops close their sockets when collected:
        # collected now, not while this test counts on every descriptor below the limit.
        gc.collect()
        filler = _fill_descriptors_below(limit)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        with pytest.raises(OSError) as refused:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert refused.value.errno == errno.EMFILE
        fresh = await relay.open_session("fresh")
        assert relay.parked_pairs == 0  # closed for the fresh pair's descriptors
        assert allocator.in_use == 2
        # Nothing parked left to give: the error reaches the caller and no port is kept.
        with pytest.raises(OSError) as failed:
            await relay.open_session("refused")
        assert failed.value.errno == errno.EMFILE
        assert allocator.in_use == 2 and relay.active_sessions == 1
        await fresh.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in filler:
            os.close(fd)
        await relay.close_all()
    assert allocator.in_use == 0
