"""Parser and serialiser unit tests beyond RFC 4475.

``SIMPLE_CASES`` (after h11's table of the same name) holds rows of wire bytes and the
message they must parse to; the same rows check serialisation: the model renders the
canonical bytes of the row (the wire bytes themselves when they are canonical).
``BAD_CASES`` holds bytes that must be refused with a given status.
"""

from __future__ import annotations

import pytest

from sip import (
    AbsoluteUri,
    HeaderList,
    MessageTooLarge,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    SipUsageError,
    StreamFramer,
    TelUri,
    parse_message,
    parse_stream_message,
    parse_uri,
)

VIA = "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds"
FROM = "<sip:alice@example.com>;tag=1928301774"
TO = "<sip:bob@example.com>"
CALL_ID = "a84b4c76e66710@pc33.example.com"


def header_list(fields: list[tuple[str, str]]) -> HeaderList:
    result = HeaderList()
    for name, value in fields:
        result.add(name, value)
    return result


def fields_of(method: str, *extra: tuple[str, str], length: int = 0) -> list[tuple[str, str]]:
    """Via, From, To, Call-ID, ``extra``, CSeq, Content-Length."""
    return [
        ("Via", VIA),
        ("From", FROM),
        ("To", TO),
        ("Call-ID", CALL_ID),
        *extra,
        ("CSeq", f"1 {method}"),
        ("Content-Length", str(length)),
    ]


