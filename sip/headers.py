"""Header list and the structured headers the core understands.

Header values are kept as unfolded text; structured views (``Via``,
``NameAddr``, ``CSeq``) are parsed only when asked for and cached until the
header list changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from sip.errors import SipParseError, SipUsageError
from sip.grammar import (
    TOKEN_CHARS,
    get_param,
    is_digits,
    is_token,
    parse_params,
    parse_quoted_string,
    quote,
    render_params,
    split_quoted,
)
from sip.uri import Uri, check_uri, parse_uri

# RFC 3261 §7.3.3 compact forms plus the registered ones (RFC 3515, 3841, 3892, 4028, 6665).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# Canonical spelling used when we serialise a header we recognise.
CANONICAL_NAMES: dict[str, str] = {
    name.lower(): name
    for name in (
        "Via",
        "Max-Forwards",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Route",
        "Record-Route",
        "Content-Type",
        "Content-Length",
        "Content-Encoding",
        "Content-Disposition",
        "Content-Language",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Expires",
        "User-Agent",
        "Server",
        "Subject",
        "Date",
        "Warning",
        "Retry-After",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Privacy",
        "Session-Expires",
        "Min-SE",
        "RSeq",
        "RAck",
        "Event",
        "Allow-Events",
        "Refer-To",
        "Referred-By",
        "Identity",
        "Identity-Info",
        "Reason",
        "Timestamp",
        "Organization",
        "Priority",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Call-Info",
        "Alert-Info",
        "Error-Info",
        "In-Reply-To",
        "Reply-To",
        "MIME-Version",
        "Min-Expires",
        "Content-Transfer-Encoding",
    )
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1); others are never split.
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "content-language",
        "allow-events",
        "p-asserted-identity",
        "privacy",
        "reason",
        "call-info",
        "alert-info",
        "error-info",
        "in-reply-to",
        "warning",
    }
)


# Header names as written → key.  Most names a stack ever sees are a few dozen
# spellings, so the lower-casing and compact-form lookup happen once per spelling.
# Bounded: a peer sending endless distinct names cannot grow it.
_KEYS: dict[str, str] = {}
_KEYS_LIMIT = 2048


def header_key(name: str) -> str:
    """Lower-case long form of a header name (``v`` → ``via``, ``Call-Id`` → ``call-id``)."""
    key = _KEYS.get(name)
    if key is None:
        lowered = name.lower()
        key = COMPACT_FORMS.get(lowered, lowered)
        if len(_KEYS) < _KEYS_LIMIT:
            _KEYS[name] = key
    return key


for _name in (*CANONICAL_NAMES, *CANONICAL_NAMES.values(), *COMPACT_FORMS):
    header_key(_name)


def canonical_name(key: str) -> str:
    """Spelling used on the wire for a header key."""
    return CANONICAL_NAMES.get(key) or key


# Header names as written → ``(key, spelling to serialise)``, for the parser and
# ``HeaderList.add``: known headers in canonical spelling, unknown ones as written
# (they are opaque to us).  Only tokens get in.  Bounded like ``_KEYS``.
_NAMES: dict[str, tuple[str, str]] = {}


def name_entry(name: str) -> tuple[str, str] | None:
    """``(key, spelling)`` for a header name as written, None when it is not a token."""
    entry = _NAMES.get(name)
    if entry is None:
        if not is_token(name):
            return None
        key = header_key(name)
        entry = (key, CANONICAL_NAMES.get(key) or name)
        if len(_NAMES) < _KEYS_LIMIT:
            _NAMES[name] = entry
    return entry


for _name in (*CANONICAL_NAMES, *CANONICAL_NAMES.values(), *COMPACT_FORMS):
    name_entry(_name)


def header_names() -> dict[str, tuple[str, str]]:
    """The names seen so far → ``(key, spelling)`` (the parser's fast path; read-only)."""
    return _NAMES


def make_field(name: str, value: str) -> tuple[str, str, str]:
    """``(key, spelling, value)``: known headers in canonical spelling, others as given.

    Raises ``SipUsageError`` for a name that is not a token or a value holding CR
    or LF: rendered, either would inject header lines of the caller's making.
    """
    if "\r" in value or "\n" in value:
        raise SipUsageError(f"CR or LF in the value of header {name!r}")
    entry = _NAMES.get(name) or name_entry(name)
    if entry is None:
        raise SipUsageError(f"header name {name!r} is not a token")
    return entry[0], entry[1], value


# Parsed views (Message's cache) that depend on a header other than their own key.
_DEPENDENT_VIEWS: dict[str, tuple[str, ...]] = {"via": ("via", "via-top-line")}


class HeaderList:
    """Ordered header fields ``(key, name, value)``; ``key`` is lower-case long form.

    Lookups are by key, so ``i``, ``Call-ID`` and ``CALL-ID`` are one header.
    The first value of every key is kept in a dict beside the list, updated by
    each change, so ``get`` and ``in`` cost one dict lookup instead of a scan.
    """

    __slots__ = ("_fields", "_first", "cache")

    def __init__(
        self,
        fields: list[tuple[str, str, str]] | None = None,
        *,
        first_values: dict[str, str] | None = None,
    ) -> None:
        """``first_values``: the first value of every key of ``fields``, when the caller has it
        (copies): it is taken as is, not checked."""
        if fields is None:
            self._fields: list[tuple[str, str, str]] = []
            self._first: dict[str, str] = {}
        else:
            self._fields = fields
            if first_values is not None:
                self._first = first_values
            else:
                # Reversed, so the first field of a repeated key is the one kept.
                self._first = {key: value for key, _, value in reversed(fields)}
        # Parsed views of headers (owned by Message), keyed by header key (plus
        # "via-top-line"); a change to a header drops the views of that header only.
        self.cache: dict[str, Any] = {}

    def _changed(self, key: str) -> None:
        cache = self.cache
        if cache:
            for view in _DEPENDENT_VIEWS.get(key, (key,)):
                cache.pop(view, None)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Yield ``(name, value)`` pairs in wire order."""
        for _, name, value in self._fields:
            yield name, value

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return header_key(name) in self._first

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HeaderList):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HeaderList({list(self)!r})"

    def get(self, name: str) -> str | None:
        """Value of the first field named ``name``, or None."""
        return self._first.get(header_key(name))

    def first_values(self) -> dict[str, str]:
        """Each key's first value (read-only by convention)."""
        return self._first

    def has_repeats(self) -> bool:
        """True when some key appears on more than one line."""
        return len(self._first) != len(self._fields)

    def get_all(self, name: str) -> list[str]:
        """Values of every field named ``name``, one per header line."""
        key = header_key(name)
        if key not in self._first:
            return []
        return [f[2] for f in self._fields if f[0] == key]

    def get_list(self, name: str) -> list[str]:
        """Comma-separated values of every field named ``name``, flattened and stripped."""
        key = header_key(name)
        if key not in self._first:
            return []
        values: list[str] = []
        for f in self._fields:
            if f[0] == key:
                values.extend(item.strip() for item in split_quoted(f[2], ","))
        return values

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        # make_field inlined: the builders add a dozen fields per message.
        if "\r" in value or "\n" in value:
            raise SipUsageError(f"CR or LF in the value of header {name!r}")
        entry = _NAMES.get(name) or name_entry(name)
        if entry is None:
            raise SipUsageError(f"header name {name!r} is not a token")
        key = entry[0]
        self._fields.append((key, entry[1], value))
        first = self._first
        if key not in first:
            first[key] = value
        if self.cache:
            self._changed(key)

    def insert_first(self, name: str, value: str) -> None:
        """Put a field before all others of the same name (e.g. a new top Via).

        With none of that name yet, it goes first of all: Via belongs at the
        top of a message (RFC 3261 §7.3.1 recommends it).
        """
        new = make_field(name, value)
        key = new[0]
        self._changed(key)
        fields = self._fields
        if key in self._first:
            for index, f in enumerate(fields):
                if f[0] == key:
                    fields.insert(index, new)
                    break
        else:
            fields.insert(0, new)
        self._first[key] = value

    def replace_first(self, name: str, value: str) -> None:
        """Replace the value of the first field named ``name`` (appends when there is none)."""
        new = make_field(name, value)
        key = new[0]
        self._changed(key)
        fields = self._fields
        if key in self._first:
            for index, f in enumerate(fields):
                if f[0] == key:
                    fields[index] = (key, f[1], value)
                    break
        else:
            fields.append(new)
        self._first[key] = value

    def set(self, name: str, value: str) -> None:
        """Replace every field named ``name`` by one field, keeping the first position."""
        new = make_field(name, value)
        key = new[0]
        self._changed(key)
        fields = self._fields
        if key in self._first:
            for index, f in enumerate(fields):
                if f[0] == key:
                    fields[index] = new
                    if len(self._first) != len(fields):  # some key repeats: maybe this one
                        fields[index + 1 :] = [g for g in fields[index + 1 :] if g[0] != key]
                    break
        else:
            fields.append(new)
        self._first[key] = value

    def remove(self, name: str) -> None:
        """Delete every field named ``name``."""
        key = header_key(name)
        if key in self._first:
            self._changed(key)
            del self._first[key]
            self._fields = [f for f in self._fields if f[0] != key]

    def count(self, name: str) -> int:
        """Number of header lines named ``name``."""
        key = header_key(name)
        if key not in self._first:
            return 0
        return sum(1 for f in self._fields if f[0] == key)

    def copy_from(self, other: HeaderList, keys: tuple[str, ...]) -> None:
        """Append, in their order, the fields of ``other`` whose key is in ``keys``, verbatim."""
        first = self._first
        fields = self._fields
        for f in other._fields:
            key = f[0]
            if key in keys:
                fields.append(f)
                if key not in first:
                    first[key] = f[2]
                self._changed(key)

    @classmethod
    def subset_of(cls, other: HeaderList, keys: frozenset[str]) -> HeaderList:
        """A new list of the fields of ``other`` whose key is in ``keys``, verbatim, in order."""
        first = other._first
        # By name, not ``cls``: compiled, a direct native call rather than a generic one.
        return HeaderList(
            [f for f in other._fields if f[0] in keys],
            first_values={key: first[key] for key in keys if key in first},
        )

    def copy(self) -> HeaderList:
        """Shallow copy (fields are immutable tuples)."""
        return HeaderList(list(self._fields), first_values=dict(self._first))

    def fields(self) -> list[tuple[str, str, str]]:
        """The underlying ``(key, name, value)`` triples (read-only by convention)."""
        return self._fields


# --- Via --------------------------------------------------------------------------

BRANCH_MAGIC_COOKIE = "z9hG4bK"


@dataclass(slots=True, init=False, unsafe_hash=True)
class Via:
    """One Via value (RFC 3261 §20.42, RFC 3581 rport)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    protocol: str = "SIP/2.0"

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.protocol = protocol

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None when absent (RFC 2543 peers)."""
        return get_param(self.params, "branch")

    @property
    def has_rfc3261_branch(self) -> bool:
        """True when the branch starts with the magic cookie and carries an identifier.

        A bare ``z9hG4bK`` (RFC 4475 §3.2.1) is not unique, so it does not count.
        """
        branch = self.branch
        return (
            branch is not None
            and branch.startswith(BRANCH_MAGIC_COOKIE)
            and len(branch) > len(BRANCH_MAGIC_COOKIE)
        )

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 §18.2.1)."""
        return get_param(self.params, "received")

    @property
    def rport_requested(self) -> bool:
        """True when the sender asked for symmetric response routing (RFC 3581)."""
        params = self.params
        return "rport" in params or any(k.lower() == "rport" for k in params)

    @property
    def rport(self) -> int | None:
        """Filled-in rport value, if any."""
        value = get_param(self.params, "rport")
        return int(value) if value is not None and is_digits(value) else None

    @property
    def sent_by(self) -> str:
        """``host[:port]`` of the sent-by field."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{render_params(self.params)}"


