"""REST routes (``/v1/...``) of the tenants area; mounted by :func:`api.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import PrincipalDependency
from api.control import ControlPlane

__all__ = ["build_router"]


def build_router(control: ControlPlane, principal: PrincipalDependency) -> APIRouter:
    """The area's routes; each takes ``Depends(principal)`` and passes its tenant on."""
    router = APIRouter()
    return router