def wire(start: str, fields: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def req(method: str, uri: str, *extra: tuple[str, str], body: bytes = b"") -> tuple[Request, bytes]:
    """A request and its canonical wire form."""
    fields = fields_of(method, *extra, length=len(body))
    message = Request(method, uri, header_list(fields), body)
    return message, wire(f"{method} {uri} SIP/2.0", fields, body)


def resp(
    code: int, reason: str, *extra: tuple[str, str], body: bytes = b""
) -> tuple[Response, bytes]:
    fields = fields_of("INVITE", *extra, length=len(body))
    message = Response(code, reason, header_list(fields), body)
    return message, wire(f"SIP/2.0 {code} {reason}", fields, body)


def simple(name: str, built: tuple[Request | Response, bytes], raw: bytes | None = None) -> object:
    """Row: ``raw`` (default: the canonical bytes) parses to the message, which renders
    the canonical bytes."""
    message, canonical = built
    return pytest.param(raw if raw is not None else canonical, message, canonical, id=name)


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"

SIMPLE_CASES = [
    simple("options", req("OPTIONS", "sip:bob@example.com")),
    simple(
        "invite-with-sdp",
        req(
            "INVITE",
            "sip:bob@example.com",
            ("Max-Forwards", "70"),
            ("Contact", "<sip:alice@pc33.example.com>"),
            ("Content-Type", "application/sdp"),
            body=SDP,
        ),
    ),
    simple("response", resp(200, "OK", ("Contact", "<sip:bob@192.0.2.4>"))),
    simple("response-empty-reason", resp(100, "")),
    simple("response-utf8-reason", resp(486, "Занято 忙")),
    simple("response-spaces-in-reason", resp(183, "Session  Progress ")),
    # Compact forms read as their long names and render in canonical spelling.
    simple(
        "compact-forms",
        req(
            "INVITE",
            "sip:bob@example.com",
            ("Contact", "<sip:alice@pc33.example.com>"),
            ("Supported", "100rel"),
            ("Subject", "hi"),
            ("Content-Type", "application/sdp"),
            body=b"v=0\r\n",
        ),
        (
            f"INVITE sip:bob@example.com SIP/2.0\r\nv: {VIA}\r\nf: {FROM}\r\nt: {TO}\r\n"
            f"i: {CALL_ID}\r\nm: <sip:alice@pc33.example.com>\r\nk: 100rel\r\ns: hi\r\n"
            "c: application/sdp\r\nCSeq: 1 INVITE\r\nl: 5\r\n\r\nv=0\r\n"
        ).encode(),
    ),
    # Header names are case-insensitive; LWS around the colon is not part of anything.
    simple(
        "odd-case-and-lws",
        req("OPTIONS", "sip:bob@example.com", ("Max-Forwards", "70")),
        (
            f"OPTIONS sip:bob@example.com SIP/2.0\r\nVIA :{VIA}\r\nfrom:   {FROM}\r\n"
            f"tO\t:\t{TO}\r\ncall-id: {CALL_ID}  \r\nmax-FORWARDS: 70\r\ncseq: 1 OPTIONS\r\n"
            "CONTENT-LENGTH : 0\r\n\r\n"
        ).encode(),
    ),
    # Folding (CRLF + SP/HTAB) is one SP (RFC 3261 §7.3.1).
    simple(
        "folding",
        req(
            "OPTIONS",
            "sip:bob@example.com",
            ("Subject", "one two three"),
            ("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
        ),
        (
            f"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: {VIA}\r\nFrom: {FROM}\r\nTo: {TO}\r\n"
            f"Call-ID: {CALL_ID}\r\nSubject: one\r\n two\r\n\t three\r\n"
            "Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode(),
    ),
    # Leading CRLFs before the start line are ignored (RFC 3261 §7.5).
    simple(
        "leading-crlf",
        req("OPTIONS", "sip:bob@example.com"),
        b"\r\n\r\n" + req("OPTIONS", "sip:bob@example.com")[1],
    ),
    # Unknown headers keep the sender's spelling and their value as it is.
    simple(
        "unknown-headers",
        req(
            "OPTIONS",
            "sip:bob@example.com",
            ("X-Custom-Header", 'a, "b;c" <d>;e=f'),
            ("x-empty", ""),
        ),
    ),
    simple("ipv6-request-uri", req("OPTIONS", "sip:bob@[2001:db8::10]:5060")),
    simple("ipv6-request-uri-no-port", req("OPTIONS", "sip:[2001:db8::10];transport=tcp")),
    simple("tel-uri", req("INVITE", "tel:+1-201-555-0123;phone-context=example.com")),
    simple("sips-uri", req("INVITE", "sips:bob@example.com;transport=tls")),
    simple("absolute-uri", req("OPTIONS", "urn:service:sos")),
    simple("unknown-method", req("FOOBAR", "sip:bob@example.com")),
    simple("escaped-user", req("OPTIONS", "sip:alice%20smith@example.com")),
    simple("no-content-length", req("OPTIONS", "sip:bob@example.com"), None),
]


@pytest.mark.parametrize(("data", "expected", "canonical"), SIMPLE_CASES)
def test_simple_cases_parse(data: bytes, expected: Request | Response, canonical: bytes) -> None:
    message = parse_message(data)
    message.validate()
    assert message == expected
    assert type(message) is type(expected)


@pytest.mark.parametrize(("data", "expected", "canonical"), SIMPLE_CASES)
def test_simple_cases_serialise(
    data: bytes, expected: Request | Response, canonical: bytes
) -> None:
    assert expected.to_bytes() == canonical
    assert parse_message(canonical) == expected
    assert parse_stream_message(canonical) == expected


def base_request(
    *extra: str,
    body: bytes = b"",
    length: str | None = None,
    method: str = "OPTIONS",
    uri: str = "sip:bob@example.com",
) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {VIA}",
        f"From: {FROM}",
        f"To: {TO}",
        f"Call-ID: {CALL_ID}",
        f"CSeq: 1 {method}",
        *extra,
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def base_response(status: str = "200 OK", *extra: str) -> bytes:
    lines = [
        f"SIP/2.0 {status}",
        f"Via: {VIA}",
        f"From: {FROM}",
        f"To: {TO};tag=8321234356",
        f"Call-ID: {CALL_ID}",
        "CSeq: 1 INVITE",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_valid(data: bytes) -> Request | Response:
    message = parse_message(data)
    message.validate()
    return message


# --- compact forms, folding, multi-value headers --------------------------------------


@pytest.mark.parametrize(
    ("compact", "long"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
    ],
)
def test_compact_form_is_the_long_header(compact: str, long: str) -> None:
    fields = HeaderList()
    fields.add(compact.upper(), "value")
    assert fields.get(long) == "value"
    assert fields.get(long.upper()) == "value"
    assert fields.get(compact) == "value"
    assert long in fields
    assert list(fields) == [(long, "value")]


def test_folded_values_are_unfolded_to_one_space() -> None:
    message = parse_valid(
        base_request("Subject: a\r\n b \r\n\t\tc", "X-Fold:\r\n  leading", length="0")
    )
    assert message.headers.get("Subject") == "a b c"
    assert message.headers.get("X-Fold") == "leading"


def test_folded_start_of_cseq_and_via() -> None:
    data = base_request(length="0").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1\r\n OPTIONS")
    data = data.replace(b"Via: SIP/2.0/UDP", b"Via: SIP / 2.0\r\n\t/ UDP")
    message = parse_valid(data)
    assert (message.cseq.seq, message.cseq.method) == (1, "OPTIONS")
    assert message.top_via.transport == "UDP"
    assert message.top_via.host == "pc33.example.com"


def test_contact_list_with_commas_inside_quotes_and_brackets() -> None:
    message = parse_valid(
        base_request(
            'Contact: "Doe, John" <sip:j.doe@example.com;x=1>;q=0.5, <sip:k,l@e.example.com>,'
            ' "a<b>, c" <sip:m@f.example.com>;expires=60, sip:plain@example.com;q=1',
            length="0",
        )
    )
    contacts = message.contacts
    assert [c.display for c in contacts] == ["Doe, John", None, "a<b>, c", None]
    assert [str(c.uri) for c in contacts] == [
        "sip:j.doe@example.com;x=1",
        "sip:k,l@e.example.com",
        "sip:m@f.example.com",
        "sip:plain@example.com",
    ]
    assert [c.params for c in contacts] == [{"q": "0.5"}, {}, {"expires": "60"}, {"q": "1"}]
    assert message.headers.get_list("Contact")[1] == "<sip:k,l@e.example.com>"


def test_multi_value_headers_across_lines_and_commas() -> None:
    message = parse_valid(
        base_request(
            "Via: SIP/2.0/TCP b.example.com;branch=z9hG4bKb, SIP/2.0/UDP c.example.com",
            "Route: <sip:r1.example.com;lr>",
            "Route: <sip:r2.example.com;lr>, <sip:r3.example.com;lr>",
            "Record-Route: <sip:rr.example.com;lr>",
            "Accept: application/sdp, text/plain",
            "Accept: application/pidf+xml",
            length="0",
        )
    )
    assert [v.host for v in message.vias] == ["pc33.example.com", "b.example.com", "c.example.com"]
    assert message.top_via.host == "pc33.example.com"
    assert [sip_host(r.uri) for r in message.routes] == [
        "r1.example.com",
        "r2.example.com",
        "r3.example.com",
    ]
    assert [sip_host(r.uri) for r in message.record_routes] == ["rr.example.com"]
    assert message.headers.get_list("Accept") == [
        "application/sdp",
        "text/plain",
        "application/pidf+xml",
    ]
    assert message.headers.count("Route") == 2


def sip_host(uri: object) -> str:
    assert isinstance(uri, SipUri)
    return uri.host


def test_unknown_header_value_is_never_split() -> None:
    message = parse_valid(base_request("X-List: a, b;c=d, <e,f>", length="0"))
    assert message.headers.get_all("X-List") == ["a, b;c=d, <e,f>"]


# --- name-addr, quoting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ("<sip:a@b.example.com>", None, "sip:a@b.example.com", {}),
        ('"" <sip:a@b.example.com>', "", "sip:a@b.example.com", {}),
        (
            '"Quoted \\"x\\" \\\\ y" <sip:a@b.example.com>',
            'Quoted "x" \\ y',
            "sip:a@b.example.com",
            {},
        ),
        (
            "Two  Tokens <sip:a@b.example.com>;tag=9",
            "Two Tokens",
            "sip:a@b.example.com",
            {"tag": "9"},
        ),
        ('"Ünïcødé 大" <sip:a@b.example.com>', "Ünïcødé 大", "sip:a@b.example.com", {}),
        ("sip:a@b.example.com;tag=9", None, "sip:a@b.example.com", {"tag": "9"}),
        ("sip:a@b.example.com ; tag = 9", None, "sip:a@b.example.com", {"tag": "9"}),
        (
            "<sip:a@b.example.com;user=phone>;tag=9",
            None,
            "sip:a@b.example.com;user=phone",
            {"tag": "9"},
        ),
        (
            '<sip:a@b.example.com>;x="quoted;value"',
            None,
            "sip:a@b.example.com",
            {"x": '"quoted;value"'},
        ),
        ("<tel:+12015550123>", None, "tel:+12015550123", {}),
        ("<urn:service:sos>", None, "urn:service:sos", {}),
    ],
)
def test_name_addr_forms(
    value: str, display: str | None, uri: str, params: dict[str, str | None]
) -> None:
    message = parse_valid(
        base_request("X-Dummy: 1", length="0").replace(
            f"To: {TO}".encode(), f"To: {value}".encode()
        )
    )
    assert message.to.display == display
    assert str(message.to.uri) == uri
    assert message.to.params == params
    # Rendered back, it parses to the same address.
    again = parse_valid(message.to_bytes())
    assert again.to == message.to


# --- URIs -----------------------------------------------------------------------------


def test_ipv6_references_in_uri_and_via() -> None:
    message = parse_valid(
        base_request(
            "Contact: <sip:alice@[2001:db8::20]:5070;transport=tcp>",
            length="0",
            uri="sip:bob@[2001:db8::10]:5060",
        ).replace(
            VIA.encode(),
            b"SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKv6;received=2001:db8::9;rport",
        )
    )
    assert isinstance(message, Request)
    assert isinstance(message.uri, SipUri)
    assert (message.uri.host, message.uri.port) == ("[2001:db8::10]", 5060)
    assert message.uri.host_port == "[2001:db8::10]:5060"
    via = message.top_via
    assert (via.host, via.port, via.sent_by) == ("[2001:db8::10]", 5060, "[2001:db8::10]:5060")
    assert via.received == "2001:db8::9"
    assert via.rport_requested and via.rport is None
    contact = message.contacts[0].uri
    assert isinstance(contact, SipUri)
    assert (contact.host, contact.port, contact.param("transport")) == (
        "[2001:db8::20]",
        5070,
        "tcp",
    )


@pytest.mark.parametrize(
    "text",
    [
        "sip:bob@[2001:db8::10",
        "sip:bob@[2001:db8::10]x",
        "sip:bob@2001:db8::10",
        "sip:bob@example.com:",
        "sip:bob@example.com:65536",
        "sip:bob@example.com:５０６０",
        "sip:@example.com",
        "sip:",
        "sip:bob@exa mple.com",
        "sip:bob@example.com;",
        "sip:bob@example.com;x=",
        "sip:bob@example.com?h",
        "tel:",
        "no-scheme",
        "1sip:x",
        "",
        "sip:<bob>@example.com",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=22")
    assert isinstance(uri, TelUri)
    assert uri.number == "+1-201-555-0123"
    assert uri.params == {"phone-context": "example.com", "ext": "22"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=22"


def test_tel_uri_params_escape_round_trip() -> None:
    uri = TelUri(number="+12015550123", params={"x": "a;b=c"})
    assert str(uri) == "tel:+12015550123;x=a%3Bb%3Dc"
    assert parse_uri(str(uri)) == uri


def test_sips_and_scheme_case() -> None:
    uri = parse_uri("SIPS:Bob@Example.COM:5061;Transport=TLS")
    assert isinstance(uri, SipUri)
    assert uri.scheme == "sips"
    assert (uri.user, uri.host, uri.port) == ("Bob", "Example.COM", 5061)
    assert uri.param("transport") == "TLS"
    other = parse_uri("nobodyKnowsThisScheme:x")
    assert isinstance(other, AbsoluteUri)
    assert other.scheme == "nobodyKnowsThisScheme"


@pytest.mark.parametrize(
    ("text", "user", "password", "params", "headers", "canonical"),
    [
        ("sip:%61lice@example.com", "alice", None, {}, {}, "sip:alice@example.com"),
        ("sip:a%20b@example.com", "a b", None, {}, {}, "sip:a%20b@example.com"),
        ("sip:a%25b@example.com", "a%b", None, {}, {}, "sip:a%25b@example.com"),
        ("sip:a%2@example.com", "a%2", None, {}, {}, "sip:a%252@example.com"),
        ("sip:a%e5%a4%a7@example.com", "a大", None, {}, {}, "sip:a%E5%A4%A7@example.com"),
        ("sip:a%ff@example.com", "a\udcff", None, {}, {}, "sip:a%FF@example.com"),
        ("sip:u:p%40ss@example.com", "u", "p@ss", {}, {}, "sip:u:p%40ss@example.com"),
        ("sip:+1;a=b@example.com", "+1;a=b", None, {}, {}, "sip:+1;a=b@example.com"),
        (
            "sip:h.example.com;%6C%72;x=%41",
            None,
            None,
            {"lr": None, "x": "A"},
            {},
            "sip:h.example.com;lr;x=A",
        ),
        (
            "sip:h.example.com?Subject=hi%20there&Priority=urgent",
            None,
            None,
            {},
            {"Subject": "hi there", "Priority": "urgent"},
            "sip:h.example.com?Subject=hi%20there&Priority=urgent",
        ),
    ],
)
def test_percent_escapes(  # noqa: PLR0917 - one parameter per table column
    text: str,
    user: str | None,
    password: str | None,
    params: dict[str, str | None],
    headers: dict[str, str],
    canonical: str,
) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.password, uri.params, uri.headers) == (user, password, params, headers)
    assert str(uri) == canonical
    assert parse_uri(canonical) == uri


# --- Via ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "transport", "host", "port", "received", "rport_requested", "rport", "branch"),
    [
        (VIA, "UDP", "pc33.example.com", None, None, False, None, "z9hG4bK776asdhds"),
        (
            "SIP/2.0/tcp h.example.com:5070;branch=z9hG4bKx",
            "TCP",
            "h.example.com",
            5070,
            None,
            False,
            None,
            "z9hG4bKx",
        ),
        (
            "SIP/2.0/UDP 192.0.2.1;rport;branch=z9hG4bKx",
            "UDP",
            "192.0.2.1",
            None,
            None,
            True,
            None,
            "z9hG4bKx",
        ),
        (
            "SIP/2.0/UDP 192.0.2.1;received=198.51.100.7;rport=40123;branch=z9hG4bKx",
            "UDP",
            "192.0.2.1",
            None,
            "198.51.100.7",
            True,
            40123,
            "z9hG4bKx",
        ),
        (
            "SIP/2.0/UDP 192.0.2.1;RPORT=1;BRANCH=z9hG4bKy",
            "UDP",
            "192.0.2.1",
            None,
            None,
            True,
            1,
            "z9hG4bKy",
        ),
        (
            "SIP / 2.0 / TLS  [2001:db8::1] ; branch = z9hG4bKz",
            "TLS",
            "[2001:db8::1]",
            None,
            None,
            False,
            None,
            "z9hG4bKz",
        ),
        ("SIP/2.0/UDP 192.0.2.1", "UDP", "192.0.2.1", None, None, False, None, None),
    ],
)
def test_via_values(  # noqa: PLR0917 - one parameter per table column
    value: str,
    transport: str,
    host: str,
    port: int | None,
    received: str | None,
    rport_requested: bool,
    rport: int | None,
    branch: str | None,
) -> None:
    message = parse_valid(base_request(length="0").replace(VIA.encode(), value.encode()))
    via = message.top_via
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", transport, host, port)
    assert via.received == received
    assert via.rport_requested is rport_requested
    assert via.rport == rport
    assert via.branch == branch
    assert message.vias == [via]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "SIP/2.0/UDP/X 192.0.2.1",
        "SIP/2.0/UDP 192.0.2.1:",
        "SIP/2.0/UDP 192.0.2.1:99999",
        "SIP/2.0/UDP 192.0.2.1:５",
        "SIP/2.0/UDP [2001:db8::1",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/UDP 192.0.2.1;;branch=z9hG4bKx",
        "SIP/2.0/UDP 192.0.2.1;branch=",
        "SIP/2.0/UDP 192.0.2.1, ",
        "SIP/2.0/UDP bad_host!",
    ],
)
def test_bad_via_values(value: str) -> None:
    data = base_request(length="0").replace(VIA.encode(), value.encode())
    with pytest.raises(SipParseError) as info:
        parse_valid(data)
    assert info.value.status_code == 400


def test_magic_cookie_alone_is_no_rfc3261_branch() -> None:
    message = parse_valid(base_request(length="0").replace(b"z9hG4bK776asdhds", b"z9hG4bK"))
    assert message.top_via.branch == "z9hG4bK"
    assert not message.top_via.has_rfc3261_branch


# --- option tags ----------------------------------------------------------------------


def test_require_supported_unsupported() -> None:
    message = parse_valid(
        base_request(
            "Require: 100rel, timer",
            "Supported: replaces,  norefersub",
            "k: path",
            "Unsupported: foo, bar",
            "Proxy-Require: sec-agree",
            length="0",
        )
    )
    assert message.require == ["100rel", "timer"]
    assert message.supported == ["replaces", "norefersub", "path"]
    assert message.headers.get_list("Unsupported") == ["foo", "bar"]
    assert message.headers.get_list("Proxy-Require") == ["sec-agree"]


def test_absent_option_tag_headers_are_empty() -> None:
    message = parse_valid(base_request(length="0"))
    assert message.require == []
    assert message.supported == []


def test_empty_items_in_option_tags_are_ignored() -> None:
    message = parse_valid(base_request("Supported: ", "Require: a,,b", length="0"))
    assert message.supported == []
    assert message.require == ["a", "b"]


def test_invalid_option_tag_is_rejected() -> None:
    message = parse_message(base_request("Require: 100rel, not a token", length="0"))
    with pytest.raises(SipParseError):
        _ = message.require


# --- Content-Length and framing -------------------------------------------------------


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    message = parse_valid(base_request(body=b"hello world", length="5"))
    assert message.body == b"hello"
    assert message.to_bytes().endswith(b"Content-Length: 5\r\n\r\nhello")


def test_datagram_body_shorter_than_content_length_is_400() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(body=b"hello", length="6"))
    assert info.value.status_code == 400
    assert info.value.partial_headers is not None
    assert info.value.partial_headers.get("Call-ID") == CALL_ID


