"""RFC 4475 torture messages through a fresh ``Endpoint``: the *response* column of EXPECTED.md.

Each file arrives as one UDP datagram from ``SOURCE``.  The application is the simplest one
there is, ``engine.signalling.Signalling`` (OPTIONS → 200 with Allow/Accept/Supported,
INVITE out of dialog → 480, in dialog → 481), on a fake clock.  An INVITE that passes the UAS
checks of RFC 3261 §8.2 is "processed normally": the endpoint's 100 Trying, then the
application's final answer.

Every response is checked against the *raw* header lines of the request (an oracle
independent of ``sip.parser``): Via, From, To, Call-ID and CSeq are copied as far as they are
present (the top Via may gain ``received``/``rport``, RFC 3261 §18.2.1 / RFC 3581), a final
response carries a To tag, and a UDP response goes to the source address — the source port
when the top Via asks for ``rport``, the Via port (default 5060) otherwise, and the source port
when the Via itself is what is broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.signalling import Signalling
from sip.endpoint import Endpoint
from sip.errors import SipParseError
from sip.headers import parse_name_addr, parse_via_values
from sip.transport import Outgoing

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SOURCE = ("198.51.100.7", 5099)  # a port that is neither 5060 nor any Via port in the files
LOCAL = ("192.0.2.100", 5060)

TRYING_480 = (100, 480)  # an out-of-dialog INVITE: 100 Trying, then the application's 480


@dataclass(frozen=True)
class Expect:
    """Statuses sent, in order (empty: nothing may be sent), and headers the final must carry."""

    statuses: tuple[int, ...]
    headers: tuple[tuple[str, str | None], ...] = ()  # (name, exact value or None for "present")
    broken_via: bool = False  # the top Via is the fault: answer to the source port


ALLOW = (("Allow", None),)
OK_OPTIONS = Expect((200,), (("Allow", None), ("Accept", None), ("Supported", None)))
NOT_ALLOWED = Expect((405,), ALLOW)
BAD = Expect((400,))
DROPPED = Expect(())

# name → what the endpoint (UAS) answers: the response column of EXPECTED.md.
CASES: dict[str, Expect] = {
    # 3.1.1 valid messages
    "wsinv": Expect((100, 481)),  # To has a tag: in-dialog, and no dialog exists
    "intmeth": Expect((501,), ALLOW),
    "esc01": Expect(TRYING_480),
    "escnull": NOT_ALLOWED,
    "esc02": Expect((501,), ALLOW),
    "lwsdisp": OK_OPTIONS,
    "longreq": Expect(TRYING_480),
    "dblreq": NOT_ALLOWED,
    "semiuri": OK_OPTIONS,
    "transports": OK_OPTIONS,
    "mpart01": NOT_ALLOWED,  # MESSAGE: parsed, then refused by the application's policy
    "unreason": DROPPED,  # responses matching no transaction
    "noreason": DROPPED,
    # 3.1.2 invalid messages
    "badinv01": Expect((400,), broken_via=True),
    "clerr": BAD,
    "ncl": BAD,
    "scalar02": BAD,
    "scalarlg": DROPPED,
    "quotbal": BAD,
    "ltgtruri": BAD,
    "lwsruri": BAD,
    "lwsstart": BAD,
    "trws": BAD,
    "escruri": BAD,
    "baddate": Expect(TRYING_480),  # Date is never read: processed normally
    "regbadct": BAD,
    "badaspec": BAD,
    "baddn": BAD,
    "badvers": Expect((505,)),
    "mismatch01": BAD,
    "mismatch02": Expect((501,)),
    "bigcode": DROPPED,
    # 3.2 transaction layer
    "badbranch": OK_OPTIONS,  # RFC 2543 matching fallback, answered normally
    # 3.3 application layer
    "insuf": BAD,
    "unkscm": Expect((416,)),
    "novelsc": Expect((416,)),
    "unksm2": NOT_ALLOWED,
    "bext01": Expect((420,), (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)),
    "invut": Expect((415,), (("Accept", None),)),
    "regaut01": NOT_ALLOWED,
    "multi01": BAD,
    "mcl01": BAD,
    "bcast": DROPPED,  # a UAC discards a response with two Vias
    "zeromf": OK_OPTIONS,
    "cparam01": NOT_ALLOWED,
    "cparam02": NOT_ALLOWED,
    "regescrt": NOT_ALLOWED,
    "sdp01": Expect((406,), (("Warning", None),)),
    # 3.4 backward compatibility
    "inv2543": Expect(TRYING_480),
}


def test_every_file_on_disk_is_in_the_table() -> None:
    assert {path.stem for path in DATA.glob("*.dat")} == set(CASES)
    assert len(CASES) == 49


# -- an oracle for header lines, independent of sip.parser ------------------------------------

_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length"}


def raw_headers(data: bytes) -> tuple[str, dict[str, list[str]]]:
    """Start line and header values by lower-case full name, unfolded and stripped."""
    head = data.split(b"\r\n\r\n", 1)[0]
    head = re.sub(rb"[ \t]*\r\n[ \t]+", b" ", head)
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    return lines[0], headers


def _via_values(lines: list[str]) -> list[str]:
    """Via values across lines and commas (no commas occur inside these files' Via values)."""
    return [value.strip() for line in lines for value in line.split(",")]


def _without_received(value: str) -> tuple[object, ...]:
    via = parse_via_values(value)[0]
    params = {k.lower(): v for k, v in via.params.items() if k.lower() not in ("received", "rport")}
    return (via.protocol, via.transport, via.host.lower(), via.port, params)


def _same_to(request_to: str, response_to: str, *, tag_added: bool) -> bool:
    if response_to == request_to:
        return not tag_added
    if not tag_added:
        return False
    if re.fullmatch(re.escape(request_to) + r" *; *tag=[^;]+", response_to):
        return True
    # The endpoint may re-render a To it parsed; then it must mean the same address.
    req, resp = parse_name_addr(request_to), parse_name_addr(response_to)
    params = {k: v for k, v in resp.params.items() if k.lower() != "tag"}
    return (
        str(req.uri) == str(resp.uri)
        and (req.display or None) == (resp.display or None)
        and req.params == params
    )


def _has_tag(to_value: str) -> bool:
    return re.search(r";\s*tag\s*=", to_value, re.IGNORECASE) is not None


def expected_port(first_via: str | None, *, broken_via: bool) -> int:
    """RFC 3261 §18.2.2 / RFC 3581 for a UDP request from ``SOURCE``."""
    if first_via is None or broken_via:
        return SOURCE[1]
    params = [p.strip().lower().split("=", 1)[0] for p in first_via.split(";")[1:]]
    if "rport" in params:
        return SOURCE[1]
    sent_by = re.sub(r"\s+", "", first_via.split(";", 1)[0])
    sent_by = sent_by.split("/", 3)[-1]
    sent_by = re.sub(r"^[A-Za-z]+", "", sent_by, count=1)  # the transport glued to the host
    match = re.search(r":(\d+)$", sent_by)
    return int(match.group(1)) if match else 5060


# -- the run ---------------------------------------------------------------------------


def run_datagram(data: bytes) -> tuple[Endpoint, list[Outgoing]]:
    endpoint = Endpoint(local_host=LOCAL[0], local_port=LOCAL[1])
    signalling = Signalling(endpoint, clock=lambda: 0.0)
    endpoint.receive_datagram(data, SOURCE, 0.0)
    signalling.handle_events()
    return endpoint, endpoint.datagrams_to_send()


@pytest.mark.parametrize("name", sorted(CASES))
def test_uas_behaviour(name: str) -> None:
    expect = CASES[name]
    data = (DATA / f"{name}.dat").read_bytes()
    endpoint, sent = run_datagram(data)
    assert endpoint.stats.internal_errors == 0, endpoint.last_internal_error

    statuses = tuple(int(raw_headers(out.data)[0].split(" ")[1]) for out in sent)
    assert statuses == expect.statuses, [out.data[:80] for out in sent]
    if not sent:
        return

    _, request = raw_headers(data)
    request_vias = _via_values(request.get("via", []))
    port = expected_port(request_vias[0] if request_vias else None, broken_via=expect.broken_via)
    for out, status in zip(sent, statuses, strict=True):
        assert out.peer.transport == "UDP"
        assert (out.peer.host, out.peer.port) == (SOURCE[0], port), status
        assert not out.close
        _, response = raw_headers(out.data)

        # Via: every value, in order; the top one may only gain received/rport.
        response_vias = _via_values(response.get("via", []))
        assert len(response_vias) == len(request_vias)
        if request_vias:
            assert response_vias[1:] == request_vias[1:]
            if response_vias[0] != request_vias[0]:
                assert _without_received(response_vias[0]) == _without_received(request_vias[0])
                assert f"received={SOURCE[0]}" in response_vias[0]
        # From, Call-ID, CSeq: verbatim; absent stays absent.
        for key in ("from", "call-id", "cseq"):
            assert response.get(key) == request.get(key), key
        # To: the same, plus our tag on a final response when the request had none.
        if "to" in request:
            (request_to,) = request["to"][:1]
            (response_to,) = response["to"]
            tag_added = status >= 200 and not _has_tag(request_to)
            assert _same_to(request_to, response_to, tag_added=tag_added), response_to
            if status >= 200:
                assert _has_tag(response_to)
        else:
            assert "to" not in response

    final = raw_headers(sent[-1].data)[1]
    for name_, value in expect.headers:
        values = final.get(name_.lower())
        assert values, f"{name_} missing"
        if value is not None:
            assert values == [value]
    if statuses[-1] == 406:
        assert final["warning"][0].startswith("399 ")
    if statuses[-1] == 405:  # §21.4.6: MUST carry Allow
        assert "OPTIONS" in final["allow"][0]
    if statuses[-1] == 415:
        assert "application/sdp" in final["accept"][0]


def test_dblreq_answers_the_register_only() -> None:
    _, sent = run_datagram((DATA / "dblreq.dat").read_bytes())
    (out,) = sent
    assert b"CSeq: 8 REGISTER" in out.data
    assert b"dblreq.0ha0isnda977644900765" not in out.data, "the trailing INVITE is ignored"


def test_bcast_sends_nothing_anywhere() -> None:
    endpoint, sent = run_datagram((DATA / "bcast.dat").read_bytes())
    assert sent == []
    assert endpoint.stats.responses_dropped == 1


# -- the same files on a stream ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_delivery_never_breaks(name: str) -> None:
    data = (DATA / f"{name}.dat").read_bytes()
    endpoint = Endpoint(local_host=LOCAL[0], local_port=LOCAL[1])
    Signalling(endpoint, clock=lambda: 0.0)
    for i in range(0, len(data), 97):
        endpoint.receive_stream_data(data[i : i + 97], connection=1, addr=SOURCE, now=0.0)
    sent = endpoint.datagrams_to_send()
    assert endpoint.stats.internal_errors == 0, endpoint.last_internal_error
    assert all(out.peer.connection == 1 for out in sent)
    if name == "clerr":
        assert sent == [], "Content-Length beyond the bytes: wait for more"
    if name in ("ncl", "mcl01"):
        assert sent[-1].close, "framing lost: close the connection"
        assert sent[0].data.startswith(b"SIP/2.0 400 ")


# -- never raise, never an internal error -------------------------------------------------

TORTURE = [path.read_bytes() for path in sorted(DATA.glob("*.dat"))]


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(TORTURE)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "crlf", "dup"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\r\n", b"\r\n ", b",", b";", b":", b"<", b">", b'"', b"\x00"])
                | st.binary(max_size=20)
            )
        elif op == "truncate":
            del data[at:]
        elif op == "crlf":
            data[:] = data.replace(b"\r\n", b"\n", 1) if draw(st.booleans()) else data + b"\r\n"
        else:
            end = data.find(b"\r\n", at)
            start = data.rfind(b"\r\n", 0, at)
            if 0 <= start < end:
                data[end:end] = data[start:end]
    return bytes(data)


