"""Tenant isolation over the whole REST API, route by route (issue 4, acceptance 2).

Tenant A owns one resource of every kind (pools of each type, numbers, bindings, a group,
blacklist entries, a migration job, a call record, its tenant record and key). Tenant B then
calls **every operation of the served OpenAPI document** naming A's resources. Each answer must
be exactly the answer for a resource that does not exist (same status, same code) — or 403 for
operator-only operations — and nothing may change: neither a table row nor the routing index.

The operation list is read from the app, and every operation must be classified in ``PLAN``:
a new route fails this test until it is, so isolation is checked exhaustively, not by example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from api_support import INVENTORY_CSV, Api
from rpc_support import snapshot
from tenants_support import basic

from api.principal import Principal
from api.reports import reports_of
from api.ringback import ringback_service
from media.recording_io import write_wav
from routing.model import BindingType, BlockDirection, PhoneNumber
from store import CallRecord, CallType, ReleaseDir
from store.outbox import NewReport, ReportType, insert_reports
from store.recordings import attach_recording
from store.repositories import insert_call_record
from store.sms import SmsMessage, SmsState, insert_message_in

MISSING = {
    "pool_key": "FC0000000000000000",
    "sub_id": "100000000000000001",
    "group_id": "100000000000000002",
    "number": "17099999999",
    "tenant_id": "T000000000000",
    "access_key_id": "MLAK00000000000000000000",
    "job_id": "100000000000000003",
    "call_id": "nosuchcall",
    "tone_id": "no-such-tone",
    "report_type": "end",
    "message_id": "nosuchsms",
}


@dataclass
class Step:
    """How tenant B calls one operation: which of A's pools it names, and with what."""

    # "foreign": must answer as missing; "operator": 403; "list": A's data absent;
    # "signed": no credentials count, only a valid signature (403 without one)
    kind: str
    pool: str = "AXB"  # which of A's pools stands for {pool_key}
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


