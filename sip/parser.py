"""Bytes → ``Request``/``Response`` (RFC 3261 §7, §18.3) and stream framing.

The parser reads the start line and splits header lines once; it eagerly
validates only what every message needs on the hot path (Via, From/To tags,
Call-ID, CSeq, Max-Forwards, Content-Length).  Everything else stays text until
asked for.  Every fault raises ``SipParseError`` (or a subclass) carrying the
status a UAS answers with and the header lines split so far.
"""

from __future__ import annotations

import re

from sip.errors import (
    MessageTooLarge,
    MethodNotImplemented,
    SipParseError,
    VersionNotSupported,
)
from sip.grammar import is_digits, is_token
from sip.headers import (
    HeaderList,
    canonical_name,
    header_names,
    name_entry,
    parse_cseq,
    parse_name_addr,
    parse_via_values,
)
from sip.message import SINGLE_VALUE_HEADERS, Request, Response, parse_max_forwards
from sip.uri import SipUri

# RFC 3261 §7.3.1: a CRLF followed by whitespace continues the header line and
# is equivalent to a single SP.
_FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_EMPTY_LINE = b"\r\n\r\n"

# Methods this stack knows; an unknown method whose CSeq disagrees is answered
# 501 rather than 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "PUBLISH",
    }
)

DEFAULT_MAX_MESSAGE_BYTES = 65535


def _name_key(name: str) -> tuple[str, str]:
    entry = name_entry(name)
    if entry is None:
        raise SipParseError("invalid header name")
    return entry


def split_head(head: bytes) -> tuple[str, HeaderList, SipParseError | None]:
    """Decode and unfold a message head; return the start line, header lines, first fault.

    Header lines are collected even after a malformed one so a UAS can still
    copy Via/From/To/Call-ID/CSeq into its error response.
    """
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    line_ends = len(lines) - 1
    # A bare CR or LF is no line end in SIP (§7) and allowed nowhere in the
    # header section; another parser may read it as one, so never pass it on.
    bare_cr_or_lf = text.count("\r") != line_ends or text.count("\n") != line_ends
    fault = SipParseError("bare CR or LF in header section") if bare_cr_or_lf else None
    fields: list[tuple[str, str, str]] = []
    append = fields.append
    known = header_names()
    try:
        # Fast loop: every name seen before, written without space before ':'.
        # A line without ':', a folded continuation line (leading SP/HTAB) or
        # a new name raises KeyError and leaves for the careful loop.
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            key, spelling = known[name if colon else ""]
            append((key, spelling, value.strip(" \t")))
    except KeyError:
        if "\r\n " in text or "\r\n\t" in text:
            lines = _FOLD_RE.sub(" ", text).split("\r\n")
        fields, line_fault = _split_lines_carefully(lines[1:])
        fault = fault or line_fault
    if bare_cr_or_lf:
        # The fields go out with the error so a UAS can copy them into its
        # answer: never hand out a value that would carry the bare CR/LF along.
        fields = [f for f in fields if "\r" not in f[2] and "\n" not in f[2]]
    return lines[0], HeaderList(fields), fault


def _split_lines_carefully(
    lines: list[str],
) -> tuple[list[tuple[str, str, str]], SipParseError | None]:
    fields: list[tuple[str, str, str]] = []
    fault: SipParseError | None = None
    for line in lines:
        name, colon, value = line.partition(":")
        try:
            if not colon or not name:
                raise SipParseError("malformed header line")
            key, spelling = _name_key(name.rstrip(" \t"))
        except SipParseError as error:
            fault = fault or error
            continue
        fields.append((key, spelling, value.strip(" \t")))
    return fields, fault


def parse_message(data: bytes, *, max_message_bytes: int | None = None) -> Request | Response:
    """Parse one complete message as received in a UDP datagram.

    Datagram rules (RFC 3261 §18.3): a body longer than Content-Length is
    truncated; a shorter one is an error; without Content-Length the body is
    the rest of the datagram.  Octets before the start line that are CRLFs are
    ignored (§7.5).
    """
    return _parse(data, stream=False, max_message_bytes=max_message_bytes)


def parse_stream_message(data: bytes) -> Request | Response:
    """Parse one message cut out of a stream by ``StreamFramer`` (Content-Length required)."""
    return _parse(data, stream=True, max_message_bytes=None)


def _parse(data: bytes, *, stream: bool, max_message_bytes: int | None) -> Request | Response:
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    is_response = data.startswith(b"SIP/", start)
    if max_message_bytes is not None and len(data) > max_message_bytes:
        raise MessageTooLarge(is_response=is_response)
    end = data.find(_EMPTY_LINE, start)
    if end < 0:
        # Without the empty line we cannot know where the headers stop; still
        # split what is there so the error response can copy Via and friends.
        _, headers, _ = split_head(data[start:].rstrip(b"\r\n"))
        raise SipParseError(
            "no empty line after headers", partial_headers=headers, is_response=is_response
        )
    start_line, headers, fault = split_head(data[start:end])
    body = data[end + 4 :]
    try:
        if fault is not None:
            raise fault
        message: Request | Response = (
            _parse_status_line(start_line, headers)
            if is_response
            else _parse_request_line(start_line, headers)
        )
        first = _first_values(headers)
        message.body = _frame_body(first.get("content-length"), body, stream=stream)
        _check_hot_headers(message, first)
    except SipParseError as error:
        error.partial_headers = headers
        error.is_response = is_response
        raise
    return message


