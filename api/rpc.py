"""The reference service's RPC API (Dyplsapi 2017-05-25) served at ``/`` (shared/api/DYPLSAPI.md).

Mounted by :func:`api.app.create_app` for GET and POST. One request:

1. the signature is verified under whichever scheme it uses (:mod:`api.rpc_signing`, §3/§4) with
   the tenants' key lookup and the control plane's clock (±15 min);
2. its nonce is recorded for the key (:mod:`api.rpc_nonces`; a repeat is ``SignatureNonceUsed``)
   — only now, so unsigned traffic cannot fill the memory;
3. the version must be ``2017-05-25``; the action (query ``Action``, else ``x-acs-action``) is
   looked up in :class:`api.rpc_actions.RpcActions`' table and run with the key's tenant.

Answers (§5), always JSON ``application/json;charset=utf-8`` with a ``RequestId`` (upper-case
UUID4, also in the ``x-acs-request-id`` header):

- success: 200 ``{"Code":"OK","Message":"OK","RequestId",...}``;
- business error: 200 ``{"Code":"isv.…","Message","RequestId"}``;
- gateway error: 4xx ``{"RequestId","HostId","Code","Message","Recommend"}`` (signature, time,
  nonce, key, ``InvalidApi.NotFound`` for an unknown action, ``InvalidVersion``,
  ``Missing<Name>``, ``InvalidParameter`` for a body over 1 MiB);
- an action of a product maskline does not offer (700, fixed line, work numbers, courier, KYC…):
  business error ``isv.FORBIDDEN_ACTION`` (see :data:`api.rpc_actions.UNSUPPORTED_ACTIONS`);
- anything unexpected: 500 with code ``isp.SYSTEM_ERROR`` (logged), never a non-JSON body.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.control import ControlPlane
from api.errors import ControlError
from api.rpc_actions import (
    API_VERSION,
    FORBIDDEN_ACTION,
    UNSUPPORTED_ACTIONS,
    BusinessError,
    Call,
    Params,
    RpcActions,
    business_error_of,
)
from api.rpc_nonces import NonceCache
from api.rpc_signing import RpcSignatureError, verify_request
from engine.logging import get_logger

__all__ = ["MEDIA_TYPE", "build_rpc_endpoint", "gateway_error"]

_log = get_logger("api.rpc")

MEDIA_TYPE: Final = "application/json;charset=utf-8"
# choice: bodies above this size are refused before any parsing (the SDKs send none, §2).
MAX_BODY_BYTES: Final = 1024 * 1024
_RECOMMEND: Final = "See shared/api/DYPLSAPI.md §5 for this error code."


def _request_id() -> str:
    """A request id in the reference's style: an upper-case UUID4."""
    return str(uuid.uuid4()).upper()


def _json(body: dict[str, Any], status: int, request_id: str) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, media_type=MEDIA_TYPE, headers={"x-acs-request-id": request_id}
    )


def gateway_error(code: str, message: str, status: int) -> RpcSignatureError:
    """A gateway error (§5) to raise from anywhere in the request."""
    return RpcSignatureError(code, message, status)


def _api_not_found() -> RpcSignatureError:
    return gateway_error(
        "InvalidApi.NotFound",
        "Specified api is not found, please check your url and method.",
        404,
    )


def _too_large() -> RpcSignatureError:
    return gateway_error(
        "InvalidParameter", f"The request body is larger than {MAX_BODY_BYTES} bytes.", 400
    )


async def _read_body(request: Request) -> bytes:
    """The body, refused past :data:`MAX_BODY_BYTES` without reading it all (chunked too)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def build_rpc_endpoint(control: ControlPlane) -> Callable[[Request], Awaitable[Response]]:
    """The ASGI endpoint for ``/`` (GET and POST)."""
    actions = RpcActions(control)
    nonces = NonceCache()

    async def endpoint(request: Request) -> Response:
        request_id = _request_id()
        host = request.headers.get("host", "maskline")
        try:
            body = await _dispatch(request, request_id)
        except RpcSignatureError as error:
            return _json(
                {
                    "RequestId": request_id,
                    "HostId": host,
                    "Code": error.code,
                    "Message": error.message,
                    "Recommend": _RECOMMEND,
                },
                error.status,
                request_id,
            )
        except BusinessError as error:
            return _json(
                {"Code": error.code, "Message": error.message, "RequestId": request_id},
                200,
                request_id,
            )
        except Exception as error:
            _log.error(
                "rpc_internal_error", request_id=request_id, error=repr(error), exc_info=error
            )
            return _json(
                {
                    "RequestId": request_id,
                    "HostId": host,
                    "Code": "isp.SYSTEM_ERROR",
                    "Message": "The request processing has failed due to some unknown error.",
                    "Recommend": "Retry later; the server log holds the details (RequestId).",
                },
                500,
                request_id,
            )
        return _json(body, 200, request_id)

    async def _dispatch(request: Request, request_id: str) -> dict[str, Any]:
        raw = await _read_body(request)
        now = control.clock()
        raw_path: bytes | None = request.scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else request.url.path
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        verified = verify_request(
            method=request.method,
            path=path,
            query=request.scope.get("query_string", b""),
            headers=headers,
            body=raw,
            secret_for=control.tenants.secret_for,
            now=datetime.fromtimestamp(now, UTC),
        )
        tenant = control.tenants.tenant_of_key(verified.access_key_id)
        if tenant is None:  # the key vanished between the two lookups
            raise gateway_error(
                "InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404
            )
        nonces.use(verified.access_key_id, verified.nonce, now)
        # STS credentials (v2 ``SecurityToken``, v3 ``x-acs-security-token``) come from the
        # vendor's token service; maskline issues none, so a request carrying one is refused
        # rather than served as if the token were not there.
        if "SecurityToken" in verified.params or "x-acs-security-token" in request.headers:
            raise gateway_error(
                "InvalidSecurityToken.Malformed",
                "Specified SecurityToken is malformed: maskline issues no security tokens; "
                "sign with a tenant's access key.",
                400,
            )
        if verified.version != API_VERSION:
            raise gateway_error("InvalidVersion", "Specified parameter Version is not valid.", 400)
        handler = actions.handlers.get(verified.action)
        if handler is None:
            if verified.action in UNSUPPORTED_ACTIONS:
                raise BusinessError(
                    FORBIDDEN_ACTION,
                    f"{verified.action} belongs to a product maskline does not offer",
                )
            raise _api_not_found()
        _log.debug(
            "rpc_request",
            request_id=request_id,
            action=verified.action,
            tenant=tenant,
            scheme=verified.scheme,
        )
        try:
            fields = await handler(Call(tenant=tenant, params=Params(verified.params), now=now))
        except ControlError as error:
            raise business_error_of(error) from None
        return {"Code": "OK", "Message": "OK", "RequestId": request_id, **fields}

    return endpoint