def _plan(a: dict[str, str]) -> dict[tuple[str, str], Step]:
    """Every operation of the API and how B attacks A through it (``a``: A's identifiers)."""
    bind = {"type": "AXB", "a": "13800138111", "b": "13900139111", "expires": "2031-01-01 00:00:00"}
    pair = {"first": "13600136000", "second": "13600136001", "direction": "BOTH"}
    return {
        ("post", "/v1/numbers/import"): Step("operator", content=INVENTORY_CSV.encode()),
        ("get", "/v1/pools"): Step("list"),
        ("post", "/v1/pools"): Step(
            "foreign", body={"type": "AXB", "name": "n", "tenant_id": "{tenant_id}"}
        ),
        ("get", "/v1/pools/{pool_key}"): Step("foreign"),
        ("patch", "/v1/pools/{pool_key}"): Step("foreign", body={"name": "hijacked"}),
        ("get", "/v1/pools/{pool_key}/numbers"): Step("foreign"),
        ("post", "/v1/pools/{pool_key}/numbers"): Step("operator", body={"count": 1}),
        ("get", "/v1/pools/{pool_key}/bindings"): Step("foreign", params={"x": "{number}"}),
        ("post", "/v1/pools/{pool_key}/bindings"): Step("foreign", body=bind),
        ("get", "/v1/bindings"): Step("list", params={"number": a["real"]}),
        ("get", "/v1/pools/{pool_key}/bindings/{sub_id}"): Step("foreign"),
        ("patch", "/v1/pools/{pool_key}/bindings/{sub_id}"): Step("foreign", body={"out_id": "x"}),
        ("delete", "/v1/pools/{pool_key}/bindings/{sub_id}"): Step("foreign"),
        ("get", "/v1/pools/{pool_key}/groups"): Step("foreign", pool="AXG"),
        ("post", "/v1/pools/{pool_key}/groups"): Step(
            "foreign", pool="AXG", body={"name": "g", "numbers": ["13600136000"]}
        ),
        ("get", "/v1/pools/{pool_key}/groups/{group_id}"): Step("foreign", pool="AXG"),
        ("delete", "/v1/pools/{pool_key}/groups/{group_id}"): Step("foreign", pool="AXG"),
        ("post", "/v1/pools/{pool_key}/groups/{group_id}/numbers"): Step(
            "foreign", pool="AXG", body={"operation": "add", "numbers": ["13600136009"]}
        ),
        ("get", "/v1/pools/{pool_key}/blacklist"): Step("foreign", pool="AXN"),
        ("post", "/v1/pools/{pool_key}/blacklist"): Step(
            "foreign", pool="AXN", body={"number": "13600136005"}
        ),
        ("delete", "/v1/pools/{pool_key}/blacklist/{number}"): Step("foreign", pool="AXN"),
        ("get", "/v1/pools/{pool_key}/blacklist-pairs"): Step("foreign", pool="AXN"),
        ("post", "/v1/pools/{pool_key}/blacklist-pairs"): Step("foreign", pool="AXN", body=pair),
        ("delete", "/v1/pools/{pool_key}/blacklist-pairs"): Step(
            "foreign", pool="AXN", params={**pair, "first": a["blocked_first"]}
        ),
        ("get", "/v1/calls"): Step("list"),
        ("get", "/v1/calls/{call_id}"): Step("foreign"),
        ("get", "/v1/tenants"): Step("operator"),
        ("post", "/v1/tenants"): Step("operator", body={"name": "x"}),
        ("get", "/v1/tenants/{tenant_id}"): Step("foreign"),
        ("post", "/v1/tenants/{tenant_id}/keys"): Step("operator"),
        ("post", "/v1/tenants/{tenant_id}/suspend"): Step("operator"),
        ("post", "/v1/tenants/{tenant_id}/resume"): Step("operator"),
        ("post", "/v1/keys/{access_key_id}/disable"): Step("operator"),
        ("post", "/v1/keys/{access_key_id}/enable"): Step("operator"),
        ("get", "/v1/stock"): Step("list"),
        ("get", "/v1/stock/cities"): Step("list"),
        ("post", "/v1/tenants/{tenant_id}/topup"): Step("operator", body={"amount": "10.00"}),
        ("get", "/v1/tenants/{tenant_id}/balance"): Step("foreign"),
        ("get", "/v1/verification-policy"): Step("operator"),
        ("put", "/v1/verification-policy/{type}"): Step(
            "operator", body={"required": True, "grace_s": 0}
        ),
        ("post", "/v1/numbers/{number}/verification"): Step("operator", body={"approved": True}),
        ("post", "/v1/pools/{pool_key}/purchase"): Step(
            "foreign", body={"count": 1, "city": "北京"}
        ),
        ("get", "/v1/pools/{pool_key}/numbers/{number}"): Step("foreign"),
        ("post", "/v1/pools/{pool_key}/numbers/{number}/release"): Step("foreign", pool="AXN"),
        ("post", "/v1/pools/{pool_key}/numbers/{number}/lock"): Step("foreign"),
        ("post", "/v1/pools/{pool_key}/numbers/{number}/unlock"): Step("foreign", pool="LOCKED"),
        ("post", "/v1/pools/{pool_key}/numbers/{number}/verification-request"): Step("foreign"),
        ("get", "/v1/pools/{pool_key}/usage"): Step("foreign"),
        ("post", "/v1/migrations"): Step(
            "foreign",
            body={"from_pool": "{pool_key}", "to_pool": a["b_pool"], "numbers": ["{number}"]},
            pool="AXN",
        ),
        ("get", "/v1/migrations/{job_id}"): Step("foreign"),
        ("get", "/v1/calls/{call_id}/recording"): Step("foreign"),
        # The download needs no credentials, only a signature nobody but maskline can make.
        ("get", "/recordings/{call_id}.wav"): Step("signed"),
        ("get", "/v1/tenants/{tenant_id}/ringback"): Step("foreign"),
        ("get", "/v1/tenants/{tenant_id}/ringback/{tone_id}"): Step("foreign"),
        ("put", "/v1/tenants/{tenant_id}/ringback/{tone_id}"): Step("foreign", content=b"RIFF"),
        ("post", "/v1/tenants/{tenant_id}/ringback/{tone_id}/tts"): Step(
            "foreign", body={"text": "ni3 hao3"}
        ),
        ("delete", "/v1/tenants/{tenant_id}/ringback/{tone_id}"): Step("foreign"),
        ("get", "/v1/tenants/{tenant_id}/tariff"): Step("foreign"),
        ("patch", "/v1/tenants/{tenant_id}/tariff"): Step(
            "operator", body={"call_per_minute": "0"}
        ),
        ("get", "/v1/tenants/{tenant_id}/packages"): Step("foreign"),
        ("post", "/v1/tenants/{tenant_id}/packages"): Step(
            "operator", body={"name": "p", "price": "0", "minutes": 1, "valid_to": "2031-12-31"}
        ),
        ("get", "/v1/tenants/{tenant_id}/discounts"): Step("foreign"),
        ("post", "/v1/tenants/{tenant_id}/discounts"): Step(
            "operator", body={"month": "2030-01", "amount": "1.00"}
        ),
        # Statistics and export: B names A's tenant id or pool; server paths are the operator's.
        ("get", "/v1/stats/full"): Step(
            "foreign", params={"month": "2030-01", "tenant_id": "{tenant_id}"}
        ),
        ("get", "/v1/stats/classified"): Step(
            "foreign", params={"from": "2030-01-01", "to": "2030-01-31", "pool_key": "{pool_key}"}
        ),
        ("get", "/v1/pools/{pool_key}/export"): Step("foreign", params={"month": "2030-01"}),
        ("get", "/v1/calls/{call_id}/files"): Step("operator"),
        ("get", "/v1/stats/packages"): Step("foreign", params={"tenant_id": "{tenant_id}"}),
        ("put", "/v1/tenants/{tenant_id}/report-urls/{report_type}"): Step(
            "foreign", body={"url": "https://b.example/hijack"}
        ),
        ("get", "/v1/tenants/{tenant_id}/report-urls"): Step("foreign"),
        ("delete", "/v1/tenants/{tenant_id}/report-urls/{report_type}"): Step("foreign"),
        ("get", "/v1/tenants/{tenant_id}/report-queue"): Step("foreign"),
        # B's own queue: A's pending report must not show; acking A's id changes nothing.
        ("post", "/v1/reports/pull"): Step("list", body={"max": 1000}),
        ("post", "/v1/reports/ack"): Step("list", body={"ids": ["{report_id}"]}),
        # SMS (issue 8): A's pool settings and A's held message.
        ("get", "/v1/pools/{pool_key}/sms"): Step("foreign"),
        ("put", "/v1/pools/{pool_key}/sms"): Step("foreign", body={"sms_mode": "smart"}),
        ("get", "/v1/sms"): Step("list"),
        ("get", "/v1/sms/{message_id}"): Step("foreign"),
        ("post", "/v1/sms/{message_id}/confirm"): Step("foreign"),
        ("post", "/v1/sms/{message_id}/discard"): Step("foreign"),
    }


