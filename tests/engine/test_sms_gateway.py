"""The SMS gateway (engine.sms_gateway) on a real sans-IO endpoint, with a fake SMS service.

Bytes in from a "trunk" address, the signalling dispatch, the gateway's answer out; outbound
MESSAGEs are answered (or not) by the test as the trunk would. No sockets: the endpoint's
output is collected by the flush callable the gateway is given, as the transport would send it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from api.sms import InboundSms, SmsVerdict
from config import HostPort, Settings, SipSettings, TrunkSettings
from config.settings import NumberFormat
from engine.server import build_endpoint
from engine.signalling import Signalling
from engine.sms_gateway import (
    MessageRead,
    MessageRefused,
    SmsGateway,
    build_outbound_message,
    read_message,
    read_text,
    text_digest,
)
from routing.model import PhoneNumber
from sip import parse_message
from sip.builders import make_response
from sip.message import Request, Response

LOCAL = HostPort("127.0.0.1", 5060)
TRUNK_IN = ("192.0.2.10", 5062)  # the carrier's address, inside the trunk's ACL
STRANGER = ("198.51.100.7", 5062)  # outside every trunk
TRUNK_OUT = HostPort("192.0.2.20", 5070)  # where the trunk takes our requests
X = "17000000001"
SENDER = "13800138000"
RECIPIENT = PhoneNumber("+8613900139000")


def _trunk(
    *, name: str = "carrier", fmt: NumberFormat = NumberFormat.NATIONAL, creds: bool = False
) -> TrunkSettings:
    return TrunkSettings(
        name=name,
        outbound=TRUNK_OUT,
        inbound_cidrs=(ipaddress.ip_network("192.0.2.0/24"),),
        number_format=fmt,
        auth_username="ml" if creds else None,
        auth_password="secret" if creds else None,
    )


@dataclass
class FakeService:
    """Answers with ``verdict`` (or raises ``error``) after ``gate`` opens; records messages."""

    verdict: SmsVerdict = field(default_factory=lambda: SmsVerdict(202, "Accepted"))
    error: Exception | None = None
    gate: asyncio.Event | None = None
    received: list[InboundSms] = field(default_factory=list)
    then: Callable[[InboundSms], Awaitable[None]] | None = None

    async def receive(self, message: InboundSms) -> SmsVerdict:
        self.received.append(message)
        if self.gate is not None:
            await self.gate.wait()
        if self.then is not None:
            await self.then(message)
        if self.error is not None:
            raise self.error
        return self.verdict


class Harness:
    """The maskline endpoint with signalling and the gateway; the wire is a list."""

    def __init__(self, service: FakeService | None, *, trunk: TrunkSettings | None = None) -> None:
        settings = Settings(sip=SipSettings(listen=LOCAL), trunks=(trunk or _trunk(),))
        self.endpoint = build_endpoint(settings)
        self.now = 0.0
        self.wire: list[tuple[bytes, tuple[str, int]]] = []
        self.gateway = SmsGateway(
            endpoint=self.endpoint,
            settings=settings,
            flush=self.flush,
            clock=lambda: self.now,
            wall_clock=lambda: 1_800_000_000.0,
            receive=service.receive if service is not None else None,
        )
        self.signalling = Signalling(self.endpoint, clock=lambda: self.now, sms=self.gateway)

    def flush(self) -> None:
        for out in self.endpoint.datagrams_to_send():
            self.wire.append((out.data, (out.peer.host, out.peer.port)))

    def feed(self, data: bytes, source: tuple[str, int] = TRUNK_IN) -> None:
        """What the transport does for a datagram: endpoint, events, flush."""
        self.endpoint.receive_datagram(data, source, self.now)
        self.signalling.handle_events()
        self.flush()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.endpoint.handle_timer(self.now)
        self.signalling.handle_events()
        self.flush()

    def sent(self) -> list[Request | Response]:
        return [parse_message(data) for data, _ in self.wire]

    def responses(self) -> list[Response]:
        return [m for m in self.sent() if isinstance(m, Response)]

    def requests(self) -> list[Request]:
        return [m for m in self.sent() if isinstance(m, Request)]

    async def answered(self, count: int = 1) -> list[Response]:
        """The responses once ``count`` are on the wire (the service's task runs first)."""
        for _ in range(100):
            if len(self.responses()) >= count:
                return self.responses()
            await asyncio.sleep(0)
        raise AssertionError(f"no {count} responses on the wire: {self.wire!r}")


_counter = iter(range(1, 1_000_000))


def message(
    *,
    to: str = X,
    sender: str = SENDER,
    body: bytes = "您好，快递到了".encode(),
    content_type: str | None = "text/plain;charset=UTF-8",
    extra: tuple[str, ...] = (),
    uri: str | None = None,
    branch: str | None = None,
    call_id: str | None = None,
) -> bytes:
    n = next(_counter)
    lines = [
        f"MESSAGE {uri or f'sip:{to}@127.0.0.1:5060'} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5062;branch={branch or f'z9hG4bK-sms-{n}'};rport",
        "Max-Forwards: 70",
        f"From: <sip:{sender}@192.0.2.10>;tag=t{n}",
        f"To: <sip:{to}@127.0.0.1>",
        f"Call-ID: {call_id or f'sms-{n}@192.0.2.10'}",
        "CSeq: 1 MESSAGE",
        *extra,
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------------------- inbound


async def test_a_message_from_the_trunk_reaches_the_service_and_gets_its_verdict() -> None:
    service = FakeService(verdict=SmsVerdict(202, "Accepted (intercepted)"))
    harness = Harness(service)
    harness.feed(message(call_id="abc@192.0.2.10"))
    [response] = await harness.answered()
    assert (response.status_code, response.reason) == (202, "Accepted (intercepted)")
    assert response.body == b"" and "Contact" not in response.headers  # RFC 3428 §7
    [received] = service.received
    assert received.x == "+86" + X and received.sender == "+86" + SENDER
    assert received.text == "您好，快递到了"
    assert received.received_at == 1_800_000_000.0 and received.call_id == "abc@192.0.2.10"


async def test_the_sender_comes_from_p_asserted_identity_first() -> None:
    service = FakeService()
    harness = Harness(service)
    harness.feed(message(extra=("P-Asserted-Identity: <sip:+8613700137000@192.0.2.10>",)))
    await harness.answered()
    assert service.received[0].sender == "+8613700137000"


@pytest.mark.parametrize("status", [403, 404, 480])
async def test_refusals_of_the_service_are_the_answer(status: int) -> None:
    harness = Harness(FakeService(verdict=SmsVerdict(status, f"Refused {status} (pool)")))
    harness.feed(message())
    [response] = await harness.answered()
    assert (response.status_code, response.reason) == (status, f"Refused {status} (pool)")


async def test_a_message_from_outside_every_trunk_is_forbidden_and_never_reaches_the_service() -> (
    None
):
    service = FakeService()
    harness = Harness(service)
    harness.feed(message(), source=STRANGER)
    [response] = harness.responses()
    assert response.status_code == 403 and "trunk" in response.reason
    assert service.received == []


async def test_3gpp_sms_bodies_are_refused_415_naming_what_is_taken() -> None:
    service = FakeService()
    harness = Harness(service)
    harness.feed(message(body=b"\x00\x01\x02", content_type="application/vnd.3gpp.sms"))
    [response] = harness.responses()
    assert response.status_code == 415
    assert response.headers.get("Accept") == "text/plain"
    assert "text/plain" in response.reason and "MESSAGE" in response.reason
    assert service.received == []


async def test_an_invite_still_does_not_take_text_bodies() -> None:
    harness = Harness(FakeService())
    data = message().replace(b"MESSAGE sip", b"INVITE sip").replace(b"1 MESSAGE", b"1 INVITE")
    harness.feed(data)
    [response] = harness.responses()
    assert response.status_code == 415 and "text/plain" not in (
        response.headers.get("Accept") or ""
    )


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain;charset=ISO-8859-1", "café".encode("latin-1"), 415),
        ('text/plain; charset="GB2312"', "你好".encode("gb2312"), 415),
        ("text/plain;charset=UTF-8", b"\xff\xfe bad", 400),
        ("text/plain", b"\xc3\x28", 400),
        ("text/plain;charset=us-ascii", "é".encode(), 400),
    ],
)
async def test_charsets_and_bytes_that_are_not_utf8_are_refused(
    content_type: str, body: bytes, status: int
) -> None:
    service = FakeService()
    harness = Harness(service)
    harness.feed(message(body=body, content_type=content_type))
    [response] = harness.responses()
    assert response.status_code == status and response.reason.startswith(
        "Unsupported" if status == 415 else "Bad Request"
    )
    assert service.received == []


