"""Push delivery (SPEC §6) to a real HTTP receiver on loopback: batches, order, retries with
persisted back-off through refusals, errors and timeouts, restart, per-tenant isolation."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_support import ZONE, Api, Clock
from reports_support import (
    Receiver,
    Scene,
    answered_call,
    busy_call,
    intercepted_call,
    make_scene,
    outbox_rows,
    receiving,
)

from api.control import ControlPlane
from api.principal import Principal
from api.report_push import PushSettings, ReportPusher, backoff_s, batches_by_url
from api.reports import attach_reports
from routing.index import BindingIndex
from store import Database
from store.outbox import QueuedReport, ReportType

FAST = PushSettings(
    batch_max=3, timeout_s=0.3, backoff_base_s=0.05, backoff_max_s=0.2, idle_check_s=0.5
)


@pytest.fixture
async def scene(api: Api) -> Scene:
    # Real time: the pusher sleeps its back-off for real.
    return await make_scene(api, clock=_RealClock())


class _RealClock(Clock):
    def __init__(self) -> None:
        super().__init__(0.0)

    def __call__(self) -> float:
        return time.time()


@pytest.fixture
async def pusher(scene: Scene) -> AsyncIterator[ReportPusher]:
    pusher = ReportPusher(scene.reports, FAST)
    await pusher.start()
    yield pusher
    await pusher.stop()


async def _push_to(scene: Scene, url: str, report_type: str = "default") -> None:
    as_a = Principal(scene.a.tenant_id)
    await scene.reports.set_push_url(as_a, scene.a.tenant_id, report_type, url)


async def _until_delivered(scene: Scene, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while any(r.delivered_at is None for r in outbox_rows(scene.api.db_path)):
            await asyncio.sleep(0.02)


async def test_reports_arrive_as_json_arrays_in_order_per_call(
    scene: Scene, pusher: ReportPusher
) -> None:
    async with receiving() as receiver:
        await _push_to(scene, receiver.url())
        answered = await answered_call(scene.reports, scene.binding, at=1_900_000_000.0)
        busy = await busy_call(scene.reports, scene.binding, at=1_900_000_100.0)
        stranger = await intercepted_call(
            scene.reports, x=scene.binding.x, caller="+8613700137000", at=1_900_000_200.0
        )
        await receiver.wait_for(4 + 3 + 2)
        await _until_delivered(scene)
    assert all(len(batch) <= FAST.batch_max for batch in receiver.batches)
    assert receiver.paths == ["/reports"] * len(receiver.batches)
    by_call: dict[str, list[str]] = {}
    for report in receiver.reports:
        by_call.setdefault(str(report["call_id"]), []).append(str(report["report_type"]))
    assert by_call == {
        answered.call_id: ["start", "ring", "pickup", "end"],
        busy.call_id: ["start", "ring", "end"],
        stranger.call_id: ["start", "end"],
    }
    ends = {r["call_id"]: r for r in receiver.reports if r["report_type"] == "end"}
    assert ends[answered.call_id] == {**answered.to_report(ZONE), "report_type": "end"}
    assert ends[busy.call_id]["release_cause"] == 17
    assert ends[stranger.call_id]["unconnected_cause"] == 2
    rows = outbox_rows(scene.api.db_path)
    assert {r.delivered_via for r in rows} == {"push"}
    assert [r["id"] for r in receiver.reports] == [r.id for r in rows]  # exactly once here


async def test_each_type_goes_to_its_own_url(scene: Scene, pusher: ReportPusher) -> None:
    async with receiving() as receiver:
        await _push_to(scene, receiver.url("/ends"), "end")
        await _push_to(scene, receiver.url("/others"), "default")
        await answered_call(scene.reports, scene.binding, at=1_900_000_000.0)
        await receiver.wait_for(4)
    for path, batch in zip(receiver.paths, receiver.batches, strict=True):
        kinds = {r["report_type"] for r in batch}
        assert kinds == {"end"} if path == "/ends" else "end" not in kinds


@pytest.mark.parametrize("outage", ["refused", "fail", "stall"])
async def test_a_receiver_down_then_up_gets_every_report(
    scene: Scene, pusher: ReportPusher, outage: str
) -> None:
    receiver = Receiver(mode="ok" if outage == "refused" else outage)
    await receiver.start()
    if outage == "refused":
        await receiver.stop()  # the port is closed: connections are refused
    await _push_to(scene, receiver.url())
    records = [
        await answered_call(scene.reports, scene.binding, at=1_900_000_000.0 + 100 * i)
        for i in range(3)
    ]
    # Let the worker fail a few times; the failures are persisted on the rows.
    async with asyncio.timeout(10):
        while not any(r.attempts >= 2 for r in outbox_rows(scene.api.db_path)):
            await asyncio.sleep(0.02)
    failing = [r for r in outbox_rows(scene.api.db_path) if r.attempts]
    assert failing and all(r.delivered_at is None and r.last_error for r in failing)
    expected_error = {"refused": "ConnectError", "fail": "HTTP 500", "stall": "timeout"}[outage]
    assert all(expected_error in str(r.last_error) for r in failing)
    assert all(r.next_attempt_at > 0 for r in failing)
    # Up again (same port).
    await receiver.stop()
    receiver.mode = "ok"
    await receiver.start()
    try:
        await receiver.wait_for(12)
        await _until_delivered(scene)
    finally:
        await receiver.stop()
    rows = outbox_rows(scene.api.db_path)
    assert len(rows) == 12
    received = Counter(str(r["id"]) for r in receiver.reports)
    assert set(received) == {r.id for r in rows}  # none lost
    # Duplicates (a stalled request's batch may have been read before the timeout) carry the
    # id of a report that exists: same id, same content.
    by_id = {r.id: r.payload for r in rows}
    assert all(report == by_id[report["id"]] for report in receiver.reports)
    order = [str(r["call_id"]) + str(r["report_type"]) for r in receiver.reports]
    for record in records:
        firsts = [k for k in dict.fromkeys(order) if k.startswith(record.call_id)]
        assert [k.removeprefix(record.call_id) for k in firsts] == ["start", "ring", "pickup",
                                                                      "end"]  # fmt: skip


async def test_pending_reports_are_pushed_after_a_restart(api: Api, scene: Scene) -> None:
    receiver = Receiver()
    await receiver.start()
    await receiver.stop()  # down while the first process runs
    first = ReportPusher(scene.reports, FAST)
    await first.start()
    await _push_to(scene, receiver.url())
    record = await answered_call(scene.reports, scene.binding, at=1_900_000_000.0)
    async with asyncio.timeout(10):
        while not all(r.attempts for r in outbox_rows(api.db_path)[:1]):
            await asyncio.sleep(0.02)
    await first.stop()
    await scene.reports.close()
    await scene.control.db.close()
    # A new process: a new control plane on the same SQLite file.
    db = await Database.open(api.db_path)
    control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=api.clock)
    await control.load()
    second = ReportPusher(attach_reports(control), FAST)
    await receiver.start()
    try:
        await second.start()
        await receiver.wait_for(4)
        await _until_delivered(scene)
        await second.stop()
    finally:
        await receiver.stop()
        await db.close()
    assert {r["call_id"] for r in receiver.reports} == {record.call_id}
    assert [r["report_type"] for r in receiver.reports] == ["start", "ring", "pickup", "end"]


async def test_a_stalled_receiver_does_not_delay_another_tenant(scene: Scene) -> None:
    patient = ReportPusher(scene.reports, PushSettings(timeout_s=60, stop_grace_s=0.1))
    await patient.start()
    try:
        async with receiving("stall") as slow, receiving() as fast:
            await _push_to(scene, slow.url())
            as_b = Principal(scene.b.tenant_id)
            await scene.reports.set_push_url(as_b, scene.b.tenant_id, "default", fast.url())
            for i in range(5):
                await answered_call(scene.reports, scene.binding, at=1_900_000_000.0 + i)
            async with asyncio.timeout(10):
                while not slow.requests:  # A's first batch is held by its receiver
                    await asyncio.sleep(0.01)
            b_record = await intercepted_call(
                scene.reports,
                x=scene.control.pool_numbers(scene.pool_b)[0],
                caller="+8613700137000",
                at=1_900_000_100.0,
            )
            await fast.wait_for(2)
            # B's reports went out while A's request was still unanswered (no attempt recorded).
            a_rows = [r for r in outbox_rows(scene.api.db_path) if r.tenant_id == scene.a.tenant_id]
            assert all(r.attempts == 0 and r.delivered_at is None for r in a_rows)
            assert slow.requests == 1 and not slow.batches
            assert {r["call_id"] for r in fast.reports} == {b_record.call_id}
    finally:
        await patient.stop()


async def test_a_type_without_url_stays_for_pull(scene: Scene, pusher: ReportPusher) -> None:
    async with receiving() as receiver:
        await _push_to(scene, receiver.url(), "end")
        record = await answered_call(scene.reports, scene.binding, at=1_900_000_000.0)
        await receiver.wait_for(1)
    assert [r["id"] for r in receiver.reports] == [record.id]
    taken = await scene.reports.pull(Principal(scene.a.tenant_id), max_reports=10)
    assert [r["report_type"] for r in taken] == ["start", "ring", "pickup"]


# ------------------------------------------------------------------------------- pure parts


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    settings = PushSettings(backoff_base_s=1.0, backoff_max_s=60.0)
    assert [backoff_s(n, settings, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [backoff_s(n, settings, lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_s(40, settings, lambda: 1.0) == 60.0
    assert backoff_s(10_000, settings, lambda: 0.5) == 45.0


def _row(seq: int, kind: ReportType, *, next_at: float = 0.0) -> QueuedReport:
    return QueuedReport(
        seq=seq, id=f"r{seq}", tenant_id="T", pool_key="P", call_id="c", type=kind,
        payload="{}", created_at=0.0, attempts=0, next_attempt_at=next_at, last_error=None,
    )  # fmt: skip


def test_a_request_is_the_leading_due_run_of_one_url() -> None:
    start, end = ReportType.START, ReportType.END
    urls = {"end": "http://e/", "default": "http://d/"}
    rows = [_row(1, start), _row(2, start), _row(3, end), _row(4, start)]
    assert batches_by_url(rows, urls, 10.0, 10) == ("http://d/", rows[:2])
    assert batches_by_url(rows[2:], urls, 10.0, 10) == ("http://e/", rows[2:3])
    assert batches_by_url(rows, urls, 10.0, 1) == ("http://d/", rows[:1])
    waiting = [_row(1, start, next_at=11.0), _row(2, start)]
    assert batches_by_url(waiting, urls, 10.0, 10) is None  # the head waits: nothing overtakes
    assert batches_by_url(rows, {"end": "http://e/"}, 10.0, 10) is None


_KILLED_WRITER = """
import asyncio, os, signal, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests/api"]
from pathlib import Path
from api_support import ZONE
from api.control import ControlPlane
from api.reports import attach_reports
from reports_support import answered_call, routed_call
from routing.index import BindingIndex
from store import Database, get_binding

