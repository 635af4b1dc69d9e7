"""Hypothesis properties of the parser and serialiser.

(a) Messages built through the model API (``Request``/``Response``,
    ``HeaderList``, ``NameAddr``, ``Via``, ``SipUri``, ``TelUri``) serialise with
    ``to_bytes()`` and parse back equal, with ``validate()`` passing and the
    structured views equal to what was built.
(b) Nothing a peer sends — arbitrary bytes, valid messages with bytes inserted,
    deleted, replaced or cut off, and both fed to a ``StreamFramer`` in random
    chunks — raises anything but ``SipParseError`` from parsing, validation or
    any parsed view.

The number of examples comes from the profile (``HYPOTHESIS_PROFILE=ci``: 10,000).
"""

from __future__ import annotations

import contextlib
import random
import string

from hypothesis import given
from hypothesis import strategies as st

from sip import (
    AbsoluteUri,
    CSeq,
    HeaderList,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    TelUri,
    Uri,
    Via,
    parse_message,
    parse_stream_message,
)
from sip.grammar import TOKEN_CHARS, quote
from sip.headers import header_key

# --- strategies -----------------------------------------------------------------------
# Kept lean on purpose: the ci profile runs 5,000 examples, and drawing is what costs.

TOKEN_ALPHABET = "".join(sorted(TOKEN_CHARS))
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=8)
optional_tokens = st.text(TOKEN_ALPHABET, max_size=8).map(lambda t: t or None)

# Characters that stress quoting and escaping, controls (NUL, BEL, DEL, HTAB), and
# 2-, 3- and 4-octet UTF-8 and a BOM.  Header values and display names cannot hold CR
# or LF; URI components are %-escaped on the wire, so they may hold anything.
LINE_ALPHABET = "aZ09 \t\"\\<>;,?@:%=&[]/+$~*'()!#.-_{}\x00\x07\x7f\x80é大\ufeff\U0001f600"
line_text = st.text(LINE_ALPHABET, max_size=10)
uri_text = st.text(LINE_ALPHABET + "\r\n", min_size=1, max_size=8)
# ``None`` for the empty draw: one choice instead of a ``none() | ...`` branch and a value.
optional_uri_text = st.text(LINE_ALPHABET + "\r\n", max_size=8).map(lambda t: t or None)

KNOWN_METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE"]
methods = st.sampled_from(KNOWN_METHODS) | tokens

hosts = st.sampled_from(
    [
        "example.com",
        "a.b-c.example.org",
        "HOST9",
        "x",
        "192.0.2.1",
        "255.255.255.255",
        "[2001:db8::10]",
        "[::1]",
        "[2001:db8:0:0:1:0:0:1]",
        "[::ffff:192.0.2.1]",
    ]
)
ports = st.sampled_from([None, None, 0, 1, 5060, 5061, 65535])
uri_params = st.lists(st.tuples(uri_text, optional_uri_text), max_size=1).map(dict)
uri_headers = st.lists(st.tuples(uri_text, uri_text | st.just("")), max_size=1).map(dict)
sip_schemes = st.sampled_from(["sip", "sips"])


@st.composite
def _sip_uris(draw: st.DrawFn, with_headers: bool) -> SipUri:
    user = draw(optional_uri_text)
    return SipUri(
        scheme=draw(sip_schemes),
        user=user,
        password=None if user is None else draw(optional_uri_text),
        host=draw(hosts),
        port=draw(ports),
        params=draw(uri_params),
        headers=draw(uri_headers) if with_headers else {},
    )


sip_uris = _sip_uris(True)


tel_uris = st.builds(
    TelUri,
    number=st.text("0123456789-.()", min_size=1, max_size=12).map(lambda n: "+" + n),
    params=uri_params,
)
absolute_uris = st.builds(
    AbsoluteUri,
    scheme=st.sampled_from(["nobodyKnowsThisScheme", "soap.beep", "isbn", "http", "urn", "x+y"]),
    opaque=st.text(string.ascii_letters[:6] + "09/:.@-_~!$&'()*+,;=?", min_size=1, max_size=12),
)


