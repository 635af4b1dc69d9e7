"""``maskline tariff|package|discount ...`` against a real API server (uvicorn on a loopback
port, same loop); the CLI runs in a worker thread."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_support import Api, snapshot_tables
from billing_support import ledger
from cli_support import Cli
from tenants_support import create_tenant

pytestmark = pytest.mark.asyncio


async def funded_tenant(api: Api) -> str:
    tenant: str = (await create_tenant(api, "Acme"))["tenant_id"]
    topped = await api.client.post(f"/v1/tenants/{tenant}/topup", json={"amount": "50"})
    assert topped.status_code == 200
    return tenant


async def test_tariff_show_and_set(api: Api, cli: Cli) -> None:
    tenant = await funded_tenant(api)
    code, [shown] = await cli("tariff", "show", "--tenant", tenant)
    assert code == 0
    assert shown["prices"]["call_per_minute"] == "0.11"
    assert shown["overrides"] == {}
    code, [changed] = await cli(
        "tariff", "set", "--tenant", tenant, "--call", "0.08", "--rent-95", "4.5"
    )
    assert code == 0
    assert changed["overrides"] == {"rent_95": "4.5", "call_per_minute": "0.08"}
    code, [reset] = await cli("tariff", "set", "--tenant", tenant, "--rent-95", "default")
    assert code == 0
    assert reset["overrides"] == {"call_per_minute": "0.08"}
    assert reset["prices"]["rent_95"] == "5.00"
    stored = await api.client.get(f"/v1/tenants/{tenant}/tariff")
    assert stored.json() == reset


async def test_package_add_and_list(api: Api, cli: Cli) -> None:
    tenant = await funded_tenant(api)
    code, [sold] = await cli(
        "package",
        "add",
        "--tenant",
        tenant,
        "--name",
        "500 分钟",
        "--price",
        "45",
        "--minutes",
        "500",
        "--valid-to",
        "2030-06-30",
    )
    assert code == 0
    assert (sold["name"], sold["price"], sold["remaining_minutes"], sold["state"]) == (
        "500 分钟",
        "45.00",
        500,
        "active",
    )
    code, listed = await cli("package", "list", "--tenant", tenant)
    assert code == 0
    assert [p["package_id"] for p in listed] == [sold["package_id"]]
    assert [ln.amount for ln in ledger(api.db_path, item="package")] == [Decimal("45.00")]


async def test_discount_add_and_list(api: Api, cli: Cli) -> None:
    tenant = await funded_tenant(api)
    code, [granted] = await cli(
        "discount", "add", "--tenant", tenant, "--month", "2030-01", "--amount", "2.5"
    )
    assert code == 0
    assert (granted["month"], granted["amount"], granted["pool_key"]) == ("2030-01", "-2.50", None)
    code, listed = await cli("discount", "list", "--tenant", tenant, "--month", "2030-01")
    assert code == 0
    assert [d["ref"] for d in listed] == [granted["ref"]]
    code, none = await cli("discount", "list", "--tenant", tenant, "--month", "2030-02")
    assert (code, none) == (0, [])


async def test_errors_are_json_and_change_nothing(api: Api, cli: Cli) -> None:
    tenant = await funded_tenant(api)
    tables = ("ledger", "billing_tariffs", "billing_packages")
    before = snapshot_tables(api.db_path, tables)
    code, [error] = await cli("tariff", "set", "--tenant", tenant, "--call", "-1")
    assert (code, error["code"]) == (1, "AMOUNT_ILLEGAL")
    code, [error] = await cli("tariff", "set", "--tenant", tenant)
    assert (code, error["code"]) == (1, "PARAMETER_ILLEGAL")
    code, [error] = await cli("tariff", "show", "--tenant", "T000000000000")
    assert (code, error["code"]) == (1, "TENANT_NOT_EXIST")
    code, [error] = await cli(
        "package",
        "add",
        "--tenant",
        tenant,
        "--name",
        "dear",
        "--price",
        "50.01",
        "--minutes",
        "10",
        "--valid-to",
        "2030-06-30",
    )
    assert (code, error["code"]) == (1, "NOT_ENOUGH_BALANCE")
    code, [error] = await cli(
        "discount", "add", "--tenant", tenant, "--month", "2030-1x", "--amount", "1"
    )
    assert (code, error["code"]) == (1, "PARAMETER_ILLEGAL")
    assert snapshot_tables(api.db_path, tables) == before
    # Usage errors: exit 2 with a USAGE object.
    code, [error] = await cli("discount", "add", "--tenant", tenant, "--month", "2030-01")
    assert (code, error["code"]) == (2, "USAGE")
    code, [error] = await cli(
        "package", "add", "--tenant", tenant, "--name", "n", "--price", "1", "--minutes", "0",
        "--valid-to", "2030-06-30",
    )  # fmt: skip
    assert (code, error["code"]) == (2, "USAGE")
