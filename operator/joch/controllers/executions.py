"""The executions service: every Execution becomes one Job that runs its Agent's framework adapter
from the compiled manifest, at most N at once per Agent, first come first served (one more service on
the shared cache; see joch.controllers.service). The plan is joch.domain.reconcile.executions.

Work keys:

- ``ObjectKey("Execution", namespace, name)``: one run's life: its status from its Job and Pod
  (Running, then Succeeded, Failed, TimedOut), cancellation (``spec.cancel``: the Job is deleted),
  a Job deleted by someone else (Failed, JobDeleted), the ToolCalls linked to it, and retention (a
  finished Execution is deleted ``retention`` seconds after it ended; its Job goes with it);
- :class:`AgentSlots` ``(namespace, agent)``: which of the Agent's waiting Executions start now. It is
  one key per Agent, so two starts of one Agent are never decided at once (the queue runs one worker
  per key) and the cap holds. The oldest waiting Executions get the free slots (a Deployment of the
  Agent sets the cap with its replicas, else ``ExecutionSettings.concurrency``); the rest are Queued.
  A Job that ends queues its Agent's slots key at once: a freed slot is taken without polling. Each
  Agent has its own slots, so one Agent's backlog never delays another's.

Starting a run: the Agent's compiled manifest must be current (its status.compiledManifest names the
sha256 the cache compiles to now; otherwise the Execution stays Pending until the compile service has
written it). The Job (same name, owned by the Execution, labels joch.dev/agent and joch.dev/execution)
carries the manifest ConfigMap and sha256 and the AgBOM generation as annotations, so what a run started
from is decided once, at create, and re-derived from the Job after a crash (the Job's name makes a
second create a 409: exactly one Job per Execution, however often it is retried).

Jobs and Pods are not in the shared cache: the service keeps trimmed views of those labelled
``joch.dev/execution``, fed by its own informers (one LIST and one WATCH per watched namespace, started
with the controller's start-up LIST). A Pod deleted before it ended is remembered, so the Failed status
says so. The workers' ServiceAccount, Role and RoleBinding (``joch-worker``) are created in a namespace
before its first Job.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import json
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, ClassVar, Final, Literal

import pydantic

from joch import metrics
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.toolcall import ToolCall
from joch.controllers.service import Change, Host, Service
from joch.domain import compilation
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import budgets, evals
from joch.domain.reconcile import executions as plan
from joch.domain.reconcile.cache import Entry
from joch.domain.reconcile.status import conditions_by_type
from joch.kube import errors, events, jobs, listing, paths
from joch.kube.watch import Listed, ObjectWatch

__all__ = ["AgentSlots", "ExecutionService"]

logger = logging.getLogger("joch.executions")

RUNNING_REASONS: Final = frozenset({"Running", "Starting"})
BUDGET_WAIT_SECONDS: Final = 5.0
"""How often retention looks again at a finished run that a covering Budget has not counted yet."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSlots:
    """Work key: decide which of an Agent's waiting Executions start."""

    namespace: str
    agent: str
    kind: ClassVar[str] = "ExecutionSlots"


@dataclasses.dataclass(frozen=True, slots=True)
class _Blocked:
    """Why an Agent's waiting Executions cannot start now."""

    phase: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Info:
    """What scheduling reads of one Execution, parsed once per change."""

    agent: str
    created: str
    cancel: bool


def _info(entry: Entry) -> _Info | None:
    try:
        obj = entry.load()
    except pydantic.ValidationError:
        return None
    if not isinstance(obj, Execution):
        return None
    created = str((obj.metadata.model_extra or {}).get("creationTimestamp") or "")
    return _Info(obj.spec.agent_ref.name, created, bool(obj.spec.cancel))


def execution_key(namespace: str, name: str) -> ObjectKey:
    return ObjectKey("Execution", namespace, name)


def _trim_job(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    kept = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "creationTimestamp")
    out_meta = {key: metadata[key] for key in kept if key in metadata}
    if metadata.get("deletionTimestamp"):
        out_meta["deletionTimestamp"] = metadata["deletionTimestamp"]
    out_status = {
        k: status[k] for k in ("active", "startTime", "completionTime", "conditions") if k in status
    }
    return {"metadata": out_meta, "status": out_status}


