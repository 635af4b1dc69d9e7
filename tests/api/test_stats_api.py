"""REST routes of statistics and export (api.routes_stats): answers, scope, errors, the CSV file.

The month is ``test_stats_support``'s (January 2030: tenant A's pool with a rented number, a
61 s call rated 2 minutes and a busy call; tenant B's pool with a 30 s call). Expected figures
are worked out by hand.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import sqlite3
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from api_support import ZONE, Api
from test_stats_support import JAN_5, XA, World, build_world

from media.recording_io import write_wav
from store import billing as billing_store
from store.ledger import insert_entry_in, topup
from store.recordings import attach_recording


def local_midnight(year: int, month: int, day: int) -> float:
    return dt.datetime(year, month, day, tzinfo=ZONE).timestamp()


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


def _rows(body: dict[str, Any]) -> list[tuple[object, ...]]:
    return [
        (r["tenant_id"], r["number_type"], r["pool_key"], r["item"], r["count"], r["unit"],
         r["amount"])
        for r in body["rows"]
    ]  # fmt: skip


async def test_full_statistics(api: Api, world: World) -> None:
    answer = await api.client.get(
        "/v1/stats/full", params={"month": "2030-01", "tenant_id": world.a}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["month"], body["tenant_id"], body["total"]) == ("2030-01", world.a, "5.22")
    assert _rows(body) == [
        (world.a, "AXB", world.pool_a, "rent", 1, "month", "5.00"),
        (world.a, "AXB", world.pool_a, "call", 2, "minute", "0.22"),
    ]
    assert [row["details"] for row in body["rows"]] == [None, None]
    # The tenant itself, without naming itself, sees the same.
    own = await api.client.get("/v1/stats/full", params={"month": "203001"}, headers=world.as_a)
    assert own.json() == body
    # The operator without a tenant: both; 5.22 + 5.11.
    everyone = (await api.client.get("/v1/stats/full", params={"month": "2030-01"})).json()
    assert (everyone["tenant_id"], everyone["total"]) == (None, "10.33")
    assert {row["tenant_id"] for row in everyone["rows"]} == {world.a, world.b}


async def test_full_statistics_details(api: Api, world: World) -> None:
    answer = await api.client.get(
        "/v1/stats/full", params={"month": "2030-01", "details": "true"}, headers=world.as_a
    )
    rent, call = answer.json()["rows"]
    assert rent["details"] == [
        {"number": XA, "ref": f"rent:{XA}:203001", "quantity": 1, "unit_price": "5.00",
         "amount": "5.00", "created": "2030-01-05 12:00:00"},
    ]  # fmt: skip
    assert [(d["ref"], d["quantity"], d["amount"]) for d in call["details"]] == [("ca1", 2, "0.22")]


async def test_classified_statistics(api: Api, world: World) -> None:
    params = {"from": "2030-01-01", "to": "2030-01-31"}
    answer = await api.client.get("/v1/stats/classified", params=params, headers=world.as_a)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"], body["to"]) == ("2030-01-01", "2030-01-31")
    # One number billed; ca1 answered (61 s, 0.22) and ca2 busy: 1/2 = 50 %; rent 5.00.
    expected = {
        "number_type": "AXB", "pool_key": world.pool_a, "tenant_id": world.a,
        "billed_numbers": 1, "calls": 2, "answered": 1, "intercepted": 0,
        "connection_rate_pct": 50.0, "total_talk_s": 61.0, "average_talk_s": 61.0,
        "call_fees": "0.22", "monthly_fees": "5.00", "fees": "5.22",
    }  # fmt: skip
    assert body["rows"] == [expected]
    assert body["total"] == {**expected, "number_type": None, "pool_key": None, "tenant_id": None}
    # Filters: one pool, a type; the operator for everyone.
    one = await api.client.get("/v1/stats/classified", params={**params, "pool_key": world.pool_a})
    assert one.json()["rows"] == [expected]
    axn = await api.client.get(
        "/v1/stats/classified", params={**params, "type": "AXN"}, headers=world.as_a
    )
    assert (axn.json()["rows"], axn.json()["total"]["calls"]) == ([], 0)
    everyone = (await api.client.get("/v1/stats/classified", params=params)).json()
    # Pools in creation order (same instant here: then by key).
    assert [row["pool_key"] for row in everyone["rows"]] == sorted([world.pool_a, world.pool_b])
    assert (everyone["total"]["calls"], everyone["total"]["fees"]) == (3, "10.33")


async def test_scope_another_tenant_is_a_missing_one(api: Api, world: World) -> None:
    month = {"month": "2030-01"}
    days = {"from": "2030-01-01", "to": "2030-01-31"}
    for path, params in (
        ("/v1/stats/full", {**month, "tenant_id": world.b}),
        ("/v1/stats/full", {**month, "tenant_id": "T000000000000"}),
        ("/v1/stats/classified", {**days, "tenant_id": world.b}),
    ):
        answer = await api.client.get(path, params=params, headers=world.as_a)
        assert (answer.status_code, answer.json()["code"]) == (404, "TENANT_NOT_EXIST"), path
    for pool in (world.pool_b, "FC0000000000000000"):
        answer = await api.client.get(
            "/v1/stats/classified", params={**days, "pool_key": pool}, headers=world.as_a
        )
        assert (answer.status_code, answer.json()["code"]) == (404, "POOL_NOT_EXIST")
        answer = await api.client.get(f"/v1/pools/{pool}/export", params=month, headers=world.as_a)
        assert (answer.status_code, answer.json()["code"]) == (404, "POOL_NOT_EXIST")
    # The operator naming a tenant and another tenant's pool: not that tenant's.
    answer = await api.client.get(
        "/v1/stats/classified", params={**days, "tenant_id": world.a, "pool_key": world.pool_b}
    )
    assert (answer.status_code, answer.json()["code"]) == (404, "POOL_NOT_EXIST")
    # Nothing of A in what B sees.
    seen = (await api.client.get("/v1/stats/full", params=month, headers=world.as_b)).text
    seen += (await api.client.get("/v1/stats/classified", params=days, headers=world.as_b)).text
    assert world.a not in seen and world.pool_a not in seen and XA not in seen


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/v1/stats/full", {"month": "2030-13"}, "PARAMETER_ILLEGAL"),
        ("/v1/stats/full", {}, "PARAMETER_ILLEGAL"),
        ("/v1/stats/classified", {"from": "2030-01-31", "to": "2030-01-01"}, "PARAMETER_ILLEGAL"),
        ("/v1/stats/classified", {"from": "2030-02-30", "to": "2030-03-01"}, "PARAMETER_ILLEGAL"),
        ("/v1/stats/classified", {"from": "2029-01-01", "to": "2030-01-02"}, "PARAMETER_ILLEGAL"),
        ("/v1/stats/classified", {"from": "2030-01-01", "to": "2030-01-02", "type": "ABC"},
         "PARAMETER_ILLEGAL"),
    ],
)  # fmt: skip
async def test_bad_input_is_400(
    api: Api, world: World, path: str, params: dict[str, str], code: str
) -> None:
    answer = await api.client.get(path, params=params)
    assert (answer.status_code, answer.json()["code"]) == (400, code), answer.text
    assert set(answer.json()) == {"code", "message"}


async def test_type_and_pool_disagree(api: Api, world: World) -> None:
    params = {"from": "2030-01-01", "to": "2030-01-02", "pool_key": world.pool_a, "type": "AXN"}
    answer = await api.client.get("/v1/stats/classified", params=params)
    assert (answer.status_code, answer.json()["code"]) == (400, "POOL_TYPE_MISMATCH")


async def test_export_download(api: Api, world: World) -> None:
    answer = await api.client.get(
        f"/v1/pools/{world.pool_a}/export", params={"month": "2030-01"}, headers=world.as_a
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="{world.pool_a}203001.csv"'
    )
    assert answer.headers["x-maskline-calls"] == "2"
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
    assert [(r["id"], r["call_time"], r["billed_minutes"], r["fee"]) for r in rows] == [
        ("ca1", "2030-01-05 10:00:00", "2", "0.22"),
        ("ca2", "2030-01-05 11:00:00", "0", "0.00"),
    ]
    assert (rows[0]["city"], rows[0]["out_id"], rows[0]["secret_no"]) == ("北京", "订单一", XA)
    # Another month: the header only.
    empty = await api.client.get(f"/v1/pools/{world.pool_a}/export", params={"month": "2030-02"})
    assert empty.content.decode("utf-8-sig").count("\r\n") == 1
    bad = await api.client.get(f"/v1/pools/{world.pool_a}/export", params={"month": "2030"})
    assert (bad.status_code, bad.json()["code"]) == (400, "PARAMETER_ILLEGAL")


async def test_call_files_for_the_operator(api: Api, world: World) -> None:
    wav = api.db_path.parent / "rec" / "ca1.wav"
    recording = write_wav(np.zeros((8000, 2), dtype=np.int16), wav)
    await attach_recording(
        api.control.db, call_id="call-ca1", file=recording, pool_key=world.pool_a, now=JAN_5
    )
    answer = await api.client.get("/v1/calls/call-ca1/files")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["call"]["id"], body["call"]["call_id"]) == ("ca1", "call-ca1")
    assert (body["call"]["start_time"], body["duration_s"]) == ("2030-01-05 10:00:05", 61.0)
    assert body["recording"] == {
        "path": os.path.abspath(wav),
        "kept": True,
        "exists": True,
        "duration_s": 1.0,
        "size_bytes": wav.stat().st_size,
    }
    # Released 10:01:11 local on 5 January: that day's CDR file.
    assert body["cdr_file"] == "cdr-20300105.csv"
    no_recording = (await api.client.get("/v1/calls/call-ca2/files")).json()
    assert no_recording["recording"] is None
    wav.unlink()
    gone = (await api.client.get("/v1/calls/call-ca1/files")).json()
    assert (gone["recording"]["kept"], gone["recording"]["exists"]) == (True, False)
    missing = await api.client.get("/v1/calls/nosuchcall/files")
    assert (missing.status_code, missing.json()["code"]) == (404, "CALL_NOT_EXIST")
    # Paths on the server are the operator's: a tenant is refused, even for its own call.
    refused = await api.client.get("/v1/calls/call-ca1/files", headers=world.as_a)
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")


async def test_package_statistics(api: Api, world: World) -> None:
    db = api.control.db
    await topup(db, world.a, Decimal("100.00"), now=JAN_5)
    january = (local_midnight(2030, 1, 1), local_midnight(2030, 2, 1))
    package = await billing_store.insert_package(
        db, tenant_id=world.a, name="60 分钟", price=Decimal("6.00"), minutes=60,
        valid_from=january[0], valid_until=january[1], period="203001", now=JAN_5,
    )  # fmt: skip

    def draw(conn: sqlite3.Connection) -> None:
        insert_entry_in(
            conn, tenant_id=world.a, item="call_package", amount=Decimal(0), created_at=JAN_5,
            period="203001", quantity=2, unit="minute", unit_price=Decimal(0),
            ref=f"ca1:{package.id}",
        )  # fmt: skip
        billing_store.draw_in(conn, package.id, 2)

    await db.write(draw)
    answer = await api.client.get("/v1/stats/packages", headers=world.as_a)
    assert answer.status_code == 200, answer.text
    # The clock is 2030-01-01 12:00: this month, the package is active with 58 minutes left.
    assert answer.json() == {
        "month": "2030-01",
        "tenant_id": world.a,
        "remaining_minutes": 58,
        "month_minutes": 2,
        "packages": [
            {"package_id": package.id, "tenant_id": world.a, "name": "60 分钟", "price": "6.00",
             "minutes": 60, "used_minutes": 2, "remaining_minutes": 58,
             "valid_from": "2030-01-01", "valid_to": "2030-01-31", "state": "active",
             "purchased": "2030-01-05 10:00:00", "month_minutes": 2},
        ],
    }  # fmt: skip
    february = await api.client.get(
        "/v1/stats/packages", params={"month": "2030-02", "tenant_id": world.a}
    )
    assert (february.json()["month_minutes"], february.json()["remaining_minutes"]) == (0, 58)
    foreign = await api.client.get(
        "/v1/stats/packages", params={"tenant_id": world.a}, headers=world.as_b
    )
    assert (foreign.status_code, foreign.json()["code"]) == (404, "TENANT_NOT_EXIST")
    own_b = (await api.client.get("/v1/stats/packages", headers=world.as_b)).json()
    assert (own_b["packages"], own_b["remaining_minutes"]) == ([], 0)
    bad = await api.client.get("/v1/stats/packages", params={"month": "2030-1"})
    assert (bad.status_code, bad.json()["code"]) == (400, "PARAMETER_ILLEGAL")
