"""Concurrent binds: the index check, the durable write and the index update are atomic per X.

Everything runs on one event loop, as in the server; the database writer's group commit makes
the binds of one batch wait on the same fsync, which is where interleavings would show.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from api_support import START, Api

from routing.index import Route
from routing.model import PhoneNumber

A = "13800138000"


async def test_fifty_binds_of_one_a_on_one_x_exactly_one_wins(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=1, city="北京")
    x = api.control.pool_numbers(key)[0]  # type: ignore[arg-type]

    async def bind(i: int) -> tuple[int, str]:
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXB", "a": A, "b": f"1390013{i:04d}", "x": x, "expires": api.expires()},
        )
        return response.status_code, response.json().get("code", "")

    results = await asyncio.gather(*(bind(i) for i in range(50)))
    assert Counter(status for status, _ in results) == {201: 1, 409: 49}
    assert {code for status, code in results if status == 409} == {"BIND_CONFLICT"}
    rows = api.snapshot()["bindings"]
    assert len(rows) == 1
    assert len(api.control.index) == 1
    winner_b = rows[0][5]
    route = api.control.index.resolve(PhoneNumber(x), PhoneNumber("+86" + A), now=START + 1)
    assert isinstance(route, Route) and route.callee == winner_b


async def test_fifty_binds_of_one_a_allocated_use_distinct_x(api: Api) -> None:
    """Without X, the same A is spread over the pool: one binding per X, no more."""
    await api.import_inventory()
    key = await api.pool("AXB", count=10, city="北京")

    async def bind(i: int) -> tuple[int, str]:
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXB", "a": A, "b": f"1390013{i:04d}", "expires": api.expires()},
        )
        body = response.json()
        return response.status_code, body.get("secret_no") or body["code"]

    results = await asyncio.gather(*(bind(i) for i in range(50)))
    won = [x for status, x in results if status == 201]
    assert len(won) == 10 and len(set(won)) == 10
    assert {code for status, code in results if status != 201} == {"NO_AVAILABLE_NUMBER"}
    assert len(api.snapshot()["bindings"]) == 10


async def test_concurrent_exclusive_allocation(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXN", count=10, city="北京")

    async def bind(i: int) -> tuple[int, str]:
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXN", "a": f"1380013{i:04d}", "expires": api.expires()},
        )
        body = response.json()
        return response.status_code, body.get("secret_no") or body["code"]

    results = await asyncio.gather(*(bind(i) for i in range(25)))
    won = [x for status, x in results if status == 201]
    assert len(won) == 10 and len(set(won)) == 10
    assert Counter(x for status, x in results if status != 201) == {"NO_AVAILABLE_NUMBER": 15}
    assert len(api.snapshot()["bindings"]) == 10


async def test_binds_on_different_x_share_group_commits(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=10, city="北京")
    db = api.control.db
    batches_before = db.batches_committed

    async def bind(i: int) -> str:
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXB", "a": f"1380013{i:04d}", "b": f"1390013{i:04d}",
                  "expires": api.expires()},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        secret_no: str = response.json()["secret_no"]
        return secret_no

    xs = await asyncio.gather(*(bind(i) for i in range(100)))
    load = Counter(xs)
    assert len(load) == 10 and max(load.values()) - min(load.values()) <= 1
    # Binds waited on shared transactions, not one fsync each.
    assert db.batches_committed - batches_before < 100