async def main(db_path, sub_id):
    db = await Database.open(Path(db_path))
    control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE)
    await control.load()
    reports = attach_reports(control)
    binding = await get_binding(db, sub_id)
    await answered_call(reports, binding, at=1_900_000_000.0)  # acknowledged: durable
    reports.call_started(routed_call(binding, at=1_900_000_100.0))  # buffered, not written
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[2], sys.argv[3]))
"""


async def test_acknowledged_reports_survive_kill_9(api: Api, scene: Scene) -> None:
    await scene.reports.close()
    await scene.control.db.close()
    root = Path(__file__).resolve().parents[2]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_WRITER, str(root), str(api.db_path),
        scene.binding.sub_id, cwd=root,
    )  # fmt: skip
    assert await child.wait() == -signal.SIGKILL
    db = await Database.open(api.db_path)
    control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=api.clock)
    await control.load()
    reports = attach_reports(control)
    pusher = ReportPusher(reports, FAST)
    try:
        async with receiving() as receiver:
            await reports.set_push_url(
                Principal(scene.a.tenant_id), scene.a.tenant_id, "default", receiver.url()
            )
            await pusher.start()
            await receiver.wait_for(4)
            await _until_delivered(scene)
    finally:
        await pusher.stop()
        await db.close()
    # The call whose end was acknowledged: all four reports. The start still in the buffer
    # when the process died was never acknowledged to anyone: it is the loss the docs name.
    assert [r["report_type"] for r in receiver.reports] == ["start", "ring", "pickup", "end"]
    assert len({r["call_id"] for r in receiver.reports}) == 1
