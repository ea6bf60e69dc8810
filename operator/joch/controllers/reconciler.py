"""The controller: watch events -> store -> work queue -> workers (gather, compile, act).

::

    kopf watch events ──observe()──> Store (parsed objects, Lookup for the compiler)
                           │
                           └─ fan-out (fanout.py) ──> WorkQueue (deduplicated keys)
                                                         │
                      workers (N asyncio tasks) <────────┘
                        Agent key:      gather -> compile_agent -> apply ConfigMap <agent>-g<gen>
                                        -> delete stale ConfigMaps -> patch status -> Events
                                        (or, when only the manifest sha moved: queue an AgentReport)
                        AgentReport:    patch the Agent's status             (low-priority lane)
                        other kinds:    referenced_status -> patch status

Manifests first, reports second: when a compile changes nothing in an Agent's status but the manifest
reference (a referenced object changed: new sha, same phase, generation and condition outcomes), the
status patch becomes a separate, low-priority key (:class:`AgentReport`), served when no compile is
waiting or once it has waited ``ControllerConfig.report_max_wait`` seconds. During a fan-out (one Model
used by 1,000 Agents) every ConfigMap, which is what workers run from, is thus rewritten before the
status patches, which cost the API server two to three times as much as a ConfigMap update each,
catch up. Anything else a user waits for (a new Agent, a new generation, Ready or a condition
flipping) is written by the compiling worker at once. A report always carries the latest compile.

Start-up (:meth:`Controller.start`, from kopf's startup handler, before kopf starts watching): one
LIST of every watched kind, the Namespaces and the CAM ConfigMaps primes the store and the ConfigMap
cache; then every Agent (and every Agent some ConfigMap still names, so orphans left by an Agent
deleted while the operator was down are cleaned up) is queued. Because the store holds the current
status and the cache the current ConfigMaps, a restart over a converged fleet writes nothing. Once that
first pass drains, the referenced objects' statuses are computed (their Agent counts are complete by
then), and "initial sync complete" is logged.

Concurrency: the workers and the watch handlers share one event loop; ``gather`` and ``compile_agent``
run on it without awaiting (one consistent snapshot per compile), API calls run in the kube client's
aiohttp client (joch.kube.client: bounded concurrency, write token bucket, 429 Retry-After). The queue
guarantees one worker per key. A failed key is retried with exponential backoff (0.5 s doubling to
60 s), except after 403 (RBAC) or 422 (a rejected write), which retrying cannot fix: those wait for the
key's next change.

Status writes (:meth:`Controller._write_status`): one object's status is decided and written under that
object's lock (an Agent's compile and its report are different keys, so the queue alone would let both
write at once); a report writes only while its compile is still the newest one; every patch carries the
resourceVersion it was computed against, so a status changed behind the cache fails with 409 and is
read again and recomputed; after a write the stored status is checked against the decision once more.
Together these make the GitOps-burst race (the report of an older compile landing after the newest
compile's status: phase Ready, conditions False, forever) impossible.

Safety resync (:meth:`Controller.resync`, every ``ControllerConfig.resync_period`` seconds, default 600,
0 disables): every managed object's status (and each Agent's ConfigMaps and dependencies) is re-derived
from the cache; only the keys whose stored state differs are queued, so a pass over a converged fleet
sends no request. It repairs what a lost event or an unforeseen race left behind.

Agent deletion: no finalizer. The watch's DELETED event queues the Agent, whose reconcile finds it gone
and deletes its ConfigMaps itself (nothing relies on the garbage collector, decision D7); the start-up
pass catches deletions that happened while the operator was down. A finalizer would block deleting
Agents (and their namespaces) whenever the operator is not running, for no gain.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final, Protocol

import pydantic

from joch import metrics
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.controllers.access import Access
from joch.controllers.audit import DeletionAudit
from joch.controllers.manifests import ManifestCache
from joch.controllers.queue import KeyedLocks, QueueShutDown, WorkQueue
from joch.controllers.recorder import EventRecorder
from joch.domain import compilation
from joch.domain.compilation.configmap import desired_configmap, stale_manifests
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy import compiling as policy_compiling
from joch.domain.policy import errors as policy_errors
from joch.domain.reconcile import fanout, status
from joch.domain.reconcile.cache import WATCHED_KINDS, Entry, Store, parse_entry, validation_message
from joch.domain.settings import OperatorSettings
from joch.kube import client, configmaps, errors, events, listing, paths, watch
from joch.kube import status as kube_status
from joch.kube.configmaps import ManifestConfigMap

__all__ = ["AgentReport", "Controller", "ControllerConfig"]

logger = logging.getLogger("joch.controller")

AGENT: Final = paths.ResourceType.of(Agent)
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
    event_rate: float = 20.0
    event_burst: int = 50
    event_capacity: int = 1000

    def watch_namespaces(self) -> tuple[str, ...]:
        """Namespaces to watch (the managed ones plus the shared ones); () means all."""
        if not self.namespaces:
            return ()
        return tuple(dict.fromkeys((*self.namespaces, *self.settings.shared_namespaces)))


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReport:
    """Work item: write an Agent's status (and warning Events) from its latest compile."""

    agent: ObjectKey

    kind: ClassVar[str] = "AgentReport"

    def __str__(self) -> str:
        return f"{self.agent} (status)"


