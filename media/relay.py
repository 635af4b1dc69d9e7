"""The RTP relay: two UDP sockets per call, symmetric latching, zero parsing per packet.

A ``MediaSession`` anchors one media stream of a call. Side "a" faces one leg's far party (say
the caller), side "b" the other; each side has its own socket on an even port from the
``PortAllocator`` (port + 1 stays reserved for RTCP). What arrives on side a's socket leaves side
b's socket for side b's remote, and vice versa, so each far party sees only our address and port.

Symmetric latching (RFC 4961 symmetric RTP, as SBCs do it for NATed peers): the SDP gives the
address a far party wants media on (``expect``), but behind a NAT its packets come from another
port. The first valid packet on a side from the expected IP, any port, fixes ("latches") that
side's remote to the packet's source, and media for that side goes there from then on. After
latching, packets from any other source are dropped and counted — someone guessing our port
cannot inject audio or steal the stream. With no SDP address known yet, the first source wins.

Per packet the hot path does a tuple compare, one bit test, one counter update and a
``sendto``: no RTP parsing, no clock read, no allocation beyond the datagram the loop already
made. The per-direction ``on_packet`` hook (recording, ringback handover, DTMF) costs one
``is None`` test while unset; when set it sees every packet the far party sends once that
packet passed the latching checks — including those not relayed because the other side has no
address yet (the caller keying an extension before any callee leg exists).

Sockets are reused (``MediaRelay(reuse_after_s=...)``): a closed session's two sockets stay
bound, parked behind a protocol that only notes the time of any packet still arriving, and a new
session takes the oldest parked pair once neither socket has heard anything for
``reuse_after_s`` — a far party still sending to a parked port (it missed the BYE) keeps that
pair out of use, since its packets could otherwise latch the next call's side. Opening and
closing two sockets per call (socket, setsockopt, bind, the loop's handle, close) was ~9 % of
the event loop's time at 300 calls/s, and binding suspends the call's set-up twice (a turn of
the loop each, behind everything else queued). Parked ports count as available: when the
allocator has no free port left, the oldest parked pair serves the next session at once, quiet
or not — closing it for fresh sockets would bind the very same ports again (see
``open_session``). While no parked pair is ready (a rising load: the pairs of calls that ended
less than ``reuse_after_s`` ago are not), sessions take *spare* pairs, bound ahead by a
background task in batches whose transports open together (``spare_pairs``); only when the
spares run out does a session bind its own. In a step from 100 to 1,125 calls/s
(``bench/cps.py``), the added post-dial delay's p99 went from 9.2–10.2 to 3.9–4.2 ms.

Dead media is found without touching the hot path: ``MediaRelay.sweep_idle``, run by one
periodic timer for every call, compares each watched session's packet counters with what the
previous sweep saw. A session whose counters have not moved for the timeout is idle. The
activity time is therefore known to one sweep period, which is all a timeout of seconds needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

from media.ports import PortAllocator, PortsExhaustedError

__all__ = [
    "DEFAULT_SOCKET_BUFFER_BYTES",
    "MediaRelay",
    "MediaSession",
    "PacketDirection",
    "PacketHook",
    "Side",
]

Side = Literal["a", "b"]
PacketDirection = Literal["a_to_b", "b_to_a"]
PacketHook = Callable[[PacketDirection, bytes], None]
"""``on_packet(direction, data)``: called with every packet accepted from a far party (latched
source, RTP version 2), before it is sent on — also when the other side has no address yet and
the packet is therefore not relayed (counted ``unrouted``)."""

_log = logging.getLogger("maskline.media.relay")

# 256 KiB each way: ~1,500 G.711 packets, i.e. seconds of audio if the loop stalls, where the
# Linux default (~208 KiB shared with per-packet overhead) holds far fewer small datagrams.
DEFAULT_SOCKET_BUFFER_BYTES: Final = 256 * 1024
# DSCP EF (RFC 3246 / RFC 4594 "telephony"), in the upper six bits of the TOS byte.
_TOS_EF: Final = 46 << 2
# How many ports taken by other programs to skip before giving up on one socket.
_BIND_ATTEMPTS: Final = 32
# Defaults of MediaRelay's socket reuse: quiet seconds before a parked pair serves a new call,
# and parked pairs kept at most (more are closed at once). The engine sizes the second from its
# port range and open-file limit (``parked_pairs_limit``): at a call rate r, reuse needs
# r x DEFAULT_REUSE_AFTER_S pairs parked, 2,250 at 1,125 calls/s.
DEFAULT_REUSE_AFTER_S: Final = 2.0
DEFAULT_MAX_PARKED_PAIRS: Final = 1024
# Socket pairs a relay binds ahead, in the background, for sessions that find no parked pair
# quiet yet (a rising load): MediaRelay(spare_pairs=...); 0 in the class, set by the engine.
DEFAULT_SPARE_PAIRS: Final = 16
# Errors of socket() when the process (EMFILE) or the system (ENFILE) has no descriptor left.
_OUT_OF_DESCRIPTORS: Final = frozenset((errno.EMFILE, errno.ENFILE))
# A parked pair still receiving this long after parking is closed instead of waiting on.
_STALE_PARKED_S: Final = 30.0

Address = tuple[Any, ...]
"""A socket address as the loop reports it: (host, port) or (host, port, flowinfo, scope_id)."""


@functools.lru_cache(maxsize=4096)
def _ip_of(host: str) -> tuple[int, str] | None:
    """``(IP version, canonical text)`` of an SDP address, None for a host name. Cached: calls
    of one carrier come from a handful of SBC media addresses, and parsing one is ~5 µs."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ip.version, ip.compressed


