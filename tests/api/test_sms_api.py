"""SMS over REST and the CLI: pool SMS settings, listing, confirm and discard of held messages,
tenant scoping (another tenant's message or pool answers as a missing one), errors as
``{"code", "message"}`` with nothing changed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from api_support import Api
from cli_support import Cli
from tenants_support import basic
from test_sms_support import A_NO, B_NO, SmsScene, make_sms_scene, messages, rows

from routing.sms import SIGNATURE
from store import SmsMode


@pytest.fixture
async def scene(api: Api) -> AsyncIterator[SmsScene]:
    made = await make_sms_scene(api)
    yield made
    await made.service.close()
    await made.reports.close()


def as_a(scene: SmsScene) -> dict[str, str]:
    return basic(scene.a.access_key_id, scene.a.access_key_secret)


def as_b(scene: SmsScene) -> dict[str, str]:
    return basic(scene.b.access_key_id, scene.b.access_key_secret)


async def test_pool_sms_settings_over_rest(scene: SmsScene) -> None:
    client = scene.api.client
    path = f"/v1/pools/{scene.axb}/sms"
    shown = await client.get(path, headers=as_a(scene))
    assert shown.status_code == 200
    assert shown.json() == {
        "pool_key": scene.axb,
        "sms_mode": "off",
        "keywords": [],
        "confirm": False,
    }
    changed = await client.put(
        path,
        json={"sms_mode": "intercept", "keywords": ["验证码", " code "], "confirm": True},
        headers=as_a(scene),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "pool_key": scene.axb, "sms_mode": "intercept", "keywords": ["验证码", "code"],
        "confirm": True,
    }  # fmt: skip
    # The pool view shows the mode too (one setting, two routes).
    assert (await client.get(f"/v1/pools/{scene.axb}")).json()["sms_mode"] == "intercept"
    # Only what is named changes.
    again = await client.put(path, json={"confirm": False}, headers=as_a(scene))
    assert again.json()["keywords"] == ["验证码", "code"] and again.json()["confirm"] is False


async def test_pool_sms_errors_change_nothing(scene: SmsScene) -> None:
    client = scene.api.client
    before = scene.api.snapshot()
    foreign = await client.put(
        f"/v1/pools/{scene.axb}/sms", json={"sms_mode": "smart"}, headers=as_b(scene)
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "POOL_NOT_EXIST"
    axn95 = await client.put(
        f"/v1/pools/{scene.axn95}/sms", json={"sms_mode": "smart"}, headers=as_a(scene)
    )
    assert axn95.status_code == 400 and "95AXN" in axn95.json()["message"]
    bad_mode = await client.put(f"/v1/pools/{scene.axb}/sms", json={"sms_mode": "loud"})
    assert bad_mode.status_code == 400 and bad_mode.json()["code"] == "PARAMETER_ILLEGAL"
    long_keyword = await client.put(f"/v1/pools/{scene.axb}/sms", json={"keywords": ["k" * 65]})
    assert long_keyword.status_code == 400
    unknown = await client.put(f"/v1/pools/{scene.axb}/sms", json={"colour": "red"})
    assert unknown.status_code == 400
    assert scene.api.snapshot() == before


async def test_confirm_and_discard_over_rest(scene: SmsScene) -> None:
    client = scene.api.client
    await scene.mode(scene.axb, SmsMode.SMART)
    await client.put(f"/v1/pools/{scene.axb}/sms", json={"confirm": True}, headers=as_a(scene))
    await scene.text(scene.axb_binding.x, A_NO, "第一条")
    await scene.text(scene.axb_binding.x, B_NO, "第二条")
    listed = await client.get("/v1/sms", params={"state": "pending"}, headers=as_a(scene))
    assert listed.status_code == 200
    held = listed.json()["messages"]
    assert sorted(m["content"] for m in held) == ["第一条", "第二条"]
    assert all(m["state"] == "pending" and m["confirm_deadline"] for m in held)
    first = next(m for m in held if m["content"] == "第一条")
    second = next(m for m in held if m["content"] == "第二条")
    # Tenant B: nothing listed, and A's messages answer exactly as unknown ones.
    assert (await client.get("/v1/sms", headers=as_b(scene))).json() == {"messages": []}
    before = scene.api.snapshot()
    for verb, suffix in (("GET", ""), ("POST", "/confirm"), ("POST", "/discard")):
        theirs = await client.request(verb, f"/v1/sms/{first['id']}{suffix}", headers=as_b(scene))
        missing = await client.request(verb, f"/v1/sms/nosuchsms{suffix}", headers=as_b(scene))
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["code"] == missing.json()["code"] == "SMS_NOT_EXIST"
    assert scene.api.snapshot() == before
    confirmed = await client.post(f"/v1/sms/{first['id']}/confirm", headers=as_a(scene))
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "sending"
    await scene.service.settle()
    assert [(to, text.startswith(SIGNATURE)) for to, _x, text in scene.trunk.sent] == [(B_NO, True)]
    twice = await client.post(f"/v1/sms/{first['id']}/confirm", headers=as_a(scene))
    assert twice.status_code == 409 and twice.json()["code"] == "SMS_NOT_PENDING"
    dropped = await client.post(f"/v1/sms/{second['id']}/discard", headers=as_a(scene))
    assert dropped.status_code == 200 and dropped.json()["state"] == "discarded"
    shown = await client.get(f"/v1/sms/{first['id']}", headers=as_a(scene))
    assert shown.json()["state"] == "delivered" and shown.json()["sip_status"] == 200
    assert len(scene.trunk.sent) == 1
    # Each SMS is a call record too: A sent the first (2); the discarded one is 5.
    for message_id, call_type in ((first["id"], 2), (second["id"], 5)):
        record = await client.get(f"/v1/calls/{message_id}", headers=as_a(scene))
        assert record.status_code == 200, record.text
        assert record.json()["calls"][0]["call_type"] == call_type
    foreign = await client.get(f"/v1/calls/{first['id']}", headers=as_b(scene))
    assert foreign.status_code == 404


async def test_list_validation(scene: SmsScene) -> None:
    client = scene.api.client
    bad_state = await client.get("/v1/sms", params={"state": "lost"})
    assert bad_state.status_code == 400 and bad_state.json()["code"] == "PARAMETER_ILLEGAL"
    bad_limit = await client.get("/v1/sms", params={"limit": 0})
    assert bad_limit.status_code == 400
    foreign_pool = await client.get("/v1/sms", params={"pool_key": scene.axb}, headers=as_b(scene))
    assert foreign_pool.status_code == 404 and foreign_pool.json()["code"] == "POOL_NOT_EXIST"


@pytest.fixture
async def cli_scene(cli: Cli, scene: SmsScene) -> tuple[Cli, SmsScene]:
    return cli, scene


async def test_cli(cli_scene: tuple[Cli, SmsScene]) -> None:
    cli, scene = cli_scene
    code, out = await cli(
        "sms", "pool-set", "--pool", scene.axb, "--mode", "smart", "--keywords", "a,b", "--confirm"
    )
    assert code == 0, out
    assert out == [
        {"pool_key": scene.axb, "sms_mode": "smart", "keywords": ["a", "b"], "confirm": True}
    ]
    code, out = await cli("sms", "pool-show", "--pool", scene.axb)
    assert out[0]["confirm"] is True
    await scene.text(scene.axb_binding.x, A_NO, "取件码 1234")
    code, out = await cli("sms", "list", "--state", "pending")
    assert code == 0 and [m["content"] for m in out] == ["取件码 1234"]
    message_id = out[0]["id"]
    code, out = await cli("sms", "confirm", message_id)
    assert code == 0 and out[0]["state"] == "sending"
    await scene.service.settle()
    code, out = await cli("sms", "show", message_id)
    assert out[0]["state"] == "delivered"
    code, out = await cli("sms", "discard", message_id)
    assert code == 1 and out == [
        {"code": "SMS_NOT_PENDING", "message": f"SMS {message_id!r} is not held for confirmation"}
    ]
    code, out = await cli("sms", "pool-set", "--pool", scene.axb, "--no-keywords", "--no-confirm")
    assert out[0]["keywords"] == [] and out[0]["confirm"] is False
    code, out = await cli("sms", "show", "nosuchsms")
    assert code == 1 and out[0]["code"] == "SMS_NOT_EXIST"
    code, out = await cli("sms", "list", "--state", "lost")
    assert code == 2
    assert [m["state"] for m in messages(scene.db_path)] == ["delivered"]
    assert rows(scene.db_path, "SELECT COUNT(*) FROM call_records") == [(1,)]
