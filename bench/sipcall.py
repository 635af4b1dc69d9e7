"""The SIP-layer work of one B2BUA call, in one process, without sockets.

One measured call is what maskline's SIP layer does for one AXB call of ``bench/cps.py``:
SIPp's caller (``sipp_scenarios/bench_uac.xml``) sends INVITE, ACK and BYE; SIPp's callee
(``bench_uas.xml``) answers 180, 200 and the 200 to BYE. Their bytes are rendered here as SIPp
renders them and fed to a real ``sip.endpoint.Endpoint`` (parse, transaction matching, UAS
checks, 100 Trying, retransmission state, timers); a stand-in for ``engine.b2bua`` reads the
fields the engine reads on each message and builds what it builds (the outbound INVITE, the
relayed 180 and 200, the ACK, the BYE on the other leg, the dialogs, session timer
negotiation), and the endpoint serializes everything it sends. The fake clock then moves on so
every transaction of the call ends, as its timers would end it in the server.

Not counted: SDP work (media/, fixed bodies here), routing, call records, the event loop.
The harness's own work (rendering SIPp's messages from what maskline sent) is timed apart on
the same bytes and subtracted; both figures are printed.

Reference, same invocation: the 13 datagrams of one call each split into lines and joined
again (``bytes.split`` + ``bytes.join``), the floor of any parser that looks at every line.

Usage::

    .venv/bin/python bench/sipcall.py                      # best of 7 rounds of 2000 calls
    .venv/bin/python bench/sipcall.py --calls 5000 --repeats 9
    .venv/bin/python bench/sipcall.py --profile            # + cProfile top 20 and cost by file
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run from a checkout without installing: make the repository root importable.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from sip.builders import make_response, new_call_id, new_tag  # noqa: E402
from sip.dialog import Dialog  # noqa: E402
from sip.endpoint import Endpoint  # noqa: E402
from sip.events import AckReceived, RequestReceived, ResponseReceived  # noqa: E402
from sip.headers import HeaderList, parse_name_addr  # noqa: E402
from sip.message import Request, Response  # noqa: E402
from sip.parser import parse_message  # noqa: E402
from sip.reliable import requires_100rel  # noqa: E402
from sip.session_timer import (  # noqa: E402
    OPTION_TAG,
    Refresher,
    SessionExpires,
    format_session_expires,
    negotiate_as_uac,
    negotiate_as_uas,
)
from sip.transport import Peer  # noqa: E402
from sip.uri import SipUri, TelUri  # noqa: E402

ENGINE = ("127.0.0.1", 5060)  # maskline
CALLER = ("127.0.0.1", 5061)  # SIPp uac
CALLEE = ("127.0.0.1", 5062)  # SIPp uas
SIPP_PID = 31337
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"  # engine.b2bua.ALLOW
SDP = "application/sdp"

# The SDP of the two scenarios, rendered for 127.0.0.1 (media/ is not measured: the B2BUA
# rewrites SDP, here the same bytes pass).
OFFER = (
    b"v=0\r\no=caller 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\na=sendrecv\r\n"
)
ANSWER = (
    b"v=0\r\no=callee 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


# ----------------------------------------------------------------- SIPp's side (harness)
def _crlf(text: str, body: bytes = b"") -> bytes:
    return text.replace("\n", "\r\n").encode() + body


def caller_invite(n: int) -> bytes:
    """bench_uac.xml's INVITE for call ``n`` (caller A = field0, dialled X = field1)."""
    a, x = f"1390000{n % 10000:04d}", f"1380000{n % 10:04d}"
    local = f"{CALLER[0]}:{CALLER[1]}"
    return _crlf(
        f"INVITE sip:{x}@{ENGINE[0]}:{ENGINE[1]} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-{SIPP_PID}-{n}-0;rport\n"
        "Max-Forwards: 70\n"
        f"From: <sip:{a}@{local}>;tag={SIPP_PID}SIPpTag00{n}\n"
        f"To: <sip:{x}@{ENGINE[0]}:{ENGINE[1]}>\n"
        f"Call-ID: {n}-{SIPP_PID}@{CALLER[0]}\n"
        "CSeq: 1 INVITE\n"
        f"Contact: <sip:{a}@{local};transport=udp>\n"
        "User-Agent: maskline-bench-uac\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(OFFER)}\n\n",
        OFFER,
    )


