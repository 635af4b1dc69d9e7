"""Writing a :class:`media.recording.CallRecording` to a WAV file, off the event loop.

Rendering (batch RTP parsing and G.711 decoding) and the file write both run in a worker thread
(``asyncio.to_thread``), so relaying never waits on them. The file is written under a temporary
name in the target directory, fsynced, then renamed over the final name (``os.replace`` is
atomic): a reader, the download route or the retention job, sees either no file or the whole
one, never half a WAV.

File names carry no phone number: :func:`recording_path` builds
``<recording dir>/<YYYYMM>/<call_id>.wav`` from maskline's own call reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import secrets
import wave
from pathlib import Path
from typing import Final

import numpy as np

from media.recording import CHANNELS, SAMPLE_RATE_HZ, CallRecording, RecordingFile, Stereo

__all__ = ["SAFE_CALL_ID", "recording_path", "write_recording", "write_wav"]

_SAMPLE_WIDTH_BYTES: Final = 2
#: Call ids that may name a file (and a URL path segment): no separators, no dots, no spaces.
SAFE_CALL_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def recording_path(
    root: Path, call_id: str, *, started_at: float, zone: dt.tzinfo = dt.UTC
) -> Path:
    """``<root>/<YYYYMM>/<call_id>.wav``; the month is ``started_at`` (UTC epoch s) in ``zone``.

    ``ValueError`` for a call id that is not a safe file name (``[A-Za-z0-9_-]{1,128}``).
    """
    if SAFE_CALL_ID.fullmatch(call_id) is None:
        raise ValueError(f"call id {call_id!r} cannot name a recording file")
    month = dt.datetime.fromtimestamp(started_at, tz=dt.UTC).astimezone(zone).strftime("%Y%m")
    return root / month / f"{call_id}.wav"


def write_wav(samples: Stereo, path: Path) -> RecordingFile:
    """Write stereo 8 kHz 16-bit PCM to ``path`` atomically (temporary file, fsync, rename).

    Blocking: call it from a worker thread. The parent directory is created if missing.
    """
    if samples.ndim != 2 or samples.shape[1] != CHANNELS:
        raise ValueError(f"expected frames × {CHANNELS} samples, got shape {samples.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("wb") as raw:
            with wave.open(raw, "wb") as wav:
                wav.setnchannels(CHANNELS)
                wav.setsampwidth(_SAMPLE_WIDTH_BYTES)
                wav.setframerate(SAMPLE_RATE_HZ)
                # WAV is little-endian whatever the machine is. A memoryview, not tobytes():
                # copying a long call into bytes would hold the GIL for 100+ ms.
                frames = np.ascontiguousarray(samples, dtype="<i2")
                if frames.size:
                    wav.writeframes(frames.data.cast("B"))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)
    return RecordingFile(
        path=path,
        duration_s=samples.shape[0] / SAMPLE_RATE_HZ,
        size_bytes=path.stat().st_size,
    )


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX: the directory entry lives in the directory's data)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _render_and_write(recording: CallRecording, path: Path) -> RecordingFile:
    return write_wav(recording.render(), path)


async def write_recording(recording: CallRecording, path: Path) -> RecordingFile:
    """Render ``recording`` and write it to ``path`` as a WAV, in a worker thread."""
    return await asyncio.to_thread(_render_and_write, recording, path)
