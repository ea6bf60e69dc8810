"""A metadata-only informer: LIST then WATCH one resource type's object metadata, in its own thread.

    watch = MetadataWatch(kube, paths.CONFIGMAPS, deliver, namespace="team-a", label_selector=selector)
    watch.start(loop)        # deliver(event_type, body) is called on ``loop`` for every event
    ...
    watch.stop()

The API server is asked for ``PartialObjectMetadata`` (``Accept: application/json;as=...``): each event
carries the object's metadata, not its data; what is kept and delivered is trimmed further to name,
namespace, uid, resourceVersion, labels, annotations and ownerReferences.
The operator uses it for its own CompiledAgentManifest ConfigMaps, which it only has to recognise
(sha annotation, owner, generation label), never to read: a fan-out that rewrites 1,000 manifests
then costs 1,000 small events instead of 1,000 copies of the manifests, and none of kopf's per-event
handler machinery.

Semantics (as client-go's reflector):

- start: one LIST (paginated); each item is delivered as ``ADDED``;
- then WATCH from the list's resourceVersion with bookmarks; ``ADDED``, ``MODIFIED`` and ``DELETED``
  are delivered as they come; a watch that ends (server timeout, dropped connection) is resumed from
  the last resourceVersion seen, after a short back-off when it failed;
- ``410 Gone`` (the resourceVersion is too old): LIST again and diff against what is known, so an
  object deleted while the watch was down is delivered as ``DELETED`` (a plain re-watch would never
  report it), and every listed object as ``ADDED``. Receivers must tolerate repeats (ManifestCache does).

Errors never escape the thread: they are logged and retried with exponential back-off (0.5 s doubling
to 30 s). :meth:`stop` closes the stream in flight and joins the thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import urllib3

from joch.kube import client, errors, listing, paths

__all__ = ["MetadataWatch"]

logger = logging.getLogger(__name__)

WATCH_ACCEPT: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
MAX_LINE: Final = 4 * 1024 * 1024
"""Longest watch event line accepted (metadata only; a longer one is a protocol error)."""

Deliver = Callable[[str, Mapping[str, Any]], None]


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
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self._deliver = deliver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._known: dict[str, Mapping[str, Any]] = {}
        """Objects believed to exist, by namespace/name (the set a re-list is diffed against), each as
        its trimmed metadata (:func:`_trimmed`), which is also what is delivered."""
        self.lists = 0
        """LISTs done (1 at start, one more per 410), for diagnostics and tests."""

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"metadata watch of {self.resource.plural}{where}"

    # --- life cycle -----------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread; events are delivered on ``loop`` (call_soon_threadsafe)."""
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=f"joch-{self}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # closing a stream another thread reads may fail; harmless
                logger.debug("%s: closing the stream failed", self, exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
                failures = 0
            except _Gone:
                logger.info("%s: resourceVersion %s is gone; listing again", self, version)
                version = None
            except Exception as exc:  # the thread must survive anything; logged, retried
                if self._stopped.is_set():
                    return
                delay = min(0.5 * 2**failures, self.max_backoff)
                failures += 1
                if isinstance(exc, errors.KubeError):
                    logger.warning("%s: %s; retrying in %.1fs", self, exc, delay)
                else:
                    logger.warning("%s failed; retrying in %.1fs", self, delay, exc_info=True)
                self._stopped.wait(delay)

    def _emit(self, event_type: str, body: Mapping[str, Any]) -> None:
        assert self._loop is not None
        if not self._stopped.is_set():
            self._loop.call_soon_threadsafe(self._deliver, event_type, body)

    def _relist(self) -> str:
        assert self._loop is not None
        listed = listing.list_with_version(
            self.kube,
            self.resource,
            namespace=self.namespace,
            label_selector=self.label_selector,
            metadata_only=True,
        )
        # The LIST runs on the event loop, through the client's retries and thread pool.
        items, version = asyncio.run_coroutine_threadsafe(listed, self._loop).result(self.timeout_seconds)
        self.lists += 1
        current: dict[str, Mapping[str, Any]] = {_name(item): item for item in map(_trimmed, items)}
        for name, old in self._known.items():
            if name not in current:
                self._emit("DELETED", old)
        for item in current.values():
            self._emit("ADDED", item)
        self._known = current
        return version

    def _watch(self, version: str) -> str:
        query: dict[str, str | int] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": self.timeout_seconds,
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        try:
            response = self.kube.open_stream(
                self.resource.collection_path(self.namespace),
                query=query,
                accept=WATCH_ACCEPT,
                read_timeout=self.timeout_seconds + 30,
            )
        except errors.KubeError as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        with self._lock:
            self._response = response
        try:
            for line in _lines(response):
                version = self._event(json.loads(line), version)
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
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
        obj = _trimmed(obj)
        name = _name(obj)
        if kind == "DELETED":
            self._known.pop(name, None)
        elif kind in ("ADDED", "MODIFIED"):
            self._known[name] = obj
        else:
            return version
        self._emit(str(kind), obj)
        return version


_KEPT: Final = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")


def _trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object's identifying metadata (managedFields and the rest dropped: at 10,000 objects the
    full metadata would cost tens of MB for nothing)."""
    metadata = obj.get("metadata") or {}
    return {"metadata": {key: metadata[key] for key in _KEPT if key in metadata}}


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body's non-empty lines as they arrive (a watch sends one JSON event per line)."""
    pending = b""
    for chunk in response.stream(64 * 1024, decode_content=True):
        pending += chunk
        if len(pending) > MAX_LINE and b"\n" not in pending:
            raise errors.ServerError(f"a watch event longer than {MAX_LINE} bytes", status=500)
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending
