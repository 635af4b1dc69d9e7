"""REST routes of billing (api.routes_billing): tariffs, packages, discounts — as the operator,
as the tenant itself, as another tenant; bad input → 4xx ``{"code", "message"}``, nothing
written."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from api_support import Api, snapshot_tables
from billing_support import at, call, ledger, store_call
from tenants_support import as_tenant, create_tenant

from billing.ledger_run import rate_call_record

pytestmark = pytest.mark.asyncio

BILLING_TABLES = ("ledger", "billing_tariffs", "billing_packages", "billing_state")


async def tenant_with_money(api: Api, amount: str = "100.00") -> dict[str, Any]:
    created = await create_tenant(api, "Acme")
    topped = await api.client.post(
        f"/v1/tenants/{created['tenant_id']}/topup", json={"amount": amount}
    )
    assert topped.status_code == 200, topped.text
    return created


def unchanged(api: Api) -> dict[str, list[tuple[object, ...]]]:
    return snapshot_tables(api.db_path, BILLING_TABLES)


# ------------------------------------------------------------------------------- tariffs


async def test_tariff_defaults_set_and_reset(api: Api) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    shown = await api.client.get(f"/v1/tenants/{tenant}/tariff")
    assert shown.status_code == 200
    assert shown.json() == {
        "tenant_id": tenant,
        "prices": {
            "rent_virtual": "5.00",
            "rent_carrier": "15.00",
            "rent_95": "5.00",
            "call_per_minute": "0.11",
            "recording_per_minute": "0.01",
            "sms_intercept_per_segment": "0.025",
            "sms_smart_per_segment": "0.1",
        },
        "overrides": {},
    }
    changed = await api.client.patch(
        f"/v1/tenants/{tenant}/tariff", json={"call_per_minute": "0.09", "rent_carrier": "12"}
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["overrides"] == {"rent_carrier": "12", "call_per_minute": "0.09"}
    assert body["prices"]["call_per_minute"] == "0.09"
    assert body["prices"]["rent_virtual"] == "5.00"
    # A second change keeps the first one's other price; null returns a price to the default.
    again = await api.client.patch(
        f"/v1/tenants/{tenant}/tariff", json={"rent_carrier": None, "recording_per_minute": "0.02"}
    )
    assert again.json()["overrides"] == {"call_per_minute": "0.09", "recording_per_minute": "0.02"}
    assert again.json()["prices"]["rent_carrier"] == "15.00"
    assert (await api.client.get(f"/v1/tenants/{tenant}/tariff")).json() == again.json()


async def test_the_new_tariff_rates_the_next_call(api: Api) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    await api.import_inventory()
    pool = (
        await api.client.post("/v1/pools", json={"type": "AXB", "name": "p", "tenant_id": tenant})
    ).json()["pool_key"]
    [x] = (
        await api.client.post(f"/v1/pools/{pool}/purchase", json={"count": 1, "city": "北京"})
    ).json()["numbers"]
    await api.client.patch(f"/v1/tenants/{tenant}/tariff", json={"call_per_minute": "0.2"})
    start = at(2030, 1, 2, 10)
    record = await store_call(
        api.control.db, call("r1", pool_key=pool, x=x, start=start, release=start + 90)
    )
    rated = await rate_call_record(api.control.db, record, zone=api.control.zone, now=start + 99)
    assert rated.amount == Decimal("0.4")
    assert [ln.unit_price for ln in ledger(api.db_path, item="call")] == [Decimal("0.2")]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"call_per_minute": "-0.01"}, "AMOUNT_ILLEGAL"),
        ({"call_per_minute": "0.0001"}, "AMOUNT_ILLEGAL"),
        ({"call_per_minute": "abc"}, "AMOUNT_ILLEGAL"),
        ({"call_per_minute": "NaN"}, "AMOUNT_ILLEGAL"),
        ({"call_per_minute": 0.11}, "PARAMETER_ILLEGAL"),  # money is a string, never a float
        ({"call": "0.1"}, "PARAMETER_ILLEGAL"),
        ({}, "PARAMETER_ILLEGAL"),
        ({"rent_95": "1", "rent_virtual": "1e99"}, "AMOUNT_ILLEGAL"),  # nothing of it applied
    ],
)
async def test_bad_tariff_is_refused_and_changes_nothing(
    api: Api, body: dict[str, Any], code: str
) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    before = unchanged(api)
    answer = await api.client.patch(f"/v1/tenants/{tenant}/tariff", json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert answer.json()["message"]
    assert unchanged(api) == before


async def test_unknown_tenant_is_404(api: Api) -> None:
    for method, tail, body in (
        ("GET", "tariff", None),
        ("PATCH", "tariff", {"call_per_minute": "0.1"}),
        ("GET", "packages", None),
        ("POST", "packages", {"name": "p", "price": "1", "minutes": 1, "valid_to": "2030-12-31"}),
        ("GET", "discounts", None),
        ("POST", "discounts", {"month": "2030-01", "amount": "1"}),
    ):
        answer = await api.client.request(method, f"/v1/tenants/T000000000000/{tail}", json=body)
        assert (answer.status_code, answer.json()["code"]) == (404, "TENANT_NOT_EXIST"), tail


# ------------------------------------------------------------------------------- packages


async def test_package_sale_list_and_state(api: Api) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    # The clock is 2030-01-01 12:00 local.
    sold = await api.client.post(
        f"/v1/tenants/{tenant}/packages",
        json={"name": "1000 minutes", "price": "90.00", "minutes": 1000, "valid_to": "2030-12-31"},
    )
    assert sold.status_code == 201, sold.text
    package = sold.json()
    assert {k: v for k, v in package.items() if k != "package_id"} == {
        "tenant_id": tenant,
        "name": "1000 minutes",
        "price": "90.00",
        "minutes": 1000,
        "used_minutes": 0,
        "remaining_minutes": 1000,
        "valid_from": "2030-01-01",
        "valid_to": "2030-12-31",
        "state": "active",
        "purchased": "2030-01-01 12:00:00",
    }
    later = await api.client.post(
        f"/v1/tenants/{tenant}/packages",
        json={
            "name": "spring",
            "price": "0",
            "minutes": 10,
            "valid_from": "2030-03-01",
            "valid_to": "2030-05-31",
        },
    )
    assert later.json()["state"] == "pending"
    listed = (await api.client.get(f"/v1/tenants/{tenant}/packages")).json()["packages"]
    assert [p["name"] for p in listed] == ["1000 minutes", "spring"]
    charged = {ln.ref: (ln.amount, ln.period) for ln in ledger(api.db_path, item="package")}
    assert charged == {
        f"package:{package['package_id']}": (Decimal("90.00"), "203001"),
        f"package:{later.json()['package_id']}": (Decimal("0.00"), "203001"),
    }
    balance = await api.client.get(f"/v1/tenants/{tenant}/balance")
    assert balance.json()["balance"] == "10.00"
    # After its last day the first package is expired.
    api.clock.now = at(2031, 1, 1, 0, 0, 1)
    states = [
        p["state"]
        for p in (await api.client.get(f"/v1/tenants/{tenant}/packages")).json()["packages"]
    ]
    assert states == ["expired", "expired"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"price": "100.01"}, 409, "NOT_ENOUGH_BALANCE"),
        ({"price": "-1"}, 400, "AMOUNT_ILLEGAL"),
        ({"price": "1.001"}, 400, "AMOUNT_ILLEGAL"),
        ({"minutes": 0}, 400, "PARAMETER_ILLEGAL"),
        ({"name": "  "}, 400, "PARAMETER_ILLEGAL"),
        ({"name": "n" * 129}, 400, "PARAMETER_ILLEGAL"),
        ({"valid_to": "2029-12-31"}, 400, "PARAMETER_ILLEGAL"),  # already over
        ({"valid_from": "2030-06-01", "valid_to": "2030-05-31"}, 400, "PARAMETER_ILLEGAL"),
        ({"valid_to": "31/12/2030"}, 400, "PARAMETER_ILLEGAL"),
        ({"valid_to": "9999-12-31"}, 400, "PARAMETER_ILLEGAL"),
        ({"extra": 1}, 400, "PARAMETER_ILLEGAL"),
    ],
)
async def test_bad_package_is_refused_and_writes_nothing(
    api: Api, change: dict[str, Any], status: int, code: str
) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    body = {"name": "p", "price": "1.00", "minutes": 10, "valid_to": "2030-12-31", **change}
    before = unchanged(api)
    answer = await api.client.post(f"/v1/tenants/{tenant}/packages", json=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert unchanged(api) == before


# ------------------------------------------------------------------------------- discounts


async def test_discount_add_and_list(api: Api) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    pool = (
        await api.client.post("/v1/pools", json={"type": "AXB", "name": "p", "tenant_id": tenant})
    ).json()["pool_key"]
    granted = await api.client.post(
        f"/v1/tenants/{tenant}/discounts", json={"month": "2030-01", "amount": "5.50"}
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["amount"] == "-5.50"
    assert granted.json()["month"] == "2030-01"
    assert granted.json()["pool_key"] is None
    for_pool = await api.client.post(
        f"/v1/tenants/{tenant}/discounts",
        json={"month": "2029-12", "amount": "1", "pool_key": pool},
    )
    assert for_pool.json()["pool_key"] == pool
    assert for_pool.json()["amount"] == "-1.00"
    every = (await api.client.get(f"/v1/tenants/{tenant}/discounts")).json()["discounts"]
    assert [(d["month"], d["amount"]) for d in every] == [
        ("2030-01", "-5.50"),
        ("2029-12", "-1.00"),
    ]
    one = await api.client.get(f"/v1/tenants/{tenant}/discounts", params={"month": "2029-12"})
    assert [d["amount"] for d in one.json()["discounts"]] == ["-1.00"]
    balance = await api.client.get(f"/v1/tenants/{tenant}/balance")
    assert balance.json()["balance"] == "106.50"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": "0"}, 400, "AMOUNT_ILLEGAL"),
        ({"amount": "-3"}, 400, "AMOUNT_ILLEGAL"),
        ({"amount": "0.001"}, 400, "AMOUNT_ILLEGAL"),
        ({"month": "2030-13"}, 400, "PARAMETER_ILLEGAL"),
        ({"month": "January"}, 400, "PARAMETER_ILLEGAL"),
        ({"pool_key": "FC0000000000000000"}, 404, "POOL_NOT_EXIST"),
    ],
)
async def test_bad_discount_is_refused_and_writes_nothing(
    api: Api, change: dict[str, Any], status: int, code: str
) -> None:
    tenant = (await tenant_with_money(api))["tenant_id"]
    before = unchanged(api)
    body = {"month": "2030-01", "amount": "1.00", **change}
    answer = await api.client.post(f"/v1/tenants/{tenant}/discounts", json=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert unchanged(api) == before


# ------------------------------------------------------------------------------- tenants


async def test_tenant_reads_its_own_and_nothing_else(api: Api) -> None:
    mine = await tenant_with_money(api)
    other = await create_tenant(api, "Other")
    other_pool = (
        await api.client.post(
            "/v1/pools", json={"type": "AXB", "name": "p", "tenant_id": other["tenant_id"]}
        )
    ).json()["pool_key"]
    key, secret = mine["access_key_id"], mine["access_key_secret"]
    own = mine["tenant_id"]
    for tail in ("tariff", "packages", "discounts"):
        answer = await as_tenant(api, "GET", f"/v1/tenants/{own}/{tail}", key, secret)
        assert answer.status_code == 200, tail
        foreign = await as_tenant(
            api, "GET", f"/v1/tenants/{other['tenant_id']}/{tail}", key, secret
        )
        missing = await as_tenant(api, "GET", f"/v1/tenants/T000000000000/{tail}", key, secret)
        # Exactly the answer for a tenant that does not exist (the message names the id asked).
        assert (foreign.status_code, foreign.json()["code"]) == (404, "TENANT_NOT_EXIST")
        assert (missing.status_code, missing.json()["code"]) == (404, "TENANT_NOT_EXIST")
    before = unchanged(api)
    for method, tail, body in (
        ("PATCH", "tariff", {"call_per_minute": "0"}),
        ("POST", "packages", {"name": "p", "price": "0", "minutes": 9, "valid_to": "2030-12-31"}),
        ("POST", "discounts", {"month": "2030-01", "amount": "99"}),
        ("POST", "discounts", {"month": "2030-01", "amount": "99", "pool_key": other_pool}),
    ):
        answer = await as_tenant(api, method, f"/v1/tenants/{own}/{tail}", key, secret, json=body)
        assert (answer.status_code, answer.json()["code"]) == (403, "FORBIDDEN"), tail
    assert unchanged(api) == before
    # The operator naming another tenant's pool for a discount: as a pool that does not exist.
    crossed = await api.client.post(
        f"/v1/tenants/{own}/discounts",
        json={"month": "2030-01", "amount": "1", "pool_key": other_pool},
    )
    assert (crossed.status_code, crossed.json()["code"]) == (404, "POOL_NOT_EXIST")
    assert unchanged(api) == before
