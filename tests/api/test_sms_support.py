"""Helpers of the SMS tests (tests/api and tests/billing): a scene of two tenants with pools of
every kind, an SMS service over the real SQLite control plane, a fake trunk sender, and reads
through a separate connection. (A ``test_`` module so the SMS tests own it; it has one test of
its own, on the fake sender.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api_support import Api

from api.reports import CallReports, attach_reports
from api.sms import InboundSms, SmsService, SmsVerdict, attach_sms
from api.tenants import NewTenant
from config.settings import SmsSettings
from routing.model import Binding, BindingType, PhoneNumber, PoolKey
from store import SmsMode
from store.pools import PoolSettings

A_NO = PhoneNumber("+8613800138000")
B_NO = PhoneNumber("+8613900139000")
N_NO = PhoneNumber("+8613700137000")
STRANGER = PhoneNumber("+8613600136000")
# Settings of the scene: short enough to cross in a test by moving the clock.
CONFIRM_EXPIRY_S = 600
RETENTION_DAYS = 7


@dataclass
class FakeTrunk:
    """The engine's ``send``: records (to, from_x, text), answers ``status`` (None: timeout)."""

    status: int | None = 200
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set: each send waits for it

    async def __call__(self, to: PhoneNumber, from_x: PhoneNumber, text: str) -> int | None:
        self.sent.append((to, from_x, text))
        if self.gate is not None:
            await self.gate.wait()
        return self.status


@dataclass
class SmsScene:
    """Tenant A: an AXB pool with binding A↔B, an AXN pool (A for any N), a 95AXN pool with a
    binding; tenant B: an AXB pool. Every pool starts with SMS off."""

    api: Api
    reports: CallReports
    service: SmsService
    trunk: FakeTrunk
    a: NewTenant
    b: NewTenant
    axb: PoolKey
    axn: PoolKey
    axn95: PoolKey
    other: PoolKey
    axb_binding: Binding
    axn_binding: Binding
    axn95_binding: Binding

    @property
    def db_path(self) -> Path:
        return self.api.db_path

    async def mode(self, pool_key: PoolKey, mode: SmsMode) -> None:
        await self.api.control.configure_pool(pool_key, PoolSettings(sms_mode=mode))

    async def text(
        self, x: str, sender: PhoneNumber | None, text: str, *, call_id: str = "sip-call-1"
    ) -> SmsVerdict:
        """A MESSAGE from ``sender`` to ``x`` now, as the engine hands it over."""
        message = InboundSms(
            x=PhoneNumber(x),
            sender=sender,
            text=text,
            received_at=self.api.clock.now,
            call_id=call_id,
        )
        return await self.service.receive(message)


async def make_sms_scene(api: Api, *, trunk: FakeTrunk | None = None) -> SmsScene:
    control = api.control
    reports = attach_reports(control, clock=api.clock, warning_delay_s=0.01)
    await api.import_inventory()
    a = await control.tenants.create_tenant("Tenant A")
    b = await control.tenants.create_tenant("Tenant B")
    axb = await control.create_pool(BindingType.AXB, "A's AXB", a.tenant_id)
    await control.add_numbers(axb, 2, city="北京")
    axn = await control.create_pool(BindingType.AXN, "A's AXN", a.tenant_id)
    await control.add_numbers(axn, 2, city="北京")
    axn95 = await control.create_pool(BindingType.AXN95, "A's 95", a.tenant_id)
    await control.add_numbers(axn95, 1, city="全国")
    other = await control.create_pool(BindingType.AXB, "B's AXB", b.tenant_id)
    await control.add_numbers(other, 2, city="北京")
    expires = api.expires(30 * 86_400)
    axb_binding = await control.bind(
        BindingType.AXB, axb, A_NO, B_NO, expires=expires, out_id="order-1", tenant=a.tenant_id
    )
    axn_binding = await control.bind(BindingType.AXN, axn, A_NO, expires=expires)
    axn95_binding = await control.bind(BindingType.AXN95, axn95, A_NO, expires=expires)
    the_trunk = trunk or FakeTrunk()
    service = attach_sms(  # the REST routes find it through sms_of(control)
        control,
        reports=reports,
        settings=SmsSettings(retention_days=RETENTION_DAYS, confirm_expiry_s=CONFIRM_EXPIRY_S),
        clock=api.clock,
    )
    service.attach_sender(the_trunk)
    return SmsScene(
        api, reports, service, the_trunk, a, b, axb, axn, axn95, other,
        axb_binding, axn_binding, axn95_binding,
    )  # fmt: skip


def rows(db_path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """``sql`` through a separate connection (what is durable)."""
    conn = sqlite3.connect(db_path)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def messages(db_path: Path) -> list[dict[str, Any]]:
    """Every stored SMS as a dict, oldest first."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM sms_messages ORDER BY received_at, rowid").fetchall()
        return [dict(r) for r in found]
    finally:
        conn.close()


def reports_of(db_path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Payloads of the outbox's reports (of ``kind``), in order."""
    where = "" if kind is None else " WHERE kind = ?"
    params: tuple[object, ...] = () if kind is None else (kind,)
    return [
        json.loads(r[0])
        for r in rows(db_path, f"SELECT payload FROM report_outbox{where} ORDER BY seq", *params)
    ]


async def test_fake_trunk_records_and_answers() -> None:
    trunk = FakeTrunk(status=480)
    assert await trunk(A_NO, B_NO, "x") == 480
    assert trunk.sent == [(A_NO, B_NO, "x")]