def parse_via_values(value: str) -> list[Via]:
    """Parse a Via header line, which may hold several comma-separated values."""
    if "," not in value:
        return [parse_via(value)]
    return [parse_via(item) for item in split_quoted(value, ",")]


_TOKEN_RE_TEXT = r"[A-Za-z0-9\-.!%*_+`'~]+"  # noqa: S105 - a regex, not a password
# The form nearly every peer sends: no LWS inside, plain token/host parameter values.
_VIA_FAST_RE = re.compile(
    r"SIP/2\.0/(" + _TOKEN_RE_TEXT + r") ([A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?"
    r"((?:;" + _TOKEN_RE_TEXT + r"(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*)\Z"
)


def parse_via(text: str) -> Via:
    """Parse a single via-parm: ``SIP / 2.0 / UDP host[:port] *(;param)``."""
    fast = _VIA_FAST_RE.match(text)
    if fast is not None:
        transport, host, port_text, param_text = fast.groups()
        port = int(port_text) if port_text else None
        if port is None or port <= 65535:
            params: dict[str, str | None] = {}
            if param_text:
                for item in param_text[1:].split(";"):
                    name, eq, value = item.partition("=")
                    params[name] = value if eq else None
            return Via(transport=transport.upper(), host=host, port=port, params=params)
    return _parse_via_general(text)


