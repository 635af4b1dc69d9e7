"""Two sans-IO endpoints on one fake clock (EXAMPLES.md §1.7, after aioquic's client_and_server).

``EndpointPair`` moves what one endpoint queued into the other, or loses it,
and jumps the shared clock to the next deadline of either side.  No sockets,
no sleeps, no event loop: every test is a replayable function of its steps.

Builders make realistic requests *without* a Via: ``Endpoint.send_request``
adds the top Via (with a fresh branch and ``rport``), as it would on the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from sip.builders import new_call_id, new_tag
from sip.endpoint import Endpoint
from sip.events import Event, TxKey
from sip.headers import HeaderList
from sip.message import Request, Response
from sip.transaction import Transaction, TxState
from sip.transport import Outgoing, Peer

Side = Literal["uac", "uas"]

UAC_ADDR = ("192.0.2.10", 5062)
UAS_ADDR = ("192.0.2.20", 5060)
# The one TCP connection between the two sides, as the I/O layer would number it.
TCP_CONNECTION = 7

SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)


class EndpointPair:
    """A UAC endpoint and a UAS endpoint wired to each other through the test."""

    def __init__(
        self,
        uac: Endpoint | None = None,
        uas: Endpoint | None = None,
        *,
        transport: str = "UDP",
    ) -> None:
        self.uac = uac or Endpoint(local_host=UAC_ADDR[0], local_port=UAC_ADDR[1])
        self.uas = uas or Endpoint(local_host=UAS_ADDR[0], local_port=UAS_ADDR[1])
        self.transport = transport
        self.now_s = 0.0

    # -- addressing -------------------------------------------------------------------

    def endpoint(self, side: Side) -> Endpoint:
        return self.uac if side == "uac" else self.uas

    @staticmethod
    def other(side: Side) -> Side:
        return "uas" if side == "uac" else "uac"

    @staticmethod
    def addr(side: Side) -> tuple[str, int]:
        return UAC_ADDR if side == "uac" else UAS_ADDR

    @property
    def uas_peer(self) -> Peer:
        """Where the UAC sends requests (a new TCP connection for a reliable pair)."""
        return Peer(self.transport, *UAS_ADDR)

    @property
    def uac_peer(self) -> Peer:
        """Where the UAS would send a request of its own."""
        return Peer(self.transport, *UAC_ADDR)

    # -- moving bytes -----------------------------------------------------------------

    def deliver(self, from_side: Side) -> list[bytes]:
        """Hand everything ``from_side`` queued to the other side; return the bytes moved.

        Every datagram must be addressed to the other side: a response sent to
        a wrong port would be lost on a real network, so it fails the test here.
        """
        sender_addr = self.addr(from_side)
        receiver_side = self.other(from_side)
        receiver = self.endpoint(receiver_side)
        moved: list[bytes] = []
        for out in self.endpoint(from_side).datagrams_to_send():
            assert (out.peer.host, out.peer.port) == self.addr(receiver_side), out
            assert out.peer.transport == self.transport, out
            if out.close:
                continue
            moved.append(out.data)
            if out.peer.reliable:
                receiver.receive_stream_data(
                    out.data, connection=TCP_CONNECTION, addr=sender_addr, now=self.now_s
                )
            else:
                receiver.receive_datagram(out.data, sender_addr, self.now_s)
        return moved

    def drop(self, from_side: Side) -> list[bytes]:
        """Lose everything ``from_side`` queued; return the lost bytes for assertions."""
        return [out.data for out in self.endpoint(from_side).datagrams_to_send()]

    def queued(self, from_side: Side) -> list[Outgoing]:
        """Take what ``from_side`` queued without delivering it (to inspect peers)."""
        return self.endpoint(from_side).datagrams_to_send()

    # -- time -------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        deadlines = [t for t in (self.uac.next_timer(), self.uas.next_timer()) if t is not None]
        return min(deadlines) if deadlines else None

    def advance_to_next_timer(self) -> float | None:
        """Jump the clock to the earliest deadline of either side and fire both; None if idle."""
        deadline = self.next_timer()
        if deadline is None:
            return None
        assert deadline >= self.now_s, "a deadline in the past was never handled"
        self.now_s = deadline
        self.uac.handle_timer(self.now_s)
        self.uas.handle_timer(self.now_s)
        return deadline

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every deadline passed on the way, in order."""
        target = self.now_s + seconds
        while (deadline := self.next_timer()) is not None and deadline <= target:
            self.advance_to_next_timer()
        self.now_s = target

    def pump(self, trace: Trace, *, lose: Collection[Side] = ()) -> None:
        """Move (or lose) queued bytes both ways until both sides are quiet; record them."""
        while True:
            moved = False
            for side in ("uac", "uas"):
                sent = self.drop(side) if side in lose else self.deliver(side)
                trace.sent.extend(Sent(self.now_s, side, data, side not in lose) for data in sent)
                moved = moved or bool(sent)
            for side in ("uac", "uas"):
                for event in self.events(side):
                    trace.events.append(Seen(self.now_s, side, event))
                    if trace.on_event is not None:
                        trace.on_event(self, side, event)
                        moved = True
            if not moved:
                return

    def run(
        self,
        *,
        lose: Collection[Side] = (),
        until: float | None = None,
        on_event: Callable[[EndpointPair, Side, Event], None] | None = None,
    ) -> Trace:
        """Pump, then fire timers one deadline at a time (pumping after each) until idle.

        ``lose`` names the sides whose every datagram is lost; ``until`` stops
        before the first deadline after it; ``on_event`` plays the application.
        """
        trace = Trace(on_event=on_event)
        self.pump(trace, lose=lose)
        while (deadline := self.next_timer()) is not None:
            if until is not None and deadline > until:
                break
            self.advance_to_next_timer()
            self.pump(trace, lose=lose)
        return trace

    # -- events -----------------------------------------------------------------------

    def events(self, side: Side) -> list[Event]:
        """Drain the events of one side."""
        endpoint = self.endpoint(side)
        drained: list[Event] = []
        while (event := endpoint.next_event()) is not None:
            drained.append(event)
        return drained


