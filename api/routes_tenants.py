"""REST routes (``/v1/...``) of the tenants area; mounted by :func:`api.app.create_app`.

Operator only, except ``GET /v1/tenants/{tenant_id}`` which a tenant may call for itself (another
tenant's id answers 404 ``TENANT_NOT_EXIST``, as an id that does not exist). A tenant calling an
operator-only route gets 403 ``FORBIDDEN`` and nothing changes. A secret appears once, in the
201 answer that creates its key; no route returns it again.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDependency
from api.control import ControlPlane
from api.principal import Principal
from api.tenants import OperatorOnly, TenantView

__all__ = ["build_router"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantIn(_Model):
    """A new tenant (its first access key pair is created with it)."""

    name: str = Field(description="1-128 characters", examples=["Acme Logistics"])


class NewTenantOut(_Model):
    """A created tenant and its first key pair: the secret is shown only here, keep it."""

    tenant_id: str
    name: str
    access_key_id: str
    access_key_secret: str


class NewKeyOut(_Model):
    """A created key pair: the secret is shown only here, keep it."""

    access_key_id: str
    access_key_secret: str


class KeyOut(_Model):
    """An access key (never its secret); times local ``YYYY-MM-DD HH:MM:SS``."""

    access_key_id: str
    status: str = Field(description="active or disabled")
    created: str
    disabled: str | None = Field(description="when it was disabled; null while active")


class TenantOut(_Model):
    """A tenant and its access keys."""

    tenant_id: str
    name: str
    status: str = Field(description="active or suspended")
    created: str
    keys: list[KeyOut]


class TenantsOut(_Model):
    """Every tenant, oldest first."""

    tenants: list[TenantOut]


class KeyStatusOut(_Model):
    """A key's status after enable/disable."""

    access_key_id: str
    status: str


class TenantStatusOut(_Model):
    """A tenant's status after suspend/resume."""

    tenant_id: str
    status: str


def _tenant_out(view: TenantView) -> TenantOut:
    return TenantOut.model_validate(dataclasses.asdict(view))


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes its tenant on."""
    router = APIRouter(tags=["tenants"])
    tenants = control.tenants
    caller = Depends(principal)

    async def operator_only(who: Principal = caller) -> Principal:
        # A dependency, so that a tenant is refused (403) before its body is even validated.
        if not who.is_operator:
            raise OperatorOnly("this route")
        return who

    operator = Depends(operator_only)

    @router.post(
        "/tenants",
        response_model=NewTenantOut,
        status_code=201,
        summary="Create a tenant and its first access key pair (operator)",
    )
    async def create_tenant(body: TenantIn, who: Principal = operator) -> NewTenantOut:
        created = await tenants.create_tenant(body.name, tenant=who.tenant_id)
        return NewTenantOut.model_validate(dataclasses.asdict(created))

    @router.get("/tenants", response_model=TenantsOut, summary="List tenants (operator)")
    async def list_tenants(who: Principal = operator) -> TenantsOut:
        views = await tenants.list_tenants(tenant=who.tenant_id)
        return TenantsOut(tenants=[_tenant_out(view) for view in views])

    @router.get(
        "/tenants/{tenant_id}",
        response_model=TenantOut,
        summary="Show a tenant and its keys (operator, or the tenant itself)",
    )
    async def get_tenant(tenant_id: str, who: Principal = caller) -> TenantOut:
        return _tenant_out(await tenants.get_tenant(tenant_id, tenant=who.tenant_id))

    @router.post(
        "/tenants/{tenant_id}/keys",
        response_model=NewKeyOut,
        status_code=201,
        summary="Create another access key pair for a tenant (operator)",
    )
    async def create_key(tenant_id: str, who: Principal = operator) -> NewKeyOut:
        created = await tenants.create_key(tenant_id, tenant=who.tenant_id)
        return NewKeyOut.model_validate(dataclasses.asdict(created))

    async def _set_tenant(tenant_id: str, active: bool, who: Principal) -> TenantStatusOut:
        await tenants.set_tenant_status(tenant_id, active, tenant=who.tenant_id)
        return TenantStatusOut(tenant_id=tenant_id, status="active" if active else "suspended")

    @router.post(
        "/tenants/{tenant_id}/suspend",
        response_model=TenantStatusOut,
        summary="Suspend a tenant: its keys authenticate nothing (operator)",
    )
    async def suspend_tenant(tenant_id: str, who: Principal = operator) -> TenantStatusOut:
        return await _set_tenant(tenant_id, False, who)

    @router.post(
        "/tenants/{tenant_id}/resume",
        response_model=TenantStatusOut,
        summary="Resume a suspended tenant (operator)",
    )
    async def resume_tenant(tenant_id: str, who: Principal = operator) -> TenantStatusOut:
        return await _set_tenant(tenant_id, True, who)

    async def _set_key(access_key_id: str, active: bool, who: Principal) -> KeyStatusOut:
        await tenants.set_key_status(access_key_id, active, tenant=who.tenant_id)
        return KeyStatusOut(access_key_id=access_key_id, status="active" if active else "disabled")

    @router.post(
        "/keys/{access_key_id}/disable",
        response_model=KeyStatusOut,
        summary="Disable an access key (operator)",
    )
    async def disable_key(access_key_id: str, who: Principal = operator) -> KeyStatusOut:
        return await _set_key(access_key_id, False, who)

    @router.post(
        "/keys/{access_key_id}/enable",
        response_model=KeyStatusOut,
        summary="Enable a disabled access key (operator)",
    )
    async def enable_key(access_key_id: str, who: Principal = operator) -> KeyStatusOut:
        return await _set_key(access_key_id, True, who)

    return router
