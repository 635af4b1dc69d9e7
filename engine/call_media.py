"""What a call does with its media beyond relaying: recording, audio played to the caller, keys.

``engine.b2bua`` owns the SIP side of a call; a :class:`CallMedia` owns the packet side of its
``MediaSession`` past plain relaying, so the controller asks for features ("record this call",
"play this to the caller until the callee's own media starts", "tell me the caller's keys")
and never touches the relay's per-packet hook itself.

The relay calls one hook per session, and only while a feature needs it: a call that is not
recorded, plays nothing and collects no keys relays with the hook unset (DESIGN: the relay's
hot path stays one ``is None`` test). :class:`ExtensionIvr` drives the AXN-extension prompt of
one call on top of a ``CallMedia``: it plays the prompts, feeds keys from RTP (RFC 4733) or
SIP INFO to ``media.ivr.ExtensionCollector`` and reports the outcome. Digits are never logged.

:func:`ringing_tone_frames` is the national ringing tone (China: 450 Hz, 1 s on, 4 s off,
about -10 dBm0), played to an extension caller — answered by us already, so the phone makes no
ringback of its own — while A rings and no enterprise ringback is configured.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import numpy as np

from media.audio import frames as g711_frames
from media.dtmf import DtmfDetector
from media.ivr import (
    ExtensionCollector,
    ExtensionEntered,
    GiveUp,
    IvrEvent,
    IvrState,
    RetryPrompt,
    StopPrompt,
)
from media.player import PlaybackEnd, RtpPlayer
from media.prompts import PromptName
from media.recording import CallRecording
from media.relay import MediaSession, PacketDirection
from media.rtp_out import RtpStreamWriter

__all__ = [
    "CallMedia",
    "ExtensionFound",
    "ExtensionIvr",
    "ExtensionNotFound",
    "PromptFrames",
    "ringing_tone_frames",
]

_SAMPLE_RATE: Final = 8000
# GB/T 3380 / YD/T 1277 ringing tone: 450 Hz, 1 s on, 4 s off. -10 dBm0 in G.711 is about 0.22
# of full scale (a full-scale sine is +3.17 dBm0).
_RINGING_HZ: Final = 450.0
_RINGING_ON_S: Final = 1.0
_RINGING_OFF_S: Final = 4.0
_RINGING_AMPLITUDE: Final = 7200.0


@functools.cache
def ringing_tone_frames(payload_type: int) -> tuple[bytes, ...]:
    """One cadence of the national ringing tone as 20 ms payloads of ``payload_type`` (0 or 8),
    to be looped. Made once per payload type; ``ValueError`` for a type that is not G.711."""
    on = np.arange(int(_RINGING_ON_S * _SAMPLE_RATE)) / _SAMPLE_RATE
    tone = (_RINGING_AMPLITUDE * np.sin(2 * np.pi * _RINGING_HZ * on)).astype(np.int16)
    cadence = np.concatenate([tone, np.zeros(int(_RINGING_OFF_S * _SAMPLE_RATE), np.int16)])
    return tuple(g711_frames(cadence, payload_type))


_Found = TypeVar("_Found")


class CallMedia:
    """The media features of one call over its session; side "a" faces the caller."""

    __slots__ = (
        "_detector",
        "_handover",
        "_loop",
        "_on_digit",
        "_player",
        "caller_payload_type",
        "on_callee_media",
        "recording",
        "session",
    )

    def __init__(
        self,
        session: MediaSession,
        *,
        caller_payload_type: int,
        event_payload_type: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``caller_payload_type``: the G.711 type (0 or 8) agreed with the caller, for what we
        play; ``event_payload_type``: the caller's telephone-event type, None if it offered none
        (keys then come by SIP INFO only)."""
        self.session = session
        self.caller_payload_type = caller_payload_type
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.recording: CallRecording | None = None
        self._player: RtpPlayer | None = None
        self._detector = (
            DtmfDetector(event_payload_type) if event_payload_type is not None else None
        )
        self._on_digit: Callable[[str], None] | None = None
        self._handover = False
        # Called once when the callee's first packet towards the caller ends a playback
        # started with ``until_callee_media`` (the callee's own early media takes over).
        self.on_callee_media: Callable[[], None] | None = None

    # --- features ---

    def record(self, recording: CallRecording) -> None:
        """Feed every relayed packet to ``recording`` from now on."""
        self.recording = recording
        self._install()

    def play_to_caller(
        self, frames: Sequence[bytes], *, loop: bool = False, until_callee_media: bool = False
    ) -> asyncio.Future[PlaybackEnd]:
        """Play ``frames`` (20 ms payloads of ``caller_payload_type``) to the caller.

        ``loop`` repeats them until stopped (ringback). ``until_callee_media``: the callee's
        first packet towards the caller stops the playback in the same instant, so its early
        media or its voice follows ours with neither overlap nor gap.
        """
        if self._player is None:
            writer = RtpStreamWriter(payload_type=self.caller_payload_type)
            self._player = RtpPlayer(self.session, "a", writer=writer, loop=self._loop)
        self._handover = until_callee_media
        self._install()
        return self._player.play(frames, loop=loop)

    @property
    def playing(self) -> bool:
        """Whether something is being played to the caller."""
        return self._player is not None and self._player.playing

    def stop_playback(self) -> None:
        """Stop what the caller hears from us now (idempotent)."""
        if self._player is not None:
            self._player.stop()
        if self._handover:
            self._handover = False
            self._install()

    def listen_for_keys(self, on_digit: Callable[[str], None]) -> None:
        """Report the caller's keys sent as RFC 4733 events (and by ``key_from_info``)."""
        self._on_digit = on_digit
        self._install()

    def stop_listening(self) -> None:
        self._on_digit = None
        self._install()

    def key_from_info(self, digit: str) -> None:
        """A key the caller sent by SIP INFO; ignored when nobody listens."""
        if self._on_digit is not None:
            self._on_digit(digit)

    def close(self) -> None:
        """The call is over: stop playing and listening (the session closes separately)."""
        if self._player is not None:
            self._player.stop()
        self._on_digit = None
        self._handover = False

    # --- the relay hook ---

    def _install(self) -> None:
        wanted = self.recording is not None or self._handover or self._on_digit is not None
        self.session.on_packet = self._on_packet if wanted else None

    def _on_packet(self, direction: PacketDirection, data: bytes) -> None:
        recording = self.recording
        if recording is not None:
            recording.on_packet(direction, data)
        if direction == "b_to_a":
            if self._handover:
                self._handover = False
                if self._player is not None:
                    self._player.stop()
                self._install()
                if self.on_callee_media is not None:
                    self.on_callee_media()
            return
        if self._on_digit is not None and self._detector is not None:
            key = self._detector.receive_packet(data)
            if key is not None:
                self._on_digit(key.digit)