WorkKey = ObjectKey | AgentReport


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingReport:
    compiled: compilation.Compiled
    uid: str


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


Desire = Callable[[Entry], Mapping[str, Any] | None]
"""The status an object should have, given its stored entry (None: write nothing)."""


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(body: Mapping[str, Any]) -> tuple[str | None, str, str]:
    metadata = body.get("metadata") or {}
    return metadata.get("namespace"), metadata.get("name") or "", metadata.get("uid") or ""


class Controller:
    """Everything the operator keeps in memory, and the workers acting on it."""

    def __init__(
        self,
        kube: client.Kube,
        config: ControllerConfig | None = None,
        *,
        access: Access | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.kube = kube
        self.config = config or ControllerConfig()
        self.settings = self.config.settings
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
        self._reports: dict[ObjectKey, _PendingReport] = {}
        """Agents compiled whose status is not written yet: their latest compile."""
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
        self.programs = policy_compiling.PolicyCompiler()
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
        metrics.track_queue_depth(lambda: len(self.queue))

    # --- scope ------------------------------------------------------------------------------------

    def manages(self, namespace: str | None) -> bool:
        """Whether this operator acts on objects in ``namespace`` (None: cluster-scoped, always)."""
        return namespace is None or not self.config.namespaces or namespace in self.config.namespaces

    def watch_namespaces(self) -> tuple[str, ...]:
        """Namespaces to watch (the managed and shared ones the operator may read); () means all."""
        return self.access.namespaces

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Prime the store with one LIST per kind (unless already primed: a leader elected after start-up
        keeps the warm store), then start the workers (see the module docstring)."""
        if not self.primed:
            await self.prime()
        for namespace in self.store.namespaces_with_agents():
            if self.manages(namespace):
                for name in self.store.agent_names(namespace):
                    self.queue.add(fanout.agent_key(namespace, name))
        for namespace, agent in self.manifests.agents():
            if self.manages(namespace):
                self.queue.add(fanout.agent_key(namespace, agent))
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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _initial_sync(self) -> None:
        await self.queue.wait_idle()
        self.synced = True
        referenced = 0
        for kind in status.REFERENCED_KINDS:
            for entry in self.store.entries(kind):
                if self.manages(entry.namespace):
                    self.queue.add(entry.key)
                    referenced += 1
        await self.queue.wait_idle()
        logger.info(
            "initial sync complete: %d agents, %d referenced objects, %s",
            self.store.count("Agent"),
            referenced,
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

    async def resync(self, *, batch: int = 50) -> list[ObjectKey]:
        """The safety net against lost events and races: re-derive every managed object's status (and
        each Agent's ConfigMaps and dependencies) from the cache, and queue the keys whose stored state
        differs. Writes nothing and sends no request for objects already right. Yields to the event
        loop every ``batch`` objects. Returns the keys queued."""
        queued: list[ObjectKey] = []
        checked = 0
        for kind in ("Agent", *sorted(status.REFERENCED_KINDS)):
            for entry in list(self.store.entries(kind)):
                if not self.manages(entry.namespace) or entry.key in self._reports:
                    continue
                drift = self._agent_drift(entry) if kind == "Agent" else self._referenced_drift(entry)
                if drift and self.store.entry(kind, entry.namespace, entry.name) is entry:
                    self.queue.add(entry.key)
                    queued.append(entry.key)
                checked += 1
                if checked % batch == 0:
                    await asyncio.sleep(0)
        self.counts["resyncs"] += 1
        self.counts["resync_queued"] += len(queued)
        return queued

    def _agent_drift(self, entry: Entry) -> bool:
        """Whether a compile of this Agent now would change anything (status, ConfigMaps, index)."""
        try:
            agent = entry.load()
        except pydantic.ValidationError as exc:
            desired = self._invalid_status(validation_message(exc), entry)
            return status.status_patch(desired, entry.status, owned=()) is not None
        assert isinstance(agent, Agent)
        key, namespace = entry.key, entry.namespace or ""
        gathered = compilation.gather(agent, self.store, self.settings)
        compiled = compilation.compile_agent(gathered, self.settings, programs=self.programs)
        if self.index.dependencies(key) != gathered.dependencies:
            return True
        if compiled.ok:
            wanted = ManifestConfigMap.from_body(desired_configmap(compiled, entry.uid))
            current = self.manifests.get(wanted.namespace, wanted.name)
            if current is None or not current.same_content(wanted):
                return True
        if self._doomed(namespace, entry.name, entry.uid):
            return True
        desired = status.agent_status(compiled, current=entry.status, now=self._now())
        return status.status_patch(desired, entry.status, owned=status.AGENT_FIELDS) is not None

    def _invalid_status(self, message: str, entry: Entry) -> dict[str, Any]:
        """The status of an Agent the model rejects (``message`` says which fields and why)."""
        return status.invalid_agent_status(
            message, generation=entry.generation, current=entry.status, now=self._now()
        )

    def _referenced_drift(self, entry: Entry) -> bool:
        desired = self._referenced_desired(entry)
        return desired is not None and status.status_patch(desired, entry.status) is not None

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
                    self.store.upsert(parse_entry(WATCHED_KINDS[kind], item))
        return len(by_kind.get("Namespace", ()))

    # --- watch events -----------------------------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a joch kind: update the store, queue whatever it affects. Type None is kopf
        listing the kind (at start, or after 410 Gone): the kind is then audited for deletions."""
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
        changed = old is None or new is None or old.fingerprint() != new.fingerprint()
        if kind == "Agent":
            if changed and self.manages(current.namespace):
                self.queue.add(current.key)
            return
        if changed:
            for key in fanout.affected_agents(
                old, new, store=self.store, index=self.index, settings=self.settings
            ):
                if self.manages(key.namespace):
                    self.queue.add(key)
            if kind == "Model":
                self._queue_routes_of(current.namespace or "")
        if new is not None and (changed or old is None or old.raw_status != new.raw_status):
            self._queue_status(new.key)

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
        return old, new

    def observe_namespace(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a core Namespace: its labels may decide Agents' environments (D5)."""
        _, name, _ = _name(body)
        labels = None if event_type == "DELETED" else dict((body.get("metadata") or {}).get("labels") or {})
        old = self.store.set_namespace(name, labels)
        if (old or {}) != (labels or {}):
            for key in fanout.namespace_affected(name, self.index):
                if self.manages(key.namespace):
                    self.queue.add(key)

    def observe_configmap(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of a CAM ConfigMap: reconcile its Agent if it is not what the operator wrote."""
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
            self.queue.add(fanout.agent_key(item.namespace, item.agent))

    def _queue_status(self, key: ObjectKey) -> None:
        if self.synced and key.kind in status.REFERENCED_KINDS and self.manages(key.namespace):
            self.queue.add_after(key, self.config.status_delay)

    def _queue_routes_of(self, model_namespace: str) -> None:
        shared = self.settings.is_shared(model_namespace)
        for entry in self.store.entries("ModelRoute"):
            if shared or entry.namespace == model_namespace:
                self._queue_status(entry.key)

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
                metrics.record_reconcile(key.kind, result, seconds=time.perf_counter() - started)
                self.queue.done(key)

    async def reconcile(self, key: WorkKey) -> None:
        self.counts["reconciles"] += 1
        if isinstance(key, AgentReport):
            await self.report_agent(key.agent)
        elif key.kind == "Agent":
            await self.reconcile_agent(key.namespace or "", key.name)
        else:
            await self.reconcile_referenced(key)

    async def reconcile_agent(self, namespace: str, name: str) -> None:
        """Compile one Agent and make its ConfigMaps, status and Events match (module docstring)."""
        key = fanout.agent_key(namespace, name)
        entry = self.store.entry("Agent", namespace, name)
        if entry is None:
            await self._forget_agent(key)
            return
        try:
            agent = entry.load()
        except pydantic.ValidationError as exc:
            message = validation_message(exc)
            async with self._status_locks.hold(key):
                self._reports.pop(key, None)
                await self._write_status(
                    key,
                    entry.uid,
                    lambda stored: self._invalid_status(message, stored),
                    owned=(),
                )
            return
        assert isinstance(agent, Agent)

        gathered = compilation.gather(agent, self.store, self.settings)
        with metrics.compile_timer():
            compiled = compilation.compile_agent(gathered, self.settings, programs=self.programs)
        self.counts["compiles"] += 1
        added, removed = self.index.update(key, gathered.dependencies)
        for dependency in added | removed:
            if dependency.kind in status.COUNTED_KINDS:
                self._queue_status(dependency)

        outcome: configmaps.Outcome | None = None
        if compiled.ok:
            outcome = await self._apply_manifest(desired_configmap(compiled, entry.uid))
        await self._collect_garbage(namespace, name, entry.uid)
        if outcome in ("created", "replaced"):
            self.recorder.record(
                self._involved(entry),
                "Normal",
                "Compiled",
                f"compiled manifest {compiled.name} (sha256 {compiled.sha256[:12]}) into its ConfigMap",
            )
        logger.debug(
            "compiled Agent/%s/%s generation=%s ok=%s manifest=%s",
            namespace,
            name,
            compiled.generation,
            compiled.ok,
            outcome or "not written",
        )
        async with self._status_locks.hold(key):  # the report of an older compile may be writing
            latest = self._still_stored(key, entry.uid)
            if latest is None:
                return
            desired = status.agent_status(compiled, current=latest.status, now=self._now())
            if status.only_manifest_moved(latest.status, desired):
                self._reports[key] = _PendingReport(compiled, entry.uid)
                self.queue.add(AgentReport(key))
                return
            # This compile is the newest: a report of an older one must not write after it.
            self._reports.pop(key, None)

            def desire(stored: Entry) -> Mapping[str, Any] | None:
                if stored.generation != entry.generation:
                    return None  # the spec moved on; its own event queued a newer compile
                return status.agent_status(compiled, current=stored.status, now=self._now())

            await self._report(key, latest, desire)

    def _still_stored(self, key: ObjectKey, uid: str) -> Entry | None:
        """The stored Agent if it is still the one compiled (same uid). Otherwise it was deleted or
        re-created meanwhile (its own event queued it again): its pending report is dropped."""
        latest = self.store.entry("Agent", key.namespace, key.name)
        if latest is None or latest.uid != uid:
            self._reports.pop(key, None)
            return None
        return latest

    async def _report(self, key: ObjectKey, latest: Entry, desire: Desire) -> None:
        """Write an Agent's status (the caller holds its status lock) and its warning Events."""
        before = latest.status
        patched, desired = await self._write_status(key, latest.uid, desire, owned=status.AGENT_FIELDS)
        if desired is None:
            return
        self._agent_warnings(latest, before, desired)
        logger.debug(
            "reported Agent/%s/%s phase=%s status=%s",
            key.namespace,
            key.name,
            desired["phase"],
            "patched" if patched else "unchanged",
        )

    async def report_agent(self, key: ObjectKey) -> None:
        """Write an Agent's status from its latest compile (a no-op when it has none pending)."""
        async with self._status_locks.hold(key):
            pending = self._reports.get(key)
            if pending is None:
                return  # written meanwhile by a newer compile
            latest = self._still_stored(key, pending.uid)
            if latest is None:
                return

            def desire(stored: Entry) -> Mapping[str, Any] | None:
                if self._reports.get(key) is not pending or stored.generation != pending.compiled.generation:
                    return None  # never write an outcome older than the newest compile
                return status.agent_status(pending.compiled, current=stored.status, now=self._now())

            await self._report(key, latest, desire)
            if self._reports.get(key) is pending:
                del self._reports[key]

    async def _apply_manifest(self, desired: Mapping[str, Any]) -> configmaps.Outcome:
        metadata = desired["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        sha = metadata["annotations"][compilation.configmap.SHA_ANNOTATION]
        self.manifests.pending(namespace, name, sha)
        try:
            outcome, result = await configmaps.apply_configmap(
                self.kube, desired, current=self.manifests.get(namespace, name)
            )
        finally:
            self.manifests.settled(namespace, name)
        self.manifests.put(result)
        if outcome != "unchanged":
            self.counts["configmaps_written"] += 1
        return outcome

    def _doomed(self, namespace: str, agent: str, uid: str | None) -> list[str]:
        """ConfigMaps of an earlier Agent with this name, and all but the newest generations."""
        known = self.manifests.of(namespace, agent)
        if uid is None:
            return [item.name for item in known]
        doomed = [item.name for item in known if item.owner_uid is not None and item.owner_uid != uid]
        mine = [(i.name, i.generation) for i in known if i.owner_uid == uid and i.generation is not None]
        return doomed + stale_manifests(mine, keep=self.settings.keep_manifests)

    async def _collect_garbage(self, namespace: str, agent: str, uid: str | None) -> None:
        """Delete ConfigMaps of an earlier Agent with this name, and all but the newest generations."""
        doomed = self._doomed(namespace, agent, uid)
        if not doomed:
            return
        for doomed_name in doomed:
            self.manifests.pending(namespace, doomed_name, None)
            self.manifests.drop(namespace, doomed_name)
        try:
            deleted = await configmaps.delete_configmaps(self.kube, namespace, doomed)
        finally:
            for doomed_name in doomed:
                self.manifests.settled(namespace, doomed_name)
        self.counts["configmaps_deleted"] += len(deleted)

    async def _forget_agent(self, key: ObjectKey) -> None:
        self._reports.pop(key, None)
        for dependency in self.index.remove(key):
            if dependency.kind in status.COUNTED_KINDS:
                self._queue_status(dependency)
        await self._collect_garbage(key.namespace or "", key.name, None)

    async def _write_status(
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

    @staticmethod
    def _involved(entry: Entry) -> events.InvolvedObject:
        return events.InvolvedObject(AGENT.api_version, "Agent", entry.namespace, entry.name, entry.uid)

    def _agent_warnings(self, entry: Entry, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Warning Events for ResolvedRefs/Compiled conditions that turned False or changed message."""
        involved = self._involved(entry)
        old = {c.get("type"): c for c in before.get("conditions") or ()}
        new = {c.get("type"): c for c in after.get("conditions") or ()}
        for kind in ("ResolvedRefs", "Compiled"):
            condition = new.get(kind)
            if (
                condition is None
                or condition["status"] != "False"
                or condition["reason"] == "ReferencesUnresolved"
            ):
                continue
            previous = old.get(kind) or {}
            if (previous.get("status"), previous.get("message")) != ("False", condition["message"]):
                self.recorder.record(involved, "Warning", condition["reason"], condition["message"])

    async def reconcile_referenced(self, key: ObjectKey) -> None:
        """Write the status of a referenced object (Ready, observedGeneration, phase, counters)."""
        entry = self.store.entry(key.kind, key.namespace, key.name)
        if entry is None or entry.obj is None:
            return
        async with self._status_locks.hold(key):
            await self._write_status(key, entry.uid, self._referenced_desired, owned=())

    def _referenced_desired(self, entry: Entry) -> dict[str, Any] | None:
        """The status a referenced object should have, from the cache (None: it does not parse)."""
        if entry.obj is None:
            return None
        policy_error = None
        if isinstance(entry.obj, Policy):
            try:
                self.programs.compile(
                    name=entry.name,
                    namespace=entry.namespace or "",
                    generation=entry.generation or 1,
                    spec=entry.obj.spec.wire(),
                )
            except policy_errors.PolicyError as exc:
                policy_error = str(exc)
        return status.referenced_status(
            entry.obj,
            current=entry.status,
            lookup=self.store,
            settings=self.settings,
            agents=self._count_agents(entry.key),
            policy_error=policy_error,
            now=self._now(),
        )

    def _count_agents(self, key: ObjectKey) -> int:
        return sum(
            1
            for agent in self.index.dependants(key)
            if self.store.entry("Agent", agent.namespace, agent.name)
        )

    def _now(self) -> str:
        return _stamp(self._clock())
