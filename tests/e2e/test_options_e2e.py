"""End-to-end: the real ``maskline serve`` answers SIPp and raw sockets over UDP and TCP.

Issue 2, acceptance 4: SIPp OPTIONS over UDP and TCP get 200; 1,000 malformed datagrams later
OPTIONS is still answered and the process is alive. Plus the UAS error responses of
RFC 3261 §8.2 (420, 501, 505, 416, 483) and TCP framing (split writes, pipelining, garbage).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_support import (
    LOOPBACK,
    MasklineServer,
    OutgoingRequest,
    SipReply,
    TcpClient,
    UdpClient,
    ack_for,
    assert_echoes,
    build_request,
    header_param,
    new_call_id,
    parse_reply,
    run_sipp,
)

pytestmark = pytest.mark.e2e

FLOOD_SIZE = 1000
FLOOD_SEED = 4475  # fixed: a failure names the datagram and reproduces


@pytest.fixture
def udp(maskline: MasklineServer) -> Iterator[UdpClient]:
    client = UdpClient(maskline.sip)
    yield client
    client.close()


def assert_no_traceback(server: MasklineServer) -> None:
    text = server.stderr_path.read_text("utf-8", "replace")
    assert "Traceback" not in text, f"an exception escaped; stderr tail:\n{server.stderr_tail()}"


# ------------------------------------------------------------------------ (a), (b) SIPp
@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
def test_sipp_options_gets_200(
    sipp_binary: str, maskline: MasklineServer, tmp_path: Path, transport: str
) -> None:
    run = run_sipp(sipp_binary, "uac_options.xml", transport, maskline.sip, tmp_path / "sipp")
    assert run.returncode == 0, f"SIPp exit {run.returncode}\n{run.output[-4000:]}"
    assert run.successful_calls == 1, f"SIPp stats {run.stats}\n{run.output[-4000:]}"
    assert run.failed_calls == 0, run.stats
    maskline.assert_alive()


# ---------------------------------------------------------------------------- (c) flood
@dataclass
class FloodItem:
    kind: str
    data: bytes
    call_id: str | None = None
    # Status codes acceptable as the answer; None: no expectation; empty: must not be answered.
    expect: frozenset[int] | None = None


@dataclass
class FloodReplies:
    by_call_id: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reply: SipReply) -> None:
        call_id = reply.get("call-id")
        if call_id is not None:
            self.by_call_id.setdefault(call_id, []).append(reply.status)


def _options(local: tuple[str, int], **kwargs: object) -> OutgoingRequest:
    return build_request("OPTIONS", local, **kwargs)  # type: ignore[arg-type]


def _invite_with_sdp(local: tuple[str, int]) -> bytes:
    sdp = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
    return build_request(
        "INVITE",
        local,
        ruri="sip:13800138000@127.0.0.1",
        extra_headers=("Content-Type: application/sdp", "Supported: timer"),
        body=sdp,
    ).data


def _bad_header_request(
    local: tuple[str, int], rng: random.Random
) -> tuple[str, bytes, str, frozenset[int]]:
    """A request whose Via/From/To/Call-ID/CSeq parse but something else is wrong: 4xx/5xx."""
    call_id = new_call_id()
    choice = rng.randrange(8)
    body = b"v=0\r\n"
    if choice == 0:
        req = _options(local, call_id=call_id, body=body, content_length="9999")
        return "content-length larger than body", req.data, call_id, frozenset({400})
    if choice == 1:
        req = _options(local, call_id=call_id, body=body, content_length="-5")
        return "negative content-length", req.data, call_id, frozenset({400})
    if choice == 2:
        req = _options(local, call_id=call_id, body=body, content_length="five")
        return "non-numeric content-length", req.data, call_id, frozenset({400})
    if choice == 3:
        req = _options(
            local,
            call_id=call_id,
            body=body + b"a=x\r\n",
            extra_headers=("Content-Length: 5",),
        )
        return "duplicated content-length", req.data, call_id, frozenset({400})
    if choice == 4:
        req = _options(local, call_id=call_id, version="SIP/7.0")
        return "SIP/7.0", req.data, call_id, frozenset({505})
    if choice == 5:
        req = _options(local, call_id=call_id, cseq_method="INVITE")
        return "CSeq method differs from request method", req.data, call_id, frozenset({400})
    if choice == 6:
        req = _options(local, call_id=call_id, extra_headers=("this line has no colon",))
        return "header line without colon", req.data, call_id, frozenset({400})
    req = _options(local, call_id=call_id, extra_headers=("Expires: 1\x00\x01\x02",))
    # NUL in a header value: a UAS may answer 400 or accept the value; it must answer.
    return "control bytes in a header value", req.data, call_id, frozenset(range(200, 700))


def _bad_response(rng: random.Random) -> tuple[bytes, str]:
    call_id = new_call_id()
    status_line = rng.choice(
        [
            "SIP/2.0 9999 Way Too Big",
            "SIP/2.0 abc OK",
            "SIP/2.0 20 OK",
            "SIP/2.0 -200 OK",
            "SIP/2.0 2OO OK",
            "SIP/2.0  OK",
            "SIP/2.0 099 Too Small",
            "SIP/3.0 200 OK",
        ]
    )
    data = (
        f"{status_line}\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{secrets.token_hex(6)}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=1\r\n"
        f"To: <sip:b@127.0.0.1>;tag=2\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
    return data, call_id


def build_flood(local: tuple[str, int], rng: random.Random) -> list[FloodItem]:
    items: list[FloodItem] = []
    for _ in range(300):  # truncated real messages at random cut points
        whole = rng.choice([_options(local).data, _invite_with_sdp(local)])
        cut = rng.randrange(1, len(whole) - 4)
        items.append(FloodItem("truncated", whole[:cut]))
    for _ in range(250):  # garbage
        size = rng.randrange(1, 1500)
        data = (
            rng.randbytes(size)
            if rng.random() < 0.6
            else bytes(rng.choice(b"ABCDEFGHIJ: ;<>@\r\n\t/=,0123456789") for _ in range(size))
        )
        items.append(FloodItem("garbage", data))
    for i in range(20):  # oversized, just under the 65,507-byte UDP payload limit
        size = rng.randrange(60_000, 65_000)
        if i % 2:
            items.append(FloodItem("oversized garbage", rng.randbytes(size)))
        else:
            pad = "X-Pad: " + "a" * (size - 600)
            items.append(FloodItem("oversized request", _options(local, extra_headers=(pad,)).data))
    for _ in range(150):  # well-formed but bad requests: these must be answered
        kind, data, call_id, expect = _bad_header_request(local, rng)
        items.append(FloodItem(kind, data, call_id, expect))
    for _ in range(100):  # responses with garbage status lines: dropped, never answered
        data, call_id = _bad_response(rng)
        items.append(FloodItem("bad response", data, call_id, frozenset()))
    while len(items) < FLOOD_SIZE:  # other broken requests (missing headers, bad start lines)
        plain = _options(local).data.decode()
        variant = rng.randrange(5)
        if variant == 0:
            text = plain.replace("Call-ID:", "X-No-Call-ID:")
        elif variant == 1:
            text = plain.replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS")
        elif variant == 2:
            text = plain.replace("OPTIONS sip:", "OPT IONS sip:", 1)
        elif variant == 3:
            text = plain.replace(" SIP/2.0\r\n", "\r\n", 1)
        else:
            text = plain.replace("Via: SIP/2.0/UDP", "Via: SIP/2.0/UDP\r\n\r\n", 1)
        items.append(FloodItem("broken request", text.encode()))
    rng.shuffle(items)
    return items


def barrier(udp: UdpClient, replies: FloodReplies, timeout: float = 5.0) -> None:
    """Await the 200 to a fresh OPTIONS; every datagram sent before it has been handled."""
    probe = _options(udp.local)
    udp.send(probe.data)
    while True:
        data = udp.receive(timeout)
        assert data is not None, f"no answer to a barrier OPTIONS within {timeout} s"
        try:
            reply = parse_reply(data)
        except AssertionError:
            continue
        if (reply.get("cseq") or "").split()[-1:] == ["INVITE"] and reply.status >= 300:
            udp.send(ack_for(reply))  # stop the server's retransmissions of a final response
        if reply.get("call-id") == probe.call_id:
            assert reply.status == 200, reply.raw
            return
        replies.add(reply)


def test_flood_of_malformed_datagrams_does_not_break_the_server(
    sipp_binary: str, maskline: MasklineServer, udp: UdpClient, tmp_path: Path
) -> None:
    items = build_flood(udp.local, random.Random(FLOOD_SEED))
    assert len(items) == FLOOD_SIZE
    replies = FloodReplies()
    for index, item in enumerate(items, 1):
        udp.send(item.data)
        # Keep the server's receive buffer from overflowing so expected answers are not lost.
        if index % 25 == 0 or len(item.data) > 10_000:
            barrier(udp, replies)
    barrier(udp, replies)

    problems: list[str] = []
    for item in items:
        if item.expect is None or item.call_id is None:
            continue
        got = replies.by_call_id.get(item.call_id, [])
        if not item.expect and got:
            problems.append(f"{item.kind}: answered {got} but must be dropped: {item.data[:80]!r}")
        elif item.expect and not got:
            problems.append(f"{item.kind}: no answer (expected {sorted(item.expect)[:3]}...)")
        elif item.expect and not set(got) <= item.expect:
            problems.append(f"{item.kind}: answered {got}, expected one of {sorted(item.expect)}")
    assert not problems, f"{len(problems)} wrong outcomes:\n" + "\n".join(sorted(set(problems)))

    run = run_sipp(sipp_binary, "uac_options.xml", "u1", maskline.sip, tmp_path / "sipp")
    assert run.returncode == 0, f"SIPp exit {run.returncode} after the flood\n{run.output[-4000:]}"
    assert run.successful_calls == 1, run.stats
    maskline.assert_alive()
    assert_no_traceback(maskline)


# ------------------------------------------------------------------------------ (d) TCP
def _tcp_options(client: TcpClient, **kwargs: object) -> OutgoingRequest:
    return build_request("OPTIONS", client.local, transport="TCP", **kwargs)  # type: ignore[arg-type]


def test_tcp_request_split_across_writes_is_answered_once(maskline: MasklineServer) -> None:
    client = TcpClient(maskline.sip)
    try:
        request = _tcp_options(
            client,
            extra_headers=("Content-Type: application/sdp",),
            body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n",
        )
        data = request.data
        head_end = data.index(b"\r\n\r\n")
        cuts = [5, data.index(b"Call-ID") + 4, head_end + 2, head_end + 4 + 7]
        start = 0
        for cut in cuts:
            client.send(data[start:cut])
            start = cut
            # An incomplete message must not be answered (this is also the gap between writes).
            assert client.read_reply(timeout=0.1) is None, "answered an incomplete message"
        client.send(data[start:])
        reply = client.read_reply()
        assert reply is not None, "no answer to a request sent in five writes"
        assert reply.status == 200, reply.raw
        assert_echoes(reply, request)
        # The body was framed by Content-Length, not taken for a second message.
        assert client.read_reply(timeout=0.3) is None, "more than one answer"
    finally:
        client.close()


def test_tcp_two_pipelined_requests_in_one_write_are_both_answered(
    maskline: MasklineServer,
) -> None:
    client = TcpClient(maskline.sip)
    try:
        first = _tcp_options(client, cseq=1)
        second = _tcp_options(client, cseq=2)
        client.send(first.data + second.data)
        replies = [client.read_reply(), client.read_reply()]
        assert all(r is not None for r in replies), f"got {replies}"
        by_call_id = {r.get("call-id"): r for r in replies if r is not None}
        for request in (first, second):
            reply = by_call_id.get(request.call_id)
            assert reply is not None, f"no answer for {request.call_id}"
            assert reply.status == 200, reply.raw
            assert_echoes(reply, request)
    finally:
        client.close()


def test_tcp_garbage_closes_or_400_and_server_keeps_accepting(maskline: MasklineServer) -> None:
    client = TcpClient(maskline.sip)
    try:
        client.send(b"\x16\x03\x01 this is not SIP at all \x00\xff\r\n\r\n")
        try:
            reply = client.read_reply(timeout=3.0)
        except ConnectionError:
            reply = None  # closed: acceptable
        else:
            assert reply is not None, "neither closed nor answered the garbage within 3 s"
            assert reply.status == 400, reply.raw
    finally:
        client.close()

    fresh = TcpClient(maskline.sip)
    try:
        request = _tcp_options(fresh)
        fresh.send(request.data)
        answer = fresh.read_reply()
        assert answer is not None and answer.status == 200, answer
        assert_echoes(answer, request)
    finally:
        fresh.close()
    maskline.assert_alive()


# ------------------------------------------------------------------- (e) UAS responses
def test_options_gets_200_with_allow_accept_supported(udp: UdpClient) -> None:
    request = _options(udp.local)
    reply = udp.send_and_receive(request)
    assert reply.status == 200, reply.raw
    assert_echoes(reply, request)
    assert {"options", "invite", "ack", "bye", "cancel"} <= reply.tokens("allow"), reply.raw
    assert "application/sdp" in reply.tokens("accept"), reply.raw
    assert "timer" in reply.tokens("supported"), reply.raw  # RFC 4028 session timers
    to = reply.get("to")
    assert to is not None and header_param(to, "tag"), f"final response without To tag: {to}"


def test_invite_with_unsupported_require_gets_420_with_unsupported(
    udp: UdpClient, maskline: MasklineServer
) -> None:
    ruri = f"sip:user@{LOOPBACK}:{maskline.sip[1]}"
    request = build_request(
        "INVITE", udp.local, ruri=ruri, extra_headers=("Require: nothingSupportsThis",)
    )
    reply = udp.send_and_receive(request)
    udp.ack(reply, ruri)
    assert reply.status == 420, reply.raw
    assert_echoes(reply, request)
    assert reply.tokens("unsupported") == {"nothingsupportsthis"}, reply.raw
    assert "nothingSupportsThis" in reply.raw.decode(), "Unsupported must name the tag as sent"


def test_unknown_method_gets_501_with_allow(udp: UdpClient) -> None:
    request = build_request("FOO", udp.local)
    reply = udp.send_and_receive(request)
    assert reply.status == 501, reply.raw
    assert_echoes(reply, request)
    assert "options" in reply.tokens("allow"), reply.raw


def test_sip_version_7_gets_505(udp: UdpClient) -> None:
    request = build_request("OPTIONS", udp.local, version="SIP/7.0")
    reply = udp.send_and_receive(request)
    assert reply.status == 505, reply.raw
    assert_echoes(reply, request)


def test_unknown_uri_scheme_gets_416(udp: UdpClient) -> None:
    request = build_request("OPTIONS", udp.local, ruri="nobodyKnowsThisScheme:totallyopaquecontent")
    reply = udp.send_and_receive(request)
    assert reply.status == 416, reply.raw
    assert_echoes(reply, request)


def test_max_forwards_zero_gets_483_for_invite_but_options_is_answered(udp: UdpClient) -> None:
    invite = build_request("INVITE", udp.local, max_forwards=0)
    reply = udp.send_and_receive(invite)
    udp.ack(reply)
    assert reply.status == 483, reply.raw
    assert_echoes(reply, invite)

    options = build_request("OPTIONS", udp.local, max_forwards=0)
    reply = udp.send_and_receive(options)
    assert reply.status == 200, reply.raw
    assert_echoes(reply, options)


def test_content_length_larger_than_udp_body_gets_400_naming_the_problem(
    udp: UdpClient,
) -> None:
    request = build_request("OPTIONS", udp.local, body=b"v=0\r\n", content_length="9999")
    reply = udp.send_and_receive(request)
    assert reply.status == 400, reply.raw
    assert_echoes(reply, request)
    assert reply.reason.strip().lower() not in ("", "bad request"), (
        f"reason phrase should name the problem, got {reply.reason!r}"
    )
