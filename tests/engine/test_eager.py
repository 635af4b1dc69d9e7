"""engine.eager.start_eagerly: a coroutine runs at once; only if it suspends does a Task go on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.eager import start_eagerly


async def test_a_coroutine_that_never_suspends_finishes_before_start_eagerly_returns() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    assert start_eagerly(quick()) is None
    assert done == ["ran"]  # no loop turn needed: asyncio.ensure_future would still be pending


async def test_a_suspended_coroutine_goes_on_in_a_task_and_gets_what_it_awaited() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    second: asyncio.Future[int] = loop.create_future()
    seen: list[object] = []

    async def waits() -> None:
        seen.append("before")
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield on the way
        seen.append(await second)

    task = start_eagerly(waits())
    assert task is not None and seen == ["before"]
    first.set_result(1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second.set_result(2)
    await asyncio.wait_for(task, 5)
    assert seen == ["before", 1, 2]


async def test_the_awaited_futures_exception_is_raised_inside_the_coroutine() -> None:
    failing: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    caught: list[BaseException] = []

    async def handles() -> None:
        try:
            await failing
        except ValueError as error:
            caught.append(error)

    task = start_eagerly(handles())
    assert task is not None
    failing.set_exception(ValueError("no"))
    await asyncio.wait_for(task, 5)
    assert [str(error) for error in caught] == ["no"]


@pytest.mark.parametrize("task_has_run", [True, False])
async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits(task_has_run: bool) -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            await never
        finally:
            cleaned.append("finally")

    task = start_eagerly(waits_forever())
    assert task is not None
    if task_has_run:
        await asyncio.sleep(0)  # the Task waits on the future now: cancelling cancels that
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"] and task.cancelled()
    assert never.cancelled() is task_has_run  # else it is thrown in where the coroutine waits


async def test_cancellation_reaches_a_coroutine_waiting_on_a_shielded_future() -> None:
    inner: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def shielded() -> None:
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(shielded())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"] and not inner.done()  # the shield held


async def test_an_exception_before_suspending_goes_to_the_loops_handler() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def broken() -> None:
            raise RuntimeError("bug")

        assert start_eagerly(broken()) is None
    finally:
        loop.set_exception_handler(None)
    assert len(reported) == 1 and str(reported[0]["exception"]) == "bug"