class PromptFrames(Protocol):
    """Where prompts come from (``media.prompts.PromptLibrary``)."""

    def frames(self, name: PromptName, payload_type: int) -> Sequence[bytes]: ...


@dataclass(frozen=True, slots=True)
class ExtensionFound(Generic[_Found]):
    """The caller entered an extension that ``lookup`` found; ``found`` is what it returned."""

    found: _Found


@dataclass(frozen=True, slots=True)
class ExtensionNotFound:
    """No valid extension in the tries allowed; the not-found prompt has played."""


class ExtensionIvr(Generic[_Found]):
    """One caller's extension entry: prompt, keys, lookup, retries, outcome.

    ``lookup(extension)`` returns what to route to, or None when the extension is unknown;
    ``on_outcome`` is called exactly once, with :class:`ExtensionFound` as soon as a lookup
    succeeds (the prompt is stopped) or with :class:`ExtensionNotFound` after the not-found
    prompt has played. ``close()`` (the caller hung up) ends it without an outcome.
    """

    def __init__(
        self,
        media: CallMedia,
        prompts: PromptFrames,
        *,
        lookup: Callable[[str], _Found | None],
        on_outcome: Callable[[ExtensionFound[_Found] | ExtensionNotFound], None],
        max_tries: int,
        inter_digit_timeout_s: float,
        max_length: int | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._media = media
        self._prompts = prompts
        self._lookup = lookup
        self._on_outcome = on_outcome
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._collector = ExtensionCollector(
            max_tries=max_tries, inter_digit_timeout_s=inter_digit_timeout_s, max_length=max_length
        )
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        """Play "enter the extension followed by #" and start listening."""
        self._media.listen_for_keys(self.key)
        self._prompt(PromptName.ENTER_EXTENSION)

    def key(self, digit: str) -> None:
        """A key from the caller (RTP events arrive here through ``CallMedia``; INFO too)."""
        if self._closed or self._collector.finished:
            return
        try:
            events = self._collector.digit(digit, self._loop.time())
        except ValueError:
            return  # not a DTMF key: nothing a caller can mean
        self._handle(events)

    def close(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._media.stop_listening()
        self._media.stop_playback()

    # --- internals ---

    def _prompt(self, name: PromptName) -> None:
        frames = self._prompts.frames(name, self._media.caller_payload_type)
        done = self._media.play_to_caller(frames)
        done.add_done_callback(lambda future: self._prompt_ended(future, name))

    def _prompt_ended(self, future: asyncio.Future[PlaybackEnd], name: PromptName) -> None:
        if self._closed or future.cancelled():
            return
        if name is PromptName.EXTENSION_NOT_FOUND:
            self._finish(ExtensionNotFound())
            return
        # Only the prompt still current counts: one stopped by a key (barge-in) must not start
        # the entry timer while its replacement plays.
        if (
            future.result() is PlaybackEnd.FINISHED
            and not self._media.playing
            and self._collector.state is IvrState.PROMPTING
        ):
            self._handle(self._collector.prompt_finished(self._loop.time()))

    def _handle(self, events: list[IvrEvent]) -> None:
        for event in events:
            if self._closed:
                return
            if isinstance(event, StopPrompt):
                self._media.stop_playback()
            elif isinstance(event, ExtensionEntered):
                found = self._lookup(event.extension)
                now = self._loop.time()
                if found is not None:
                    self._collector.accepted(now)
                    self._finish(ExtensionFound(found))
                    return
                self._handle(self._collector.rejected(now))
                return
            elif isinstance(event, RetryPrompt):
                self._prompt(PromptName.EXTENSION_RETRY)
            elif isinstance(event, GiveUp):
                self._media.stop_listening()
                self._prompt(PromptName.EXTENSION_NOT_FOUND)
        self._arm_timer()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        deadline = self._collector.next_timer()
        if deadline is not None and not self._closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._closed:
            self._handle(self._collector.handle_timer(self._loop.time()))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, outcome: ExtensionFound[_Found] | ExtensionNotFound) -> None:
        self._cancel_timer()
        self._media.stop_listening()
        if isinstance(outcome, ExtensionFound):
            self._media.stop_playback()
        self._closed = True
        self._on_outcome(outcome)
