"""media.recording_io: the WAV file on a real file system, written atomically off the loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import struct
import threading
import wave
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest

from media import g711
from media.ports import PortAllocator
from media.recording import CallRecording, Stereo
from media.recording_io import recording_path, write_recording, write_wav
from media.relay import MediaRelay


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _recording() -> CallRecording:
    """One second of 440 Hz from the caller from 0.1 s, 1 kHz from the callee from 0.2 s."""
    clock = FakeClock()
    recording = CallRecording(clock=clock, started_at=0.0)
    t = np.arange(8000) / 8000
    for direction, freq, start_s, ssrc in (("a_to_b", 440, 0.1, 1), ("b_to_a", 1000, 0.2, 2)):
        samples = (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        for i in range(50):
            payload = g711.ulaw_encode(samples[i * 160 : (i + 1) * 160])
            clock.now = start_s + i * 0.02
            header = struct.pack("!BBHII", 0x80, 0, i, i * 160, ssrc)
            recording.on_packet(direction, header + payload)  # type: ignore[arg-type]
    return recording


def _read_wav(path: Path) -> tuple[wave._wave_params, Stereo]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(params.nframes)
    return params, np.frombuffer(frames, dtype="<i2").reshape(-1, 2)


async def test_write_recording_makes_a_stereo_8khz_16bit_wav(tmp_path: Path) -> None:
    recording = _recording()
    path = tmp_path / "rec" / "202401" / "callref.wav"
    written = await write_recording(recording, path)

    assert written.path == path
    params, samples = _read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert np.array_equal(samples, recording.render())
    assert written.duration_s == pytest.approx(1.2)
    assert written.size_bytes == path.stat().st_size == 44 + samples.size * 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["callref.wav"]  # no temporary left


def test_an_independent_decoder_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    write_wav(_recording().render(), path)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == 8000
        assert stream.codec_context.channels == 2
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
    decoded = np.concatenate(frames, axis=1)  # planar or packed: channels × samples or 1 × 2n
    assert decoded.size == 2 * 9600


async def test_rendering_and_writing_run_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = _recording()
    threads: list[int] = []
    original = CallRecording.render

    def render(self: CallRecording) -> Stereo:
        threads.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(CallRecording, "render", render)
    await write_recording(recording, tmp_path / "a.wav")
    assert threads and threads[0] != threading.get_ident()


def test_replacing_a_file_is_atomic_and_a_failed_write_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "call.wav"
    first = np.ones((800, 2), dtype=np.int16)
    write_wav(first, path)

    def broken_replace(_src: object, _dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_wav(np.full((1600, 2), 7, dtype=np.int16), path)
    monkeypatch.undo()
    assert np.array_equal(_read_wav(path)[1], first)
    assert [p.name for p in tmp_path.iterdir()] == ["call.wav"]

    second = np.full((1600, 2), -3, dtype=np.int16)
    write_wav(second, path)
    assert np.array_equal(_read_wav(path)[1], second)


def test_wrong_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames"):
        write_wav(np.zeros(100, dtype=np.int16), tmp_path / "mono.wav")
    assert not list(tmp_path.iterdir())


def test_an_empty_recording_is_a_valid_empty_wav(tmp_path: Path) -> None:
    written = write_wav(np.zeros((0, 2), dtype=np.int16), tmp_path / "empty.wav")
    params, samples = _read_wav(written.path)
    assert params.nframes == 0 and samples.size == 0 and written.duration_s == 0.0


def test_recording_path_is_month_and_call_reference() -> None:
    started = dt.datetime(2024, 1, 31, 20, 0, tzinfo=dt.UTC).timestamp()
    root = Path("/var/rec")
    assert recording_path(root, "abcdefghjkmnpqrs", started_at=started) == Path(
        "/var/rec/202401/abcdefghjkmnpqrs.wav"
    )
    # 20:00 UTC on Jan 31 is already February in Shanghai.
    shanghai = recording_path(
        root, "abcdefghjkmnpqrs", started_at=started, zone=ZoneInfo("Asia/Shanghai")
    )
    assert shanghai == Path("/var/rec/202402/abcdefghjkmnpqrs.wav")


@pytest.mark.parametrize(
    "bad", ["", "../etc/passwd", "a/b", "+8613800138000 x", "a.wav", "x" * 129]
)
def test_recording_path_refuses_unsafe_names(bad: str) -> None:
    with pytest.raises(ValueError, match="call id"):
        recording_path(Path("/r"), bad, started_at=0.0)


# ------------------------------------------------------------------------- through the real relay


class _Party(asyncio.DatagramProtocol):
    """A far party's UDP socket (what it receives is not looked at)."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


async def test_recording_a_call_relayed_over_loopback(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    relay = MediaRelay("127.0.0.1", PortAllocator(42100, 42199), loop=loop)
    session = await relay.open_session("recorded")
    caller_transport, caller = await loop.create_datagram_endpoint(
        _Party, local_addr=("127.0.0.1", 0)
    )
    callee_transport, callee = await loop.create_datagram_endpoint(
        _Party, local_addr=("127.0.0.1", 0)
    )
    try:
        session.expect("a", caller.address)
        session.expect("b", callee.address)
        recording = CallRecording()  # starts now, on time.monotonic
        session.on_packet = recording.on_packet
        packets = 30  # 0.6 s each way, paced in real time as RTP is
        t = np.arange(packets * 160) / 8000
        low = (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        high = (6000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
        for i in range(packets):
            chunk = slice(i * 160, (i + 1) * 160)
            caller.transport.sendto(
                struct.pack("!BBHII", 0x80, 0, i, 5000 + i * 160, 0xA)
                + g711.ulaw_encode(low[chunk]),
                ("127.0.0.1", session.port_a),
            )
            callee.transport.sendto(
                struct.pack("!BBHII", 0x80, 8, i, 9000 + i * 160, 0xB)
                + g711.alaw_encode(high[chunk]),
                ("127.0.0.1", session.port_b),
            )
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the last datagrams through the loop
        session.on_packet = None
        assert recording.packets == (packets, packets)
        written = await write_recording(recording, tmp_path / "call.wav")
    finally:
        caller_transport.close()
        callee_transport.close()
        await relay.close_all()

    _params, samples = _read_wav(written.path)
    spectrum = [np.abs(np.fft.rfft(samples[:, ch].astype(np.float64))) for ch in (0, 1)]
    freqs = np.fft.rfftfreq(samples.shape[0], 1 / 8000)
    assert abs(freqs[np.argmax(spectrum[0])] - 440) < 5  # caller left
    assert abs(freqs[np.argmax(spectrum[1])] - 1000) < 5  # callee right
    # Sent over ~0.6 s (pacing makes it a bit longer); never shorter than the audio sent.
    assert 0.6 <= written.duration_s < 1.0
