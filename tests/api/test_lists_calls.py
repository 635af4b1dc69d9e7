"""Groups and blacklists through their REST routes and the ``maskline groups`` / ``maskline
blacklist`` commands (run against the same ASGI app), tenant isolation over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from api_support import START, Api, local
from lists_support import MEMBER, STRANGER, A, B, bind, e164, is_intercepted, resolve, snapshot

from api.app import create_app
from engine import cli_lists
from engine.cli import _CliError, main
from routing.model import BindingType, InterceptCause

MISSING = "FC0000000000000000"


async def _pool(api: Api, type_: str, count: int = 1) -> str:
    await api.import_inventory()
    return await api.pool(type_, count=count, city="北京")


# ------------------------------------------------------------------------------ REST


async def test_group_routes(api: Api) -> None:
    key = await _pool(api, "AXG")
    client = api.client
    created = await client.post(
        f"/v1/pools/{key}/groups", json={"name": "g", "numbers": [MEMBER], "remark": "r"}
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["group_id"]
    shown = await client.get(f"/v1/pools/{key}/groups/{group_id}")
    assert shown.status_code == 200
    assert shown.json() == {
        "group_id": group_id,
        "pool_key": key,
        "name": "g",
        "remark": "r",
        "numbers": [e164(MEMBER)],
        "created": local(START),
    }
    changed = await client.post(
        f"/v1/pools/{key}/groups/{group_id}/numbers",
        json={"operation": "add", "numbers": [STRANGER]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["numbers"] == [e164(STRANGER), e164(MEMBER)]
    listed = await client.get(f"/v1/pools/{key}/groups")
    assert [g["numbers"] for g in listed.json()["groups"]] == [[e164(STRANGER), e164(MEMBER)]]

    binding = await bind(api.control, BindingType.AXG, key, group_id=group_id)
    in_use = await client.delete(f"/v1/pools/{key}/groups/{group_id}")
    assert (in_use.status_code, in_use.json()["code"]) == (409, "GROUP_IN_USE")
    unbound = await client.delete(f"/v1/pools/{key}/bindings/{binding.sub_id}")
    assert unbound.status_code == 200, unbound.text
    deleted = await client.delete(f"/v1/pools/{key}/groups/{group_id}")
    assert deleted.json() == {"ok": True}
    gone = await client.get(f"/v1/pools/{key}/groups/{group_id}")
    assert (gone.status_code, gone.json()["code"]) == (404, "GROUP_NOT_EXIST")


async def test_blacklist_routes(api: Api) -> None:
    key = await _pool(api, "AXN")
    binding = await bind(api.control, BindingType.AXN, key)
    client = api.client
    added = await client.post(f"/v1/pools/{key}/blacklist", json={"number": STRANGER})
    assert added.status_code == 200, added.text
    assert added.json() == {"pool_key": key, "number": e164(STRANGER), "created": local(START)}
    assert is_intercepted(resolve(api, binding, STRANGER), InterceptCause.BLACKLISTED)
    listed = await client.get(f"/v1/pools/{key}/blacklist")
    assert listed.json() == {"numbers": [added.json()]}
    # The number in the path in any common form, E.164 "+" percent-encoded.
    removed = await client.delete(f"/v1/pools/{key}/blacklist/%2B86{STRANGER}")
    assert removed.json() == {"ok": True}
    again = await client.delete(f"/v1/pools/{key}/blacklist/{STRANGER}")
    assert (again.status_code, again.json()["code"]) == (404, "BLACKLIST_NOT_EXIST")
    axb = await api.pool("AXB")
    wrong = await client.get(f"/v1/pools/{axb}/blacklist")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "POOL_TYPE_MISMATCH")


async def test_pair_routes(api: Api) -> None:
    key = await _pool(api, "AXB")
    binding = await bind(api.control, BindingType.AXB, key, b=B)
    client = api.client
    added = await client.post(
        f"/v1/pools/{key}/blacklist-pairs",
        json={"first": A, "second": B, "direction": "FIRST_TO_SECOND"},
    )
    assert added.status_code == 200, added.text
    pair = {
        "pool_key": key,
        "first": e164(A),
        "second": e164(B),
        "direction": "FIRST_TO_SECOND",
        "created": local(START),
    }
    assert added.json() == pair
    assert is_intercepted(resolve(api, binding, A), InterceptCause.BLACKLISTED)
    both = await client.post(f"/v1/pools/{key}/blacklist-pairs", json={"first": B, "second": A})
    assert both.json()["direction"] == "BOTH"
    listed = await client.get(f"/v1/pools/{key}/blacklist-pairs")
    assert listed.json() == {"pairs": [{**pair, "direction": "BOTH"}]}
    lifted = await client.delete(
        f"/v1/pools/{key}/blacklist-pairs",
        params={"first": A, "second": B, "direction": "SECOND_TO_FIRST"},
    )
    assert lifted.json() == {"ok": True, "remaining": pair}
    gone = await client.delete(f"/v1/pools/{key}/blacklist-pairs", params={"first": A, "second": B})
    assert gone.json() == {"ok": True, "remaining": None}
    missing = await client.delete(
        f"/v1/pools/{key}/blacklist-pairs", params={"first": A, "second": B}
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "BLACKLIST_NOT_EXIST")


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("POST", "groups/{g}/numbers", {"operation": "add", "numbers": [A], "x": 1}, None),
        ("POST", "groups/{g}/numbers", {"operation": "addNumbers", "numbers": [A]}, None),
        ("POST", "groups/{g}/numbers", {"operation": "add", "numbers": [1]}, None),
        ("POST", "groups/{g}/numbers", {"operation": "add", "numbers": ["1" * 11]}, None),
        ("POST", "groups/{g}/numbers", {"operation": "add", "numbers": [A] * 201}, None),
        ("POST", "groups/{g}/numbers", {"operation": "add", "numbers": []}, None),
        ("POST", "groups/{g}/numbers", {"operation": "add"}, None),
        ("POST", "blacklist", {"number": A, "remark": "x"}, None),
        ("POST", "blacklist", {"number": "12"}, "NUMBER_ILLEGAL"),
        ("POST", "blacklist-pairs", {"first": A, "second": B, "direction": "PHONEA_REJECT"}, None),
        ("POST", "blacklist-pairs", {"first": A, "second": A}, None),
        ("POST", "blacklist-pairs", {"first": A}, None),
        ("DELETE", "blacklist-pairs?first=" + A, None, None),
        ("DELETE", f"blacklist-pairs?first={A}&second={B}&direction=UP", None, None),
    ],
)
async def test_refused_requests_write_nothing(
    api: Api, method: str, path: str, body: dict[str, Any] | None, code: str | None
) -> None:
    key = await _pool(api, "AXN")
    axg = await api.pool("AXG")
    group_id = await api.control.lists.create_group(axg, "g", [MEMBER])
    pool = axg if path.startswith("groups") else key
    before = snapshot(api.db_path)
    response = await api.client.request(
        method, f"/v1/pools/{pool}/" + path.format(g=group_id), json=body
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] in ({code} if code else {"PARAMETER_ILLEGAL", "NUMBER_ILLEGAL"})
    assert snapshot(api.db_path) == before


async def test_tenant_b_gets_not_found_on_every_route(api: Api) -> None:
    control = api.control
    await api.import_inventory()
    tenant_a = await control.tenants.create_tenant("A")
    tenant_b = await control.tenants.create_tenant("B")
    axg = await control.create_pool(BindingType.AXG, "a's axg", tenant_id=tenant_a.tenant_id)
    axn = await control.create_pool(BindingType.AXN, "a's axn", tenant_id=tenant_a.tenant_id)
    app = create_app(control, operator_token="t")

    def client_of(key_id: str, secret: str) -> httpx.AsyncClient:
        basic = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://maskline.test",
            headers={"authorization": f"Basic {basic}"},
        )

    # POST /groups is api.app's route (the lead moves it onto Lists.create_group).
    group_id = await control.lists.create_group(axg, "g", [MEMBER], tenant=tenant_a.tenant_id)
    async with client_of(tenant_a.access_key_id, tenant_a.access_key_secret) as as_a:
        for path, entry in (
            (f"/v1/pools/{axn}/blacklist", {"number": STRANGER}),
            (f"/v1/pools/{axn}/blacklist-pairs", {"first": A, "second": B}),
        ):
            response = await as_a.post(path, json=entry)
            assert response.status_code == 200, response.text
        own = await as_a.get(f"/v1/pools/{axg}/groups/{group_id}")
        assert own.status_code == 200, own.text

    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "{g}/groups", None),
        ("GET", "{g}/groups/" + group_id, None),
        ("DELETE", "{g}/groups/" + group_id, None),
        ("POST", "{g}/groups/" + group_id + "/numbers", {"operation": "add", "numbers": [A]}),
        ("POST", "{g}/groups/" + group_id + "/numbers", {"operation": "overwrite", "numbers": []}),
        ("GET", "{n}/blacklist", None),
        ("POST", "{n}/blacklist", {"number": MEMBER}),
        ("DELETE", "{n}/blacklist/" + STRANGER, None),
        ("GET", "{n}/blacklist-pairs", None),
        ("POST", "{n}/blacklist-pairs", {"first": A, "second": MEMBER}),
        ("DELETE", "{n}/blacklist-pairs?first=" + A + "&second=" + B, None),
    ]
    before = snapshot(api.db_path)
    async with client_of(tenant_b.access_key_id, tenant_b.access_key_secret) as as_b:
        for method, template, body in requests:
            foreign = await as_b.request(
                method, "/v1/pools/" + template.format(g=axg, n=axn), json=body
            )
            missing = await as_b.request(
                method, "/v1/pools/" + template.format(g=MISSING, n=MISSING), json=body
            )
            assert foreign.status_code == missing.status_code == 404, (template, foreign.text)
            assert foreign.json()["code"] == missing.json()["code"] == "POOL_NOT_EXIST"
    assert snapshot(api.db_path) == before


async def test_openapi_lists_the_routes(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/pools/{pool_key}/groups/{group_id}"]) == {"get", "delete"}
    assert set(paths["/v1/pools/{pool_key}/groups/{group_id}/numbers"]) == {"post"}
    assert set(paths["/v1/pools/{pool_key}/blacklist"]) == {"get", "post"}
    assert set(paths["/v1/pools/{pool_key}/blacklist/{number}"]) == {"delete"}
    assert set(paths["/v1/pools/{pool_key}/blacklist-pairs"]) == {"get", "post", "delete"}


# ------------------------------------------------------------------------------ CLI


class _Bridge:
    """Stands in for ``engine.cli._api``: sends the CLI's requests to the test's ASGI client.

    The CLI is synchronous, so it runs in a worker thread and hands each request to the event
    loop; errors are raised as ``_CliError`` exactly as the real helper does.
    """

    def __init__(self, api: Api, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.loop = loop
        self.seen: list[tuple[str, str]] = []

    def __call__(
        self,
        _args: argparse.Namespace,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.seen.append((method, path))
        request = self.api.client.request(method, path, json=json_body, params=params)
        response = asyncio.run_coroutine_threadsafe(request, self.loop).result(timeout=30)
        answer: dict[str, Any] = response.json()
        if response.is_error:
            raise _CliError(str(answer["code"]), str(answer["message"]))
        return answer


async def _cli(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, list[dict[str, Any]]]:
    monkeypatch.setattr(cli_lists, "_api", _Bridge(api, asyncio.get_running_loop()))
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    # The server's own log lines share stdout here; the CLI's are the JSON objects.
    out = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    return status, lines


async def test_cli_groups(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = await _pool(api, "AXG")
    group_id = await api.control.lists.create_group(key, "g", [MEMBER])
    status, lines = await _cli(
        api, monkeypatch, capsys, "groups", "add", key, group_id, f"{A},{B}", STRANGER
    )
    assert status == 0
    assert lines[0]["numbers"] == [STRANGER, MEMBER, A, B]  # national digits, sorted by E.164
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "remove", key, group_id, A)
    assert lines[0]["numbers"] == [STRANGER, MEMBER, B]
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "overwrite", key, group_id)
    assert (status, lines[0]["numbers"]) == (0, [])
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "show", key, group_id)
    assert (status, lines[0]["group_id"], lines[0]["created"]) == (0, group_id, local(START))
    api.clock.now += 1  # listed oldest first
    other = await api.control.lists.create_group(key, "h", [])
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "list", key)
    assert [line["group_id"] for line in lines] == [group_id, other]
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "delete", key, other)
    assert (status, lines) == (0, [{"ok": True}])
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "delete", key, other)
    assert status == 1 and lines[0]["code"] == "GROUP_NOT_EXIST"
    status, lines = await _cli(api, monkeypatch, capsys, "groups", "add", key, group_id)
    assert status == 2 and lines[0]["code"] == "USAGE"


async def test_cli_blacklist(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = await _pool(api, "AXN")
    run = _cli
    status, lines = await run(
        api, monkeypatch, capsys, "blacklist", "add", key, "+86 136 0013 6000"
    )
    assert (status, lines[0]["number"]) == (0, STRANGER)
    status, lines = await run(api, monkeypatch, capsys, "blacklist", "list", key)
    assert [line["number"] for line in lines] == [STRANGER]
    status, lines = await run(
        api, monkeypatch, capsys, "blacklist", "remove", key, f"+86{STRANGER}"
    )
    assert (status, lines) == (0, [{"ok": True}])
    status, lines = await run(api, monkeypatch, capsys, "blacklist", "remove", key, STRANGER)
    assert status == 1 and lines[0]["code"] == "BLACKLIST_NOT_EXIST"

    status, lines = await run(
        api,
        monkeypatch,
        capsys,
        "blacklist",
        "pair-add",
        key,
        A,
        B,
        "--direction",
        "second_to_first",
    )
    assert status == 0
    assert (lines[0]["first"], lines[0]["second"], lines[0]["direction"]) == (
        A,
        B,
        "SECOND_TO_FIRST",
    )
    status, lines = await run(api, monkeypatch, capsys, "blacklist", "pairs", key)
    assert [(line["first"], line["direction"]) for line in lines] == [(A, "SECOND_TO_FIRST")]
    status, lines = await run(api, monkeypatch, capsys, "blacklist", "pair-remove", key, B, A)
    assert (status, lines) == (0, [{"ok": True, "remaining": None}])
    status, lines = await run(
        api, monkeypatch, capsys, "blacklist", "pair-add", key, A, B, "--direction", "sideways"
    )
    assert status == 2 and lines[0]["code"] == "USAGE"
    assert snapshot(api.db_path)["blacklist_pairs"] == []
