"""Bad input and refused requests: a specific code and status, and nothing written.

Each refused request is compared against a full snapshot of the database taken just before it
(every row of every table the control plane writes) and against the in-memory index size.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_support import BEIJING_X, CSV_HEADER, START, Api

from api.app import create_app

A = "13800138000"
B = "13900139000"


async def refused(
    api: Api, method: str, url: str, status: int, code: str, **kwargs: Any
) -> dict[str, Any]:
    """Send the request, assert status/code and that neither the DB nor the index changed."""
    before = api.snapshot()
    indexed = len(api.control.index)
    response = await api.client.request(method, url, **kwargs)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message"} and body["message"]
    assert api.snapshot() == before, "a refused request wrote to the database"
    assert len(api.control.index) == indexed, "a refused request changed the index"
    return body


@pytest.fixture
async def pools(api: Api) -> dict[str, str]:
    """Inventory imported; one pool per type holding Beijing numbers (95AXN: the 950s)."""
    await api.import_inventory()
    keys = {
        "AXB": await api.pool("AXB", count=2, city="北京"),
        "AXN": await api.pool("AXN", count=1, city="北京"),
        "AXN_EXT": await api.pool("AXN_EXT", count=1, city="北京"),
        "AXG": await api.pool("AXG", count=1, city="北京"),
        "95AXN": await api.pool("95AXN", count=1),
        "EMPTY": await api.pool("AXB"),
    }
    return keys


def bind_body(api: Api, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "AXB", "a": A, "b": B, "expires": api.expires()}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("a", "1380013800", "MOBILE_NUMBER_ILLEGAL"),  # 10 digits
        ("a", "138001380001", "MOBILE_NUMBER_ILLEGAL"),  # 12 digits
        ("a", "1380013800a", "MOBILE_NUMBER_ILLEGAL"),
        ("b", "2012345678", "NUMBER_ILLEGAL"),  # landline without its 0
        ("b", "", "PARAMETER_ILLEGAL"),  # AXB needs B
        ("a", "abc", "NUMBER_ILLEGAL"),
        ("x", "12345", "NUMBER_ILLEGAL"),
    ],
)
async def test_invalid_numbers(
    api: Api, pools: dict[str, str], field: str, value: str, code: str
) -> None:
    body = bind_body(api)
    body[field] = value
    message = (
        await refused(api, "POST", f"/v1/pools/{pools['AXB']}/bindings", 400, code, json=body)
    )["message"]
    assert value[:6] not in message or len(value) < 6  # the raw number is not echoed unmasked


# ----------------------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    "expires",
    [
        "2029-12-31 12:00:00",  # a day ago
        "2030-01-01 12:00:30",  # 30 s ahead
        "2030-01-01 12:01:00",  # exactly 60 s: must be *more* than 60 s
        "2030/01/01 13:00:00",
        "2030-01-01T13:00:00",
        "tomorrow",
    ],
)
async def test_expiry_illegal(api: Api, pools: dict[str, str], expires: str) -> None:
    await refused(
        api, "POST", f"/v1/pools/{pools['AXB']}/bindings", 400, "EXPIRE_DATE_ILLEGAL",
        json=bind_body(api, expires=expires),
    )  # fmt: skip


async def test_expiry_just_over_a_minute_is_fine(api: Api, pools: dict[str, str]) -> None:
    response = await api.client.post(
        f"/v1/pools/{pools['AXB']}/bindings", json=bind_body(api, expires="2030-01-01 12:01:01")
    )
    assert response.status_code == 201, response.text
    assert api.control.clock() == START


# ----------------------------------------------------------------------------- pools


async def test_unknown_pool(api: Api, pools: dict[str, str]) -> None:
    missing = "FC0000000000000000"
    await refused(api, "POST", f"/v1/pools/{missing}/bindings", 404, "POOL_NOT_EXIST",
                  json=bind_body(api))  # fmt: skip
    await refused(api, "POST", f"/v1/pools/{missing}/numbers", 404, "POOL_NOT_EXIST",
                  json={"count": 1})  # fmt: skip
    await refused(api, "POST", f"/v1/pools/{missing}/groups", 404, "POOL_NOT_EXIST",
                  json={"name": "g", "numbers": [A]})  # fmt: skip
    await refused(api, "GET", f"/v1/pools/{missing}", 404, "POOL_NOT_EXIST")
    await refused(api, "GET", f"/v1/pools/{missing}/bindings/1", 404, "POOL_NOT_EXIST")
    await refused(api, "DELETE", f"/v1/pools/{missing}/bindings/1", 404, "POOL_NOT_EXIST")


async def test_pool_type_mismatch(api: Api, pools: dict[str, str]) -> None:
    await refused(api, "POST", f"/v1/pools/{pools['AXN']}/bindings", 400, "POOL_TYPE_MISMATCH",
                  json=bind_body(api))  # fmt: skip
    await refused(api, "POST", f"/v1/pools/{pools['AXB']}/groups", 400, "POOL_TYPE_MISMATCH",
                  json={"name": "g", "numbers": [A]})  # fmt: skip


async def test_pool_create_bad_input(api: Api) -> None:
    await refused(api, "POST", "/v1/pools", 400, "PARAMETER_ILLEGAL",
                  json={"type": "AXZ", "name": "n"})  # fmt: skip
    await refused(api, "POST", "/v1/pools", 400, "PARAMETER_ILLEGAL",
                  json={"type": "AXB", "name": "   "})  # fmt: skip
    await refused(api, "POST", "/v1/pools", 400, "PARAMETER_ILLEGAL",
                  json={"type": "AXB", "name": "x" * 129})  # fmt: skip
    await refused(api, "POST", "/v1/pools", 404, "TENANT_NOT_EXIST",
                  json={"type": "AXB", "name": "n", "tenant_id": "nobody"})  # fmt: skip


async def test_no_stock(api: Api, pools: dict[str, str]) -> None:
    # 10 Beijing numbers, 5 already bought by the pools fixture.
    body = await refused(api, "POST", f"/v1/pools/{pools['EMPTY']}/numbers", 409,
                         "NO_AVAILABLE_NUMBER", json={"count": 6, "city": "北京"})  # fmt: skip
    assert "available 5" in body["message"]
    await refused(api, "POST", f"/v1/pools/{pools['EMPTY']}/numbers", 409, "NO_AVAILABLE_NUMBER",
                  json={"count": 1, "city": "拉萨"})  # fmt: skip
    for count in (0, 1001):
        await refused(api, "POST", f"/v1/pools/{pools['EMPTY']}/numbers", 400,
                      "PARAMETER_ILLEGAL", json={"count": count})  # fmt: skip


async def test_no_available_number_in_pool(api: Api, pools: dict[str, str]) -> None:
    await refused(api, "POST", f"/v1/pools/{pools['EMPTY']}/bindings", 409,
                  "NO_AVAILABLE_NUMBER", json=bind_body(api))  # fmt: skip
    ok = await api.client.post(
        f"/v1/pools/{pools['AXN']}/bindings", json=bind_body(api, type="AXN", b=None)
    )
    assert ok.status_code == 201
    # The AXN pool's only X is taken.
    await refused(api, "POST", f"/v1/pools/{pools['AXN']}/bindings", 409, "NO_AVAILABLE_NUMBER",
                  json=bind_body(api, type="AXN", a="13700137000", b=None))  # fmt: skip


# ----------------------------------------------------------------------------- conflicts


async def test_axb_conflicts(api: Api, pools: dict[str, str]) -> None:
    first = await api.client.post(f"/v1/pools/{pools['AXB']}/bindings", json=bind_body(api))
    x = first.json()["secret_no"]
    # A again on the same X (with another B): BIND_CONFLICT; B again, likewise.
    await refused(api, "POST", f"/v1/pools/{pools['AXB']}/bindings", 409, "BIND_CONFLICT",
                  json=bind_body(api, b="13700137000", x=x))  # fmt: skip
    await refused(api, "POST", f"/v1/pools/{pools['AXB']}/bindings", 409, "BIND_CONFLICT",
                  json=bind_body(api, a="13700137000", x=x))  # fmt: skip


async def test_exclusive_x_given_and_taken(api: Api, pools: dict[str, str]) -> None:
    first = await api.client.post(
        f"/v1/pools/{pools['AXN']}/bindings", json=bind_body(api, type="AXN", b=None)
    )
    x = first.json()["secret_no"]
    body = await refused(
        api, "POST", f"/v1/pools/{pools['AXN']}/bindings", 409, "NO_AVAILABLE_NUMBER",
        json=bind_body(api, type="AXN", a="13700137000", b=None, x=x),
    )  # fmt: skip
    assert body["message"].startswith("X_OCCUPIED")


async def test_extension_taken(api: Api, pools: dict[str, str]) -> None:
    ok = await api.client.post(
        f"/v1/pools/{pools['AXN_EXT']}/bindings",
        json=bind_body(api, type="AXN_EXT", b=None, extension="12"),
    )
    assert ok.status_code == 201
    x = ok.json()["secret_no"]
    await refused(api, "POST", f"/v1/pools/{pools['AXN_EXT']}/bindings", 409, "BIND_CONFLICT",
                  json=bind_body(api, type="AXN_EXT", a="13700137000", b=None, x=x,
                                 extension="12"))  # fmt: skip
    for bad in ("1234", "1a", "#"):
        await refused(api, "POST", f"/v1/pools/{pools['AXN_EXT']}/bindings", 400,
                      "PARAMETER_ILLEGAL",
                      json=bind_body(api, type="AXN_EXT", b=None, extension=bad))  # fmt: skip


async def test_x_not_in_pool(api: Api, pools: dict[str, str]) -> None:
    # A number of the inventory that this pool did not buy.
    bought = set(api.control.pool_numbers(pools["AXB"]))  # type: ignore[arg-type]
    other = next(n for n in BEIJING_X if "+86" + n not in bought)
    await refused(api, "POST", f"/v1/pools/{pools['AXB']}/bindings", 400, "NUMBER_NOT_IN_POOL",
                  json=bind_body(api, x=other))  # fmt: skip


async def test_shape_errors(api: Api, pools: dict[str, str]) -> None:
    url = f"/v1/pools/{pools['AXB']}/bindings"
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, b=A))
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, group_id="1"))
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, extension="1"))
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL",
                  json=bind_body(api, ring_timeout_s=4))  # fmt: skip
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL",
                  json=bind_body(api, ring_timeout_s=181))  # fmt: skip
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL",
                  json=bind_body(api, restriction="SOMETIMES"))  # fmt: skip
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, colour="red"))
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json={"type": "AXB", "a": A})
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", content=b"{not json",
                  headers={"content-type": "application/json"})  # fmt: skip
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, a=13800138000))


# ----------------------------------------------------------------------------- groups


async def test_axg_group_errors(api: Api, pools: dict[str, str]) -> None:
    url = f"/v1/pools/{pools['AXG']}/bindings"
    axg = {"type": "AXG", "b": None}
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL", json=bind_body(api, **axg))
    await refused(api, "POST", url, 404, "GROUP_NOT_EXIST",
                  json=bind_body(api, **axg, group_id="123"))  # fmt: skip
    # A group of another AXG pool.
    other_pool = await api.pool("AXG")
    group = await api.client.post(
        f"/v1/pools/{other_pool}/groups", json={"name": "g", "numbers": [B]}
    )
    await refused(api, "POST", url, 400, "GROUP_NOT_IN_POOL",
                  json=bind_body(api, **axg, group_id=group.json()["group_id"]))  # fmt: skip


async def test_group_create_errors(api: Api, pools: dict[str, str]) -> None:
    url = f"/v1/pools/{pools['AXG']}/groups"
    too_many = [f"1380000{i:04d}" for i in range(201)]
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL",
                  json={"name": "g", "numbers": too_many})  # fmt: skip
    await refused(api, "POST", url, 400, "MOBILE_NUMBER_ILLEGAL",
                  json={"name": "g", "numbers": [A, "1380013800"]})  # fmt: skip
    await refused(api, "POST", url, 400, "PARAMETER_ILLEGAL",
                  json={"name": "", "numbers": [A]})  # fmt: skip
    exactly = [f"1380000{i:04d}" for i in range(200)]
    ok = await api.client.post(url, json={"name": "g", "numbers": exactly})
    assert ok.status_code == 201
    # The reference's CreateAxgGroup takes Numbers as optional: a group may start empty.
    empty = await api.client.post(url, json={"name": "later"})
    assert empty.status_code == 201, empty.text


# ----------------------------------------------------------------------------- bindings


async def test_unknown_binding(api: Api, pools: dict[str, str]) -> None:
    bound = await api.client.post(f"/v1/pools/{pools['AXB']}/bindings", json=bind_body(api))
    sub_id = bound.json()["sub_id"]
    await refused(api, "GET", f"/v1/pools/{pools['AXB']}/bindings/123", 404, "BINDING_NOT_EXIST")
    await refused(api, "DELETE", f"/v1/pools/{pools['AXB']}/bindings/123", 404,
                  "BINDING_NOT_EXIST")  # fmt: skip
    # Another pool's binding is not found through this pool.
    await refused(api, "GET", f"/v1/pools/{pools['AXN']}/bindings/{sub_id}", 404,
                  "BINDING_NOT_EXIST")  # fmt: skip
    await refused(api, "DELETE", f"/v1/pools/{pools['AXN']}/bindings/{sub_id}", 404,
                  "BINDING_NOT_EXIST")  # fmt: skip
    assert (await api.client.delete(f"/v1/pools/{pools['AXB']}/bindings/{sub_id}")).is_success
    await refused(api, "DELETE", f"/v1/pools/{pools['AXB']}/bindings/{sub_id}", 404,
                  "BINDING_NOT_EXIST")  # fmt: skip


# ----------------------------------------------------------------------------- import


async def test_import_errors(api: Api) -> None:
    csv = {"content-type": "text/csv"}
    good = f"{BEIJING_X[0]},北京,北京,CMCC,1\n"
    await refused(api, "POST", "/v1/numbers/import", 400, "CSV_ILLEGAL",
                  content=b"num,city\n17000000000,x\n", headers=csv)  # fmt: skip
    await refused(api, "POST", "/v1/numbers/import", 400, "CSV_ILLEGAL", content=b"",
                  headers=csv)  # fmt: skip
    await refused(api, "POST", "/v1/numbers/import", 400, "CSV_ILLEGAL",
                  content=(CSV_HEADER + "17000000001,北京\n").encode(), headers=csv)  # fmt: skip
    # One bad row refuses the whole file: the good row before it is not imported either.
    body = await refused(api, "POST", "/v1/numbers/import", 400, "MOBILE_NUMBER_ILLEGAL",
                         content=(CSV_HEADER + good + "1700000001,北京,北京,CMCC,1\n").encode(),
                         headers=csv)  # fmt: skip
    assert "row 2" in body["message"]
    await refused(api, "POST", "/v1/numbers/import", 400, "PARAMETER_ILLEGAL",
                  content=(CSV_HEADER + good + "17000000002,北京,北京,CMCC,4\n").encode(),
                  headers=csv)  # fmt: skip
    await refused(api, "POST", "/v1/numbers/import", 400, "PARAMETER_ILLEGAL",
                  content=(CSV_HEADER + "17000000002,,北京,CMCC,1\n").encode(),
                  headers=csv)  # fmt: skip
    await refused(api, "POST", "/v1/numbers/import", 400, "NUMBER_ILLEGAL",
                  content=(CSV_HEADER + "17000000002,全国,全国,CMCC,3\n").encode(),
                  headers=csv)  # fmt: skip
    await refused(api, "POST", "/v1/numbers/import", 400, "PARAMETER_ILLEGAL",
                  json={"rows": [{"number": "17000000002"}]})  # fmt: skip


async def test_calls_limit(api: Api) -> None:
    for limit in ("0", "1001", "many"):
        await refused(api, "GET", f"/v1/calls?limit={limit}", 400, "PARAMETER_ILLEGAL")


async def test_unknown_route_is_json(api: Api) -> None:
    await refused(api, "GET", "/v1/nothing-here", 404, "NOT_FOUND")
    await refused(api, "PUT", "/v1/pools", 405, "METHOD_NOT_ALLOWED")


# ----------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", "Basic dGVzdDp0ZXN0", "test-operator-token"],
)
async def test_unauthorized(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    client = httpx.AsyncClient(
        transport=api.client._transport, base_url="http://maskline.test", headers=headers
    )
    async with client:
        before = api.snapshot()
        for method, url in (("POST", "/v1/pools"), ("GET", "/v1/calls"),
                            ("GET", "/v1/pools/FC0/bindings/1")):  # fmt: skip
            response = await client.request(
                method, url, json={"type": "AXB", "name": "n"} if method == "POST" else None
            )
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "UNAUTHORIZED"
            assert response.headers["www-authenticate"] == "Bearer"
        assert api.snapshot() == before


async def test_no_token_configured_closes_the_api(api: Api) -> None:
    app = create_app(api.control, operator_token=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://maskline.test",
        headers={"authorization": "Bearer anything"},
    ) as client:
        before = api.snapshot()
        response = await client.post("/v1/pools", json={"type": "AXB", "name": "n"})
        assert response.status_code == 403
        assert response.json()["code"] == "FORBIDDEN"
        assert "operator_token" in response.json()["message"]
        assert (await client.get("/v1/calls")).status_code == 403
        assert (await client.get("/openapi.json")).status_code == 200
        assert api.snapshot() == before