# Headers are not allowed in a Request-URI: the parser rejects them.
r_uris: st.SearchStrategy[Uri] = st.one_of(_sip_uris(False), tel_uris, absolute_uris)
any_uris: st.SearchStrategy[Uri] = st.one_of(sip_uris, tel_uris, absolute_uris)


# Header parameter values: tokens or quoted strings (as ``quote()`` renders them).
header_params = st.lists(st.tuples(tokens, optional_tokens | line_text.map(quote)), max_size=2).map(
    lambda items: {k: v for k, v in items if k.lower() != "tag"}
)
displays = st.none() | line_text


@st.composite
def _name_addrs(draw: st.DrawFn, tag: st.SearchStrategy[str | None]) -> NameAddr:
    params = draw(header_params)
    tag_value = draw(tag)
    if tag_value is not None:
        params["tag"] = tag_value
    return NameAddr(uri=draw(any_uris), display=draw(displays), params=params)


tagged_addrs = _name_addrs(tokens)
maybe_tagged_addrs = _name_addrs(optional_tokens)
contact_addrs = _name_addrs(st.none())


branches = st.none() | st.tuples(st.sampled_from(["z9hG4bK", "z9hG4bK-", ""]), tokens).map("".join)
receiveds = st.sampled_from([None, "192.0.2.7", "2001:db8::9", "[2001:db8::9]"])
rports = st.sampled_from(["absent", "empty", "5060", "65535"])
via_extra_params = st.sampled_from(
    [{}, {}, {"maddr": "224.2.0.1", "ttl": "16"}, {"x-flag": None}, {"Branch-Like": "a.b"}]
)
transports = st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "ws", "UNKNOWN", "x-t.1"])


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: dict[str, str | None] = {}
    branch = draw(branches)
    if branch is not None:
        params["branch"] = branch
    received = draw(receiveds)
    if received is not None:
        params["received"] = received
    rport = draw(rports)
    if rport != "absent":
        params["rport"] = None if rport == "empty" else rport
    for name, value in draw(via_extra_params).items():
        params.setdefault(name, value)
    return Via(transport=draw(transports), host=draw(hosts), port=draw(ports), params=params)


# Header names the core parses (a random value there would rightly fail validate()).
STRUCTURED = frozenset(
    {
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-length",
        "contact",
        "route",
        "record-route",
        "require",
        "supported",
        "content-type",
    }
)
extra_names = tokens.filter(lambda n: header_key(n) not in STRUCTURED)
extra_values = line_text.map(lambda v: v.strip(" \t"))
call_ids = st.text(
    string.ascii_letters[:6] + "09-.!%*_+`'~()<>:\\\"/[]?{}@", min_size=1, max_size=16
)


via_lists = st.lists(vias(), min_size=1, max_size=2)
cseq_numbers = st.integers(0, 2**31 - 1)
max_forwards_values = st.none() | st.integers(0, 255)
contact_lists = st.lists(contact_addrs, max_size=2)
option_tags = st.lists(tokens, max_size=2)
extra_headers = st.lists(st.tuples(extra_names, extra_values), max_size=2)
layouts = st.tuples(st.booleans(), st.booleans())


def head_fields(draw: st.DrawFn, method: str) -> tuple[HeaderList, dict[str, object]]:
    """Headers of a message plus the structured values they must parse back to."""
    via_list = draw(via_lists)
    from_ = draw(tagged_addrs)
    to = draw(maybe_tagged_addrs)
    call_id = draw(call_ids)
    cseq = CSeq(draw(cseq_numbers), method)
    max_forwards = draw(max_forwards_values)
    contacts = draw(contact_lists)
    require = draw(option_tags)
    extras = draw(extra_headers)
    one_via_per_line, compact = draw(layouts)

    headers = HeaderList()
    if one_via_per_line:
        for via in via_list:
            headers.add("v" if compact else "Via", str(via))
    else:
        headers.add("v" if compact else "Via", ", ".join(str(v) for v in via_list))
    headers.add("f" if compact else "From", str(from_))
    headers.add("t" if compact else "To", str(to))
    headers.add("i" if compact else "Call-ID", call_id)
    headers.add("CSeq", str(cseq))
    if max_forwards is not None:
        headers.add("Max-Forwards", str(max_forwards))
    if contacts:
        headers.add("m" if compact else "Contact", ", ".join(map(str, contacts)))
    if require:
        headers.add("Require", ", ".join(require))
    for name, value in extras:
        headers.add(name, value)
    expected: dict[str, object] = {
        "vias": via_list,
        "from": from_,
        "to": to,
        "call_id": call_id,
        "cseq": cseq,
        "max_forwards": max_forwards,
        "contacts": contacts,
        "require": require,
    }
    return headers, expected


