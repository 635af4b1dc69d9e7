"""The reference service's RPC API (Dyplsapi 2017-05-25) served at ``/`` (shared/api/DYPLSAPI.md).

Mounted by :func:`api.app.create_app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.control import ControlPlane

__all__ = ["build_rpc_endpoint"]


def build_rpc_endpoint(control: ControlPlane) -> Callable[[Request], Awaitable[Response]]:
    """The ASGI endpoint for ``/`` (GET and POST)."""

    async def endpoint(request: Request) -> Response:
        return JSONResponse(
            {"Code": "InvalidApi.NotFound", "Message": "not implemented yet"}, status_code=404
        )

    return endpoint
