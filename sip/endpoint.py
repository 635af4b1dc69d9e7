"""The sans-IO SIP endpoint: bytes and time in, events and datagrams out (EXAMPLES.md §1.3).

It parses, matches messages to transactions (RFC 3261 §17.1.3, §17.2.3 with
the RFC 2543 fallback), runs the UAS checks of §8.2, answers retransmissions
from the transactions without involving the application, and turns every
fault in a peer's bytes into the right response or a silent drop.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sip.builders import make_cancel, make_response, new_branch, new_tag, response_from_headers
from sip.errors import SipError, SipParseError, SipUsageError
from sip.events import (
    AckReceived,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
    TransportFailed,
    TxKey,
)
from sip.headers import HeaderList, Via, parse_via_values
from sip.message import Request, Response
from sip.parser import DEFAULT_MAX_MESSAGE_BYTES, StreamFramer, parse_message, parse_stream_message
from sip.transaction import (
    UNARMED,
    Effect,
    TimedOut,
    TimerConfig,
    Transaction,
    TxKind,
    TxState,
)
from sip.transport import Outgoing, Peer
from sip.uas import UasPolicy, check_request

_DEFAULT_RETRY_AFTER_S = 5
# Distinct UDP addresses whose Peer is shared by every message and transaction from them; past
# this many the cache starts over (a carrier's peers are a few SBCs, a flood is many sources).
_MAX_UDP_PEERS_CACHED = 4096
_TERMINATED = TxState.TERMINATED
# INVITEs refused 503 remembered for their retransmissions (about 200 bytes each).
_MAX_REJECTED_REMEMBERED = 65_536


@dataclass(slots=True)
class EndpointStats:
    """Counters for metrics and tests."""

    messages_received: int = 0
    requests_rejected: int = 0
    malformed_dropped: int = 0
    responses_dropped: int = 0
    retransmissions_absorbed: int = 0
    retransmissions_sent: int = 0  # requests and responses re-sent by timers A, E and G
    overload_rejected: int = 0  # new requests answered 503 (Retry-After) without a transaction
    flood_dropped: int = 0  # new requests dropped unanswered by the admission policy
    internal_errors: int = 0


class Admission(Enum):
    """What becomes of a new request (not a retransmission, not an ACK): a policy's verdict."""

    ACCEPT = "accept"  # a server transaction, as any request
    REJECT = "reject"  # 503 with Retry-After, stateless: no transaction, no 100 Trying, no event
    DROP = "drop"  # nothing at all: a flood is not answered


class AdmissionPolicy(Protocol):
    """Decides, before any transaction exists, whether a new request is taken on.

    Called for every new request except ACK and a CANCEL of a pending INVITE (which frees
    resources, so it is always taken). Must be cheap: it runs once per request on the hot path.
    """

    @property
    def retry_after_s(self) -> int:
        """Retry-After of the 503 of a rejected request."""
        ...

    def admit(self, request: Request, source: Peer, to_tag: str | None, now: float) -> Admission:
        """The verdict for ``request`` from ``source`` at ``now``; ``to_tag`` is its To tag
        (None outside a dialog), read once by the endpoint for both of them."""
        ...


