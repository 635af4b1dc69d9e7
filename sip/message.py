"""SIP message model: ``Request`` and ``Response`` over a ``HeaderList`` and a bytes body.

Structured views are parsed on first access and cached in the header list
(which forgets them whenever it changes), so the hot path pays only for the
headers it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from sip.errors import SipParseError, SipUsageError
from sip.grammar import is_digits
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

_T = TypeVar("_T")

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

    def _parsed(self, key: str, build: Callable[[], _T]) -> _T:
        cache = self.headers.cache
        try:
            return cache[key]  # type: ignore[return-value]
        except KeyError:
            value = build()
            cache[key] = value
            return value

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    # The five accessors below run for every message; the parser fills their
    # cache entries, so they look there first without building a closure.

    @property
    def call_id(self) -> str:
        """Call-ID value (RFC 3261 §20.8)."""
        value = self.headers.cache.get("call-id")
        if value is None:
            value = self.headers.cache["call-id"] = self._required("Call-ID").strip()
        return cast(str, value)

    @property
    def cseq(self) -> CSeq:
        """Parsed CSeq."""
        value = self.headers.cache.get("cseq")
        if value is None:
            value = self.headers.cache["cseq"] = parse_cseq(self._required("CSeq"))
        return cast(CSeq, value)

    @property
    def from_(self) -> NameAddr:
        """Parsed From header."""
        value = self.headers.cache.get("from")
        if value is None:
            value = self.headers.cache["from"] = parse_name_addr(self._required("From"))
        return cast(NameAddr, value)

    @property
    def to(self) -> NameAddr:
        """Parsed To header."""
        value = self.headers.cache.get("to")
        if value is None:
            value = self.headers.cache["to"] = parse_name_addr(self._required("To"))
        return cast(NameAddr, value)

    @property
    def from_tag(self) -> str | None:
        """From tag, None for RFC 2543 peers that send none."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """To tag, None outside a dialog."""
        return self.to.tag

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first, across header lines and commas."""
        cache = self.headers.cache
        values = cache.get("via")
        if values is None:
            lines = self.headers.get_all("Via")
            if not lines:
                raise SipParseError("missing Via header")
            # The first line is usually parsed already (the parser's top Via).
            top = cache.get("via-top-line")
            if top is None:
                top = cache["via-top-line"] = parse_via_values(lines[0])
            if len(lines) == 1:
                values = top
            else:
                values = list(cast(list[Via], top))
                for line in lines[1:]:
                    values.extend(parse_via_values(line))
            cache["via"] = values
        return cast(list[Via], values)

    @property
    def top_via(self) -> Via:
        """Topmost Via value (parses only the first Via line)."""
        values = self.headers.cache.get("via-top-line")
        if values is None:
            values = self.headers.cache["via-top-line"] = parse_via_values(self._required("Via"))
        return cast(list[Via], values)[0]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), None when absent (RFC 2543 peers)."""

        cache = self.headers.cache
        if "max-forwards" not in cache:
            cache["max-forwards"] = parse_max_forwards(self.headers.get("Max-Forwards"))
        return cast(int | None, cache["max-forwards"])

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values (``*`` is returned as no contacts; REGISTER is not served here)."""

        def build() -> list[NameAddr]:
            result: list[NameAddr] = []
            for line in self.headers.get_all("Contact"):
                if line.strip() == "*":
                    continue
                result.extend(parse_name_addr_list(line))
            return result

        return self._parsed("contact", build)

    @property
    def routes(self) -> list[NameAddr]:
        """Route set as sent (RFC 3261 §20.34)."""
        return self._parsed("route", lambda: self._address_list("Route"))

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values (RFC 3261 §20.30)."""
        return self._parsed("record-route", lambda: self._address_list("Record-Route"))

    def _address_list(self, name: str) -> list[NameAddr]:
        result: list[NameAddr] = []
        for line in self.headers.get_all(name):
            result.extend(parse_name_addr_list(line))
        return result

    @property
    def require(self) -> list[str]:
        """Option tags in Require."""
        cache = self.headers.cache
        tags = cache.get("require")
        if tags is None:
            tags = cache["require"] = parse_option_tags(self.headers.get_list("Require"))
        return cast(list[str], tags)

    @property
    def supported(self) -> list[str]:
        """Option tags in Supported."""
        cache = self.headers.cache
        tags = cache.get("supported")
        if tags is None:
            tags = cache["supported"] = parse_option_tags(self.headers.get_list("Supported"))
        return cast(list[str], tags)

    @property
    def content_type(self) -> str | None:
        """Media type of the body, lower-case, without parameters (``application/sdp``)."""
        cache = self.headers.cache
        if "content-type" in cache:
            return cast(str | None, cache["content-type"])
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
        super().__init__(headers, body)
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