bodies = st.binary(max_size=32)
length_names = st.sampled_from(["Content-Length", "l"])
status_codes = st.integers(100, 699)


@st.composite
def requests(draw: st.DrawFn) -> tuple[Request, dict[str, object]]:
    method = draw(methods)
    headers, expected = head_fields(draw, method)
    body = draw(bodies)
    headers.add(draw(length_names), str(len(body)))
    return Request(method, draw(r_uris), headers, body), expected


@st.composite
def responses(draw: st.DrawFn) -> tuple[Response, dict[str, object]]:
    method = draw(methods)
    headers, expected = head_fields(draw, method)
    body = draw(bodies)
    headers.add("Content-Length", str(len(body)))
    return Response(draw(status_codes), draw(line_text), headers, body), expected


def normalised(via: Via) -> Via:
    """The parser upper-cases the transport (it is case-insensitive)."""
    return Via(
        transport=via.transport.upper(),
        host=via.host,
        port=via.port,
        params=via.params,
        protocol=via.protocol,
    )


def check_views(message: Request | Response, expected: dict[str, object]) -> None:
    assert message.vias == [normalised(v) for v in expected["vias"]]  # type: ignore[attr-defined]
    assert message.from_ == expected["from"]
    assert message.to == expected["to"]
    assert message.call_id == expected["call_id"]
    assert message.cseq == expected["cseq"]
    assert message.max_forwards == expected["max_forwards"]
    assert message.contacts == expected["contacts"]
    assert message.require == expected["require"]


# --- (a) round trips --------------------------------------------------------------------


@given(st.one_of(requests(), responses()))
def test_round_trip(case: tuple[Request | Response, dict[str, object]]) -> None:
    built, expected = case
    wire = built.to_bytes()
    parsed = parse_message(wire)
    parsed.validate()
    assert type(parsed) is type(built)
    assert parsed == built
    if isinstance(built, Request):
        assert isinstance(parsed, Request)
        assert (parsed.method, parsed.uri) == (built.method, built.uri)
    else:
        assert isinstance(parsed, Response)
        assert (parsed.status_code, parsed.reason) == (built.status_code, built.reason)
    check_views(parsed, expected)
    assert parsed.to_bytes() == wire
    # The same bytes cut out of a stream give the same message.
    framer = StreamFramer()
    framer.feed(wire + wire[:10])
    framed = framer.next_message()
    assert framed == wire
    assert framer.next_message() is None
    assert parse_stream_message(framed) == built


# --- (b) robustness ---------------------------------------------------------------------


SEED_MESSAGES = [
    (
        b"INVITE sip:bob@[2001:db8::10]:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKnashds8;rport\r\n"
        b"v: SIP/2.0/TCP proxy.example.com;received=192.0.2.1;rport=5062, "
        b"SIP/2.0/UDP 192.0.2.9\r\n"
        b"Max-Forwards: 70\r\n"
        b'From: "Alice \\"A\\"" <sips:alice%40home@atlanta.example.com>;tag=1928301774\r\n'
        b"t: Bob <tel:+1-201-555-0123;phone-context=example.com>\r\n"
        b"i: a84b4c76e66710@pc33.atlanta.com\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b'm: <sip:alice@pc33.atlanta.com;ob>;q=0.5, "Doe, J" <sip:j@d>;expires=60\r\n'
        b"Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n"
        b"Require: 100rel\r\nk: timer, replaces\r\n"
        b"Subject: folded\r\n value\r\n"
        b"c: application/sdp\r\nl: 4\r\n\r\nv=0\r\n"
    ),
    (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK776asdhds;received=192.0.2.4;rport=5060\r\n"
        b"From: sip:alice@atlanta.com;tag=1928301774\r\n"
        b"To: <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
        b"Call-ID: a84b4c76e66710\r\nCSeq: 1 INVITE\r\n"
        b"Record-Route: <sip:p1.example.com;lr>\r\nContent-Length: 0\r\n\r\n"
    ),
]

