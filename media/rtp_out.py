"""Outgoing RTP for streams maskline originates itself (ringback, prompts, test tones).

Relayed media is never re-written (media/relay.py forwards bytes untouched); this module is for
the few streams whose packets we make. One ``RtpStreamWriter`` is one RTP stream (one SSRC): the
sequence number counts packets, the timestamp counts samples (RFC 3550 §5.1).

RFC 3550 §5.1 asks for random initial sequence numbers and timestamps (and §8.1 a random SSRC)
so that a stream's start cannot be guessed by an attacker injecting packets; they come from
``secrets``. Headers are built with one ``struct.pack`` per packet: a prompt for a thousand
concurrent calls is 50,000 packets a second, where building an ``aiortc.rtp.RtpPacket`` object
per packet costs several times as much.

Pure: no clock, no sockets. The player (media/player.py) decides when packets leave.
"""

from __future__ import annotations

import secrets
import struct
from typing import Final

__all__ = [
    "RTP_HEADER_BYTES",
    "SAMPLES_PER_G711_FRAME",
    "RtpStreamWriter",
]

RTP_HEADER_BYTES: Final = 12
# 20 ms of 8 kHz audio: the G.711 default packetisation (RFC 3551 §4.5.14, ptime 20).
SAMPLES_PER_G711_FRAME: Final = 160

_VERSION_2: Final = 0x80  # V=2, P=0, X=0, CC=0 (RFC 3550 §5.1)
_MARKER: Final = 0x80
_HEADER: Final = struct.Struct("!BBHII")
_SEQ_MODULO: Final = 1 << 16
_TIMESTAMP_MODULO: Final = 1 << 32


class RtpStreamWriter:
    """Numbers and frames the packets of one outgoing RTP stream.

    ``payload_type`` (0..127) goes into every packet; ``samples_per_frame`` is how far the
    timestamp moves per packet by default (160 for 20 ms of G.711). ``ssrc``,
    ``initial_sequence`` and ``initial_timestamp`` are random unless given (tests give them).

    The first packet of the stream carries the marker bit, as does the first packet after
    ``skip`` (RFC 3551 §4.1: the marker flags the first packet of a talkspurt, after silence
    during which nothing was sent).
    """

    __slots__ = (
        "_next_marker",
        "_sequence",
        "_timestamp",
        "octets_sent",
        "packets_sent",
        "payload_type",
        "samples_per_frame",
        "ssrc",
    )

    def __init__(
        self,
        *,
        payload_type: int,
        samples_per_frame: int = SAMPLES_PER_G711_FRAME,
        ssrc: int | None = None,
        initial_sequence: int | None = None,
        initial_timestamp: int | None = None,
    ) -> None:
        """Raise ``ValueError`` for a payload type, SSRC or start value out of its field."""
        if not 0 <= payload_type <= 0x7F:
            raise ValueError(f"RTP payload type must be 0..127, not {payload_type}")
        if samples_per_frame < 0:
            raise ValueError("samples_per_frame cannot be negative")
        self.payload_type = payload_type
        self.samples_per_frame = samples_per_frame
        self.ssrc = _field(ssrc, _TIMESTAMP_MODULO, "ssrc")
        self._sequence = _field(initial_sequence, _SEQ_MODULO, "initial_sequence")
        self._timestamp = _field(initial_timestamp, _TIMESTAMP_MODULO, "initial_timestamp")
        self._next_marker = True
        self.packets_sent = 0  # for an RTCP sender report, should we send one later
        self.octets_sent = 0  # payload octets (RFC 3550 §6.4.1 "sender's octet count")

    @property
    def next_sequence(self) -> int:
        """The sequence number the next packet will carry."""
        return self._sequence

    @property
    def next_timestamp(self) -> int:
        """The timestamp the next packet will carry."""
        return self._timestamp

    def packet(self, payload: bytes, *, marker: bool = False, samples: int | None = None) -> bytes:
        """Return the next packet carrying ``payload``; advance sequence by 1, timestamp by samples.

        ``samples`` defaults to ``samples_per_frame``. ``marker`` forces the marker bit; it is
        also set on the first packet of the stream and after ``skip``.
        """
        step = self.samples_per_frame if samples is None else samples
        if step < 0:
            raise ValueError("samples cannot be negative")
        marker_bit = _MARKER if (marker or self._next_marker) else 0
        header = _HEADER.pack(
            _VERSION_2,
            marker_bit | self.payload_type,
            self._sequence,
            self._timestamp,
            self.ssrc,
        )
        self._next_marker = False
        self._sequence = (self._sequence + 1) % _SEQ_MODULO
        self._timestamp = (self._timestamp + step) % _TIMESTAMP_MODULO
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload

    def skip(self, samples: int) -> None:
        """Let ``samples`` of silence pass without sending: the timestamp moves, the sequence not.

        RFC 3550 §5.1: the timestamp follows the sampling clock even when nothing is sent, and
        the sequence number counts only packets sent (so the receiver sees no loss). The next
        packet starts a new talkspurt and carries the marker bit.
        """
        if samples < 0:
            raise ValueError("samples cannot be negative")
        if samples:
            self._timestamp = (self._timestamp + samples) % _TIMESTAMP_MODULO
            self._next_marker = True

    def __repr__(self) -> str:
        return (
            f"RtpStreamWriter(pt={self.payload_type}, ssrc={self.ssrc:#010x}, "
            f"next_seq={self._sequence}, sent={self.packets_sent})"
        )


def _field(value: int | None, modulo: int, name: str) -> int:
    if value is None:
        return secrets.randbelow(modulo)
    if not 0 <= value < modulo:
        raise ValueError(f"{name} must be 0..{modulo - 1}, not {value}")
    return value