def _in_dialog(method: str, seq: int, n: int, invite: bytes, answer: bytes) -> bytes:
    """bench_uac.xml's ACK/BYE: to the Contact of maskline's 200, with its To tag."""
    contact = _header(answer, b"Contact: ")
    # SIPp's regexp "sips?:[^>]+" (the engine's Contact has no <> around its URI).
    uri = contact[contact.index(b"sip:") :].partition(b">")[0].decode()
    to_tag = _header(answer, b"To: ").rpartition(b";tag=")[2].decode()
    head = invite[: invite.index(b"\r\nContact: ")].decode().split("\r\n")
    return _crlf(
        f"{method} {uri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {CALLER[0]}:{CALLER[1]};branch=z9hG4bK-{SIPP_PID}-{n}-{seq}"
        ";rport\n"
        f"{head[2]}\n{head[3]}\n{head[4]};tag={to_tag}\n{head[5]}\n"
        f"CSeq: {1 if method == 'ACK' else 2} {method}\n"
        "Content-Length: 0\n\n"
    )


def _header(data: bytes, prefix: bytes) -> bytes:
    start = data.index(b"\r\n" + prefix) + 2
    return data[start + len(prefix) : data.index(b"\r\n", start)]


def callee_response(request: bytes, status: str, to_tag: str | None, body: bytes) -> bytes:
    """bench_uas.xml's answers: ``[last_Via:]`` … ``[last_CSeq:]`` of ``request``, our To tag."""
    copied = []
    for line in request[: request.index(b"\r\n\r\n")].split(b"\r\n")[1:]:
        if line.startswith((b"Via:", b"From:", b"Call-ID:", b"CSeq:")):
            copied.append(line)
        elif line.startswith(b"To:"):
            copied.append(line + f";tag={to_tag}".encode() if to_tag else line)
    contact = f"Contact: <sip:callee@{CALLEE[0]}:{CALLEE[1]};transport=udp>\r\n".encode()
    typed = b"Content-Type: application/sdp\r\n" if body else b""
    return (
        b"SIP/2.0 "
        + status.encode()
        + b"\r\n"
        + b"\r\n".join(copied)
        + b"\r\n"
        + (contact if to_tag else b"")
        + typed
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


# -------------------------------------------------------------- maskline's side (measured)
@dataclass(slots=True)
class _Leg:
    request: Request | None = None
    tx_key: tuple[str, ...] | None = None
    local_tag: str = ""
    dialog: Dialog | None = None
    peer: Peer | None = None


def _uri_user(uri: object) -> str | None:
    if isinstance(uri, SipUri):
        return uri.user
    if isinstance(uri, TelUri):
        return uri.number
    return None


def _caller_user(request: Request) -> str | None:
    # engine.b2bua._caller_number: P-Asserted-Identity first, else From.
    pai = request.headers.get("P-Asserted-Identity")
    if pai is not None:
        return _uri_user(parse_name_addr(pai.split(",")[0]).uri)
    return _uri_user(request.from_.uri)


def _allows_update(message: Request | Response) -> bool:
    return any(method.upper() == "UPDATE" for method in message.headers.get_list("Allow"))


class B2buaStandIn:
    """What engine.b2bua does at the SIP level for one routed call (see the module doc)."""

    def __init__(self) -> None:
        self.endpoint = Endpoint(local_host=ENGINE[0], local_port=ENGINE[1])
        self.now = 0.0
        self.sent: list[bytes] = []
        self.inbound = _Leg()
        self.outbound = _Leg()
        self.local_contact = SipUri(user="13800000001", host=ENGINE[0], port=ENGINE[1])

    def receive(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram in: the endpoint, then the call logic, then what goes out."""
        endpoint = self.endpoint
        endpoint.receive_datagram(data, addr, self.now)
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, RequestReceived):
                if event.in_dialog:
                    self._on_in_dialog(event)
                else:
                    self._on_invite(event)
            elif isinstance(event, ResponseReceived):
                self._on_response(event)
            elif not isinstance(event, AckReceived):
                raise AssertionError(f"unexpected {event!r}")
        self.sent.extend(out.data for out in endpoint.datagrams_to_send())

    def end(self) -> None:
        """Let every timer of the call fire (the transactions end, as in the server)."""
        self.now += 300.0
        self.endpoint.handle_timer(self.now)
        self.now += 300.0
        self.endpoint.handle_timer(self.now)
        if self.endpoint.transaction_count:
            raise AssertionError("transactions left after the call")

    # -- as engine.b2bua.on_invite / _connect / _send_outbound ------------------------------
    def _on_invite(self, event: RequestReceived) -> None:
        request = event.request
        _uri_user(request.uri)  # X
        _caller_user(request)  # A
        negotiated = negotiate_as_uas(request.headers, min_se_s=90, session_expires_s=1800)
        requires_100rel(request)
        _allows_update(request)
        inbound = self.inbound = _Leg(
            request=request, tx_key=event.tx_key, local_tag=new_tag(), peer=event.peer
        )
        del negotiated
        x_user, callee = "13800000001", "13900000002"
        local = f"{ENGINE[0]}:{ENGINE[1]}"
        headers = HeaderList()
        max_forwards = request.max_forwards
        headers.add("Max-Forwards", str(70 if max_forwards is None else min(70, max_forwards - 1)))
        headers.add("From", f"<sip:{x_user}@{local}>;tag={new_tag()}")
        headers.add("To", f"<sip:{callee}@{CALLEE[0]}>")
        headers.add("Call-ID", new_call_id(ENGINE[0]))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<sip:{x_user}@{local}>")
        headers.add("P-Asserted-Identity", f"<sip:{x_user}@{local}>")
        headers.add("Allow", ALLOW)
        headers.add("Supported", "timer, 100rel")
        headers.add("Session-Expires", "1800")
        headers.add("Min-SE", "90")
        headers.add("Content-Type", SDP)
        outbound_request = Request(
            "INVITE", f"sip:{callee}@{CALLEE[0]}:{CALLEE[1]}", headers, request.body
        )
        peer = Peer("UDP", CALLEE[0], CALLEE[1])
        self.outbound = _Leg(
            request=outbound_request,
            local_tag=outbound_request.from_tag or "",
            peer=peer,
        )
        _ = outbound_request.call_id
        self.outbound.tx_key = self.endpoint.send_request(outbound_request, peer, self.now)
        assert inbound.local_tag

    # -- as engine.b2bua.on_response / _on_provisional / _on_answer ----------------------
    def _on_response(self, event: ResponseReceived) -> None:
        response = event.response
        outbound = self.outbound
        if event.tx_key != outbound.tx_key:
            return  # the 200 to our BYE
        status = response.status_code
        assert outbound.request is not None
        if status < 200:
            if response.to_tag and outbound.dialog is None:
                outbound.dialog = Dialog.create_uac(outbound.request, response)
            requires_100rel(response)
            self._answer_inbound(status, b"")
            return
        dialog = outbound.dialog
        if dialog is None or dialog.remote_tag != (response.to_tag or ""):
            dialog = outbound.dialog = Dialog.create_uac(outbound.request, response)
        else:
            dialog.receive_response("INVITE", response)
        ack = dialog.create_ack(outbound.request.cseq.seq)
        assert outbound.peer is not None
        self.endpoint.send_ack(ack, _target_peer(dialog, outbound.peer))
        negotiate_as_uac(response.headers)
        _allows_update(response)
        # engine.b2bua._answer_caller with _session_timer_response_headers.
        expires = format_session_expires(SessionExpires(1800, Refresher.UAC))
        extra = [("Supported", OPTION_TAG), ("Session-Expires", expires)]
        extra.append(("Require", OPTION_TAG))
        self._answer_inbound(200, response.body, extra)
        inbound = self.inbound
        assert inbound.request is not None
        inbound.dialog = Dialog.create_uas(inbound.request, inbound.local_tag, self.local_contact)
        inbound.dialog.confirm()

    def _answer_inbound(
        self, status: int, body: bytes, extra: list[tuple[str, str]] | None = None
    ) -> None:
        inbound = self.inbound
        assert inbound.request is not None and inbound.tx_key is not None
        headers = list(extra or [])
        headers.append(("Contact", str(self.local_contact)))
        headers.append(("Allow", ALLOW))
        response = make_response(
            inbound.request,
            status,
            to_tag=inbound.local_tag,
            extra=headers,
            body=body,
            content_type=SDP if body else None,
        )
        self.endpoint.send_response(inbound.tx_key, response, self.now)

    # -- as engine.b2bua.on_in_dialog (BYE) and _send_bye ----------------------------------
    def _on_in_dialog(self, event: RequestReceived) -> None:
        request = event.request
        _ = (request.call_id, request.to_tag)
        dialog = self.inbound.dialog
        assert dialog is not None and request.method == "BYE"
        dialog.receive_request(request)
        response = make_response(request, 200, to_tag=new_tag())
        self.endpoint.send_response(event.tx_key, response, self.now)
        other = self.outbound.dialog
        assert other is not None and self.outbound.peer is not None
        bye = other.create_request("BYE")
        self.endpoint.send_request(bye, _target_peer(other, self.outbound.peer), self.now)


def _target_peer(dialog: Dialog, fallback: Peer) -> Peer:
    target = dialog.route_set[0].uri if dialog.route_set else dialog.remote_target
    if isinstance(target, SipUri) and target.host[:1].isdigit():
        return Peer(fallback.transport, target.host, target.port or 5060)
    return fallback


# ------------------------------------------------------------------------------- one call
@dataclass(slots=True)
class CallTrace:
    """The datagrams of one call: received by maskline, and sent by it (in order)."""

    received: list[bytes]
    sent: list[bytes]


def run_call(b2bua: B2buaStandIn, n: int, *, end: bool = True) -> CallTrace:
    """One whole call through ``b2bua``; returns its datagrams (for checks and the harness).

    ``end=False`` leaves the call's transactions to absorb retransmissions, as they do in the
    server for up to 64*T1 after the call."""
    received: list[bytes] = []
    sent = b2bua.sent
    sent.clear()

    def deliver(data: bytes, addr: tuple[str, int]) -> None:
        received.append(data)
        b2bua.receive(data, addr)

    deliver(caller_invite(n), CALLER)  # → 100 Trying, INVITE to the callee
    outbound_invite = sent[1]
    deliver(callee_response(outbound_invite, "180 Ringing", f"{SIPP_PID}SIPpTag01{n}", b""), CALLEE)
    deliver(callee_response(outbound_invite, "200 OK", f"{SIPP_PID}SIPpTag01{n}", ANSWER), CALLEE)
    # sent: 100, INVITE, 180, ACK, 200 (the ACK to the callee goes before our 200 upstream)
    answer = sent[4]
    deliver(_in_dialog("ACK", 1, n, received[0], answer), CALLER)
    deliver(_in_dialog("BYE", 2, n, received[0], answer), CALLER)
    deliver(callee_response(sent[6], "200 OK", None, b""), CALLEE)
    if end:
        b2bua.end()
    return CallTrace(received=received, sent=list(sent))


def harness_only(trace: CallTrace, n: int) -> None:
    """The harness's share of ``run_call``: rendering SIPp's six messages from the same bytes."""
    invite = caller_invite(n)
    callee_response(trace.sent[1], "180 Ringing", f"{SIPP_PID}SIPpTag01{n}", b"")
    callee_response(trace.sent[1], "200 OK", f"{SIPP_PID}SIPpTag01{n}", ANSWER)
    _in_dialog("ACK", 1, n, invite, trace.sent[4])
    _in_dialog("BYE", 2, n, invite, trace.sent[4])
    callee_response(trace.sent[6], "200 OK", None, b"")


def check_call(trace: CallTrace) -> None:
    """The call went as the scenarios expect: 6 datagrams in, 7 out, each the right message."""
    starts = [data.split(b"\r\n", 1)[0] for data in trace.sent]
    expected = [b"SIP/2.0 100", b"INVITE ", b"SIP/2.0 180", b"ACK ", b"SIP/2.0 200", b"SIP/2.0 200"]
    expected.append(b"BYE ")
    if len(starts) != 7 or not all(s.startswith(e) for s, e in zip(starts, expected, strict=True)):
        raise AssertionError(f"unexpected call flow: {starts}")
    if len(trace.received) != 6:
        raise AssertionError("the call did not receive 6 datagrams")
    for data in trace.sent:
        parse_message(data)  # everything we send parses


def split_reference(datagrams: list[bytes]) -> None:
    """The reference: every datagram split into lines and joined again."""
    for data in datagrams:
        b"\r\n".join(data.split(b"\r\n"))


# --------------------------------------------------------------------------------- timing
def _timed(fn: Callable[[int], object], count: int, first: int) -> float:
    """µs of process CPU per call over ``count`` calls, GC paused.

    CPU time, not wall time: on a shared machine another process taking the core
    stretches the wall clock but not our CPU time (the issue's figure is CPU per call).
    """
    gc.collect()
    gc.disable()
    try:
        start = time.process_time_ns()
        for n in range(first, first + count):
            fn(n)
        return (time.process_time_ns() - start) / count / 1000
    finally:
        gc.enable()


def measure(calls: int, repeats: int) -> dict[str, list[float]]:
    """Rounds of ``calls`` calls, interleaving the call, the harness and the reference."""
    b2bua = B2buaStandIn()
    trace = run_call(b2bua, 0)
    check_call(trace)
    datagrams = trace.received + trace.sent
    figures: dict[str, list[float]] = defaultdict(list)
    counter = 1
    for _ in range(max(100, calls // 5)):  # warm-up
        run_call(b2bua, counter)
        counter += 1
    for _ in range(repeats):
        figures["call"].append(_timed(lambda n: run_call(b2bua, n), calls, counter))
        counter += calls
        figures["harness"].append(_timed(lambda n: harness_only(trace, n), calls, counter))
        figures["reference"].append(_timed(lambda n: split_reference(datagrams), calls, 0))
    return figures


def objects_per_message(count: int = 2000) -> dict[str, tuple[float, float]]:
    """GC-tracked objects a parsed message keeps alive, before and after the engine's reads.

    Two figures each: right after parsing (what the young generation sees), and after a
    collection (the collector untracks tuples and dicts holding only strings and numbers;
    what is left is what a long-lived message adds to every full collection).
    """
    b2bua = B2buaStandIn()
    trace = run_call(b2bua, 0)
    samples = {"INVITE in": trace.received[0], "200 OK in": trace.received[2]}
    samples["BYE in"] = trace.received[4]
    result: dict[str, tuple[float, float]] = {}
    for name, data in samples.items():
        for read in (False, True):
            gc.collect()
            gc.disable()
            try:
                before = len(gc.get_objects())
                kept = [parse_message(data) for _ in range(count)]
                if read:
                    for message in kept:
                        _ = (message.top_via.branch, message.to_tag, message.from_tag)
                        _ = (message.call_id, message.cseq.seq, message.vias, message.contacts)
                        if isinstance(message, Request):
                            message.validate()
                created = len(gc.get_objects())
                gc.collect()
                collected = len(gc.get_objects())
            finally:
                gc.enable()
            label = f"{name}{' + fields read' if read else ''}"
            # -1: the list itself
            result[label] = ((created - before - 1) / count, (collected - before - 1) / count)
            del kept
    return result


# Files by layer, for the profile summary.
MESSAGE_LAYER = frozenset(
    f"sip/{name}.py"
    for name in ("headers", "parser", "message", "uri", "grammar", "builders", "dialog")
)


def _file_key(filename: str) -> str | None:
    """The repository-relative path of a profiled function's file, None outside the repo."""
    path = Path(filename)
    return str(path.relative_to(_ROOT)) if path.is_relative_to(_ROOT) else None


def profile(calls: int, top: int = 20) -> dict[str, float]:
    """cProfile of ``calls`` calls: the top functions by own time, then own time per file
    with the time of builtins and standard-library functions charged to the repository
    file that called them (``str.split`` called by the parser counts as the parser's).
    Returns each file's share of the total."""
    b2bua = B2buaStandIn()
    for n in range(200):
        run_call(b2bua, n)
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(200, 200 + calls):
        run_call(b2bua, n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    by_file: dict[str, float] = defaultdict(float)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, dict[object, tuple[float, ...]]]]
    raw = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for (filename, _, _), (_, _, tottime, _, callers) in raw.items():
        total += tottime
        key = _file_key(filename)
        if key is not None:
            by_file[key] += tottime
            continue
        # A builtin or library function: split its own time over its callers' files.
        for caller, caller_stats in callers.items():
            caller_key = _file_key(caller[0]) if isinstance(caller, tuple) else None
            by_file[caller_key or "(other)"] += caller_stats[2]
    shares = {key: seconds / total for key, seconds in by_file.items()}
    print("own time by file, builtins and library calls charged to their caller (% of total):")
    for key, share in sorted(shares.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * share:5.1f} %  {key}")
    message_layer = sum(share for key, share in shares.items() if key in MESSAGE_LAYER)
    print(f"  message layer ({', '.join(sorted(MESSAGE_LAYER))}): {100 * message_layer:.1f} %")
    return shares


def objects_per_finished_call(count: int = 2000) -> tuple[float, float]:
    """GC-tracked objects the transactions of a finished call keep until their timers end them.

    ``count`` calls are run to their last message without letting the clock move, so their
    transactions live on as in the server (Completed, Confirmed, Accepted: up to 64*T1); a
    collection, then the clock moves on and every transaction ends. Returns the objects
    per transaction that went with them, and the transactions per call.
    """
    b2bua = B2buaStandIn()
    run_call(b2bua, 0)
    gc.collect()
    gc.disable()
    try:
        for n in range(1, count + 1):
            run_call(b2bua, n, end=False)
        transactions = b2bua.endpoint.transaction_count
        gc.collect()
        alive = len(gc.get_objects())
        b2bua.end()
        gc.collect()
        ended = len(gc.get_objects())
    finally:
        gc.enable()
    return (alive - ended) / transactions, transactions / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeats", type=int, default=7, help="rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile top 20 afterwards")
    args = parser.parse_args(argv)
    figures = measure(args.calls, args.repeats)
    best = {name: min(values) for name, values in figures.items()}
    median = {name: sorted(values)[len(values) // 2] for name, values in figures.items()}
    print(
        f"SIP layer of one B2BUA call (6 datagrams in, 7 out), {args.calls} calls x "
        f"{args.repeats} rounds, GC paused; µs of CPU per call, best / median:"
    )
    net_best = best["call"] - best["harness"]
    net_median = median["call"] - median["harness"]
    print(f"  call incl. harness   {best['call']:8.1f} / {median['call']:8.1f}")
    print(f"  harness (SIPp side)  {best['harness']:8.1f} / {median['harness']:8.1f}")
    print(f"  maskline SIP layer   {net_best:8.1f} / {net_median:8.1f}")
    print(
        f"  reference (split+join of the 13 datagrams) {best['reference']:6.1f} / "
        f"{median['reference']:6.1f}"
    )
    print(
        f"  SIP layer / reference: {net_best / best['reference']:.1f}x (best), "
        f"{net_median / median['reference']:.1f}x (median)"
    )
    print("GC-tracked objects kept alive per parsed message (as parsed / after a collection):")
    for label, (created, collected) in objects_per_message().items():
        print(f"  {label:28s} {created:6.1f} / {collected:6.1f}")
    per_transaction, per_call = objects_per_finished_call()
    print(
        f"GC-tracked objects per transaction of a finished call until its timers end it: "
        f"{per_transaction:.2f} ({per_call:.0f} transactions per call, after a collection)"
    )
    if args.profile:
        shares = profile(max(500, args.calls // 2))
        message_layer = sum(share for key, share in shares.items() if key in MESSAGE_LAYER)
        print(
            f"  ≈ {message_layer * net_best:.0f} µs of the {net_best:.0f} µs per call "
            "(share of the profile times the best unprofiled figure)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
