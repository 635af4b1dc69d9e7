"""Authentication of the REST API: the operator's bearer token or a tenant's access key.

- Operator: ``Authorization: Bearer <[api] operator_token>`` → :data:`api.principal.OPERATOR`.
- Tenant: ``Authorization: Basic base64(<access_key_id>:<access_key_secret>)`` → the key's tenant.

A missing or wrong credential is 401 ``UNAUTHORIZED``; with no operator token configured the
bearer scheme is closed (403 ``FORBIDDEN``), tenants' keys still work.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable

from fastapi import Request

from api.errors import ErrorCode
from api.principal import OPERATOR, Principal

__all__ = ["AuthError", "PrincipalDependency", "TenantAuthenticator", "principal_dependency"]

#: ``(access_key_id, access_key_secret)`` → the tenant id, or None when the pair is not valid.
TenantAuthenticator = Callable[[str, str], Awaitable[str | None]]
PrincipalDependency = Callable[[Request], Awaitable[Principal]]


class AuthError(Exception):
    """A refused credential: HTTP ``status`` with ``{"code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _unauthorized(message: str) -> AuthError:
    return AuthError(401, ErrorCode.UNAUTHORIZED, message)


def principal_dependency(
    operator_token: str | None, authenticate_tenant: TenantAuthenticator | None
) -> PrincipalDependency:
    """A FastAPI dependency answering who made the request (or raising :class:`AuthError`)."""
    expected = operator_token.encode() if operator_token else None

    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        scheme = scheme.lower()
        credential = credential.strip()
        if scheme == "basic" and authenticate_tenant is not None:
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _unauthorized("malformed Basic credentials") from None
            key_id, sep, secret = decoded.partition(":")
            if not sep or not key_id or not secret:
                raise _unauthorized("Basic credentials must be <access_key_id>:<secret>")
            tenant_id = await authenticate_tenant(key_id, secret)
            if tenant_id is None:
                raise _unauthorized("unknown access key or wrong secret")
            return Principal(tenant_id, key_id)
        if expected is None:
            if scheme == "bearer":
                raise AuthError(
                    403,
                    ErrorCode.FORBIDDEN,
                    "no operator_token is configured in [api]; operator access is disabled",
                )
            raise _unauthorized("missing credentials (Basic access key)")
        if scheme != "bearer" or not secrets.compare_digest(credential.encode(), expected):
            raise _unauthorized(
                "missing or wrong credentials (Bearer operator_token or Basic access key)"
            )
        return OPERATOR

    return principal
