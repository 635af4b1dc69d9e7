"""SIP message model: ``Request`` and ``Response`` over a ``HeaderList`` and a bytes body.

Structured views are parsed on first access and cached in the header list
(which forgets them whenever it changes), so the hot path pays only for the
headers it reads.
"""

from __future__ import annotations

from sip.errors import SipParseError, SipUsageError
from sip.grammar import get_param, is_digits, split_quoted
from sip.headers import (
    CSeq,
    HeaderList,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_option_tags,
    parse_via_values,
)
from sip.uri import Uri, parse_uri

SIP_VERSION = "SIP/2.0"

# Headers that may appear at most once (RFC 3261 §7.3.1 and §20); a second
# value makes the message ambiguous (RFC 4475 §3.3.8, §3.3.9).
SINGLE_VALUE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length")


def parse_max_forwards(value: str | None) -> int | None:
    """Max-Forwards as 0..255, None when absent; anything else is a 400."""
    if value is None:
        return None
    value = value.strip()
    if not is_digits(value) or len(value) > 10 or int(value) > 255:
        raise SipParseError("invalid Max-Forwards")
    return int(value)


class Message:
    """Fields shared by requests and responses."""

    __slots__ = ("body", "headers")

    def __init__(self, headers: HeaderList | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else HeaderList()
        self.body = body

    # -- parsed views --------------------------------------------------------------

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    # The accessors below run for every message; the parser fills their cache
    # entries.  The cache is typed ``Any`` so a typed local takes its value without
    # a ``cast`` call (a Python function call each time).

    @property
    def call_id(self) -> str:
        """Call-ID value (RFC 3261 §20.8)."""
        value: str | None = self.headers.cache.get("call-id")
        if value is None:
            value = self.headers.cache["call-id"] = self._required("Call-ID").strip()
        return value

    @property
    def cseq(self) -> CSeq:
        """Parsed CSeq."""
        value: CSeq | None = self.headers.cache.get("cseq")
        if value is None:
            value = self.headers.cache["cseq"] = parse_cseq(self._required("CSeq"))
        return value

    @property
    def from_(self) -> NameAddr:
        """Parsed From header."""
        value: NameAddr | None = self.headers.cache.get("from")
        if value is None:
            value = self.headers.cache["from"] = parse_name_addr(self._required("From"))
        return value

    @property
    def to(self) -> NameAddr:
        """Parsed To header."""
        value: NameAddr | None = self.headers.cache.get("to")
        if value is None:
            value = self.headers.cache["to"] = parse_name_addr(self._required("To"))
        return value

    @property
    def from_tag(self) -> str | None:
        """From tag, None for RFC 2543 peers that send none."""
        address: NameAddr | None = self.headers.cache.get("from")
        params = (address or self.from_).params
        return params["tag"] if "tag" in params else get_param(params, "tag")

    @property
    def to_tag(self) -> str | None:
        """To tag, None outside a dialog."""
        address: NameAddr | None = self.headers.cache.get("to")
        params = (address or self.to).params
        return params["tag"] if "tag" in params else get_param(params, "tag")

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first, across header lines and commas."""
        cache = self.headers.cache
        values: list[Via] | None = cache.get("via")
        if values is None:
            lines = self.headers.get_all("Via")
            if not lines:
                raise SipParseError("missing Via header")
            # The first line is usually parsed already (the parser's top Via).
            top: list[Via] | None = cache.get("via-top-line")
            if top is None:
                top = cache["via-top-line"] = parse_via_values(lines[0])
            if len(lines) == 1:
                values = top
            else:
                values = list(top)
                for line in lines[1:]:
                    values.extend(parse_via_values(line))
            cache["via"] = values
        return values

    @property
    def top_via(self) -> Via:
        """Topmost Via value (parses only the first Via line)."""
        values: list[Via] | None = self.headers.cache.get("via-top-line")
        if values is None:
            values = self.headers.cache["via-top-line"] = parse_via_values(self._required("Via"))
        return values[0]

    def replace_top_via(self, via: Via) -> None:
        """Put ``via`` in place of the topmost Via value, keeping it as the parsed top Via.

        For the ``received``/``rport`` stamp of RFC 3261 §18.2.1 / RFC 3581 §4: the
        header line is rewritten (other values of that line kept, ``", "``-joined) and
        the next ``top_via`` needs no parse.
        """
        headers = self.headers
        line = self._required("Via")
        values: list[Via] | None = headers.cache.get("via-top-line")
        if values is None:
            values = parse_via_values(line)
        rendered = str(via)
        if len(values) > 1:
            parts = split_quoted(line, ",")
            parts[0] = rendered
            rendered = ", ".join(part.strip() for part in parts)
        headers.replace_first("Via", rendered)
        headers.cache["via-top-line"] = [via, *values[1:]]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), None when absent (RFC 2543 peers)."""

        cache = self.headers.cache
        if "max-forwards" not in cache:
            cache["max-forwards"] = parse_max_forwards(self.headers.get("Max-Forwards"))
        value: int | None = cache["max-forwards"]
        return value

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (``*`` is returned as no contacts; REGISTER is not served here)."""
        headers = self.headers
        if "contact" not in headers.first_values():
            return []  # see require
        cache = headers.cache
        values: list[NameAddr] | None = cache.get("contact")
        if values is None:
            values = []
            for line in headers.get_all("Contact"):
                if line.strip() == "*":
                    continue
                values.extend(parse_name_addr_list(line))
            cache["contact"] = values
        return values

    @property
    def routes(self) -> list[NameAddr]:
        """Route set as sent (RFC 3261 §20.34)."""
        return self._address_list("route")

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values (RFC 3261 §20.30)."""
        return self._address_list("record-route")

    def _address_list(self, key: str) -> list[NameAddr]:
        headers = self.headers
        if key not in headers.first_values():
            return []  # see require
        cache = headers.cache
        values: list[NameAddr] | None = cache.get(key)
        if values is None:
            values = []
            for line in headers.get_all(key):
                values.extend(parse_name_addr_list(line))
            cache[key] = values
        return values

    @property
    def require(self) -> list[str]:
        """Option tags in Require."""
        headers = self.headers
        if "require" not in headers.first_values():
            return []  # not cached: an empty list kept per message is one more object to track
        tags: list[str] | None = headers.cache.get("require")
        if tags is None:
            tags = headers.cache["require"] = parse_option_tags(headers.get_list("Require"))
        return tags

    @property
    def supported(self) -> list[str]:
        """Option tags in Supported."""
        headers = self.headers
        if "supported" not in headers.first_values():
            return []  # see require
        tags: list[str] | None = headers.cache.get("supported")
        if tags is None:
            tags = headers.cache["supported"] = parse_option_tags(headers.get_list("Supported"))
        return tags

    @property
    def content_type(self) -> str | None:
        """Media type of the body, lower-case, without parameters (``application/sdp``)."""
        cache = self.headers.cache
        if "content-type" in cache:
            cached: str | None = cache["content-type"]
            return cached
        value = self.headers.get("Content-Type")
        media_type: str | None = None
        if value is not None:
            media = value.split(";", 1)[0].strip().lower()
            kind, slash, sub = media.partition("/")
            if not slash or not kind.strip() or not sub.strip():
                raise SipParseError("invalid Content-Type")
            media_type = f"{kind.strip()}/{sub.strip()}"
        cache["content-type"] = media_type
        return media_type

    def validate(self) -> None:
        """Parse every header the core understands, raising ``SipParseError`` on the first fault.

        The lazy accessors defer these errors; a UAS calls this once per new
        request before acting on it.
        """
        headers = self.headers
        if headers.has_repeats():
            for key in SINGLE_VALUE_HEADERS:
                if headers.count(key) > 1:
                    raise SipParseError(f"more than one {key} header")
        _ = (self.call_id, self.cseq, self.vias, self.max_forwards)
        _ = (self.require, self.supported, self.content_type)
        # URIs inside addresses are parsed lazily: parse them now.
        self.from_.check_uri()
        self.to.check_uri()
        first = headers.first_values()
        if "contact" in first:
            for address in self.contacts:
                _ = address.uri
        if "route" in first or "record-route" in first:
            for address in (*self.routes, *self.record_routes):
                _ = address.uri
        self._validate_start()

    def _validate_start(self) -> None:
        """Checks specific to requests or responses."""

    # -- serialisation -------------------------------------------------------------

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise with CRLF line ends and a Content-Length equal to the body size."""
        start_line = self._start_line()
        if "\r" in start_line or "\n" in start_line:
            # A method or reason phrase set by the application must not inject lines.
            raise SipUsageError("CR or LF in the start line")
        lines = [start_line]
        length_written = False
        for key, name, value in self.headers.fields():
            if key != "content-length":
                lines.append(f"{name}: {value}")
            elif not length_written:
                # Always the true length: a rebuilt message must never carry a stale one.
                lines.append(f"{name}: {len(self.body)}")
                length_written = True
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body


class Request(Message):
    """A SIP request."""

    __slots__ = ("_uri", "_uri_text", "method")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: HeaderList | None = None,
        body: bytes = b"",
    ) -> None:
        # Message.__init__ inlined: the parser builds one request per datagram.
        self.headers = headers if headers is not None else HeaderList()
        self.body = body
        self.method = method
        self._uri_text: str | None = None
        if isinstance(uri, str):
            self._uri = parse_uri(uri)
            self._uri_text = uri  # rendered as received, no re-escaping on the way out
        else:
            self._uri = uri

    @property
    def uri(self) -> Uri:
        """The Request-URI."""
        return self._uri

    @uri.setter
    def uri(self, value: Uri) -> None:
        self._uri = value
        self._uri_text = None

    def _start_line(self) -> str:
        uri_text = self._uri_text
        if uri_text is None:
            uri_text = self._uri_text = str(self._uri)
        return f"{self.method} {uri_text} {SIP_VERSION}"

    def _validate_start(self) -> None:
        if self.cseq.method != self.method:
            raise SipParseError("CSeq method does not match the request method")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and self.uri == other.uri
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status_code")

    def __init__(
        self,
        status_code: int,
        reason: str = "",
        headers: HeaderList | None = None,
        body: bytes = b"",
    ) -> None:
        # Message.__init__ inlined, as in Request.
        self.headers = headers if headers is not None else HeaderList()
        self.body = body
        self.status_code = status_code
        self.reason = reason

    def _start_line(self) -> str:
        return f"{SIP_VERSION} {self.status_code} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status_code == other.status_code
            and self.reason == other.reason
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]
