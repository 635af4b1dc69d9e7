"""Every operator endpoint on its happy path, against a real SQLite file and the real index."""

from __future__ import annotations

import re
from pathlib import Path

from api_support import BEIJING_X, CSV_HEADER, NATIONWIDE_X, SHENZHEN_X, START, ZONE, Api, Clock

from api.control import ControlPlane
from routing.index import BindingIndex, Intercept, Route
from routing.model import InterceptCause, PhoneNumber, SubId
from store import CallRecord, CallType, Database, ReleaseDir, insert_call_record

A = "13800138000"
B = "+86 139 0013 9000"
A_E164 = "+8613800138000"
B_E164 = "+8613900139000"


def e164(national: str) -> str:
    return "+86" + national


async def test_import_csv_counts_only_new_numbers(api: Api) -> None:
    await api.import_inventory()
    assert api.counts()["numbers"] == 17
    again = await api.client.post(
        "/v1/numbers/import",
        content=(CSV_HEADER + f"{BEIJING_X[0]},北京,北京,CMCC,1\n").encode(),
        headers={"content-type": "text/csv"},
    )
    assert again.status_code == 200
    assert again.json() == {"imported": 0}


async def test_import_json_rows(api: Api) -> None:
    response = await api.client.post(
        "/v1/numbers/import",
        json={
            "rows": [
                {
                    "number": "+86 170 9999 0001",
                    "city": "上海",
                    "province": "上海",
                    "carrier": "x",
                    "spec": 1,
                },
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 1}
    rows = api.snapshot()["numbers"]
    assert rows[0][:5] == ("+8617099990001", "上海", "上海", "x", 1)


async def test_create_and_show_pool(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=2, city="北京")
    assert re.fullmatch(r"FC[0-9A-F]{16}", key)
    shown = await api.client.get(f"/v1/pools/{key}")
    assert shown.status_code == 200
    assert shown.json() == {
        "pool_key": key, "type": "AXB", "name": "AXB pool", "tenant_id": None,
        "allocation_mode": "default", "sms_mode": "off", "recording": False, "ringback": {},
        "warn_free_numbers": None, "warn_utilisation_pct": None, "numbers": 2,
        "bound_numbers": 0, "utilisation_pct": 0.0, "created": "2030-01-01 12:00:00",
    }  # fmt: skip


async def test_add_numbers_by_city_and_spec(api: Api) -> None:
    await api.import_inventory()
    axb = await api.pool("AXB")
    response = await api.client.post(f"/v1/pools/{axb}/numbers", json={"count": 5, "city": "深圳"})
    assert response.status_code == 200
    assert response.json() == {"numbers": sorted(e164(n) for n in SHENZHEN_X)}
    nationwide = await api.pool("95AXN")
    response = await api.client.post(f"/v1/pools/{nationwide}/numbers", json={"count": 2})
    assert response.json() == {"numbers": sorted(e164(n) for n in NATIONWIDE_X)}


async def test_bind_axb_allocates_and_is_routable(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=3, city="北京")
    response = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={
            "type": "AXB",
            "a": A,
            "b": B,
            "expires": api.expires(),
            "record": True,
            "out_id": "order-1",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    x = body["secret_no"]
    assert x in {e164(n) for n in BEIJING_X}
    assert body["binding"] == {
        "sub_id": body["sub_id"], "pool_key": key, "type": "AXB", "secret_no": x,
        "a": A_E164, "b": B_E164, "group_id": None, "extension": None,
        "expires": "2030-01-01 13:00:00", "record": True, "restriction": "NONE",
        "ring_timeout_s": 60, "out_id": "order-1", "ringback": {}, "created": "2030-01-01 12:00:00",
    }  # fmt: skip
    # The call path sees it at once: A→X rings B, B→X rings A.
    route = api.control.index.resolve(PhoneNumber(x), PhoneNumber(A_E164), now=START + 1)
    assert isinstance(route, Route) and route.callee == B_E164
    route = api.control.index.resolve(PhoneNumber(x), PhoneNumber(B_E164), now=START + 1)
    assert isinstance(route, Route) and route.callee == A_E164
    # Durable: the row is in the file.
    assert [row[0] for row in api.snapshot()["bindings"]] == [body["sub_id"]]


async def test_allocation_spreads_load_least_bound_first(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=3, city="北京")
    xs = []
    for i in range(6):
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={
                "type": "AXB",
                "a": f"1380013{i:04d}",
                "b": f"1390013{i:04d}",
                "expires": api.expires(),
            },
        )
        assert response.status_code == 201, response.text
        xs.append(response.json()["secret_no"])
    assert len(set(xs[:3])) == 3  # each X once before any X twice
    assert sorted(xs[3:]) == sorted(xs[:3])


async def test_allocation_prefers_home_city(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB")
    for city in ("北京", "深圳"):
        added = await api.client.post(f"/v1/pools/{key}/numbers", json={"count": 2, "city": city})
        assert added.status_code == 200
    # 0755 is Shenzhen: an X of Shenzhen is picked, then 010 (Beijing) gets a Beijing X.
    shenzhen = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={"type": "AXB", "a": "0755-12345678", "b": B, "expires": api.expires()},
    )
    assert shenzhen.json()["secret_no"] in {e164(n) for n in SHENZHEN_X}
    beijing = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={"type": "AXB", "a": "010-12345678", "b": B, "expires": api.expires()},
    )
    assert beijing.json()["secret_no"] in {e164(n) for n in BEIJING_X}


async def test_bind_axb_with_given_x_shares_it(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=1, city="北京")
    x = (await api.client.get(f"/v1/pools/{key}")).json()
    assert x["numbers"] == 1
    first = await api.client.post(
        f"/v1/pools/{key}/bindings", json={"type": "AXB", "a": A, "b": B, "expires": api.expires()}
    )
    given_x = first.json()["secret_no"]
    second = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={
            "type": "AXB",
            "a": "13700137000",
            "b": "13600136000",
            "x": given_x[3:],
            "expires": api.expires(),
        },
    )
    assert second.status_code == 201, second.text
    assert second.json()["secret_no"] == given_x


