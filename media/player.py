"""Real-time RTP playback of ringback and prompts out of one side of a ``MediaSession``.

An ``RtpPlayer`` sends 20 ms frames of already encoded audio (``media.audio.frames``) to one
far party, packetised by its ``RtpStreamWriter``. Pacing is by an absolute clock: frame *n* of a
playback is due at ``start + n × 20 ms`` of the loop's clock, so timer lateness never adds up
into drift (sleeping 20 ms after each send would fall behind by the loop's lateness every time).

After a stall (a busy loop, a paused process) the player sends at most ``max_catch_up_frames``
frames beyond the one due and then moves its schedule later by what it did not send: a far
party's jitter buffer absorbs two frames early, not seconds of audio arriving at once, and no
part of a prompt is skipped. Each tick is one ``loop.call_at`` callback — no task, no sleeping
coroutine — so a thousand concurrent ringbacks cost a thousand timer callbacks per 20 ms, and
``stop()`` cancels the one pending callback: no packet leaves after it returns.

One player is one outgoing stream (one SSRC) for the life of a call leg: a prompt, the silence
after it, the prompt again on a retry are all ``play`` calls on the same player, and the RTP
timestamp moves on by the wall-clock time between them (``RtpStreamWriter.skip``), so the far
party's jitter buffer sees the gap as the silence it was.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Final, Protocol

from media.relay import Side
from media.rtp_out import RtpStreamWriter

__all__ = [
    "DEFAULT_FRAME_S",
    "PacketSink",
    "PlaybackEnd",
    "RtpPlayer",
]

DEFAULT_FRAME_S: Final = 0.020
# A frame counts as due this close before its time: loops wake callbacks up to their clock
# resolution early, and re-arming for a fraction of a millisecond would only spin.
_EARLY_TOLERANCE_S: Final = 0.001


class PacketSink(Protocol):
    """What the player sends through: ``media.relay.MediaSession`` is one."""

    @property
    def closed(self) -> bool:
        """True once the session is closed; the player then ends its playback."""
        ...

    def send_to(self, side: Side, data: bytes) -> bool:
        """Send ``data`` to ``side``'s far party; False when nothing could be sent."""
        ...


class PlaybackEnd(Enum):
    """How a playback ended: the value its ``done`` future resolves to."""

    FINISHED = "finished"  # every frame was sent and its 20 ms have passed
    STOPPED = "stopped"  # stop() or a new play() ended it
    SESSION_CLOSED = "session_closed"  # the media session closed under it


