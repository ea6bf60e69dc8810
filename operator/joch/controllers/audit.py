"""Deletions a kopf listing cannot report: after kopf lists a kind, list it once more and compare.

kopf lists each watched kind when it starts watching and again whenever its watch expires (410 Gone),
then watches from that list. Its listing reports the objects it finds (events of type None), never the
ones that are gone: an object deleted while the watch was down, or between the operator's own start-up
LIST and kopf's first one, would stay in the store, and its dependants would keep compiling against it.

So when listing events of a kind arrive, :class:`DeletionAudit` waits until they stop (``delay``
seconds without one), LISTs the kind's metadata itself (per watched namespace, page by page, keeping
names only) and reports
every stored object the API server did not return as deleted, unless the stored version is newer than
the list (it was created or changed after the list was taken; a later event explains it) or cannot be
compared with it (resourceVersions that are not numbers). Reported
deletions go through the controller's normal path (``deleted(kind, body)``, a DELETED event body with
namespace, name and uid), so dependants are recompiled exactly as for a watched deletion. This is not a
periodic resync: it runs only after a listing, which kopf does at start and after 410 Gone. The controller
also schedules every watched kind once after its start-up LIST: a kind kopf then finds empty sends no
listing event. (A kind that becomes empty while its watch is down and 410s later sends none either; that
case is left.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from joch.domain.reconcile.cache import Store
from joch.kube import client, errors, listing, paths

__all__ = ["DeletionAudit"]

logger = logging.getLogger(__name__)

Deleted = Callable[[str, Mapping[str, Any]], None]


class DeletionAudit:
    def __init__(
        self,
        kube: client.Kube,
        store: Store,
        resources: Mapping[str, paths.ResourceType],
        scope: Callable[[], tuple[str, ...]],
        deleted: Deleted,
        *,
        delay: float = 2.0,
        retry: float = 10.0,
    ) -> None:
        self.kube = kube
        self.store = store
        self.resources = resources
        self.scope = scope
        """The watched namespaces (() means all)."""
        self.deleted = deleted
        self.delay = delay
        self.retry = retry
        self.runs = 0
        """Audits completed, for diagnostics and tests."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def listed(self, kind: str) -> None:
        """A listing event of ``kind`` arrived: audit it once the listing is over."""
        self._schedule(kind, self.delay)

    def _schedule(self, kind: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        timer = self._timers.pop(kind, None)
        if timer is not None:
            timer.cancel()
        self._timers[kind] = loop.call_later(delay, self._start, kind)

    def _start(self, kind: str) -> None:
        self._timers.pop(kind, None)
        task = asyncio.get_running_loop().create_task(self._run(kind), name=f"joch audit of {kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, kind: str) -> None:
        try:
            await self.audit(kind)
        except errors.Forbidden as exc:
            logger.warning("cannot check %s for deletions the watch missed: %s", kind, exc)
        except errors.KubeError as exc:
            logger.warning("checking %s for deletions failed: %s; again in %.0fs", kind, exc, self.retry)
            self._schedule(kind, self.retry)

    async def audit(self, kind: str) -> list[tuple[str | None, str]]:
        """LIST ``kind`` and report the stored objects it lacks; their (namespace, name)."""
        resource = self.resources[kind]
        scopes: tuple[str | None, ...] = (self.scope() or (None,)) if resource.namespaced else (None,)
        gone: list[tuple[str | None, str]] = []
        for namespace in scopes:
            present: set[tuple[str | None, str]] = set()
            version = ""
            async for page, page_version in listing.pages(
                self.kube, resource, namespace=namespace, metadata_only=True
            ):
                present.update(_where(item, resource.namespaced) for item in page)
                version = page_version
            for entry in self.store.entries(kind):
                if namespace is not None and entry.namespace != namespace:
                    continue
                if (entry.namespace, entry.name) in present or not _not_newer(
                    entry.resource_version, version
                ):
                    continue
                logger.info(
                    "%s %s/%s is gone (not in a fresh LIST); forgetting it", kind, entry.namespace, entry.name
                )
                gone.append((entry.namespace, entry.name))
                metadata = {"name": entry.name, "uid": entry.uid}
                if entry.namespace is not None:
                    metadata["namespace"] = entry.namespace
                self.deleted(kind, {"metadata": metadata})
        self.runs += 1
        return gone

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _not_newer(held: str, listed: str) -> bool:
    """Whether the stored version is at most the list's, so the list would show the object if it
    existed. resourceVersions are opaque; the API server's are etcd revisions (numbers). Anything
    else cannot be ordered, and an object that cannot be shown to be old is not declared gone."""
    return held.isdigit() and listed.isdigit() and int(held) <= int(listed)


def _where(item: Mapping[str, Any], namespaced: bool) -> tuple[str | None, str]:
    metadata = item.get("metadata") or {}
    return (str(metadata.get("namespace") or "") if namespaced else None), str(metadata.get("name") or "")
