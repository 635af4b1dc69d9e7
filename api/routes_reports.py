"""REST routes (``/v1/...``) of the reports (SPEC §6); mounted by :func:`api.app.create_app`.

Push configuration, per tenant and report type (``start``, ``ring``, ``pickup``, ``end``,
``recording``, ``sms_intercept``, ``pool_warning``, or ``default`` for every type without its
own URL):

- ``PUT /v1/tenants/{tenant_id}/report-urls/{report_type}`` ``{"url": ...}``: set or replace;
- ``GET /v1/tenants/{tenant_id}/report-urls``: the tenant's URLs;
- ``DELETE /v1/tenants/{tenant_id}/report-urls/{report_type}``: that type goes back to pull;
- ``GET /v1/tenants/{tenant_id}/report-queue``: undelivered reports by type, latest push error.

Pull queue (the caller's own reports; the operator may name a tenant with ``tenant_id``):

- ``POST /v1/reports/pull`` ``{"max": 100, "visibility_timeout_s": 60}``: leases reports of the
  types without a push URL, oldest first;
- ``POST /v1/reports/ack`` ``{"ids": [...]}``: those reports are delivered.

Scoping as everywhere: a tenant acts for itself only (another tenant's id: 404
``TENANT_NOT_EXIST``, as an unknown one). Rules: :mod:`api.reports`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.principal import Principal
from api.reports import (
    MAX_ACK_IDS,
    MAX_PULL,
    MAX_URL_CHARS,
    MAX_VISIBILITY_TIMEOUT_S,
    CallReports,
    reports_of,
)
from store.outbox import PUSH_URL_TYPES, PushUrl

__all__ = ["build_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushUrlIn(_Model):
    """Where reports of one type are POSTed (JSON arrays)."""

    url: str = Field(
        min_length=1, max_length=MAX_URL_CHARS, examples=["https://tenant.example/maskline/end"]
    )


class PushUrlOut(_Model):
    """A push URL of one report type."""

    tenant_id: str
    report_type: str = Field(description=f"one of {', '.join(PUSH_URL_TYPES)}")
    url: str
    created: str
    updated: str


class PushUrlsOut(_Model):
    """The tenant's push URLs, by type."""

    urls: list[PushUrlOut]


class QueueOut(_Model):
    """The tenant's undelivered reports."""

    tenant_id: str
    pending: int
    pending_by_type: dict[str, int]
    oldest_created: str | None = Field(description="local time of the oldest pending report")
    next_attempt: str | None = Field(description="local time of the next push try or lease end")
    failing: int = Field(description="pending reports whose last push failed")
    last_error: str | None = Field(description="the latest push failure among them")


class PullIn(_Model):
    """A pull: how many reports at most, and how long they stay leased."""

    max: int = Field(default=100, ge=1, le=MAX_PULL)
    visibility_timeout_s: int = Field(
        default=60,
        ge=1,
        le=MAX_VISIBILITY_TIMEOUT_S,
        description="unacknowledged reports come back after this",
    )
    tenant_id: str | None = Field(
        default=None, description="operator: whose queue (absent: the operator's own pools)"
    )


class PullOut(_Model):
    """Leased reports, oldest first (the same JSON objects a push sends)."""

    reports: list[dict[str, Any]]


class AckIn(_Model):
    """Reports taken by pull and handled."""

    ids: list[str] = Field(max_length=MAX_ACK_IDS)
    tenant_id: str | None = Field(default=None, description="operator: whose queue")


class AckOut(_Model):
    """The ids that are delivered now (the caller's own; unknown ids are left out)."""

    acked: list[str]


class OkOut(_Model):
    """Success without a payload."""

    ok: bool = True


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes it on."""
    router = APIRouter(tags=["reports"])
    caller = Depends(principal)

    def reports() -> CallReports:
        return reports_of(control)

    def url_out(url: PushUrl) -> PushUrlOut:
        return PushUrlOut(
            tenant_id=url.tenant_id,
            report_type=url.report_type,
            url=url.url,
            created=control.local_time(url.created_at),
            updated=control.local_time(url.updated_at),
        )

    @router.put(
        "/tenants/{tenant_id}/report-urls/{report_type}",
        response_model=PushUrlOut,
        summary="Set the push URL of a report type (or 'default')",
    )
    async def set_url(
        tenant_id: str, report_type: str, body: PushUrlIn, who: Principal = caller
    ) -> PushUrlOut:
        return url_out(await reports().set_push_url(who, tenant_id, report_type, body.url))

    @router.get(
        "/tenants/{tenant_id}/report-urls",
        response_model=PushUrlsOut,
        summary="The tenant's push URLs",
    )
    async def list_urls(tenant_id: str, who: Principal = caller) -> PushUrlsOut:
        return PushUrlsOut(urls=[url_out(u) for u in await reports().push_urls(who, tenant_id)])

    @router.delete(
        "/tenants/{tenant_id}/report-urls/{report_type}",
        response_model=OkOut,
        summary="Remove a push URL (that type's reports wait for pull)",
    )
    async def delete_url(tenant_id: str, report_type: str, who: Principal = caller) -> OkOut:
        await reports().delete_push_url(who, tenant_id, report_type)
        return OkOut()

    @router.get(
        "/tenants/{tenant_id}/report-queue",
        response_model=QueueOut,
        summary="The tenant's undelivered reports",
    )
    async def queue(tenant_id: str, who: Principal = caller) -> QueueOut:
        status = await reports().queue_status(who, tenant_id)

        def local(epoch_s: float | None) -> str | None:
            return None if epoch_s is None else control.local_time(epoch_s)

        return QueueOut(
            tenant_id=tenant_id,
            pending=status.pending,
            pending_by_type=status.pending_by_type,
            oldest_created=local(status.oldest_created_at),
            next_attempt=local(status.next_attempt_at),
            failing=status.failing,
            last_error=status.last_error,
        )

    @router.post(
        "/reports/pull",
        response_model=PullOut,
        summary="Lease undelivered reports (types without a push URL); ack them by id",
    )
    async def pull(body: PullIn, who: Principal = caller) -> PullOut:
        leased = await reports().pull(
            who,
            tenant_id=body.tenant_id,
            max_reports=body.max,
            visibility_timeout_s=body.visibility_timeout_s,
        )
        return PullOut(reports=leased)

    @router.post("/reports/ack", response_model=AckOut, summary="Acknowledge pulled reports")
    async def ack(body: AckIn, who: Principal = caller) -> AckOut:
        return AckOut(acked=await reports().ack(who, body.ids, tenant_id=body.tenant_id))

    return router