messages = st.binary(max_size=2048) | mutated_messages()
# Each example builds an endpoint and an application: cap the CI profile's 10,000 (the parser's
# own property tests carry that count) so these two stay under ~15 s together.
fuzz_settings = settings(
    max_examples=min(settings.default.max_examples, 3000),
    suppress_health_check=[HealthCheck.too_slow],
)


def _check(endpoint: Endpoint) -> None:
    Signalling(endpoint, clock=lambda: 0.0).handle_events()
    for out in endpoint.datagrams_to_send():
        assert out.peer.host == SOURCE[0]
    assert endpoint.stats.internal_errors == 0, repr(endpoint.last_internal_error)


@fuzz_settings
@given(messages)
def test_any_datagram_never_raises(data: bytes) -> None:
    endpoint = Endpoint(local_host=LOCAL[0], local_port=LOCAL[1])
    endpoint.receive_datagram(data, SOURCE, 0.0)
    _check(endpoint)
    endpoint.handle_timer(64.0)
    assert endpoint.stats.internal_errors == 0


@fuzz_settings
@given(st.lists(messages, min_size=1, max_size=3), st.integers(1, 512))
def test_any_stream_bytes_never_raise(chunks: list[bytes], size: int) -> None:
    endpoint = Endpoint(local_host=LOCAL[0], local_port=LOCAL[1])
    stream = b"".join(chunks)
    for i in range(0, len(stream), size):
        endpoint.receive_stream_data(stream[i : i + size], connection=3, addr=SOURCE, now=0.0)
    _check(endpoint)


def test_sip_parse_error_is_what_the_oracle_sees() -> None:
    """Sanity check of the oracle: badinv01's Via is what the core cannot parse."""
    _, headers = raw_headers((DATA / "badinv01.dat").read_bytes())
    with pytest.raises(SipParseError):
        parse_via_values(headers["via"][0])
