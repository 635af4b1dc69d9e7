"""engine.records: an ended call becomes its WAV (when recorded), its SQLite row and its CDR line.

Real parts: a migrated SQLite database, the CDR writer, WAV files on disk, the recording module
fed with RTP datagrams as the relay hook would feed it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import structlog

from engine import records
from engine.calls import Call, Leg
from engine.records import CallRecorder
from media import g711
from media.recording import CallRecording, RecordingFile
from sip.transport import Peer
from store.cdr import CdrWriter
from store.db import Database
from store.recordings import recording_of
from store.records import CallType, UnconnectedCause
from store.repositories import recent_call_records

ZONE = ZoneInfo("Asia/Shanghai")
# 2026-01-31 17:00 UTC is already February in Shanghai: the month directory is local.
ANSWERED_AT = dt.datetime(2026, 1, 31, 17, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "maskline.sqlite3")
    yield database
    await database.close()


def _call(*, answered: bool) -> Call:
    leg = Leg(peer=Peer("UDP", "127.0.0.1", 5060), call_id="c", local_tag="t")
    call = Call(call_id="qwertyasdfghzxcvbnmqwert", inbound=leg, x="+8617000000001", caller=None)
    call.call_type = 0
    call.phone_no = "+8613800138000"
    call.peer_no = "+8613900139000"
    call.call_time = ANSWERED_AT - 5
    call.start_time = ANSWERED_AT if answered else None
    call.release_time = ANSWERED_AT + 2
    return call


def _fed_recording(seconds: float) -> CallRecording:
    """A recording fed 20 ms G.711 packets both ways, as the relay's on_packet hook does."""
    now = [100.0]
    recording = CallRecording(clock=lambda: now[0], started_at=100.0)
    t = np.arange(160) / 8000
    for n in range(round(seconds / 0.02)):
        for direction, hz, ssrc in (("a_to_b", 440, 1), ("b_to_a", 1000, 2)):
            samples = (8000 * np.sin(2 * np.pi * hz * (t + n * 0.02))).astype(np.int16)
            header = struct.pack("!BBHII", 0x80, 8, n, n * 160, ssrc)
            recording.on_packet(direction, header + g711.encode(8, samples))  # type: ignore[arg-type]
        now[0] += 0.02
    return recording


async def test_recorded_call_writes_the_wav_then_the_row_and_cdr_naming_it(
    db: Database, tmp_path: Path
) -> None:
    cdr = CdrWriter(tmp_path / "cdr", ZONE)
    recorder = CallRecorder(db, cdr, recording_dir=tmp_path / "recordings", zone=ZONE)
    call = _call(answered=True)
    await recorder(call, _fed_recording(1.0))
    await cdr.close()

    path = tmp_path / "recordings" / "202602" / f"{call.call_id}.wav"
    assert call.recording_path == str(path)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        assert wav.getnframes() == 8000  # 1 s: 50 packets of 160 samples
    (record,) = await recent_call_records(db, 10)
    assert record.recording_path == str(path)
    row = await recording_of(db, call.call_id)
    assert row is not None and row.path == str(path) and row.duration_s == 1.0
    (cdr_file,) = (tmp_path / "cdr").iterdir()
    with cdr_file.open(newline="", encoding="utf-8") as f:
        (line,) = list(csv.DictReader(f))
    assert line["recording_file"] and Path(line["recording_file"]).name == path.name
    for number in ("13800138000", "13900139000", "17000000001"):
        assert number not in str(path)


@pytest.mark.parametrize("answered", [True, False])
async def test_no_wav_without_conversation(db: Database, tmp_path: Path, answered: bool) -> None:
    """Never answered, or answered without one packet (dead media): a record, no file."""
    cdr = CdrWriter(tmp_path / "cdr", ZONE)
    recorder = CallRecorder(db, cdr, recording_dir=tmp_path / "recordings", zone=ZONE)
    call = _call(answered=answered)
    await recorder(call, CallRecording(clock=lambda: 0.0) if answered else _fed_recording(0.2))
    await cdr.close()
    assert call.recording_path is None
    assert not (tmp_path / "recordings").exists()
    (record,) = await recent_call_records(db, 10)
    assert record.recording_path is None
    assert await recording_of(db, call.call_id) is None


