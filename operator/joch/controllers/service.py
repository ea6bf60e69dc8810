"""The reconciler framework: services as peers on one shared cache.

A **service** is one reconciler of the operator (compile Agents into manifests, report referenced
objects' statuses; later AgBOMs, executions, approvals, budgets...). It declares

- ``watches``: the kinds whose changes it wants to hear about (joch kinds, and ``Namespace`` or
  ``ConfigMap`` for the Namespace labels and the operator's own manifest ConfigMaps);
- :meth:`Service.observe`: which keys a change makes dirty (it queues them on the shared work queue,
  now or after a delay);
- :meth:`Service.owns`: which work keys are its own (a key type of its own, or object kinds);
- :meth:`Service.reconcile`: for one key, gather from the cache, call its pure plan in
  ``joch.domain`` (desired objects, status, Events) and apply it through ``joch.kube``;
- optionally :meth:`Service.prime` (read its own objects once at start), :meth:`Service.start_keys`
  (queued at start), :meth:`Service.synced_keys` (queued once
  the first pass has drained) and :meth:`Service.drifted` (the safety resync: would a reconcile of this
  stored object change anything? then the key to queue).

The **host** (:class:`joch.controllers.reconciler.Controller`) owns what services share: the cache
(one LIST and one watch per kind), the fan-out index, the work queue (deduplicated keys, one worker per
key at a time, bounded workers, exponential backoff, a low-priority lane), the status writer (per-object
locks, resourceVersion preconditions, 409 re-reads), the Event recorder, the policy compiler, metrics.
Services never talk to each other directly: what one needs from another goes through the cache and the
queue.

Adding a service is one module with a :class:`Service` subclass plus one line in
``joch.controllers.services.SERVICES``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Protocol

from joch.audit import AuditLog
from joch.controllers.manifests import ManifestCache
from joch.controllers.recorder import EventRecorder
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy import compiling as policy_compiling
from joch.domain.reconcile import fanout
from joch.domain.reconcile.cache import Entry, Store
from joch.domain.settings import OperatorSettings
from joch.kube import client

__all__ = ["Change", "Desire", "Host", "Service"]

Desire = Callable[[Entry], Mapping[str, Any] | None]
"""The status an object should have, given its stored entry (None: write nothing)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One change of the shared cache, as the services hear it.

    For joch kinds ``old``/``new`` are the cache entries before and after (None: absent); for
    ``Namespace`` the namespace ``name`` whose labels changed; for ``ConfigMap`` the manifest
    ConfigMap of Agent ``namespace``/``name`` that is not what the operator wrote.
    """

    kind: str
    namespace: str | None
    name: str
    old: Entry | None = None
    new: Entry | None = None

    @property
    def current(self) -> Entry | None:
        return self.new or self.old

    @property
    def changed(self) -> bool:
        """Whether what the object means changed (created, deleted, or another fingerprint)."""
        if self.old is None or self.new is None:
            return True
        return self.old.fingerprint() != self.new.fingerprint()

    @property
    def status_changed(self) -> bool:
        return self.old is None or self.new is None or self.old.raw_status != self.new.raw_status


class Queue(Protocol):
    def add(self, key: Hashable) -> None: ...

    def add_after(self, key: Hashable, delay: float) -> None: ...


class Host(Protocol):
    """What the controller shares with its services."""

    kube: client.Kube
    settings: OperatorSettings
    store: Store
    index: fanout.ReverseIndex
    manifests: ManifestCache
    programs: policy_compiling.PolicyCompiler
    recorder: EventRecorder
    governance: AuditLog
    """The governance audit log (joch.audit): what services decide for governance (expiries, breaches)."""
    counts: collections.Counter[str]
    synced: bool

    @property
    def queue(self) -> Queue: ...

    @property
    def status_delay(self) -> float: ...

    def manages(self, namespace: str | None) -> bool: ...

    def watch_namespaces(self) -> tuple[str, ...]:
        """The namespaces the operator watches (managed and shared); () means all."""

    def now(self) -> str:
        """The current time as an RFC 3339 UTC timestamp (the controller's clock)."""

    def clock(self) -> datetime.datetime:
        """The current time, to the microsecond (the controller's clock; timers are armed from it)."""

    def touch(self, key: Hashable) -> None:
        """Tell the service that owns ``key`` that something about it changed outside the cache (how
        many Agents depend on a referenced object, say)."""

    def status_lock(self, key: ObjectKey) -> AbstractAsyncContextManager[None]: ...

    async def write_status(
        self, key: ObjectKey, uid: str, desire: Desire, *, owned: Iterable[str]
    ) -> tuple[bool, Mapping[str, Any] | None]: ...


class Service:
    """Base class of a service (see the module docstring); subclasses set ``name`` and ``watches``."""

    name: ClassVar[str] = ""
    watches: ClassVar[frozenset[str]] = frozenset()
    resync_kinds: ClassVar[tuple[str, ...]] = ()
    """The kinds whose stored objects the safety resync checks with :meth:`drifted`."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def owns(self, key: Hashable) -> bool:
        raise NotImplementedError

    def observe(self, change: Change) -> None:
        """Queue what ``change`` makes dirty (called for the kinds in ``watches`` only)."""

    async def reconcile(self, key: Hashable) -> None:
        raise NotImplementedError

    async def prime(self) -> None:
        """Read what the service keeps besides the shared cache (its own objects' metadata), once, with
        the controller's start-up LIST."""

    async def stop(self) -> None:
        """Stop what :meth:`prime` started (its own informers), when the controller stops."""

    def start_keys(self) -> Iterable[Hashable]:
        """Keys to reconcile when the controller starts (after the start-up LIST)."""
        return ()

    def synced_keys(self) -> Iterable[Hashable]:
        """Keys to reconcile once the start-up pass has drained."""
        return ()

    def drifted(self, entry: Entry) -> Hashable | None:
        """For the safety resync: the key to reconcile when reconciling this stored object now would
        change anything (its status, what it owns), else None."""
        return None

    def touched(self, key: Hashable) -> None:
        """Something about ``key`` (one of its own) changed outside the cache (:meth:`Host.touch`)."""
