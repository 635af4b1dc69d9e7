"""Pool settings and the lookups of the binding API that go beyond one binding.

Separate from ``store.repositories`` so the two evolve independently; same conventions (times
UTC epoch seconds, numbers E.164, one transaction per write).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from routing.model import Binding, PhoneNumber, PoolKey
from store.db import Database
from store.repositories import (
    _BINDING_COLUMNS,
    AllocationMode,
    SmsMode,
    _binding,
)

__all__ = [
    "PoolSettings",
    "bindings_by_number",
    "update_pool",
]


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The configurable fields of a pool (SPEC §3); None in :func:`update_pool` = unchanged."""

    name: str | None = None
    allocation_mode: AllocationMode | None = None
    sms_mode: SmsMode | None = None
    recording: bool | None = None
    ringback: dict[str, str] | None = None
    # Thresholds: a value sets it; ``clear_warnings`` removes both.
    warn_free_numbers: int | None = None
    warn_utilisation_pct: float | None = None
    clear_warnings: bool = False


async def update_pool(db: Database, pool_key: PoolKey, settings: PoolSettings) -> bool:
    """Apply ``settings`` to the pool in one statement; False when there is no such pool."""
    assignments: list[str] = []
    values: list[object] = []
    simple: tuple[tuple[str, object], ...] = (
        ("name", settings.name),
        ("allocation_mode", settings.allocation_mode and str(settings.allocation_mode)),
        ("sms_mode", settings.sms_mode and str(settings.sms_mode)),
        ("recording", None if settings.recording is None else int(settings.recording)),
        (
            "ringback",
            None if settings.ringback is None else json.dumps(settings.ringback, sort_keys=True),
        ),
        ("warn_free_numbers", settings.warn_free_numbers),
        ("warn_utilisation_pct", settings.warn_utilisation_pct),
    )
    for column, value in simple:
        if value is not None:
            assignments.append(f"{column} = ?")
            values.append(value)
    if settings.clear_warnings:
        assignments += ["warn_free_numbers = NULL", "warn_utilisation_pct = NULL"]

    def op(conn: sqlite3.Connection) -> bool:
        if not assignments:
            found = conn.execute("SELECT 1 FROM pools WHERE pool_key = ?", (pool_key,))
            return found.fetchone() is not None
        cursor = conn.execute(
            f"UPDATE pools SET {', '.join(assignments)} WHERE pool_key = ?",  # noqa: S608
            (*values, pool_key),
        )
        return cursor.rowcount == 1

    return await db.write(op)


async def bindings_by_number(
    db: Database, number: PhoneNumber, pool_keys: Sequence[PoolKey] | None
) -> list[Binding]:
    """Not-unbound bindings where ``number`` is A or B, in ``pool_keys`` (None: every pool)."""
    scope = ""
    params: list[object] = [number, number]
    if pool_keys is not None:
        if not pool_keys:
            return []
        scope = f" AND pool_key IN ({', '.join('?' * len(pool_keys))})"
        params += list(pool_keys)

    def fn(conn: sqlite3.Connection) -> list[Binding]:
        rows = conn.execute(
            f"SELECT {_BINDING_COLUMNS} FROM bindings WHERE unbound_at IS NULL"  # noqa: S608
            f" AND (a = ? OR b = ?){scope} ORDER BY created_at, sub_id",
            params,
        ).fetchall()
        return [_binding(tuple(row)) for row in rows]

    return await db.read(fn)
