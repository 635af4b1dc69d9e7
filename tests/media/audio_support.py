"""Test audio made with PyAV (encoders independent of the decoder under test) and an FFT probe."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import cast

import av
import av.audio.stream
import numpy as np
import numpy.typing as npt


def tone(
    frequency_hz: float, *, seconds: float, rate: int, channels: int = 1, amplitude: float = 0.5
) -> npt.NDArray[np.float64]:
    """A sine, shape (channels, samples), values in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * frequency_hz * t)
    return np.tile(wave, (channels, 1))


def encode(samples: npt.NDArray[np.float64], *, rate: int, container: str, codec: str) -> bytes:
    """``samples`` (channels, n) encoded with ``codec`` in ``container``, as file bytes."""
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as box:
        stream = cast("av.audio.stream.AudioStream", box.add_stream(codec, rate=rate))
        stream.layout = layout
        fmt = stream.codec_context.format.name  # the encoder's preferred sample format
        step = stream.codec_context.frame_size or 1024
        pts = 0
        for start in range(0, samples.shape[1], step):
            chunk = samples[:, start : start + step]
            frame = _frame(chunk, fmt, layout)
            frame.sample_rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


def _frame(chunk: npt.NDArray[np.float64], fmt: str, layout: str) -> av.AudioFrame:
    planar = fmt.endswith("p")
    base = fmt.removesuffix("p")
    if base == "s16":
        data = np.round(chunk * 32767).astype(np.int16)
    elif base == "s32":
        data = np.round(chunk * 2147483647).astype(np.int32)
    else:  # flt
        data = chunk.astype(np.float32)
    if not planar:  # packed: one row, channels interleaved
        data = data.T.reshape(1, -1)
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)


def dominant_hz(samples: npt.NDArray[np.int16], rate: int = 8000) -> float:
    """The strongest frequency of ``samples`` (Hann window, FFT bin resolution)."""
    window = np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * window))
    spectrum[0] = 0.0
    return float(np.argmax(spectrum) * rate / samples.size)