def _parse_via_general(text: str) -> Via:
    """Any via-parm the grammar allows: LWS around ``/``, quoted parameter values."""
    text = text.strip()
    if not text:
        raise SipParseError("empty Via value")
    protocol_part, sep, rest = _split_sent_protocol(text)
    if not sep:
        raise SipParseError("Via without sent-by")
    pieces = [p.strip() for p in protocol_part.split("/")]
    if len(pieces) != 3 or not all(is_token(p) for p in pieces):
        raise SipParseError("malformed Via sent-protocol")
    name, version, transport = pieces
    sent_by, semicolon, param_text = rest.partition(";")
    sent_by = sent_by.strip()
    host, port = _parse_host_port(sent_by)
    params = parse_params(param_text, what="Via") if semicolon else {}
    return Via(
        protocol=f"{name.upper()}/{version}",
        transport=transport.upper(),
        host=host,
        port=port,
        params=params,
    )


def _split_sent_protocol(text: str) -> tuple[str, str, str]:
    """Split ``SIP / 2.0 / UDP host...`` after the transport token, allowing LWS around ``/``."""
    slashes = 0
    i = 0
    length = len(text)
    while i < length and slashes < 2:
        if text[i] == "/":
            slashes += 1
        i += 1
    while i < length and text[i] in " \t":
        i += 1
    while i < length and text[i] in TOKEN_CHARS:
        i += 1
    if i >= length or text[i] not in " \t":
        return text, "", ""
    return text[:i], " ", text[i:].lstrip()


