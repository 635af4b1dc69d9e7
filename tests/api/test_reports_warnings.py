"""Pool warnings (SPEC §3): thresholds on free numbers and utilisation, one report per crossing
(not one per bind), evaluated after the control plane's binds, unbinds and number changes."""

from __future__ import annotations

import pytest
from api_support import ZONE, Api
from reports_support import Scene, make_scene, outbox_rows

from api.control import ControlPlane
from api.reports import PoolUsage, attach_reports, warning_changes
from routing.index import BindingIndex
from routing.model import Binding, BindingType, PoolKey
from store import Database
from store.outbox import PoolWarning
from store.pools import PoolSettings

FREE, UTIL = PoolWarning.FREE_NUMBERS, PoolWarning.UTILISATION


@pytest.mark.parametrize(
    ("numbers", "bound", "warn_free", "warn_pct", "active", "expected"),
    [
        (4, 2, 2, None, {}, {}),  # 2 free is not below 2
        (4, 3, 2, None, {}, {FREE: True}),  # 1 free: crossed
        (4, 4, 2, None, {FREE: True}, {}),  # still below: quiet
        (4, 2, 2, None, {FREE: True}, {FREE: False}),  # back up: cleared
        (4, 2, None, None, {FREE: True, UTIL: True}, {FREE: False, UTIL: False}),  # removed
        (4, 3, None, 75.0, {}, {UTIL: True}),  # reaches 75 %
        (4, 2, None, 75.0, {}, {}),
        (3, 2, None, 66.7, {}, {}),  # 66.66... % is below 66.7: no rounding up
        (0, 0, None, 10.0, {}, {}),  # an empty pool has no utilisation
        (0, 0, 1, None, {}, {FREE: True}),  # ... but no free number
        (4, 4, 1, 100.0, {}, {FREE: True, UTIL: True}),
    ],
)
def test_warning_changes(  # noqa: PLR0917 - one parameter per table column
    numbers: int,
    bound: int,
    warn_free: int | None,
    warn_pct: float | None,
    active: dict[PoolWarning, bool],
    expected: dict[PoolWarning, bool],
) -> None:
    changes = warning_changes(
        usage=PoolUsage(numbers=numbers, bound=bound),
        warn_free_numbers=warn_free,
        warn_utilisation_pct=warn_pct,
        active=active,
    )
    assert changes == expected


@pytest.fixture
async def scene(api: Api) -> Scene:
    return await make_scene(api)


async def _axn_pool(scene: Scene, count: int, settings: PoolSettings) -> PoolKey:
    control = scene.control
    pool = await control.create_pool(BindingType.AXN, "warned", scene.a.tenant_id)
    await control.add_numbers(pool, count, city="北京")
    await control.configure_pool(pool, settings)
    return pool


async def _bind(scene: Scene, pool: PoolKey, n: int) -> Binding:
    return await scene.control.bind(
        BindingType.AXN,
        pool,
        f"1370013{n:04d}",
        expires=scene.api.expires(86_400),
        tenant=scene.a.tenant_id,
    )


def _warnings(scene: Scene, pool: PoolKey) -> list[dict[str, object]]:
    return [
        r.payload
        for r in outbox_rows(scene.api.db_path)
        if r.kind == "pool_warning" and r.pool_key == pool
    ]


async def test_one_warning_per_crossing_not_per_bind(scene: Scene) -> None:
    pool = await _axn_pool(scene, 4, PoolSettings(warn_free_numbers=2, warn_utilisation_pct=75))
    warnings = scene.reports.warnings
    first, second = await _bind(scene, pool, 1), await _bind(scene, pool, 2)
    await warnings.settle()
    assert _warnings(scene, pool) == []
    third = await _bind(scene, pool, 3)  # 1 free (< 2), 75 % (>= 75): both cross
    fourth = await _bind(scene, pool, 4)
    await warnings.settle()
    crossed = _warnings(scene, pool)
    assert sorted(str(w["warning"]) for w in crossed) == ["free_numbers", "utilisation"]
    by_kind = {w["warning"]: w for w in crossed}
    assert by_kind["free_numbers"]["threshold"] == 2
    assert by_kind["utilisation"]["threshold"] == 75
    assert {r.tenant_id for r in outbox_rows(scene.api.db_path) if r.pool_key == pool} == {
        scene.a.tenant_id
    }
    for binding in (fourth, third):  # back to 2 free, 50 %: cleared, no report
        await scene.control.unbind(pool, binding.sub_id, tenant=scene.a.tenant_id)
    await warnings.settle()
    assert len(_warnings(scene, pool)) == 2
    await _bind(scene, pool, 5)  # crossing again: a second warning of each
    await warnings.settle()
    again = _warnings(scene, pool)[2:]
    assert sorted(str(w["warning"]) for w in again) == ["free_numbers", "utilisation"]
    assert {w["free_numbers"] for w in again} == {1}
    assert {w["utilisation_pct"] for w in again} == {75.0}
    assert len({str(w["id"]) for w in _warnings(scene, pool)}) == 4
    assert first.sub_id != second.sub_id


async def test_a_burst_of_binds_across_the_threshold_writes_one_warning(scene: Scene) -> None:
    pool = await _axn_pool(scene, 6, PoolSettings(warn_free_numbers=4))
    for n in range(6):  # 5 free, 4, 3 (crossed), 2, 1, 0
        await _bind(scene, pool, n)
    await scene.reports.warnings.settle()
    assert [w["warning"] for w in _warnings(scene, pool)] == ["free_numbers"]


async def test_changing_a_threshold_and_releasing_numbers_are_evaluated(scene: Scene) -> None:
    pool = await _axn_pool(scene, 3, PoolSettings())
    await _bind(scene, pool, 1)
    await scene.control.configure_pool(pool, PoolSettings(warn_utilisation_pct=30))
    await scene.reports.warnings.settle()
    assert [w["warning"] for w in _warnings(scene, pool)] == ["utilisation"]
    # Numbers leaving the pool (here: locked) lower the free count.
    await scene.control.configure_pool(pool, PoolSettings(warn_free_numbers=1))
    free = [x for x in scene.control.pool_numbers(pool) if scene.control.index.x_type(x) is None]
    for x in free:
        await scene.control.inventory.lock(pool, x, tenant=scene.a.tenant_id)
    await scene.reports.warnings.settle()
    assert [w["warning"] for w in _warnings(scene, pool)] == ["utilisation", "free_numbers"]


async def test_an_active_warning_stays_quiet_after_a_restart(api: Api, scene: Scene) -> None:
    pool = await _axn_pool(scene, 2, PoolSettings(warn_free_numbers=2))
    await scene.reports.warnings.settle()
    assert _warnings(scene, pool) == []  # 2 free is not below 2
    await _bind(scene, pool, 1)
    await scene.reports.warnings.settle()
    assert len(_warnings(scene, pool)) == 1
    await scene.reports.close()
    await scene.control.db.close()
    db = await Database.open(api.db_path)
    control = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=api.clock)
    try:
        await control.load()
        reports = attach_reports(control, clock=scene.clock)
        assert await reports.warnings.check() == 0  # every pool with a threshold: still active
    finally:
        await db.close()
    assert len(_warnings(scene, pool)) == 1
