"""media.recording: synthetic RTP (known tones and clicks) through the hook, rendered to stereo.

Time is a fake monotonic clock set to each packet's arrival; the recording starts at 0.0, so a
packet arriving at t seconds belongs at sample 8000 × t.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import g711
from media.recording import SAMPLE_RATE_HZ, CallRecording

RATE = SAMPLE_RATE_HZ
PTIME = 160  # samples per packet (20 ms)
PCMU, PCMA = g711.PAYLOAD_TYPE_PCMU, g711.PAYLOAD_TYPE_PCMA
LOUD = 12000

Pcm = npt.NDArray[np.int16]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Packet:
    arrival_s: float
    direction: str
    data: bytes


def rtp(
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    *,
    payload_type: int = PCMU,
    marker: bool = False,
    csrcs: int = 0,
    extension_words: int | None = None,
    padding: int = 0,
) -> bytes:
    """An RTP packet (RFC 3550 §5.1) with optional CSRC list, header extension and padding."""
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension_words is not None else 0) | csrcs
    header = struct.pack(
        "!BBHII",
        first,
        (0x80 if marker else 0) | payload_type,
        seq & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )
    header += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if extension_words is not None:
        header += struct.pack("!HH", 0xBEDE, extension_words) + b"\xaa" * (4 * extension_words)
    tail = (b"\x00" * (padding - 1) + bytes([padding])) if padding else b""
    return header + payload + tail


def tone(freq_hz: float, samples: int, amplitude: float = 8000.0) -> Pcm:
    t = np.arange(samples) / RATE
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def clicks(samples: int, at_packets: Iterable[int]) -> Pcm:
    """Silence with one loud packet-long burst at each of ``at_packets``."""
    signal = np.zeros(samples, dtype=np.int16)
    for index in at_packets:
        signal[index * PTIME : (index + 1) * PTIME] = LOUD
    return signal


def stream(
    signal: Pcm,
    *,
    direction: str,
    start_s: float,
    ssrc: int = 0x11111111,
    ts0: int = 0,
    payload_type: int = PCMU,
) -> list[Packet]:
    """``signal`` as 20 ms packets sent from ``start_s``, arriving without delay."""
    packets = []
    for i in range(len(signal) // PTIME):
        payload = g711.encode(payload_type, signal[i * PTIME : (i + 1) * PTIME])
        data = rtp(i, ts0 + i * PTIME, ssrc, payload, payload_type=payload_type)
        packets.append(Packet(start_s + i * PTIME / RATE, direction, data))
    return packets


def record(packets: Iterable[Packet], **options: float) -> CallRecording:
    """Feed ``packets`` (in the given order, the clock at each one's arrival) to a recording."""
    clock = FakeClock()
    recording = CallRecording(clock=clock, started_at=0.0, **options)
    for packet in packets:
        clock.now = packet.arrival_s
        recording.on_packet(packet.direction, packet.data)  # type: ignore[arg-type]
    return recording


def by_arrival(*streams: list[Packet]) -> list[Packet]:
    return sorted((p for s in streams for p in s), key=lambda p: p.arrival_s)


def loud_starts(channel: Pcm) -> list[int]:
    """Sample index where each loud burst begins."""
    loud = np.abs(channel.astype(np.int32)) > LOUD // 2
    edges = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    return ([0] if loud[0] else []) + edges.tolist()


def peak_hz(channel: Pcm) -> float:
    spectrum = np.abs(np.fft.rfft(channel.astype(np.float64) * np.hanning(channel.size)))
    return float(np.argmax(spectrum) * RATE / channel.size)


def band_energy(channel: Pcm, freq_hz: float, width_hz: float = 20.0) -> float:
    spectrum = np.abs(np.fft.rfft(channel.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(channel.size, 1 / RATE)
    return float(spectrum[np.abs(freqs - freq_hz) <= width_hz].sum())


# ------------------------------------------------------------------------- channels and tones


def test_caller_tone_left_callee_tone_right() -> None:
    caller = stream(tone(440, 4 * RATE), direction="a_to_b", start_s=0.1, ts0=12345)
    callee = stream(
        tone(1000, 4 * RATE),
        direction="b_to_a",
        start_s=0.3,
        ssrc=0x22222222,
        ts0=987654,
        payload_type=PCMA,
    )
    audio = record(by_arrival(caller, callee)).render()

    assert audio.dtype == np.int16 and audio.shape[1] == 2
    left, right = audio[:, 0], audio[:, 1]
    assert peak_hz(left) == pytest.approx(440, abs=2)
    assert peak_hz(right) == pytest.approx(1000, abs=2)
    # Each tone is on its own channel only.
    assert band_energy(left, 1000) < 1e-4 * band_energy(left, 440)
    assert band_energy(right, 440) < 1e-4 * band_energy(right, 1000)
    # Start to the end of the callee's last packet (it started last).
    assert audio.shape[0] == round(0.3 * RATE) + 4 * RATE


def test_samples_are_the_decoded_payloads_at_their_arrival_time() -> None:
    signal = tone(300, RATE)
    audio = record(stream(signal, direction="a_to_b", start_s=0.5)).render()
    start = round(0.5 * RATE)
    expected = g711.ulaw_decode(g711.ulaw_encode(signal))
    assert np.array_equal(audio[start:, 0], expected)
    assert not audio[:start].any()
    assert not audio[:, 1].any()


def test_empty_recording_is_zero_frames() -> None:
    audio = record([]).render()
    assert audio.shape == (0, 2)


def test_duration_runs_to_the_last_packet_of_either_side() -> None:
    caller = stream(tone(440, 2 * RATE), direction="a_to_b", start_s=0.0)
    callee = stream(tone(1000, RATE), direction="b_to_a", start_s=2.5, ssrc=7)
    audio = record(by_arrival(caller, callee)).render()
    assert audio.shape[0] == round(3.5 * RATE)
    assert not audio[2 * RATE :, 0].any()  # the caller's channel is silent after its end


# ------------------------------------------------------------------------- alignment


def test_channels_align_by_first_arrival_relative_to_the_start() -> None:
    seconds = 3
    caller = stream(
        clicks(seconds * RATE, [0, 50, 100]), direction="a_to_b", start_s=0.2, ts0=4_000_000
    )
    callee = stream(
        clicks(seconds * RATE, [0, 25]),
        direction="b_to_a",
        start_s=1.04,
        ssrc=99,
        ts0=3_000_000_000,
    )
    audio = record(by_arrival(caller, callee)).render()
    assert loud_starts(audio[:, 0]) == [1600, 1600 + 8000, 1600 + 16000]
    assert loud_starts(audio[:, 1]) == [8320, 8320 + 4000]


def test_loss_leaves_silence_and_keeps_alignment() -> None:
    signal = clicks(5 * RATE, range(0, 250, 10))
    packets = stream(signal, direction="a_to_b", start_s=0.3, ts0=777)
    rng = random.Random(5)
    lost = {i for i in range(1, len(packets)) if rng.random() < 0.15}
    kept = [p for i, p in enumerate(packets) if i not in lost]
    audio = record(kept).render()[:, 0]
    reference = record(packets).render()[:, 0]
    start = round(0.3 * RATE)
    for i in range(len(packets)):
        span = slice(start + i * PTIME, start + (i + 1) * PTIME)
        if i in lost:
            assert not audio[span].any(), f"lost packet {i} must be silence"
        elif span.stop <= audio.size:
            assert np.array_equal(audio[span], reference[span]), f"packet {i} moved"


def test_reordering_and_jitter_do_not_move_audio() -> None:
    signal = tone(440, 3 * RATE) + clicks(3 * RATE, [7, 80])
    clean = stream(signal, direction="a_to_b", start_s=0.4, ts0=2**31 - 5000)
    rng = random.Random(11)
    # Up to 60 ms of delay per packet; the very first packet is late (50 ms) and the fourth is
    # on time: the least-delayed of the first packets anchors the stream.
    delays = [rng.uniform(0.0, 0.06) for _ in clean]
    delays[0], delays[3] = 0.05, 0.0
    jittered = [replace(p, arrival_s=p.arrival_s + d) for p, d in zip(clean, delays, strict=True)]
    jittered.sort(key=lambda p: p.arrival_s)  # delays reorder packets
    # ... and a few swapped pairs on top (arrival times stay non-decreasing).
    for i in range(10, len(jittered) - 1, 17):
        a, b = jittered[i], jittered[i + 1]
        jittered[i], jittered[i + 1] = (
            replace(b, arrival_s=a.arrival_s),
            replace(a, arrival_s=b.arrival_s),
        )
    assert [p.data for p in jittered] != [p.data for p in clean]
    assert np.array_equal(record(jittered).render(), record(clean).render())


def test_duplicates_do_not_change_the_audio() -> None:
    clean = stream(tone(1000, 2 * RATE), direction="b_to_a", start_s=0.1)
    with_copies = []
    for i, packet in enumerate(clean):
        with_copies.append(packet)
        if i % 7 == 3:
            with_copies.append(replace(packet, arrival_s=packet.arrival_s + 0.01))
    with_copies.sort(key=lambda p: p.arrival_s)
    assert np.array_equal(record(with_copies).render(), record(clean).render())


def test_silence_suppression_gap_keeps_alignment() -> None:
    # The caller talks 0-1 s, is silent (no packets, timestamps keep running) 1-2.5 s, then
    # talks again; the callee sends all the time. Clicks mark known instants on both sides.
    seconds = 4
    caller_signal = clicks(seconds * RATE, [10, 140, 160])
    caller = [
        p
        for i, p in enumerate(stream(caller_signal, direction="a_to_b", start_s=0.0, ts0=5))
        if not 50 <= i < 125
    ]
    callee = stream(
        clicks(seconds * RATE, [10, 140, 160]), direction="b_to_a", start_s=0.0, ssrc=3, ts0=9
    )
    audio = record(by_arrival(caller, callee)).render()
    assert loud_starts(audio[:, 0]) == loud_starts(audio[:, 1]) == [1600, 22400, 25600]
    assert not audio[50 * PTIME : 125 * PTIME, 0].any()


def test_timestamp_wrap_is_seamless() -> None:
    # Jitter after the wrap: were the wrap taken for a jump, the stream would be re-anchored on
    # delayed packets and move.
    signal = tone(440, 2 * RATE, amplitude=2000) + clicks(2 * RATE, [45, 60])
    rng = random.Random(3)
    delays = [0.0] + [rng.uniform(0.01, 0.03) for _ in range(len(signal) // PTIME - 1)]

    def jittered(ts0: int) -> list[Packet]:
        packets = stream(signal, direction="a_to_b", start_s=0.2, ts0=ts0)
        late = [replace(p, arrival_s=p.arrival_s + d) for p, d in zip(packets, delays, strict=True)]
        return sorted(late, key=lambda p: p.arrival_s)

    wrapped = record(jittered(2**32 - 40 * PTIME)).render()
    assert np.array_equal(wrapped, record(jittered(1000)).render())
    assert loud_starts(wrapped[:, 0]) == [1600 + 45 * PTIME, 1600 + 60 * PTIME]


def test_new_ssrc_is_anchored_by_its_arrival() -> None:
    first = stream(clicks(2 * RATE, [0, 99]), direction="a_to_b", start_s=0.0, ssrc=1, ts0=50)
    # After a re-INVITE the far party sends a new SSRC with an unrelated timestamp base, 0.5 s
    # after the first stream ended.
    second = stream(
        clicks(RATE, [0, 49]), direction="a_to_b", start_s=2.5, ssrc=2, ts0=3_900_000_000
    )
    audio = record(first + second).render()[:, 0]
    assert loud_starts(audio) == [0, 99 * PTIME, 20000, 20000 + 49 * PTIME]
    assert audio.size == 20000 + RATE


def test_late_packets_of_the_old_ssrc_keep_their_place() -> None:
    # The last packets of the old SSRC (one with a click) arrive after the new SSRC's first
    # ones: they still belong where their own timestamps put them.
    old = stream(clicks(RATE, [47]), direction="a_to_b", start_s=0.0, ssrc=1, ts0=10)
    new = stream(clicks(RATE, [3]), direction="a_to_b", start_s=1.0, ssrc=2, ts0=2_000_000_000)
    late = [replace(p, arrival_s=p.arrival_s + 0.15) for p in old[45:]]
    packets = sorted([*old[:45], *late, *new], key=lambda p: p.arrival_s)
    assert packets.index(late[0]) > packets.index(new[0])
    audio = record(packets).render()[:, 0]
    assert loud_starts(audio) == [47 * PTIME, RATE + 3 * PTIME]


def test_timestamps_restarting_on_the_same_ssrc_are_reanchored() -> None:
    # A pcap played twice (SIPp play_pcap_audio): same SSRC, same timestamps again at 3 s.
    signal = clicks(2 * RATE, [0, 50])
    first = stream(signal, direction="a_to_b", start_s=0.0, ssrc=5, ts0=1000)
    again = stream(signal, direction="a_to_b", start_s=3.0, ssrc=5, ts0=1000)
    audio = record(first + again).render()[:, 0]
    assert loud_starts(audio) == [0, 8000, 24000, 32000]


def test_timestamps_not_advanced_over_a_silence_are_reanchored() -> None:
    # A sender that pauses 2 s but continues its timestamps as if it had not paused.
    signal = clicks(2 * RATE, [0, 60])
    packets = stream(signal, direction="a_to_b", start_s=0.0, ssrc=8)
    shifted = [
        replace(p, arrival_s=p.arrival_s + (2.0 if i >= 50 else 0.0)) for i, p in enumerate(packets)
    ]
    audio = record(shifted).render()[:, 0]
    assert loud_starts(audio) == [0, 60 * PTIME + 2 * RATE]


# ------------------------------------------------------------------------- packet formats


def test_csrc_extension_and_padding_are_skipped() -> None:
    signal = tone(440, 4 * PTIME)
    chunks = [signal[i * PTIME : (i + 1) * PTIME] for i in range(4)]
    variants = [
        {"csrcs": 3},
        {"extension_words": 2},
        {"padding": 4},
        {"csrcs": 1, "extension_words": 1, "padding": 1},
    ]
    packets = [
        Packet(i * 0.02, "a_to_b", rtp(i, i * PTIME, 1, g711.ulaw_encode(chunk), **variant))  # type: ignore[arg-type]
        for i, (chunk, variant) in enumerate(zip(chunks, variants, strict=True))
    ]
    audio = record(packets).render()[:, 0]
    assert np.array_equal(audio, g711.ulaw_decode(g711.ulaw_encode(signal)))


def test_only_g711_is_kept() -> None:
    signal = clicks(RATE, [0, 10, 20, 30, 40])
    packets = stream(signal, direction="a_to_b", start_s=0.0, ssrc=4)
    mixed = []
    for i, packet in enumerate(packets):
        if i == 10:  # an RFC 4733 telephone-event instead of audio
            data = rtp(i, i * PTIME, 4, bytes([5, 0x8A, 0, 160]), payload_type=101, marker=True)
            mixed.append(replace(packet, data=data))
        elif i == 20:  # comfort noise (RFC 3389)
            mixed.append(replace(packet, data=rtp(i, i * PTIME, 4, b"\x40", payload_type=13)))
        elif i == 30:  # PCMA in the middle of PCMU (a re-INVITE changed the codec)
            pcma = g711.alaw_encode(signal[30 * PTIME : 31 * PTIME])
            mixed.append(replace(packet, data=rtp(i, i * PTIME, 4, pcma, payload_type=PCMA)))
        else:
            mixed.append(packet)
    # A multiplexed RTCP receiver report (RFC 5761) arrives too.
    mixed.insert(5, Packet(0.09, "a_to_b", struct.pack("!BBHI", 0x81, 201, 7, 4) + bytes(24)))
    audio = record(mixed).render()[:, 0]
    assert loud_starts(audio) == [0, 30 * PTIME, 40 * PTIME]


def test_malformed_datagrams_are_ignored() -> None:
    good = stream(clicks(RATE // 2, [5]), direction="a_to_b", start_s=0.0, ssrc=6)
    garbage = [
        b"",
        b"\x80",
        b"\x80\x00" + bytes(9),  # shorter than the fixed header
        b"\x40\x00" + bytes(170),  # version 1
        b"\x8f\x00" + bytes(20),  # 15 CSRCs announced, not present
        b"\x90\x00" + bytes(10) + b"\xbe\xde\xff\xff",  # extension longer than the packet
        b"\xa0\x00" + bytes(10) + b"\x01\x02\xff",  # padding longer than the packet
    ]
    noisy = [*good[:3], *(Packet(0.05, "a_to_b", g) for g in garbage), *good[3:]]
    assert np.array_equal(record(noisy).render(), record(good).render())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.booleans(), st.binary(min_size=0, max_size=200)),
        max_size=60,
    )
)
def test_any_datagrams_render_within_the_cap(
    datagrams: list[tuple[float, bool, bytes]],
) -> None:
    packets = [
        Packet(at, "a_to_b" if caller else "b_to_a", bytes([0x80]) + data if data else data)
        for at, caller, data in sorted(datagrams, key=lambda d: d[0])
    ]
    audio = record(packets, max_duration_s=6.0).render()
    assert audio.dtype == np.int16 and audio.ndim == 2 and audio.shape[1] == 2
    assert audio.shape[0] <= 6 * RATE


# ------------------------------------------------------------------------- memory and purity


def test_memory_cap_bounds_packets_and_duration() -> None:
    packets = stream(tone(440, 10 * RATE), direction="a_to_b", start_s=0.0)
    recording = record(packets, max_duration_s=2.0)
    kept, _ = recording.packets
    over, _ = recording.packets_over_budget
    assert kept + over == len(packets)
    assert 100 <= kept < len(packets) and over > 0
    assert recording.render().shape[0] <= 2 * RATE


def test_far_timestamps_are_cut_at_the_cap() -> None:
    packets = stream(tone(440, RATE), direction="a_to_b", start_s=0.0)
    # A packet claiming to belong an hour later, arriving 20 ms after the last one.
    late = rtp(999, len(packets) * PTIME + 3600 * RATE, 0x11111111, bytes(PTIME))
    packets.append(Packet(1.0, "a_to_b", late))
    assert record(packets, max_duration_s=5.0).render().shape[0] <= 5 * RATE


def test_render_is_repeatable_and_sees_later_packets() -> None:
    clock = FakeClock()
    recording = CallRecording(clock=clock, started_at=0.0)
    packets = stream(clicks(RATE, [10, 40]), direction="a_to_b", start_s=0.0)
    for packet in packets[:25]:
        clock.now = packet.arrival_s
        recording.on_packet("a_to_b", packet.data)
    first = recording.render()
    assert np.array_equal(first, recording.render())
    for packet in packets[25:]:
        clock.now = packet.arrival_s
        recording.on_packet("a_to_b", packet.data)
    assert loud_starts(recording.render()[:, 0]) == [10 * PTIME, 40 * PTIME]
    assert recording.packets == (len(packets), 0)


def test_started_at_defaults_to_the_clock() -> None:
    clock = FakeClock()
    clock.now = 100.0
    recording = CallRecording(clock=clock)
    clock.now = 100.5
    recording.on_packet("b_to_a", stream(clicks(PTIME, [0]), direction="b_to_a", start_s=0)[0].data)
    assert loud_starts(recording.render()[:, 1]) == [4000]


def test_recording_module_is_pure() -> None:
    code = "import sys, media.recording; assert 'asyncio' not in sys.modules, 'asyncio'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=".")


def test_bad_max_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="max_duration_s"):
        CallRecording(max_duration_s=0)
