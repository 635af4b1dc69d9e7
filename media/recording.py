"""Call recording: both directions of a relayed call into one stereo track (pure, no I/O).

The relay calls :meth:`CallRecording.on_packet` for every packet it forwards. That hot path only
appends the datagram (the bytes object the loop already made) and its arrival time to a
per-direction list: no RTP parsing, no decoding, no allocation beyond the list slot and the
float. Everything else happens once, in :meth:`CallRecording.render`, on whole arrays (run it in
a worker thread; :mod:`media.recording_io` does):

1. RTP headers (RFC 3550 §5.1) are read for all packets at once with NumPy: CSRC list, header
   extension (§5.3.1) and padding are skipped; only PCMU (0) and PCMA (8) are kept, so
   telephone-events (RFC 4733), comfort noise (RFC 3389) and multiplexed RTCP leave silence.
2. Per SSRC, timestamps are unwrapped (32-bit wrap) and each packet gets a sample position
   ``anchor + (timestamp - first timestamp)``. The anchor ties the stream to the recording's
   clock by arrival time: the least-delayed of the first packets (so the jitter of the very first
   packet does not shift the whole stream). A new SSRC gets its own anchor. Where the timestamps
   stop agreeing with arrival times (a sender restarting its timestamps on the same SSRC, one
   that does not advance them over a silence, or clock drift), the stream is re-anchored there.
3. Samples are written at their positions into a silent track, so loss, reordering, jitter and
   silence suppression keep both channels aligned on the recording's clock; a later copy of a
   sample overwrites an earlier one.

Caller (relay direction ``a_to_b``) is the left channel, callee (``b_to_a``) the right one. The
track runs from the recording's start to the end of the last packet of either side, capped at
``max_duration_s``; the memory held per direction is capped by the same figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from media import g711

if TYPE_CHECKING:
    from media.relay import PacketDirection

__all__ = [
    "CHANNELS",
    "SAMPLE_RATE_HZ",
    "CallRecording",
    "RecordingFile",
    "Stereo",
]

SAMPLE_RATE_HZ: Final = 8000
CHANNELS: Final = 2

Stereo = npt.NDArray[np.int16]
"""Frames × 2 (left caller, right callee), 16-bit linear PCM at 8 kHz."""

_RTP_HEADER_BYTES: Final = 12
# What one stored packet costs beyond its payload bytes (list slot, bytes object header, float),
# charged against the per-direction memory budget so that a flood of tiny packets is bounded too.
_PACKET_OVERHEAD_BYTES: Final = 64
# Budget per direction: room for G.711 at 8,000 bytes/s plus RTP headers and the per-packet
# overhead of 10 ms packets (100 packets/s × (12 + 64) bytes), over the maximum duration.
_BUDGET_BYTES_PER_S: Final = SAMPLE_RATE_HZ + 100 * (_RTP_HEADER_BYTES + _PACKET_OVERHEAD_BYTES)
_DEFAULT_MAX_DURATION_S: Final = 4 * 3600

# Anchoring: the anchor of a stream segment is the smallest "arrival minus timestamp offset" over
# its first packets (the least-delayed one shows where the stream sits on our clock).
_ANCHOR_WINDOW_PACKETS: Final = 25
# A packet whose timestamp puts it this far *ahead* of its arrival cannot be explained by network
# delay: the timestamps jumped forward (or the sender's clock runs fast). Re-anchor there.
_EARLY_TOLERANCE_S: Final = 0.25
# When even the least-delayed packet of the next window sits this far *behind* the anchor, the
# timestamps fell back (a restart, or no advance over a silence). A single late burst after a
# network stall does not trigger this: the window's minimum comes back down.
_LATE_TOLERANCE_S: Final = 0.5
# Bound on re-anchoring per SSRC, so garbage timestamps cannot make rendering quadratic.
_MAX_SEGMENTS_PER_SSRC: Final = 64
# Packets placed per batch: bounds the temporary index arrays (~1.6 M samples per batch).
_PLACE_BATCH_PACKETS: Final = 10_000


@dataclass(frozen=True, slots=True)
class RecordingFile:
    """A recording written to disk: where, how long (seconds of audio), how big (bytes)."""

    path: Path
    duration_s: float
    size_bytes: int


class _Direction:
    """What one direction received: the datagrams and their arrival times, in arrival order."""

    __slots__ = ("arrivals", "datagrams", "over_budget", "room_bytes")

    def __init__(self, budget_bytes: int) -> None:
        self.datagrams: list[bytes] = []
        self.arrivals: list[float] = []
        self.room_bytes = budget_bytes
        self.over_budget = 0  # packets not kept: the memory cap was reached


class CallRecording:
    """Collects a call's RTP from the relay hook and renders it as stereo 8 kHz PCM.

    ``clock`` gives the arrival times (seconds, monotonic; the relay's loop time or
    ``time.monotonic``); the recording starts at ``started_at`` (default: ``clock()`` now), which
    is sample 0 of both channels. Install with ``session.on_packet = recording.on_packet``.
    """

    __slots__ = ("_callee", "_caller", "_clock", "max_duration_s", "started_at")

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        started_at: float | None = None,
        max_duration_s: float = _DEFAULT_MAX_DURATION_S,
    ) -> None:
        if max_duration_s <= 0:
            raise ValueError(f"max_duration_s must be positive, got {max_duration_s}")
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.max_duration_s = max_duration_s
        budget = int(max_duration_s * _BUDGET_BYTES_PER_S)
        self._caller = _Direction(budget)
        self._callee = _Direction(budget)

    # --- hot path -------------------------------------------------------------------------

    def on_packet(self, direction: PacketDirection, data: bytes) -> None:
        """The relay's ``PacketHook``: keep the datagram and when it arrived, nothing more."""
        track = self._caller if direction == "a_to_b" else self._callee
        room = track.room_bytes - len(data) - _PACKET_OVERHEAD_BYTES
        if room < 0:
            track.over_budget += 1
            return
        track.room_bytes = room
        track.datagrams.append(data)
        track.arrivals.append(self._clock())

    # --- counters -------------------------------------------------------------------------

    @property
    def packets(self) -> tuple[int, int]:
        """Packets kept (caller→callee, callee→caller)."""
        return len(self._caller.datagrams), len(self._callee.datagrams)

    @property
    def packets_over_budget(self) -> tuple[int, int]:
        """Packets not kept because the memory cap was reached (caller→callee, callee→caller)."""
        return self._caller.over_budget, self._callee.over_budget

    # --- rendering ------------------------------------------------------------------------

    def render(self) -> Stereo:
        """The call as frames × 2 int16 samples (left caller, right callee) at 8 kHz.

        Runs on whole arrays; call it off the event loop. Safe while packets still arrive (it
        renders what was there when it started) and repeatable.
        """
        max_samples = int(self.max_duration_s * SAMPLE_RATE_HZ)
        left = _render_direction(self._caller, self.started_at, max_samples)
        right = _render_direction(self._callee, self.started_at, max_samples)
        frames = max(left.size, right.size)
        stereo = np.zeros((frames, CHANNELS), dtype=np.int16)
        stereo[: left.size, 0] = left
        stereo[: right.size, 1] = right
        return stereo