async def test_a_request_uri_that_is_not_a_number_is_not_found() -> None:
    service = FakeService()
    harness = Harness(service)
    harness.feed(message(uri="sip:support@127.0.0.1:5060"))
    [response] = harness.responses()
    assert response.status_code == 404 and service.received == []


async def test_retransmissions_while_the_service_writes_are_absorbed_then_answered_once() -> None:
    gate = asyncio.Event()
    service = FakeService(gate=gate)
    harness = Harness(service)
    data = message(branch="z9hG4bK-retrans")
    harness.feed(data)
    await _settle()
    harness.advance(0.5)
    harness.feed(data)  # Timer E retransmission
    harness.feed(data)
    assert harness.responses() == [] and len(service.received) == 1
    gate.set()
    [response] = await harness.answered()
    assert response.status_code == 202
    harness.feed(data)  # a retransmission after the answer gets the same answer
    assert [r.status_code for r in harness.responses()] == [202, 202]
    assert len(service.received) == 1


async def test_a_failing_service_gives_500_and_logs_no_text(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = Harness(FakeService(error=RuntimeError("disk full 您好，快递到了")))
    with caplog.at_level(logging.DEBUG):
        harness.feed(message())
        [response] = await harness.answered()
    assert response.status_code == 500
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err
    assert "sms_service_failed" in everything
    assert "快递" not in everything


async def test_a_slow_service_gives_500_in_time_and_its_write_still_finishes() -> None:
    gate = asyncio.Event()
    service = FakeService(gate=gate)
    harness = Harness(service)
    harness.gateway.answer_timeout_s = 0.01
    harness.feed(message())
    [response] = await asyncio.wait_for(_first_response(harness), timeout=5)
    assert response.status_code == 500 and "did not answer" in response.reason
    gate.set()  # the service's call was not cancelled: it completes
    await asyncio.sleep(0)
    assert len(service.received) == 1


async def _settle() -> None:
    """Let the tasks started so far run until they wait on something."""
    for _ in range(10):
        await asyncio.sleep(0)


async def _first_response(harness: Harness) -> list[Response]:
    while not harness.responses():
        await asyncio.sleep(0.005)
    return harness.responses()


async def test_a_verdict_that_is_not_final_is_answered_500() -> None:
    harness = Harness(FakeService(verdict=SmsVerdict(180, "Ringing")))
    harness.feed(message())
    [response] = await harness.answered()
    assert response.status_code == 500


async def test_without_a_service_messages_are_temporarily_unavailable() -> None:
    harness = Harness(None)
    harness.feed(message())
    [response] = harness.responses()
    assert response.status_code == 480


async def test_close_answers_messages_still_waiting_503() -> None:
    harness = Harness(FakeService(gate=asyncio.Event()))
    harness.feed(message())
    await asyncio.sleep(0)
    await harness.gateway.close(timeout_s=0.01)
    [response] = harness.responses()
    assert response.status_code == 503


# ------------------------------------------------------------------------------ outbound


async def test_send_builds_a_message_from_x_and_resolves_with_the_final_status() -> None:
    harness = Harness(FakeService())
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "嗨 T"))
    await asyncio.sleep(0)
    [(data, peer)] = harness.wire
    assert peer == (TRUNK_OUT.host, TRUNK_OUT.port)
    request = parse_message(data)
    assert isinstance(request, Request) and request.method == "MESSAGE"
    assert str(request.uri) == f"sip:13900139000@{TRUNK_OUT}"
    assert request.from_.uri.user == X and request.to.uri.user == "13900139000"  # type: ignore[union-attr]
    assert request.body.decode() == "嗨 T"
    assert request.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert "Contact" not in request.headers  # RFC 3428 §4
    assert SENDER not in data.decode()
    harness.feed(make_response(request, 100).to_bytes(), source=(TRUNK_OUT.host, TRUNK_OUT.port))
    assert not sending.done()
    harness.feed(make_response(request, 200, to_tag="b").to_bytes(), (TRUNK_OUT.host, 5070))
    assert await sending == 200