class Endpoint:
    """Transaction layer and UAS core of one local SIP address."""

    def __init__(
        self,
        *,
        local_host: str,
        local_port: int,
        timers: TimerConfig | None = None,
        policy: UasPolicy | None = None,
        auto_trying: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_transactions: int = 200_000,
        admission: AdmissionPolicy | None = None,
    ) -> None:
        """``max_transactions`` bounds the table when no ``admission`` policy is set (new
        requests beyond it get 503); a policy, when set, decides instead (engine.overload)."""
        self.local_host = local_host
        self.local_port = local_port
        self.timers = timers or TimerConfig()
        self.policy = policy or UasPolicy()
        self.auto_trying = auto_trying
        self.max_message_bytes = max_message_bytes
        self.max_transactions = max_transactions
        self.admission = admission
        # How late the I/O layer serves this endpoint (event-loop lag, SIP socket queueing), in
        # seconds, as the I/O layer last measured it; the endpoint keeps it for admission policies.
        self.loop_lag_s = 0.0
        self.stats = EndpointStats()
        self.last_internal_error: BaseException | None = None
        self._transactions: dict[TxKey, Transaction] = {}
        # ACK of a 2xx carries a new branch (§17.1.1.3); find its INVITE by dialog data.
        self._awaiting_ack: dict[tuple[str, int, str], TxKey] = {}
        self._deadlines = _Deadlines(self._transactions)
        # One Peer per UDP address instead of one per datagram: a transaction keeps its peer
        # for up to 64*T1, and a shared one is not another object for every full collection.
        self._udp_peers: dict[tuple[str, int], Peer] = {}
        self._events: deque[Event] = deque()
        self._outgoing: list[Outgoing] = []
        self._framers: dict[int, StreamFramer] = {}
        # INVITEs refused 503 without a transaction: key → (forget at, To tag). Bounded.
        self._rejected: OrderedDict[TxKey, tuple[float, str]] = OrderedDict()
        self.max_rejected_remembered = _MAX_REJECTED_REMEMBERED

    # -- input: bytes -----------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Process one UDP datagram from ``addr``; never raises."""
        self._receive(data, self._udp_peer(addr[0], addr[1]), now, stream=False)

    def receive_stream_data(
        self, data: bytes, *, connection: int, addr: tuple[str, int], now: float
    ) -> None:
        """Process bytes read from TCP ``connection``; framing faults close it after a 400."""
        peer = Peer("TCP", addr[0], addr[1], connection)
        framer = self._framers.get(connection)
        if framer is None:
            framer = self._framers[connection] = StreamFramer(self.max_message_bytes)
        framer.feed(data)
        while True:
            try:
                message = framer.next_message()
            except SipParseError as error:
                self._reject_unparsed(error, peer)
                self._outgoing.append(Outgoing(b"", peer, close=True))
                self._framers.pop(connection, None)
                return
            if message is None:
                return
            self._receive(message, peer, now, stream=True)

    def connection_closed(self, connection: int) -> None:
        """Forget the framing state of a closed stream connection."""
        self._framers.pop(connection, None)

    # -- output ---------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        """Everything queued for the wire since the last call."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        return self._events.popleft() if self._events else None

    def next_timer(self) -> float | None:
        """Earliest deadline at which ``handle_timer`` must be called, or None."""
        return self._deadlines.earliest()

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        deadlines = self._deadlines
        transactions = self._transactions
        while True:
            key = deadlines.pop_due(now)
            if key is None:
                return
            tx = transactions[key]
            tx.scheduled_at = None
            # What a timer sends is a retransmission (timers A, E, G), but for the delayed
            # 100 Trying, a first response.
            first_sends = tx.trying_at <= now
            sent = self._apply(tx, tx.fire_due_timers(now))
            if sent > first_sends:
                self.stats.retransmissions_sent += sent - first_sends
            self._after(tx, now)

    # -- input: the application ------------------------------------------------------------

    def send_request(self, request: Request, peer: Peer, now: float) -> TxKey:
        """Send a request (not ACK) in a new client transaction; adds the top Via."""
        if request.method == "ACK":
            raise SipUsageError("ACK is sent with send_ack, it has no transaction")
        branch = new_branch()
        request.headers.insert_first("Via", self._via_value(peer, branch))
        return self._start_client(request, peer, now, branch)

    def send_cancel(self, invite_tx_key: TxKey, now: float) -> TxKey:
        """CANCEL the INVITE of a client transaction (RFC 3261 §9.1); same branch as the INVITE."""
        invite_tx = self._transactions.get(invite_tx_key)
        if invite_tx is None or invite_tx.kind is not TxKind.CLIENT_INVITE:
            raise SipUsageError("no pending INVITE client transaction to cancel")
        invite = invite_tx.request
        if invite is None:  # a final response came: nothing left to cancel (§9.1)
            raise SipUsageError("the INVITE already has a final response")
        cancel = make_cancel(invite)
        branch = invite.top_via.branch or new_branch()
        return self._start_client(cancel, invite_tx.peer, now, branch)

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """Send the ACK for a 2xx: a request outside any transaction (§13.2.2.4)."""
        ack.headers.insert_first("Via", self._via_value(peer, new_branch()))
        self._outgoing.append(Outgoing(ack.to_bytes(), peer))

    def send_response(self, tx_key: TxKey, response: Response, now: float) -> None:
        """Answer a server transaction; retransmissions are handled by the transaction."""
        tx = self._transactions.get(tx_key)
        if tx is None or tx.kind not in (TxKind.SERVER_INVITE, TxKind.SERVER_NON_INVITE):
            raise SipUsageError(f"no server transaction {tx_key!r}")
        request = tx.request  # read first: a final response drops it from the transaction
        self._apply(tx, tx.send_response(response, now))
        if (
            request is not None
            and tx.kind is TxKind.SERVER_INVITE
            and 200 <= response.status_code < 300
        ):
            ack_key = (request.call_id, request.cseq.seq, request.from_tag or "")
            tx.awaiting_ack_key = ack_key
            self._awaiting_ack[ack_key] = tx.key
        self._after(tx, now)

    def transport_error(self, tx_key: TxKey, now: float) -> None:
        """The I/O layer could not send for ``tx_key`` (e.g. TCP connect refused)."""
        tx = self._transactions.get(tx_key)
        if tx is not None:
            self._apply(tx, tx.transport_error(now))
            self._after(tx, now)

    def response_for(self, tx_key: TxKey, status_code: int, reason: str | None = None) -> Response:
        """Convenience: a response to the request of server transaction ``tx_key``."""
        tx = self._transactions[tx_key]
        if tx.request is None:
            raise SipUsageError(f"server transaction {tx_key!r} already sent its final response")
        return make_response(tx.request, status_code, reason, to_tag=self._local_tag(tx))

    @property
    def transaction_count(self) -> int:
        """Live transactions (for overload decisions and metrics)."""
        return len(self._transactions)

    # -- internals --------------------------------------------------------------------

    def _udp_peer(self, host: str, port: int) -> Peer:
        peers = self._udp_peers
        peer = peers.get((host, port))
        if peer is None:
            if len(peers) >= _MAX_UDP_PEERS_CACHED:
                peers.clear()
            peer = peers[(host, port)] = Peer("UDP", host, port)
        return peer

    def _via_value(self, peer: Peer, branch: str) -> str:
        return f"SIP/2.0/{peer.transport} {self.local_host}:{self.local_port};branch={branch};rport"

    def _start_client(self, request: Request, peer: Peer, now: float, branch: str) -> TxKey:
        key: TxKey = ("c", branch, request.method)
        if key in self._transactions:
            raise SipUsageError(f"client transaction {key!r} already exists")
        kind = TxKind.CLIENT_INVITE if request.method == "INVITE" else TxKind.CLIENT_NON_INVITE
        tx = Transaction(
            kind=kind, key=key, request=request, peer=peer, timers=self.timers, now=now
        )
        self._transactions[key] = tx
        self._apply(tx, tx.start())
        self._after(tx, now)
        return key

    def _receive(self, data: bytes, peer: Peer, now: float, *, stream: bool) -> None:
        self.stats.messages_received += 1
        try:
            if stream:
                message = parse_stream_message(data)
            else:
                message = parse_message(data, max_message_bytes=self.max_message_bytes)
            if isinstance(message, Response):
                self._receive_response(message, now)
            else:
                self._receive_request(message, peer, now)
        except SipParseError as error:
            self._reject_unparsed(error, peer)
        except SipError as error:
            # A fault found by a lazy accessor after parsing (e.g. a bad Route).
            self.stats.malformed_dropped += 1
            self.last_internal_error = error
        except Exception as error:
            self.stats.internal_errors += 1
            self.last_internal_error = error

    def _reject_unparsed(self, error: SipParseError, peer: Peer) -> None:
        """Answer a request we could not parse, statelessly; drop a bad response."""
        headers = error.partial_headers
        method_is_ack = headers is not None and (headers.get("CSeq") or "").rstrip().endswith("ACK")
        if error.is_response or headers is None or method_is_ack or "Via" not in headers:
            self.stats.malformed_dropped += 1
            return
        self.stats.requests_rejected += 1
        response = response_from_headers(
            headers, error.status_code, error.reason_phrase, to_tag=new_tag()
        )
        destination = self._unparsed_response_peer(headers, peer)
        self._outgoing.append(Outgoing(response.to_bytes(), destination))

    def _receive_response(self, response: Response, now: float) -> None:
        vias = response.vias
        if len(vias) != 1:
            # §18.1.2: a UAC discards responses with more than one Via (RFC 4475 §3.3.10).
            self.stats.responses_dropped += 1
            return
        branch = vias[0].branch or ""
        tx = self._transactions.get(("c", branch, response.cseq.method))
        if tx is None:
            if response.cseq.method == "INVITE" and 200 <= response.status_code < 300:
                # A 2xx after the transaction ended still needs an ACK from the dialog.
                self._events.append(ResponseReceived(None, response))
            else:
                self.stats.responses_dropped += 1
            return
        self._apply(tx, tx.receive_response(response, now))
        self._after(tx, now)

    def _server_key(self, request: Request, method: str) -> TxKey:
        via = request.top_via
        if via.has_rfc3261_branch:
            return ("s", via.branch or "", via.sent_by.lower(), method)
        # RFC 2543 matching (§17.2.3 last paragraph); the To tag is left out
        # because the INVITE had none and its ACK carries ours.
        return (
            "s2543",
            str(request.uri),
            request.from_tag or "",
            request.call_id,
            str(request.cseq.seq),
            str(via),
            method,
        )

    def _receive_request(self, request: Request, peer: Peer, now: float) -> None:
        # Match first: the parser already validated what the key needs, so a
        # retransmission is answered by its transaction without the full parse.
        # The key is taken before the Via is stamped, for originals and
        # retransmissions alike (the RFC 2543 key includes the whole Via).
        method = request.method
        match_method = "INVITE" if method == "ACK" else method
        key = self._server_key(request, match_method)
        tx = self._transactions.get(key)
        if tx is not None:
            if method == "ACK" and tx.kind is not TxKind.SERVER_INVITE:
                return
            self.stats.retransmissions_absorbed += method != "ACK"
            self._apply(tx, tx.receive_request(request, now))
            self._after(tx, now)
            return
        try:
            request.validate()
            _stamp_received(request, peer)
        except SipParseError as error:
            if method != "ACK":
                self.stats.requests_rejected += 1
                response = make_response(
                    request, error.status_code, error.reason_phrase, to_tag=new_tag()
                )
                destination = self._response_peer(request, peer)
                self._outgoing.append(Outgoing(response.to_bytes(), destination))
            return
        if self._rejected and self._rejected_again(request, key, peer, now):
            return
        if method == "ACK":
            self._receive_2xx_ack(request, peer, now)
            return
        to_tag = request.to_tag
        verdict = self._admission(request, key, peer, to_tag, now)
        if verdict is not Admission.ACCEPT:
            if verdict is Admission.REJECT:
                self.stats.overload_rejected += 1
                self._reject_overloaded(request, key, peer, now, new_tag())
            else:
                self.stats.flood_dropped += 1
            return
        kind = TxKind.SERVER_INVITE if method == "INVITE" else TxKind.SERVER_NON_INVITE
        destination = self._response_peer(request, peer)
        tx = Transaction(
            kind=kind, key=key, request=request, peer=destination, timers=self.timers, now=now
        )
        self._transactions[key] = tx
        local_tag = self._local_tag(tx)
        error_response = check_request(request, self.policy, to_tag=local_tag)
        if error_response is not None:
            self._apply(tx, tx.send_response(error_response, now))
        elif method == "CANCEL":
            self._receive_cancel(tx, now)
        else:
            if method == "INVITE" and self.auto_trying and self.timers.trying_delay_s is None:
                self._apply(tx, tx.send_response(make_response(request, 100), now))
            self._events.append(
                RequestReceived(tx.key, request, tx.peer, in_dialog=to_tag is not None)
            )
        self._after(tx, now)

    def _admission(
        self, request: Request, key: TxKey, peer: Peer, to_tag: str | None, now: float
    ) -> Admission:
        # A CANCEL of a pending INVITE ends work: never refused (it has its INVITE's key).
        if request.method == "CANCEL" and (*key[:-1], "INVITE") in self._transactions:
            return Admission.ACCEPT
        policy = self.admission
        if policy is not None:
            return policy.admit(request, peer, to_tag, now)
        if len(self._transactions) >= self.max_transactions:
            return Admission.REJECT
        return Admission.ACCEPT

    def _reject_overloaded(
        self, request: Request, key: TxKey, peer: Peer, now: float, to_tag: str
    ) -> None:
        """503 with Retry-After (RFC 3261 §21.5.4), statelessly: no transaction is kept.

        A refused INVITE is remembered (key and To tag) until its ACK or 64*T1, when its UAC
        has stopped retransmitting (Timer B): a retransmission still queued when the 503 went
        out gets the same 503 again, never a call its caller has already given up.
        """
        policy = self.admission
        retry_after_s = policy.retry_after_s if policy is not None else _DEFAULT_RETRY_AFTER_S
        response = make_response(
            request, 503, to_tag=to_tag, extra=[("Retry-After", str(retry_after_s))]
        )
        self._outgoing.append(Outgoing(response.to_bytes(), self._response_peer(request, peer)))
        if request.method != "INVITE" or key in self._rejected:
            return  # a retransmission keeps the first one's time: Timer B started with it
        rejected = self._rejected
        while rejected:  # oldest first: drop those past their time, and beyond the bound
            oldest_key, (forget_at, _) = next(iter(rejected.items()))
            if forget_at > now and len(rejected) < self.max_rejected_remembered:
                break
            del rejected[oldest_key]
        rejected[key] = (now + 64 * self.timers.t1_s, to_tag)

    def _rejected_again(self, request: Request, key: TxKey, peer: Peer, now: float) -> bool:
        """True when ``request`` is the retransmission or the ACK of an INVITE refused 503."""
        entry = self._rejected.get(key)
        if entry is None:
            return False
        forget_at, to_tag = entry
        if request.method == "ACK" or forget_at <= now:
            del self._rejected[key]
            return request.method == "ACK"
        if request.method != "INVITE":
            return False  # a CANCEL of it: answered 481 as for any unknown transaction
        self.stats.retransmissions_absorbed += 1
        self._reject_overloaded(request, key, peer, now, to_tag)
        return True

    def _receive_cancel(self, cancel_tx: Transaction, now: float) -> None:
        request = cancel_tx.request
        assert request is not None  # a new server transaction: nothing answered yet
        invite_key = (*cancel_tx.key[:-1], "INVITE")
        invite_tx = self._transactions.get(invite_key)
        local_tag = self._local_tag(cancel_tx)
        if invite_tx is None or invite_tx.last_response_status >= 200:
            # §9.2: no matching transaction (or already answered) → 481.
            status = 481 if invite_tx is None else 200
            response = make_response(request, status, to_tag=local_tag)
            self._apply(cancel_tx, cancel_tx.send_response(response, now))
            return
        response = make_response(request, 200, to_tag=local_tag)
        self._apply(cancel_tx, cancel_tx.send_response(response, now))
        self._events.append(CancelReceived(invite_key, request, cancel_tx.peer))

    def _receive_2xx_ack(self, ack: Request, peer: Peer, now: float) -> None:
        key = self._awaiting_ack.get((ack.call_id, ack.cseq.seq, ack.from_tag or ""))
        tx = self._transactions.get(key) if key is not None else None
        if tx is None:
            self._events.append(AckReceived(ack, peer, None))
            return
        self._apply(tx, tx.receive_request(ack, now))
        self._after(tx, now)

    def _response_peer(self, request: Request, source: Peer) -> Peer:
        """Where responses go (RFC 3261 §18.2.2, RFC 3581).

        Streams answer on the same connection.  Over UDP we always use the
        source address (the ``received`` rule) and the source port when rport
        was asked for, else the Via port (default 5060).
        """
        return self._via_response_peer(request.top_via, source)

    def _via_response_peer(self, via: Via, source: Peer) -> Peer:
        """RFC 3261 §18.2.2 with RFC 3581: the source address; the source port if rport, else
        Via's."""
        if source.reliable or via.rport_requested:
            return source
        return self._udp_peer(source.host, via.port or 5060)

    def _unparsed_response_peer(self, headers: HeaderList, source: Peer) -> Peer:
        """``_response_peer`` for a request that failed to parse, as far as its top Via parses.

        The Via may be the broken part: then answer to where the bytes came from.
        """
        value = headers.get("Via")
        if source.reliable or value is None:
            return source
        try:
            vias = parse_via_values(value)
        except SipParseError:
            return source
        return self._via_response_peer(vias[0], source) if vias else source

    def _local_tag(self, tx: Transaction) -> str:
        """To tag for every response of a server transaction: one per transaction."""
        tag = tx.local_tag
        if tag is None:
            tag = tx.local_tag = new_tag()
        return tag

    def _apply(self, tx: Transaction, effects: list[Effect]) -> int:
        """Queue the datagrams and events of ``effects``; how many datagrams it queued."""
        queued = 0
        for effect in effects:
            # Most frequent first; isinstance answers an exact type match at once.
            if isinstance(effect, bytes):
                self._outgoing.append(Outgoing(effect, tx.peer))
                queued += 1
            elif isinstance(effect, Response):
                self._events.append(ResponseReceived(tx.key, effect))
            elif isinstance(effect, Request):
                self._events.append(AckReceived(effect, tx.peer, tx.key))
            elif isinstance(effect, TimedOut):
                self._events.append(TransactionTimedOut(tx.key, effect.timer))
            else:
                self._events.append(TransportFailed(tx.key))
        return queued

    def _after(self, tx: Transaction, now: float) -> None:
        """Forget a terminated transaction or (re)schedule its next deadline."""
        if tx.state is _TERMINATED:
            self._transactions.pop(tx.key, None)
            tx.scheduled_at = None
            ack_key = tx.awaiting_ack_key
            if ack_key is not None and self._awaiting_ack.get(ack_key) == tx.key:
                del self._awaiting_ack[ack_key]
            return
        # tx.next_deadline() without its None step: this runs after every message and timer.
        deadline: float | None = tx.earliest_at()
        if deadline == UNARMED:
            deadline = None
        if deadline != tx.scheduled_at:  # pushed again only when it moved
            tx.scheduled_at = deadline
            if deadline is not None:
                self._deadlines.push(deadline, tx.key, now)