class _Leg(asyncio.DatagramProtocol):
    """One side's socket: receives from that side's far party, relays out of the peer leg."""

    # mypyc (build_compiled.py) lets detach() delete only the attributes named here.
    __deletable__ = ("peer", "session")
    # BaseProtocol defines __slots__ = (), so slots here keep attribute access fast.
    __slots__ = (
        "closed",
        "direction",
        "expected",
        "expected_host",
        "forwarded",
        "peer",
        "port",
        "remote",
        "session",
        "side",
        "source",
        "transport",
    )

    def __init__(self, session: MediaSession, side: Side, port: int, loop: Any) -> None:
        self.session = session
        self.side: Side = side
        self.direction: PacketDirection = "a_to_b" if side == "a" else "b_to_a"
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: _Leg = self  # set by MediaSession once both legs exist
        # Where this side's media goes: the latched source, else the SDP address, else None.
        self.remote: Address | None = None
        # The latched source; None until latched. Compared first, so the hot path is one test.
        self.source: Address | None = None
        self.expected: tuple[str, int] | None = None
        self.expected_host: str | None = None
        self.forwarded = 0  # packets received on this side and sent on to the other
        self.closed: asyncio.Future[None] = loop.create_future()

    # --- asyncio.DatagramProtocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport; it has its methods.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        # RFC 3550 §5.1: version 2 in the top two bits — RTP, and RTCP when multiplexed (RFC
        # 5761). Anything else (STUN keep-alives, garbage) is neither relayed nor latched on.
        if not data or data[0] & 0xC0 != 0x80:
            self.session.dropped += 1
            return
        if addr != self.source and not self._latch(addr):
            self.session.dropped += 1
            return
        # The hook sees every packet of the far party, relayed or not: while a caller keys an
        # extension there is no other leg yet, and its RFC 4733 events must still be heard.
        hook = self.session.on_packet
        if hook is not None:
            hook(self.direction, data)
        peer = self.peer
        remote = peer.remote
        if remote is None:
            # The other side has no address yet (its SDP has not arrived, is on hold, or there
            # is no other leg yet). Counted as activity: the far party is alive.
            self.session.unrouted += 1
            return
        self.forwarded += 1
        transport = peer.transport
        if transport is not None:
            transport.sendto(data, remote)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for a previous send (the far party is not listening yet).
        # Harmless for RTP; counted, not logged per packet.
        self.session.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def detach(self) -> None:
        """Drop the references back to the session, the peer leg and the transport once the
        socket is closed (no packet arrives after ``connection_lost``).

        Session ↔ leg, leg ↔ peer leg and leg ↔ transport are reference cycles: left in place,
        every ended call leaves ~9 objects only the cyclic GC can free, and that garbage was the
        only cyclic garbage a call made. Detached, a closed session is freed by reference
        counting alone. The session keeps its legs (their counters are read after close).
        """
        self.transport = None
        del self.peer, self.session

    # --- latching ---

    def _latch(self, addr: Address) -> bool:
        """Decide on a packet from a source that is not the latched one; True to relay it."""
        if self.source is not None:
            return False  # latched already: a stranger (or a NAT rebinding; see expect())
        if self.expected_host is not None and addr[0] != self.expected_host:
            return False  # not from the far party's SDP address: do not let it hijack the side
        if self.expected_host is None:
            _log.info(
                "rtp latched without an SDP address",
                extra={"session": self.session.label, "side": self.side, "source": addr[:2]},
            )
        else:
            _log.debug(
                "rtp latched",
                extra={"session": self.session.label, "side": self.side, "source": addr[:2]},
            )
        self.source = addr
        self.remote = addr
        return True

    def expect(self, address: tuple[str, int] | None) -> None:
        if address == self.expected:
            return  # same SDP again (session refresh): keep the latch
        self.source = None
        self.expected = address
        if address is None:
            self.expected_host = None
            self.remote = None
            return
        host, port = address
        parsed = _ip_of(host)
        if parsed is None:
            # A host name in c= (allowed, rare): nothing to send to until the far party's first
            # packet latches the side.
            self.expected_host = None
            self.remote = None
            return
        self.expected_host = parsed[1]
        self.remote = (self.expected_host, port)


