"""Property-based fuzzing of the REST API with schemathesis against its served OpenAPI document.

A real uvicorn server on loopback (tests/api/rpc_support.RpcServer) with inventory, pools of
every type, bindings and a group in place, so that generated requests meet real resources as
well as missing ones. Checks: no 5xx, status codes and content types as documented, response
bodies valid against the documented schemas. Examples per operation: 25 by default (bounded,
``make test``), ``MASKLINE_FUZZ_EXAMPLES`` to raise it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from rpc_support import INVENTORY, TOKEN, RpcServer
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from routing.model import BindingType

EXAMPLES = int(os.environ.get("MASKLINE_FUZZ_EXAMPLES", "25"))
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RpcServer]:
    server = RpcServer(tmp_path_factory.mktemp("fuzz") / "maskline.sqlite3").start()
    control = server.control

    async def populate() -> None:
        await control.import_numbers(INVENTORY)
        expires = "2099-01-01 00:00:00"
        for kind in BindingType:
            key = await control.create_pool(kind, f"{kind.value} pool")
            await control.add_numbers(key, 3, city="全国" if kind is BindingType.AXN95 else None)
            if kind is BindingType.AXB:
                await control.bind(kind, key, "13800138000", "13900139000", expires=expires)
            if kind is BindingType.AXG:
                group = await control.lists.create_group(key, "g", ["13700137000"])
                await control.bind(kind, key, "13800138000", expires=expires, group_id=group)

    server.run(populate())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: RpcServer) -> Any:
    return schemathesis.openapi.from_url(f"http://{fuzz_server.endpoint}/openapi.json")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_server_error_and_documented_answers(api_schema: Any, fuzz_server: RpcServer) -> None:
    base_url = f"http://{fuzz_server.endpoint}"
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            response = case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            fuzz()
        except BaseException as error:
            error.add_note(f"operation: {operation.method.upper()} {operation.path}")
            raise
    # The fuzzer reached the handlers (not only the validation layer) and got both answers.
    assert sum(n for status, n in statuses.items() if 200 <= status < 300) > len(operations)
    assert sum(n for status, n in statuses.items() if 400 <= status < 500) > len(operations)


def test_fuzzing_covers_the_served_operations(api_schema: Any) -> None:
    # The document the fuzzer reads is the one served; it must hold the API's operations.
    paths = set(api_schema.raw_schema["paths"])
    assert {"/v1/pools", "/v1/pools/{pool_key}/bindings", "/v1/numbers/import"} <= paths