async def _tenant_a(api: Api) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A's resources; returns (A's identifiers, per pool name the path values naming them)."""
    control, now = api.control, api.clock.now
    await api.import_inventory()
    a = await control.tenants.create_tenant("Tenant A")
    b = await control.tenants.create_tenant("Tenant B")
    expires = api.expires(86400)
    pools: dict[str, dict[str, str]] = {}
    for name, kind in (("AXB", BindingType.AXB), ("AXN", BindingType.AXN),
                       ("AXG", BindingType.AXG), ("LOCKED", BindingType.AXB)):  # fmt: skip
        key = await control.create_pool(kind, name, a.tenant_id)
        [x] = await control.add_numbers(key, 1, city="北京")
        pools[name] = {"pool_key": key, "number": x}
    axb = await control.bind(
        BindingType.AXB, pools["AXB"]["pool_key"], "13800138000", "13900139000",
        expires=expires, tenant=a.tenant_id,
    )  # fmt: skip
    pools["AXB"]["sub_id"] = axb.sub_id
    group = await control.lists.create_group(
        pools["AXG"]["pool_key"], "family", ["13600136000"], tenant=a.tenant_id
    )
    pools["AXG"]["group_id"] = group
    pools["AXG"]["sub_id"] = (
        await control.bind(
            BindingType.AXG,
            pools["AXG"]["pool_key"],
            "13800138000",
            expires=expires,
            group_id=group,
            tenant=a.tenant_id,
        )
    ).sub_id
    axn_key = pools["AXN"]["pool_key"]
    await control.lists.add_pool_blacklist(axn_key, "13600136007", tenant=a.tenant_id)
    await control.lists.add_pair_block(
        axn_key, "13600136008", "13600136001", BlockDirection.BOTH, tenant=a.tenant_id
    )
    await control.inventory.lock(
        pools["LOCKED"]["pool_key"], pools["LOCKED"]["number"], tenant=a.tenant_id
    )
    moving = await control.create_pool(BindingType.AXN, "AXN 1", a.tenant_id)
    [moved] = await control.add_numbers(moving, 1, city="北京")
    second_axn = await control.create_pool(BindingType.AXN, "AXN 2", a.tenant_id)
    job = await control.inventory.migrate(moving, second_axn, numbers=[moved], tenant=a.tenant_id)
    b_pool = await control.create_pool(BindingType.AXN, "B's", b.tenant_id)
    await insert_call_record(
        control.db,
        CallRecord(
            id="rec-a-1",
            call_id="callA1",
            secret_no=PhoneNumber(axb.x),
            call_type=CallType.A_TO_PEER,
            call_time=now,
            release_time=now + 30,
            release_dir=ReleaseDir.CALLER,
            release_cause=16,
            pool_key=axb.pool_key,
            sub_id=axb.sub_id,
            phone_no=axb.a,
            peer_no=axb.b,
        ),
    )
    recording = write_wav(np.zeros((8000, 2), dtype=np.int16), api.db_path.parent / "A1.wav")
    await attach_recording(
        control.db, call_id="callA1", file=recording, pool_key=axb.pool_key, now=now
    )
    await ringback_service(control).add_from_text(
        Principal(a.tenant_id), a.tenant_id, "tone-a", "ni3 hao3"
    )
    reports = reports_of(control)
    await reports.set_push_url(
        Principal(a.tenant_id), a.tenant_id, "end", "https://a.example/reports"
    )
    pending = NewReport(
        id="report-a-1",
        type=ReportType.START,
        payload={"id": "report-a-1", "call_id": "callA1", "pool_key": axb.pool_key},
        call_id="callA1",
        pool_key=axb.pool_key,
    )
    await control.db.write(lambda conn: insert_reports(conn, [pending], now=now))
    held = SmsMessage(
        id="sms-a-1", sip_call_id="sip-a-1", pool_key=axb.pool_key, tenant_id=a.tenant_id,
        x=axb.x, state=SmsState.PENDING, cause="confirm", text="hi", text_chars=2,
        text_sha256="0" * 64, segments=1, received_at=now, sender=axb.a, recipient=axb.b,
        confirm_deadline=now + 600,
    )  # fmt: skip
    await control.db.write(lambda conn: insert_message_in(conn, held))
    pools["AXB"]["message_id"] = held.id
    ids = {
        "report_id": pending.id,
        "report_type": "end",
        "tenant_id": a.tenant_id,
        "tone_id": "tone-a",
        "access_key_id": a.access_key_id,
        "call_id": "callA1",
        "real": "13800138000",
        "blocked_first": "13600136008",
        "b_pool": b_pool,
        "a_secret": a.access_key_secret,
        "b_key": b.access_key_id,
        "b_secret": b.access_key_secret,
        "job_id": job.job_id,
    }
    return ids, pools


def _fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with ``{name}`` placeholders replaced (in strings, lists and dicts)."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


async def _call(
    api: Api, operation: tuple[str, str], step: Step, values: dict[str, str], auth: dict[str, str]
) -> httpx.Response:
    method, path = operation
    return await api.client.request(
        method,
        _fill(path, values),
        params=_fill(step.params, values),
        json=_fill(step.body, values) if step.body is not None else None,
        content=step.content,
        headers={**auth, **({"content-type": "text/csv"} if step.content else {})},
    )


def _state(api: Api) -> tuple[object, ...]:
    """Everything a request could change: every table row and the in-memory routing state."""
    control = api.control
    index = control.index
    return (
        snapshot(api.db_path),
        sorted((b.sub_id, repr(b)) for x in list(control._number_pool) for b in index.by_x(x)),
        sorted(control._number_pool.items()),
        sorted(control._group_pool.items()),
    )


async def test_tenant_b_cannot_reach_tenant_a_through_any_operation(api: Api) -> None:
    ids, pools = await _tenant_a(api)
    plan = _plan(ids)
    document = (await api.client.get("/openapi.json")).json()
    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations == set(plan), (
        f"unclassified operations: {sorted(operations - set(plan))}; "
        f"gone: {sorted(set(plan) - operations)}"
    )
    as_b = basic(ids["b_key"], ids["b_secret"])
    as_a = basic(ids["access_key_id"], ids["a_secret"])
    a_identifiers = {ids["call_id"], *(v for p in pools.values() for v in p.values())}
    missing = {**MISSING, "type": "AXB"}
    for (method, path), step in sorted(plan.items()):
        where = f"{method.upper()} {path}"
        values = {**ids, **pools.get(step.pool, {}), "type": "AXB"}
        before = _state(api)
        answer = await _call(api, (method, path), step, values, as_b)
        body = answer.json()
        if step.kind == "signed":
            assert answer.status_code == 403, (where, body)
        elif step.kind == "operator":
            assert (answer.status_code, body["code"]) == (403, "FORBIDDEN"), (where, body)
        elif step.kind == "list":
            assert answer.status_code == 200, (where, body)
            leaked = [value for value in a_identifiers if value in json.dumps(body)]
            assert not leaked, (where, leaked)
        else:
            absent = await _call(api, (method, path), step, missing, as_b)
            assert answer.status_code == 404, (where, body)
            assert (answer.status_code, body["code"]) == (
                absent.status_code, absent.json()["code"],
            ), (where, body, absent.json())  # fmt: skip
            if method == "get":  # the same request is answered for A itself
                own = await _call(api, (method, path), step, values, as_a)
                assert own.status_code == 200, (where, own.text)
        assert _state(api) == before, f"{where} changed something"
