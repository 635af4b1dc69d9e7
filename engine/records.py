"""Turn an ended ``Call`` into its call record: the recording's WAV first (when the call was
recorded), then the SQLite row (durable), then the daily CDR line.

The WAV comes first so that the row and the CDR line both name it (SPEC §6: a person finds and
plays a call's recording from the CDR file alone). Rendering and writing it run in a worker
thread (``media.recording_io.write_recording``): the event loop, and so the relay, never waits on
the disk. The file is ``<[recording] dir>/<YYYYMM>/<call ref>.wav`` — maskline's call reference,
never a phone number — and is linked to the call by ``store.recordings.attach_recording`` (the
"recording ready" event).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from engine.calls import Call
from engine.ids import time_ordered_id
from engine.logging import get_logger
from media.recording import CallRecording
from media.recording_io import recording_path, write_recording
from routing.model import PhoneNumber, PoolKey, SubId
from routing.numbers import home_location
from store.cdr import CdrWriter
from store.db import Database
from store.recordings import attach_recording
from store.records import CallRecord, CallType, UnconnectedCause
from store.repositories import insert_call_record

_log = get_logger("engine.records")

# The members by value, for the call's plain ints: ``CallType(n)`` is EnumType.__call__ and
# Enum.__new__, two interpreted frames per conversion (bench/pycalls.py), an index is none.
# Both enums number their members 0, 1, 2, ... (tests/engine/test_engine_records.py checks it).
CALL_TYPES: Final[tuple[CallType, ...]] = tuple(CallType)
UNCONNECTED_CAUSES: Final[tuple[UnconnectedCause, ...]] = tuple(UnconnectedCause)


def _call_type(value: int) -> CallType:
    return CALL_TYPES[value] if 0 <= value < len(CALL_TYPES) else CallType(value)


def _unconnected_cause(value: int) -> UnconnectedCause:
    if 0 <= value < len(UNCONNECTED_CAUSES):
        return UNCONNECTED_CAUSES[value]
    return UnconnectedCause(value)


def call_record_of(call: Call) -> CallRecord:
    """The SPEC §6 end-of-call record of ``call`` (times UTC epoch seconds)."""
    release_time = call.release_time if call.release_time is not None else call.call_time
    x = PhoneNumber(call.x) if call.x else PhoneNumber("")
    return CallRecord(
        id=time_ordered_id(),
        call_id=call.call_id,
        secret_no=x,
        call_type=_call_type(call.call_type),
        call_time=call.call_time,
        release_time=release_time,
        release_dir=call.release_dir,
        release_cause=call.release_cause,
        unconnected_cause=_unconnected_cause(call.unconnected_cause),
        pool_key=PoolKey(call.pool_key) if call.pool_key else None,
        sub_id=SubId(call.sub_id) if call.sub_id else None,
        phone_no=PhoneNumber(call.phone_no) if call.phone_no else None,
        peer_no=PhoneNumber(call.peer_no) if call.peer_no else None,
        called_display_no=x if call.start_time is not None or call.ring_time is not None else None,
        city=home_location(x).city if call.x else None,
        call_out_time=call.call_out_time,
        ring_time=call.ring_time,
        start_time=call.start_time,
        out_id=call.out_id,
        duration_s=(release_time - call.start_time) if call.start_time is not None else 0.0,
        recording_path=call.recording_path,
    )


class CallRecorder:
    """The B2BUA's record sink: WAV (if recorded), durable row, then CSV line.

    ``recording_dir`` and ``zone`` place the WAV files (the month of the answer, local to
    ``zone``, names the sub-directory). Failures are logged, never raised; a WAV that cannot
    be written leaves the call record without a recording, never without a record.
    """

    def __init__(
        self,
        db: Database,
        cdr: CdrWriter,
        *,
        recording_dir: Path = Path("var/recordings"),
        zone: dt.tzinfo = dt.UTC,
        write_record: Callable[[CallRecord], Awaitable[None]] | None = None,
    ) -> None:
        """``write_record``: the durable write of a record (default: the row alone); the
        reports service passes one that writes the row and its end-of-call report in one
        transaction."""
        self._db = db
        self._write = write_record if write_record is not None else self._insert
        self._cdr = cdr
        self._recording_dir = recording_dir
        self._zone = zone

    async def __call__(self, call: Call, recording: CallRecording | None = None) -> None:
        """Write ``call``'s record; first its WAV when ``recording`` holds the conversation."""
        if recording is not None:
            try:
                await self._save_recording(call, recording)
            except asyncio.CancelledError:
                # Shutdown ran out of time while the WAV was rendering: the record is written
                # all the same (without the file, unless it was attached already; a file that
                # appears later is a stray for the retention sweep), then the stop goes on.
                await self._write_record(call)
                raise
        await self._write_record(call)

    async def _write_record(self, call: Call) -> None:
        record = call_record_of(call)
        await self._write(record)
        await self._cdr.append(record)
        fields: dict[str, object] = {
            "call": call.call_id,
            "call_type": int(record.call_type),
            "release_dir": int(record.release_dir),
            "release_cause": record.release_cause,
            "unconnected_cause": int(record.unconnected_cause),
            "duration_s": round(record.duration_s, 1),
            "recorded": record.recording_path is not None,
        }
        media = call.media_packets
        if media is not None:  # the relay session's counts (engine.b2bua, when it closed)
            fields["packets_a_to_b"], fields["packets_b_to_a"], fields["dropped"] = media
        _log.info("call_ended", **fields)

    async def _insert(self, record: CallRecord) -> None:
        await insert_call_record(self._db, record)

    async def _save_recording(self, call: Call, recording: CallRecording) -> None:
        """Write the WAV off the event loop, attach it to the call, note its path on ``call``."""
        if call.start_time is None:
            return  # never answered: no conversation to keep
        if recording.packets == (0, 0):
            # Answered, but not one G.711 packet either way (dead media): no file to keep.
            _log.info("recording_empty", call=call.call_id)
            return
        path = recording_path(
            self._recording_dir, call.call_id, started_at=call.start_time, zone=self._zone
        )
        try:
            file = await write_recording(recording, path)
        except Exception:
            _log.exception("recording_write_failed", call=call.call_id)
            return
        call.recording_path = str(file.path)
        try:
            await attach_recording(
                self._db, call_id=call.call_id, file=file, pool_key=call.pool_key
            )
        except Exception:
            # The row still names the file (recording_path); only the "ready" event is missing.
            _log.exception("recording_attach_failed", call=call.call_id)
        _log.info(
            "recording_written",
            call=call.call_id,
            duration_s=round(file.duration_s, 2),
            size_bytes=file.size_bytes,
            packets_over_budget=sum(recording.packets_over_budget),
        )