# A deadline further than this from now waits in the bucket of its second, not in the heap.
_FAR_AFTER_S = 2.0


class _Deadlines:
    """The endpoint's transaction deadlines: a heap for the next seconds, buckets beyond.

    An entry is (deadline, tie-breaker, transaction key); it is live while the transaction
    exists and its ``scheduled_at`` equals the deadline, and the rest are dropped lazily.

    Why two tiers: every transaction stays 32 s (64*T1) after its call to absorb
    retransmissions, so at 900 calls/s ~90,000 deadlines are queued, nearly all of them tens
    of seconds away, and in one heap every push and pop walked ~17 levels of tuples spread over
    memory. A deadline more than ``_FAR_AFTER_S`` away is appended to the unsorted bucket of
    its second instead, and a bucket is taken up only when nothing earlier is left; a far entry
    that went stale meanwhile is dropped without being sorted. A bucket taken up becomes the
    *run*: its live entries sorted (appended nearly in order, so about one comparison an entry)
    and taken from the front — never pushed into nor popped out of the heap, whose pops sift
    through every level, each a tuple and a float out of the CPU's caches once the kept state
    is full (``pop_due`` with the ``earliest`` it calls was ~5 % of the event loop 40 s into a
    step at 900 calls/s, ~40 % of that sifting; bench/deadlines.py). The heap keeps the near
    deadlines: retransmission timers, mostly stale by the time they come up. ``earliest`` is
    exactly what a single heap would say: a bucket's entries are no earlier than its second,
    and a bucket is taken up before the earliest entry of the heap and the run reaches that
    second — when the run is used up, as its entries are all earlier than that second.
    """

    def __init__(self, transactions: dict[TxKey, Transaction]) -> None:
        self._transactions = transactions
        self._heap: list[tuple[float, int, TxKey]] = []
        self._run: deque[tuple[float, int, TxKey]] = deque()  # a taken-up bucket, sorted
        self._buckets: dict[int, list[tuple[float, int, TxKey]]] = {}
        self._bucket_seconds: list[int] = []  # a heap of the buckets' keys
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Entries held, stale ones included (for tests)."""
        buckets = sum(len(bucket) for bucket in self._buckets.values())
        return len(self._heap) + len(self._run) + buckets

    def push(self, deadline: float, key: TxKey, now: float) -> None:
        entry = (deadline, next(self._seq), key)
        if deadline - now <= _FAR_AFTER_S:
            heapq.heappush(self._heap, entry)
            return
        second = math.floor(deadline)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [entry]
            heapq.heappush(self._bucket_seconds, second)
        else:
            bucket.append(entry)

    def earliest(self) -> float | None:
        """The earliest live deadline (then the heap's top or the run's head), or None."""
        heap = self._heap
        run = self._run
        seconds = self._bucket_seconds
        while True:
            while heap and not self._live(heap[0]):
                heapq.heappop(heap)
            while run and not self._live(run[0]):
                run.popleft()
            if heap and (not run or heap[0] < run[0]):
                first: float | None = heap[0][0]
            elif run:
                first = run[0][0]
            else:
                first = None
            if seconds and (first is None or first >= seconds[0]):
                self._take_up(self._buckets.pop(heapq.heappop(seconds)))
                continue
            return first

    def pop_due(self, now: float) -> TxKey | None:
        """Remove and return the transaction key of the earliest live deadline <= ``now``."""
        at = self.earliest()
        if at is None or at > now:
            return None
        heap = self._heap
        run = self._run
        # The smaller entry of the two (deadline, then the order pushed): one heap's order.
        if run and (not heap or run[0] < heap[0]):
            return run.popleft()[2]
        return heapq.heappop(heap)[2]

    def _take_up(self, bucket: list[tuple[float, int, TxKey]]) -> None:
        live = [entry for entry in bucket if self._live(entry)]
        run = self._run  # extended in place: ``earliest`` holds it
        if run:  # not reached (the run is used up first); kept all the same
            live.extend(run)
            run.clear()
        live.sort()
        run.extend(live)

    def _live(self, entry: tuple[float, int, TxKey]) -> bool:
        tx = self._transactions.get(entry[2])
        return tx is not None and tx.scheduled_at == entry[0]


def _stamp_received(request: Request, peer: Peer) -> None:
    """Record where the request really came from in its top Via (RFC 3261 §18.2.1, RFC 3581 §4).

    ``received`` is added when the sent-by host is not the source address, and
    always with ``rport``, whose value becomes the source port; responses copy
    this Via, so the sender sees its public address.
    """
    via = request.top_via
    rport = via.rport_requested
    if not rport and via.host == peer.host:
        return
    params = {k: v for k, v in via.params.items() if k.lower() not in ("received", "rport")}
    params["received"] = peer.host
    if rport:
        params["rport"] = str(peer.port)
    stamped = Via(
        transport=via.transport, host=via.host, port=via.port, params=params, protocol=via.protocol
    )
    request.replace_top_via(stamped)  # the stamped Via stays parsed for the response peer
