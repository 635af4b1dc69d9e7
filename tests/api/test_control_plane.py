"""Pools, allocation modes, binding updates and lookups of the control plane (issue 4).

Through the REST API with the operator token (the routes are thin), and through ControlPlane
for tenant scoping. Real SQLite file, fake clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import httpx
import pytest
from api_support import CSV_HEADER, Api
from hypothesis import given, settings
from hypothesis import strategies as st

import store
from api.control import EXPIRES_FORMAT, parse_expires
from api.errors import Conflict, InvalidInput, NotFound
from routing.index import Intercept, Route
from routing.model import BindingType, InterceptCause, PhoneNumber, PoolKey

# Beijing and Guangzhou virtual numbers, Shenzhen too: for the city rules of SPEC §3.
BEIJING = [f"1700100{i:04d}" for i in range(3)]
GUANGZHOU = [f"1700200{i:04d}" for i in range(3)]
SHENZHEN = [f"1700300{i:04d}" for i in range(2)]
CITY_CSV = (
    CSV_HEADER
    + "".join(f"{n},北京,北京,CMCC,1\n" for n in BEIJING)
    + "".join(f"{n},广州,广东,CMCC,1\n" for n in GUANGZHOU)
    + "".join(f"{n},深圳,广东,CMCC,1\n" for n in SHENZHEN)
)
FOSHAN_LANDLINE = "0757-81234567"  # home 广东省/佛山市: no number of the pool is in Foshan
SHENZHEN_LANDLINE = "0755-81234567"
B = "13900139000"


async def _pool_with_cities(api: Api, mode: str, cities: dict[str, int]) -> str:
    imported = await api.client.post(
        "/v1/numbers/import", content=CITY_CSV.encode(), headers={"content-type": "text/csv"}
    )
    assert imported.status_code == 200, imported.text
    created = await api.client.post(
        "/v1/pools", json={"type": "AXB", "name": "p", "allocation_mode": mode}
    )
    assert created.status_code == 201, created.text
    key: str = created.json()["pool_key"]
    for city, count in cities.items():
        added = await api.client.post(
            f"/v1/pools/{key}/numbers", json={"count": count, "city": city}
        )
        assert added.status_code == 200, added.text
    return key


def _e164(national: list[str]) -> set[str]:
    return {"+86" + n for n in national}


async def _bind(api: Api, key: str, a: str, **extra: object) -> httpx.Response:
    body = {"type": "AXB", "a": a, "b": B, "expires": api.expires(), **extra}
    return await api.client.post(f"/v1/pools/{key}/bindings", json=body)


# --------------------------------------------------------------------------- allocation modes


async def test_strict_mode_refuses_when_the_city_has_no_number(api: Api) -> None:
    key = await _pool_with_cities(api, "strict", {"北京": 3})
    before = api.snapshot()
    refused = await _bind(api, key, FOSHAN_LANDLINE)
    assert refused.status_code == 409
    assert refused.json()["code"] == "NO_AVAILABLE_NUMBER"
    assert "strict" in refused.json()["message"] and "佛山" in refused.json()["message"]
    assert api.snapshot() == before
    taken = await _bind(api, key, FOSHAN_LANDLINE, expect_city="北京")
    assert taken.status_code == 201, taken.text
    assert taken.json()["secret_no"] in _e164(BEIJING)


async def test_smart_mode_falls_back_to_the_province_capital(api: Api) -> None:
    key = await _pool_with_cities(api, "smart", {"北京": 3, "广州": 3})
    for _ in range(3):  # every Guangzhou number is preferred over Beijing ones
        answer = await _bind(api, key, FOSHAN_LANDLINE, b=f"1390013{_:04d}")
        assert answer.status_code == 201, answer.text
        assert answer.json()["secret_no"] in _e164(GUANGZHOU)


async def test_smart_mode_prefers_the_city_itself(api: Api) -> None:
    key = await _pool_with_cities(api, "smart", {"广州": 3, "深圳": 2})
    answer = await _bind(api, key, SHENZHEN_LANDLINE)
    assert answer.status_code == 201, answer.text
    assert answer.json()["secret_no"] in _e164(SHENZHEN)


async def test_smart_mode_ends_with_any_number(api: Api) -> None:
    key = await _pool_with_cities(api, "smart", {"北京": 3})
    answer = await _bind(api, key, FOSHAN_LANDLINE)
    assert answer.status_code == 201, answer.text
    assert answer.json()["secret_no"] in _e164(BEIJING)


async def test_default_mode_takes_any_number_when_the_city_has_none(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 3, "广州": 3})
    answer = await _bind(api, key, FOSHAN_LANDLINE)
    assert answer.status_code == 201, answer.text
    assert answer.json()["secret_no"] in _e164(BEIJING) | _e164(GUANGZHOU)
    in_city = await _bind(api, key, "13800138000", expect_city="广州市")
    assert in_city.json()["secret_no"] in _e164(GUANGZHOU)


async def test_allocation_spreads_bindings_over_the_city_numbers(api: Api) -> None:
    key = await _pool_with_cities(api, "strict", {"广州": 3})
    used = set()
    for i in range(6):
        answer = await _bind(api, key, f"1380013{i:04d}", expect_city="广州", b=f"1390013{i:04d}")
        assert answer.status_code == 201, answer.text
        used.add(answer.json()["secret_no"])
    assert used == _e164(GUANGZHOU)


# --------------------------------------------------------------------------- pools


async def test_configure_pool_and_list(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 2})
    changed = await api.client.patch(
        f"/v1/pools/{key}",
        json={
            "name": "orders",
            "allocation_mode": "smart",
            "recording": True,
            "ringback": {"AXBRing_A": "tone-1"},
            "warn_free_numbers": 1,
            "warn_utilisation_pct": 80,
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["allocation_mode"], body["recording"]) == ("orders", "smart", True)
    assert body["ringback"] == {"AXBRing_A": "tone-1"}
    assert (body["warn_free_numbers"], body["warn_utilisation_pct"]) == (1, 80.0)
    assert (await _bind(api, key, "13800138000")).status_code == 201
    listed = (await api.client.get("/v1/pools")).json()["pools"]
    assert [
        (p["pool_key"], p["numbers"], p["bound_numbers"], p["utilisation_pct"]) for p in listed
    ] == [(key, 2, 1, 50.0)]


async def test_configure_pool_refuses_bad_values_and_writes_nothing(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 1})
    before = api.snapshot()
    for body in (
        {"ringback": {"NoSuchRing": "t"}},
        {"ringback": {"AXBRing_A": ""}},
        {"allocation_mode": "random"},
        {"name": ""},
        {"warn_utilisation_pct": 0},
        {"unknown": 1},
    ):
        answer = await api.client.patch(f"/v1/pools/{key}", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["code"] == "PARAMETER_ILLEGAL"
    missing = await api.client.patch("/v1/pools/FC0000000000000000", json={"name": "x"})
    assert (missing.status_code, missing.json()["code"]) == (404, "POOL_NOT_EXIST")
    assert api.snapshot() == before


# --------------------------------------------------------------------------- updates


async def test_update_binding_changes_routing_at_once(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 1})
    bound = (await _bind(api, key, "13800138000", out_id="o-1")).json()
    x, sub_id = PhoneNumber(bound["secret_no"]), bound["sub_id"]
    changed = await api.client.patch(
        f"/v1/pools/{key}/bindings/{sub_id}",
        json={
            "b": "13700137000",
            "restriction": "CONTROL_BX_DISABLE",
            "expires": api.expires(7200),
            "out_id": "o-2",
            "record": True,
            "ring_timeout_s": 30,
        },
    )
    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert (view["b"], view["restriction"], view["out_id"]) == (
        "+8613700137000", "CONTROL_BX_DISABLE", "o-2",
    )  # fmt: skip
    assert (view["record"], view["ring_timeout_s"]) == (True, 30)
    now = api.clock.now
    to_new_b = api.control.index.resolve(x, PhoneNumber("+8613800138000"), now=now)
    assert isinstance(to_new_b, Route) and to_new_b.callee == "+8613700137000"
    old_b = api.control.index.resolve(x, PhoneNumber("+8613900139000"), now=now)
    assert isinstance(old_b, Intercept) and old_b.cause is InterceptCause.NO_BINDING
    new_b = api.control.index.resolve(x, PhoneNumber("+8613700137000"), now=now)
    assert isinstance(new_b, Intercept) and new_b.cause is InterceptCause.RESTRICTED
    stored = await store.get_binding(api.control.db, bound["sub_id"])
    assert stored is not None and stored.b == "+8613700137000" and stored.out_id == "o-2"
    cleared = await api.client.patch(
        f"/v1/pools/{key}/bindings/{sub_id}", json={"restriction": "NONE"}
    )
    assert cleared.json()["restriction"] == "NONE"


async def test_update_binding_refusals_change_nothing(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 1})
    first = (await _bind(api, key, "13800138000")).json()
    second = await _bind(api, key, "13800138001", b="13700137000")
    assert second.status_code == 201
    before = api.snapshot()
    url = f"/v1/pools/{key}/bindings/{first['sub_id']}"
    cases = (
        ({"b": "13700137000"}, 409, "BIND_CONFLICT"),  # already on this X in another binding
        ({"b": "13800138000"}, 400, "PARAMETER_ILLEGAL"),  # a == b
        ({"expires": api.expires(30)}, 400, "EXPIRE_DATE_ILLEGAL"),
        ({"a": "12345"}, 400, "NUMBER_ILLEGAL"),
        ({"ring_timeout_s": 2}, 400, "PARAMETER_ILLEGAL"),
        ({"group_id": "1"}, 400, "PARAMETER_ILLEGAL"),  # AXB has no group
        ({"ringback": {"Nope": "t"}}, 400, "PARAMETER_ILLEGAL"),
    )
    for body, status, code in cases:
        answer = await api.client.patch(url, json=body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (body, answer.text)
    missing = await api.client.patch(f"/v1/pools/{key}/bindings/999", json={"out_id": "z"})
    assert (missing.status_code, missing.json()["code"]) == (404, "BINDING_NOT_EXIST")
    assert api.snapshot() == before
    routed = api.control.index.resolve(
        PhoneNumber(first["secret_no"]), PhoneNumber("+8613800138000"), now=api.clock.now
    )
    assert isinstance(routed, Route) and routed.callee == "+8613900139000"


# --------------------------------------------------------------------------- lookups


async def test_list_bindings_by_x_and_by_real_number(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 2})
    x1, x2 = sorted(api.control.pool_numbers(PoolKey(key)))
    one = (await _bind(api, key, "13800138000", x=x1)).json()
    api.clock.now += 1  # listed oldest first
    two = (await _bind(api, key, "13800138001", x=x1, b="13700137000")).json()
    api.clock.now += 1
    three = (await _bind(api, key, "13800138000", x=x2, b="13700137000")).json()
    by_x = await api.client.get(f"/v1/pools/{key}/bindings", params={"x": x1.removeprefix("+86")})
    assert [b["sub_id"] for b in by_x.json()["bindings"]] == [one["sub_id"], two["sub_id"]]
    by_a = await api.client.get(f"/v1/pools/{key}/bindings", params={"number": "138-0013-8000"})
    assert [b["sub_id"] for b in by_a.json()["bindings"]] == [one["sub_id"], three["sub_id"]]
    by_b = await api.client.get("/v1/bindings", params={"number": "+86 137 0013 7000"})
    assert [b["sub_id"] for b in by_b.json()["bindings"]] == [two["sub_id"], three["sub_id"]]
    await api.client.delete(f"/v1/pools/{key}/bindings/{two['sub_id']}")
    after = await api.client.get("/v1/bindings", params={"number": "13700137000"})
    assert [b["sub_id"] for b in after.json()["bindings"]] == [three["sub_id"]]
    for params in ({}, {"x": x1, "number": "13700137000"}):
        bad = await api.client.get(f"/v1/pools/{key}/bindings", params=params)
        assert (bad.status_code, bad.json()["code"]) == (400, "PARAMETER_ILLEGAL")


# --------------------------------------------------------------------------- tenant scoping


async def test_a_tenant_sees_only_its_own_pools_and_bindings(api: Api) -> None:
    control = api.control
    for tenant in ("TA", "TB"):
        await store.create_tenant(control.db, tenant_id=tenant, name=tenant, now=api.clock.now)
    key = await _pool_with_cities(api, "default", {"北京": 1})
    own = await control.create_pool(BindingType.AXB, "a", "TA")
    await control.add_numbers(own, 1, city="广州")
    binding = await control.bind(
        BindingType.AXB, own, "13800138000", B, expires=api.expires(), tenant="TA"
    )
    assert [p.pool_key for p in await control.list_pools(tenant="TA")] == [own]
    assert await control.list_pools(tenant="TB") == []
    assert {p.pool_key for p in await control.list_pools()} == {key, own}
    before = api.snapshot()
    attempts = (
        control.get_pool(own, tenant="TB"),
        control.get_binding(own, binding.sub_id, tenant="TB"),
        control.get_binding(None, binding.sub_id, tenant="TB"),
        control.unbind(None, binding.sub_id, tenant="TB"),
        control.update_binding(None, binding.sub_id, tenant="TB", out_id="x"),
        control.bindings_by_x(own, binding.x, tenant="TB"),
        control.bind(BindingType.AXB, own, "13800138001", B, expires=api.expires(), tenant="TB"),
    )
    for attempt in attempts:
        try:
            await attempt
        except NotFound as error:
            assert error.code in ("POOL_NOT_EXIST", "BINDING_NOT_EXIST")
        else:
            raise AssertionError("a foreign resource was visible")
    assert await control.bindings_by_number("13800138000", tenant="TB") == []
    assert [b.sub_id for b in await control.bindings_by_number("13800138000", tenant="TA")] == [
        binding.sub_id
    ]
    assert api.snapshot() == before


async def test_a_group_of_another_tenant_answers_as_missing(api: Api) -> None:
    control = api.control
    for tenant in ("TA", "TB"):
        await store.create_tenant(control.db, tenant_id=tenant, name=tenant, now=api.clock.now)
    await api.import_inventory()
    pool_a = await control.create_pool(BindingType.AXG, "a", "TA")
    other_a = await control.create_pool(BindingType.AXG, "a2", "TA")
    pool_b = await control.create_pool(BindingType.AXG, "b", "TB")
    await control.add_numbers(pool_b, 1, city="北京")
    group_a = await control.lists.create_group(pool_a, "g", ["13600136000"], tenant="TA")
    group_a2 = await control.lists.create_group(other_a, "g", ["13600136000"], tenant="TA")
    before = api.snapshot()
    for group in (group_a, "424242"):
        try:
            await control.bind(
                BindingType.AXG, pool_b, "13800138000", expires=api.expires(),
                group_id=group, tenant="TB",
            )  # fmt: skip
        except NotFound as error:
            assert error.code == "GROUP_NOT_EXIST"
        else:
            raise AssertionError("bound on another tenant's group")
    assert api.snapshot() == before
    # Within one owner, the other pool's group is named as such.
    try:
        await control.bind(
            BindingType.AXG, pool_a, "13800138000", expires=api.expires(), group_id=group_a2
        )
    except InvalidInput as error:
        assert error.code == "GROUP_NOT_IN_POOL"
    else:
        raise AssertionError("bound on another pool's group")


async def test_a_bind_waiting_for_x_does_not_commit_once_x_left_the_pool(api: Api) -> None:
    """Release, lock and migration take X out of its pool under X's lock: a bind that waited
    for that lock must find X gone, not write a binding on a number no longer in the pool."""
    key = await _pool_with_cities(api, "default", {"北京": 1})
    [x] = api.control.pool_numbers(PoolKey(key))
    before = api.snapshot()
    await api.control._x_locks.acquire(x)
    explicit = asyncio.create_task(
        api.control.bind(BindingType.AXB, key, "13800138000", B, x, expires=api.expires())
    )
    allocated = asyncio.create_task(
        api.control.bind(BindingType.AXB, key, "13800138001", B, expires=api.expires())
    )
    while api.control._x_locks.users(x) < 3:  # this test holds it, both binds wait for it
        await asyncio.sleep(0)
    api.control._forget_number(x)  # what release/lock/migration do while holding it
    api.control._x_locks.release(x)
    with pytest.raises(InvalidInput) as refused:
        await explicit
    assert refused.value.code == "NUMBER_NOT_IN_POOL"
    with pytest.raises(Conflict) as none_left:
        await allocated
    assert none_left.value.code == "NO_AVAILABLE_NUMBER"
    assert api.snapshot() == before
    assert x not in api.control._x_weight  # no stale load figure left behind


@settings(max_examples=2000)  # a small input space: the CI profile's 10,000 add nothing
@given(
    st.text(alphabet="0123456789-: T", min_size=10, max_size=22)
    | st.datetimes(min_value=dt.datetime(2031, 1, 1), max_value=dt.datetime(9999, 1, 1)).map(
        lambda moment: (
            f"{moment.year}-{moment.month}-{moment.day:02d} "
            f"{moment.hour}:{moment.minute:02d}:{moment.second}"
        )
    )
)
def test_parse_expires_accepts_what_strptime_accepts(text: str) -> None:
    """The fast expiry parser agrees with strptime('%Y-%m-%d %H:%M:%S') on ASCII input."""
    zone = ZoneInfo("Asia/Shanghai")
    try:
        expected: float | None = (
            dt.datetime.strptime(text.strip(), EXPIRES_FORMAT).replace(tzinfo=zone).timestamp()
        )
    except ValueError:
        expected = None
    try:
        got: float | None = parse_expires(text, zone=zone, now=0.0)
    except InvalidInput as error:
        assert error.code == "EXPIRE_DATE_ILLEGAL"
        got = None
    assert got == expected


async def test_the_pool_recording_default_applies_when_a_bind_omits_record(api: Api) -> None:
    key = await _pool_with_cities(api, "default", {"北京": 2})
    assert (await api.client.patch(f"/v1/pools/{key}", json={"recording": True})).status_code == 200
    default = await _bind(api, key, "13800138000")
    assert default.json()["binding"]["record"] is True
    explicit = await _bind(api, key, "13800138001", b="13700137000", record=False)
    assert explicit.json()["binding"]["record"] is False
