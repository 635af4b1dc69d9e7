"""engine.call_media: the relay hook per feature, handover, and the extension IVR end to end.

The session is a stand-in that records what the player sends and lets a test deliver packets
through the hook as the relay would (the relay and the player have their own socket tests).
Prompts are a few 20 ms frames, so each test runs in well under a second of real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from engine.call_media import (
    CallMedia,
    ExtensionFound,
    ExtensionIvr,
    ExtensionNotFound,
    ringing_tone_frames,
)
from media import g711
from media.dtmf import telephone_event_packets
from media.player import PlaybackEnd
from media.prompts import PromptName
from media.recording import CallRecording
from media.relay import PacketDirection, PacketHook, Side

PCMA = 8
EVENTS = 101
CALLEE_PACKET = b"\x80\x08" + bytes(10) + bytes(160)


class FakeSession:
    """What CallMedia and RtpPlayer use of a MediaSession."""

    def __init__(self) -> None:
        self.on_packet: PacketHook | None = None
        self.sent: list[tuple[Side, bytes]] = []
        self.closed = False

    def send_to(self, side: Side, data: bytes) -> bool:
        self.sent.append((side, data))
        return True

    def deliver(self, direction: PacketDirection, data: bytes) -> None:
        if self.on_packet is not None:
            self.on_packet(direction, data)


class Prompts:
    """Each prompt is ``length`` frames whose bytes say which prompt they belong to."""

    def __init__(self, length: int = 3) -> None:
        self.length = length

    def frames(self, name: PromptName, payload_type: int) -> Sequence[bytes]:
        assert payload_type == PCMA
        tag = list(PromptName).index(name)
        return [bytes([tag]) * 160] * self.length


def prompt_of(packet: bytes) -> PromptName:
    return list(PromptName)[packet[12]]


def media_for(session: FakeSession, *, events: int | None = EVENTS) -> CallMedia:
    return CallMedia(session, caller_payload_type=PCMA, event_payload_type=events)  # type: ignore[arg-type]


async def test_no_feature_no_hook_and_recording_sees_both_directions() -> None:
    session = FakeSession()
    media = media_for(session)
    assert session.on_packet is None  # plain relaying: the relay's hot path is untouched
    recording = CallRecording()
    media.record(recording)
    assert session.on_packet is not None
    session.deliver("a_to_b", CALLEE_PACKET)
    session.deliver("b_to_a", CALLEE_PACKET)
    session.deliver("b_to_a", CALLEE_PACKET)
    assert recording.packets == (1, 2)


async def test_callee_media_takes_over_from_ringback_at_its_first_packet() -> None:
    session = FakeSession()
    media = media_for(session)
    took_over: list[bool] = []
    media.on_callee_media = lambda: took_over.append(True)
    done = media.play_to_caller([b"\x01" * 160] * 4, loop=True, until_callee_media=True)
    await asyncio.sleep(0.07)
    assert media.playing and session.sent
    session.deliver("b_to_a", CALLEE_PACKET)
    sent = len(session.sent)
    assert await asyncio.wait_for(done, 1) is PlaybackEnd.STOPPED
    await asyncio.sleep(0.06)
    assert len(session.sent) == sent, "no ringback packet after the callee's first one"
    assert took_over == [True]
    assert session.on_packet is None  # nothing left that needs the hook


async def test_keys_reach_the_listener_only_while_listening() -> None:
    session = FakeSession()
    media = media_for(session)
    keys: list[str] = []
    for packet in telephone_event_packets("5", ssrc=7, sequence=1, timestamp=160):
        session.deliver("a_to_b", packet)  # nobody listens: no hook, nothing reported
    media.listen_for_keys(keys.append)
    for packet in telephone_event_packets("7", ssrc=7, sequence=10, timestamp=3200):
        session.deliver("a_to_b", packet)
    media.key_from_info("9")
    media.stop_listening()
    media.key_from_info("1")
    assert keys == ["7", "9"]


async def test_without_telephone_event_keys_come_by_info_only() -> None:
    session = FakeSession()
    media = media_for(session, events=None)
    keys: list[str] = []
    media.listen_for_keys(keys.append)
    for packet in telephone_event_packets("3", ssrc=7, sequence=1, timestamp=160):
        session.deliver("a_to_b", packet)
    media.key_from_info("4")
    assert keys == ["4"]


class IvrRun:
    def __init__(self, *, known: dict[str, str], prompt_frames: int = 3, tries: int = 3) -> None:
        self.session = FakeSession()
        self.media = media_for(self.session)
        self.looked_up: list[str] = []
        self.outcomes: list[ExtensionFound[str] | ExtensionNotFound] = []
        self.finished = asyncio.Event()

        def lookup(extension: str) -> str | None:
            self.looked_up.append(extension)
            return known.get(extension)

        def on_outcome(outcome: ExtensionFound[str] | ExtensionNotFound) -> None:
            self.outcomes.append(outcome)
            self.finished.set()

        self.ivr: ExtensionIvr[str] = ExtensionIvr(
            self.media,
            Prompts(prompt_frames),
            lookup=lookup,
            on_outcome=on_outcome,
            max_tries=tries,
            inter_digit_timeout_s=0.15,
            max_length=3,
        )

    def prompts_heard(self) -> list[PromptName]:
        heard: list[PromptName] = []
        for _, packet in self.session.sent:
            name = prompt_of(packet)
            if not heard or heard[-1] is not name:
                heard.append(name)
        return heard

    def press(self, keys: str, *, rtp: bool = False) -> None:
        for n, key in enumerate(keys):
            if rtp:
                for packet in telephone_event_packets(
                    key, ssrc=9, sequence=100 * n, timestamp=1600 * (n + 1)
                ):
                    self.session.deliver("a_to_b", packet)
            else:
                self.media.key_from_info(key)

    async def outcome(self) -> ExtensionFound[str] | ExtensionNotFound:
        await asyncio.wait_for(self.finished.wait(), 3)
        [outcome] = self.outcomes
        return outcome


async def _after_prompt(run: IvrRun) -> None:
    while run.media.playing or not run.session.sent:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("rtp", [False, True], ids=["info", "rfc4733"])
async def test_extension_then_hash_routes(rtp: bool) -> None:
    run = IvrRun(known={"12": "A of 12"})
    run.ivr.start()
    await _after_prompt(run)
    run.press("12#", rtp=rtp)
    assert await run.outcome() == ExtensionFound("A of 12")
    assert run.looked_up == ["12"]
    assert run.prompts_heard() == [PromptName.ENTER_EXTENSION]
    assert run.session.on_packet is None  # done: keys are no longer read


async def test_keys_during_the_prompt_stop_it() -> None:
    run = IvrRun(known={"7": "A of 7"}, prompt_frames=50)  # a 1 s prompt
    run.ivr.start()
    await asyncio.sleep(0.05)
    run.press("7#")
    assert await run.outcome() == ExtensionFound("A of 7")
    assert len(run.session.sent) < 20, "the prompt went on after the caller keyed"


async def test_inter_digit_timeout_ends_the_entry() -> None:
    run = IvrRun(known={"42": "A of 42"})
    run.ivr.start()
    await _after_prompt(run)
    run.press("42")  # no '#': the pause after the last key ends the entry
    assert await run.outcome() == ExtensionFound("A of 42")


async def test_three_wrong_extensions_play_not_found_then_give_up() -> None:
    run = IvrRun(known={"1": "A of 1"})
    run.ivr.start()
    for wrong in ("8#", "9#", "77#"):
        await _after_prompt(run)
        run.press(wrong)
        await asyncio.sleep(0.01)
    assert await run.outcome() == ExtensionNotFound()
    assert run.looked_up == ["8", "9", "77"]
    assert run.prompts_heard() == [
        PromptName.ENTER_EXTENSION,
        PromptName.EXTENSION_RETRY,  # twice, back to back: 2 × 3 frames
        PromptName.EXTENSION_NOT_FOUND,
    ]
    retry = [p for _, p in run.session.sent if prompt_of(p) is PromptName.EXTENSION_RETRY]
    assert len(retry) == 6
    assert not run.media.playing  # the outcome comes after the not-found prompt has played


async def test_silence_uses_up_the_tries() -> None:
    run = IvrRun(known={}, tries=2)
    run.ivr.start()
    assert await run.outcome() == ExtensionNotFound()
    assert run.looked_up == []
    assert run.prompts_heard()[-1] is PromptName.EXTENSION_NOT_FOUND


async def test_close_ends_without_an_outcome() -> None:
    run = IvrRun(known={"5": "A of 5"})
    run.ivr.start()
    await asyncio.sleep(0.03)
    run.ivr.close()
    run.press("5#")
    await asyncio.sleep(0.3)
    assert run.outcomes == [] and run.looked_up == []
    assert not run.media.playing


@pytest.mark.parametrize("payload_type", [0, 8])
def test_ringing_tone_is_450_hz_one_second_in_five(payload_type: int) -> None:
    frames = ringing_tone_frames(payload_type)
    assert len(frames) == 250 and all(len(frame) == 160 for frame in frames)  # 5 s of 20 ms
    samples = g711.decode(payload_type, b"".join(frames)).astype(np.float64)
    on, off = samples[:8000], samples[8000:]
    spectrum = np.abs(np.fft.rfft(on * np.hanning(len(on))))
    assert abs(np.argmax(spectrum) * 8000 / len(on) - 450) < 2
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(on**2)) / 32768)
    assert -20 < rms_dbfs < -14  # about -10 dBm0 (a full-scale sine is +3.17 dBm0)
    assert np.max(np.abs(off)) < 16  # the 4 s pause is silence (G.711's idle code)
    assert ringing_tone_frames(payload_type) is frames  # made once
