"""The reports' REST routes and CLI: push URLs per tenant and type, the queue view, pull/ack."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import Api
from cli_support import Cli
from reports_support import Scene, answered_call, make_scene, outbox_rows
from tenants_support import basic


@pytest.fixture
async def scene(api: Api) -> Scene:
    return await make_scene(api)


def _as_a(scene: Scene) -> dict[str, str]:
    return basic(scene.a.access_key_id, scene.a.access_key_secret)


def _as_b(scene: Scene) -> dict[str, str]:
    return basic(scene.b.access_key_id, scene.b.access_key_secret)


async def test_a_tenant_sets_lists_and_removes_its_push_urls(scene: Scene) -> None:
    client, tenant = scene.api.client, scene.a.tenant_id
    base = f"/v1/tenants/{tenant}/report-urls"
    put = await client.put(f"{base}/end", json={"url": "https://a.example/end?token=s3"},
                           headers=_as_a(scene))  # fmt: skip
    assert put.status_code == 200, put.text
    assert put.json()["url"] == "https://a.example/end?token=s3"
    assert put.json()["report_type"] == "end"
    replaced = await client.put(f"{base}/end", json={"url": "http://a.example/v2"},
                                headers=_as_a(scene))  # fmt: skip
    assert replaced.json()["created"] == put.json()["created"]
    await client.put(f"{base}/default", json={"url": "http://a.example/all"})  # the operator
    listed = await client.get(base, headers=_as_a(scene))
    assert [(u["report_type"], u["url"]) for u in listed.json()["urls"]] == [
        ("default", "http://a.example/all"), ("end", "http://a.example/v2"),
    ]  # fmt: skip
    removed = await client.delete(f"{base}/end", headers=_as_a(scene))
    assert removed.json() == {"ok": True}
    again = await client.delete(f"{base}/end", headers=_as_a(scene))
    assert (again.status_code, again.json()["code"]) == (404, "REPORT_URL_NOT_EXIST")
    assert [u["report_type"] for u in (await client.get(base)).json()["urls"]] == ["default"]


@pytest.mark.parametrize(
    ("report_type", "url"),
    [
        ("finish", "https://a.example/"),  # no such type
        ("end", "ftp://a.example/"),
        ("end", "https:///no-host"),
        ("end", "a.example/relative"),
        ("end", "https://a.example/with space"),
        ("end", "https://a.example/" + "x" * 2048),
        ("end", ""),
    ],
)
async def test_bad_push_urls_are_refused_and_nothing_changes(
    scene: Scene, report_type: str, url: str
) -> None:
    before = scene.api.snapshot()
    answer = await scene.api.client.put(
        f"/v1/tenants/{scene.a.tenant_id}/report-urls/{report_type}", json={"url": url}
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "PARAMETER_ILLEGAL"), answer.text
    listed = await scene.api.client.get(f"/v1/tenants/{scene.a.tenant_id}/report-urls")
    assert listed.json()["urls"] == []
    assert scene.api.snapshot() == before


async def test_the_queue_view_and_pull_ack_over_rest(scene: Scene) -> None:
    client, tenant = scene.api.client, scene.a.tenant_id
    record = await answered_call(scene.reports, scene.binding, at=scene.api.clock.now)
    queue = (await client.get(f"/v1/tenants/{tenant}/report-queue", headers=_as_a(scene))).json()
    assert queue["pending"] == 4
    assert queue["pending_by_type"] == {"end": 1, "pickup": 1, "ring": 1, "start": 1}
    assert (queue["failing"], queue["last_error"]) == (0, None)
    pulled = await client.post("/v1/reports/pull", json={"max": 3, "visibility_timeout_s": 10},
                               headers=_as_a(scene))  # fmt: skip
    assert pulled.status_code == 200, pulled.text
    reports: list[dict[str, Any]] = pulled.json()["reports"]
    assert [r["report_type"] for r in reports] == ["start", "ring", "pickup"]
    assert {r["call_id"] for r in reports} == {record.call_id}
    acked = await client.post("/v1/reports/ack", json={"ids": [r["id"] for r in reports]},
                              headers=_as_a(scene))  # fmt: skip
    assert acked.json() == {"acked": [r["id"] for r in reports]}
    rest = await client.post("/v1/reports/pull", json={}, headers=_as_a(scene))
    assert [r["id"] for r in rest.json()["reports"]] == [record.id]
    queue = (await client.get(f"/v1/tenants/{tenant}/report-queue")).json()
    assert queue["pending"] == 1
    # B sees nothing of it; naming A is answered as an unknown tenant.
    assert (await client.post("/v1/reports/pull", json={}, headers=_as_b(scene))).json() == {
        "reports": []
    }
    foreign = await client.post("/v1/reports/pull", json={"tenant_id": tenant},
                                headers=_as_b(scene))  # fmt: skip
    assert (foreign.status_code, foreign.json()["code"]) == (404, "TENANT_NOT_EXIST")
    for body in ({"max": 0}, {"max": 1001}, {"visibility_timeout_s": 0}, {"other": 1}):
        refused = await client.post("/v1/reports/pull", json=body, headers=_as_a(scene))
        assert (refused.status_code, refused.json()["code"]) == (400, "PARAMETER_ILLEGAL")


async def test_the_reports_cli(api: Api, scene: Scene, cli: Cli) -> None:
    tenant = scene.a.tenant_id
    code, [stored] = await cli(
        "reports", "url-set", "--tenant", tenant, "--type", "end", "https://a.example/end"
    )
    assert code == 0 and stored["url"] == "https://a.example/end"
    code, listed = await cli("reports", "url-list", "--tenant", tenant)
    assert [u["report_type"] for u in listed] == ["end"]
    code, [error] = await cli(
        "reports", "url-set", "--tenant", "T000000000000", "--type", "end", "https://x.example/"
    )
    assert (code, error["code"]) == (1, "TENANT_NOT_EXIST")
    await answered_call(scene.reports, scene.binding, at=api.clock.now)
    code, [queue] = await cli("reports", "queue", "--tenant", tenant)
    assert queue["pending"] == 4
    code, pulled = await cli("reports", "pull", "--tenant", tenant, "--max", "10")
    assert [r["report_type"] for r in pulled] == ["start", "ring", "pickup"]  # end is pushed
    code, [acked] = await cli("reports", "ack", "--tenant", tenant, *(r["id"] for r in pulled))
    assert acked["acked"] == [r["id"] for r in pulled]
    code, [removed] = await cli("reports", "url-remove", "--tenant", tenant, "--type", "end")
    assert removed == {"ok": True}
    delivered = [r.kind for r in outbox_rows(api.db_path) if r.delivered_at is not None]
    assert delivered == ["start", "ring", "pickup"]
