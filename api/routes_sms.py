"""REST routes (``/v1/...``) of SMS through X (SPEC §5); mounted by :func:`api.app.create_app`.

- ``GET /v1/pools/{pool_key}/sms``: the pool's SMS mode, keyword whitelist, confirm flag;
- ``PUT /v1/pools/{pool_key}/sms`` ``{"sms_mode", "keywords", "confirm"}`` (each optional):
  change them (95AXN pools: SMS stays off);
- ``GET /v1/sms?pool_key=&state=&limit=``: stored messages, newest first (``state=pending``:
  those waiting for confirmation);
- ``GET /v1/sms/{id}``: one message, with its text while retention keeps it;
- ``POST /v1/sms/{id}/confirm``: send a held message now (409 ``SMS_NOT_PENDING`` unless held);
- ``POST /v1/sms/{id}/discard``: drop a held message (reported, billed as an intercept).

Scoping as everywhere: a tenant sees its own pools' messages only; another tenant's message
answers 404 ``SMS_NOT_EXIST`` exactly as an unknown id. Rules: :mod:`api.sms`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.principal import Principal
from api.sms import SmsService, message_view, sms_of
from store.repositories import SmsMode
from store.sms import MAX_KEYWORD_CHARS, MAX_KEYWORDS, PoolSms, SmsMessage

__all__ = ["build_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolSmsIn(_Model):
    """SMS settings of a pool to change; absent fields stay as they are."""

    sms_mode: SmsMode | None = Field(
        default=None, description="off, intercept, full_intercept, smart"
    )
    keywords: list[Annotated[str, Field(max_length=MAX_KEYWORD_CHARS)]] | None = Field(
        default=None,
        max_length=MAX_KEYWORDS,
        description="whitelist: in an intercept mode a message containing one is delivered as a"
        " smart SMS (case-insensitive); replaces the list",
    )
    confirm: bool | None = Field(
        default=None, description="hold smart SMS until the tenant confirms (or they expire)"
    )


class PoolSmsOut(_Model):
    """A pool's SMS settings."""

    pool_key: str
    sms_mode: str
    keywords: list[str]
    confirm: bool


class SmsOut(_Model):
    """A stored message (``content`` null once retention deleted it)."""

    id: str
    pool_key: str
    sub_id: str | None
    out_id: str | None
    secret_no: str
    sender_no: str | None
    receiver_no: str | None
    state: str = Field(
        description="intercepted, unsubscribe, pending, sending, delivered, failed, discarded"
    )
    cause: str
    content: str | None
    content_deleted: bool
    chars: int
    segments: int
    received_time: str | None
    confirm_deadline: str | None
    confirmed_time: str | None
    sent_time: str | None
    sip_status: int | None


class SmsListOut(_Model):
    """Messages, newest first."""

    messages: list[SmsOut]


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes it on."""
    router = APIRouter(tags=["sms"])
    caller = Depends(principal)

    def sms() -> SmsService:
        return sms_of(control)

    def pool_out(settings: PoolSms) -> PoolSmsOut:
        return PoolSmsOut(
            pool_key=settings.pool_key,
            sms_mode=settings.mode.value,
            keywords=list(settings.keywords),
            confirm=settings.confirm,
        )

    def out(message: SmsMessage) -> SmsOut:
        view: dict[str, Any] = message_view(message, control.zone)
        return SmsOut.model_validate(view)

    @router.get("/pools/{pool_key}/sms", response_model=PoolSmsOut, summary="Pool SMS settings")
    async def get_pool_sms(pool_key: str, who: Principal = caller) -> PoolSmsOut:
        return pool_out(await sms().pool_settings(who, pool_key))

    @router.put(
        "/pools/{pool_key}/sms", response_model=PoolSmsOut, summary="Change pool SMS settings"
    )
    async def put_pool_sms(pool_key: str, body: PoolSmsIn, who: Principal = caller) -> PoolSmsOut:
        changed = await sms().configure_pool(
            who, pool_key, mode=body.sms_mode, keywords=body.keywords, confirm=body.confirm
        )
        return pool_out(changed)

    @router.get("/sms", response_model=SmsListOut, summary="Stored SMS, newest first")
    async def list_sms(
        who: Principal = caller,
        pool_key: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SmsListOut:
        found = await sms().list_messages(who, pool_key=pool_key, state=state, limit=limit)
        return SmsListOut(messages=[out(m) for m in found])

    @router.get("/sms/{message_id}", response_model=SmsOut, summary="One stored SMS")
    async def get_sms(message_id: str, who: Principal = caller) -> SmsOut:
        return out(await sms().get(who, message_id))

    @router.post("/sms/{message_id}/confirm", response_model=SmsOut, summary="Send a held SMS now")
    async def confirm_sms(message_id: str, who: Principal = caller) -> SmsOut:
        return out(await sms().confirm(who, message_id))

    @router.post("/sms/{message_id}/discard", response_model=SmsOut, summary="Drop a held SMS")
    async def discard_sms(message_id: str, who: Principal = caller) -> SmsOut:
        return out(await sms().discard(who, message_id))

    return router
