"""The report outbox (SPEC §6): what the engine's call events write, in which order, to whom,
atomically with the call record; the pull queue with its lease and ack; restart."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import sqlite3
from collections import Counter
from typing import Any

import numpy as np
import pytest
from api_support import ZONE, Api, local
from reports_support import (
    A_NO,
    B_NO,
    Scene,
    answered_call,
    busy_call,
    intercepted_call,
    make_scene,
    new_call,
    outbox_rows,
    routed_call,
)

from api.control import ControlPlane
from api.errors import InvalidInput, NotFound
from api.principal import OPERATOR, Principal
from api.reports import MAX_ROUND_ITEMS, ROUND_OP_ITEMS, attach_reports, recording_report_id
from engine.records import call_record_of
from media.recording_io import write_wav
from routing.index import BindingIndex
from store import ConflictError, Database, ReleaseDir
from store.db import MAX_LOOP_BATCH_OPS
from store.outbox import (
    MAX_ROWS_PER_INSERT,
    NewReport,
    ReportType,
    insert_call_record_with_report,
)
from store.recordings import attach_recording
from store.records import REPORT_FIELDS


@pytest.fixture
async def scene(api: Api) -> Scene:
    return await make_scene(api)


def _of_call(scene: Scene, call_id: str) -> list[str]:
    return [row.kind for row in outbox_rows(scene.api.db_path) if row.call_id == call_id]


async def test_an_answered_call_writes_start_ring_pickup_end_in_order_with_every_field(
    scene: Scene,
) -> None:
    at = scene.api.clock.now
    record = await answered_call(scene.reports, scene.binding, at=at)
    rows = outbox_rows(scene.api.db_path)
    assert [r.kind for r in rows] == ["start", "ring", "pickup", "end"]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert {r.tenant_id for r in rows} == {scene.a.tenant_id}
    assert {r.pool_key for r in rows} == {scene.pool_a}
    assert len({r.id for r in rows}) == 4
    assert all(r.payload["id"] == r.id for r in rows)
    assert all(r.payload["report_type"] == r.kind for r in rows)
    start, ring, pickup, end = (r.payload for r in rows)
    # The end report: every SPEC §6 field, the call record's values and id, local times.
    assert set(REPORT_FIELDS) <= set(end)
    assert end == {**record.to_report(ZONE), "report_type": "end"}
    assert end["id"] == record.id
    assert (end["phone_no"], end["peer_no"], end["secret_no"]) == (
        "+86" + A_NO, "+86" + B_NO, scene.binding.x,
    )  # fmt: skip
    assert (end["call_type"], end["release_dir"], end["unconnected_cause"]) == (0, 1, 0)
    assert end["out_id"] == "order-17"
    assert end["call_time"] == local(at)
    assert end["start_time"] == local(at + 5)
    assert end["city"] == "北京市"
    # The events carry the same names, with what was known at that moment.
    for payload in (start, ring, pickup):
        assert payload["call_id"] == record.call_id
        assert payload["sub_id"] == scene.binding.sub_id
        assert payload["secret_no"] == scene.binding.x
        assert payload["called_display_no"] == scene.binding.x
        assert payload["call_time"] == local(at)
        assert payload["out_id"] == "order-17"
    assert start["ring_time"] is None and start["start_time"] is None
    assert ring["ring_time"] == local(at + 1) and ring["start_time"] is None
    assert pickup["start_time"] == local(at + 5)


async def test_busy_and_intercepted_calls(scene: Scene) -> None:
    at = scene.api.clock.now
    busy = await busy_call(scene.reports, scene.binding, at=at)
    assert _of_call(scene, busy.call_id) == ["start", "ring", "end"]
    # A stranger calls A's X: no binding, so the engine knows no pool; the X's pool owns it.
    stranger = await intercepted_call(scene.reports, x=scene.binding.x, caller="+8613700137000",
                                      at=at + 10)  # fmt: skip
    rows = [r for r in outbox_rows(scene.api.db_path) if r.call_id == stranger.call_id]
    assert [r.kind for r in rows] == ["start", "end"]
    assert {r.tenant_id for r in rows} == {scene.a.tenant_id}
    start, end = (r.payload for r in rows)
    assert start["pool_key"] == end["pool_key"] == scene.pool_a
    assert (end["call_type"], end["unconnected_cause"]) == (4, 2)
    assert start["called_display_no"] is None
    busy_end = outbox_rows(scene.api.db_path)[2].payload
    assert (busy_end["release_dir"], busy_end["release_cause"]) == (2, 17)


async def test_a_call_to_an_x_in_no_pool_keeps_its_record_and_queues_nothing(
    scene: Scene,
) -> None:
    record = await intercepted_call(scene.reports, x="+8617099999999", caller="+8613700137000",
                                    at=scene.api.clock.now)  # fmt: skip
    assert outbox_rows(scene.api.db_path) == []
    stored = await scene.control.get_call_record(record.call_id)
    assert stored.id == record.id


async def test_the_end_report_is_written_with_its_call_record_or_not_at_all(
    scene: Scene,
) -> None:
    record = await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    before = outbox_rows(scene.api.db_path)
    # The same record again (a retried write): refused whole, no second end report.
    with pytest.raises(ConflictError):
        await scene.reports.call_ended(record)
    # A new record whose report id exists: the record is not written either.
    clash = dataclasses.replace(record, id="fresh-record-id")
    end = outbox_rows(scene.api.db_path)[-1]

    report = NewReport(id=end.id, type=ReportType.END, payload={}, pool_key=scene.pool_a)
    with pytest.raises(ConflictError):
        await insert_call_record_with_report(scene.control.db, clash, report, now=1.0)
    assert outbox_rows(scene.api.db_path) == before
    with pytest.raises(NotFound):
        await scene.control.get_call_record("no-such-call")
    records = await scene.control.recent_calls(10)
    assert [r.id for r in records] == [record.id]


async def test_a_call_reports_stay_in_order_when_many_calls_interleave(scene: Scene) -> None:
    at = scene.api.clock.now
    calls = [routed_call(scene.binding, at=at + i) for i in range(50)]
    for call in calls:
        scene.reports.call_started(call)
    for call in calls[::2]:
        call.ring_time = call.call_time + 1
        scene.reports.call_ringing(call)

    for index, call in enumerate(calls):
        call.release_time = call.call_time + 2
        call.release_dir = ReleaseDir.CALLER
        if index % 5 == 0:
            await scene.reports.call_ended(call_record_of(call))
        else:
            scene.reports.call_answered(call)  # reports still buffered when others end
    for call in calls:
        if calls.index(call) % 5:
            await scene.reports.call_ended(call_record_of(call))
    for index, call in enumerate(calls):
        kinds = _of_call(scene, call.call_id)
        ring = ["ring"] if index % 2 == 0 else []
        pickup = [] if index % 5 == 0 else ["pickup"]
        assert kinds == ["start", *ring, *pickup, "end"], (index, kinds)


async def test_the_recording_report_follows_the_end_report_once(scene: Scene) -> None:
    call = routed_call(scene.binding, at=scene.api.clock.now)
    scene.reports.call_started(call)
    call.start_time = call.call_time + 2
    scene.reports.call_answered(call)
    call.release_time = call.call_time + 30

    from engine.records import call_record_of

    wav = write_wav(np.zeros((8000, 2), dtype=np.int16), scene.api.db_path.parent / "r.wav")
    # The engine's order: the WAV's path noted on the call, the WAV attached, then the record.
    call.recording_path = str(wav.path)
    await attach_recording(scene.control.db, call_id=call.call_id, file=wav,
                           pool_key=scene.pool_a)  # fmt: skip
    record = call_record_of(call)
    assert record.recording_path == str(wav.path)
    await scene.reports.call_ended(record)
    written = [r.kind for r in outbox_rows(scene.api.db_path) if r.call_id == call.call_id]
    assert written == ["start", "pickup", "end", "recording"]  # with the record, not later
    await scene.reports.recording_ready(call.call_id)  # the other order's call: no second one
    rows = [r for r in outbox_rows(scene.api.db_path) if r.call_id == call.call_id]
    assert [r.kind for r in rows] == ["start", "pickup", "end", "recording"]
    recording = rows[-1].payload
    assert recording["id"] == recording_report_id(call.call_id)
    assert (recording["call_id"], recording["sub_id"]) == (call.call_id, scene.binding.sub_id)
    assert recording["duration_s"] == 1.0
    assert recording["size_bytes"] == wav.size_bytes
    assert rows[-1].tenant_id == scene.a.tenant_id


async def test_a_recording_attached_after_the_record_is_reported_by_recording_ready(
    scene: Scene,
) -> None:

    record = await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    await scene.reports.recording_ready(record.call_id)  # nothing attached yet: nothing
    assert _of_call(scene, record.call_id) == ["start", "ring", "pickup", "end"]
    wav = write_wav(np.zeros((800, 2), dtype=np.int16), scene.api.db_path.parent / "late.wav")
    await attach_recording(scene.control.db, call_id=record.call_id, file=wav,
                           pool_key=scene.pool_a)  # fmt: skip
    await scene.reports.recording_ready(record.call_id)
    await scene.reports.recording_ready(record.call_id)
    assert _of_call(scene, record.call_id) == ["start", "ring", "pickup", "end", "recording"]


# ------------------------------------------------------------------------------- pull


async def test_pull_leases_in_order_hides_until_the_timeout_and_ack_delivers(
    scene: Scene,
) -> None:
    first = await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    second = await busy_call(scene.reports, scene.binding, at=scene.api.clock.now + 100)
    as_a = Principal(scene.a.tenant_id)
    taken = await scene.reports.pull(as_a, max_reports=5, visibility_timeout_s=30)
    assert [(r["call_id"], r["report_type"]) for r in taken] == [
        (first.call_id, "start"), (first.call_id, "ring"), (first.call_id, "pickup"),
        (first.call_id, "end"), (second.call_id, "start"),
    ]  # fmt: skip
    # The rest: the second call's start is leased, so its later reports wait (call order).
    assert await scene.reports.pull(as_a, max_reports=100) == []
    acked = await scene.reports.ack(as_a, [str(r["id"]) for r in taken[:4]])
    assert acked == [r["id"] for r in taken[:4]]
    scene.clock.now += 31  # the lease of the unacked start runs out: it comes back first
    again = await scene.reports.pull(as_a, max_reports=100, visibility_timeout_s=30)
    assert [(r["call_id"], r["report_type"]) for r in again] == [
        (second.call_id, "start"), (second.call_id, "ring"), (second.call_id, "end"),
    ]  # fmt: skip
    assert again[0]["id"] == taken[4]["id"]  # the same report, the same id
    again_ids = [str(r["id"]) for r in again]
    assert await scene.reports.ack(as_a, again_ids) == again_ids
    assert await scene.reports.ack(as_a, again_ids[:1]) == again_ids[:1]  # idempotent
    scene.clock.now += 3600
    assert await scene.reports.pull(as_a) == []
    rows = outbox_rows(scene.api.db_path)
    assert all(r.delivered_via == "pull" and r.delivered_at is not None for r in rows)
    assert Counter(r.attempts for r in rows) == Counter({1: 6, 2: 1})


async def test_pull_and_ack_are_scoped_to_the_callers_tenant(scene: Scene) -> None:
    await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    as_b = Principal(scene.b.tenant_id)
    assert await scene.reports.pull(as_b, max_reports=100) == []
    a_ids = [r.id for r in outbox_rows(scene.api.db_path)]
    assert await scene.reports.ack(as_b, a_ids) == []
    with pytest.raises(NotFound) as foreign:
        await scene.reports.pull(as_b, tenant_id=scene.a.tenant_id)
    with pytest.raises(NotFound) as unknown:
        await scene.reports.pull(as_b, tenant_id="T000000000000")
    assert foreign.value.code == unknown.value.code == "TENANT_NOT_EXIST"
    with pytest.raises(NotFound):
        await scene.reports.ack(as_b, a_ids, tenant_id=scene.a.tenant_id)
    # The operator's own queue holds the pools without a tenant: not A's reports.
    assert await scene.reports.pull(OPERATOR) == []
    assert all(r.delivered_at is None and r.attempts == 0 for r in outbox_rows(scene.api.db_path))
    # The operator may pull for a tenant.
    taken = await scene.reports.pull(OPERATOR, tenant_id=scene.a.tenant_id, max_reports=2)
    assert [r["report_type"] for r in taken] == ["start", "ring"]


async def test_pull_serves_the_types_without_a_push_url(scene: Scene) -> None:
    as_a = Principal(scene.a.tenant_id)
    await scene.reports.set_push_url(as_a, scene.a.tenant_id, "end", "https://a.example/end")
    await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    taken = await scene.reports.pull(as_a, max_reports=100)
    assert [r["report_type"] for r in taken] == ["start", "ring", "pickup"]
    await scene.reports.set_push_url(as_a, scene.a.tenant_id, "default", "https://a.example/")
    scene.clock.now += 3600
    assert await scene.reports.pull(as_a, max_reports=100) == []  # everything is pushed now


async def test_pull_refuses_bad_limits(scene: Scene) -> None:
    as_a = Principal(scene.a.tenant_id)
    for kwargs in ({"max_reports": 0}, {"max_reports": 1001}, {"visibility_timeout_s": 0}):
        with pytest.raises(InvalidInput):
            await scene.reports.pull(as_a, **kwargs)  # type: ignore[arg-type]


async def test_pending_reports_survive_a_restart(api: Api, scene: Scene) -> None:
    record = await answered_call(scene.reports, scene.binding, at=api.clock.now)
    call = new_call(x=scene.binding.x, caller=A_NO, at=api.clock.now + 5)
    call.pool_key = scene.pool_a
    scene.reports.call_started(call)  # buffered: close() writes it
    await scene.reports.close()
    await scene.control.db.close()
    db = await Database.open(api.db_path)
    control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=api.clock)
    try:
        await control.load()
        reports = attach_reports(control, clock=scene.clock)
        taken = await reports.pull(Principal(scene.a.tenant_id), max_reports=100)
        assert [r["call_id"] for r in taken] == [record.call_id] * 4 + [call.call_id]
    finally:
        await db.close()


async def test_rounds_under_load_are_paced_and_an_idle_writer_starts_at_once(scene: Scene) -> None:
    reports = scene.reports
    loop = asyncio.get_running_loop()
    await reports.flush()
    reports.round_interval_s = 0.3
    await asyncio.sleep(0.3)  # idle for longer than the interval (the condition under test)
    started = loop.time()
    await reports.flush()
    assert loop.time() - started < 0.15  # an idle writer does not wait
    rounds = reports.rounds
    calls = [routed_call(scene.binding, at=scene.api.clock.now) for _ in range(3)]
    reports.call_started(calls[0])  # within the interval of the round just run: waits
    await asyncio.sleep(0)
    reports.call_started(calls[1])
    reports.call_started(calls[2])
    await reports.flush()
    assert loop.time() - started >= 0.29
    assert reports.rounds == rounds + 1  # the three reports and the flush: one round
    written = {r.call_id for r in outbox_rows(scene.api.db_path) if r.kind == "start"}
    assert {c.call_id for c in calls} <= written


async def test_a_round_of_several_chunks_writes_every_call_in_order(scene: Scene) -> None:
    # A round is written as ops of ROUND_OP_ITEMS items, one database batch on the event loop
    # (which serves its I/O between two ops), and an op builds and inserts its reports
    # MAX_ROWS_PER_INSERT at a time, its records after them: edges must neither lose nor reorder
    # anything. 23 calls x 4 items = 92 reports: three ops and chunks, the last partial, with a
    # call's start in one and its end in another.
    reports = scene.reports
    await reports.flush()
    reports.round_interval_s = 0.3  # everything below waits for one round
    rounds = reports.rounds
    loop_batches = reports.db.loop_batches
    at = scene.api.clock.now
    calls = [routed_call(scene.binding, at=at + i) for i in range(23)]
    for call in calls:
        reports.call_started(call)
        call.ring_time = call.call_time + 1
        reports.call_ringing(call)
    for call in calls:
        call.start_time = call.call_time + 2
        reports.call_answered(call)
        call.release_time = call.call_time + 3
        call.release_dir = ReleaseDir.CALLER
    assert 2 * MAX_ROWS_PER_INSERT < 23 * 4
    assert 2 * ROUND_OP_ITEMS < 23 * 4
    await asyncio.gather(*(reports.call_ended(call_record_of(call)) for call in calls))
    assert reports.rounds == rounds + 1
    assert reports.db.loop_batches == loop_batches + 1  # one transaction for the three ops
    written = [(row.call_id, row.kind) for row in outbox_rows(scene.api.db_path)][-23 * 4 :]
    # The buffer's FIFO: each call's start and ring, then every pick-up, then every end.
    expected = [(c.call_id, kind) for c in calls for kind in ("start", "ring")]
    expected += [(c.call_id, "pickup") for c in calls] + [(c.call_id, "end") for c in calls]
    assert written == expected
    conn = sqlite3.connect(scene.api.db_path)
    try:
        recorded = {row[0] for row in conn.execute("SELECT call_id FROM call_records")}
    finally:
        conn.close()
    assert {c.call_id for c in calls} <= recorded


async def test_a_duplicate_record_in_a_round_fails_alone_and_the_others_are_written(
    scene: Scene,
) -> None:
    reports = scene.reports
    first = await answered_call(reports, scene.binding, at=scene.api.clock.now)
    reports.round_interval_s = 0.2  # the next round gathers everything below
    rounds = reports.rounds
    others = []
    for _ in range(3):
        call = routed_call(scene.binding, at=scene.api.clock.now)
        reports.call_started(call)
        call.start_time = call.call_time + 1
        reports.call_answered(call)
        call.release_time = call.call_time + 20
        call.release_dir = ReleaseDir.CALLER
        others.append(call_record_of(call))
    # One round: the three new records, their earlier reports, and a retry of ``first``.
    outcomes = await asyncio.gather(
        reports.call_ended(others[0]),
        reports.call_ended(first),
        reports.call_ended(others[1]),
        reports.call_ended(others[2]),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [type(None), ConflictError, type(None), type(None)]
    assert reports.rounds == rounds + 1
    rows = outbox_rows(scene.api.db_path)
    for record in others:
        kinds = [r.kind for r in rows if r.call_id == record.call_id]
        assert kinds == ["start", "pickup", "end"]
        end = next(r for r in rows if r.call_id == record.call_id and r.kind == "end")
        assert end.id == record.id
    assert [r.kind for r in rows if r.call_id == first.call_id].count("end") == 1
    stored = {r.id for r in await scene.control.recent_calls(10)}
    assert stored == {first.id, *(r.id for r in others)}


async def test_a_writer_round_leaves_no_cyclic_garbage(scene: Scene) -> None:
    # The serving process walks its old objects only every ten minutes (engine.gc_policy), so
    # whatever a round leaves in a reference cycle stays until then: under load, every call's
    # events and record. Compiled, the round's helpers nested in _run_items were such a cycle.
    reports = scene.reports
    await reports.flush()
    gc.collect()
    gc.disable()
    try:
        records = [
            await answered_call(reports, scene.binding, at=scene.api.clock.now + i)
            for i in range(3)
        ]
        await reports.flush()
        del records
        garbage_before = len(gc.garbage)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = Counter(type(o).__qualname__ for o in gc.garbage[garbage_before:])
        finally:
            gc.set_debug(0)
            del gc.garbage[garbage_before:]
    finally:
        gc.enable()
    assert len(outbox_rows(scene.api.db_path)) >= 12  # the rounds ran: 4 reports a call
    assert not found, found


def test_a_full_round_fits_in_one_batch_of_the_database() -> None:
    # A round's ops share one transaction (and one fsync) only if the database takes them in
    # one batch: a full round must not be cut by the batch limit of ops on the loop.
    assert -(-MAX_ROUND_ITEMS // ROUND_OP_ITEMS) <= MAX_LOOP_BATCH_OPS


async def test_an_op_of_a_round_whose_transaction_fails_is_retried_alone(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round's ops normally share one transaction; should the database commit them apart and
    # one transaction fail, the items of the ops written must not be written twice and those
    # of the failed one must be retried (they are the call path's: nobody waits for them).
    reports = scene.reports
    await reports.flush()
    reports.round_interval_s = 0.2  # everything below waits for one round
    db = reports.db
    real_write = db.write
    writes = 0

    async def second_write_fails(op: Any, *, in_loop: bool = False) -> Any:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return await real_write(op, in_loop=in_loop)

    monkeypatch.setattr(db, "write", second_write_fails)
    calls = [routed_call(scene.binding, at=scene.api.clock.now + i) for i in range(40)]
    for call in calls:
        reports.call_started(call)
    assert ROUND_OP_ITEMS < len(calls) <= 2 * ROUND_OP_ITEMS  # two ops: the second fails
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        await reports.flush()  # its item is in the failed op: a waiting caller gets the error
    await reports.flush()  # after the retry pause: the call path's items are written first
    assert writes >= 3
    started = [row.call_id for row in outbox_rows(scene.api.db_path) if row.kind == "start"]
    assert len(set(started)) == len(started)  # none written twice
    assert set(started[-40:]) == {call.call_id for call in calls}
