"""Addresses of peers and datagrams to send, as plain data (no sockets here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
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

    @property
    def reliable(self) -> bool:
        """True for stream transports, where the SIP layer does not retransmit (§17.1.1.2)."""
        return self.transport != "UDP"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes for the I/O layer to send to ``peer``; ``close`` closes that connection afterwards."""

    data: bytes
    peer: Peer
    close: bool = False
