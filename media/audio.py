"""Telephony audio: import in any common format, text-to-speech, 8 kHz WAV files, G.711 frames.

Everything maskline plays (announcement prompts, enterprise ringback tones) is kept as
:data:`Pcm8k`: 8 kHz mono 16-bit samples in a NumPy array, the sample format of G.711 before
companding. Uploaded audio of any format FFmpeg reads (WAV, MP3, OGG/Vorbis, Opus, FLAC, AAC ...)
is decoded and resampled with PyAV; text is spoken by espeak-ng and goes through the same decoder.
Files on disk are plain 8 kHz 16-bit mono WAV, written atomically so a reader never sees half a
file. :func:`frames` cuts audio into the 20 ms G.711 payloads an RTP stream carries.

Blocking (decoding, a subprocess, file I/O): callers on an event loop run these in a thread.
Every refusal is an :class:`AudioError` with a stable ``code``.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import unicodedata
import wave
from enum import StrEnum
from pathlib import Path
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from media import g711

__all__ = [
    "DEFAULT_VOICE",
    "FRAME_MS",
    "FRAME_SAMPLES",
    "MAX_DURATION_S",
    "MAX_INPUT_BYTES",
    "MAX_TEXT_CHARS",
    "SAMPLE_RATE_HZ",
    "AudioError",
    "AudioErrorCode",
    "Pcm8k",
    "check_voice",
    "decode_audio",
    "duration_ms",
    "frames",
    "read_wav",
    "synthesize",
    "write_wav",
]

#: 8 kHz mono signed 16-bit samples.
Pcm8k = npt.NDArray[np.int16]

SAMPLE_RATE_HZ: Final = 8000
FRAME_MS: Final = 20
#: Samples (and G.711 bytes) in one 20 ms RTP payload.
FRAME_SAMPLES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000
#: Longest audio accepted: a ringback loops, so minutes are plenty, and the cap bounds the memory
#: a decoded upload can take (5 min = 4.8 MB of samples), also for a tiny file that decodes long.
MAX_DURATION_S: Final = 300
#: Largest encoded input: 5 minutes of 48 kHz stereo 16-bit WAV is ~58 MB.
MAX_INPUT_BYTES: Final = 64 * 1024 * 1024
MAX_TEXT_CHARS: Final = 1000
DEFAULT_VOICE: Final = "cmn-latn-pinyin"
TTS_TIMEOUT_S: Final = 20.0

_ESPEAK: Final = "espeak-ng"
# espeak-ng voice names: letters, digits, '-', '_', '+' (variants, e.g. "en+f3"); never starting
# with '-', so a voice can't be read as an option.
_VOICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+\-]{0,63}\Z")
_MAX_SAMPLES: Final = MAX_DURATION_S * SAMPLE_RATE_HZ


class AudioErrorCode(StrEnum):
    """Why audio was refused (the API prints these as ``code``)."""

    AUDIO_UNDECODABLE = "AUDIO_UNDECODABLE"  # not audio FFmpeg can read
    AUDIO_EMPTY = "AUDIO_EMPTY"  # decodes to less than one 20 ms frame
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"  # more than MAX_DURATION_S
    AUDIO_TOO_LARGE = "AUDIO_TOO_LARGE"  # more than MAX_INPUT_BYTES of input
    WAV_FORMAT_ILLEGAL = "WAV_FORMAT_ILLEGAL"  # read_wav: not 8 kHz 16-bit mono PCM
    TTS_TEXT_ILLEGAL = "TTS_TEXT_ILLEGAL"  # empty, too long, control characters
    TTS_VOICE_ILLEGAL = "TTS_VOICE_ILLEGAL"  # malformed or unknown to espeak-ng
    TTS_FAILED = "TTS_FAILED"  # espeak-ng missing, failed or timed out


class AudioError(ValueError):
    """Audio that cannot be used; ``code`` is an :class:`AudioErrorCode`."""

    def __init__(self, code: AudioErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------- decoding


def decode_audio(data: bytes) -> Pcm8k:
    """Decode audio of any format FFmpeg reads into 8 kHz mono 16-bit samples.

    The first audio stream is decoded and resampled (channels mixed down) with PyAV. Raises
    :class:`AudioError`: ``AUDIO_TOO_LARGE`` above :data:`MAX_INPUT_BYTES`,
    ``AUDIO_UNDECODABLE`` for input that is not readable audio, ``AUDIO_EMPTY`` below one 20 ms
    frame, ``AUDIO_TOO_LONG`` beyond :data:`MAX_DURATION_S` (checked while decoding, so a small
    file that would decode to hours stops early).
    """
    if len(data) > MAX_INPUT_BYTES:
        raise AudioError(
            AudioErrorCode.AUDIO_TOO_LARGE,
            f"audio input is {len(data)} bytes; at most {MAX_INPUT_BYTES} are accepted",
        )
    if not data:
        raise AudioError(AudioErrorCode.AUDIO_EMPTY, "no audio data")
    chunks: list[Pcm8k] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise AudioError(AudioErrorCode.AUDIO_UNDECODABLE, "the input has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    total += _collect(out, chunks)
                if total > _MAX_SAMPLES:
                    raise _too_long()
            for out in resampler.resample(None):  # what the resampler still holds
                total += _collect(out, chunks)
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, IndexError, EOFError, OSError) as error:
        raise AudioError(
            AudioErrorCode.AUDIO_UNDECODABLE,
            f"not audio in a readable format ({type(error).__name__}: {_brief(error)})",
        ) from None
    if total > _MAX_SAMPLES:
        raise _too_long()
    if total < FRAME_SAMPLES:
        raise AudioError(
            AudioErrorCode.AUDIO_EMPTY, f"the audio is shorter than one {FRAME_MS} ms frame"
        )
    return np.concatenate(chunks).astype(np.int16, copy=False)


def _collect(frame: av.AudioFrame, chunks: list[Pcm8k]) -> int:
    # Packed s16 mono: shape (1, samples).
    samples: Pcm8k = frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
    chunks.append(samples)
    return int(samples.size)


def _too_long() -> AudioError:
    return AudioError(
        AudioErrorCode.AUDIO_TOO_LONG, f"the audio is longer than {MAX_DURATION_S} seconds"
    )


def _brief(error: BaseException) -> str:
    text = str(error)
    return text if len(text) <= 200 else text[:200] + "..."


def duration_ms(pcm: Pcm8k) -> int:
    """Length of ``pcm`` in milliseconds."""
    return int(pcm.size) * 1000 // SAMPLE_RATE_HZ


# ------------------------------------------------------------------------------- TTS


def check_voice(voice: str) -> str:
    """``voice`` if it is a well-formed espeak-ng voice name, else ``AudioError``."""
    if not _VOICE.match(voice):
        raise AudioError(
            AudioErrorCode.TTS_VOICE_ILLEGAL,
            "a voice is 1-64 letters, digits, '-', '_' or '+' (e.g. cmn-latn-pinyin)",
        )
    return voice


def _speakable(text: str) -> str:
    # Line breaks and tabs become spaces; other control/format characters are refused rather
    # than dropped, so what is spoken is what was typed.
    flat = " ".join(text.split())
    if not flat:
        raise AudioError(AudioErrorCode.TTS_TEXT_ILLEGAL, "the text is empty")
    if len(flat) > MAX_TEXT_CHARS:
        raise AudioError(
            AudioErrorCode.TTS_TEXT_ILLEGAL,
            f"the text has {len(flat)} characters; at most {MAX_TEXT_CHARS}",
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") for c in flat):
        raise AudioError(
            AudioErrorCode.TTS_TEXT_ILLEGAL, "the text must not contain control characters"
        )
    return flat


def synthesize(text: str, *, voice: str = DEFAULT_VOICE, timeout_s: float = TTS_TIMEOUT_S) -> Pcm8k:
    """Speak ``text`` with espeak-ng's ``voice`` and return it as 8 kHz mono samples.

    The text goes to espeak-ng on stdin as UTF-8 (never through a shell or the argument list,
    where a leading '-' would read as an option); espeak-ng writes a WAV to stdout (22.05 kHz),
    decoded and resampled like an upload. Markup is not interpreted (no ``-m``).

    With the default Mandarin voice ``cmn-latn-pinyin`` espeak-ng reads both Hanzi and pinyin with
    tone numbers (``ni3 hao3``). The plain ``cmn`` voice reads Latin letters as English, and in
    espeak-ng 1.51 its Hanzi come out as that English reading of their pinyin: do not use it.

    Raises :class:`AudioError` (``TTS_TEXT_ILLEGAL``, ``TTS_VOICE_ILLEGAL``, ``TTS_FAILED``, or
    a decoding code for what espeak-ng produced).
    """
    spoken = _speakable(text)
    check_voice(voice)
    command = [_ESPEAK, "-v", voice, "-b", "1", "--stdout", "--stdin"]
    try:
        # A fixed program, no shell, the text on stdin.
        done = subprocess.run(
            command,
            input=spoken.encode("utf-8"),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise AudioError(
            AudioErrorCode.TTS_FAILED, f"{_ESPEAK} is not installed (Debian package espeak-ng)"
        ) from None
    except subprocess.TimeoutExpired:
        raise AudioError(
            AudioErrorCode.TTS_FAILED, f"{_ESPEAK} did not finish within {timeout_s:g} s"
        ) from None
    if done.returncode != 0:
        problem = done.stderr.decode("utf-8", "replace").strip()
        if "voice" in problem.lower():
            raise AudioError(AudioErrorCode.TTS_VOICE_ILLEGAL, f"{_ESPEAK} has no voice {voice!r}")
        raise AudioError(
            AudioErrorCode.TTS_FAILED,
            f"{_ESPEAK} exited with {done.returncode}: {problem[:200] or 'no message'}",
        )
    return decode_audio(done.stdout)


# ------------------------------------------------------------------------------- WAV files


def write_wav(path: Path, pcm: Pcm8k) -> None:
    """Write ``pcm`` as an 8 kHz 16-bit mono WAV at ``path``, atomically.

    The file is written and fsynced under a temporary name in the same directory, then renamed
    over ``path`` (``os.replace``), so a reader sees the old file or the new one, never a part.
    The directory is created if missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temporary, "wb") as handle:
            with wave.open(handle, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(SAMPLE_RATE_HZ)
                wav.writeframes(pcm.astype("<i2", copy=False).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_wav(path: Path) -> Pcm8k:
    """The samples of an 8 kHz 16-bit mono PCM WAV file.

    Raises ``AudioError(WAV_FORMAT_ILLEGAL)`` for any other WAV (or a file that is not WAV;
    use :func:`decode_audio` on its bytes to convert it) and ``OSError`` when it can't be read.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
            if shape != (1, 2, SAMPLE_RATE_HZ):
                raise AudioError(
                    AudioErrorCode.WAV_FORMAT_ILLEGAL,
                    f"{path.name}: {shape[0]} channel(s), {8 * shape[1]}-bit, {shape[2]} Hz; "
                    f"expected 1 channel, 16-bit, {SAMPLE_RATE_HZ} Hz",
                )
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise AudioError(
            AudioErrorCode.WAV_FORMAT_ILLEGAL, f"{path.name}: not a PCM WAV file ({error})"
        ) from None
    samples: Pcm8k = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    return samples


# ------------------------------------------------------------------------------- RTP payloads


def frames(pcm: Pcm8k, payload_type: int) -> list[bytes]:
    """``pcm`` as 20 ms G.711 payloads (160 bytes each) for ``payload_type`` 0 (PCMU) or 8 (PCMA).

    The last frame is padded with silence. The whole buffer is encoded at once (one table
    lookup per sample), then cut. ``ValueError`` for another payload type.
    """
    if pcm.size == 0:
        return []
    padded_size = -(-int(pcm.size) // FRAME_SAMPLES) * FRAME_SAMPLES
    padded = np.zeros(padded_size, dtype=np.int16)
    padded[: pcm.size] = pcm
    encoded = g711.encode(payload_type, padded)
    return [encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]
