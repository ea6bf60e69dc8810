"""The controller: the host of the operator's services (joch.controllers.service).

::

    kopf watch events ──observe()──> Store (parsed objects, Lookup for the compiler)
                           │
                           └─ every service watching the kind: Service.observe(Change)
                                 compile:  fan-out (reverse index + label rules) -> Agent keys
                                 status:   the referenced object itself (after status_delay)
                                                   │
                                          WorkQueue (deduplicated keys, one worker per key,
                                                     backoff, a low-priority lane)
                                                   │
                      workers (N asyncio tasks) <──┘  -> the service that owns the key:
                        compile:  plan (joch.domain.reconcile.plan: gather + compile) -> ConfigMap
                                  <agent>-g<gen> -> stale ConfigMaps -> status -> Events
                                  (or, when only the manifest sha moved: an AgentReport, low priority)
                        status:   referenced_status (joch.domain.reconcile.status) -> status

The controller owns what the services share: the cache (one LIST and one watch per kind), the fan-out
index, the manifest ConfigMap cache, the work queue and its workers, the status writer, the Event
recorder and the one policy compiler; the services (joch.controllers.services.SERVICES) decide.

Start-up (:meth:`Controller.start`, from kopf's startup handler, before kopf starts watching): one
LIST of every watched kind, the Namespaces and the CAM ConfigMaps primes the store and the ConfigMap
cache; then every service's start keys are queued (every Agent, and every Agent some ConfigMap still
names). Because the store holds the current status and the cache the current ConfigMaps, a restart
over a converged fleet writes nothing. Once that first pass drains, the services' synced keys are
queued (the referenced objects' statuses: their Agent counts are complete by then), and "initial sync
complete" is logged.

Concurrency: the workers and the watch handlers share one event loop; a service's plan runs on it
without awaiting (one consistent snapshot per compile), API calls run in the kube client's aiohttp
client (joch.kube.client: bounded concurrency, write token bucket, 429 Retry-After). The queue
guarantees one worker per key. A failed key is retried with exponential backoff (0.5 s doubling to
60 s), except after 403 (RBAC) or 422 (a rejected write), which retrying cannot fix: those wait for the
key's next change.

Status writes (:meth:`Controller.write_status`): one object's status is decided and written under that
object's lock (:meth:`Controller.status_lock`; an Agent's compile and its report are different keys, so
the queue alone would let both write at once); every patch carries the resourceVersion it was computed
against, so a status changed behind the cache fails with 409 and is read again and recomputed; after a
write the stored status is checked against the decision once more. Together with "a report writes only
while its compile is the newest" (joch.controllers.compile) these make the GitOps-burst race (the report
of an older compile landing after the newest compile's status: phase Ready, conditions False, forever)
impossible.

Safety resync (:meth:`Controller.resync`, every ``ControllerConfig.resync_period`` seconds, default 600,
0 disables): every service checks each stored object of its ``resync_kinds`` (:meth:`Service.drifted`:
would a reconcile now change its status, ConfigMaps or dependencies?); only the keys that differ are
queued, so a pass over a converged fleet sends no request. It repairs what a lost event or an
unforeseen race left behind.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol

from joch import metrics
from joch.audit import NULL as NULL_AUDIT_LOG
from joch.audit import AuditLog
from joch.controllers.access import Access
from joch.controllers.audit import DeletionAudit
from joch.controllers.compile import AgentReport
from joch.controllers.manifests import ManifestCache
from joch.controllers.queue import KeyedLocks, QueueShutDown, WorkQueue
from joch.controllers.recorder import EventRecorder
from joch.controllers.service import Change, Desire, Service
from joch.controllers.services import SERVICES, ServiceFactory
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy import compiling as policy_compiling
from joch.domain.reconcile import fanout, status
from joch.domain.reconcile.approvals import ApprovalSettings
from joch.domain.reconcile.cache import WATCHED_KINDS, Entry, Store, parse_entry
from joch.domain.reconcile.executions import ExecutionSettings
from joch.domain.settings import OperatorSettings
from joch.kube import client, configmaps, errors, listing, paths, watch
from joch.kube import status as kube_status

__all__ = ["AgentReport", "Controller", "ControllerConfig", "WorkKey"]

logger = logging.getLogger("joch.controller")

RESOURCE_TYPES: Final[Mapping[str, paths.ResourceType]] = {
    kind: paths.ResourceType.of(model) for kind, model in WATCHED_KINDS.items()
}


@dataclasses.dataclass(frozen=True, slots=True)
class ControllerConfig:
    settings: OperatorSettings = dataclasses.field(default_factory=OperatorSettings)
    namespaces: tuple[str, ...] = ()
    """Namespaces whose Agents (and namespaced objects' statuses) this operator manages; () = all."""
    workers: int = 16
    """Keys processed at once."""
    status_delay: float = 0.5
    """Seconds a referenced object's status update waits, so a burst of changes makes one write."""
    report_max_wait: float = 5.0
    """Seconds an Agent's status report may wait behind compiles (module docstring)."""
    audit_delay: float = 2.0
    """Seconds after kopf's last listing event of a kind before it is checked for deletions the listing
    cannot report (joch.controllers.audit)."""
    resync_period: float = 600.0
    """Seconds between safety resyncs (:meth:`Controller.resync`); 0 disables them."""
    services: tuple[str, ...] = ()
    """Names of the services this process runs (``Service.name``); () = every one it is given."""
    executions: ExecutionSettings = dataclasses.field(default_factory=ExecutionSettings)
    """How the executions service schedules runs."""
    approvals: ApprovalSettings = dataclasses.field(default_factory=ApprovalSettings)
    """How long a timeoutMinutes minute is (the approvals service)."""
    budget_reservation_ttl: float = 300.0
    """Seconds a Budget reservation made by the decision service lives unless released before
    (joch.controllers.reservations)."""
    event_rate: float = 20.0
    event_burst: int = 50
    event_capacity: int = 1000

    def watch_namespaces(self) -> tuple[str, ...]:
        """Namespaces to watch (the managed ones plus the shared ones); () means all."""
        if not self.namespaces:
            return ()
        return tuple(dict.fromkeys((*self.namespaces, *self.settings.shared_namespaces)))


WorkKey = Hashable
"""A work item of some service (an ObjectKey, an AgentReport, or a service's own key type); it has a
``kind`` (for metrics and logs) and, when namespaced, a ``namespace``."""


STATUS_ATTEMPTS: Final = 4
"""Status writes of one object in one reconcile before giving up (the key is then retried with backoff):
each 409 (the object changed since the cache saw it) costs one GET and one more attempt."""


class Feed(Protocol):
    """Another reader of the watched objects (the decision service): it gets the start-up LIST and every
    watch event the controller gets, so the process lists and watches each kind once."""

    def primed(self, listed: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """The start-up LIST, by kind (every watched kind the operator may read)."""

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event (or a deletion found by the audit)."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _note_invalid(old: Entry | None, new: Entry) -> None:
    """Log a stored object the model rejects, once per object and problem (readers treat it as absent;
    the service owning its status reports InvalidSpec)."""
    if new.error is not None and (old is None or old.error != new.error):
        logger.warning("%s does not parse, so it counts as absent: %s", new.key, new.error)


def _name(body: Mapping[str, Any]) -> tuple[str | None, str, str]:
    metadata = body.get("metadata") or {}
    return metadata.get("namespace"), metadata.get("name") or "", metadata.get("uid") or ""


class Controller:
    """The host of the operator's services: the shared cache, the work queue and its workers, the status
    writer (see the module docstring)."""

    def __init__(
        self,
        kube: client.Kube,
        config: ControllerConfig | None = None,
        *,
        access: Access | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
        services: Sequence[ServiceFactory] = SERVICES,
        governance: AuditLog = NULL_AUDIT_LOG,
    ) -> None:
        self.kube = kube
        self.governance = governance
        """The governance audit log the services write to (joch.audit; disabled by default)."""
        self.config = config or ControllerConfig()
        self.settings = self.config.settings
        self.execution_settings = self.config.executions
        self.approval_settings = self.config.approvals
        self.access = access or Access.everything(self.config.watch_namespaces())
        """What the operator may read (access.probe); it watches and lists only that."""
        self.store = Store()
        self.index = fanout.ReverseIndex()
        self.manifests = ManifestCache()
        self.manifest_lists: dict[str | None, watch.Listed] = {}
        """What :meth:`prime` listed of the CAM ConfigMaps, by watched namespace (None: all), for the
        ConfigMap watch to start from (taken by it)."""
        self.queue: WorkQueue[WorkKey] = WorkQueue(
            low_priority=lambda key: isinstance(key, AgentReport),
            max_low_wait=self.config.report_max_wait,
        )
        self._status_locks: KeyedLocks[ObjectKey] = KeyedLocks()
        """Held while one object's status is decided and written: an Agent's compile and its report
        are different queue keys but must never write the same status at once."""
        self.recorder = EventRecorder(
            kube,
            rate=self.config.event_rate,
            burst=self.config.event_burst,
            capacity=self.config.event_capacity,
            clock=clock,
        )
        self.programs = policy_compiling.PolicyCompiler(
            policy_compiling.CompileOptions(cel_backend=self.settings.cel_backend)
        )
        """The process's one policy compiler (the decision service is given it too)."""
        self.feeds: list[Feed] = []
        self.primed = False
        self.counts: collections.Counter[str] = collections.Counter()
        self.synced = False
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self.audit = DeletionAudit(
            kube,
            self.store,
            RESOURCE_TYPES,
            self.watch_namespaces,
            lambda kind, body: self.observe(kind, "DELETED", body),
            delay=self.config.audit_delay,
        )
        wanted = self.config.services
        self.services: tuple[Service, ...] = tuple(
            make(self) for make in services if not wanted or make.name in wanted
        )
        self._watching: dict[str, tuple[Service, ...]] = {}
        for service in self.services:
            for kind in service.watches:
                self._watching[kind] = (*self._watching.get(kind, ()), service)
        metrics.track_queue_depth(lambda: len(self.queue))

    # --- what services share (joch.controllers.service.Host) ---------------------------------------

    @property
    def status_delay(self) -> float:
        return self.config.status_delay

    def manages(self, namespace: str | None) -> bool:
        """Whether this operator acts on objects in ``namespace`` (None: cluster-scoped, always)."""
        return namespace is None or not self.config.namespaces or namespace in self.config.namespaces

    def watch_namespaces(self) -> tuple[str, ...]:
        """Namespaces to watch (the managed and shared ones the operator may read); () means all."""
        return self.access.namespaces

    def now(self) -> str:
        return _stamp(self._clock())

    def clock(self) -> datetime.datetime:
        return self._clock()

    def status_lock(self, key: ObjectKey) -> AbstractAsyncContextManager[None]:
        return self._status_locks.hold(key)

    def touch(self, key: WorkKey) -> None:
        for service in self.services:
            if service.owns(key):
                service.touched(key)

    def service_for(self, key: WorkKey) -> Service:
        for service in self.services:
            if service.owns(key):
                return service
        raise LookupError(f"no service owns {key!r}")

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Prime the store with one LIST per kind (unless already primed: a leader elected after start-up
        keeps the warm store), queue every service's start keys, then start the workers."""
        if not self.primed:
            await self.prime()
        for service in self.services:
            for key in service.start_keys():
                if self.manages(getattr(key, "namespace", None)):
                    self.queue.add(key)
        self._spawn(self.recorder.run(), "joch event recorder")
        for number in range(self.config.workers):
            self._spawn(self._worker(), f"joch worker {number}")
        self._spawn(self._initial_sync(), "joch initial sync")
        if self.config.resync_period > 0:
            self._spawn(self._resync_loop(self.config.resync_period), "joch resync")

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop the workers (work in flight is abandoned; it is redone at the next start)."""
        self.queue.shutdown()
        await self.audit.stop()
        await asyncio.gather(*(service.stop() for service in self.services), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _initial_sync(self) -> None:
        await self.queue.wait_idle()
        self.synced = True
        queued = 0
        for service in self.services:
            for key in service.synced_keys():
                if self.manages(getattr(key, "namespace", None)):
                    self.queue.add(key)
                    queued += 1
        await self.queue.wait_idle()
        logger.info(
            "initial sync complete: %d agents, %d referenced objects, %s",
            self.store.count("Agent"),
            queued,
            self.describe_counts(),
        )

    async def _resync_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            if not self.synced:
                continue
            started = time.perf_counter()
            queued = await self.resync()
            logger.info(
                "resync: %d objects differed from what the cache implies, queued (%.2fs)",
                len(queued),
                time.perf_counter() - started,
            )

    async def resync(self, *, batch: int = 50) -> list[WorkKey]:
        """The safety net against lost events and races: every service re-derives the state of each
        stored object of its ``resync_kinds`` from the cache (:meth:`Service.drifted`); the keys whose
        stored state differs are queued. Writes nothing and sends no request for objects already right.
        Yields to the event loop every ``batch`` objects. Returns the keys queued."""
        queued: list[WorkKey] = []
        checked = 0
        for service in self.services:
            for kind in service.resync_kinds:
                for entry in list(self.store.entries(kind)):
                    if not self.manages(entry.namespace):
                        continue
                    key = service.drifted(entry)
                    if key is not None and self.store.entry(kind, entry.namespace, entry.name) is entry:
                        self.queue.add(key)
                        queued.append(key)
                    checked += 1
                    if checked % batch == 0:
                        await asyncio.sleep(0)
        self.counts["resyncs"] += 1
        self.counts["resync_queued"] += len(queued)
        return queued

    def describe_counts(self) -> str:
        keys = ("reconciles", "compiles", "configmaps_written", "configmaps_deleted", "status_patches")
        return ", ".join(f"{key}={self.counts[key]}" for key in keys)

    async def prime(self) -> None:
        """LIST every watched kind, the Namespaces and the CAM ConfigMaps into memory (no fan-out)."""
        scoped = self.watch_namespaces() or (None,)

        async def load(kind: str, namespace: str | None) -> list[dict[str, Any]]:
            try:
                return await listing.list_objects(self.kube, RESOURCE_TYPES[kind], namespace=namespace)
            except errors.NotFound:
                logger.warning("%s is not served (is its CRD installed?); treating it as empty", kind)
                return []

        jobs: list[tuple[str, Any]] = []
        for kind, resource in RESOURCE_TYPES.items():
            if kind in self.access.kinds:
                for namespace in scoped if resource.namespaced else (None,):
                    jobs.append((kind, load(kind, namespace)))
        if self.access.namespace_labels:
            jobs.append(("Namespace", listing.list_objects(self.kube, paths.NAMESPACES)))
        manifest_lists = [configmaps.list_manifest_configmaps(self.kube, namespace=ns) for ns in scoped]
        results = await asyncio.gather(*(job for _, job in jobs), *manifest_lists)
        listed, manifests_listed = results[: len(jobs)], results[len(jobs) :]
        by_kind: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for (kind, _), items in zip(jobs, listed, strict=True):
            by_kind[kind].extend(items)
        namespaces = self._store_listed(by_kind)
        await asyncio.gather(*(service.prime() for service in self.services))
        for namespace, (found, version) in zip(scoped, manifests_listed, strict=True):
            versions = {}
            for manifest in found:
                self.manifests.put(manifest)
                versions[(manifest.namespace, manifest.name)] = manifest.resource_version or ""
            self.manifest_lists[namespace] = watch.Listed(versions, version)
        self.primed = True
        for feed in self.feeds:
            feed.primed(by_kind)
        logger.info(
            "primed: %s; %d namespaces; %d manifest ConfigMaps",
            ", ".join(f"{kind}={self.store.count(kind)}" for kind in WATCHED_KINDS),
            namespaces,
            len(self.manifests),
        )
        # What was primed may be deleted before kopf's own first listing, which would not say so, and a
        # kind kopf then finds empty sends no listing event to wait for: audit every kind once.
        for kind in RESOURCE_TYPES:
            if kind in self.access.kinds:
                self.audit.listed(kind)

    def _store_listed(self, by_kind: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """Put a start-up LIST into the store; how many Namespaces it held."""
        for kind, items in by_kind.items():
            for item in items:
                if kind == "Namespace":
                    self.store.set_namespace(_name(item)[1], (item.get("metadata") or {}).get("labels") or {})
                else:
                    new = parse_entry(WATCHED_KINDS[kind], item)
                    _note_invalid(self.store.upsert(new), new)
        return len(by_kind.get("Namespace", ()))

    # --- watch events -----------------------------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a joch kind: update the store, tell the services watching the kind. Type
        None is kopf listing the kind (at start, or after 410 Gone): the kind is then audited for
        deletions."""
        if event_type is None:
            self.audit.listed(kind)
        for feed in self.feeds:
            feed.observe(kind, event_type, body)
        stored = self._store_event(kind, event_type, body)
        if stored is None:
            return
        old, new = stored
        current = new or old
        if current is None:
            return
        self._dispatch(Change(kind, current.namespace, current.name, old, new))

    def _dispatch(self, change: Change) -> None:
        for service in self._watching.get(change.kind, ()):
            service.observe(change)

    def _store_event(
        self, kind: str, event_type: str | None, body: Mapping[str, Any]
    ) -> tuple[Entry | None, Entry | None] | None:
        """Apply one event to the store: (old, new) entries, or None when the event changes nothing
        (a deletion of an object already gone or re-created, or a stale event)."""
        namespace, name, uid = _name(body)
        if WATCHED_KINDS[kind].crd.scope == "Cluster":
            namespace = None
        if event_type == "DELETED":
            stored = self.store.entry(kind, namespace, name)
            if stored is None or (uid and stored.uid != uid):
                return None
            if kind == "Policy":
                self.programs.forget(namespace=namespace or "", name=name)
            if uid:
                self.recorder.forget(uid)
            return self.store.remove(kind, namespace, name), None
        new = parse_entry(WATCHED_KINDS[kind], body)
        old = self.store.upsert(new)
        if self.store.entry(kind, namespace, name) is not new:
            return None
        _note_invalid(old, new)
        return old, new

    def observe_namespace(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a core Namespace: its labels may decide Agents' environments (decision D5 of
        docs/decisions.md)."""
        _, name, _ = _name(body)
        labels = None if event_type == "DELETED" else dict((body.get("metadata") or {}).get("labels") or {})
        old = self.store.set_namespace(name, labels)
        if (old or {}) != (labels or {}):
            self._dispatch(Change("Namespace", None, name))

    def observe_configmap(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a CAM ConfigMap: its Agent is reconciled when it is not what the operator
        wrote (the services watching ``ConfigMap`` hear of Agent namespace/name)."""
        item = configmaps.ManifestConfigMap.from_body(body)
        if not item.agent and event_type == "DELETED":
            # Found missing by the informer's re-list: the event names the ConfigMap only, and the LIST
            # proved it gone whatever version was last seen; what it was, the cache knows.
            known = self.manifests.get(item.namespace, item.name)
            if known is None:
                return
            item = known
        if not item.agent or not self.manages(item.namespace):
            return
        if self.manifests.observe(event_type == "DELETED", item):
            self._dispatch(Change("ConfigMap", item.namespace, item.agent))

    # --- workers ----------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            started = time.perf_counter()
            result = "error"
            try:
                await self.reconcile(key)
                result = "success"
            except (errors.Forbidden, errors.Invalid) as exc:
                # Retrying cannot help (RBAC or a rejected write); the key's next change tries again.
                self.queue.forget(key)
                logger.warning("%s: %s; not retried", key, exc)
            except errors.KubeError as exc:
                delay = self.queue.retry(key)
                logger.warning("%s: %s; retrying in %.1fs", key, exc, delay)
            except Exception:
                delay = self.queue.retry(key)
                logger.exception("%s: reconcile failed; retrying in %.1fs", key, delay)
            else:
                self.queue.forget(key)
            finally:
                metrics.record_reconcile(
                    getattr(key, "kind", type(key).__name__), result, seconds=time.perf_counter() - started
                )
                self.queue.done(key)

    async def reconcile(self, key: WorkKey) -> None:
        """Reconcile one key with the service that owns it."""
        self.counts["reconciles"] += 1
        await self.service_for(key).reconcile(key)

    async def write_status(
        self, key: ObjectKey, uid: str, desire: Desire, *, owned: Iterable[str]
    ) -> tuple[bool, Mapping[str, Any] | None]:
        """Make the object's stored status what ``desire`` says; (whether it wrote, the last desired).

        The caller holds the object's status lock. Each patch is computed against the stored status
        and carries its resourceVersion as a precondition: a status changed behind the cache (409) is
        read again and the patch recomputed. After each write the stored status is checked against
        ``desire`` once more, so what is left on the server is what the newest decision implies.
        """
        owned = tuple(owned)
        resource = RESOURCE_TYPES[key.kind]
        written = False
        desired: Mapping[str, Any] | None = None
        for _ in range(STATUS_ATTEMPTS):
            entry = self.store.entry(key.kind, key.namespace, key.name)
            if entry is None or entry.uid != uid:
                return written, desired
            if not written:  # after a write: checked against the decision just written, not a newer
                wanted = desire(entry)  # one (a decision that moved on has its own key queued)
                if wanted is None:
                    return written, desired
                desired = wanted
            assert desired is not None
            patch = status.status_patch(desired, entry.status, owned=owned)
            if patch is None:
                return written, desired
            try:
                body = await kube_status.patch_status(
                    self.kube,
                    resource,
                    entry.namespace,
                    entry.name,
                    patch,
                    resource_version=entry.resource_version or None,
                )
            except errors.NotFound:
                return written, desired
            except errors.Conflict:
                written = False  # the stored status is someone else's now: decide again
                self.counts["status_conflicts"] += 1
                try:
                    fresh = await kube_status.read(self.kube, resource, entry.namespace, entry.name)
                except errors.NotFound:
                    return written, desired
                self.observe(key.kind, "MODIFIED", fresh)
                continue
            self.store.set_status(entry.kind, entry.namespace, entry.name, body)
            self.counts["status_patches"] += 1
            written = True
        raise errors.Conflict(f"{key}: its status kept changing while it was written", status=409)
