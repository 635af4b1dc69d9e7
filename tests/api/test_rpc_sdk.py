"""The RPC API driven by the official SDK (``alibabacloud-dyplsapi20170525`` 2.5.1).

A real uvicorn server on a loopback port serves ``create_app`` over a real SQLite control plane;
a tenant created through ``control.tenants.create_tenant`` calls it with the SDK's ``Client``
under both signature settings (``signature_algorithm`` unset = ACS3-HMAC-SHA256, ``'v2'`` = RPC
HMAC-SHA1), exactly as an application written for the reference service would.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from alibabacloud_dyplsapi20170525 import models as dm
from alibabacloud_dyplsapi20170525.client import Client
from alibabacloud_openapi_util.client import Client as OpenApiUtilClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_util import models as util_models
from rpc_support import INVENTORY, RpcServer, local

import store
from api.tenants import NewTenant
from routing.index import Intercept, Route
from routing.model import BindingType, PhoneNumber, PoolKey, SubId
from routing.numbers import normalize
from store import CallRecord, CallType, ReleaseDir

SCHEMES = [pytest.param(None, id="v3"), pytest.param("v2", id="v2")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RpcServer]:
    running = RpcServer(tmp_path_factory.mktemp("rpc") / "maskline.sqlite3").start()
    running.run(running.control.import_numbers(INVENTORY))
    yield running
    running.stop()


@pytest.fixture
def tenant(server: RpcServer) -> NewTenant:
    return server.run(server.control.tenants.create_tenant("sdk tenant"))


@pytest.fixture(params=SCHEMES)
def client(request: pytest.FixtureRequest, server: RpcServer, tenant: NewTenant) -> Client:
    return _client(server, tenant.access_key_id, tenant.access_key_secret, request.param)


def _client(server: RpcServer, key_id: str, secret: str, scheme: str | None) -> Client:
    config = Config(
        access_key_id=key_id,
        access_key_secret=secret,
        endpoint=server.endpoint,
        protocol="http",
    )
    if scheme is not None:
        config.signature_algorithm = scheme
    return Client(config)


def _pool(
    server: RpcServer, tenant: NewTenant, type_: BindingType, count: int = 2, city: str = "北京"
) -> str:
    control = server.control
    key = server.run(control.create_pool(type_, f"{type_} pool", tenant_id=tenant.tenant_id))
    if count:
        server.run(control.add_numbers(key, count, city=city))
    return key


def _expires(server: RpcServer, ahead_s: float = 3600) -> str:
    return local(server.clock() + ahead_s)


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200
    assert resp.body.code == "OK", (resp.body.code, resp.body.message)
    assert resp.body.message == "OK"
    assert len(resp.body.request_id) == 36
    assert resp.body.request_id == resp.body.request_id.upper()
    assert resp.headers["x-acs-request-id"] == resp.body.request_id
    return resp.body


def test_bind_axb_routes_at_once(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    pool_key = _pool(server, tenant, BindingType.AXB)
    body = _ok(
        client.bind_axb(
            dm.BindAxbRequest(
                pool_key=pool_key,
                phone_no_a="13800000001",
                phone_no_b="13900000002",
                expiration=_expires(server),
                is_recording_enabled=True,
                out_id="order a b*c~d",
            )
        )
    )
    dto = body.secret_bind_dto
    assert dto.subs_id.isdigit()
    assert dto.secret_no.startswith("170") and len(dto.secret_no) == 11
    route = server.control.index.resolve(
        normalize(dto.secret_no), normalize("13800000001"), now=server.clock()
    )
    assert isinstance(route, Route)
    assert route.callee == normalize("13900000002")
    assert route.binding.out_id == "order a b*c~d"
    assert route.binding.record is True


def _e164(number: str) -> PhoneNumber:
    return normalize(number)


def _bind_axb(
    server: RpcServer, client: Client, pool_key: str, a: str, b: str, **extra: Any
) -> Any:
    return _ok(
        client.bind_axb(
            dm.BindAxbRequest(
                pool_key=pool_key,
                phone_no_a=a,
                phone_no_b=b,
                expiration=_expires(server),
                **extra,
            )
        )
    ).secret_bind_dto


def _detail(client: Client, pool_key: str, dto: Any) -> Any:
    body = _ok(
        client.query_subscription_detail(
            dm.QuerySubscriptionDetailRequest(
                pool_key=pool_key, subs_id=dto.subs_id, phone_no_x=dto.secret_no
            )
        )
    )
    return body.secret_bind_detail_dto


def _call_api(client: Client, action: str, query: dict[str, Any]) -> dict[str, Any]:
    """An action the 2.5.1 SDK has no method for, sent by its own generic RPC call."""
    params = open_api_models.Params(
        action=action,
        version="2017-05-25",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = open_api_models.OpenApiRequest(query=OpenApiUtilClient.query(query))
    result: dict[str, Any] = client.call_api(params, request, util_models.RuntimeOptions())
    return result


# --------------------------------------------------------------------------- bindings


def test_bind_axn_and_extension(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    axn_pool = _pool(server, tenant, BindingType.AXN)
    expiration = _expires(server)
    dto = _ok(
        client.bind_axn(
            dm.BindAxnRequest(
                pool_key=axn_pool,
                phone_no_a="13800000011",
                phone_no_b="13900000012",
                expiration=expiration,
                call_restrict="CONTROL_AX_DISABLE",
            )
        )
    ).secret_bind_dto
    assert dto.secret_no.startswith("170") and dto.subs_id.isdigit()
    detail = _detail(client, axn_pool, dto)
    assert detail.phone_no_a == "13800000011"
    assert detail.phone_no_b == "13900000012"
    assert detail.phone_no_x == dto.secret_no
    assert detail.call_restrict == "CONTROL_AX_DISABLE"
    assert detail.status == 1 and detail.need_record is False and detail.asrstatus is False
    assert detail.expire_date == expiration
    assert detail.gmt_create is not None and detail.gmt_create < expiration
    # Any N reaches A through X.
    route = server.control.index.resolve(
        _e164(dto.secret_no), _e164("13600000013"), now=server.clock()
    )
    assert isinstance(route, Route) and route.callee == _e164("13800000011")

    ext_pool = _pool(server, tenant, BindingType.AXN_EXT)
    ext = _ok(
        client.bind_axn_extension(
            dm.BindAxnExtensionRequest(
                pool_key=ext_pool,
                phone_no_a="13800000014",
                extension="12",
                expiration=_expires(server),
            )
        )
    ).secret_bind_dto
    assert ext.extension == "12"
    allocated = _ok(
        client.bind_axn_extension(
            dm.BindAxnExtensionRequest(
                pool_key=ext_pool,
                phone_no_a="13800000015",
                phone_no_x=ext.secret_no,
                expiration=_expires(server),
            )
        )
    ).secret_bind_dto
    assert allocated.secret_no == ext.secret_no
    assert allocated.extension not in (None, "", "12") and allocated.extension.isdigit()


def test_axg_groups_and_batch(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    pool_key = _pool(server, tenant, BindingType.AXG, count=4)
    created = _ok(
        client.create_axg_group(
            dm.CreateAxgGroupRequest(
                pool_key=pool_key, name="drivers", numbers="13700000001,13700000002"
            )
        )
    )
    assert isinstance(created.group_id, int)
    group_id = created.group_id
    dto = _ok(
        client.bind_axg(
            dm.BindAxgRequest(
                pool_key=pool_key,
                group_id=str(group_id),
                phone_no_a="13800000021",
                expiration=_expires(server),
            )
        )
    ).secret_bind_dto
    x = _e164(dto.secret_no)
    now = server.clock()
    assert isinstance(server.control.index.resolve(x, _e164("13700000001"), now=now), Route)
    assert isinstance(server.control.index.resolve(x, _e164("13700000003"), now=now), Intercept)
    # addNumbers lets a new member in at once.
    _ok(
        client.operate_axg_group(
            dm.OperateAxgGroupRequest(
                pool_key=pool_key,
                group_id=group_id,
                operate_type="addNumbers",
                numbers="13700000003",
            )
        )
    )
    assert isinstance(server.control.index.resolve(x, _e164("13700000003"), now=now), Route)
    detail = _detail(client, pool_key, dto)
    assert detail.group_id == group_id

    # updateAxgGroup moves the binding to another group of the pool.
    other = _ok(
        client.create_axg_group(
            dm.CreateAxgGroupRequest(pool_key=pool_key, name="riders", numbers="13700000009")
        )
    ).group_id
    _ok(
        client.update_subscription(
            dm.UpdateSubscriptionRequest(
                pool_key=pool_key,
                subs_id=dto.subs_id,
                phone_no_x=dto.secret_no,
                operate_type="updateAxgGroup",
                group_id=other,
            )
        )
    )
    assert _detail(client, pool_key, dto).group_id == other
    assert isinstance(server.control.index.resolve(x, _e164("13700000009"), now=now), Route)

    # A batch: one good item, one with an illegal A; each answers for itself.
    batch = _ok(
        client.bind_batch_axg(
            dm.BindBatchAxgRequest(
                pool_key=pool_key,
                axg_bind_list=[
                    dm.BindBatchAxgRequestAxgBindList(
                        group_id=str(group_id),
                        phone_no_a="13800000022",
                        expiration=_expires(server),
                        is_recording_enabled=True,
                    ),
                    dm.BindBatchAxgRequestAxgBindList(
                        group_id=str(group_id),
                        phone_no_a="12",
                        expiration=_expires(server),
                    ),
                ],
            )
        )
    )
    good, bad = batch.secret_bind_list.secret_bind
    assert good.code == "OK" and good.subs_id.isdigit() and good.secret_no.startswith("170")
    assert good.phone_no_a == "13800000022" and good.group_id == str(group_id)
    assert bad.code == "isv.MOBILE_NUMBER_ILLEGAL" and bad.subs_id is None

    # A group no binding uses can be deleted; then it is gone.
    unused = _ok(
        client.create_axg_group(
            dm.CreateAxgGroupRequest(pool_key=pool_key, name="spare", numbers="13700000005")
        )
    ).group_id
    _ok(client.delete_axg_group(dm.DeleteAxgGroupRequest(pool_key=pool_key, group_id=unused)))
    again = client.delete_axg_group(dm.DeleteAxgGroupRequest(pool_key=pool_key, group_id=unused))
    assert again.body.code == "isv.GROUP_NOT_EXIST"


def test_update_subscription_every_operate_type(
    server: RpcServer, tenant: NewTenant, client: Client
) -> None:
    pool_key = _pool(server, tenant, BindingType.AXB)
    dto = _bind_axb(server, client, pool_key, "13800000031", "13900000032")

    def update(operate_type: str, **fields: Any) -> Any:
        return client.update_subscription(
            dm.UpdateSubscriptionRequest(
                pool_key=pool_key,
                subs_id=dto.subs_id,
                phone_no_x=dto.secret_no,
                operate_type=operate_type,
                **fields,
            )
        )

    _ok(update("updateNoA", phone_no_a="13800000033"))
    _ok(update("updateNoB", phone_no_b="13900000034"))
    new_expiry = _expires(server, 7200)
    _ok(update("updateExpire", expiration=new_expiry))
    _ok(update("updateCallRestrict", call_restrict="CONTROL_AX_DISABLE"))
    _ok(update("updateOutId", out_id="order-2"))
    _ok(update("updateIsRecordingEnabled", is_recording_enabled=True))
    _ok(update("updateCallDisplayType", call_display_type=1))
    detail = _detail(client, pool_key, dto)
    assert (detail.phone_no_a, detail.phone_no_b) == ("13800000033", "13900000034")
    assert detail.expire_date == new_expiry
    assert detail.call_restrict == "CONTROL_AX_DISABLE"
    assert detail.need_record is True
    binding = server.control.index.get(dto.subs_id)
    assert binding is not None and binding.out_id == "order-2"
    # A may not call X now; clearing the restriction lets it through again.
    x, a = _e164(dto.secret_no), _e164("13800000033")
    assert isinstance(server.control.index.resolve(x, a, now=server.clock()), Intercept)
    _ok(update("updateCallRestrict", call_restrict="CONTROL_CLEAR_DISABLE"))
    assert _detail(client, pool_key, dto).call_restrict is None
    route = server.control.index.resolve(x, a, now=server.clock())
    assert isinstance(route, Route) and route.callee == _e164("13900000034")
    # Refusals: a missing field for the operation, an unknown operation, a past expiry.
    assert update("updateNoA").body.code == "isv.INVALID_PARAMETERS"
    assert update("updateEverything").body.code == "isv.INVALID_PARAMETERS"
    past = update("updateExpire", expiration=local(server.clock() - 60))
    assert past.body.code == "isv.EXPIRE_DATE_ILLEGAL"
    assert _detail(client, pool_key, dto).expire_date == new_expiry


def test_query_subs_id_and_unbind(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    pool_key = _pool(server, tenant, BindingType.AXB, count=1)
    dto = _bind_axb(server, client, pool_key, "13800000041", "13900000042")
    found = _ok(
        client.query_subs_id(dm.QuerySubsIdRequest(pool_key=pool_key, phone_no_x=dto.secret_no))
    )
    assert found.subs_id == dto.subs_id
    wrong_x = client.unbind_subscription(
        dm.UnbindSubscriptionRequest(
            pool_key=pool_key, subs_id=dto.subs_id, secret_no="17000019999"
        )
    )
    assert wrong_x.body.code == "isv.SUBS_NOT_EXIST"
    _ok(
        client.unbind_subscription(
            dm.UnbindSubscriptionRequest(
                pool_key=pool_key, subs_id=dto.subs_id, secret_no=dto.secret_no
            )
        )
    )
    gone = client.query_subscription_detail(
        dm.QuerySubscriptionDetailRequest(
            pool_key=pool_key, subs_id=dto.subs_id, phone_no_x=dto.secret_no
        )
    )
    assert gone.status_code == 200 and gone.body.code == "isv.SUBS_NOT_EXIST"
    assert gone.body.secret_bind_detail_dto is None
    resolution = server.control.index.resolve(
        _e164(dto.secret_no), _e164("13800000041"), now=server.clock()
    )
    assert not isinstance(resolution, Route)
    none_left = client.query_subs_id(
        dm.QuerySubsIdRequest(pool_key=pool_key, phone_no_x=dto.secret_no)
    )
    assert none_left.body.code == "isv.SUBS_NOT_EXIST"


# --------------------------------------------------------------------------- numbers


def test_numbers_buy_detail_lock_release(
    server: RpcServer, tenant: NewTenant, client: Client
) -> None:
    server.run(server.control.inventory.topup(tenant.tenant_id, Decimal("1000")))
    pool_key = _pool(server, tenant, BindingType.AXB, count=0)
    remain = _ok(
        client.query_secret_no_remain(dm.QuerySecretNoRemainRequest(city="深圳", spec_id=2))
    ).secret_remain_dto
    assert isinstance(remain.amount, int) and remain.amount > 0
    assert remain.remain_dtolist.remain_dto[0].city == "深圳"
    bought = _ok(
        client.buy_secret_no(
            dm.BuySecretNoRequest(pool_key=pool_key, city="深圳", spec_id=2, secret_no="1710001")
        )
    ).secret_buy_info_dto.secret_no
    assert bought.startswith("1710001") and len(bought) == 11
    after = _ok(
        client.query_secret_no_remain(dm.QuerySecretNoRemainRequest(city="深圳", spec_id=2))
    ).secret_remain_dto
    assert after.amount == remain.amount - 1

    def detail() -> Any:
        return _ok(
            client.query_secret_no_detail(
                dm.QuerySecretNoDetailRequest(pool_key=pool_key, secret_no=bought)
            )
        ).secret_no_info_dto

    info = detail()
    assert (info.secret_status, info.vendor, info.city) == (0, 2, "深圳")
    assert info.certify_status in (0, 1) and info.purchase_time is not None
    _ok(client.lock_secret_no(dm.LockSecretNoRequest(pool_key=pool_key, secret_no=bought)))
    assert detail().secret_status == 2
    _ok(client.unlock_secret_no(dm.UnlockSecretNoRequest(pool_key=pool_key, secret_no=bought)))
    assert detail().secret_status == 0
    _ok(client.release_secret_no(dm.ReleaseSecretNoRequest(pool_key=pool_key, secret_no=bought)))
    released = client.query_secret_no_detail(
        dm.QuerySecretNoDetailRequest(pool_key=pool_key, secret_no=bought)
    )
    assert released.body.code == "isv.NO_NOT_EXIST"


# --------------------------------------------------------------------------- blacklists


def test_blacklists(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    # Pool-wide blacklists apply to AXN pools (any caller may call X there).
    axn_pool = _pool(server, tenant, BindingType.AXN, count=1)
    axn = _ok(
        client.bind_axn(
            dm.BindAxnRequest(
                pool_key=axn_pool, phone_no_a="13800000053", expiration=_expires(server)
            )
        )
    ).secret_bind_dto
    axn_x, caller = _e164(axn.secret_no), _e164("13600000054")

    def caller_calls() -> object:
        return server.control.index.resolve(axn_x, caller, now=server.clock())

    assert isinstance(caller_calls(), Route)
    black = {"pool_key": axn_pool, "black_no": "13600000054"}
    _ok(client.operate_black_no(dm.OperateBlackNoRequest(operate_type="AddBlack", **black)))
    assert isinstance(caller_calls(), Intercept)
    _ok(client.operate_black_no(dm.OperateBlackNoRequest(operate_type="DeleteBlack", **black)))
    assert isinstance(caller_calls(), Route)
    partner = {**black, "black_type": "PARTNER_GLOBAL_NUMBER_BLACK"}
    _ok(client.add_secret_blacklist(dm.AddSecretBlacklistRequest(**partner)))
    assert isinstance(caller_calls(), Intercept)
    _ok(client.delete_secret_blacklist(dm.DeleteSecretBlacklistRequest(**partner)))
    assert isinstance(caller_calls(), Route)
    bad_type = client.operate_black_no(dm.OperateBlackNoRequest(operate_type="Ban", **black))
    assert bad_type.body.code == "isv.INVALID_PARAMETERS"

    # Point to point in an AXB pool, A's calls to B only: B still reaches A.
    pool_key = _pool(server, tenant, BindingType.AXB, count=1)
    dto = _bind_axb(server, client, pool_key, "13800000051", "13900000052")
    x, a, b = _e164(dto.secret_no), _e164("13800000051"), _e164("13900000052")
    pair = {
        "pool_key": pool_key,
        "black_no": "13800000051:13900000052",
        "black_type": "POINT_TO_POINT_BLACK",
        "way_control": "PHONEA_REJECT",
    }
    _ok(client.add_secret_blacklist(dm.AddSecretBlacklistRequest(**pair)))
    assert isinstance(server.control.index.resolve(x, a, now=server.clock()), Intercept)
    assert isinstance(server.control.index.resolve(x, b, now=server.clock()), Route)
    _ok(client.delete_secret_blacklist(dm.DeleteSecretBlacklistRequest(**pair)))
    assert isinstance(server.control.index.resolve(x, a, now=server.clock()), Route)


# --------------------------------------------------------------------------- call records


def test_record_url_and_call_status(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    pool_key = _pool(server, tenant, BindingType.AXB, count=1)
    dto = _bind_axb(server, client, pool_key, "13800000061", "13900000062")
    now = server.clock()
    status = _call_api(client, "QueryCallStatus", {"PoolKey": pool_key, "SubsId": dto.subs_id})[
        "body"
    ]
    assert status["Code"] == "OK"
    assert status["SecretCallStatusDTO"] == {"Status": 0, "CalledNo": None}
    call_id = f"CALL{dto.subs_id}"
    answered = CallRecord(
        id=f"r-{call_id}",
        call_id=call_id,
        secret_no=_e164(dto.secret_no),
        call_type=CallType.A_TO_PEER,
        call_time=now - 120,
        start_time=now - 110,
        release_time=now - 60,
        release_dir=ReleaseDir.CALLER,
        release_cause=16,
        pool_key=PoolKey(pool_key),
        sub_id=SubId(dto.subs_id),
        phone_no=_e164("13800000061"),
        peer_no=_e164("13900000062"),
        record_url=f"https://records.example/{call_id}.wav",
    )
    unanswered = dataclasses.replace(
        answered,
        id=f"r2-{call_id}",
        call_id=f"{call_id}B",
        call_type=CallType.PEER_TO_A,
        call_time=now - 30,
        start_time=None,
        release_time=now - 20,
        release_cause=19,
        record_url=None,
    )
    server.run(store.insert_call_record(server.control.db, answered))
    server.run(store.insert_call_record(server.control.db, unanswered))
    url = _ok(
        client.query_record_file_download_url(
            dm.QueryRecordFileDownloadUrlRequest(pool_key=pool_key, call_id=call_id)
        )
    )
    assert url.download_url == f"https://records.example/{call_id}.wav"
    no_record = client.query_record_file_download_url(
        dm.QueryRecordFileDownloadUrlRequest(pool_key=pool_key, call_id=f"{call_id}B")
    )
    assert no_record.body.code == "isv.RECORD_NOT_EXIST"
    unknown = client.query_record_file_download_url(
        dm.QueryRecordFileDownloadUrlRequest(pool_key=pool_key, call_id="NOSUCHCALL")
    )
    assert unknown.body.code == "isv.CALL_NOT_EXIST"
    latest = _call_api(client, "QueryCallStatus", {"PoolKey": pool_key, "SubsId": dto.subs_id})
    assert latest["body"]["SecretCallStatusDTO"] == {"Status": 2, "CalledNo": "13800000061"}
    from_a = _call_api(
        client,
        "QueryCallStatus",
        {"PoolKey": pool_key, "SubsId": dto.subs_id, "CallNo": "13800000061"},
    )
    assert from_a["body"]["SecretCallStatusDTO"] == {"Status": 1, "CalledNo": "13900000062"}


# --------------------------------------------------------------------------- business errors


def test_business_errors(server: RpcServer, tenant: NewTenant, client: Client) -> None:
    pool_key = _pool(server, tenant, BindingType.AXB, count=1)

    def bind(**fields: Any) -> Any:
        values: dict[str, Any] = {
            "pool_key": pool_key,
            "phone_no_a": "13800000071",
            "phone_no_b": "13900000072",
            "expiration": _expires(server),
            **fields,
        }
        resp = client.bind_axb(dm.BindAxbRequest(**values))
        assert resp.status_code == 200
        assert len(resp.body.request_id) == 36
        return resp.body

    assert bind(phone_no_a="12345").code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert bind(expiration=local(server.clock() + 30)).code == "isv.EXPIRE_DATE_ILLEGAL"
    assert bind(expiration="tomorrow").code == "isv.EXPIRE_DATE_ILLEGAL"
    first = bind()
    assert first.code == "OK"
    twice = bind(phone_no_x=first.secret_bind_dto.secret_no)
    assert twice.code == "isv.BIND_CONFLICT" and twice.secret_bind_dto is None
    empty_pool = _pool(server, tenant, BindingType.AXB, count=0)
    assert bind(pool_key=empty_pool).code == "isv.NO_AVAILABLE_NUMBER"
    assert bind(pool_key="FC0000000000000000").code == "isv.POOLKEY_NOT_EXISTS"
    assert bind(call_timeout=1).code == "isv.INVALID_PARAMETERS"
    missing = client.query_subscription_detail(
        dm.QuerySubscriptionDetailRequest(
            pool_key=pool_key, subs_id="123456789012345678", phone_no_x="17000010000"
        )
    )
    assert missing.body.code == "isv.SUBS_NOT_EXIST"
    unsupported = client.bind_axb_700(
        dm.BindAxb700Request(pool_key=pool_key, tel_a="13800000071", expiration="x")
    )
    assert unsupported.status_code == 200
    assert unsupported.body.code == "isv.FORBIDDEN_ACTION"


def test_another_tenants_pool_is_not_found(server: RpcServer, tenant: NewTenant) -> None:
    other = server.run(server.control.tenants.create_tenant("other tenant"))
    pool_key = _pool(server, tenant, BindingType.AXB, count=1)
    owner = _client(server, tenant.access_key_id, tenant.access_key_secret, None)
    intruder = _client(server, other.access_key_id, other.access_key_secret, "v2")
    dto = _bind_axb(server, owner, pool_key, "13800000081", "13900000082")
    steal = intruder.bind_axb(
        dm.BindAxbRequest(
            pool_key=pool_key,
            phone_no_a="13800000083",
            phone_no_b="13900000084",
            expiration=_expires(server),
        )
    )
    assert steal.body.code == "isv.POOLKEY_NOT_EXISTS"
    unbind = intruder.unbind_subscription(
        dm.UnbindSubscriptionRequest(
            pool_key=pool_key, subs_id=dto.subs_id, secret_no=dto.secret_no
        )
    )
    assert unbind.body.code == "isv.POOLKEY_NOT_EXISTS"
    assert server.control.index.get(dto.subs_id) is not None


# --------------------------------------------------------------------------- gateway errors


def _refused(call: Callable[[], Any]) -> ClientException:
    with pytest.raises(ClientException) as caught:
        call()
    return caught.value


def _query_remain(client: Client) -> Any:
    return client.query_secret_no_remain(dm.QuerySecretNoRemainRequest(city="北京", spec_id=1))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_gateway_refusals(
    server: RpcServer, tenant: NewTenant, scheme: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = _refused(lambda: _query_remain(_client(server, tenant.access_key_id, "x" * 30, scheme)))
    assert (wrong.code, wrong.status_code) == ("SignatureDoesNotMatch", 400)
    assert "server string to sign is:" in wrong.message
    unknown = _refused(lambda: _query_remain(_client(server, "LTAIunknown", "secret", scheme)))
    assert (unknown.code, unknown.status_code) == ("InvalidAccessKeyId.NotFound", 404)

    client = _client(server, tenant.access_key_id, tenant.access_key_secret, scheme)
    not_found = _refused(lambda: _call_api(client, "NoSuchAction", {}))
    assert (not_found.code, not_found.status_code) == ("InvalidApi.NotFound", 404)
    assert not_found.request_id and len(not_found.request_id) == 36

    stale = datetime.now(UTC) - timedelta(minutes=16)
    with monkeypatch.context() as patch:
        patch.setattr(
            Utils, "get_timestamp", staticmethod(lambda: stale.strftime("%Y-%m-%dT%H:%M:%SZ"))
        )
        expired = _refused(lambda: _query_remain(client))
    assert (expired.code, expired.status_code) == ("InvalidTimeStamp.Expired", 400)

    pinned = secrets.token_hex(16)
    with monkeypatch.context() as patch:
        patch.setattr(Utils, "get_nonce", staticmethod(lambda: pinned))
        _ok(_query_remain(client))
        replayed = _refused(lambda: _query_remain(client))
    assert (replayed.code, replayed.status_code) == ("SignatureNonceUsed", 400)
    _ok(_query_remain(client))  # fresh nonces pass again

    server.run(server.control.tenants.set_key_status(tenant.access_key_id, False))
    disabled = _refused(lambda: _query_remain(client))
    assert (disabled.code, disabled.status_code) == ("InvalidAccessKeyId.Inactive", 400)


def test_other_v3_algorithms_are_refused(server: RpcServer, tenant: NewTenant) -> None:
    """§1: ACS3-HMAC-SM3 is a v3 variant maskline does not verify: 400 IncompleteSignature."""
    client = _client(server, tenant.access_key_id, tenant.access_key_secret, "ACS3-HMAC-SM3")
    refused = _refused(lambda: _query_remain(client))
    assert (refused.code, refused.status_code) == ("IncompleteSignature", 400)
