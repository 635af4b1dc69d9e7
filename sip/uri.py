"""SIP, SIPS, tel and other absolute URIs (RFC 3261 §19.1, RFC 3966).

Components are stored unescaped; rendering escapes exactly the characters the
grammar does not allow in that component, so ``parse_uri(str(uri)) == uri``.

URI and header value classes are immutable by convention: never assign to a
field of a parsed value, derive a new one with ``dataclasses.replace``.  They
are not ``frozen`` dataclasses only because a frozen ``__init__`` costs several
times more, and the parser builds some of them for every message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sip.errors import SipParseError
from sip.grammar import escape, get_param, is_digits, render_params, unescape

_UNRESERVED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()")
_USER_SAFE = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_SAFE = _UNRESERVED | frozenset("&=+$,")
_PARAM_SAFE = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_SAFE = _UNRESERVED | frozenset("[]/?:+$")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_HOST_RE = re.compile(r"(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])\Z")
# Characters that may never appear raw in any URI we accept: whitespace,
# brackets of name-addr, quotes, controls (they must be %-escaped).
_FORBIDDEN_RE = re.compile(r'[\x00-\x20\x7f<>"]')
# A character outside _PARAM_SAFE (one a URI parameter name or value may not hold raw).
_PARAM_UNSAFE_RE = re.compile(r"[^A-Za-z0-9\-_.!~*'()\[\]/:&+$]")


@dataclass(slots=True, init=False, unsafe_hash=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    headers: dict[str, str] = field(default_factory=dict, hash=False)

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(  # noqa: PLR0917 - the dataclass's positional signature, as before
        self,
        host: str,
        user: str | None = None,
        password: str | None = None,
        port: int | None = None,
        scheme: str = "sip",
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.user = user
        self.password = password
        self.port = port
        self.scheme = scheme
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive), None if absent or valueless."""
        return get_param(self.params, name)

    @property
    def host_port(self) -> str:
        """``host[:port]`` as it appears in the URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(self.host_port)
        if self.params:
            parts.append(_render_uri_params(self.params))
        if self.headers:
            parts.append(
                "?"
                + "&".join(
                    f"{escape(k, _HEADER_SAFE)}={escape(v, _HEADER_SAFE)}"
                    for k, v in self.headers.items()
                )
            )
        return "".join(parts)


@dataclass(slots=True, init=False, unsafe_hash=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966); ``number`` keeps visual separators as written."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)
    scheme: str = "tel"

    def __init__(
        self,
        number: str,
        params: dict[str, str | None] | None = None,
        scheme: str = "tel",
    ) -> None:
        self.number = number
        self.params = {} if params is None else params
        self.scheme = scheme

    def __str__(self) -> str:
        return f"tel:{self.number}{_render_uri_params(self.params)}"


@dataclass(slots=True, init=False, unsafe_hash=True)
class AbsoluteUri:
    """Any other URI scheme, kept opaque (RFC 3261 §19.1.1 absoluteURI)."""

    scheme: str
    opaque: str

    def __init__(self, scheme: str, opaque: str) -> None:
        self.scheme = scheme
        self.opaque = opaque

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri


# URI texts parsed lately → their value: the Request-URI of a call's ACK and BYE (the Contact
# maskline gave), of calls to the same X, a dialog's addresses. Values are immutable by the
# convention above, so one serves every message with the same text; emptied when full, so it
# stays small whatever peers send; only URIs that parse are kept.
_URIS_SEEN: dict[str, Uri] = {}
_URIS_SEEN_LIMIT: Final = 4096


def parse_uri(text: str) -> Uri:
    """Parse a URI that has already been cut out of its context (no ``<>``); the same text
    gives the same (immutable) value while it is remembered."""
    seen = _URIS_SEEN.get(text)
    if seen is not None:
        return seen
    uri = _parse_uri(text)
    if len(_URIS_SEEN) >= _URIS_SEEN_LIMIT:
        _URIS_SEEN.clear()
    _URIS_SEEN[text] = uri
    return uri


def _parse_uri(text: str) -> Uri:
    if text[:4] == "sip:":  # by far the most common; the fast pattern also excludes junk
        fast = _parse_sip_uri_fast("sip", text[4:])
        if fast is not None:
            return fast
    if not text or _FORBIDDEN_RE.search(text):
        raise SipParseError("invalid characters in URI")
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.match(scheme):
        raise SipParseError("URI without a valid scheme")
    lowered = scheme.lower()
    if lowered in ("sip", "sips"):
        return _parse_sip_uri(lowered, rest)
    if lowered == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError("empty tel URI")
        return TelUri(number=number, params=_parse_uri_params(params) if params else {})
    if not rest:
        raise SipParseError("empty URI after scheme")
    return AbsoluteUri(scheme=scheme, opaque=rest)


# The common shape, no escapes, no password, no URI headers; anything else
# takes the general path below, which also produces the precise error.
_PARAM_CHARS = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+"
_SIP_FAST_RE = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,;/]+)@)?([A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::([0-9]{1,5}))?((?:;" + _PARAM_CHARS + "(?:=" + _PARAM_CHARS + r")?)*)\Z"
)


def check_uri(text: str) -> None:
    """Raise ``SipParseError`` exactly when ``parse_uri(text)`` would, building nothing
    for the usual plain ``sip:`` URI (validation of URIs nobody reads, e.g. From/To)."""
    if text[:4] == "sip:":
        fast = _SIP_FAST_RE.match(text, 4)
        if fast is not None and (fast[3] is None or int(fast[3]) <= 65535):
            return
    parse_uri(text)


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    return _parse_sip_uri_fast(scheme, rest) or _parse_sip_uri_general(scheme, rest)


def _parse_sip_uri_fast(scheme: str, rest: str) -> SipUri | None:
    fast = _SIP_FAST_RE.match(rest)
    if fast is None:
        return None
    user, host, port_text, param_text = fast.groups()
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        return None
    params: dict[str, str | None] = {}
    if param_text:
        for item in param_text[1:].split(";"):
            name, eq, value = item.partition("=")
            params[name] = value if eq else None
    return SipUri(scheme=scheme, user=user, host=host, port=port, params=params)


def _parse_sip_uri_general(scheme: str, rest: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_raw, colon, password_raw = userinfo.partition(":")
        if not user_raw:
            raise SipParseError("empty user part in URI")
        user = unescape(user_raw)
        if colon:
            password = unescape(password_raw)
    hostport, qmark, header_text = rest.partition("?")
    hostport, semicolon, param_text = hostport.partition(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise SipParseError("unterminated IPv6 reference in URI")
        host, port_text = hostport[: close + 1], hostport[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise SipParseError("junk after IPv6 reference in URI")
        port_text = port_text[1:]
        has_port = bool(hostport[close + 1 :])
    else:
        host, colon, port_text = hostport.partition(":")
        has_port = bool(colon)
    if not host or not _HOST_RE.match(host):
        raise SipParseError("invalid host in URI")
    port: int | None = None
    if has_port:
        if not is_digits(port_text) or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError("invalid port in URI")
        port = int(port_text)
    params = _parse_uri_params(param_text) if semicolon else {}
    headers: dict[str, str] = {}
    if qmark:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError("invalid header in URI")
            headers[unescape(name)] = unescape(value)
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=params,
        headers=headers,
    )


def _render_uri_params(params: dict[str, str | None]) -> str:
    """``;name=value`` with the characters a URI parameter may not hold %-escaped."""
    # Nothing to escape in any name or value (the usual case): render as is.
    if _PARAM_UNSAFE_RE.search("".join(params) + "".join(filter(None, params.values()))) is None:
        return render_params(params)
    return render_params(
        {
            escape(k, _PARAM_SAFE): None if v is None else escape(v, _PARAM_SAFE)
            for k, v in params.items()
        }
    )


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError("empty URI parameter")
        if eq and not value:
            raise SipParseError("empty URI parameter value")
        params[unescape(name)] = unescape(value) if eq else None
    return params