async def test_bind_axn_exclusive_with_default_b(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXN", count=2, city="北京")
    first = await api.client.post(
        f"/v1/pools/{key}/bindings", json={"type": "AXN", "a": A, "b": B, "expires": api.expires()}
    )
    second = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={"type": "AXN", "a": "13700137000", "expires": api.expires()},
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["secret_no"] != second.json()["secret_no"]
    x = PhoneNumber(first.json()["secret_no"])
    anyone = api.control.index.resolve(x, PhoneNumber("+8618612345678"), now=START + 1)
    assert isinstance(anyone, Route) and anyone.callee == A_E164
    a_calls = api.control.index.resolve(x, PhoneNumber(A_E164), now=START + 1)
    assert isinstance(a_calls, Route) and a_calls.callee == B_E164


async def test_bind_axn_extension_allocates_extensions(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXN_EXT", count=1, city="北京")
    exts = []
    for a in ("13800138000", "13700137000"):
        response = await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXN_EXT", "a": a, "expires": api.expires()},
        )
        assert response.status_code == 201, response.text
        exts.append(response.json()["extension"])
    assert exts == ["1", "2"]
    chosen = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={"type": "AXN_EXT", "a": "13600136000", "extension": "77", "expires": api.expires()},
    )
    assert chosen.status_code == 201
    assert chosen.json()["extension"] == "77"


