"""Call recording: both directions of a relayed call into one stereo track (pure, no I/O).

The relay calls :meth:`CallRecording.on_packet` for every packet it forwards. That hot path only
appends the datagram (the bytes object the loop already made) and its arrival time to a
per-direction list: no RTP parsing, no decoding, no allocation beyond the list slot and the
float. Everything else happens once, in :meth:`CallRecording.render`, on whole arrays (run it in
a worker thread; :mod:`media.recording_io` does):

1. RTP headers (RFC 3550 §5.1) are read with NumPy, thousands of packets at a time: CSRC list,
   header extension (§5.3.1) and padding are skipped; only PCMU (0) and PCMA (8) are kept, so
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
# Packets parsed and placed per batch (40 s of 20 ms audio). Rendering runs in a worker thread
# beside the event loop: small batches keep each step that holds the GIL (joining datagrams,
# reading lengths, copying codes out) well under a millisecond, and bound the index arrays.
_BATCH_PACKETS: Final = 2_000
# Frames per slice when a rendered channel is copied into the stereo array (~0.5 ms each).
_COPY_FRAMES: Final = 1 << 18


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
        caller = _prepare(self._caller, self.started_at)
        callee = _prepare(self._callee, self.started_at)
        frames = min(max(caller.end, callee.end), int(self.max_duration_s * SAMPLE_RATE_HZ))
        stereo = np.zeros((frames, CHANNELS), dtype=np.int16)
        for column, prepared in enumerate((caller, callee)):
            # Placed into a contiguous track (scattered writes into a strided column are twice
            # as slow), then copied into its column in slices: one copy of a long call would
            # hold the GIL, and so the event loop, for tens of milliseconds.
            track = np.zeros(frames, dtype=np.int16)
            prepared.place_into(track)
            for first in range(0, frames, _COPY_FRAMES):
                stereo[first : first + _COPY_FRAMES, column] = track[first : first + _COPY_FRAMES]
        return stereo


# --------------------------------------------------------------------------------- batch


@dataclass(frozen=True, slots=True)
class _Batch:
    """The G.711 packets of one batch of datagrams, in arrival order, as parallel arrays."""

    blob: npt.NDArray[np.uint8]  # the batch's datagrams, concatenated
    payload_start: npt.NDArray[np.int64]  # offset of each payload in ``blob``
    payload_len: npt.NDArray[np.int64]  # samples (one byte per sample in G.711)
    alaw: npt.NDArray[np.bool_]  # PCMA (else PCMU)
    timestamp: npt.NDArray[np.int64]  # RTP timestamp, 0 .. 2**32 - 1
    ssrc: npt.NDArray[np.int64]
    arrival_samples: npt.NDArray[np.float64]  # arrival, in samples since the recording start


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One direction's parsed batches with every packet's position, ready to be placed."""

    batches: list[_Batch]
    positions: list[npt.NDArray[np.int64]]  # per batch
    end: int  # one past the last sample of the direction's latest packet (0: nothing)

    def place_into(self, channel: npt.NDArray[np.int16]) -> None:
        for batch, positions in zip(self.batches, self.positions, strict=True):
            _place(channel, batch, positions)


def _prepare(track: _Direction, started_at: float) -> _Prepared:
    # Snapshot the length first: the hook may still append (datagram before arrival time).
    count = min(len(track.datagrams), len(track.arrivals))
    batches = []
    for first in range(0, count, _BATCH_PACKETS):
        last = min(first + _BATCH_PACKETS, count)
        batch = _parse(track.datagrams[first:last], track.arrivals[first:last], started_at)
        if batch is not None:
            batches.append(batch)
    if not batches:
        return _Prepared([], [], 0)
    # Positions need a whole SSRC at once; the per-packet arrays are small (no payload bytes).
    positions = _positions(
        np.concatenate([b.timestamp for b in batches]),
        np.concatenate([b.ssrc for b in batches]),
        np.concatenate([b.arrival_samples for b in batches]),
    )
    ends = positions + np.concatenate([b.payload_len for b in batches])
    split = np.cumsum([b.payload_len.size for b in batches])[:-1]
    return _Prepared(batches, np.split(positions, split), max(int(ends.max()), 0))


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
) -> _Batch | None:
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
    return _Batch(
        blob=blob,
        payload_start=starts + header[keep],
        payload_len=payload_len[keep],
        alaw=payload_type[keep] == g711.PAYLOAD_TYPE_PCMA,
        timestamp=_be(blob, starts + 4, 4),
        ssrc=_be(blob, starts + 8, 4),
        arrival_samples=arrival,
    )


def _positions(
    timestamp: npt.NDArray[np.int64],
    ssrc: npt.NDArray[np.int64],
    arrival_samples: npt.NDArray[np.float64],
) -> npt.NDArray[np.int64]:
    """The sample position of every packet's first sample on the recording's clock."""
    positions = np.empty(ssrc.size, dtype=np.int64)
    # Group by SSRC, arrival order kept inside each group (stable sort).
    order = np.argsort(ssrc, kind="stable")
    boundaries = np.flatnonzero(np.diff(ssrc[order])) + 1
    for members in np.split(order, boundaries):
        positions[members] = _ssrc_positions(timestamp[members], arrival_samples[members])
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


def _place(channel: npt.NDArray[np.int16], batch: _Batch, positions: npt.NDArray[np.int64]) -> None:
    """Decode one batch of packets and write their samples at their positions.

    Packets are taken by payload size (nearly always one size per call), each size as a
    packets × samples grid built by broadcasting; within a size, a later packet writes after an
    earlier one, so a duplicate's copy wins (the same samples).
    """
    for size in np.unique(batch.payload_len).tolist():
        members = np.flatnonzero(batch.payload_len == size)
        within = np.arange(size, dtype=np.int64)
        target = positions[members, None] + within
        source = batch.payload_start[members, None] + within
        alaw = np.broadcast_to(batch.alaw[members, None], target.shape)
        inside = (target >= 0) & (target < channel.size)
        if not inside.all():  # only near the start or the cap
            if not inside.any():
                continue
            target, source, alaw = target[inside], source[inside], alaw[inside]
        codes = batch.blob[source.reshape(-1)].tobytes()
        if alaw.all():
            samples = g711.alaw_decode(codes)
        elif not alaw.any():
            samples = g711.ulaw_decode(codes)
        else:  # both codecs in one batch (a re-INVITE changed the codec)
            mask = alaw.reshape(-1)
            samples = np.where(mask, g711.alaw_decode(codes), g711.ulaw_decode(codes))
        channel[target.reshape(-1)] = samples
