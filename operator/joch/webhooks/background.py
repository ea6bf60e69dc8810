"""Run an :class:`~joch.webhooks.AdmissionServer` on its own event loop in a thread.

For callers that are not asyncio programs (tests, benchmarks, a webhooks-only dev process)::

    with BackgroundServer(AdmissionServer(endpoint, options)) as running:
        running.url            # https://127.0.0.1:<port>
        ...                    # the configurations are applied while it runs

The endpoint's checks then run on that thread's loop; whatever ``Lookup`` it reads must tolerate being
read from there (a Catalog swapped by reference is fine; the operator itself never needs this class).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from joch.webhooks import AdmissionServer

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Start on ``__enter__`` (waits until listening and configured), stop on ``__exit__``."""

    def __init__(self, server: AdmissionServer, *, timeout: float = 60.0) -> None:
        self.server = server
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="joch-webhooks", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(self.timeout)

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self.run(self.server.start())
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.run(self.server.stop())
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(self.timeout)
        self.loop.close()
