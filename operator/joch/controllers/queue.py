"""A deduplicating work queue in the style of client-go's workqueue (used by controller-runtime).

Guarantees:

- a key is queued at most once, however often it is added before a worker takes it;
- a key is processed by at most one worker at a time;
- a key added while it is being processed is processed again after :meth:`WorkQueue.done` (the
  worker saw an older state; nothing is lost);
- :meth:`add_after` delays an add (several delayed adds of one key collapse into the earliest);
  :meth:`retry` re-adds a failed key with per-key exponential backoff, :meth:`forget` resets it;
- keys for which ``low_priority(key)`` is true wait in a second lane, served only when the first is
  empty or once the oldest of them has waited ``max_low_wait`` seconds (so they are never starved).

Single event loop, no threads: every method must be called from the loop the queue is used on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["KeyedLocks", "QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """:meth:`WorkQueue.get` was called (or was waiting) after :meth:`WorkQueue.shutdown`."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        low_priority: Callable[[K], bool] | None = None,
        max_low_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._order: collections.deque[K] = collections.deque()
        self._low: collections.deque[tuple[float, K]] = collections.deque()
        """Low-priority keys with the time they were queued."""
        self._is_low = low_priority or (lambda _key: False)
        self.max_low_wait = max_low_wait
        self._clock = clock
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[K, int] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.added = 0
        """Keys actually queued (after deduplication), for statistics."""

    def __len__(self) -> int:
        """Keys waiting for a worker (both lanes)."""
        return len(self._order) + len(self._low)

    def queued(self) -> list[K]:
        """Keys waiting for a worker, first lane then low-priority lane (for diagnostics and tests)."""
        return [*self._order, *(key for _, key in self._low)]

    @property
    def processing(self) -> int:
        return len(self._processing)

    def is_idle(self) -> bool:
        """Nothing queued and nothing being processed (delayed adds do not count)."""
        return not self._order and not self._low and not self._processing

    def add(self, key: K) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._enqueue(key)
        self.added += 1

    def _enqueue(self, key: K) -> None:
        if self._is_low(key):
            self._low.append((self._clock(), key))
        else:
            self._order.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (immediately when ``delay`` <= 0)."""
        if delay <= 0:
            self.add(key)
            return
        if self._closed or key in self._dirty:
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= due:
                return
            existing[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def retry(self, key: K) -> float:
        """Re-add a key whose processing failed, after its backoff; returns the delay used."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = float(min(self.base_delay * 2**failures, self.max_delay))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key was processed successfully: reset its backoff."""
        self._failures.pop(key, None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> K:
        """The next key (waiting for one); the caller must call :meth:`done` with it afterwards."""
        while not self._order and not self._low:
            if self._closed:
                raise QueueShutDown
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the wake-up on: this waiter will not take the key
                raise
        if self._low and (not self._order or self._clock() - self._low[0][0] >= self.max_low_wait):
            key = self._low.popleft()[1]
        else:
            key = self._order.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._closed:
            self._enqueue(key)
        if self.is_idle():
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    async def wait_idle(self) -> None:
        """Return once nothing is queued or being processed."""
        while not self.is_idle():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def shutdown(self) -> None:
        """Stop accepting keys; waiting and future :meth:`get` calls raise :class:`QueueShutDown`."""
        self._closed = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._order.clear()
        self._low.clear()
        self._dirty.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(QueueShutDown())
        self._waiters.clear()
        for waiter in self._idle_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._idle_waiters.clear()


class KeyedLocks(Generic[K]):
    """One asyncio lock per key, held only while in use (so 10,000 keys cost nothing at rest).

    The queue serialises the work of one key; this serialises work on one *object* that several keys
    touch (an Agent's compile and its deferred status report both write the Agent's status)."""

    def __init__(self) -> None:
        self._locks: dict[K, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        """Keys locked or waited for."""
        return len(self._locks)

    def waiting(self, key: K) -> int:
        """Holders plus waiters of ``key`` (0: free)."""
        return self._locks.get(key, (None, 0))[1]

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