@pytest.mark.parametrize(
    "length", ["-1", "-999", "five", "", "5 5", "0x5", "+5", "5.0", "٥", "²", "99999999999"]
)
def test_bad_content_length_is_400(length: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(body=b"hello", length=length))
    assert info.value.status_code == 400


def test_content_length_with_leading_zeros() -> None:
    message = parse_valid(base_request(body=b"hello", length="005"))
    assert message.body == b"hello"
    assert message.to_bytes().endswith(b"Content-Length: 5\r\n\r\nhello")


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    data = base_request(body=b"v=0\r\n\r\nbody with \r\n\r\n inside")
    message = parse_valid(data)
    assert message.body == b"v=0\r\n\r\nbody with \r\n\r\n inside"
    assert message.headers.get("Content-Length") is None
    assert b"Content-Length: 28\r\n" in message.to_bytes()


def test_two_content_lengths_are_400() -> None:
    data = base_request("Content-Length: 5", "l: 5", body=b"hello")
    with pytest.raises(SipParseError):
        parse_message(data)


def test_serialisation_always_writes_the_true_length() -> None:
    message = parse_valid(base_request(body=b"abc", length="3"))
    message.body = b"abcdef"
    assert message.to_bytes().endswith(b"Content-Length: 6\r\n\r\nabcdef")
    assert parse_message(message.to_bytes()).body == b"abcdef"


