"""Helpers of the tenants tests: Basic credentials, the tenant tables, a restarted control plane."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import httpx
from api_support import ZONE, Api, Clock, Snapshot, snapshot_tables

from api.control import ControlPlane
from routing.index import BindingIndex
from store import Database

TENANT_TABLES = ("tenants", "api_keys")


def basic(access_key_id: str, secret: str) -> dict[str, str]:
    """The ``Authorization`` header of a tenant's key pair."""
    token = base64.b64encode(f"{access_key_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {token}"}


def tenant_rows(db_path: Path) -> Snapshot:
    """Every row of the tenants and api_keys tables (a separate connection)."""
    return snapshot_tables(db_path, TENANT_TABLES)


def every_text_value(db_path: Path) -> list[str]:
    """Every value of every column of every table, as text."""
    conn = sqlite3.connect(db_path)
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return [
            str(value)
            for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
            for value in row
        ]
    finally:
        conn.close()


async def create_tenant(api: Api, name: str = "Acme") -> dict[str, Any]:
    """A new tenant through the REST API (operator); its answer."""
    response = await api.client.post("/v1/tenants", json={"name": name})
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def as_tenant(
    api: Api, method: str, path: str, access_key_id: str, secret: str, **kwargs: Any
) -> httpx.Response:
    """A request with the tenant's Basic credentials instead of the operator's bearer token."""
    return await api.client.request(method, path, headers=basic(access_key_id, secret), **kwargs)


async def reopen(
    db_path: Path, clock: Clock, *, master_key_path: Path | None = None
) -> ControlPlane:
    """A new control plane on the same database file (a restart), loaded."""
    db = await Database.open(db_path)
    plane = ControlPlane(
        db=db, index=BindingIndex(), zone=ZONE, clock=clock, master_key_path=master_key_path
    )
    try:
        await plane.load()
    except BaseException:
        await db.close()
        raise
    return plane
