"""Turn an ended ``Call`` into its call record: SQLite first (durable), then the daily CDR file."""

from __future__ import annotations

import secrets

from engine.calls import Call
from engine.logging import get_logger
from routing.model import PhoneNumber, PoolKey, SubId
from routing.numbers import home_location
from store.cdr import CdrWriter
from store.db import Database
from store.records import CallRecord, CallType, UnconnectedCause
from store.repositories import insert_call_record

_log = get_logger("engine.records")


def call_record_of(call: Call) -> CallRecord:
    """The SPEC §6 end-of-call record of ``call`` (times UTC epoch seconds)."""
    release_time = call.release_time if call.release_time is not None else call.call_time
    x = PhoneNumber(call.x) if call.x else PhoneNumber("")
    return CallRecord(
        id=secrets.token_hex(16),
        call_id=call.call_id,
        secret_no=x,
        call_type=CallType(call.call_type),
        call_time=call.call_time,
        release_time=release_time,
        release_dir=call.release_dir,
        release_cause=call.release_cause,
        unconnected_cause=UnconnectedCause(call.unconnected_cause),
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
    )


class CallRecorder:
    """The B2BUA's record sink: durable row, then CSV line; failures are logged, never raised."""

    def __init__(self, db: Database, cdr: CdrWriter) -> None:
        self._db = db
        self._cdr = cdr

    async def __call__(self, call: Call) -> None:
        record = call_record_of(call)
        await insert_call_record(self._db, record)
        await self._cdr.append(record)
        _log.info(
            "call_ended",
            call=call.call_id,
            call_type=int(record.call_type),
            release_dir=int(record.release_dir),
            release_cause=record.release_cause,
            unconnected_cause=int(record.unconnected_cause),
            duration_s=round(record.duration_s, 1),
        )