class RtpPlayer:
    """Plays frames to ``side`` of ``session`` at real-time pace.

    ``writer`` numbers the packets (its payload type must match what the far party accepted);
    ``frame_s`` is the duration of one frame (20 ms for the G.711 frames of ``media.audio.frames``).

    Counters: ``packets_sent`` (handed to the session), ``packets_unsent`` (the session had no
    address for the side yet: the sample clock still runs), ``catch_ups`` (ticks that found
    more frames due than they may send, i.e. stalls longer than the catch-up allowance),
    ``frames_deferred`` (frames pushed later by those stalls).
    """

    __slots__ = (
        "_done",
        "_frames",
        "_handle",
        "_last_end_at",
        "_loop",
        "_looping",
        "_position",
        "_start_at",
        "catch_ups",
        "frame_s",
        "frames_deferred",
        "max_catch_up_frames",
        "packets_sent",
        "packets_unsent",
        "session",
        "side",
        "writer",
    )

    def __init__(
        self,
        session: PacketSink,
        side: Side,
        *,
        writer: RtpStreamWriter,
        loop: asyncio.AbstractEventLoop | None = None,
        frame_s: float = DEFAULT_FRAME_S,
        max_catch_up_frames: int = 2,
    ) -> None:
        """Raise ``ValueError`` for a side other than "a"/"b" or a non-positive frame time."""
        if side not in ("a", "b"):
            raise ValueError(f"side must be 'a' or 'b', not {side!r}")
        if not frame_s > 0:
            raise ValueError("frame_s must be positive")
        if max_catch_up_frames < 0:
            raise ValueError("max_catch_up_frames cannot be negative")
        self.session = session
        self.side: Side = side
        self.writer = writer
        self.frame_s = frame_s
        self.max_catch_up_frames = max_catch_up_frames
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._frames: Sequence[bytes] = ()
        self._looping = False
        self._start_at = 0.0  # loop time frame 0 of the current playback is due
        self._position = 0  # frames of the current playback sent (or passed, unsent)
        self._handle: asyncio.TimerHandle | None = None
        # Loop time at which the last frame sent so far has played out; None before any.
        self._last_end_at: float | None = None
        self._done: asyncio.Future[PlaybackEnd] = self._loop.create_future()
        self._done.set_result(PlaybackEnd.FINISHED)  # nothing playing yet
        self.packets_sent = 0
        self.packets_unsent = 0
        self.catch_ups = 0
        self.frames_deferred = 0

    # --- state ---

    @property
    def playing(self) -> bool:
        """Whether a playback is running (its ``done`` not yet resolved)."""
        return not self._done.done()

    @property
    def done(self) -> asyncio.Future[PlaybackEnd]:
        """The current (or last) playback's end; resolved at once when nothing was played."""
        return self._done

    # --- control ---

    def play(self, frames: Iterable[bytes], *, loop: bool = False) -> asyncio.Future[PlaybackEnd]:
        """Start playing ``frames`` (encoded payloads, one per packet) and return ``done``.

        A playback already running is ended (``STOPPED``) and the new one continues on its
        schedule: the first new frame goes out when the next old frame would have, with no gap
        and no burst. ``loop=True`` repeats the frames until ``stop()`` (ringback); otherwise
        ``done`` resolves to ``FINISHED`` once the last frame's 20 ms have passed (a prompt:
        the caller has heard it by then, so the final response may follow). An empty sequence
        finishes at once; an empty looping one is a ``ValueError``.
        """
        return self.play_sequence([frames], loop=loop)

    def play_sequence(
        self, parts: Iterable[Iterable[bytes]], *, loop: bool = False
    ) -> asyncio.Future[PlaybackEnd]:
        """Play several frame sequences back to back as one playback (a prompt, then silence).

        Same as ``play`` of their concatenation; ``loop=True`` repeats the whole sequence.
        """
        frames = tuple(itertools.chain.from_iterable(parts))
        if loop and not frames:
            raise ValueError("cannot loop an empty sequence of frames")
        if self.session.closed:
            self.stop()
            done = self._new_done()
            done.set_result(PlaybackEnd.SESSION_CLOSED)
            return done
        now = self._loop.time()
        self.stop()
        # A stopped or replaced playback's last frame may still be playing out (up to the
        # catch-up allowance ahead of now): the new one starts where it ends, with no overlap.
        # After an idle time, it starts now and the timestamp moves over the silence.
        start_at = now
        if self._last_end_at is not None:
            start_at = max(now, self._last_end_at)
        self._skip_silence(now)
        self._frames = frames
        self._looping = loop
        self._start_at = start_at
        self._position = 0
        done = self._new_done()
        if not frames:
            done.set_result(PlaybackEnd.FINISHED)
            return done
        self._tick()
        return done

    def stop(self) -> None:
        """End the current playback now (``done`` → ``STOPPED``); idempotent.

        No packet leaves after this returns: the one pending timer callback is cancelled.
        """
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._done.done():
            self._done.set_result(PlaybackEnd.STOPPED)

    # --- pacing ---

    def _tick(self) -> None:
        self._handle = None
        if self.session.closed:
            self._finish(PlaybackEnd.SESSION_CLOSED)
            return
        now = self._loop.time()
        frame_s = self.frame_s
        frames = self._frames
        if self._looping or self._position < len(frames):
            # Frames whose due time (start + k × frame_s) has come, counting from frame 0.
            due = math.floor((now + _EARLY_TOLERANCE_S - self._start_at) / frame_s) + 1
            owed = due - self._position
            allowance = 1 + self.max_catch_up_frames
            if owed > allowance:
                # A stall: send the allowance now, push the rest of the schedule later.
                deferred = owed - allowance
                self._start_at += deferred * frame_s
                self.catch_ups += 1
                self.frames_deferred += deferred
                owed = allowance
            if not self._looping:
                owed = min(owed, len(frames) - self._position)
            for _ in range(owed):
                self._send(frames[self._position % len(frames)])
                self._position += 1
        next_at = self._start_at + self._position * frame_s
        # Once the last frame is out, one more callback resolves done when it has played.
        played_out = next_at <= now + _EARLY_TOLERANCE_S
        if not self._looping and self._position >= len(frames) and played_out:
            self._finish(PlaybackEnd.FINISHED)
            return
        self._handle = self._loop.call_at(next_at, self._tick)

    def _send(self, frame: bytes) -> None:
        if self.session.send_to(self.side, self.writer.packet(frame)):
            self.packets_sent += 1
        else:
            self.packets_unsent += 1
        self._last_end_at = self._start_at + (self._position + 1) * self.frame_s

    def _finish(self, end: PlaybackEnd) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._done.done():
            self._done.set_result(end)

    def _skip_silence(self, now: float) -> None:
        """Move the RTP timestamp over the idle time since the last frame played out."""
        if self._last_end_at is None:
            return
        gap_s = now - self._last_end_at
        if gap_s > 0:
            samples_per_s = self.writer.samples_per_frame / self.frame_s
            self.writer.skip(round(gap_s * samples_per_s))

    def _new_done(self) -> asyncio.Future[PlaybackEnd]:
        self._done = self._loop.create_future()
        return self._done

    def __repr__(self) -> str:
        return (
            f"RtpPlayer(side={self.side!r}, playing={self.playing}, "
            f"sent={self.packets_sent}, unsent={self.packets_unsent})"
        )