def test_message_too_large_for_datagram_limit() -> None:
    data = base_request(length="0")
    parse_message(data, max_message_bytes=len(data))
    with pytest.raises(MessageTooLarge) as info:
        parse_message(data, max_message_bytes=len(data) - 1)
    assert info.value.status_code == 513


# --- StreamFramer -----------------------------------------------------------------------

INVITE = base_request(
    "Content-Type: application/sdp", body=SDP, length=str(len(SDP)), method="INVITE"
)
OPTIONS = base_request(length="0")
RESPONSE = base_response()


def drain(framer: StreamFramer) -> list[bytes]:
    result = []
    while (message := framer.next_message()) is not None:
        result.append(message)
    return result


def test_framer_byte_by_byte() -> None:
    framer = StreamFramer()
    received: list[bytes] = []
    for octet in INVITE + OPTIONS + RESPONSE:
        framer.feed(bytes([octet]))
        received.extend(drain(framer))
    assert received == [INVITE, OPTIONS, RESPONSE]
    assert framer.buffered == 0
    assert parse_stream_message(received[0]).body == SDP
    assert isinstance(parse_stream_message(received[2]), Response)


def test_framer_pipelined_messages_in_one_feed() -> None:
    framer = StreamFramer()
    framer.feed(INVITE + OPTIONS + INVITE[:20])
    assert framer.next_message() == INVITE
    assert framer.next_message() == OPTIONS
    assert framer.next_message() is None
    assert framer.buffered == 20
    framer.feed(INVITE[20:])
    assert drain(framer) == [INVITE]