async def test_send_resolves_with_a_failure_status() -> None:
    harness = Harness(FakeService())
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    request = harness.requests()[0]
    harness.feed(make_response(request, 480, to_tag="b").to_bytes(), (TRUNK_OUT.host, 5070))
    assert await sending == 480


async def test_send_resolves_none_when_the_trunk_never_answers() -> None:
    harness = Harness(FakeService())
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    for _ in range(20):  # Timer E retransmissions, then Timer F at 64*T1
        harness.advance(4.0)
    assert len(harness.requests()) > 3  # retransmitted while waiting
    assert await sending is None


async def test_send_answers_a_challenge_once_with_the_trunk_credentials() -> None:
    harness = Harness(FakeService(), trunk=_trunk(creds=True))
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    first = harness.requests()[0]
    challenge = make_response(
        first, 407, to_tag="p", extra=[("Proxy-Authenticate", 'Digest realm="c", nonce="n1"')]
    )
    harness.feed(challenge.to_bytes(), (TRUNK_OUT.host, 5070))
    retry = [r for r in harness.requests() if r.cseq.seq == 2]
    assert len(retry) == 1 and 'username="ml"' in (
        retry[0].headers.get("Proxy-Authorization") or ""
    )
    assert retry[0].call_id == first.call_id
    again = make_response(
        retry[0], 407, to_tag="p", extra=[("Proxy-Authenticate", 'Digest realm="c", nonce="n2"')]
    )
    harness.feed(again.to_bytes(), (TRUNK_OUT.host, 5070))
    assert await sending == 407  # once only