def _trim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    kept = ("name", "namespace", "uid", "resourceVersion", "labels", "creationTimestamp", "deletionTimestamp")
    out_status: dict[str, Any] = {k: status[k] for k in ("phase", "reason", "message") if k in status}
    terminated = [
        {"state": {"terminated": (c.get("state") or {}).get("terminated")}}
        for c in status.get("containerStatuses") or ()
        if (c.get("state") or {}).get("terminated")
    ]
    if terminated:
        out_status["containerStatuses"] = terminated
    return {"metadata": {key: metadata[key] for key in kept if key in metadata}, "status": out_status}


def _execution_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    metadata = body.get("metadata") or {}
    name = (metadata.get("labels") or {}).get(plan.EXECUTION_LABEL)
    namespace = metadata.get("namespace")
    return (str(namespace), str(name)) if name and namespace else None


class ExecutionService(Service):
    name = "executions"
    watches = frozenset({"Execution", "ToolCall", "Agent", "Deployment", "Approval"})
    resync_kinds = ("Execution",)

    def __init__(self, host: Host, settings: plan.ExecutionSettings | None = None) -> None:
        super().__init__(host)
        self.settings = settings or getattr(host, "execution_settings", None) or plan.ExecutionSettings()
        self.jobs: dict[tuple[str, str], plan.JobView] = {}
        self.pods: dict[tuple[str, str], dict[str, plan.PodView]] = collections.defaultdict(dict)
        self.deleted_pods: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        """Pods of a run deleted before they ended (the Failed message names them)."""
        self.by_agent: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        """(namespace, agent) -> the names of its Executions."""
        self.info: dict[tuple[str, str], _Info] = {}
        self.tool_calls: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
        """(namespace, execution) -> the ToolCalls recorded for it."""
        self.identities: set[str] = set()
        """Namespaces whose worker ServiceAccount, Role and RoleBinding exist."""
        self.approvals: dict[tuple[str, str], dict[str, str]] = collections.defaultdict(dict)
        """(namespace, execution) -> its Approvals' names and phases."""
        self._watches: list[ObjectWatch] = []

    # --- what is dirty ----------------------------------------------------------------------------

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, AgentSlots) or (isinstance(key, ObjectKey) and key.kind == "Execution")

    def observe(self, change: Change) -> None:
        host = self.host
        namespace = change.namespace or ""
        if not host.manages(namespace):
            return
        if change.kind == "Execution":
            self._index_execution(change)
            host.queue.add(execution_key(namespace, change.name))
        elif change.kind == "ToolCall":
            self._index_tool_call(change)
        elif change.kind == "Approval":
            self._index_approval(change)
        elif change.kind == "Agent":
            if self._has_waiting(namespace, change.name):
                host.queue.add(AgentSlots(namespace, change.name))
        elif change.kind == "Deployment":
            for entry in (change.old, change.new):
                obj = entry.obj if entry is not None else None
                if isinstance(obj, Deployment):
                    agent = obj.spec.agent_ref
                    if (agent.namespace or namespace) == namespace:
                        host.queue.add(AgentSlots(namespace, agent.name))

    def _index_execution(self, change: Change) -> None:
        namespace = change.namespace or ""
        owner = (namespace, change.name)
        before = self.info.pop(owner, None)
        if before is not None:
            self.by_agent[(namespace, before.agent)].discard(change.name)
        after = _info(change.new) if change.new is not None else None
        if after is not None:
            self.info[owner] = after
            self.by_agent[(namespace, after.agent)].add(change.name)
        if change.new is None:
            self.tool_calls.pop(owner, None)
            self.deleted_pods.pop(owner, None)
            if before is not None:
                self.host.queue.add(AgentSlots(namespace, before.agent))

    def _index_tool_call(self, change: Change) -> None:
        namespace = change.namespace or ""
        for entry, present in ((change.old, False), (change.new, True)):
            if entry is None:
                continue
            execution = _execution_ref(entry)
            if execution is None:
                continue
            names = self.tool_calls[(namespace, execution)]
            before = len(names)
            if present:
                names.add(change.name)
            else:
                names.discard(change.name)
            if len(names) != before:
                self.host.queue.add(execution_key(namespace, execution))

    def _index_approval(self, change: Change) -> None:
        namespace = change.namespace or ""
        for entry, present in ((change.old, False), (change.new, True)):
            if entry is None:
                continue
            execution = _requesting_execution(entry, namespace)
            if execution is None:
                continue
            phases = self.approvals[execution]
            before = dict(phases)
            if present:
                phases[change.name] = str(entry.status.get("phase") or "Pending")
            else:
                phases.pop(change.name, None)
            if phases != before:
                self.host.queue.add(execution_key(*execution))
            if not phases:
                self.approvals.pop(execution, None)

    def _has_waiting(self, namespace: str, agent: str) -> bool:
        store = self.host.store
        for name in self.by_agent.get((namespace, agent), ()):
            entry = store.entry("Execution", namespace, name)
            if (
                entry is not None
                and (namespace, name) not in self.jobs
                and not entry.status.get("manifestRef")
                and not plan.is_terminal(entry.status)
            ):
                return True
        return False

    # --- Jobs and Pods (the service's own informers) ----------------------------------------------------

    def observe_job(self, event_type: str, body: Mapping[str, Any]) -> None:
        owner = _execution_of(body)
        if owner is None:
            return
        if event_type == "DELETED":
            known = self.jobs.get(owner)
            uid = (body.get("metadata") or {}).get("uid")
            if known is not None and (not uid or known.uid == uid):
                del self.jobs[owner]
        else:
            self.jobs[owner] = plan.JobView.from_body(body)
        self.host.queue.add(execution_key(*owner))

    def observe_pod(self, event_type: str, body: Mapping[str, Any]) -> None:
        owner = _execution_of(body)
        if owner is None:
            return
        name = str((body.get("metadata") or {}).get("name") or "")
        pods = self.pods[owner]
        if event_type == "DELETED":
            known = pods.pop(name, None)
            if known is not None and known.phase not in ("Succeeded", "Failed"):
                self.deleted_pods[owner].append(name)
            if not pods:
                self.pods.pop(owner, None)
        else:
            pods[name] = plan.PodView.from_body(body)
        self.host.queue.add(execution_key(*owner))

    async def prime(self) -> None:
        """List the Jobs and Pods of Executions (one LIST each per watched namespace), then watch them
        from there."""
        selector = plan.EXECUTION_LABEL
        for namespace in self.host.watch_namespaces() or (None,):
            for resource, trim, deliver in (
                (jobs.JOBS, _trim_job, self.observe_job),
                (jobs.PODS, _trim_pod, self.observe_pod),
            ):
                try:
                    items, version = await listing.list_with_version(
                        self.host.kube, resource, namespace=namespace, label_selector=selector
                    )
                except errors.Forbidden as exc:
                    logger.warning("cannot list %s (%s): executions will not run", resource.plural, exc)
                    continue
                versions = {}
                for item in items:
                    trimmed = trim(item)
                    deliver("ADDED", trimmed)
                    metadata = trimmed["metadata"]
                    versions[(metadata.get("namespace") or "", metadata.get("name") or "")] = str(
                        metadata.get("resourceVersion") or ""
                    )
                watch = ObjectWatch(
                    self.host.kube, resource, deliver, namespace=namespace, label_selector=selector, trim=trim
                )
                watch.start(Listed(versions, version))
                self._watches.append(watch)

    async def stop(self) -> None:
        await asyncio.gather(*(watch.stop() for watch in self._watches))
        self._watches.clear()

    def start_keys(self) -> Iterable[Hashable]:
        """Every Execution and ToolCall of the start-up LIST indexed (it is not dispatched as changes),
        then every Execution queued."""
        store = self.host.store
        for kind in ("Execution", "ToolCall", "Approval"):
            for entry in store.entries(kind):
                change = Change(kind, entry.namespace, entry.name, None, entry)
                if kind == "Execution":
                    self._index_execution(change)
                elif kind == "ToolCall":
                    self._index_tool_call(change)
                else:
                    self._index_approval(change)
        for entry in store.entries("Execution"):
            yield execution_key(entry.namespace or "", entry.name)

    # --- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> None:
        if isinstance(key, AgentSlots):
            await self._slots(key)
            return
        assert isinstance(key, ObjectKey)
        await self._execution(key.namespace or "", key.name)

    async def _execution(self, namespace: str, name: str) -> None:
        host = self.host
        entry = host.store.entry("Execution", namespace, name)
        if entry is None:
            return
        try:
            execution = entry.load()
        except pydantic.ValidationError:
            return  # admission keeps these out; nothing can be run from it
        assert isinstance(execution, Execution)
        owner = (namespace, name)
        agent = execution.spec.agent_ref.name
        await self._link_tool_calls(namespace, name, entry)
        stored = entry.status
        job = self.jobs.get(owner)
        if plan.is_terminal(stored):
            if job is not None and not job.done and not job.deleting:
                await jobs.delete_job(host.kube, namespace, name, uid=job.uid)
            await self._retain(entry, stored)
            return
        if execution.spec.cancel:
            if job is not None and not job.done:
                await jobs.delete_job(host.kube, namespace, name, uid=job.uid)
                host.counts["jobs_deleted"] += 1
            await self._end(entry, "Cancelled", "Cancelled", "cancelled (spec.cancel)", agent)
            return
        if job is not None:
            await self._follow(entry, agent)
            return
        if stored.get("manifestRef") or stored.get("phase") == "Running":
            message = f"Job {name} was deleted before the run ended"
            await self._end(entry, "Failed", "JobDeleted", message, agent)
            return
        host.queue.add(AgentSlots(namespace, agent))

    async def _follow(self, entry: Entry, agent: str) -> None:
        """Status from the Job and its Pods."""
        host = self.host
        owner = (entry.namespace or "", entry.name)

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            job = self.jobs.get(owner)
            if job is None:
                return None
            return plan.run_status(
                stored.status,
                job,
                tuple(self.pods.get(owner, {}).values()),
                deleted_pods=tuple(self.deleted_pods.get(owner, ())),
                generation=stored.generation,
                now=host.now(),
            )

        before = entry.status.get("phase")
        async with host.status_lock(entry.key):
            written, desired = await host.write_status(entry.key, entry.uid, desire, owned=())
        phase = (desired or {}).get("phase")
        if written and desired is not None and phase in plan.TERMINAL and before != phase:
            self._ended(entry, desired, agent)

    async def _end(self, entry: Entry, phase: str, reason: str, message: str, agent: str) -> None:
        host = self.host

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            return plan.ended_status(
                stored.status, phase, reason, message, generation=stored.generation, now=host.now()
            )

        async with host.status_lock(entry.key):
            written, desired = await host.write_status(entry.key, entry.uid, desire, owned=())
        if written and desired is not None:
            self._ended(entry, desired, agent)

    def _ended(self, entry: Entry, status: Mapping[str, Any], agent: str) -> None:
        """A run reached its end: an Event, the Agent's slot freed, retention scheduled."""
        host = self.host
        phase = str(status.get("phase"))
        ready = conditions_by_type(status).get("Ready") or {}
        kind: Literal["Normal", "Warning"] = "Normal" if phase in ("Succeeded", "Cancelled") else "Warning"
        message = str(ready.get("message") or phase)
        duration = status.get("durationMs")
        if duration is not None:
            message = f"{message} (after {duration} ms)"
        host.recorder.record(_involved(entry), kind, phase, message)
        host.counts[f"executions_{phase.lower()}"] += 1
        metrics.record_execution_finished(phase)
        host.queue.add(AgentSlots(entry.namespace or "", agent))
        if self.settings.retention_seconds > 0:
            host.queue.add_after(entry.key, self.settings.retention_seconds)
        # This status write went into the cache, not through a watch: the Budgets covering the run hear
        # of its end from here (the budgets service counts it).
        for covering in budgets.covering(host.store, host.settings, entry.namespace or "", agent):
            namespace, _, name = covering.partition("/")
            host.touch(ObjectKey("Budget", namespace, name))
        # ... and the Eval an eval run belongs to (the evals service judges it).
        source = evals.source_of(entry)
        if source is not None:
            host.touch(ObjectKey("Eval", entry.namespace, source))

    async def _retain(self, entry: Entry, stored: Mapping[str, Any]) -> None:
        """Delete a finished Execution once its retention has passed (else come back then)."""
        retention = self.settings.retention_seconds
        completed = plan.parse_time(stored.get("completedAt"))
        if retention <= 0 or completed is None:
            return
        now = plan.parse_time(self.host.now())
        assert now is not None
        left = (completed + datetime.timedelta(seconds=retention) - now).total_seconds()
        if left > 0:
            self.host.queue.add_after(entry.key, left)
            return
        run = budgets.run_of(entry)
        if run is not None:
            covering = budgets.covering(self.host.store, self.host.settings, run.namespace, run.agent)
            if budgets.uncharged(run, covering):
                # Kept until every Budget covering it has counted it (docs/budgets.md).
                self.host.queue.add_after(entry.key, BUDGET_WAIT_SECONDS)
                return
        if await jobs.delete_execution(self.host.kube, entry.namespace or "", entry.name, uid=entry.uid):
            self.host.counts["executions_expired"] += 1

    async def _link_tool_calls(self, namespace: str, name: str, entry: Entry) -> None:
        """Own every ToolCall recorded for the run (deleted with it), and count them in its status."""
        host = self.host
        names = sorted(self.tool_calls.get((namespace, name), ()))
        for call in names:
            stored = host.store.entry("ToolCall", namespace, call)
            if stored is None or _owned_by(stored, entry.uid):
                continue
            patch = {
                "metadata": {
                    "labels": {plan.EXECUTION_LABEL: name},
                    "ownerReferences": [
                        {
                            "apiVersion": jobs.EXECUTIONS.api_version,
                            "kind": "Execution",
                            "name": name,
                            "uid": entry.uid,
                        }
                    ],
                }
            }
            try:
                await host.kube.request(
                    "PATCH",
                    TOOLCALLS.object_path(namespace, call),
                    body=patch,
                    content_type="application/merge-patch+json",
                )
            except errors.NotFound:
                continue
            host.counts["toolcalls_linked"] += 1
        count = len(names)
        phases = self.approvals.get((namespace, name), {})
        approvals = {
            "approvals": len(phases),
            "pendingApprovals": sum(p == "Pending" for p in phases.values()),
        }
        stored_status = entry.status
        if (stored_status.get("recordedToolCalls") or 0) == count and all(
            (stored_status.get(k) or 0) == v for k, v in approvals.items()
        ):
            return

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            current = self.approvals.get((namespace, name), {})
            return {
                "recordedToolCalls": len(self.tool_calls.get((namespace, name), ())),
                "approvals": len(current),
                "pendingApprovals": sum(p == "Pending" for p in current.values()),
            }

        async with host.status_lock(entry.key):
            await host.write_status(entry.key, entry.uid, desire, owned=())

    # --- scheduling -------------------------------------------------------------------------------

    async def _slots(self, key: AgentSlots) -> None:
        await self._schedule(key.namespace, key.agent)
        await self._report_agent(key.namespace, key.agent)

    async def _report_agent(self, namespace: str, agent: str) -> None:
        """The Agent's ``activeExecutions`` (Jobs of its runs not finished) and ``lastRunAt`` (its newest
        run's start), written when they differ."""
        host = self.host
        entry = host.store.entry("Agent", namespace, agent)
        if entry is None:
            return
        active, last = 0, ""
        for name in self.by_agent.get((namespace, agent), ()):
            job = self.jobs.get((namespace, name))
            if job is not None:
                active += 0 if job.done else 1
                last = max(last, job.created)
        wanted: dict[str, Any] = {"activeExecutions": active}
        if last:
            wanted["lastRunAt"] = last
        stored = entry.status
        if all(stored.get(k) == v for k, v in wanted.items()):
            return

        def desire(current: Entry) -> Mapping[str, Any] | None:
            return wanted

        async with host.status_lock(entry.key):
            await host.write_status(entry.key, entry.uid, desire, owned=())

    async def _schedule(self, namespace: str, agent: str) -> None:
        host = self.host
        running = 0
        waiting: list[plan.Waiting] = []
        for name in sorted(self.by_agent.get((namespace, agent), ())):
            entry = host.store.entry("Execution", namespace, name)
            if entry is None:
                continue
            stored = entry.status
            if plan.is_terminal(stored):
                continue
            job = self.jobs.get((namespace, name))
            if job is not None:
                running += 0 if job.done else 1
                continue
            info = self.info.get((namespace, name))
            if info is None or info.cancel or stored.get("manifestRef"):
                continue  # its own key ends it
            waiting.append(plan.Waiting(info.created, name))
        if not waiting:
            return
        launch = self._launch(namespace, agent)
        if isinstance(launch, _Blocked):
            if launch.phase == "Failed":
                await asyncio.gather(*(self._fail_waiting(namespace, w.name, launch, agent) for w in waiting))
            else:
                await asyncio.gather(*(self._wait(namespace, w.name, launch) for w in waiting))
            return
        capacity = self._capacity(namespace, agent)
        start, queued = plan.pick(waiting, running=running, capacity=capacity)
        if start and namespace not in self.identities:
            host.counts["worker_identities_created"] += await jobs.ensure_worker_identity(
                host.kube, namespace, self.settings.service_account
            )
            self.identities.add(namespace)
        message = f"waiting for a free slot: Agent {agent} runs at most {capacity} at once"
        blocked = _Blocked("Queued", "WaitingForSlot", message)
        await asyncio.gather(
            *(self._start(namespace, name, launch) for name in start),
            *(self._wait(namespace, name, blocked) for name in queued),
        )

    def _capacity(self, namespace: str, agent: str) -> int:
        """The Agent's cap of running Executions: its Deployment's replicas (maxReplicas when it
        autoscales; the largest, if several Deployments run it), else the setting."""
        replicas = [
            _replicas(entry.obj)
            for entry in self.host.store.entries("Deployment")
            if entry.namespace == namespace
            and isinstance(entry.obj, Deployment)
            and entry.obj.spec.agent_ref.name == agent
            and (entry.obj.spec.agent_ref.namespace or namespace) == namespace
        ]
        return max(replicas) if replicas else self.settings.concurrency

    def _launch(self, namespace: str, agent: str) -> plan.Launch | _Blocked:
        """What the Agent's runs start from now, or why they cannot start yet."""
        host = self.host
        entry = host.store.entry("Agent", namespace, agent)
        if entry is None:
            return _Blocked("Failed", "AgentNotFound", f"Agent {namespace}/{agent} not found")
        status = entry.status
        ref = status.get("compiledManifest") or {}
        ready = conditions_by_type(status).get("Ready") or {}
        if not ref or ready.get("status") != "True":
            why = ready.get("message") or "not compiled yet"
            return _Blocked("Pending", "AgentNotReady", f"Agent {agent} is not Ready: {why}")
        try:
            obj = entry.load()
        except pydantic.ValidationError:
            return _Blocked("Pending", "AgentNotReady", f"Agent {agent} does not parse")
        assert isinstance(obj, Agent)
        gathered = compilation.gather(obj, host.store, host.settings)
        compiled = compilation.compile_agent(gathered, host.settings, programs=host.programs)
        if not compiled.ok or compiled.sha256 != ref.get("sha256"):
            return _Blocked(
                "Pending", "AgentCompiling", f"Agent {agent}'s compiled manifest is being updated"
            )
        spec = compiled.manifest.get("spec") or {}
        framework = spec.get("framework") or {}
        image = framework.get("adapterImage") or framework.get("image")
        if not image:
            message = f"Agent {agent}: its FrameworkAdapter {framework.get('adapter')} names no adapterImage"
            return _Blocked("Failed", "NoImage", message)
        tools = spec.get("tools") or []
        settings = host.settings
        bom = host.store.entry("AgBOM", namespace, agent)
        bom_generation = bom.status.get("generation") if bom is not None else None
        return plan.Launch(
            manifest_name=str(ref.get("name")),
            manifest_sha256=str(ref.get("sha256")),
            image=str(image),
            gateway_url=str(tools[0].get("gatewayUrl") if tools else settings.tool_gateway_url),
            router_url=str(spec.get("modelRouterUrl") or settings.model_router_url),
            trace_url=str((spec.get("observability") or {}).get("traceEndpoint") or settings.trace_url),
            agbom=(agent, int(bom_generation)) if isinstance(bom_generation, int) else None,
            agent_generation=entry.generation,
        )

    async def _start(self, namespace: str, name: str, launch: plan.Launch) -> None:
        host = self.host
        entry = host.store.entry("Execution", namespace, name)
        if entry is None:
            return
        execution = entry.load()
        assert isinstance(execution, Execution)
        desired = plan.desired_job(execution, entry.uid, launch, self.settings)
        body, created = await jobs.create_job(host.kube, desired)
        view = plan.JobView.from_body(_trim_job(body))
        if not _owned_by_uid(body, entry.uid):
            logger.warning(
                "Job %s/%s belongs to an earlier Execution of that name; waiting for it to go",
                namespace,
                name,
            )
            return
        self.jobs[(namespace, name)] = view
        if created:
            host.counts["jobs_created"] += 1
            info = self.info.get((namespace, name))
            created_at = plan.parse_time(info.created) if info is not None else None
            now = plan.parse_time(host.now())
            delay = (now - created_at).total_seconds() if created_at is not None and now is not None else None
            metrics.record_execution_started(delay)
            host.recorder.record(
                _involved(entry),
                "Normal",
                "Started",
                f"Job {name} created from manifest {launch.manifest_name} "
                f"(sha256 {launch.manifest_sha256[:12]})",
            )
        host.queue.add(entry.key)

    async def _wait(self, namespace: str, name: str, blocked: _Blocked) -> None:
        host = self.host
        entry = host.store.entry("Execution", namespace, name)
        if entry is None:
            return

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            info = self.info.get((namespace, name))
            if (namespace, name) in self.jobs or info is None or info.cancel:
                return None
            return plan.waiting_status(
                stored.status,
                blocked.phase,
                blocked.reason,
                blocked.message,
                generation=stored.generation,
                now=host.now(),
            )

        async with host.status_lock(entry.key):
            await host.write_status(entry.key, entry.uid, desire, owned=())

    async def _fail_waiting(self, namespace: str, name: str, blocked: _Blocked, agent: str) -> None:
        entry = self.host.store.entry("Execution", namespace, name)
        if entry is not None and (namespace, name) not in self.jobs:
            await self._end(entry, blocked.phase, blocked.reason, blocked.message, agent)

    # --- resync -----------------------------------------------------------------------------------

    def drifted(self, entry: Entry) -> Hashable | None:
        """An Execution whose stored status is not what its Job implies, that waits without its Agent's
        slots key having looked, or whose retention has passed."""
        stored = entry.status
        owner = (entry.namespace or "", entry.name)
        if plan.is_terminal(stored):
            completed = plan.parse_time(stored.get("completedAt"))
            now = plan.parse_time(self.host.now())
            retention = self.settings.retention_seconds
            expired = retention > 0 and completed is not None and now is not None
            if expired and (now - completed).total_seconds() >= retention:  # type: ignore[operator]
                return entry.key
            return None
        job = self.jobs.get(owner)
        if job is None:
            return entry.key
        desired = plan.run_status(
            stored,
            job,
            tuple(self.pods.get(owner, {}).values()),
            deleted_pods=tuple(self.deleted_pods.get(owner, ())),
            generation=entry.generation,
            now=self.host.now(),
        )
        if desired is None:
            return None
        return entry.key if any(stored.get(k) != v for k, v in desired.items() if k != "conditions") else None


