"""A metadata-only informer: LIST then WATCH one resource type's object metadata, as a task on the
event loop.

    watch = MetadataWatch(kube, paths.CONFIGMAPS, deliver, namespace="team-a", label_selector=selector)
    watch.start()            # on the running loop; deliver(event_type, body) is called for every event
    ...
    await watch.stop()

    watch.start(Listed(versions, version))   # the caller LISTed already: WATCH from its resourceVersion

The API server is asked for ``PartialObjectMetadata`` (``Accept: application/json;as=...``): each event
carries the object's metadata, not its data; what is kept and delivered is trimmed further to name,
namespace, uid, resourceVersion, labels, annotations and ownerReferences.
The operator uses it for its own CompiledAgentManifest ConfigMaps, which it only has to recognise
(sha annotation, owner, generation label), never to read: a fan-out that rewrites 1,000 manifests
then costs 1,000 small events instead of 1,000 copies of the manifests, and none of kopf's per-event
handler machinery.

Semantics (as client-go's reflector):

- start: one LIST (paginated); each item is delivered as ``ADDED``. A caller that has just listed the
  same set itself (the operator primes its cache at start-up) passes what it found (:class:`Listed`):
  nothing is delivered for it and the WATCH starts from its resourceVersion;
- then WATCH from the list's resourceVersion with bookmarks; ``ADDED``, ``MODIFIED`` and ``DELETED``
  are delivered as they come; a watch that ends (server timeout, dropped connection) is resumed from
  the last resourceVersion seen, after a short back-off when it failed;
- ``410 Gone`` (the resourceVersion is too old): LIST again and diff against what is known, so an
  object deleted while the watch was down is delivered as ``DELETED`` (a plain re-watch would never
  report it), and every listed object as ``ADDED``. Receivers must tolerate repeats (ManifestCache does).
  Such a ``DELETED`` carries the object's identity only (namespace, name, last resourceVersion seen):
  to diff, the watch remembers the resourceVersion of each object, not its metadata (at 10,000
  objects the metadata would cost about 30 MB; the receiver knows the rest).

Errors never end the task: they are logged and retried with exponential back-off (0.5 s doubling to
30 s); an exception raised by ``deliver`` is logged and the watch goes on. :meth:`stop` cancels the task
(closing the stream in flight) and waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from joch.kube import client, errors, listing, paths

__all__ = ["Listed", "MetadataWatch", "ObjectWatch"]

logger = logging.getLogger(__name__)

WATCH_ACCEPT: Final = client.METADATA_ACCEPT
MAX_LINE: Final = 4 * 1024 * 1024
"""Longest watch event line accepted (metadata only; a longer one is a protocol error)."""

Deliver = Callable[[str, Mapping[str, Any]], None]
Trim = Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    """A LIST the caller made of the same set (same resource, namespace, selector)."""

    versions: Mapping[tuple[str, str], str]
    """The resourceVersion of each listed object, by (namespace, name)."""
    version: str
    """The list's resourceVersion."""


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): LIST again."""


class MetadataWatch:
    def __init__(
        self,
        kube: client.Kube,
        resource: paths.ResourceType,
        deliver: Deliver,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        max_backoff: float = 30.0,
        trim: Trim | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self._deliver = deliver
        self._trim: Trim = trim or _trimmed
        self._task: asyncio.Task[None] | None = None
        self._known: dict[tuple[str, str], str] = {}
        """Objects believed to exist: (namespace, name) -> resourceVersion (the set a re-list is diffed
        against)."""
        self.lists = 0
        """LISTs done (1 at start unless started from the caller's, one more per 410), for diagnostics
        and tests."""

    metadata_only: bool = True
    """Ask for PartialObjectMetadata (:class:`ObjectWatch` asks for whole objects)."""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        what = "metadata watch" if self.metadata_only else "watch"
        return f"{what} of {self.resource.plural}{where}"

    # --- life cycle -----------------------------------------------------------------------------------

    def start(self, listed: Listed | None = None) -> None:
        """Start the task on the running loop; ``listed``: WATCH from that LIST (not delivered again)."""
        version = None
        if listed is not None and listed.version:  # without a version there is nothing to start from
            self._known = dict(listed.versions)
            version = listed.version
        self._task = asyncio.get_running_loop().create_task(self._run(version), name=f"joch {self}")

    async def stop(self) -> None:
        """Cancel the task (and the stream it reads) and wait until it has ended."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # --- the task -------------------------------------------------------------------------------------

    async def _run(self, version: str | None) -> None:
        failures = 0
        while True:
            try:
                if version is None:
                    version = await self._relist()
                version = await self._watch(version)
                failures = 0
            except _Gone:
                logger.info("%s: resourceVersion %s is gone; listing again", self, version)
                version = None
            except Exception as exc:  # the task must survive anything; logged, retried
                delay = min(0.5 * 2**failures, self.max_backoff)
                failures += 1
                if isinstance(exc, errors.KubeError):
                    logger.warning("%s: %s; retrying in %.1fs", self, exc, delay)
                else:
                    logger.warning("%s failed; retrying in %.1fs", self, delay, exc_info=True)
                await asyncio.sleep(delay)

    def _emit(self, event_type: str, body: Mapping[str, Any]) -> None:
        try:
            self._deliver(event_type, body)
        except Exception:  # a receiver's bug must not stop the watch
            logger.exception("%s: delivering %s %s failed", self, event_type, _name(body))

    async def _relist(self) -> str:
        items, version = await listing.list_with_version(
            self.kube,
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            metadata_only=self.metadata_only,
        )
        self.lists += 1
        current = [self._trim(item) for item in items]
        listed = {_identity(item) for item in current}
        for (namespace, name), last in self._known.items():
            if (namespace, name) not in listed:
                self._emit(
                    "DELETED", {"metadata": {"namespace": namespace, "name": name, "resourceVersion": last}}
                )
        for item in current:
            self._emit("ADDED", item)
        self._known = {_identity(item): _version(item) for item in current}
        return version

    async def _watch(self, version: str) -> str:
        query: dict[str, str | int] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": self.timeout_seconds,
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        try:
            async with self.kube.stream(
                self.resource.collection_path(self.namespace),
                query=query,
                accept=WATCH_ACCEPT if self.metadata_only else "application/json",
                read_timeout=self.timeout_seconds + 30,
                max_line=MAX_LINE,
            ) as lines:
                async for line in lines:
                    version = self._event(json.loads(line), version)
        except errors.KubeError as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        return version

    def _event(self, event: Mapping[str, Any], version: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Gone
            raise errors.from_status(int(code or 500), body=obj, what=f"WATCH {self.resource.plural}")
        metadata = obj.get("metadata") or {}
        version = str(metadata.get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return version
        obj = self._trim(obj)
        identity = _identity(obj)
        if kind == "DELETED":
            self._known.pop(identity, None)
        elif kind in ("ADDED", "MODIFIED"):
            self._known[identity] = _version(obj)
        else:
            return version
        self._emit(str(kind), obj)
        return version


class ObjectWatch(MetadataWatch):
    """The same informer over whole objects; ``trim`` keeps what the receiver needs (metadata and the
    status fields it reads), so a watch of many Jobs or Pods does not hold their specs."""

    metadata_only = False


_KEPT: Final = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object's identifying metadata (managedFields and the rest dropped: at 10,000 objects the
    full metadata would cost tens of MB for nothing)."""
    metadata = obj.get("metadata") or {}
    return {"metadata": {key: metadata[key] for key in _KEPT if key in metadata}}


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _name(obj: Mapping[str, Any]) -> str:
    namespace, name = _identity(obj)
    return f"{namespace}/{name}"