# An edit script as one binary draw (cheap to generate, shrinks towards no edits): each
# 4 octets are (kind, position high, position low, chunk selector).
INTERESTING_CHUNKS = [
    b"\r\n",
    b"\r\n ",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b",",
    b";",
    b"<",
    b">",
    b'"',
    b"\\",
    b":",
    b"%",
    b"%0",
    b"@",
    b"[",
    b"]",
    b"=",
    b" ",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xc2\xb2",
    b"\xd9\xa3",
    b"SIP/2.0",
    b"99999999999",
    b"-1",
    b"sip:",
    b"<sip:a@b>",
    b"z9hG4bK",
]
edit_scripts = st.binary(min_size=4, max_size=16)


def mutate(data: bytes, script: bytes) -> bytes:
    buffer = bytearray(data)
    for offset in range(0, len(script) - 3, 4):
        kind, high, low, selector = script[offset : offset + 4]
        index = ((high << 8) | low) % (len(buffer) + 1)
        chunk = (
            INTERESTING_CHUNKS[selector]
            if selector < len(INTERESTING_CHUNKS)
            else bytes([selector])
        )
        if kind % 4 == 0:
            buffer[index:index] = chunk
        elif kind % 4 == 1:
            del buffer[index : index + len(chunk)]
        elif kind % 4 == 2:
            buffer[index : index + len(chunk)] = chunk
        else:
            del buffer[index:]
    return bytes(buffer)


def exercise(message: Request | Response) -> None:
    """Everything a caller may read from a parsed message: SipParseError or a value."""
    message.validate()
    top = message.top_via
    _ = (top.branch, top.has_rfc3261_branch, top.received, top.rport, top.rport_requested)
    _ = (message.from_tag, message.to_tag, message.content_type, message.to_bytes())
    for via in message.vias:
        _ = (via.sent_by, str(via))
    for address in (message.from_, message.to, *message.contacts, *message.routes):
        _ = str(address)


def parse_or_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
        exercise(message)
    except SipParseError:
        return


def stream_or_parse_error(data: bytes, chunk_seed: int) -> None:
    """Feed ``data`` in chunks of 1..64 octets (sizes derived from ``chunk_seed``)."""
    framer = StreamFramer(max_message_bytes=4096)
    position = 0
    chunk_sizes = random.Random(chunk_seed)
    try:
        while position < len(data):
            size = chunk_sizes.randint(1, 64)
            framer.feed(data[position : position + size])
            position += size
            while (raw := framer.next_message()) is not None:
                with contextlib.suppress(SipParseError):
                    exercise(parse_stream_message(raw))
    except SipParseError:
        return


# One drawn integer seeds the chunk sizes: far cheaper to generate than a list of sizes.
chunk_seeds = st.integers(0, 2**32 - 1)


@given(st.binary(max_size=512), chunk_seeds)
def test_arbitrary_bytes_raise_only_parse_errors(data: bytes, chunk_seed: int) -> None:
    parse_or_parse_error(data)
    parse_or_parse_error(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    stream_or_parse_error(data, chunk_seed)
    stream_or_parse_error(SEED_MESSAGES[1] + data, chunk_seed)


@given(st.sampled_from(SEED_MESSAGES), edit_scripts, chunk_seeds)
def test_mutated_messages_raise_only_parse_errors(
    seed: bytes, script: bytes, chunk_seed: int
) -> None:
    data = mutate(seed, script)
    parse_or_parse_error(data)
    stream_or_parse_error(data + seed, chunk_seed)


def test_seed_messages_are_valid() -> None:
    for seed in SEED_MESSAGES:
        message = parse_message(seed)
        exercise(message)
        assert parse_message(message.to_bytes()) == message
