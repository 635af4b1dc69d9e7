"""Errors of the control plane: a stable ``code``, a human ``message`` and an HTTP status.

Codes are the reference service's error codes without its ``isv.`` prefix (``BIND_CONFLICT``,
``NO_AVAILABLE_NUMBER``, ``EXPIRE_DATE_ILLEGAL``, ``MOBILE_NUMBER_ILLEGAL``) plus our own where it
has none (``POOL_NOT_EXIST``, ``POOL_TYPE_MISMATCH`` ...). The HTTP layer maps every
:class:`ControlError` to ``{"code": ..., "message": ...}`` with :attr:`ControlError.status` in one
place (``api.app``); the CLI prints the same object.
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = [
    "BAD_REQUEST",
    "CONFLICT",
    "NOT_FOUND",
    "Conflict",
    "ControlError",
    "ErrorCode",
    "InvalidInput",
    "NotFound",
]

BAD_REQUEST: Final = 400
NOT_FOUND: Final = 404
CONFLICT: Final = 409


class ErrorCode:
    """The error codes of the control plane (string constants; a public contract)."""

    # 400: the request itself is wrong.
    MOBILE_NUMBER_ILLEGAL: Final = "MOBILE_NUMBER_ILLEGAL"
    NUMBER_ILLEGAL: Final = "NUMBER_ILLEGAL"
    EXPIRE_DATE_ILLEGAL: Final = "EXPIRE_DATE_ILLEGAL"
    POOL_TYPE_MISMATCH: Final = "POOL_TYPE_MISMATCH"
    PARAMETER_ILLEGAL: Final = "PARAMETER_ILLEGAL"
    NUMBER_NOT_IN_POOL: Final = "NUMBER_NOT_IN_POOL"
    GROUP_NOT_IN_POOL: Final = "GROUP_NOT_IN_POOL"
    CSV_ILLEGAL: Final = "CSV_ILLEGAL"
    POOL_TENANT_MISMATCH: Final = "POOL_TENANT_MISMATCH"
    AMOUNT_ILLEGAL: Final = "AMOUNT_ILLEGAL"
    # 404: something named by the request does not exist.
    POOL_NOT_EXIST: Final = "POOL_NOT_EXIST"
    BINDING_NOT_EXIST: Final = "BINDING_NOT_EXIST"
    GROUP_NOT_EXIST: Final = "GROUP_NOT_EXIST"
    TENANT_NOT_EXIST: Final = "TENANT_NOT_EXIST"
    CALL_NOT_EXIST: Final = "CALL_NOT_EXIST"
    ACCESS_KEY_NOT_EXIST: Final = "ACCESS_KEY_NOT_EXIST"
    NUMBER_NOT_EXIST: Final = "NUMBER_NOT_EXIST"
    MIGRATION_NOT_EXIST: Final = "MIGRATION_NOT_EXIST"
    BLACKLIST_NOT_EXIST: Final = "BLACKLIST_NOT_EXIST"
    # 409: the request is fine but the state of the system refuses it.
    BIND_CONFLICT: Final = "BIND_CONFLICT"
    NO_AVAILABLE_NUMBER: Final = "NO_AVAILABLE_NUMBER"
    NUMBER_ALREADY_EXIST: Final = "NUMBER_ALREADY_EXIST"
    NUMBER_UNVERIFIED: Final = "NUMBER_UNVERIFIED"
    NOT_ENOUGH_BALANCE: Final = "NOT_ENOUGH_BALANCE"
    NUMBER_IN_USE: Final = "NUMBER_IN_USE"
    VERIFICATION_STATE_ILLEGAL: Final = "VERIFICATION_STATE_ILLEGAL"
    GROUP_IN_USE: Final = "GROUP_IN_USE"
    # Transport level (HTTP layer only).
    UNAUTHORIZED: Final = "UNAUTHORIZED"
    FORBIDDEN: Final = "FORBIDDEN"
    NOT_FOUND: Final = "NOT_FOUND"
    INTERNAL_ERROR: Final = "INTERNAL_ERROR"


class ControlError(Exception):
    """Root of control-plane errors; nothing was written when one is raised."""

    status: ClassVar[int] = BAD_REQUEST

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, str]:
        """The wire form ``{"code": ..., "message": ...}``."""
        return {"code": self.code, "message": self.message}


class InvalidInput(ControlError):
    """The request is malformed or names values that can never be accepted (400)."""

    status = BAD_REQUEST


class NotFound(ControlError):
    """A pool, binding or group named by the request does not exist (404)."""

    status = NOT_FOUND


class Conflict(ControlError):
    """The current state refuses the request: conflict, no stock, duplicate (409)."""

    status = CONFLICT
