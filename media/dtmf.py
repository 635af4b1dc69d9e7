"""DTMF digits from RFC 4733 telephone-event packets and from SIP INFO bodies.

RFC 4733 §2.3 payload (4 octets after the RTP header, payload type from the SDP, usually 101)::

     0                   1                   2                   3
    |     event     |E|R| volume    |          duration             |

One key press is one *event*: every packet of it carries the same RTP timestamp (the event's
start), the duration grows with each update, and the last packet has the E bit and is sent
three times (§2.5.1.4). A receiver must therefore turn many packets into one digit. The
``DtmfDetector`` reports a digit on the first packet it sees of an event — start, update or
end, whichever survives the network — and remembers that event's (SSRC, timestamp) so every
later packet of it is ignored. That makes the result independent of which packets were lost:
an event whose end packets never arrive is still reported once, and the next press of the same
key is a new event because it has a new timestamp (§2.5.1.2). The one exception is an event
longer than the duration field (0xFFFF samples, ~8 s): §2.5.1.3 continues it in a new segment
whose timestamp is the old one plus 0xFFFF, which is recognised as the same key press.

SIP INFO carries digits in two de-facto formats: ``application/dtmf-relay`` (``Signal=5`` and
``Duration=160`` lines, duration in ms) and ``application/dtmf`` (the digit alone). Other content
types are ``UnsupportedDtmfBody`` (answer 415), unreadable bodies ``MalformedDtmfBody`` (400):
each error carries ``status_code``.

Digits are what a caller keys (extensions, possibly PINs): no ``repr`` here shows them.

Pure: bytes in, values out; no clock, no sockets.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from aiortc.rtp import RtpPacket

from media.sdp import MediaDescription

__all__ = [
    "DEFAULT_EVENT_PAYLOAD_TYPE",
    "DTMF_DIGITS",
    "DtmfDetector",
    "DtmfDigit",
    "DtmfError",
    "MalformedDtmfBody",
    "MalformedTelephoneEvent",
    "TelephoneEvent",
    "UnsupportedDtmfBody",
    "parse_info_body",
    "parse_telephone_event",
    "telephone_event_packets",
    "telephone_event_payload_type",
]

# RFC 4733 §3.2 table 3: events 0-15 are the DTMF keys, in this order.
DTMF_DIGITS: Final = "0123456789*#ABCD"
DEFAULT_EVENT_PAYLOAD_TYPE: Final = 101
MAX_DURATION: Final = 0xFFFF  # the duration field's limit (§2.5.1.3)
INFO_CONTENT_TYPES: Final = ("application/dtmf-relay", "application/dtmf")

_EVENT: Final = struct.Struct("!BBH")
_RTP_HEADER: Final = struct.Struct("!BBHII")
_END_BIT: Final = 0x80
_VOLUME_MASK: Final = 0x3F
_TIMESTAMP_MODULO: Final = 1 << 32
_SEQ_MODULO: Final = 1 << 16
# An INFO body with a digit in it is a few dozen bytes; anything far larger is not one.
_MAX_INFO_BODY_BYTES: Final = 1024
# A key held for a minute is not a key press; a Duration beyond this is garbage.
_MAX_INFO_DURATION_MS: Final = 60_000


class DtmfError(ValueError):
    """Root of this module's errors; ``status_code`` is the SIP answer to a bad INFO."""

    status_code: int = 400


class MalformedTelephoneEvent(DtmfError):
    """A datagram of the telephone-event payload type that is not a valid RFC 4733 packet."""


class UnsupportedDtmfBody(DtmfError):
    """An INFO body of a content type that carries no digit we read (answer 415)."""

    status_code = 415


class MalformedDtmfBody(DtmfError):
    """An INFO body of a DTMF content type that does not hold one valid digit (answer 400)."""


def _mask(digit: str) -> str:
    return "*" * len(digit)


