"""The RPC API driven by the official SDK (``alibabacloud-dyplsapi20170525`` 2.5.1).

A real uvicorn server on a loopback port serves ``create_app`` over a real SQLite control plane;
a tenant created through ``control.tenants.create_tenant`` calls it with the SDK's ``Client``
under both signature settings (``signature_algorithm`` unset = ACS3-HMAC-SHA256, ``'v2'`` = RPC
HMAC-SHA1), exactly as an application written for the reference service would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_dyplsapi20170525 import models as dm
from alibabacloud_dyplsapi20170525.client import Client
from alibabacloud_tea_openapi.models import Config
from rpc_support import INVENTORY, RpcServer, local

from api.tenants import NewTenant
from routing.index import Route
from routing.model import BindingType
from routing.numbers import normalize

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
    assert len(resp.body.request_id) == 36 and resp.body.request_id.isupper() is not False
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