def _parse_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError("unterminated IPv6 reference")
        host, tail = text[: close + 1], text[close + 1 :]
        if not tail:
            return host, None
        if not tail.startswith(":"):
            raise SipParseError("junk after IPv6 reference")
        port_text = tail[1:].strip()
    else:
        host, colon, port_text = text.partition(":")
        host = host.strip()
        if not colon:
            port_text = ""
        elif not port_text.strip():
            raise SipParseError("empty port")
        port_text = port_text.strip()
    if not host or any(ch not in _HOST_CHARS for ch in host):
        raise SipParseError("invalid host")
    if not port_text:
        return host, None
    if not is_digits(port_text) or len(port_text) > 5 or int(port_text) > 65535:
        raise SipParseError("invalid port")
    return host, int(port_text)


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.[]:")


# --- name-addr / addr-spec ----------------------------------------------------------


class NameAddr:
    """From, To, Contact, Route, P-Asserted-Identity values (RFC 3261 §20.10, §20.20, §20.39).

    ``display`` is unquoted with quoted-pairs resolved; ``params`` are header
    parameters (``tag``, ``expires``, ``q``), distinct from URI parameters.
    Immutable.  A parsed address keeps its URI as text until ``uri`` is read:
    the hot path needs From/To tags on every message, their URIs rarely.
    """

    __slots__ = ("_uri", "_uri_text", "display", "params")

    def __init__(
        self,
        uri: Uri | str,
        display: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self._uri: Uri | None
        self._uri_text: str | None
        if isinstance(uri, str):
            self._uri, self._uri_text = None, uri
        else:
            self._uri, self._uri_text = uri, None
        self.display = display
        self.params: dict[str, str | None] = params if params is not None else {}

    @property
    def uri(self) -> Uri:
        """The address's URI, parsed on first access (may raise ``SipParseError``)."""
        uri = self._uri
        if uri is None:
            uri = self._uri = parse_uri(self._uri_text or "")
        return uri

    def check_uri(self) -> None:
        """Raise ``SipParseError`` when the URI does not parse (parsing it only if needed)."""
        if self._uri is None:
            check_uri(self._uri_text or "")

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, or None."""
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        """Copy with ``tag`` set (used when a UAS answers an untagged To)."""
        params = {k: v for k, v in self.params.items() if k.lower() != "tag"}
        params["tag"] = tag
        return _name_addr(self._uri, self._uri_text, self.display, params)

    def without_params(self) -> NameAddr:
        """Display name and URI only (a dialog's local/remote URI, RFC 3261 §12.1)."""
        if not self.params:
            return self
        return _name_addr(self._uri, self._uri_text, self.display, {})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.uri, self.display, self.params) == (other.uri, other.display, other.params)

    def __hash__(self) -> int:
        return hash((self.uri, self.display))

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __str__(self) -> str:
        # A parsed address renders its URI as received (like a Request-URI): the
        # text is kept when the URI is parsed, so nothing is re-escaped.
        uri_text = self._uri_text
        if uri_text is None:
            uri_text = self._uri_text = str(self._uri)
        params = self.params
        tail = render_params(params) if params else ""
        if self.display is None:
            return f"<{uri_text}>{tail}"
        return f"{quote(self.display)} <{uri_text}>{tail}"


def _name_addr(
    uri: Uri | None, uri_text: str | None, display: str | None, params: dict[str, str | None]
) -> NameAddr:
    """A NameAddr from its parts, keeping both the parsed URI and its text when known."""
    # Through __init__ (mypyc compiles no __new__ of a class), which takes one of the two.
    if uri is None:
        return NameAddr(uri_text or "", display, params)
    address = NameAddr(uri, display, params)
    address._uri_text = uri_text
    return address


_PARAM_VALUE_RE_TEXT = r"(?:[A-Za-z0-9\-.!%*_+`'~:\[\]]+|\"[^\"\\\\]*\")"
# The common shapes: ``"Display" <uri>;p=v``, ``Display Words <uri>``, ``<uri>``.
_NAME_ADDR_FAST_RE = re.compile(
    r'(?:"([^"\\\x00-\x1f\x7f]*)"[ \t]*|('
    + _TOKEN_RE_TEXT
    + r"(?:[ \t]+"
    + _TOKEN_RE_TEXT
    + r")*)?[ \t]*)<([^<>\x00-\x20\"]+)>((?:;"
    + _TOKEN_RE_TEXT
    + "(?:="
    + _PARAM_VALUE_RE_TEXT
    + r")?)*)\Z"
)


# The same without a display name (text starting with "<"), a shorter pattern to run.
_ANGLE_ADDR_RE = re.compile(
    r"<([^<>\x00-\x20\"]+)>((?:;" + _TOKEN_RE_TEXT + "(?:=" + _PARAM_VALUE_RE_TEXT + r")?)*)\Z"
)


# Address texts parsed lately → their value. A dialog's From and To come back unchanged in
# every message of its call (the INVITE's, then its ACK's and BYE's; the callee's 180's and
# 200's, then the 200 to BYE), so about half the addresses of a call are parsed already.
# NameAddr is immutable (its URI, parsed on first read, is never changed in place either), so
# one value serves every message that carries the same text. Emptied when full, as the CSeq
# texts: it stays small whatever texts peers send. Only addresses that parse are kept.
_ADDRESSES_SEEN: dict[str, NameAddr] = {}
_ADDRESSES_SEEN_LIMIT: Final = 4096


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``[display] <uri> *(;param)`` or ``addr-spec *(;param)``.

    In the addr-spec form everything after the first ``;`` is a header
    parameter (RFC 3261 §20.10), and a URI containing ``,``, ``;`` or ``?`` must
    be in angle brackets — bare ones are rejected (RFC 4475 §3.1.2.13).
    The same text gives the same (immutable) value while it is remembered.
    """
    seen = _ADDRESSES_SEEN.get(text)
    if seen is not None:
        return seen
    address = _parse_name_addr(text)
    if len(_ADDRESSES_SEEN) >= _ADDRESSES_SEEN_LIMIT:
        _ADDRESSES_SEEN.clear()
    _ADDRESSES_SEEN[text] = address
    return address


def _parse_name_addr(text: str) -> NameAddr:
    if text[:1] == "<":  # no display name: the usual From/To/Contact of a trunk or UA
        fast = _ANGLE_ADDR_RE.match(text)
        if fast is None:
            return _parse_name_addr_general(text)
        uri_text, param_text = fast.groups()
        display = None
    else:
        fast = _NAME_ADDR_FAST_RE.match(text)
        if fast is None:
            return _parse_name_addr_general(text)
        quoted, words, uri_text, param_text = fast.groups()
        display = quoted if quoted is not None else (" ".join(words.split()) if words else None)
    params: dict[str, str | None] = {}
    if param_text:
        if '"' in param_text:
            params = parse_params(param_text[1:], what="address")
        else:
            for item in param_text[1:].split(";"):
                name, eq, value = item.partition("=")
                params[name] = value if eq else None
    return _name_addr(None, uri_text, display, params)


def _parse_name_addr_general(text: str) -> NameAddr:
    """Every form of the grammar, with LWS, quoted-pairs and addr-spec; precise errors."""
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None = None
    if text[0] == '"':
        display, end = parse_quoted_string(text, 0)
        rest = text[end:].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("quoted display name not followed by <URI>")
    else:
        angle = text.find("<")
        if angle >= 0:
            words = text[:angle].split()
            for word in words:
                if not is_token(word):
                    raise SipParseError("display name must be tokens or a quoted string")
            display = " ".join(words) if words else None
            rest = text[angle:]
        else:
            rest = ""
    if rest:
        close = rest.find(">")
        if close < 0:
            raise SipParseError("unterminated <URI>")
        uri_text = rest[1:close]
        if not uri_text or uri_text != uri_text.strip():
            raise SipParseError("empty URI or whitespace inside <URI>")
        tail = rest[close + 1 :].strip()
    else:
        uri_text, semicolon, param_text = text.partition(";")
        if any(ch in uri_text for ch in ",?"):
            raise SipParseError("URI with , or ? must be enclosed in <>")
        uri_text = uri_text.strip()
        if not uri_text or any(ch in uri_text for ch in " \t"):
            raise SipParseError("invalid address")
        tail = ";" + param_text if semicolon else ""
    params: dict[str, str | None] = {}
    if tail:
        if tail[0] != ";":
            raise SipParseError("junk after address")
        params = parse_params(tail[1:], what="address")
    return NameAddr(uri=uri_text, display=display, params=params)


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """Parse a comma-separated list of addresses (Contact, Route, Record-Route)."""
    return [parse_name_addr(item) for item in split_quoted(value, ",")]


# --- CSeq ---------------------------------------------------------------------------

# RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31.
CSEQ_MAX = 2**31 - 1


class CSeq(NamedTuple):
    """CSeq header (RFC 3261 §20.16).

    A named tuple: truly immutable, so one parsed value can serve every message
    that carries the same text (``parse_cseq`` keeps them), and the collector
    stops tracking it after one pass (it holds only an int and a str).
    """

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_CSEQ_FAST_RE = re.compile(r"([0-9]{1,10}) (" + _TOKEN_RE_TEXT + r")\Z")


# CSeq texts seen lately → their value ("1 INVITE", "2 BYE" repeat in every call).
# Emptied when full, so it stays small whatever numbers peers use.
_CSEQ_SEEN: dict[str, CSeq] = {}
_CSEQ_SEEN_LIMIT = 1024


def parse_cseq(text: str) -> CSeq:
    """Parse ``1*DIGIT LWS Method``; numbers beyond 2**31-1 are rejected (RFC 4475 §3.1.2.4)."""
    seen = _CSEQ_SEEN.get(text)
    if seen is not None:
        return seen
    fast = _CSEQ_FAST_RE.match(text)
    if fast is not None:
        seq = int(fast[1])
        if seq <= CSEQ_MAX:
            if len(_CSEQ_SEEN) >= _CSEQ_SEEN_LIMIT:
                _CSEQ_SEEN.clear()
            value = _CSEQ_SEEN[text] = CSeq(seq, fast[2])
            return value
    number, _, method = text.replace("\t", " ").strip(" ").partition(" ")
    method = method.strip(" ")
    if not is_digits(number) or len(number) > 10 or not is_token(method):
        raise SipParseError("invalid CSeq")
    seq = int(number)
    if seq > CSEQ_MAX:
        raise SipParseError("CSeq number out of range")
    return CSeq(seq=seq, method=method)


def parse_option_tags(values: list[str]) -> list[str]:
    """Require/Supported/Unsupported tokens; empty items from ``a, ,b`` are ignored."""
    tags = [v for v in values if v]
    for tag in tags:
        if not is_token(tag):
            raise SipParseError("invalid option tag")
    return tags