async def test_bind_95axn(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("95AXN", count=1)
    response = await api.client.post(
        f"/v1/pools/{key}/bindings", json={"type": "95AXN", "a": A, "expires": api.expires()}
    )
    assert response.status_code == 201, response.text
    assert response.json()["secret_no"] in {e164(n) for n in NATIONWIDE_X}


async def test_group_and_axg_binding(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXG", count=1, city="北京")
    group = await api.client.post(
        f"/v1/pools/{key}/groups",
        json={"name": "drivers", "numbers": ["13700137000", "+86 136 0013 6000", "010-12345678"]},
    )
    assert group.status_code == 201, group.text
    group_id = group.json()["group_id"]
    assert group_id.isdigit()
    members = [row[1] for row in api.snapshot()["group_members"]]
    assert sorted(members) == ["+861012345678", "+8613600136000", "+8613700137000"]
    bound = await api.client.post(
        f"/v1/pools/{key}/bindings",
        json={"type": "AXG", "a": A, "group_id": group_id, "expires": api.expires()},
    )
    assert bound.status_code == 201, bound.text
    x = PhoneNumber(bound.json()["secret_no"])
    member = api.control.index.resolve(x, PhoneNumber("+861012345678"), now=START + 1)
    assert isinstance(member, Route) and member.callee == A_E164
    stranger = api.control.index.resolve(x, PhoneNumber("+8618612345678"), now=START + 1)
    assert isinstance(stranger, Intercept) and stranger.cause is InterceptCause.NOT_IN_GROUP


async def test_show_and_unbind(api: Api) -> None:
    await api.import_inventory()
    key = await api.pool("AXB", count=1, city="北京")
    bound = (
        await api.client.post(
            f"/v1/pools/{key}/bindings",
            json={"type": "AXB", "a": A, "b": B, "expires": api.expires()},
        )
    ).json()
    sub_id = bound["sub_id"]
    shown = await api.client.get(f"/v1/pools/{key}/bindings/{sub_id}")
    assert shown.status_code == 200
    assert shown.json() == bound["binding"]
    gone = await api.client.delete(f"/v1/pools/{key}/bindings/{sub_id}")
    assert gone.status_code == 200
    assert gone.json() == {"ok": True}
    assert (await api.client.get(f"/v1/pools/{key}/bindings/{sub_id}")).status_code == 404
    x = PhoneNumber(bound["secret_no"])
    after = api.control.index.resolve(x, PhoneNumber(A_E164), now=START + 1)
    assert isinstance(after, Intercept) and after.cause is InterceptCause.NO_BINDING
    # Kept as history, unbound_at set.
    rows = api.snapshot()["bindings"]
    assert len(rows) == 1 and rows[0][-1] is not None
    # The pair can bind again on the same X.
    again = await api.client.post(
        f"/v1/pools/{key}/bindings", json={"type": "AXB", "a": A, "b": B, "expires": api.expires()}
    )
    assert again.status_code == 201


async def test_recent_calls_newest_first_in_local_time(api: Api) -> None:
    for i in range(3):
        await insert_call_record(
            api.control.db,
            CallRecord(
                id=f"rec-{i}", call_id=f"call-{i}", secret_no=PhoneNumber("+8617000000000"),
                call_type=CallType.A_TO_PEER, call_time=START + i, release_time=START + i + 30,
                release_dir=ReleaseDir.CALLER, release_cause=16,
                phone_no=PhoneNumber(A_E164), peer_no=PhoneNumber(B_E164),
            ),
        )  # fmt: skip
    response = await api.client.get("/v1/calls", params={"limit": 2})
    assert response.status_code == 200
    calls = response.json()["calls"]
    assert [c["id"] for c in calls] == ["rec-2", "rec-1"]
    assert calls[0]["call_time"] == "2030-01-01 12:00:02"
    assert calls[0]["release_time"] == "2030-01-01 12:00:32"
    assert calls[0]["phone_no"] == A_E164 and calls[0]["release_cause"] == 16
    assert calls[0]["ring_time"] is None


async def test_openapi_document_is_served(api: Api) -> None:
    response = await api.client.get("/openapi.json", headers={"authorization": ""})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/v1/numbers/import", "/v1/pools", "/v1/pools/{pool_key}/numbers",
        "/v1/pools/{pool_key}/bindings", "/v1/pools/{pool_key}/bindings/{sub_id}",
        "/v1/pools/{pool_key}/groups", "/v1/calls",
    ):  # fmt: skip
        assert path in paths


async def test_restart_loads_bindings_groups_and_inventory(
    api: Api, tmp_path: Path, clock: Clock
) -> None:
    await api.import_inventory()
    axb = await api.pool("AXB", count=2, city="北京")
    axg = await api.pool("AXG", count=1, city="深圳")
    group_id = (
        await api.client.post(
            f"/v1/pools/{axg}/groups", json={"name": "g", "numbers": ["13700137000"]}
        )
    ).json()["group_id"]
    bound = []
    for i in range(4):
        response = await api.client.post(
            f"/v1/pools/{axb}/bindings",
            json={
                "type": "AXB",
                "a": f"1380013{i:04d}",
                "b": B,
                "x": None,
                "expires": api.expires(),
            }
            if i == 0
            else {
                "type": "AXB",
                "a": f"1380013{i:04d}",
                "b": f"1390013{i:04d}",
                "expires": api.expires(),
            },
        )
        assert response.status_code == 201
        bound.append(response.json())
    axg_bound = (
        await api.client.post(
            f"/v1/pools/{axg}/bindings",
            json={"type": "AXG", "a": A, "group_id": group_id, "expires": api.expires()},
        )
    ).json()
    await api.control.close()

    db = await Database.open(tmp_path / "maskline.sqlite3")
    fresh = ControlPlane(db=db, index=BindingIndex(), zone=ZONE, clock=clock)
    try:
        assert await fresh.load() == 5
        for item in bound:
            binding = fresh.index.get(SubId(item["sub_id"]))
            assert binding is not None and binding.x == item["secret_no"]
        member = fresh.index.resolve(
            PhoneNumber(axg_bound["secret_no"]), PhoneNumber("+8613700137000"), now=START + 1
        )
        assert isinstance(member, Route) and member.callee == A_E164
        # Inventory and load are back: the next bind goes to the less loaded X.
        counts = {x: sum(1 for b in bound if b["secret_no"] == x) for x in fresh.pool_numbers(axb)}
        least = min(counts, key=lambda x: counts[x])
        nxt = await fresh.bind(
            type=fresh.index.get(SubId(bound[0]["sub_id"])).type,  # type: ignore[union-attr]
            pool_key=axb,
            a="13500135000",
            b="13400134000",
            expires=api.expires(),
        )
        assert nxt.x == least
    finally:
        await fresh.close()