TOOLCALLS: Final = paths.ResourceType.of(ToolCall)


def _execution_ref(entry: Entry) -> str | None:
    try:
        obj = entry.load()
    except pydantic.ValidationError:
        return None
    return obj.spec.execution_ref.name if isinstance(obj, ToolCall) else None


def _requesting_execution(entry: Entry, namespace: str) -> tuple[str, str] | None:
    """The Execution an Approval was requested by (spec.requestedBy.executionRef), if any."""
    try:
        source = json.loads(entry.source or b"{}")
    except ValueError:
        return None
    by = ((source.get("spec") or {}).get("requestedBy") or {}) if isinstance(source, dict) else {}
    ref = by.get("executionRef") if isinstance(by, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return None
    return (str(ref.get("namespace") or namespace), ref["name"])


def _replicas(deployment: Deployment) -> int:
    scaling = deployment.spec.autoscaling
    return scaling.max_replicas if scaling is not None and scaling.enabled else deployment.spec.replicas


def _owned_by(entry: Entry, uid: str) -> bool:
    try:
        obj = entry.load()
    except pydantic.ValidationError:
        return True
    owners = obj.metadata.model_extra.get("ownerReferences") if obj.metadata.model_extra else None
    return any(isinstance(o, Mapping) and o.get("uid") == uid for o in owners or ())


def _owned_by_uid(body: Mapping[str, Any], uid: str) -> bool:
    owners = (body.get("metadata") or {}).get("ownerReferences") or ()
    return any(o.get("uid") == uid for o in owners)


def _involved(entry: Entry) -> events.InvolvedObject:
    return events.InvolvedObject(
        jobs.EXECUTIONS.api_version, "Execution", entry.namespace, entry.name, entry.uid
    )
