"""The RPC endpoint at ``/`` over raw HTTP (DYPLSAPI.md §2 dispatch, §5 answers).

Requests are signed here (``rpc_support.sign_v2``/``sign_v3``) and sent through
``httpx.ASGITransport`` to the app of ``conftest.api``: fake clock (2030-01-01 12:00 Asia/Shanghai),
a real SQLite file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_support import Api
from rpc_support import nonce, sign_v2, sign_v3, snapshot

import store
from api.rpc_actions import UNSUPPORTED_ACTIONS, RpcActions
from api.rpc_nonces import NonceCache
from api.rpc_signing import RpcSignatureError
from api.tenants import NewTenant
from routing.index import Route
from routing.model import BindingType, PoolKey, SubId
from routing.numbers import national, normalize
from store import CallRecord, CallType, ReleaseDir

GATEWAY_FIELDS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
JSON_TYPE = "application/json;charset=utf-8"
BEIJING = [f"1700002{i:04d}" for i in range(30)]


async def _rpc(
    api: Api,
    tenant: NewTenant,
    action: str,
    params: Mapping[str, str] | None = None,
    *,
    scheme: str = "v2",
    method: str = "POST",
    form: Mapping[str, str] | None = None,
    request_nonce: str | None = None,
    version: str = "2017-05-25",
    secret: str | None = None,
) -> httpx.Response:
    """A signed request as an SDK would send it (v2: everything in the query; v3: headers)."""
    key_secret = tenant.access_key_secret if secret is None else secret
    common: dict[str, Any] = {
        "action": action,
        "params": params or {},
        "key_id": tenant.access_key_id,
        "secret": key_secret,
        "now": api.clock.now,
        "method": method,
        "version": version,
        "request_nonce": request_nonce,
    }
    if scheme == "v2":
        query = sign_v2(**common, form=form)
        body = httpx.QueryParams(form).__str__().encode() if form else b""
        headers = {"content-type": "application/x-www-form-urlencoded"} if form else {}
        return await api.client.request(
            method, f"/?{query}", content=body, headers={"authorization": "", **headers}
        )
    query, headers = sign_v3(**common)
    return await api.client.request(method, f"/?{query}", headers=headers)


def _gateway(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON_TYPE
    body: dict[str, Any] = response.json()
    assert set(body) == GATEWAY_FIELDS
    assert body["Code"] == code
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert len(body["RequestId"]) == 36 and body["RequestId"] == body["RequestId"].upper()
    return body


def _business(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    body: dict[str, Any] = response.json()
    assert set(body) == {"Code", "Message", "RequestId"}, body
    assert body["Code"] == code, body
    assert body["Message"]
    return body


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE
    body: dict[str, Any] = response.json()
    assert (body["Code"], body["Message"]) == ("OK", "OK"), body
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    return body


async def _unsigned(api: Api, method: str, url: str) -> httpx.Response:
    """A request without any Authorization header (the fixture's client adds a bearer one)."""
    request = api.client.build_request(method, url)
    del request.headers["authorization"]
    return await api.client.send(request)


async def _tenant(api: Api, name: str = "tenant") -> NewTenant:
    return await api.control.tenants.create_tenant(name)


async def _pool(api: Api, tenant: NewTenant, type_: BindingType, count: int = 2) -> str:
    key = await api.control.create_pool(type_, f"{type_} pool", tenant_id=tenant.tenant_id)
    if count:
        await api.control.add_numbers(key, count, city="北京")
    return key


@pytest.fixture
async def tenant(api: Api) -> NewTenant:
    await api.import_inventory()
    return await _tenant(api)


def _bind_params(api: Api, pool_key: str, **extra: str) -> dict[str, str]:
    return {
        "PoolKey": pool_key,
        "PhoneNoA": "13800000001",
        "PhoneNoB": "13900000002",
        "Expiration": api.expires(),
        **extra,
    }


# --------------------------------------------------------------------------- dispatch (§2)


@pytest.mark.parametrize("scheme", ["v2", "v3"])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_bind_with_either_scheme_and_method(
    api: Api, tenant: NewTenant, scheme: str, method: str
) -> None:
    pool_key = await _pool(api, tenant, BindingType.AXB)
    params = _bind_params(api, pool_key, IsRecordingEnabled="True", CallTimeout="30")
    body = _ok(await _rpc(api, tenant, "BindAxb", params, scheme=scheme, method=method))
    dto = body["SecretBindDTO"]
    assert set(dto) == {"Extension", "SecretNo", "SubsId"} and dto["Extension"] is None
    binding = api.control.index.get(SubId(dto["SubsId"]))
    assert binding is not None and binding.record is True and binding.ring_timeout_s == 30
    assert national(binding.x) == dto["SecretNo"]
    route = api.control.index.resolve(binding.x, normalize("13800000001"), now=api.clock.now)
    assert isinstance(route, Route) and route.callee == normalize("13900000002")


async def test_form_body_parameters_are_merged(api: Api, tenant: NewTenant) -> None:
    """SDK 1.0.0 sends its business parameters in a form body, signed with the query (§7)."""
    pool_key = await _pool(api, tenant, BindingType.AXB)
    form = _bind_params(api, pool_key, OutId="from the form")
    body = _ok(await _rpc(api, tenant, "BindAxb", {}, form=form))
    binding = api.control.index.get(SubId(body["SecretBindDTO"]["SubsId"]))
    assert binding is not None and binding.out_id == "from the form"


async def test_action_in_query_wins_over_header(api: Api, tenant: NewTenant) -> None:
    """v2: the signed ``Action`` parameter decides; an unsigned header cannot redirect it."""
    query = sign_v2(
        action="QuerySecretNoRemain",
        params={"City": "北京", "SpecId": "1"},
        key_id=tenant.access_key_id,
        secret=tenant.access_key_secret,
        now=api.clock.now,
    )
    response = await api.client.post(
        f"/?{query}", headers={"authorization": "", "x-acs-action": "BindAxb"}
    )
    body = _ok(response)
    assert body["SecretRemainDTO"]["Amount"] == 10


@pytest.mark.parametrize("scheme", ["v2", "v3"])
async def test_other_version_is_refused(api: Api, tenant: NewTenant, scheme: str) -> None:
    response = await _rpc(
        api, tenant, "QuerySecretNoRemain", {"City": "北京", "SpecId": "1"},
        scheme=scheme, version="2016-01-01",
    )  # fmt: skip
    _gateway(response, 400, "InvalidVersion")


@pytest.mark.parametrize("scheme", ["v2", "v3"])
async def test_unknown_and_unsupported_actions(api: Api, tenant: NewTenant, scheme: str) -> None:
    _gateway(await _rpc(api, tenant, "DropAllTables", scheme=scheme), 404, "InvalidApi.NotFound")
    for action in ("BindAxb700", "QuerySoundRecord", "CreatePickUpWaybill"):
        assert action in UNSUPPORTED_ACTIONS
        _business(await _rpc(api, tenant, action, scheme=scheme), "isv.FORBIDDEN_ACTION")


# --------------------------------------------------------------------------- error paths (§5)


async def test_every_error_path_answers_json(api: Api, tenant: NewTenant) -> None:
    # Unsigned, malformed signatures, wrong secrets, unknown and disabled keys.
    _gateway(await _unsigned(api, "POST", "/"), 400, "MissingAccessKeyId")
    _gateway(await _unsigned(api, "GET", "/?Action=BindAxb"), 400, "MissingAccessKeyId")
    bearer = await api.client.post("/")  # the operator's REST token means nothing here
    _gateway(bearer, 400, "IncompleteSignature")
    bad_auth = await api.client.post("/", headers={"authorization": "ACS3-HMAC-SHA256 nonsense"})
    _gateway(bad_auth, 400, "IncompleteSignature")
    wrong = await _rpc(api, tenant, "BindAxb", {}, secret="not-the-secret")
    assert (
        "server string to sign is:POST&%2F&"
        in _gateway(wrong, 400, "SignatureDoesNotMatch")["Message"]
    )
    wrong_v3 = await _rpc(api, tenant, "BindAxb", {}, scheme="v3", secret="not-the-secret")
    _gateway(wrong_v3, 400, "SignatureDoesNotMatch")
    stranger = dataclasses.replace(tenant, access_key_id="MLAKnobody")
    _gateway(await _rpc(api, stranger, "BindAxb", {}), 404, "InvalidAccessKeyId.NotFound")
    # Mandatory parameters (§6 "!") are gateway errors; malformed values business errors.
    pool_key = await _pool(api, tenant, BindingType.AXB)
    before = snapshot(api.db_path)
    missing = await _rpc(api, tenant, "BindAxb", {"PoolKey": pool_key, "Expiration": "x"})
    assert _gateway(missing, 400, "MissingPhoneNoA")["Message"] == (
        "PhoneNoA is mandatory for this action."
    )
    blank = await _rpc(api, tenant, "BindAxb", _bind_params(api, pool_key, PhoneNoA=""))
    _gateway(blank, 400, "MissingPhoneNoA")
    for name, value in (("CallTimeout", "soon"), ("IsRecordingEnabled", "yes"),
                        ("CallRestrict", "CONTROL_ALL"), ("CallDisplayType", "2")):  # fmt: skip
        refused = await _rpc(api, tenant, "BindAxb", _bind_params(api, pool_key, **{name: value}))
        assert name in _business(refused, "isv.INVALID_PARAMETERS")["Message"]
    batch = await _rpc(api, tenant, "BindBatchAxg", {"PoolKey": pool_key, "AxgBindList": "[{"})
    _business(batch, "isv.INVALID_PARAMETERS")
    no_pool = await _rpc(api, tenant, "BindAxb", _bind_params(api, "") | {"PoolKey": ""})
    assert "PoolKey" in _business(no_pool, "isv.INVALID_PARAMETERS")["Message"]
    assert snapshot(api.db_path) == before
    # Disabled key last (it stays disabled).
    await api.control.tenants.set_key_status(tenant.access_key_id, False)
    _gateway(await _rpc(api, tenant, "BindAxb", {}), 400, "InvalidAccessKeyId.Inactive")


async def test_unexpected_exception_is_a_json_500(
    api: Api, tenant: NewTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: RpcActions, call: object) -> dict[str, Any]:
        raise RuntimeError("boom")

    # The handler table is built per endpoint from bound methods: patch before the app exists.
    monkeypatch.setattr(RpcActions, "query_secret_no_remain", broken)
    from api.app import create_app

    app = create_app(api.control, operator_token=None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://maskline.test",
    ) as client:
        query = sign_v2(
            action="QuerySecretNoRemain",
            params={"City": "北京", "SpecId": "1"},
            key_id=tenant.access_key_id,
            secret=tenant.access_key_secret,
            now=api.clock.now,
        )
        response = await client.post(f"/?{query}")
    body = _gateway(response, 500, "isp.SYSTEM_ERROR")
    assert "boom" not in body["Message"]


# --------------------------------------------------------------------------- time and nonces


@pytest.mark.parametrize("scheme", ["v2", "v3"])
async def test_replayed_nonce_is_refused(api: Api, tenant: NewTenant, scheme: str) -> None:
    params = {"City": "北京", "SpecId": "1"}
    pinned = nonce()
    # A request that fails its signature does not use up the nonce.
    forged = await _rpc(
        api, tenant, "QuerySecretNoRemain", params, scheme=scheme, request_nonce=pinned,
        secret="forged",
    )  # fmt: skip
    _gateway(forged, 400, "SignatureDoesNotMatch")
    first = await _rpc(
        api, tenant, "QuerySecretNoRemain", params, scheme=scheme, request_nonce=pinned
    )
    _ok(first)
    again = await _rpc(
        api, tenant, "QuerySecretNoRemain", params, scheme=scheme, request_nonce=pinned
    )
    _gateway(again, 400, "SignatureNonceUsed")
    # Still refused at the edge of the window (15 min later, the same signed time accepted).
    api.clock.now += 14 * 60
    late = await _rpc(
        api, tenant, "QuerySecretNoRemain", params, scheme=scheme, request_nonce=pinned
    )
    _gateway(late, 400, "SignatureNonceUsed")


async def test_stale_and_future_timestamps(api: Api, tenant: NewTenant) -> None:
    params = {"City": "北京", "SpecId": "1"}
    signed_now = api.clock.now
    api.clock.now = signed_now + 16 * 60
    query = sign_v2(
        action="QuerySecretNoRemain",
        params=params,
        key_id=tenant.access_key_id,
        secret=tenant.access_key_secret,
        now=signed_now,
    )
    _gateway(await api.client.post(f"/?{query}"), 400, "InvalidTimeStamp.Expired")
    api.clock.now = signed_now - 16 * 60
    _gateway(await api.client.post(f"/?{query}"), 400, "InvalidTimeStamp.Expired")
    api.clock.now = signed_now + 14 * 60
    _ok(await api.client.post(f"/?{query}"))


def test_nonce_cache_expires_caps_and_sweeps() -> None:
    cache = NonceCache(ttl_s=100, max_per_key=2)
    cache.use("k1", "n1", now=0)
    with pytest.raises(RpcSignatureError) as used:
        cache.use("k1", "n1", now=99)
    assert (used.value.code, used.value.status) == ("SignatureNonceUsed", 400)
    cache.use("k2", "n1", now=1)  # nonces are per key
    cache.use("k1", "n2", now=2)
    with pytest.raises(RpcSignatureError) as full:
        cache.use("k1", "n3", now=3)
    assert full.value.code == "Throttling.User"
    with pytest.raises(RpcSignatureError):
        cache.use("k1", "n1", now=50)  # the refusal forgot nothing
    cache.use("k1", "n1", now=100)  # expired: usable again, and room was freed
    cache.use("k1", "n3", now=102)
    assert len(cache) == 3
    cache.use("k3", "n", now=1000)  # a later use sweeps every idle key
    assert len(cache) == 1


# --------------------------------------------------------------------------- tenant isolation


async def test_a_tenant_cannot_reach_another_tenants_resources(api: Api, tenant: NewTenant) -> None:
    """Every tenant-owned action, with the owner's PoolKey or with the intruder's own pool and
    the owner's SubsId/X/number/group/call: the not-found answer, nothing written."""
    control = api.control
    owner = tenant
    intruder = await _tenant(api, "intruder")
    await control.inventory.topup(intruder.tenant_id, Decimal("1000"))
    axb = await _pool(api, owner, BindingType.AXB)
    axn = await _pool(api, owner, BindingType.AXN)
    axg = await _pool(api, owner, BindingType.AXG)
    group_id = await control.lists.create_group(axg, "g", ["13700000001"], tenant=owner.tenant_id)
    binding = await control.bind(
        BindingType.AXB, axb, "13800000001", "13900000002", expires=api.expires(),
        tenant=owner.tenant_id,
    )  # fmt: skip
    x = national(binding.x)
    free_x = next(n for n in control.pool_numbers(PoolKey(axb)) if n != binding.x)
    await store.insert_call_record(
        control.db,
        CallRecord(
            id="rec-1", call_id="CALL1", secret_no=binding.x, call_type=CallType.A_TO_PEER,
            call_time=api.clock.now - 60, release_time=api.clock.now - 30,
            release_dir=ReleaseDir.CALLER, release_cause=16, pool_key=PoolKey(axb),
            sub_id=SubId(binding.sub_id), phone_no=binding.a, peer_no=binding.b,
            record_url="https://records.example/1.wav",
        ),
    )  # fmt: skip
    own_axb = await _pool(api, intruder, BindingType.AXB)
    own_axg = await _pool(api, intruder, BindingType.AXG)
    sub = binding.sub_id
    expires = api.expires()
    pool_gone, subs_gone = "isv.POOLKEY_NOT_EXISTS", "isv.SUBS_NOT_EXIST"
    no_number, no_group = "isv.NO_NOT_EXIST", "isv.GROUP_NOT_EXIST"
    attempts: list[tuple[str, dict[str, str], str]] = [
        ("BindAxb", _bind_params(api, axb), pool_gone),
        ("BindAxb", _bind_params(api, own_axb, PhoneNoX=national(free_x)), no_number),
        ("BindAxn", {"PoolKey": axn, "PhoneNoA": "13800000005", "Expiration": expires}, pool_gone),
        ("BindAxnExtension", {"PoolKey": axn, "PhoneNoA": "13800000005", "Expiration": expires},
         pool_gone),
        ("BindAxg", {"PoolKey": axg, "PhoneNoA": "13800000005", "GroupId": group_id,
                     "Expiration": expires}, pool_gone),
        ("BindAxg", {"PoolKey": own_axg, "PhoneNoA": "13800000005", "GroupId": group_id,
                     "Expiration": expires}, no_group),
        ("BindBatchAxg", {"PoolKey": axg, "AxgBindList":
                          f'[{{"GroupId":"{group_id}","PhoneNoA":"13800000005",'
                          f'"Expiration":"{expires}"}}]'}, pool_gone),
        ("UnbindSubscription", {"PoolKey": axb, "SubsId": sub, "SecretNo": x}, pool_gone),
        ("UnbindSubscription", {"PoolKey": own_axb, "SubsId": sub, "SecretNo": x}, subs_gone),
        ("UpdateSubscription", {"PoolKey": axb, "SubsId": sub, "PhoneNoX": x,
                                "OperateType": "updateNoB", "PhoneNoB": "13900000009"},
         pool_gone),
        ("UpdateSubscription", {"PoolKey": own_axb, "SubsId": sub, "PhoneNoX": x,
                                "OperateType": "updateExpire", "Expiration": expires}, subs_gone),
        ("QuerySubscriptionDetail", {"PoolKey": axb, "SubsId": sub, "PhoneNoX": x}, pool_gone),
        ("QuerySubscriptionDetail", {"PoolKey": own_axb, "SubsId": sub, "PhoneNoX": x},
         subs_gone),
        ("QuerySubsId", {"PoolKey": axb, "PhoneNoX": x}, pool_gone),
        ("QuerySubsId", {"PoolKey": own_axb, "PhoneNoX": x}, subs_gone),
        ("QuerySecretNoDetail", {"PoolKey": axb, "SecretNo": x}, pool_gone),
        ("QuerySecretNoDetail", {"PoolKey": own_axb, "SecretNo": x}, no_number),
        ("BuySecretNo", {"PoolKey": axb, "City": "北京", "SpecId": "1"}, pool_gone),
        ("ReleaseSecretNo", {"PoolKey": axb, "SecretNo": national(free_x)}, pool_gone),
        ("ReleaseSecretNo", {"PoolKey": own_axb, "SecretNo": national(free_x)}, no_number),
        ("LockSecretNo", {"PoolKey": axb, "SecretNo": x}, pool_gone),
        ("LockSecretNo", {"PoolKey": own_axb, "SecretNo": x}, no_number),
        ("UnlockSecretNo", {"PoolKey": own_axb, "SecretNo": x}, no_number),
        ("CreateAxgGroup", {"PoolKey": axg, "Name": "mine", "Numbers": "13700000002"}, pool_gone),
        ("OperateAxgGroup", {"PoolKey": axg, "GroupId": group_id, "Numbers": "13700000002",
                             "OperateType": "addNumbers"}, pool_gone),
        ("OperateAxgGroup", {"PoolKey": own_axg, "GroupId": group_id, "Numbers": "13700000002",
                             "OperateType": "overwriteNumbers"}, no_group),
        ("DeleteAxgGroup", {"PoolKey": axg, "GroupId": group_id}, pool_gone),
        ("DeleteAxgGroup", {"PoolKey": own_axg, "GroupId": group_id}, no_group),
        ("OperateBlackNo", {"PoolKey": axn, "BlackNo": "13600000001", "OperateType": "AddBlack"},
         pool_gone),
        ("AddSecretBlacklist", {"PoolKey": axb, "BlackNo": "13800000001:13900000002",
                                "BlackType": "POINT_TO_POINT_BLACK"}, pool_gone),
        ("DeleteSecretBlacklist", {"PoolKey": axn, "BlackNo": "13600000001",
                                   "BlackType": "PARTNER_GLOBAL_NUMBER_BLACK"}, pool_gone),
        ("QueryRecordFileDownloadUrl", {"CallId": "CALL1"}, "isv.CALL_NOT_EXIST"),
        ("QueryRecordFileDownloadUrl", {"CallId": "CALL1", "PoolKey": axb}, pool_gone),
        ("QueryCallStatus", {"PoolKey": axb, "SubsId": sub}, pool_gone),
        ("QueryCallStatus", {"PoolKey": own_axb, "SubsId": sub}, subs_gone),
    ]  # fmt: skip
    # Every action that touches a tenant's resources is tried (remaining stock is global).
    tried = {action for action, _params, _code in attempts}
    assert tried == set(RpcActions(control).handlers) - {"QuerySecretNoRemain"}
    before = snapshot(api.db_path)
    indexed = len(control.index)
    for scheme in ("v2", "v3"):
        for action, params, code in attempts:
            response = await _rpc(api, intruder, action, params, scheme=scheme)
            assert response.status_code == 200, (action, response.text)
            assert response.json()["Code"] == code, (action, params, response.json())
    assert snapshot(api.db_path) == before
    assert len(control.index) == indexed
    route = control.index.resolve(binding.x, binding.a, now=api.clock.now)
    assert isinstance(route, Route) and route.binding.b == normalize("13900000002")
    # The owner still sees everything.
    detail = _ok(await _rpc(api, owner, "QuerySubscriptionDetail",
                            {"PoolKey": axb, "SubsId": sub, "PhoneNoX": x}))  # fmt: skip
    assert detail["SecretBindDetailDTO"]["PhoneNoB"] == "13900000002"


async def test_oversized_body_is_refused_as_json(api: Api, tenant: NewTenant) -> None:
    query = sign_v2(
        action="QuerySecretNoRemain",
        params={"City": "北京", "SpecId": "1"},
        key_id=tenant.access_key_id,
        secret=tenant.access_key_secret,
        now=api.clock.now,
    )
    big = b"x" * (1024 * 1024 + 1)
    response = await api.client.post(
        f"/?{query}", content=big, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _gateway(response, 400, "InvalidParameter")

    async def chunks() -> Any:
        for _ in range(3):
            yield b"y" * (512 * 1024)

    chunked = await api.client.post(f"/?{query}", content=chunks())
    _gateway(chunked, 400, "InvalidParameter")


async def test_bind_axn_on_a_95_pool_binds_95axn(api: Api, tenant: NewTenant) -> None:
    pool_key = await api.control.create_pool(
        BindingType.AXN95, "95 pool", tenant_id=tenant.tenant_id
    )
    await api.control.add_numbers(pool_key, 1, city="全国")
    params = {"PoolKey": pool_key, "PhoneNoA": "13800000001", "Expiration": api.expires()}
    body = _ok(await _rpc(api, tenant, "BindAxn", params))
    assert body["SecretBindDTO"]["SecretNo"].startswith("950")
    binding = api.control.index.get(SubId(body["SecretBindDTO"]["SubsId"]))
    assert binding is not None and binding.type is BindingType.AXN95


async def test_json_types_of_the_answers(api: Api, tenant: NewTenant) -> None:
    """``:i`` fields are JSON numbers, ``:b`` booleans, times local ``yyyy-MM-dd HH:mm:ss``."""
    pool_key = await _pool(api, tenant, BindingType.AXG)
    created = _ok(
        await _rpc(api, tenant, "CreateAxgGroup", {"PoolKey": pool_key, "Numbers": "13700000001"})
    )
    assert type(created["GroupId"]) is int
    expiration = api.expires(600)
    bound = _ok(
        await _rpc(
            api,
            tenant,
            "BindAxg",
            {
                "PoolKey": pool_key,
                "PhoneNoA": "13800000001",
                "GroupId": str(created["GroupId"]),
                "Expiration": expiration,
                "IsRecordingEnabled": "TRUE",
            },
        )
    )["SecretBindDTO"]
    query = {"PoolKey": pool_key, "SubsId": bound["SubsId"], "PhoneNoX": bound["SecretNo"]}
    detail = _ok(await _rpc(api, tenant, "QuerySubscriptionDetail", query))["SecretBindDetailDTO"]
    assert detail == {
        "ASRModelId": None,
        "ASRStatus": False,
        "CallRestrict": None,
        "ExpireDate": expiration,
        "Extension": None,
        "GmtCreate": api.expires(0),
        "GroupId": created["GroupId"],
        "NeedRecord": True,
        "PhoneNoA": "13800000001",
        "PhoneNoB": None,
        "PhoneNoX": bound["SecretNo"],
        "Status": 1,
        "SubsId": bound["SubsId"],
    }
    api.clock.now += 601  # expired, not yet unbound: Status 0
    expired = _ok(await _rpc(api, tenant, "QuerySubscriptionDetail", query))
    assert expired["SecretBindDetailDTO"]["Status"] == 0


async def test_control_errors_keep_their_meaning(api: Api, tenant: NewTenant) -> None:
    """Codes without a reference name become ``isv.<CODE>``; nothing is bought without money."""
    pool_key = await _pool(api, tenant, BindingType.AXB, count=0)
    before = snapshot(api.db_path)
    params = {"PoolKey": pool_key, "City": "北京", "SpecId": "1"}
    _business(await _rpc(api, tenant, "BuySecretNo", params), "isv.NOT_ENOUGH_BALANCE")
    wrong_spec = await _rpc(api, tenant, "BuySecretNo", params | {"SpecId": "3"})
    _business(wrong_spec, "isv.INVALID_PARAMETERS")
    assert snapshot(api.db_path) == before
    await api.control.inventory.topup(tenant.tenant_id, Decimal("100"))
    body = _ok(await _rpc(api, tenant, "BuySecretNo", params))
    assert body["SecretBuyInfoDTO"]["SecretNo"].startswith("170")


async def test_security_tokens_are_refused(api: Api, tenant: NewTenant) -> None:
    params = {"City": "北京", "SpecId": "1", "SecurityToken": "sts-token"}
    v2 = await _rpc(api, tenant, "QuerySecretNoRemain", params)
    _gateway(v2, 400, "InvalidSecurityToken.Malformed")
    query, headers = sign_v3(
        action="QuerySecretNoRemain",
        params={"City": "北京", "SpecId": "1"},
        key_id=tenant.access_key_id,
        secret=tenant.access_key_secret,
        now=api.clock.now,
    )
    v3 = await api.client.post(f"/?{query}", headers={**headers, "x-acs-security-token": "t"})
    _gateway(v3, 400, "InvalidSecurityToken.Malformed")