@dataclass(frozen=True, slots=True, repr=False)
class TelephoneEvent:
    """One RFC 4733 telephone-event packet, parsed. ``duration`` is in timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int
    timestamp: int
    ssrc: int
    sequence: int
    marker: bool

    @property
    def digit(self) -> str | None:
        """The DTMF key for events 0-15, None for other events (flash, tones)."""
        return DTMF_DIGITS[self.event] if self.event < len(DTMF_DIGITS) else None

    def __repr__(self) -> str:
        return (
            f"TelephoneEvent(event=<masked>, end={self.end}, volume={self.volume}, "
            f"duration={self.duration}, timestamp={self.timestamp}, seq={self.sequence})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class DtmfDigit:
    """A key the far party pressed: '0'-'9', '*', '#', 'A'-'D'.

    ``source`` says how it came; ``duration_ms`` is known for INFO with a Duration line only
    (a telephone event is reported on its first packet, before its duration is known).
    """

    digit: str
    source: Literal["rfc4733", "info"]
    duration_ms: int | None = None

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DTMF_DIGITS:
            raise ValueError("not a DTMF digit")

    def __repr__(self) -> str:
        return f"DtmfDigit(digit={_mask(self.digit)!r}, source={self.source!r})"


def telephone_event_payload_type(media: MediaDescription) -> int | None:
    """The payload type an SDP media section gives ``telephone-event/8000``, or None.

    The rate must be the audio's (8 kHz for G.711): RFC 4733 §2.1 ties the event clock to the
    audio clock. With no such format the far party sends no RFC 4733 digits (INFO may still).
    """
    for mapping in media.rtpmaps:
        if mapping.encoding.lower() == "telephone-event" and mapping.clock_rate == 8000:
            payload_type = int(mapping.payload_type)
            if 0 <= payload_type <= 0x7F:
                return payload_type
    return None


def parse_telephone_event(data: bytes) -> TelephoneEvent:
    """Parse one RTP datagram whose payload type is the negotiated telephone-event type.

    The RTP header (CSRCs, header extension, padding) is read with ``aiortc.rtp.RtpPacket``.
    Raises ``MalformedTelephoneEvent`` for anything that is not RTP version 2 with a payload
    of whole 4-octet events. Of several events packed into one payload (RFC 4733 §2.5.1.5, a
    rare sender option for very short events) only the first is read.
    """
    try:
        packet = RtpPacket.parse(data)
    except ValueError as exc:
        raise MalformedTelephoneEvent(f"not an RTP packet: {exc}") from None
    payload = packet.payload
    if not payload or len(payload) % _EVENT.size:
        raise MalformedTelephoneEvent(
            f"a telephone-event payload is 4 octets per event, not {len(payload)}"
        )
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(
        event=event,
        end=bool(flags & _END_BIT),
        volume=flags & _VOLUME_MASK,
        duration=duration,
        timestamp=packet.timestamp,
        ssrc=packet.ssrc,
        sequence=packet.sequence_number,
        marker=bool(packet.marker),
    )


@dataclass(slots=True)
class _Seen:
    """What the detector remembers of the last event: enough to join a long event's segments."""

    ssrc: int
    timestamp: int
    event: int
    ended: bool


class DtmfDetector:
    """Turns the telephone-event packets of one media direction into digits, once per event.

    ``payload_type`` is the telephone-event type the SDP negotiated for this direction.
    ``receive_packet`` takes every relayed datagram (it ignores other payload types at the cost
    of one byte test) and never raises: a malformed event packet is counted, not thrown into
    the relay's receive callback. Counters: ``event_packets``, ``digits``, ``malformed``,
    ``non_dtmf_events`` (flash and tone events, not digits).
    """

    __slots__ = (
        "_last",
        "_recent",
        "digits",
        "event_packets",
        "malformed",
        "non_dtmf_events",
        "payload_type",
    )

    def __init__(self, payload_type: int = DEFAULT_EVENT_PAYLOAD_TYPE, *, memory: int = 16) -> None:
        """``memory``: how many recent events to recognise late duplicates of (reordering)."""
        if not 0 <= payload_type <= 0x7F:
            raise ValueError(f"RTP payload type must be 0..127, not {payload_type}")
        if memory < 1:
            raise ValueError("memory must be at least 1")
        self.payload_type = payload_type
        # (ssrc, timestamp) of events already reported, oldest first.
        self._recent: deque[tuple[int, int]] = deque(maxlen=memory)
        self._last: _Seen | None = None
        self.event_packets = 0
        self.digits = 0
        self.malformed = 0
        self.non_dtmf_events = 0

    def receive_packet(self, data: bytes) -> DtmfDigit | None:
        """Feed one RTP datagram; the digit if it is the first packet of a DTMF event."""
        # The payload type is the low 7 bits of the second octet (RFC 3550 §5.1).
        if len(data) < 2 or data[1] & 0x7F != self.payload_type:
            return None
        try:
            event = parse_telephone_event(data)
        except MalformedTelephoneEvent:
            self.malformed += 1
            return None
        return self.receive_event(event)

    def receive_event(self, event: TelephoneEvent) -> DtmfDigit | None:
        """Feed one parsed telephone event; the digit if it starts a key press not seen yet."""
        self.event_packets += 1
        key = (event.ssrc, event.timestamp)
        last = self._last
        if key in self._recent:
            # A repeat (update, redundant end) of a reported event, perhaps late.
            if last is not None and (last.ssrc, last.timestamp) == key and event.end:
                last.ended = True
            return None
        self._recent.append(key)
        continues = (
            last is not None
            and not last.ended
            and last.ssrc == event.ssrc
            and last.event == event.event
            and event.timestamp == (last.timestamp + MAX_DURATION) % _TIMESTAMP_MODULO
        )
        self._last = _Seen(event.ssrc, event.timestamp, event.event, event.end)
        if continues:
            return None  # §2.5.1.3: the next segment of a key held past 0xFFFF samples
        digit = event.digit
        if digit is None:
            self.non_dtmf_events += 1
            return None
        self.digits += 1
        return DtmfDigit(digit, "rfc4733")

    def __repr__(self) -> str:
        return (
            f"DtmfDetector(pt={self.payload_type}, digits={self.digits}, "
            f"packets={self.event_packets}, malformed={self.malformed})"
        )


