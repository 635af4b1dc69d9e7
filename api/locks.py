"""Locks by key for the control plane (per X, per pool): created on demand, dropped when idle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """One ``asyncio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def acquire(self, key: str) -> None:
        """Acquire the lock of ``key`` (returns without yielding when it is free)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            await lock.acquire()
        except BaseException:
            self._drop(key)
            raise

    def release(self, key: str) -> None:
        """Release the lock of ``key``."""
        self._locks[key].release()
        self._drop(key)

    def _drop(self, key: str) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key]
            del self._locks[key]

    def users(self, key: str) -> int:
        """How many hold or wait for the lock of ``key`` (0: no lock exists for it)."""
        return self._users.get(key, 0)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """``async with locks.hold(key):`` — acquire and release around a block."""
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)
