"""Events the ``Endpoint`` hands to its user, named as facts (EXAMPLES.md §1.2)."""

from __future__ import annotations

from dataclasses import dataclass

from sip.message import Request, Response
from sip.transport import Peer

# Transaction keys are opaque hashable tuples built by ``sip.transaction``.
TxKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction; answer it with ``Endpoint.send_response``.

    ``in_dialog`` is True when the To header carries a tag (RFC 3261 §12.2.2).
    """

    tx_key: TxKey
    request: Request
    peer: Peer
    in_dialog: bool


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK that belongs to no INVITE server transaction awaiting it: the ACK for a 2xx.

    ``tx_key`` names the INVITE server transaction whose 2xx it acknowledges,
    or is None when no such transaction is known (a late or stray ACK).
    """

    request: Request
    peer: Peer
    tx_key: TxKey | None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """CANCEL matched a pending INVITE server transaction; the 200 to CANCEL is already sent.

    The user should now answer the INVITE with 487 (RFC 3261 §9.2).
    """

    invite_tx_key: TxKey
    request: Request
    peer: Peer


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction (every 1xx, final, and 2xx retransmissions).

    ``tx_key`` is None for a 2xx to an INVITE whose transaction has already
    ended (RFC 6026 §7.2): the dialog layer must still acknowledge it.
    """

    tx_key: TxKey | None
    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A transaction gave up: Timer B/F (no final response), H (no ACK), L (2xx never ACKed)."""

    tx_key: TxKey
    timer: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not deliver a message of this transaction (RFC 3261 §17.1.4)."""

    tx_key: TxKey


Event = (
    RequestReceived
    | AckReceived
    | CancelReceived
    | ResponseReceived
    | TransactionTimedOut
    | TransportFailed
)