# --- SIP INFO ---


def parse_info_body(content_type: str, body: bytes) -> DtmfDigit:
    """The digit in a SIP INFO body of ``content_type`` (the Content-Type header's value).

    ``application/dtmf-relay``: ``Signal=<key>`` and optional ``Duration=<ms>`` lines (CRLF or
    LF; other keys ignored, as senders add their own), the Signal a key or an RFC 4733 event
    code 10-15. ``application/dtmf``: the key alone. A key is '0'-'9', '*', '#', 'A'-'D' (either
    case).
    Raises ``UnsupportedDtmfBody`` (415) for another content type, ``MalformedDtmfBody`` (400)
    for a body without exactly one valid key.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in INFO_CONTENT_TYPES:
        raise UnsupportedDtmfBody(f"INFO content type {media_type or '(none)'!r} carries no DTMF")
    if len(body) > _MAX_INFO_BODY_BYTES:
        raise MalformedDtmfBody(f"a DTMF body of {len(body)} bytes is not one digit")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedDtmfBody("DTMF body is not ASCII") from None
    if media_type == "application/dtmf":
        return DtmfDigit(_signal(text.strip(), event_codes=False), "info")
    return _parse_dtmf_relay(text)


def _parse_dtmf_relay(text: str) -> DtmfDigit:
    signal: str | None = None
    duration_ms: int | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise MalformedDtmfBody("dtmf-relay line without '='")
        name = name.strip().lower()
        value = value.strip()
        if name == "signal":
            if signal is not None:
                raise MalformedDtmfBody("dtmf-relay body with two Signal lines")
            signal = _signal(value, event_codes=True)
        elif name == "duration":
            if duration_ms is not None:
                raise MalformedDtmfBody("dtmf-relay body with two Duration lines")
            duration_ms = _duration_ms(value)
    if signal is None:
        raise MalformedDtmfBody("dtmf-relay body without a Signal line")
    return DtmfDigit(signal, "info", duration_ms)


def _signal(value: str, *, event_codes: bool) -> str:
    if len(value) == 1 and value.upper() in DTMF_DIGITS:
        return value.upper()
    # Some gateways put the RFC 4733 event code in Signal: 10 for '*', 11 for '#', 12-15 for
    # A-D. application/dtmf is the key character alone, where "12" can only be a mistake.
    if event_codes and value.isascii() and value.isdigit() and 10 <= int(value) < len(DTMF_DIGITS):
        return DTMF_DIGITS[int(value)]
    raise MalformedDtmfBody("signal is not a DTMF key")


def _duration_ms(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_INFO_DURATION_MS:
        raise MalformedDtmfBody("Duration is not a number of milliseconds up to 60000")
    return int(value)


# --- building packets (tests, pcaps for the end-to-end tests) ---


def telephone_event_packets(
    digit: str,
    *,
    ssrc: int,
    sequence: int,
    timestamp: int,
    payload_type: int = DEFAULT_EVENT_PAYLOAD_TYPE,
    duration_samples: int = 800,
    samples_per_update: int = 160,
    volume: int = 10,
    end_repeats: int = 3,
) -> list[bytes]:
    """The RTP packets of one key press as an RFC 4733 sender emits them.

    An update every ``samples_per_update`` (20 ms at 8 kHz) with the duration so far, the first
    with the marker bit (§2.5.1.2); then the final packet with the E bit, ``end_repeats`` times
    (§2.5.1.4). All carry ``timestamp`` (the event's start); each has the next sequence number
    from ``sequence``. ``duration_samples`` must fit the duration field (no segmenting here).
    """
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise ValueError("not a DTMF digit")
    if not 0 < duration_samples <= MAX_DURATION:
        raise ValueError(f"duration_samples must be 1..{MAX_DURATION}")
    if samples_per_update <= 0:
        raise ValueError("samples_per_update must be positive")
    if not 0 <= volume <= _VOLUME_MASK:
        raise ValueError("volume must be 0..63 (-dBm0)")
    if end_repeats < 1:
        raise ValueError("end_repeats must be at least 1")
    if not 0 <= payload_type <= 0x7F:
        raise ValueError("payload_type must be 0..127")
    event = DTMF_DIGITS.index(digit)
    updates = list(range(samples_per_update, duration_samples, samples_per_update))
    packets: list[bytes] = []
    for index, duration in enumerate(updates + [duration_samples] * end_repeats):
        end = index >= len(updates)
        header = _RTP_HEADER.pack(
            0x80,
            (0x80 if index == 0 else 0) | payload_type,
            (sequence + index) % _SEQ_MODULO,
            timestamp % _TIMESTAMP_MODULO,
            ssrc,
        )
        packets.append(header + _EVENT.pack(event, (_END_BIT if end else 0) | volume, duration))
    return packets
