"""Events the ``Endpoint`` hands to its user, named as facts (EXAMPLES.md §1.2)."""

from __future__ import annotations

from dataclasses import dataclass

from sip.message import Request, Response
from sip.transport import Peer

# Transaction keys are opaque hashable tuples built by ``sip.transaction``.
TxKey = tuple[str, ...]


@dataclass(frozen=True, slots=True, init=False)
class RequestReceived:
    """A new request created a server transaction; answer it with ``Endpoint.send_response``.

    ``in_dialog`` is True when the To header carries a tag (RFC 3261 §12.2.2).
    """

    tx_key: TxKey
    request: Request
    peer: Peer
    in_dialog: bool

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(self, tx_key: TxKey, request: Request, peer: Peer, in_dialog: bool) -> None:
        object.__setattr__(self, "tx_key", tx_key)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "in_dialog", in_dialog)


@dataclass(frozen=True, slots=True, init=False)
class AckReceived:
    """An ACK that belongs to no INVITE server transaction awaiting it: the ACK for a 2xx.

    ``tx_key`` names the INVITE server transaction whose 2xx it acknowledges,
    or is None when no such transaction is known (a late or stray ACK).
    """

    request: Request
    peer: Peer
    tx_key: TxKey | None

    def __init__(self, request: Request, peer: Peer, tx_key: TxKey | None) -> None:
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "peer", peer)
        object.__setattr__(self, "tx_key", tx_key)


@dataclass(frozen=True, slots=True, init=False)
class CancelReceived:
    """CANCEL matched a pending INVITE server transaction; the 200 to CANCEL is already sent.

    The user should now answer the INVITE with 487 (RFC 3261 §9.2).
    """

    invite_tx_key: TxKey
    request: Request
    peer: Peer

    def __init__(self, invite_tx_key: TxKey, request: Request, peer: Peer) -> None:
        object.__setattr__(self, "invite_tx_key", invite_tx_key)
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "peer", peer)


@dataclass(frozen=True, slots=True, init=False)
class ResponseReceived:
    """A response for a client transaction (every 1xx, final, and 2xx retransmissions).

    ``tx_key`` is None for a 2xx to an INVITE whose transaction has already
    ended (RFC 6026 §7.2): the dialog layer must still acknowledge it.
    """

    tx_key: TxKey | None
    response: Response

    def __init__(self, tx_key: TxKey | None, response: Response) -> None:
        object.__setattr__(self, "tx_key", tx_key)
        object.__setattr__(self, "response", response)


@dataclass(frozen=True, slots=True, init=False)
class TransactionTimedOut:
    """A transaction gave up: Timer B/F (no final response), H (no ACK), L (2xx never ACKed)."""

    tx_key: TxKey
    timer: str

    def __init__(self, tx_key: TxKey, timer: str) -> None:
        object.__setattr__(self, "tx_key", tx_key)
        object.__setattr__(self, "timer", timer)


@dataclass(frozen=True, slots=True, init=False)
class TransportFailed:
    """The transport could not deliver a message of this transaction (RFC 3261 §17.1.4)."""

    tx_key: TxKey

    def __init__(self, tx_key: TxKey) -> None:
        object.__setattr__(self, "tx_key", tx_key)


Event = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransportFailed
)
