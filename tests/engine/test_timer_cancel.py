"""Loop timer handles are cancelled on both event loops (uvloop's TimerHandle is not asyncio's)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from engine.b2bua import _cancel_handle


@pytest.mark.parametrize("new_loop", [uvloop.new_event_loop, asyncio.new_event_loop])
def test_a_timer_of_either_loop_is_cancelled(new_loop: object) -> None:
    loop = new_loop()  # type: ignore[operator]
    try:
        fired: list[bool] = []
        handle = loop.call_later(0.01, fired.append, True)
        _cancel_handle(handle)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert fired == [] and handle.cancelled()
    finally:
        loop.close()