# --------------------------------------------------------------------------------- batch


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The G.711 packets of one direction, in arrival order, as parallel arrays."""

    blob: npt.NDArray[np.uint8]  # every datagram, concatenated
    payload_start: npt.NDArray[np.int64]  # offset of the payload in ``blob``
    payload_len: npt.NDArray[np.int64]  # samples (one byte per sample in G.711)
    alaw: npt.NDArray[np.bool_]  # PCMA (else PCMU)
    timestamp: npt.NDArray[np.int64]  # RTP timestamp, 0 .. 2**32 - 1
    ssrc: npt.NDArray[np.int64]
    arrival_samples: npt.NDArray[np.float64]  # arrival, in samples since the recording start


def _render_direction(
    track: _Direction, started_at: float, max_samples: int
) -> npt.NDArray[np.int16]:
    # Snapshot the lengths first: the hook may still append (datagram before arrival time).
    count = min(len(track.datagrams), len(track.arrivals))
    parsed = _parse(track.datagrams[:count], track.arrivals[:count], started_at)
    if parsed is None:
        return np.zeros(0, dtype=np.int16)
    positions = _positions(parsed)
    ends = positions + parsed.payload_len
    length = int(min(max(int(ends.max()), 0), max_samples))
    channel = np.zeros(length, dtype=np.int16)
    for first in range(0, positions.size, _PLACE_BATCH_PACKETS):
        batch = slice(first, first + _PLACE_BATCH_PACKETS)
        _place(channel, parsed, positions, batch)
    return channel


def _be(
    blob: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], width: int
) -> npt.NDArray[np.int64]:
    """Big-endian unsigned integers of ``width`` bytes at each offset ``at``."""
    value = np.zeros(at.size, dtype=np.int64)
    for i in range(width):
        value = (value << 8) | blob[at + i].astype(np.int64)
    return value


def _parse(
    datagrams: Sequence[bytes], arrivals: Sequence[float], started_at: float
) -> _Parsed | None:
    """Read every RTP header at once (RFC 3550 §5.1); keep the packets carrying G.711 audio."""
    if not datagrams:
        return None
    lengths = np.fromiter(map(len, datagrams), dtype=np.int64, count=len(datagrams))
    starts = np.cumsum(lengths) - lengths
    blob = np.frombuffer(b"".join(datagrams), dtype=np.uint8)
    arrival = (np.asarray(arrivals, dtype=np.float64) - started_at) * SAMPLE_RATE_HZ

    # Fixed header present and version 2.
    keep = lengths >= _RTP_HEADER_BYTES
    starts, lengths, arrival = starts[keep], lengths[keep], arrival[keep]
    first_byte = blob[starts]
    keep = (first_byte >> 6) == 2
    payload_type = blob[starts + 1] & 0x7F
    keep &= (payload_type == g711.PAYLOAD_TYPE_PCMU) | (payload_type == g711.PAYLOAD_TYPE_PCMA)
    starts, lengths, arrival = starts[keep], lengths[keep], arrival[keep]
    first_byte, payload_type = first_byte[keep], payload_type[keep]
    if starts.size == 0:
        return None

    # CSRC list: 4 bytes per contributing source.
    header = _RTP_HEADER_BYTES + 4 * (first_byte & 0x0F).astype(np.int64)
    # Header extension (§5.3.1): 16-bit profile, 16-bit length in 32-bit words, then the words.
    has_extension = (first_byte & 0x10) != 0
    room = has_extension & (header + 4 <= lengths)
    length_at = np.where(room, starts + header + 2, 0)
    words = np.where(room, _be(blob, length_at, 2), 0)
    header = header + np.where(has_extension, 4 + 4 * words, 0)
    # Padding (§5.1 P bit): the last byte counts the padding bytes, itself included.
    has_padding = (first_byte & 0x20) != 0
    padding = np.where(has_padding, blob[starts + lengths - 1].astype(np.int64), 0)
    payload_len = lengths - header - padding

    keep = payload_len > 0
    starts, arrival = starts[keep], arrival[keep]
    if starts.size == 0:
        return None
    return _Parsed(
        blob=blob,
        payload_start=starts + header[keep],
        payload_len=payload_len[keep],
        alaw=payload_type[keep] == g711.PAYLOAD_TYPE_PCMA,
        timestamp=_be(blob, starts + 4, 4),
        ssrc=_be(blob, starts + 8, 4),
        arrival_samples=arrival,
    )


def _positions(parsed: _Parsed) -> npt.NDArray[np.int64]:
    """The sample position of every packet's first sample on the recording's clock."""
    positions = np.empty(parsed.ssrc.size, dtype=np.int64)
    # Group by SSRC, arrival order kept inside each group (stable sort).
    order = np.argsort(parsed.ssrc, kind="stable")
    boundaries = np.flatnonzero(np.diff(parsed.ssrc[order])) + 1
    for members in np.split(order, boundaries):
        positions[members] = _ssrc_positions(
            parsed.timestamp[members], parsed.arrival_samples[members]
        )
    return positions


def _unwrap(timestamps: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """RTP timestamps as a continuous count: each step is the signed 32-bit difference from the
    previous packet's, so wraps and reordered packets both come out right."""
    steps = np.diff(timestamps)
    steps = (steps + 2**31) % 2**32 - 2**31
    return np.concatenate(([0], np.cumsum(steps)))


