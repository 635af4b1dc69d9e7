"""Character classes and small lexical helpers shared by the parsers (RFC 3261 §25.1)."""

from __future__ import annotations

import re

from sip.errors import SipParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.match(text) is not None


def is_digits(text: str) -> bool:
    """True when ``text`` is ``1*DIGIT`` in ASCII.

    ``str.isdigit`` alone also accepts ``²`` or ``٣``, on which ``int()`` fails
    or which no peer may send; every numeric field goes through this.
    """
    return text.isascii() and text.isdigit()


def unescape(text: str) -> str:
    """Resolve ``%HH`` escapes once (RFC 3261 §19.1.2); an invalid ``%`` stays literal.

    Escaped octets are reassembled as UTF-8 with surrogateescape, so any octet
    sequence (NUL included, RFC 4475 §3.1.1.4) round-trips through ``str``.
    """
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    return _unescape_bytes(raw).decode("utf-8", "surrogateescape")


def _unescape_bytes(raw: bytes) -> bytes:
    parts = raw.split(b"%")
    result = bytearray(parts[0])
    for part in parts[1:]:
        hexpair = part[:2]
        if len(hexpair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in hexpair):
            result.append(int(hexpair, 16))
            result += part[2:]
        else:
            result += b"%" + part
    return bytes(result)


# One compiled "any character outside ``safe``" pattern per safe set (a handful exist).
_UNSAFE_PATTERNS: dict[frozenset[str], re.Pattern[str]] = {}


def _unsafe_pattern(safe: frozenset[str]) -> re.Pattern[str]:
    pattern = _UNSAFE_PATTERNS.get(safe)
    if pattern is None:
        pattern = re.compile("[^" + "".join(re.escape(ch) for ch in sorted(safe)) + "]")
        if len(_UNSAFE_PATTERNS) < 64:
            _UNSAFE_PATTERNS[safe] = pattern
    return pattern


def escape(text: str, safe: frozenset[str]) -> str:
    """Percent-escape every character of ``text`` not in ``safe`` (as UTF-8 octets)."""
    if _unsafe_pattern(safe).search(text) is None:
        return text
    out: list[str] = []
    for ch in text:
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def split_quoted(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside quoted strings and ``<...>``.

    Used for comma-separated header values and ``;`` parameters, where a
    separator inside a display name or a bracketed URI is not a separator.
    """
    if '"' not in text and ("<" not in text or separator not in text):
        return text.split(separator)
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    length = len(text)
    while i < length:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == separator and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise SipParseError("unbalanced quotes")
    parts.append(text[start:])
    return parts


def parse_quoted_string(text: str, start: int) -> tuple[str, int]:
    """Parse a quoted-string beginning at ``text[start] == '"'``.

    Returns the unquoted content (quoted-pairs resolved) and the index after
    the closing quote.
    """
    out: list[str] = []
    i = start + 1
    length = len(text)
    while i < length:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= length:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError("unterminated quoted string")


def quote(text: str) -> str:
    """Render ``text`` as a quoted-string, escaping ``"``, ``\\`` and control characters."""
    escaped = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append("\\" + ch)
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def parse_params(text: str, *, what: str) -> dict[str, str | None]:
    """Parse ``;name[=value]`` parameters (``text`` starts after the first ``;``).

    Values that are quoted strings keep their quotes so they re-serialise
    unchanged; names are kept as written (compare them case-insensitively).
    """
    params: dict[str, str | None] = {}
    for item in split_quoted(text, ";"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not name or not is_token(name):
            raise SipParseError(f"empty or invalid parameter in {what}")
        if eq:
            value = value.strip()
            if not value:
                raise SipParseError(f"empty parameter value in {what}")
            if value[0] == '"':
                _, end = parse_quoted_string(value, 0)
                if end != len(value):
                    raise SipParseError(f"junk after quoted parameter in {what}")
            params[name] = value
        else:
            params[name] = None
    return params


def render_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def get_param(params: dict[str, str | None], name: str) -> str | None:
    """Case-insensitive parameter lookup (parameter names are case-insensitive)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if key.lower() == lowered:
            return value
    return None


def has_param(params: dict[str, str | None], name: str) -> bool:
    """True when a parameter named ``name`` (any case) is present, with or without value."""
    if name in params:
        return True
    lowered = name.lower()
    return any(key.lower() == lowered for key in params)