async def test_a_send_made_while_handling_a_message_goes_over_that_messages_trunk() -> None:
    second = TrunkSettings(
        name="second",
        outbound=HostPort("203.0.113.9", 5080),
        inbound_cidrs=(ipaddress.ip_network("203.0.113.0/24"),),
        number_format=NumberFormat.E164,
    )
    statuses: list[int | None] = []
    holder: dict[str, SmsGateway] = {}

    async def forward(message: InboundSms) -> None:
        # As the service does for a smart SMS: a task started while handling the message.
        task = asyncio.ensure_future(holder["g"].send(RECIPIENT, message.x, "fwd"))
        task.add_done_callback(lambda t: statuses.append(t.result()))

    service = FakeService(then=forward)
    settings = Settings(sip=SipSettings(listen=LOCAL), trunks=(_trunk(), second))
    harness = Harness(service)
    harness.gateway = SmsGateway(
        endpoint=harness.endpoint,
        settings=settings,
        flush=harness.flush,
        clock=lambda: harness.now,
        wall_clock=lambda: 0.0,
        receive=service.receive,
    )
    harness.signalling.sms = holder["g"] = harness.gateway
    harness.feed(message(), source=("203.0.113.9", 5080))
    for _ in range(10):
        await asyncio.sleep(0)
    [(data, peer)] = [(d, p) for d, p in harness.wire if d.startswith(b"MESSAGE")]
    assert peer == ("203.0.113.9", 5080)
    assert data.startswith(b"MESSAGE sip:+8613900139000@203.0.113.9:5080 ")  # its e164 format
    request = parse_message(data)
    assert isinstance(request, Request)
    harness.feed(make_response(request, 200, to_tag="z").to_bytes(), ("203.0.113.9", 5080))
    for _ in range(10):
        await asyncio.sleep(0)
    assert statuses == [200]


async def test_responses_to_our_messages_never_reach_the_b2bua() -> None:
    class Tripwire:
        def on_response(self, event: object) -> None:
            raise AssertionError("the B2BUA saw a response to an SMS")

        on_timeout = on_response

    harness = Harness(FakeService())
    harness.signalling.b2bua = Tripwire()  # type: ignore[assignment]
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    request = harness.requests()[0]
    harness.feed(make_response(request, 202, to_tag="b").to_bytes(), (TRUNK_OUT.host, 5070))
    assert await sending == 202


