"""SDP model, parser and the B2BUA's per-leg rewrite (RFC 4566, RFC 3264). Pure: no I/O.

The parser is lenient where real peers are sloppy (LF or CRLF, blank trailing lines, unknown
line types and attributes) and strict where a wrong guess would route media astray (``v=``,
``o=``, ``c=`` and ``m=`` syntax). Every line is kept in order, so attributes this module does not
understand pass through a rewrite untouched.

``rewrite_for_leg`` produces the SDP the *other* leg sees: media anchored on the engine (our
address in ``o=`` and every ``c=``, our relay port in every ``m=``), nothing of the far party's
addresses or identity left, codecs and their parameters unchanged.

What maskline relays (``relayable_stream``, ``keep_relayable_formats``): one audio stream per
call, the first ``m=audio`` section that

- is not rejected (port ≠ 0),
- is RTP under the AVP or AVPF profile (``RTP/AVP``, ``RTP/AVPF``; not SRTP ``RTP/SAVP*``, whose
  payloads we could neither record nor replace with ringback, nor ``UDP/TLS/…``), and
- offers G.711 — PCMU or PCMA at 8 kHz — among its formats.

G.711 only, on purpose: the relay itself would carry any codec, but recording decodes, and
ringback, prompts and the extension IVR encode, G.711 only (``media.g711``); a G.729 or Opus call
could not be recorded and would get ringback in a codec it never negotiated. Alongside G.711 the
stream keeps ``telephone-event/8000`` (RFC 4733 DTMF, for the IVR and end-to-end digits) and
``CN/8000`` (RFC 3389 comfort noise); every other format is removed from the offer before it is
relayed, so the answer can only pick what we handle. An offer with no such stream is refused:
488 Not Acceptable Here with a ``Warning`` (RFC 3261 §20.43) — 304 "Media type not available"
when there is no usable audio stream at all, 305 "Incompatible media format" when audio is
there but not in a relayable profile or codec (``NotRelayable.warning_code``). Other streams
(video, a second audio) are rejected (port 0) on the other leg, by ``ports_for_stream``.

When maskline answers a caller itself — the 183 of enterprise ringback or of an announcement,
the 200 of the extension IVR — ``answer_codec`` picks the one G.711 codec (the first the caller
lists, under its static payload type) and ``local_answer`` writes our answer with it. The offer
relayed to the callee afterwards is cut to that codec (``keep_relayable_formats(codec=)``), so
the callee's answer agrees with what the caller already has and no re-INVITE is ever needed.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "Direction",
    "MediaDescription",
    "NotRelayable",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpLine",
    "SdpOrigin",
    "SessionDescription",
    "answer_codec",
    "codecs",
    "keep_relayable_formats",
    "local_answer",
    "media_endpoint",
    "new_session_id",
    "parse_sdp",
    "ports_for_stream",
    "relayable_stream",
    "rewrite_for_leg",
]

SdpLine = tuple[str, str]
"""One ``<type>=<value>`` line: the type letter and the value text (no line ending)."""


class SdpError(ValueError):
    """The body is not an SDP we can work with (the root of this module's errors)."""


class Direction(StrEnum):
    """Media direction attribute (RFC 3264 §5.1, §8.4); ``sendrecv`` when none is given."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True, init=False)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`` (§5.2)."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    # An explicit __init__ (the dataclass has init=False): mypyc compiles it, whereas the one
    # dataclasses generates stays interpreted, ~0.2 µs a field on every message.
    def __init__(  # noqa: PLR0917 - the dataclass's positional signature, as before
        self,
        username: str,
        session_id: str,
        session_version: str,
        nettype: str,
        addrtype: str,
        address: str,
    ) -> None:
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "session_version", session_version)
        object.__setattr__(self, "nettype", nettype)
        object.__setattr__(self, "addrtype", addrtype)
        object.__setattr__(self, "address", address)


@dataclass(frozen=True, slots=True, init=False)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 4566 §5.7).

    ``address`` is the bare address; a multicast ``/ttl[/count]`` suffix is in ``suffix``.
    """

    nettype: str
    addrtype: str
    address: str
    suffix: str = ""

    def __init__(self, nettype: str, addrtype: str, address: str, suffix: str = "") -> None:
        object.__setattr__(self, "nettype", nettype)
        object.__setattr__(self, "addrtype", addrtype)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "suffix", suffix)

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` or ``::``: the RFC 2543 way of putting a stream on hold (RFC 3264 §8.4)."""
        return self.address in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True, init=False)
class Attribute:
    """``a=<name>[:<value>]`` (RFC 4566 §5.13); ``value`` is None for a property attribute."""

    name: str
    value: str | None

    def __init__(self, name: str, value: str | None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)


@dataclass(frozen=True, slots=True, init=False)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`` (RFC 4566 §6), or a static type."""

    payload_type: str
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __init__(
        self,
        payload_type: str,
        encoding: str,
        clock_rate: int,
        channels: int | None = None,
    ) -> None:
        object.__setattr__(self, "payload_type", payload_type)
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "clock_rate", clock_rate)
        object.__setattr__(self, "channels", channels)


# RFC 3551 §6, Tables 4 and 5: payload types that need no a=rtpmap line.
# fmt: off
STATIC_PAYLOAD_TYPES: dict[str, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in [
        ("0", "PCMU", 8000, None), ("3", "GSM", 8000, None), ("4", "G723", 8000, None),
        ("5", "DVI4", 8000, None), ("6", "DVI4", 16000, None), ("7", "LPC", 8000, None),
        ("8", "PCMA", 8000, None), ("9", "G722", 8000, None), ("10", "L16", 44100, 2),
        ("11", "L16", 44100, None), ("12", "QCELP", 8000, None), ("13", "CN", 8000, None),
        ("14", "MPA", 90000, None), ("15", "G728", 8000, None), ("16", "DVI4", 11025, None),
        ("17", "DVI4", 22050, None), ("18", "G729", 8000, None), ("25", "CelB", 90000, None),
        ("26", "JPEG", 90000, None), ("28", "nv", 90000, None), ("31", "H261", 90000, None),
        ("32", "MPV", 90000, None), ("33", "MP2T", 90000, None), ("34", "H263", 90000, None),
    ]
}
# fmt: on


@dataclass(frozen=True, slots=True, init=False)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) and every line that belongs to it.

    ``direction`` is the effective one: the media-level attribute, else the session-level one,
    else ``sendrecv`` (RFC 3264 §5.1). ``rtcp_port`` is from ``a=rtcp:`` (RFC 3605), if any.
    """

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None
    attributes: tuple[Attribute, ...]
    direction: Direction
    rtcp_port: int | None
    lines: tuple[SdpLine, ...]
    """All lines of the section in order, the ``m=`` line first."""
    # Payload type → its a=rtpmap, parsed on the first rtpmap() call (a call asks ~8 times).
    # Not an __init__ field, so dataclasses.replace() starts a fresh one.
    _rtpmaps: dict[str, RtpMap] | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(  # noqa: PLR0917 - the dataclass's positional signature, as before
        self,
        media: str,
        port: int,
        port_count: int | None,
        proto: str,
        formats: tuple[str, ...],
        connection: Connection | None,
        attributes: tuple[Attribute, ...],
        direction: Direction,
        rtcp_port: int | None,
        lines: tuple[SdpLine, ...],
    ) -> None:
        object.__setattr__(self, "media", media)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "port_count", port_count)
        object.__setattr__(self, "proto", proto)
        object.__setattr__(self, "formats", formats)
        object.__setattr__(self, "connection", connection)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "direction", direction)
        object.__setattr__(self, "rtcp_port", rtcp_port)
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "_rtpmaps", None)

    @property
    def rejected(self) -> bool:
        """Port 0: a stream declined or removed (RFC 3264 §6, §8.2)."""
        return self.port == 0

    def attribute_values(self, name: str) -> list[str]:
        """The values of every ``a=<name>:`` line of this section, in order."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def rtpmap(self, payload_type: str) -> RtpMap | None:
        """The ``a=rtpmap`` of a payload type, or the RFC 3551 static mapping, or None."""
        mapped = self._rtpmaps
        if mapped is None:
            mapped = {}
            for value in self.attribute_values("rtpmap"):
                parsed = _parse_rtpmap(value)
                if parsed is not None:
                    mapped.setdefault(parsed.payload_type, parsed)  # the first one counts
            object.__setattr__(self, "_rtpmaps", mapped)  # frozen: a cache, not state
        found = mapped.get(payload_type)
        return found if found is not None else STATIC_PAYLOAD_TYPES.get(payload_type)

    def fmtp(self, payload_type: str) -> str | None:
        """The format parameters of ``a=fmtp:<pt> <params>`` for a payload type, or None."""
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt == payload_type:
                return params.strip()
        return None

    @property
    def rtpmaps(self) -> list[RtpMap]:
        """The codec of every format, in offer order (preference order, RFC 3264 §5.1).

        Formats with neither an ``a=rtpmap`` nor a static mapping are left out.
        """
        result = []
        for pt in self.formats:
            mapping = self.rtpmap(pt)
            if mapping is not None:
                result.append(mapping)
        return result


@dataclass(frozen=True, slots=True, init=False)
class SessionDescription:
    """A parsed SDP body: session-level fields and lines, then the media sections."""

    origin: Origin
    session_name: str
    connection: Connection | None
    attributes: tuple[Attribute, ...]
    media: tuple[MediaDescription, ...]
    lines: tuple[SdpLine, ...]
    """Every session-level line in order (``v=`` first), up to the first ``m=``."""

    def __init__(  # noqa: PLR0917 - the dataclass's positional signature, as before
        self,
        origin: Origin,
        session_name: str,
        connection: Connection | None,
        attributes: tuple[Attribute, ...],
        media: tuple[MediaDescription, ...],
        lines: tuple[SdpLine, ...],
    ) -> None:
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "session_name", session_name)
        object.__setattr__(self, "connection", connection)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "media", media)
        object.__setattr__(self, "lines", lines)

    def to_bytes(self) -> bytes:
        """Serialize every line back, CRLF-terminated (RFC 4566 §5)."""
        return _render([*self.lines, *(line for m in self.media for line in m.lines)])


# --- parsing -----------------------------------------------------------------------------------

# Attribute name -> member: a lookup, where ``Direction(name)`` ran EnumType.__call__ and
# Enum.__new__ in the interpreter for every SDP parsed (bench/pycalls.py).
_DIRECTIONS: dict[str, Direction] = {d.value: d for d in Direction}


# A line's type: one lower-case letter (RFC 4566 §5). A substring test of one character, where
# a chained comparison of strings would be two generic comparisons (compiled).
_TYPE_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566) into a ``SessionDescription``.

    Accepts CRLF or bare LF line ends and ignores blank lines. Raises ``SdpError`` when the body
    does not start with ``v=0``, has no valid ``o=``, or has a malformed ``c=`` or ``m=`` line.
    """
    # surrogateescape: a stray non-UTF-8 octet in a text field (s=, i=) survives a round trip
    # instead of failing the whole call.
    text = body.decode("utf-8", "surrogateescape")
    lines: list[SdpLine] = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if len(line) < 2 or line[1] != "=" or line[0] not in _TYPE_LETTERS:
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        lines.append((line[0], line[2:]))
    if not lines or lines[0] != ("v", "0"):
        raise SdpError("SDP must start with v=0 (RFC 4566 §5.1)")

    # Plain loops, no generator expressions or star-calls: compiled, each of those is an object
    # or a generic call (this runs twice a call, for the offer and the answer).
    first_media = 0
    while first_media < len(lines) and lines[first_media][0] != "m":
        first_media += 1
    session_lines = lines[:first_media]

    origin: Origin | None = None
    session_name = ""
    connection: Connection | None = None
    session_attrs: list[Attribute] = []
    for kind, value in session_lines[1:]:
        if kind == "o":
            if origin is not None:
                raise SdpError("more than one o= line")
            origin = _parse_origin(value)
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _parse_connection(value)
        elif kind == "a":
            session_attrs.append(_parse_attribute(value))
    if origin is None:
        raise SdpError("SDP has no o= line (RFC 4566 §5.2)")
    session_direction = _direction_of(session_attrs) or Direction.SENDRECV

    media: list[MediaDescription] = []
    start = first_media
    while start < len(lines):
        end = start + 1
        while end < len(lines) and lines[end][0] != "m":
            end += 1
        media.append(_parse_media(lines[start:end], session_direction))
        start = end

    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        attributes=tuple(session_attrs),
        media=tuple(media),
        lines=tuple(session_lines),
    )


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"o= needs 6 fields: {value!r}")
    return Origin(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"c= needs 3 fields: {value!r}")
    address, slash, suffix = parts[2].partition("/")
    if not address:
        raise SdpError(f"c= without an address: {value!r}")
    return Connection(parts[0], parts[1], address, slash + suffix)


def _split_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return name, rest if colon else None


def _parse_attribute(value: str) -> Attribute:
    name, rest = _split_attribute(value)  # unpacked, not a star-call (compiled: a generic call)
    return Attribute(name, rest)


def _parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise SdpError(f"bad {what}: {text!r}")
    return int(text)


def _parse_rtpmap(value: str) -> RtpMap | None:
    # "<pt> <encoding>/<clock>[/<params>]"; a malformed one is ignored, not fatal: it only
    # affects codec reporting, and the line itself still passes through.
    pt, _, spec = value.strip().partition(" ")
    fields = spec.strip().split("/")
    if not pt or len(fields) < 2 or not fields[1].isdigit():
        return None
    channels = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
    return RtpMap(pt, fields[0], int(fields[1]), channels)


def _direction_of(attributes: Sequence[Attribute]) -> Direction | None:
    for attr in attributes:
        if attr.value is None:
            direction = _DIRECTIONS.get(attr.name)
            if direction is not None:
                return direction
    return None


def _parse_media(section: Sequence[SdpLine], session_direction: Direction) -> MediaDescription:
    parts = section[0][1].split()
    if len(parts) < 3:
        raise SdpError(f"m= needs media, port and proto: {section[0][1]!r}")
    port_text, slash, count_text = parts[1].partition("/")
    port = _parse_port(port_text, "m= port")
    port_count = _parse_port(count_text, "m= port count") if slash else None

    connection: Connection | None = None
    attributes: list[Attribute] = []
    for kind, value in section[1:]:
        if kind == "c":
            connection = _parse_connection(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value))

    rtcp_port: int | None = None
    for attr in attributes:
        if attr.name == "rtcp" and attr.value is not None:
            rtcp_port = _parse_port(attr.value.split(" ", 1)[0].strip(), "a=rtcp port")
            break

    return MediaDescription(
        media=parts[0],
        port=port,
        port_count=port_count,
        proto=parts[2],
        formats=tuple(parts[3:]),
        connection=connection,
        attributes=tuple(attributes),
        direction=_direction_of(attributes) or session_direction,
        rtcp_port=rtcp_port,
        lines=tuple(section),
    )


# --- queries -----------------------------------------------------------------------------------


def media_endpoint(sdp: SessionDescription, index: int = 0) -> tuple[str, int] | None:
    """The (address, port) the far party wants RTP for stream ``index`` sent to.

    The media-level ``c=`` wins over the session-level one (RFC 4566 §5.7). Returns None when
    there is no such stream, it is rejected (port 0), it has no connection address, or the
    address is ``0.0.0.0``/``::`` (RFC 2543-style hold, RFC 3264 §8.4).
    """
    if not 0 <= index < len(sdp.media):
        return None
    m = sdp.media[index]
    conn = m.connection or sdp.connection
    if m.port == 0 or conn is None or conn.is_unspecified:
        return None
    return conn.address, m.port


def codecs(sdp: SessionDescription, index: int | None = None) -> list[str]:
    """Encoding names offered, in preference order, e.g. ``["PCMU", "PCMA", "telephone-event"]``.

    ``index`` limits the answer to one stream; by default every non-rejected stream counts, each
    name once.
    """
    streams = sdp.media if index is None else sdp.media[index : index + 1]
    names: list[str] = []
    for m in streams:
        if m.rejected and index is None:
            continue
        for mapping in m.rtpmaps:
            if mapping.encoding not in names:
                names.append(mapping.encoding)
    return names


# --- what we relay -----------------------------------------------------------------------------

RELAYABLE_PROTOCOLS = frozenset({"RTP/AVP", "RTP/AVPF"})
"""``m=`` transport protocols we relay: plain RTP, AVP (RFC 3551) or AVPF (RFC 4585) profile."""
G711_ENCODINGS = frozenset({"PCMU", "PCMA"})
"""Codecs that make a stream relayable (see the module docstring for why G.711 only)."""
COMPANION_ENCODINGS = frozenset({"TELEPHONE-EVENT", "CN"})
"""Formats relayed beside G.711 when offered at 8 kHz: RFC 4733 DTMF, RFC 3389 comfort noise."""
_WARNING_TEXT = {
    304: "Media type not available",
    305: "Incompatible media format",
}


class NotRelayable(SdpError):
    """The SDP has no stream maskline can relay; answer 488 with this ``Warning`` code.

    ``warning_code`` is 304 (no usable audio stream) or 305 (audio, but no relayable profile
    or codec), RFC 3261 §20.43; ``warning_text`` its standard text.
    """

    def __init__(self, warning_code: int, detail: str) -> None:
        super().__init__(f"{_WARNING_TEXT[warning_code]}: {detail}")
        self.warning_code = warning_code
        self.warning_text = _WARNING_TEXT[warning_code]

    def warning(self, agent: str) -> str:
        """The ``Warning`` header value, ``<code> <agent> "<text>"`` (RFC 3261 §20.43)."""
        return f'{self.warning_code} {agent} "{self.warning_text}"'


def _is_g711(mapping: RtpMap) -> bool:
    # Encoding names are case-insensitive (RFC 4566 §6, a=rtpmap); G.711 is mono at 8 kHz.
    return (
        mapping.encoding.upper() in G711_ENCODINGS
        and mapping.clock_rate == 8000
        and mapping.channels in (None, 1)
    )


def _is_companion(mapping: RtpMap) -> bool:
    return mapping.encoding.upper() in COMPANION_ENCODINGS and mapping.clock_rate == 8000


def relayable_stream(sdp: SessionDescription) -> int:
    """Index of the stream maskline relays: the first audio stream with G.711 over RTP/AVP(F).

    Raises ``NotRelayable`` (an ``SdpError``) when there is none: warning 304 when no audio
    stream is offered at all (none, or every one rejected with port 0), 305 when audio is
    offered but not on a relayable profile or without PCMU/PCMA.
    """
    audio_offered = False
    for index, m in enumerate(sdp.media):
        if m.media.lower() != "audio" or m.rejected:
            continue
        audio_offered = True
        if m.proto.upper() not in RELAYABLE_PROTOCOLS:
            continue
        if any(_is_g711(mapping) for mapping in m.rtpmaps):
            return index
    if not audio_offered:
        raise NotRelayable(304, "no audio stream")
    raise NotRelayable(305, "no G.711 (PCMU/PCMA) audio over RTP/AVP")


def keep_relayable_formats(
    sdp: SessionDescription, index: int, *, codec: int | None = None
) -> SessionDescription:
    """``sdp`` with stream ``index`` reduced to G.711, telephone-event/8000 and CN/8000.

    ``codec``: keep only that G.711 payload type (with the companions), the one we already
    answered the caller with (``answer_codec``), so the other leg's answer cannot pick another.
    The formats keep their order (the offerer's preference, RFC 3264 §5.1); the ``a=rtpmap``,
    ``a=fmtp`` and ``a=rtcp-fb`` lines of removed payload types go with them, every other line
    stays. Other streams are untouched (``ports_for_stream`` rejects them). Raises
    ``NotRelayable`` if the stream has no G.711 format (or not ``codec``).
    """
    m = sdp.media[index]
    kept: list[str] = []
    removed: set[str] = set()
    for pt in m.formats:
        mapping = m.rtpmap(pt)
        wanted = mapping is not None and (
            _is_companion(mapping) or (_is_g711(mapping) and (codec is None or pt == str(codec)))
        )
        if wanted:
            kept.append(pt)
        else:
            removed.add(pt)
    if not any(_is_g711(mapping) for pt in kept if (mapping := m.rtpmap(pt)) is not None):
        raise NotRelayable(305, "no G.711 (PCMU/PCMA) audio over RTP/AVP")
    if not removed:
        return sdp

    def about_removed(name: str, value: str | None) -> bool:
        # a=rtpmap:<pt> …, a=fmtp:<pt> …, a=rtcp-fb:<pt> … of a payload type taken out
        if value is None or name not in ("rtpmap", "fmtp", "rtcp-fb"):
            return False
        return value.split(" ", 1)[0].strip() in removed

    port_text = str(m.port) if m.port_count is None else f"{m.port}/{m.port_count}"
    m_line: SdpLine = ("m", " ".join([m.media, port_text, m.proto, *kept]))
    lines = (
        m_line,
        *(
            (kind, value)
            for kind, value in m.lines[1:]
            if kind != "a" or not about_removed(*_split_attribute(value))
        ),
    )
    attributes = tuple(a for a in m.attributes if not about_removed(a.name, a.value))
    media = list(sdp.media)
    media[index] = replace(m, formats=tuple(kept), attributes=attributes, lines=lines)
    return replace(sdp, media=tuple(media))


def answer_codec(sdp: SessionDescription, index: int) -> int | None:
    """The G.711 payload type we answer stream ``index`` with when we answer it ourselves.

    The first format the offer lists (its preference, RFC 3264 §6.1) that is PCMU as payload
    type 0 or PCMA as 8. Those are the static types of RFC 3551 — every trunk uses them — and
    what our prompts and ringback are encoded for (``media.g711``). G.711 under a dynamic
    payload type (allowed, not seen in practice) gives None: such a call is relayed as usual
    but gets no audio of ours. Also None for a stream that is not sendrecv: we need to hear
    the caller (keys) and it must hear us.
    """
    if not 0 <= index < len(sdp.media):
        return None
    m = sdp.media[index]
    if m.direction is not Direction.SENDRECV or m.rejected:
        return None
    for pt in m.formats:
        mapping = m.rtpmap(pt)
        if mapping is None or not _is_g711(mapping):
            continue
        static = STATIC_PAYLOAD_TYPES.get(pt)
        if static is not None and static.encoding == mapping.encoding.upper():
            return int(pt)
    return None


_ANSWER_DIRECTION = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}
# RFC 4733 §3.2: the events we understand and send are the 16 DTMF keys.
_DTMF_EVENTS = "0-15"


def local_answer(
    offer: SessionDescription,
    index: int,
    *,
    payload_type: int,
    address: str,
    port: int,
    session_id: int,
    version: int,
    username: str = "maskline",
    ptime_ms: int = 20,
) -> bytes:
    """Our own SDP answer to ``offer`` (RFC 3264 §6), for calls we answer before any far leg.

    Stream ``index`` is accepted on our ``address`` and relay ``port`` with one codec,
    ``payload_type`` (from ``answer_codec``), plus ``telephone-event/8000`` and ``CN/8000``
    under the offer's payload types when the offer has them (RFC 4733 DTMF, events 0-15;
    RFC 3389 comfort noise), ``a=ptime`` and the direction that mirrors the offer's. Every
    other ``m=`` line is declined with port 0, as §6 requires one answer line per offer line.
    Nothing of the offer beyond its payload types and profile is copied: no address, no
    session name, no attribute we do not set ourselves. Raises ``SdpError`` for an ``address``
    that is not an IP address or a ``payload_type`` the stream does not offer.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"not an IP address: {address!r}") from None
    m = offer.media[index]
    if str(payload_type) not in m.formats:
        raise SdpError(f"payload type {payload_type} is not offered in stream {index}")
    codec = m.rtpmap(str(payload_type))
    assert codec is not None  # answer_codec picked it from the offer's mapped formats
    addrtype = "IP4" if ip.version == 4 else "IP6"
    lines: list[SdpLine] = [
        ("v", "0"),
        ("o", f"{username} {session_id} {version} IN {addrtype} {ip.compressed}"),
        ("s", "-"),
        ("c", f"IN {addrtype} {ip.compressed}"),
        ("t", "0 0"),
    ]
    for i, section in enumerate(offer.media):
        if i != index:
            declined = " ".join(section.formats) or "0"
            lines.append(("m", f"{section.media} 0 {section.proto} {declined}"))
            continue
        formats = [str(payload_type)]
        attributes = [("a", f"rtpmap:{payload_type} {codec.encoding.upper()}/8000")]
        for pt in section.formats:
            mapping = section.rtpmap(pt)
            if mapping is None or not _is_companion(mapping) or pt in formats:
                continue
            formats.append(pt)
            attributes.append(("a", f"rtpmap:{pt} {mapping.encoding}/8000"))
            if mapping.encoding.upper() == "TELEPHONE-EVENT":
                attributes.append(("a", f"fmtp:{pt} {_DTMF_EVENTS}"))
        lines.append(("m", " ".join([section.media, str(port), section.proto, *formats])))
        lines.extend(attributes)
        lines.append(("a", f"ptime:{ptime_ms}"))
        lines.append(("a", _ANSWER_DIRECTION[section.direction].value))
    return _render(lines)


def ports_for_stream(sdp: SessionDescription, index: int, port: int) -> list[int]:
    """The ``ports`` argument of ``rewrite_for_leg`` relaying only stream ``index`` on ``port``.

    Every other stream gets 0: declined on the other leg (RFC 3264 §6, §8.2), since the relay
    anchors one stream per call.
    """
    return [port if i == index else 0 for i in range(len(sdp.media))]


# --- rewriting ---------------------------------------------------------------------------------

# Session- and media-level lines that describe the far party rather than the media: session
# information, URI, e-mail and phone (RFC 4566 §5.4-§5.6) can carry a name or a real number.
_DROPPED_TYPES = frozenset("iuep")
# Attributes that carry the far party's transport addresses. ICE (RFC 8839 §5) candidates are
# its real host/reflexive addresses, and ICE cannot work through an anchoring relay anyway;
# a=rtcp (RFC 3605) names its RTCP port/address — without it the peer uses our port + 1, which
# the allocator keeps reserved.
_DROPPED_ATTRIBUTES = frozenset(
    {"candidate", "remote-candidates", "end-of-candidates", "rtcp", "ice-lite", "ice-mismatch"}
)


def _dropped_attribute(value: str) -> bool:
    name = value.partition(":")[0]
    return name in _DROPPED_ATTRIBUTES or name.startswith("ice-")


def rewrite_for_leg(
    sdp: SessionDescription,
    *,
    address: str,
    ports: Sequence[int],
    session_id: int,
    version: int,
    username: str = "maskline",
) -> bytes:
    """The SDP the other leg sees: media anchored on ``address`` and our relay ``ports``.

    - ``o=`` is entirely ours (``username``, ``session_id``, ``version``, our address); the
      original carries the far party's address. Keep ``session_id`` fixed for a leg and increment
      ``version`` whenever the SDP changes (RFC 3264 §8; ``SdpOrigin`` does that bookkeeping).
    - ``s=-``; ``i=``, ``u=``, ``e=``, ``p=`` dropped (identity of the far party).
    - every ``c=`` is ours (IP4/IP6 from ``address``), except a ``0.0.0.0``/``::`` hold address,
      which stays unspecified so the hold survives (RFC 3264 §8.4).
    - ``m=`` i gets ``ports[i]``; a rejected stream (port 0) stays 0 (RFC 3264 §6).
    - ``a=rtcp``, ``a=candidate``, ``a=ice-*`` and the other ICE lines are dropped.
    - codecs, ``rtpmap``/``fmtp``, direction and all other lines pass through in order.

    Raises ``SdpError`` if ``ports`` does not have one entry per ``m=`` line or ``address`` is
    not an IP address.
    """
    if len(ports) != len(sdp.media):
        raise SdpError(f"{len(sdp.media)} media streams but {len(ports)} ports")
    addrtype, ours, unspecified = _relay_address(address)
    # No nested function, generator expression or zip here: compiled, each is an object per
    # call (this runs twice a call, an SDP for each leg).
    ours_line: SdpLine = ("c", f"IN {addrtype} {ours}")
    out: list[SdpLine] = [
        ("v", "0"),
        ("o", f"{username} {session_id} {version} IN {addrtype} {ours}"),
        ("s", "-"),
    ]
    # RFC 4566 §5.7: a c= at session level or in every m= section. Where the original has
    # neither (not valid, but seen), give one at session level, in its place after s=.
    if sdp.connection is not None:
        out.append(_connection_line(sdp.connection, ours_line, addrtype, unspecified))
    else:
        for m in sdp.media:
            if m.connection is None:
                out.append(ours_line)
                break
    for kind, value in sdp.lines[1:]:
        if kind in "vosc" or kind in _DROPPED_TYPES:
            continue
        if kind == "a" and _dropped_attribute(value):
            continue
        out.append((kind, value))

    for index, m in enumerate(sdp.media):
        # A port count (m=audio 49170/2) is not kept: the relay gives one port per stream.
        port_out = 0 if m.port == 0 else ports[index]
        out.append(("m", " ".join([m.media, str(port_out), m.proto, *m.formats])))
        for kind, value in m.lines[1:]:
            if kind in _DROPPED_TYPES:
                continue
            if kind == "c":
                out.append(_connection_line(m.connection, ours_line, addrtype, unspecified))
            elif kind == "a" and _dropped_attribute(value):
                continue
            else:
                out.append((kind, value))
    return _render(out)


def _connection_line(
    original: Connection | None, ours_line: SdpLine, addrtype: str, unspecified: str
) -> SdpLine:
    """Our ``c=`` line, or the unspecified address of a hold (RFC 3264 §8.4), kept as such."""
    if original is not None and original.is_unspecified:
        return ("c", f"IN {addrtype} {unspecified}")
    return ours_line


@functools.lru_cache(maxsize=16)
def _relay_address(address: str) -> tuple[str, str, str]:
    """``(addrtype, compressed address, unspecified address)`` of our relay address (one or two
    per process: parsed once, not for every SDP written)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"not an IP address: {address!r}") from None
    if ip.version == 4:
        return "IP4", ip.compressed, "0.0.0.0"
    return "IP6", ip.compressed, "::"


def _render(lines: Sequence[SdpLine]) -> bytes:
    return "".join(f"{kind}={value}\r\n" for kind, value in lines).encode(
        "utf-8", "surrogateescape"
    )


def new_session_id() -> int:
    """A fresh random ``sess-id`` for a leg's ``o=`` line (RFC 4566 §5.2: globally unique)."""
    return secrets.randbits(62) + 1


class SdpOrigin:
    """The ``o=`` bookkeeping of one leg: a fixed session id and a version that counts changes.

    RFC 3264 §8: every new offer or answer on a leg carries the same ``sess-id``; its version is
    one more than the previous one if the SDP changed and the same if it did not (a re-INVITE
    that only refreshes the session timer resends identical SDP).
    """

    __slots__ = ("_last", "address", "session_id", "username", "version")

    def __init__(
        self, *, address: str, session_id: int | None = None, username: str = "maskline"
    ) -> None:
        """Start a leg's origin on our media ``address``; version starts at the session id."""
        self.address = address
        self.session_id = new_session_id() if session_id is None else session_id
        self.username = username
        # RFC 4566 §5.2 suggests an NTP timestamp for both; equal start values are common.
        self.version = self.session_id
        self._last: bytes | None = None

    def rewrite(self, sdp: SessionDescription, *, ports: Sequence[int]) -> bytes:
        """``rewrite_for_leg`` with this leg's origin, bumping the version if the SDP changed."""
        body = self._render(sdp, ports)
        if self._last is not None and body != self._last:
            self.version += 1
            body = self._render(sdp, ports)
        # _last was rendered with the current version, so equal bytes mean an unchanged SDP.
        self._last = body
        return body

    def _render(self, sdp: SessionDescription, ports: Sequence[int]) -> bytes:
        return rewrite_for_leg(
            sdp,
            address=self.address,
            ports=ports,
            session_id=self.session_id,
            version=self.version,
            username=self.username,
        )