@dataclass(frozen=True, slots=True)
class Sent:
    """Bytes one side put on the wire at ``at`` (``delivered`` False when lost)."""

    at: float
    side: Side
    data: bytes
    delivered: bool

    @property
    def start_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Seen:
    """An event one side emitted at ``at``."""

    at: float
    side: Side
    event: Event


@dataclass(slots=True)
class Trace:
    """What happened during ``EndpointPair.run``."""

    sent: list[Sent] = field(default_factory=list)
    events: list[Seen] = field(default_factory=list)
    on_event: Callable[[EndpointPair, Side, Event], None] | None = None

    def times(self, side: Side, start: str) -> list[float]:
        """When ``side`` sent a message whose start line begins with ``start``."""
        return [s.at for s in self.sent if s.side == side and s.start_line.startswith(start)]

    def datas(self, side: Side, start: str) -> list[bytes]:
        """The bytes of those messages."""
        return [s.data for s in self.sent if s.side == side and s.start_line.startswith(start)]

    def events_of(self, side: Side) -> list[tuple[float, Event]]:
        return [(s.at, s.event) for s in self.events if s.side == side]


def transaction(endpoint: Endpoint, tx_key: TxKey) -> Transaction | None:
    """The live transaction behind ``tx_key`` (white-box: states have no public accessor)."""
    return endpoint._transactions.get(tx_key)


def tx_state(endpoint: Endpoint, tx_key: TxKey) -> TxState:
    """State of a transaction; TERMINATED once the endpoint has forgotten it."""
    tx = transaction(endpoint, tx_key)
    return TxState.TERMINATED if tx is None else tx.state


# -- request builders (no Via: Endpoint.send_request adds it) -----------------------------


def _headers(fields: Iterable[tuple[str, str]]) -> HeaderList:
    headers = HeaderList()
    for name, value in fields:
        headers.add(name, value)
    return headers


def make_invite(
    *,
    caller: str = "+8613800138000",
    callee: str = "+8613900139000",
    call_id: str | None = None,
    from_tag: str | None = None,
    cseq: int = 1,
    sdp: bytes = SDP_OFFER,
) -> Request:
    """An INVITE with an SDP offer, as a trunk would send it."""
    uac_host, uac_port = UAC_ADDR
    uas_host, uas_port = UAS_ADDR
    headers = _headers(
        [
            ("Max-Forwards", "70"),
            ("From", f"<sip:{caller}@{uac_host};user=phone>;tag={from_tag or new_tag()}"),
            ("To", f"<sip:{callee}@{uas_host};user=phone>"),
            ("Call-ID", call_id or new_call_id(uac_host)),
            ("CSeq", f"{cseq} INVITE"),
            ("Contact", f"<sip:{caller}@{uac_host}:{uac_port}>"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),
            ("Supported", "timer"),
            ("User-Agent", "maskline-tests"),
            ("Content-Type", "application/sdp"),
        ]
    )
    return Request("INVITE", f"sip:{callee}@{uas_host}:{uas_port};user=phone", headers, sdp)


def make_options(*, call_id: str | None = None, cseq: int = 1) -> Request:
    """An out-of-dialog OPTIONS ping."""
    uac_host, _ = UAC_ADDR
    uas_host, uas_port = UAS_ADDR
    headers = _headers(
        [
            ("Max-Forwards", "70"),
            ("From", f"<sip:ping@{uac_host}>;tag={new_tag()}"),
            ("To", f"<sip:{uas_host}:{uas_port}>"),
            ("Call-ID", call_id or new_call_id(uac_host)),
            ("CSeq", f"{cseq} OPTIONS"),
            ("Accept", "application/sdp"),
        ]
    )
    return Request("OPTIONS", f"sip:{uas_host}:{uas_port}", headers)


def make_bye(invite: Request, response: Response) -> Request:
    """BYE for the dialog the 2xx ``response`` to ``invite`` established (UAC side)."""
    headers = _headers(
        [
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", response.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq + 1} BYE"),
        ]
    )
    contacts = response.contacts
    target = contacts[0].uri if contacts else invite.uri
    return Request("BYE", target, headers)


def make_cancel_without_invite(invite: Request) -> Request:
    """A CANCEL naming ``invite`` that was never sent (for the 481 case)."""
    headers = _headers(
        [
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
        ]
    )
    return Request("CANCEL", invite.uri, headers)


def make_2xx_ack(invite: Request, response: Response) -> Request:
    """The UAC core's ACK for a 2xx (§13.2.2.4): a new transaction-less request, no Via yet."""
    headers = _headers(
        [
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", response.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} ACK"),
        ]
    )
    contacts = response.contacts
    target = contacts[0].uri if contacts else invite.uri
    return Request("ACK", target, headers)