# ---------------------------------------------------------------------------- pure parts


def test_read_text_takes_utf8_without_charset_and_drops_a_byte_order_mark() -> None:
    request = parse_message(message(body="\ufeff你好".encode(), content_type="text/plain"))
    assert isinstance(request, Request)
    assert read_text(request) == "你好"


def test_an_empty_message_is_an_empty_text() -> None:
    request = parse_message(message(body=b"", content_type=None))
    assert isinstance(request, Request)
    assert read_message(request) == MessageRead(
        x=PhoneNumber("+86" + X), sender=PhoneNumber("+86" + SENDER), text=""
    )


def test_read_message_refuses_a_uri_without_a_number() -> None:
    request = parse_message(message(uri="sip:127.0.0.1:5060"))
    assert isinstance(request, Request)
    refused = read_message(request)
    assert isinstance(refused, MessageRefused) and refused.status == 404


def test_build_outbound_message_carries_only_x_and_the_recipient() -> None:
    request = build_outbound_message(
        to=RECIPIENT,
        from_x=PhoneNumber("+86" + X),
        text="【号码隐私保护】hi【回T退订】",
        trunk=_trunk(fmt=NumberFormat.E164),
        local="127.0.0.1:5060",
    )
    wire = request.to_bytes().decode()
    assert "+8613900139000" in wire and "+86" + X in wire
    assert "Contact" not in request.headers
    numbers = {"+8613900139000", "+86" + X}
    # Where a number can appear (random ids — Call-ID, tags, branch — are hex and may hold
    # digit runs by chance, so they are not searched: the From tag is cut off): every one is X
    # or the recipient.
    addressed = [
        request.uri,
        request.body.decode(),
        *(request.headers.get_all(name) for name in _ADDRESSING),
    ]
    found = _numbers_in(_without_tags(" ".join(str(part) for part in addressed)))
    assert found and all(n in numbers for n in found), found


_ADDRESSING = ("From", "To", "P-Asserted-Identity", "Contact", "Remote-Party-ID")


def _numbers_in(text: str) -> set[str]:
    return set(re.findall(r"\+?\d{11,13}", text))


def _without_tags(text: str) -> str:
    """``text`` less its ``tag=`` parameters (random hex, digit runs by chance)."""
    return re.sub(r";\s*tag\s*=[^;,>'\"\s]*", "", text, flags=re.IGNORECASE)


def test_text_digest_is_stable_and_keyed() -> None:
    assert text_digest("T") == text_digest("T") != text_digest("t")
    # Keyed: a plain hash of a one-letter reply could be looked up in a table.
    assert text_digest("T") != hashlib.sha256(b"T").hexdigest()[:16]


async def test_close_waits_for_a_send_in_flight_then_resolves_it_none() -> None:
    harness = Harness(FakeService())
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    await harness.gateway.close(timeout_s=0.01)
    assert await sending is None


async def test_close_lets_a_send_answered_meanwhile_keep_its_status() -> None:
    harness = Harness(FakeService())
    sending = asyncio.ensure_future(harness.gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x"))
    await asyncio.sleep(0)
    request = harness.requests()[0]
    closing = asyncio.ensure_future(harness.gateway.close(timeout_s=5))
    await asyncio.sleep(0)
    harness.feed(make_response(request, 200, to_tag="b").to_bytes(), (TRUNK_OUT.host, 5070))
    await closing
    assert await sending == 200


async def test_send_without_any_trunk_is_none_and_sends_nothing() -> None:
    endpoint = build_endpoint(Settings(sip=SipSettings(listen=LOCAL)))
    gateway = SmsGateway(
        endpoint=endpoint,
        settings=Settings(sip=SipSettings(listen=LOCAL)),
        flush=lambda: None,
        clock=lambda: 0.0,
        wall_clock=lambda: 0.0,
    )
    assert await gateway.send(RECIPIENT, PhoneNumber("+86" + X), "x") is None
    assert endpoint.datagrams_to_send() == []
