"""asyncio I/O for the sans-IO SIP ``Endpoint`` (EXAMPLES.md §1.6): UDP and TCP, one timer.

This file alone reads the loop clock.  Every entry point does: feed the
endpoint, let the application drain its events, then have what the endpoint
queued sent and the single ``call_at`` handle re-armed at the end of the loop's
turn (``SipTransport.flush``).  Nothing a peer sends may raise out of here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from typing import cast

from engine.logging import get_logger
from engine.overload import SipLagMonitor
from sip.endpoint import Endpoint
from sip.transport import Outgoing, Peer

_log = get_logger("engine.transport")

# Kernel socket buffers for the SIP UDP socket: at thousands of calls per
# second the default (~200 KiB) overflows during bursts and drops datagrams.
UDP_BUFFER_BYTES = 8 * 1024 * 1024
TCP_READ_LIMIT = 256 * 1024
# Bytes queued in user space for the SIP UDP socket (the kernel's buffer full) beyond which
# datagrams are dropped rather than queued: memory stays bounded, and SIP retransmits.
UDP_WRITE_QUEUE_LIMIT = 4 * 1024 * 1024
# A TCP peer that lets this much of our output pile up is not reading: it is disconnected.
TCP_WRITE_QUEUE_LIMIT = 1024 * 1024
# Inbound TCP connections open at once ([overload] max_tcp_connections); more are closed.
DEFAULT_MAX_TCP_CONNECTIONS = 1024


class SipTransport:
    """Owns the UDP socket, the TCP listener and connections of one ``Endpoint``."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        on_events: Callable[[], None],
        loop: asyncio.AbstractEventLoop | None = None,
        max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS,
    ) -> None:
        self.endpoint = endpoint
        self.max_tcp_connections = max_tcp_connections
        self.udp_send_dropped = 0  # datagrams dropped: the write queue was past its limit
        self.udp_send_failed = 0  # datagrams the socket refused (an address it cannot reach)
        self.tcp_refused = 0  # inbound connections closed: max_tcp_connections were open
        self._on_events = on_events
        self._loop = loop or asyncio.get_running_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._connections: dict[int, _TcpConnection] = {}
        self._inbound_connections = 0
        self._connection_ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        # How late SIP is served, kept on the endpoint for its admission policy.
        self.lag = SipLagMonitor(send_probe=self._send_probe, on_lag=self._set_lag)
        self._probe: socket.socket | None = None
        self._probe_addr: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind UDP and TCP on ``host:port``."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
                except OSError:  # pragma: no cover - capped by the kernel, not fatal
                    _log.warning("udp_buffer_not_raised", option=int(option))
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._udp, _ = await self._loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), sock=sock
        )
        self._start_lag_monitor(host, sock.getsockname()[1])
        self._tcp_server = await self._loop.create_server(
            lambda: _TcpConnection(self), host, port, reuse_address=True
        )

    def _start_lag_monitor(self, host: str, port: int) -> None:
        """Measure how late SIP is served (engine.overload.SipLagMonitor): probes go from a
        socket of our own to the SIP socket, through the same queue as every peer's request."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # A wildcard listener is reached on loopback.
        target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.setblocking(False)
            probe.bind((target, 0))
            probe.connect((target, port))
        except OSError as error:
            probe.close()
            _log.warning("lag_probe_unavailable", error=str(error))
            self.lag.start(self._loop)  # timer lag only
            return
        self._probe = probe
        local = probe.getsockname()
        self._probe_addr = (str(local[0]), int(local[1]))
        self.lag.start(self._loop)

    def _send_probe(self, data: bytes) -> None:
        if self._probe is None:
            return
        with contextlib.suppress(OSError):  # a full send buffer: the probe counts as lost
            self._probe.send(data)

    def not_sent(self) -> dict[str, int]:
        """Datagrams that could not be sent, by reason (for /metrics): dropped while the UDP
        write queue was past its limit, or refused by the socket."""
        return {
            "udp_write_queue_full": self.udp_send_dropped,
            "udp_unaddressable": self.udp_send_failed,
        }

    def _set_lag(self, lag_s: float) -> None:
        self.endpoint.loop_lag_s = lag_s

    def close(self) -> None:
        """Send what is still queued (the BYEs of a shutdown), stop listening, drop every
        connection."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_now()
        self.lag.stop()
        self._set_lag(0.0)
        if self._probe is not None:
            self._probe.close()
            self._probe = None
            self._probe_addr = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = None
        if self._udp is not None:
            self._udp.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for connection in list(self._connections.values()):
            connection.close()

    async def wait_closed(self) -> None:
        """Wait until the TCP listener is fully closed."""
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()

    # -- endpoint pumping --------------------------------------------------------------

    def now(self) -> float:
        """The endpoint's clock: the loop's monotonic time."""
        return self._loop.time()

    def process(self) -> None:
        """Deliver events to the application, send what is queued, re-arm the timer."""
        try:
            self._on_events()
        except Exception:
            _log.exception("event_handler_failed")
        self.flush()

    def flush(self) -> None:
        """Send everything the endpoint queued and re-arm the timer — once this turn of the
        event loop has handled all it read.

        Why not at once: each datagram sent to a peer that sleeps in its poll wakes it, and
        on loopback the sender pays for that wake-up (in a VM, an interrupt to the other CPU):
        half of the kernel's time in ``sendmsg``. Sent together, the messages that the
        datagrams of one poll and the coroutines they resumed produced wake a peer once.
        Measured in ``bench/cps.py`` at 1,000 calls/s: -11 % CPU per call (7 alternating
        runs). What it delays a message by is the rest of that turn, the other datagrams of
        the same poll: the added post-dial delay at 500 calls/s went from p50 0.87 / p99 2.07
        to 0.95 / 2.36 ms (``--wire``, 2 alternating runs each).
        """
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_handle = None
        for outgoing in self.endpoint.datagrams_to_send():
            self._send(outgoing)
        self._arm_timer()

    def _send(self, outgoing: Outgoing) -> None:
        peer = outgoing.peer
        if peer.transport == "UDP":
            udp = self._udp
            if udp is not None and outgoing.data:
                # Both loops' datagram transports have it; typeshed lists it on WriteTransport.
                if udp.get_write_buffer_size() > UDP_WRITE_QUEUE_LIMIT:  # type: ignore[attr-defined]
                    self.udp_send_dropped += 1
                    return
                try:
                    udp.sendto(outgoing.data, (peer.host, peer.port))
                except (ValueError, OSError) as error:
                    # A peer this socket cannot address (a host name — nothing resolves names
                    # on this path — or the other IP family): this datagram is lost, the rest
                    # of the turn's still go out.
                    self.udp_send_failed += 1
                    _log.warning(
                        "udp_send_failed", host=peer.host, port=peer.port, error=str(error)
                    )
            return
        connection = self._connections.get(peer.connection or -1)
        if connection is None:
            if outgoing.data:
                self._loop.create_task(self._connect_and_send(peer, outgoing.data))
            return
        if outgoing.data:
            connection.write(outgoing.data)
        if outgoing.close:
            connection.close()

    async def _connect_and_send(self, peer: Peer, data: bytes) -> None:
        try:
            _, protocol = await self._loop.create_connection(
                lambda: _TcpConnection(self, inbound=False), peer.host, peer.port
            )
        except OSError as error:
            _log.warning("tcp_connect_failed", host=peer.host, port=peer.port, error=str(error))
            return
        protocol.write(data)

    def _arm_timer(self) -> None:
        at = self.endpoint.next_timer()
        armed_at = self._timer_at
        if armed_at is not None and (at is None or armed_at <= at):
            # The armed wake-up comes no later than needed: keep it.  When the earliest
            # deadline moved later (its timer was disarmed), waking early costs one
            # handle_timer that finds nothing due and re-arms; cancelling and re-scheduling
            # the loop handle on every such message cost more.
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._fire_timer)

    def _fire_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_at = None
        # An early wake-up still counts as the deadline (aioquic's max(); compared here, as
        # max() compiled is a generic call of the builtin).
        now = self._loop.time()
        if deadline is not None and deadline > now:
            now = deadline
        try:
            self.endpoint.handle_timer(now)
        except Exception:
            _log.exception("timer_failed")
        self.process()

    # -- callbacks from protocols ------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == self._probe_addr:
            self.lag.probe_received(data, self._loop.time())
            return
        self.endpoint.receive_datagram(data, addr, self._loop.time())
        self.process()

    def stream_data_received(self, connection: _TcpConnection, data: bytes) -> None:
        self.endpoint.receive_stream_data(
            data, connection=connection.id, addr=connection.peer_addr, now=self._loop.time()
        )
        self.process()

    def connection_made(self, connection: _TcpConnection) -> bool:
        """Register a new connection; False (and it is closed) when one too many is inbound."""
        if connection.inbound:
            if self._inbound_connections >= self.max_tcp_connections:
                self.tcp_refused += 1
                _log.warning("tcp_connection_refused", peer=connection.peer_addr[0])
                return False
            self._inbound_connections += 1
        connection.id = next(self._connection_ids)
        self._connections[connection.id] = connection
        return True

    def connection_lost(self, connection: _TcpConnection) -> None:
        if self._connections.pop(connection.id, None) is None:
            return  # refused at connection_made: never registered
        if connection.inbound:
            self._inbound_connections -= 1
        self.endpoint.connection_closed(connection.id)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self._owner.datagram_received(data, (str(addr[0]), int(addr[1])))
        except Exception:
            _log.exception("udp_receive_failed")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction timers deal with loss.
        _log.debug("udp_error", error=str(exc))


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport, *, inbound: bool = True) -> None:
        self._owner = owner
        self._transport: asyncio.Transport | None = None
        self.id = 0
        self.inbound = inbound
        self.peer_addr: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername") or ("", 0)
        self.peer_addr = (str(peer[0]), int(peer[1]))
        if not self._owner.connection_made(self):
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            self._owner.stream_data_received(self, data)
        except Exception:
            _log.exception("tcp_receive_failed")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.connection_lost(self)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > TCP_WRITE_QUEUE_LIMIT:
            # The peer does not read what we send: drop it rather than buffer without end.
            _log.warning("tcp_peer_not_reading", peer=self.peer_addr[0])
            transport.abort()
            return
        transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
