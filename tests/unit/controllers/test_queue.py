"""WorkQueue: deduplication, re-processing of keys added while in flight, delays, backoff, idleness.

Cases: a key added twice is queued once; a key added while processing comes back after done(); FIFO
order; add_after collapses into the earliest delay; retry backs off exponentially up to max_delay and
forget() resets it; wait_idle returns when nothing is queued or in flight; shutdown wakes waiters;
low-priority keys wait for the first lane to empty, unless they have waited max_low_wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from joch.controllers.queue import QueueShutDown, WorkQueue

T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), timeout=5))


def test_a_key_is_queued_once_however_often_it_is_added() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a", "c", "b"):
            queue.add(key)
        assert queue.queued() == ["a", "b", "c"]
        assert queue.added == 3

    run(scenario)


def test_a_key_added_while_processing_is_processed_again_after_done() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # the worker saw an older state
        queue.add("a")
        assert queue.queued() == [], "never handed to a second worker while in flight"
        queue.done(key)
        assert queue.queued() == ["a"]
        assert await queue.get() == "a"
        queue.done("a")
        assert queue.is_idle()

    run(scenario)


def test_get_waits_for_a_key() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        getter = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0.01)
        assert not getter.done()
        queue.add("x")
        assert await getter == "x"

    run(scenario)


def test_add_after_collapses_into_the_earliest() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 0.2)
        queue.add_after("a", 0.01)
        queue.add_after("a", 0.5)
        await asyncio.sleep(0.05)
        assert queue.queued() == ["a"]
        await asyncio.sleep(0.3)
        assert queue.queued() == ["a"], "the cancelled later timer must not add it again"
        queue.add_after("b", 0)
        assert queue.queued() == ["a", "b"]

    run(scenario)


def test_retry_backs_off_exponentially_and_forget_resets() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.05)
        assert [queue.retry("a") for _ in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
        queue.forget("a")
        assert queue.retry("a") == 0.01

    run(scenario)


def test_wait_idle_and_shutdown() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        await queue.wait_idle()  # idle from the start
        queue.add("a")
        idle = asyncio.ensure_future(queue.wait_idle())
        key = await queue.get()
        await asyncio.sleep(0.01)
        assert not idle.done(), "a key in flight is not idle"
        queue.done(key)
        await idle
        waiting = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0.01)
        queue.shutdown()
        with pytest.raises(QueueShutDown):
            await waiting
        queue.add("b")
        assert queue.queued() == []

    run(scenario)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def low_queue(clock: FakeClock, max_low_wait: float = 5.0) -> WorkQueue[str]:
    return WorkQueue(
        low_priority=lambda key: key.startswith("report:"), max_low_wait=max_low_wait, clock=clock
    )


def test_low_priority_keys_wait_until_the_first_lane_is_empty() -> None:
    async def scenario() -> list[str]:
        queue = low_queue(FakeClock())
        for key in ("report:a", "a", "report:b", "b", "c"):
            queue.add(key)
        assert len(queue) == 5
        taken = []
        while len(queue):
            key = await queue.get()
            taken.append(key)
            queue.done(key)
        assert queue.is_idle()
        return taken

    assert run(scenario) == ["a", "b", "c", "report:a", "report:b"]


def test_a_low_priority_key_is_served_once_it_has_waited_max_low_wait() -> None:
    async def scenario() -> list[str]:
        clock = FakeClock()
        queue = low_queue(clock, max_low_wait=5.0)
        queue.add("report:a")
        for key in ("a", "b", "c"):
            queue.add(key)
        taken = [await queue.get()]
        clock.now += 5.0  # report:a is now overdue, although "b" and "c" still wait
        taken += [await queue.get(), await queue.get(), await queue.get()]
        return taken

    assert run(scenario) == ["a", "report:a", "b", "c"]


def test_a_low_priority_key_added_while_processing_returns_to_its_own_lane() -> None:
    async def scenario() -> None:
        queue = low_queue(FakeClock())
        queue.add("report:a")
        key = await queue.get()
        queue.add("report:a")
        queue.add("x")
        queue.done(key)
        assert queue.queued() == ["x", "report:a"]
        assert not queue.is_idle()
        queue.shutdown()
        assert queue.queued() == []

    run(scenario)


def test_get_wakes_for_a_low_priority_key() -> None:
    async def scenario() -> str:
        queue = low_queue(FakeClock())
        getter = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0.01)
        queue.add("report:z")
        return await getter

    assert run(scenario) == "report:z"
