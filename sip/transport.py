"""Addresses of peers and datagrams to send, as plain data (no sockets here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, init=False)
class Peer:
    """Where a message came from or goes to.

    ``transport`` is ``"UDP"`` or ``"TCP"``; ``connection`` identifies an
    existing stream connection (assigned by the I/O layer), None for UDP or
    when a new connection must be opened.
    """

    transport: str
    host: str
    port: int
    connection: int | None = None

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(self, transport: str, host: str, port: int, connection: int | None = None) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "connection", connection)

    @property
    def reliable(self) -> bool:
        """True for stream transports, where the SIP layer does not retransmit (§17.1.1.2)."""
        return self.transport != "UDP"


@dataclass(frozen=True, slots=True, init=False)
class Outgoing:
    """Bytes for the I/O layer to send to ``peer``; ``close`` closes that connection afterwards."""

    data: bytes
    peer: Peer
    close: bool = False

    def __init__(self, data: bytes, peer: Peer, close: bool = False) -> None:
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "close", close)
