"""Kubernetes Events, recorded without slowing reconciles: a bounded queue drained in the background.

:meth:`EventRecorder.record` never waits: the Event joins a queue (at most ``capacity``; beyond that it
is dropped and counted, as client-go's broadcaster does) and a background task sends them at most
``rate`` per second. Repeating the last Event for the same object and reason with the same message is
suppressed, so a recompile that changes nothing says nothing. Failures are logged and dropped: Events
are informative, never load-bearing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
from collections.abc import Callable

from joch.kube import client, errors, events

__all__ = ["EventRecorder", "PendingEvent"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PendingEvent:
    involved: events.InvolvedObject
    type: events.EventType
    reason: str
    message: str


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EventRecorder:
    def __init__(
        self,
        kube: client.Kube,
        *,
        rate: float = 20.0,
        burst: int = 50,
        capacity: int = 1000,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self._kube = kube
        self._queue: asyncio.Queue[PendingEvent] = asyncio.Queue(maxsize=capacity)
        self._bucket = client.TokenBucket(rate, burst)
        self._last: collections.OrderedDict[tuple[str, str, str], str] = collections.OrderedDict()
        self._memory = 10_000
        self._clock = clock
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def record(
        self, involved: events.InvolvedObject, type_: events.EventType, reason: str, message: str
    ) -> bool:
        """Queue an Event; False when it repeats the previous one or the queue is full."""
        who = (involved.uid or f"{involved.kind}/{involved.namespace}/{involved.name}", reason, type_)
        if self._last.get(who) == message:
            return False
        self._last[who] = message
        self._last.move_to_end(who)
        while len(self._last) > self._memory:
            self._last.popitem(last=False)
        try:
            self._queue.put_nowait(PendingEvent(involved, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    def forget(self, uid: str) -> None:
        """Forget what was said about a deleted object."""
        for who in [w for w in self._last if w[0] == uid]:
            del self._last[who]

    async def run(self) -> None:
        """Send queued Events forever (cancel to stop)."""
        while True:
            item = await self._queue.get()
            await self._bucket.acquire()
            try:
                await events.emit_event(
                    self._kube, item.involved, item.type, item.reason, item.message, now=self._clock()
                )
                self.sent += 1
            except errors.KubeError as exc:
                self.failed += 1
                logger.debug("Event %s about %s not recorded: %s", item.reason, item.involved.name, exc)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued Event was sent or given up."""
        await self._queue.join()