def _ssrc_positions(
    timestamps: npt.NDArray[np.int64], arrival_samples: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """Positions of one SSRC's packets (in arrival order), re-anchored where timestamps jump."""
    offset = _unwrap(timestamps)
    # How far each packet sits behind where its timestamp says it belongs: network delay, plus
    # a step wherever the timestamps jump.
    lag = arrival_samples - offset
    count = lag.size
    window = min(_ANCHOR_WINDOW_PACKETS, count)
    padded = np.concatenate((lag, np.full(window - 1, np.inf)))
    window_min = np.lib.stride_tricks.sliding_window_view(padded, window).min(axis=1)
    early = _EARLY_TOLERANCE_S * SAMPLE_RATE_HZ
    late = _LATE_TOLERANCE_S * SAMPLE_RATE_HZ

    positions = np.empty(count, dtype=np.int64)
    start = 0
    for segment in range(_MAX_SEGMENTS_PER_SSRC):
        anchor = float(window_min[start])
        end = count
        if segment < _MAX_SEGMENTS_PER_SSRC - 1:
            rest = slice(start + 1, count)
            jumps = np.flatnonzero(
                (lag[rest] < anchor - early) | (window_min[rest] > anchor + late)
            )
            if jumps.size:
                end = start + 1 + int(jumps[0])
        positions[start:end] = round(anchor) + offset[start:end]
        if end == count:
            break
        start = end
    return positions


def _place(
    channel: npt.NDArray[np.int16],
    parsed: _Parsed,
    positions: npt.NDArray[np.int64],
    batch: slice,
) -> None:
    """Decode one batch of packets and write their samples at their positions."""
    sizes = parsed.payload_len[batch]
    total = int(sizes.sum())
    if total == 0:
        return
    # Index of each sample within its packet: 0, 1, ... n-1 for every packet, in one array.
    packet_first = np.cumsum(sizes) - sizes
    within = np.arange(total, dtype=np.int64) - np.repeat(packet_first, sizes)
    source = np.repeat(parsed.payload_start[batch], sizes) + within
    target = np.repeat(positions[batch], sizes) + within
    inside = (target >= 0) & (target < channel.size)
    if not inside.any():
        return
    codes = parsed.blob[source[inside]].tobytes()
    alaw = np.repeat(parsed.alaw[batch], sizes)[inside]
    if alaw.all():
        samples = g711.alaw_decode(codes)
    elif not alaw.any():
        samples = g711.ulaw_decode(codes)
    else:
        samples = np.where(alaw, g711.alaw_decode(codes), g711.ulaw_decode(codes))
    # Fancy assignment writes in order: a later copy of a sample (duplicate packet) wins.
    channel[target[inside]] = samples
