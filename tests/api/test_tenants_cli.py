"""``maskline tenant ...`` against a real API server (uvicorn on a loopback port, same loop).

The CLI is synchronous (httpx.Client), so it runs in a worker thread while the server answers
on the test's event loop.
"""

from __future__ import annotations

import json

from api_support import Api
from cli_support import Cli
from tenants_support import basic, tenant_rows


async def test_tenant_create_prints_one_json_object(api: Api, cli: Cli) -> None:
    code, lines = await cli("tenant", "create", "Acme Logistics")
    assert code == 0
    assert len(lines) == 1
    created = lines[0]
    assert set(created) >= {"tenant_id", "access_key_id", "access_key_secret"}
    assert created["name"] == "Acme Logistics"
    # The printed pair authenticates against the server.
    own = await api.client.get(
        f"/v1/tenants/{created['tenant_id']}",
        headers=basic(created["access_key_id"], created["access_key_secret"]),
    )
    assert own.status_code == 200


async def test_tenant_list_show_and_keys(api: Api, cli: Cli) -> None:
    _, [first] = await cli("tenant", "create", "one")
    _, [second] = await cli("tenant", "create", "two")
    code, listed = await cli("tenant", "list")
    assert code == 0
    assert [t["tenant_id"] for t in listed] == [first["tenant_id"], second["tenant_id"]]
    assert all(first["access_key_secret"] not in json.dumps(t) for t in listed)

    code, [key] = await cli("tenant", "key-create", first["tenant_id"])
    assert code == 0
    assert key["tenant_id"] == first["tenant_id"]
    assert api.control.tenants.secret_for(key["access_key_id"]) == key["access_key_secret"]

    code, [disabled] = await cli("tenant", "key-disable", key["access_key_id"])
    assert (code, disabled) == (0, {"access_key_id": key["access_key_id"], "status": "disabled"})
    assert await api.control.tenants.authenticate(
        key["access_key_id"], key["access_key_secret"]
    ) is (None)
    code, [enabled] = await cli("tenant", "key-enable", key["access_key_id"])
    assert (code, enabled["status"]) == (0, "active")

    code, [shown] = await cli("tenant", "show", first["tenant_id"])
    assert code == 0
    assert [k["access_key_id"] for k in shown["keys"]] == [
        first["access_key_id"],
        key["access_key_id"],
    ]
    assert "access_key_secret" not in json.dumps(shown)

    code, [suspended] = await cli("tenant", "suspend", second["tenant_id"])
    assert (code, suspended["status"]) == (0, "suspended")
    code, [resumed] = await cli("tenant", "resume", second["tenant_id"])
    assert (code, resumed["status"]) == (0, "active")


async def test_tenant_errors_are_json_with_exit_1(api: Api, cli: Cli) -> None:
    before = tenant_rows(api.db_path)
    code, [error] = await cli("tenant", "create", "   ")
    assert (code, error["code"]) == (1, "PARAMETER_ILLEGAL")
    code, [error] = await cli("tenant", "show", "T000000000000")
    assert (code, error["code"]) == (1, "TENANT_NOT_EXIST")
    code, [error] = await cli("tenant", "key-create", "no such tenant")
    assert (code, error["code"]) == (1, "TENANT_NOT_EXIST")
    code, [error] = await cli("tenant", "key-disable", "MLAK00000000000000000000")
    assert (code, error["code"]) == (1, "ACCESS_KEY_NOT_EXIST")
    assert tenant_rows(api.db_path) == before


async def test_tenant_usage_error_is_json_with_exit_2(cli: Cli) -> None:
    code, [error] = await cli("tenant", "create")
    assert (code, error["code"]) == (2, "USAGE")