def _parse_request_line(line: str, headers: HeaderList) -> Request:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        # Extra or missing SP (RFC 4475 §3.1.2.8-10): reject, never re-emit it.
        raise SipParseError("malformed request line")
    method, uri_text, version = parts
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION_RE.match(version):
            raise VersionNotSupported(version)
        raise SipParseError("malformed SIP version")
    if method not in KNOWN_METHODS and not is_token(method):
        raise SipParseError("invalid method")
    if uri_text.startswith("<"):
        raise SipParseError("Request-URI in angle brackets")
    request = Request(method, uri_text, headers)
    uri = request.uri
    if isinstance(uri, SipUri) and uri.headers:
        # RFC 3261 §19.1.5: headers are not allowed in a Request-URI.
        raise SipParseError("headers in Request-URI")
    return request


def _parse_status_line(line: str, headers: HeaderList) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0":
        raise SipParseError("unsupported SIP version in response")
    if len(code) != 3 or not is_digits(code) or code[0] not in "123456":
        raise SipParseError("invalid status code")
    return Response(int(code), reason, headers)


def _frame_body(length_value: str | None, body: bytes, *, stream: bool) -> bytes:
    if length_value is None:
        if stream:
            raise SipParseError("missing Content-Length on a stream")
        return body
    text = length_value.strip()
    if not is_digits(text) or len(text) > 10:
        raise SipParseError("invalid Content-Length")
    length = int(text)
    if length > len(body):
        raise SipParseError("Content-Length larger than the body")
    return body if length == len(body) else body[:length]


def _first_values(headers: HeaderList) -> dict[str, str]:
    """Map each header key to its first value; a repeated single-value header is an error."""
    if headers.has_repeats():  # some header repeats: fine for Via, Route, not for CSeq
        keys = [f[0] for f in headers.fields()]
        for key in SINGLE_VALUE_HEADERS:
            if keys.count(key) > 1:
                raise SipParseError(f"more than one {canonical_name(key)} header")
    return headers.first_values()


def _check_hot_headers(message: Request | Response, first: dict[str, str]) -> None:
    """Validate and cache what every message needs (Via, From/To, Call-ID, CSeq, Max-Forwards)."""
    headers = message.headers
    try:
        via_line = first["via"]
        from_value = first["from"]
        to_value = first["to"]
        call_id = first["call-id"]
        cseq_value = first["cseq"]
    except KeyError as missing:
        raise SipParseError(f"missing {canonical_name(str(missing.args[0]))} header") from None
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError("invalid Call-ID")
    cseq = parse_cseq(cseq_value)
    cache = headers.cache
    cache["via-top-line"] = parse_via_values(via_line)
    cache["call-id"] = call_id
    cache["cseq"] = cseq
    cache["from"] = parse_name_addr(from_value)
    cache["to"] = parse_name_addr(to_value)
    cache["max-forwards"] = parse_max_forwards(first.get("max-forwards"))
    if isinstance(message, Request) and cseq.method != message.method:
        if message.method not in KNOWN_METHODS:
            raise MethodNotImplemented("CSeq method does not match the request method")
        raise SipParseError("CSeq method does not match the request method")


class StreamFramer:
    """Cuts complete messages out of a TCP byte stream by Content-Length (RFC 3261 §18.3).

    ``feed`` bytes, then call ``next_message`` until it returns None.  A
    framing fault raises ``SipParseError``; the connection must then be
    closed, as the stream position is lost.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_message_bytes = max_message_bytes
        # Octets already searched for the empty line without finding it, and the
        # length of the message whose head has been read, so a message arriving
        # in many small segments is neither re-searched nor re-split each time.
        self._scanned = 0
        self._total: int | None = None
        # Heads split so far: what the re-split rule above is tested by (a test cannot count
        # calls to split_head by patching it: a compiled module calls its functions directly).
        self.heads_read = 0

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_message(self) -> bytes | None:
        """Return the next complete message's bytes, or None when more data is needed."""
        buffer = self._buffer
        total = self._total
        if total is None:
            total = self._read_head(buffer)
            if total is None:
                return None
        if len(buffer) < total:
            return None
        self._total = None
        message = bytes(buffer[:total])
        del buffer[:total]
        return message

    def _read_head(self, buffer: bytearray) -> int | None:
        """Length of the message at the start of ``buffer`` once its head is complete."""
        # CRLF keep-alives (RFC 5626 §3.5.1) and stray CRLFs between messages.
        skip = 0
        while buffer.startswith(b"\r\n", skip):
            skip += 2
        if skip:
            del buffer[:skip]
            self._scanned = max(0, self._scanned - skip)
        end = buffer.find(_EMPTY_LINE, max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(buffer)
            if len(buffer) > self._max_message_bytes:
                raise MessageTooLarge("header section too long")
            return None
        self._scanned = 0
        self.heads_read += 1
        _, headers, _ = split_head(bytes(buffer[:end]))
        values = headers.get_all("Content-Length")
        is_response = buffer.startswith(b"SIP/")
        if len(values) != 1 or not is_digits(values[0].strip()) or len(values[0].strip()) > 10:
            raise SipParseError(
                "missing or invalid Content-Length on a stream",
                partial_headers=headers,
                is_response=is_response,
            )
        total = end + 4 + int(values[0].strip())
        if total > self._max_message_bytes:
            raise MessageTooLarge(partial_headers=headers, is_response=is_response)
        self._total = total
        return total