def test_framer_skips_crlf_keepalives() -> None:
    framer = StreamFramer()
    framer.feed(b"\r\n\r\n")
    assert framer.next_message() is None
    framer.feed(b"\r\n" + OPTIONS + b"\r\n\r\n\r\n" + RESPONSE + b"\r")
    assert drain(framer) == [OPTIONS, RESPONSE]
    framer.feed(b"\n")
    assert framer.next_message() is None
    assert framer.buffered == 0


def test_framer_missing_content_length_is_an_error() -> None:
    framer = StreamFramer()
    framer.feed(base_request())
    with pytest.raises(SipParseError) as info:
        framer.next_message()
    assert info.value.status_code == 400
    assert info.value.partial_headers is not None
    assert info.value.partial_headers.get("Call-ID") == CALL_ID


def test_framer_missing_content_length_on_a_response_is_marked() -> None:
    framer = StreamFramer()
    framer.feed(base_response().replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(SipParseError) as info:
        framer.next_message()
    assert info.value.is_response is True


@pytest.mark.parametrize("length", ["-1", "five", "²", "5, 5"])
def test_framer_bad_content_length_is_an_error(length: str) -> None:
    framer = StreamFramer()
    framer.feed(base_request(length=length))
    with pytest.raises(SipParseError):
        framer.next_message()


def test_framer_header_section_over_the_limit() -> None:
    framer = StreamFramer(max_message_bytes=200)
    framer.feed(b"INVITE sip:bob@example.com SIP/2.0\r\n")
    assert framer.next_message() is None
    framer.feed(b"X-Long: " + b"a" * 300)
    with pytest.raises(MessageTooLarge) as info:
        framer.next_message()
    assert info.value.status_code == 513


def test_framer_body_over_the_limit() -> None:
    framer = StreamFramer(max_message_bytes=1000)
    framer.feed(base_request(length="5000"))
    with pytest.raises(MessageTooLarge):
        framer.next_message()


def test_framer_waits_for_a_long_body() -> None:
    framer = StreamFramer()
    data = base_request(body=b"x" * 154, length="9999")
    framer.feed(data)
    assert framer.next_message() is None
    assert framer.next_message() is None
    framer.feed(b"y" * (9999 - 154 - 1))
    assert framer.next_message() is None
    framer.feed(b"z" + OPTIONS)
    message = framer.next_message()
    assert message is not None
    assert len(parse_stream_message(message).body) == 9999
    assert drain(framer) == [OPTIONS]


def test_framer_reads_a_head_once_while_the_body_trickles_in() -> None:
    framer = StreamFramer()
    data = INVITE + OPTIONS
    for index in range(len(data)):
        framer.feed(data[index : index + 1])
        if index < len(INVITE) - 1:
            assert framer.next_message() is None
        elif index == len(INVITE) - 1:
            assert framer.next_message() == INVITE
    assert framer.next_message() == OPTIONS
    assert framer.heads_read == 2


def test_stream_message_needs_content_length() -> None:
    with pytest.raises(SipParseError):
        parse_stream_message(base_request())


# --- HeaderList and the parsed cache ------------------------------------------------------


def test_set_invalidates_the_parsed_cache() -> None:
    message = parse_valid(base_request(length="0"))
    assert message.call_id == CALL_ID
    message.headers.set("Call-ID", "changed@example.com")
    assert message.call_id == "changed@example.com"
    message.headers.set("i", "compact@example.com")
    assert message.call_id == "compact@example.com"
    assert message.headers.count("Call-ID") == 1
    message.headers.set("CSeq", "7 OPTIONS")
    assert message.cseq.seq == 7
    message.headers.set("To", "<sip:carol@example.com>;tag=x")
    assert message.to_tag == "x"


def test_insert_first_invalidates_the_parsed_cache() -> None:
    message = parse_valid(base_request(length="0"))
    assert message.top_via.host == "pc33.example.com"
    assert len(message.vias) == 1
    message.headers.insert_first("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
    assert message.top_via.host == "proxy.example.com"
    assert [v.host for v in message.vias] == ["proxy.example.com", "pc33.example.com"]
    fields = [name for name, _ in message.headers]
    assert fields.index("Via") == 0


def test_remove_invalidates_the_parsed_cache() -> None:
    message = parse_valid(base_request("Max-Forwards: 70", length="0"))
    assert message.max_forwards == 70
    message.headers.remove("Max-Forwards")
    assert message.max_forwards is None
    assert message.routes == []
    message.headers.add("Route", "<sip:r.example.com;lr>")
    assert [sip_host(r.uri) for r in message.routes] == ["r.example.com"]
    message.headers.remove("Via")
    with pytest.raises(SipParseError):
        _ = message.top_via


def test_set_keeps_the_first_position_and_drops_the_rest() -> None:
    fields = HeaderList()
    fields.add("X-A", "1")
    fields.add("Route", "<sip:1>")
    fields.add("X-B", "2")
    fields.add("Route", "<sip:2>")
    fields.set("route", "<sip:3>")
    assert list(fields) == [("X-A", "1"), ("Route", "<sip:3>"), ("X-B", "2")]
    fields.set("X-C", "3")
    assert list(fields)[-1] == ("X-C", "3")


def test_header_list_lookups() -> None:
    fields = HeaderList()
    fields.add("X-Thing", "1")
    fields.add("x-thing", "2")
    assert fields.get("X-THING") == "1"
    assert fields.get_all("x-Thing") == ["1", "2"]
    assert fields.count("X-Thing") == 2
    assert "x-thing" in fields
    assert "Nope" not in fields
    assert 5 not in fields
    assert fields.get("Nope") is None
    assert list(fields) == [("X-Thing", "1"), ("x-thing", "2")]
    copy = fields.copy()
    copy.remove("X-Thing")
    assert len(copy) == 0
    assert len(fields) == 2
    assert fields != copy


def test_header_list_equality_ignores_spelling_only() -> None:
    a = HeaderList()
    a.add("i", "x")
    b = HeaderList()
    b.add("CALL-ID", "x")
    assert a == b
    b.add("To", "<sip:a@b>")
    assert a != b


# --- numeric bounds ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("70", 70), ("255", 255), ("0070", 70)])
def test_max_forwards_in_range(value: str, expected: int) -> None:
    assert parse_valid(base_request(f"Max-Forwards: {value}", length="0")).max_forwards == expected


@pytest.mark.parametrize("value", ["256", "-1", "300", "seventy", "", "7 0", "1" * 20, "٣"])
def test_max_forwards_out_of_range_is_400(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_valid(base_request(f"Max-Forwards: {value}", length="0"))
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("value", "seq"), [("0 OPTIONS", 0), ("2147483647 OPTIONS", 2**31 - 1), ("1\tOPTIONS", 1)]
)
def test_cseq_in_range(value: str, seq: int) -> None:
    data = base_request(length="0").replace(b"CSeq: 1 OPTIONS", f"CSeq: {value}".encode())
    assert parse_valid(data).cseq.seq == seq


@pytest.mark.parametrize(
    "value",
    [
        "2147483648 OPTIONS",
        "4294967296 OPTIONS",
        "36893488147419103232 OPTIONS",
        "-1 OPTIONS",
        "OPTIONS",
        "1",
        "1 OPTIONS extra",
        "x OPTIONS",
        "² OPTIONS",
        "1 INVITE",
    ],
)
def test_bad_cseq_is_400(value: str) -> None:
    data = base_request(length="0").replace(b"CSeq: 1 OPTIONS", f"CSeq: {value}".encode())
    with pytest.raises(SipParseError) as info:
        parse_valid(data)
    assert info.value.status_code == 400


@pytest.mark.parametrize("code", ["100", "199", "200", "302", "486", "599", "699"])
def test_status_codes_in_range(code: str) -> None:
    message = parse_valid(base_response(f"{code} Whatever"))
    assert isinstance(message, Response)
    assert message.status_code == int(code)


@pytest.mark.parametrize(
    "status",
    [
        "099 Low",
        "700 High",
        "999 X",
        "1000 X",
        "99 X",
        "20 X",
        "abc X",
        "2OO OK",
        "1²3 X",
        "４８６ Busy",
        "4294967301 Wrapped",
        "",
    ],
)
def test_status_codes_outside_100_699_are_response_errors(status: str) -> None:
    data = base_response(status)
    with pytest.raises(SipParseError) as info:
        parse_valid(data)
    assert info.value.is_response is True


def test_status_line_without_the_space_before_an_empty_reason() -> None:
    """Liberal: ``SIP/2.0 200`` (no SP) reads as an empty reason; it is rendered with the SP."""
    message = parse_valid(base_response("200"))
    assert isinstance(message, Response)
    assert (message.status_code, message.reason) == (200, "")
    assert message.to_bytes().startswith(b"SIP/2.0 200 \r\n")


def test_error_in_response_headers_is_marked_as_response() -> None:
    data = base_response("200 OK").replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.is_response is True


# --- start line and other rejects -----------------------------------------------------------


BAD_CASES = [
    pytest.param(b"", 400, id="empty"),
    pytest.param(b"\r\n\r\n", 400, id="only-crlf"),
    pytest.param(base_request(length="0").replace(b"\r\n\r\n", b"\r\n"), 400, id="no-empty-line"),
    pytest.param(
        base_request(length="0").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, id="sip-3.0"
    ),
    pytest.param(
        base_request(length="0").replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1), 400, id="http"
    ),
    pytest.param(
        base_request(length="0").replace(b"OPTIONS sip", b"OPT IONS sip", 1), 400, id="sp-method"
    ),
    pytest.param(
        base_request(length="0").replace(b"OPTIONS sip", b"OPT@ONS sip", 1), 400, id="bad-method"
    ),
    pytest.param(base_request(length="0", uri="sip:bob@example.com?X=y"), 400, id="ruri-headers"),
    pytest.param(base_request(length="0", uri="<sip:bob@example.com>"), 400, id="ruri-brackets"),
    pytest.param(base_request("Bad Header: x", length="0"), 400, id="space-in-name"),
    pytest.param(base_request("NoColon", length="0"), 400, id="no-colon"),
    pytest.param(base_request(": value", length="0"), 400, id="empty-name"),
    pytest.param(base_request("X-LF: a\nb", length="0"), 400, id="bare-lf"),
    pytest.param(base_request("X-CR: a\rb", length="0"), 400, id="bare-cr"),
    pytest.param(
        base_request(length="0").replace(b"Call-ID: " + CALL_ID.encode(), b"Call-ID: a b"),
        400,
        id="call-id-space",
    ),
    pytest.param(
        base_request(length="0").replace(b"Call-ID: " + CALL_ID.encode(), b"Call-ID:"),
        400,
        id="call-id-empty",
    ),
    pytest.param(base_request("Call-ID: second@example.com", length="0"), 400, id="two-call-ids"),
    pytest.param(base_request("To: <sip:x@y>", length="0"), 400, id="two-tos"),
    pytest.param(
        base_request(length="0").replace(f"To: {TO}".encode(), b"To: "), 400, id="empty-to"
    ),
    pytest.param(
        base_request(length="0").replace(f"To: {TO}".encode(), b'To: "open <sip:x@y>'),
        400,
        id="unbalanced-quote",
    ),
    pytest.param(
        base_request(length="0").replace(f"From: {FROM}".encode(), b"From: sip:a@b?x=y;tag=1"),
        400,
        id="bare-uri-with-question-mark",
    ),
    pytest.param(
        base_request(length="0").replace(f"Via: {VIA}\r\n".encode(), b""), 400, id="no-via"
    ),
    pytest.param(base_request("Content-Type: nonsense", length="0"), 400, id="bad-content-type"),
]


@pytest.mark.parametrize(("data", "status"), BAD_CASES)
def test_bad_requests(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_valid(data)
    assert info.value.status_code == status
    assert info.value.is_response is False


@pytest.mark.parametrize("bad", [b"\n", b"\r", b"\r\r\n"])
def test_bare_cr_lf_never_reaches_the_headers_handed_out(bad: bytes) -> None:
    data = base_request(length="0").replace(
        f"To: {TO}".encode(), b"To: <sip:bob@example.com>" + bad + b"Injected: yes"
    )
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    partial = info.value.partial_headers
    assert partial is not None
    assert partial.get("Call-ID") == CALL_ID
    assert partial.get("Via") == VIA
    assert all("\r" not in value and "\n" not in value for _, value in partial)
    assert partial.get("To") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "a\r\nInjected: yes"),
        ("Subject", "a\nb"),
        ("X-Thing", "a\rb"),
        ("Bad Name", "x"),
        ("X-A: b\r\nX-B", "x"),
        ("", "x"),
    ],
)
def test_header_list_refuses_what_would_inject_lines(name: str, value: str) -> None:
    fields = HeaderList()
    with pytest.raises(SipUsageError):
        fields.add(name, value)
    with pytest.raises(SipUsageError):
        fields.set(name, value)
    with pytest.raises(SipUsageError):
        fields.insert_first(name, value)
    assert len(fields) == 0


