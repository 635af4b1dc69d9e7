"""Tenants and their API keys in the store (tables ``tenants`` and ``api_keys``).

An API key row holds no secret: only the random ``salt`` the server derives the secret from
(with the master key, see :mod:`api.tenants`). Every write is one ``db.write`` op (one
transaction); a tenant and its first key are written together.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum

from store.db import Database
from store.repositories import ConflictError

__all__ = [
    "ApiKeyRow",
    "KeyStatus",
    "TenantRow",
    "TenantStatus",
    "get_tenant",
    "insert_api_key",
    "insert_tenant_with_key",
    "list_api_keys",
    "list_tenants",
    "load_api_keys",
    "load_tenant_statuses",
    "set_api_key_status",
    "set_tenant_status",
]


class TenantStatus(StrEnum):
    """``tenants.status``: a suspended tenant's keys authenticate nothing."""

    ACTIVE = "active"
    SUSPENDED = "suspended"


class KeyStatus(StrEnum):
    """``api_keys.status``."""

    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class TenantRow:
    """A tenant."""

    tenant_id: str
    name: str
    status: TenantStatus
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An access key: its id, owner and the salt its secret is derived from (never the secret)."""

    access_key_id: str
    tenant_id: str
    salt: str
    status: KeyStatus
    created_at: float
    disabled_at: float | None = None


def _tenant(row: sqlite3.Row) -> TenantRow:
    return TenantRow(
        tenant_id=row["id"],
        name=row["name"],
        status=TenantStatus(row["status"]),
        created_at=row["created_at"],
    )


def _key(row: sqlite3.Row) -> ApiKeyRow:
    return ApiKeyRow(
        access_key_id=row["access_key_id"],
        tenant_id=row["tenant_id"],
        salt=row["salt"],
        status=KeyStatus(row["status"]),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )


def _insert_key(conn: sqlite3.Connection, key: ApiKeyRow) -> None:
    try:
        conn.execute(
            "INSERT INTO api_keys (access_key_id, tenant_id, salt, status, created_at,"
            " disabled_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                key.access_key_id,
                key.tenant_id,
                key.salt,
                str(key.status),
                key.created_at,
                key.disabled_at,
            ),
        )
    except sqlite3.IntegrityError as error:
        raise ConflictError(f"access key {key.access_key_id!r} exists") from error


async def insert_tenant_with_key(db: Database, tenant: TenantRow, key: ApiKeyRow) -> None:
    """Create ``tenant`` and its first ``key`` in one transaction.

    ``ConflictError`` (nothing written) when the tenant id or the key id exists.
    """

    def op(conn: sqlite3.Connection) -> None:
        try:
            conn.execute(
                "INSERT INTO tenants (id, name, status, created_at) VALUES (?, ?, ?, ?)",
                (tenant.tenant_id, tenant.name, str(tenant.status), tenant.created_at),
            )
        except sqlite3.IntegrityError as error:
            raise ConflictError(f"tenant {tenant.tenant_id!r} exists") from error
        _insert_key(conn, key)

    await db.write(op)


async def insert_api_key(db: Database, key: ApiKeyRow) -> TenantStatus | None:
    """Add ``key`` to its tenant; returns the tenant's status, or None (nothing written) when
    there is no such tenant. ``ConflictError`` when the key id exists."""

    def op(conn: sqlite3.Connection) -> TenantStatus | None:
        row = conn.execute("SELECT status FROM tenants WHERE id = ?", (key.tenant_id,)).fetchone()
        if row is None:
            return None
        _insert_key(conn, key)
        return TenantStatus(row["status"])

    return await db.write(op)


async def set_api_key_status(
    db: Database, access_key_id: str, status: KeyStatus, *, now: float
) -> ApiKeyRow | None:
    """Set a key's status (``disabled_at`` = ``now`` when disabling, NULL when enabling); the
    updated key, or None when there is no such key. Setting the current status changes nothing."""

    def op(conn: sqlite3.Connection) -> ApiKeyRow | None:
        row = conn.execute(
            "SELECT * FROM api_keys WHERE access_key_id = ?", (access_key_id,)
        ).fetchone()
        if row is None:
            return None
        if row["status"] != str(status):
            disabled_at = now if status is KeyStatus.DISABLED else None
            conn.execute(
                "UPDATE api_keys SET status = ?, disabled_at = ? WHERE access_key_id = ?",
                (str(status), disabled_at, access_key_id),
            )
            row = conn.execute(
                "SELECT * FROM api_keys WHERE access_key_id = ?", (access_key_id,)
            ).fetchone()
        return _key(row)

    return await db.write(op)


async def set_tenant_status(db: Database, tenant_id: str, status: TenantStatus) -> bool:
    """Set a tenant's status; False when there is no such tenant."""

    def op(conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "UPDATE tenants SET status = ? WHERE id = ?", (str(status), tenant_id)
        )
        return cursor.rowcount > 0

    return await db.write(op)


async def get_tenant(db: Database, tenant_id: str) -> TenantRow | None:
    """The tenant ``tenant_id``, or None."""

    def fn(conn: sqlite3.Connection) -> TenantRow | None:
        row = conn.execute("SELECT * FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
        return None if row is None else _tenant(row)

    return await db.read(fn)


async def list_tenants(db: Database) -> list[TenantRow]:
    """Every tenant, oldest first (creation order)."""

    def fn(conn: sqlite3.Connection) -> list[TenantRow]:
        rows = conn.execute("SELECT * FROM tenants ORDER BY created_at, rowid").fetchall()
        return [_tenant(row) for row in rows]

    return await db.read(fn)


async def load_tenant_statuses(db: Database) -> dict[str, TenantStatus]:
    """Every tenant's status (start-up load)."""

    def fn(conn: sqlite3.Connection) -> dict[str, TenantStatus]:
        return {
            row["id"]: TenantStatus(row["status"])
            for row in conn.execute("SELECT id, status FROM tenants")
        }

    return await db.read(fn)


async def list_api_keys(db: Database, tenant_id: str) -> list[ApiKeyRow]:
    """The keys of one tenant (active and disabled), oldest first (creation order)."""

    def fn(conn: sqlite3.Connection) -> list[ApiKeyRow]:
        rows = conn.execute(
            "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, rowid",
            (tenant_id,),
        ).fetchall()
        return [_key(row) for row in rows]

    return await db.read(fn)


async def load_api_keys(db: Database) -> list[ApiKeyRow]:
    """Every key of every tenant (start-up load)."""

    def fn(conn: sqlite3.Connection) -> list[ApiKeyRow]:
        return [_key(row) for row in conn.execute("SELECT * FROM api_keys")]

    return await db.read(fn)