async def test_unwritable_recording_dir_still_writes_the_record(
    db: Database, tmp_path: Path
) -> None:
    blocker = tmp_path / "recordings"
    blocker.write_text("a file where the directory should be")
    cdr = CdrWriter(tmp_path / "cdr", ZONE)
    recorder = CallRecorder(db, cdr, recording_dir=blocker, zone=ZONE)
    call = _call(answered=True)
    await recorder(call, _fed_recording(0.2))
    await cdr.close()
    assert call.recording_path is None
    (record,) = await recent_call_records(db, 10)
    assert record.call_id == call.call_id and record.recording_path is None


async def test_cancelled_while_the_wav_renders_still_writes_the_record(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown cancels a record task stuck on a slow WAV: the row and CDR line are written."""
    rendering = asyncio.Event()

    async def slow_write(recording: CallRecording, path: Path) -> RecordingFile:
        rendering.set()
        await asyncio.Event().wait()  # never finishes on its own
        raise AssertionError("unreachable")

    monkeypatch.setattr(records, "write_recording", slow_write)
    cdr = CdrWriter(tmp_path / "cdr", ZONE)
    recorder = CallRecorder(db, cdr, recording_dir=tmp_path / "recordings", zone=ZONE)
    call = _call(answered=True)
    task = asyncio.create_task(recorder(call, _fed_recording(0.2)))
    await rendering.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await cdr.close()
    (record,) = await recent_call_records(db, 10)
    assert record.call_id == call.call_id and record.recording_path is None
    (cdr_file,) = (tmp_path / "cdr").iterdir()
    assert len(cdr_file.read_text("utf-8").splitlines()) == 2  # header and the call


@pytest.mark.parametrize("media_packets", [(236, 230, 4), None])
async def test_the_call_ended_line_carries_the_relay_sessions_packet_counts(
    db: Database, tmp_path: Path, media_packets: tuple[int, int, int] | None
) -> None:
    """One log line per call: the record's facts, and the media counts when a session closed."""
    cdr = CdrWriter(tmp_path / "cdr", ZONE)
    recorder = CallRecorder(db, cdr, recording_dir=tmp_path / "recordings", zone=ZONE)
    call = _call(answered=True)
    call.media_packets = media_packets
    with structlog.testing.capture_logs() as logged:
        await recorder(call)
    await cdr.close()
    (line,) = [entry for entry in logged if entry["event"] == "call_ended"]
    assert line["call"] == call.call_id and line["duration_s"] == 2.0
    counts = tuple(line.get(key) for key in ("packets_a_to_b", "packets_b_to_a", "dropped"))
    assert counts == (media_packets or (None, None, None))


def test_the_enum_tables_hold_every_member_at_its_value() -> None:
    assert list(records.CALL_TYPES) == sorted(CallType, key=int)
    assert all(member.value == index for index, member in enumerate(records.CALL_TYPES))
    assert list(records.UNCONNECTED_CAUSES) == sorted(UnconnectedCause, key=int)
    assert all(member.value == index for index, member in enumerate(records.UNCONNECTED_CAUSES))


@pytest.mark.parametrize(("call_type", "cause"), [(0, 0), (1, 2), (4, 4), (5, 3)])
def test_a_records_enums_are_the_members_of_the_calls_ints(call_type: int, cause: int) -> None:
    leg = Leg(peer=Peer("UDP", "127.0.0.1", 5060), call_id="in", local_tag="t")
    call = Call(call_id="enum-call", inbound=leg, x="+8617000000001", caller=None)
    call.call_type, call.unconnected_cause = call_type, cause
    record = records.call_record_of(call)
    assert record.call_type is CallType(call_type)
    assert record.unconnected_cause is UnconnectedCause(cause)


def test_a_value_outside_the_enum_is_refused_as_before() -> None:
    leg = Leg(peer=Peer("UDP", "127.0.0.1", 5060), call_id="in", local_tag="t")
    call = Call(call_id="enum-call", inbound=leg, x="+8617000000001", caller=None)
    call.call_type = 9
    with pytest.raises(ValueError, match="9 is not a valid CallType"):
        records.call_record_of(call)