def test_display_name_with_crlf_cannot_reach_the_wire() -> None:
    address = NameAddr(uri=parse_uri("sip:a@example.com"), display="x\r\nInjected: yes")
    with pytest.raises(SipUsageError):
        HeaderList().add("From", str(address))


def test_cseq_method_mismatch_known_and_unknown() -> None:
    known = base_request(length="0").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    with pytest.raises(SipParseError) as info:
        parse_message(known)
    assert info.value.status_code == 400
    unknown = base_request(length="0", method="NEWMETHOD").replace(
        b"CSeq: 1 NEWMETHOD", b"CSeq: 1 INVITE"
    )
    with pytest.raises(SipParseError) as info:
        parse_message(unknown)
    assert info.value.status_code == 501


def test_lower_case_version_is_accepted_and_rendered_canonically() -> None:
    data = base_request(length="0").replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1)
    message = parse_valid(data)
    assert message.to_bytes().startswith(b"OPTIONS sip:bob@example.com SIP/2.0\r\n")


def test_non_utf8_octets_survive_a_round_trip() -> None:
    data = base_request("X-Binary: \xff\xfe latin-1 \xe9", length="0")
    data = data.replace("\xff\xfe latin-1 \xe9".encode(), b"\xff\xfe latin-1 \xe9")
    message = parse_valid(data)
    assert message.to_bytes() == data