class _Parked(asyncio.DatagramProtocol):
    """The protocol of a parked socket: drops every datagram, remembers when the last came."""

    __slots__ = ("closed", "last_packet_at", "loop", "parked_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parked_at = loop.time()
        self.last_packet_at = self.parked_at  # parking counts as activity: the quiet starts now
        self.closed: asyncio.Future[None] = loop.create_future()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.last_packet_at = self.loop.time()

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for what the closed session sent: nothing to do

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@dataclass(slots=True)
class _ParkedPair:
    """A closed session's two bound sockets, waiting to serve a new session."""

    port_a: int
    port_b: int
    transport_a: asyncio.DatagramTransport
    transport_b: asyncio.DatagramTransport
    parked_a: _Parked
    parked_b: _Parked

    def quiet_since(self) -> float:
        return max(self.parked_a.last_packet_at, self.parked_b.last_packet_at)


class MediaSession:
    """One relayed media stream: side "a" on ``port_a``, side "b" on ``port_b``.

    Counters: ``packets_a_to_b``, ``packets_b_to_a`` (relayed), ``dropped`` (not RTP, or from a
    source other than the latched/expected one), ``unrouted`` (valid, but the other side has
    no address yet), ``send_errors`` (ICMP errors reported by the kernel).

    Dead-media watch: ``watch_inactivity(now)`` starts it, ``stop_watching()`` pauses it (a call
    on hold with ``a=inactive``), ``last_activity_at`` is the loop time of the sweep that last saw
    new packets from either far party (or the start of the watch).
    """

    __slots__ = (
        "_a",
        "_activity_seen",
        "_b",
        "_closing",
        "_relay",
        "dropped",
        "label",
        "last_activity_at",
        "on_packet",
        "send_errors",
        "unrouted",
    )

    def __init__(self, relay: MediaRelay, label: str) -> None:
        """Created by ``MediaRelay.open_session``; not meant to be built directly."""
        self._relay = relay
        self.label = label
        self.dropped = 0
        self.unrouted = 0
        self.send_errors = 0
        self.on_packet: PacketHook | None = None
        # None while not watched for dead media; see watch_inactivity.
        self.last_activity_at: float | None = None
        self._activity_seen = 0
        self._closing = False
        self._a: _Leg
        self._b: _Leg

    # --- ports and state ---

    @property
    def port_a(self) -> int:
        """Our port facing side a (write it into the SDP sent to side a's leg)."""
        return self._a.port

    @property
    def port_b(self) -> int:
        """Our port facing side b (write it into the SDP sent to side b's leg)."""
        return self._b.port

    @property
    def packets_a_to_b(self) -> int:
        """Packets received from side a and relayed to side b."""
        return self._a.forwarded

    @property
    def packets_b_to_a(self) -> int:
        """Packets received from side b and relayed to side a."""
        return self._b.forwarded

    @property
    def activity(self) -> int:
        """Packets received from the far parties themselves: relayed, or held back as unrouted.

        Dropped packets (strangers, non-RTP) do not count: someone spraying our port must not
        keep a dead call alive.
        """
        return self._a.forwarded + self._b.forwarded + self.unrouted

    @property
    def watched(self) -> bool:
        """Whether the dead-media sweep watches this session."""
        return self.last_activity_at is not None

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has been called."""
        return self._closing

    def remote(self, side: Side) -> tuple[str, int] | None:
        """Where media for ``side`` is sent now: the latched source, else the SDP address."""
        remote = self._leg(side).remote
        return None if remote is None else (remote[0], remote[1])

    def latched(self, side: Side) -> bool:
        """Whether ``side`` has latched onto the source of its far party's packets."""
        return self._leg(side).source is not None

    # --- control ---

    def expect(self, side: Side, address: tuple[str, int] | None) -> None:
        """Set the address side's far party gave in its SDP (``sdp.media_endpoint``).

        Media for that side is sent there until its first packet latches the side. A different
        address than before (re-INVITE moving the media) drops the latch, so the side latches
        again on the new source; the same address again keeps it. None (no SDP yet, or
        ``c=0.0.0.0`` hold) stops media to that side and lets the first source latch it.
        Raises ``ValueError`` if the address family does not match the relay's.
        """
        if address is not None:
            self._relay.check_family(address[0])
        self._leg(side).expect(address)

    def watch_inactivity(self, now: float) -> None:
        """Watch for dead media from ``now`` on (loop time): the call was answered, or its media
        resumed. Media that never starts counts as dead too: the clock starts here, not at the
        first packet. Calling it again restarts the clock."""
        self.last_activity_at = now
        self._activity_seen = self.activity
        self._relay.watch(self)

    def stop_watching(self) -> None:
        """Stop the dead-media watch (no RTP is expected, e.g. both ways ``a=inactive``)."""
        self.last_activity_at = None
        self._relay.unwatch(self)

    def idle_s(self, now: float) -> float:
        """Seconds without packets from either far party as of ``now`` (one sweep's view).

        New packets since the previous call move ``last_activity_at`` to ``now``. Only
        meaningful while watched (0.0 otherwise).
        """
        if self.last_activity_at is None:
            return 0.0
        activity = self.activity
        if activity != self._activity_seen:
            self._activity_seen = activity
            self.last_activity_at = now
            return 0.0
        return now - self.last_activity_at

    def send_to(self, side: Side, data: bytes) -> bool:
        """Send an injected packet (ringback, prompt) out of ``side``'s socket to its remote.

        It leaves from the same port the far party sends to, so symmetric NATs let it through.
        Returns False (nothing sent) when the side has no remote or the session is closed.
        """
        leg = self._leg(side)
        if self._closing or leg.remote is None or leg.transport is None:
            return False
        leg.transport.sendto(data, leg.remote)
        return True

    async def close(self) -> None:
        """Close both sockets, wait until the loop has let go of them, release both ports."""
        if self._closing:
            return
        self._closing = True
        legs = (self._a, self._b)
        for leg in legs:
            leg.remote = None  # a packet already queued in this iteration goes nowhere
        if self._relay.park(self):
            for leg in legs:
                leg.detach()
            return
        for leg in legs:
            if leg.transport is not None:
                leg.transport.close()
        try:
            # connection_lost comes once the socket is really closed (uvloop closes the handle a
            # loop iteration later); the port must not be handed out before that.
            await asyncio.gather(*(leg.closed for leg in legs if leg.transport is not None))
        finally:
            self._relay.forget(self)
            for leg in legs:
                leg.detach()

    def _leg(self, side: Side) -> _Leg:
        if side == "a":
            return self._a
        if side == "b":
            return self._b
        raise ValueError(f"side must be 'a' or 'b', not {side!r}")


def parked_pairs_limit(*, port_count: int, open_files_limit: int) -> int:
    """How many socket pairs a relay may keep parked for reuse.

    Each parked pair holds two ports of the range and two file descriptors. Parked ports count
    as available (a pair is closed when the allocator runs dry), so the range alone bounds them
    at ``port_count // 2``; descriptors get no such help from other users of them (the SIP
    transports, the database, recordings), so parked sockets may take at most half of the
    open-file limit. A relay also closes a parked pair when binding a fresh socket finds no
    descriptor left.
    """
    return max(0, min(port_count // 2, open_files_limit // 4))


_Protocol = TypeVar("_Protocol", bound=asyncio.DatagramProtocol)


def _factory(protocol: _Protocol) -> Callable[[], _Protocol]:
    """The protocol factory ``create_datagram_endpoint`` wants, for a protocol made already."""
    return lambda: protocol


class MediaRelay:
    """Opens ``MediaSession``s on ``address`` with ports from ``allocator``.

    ``socket_buffer_bytes`` sets SO_RCVBUF and SO_SNDBUF of every socket (the kernel caps them at
    net.core.rmem_max / wmem_max). ``reuse_after_s`` (None: off) parks a closed session's sockets
    for a new session once both have been quiet that long; at most ``max_parked_pairs`` are kept
    (see the module docstring). ``spare_pairs``: pairs bound ahead by a background task, for
    sessions that find no parked pair ready — binding on the call's own path suspends its
    set-up twice; a spare has never been used, so no far party knows its ports.
    """

    def __init__(
        self,
        address: str,
        allocator: PortAllocator,
        *,
        loop: asyncio.AbstractEventLoop,
        socket_buffer_bytes: int = DEFAULT_SOCKET_BUFFER_BYTES,
        reuse_after_s: float | None = None,
        max_parked_pairs: int = DEFAULT_MAX_PARKED_PAIRS,
        spare_pairs: int = 0,
    ) -> None:
        """Validate ``address`` (an IP address to bind and to write into SDP)."""
        ip = ipaddress.ip_address(address)
        self.address = ip.compressed
        self.allocator = allocator
        self._family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        self._loop = loop
        self._buffer_bytes = socket_buffer_bytes
        self._sessions: set[MediaSession] = set()
        self._watched: set[MediaSession] = set()
        self._reuse_after_s = reuse_after_s
        self._max_parked_pairs = max_parked_pairs if reuse_after_s is not None else 0
        self._parked: deque[_ParkedPair] = deque()
        self._spare_target = max(0, spare_pairs)
        self._spares: deque[_ParkedPair] = deque()  # bound ahead, never used
        self._refilling: asyncio.Task[None] | None = None
        self._closing_all = False

    @property
    def active_sessions(self) -> int:
        """How many sessions are open (not yet closed)."""
        return len(self._sessions)

    @property
    def ports_in_use(self) -> int:
        """RTP ports of open sessions (parked and spare sockets' ports not counted)."""
        return self.allocator.in_use - 2 * (len(self._parked) + len(self._spares))

    @property
    def ports_available(self) -> int:
        """RTP ports a new session can get: free in the allocator, parked or spare."""
        return self.allocator.available + 2 * (len(self._parked) + len(self._spares))

    @property
    def parked_pairs(self) -> int:
        """Closed sessions' socket pairs waiting for reuse."""
        return len(self._parked)

    @property
    def spare_pairs(self) -> int:
        """Socket pairs bound ahead and not used yet."""
        return len(self._spares)

    @property
    def sessions(self) -> frozenset[MediaSession]:
        """The open sessions (a snapshot)."""
        return frozenset(self._sessions)

    async def open_session(self, label: str = "") -> MediaSession:
        """Bind two sockets (sides a and b) on allocated ports and start relaying between them.

        ``label`` (e.g. the call's id) appears in log lines. Raises ``PortsExhaustedError`` when
        the range is used up, ``OSError`` when binding fails for another reason than a port
        taken by another program (those ports are skipped).
        """
        session = MediaSession(self, label)
        pair = await self._take_parked()
        if pair is None and self._spares:
            pair = self._spares.popleft()
        if len(self._spares) < self._spare_target and self.allocator.available >= 2:
            self._refill_spares()
        if pair is None and self.allocator.available < 2 and self._parked:
            # The range has no free port left: the oldest parked pair serves now, before its
            # quiet time. Closed for fresh sockets instead, its ports would be bound again at
            # once (the FIFO allocator hands out the ports free longest, and none but theirs
            # are free): the same exposure to a late far party, at the price of two closes,
            # two binds and two suspensions of the call's set-up. At 1,125 calls/s on
            # bench/cps.py's 4,000 even ports (2,250 pairs needed parked) that was every call:
            # added post-dial delay p99 6.7 ms, now 2.9-4.2 ms (bench/README).
            pair = self._parked.popleft()
        if pair is not None:
            legs = (
                _Leg(session, "a", pair.port_a, self._loop),
                _Leg(session, "b", pair.port_b, self._loop),
            )
            for leg, transport in zip(legs, (pair.transport_a, pair.transport_b), strict=True):
                transport.set_protocol(leg)
                leg.transport = transport
            return self._opened(session, legs)
        bound: list[tuple[int, socket.socket]] = []
        try:
            while len(bound) < 2:
                try:
                    bound.append(self._bind_next())
                except OSError as error:
                    if error.errno not in _OUT_OF_DESCRIPTORS or not self._parked:
                        raise
                    # Parked sockets hold descriptors a live call needs more: free a pair's.
                    await self._close_parked(self._parked.popleft())
            (port_a, sock_a), (port_b, sock_b) = bound
            legs = (_Leg(session, "a", port_a, self._loop), _Leg(session, "b", port_b, self._loop))
            for leg, sock in zip(legs, (sock_a, sock_b), strict=True):
                transport, _ = await self._loop.create_datagram_endpoint(_factory(leg), sock=sock)
                # connection_made runs a callback later; the session is usable at once.
                leg.transport = transport
        except BaseException:
            for port, sock in bound:
                sock.close()
                self.allocator.release(port)
            raise
        return self._opened(session, legs)

    def _opened(self, session: MediaSession, legs: tuple[_Leg, _Leg]) -> MediaSession:
        session._a, session._b = legs
        legs[0].peer, legs[1].peer = legs[1], legs[0]
        self._sessions.add(session)
        return session

    @property
    def watched_sessions(self) -> int:
        """How many open sessions the dead-media sweep watches."""
        return len(self._watched)

    def sweep_idle(self, now: float, timeout_s: float) -> list[MediaSession]:
        """The watched sessions with no packet from either far party for ``timeout_s``.

        Call it periodically (every second or so: one timer for all calls); each call compares
        every watched session's counters with the previous sweep, so a session is reported
        between ``timeout_s`` and ``timeout_s`` plus one period after its last packet. The
        sessions returned stay watched until the caller closes them or ``stop_watching()``.
        """
        return [session for session in self._watched if session.idle_s(now) >= timeout_s]

    async def close_all(self) -> None:
        """Close every open session and every parked or spare socket (shutdown)."""
        self._closing_all = True
        if self._refilling is not None:
            await asyncio.wait([self._refilling])  # it closes what it bound meanwhile
        await asyncio.gather(*(s.close() for s in list(self._sessions)))
        kept = [*self._parked, *self._spares]
        self._parked, self._spares = deque(), deque()
        await asyncio.gather(*(self._close_parked(pair) for pair in kept))

    # --- spare pairs ---

    def _refill_spares(self) -> None:
        """Start the background task that binds spare pairs, unless it runs or the relay
        closes."""
        if self._refilling is None and not self._closing_all:
            self._refilling = self._loop.create_task(self._bind_spares())

    async def _bind_spares(self) -> None:
        """Bind pairs until ``spare_pairs`` are ready or no port is free: every socket of a
        batch bound at once, their transports opened together (one turn of the loop for the
        batch). A failure only stops the refill: a session binds its own pair meanwhile."""
        try:
            while True:
                wanted = min(self._spare_target - len(self._spares), self.allocator.available // 2)
                if wanted <= 0 or self._closing_all:
                    return
                pairs = await self._bind_parked_pairs(wanted)
                if self._closing_began():  # while they were opened; close_all waits for us
                    await asyncio.gather(*(self._close_parked(pair) for pair in pairs))
                    return
                self._spares.extend(pairs)
                if len(pairs) < wanted:
                    return
        except (OSError, PortsExhaustedError) as error:  # no descriptor or port to spare
            _log.warning("spare rtp sockets not bound", extra={"error": repr(error)})
        except Exception:  # a bug: logged here, not when the task is collected
            _log.exception("spare rtp sockets not bound")
        finally:
            self._refilling = None

    def _closing_began(self) -> bool:
        # A call, not the attribute: mypy keeps an attribute's narrowing across an await.
        return self._closing_all

    async def _bind_parked_pairs(self, count: int) -> list[_ParkedPair]:
        """Up to ``count`` pairs of fresh sockets, each behind a ``_Parked`` protocol."""
        bound: list[tuple[int, socket.socket]] = []
        try:
            while len(bound) < 2 * count:
                bound.append(self._bind_next())
        except (OSError, PortsExhaustedError):
            if not bound:
                raise
        if len(bound) % 2:  # half a pair: its socket goes back
            port, sock = bound.pop()
            sock.close()
            self.allocator.release(port)
        protocols = [_Parked(self._loop) for _ in bound]
        opened = await asyncio.gather(
            *(
                self._loop.create_datagram_endpoint(_factory(parked), sock=sock)
                for parked, (_, sock) in zip(protocols, bound, strict=True)
            ),
            return_exceptions=True,
        )
        failure = next((o for o in opened if isinstance(o, BaseException)), None)
        if failure is not None:
            # Not seen; if ever: nothing half-made is kept, and the refill stops.
            for outcome, (port, sock) in zip(opened, bound, strict=True):
                if isinstance(outcome, BaseException):
                    sock.close()
                else:
                    outcome[0].close()  # the transport owns its socket
                self.allocator.release(port)
            raise failure
        transports: list[asyncio.DatagramTransport] = []
        for outcome in opened:
            assert not isinstance(outcome, BaseException)
            transports.append(outcome[0])
        return [
            _ParkedPair(
                port_a=bound[i][0],
                port_b=bound[i + 1][0],
                transport_a=transports[i],
                transport_b=transports[i + 1],
                parked_a=protocols[i],
                parked_b=protocols[i + 1],
            )
            for i in range(0, len(bound), 2)
        ]

    # --- internals used by MediaSession ---

    def park(self, session: MediaSession) -> bool:
        """Keep a closing session's sockets bound for reuse; False when they are to be closed."""
        legs = (session._a, session._b)
        if (
            self._closing_all
            or len(self._parked) >= self._max_parked_pairs
            or session not in self._sessions
        ):
            return False
        transport_a, transport_b = legs[0].transport, legs[1].transport
        if transport_a is None or transport_b is None:
            return False
        parked_a, parked_b = _Parked(self._loop), _Parked(self._loop)
        transport_a.set_protocol(parked_a)
        transport_b.set_protocol(parked_b)
        self._parked.append(
            _ParkedPair(
                port_a=legs[0].port,
                port_b=legs[1].port,
                transport_a=transport_a,
                transport_b=transport_b,
                parked_a=parked_a,
                parked_b=parked_b,
            )
        )
        self._watched.discard(session)
        self._sessions.discard(session)
        self.session_ended(session)
        return True

    async def _take_parked(self) -> _ParkedPair | None:
        """The oldest parked pair if it has been quiet long enough (FIFO: the oldest is the
        likeliest quiet; one still hearing its old far party blocks the queue only until it
        has been parked for ``_STALE_PARKED_S``, then it is closed)."""
        if self._reuse_after_s is None:
            return None
        now = self._loop.time()
        while self._parked:
            pair = self._parked[0]
            if now - pair.quiet_since() >= self._reuse_after_s:
                return self._parked.popleft()
            if now - pair.parked_a.parked_at < _STALE_PARKED_S:
                return None
            await self._close_parked(self._parked.popleft())
        return None

    async def _close_parked(self, pair: _ParkedPair) -> None:
        pair.transport_a.close()
        pair.transport_b.close()
        try:
            await asyncio.gather(pair.parked_a.closed, pair.parked_b.closed)
        finally:
            self.allocator.release(pair.port_a)
            self.allocator.release(pair.port_b)

    def session_ended(self, session: MediaSession) -> None:
        """Called once per session when it stops relaying (sockets parked, or closed and about
        to be released): a hook for subclasses (the engine's metrics); nothing here."""

    def forget(self, session: MediaSession) -> None:
        """Release a closing session's ports and drop it from the open set."""
        self.session_ended(session)
        self._watched.discard(session)
        if session in self._sessions:
            self._sessions.discard(session)
            self.allocator.release(session.port_a)
            self.allocator.release(session.port_b)

    def watch(self, session: MediaSession) -> None:
        """Add an open session to the dead-media sweep (``MediaSession.watch_inactivity``)."""
        if session in self._sessions:
            self._watched.add(session)

    def unwatch(self, session: MediaSession) -> None:
        """Take a session out of the dead-media sweep."""
        self._watched.discard(session)

    def check_family(self, host: str) -> None:
        """Raise ``ValueError`` if ``host`` is an IP address of the other family than ours."""
        parsed = _ip_of(host)
        if parsed is None:
            return  # a host name: handled by waiting for the latch
        if (parsed[0] == 4) != (self._family == socket.AF_INET):
            raise ValueError(f"relay on {self.address} cannot send to {host}")

    def _bind_next(self) -> tuple[int, socket.socket]:
        skipped: list[int] = []
        try:
            for _ in range(_BIND_ATTEMPTS):
                port = self.allocator.allocate()
                try:
                    return port, self._bind(port)
                except OSError as exc:
                    if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                        self.allocator.release(port)
                        raise
                    # Another program holds it: skip. It goes back to the end of the FIFO
                    # (below), to be tried again after the rest of the range.
                    _log.warning("rtp port taken by another program", extra={"port": port})
                    skipped.append(port)
            raise PortsExhaustedError(f"{_BIND_ATTEMPTS} RTP ports in a row could not be bound")
        finally:
            for port in skipped:
                self.allocator.release(port)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._buffer_bytes)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._buffer_bytes)
            with contextlib.suppress(OSError):  # QoS marking is best effort
                if self._family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, _TOS_EF)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, _TOS_EF)
            sock.setblocking(False)
            sock.bind((self.address, port))
        except BaseException:
            sock.close()
            raise
        return sock
