"""The compile service: every Agent compiled into its CompiledAgentManifest ConfigMap, its status and
Events kept current (the operator's first service; see joch.controllers.service).

Watches every kind an Agent's compile reads, the Namespaces (their labels may decide an Agent's
environment) and its own manifest ConfigMaps. A change queues exactly the Agents it affects
(joch.domain.reconcile.fanout: the reverse index of what each compile consulted, plus the label rules).

For an Agent key: the plan (joch.domain.reconcile.plan: gather + compile, the desired ConfigMap, the
dependencies, the status) is applied as ConfigMap ``<agent>-g<generation>`` written when it differs,
stale ConfigMaps deleted (an earlier Agent's of the same name; all but the newest generations), the
index updated (the referenced objects whose Agent counts moved are queued for their status service),
then the status patched and warning Events recorded.

Manifests first, reports second: when a compile changes nothing in the Agent's status but the manifest
reference (a referenced object changed: new sha, same phase, generation and condition outcomes), the
status patch becomes a separate, low-priority key (:class:`AgentReport`), served when no compile is
waiting or once it has waited ``ControllerConfig.report_max_wait`` seconds. During a fan-out every
ConfigMap, which is what workers run from, is rewritten before the status patches catch up. A report
always carries the latest compile, and writes only while that compile is still the newest (both hold
the Agent's status lock).

Agent deletion: no finalizer. The DELETED event queues the Agent, whose reconcile finds it gone and
deletes its ConfigMaps itself (nothing relies on the garbage collector, decision D7 of
docs/decisions.md); the start-up pass catches deletions that happened while the operator was down.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, ClassVar, Final

import pydantic

from joch import metrics
from joch.api.v1alpha1.agent import Agent
from joch.controllers.service import Change, Desire, Host, Service
from joch.domain.compilation.configmap import SHA_ANNOTATION
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import fanout, plan, status
from joch.domain.reconcile.cache import RUNTIME_KIND_NAMES, WATCHED_KINDS, Entry, validation_message
from joch.kube import configmaps, events, paths
from joch.kube.configmaps import ManifestConfigMap

__all__ = ["AgentReport", "CompileService"]

logger = logging.getLogger("joch.controller")

AGENT: Final = paths.ResourceType.of(Agent)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReport:
    """Work item: write an Agent's status (and warning Events) from its latest compile."""

    agent: ObjectKey

    kind: ClassVar[str] = "AgentReport"

    @property
    def namespace(self) -> str | None:
        return self.agent.namespace

    def __str__(self) -> str:
        return f"{self.agent} (status)"


@dataclasses.dataclass(frozen=True, slots=True)
class _PendingReport:
    plan: plan.AgentPlan
    uid: str


class CompileService(Service):
    name = "compile"
    watches = frozenset(
        {*WATCHED_KINDS, "Namespace", "ConfigMap"} - {"AgBOM", "KnowledgeSource", *RUNTIME_KIND_NAMES}
    )
    resync_kinds = ("Agent",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.reports: dict[ObjectKey, _PendingReport] = {}
        """Agents compiled whose status is not written yet: their latest compile."""

    # --- what is dirty ----------------------------------------------------------------------------

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, AgentReport) or (isinstance(key, ObjectKey) and key.kind == "Agent")

    def observe(self, change: Change) -> None:
        host = self.host
        if change.kind == "Namespace":
            keys: Iterable[ObjectKey] = fanout.namespace_affected(change.name, host.index)
        elif change.kind == "ConfigMap":
            keys = (fanout.agent_key(change.namespace or "", change.name),)
        elif not change.changed or change.current is None:
            return
        elif change.kind == "Agent":
            keys = (change.current.key,)
        else:
            keys = fanout.affected_agents(
                change.old, change.new, store=host.store, index=host.index, settings=host.settings
            )
        for key in keys:
            if host.manages(key.namespace):
                host.queue.add(key)

    def start_keys(self) -> Iterable[Hashable]:
        """Every Agent, and every Agent some ConfigMap still names (orphans left by an Agent deleted
        while the operator was down are cleaned up)."""
        store = self.host.store
        for namespace in store.namespaces_with_agents():
            for name in store.agent_names(namespace):
                yield fanout.agent_key(namespace, name)
        for namespace, agent in self.host.manifests.agents():
            yield fanout.agent_key(namespace, agent)

    # --- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> None:
        if isinstance(key, AgentReport):
            await self.report(key.agent)
        else:
            assert isinstance(key, ObjectKey)
            await self.compile(key)

    async def compile(self, key: ObjectKey) -> None:
        """Compile one Agent and make its ConfigMaps, status and Events match (module docstring)."""
        host = self.host
        namespace, name = key.namespace or "", key.name
        entry = host.store.entry("Agent", namespace, name)
        if entry is None:
            await self._forget(key)
            return
        try:
            agent = entry.load()
        except pydantic.ValidationError as exc:
            message = validation_message(exc)
            async with host.status_lock(key):
                self.reports.pop(key, None)
                patched, _ = await host.write_status(
                    key, entry.uid, lambda stored: self._invalid(message, stored), owned=()
                )
            if patched:  # once per change of the problem: its status says it from now on
                logger.warning("%s does not parse: %s", key, message)
            return
        assert isinstance(agent, Agent)

        with metrics.compile_timer():
            planned = plan.plan_agent(agent, entry.uid, host.store, host.settings, host.programs)
        compiled = planned.compiled
        host.counts["compiles"] += 1
        added, removed = host.index.update(key, planned.dependencies)
        for dependency in added | removed:
            if dependency.kind in status.COUNTED_KINDS:
                host.touch(dependency)  # its Agent count moved

        outcome: configmaps.Outcome | None = None
        if planned.configmap is not None:
            outcome = await self._apply_manifest(planned.configmap)
        await self._collect_garbage(namespace, name, entry.uid)
        if outcome in ("created", "replaced"):
            host.recorder.record(_involved(entry), "Normal", "Compiled", plan.compiled_event(compiled))
        logger.debug(
            "compiled Agent/%s/%s generation=%s ok=%s manifest=%s",
            namespace,
            name,
            compiled.generation,
            compiled.ok,
            outcome or "not written",
        )
        async with host.status_lock(key):  # the report of an older compile may be writing
            latest = self._still_stored(key, entry.uid)
            if latest is None:
                return
            desired = planned.status(latest.status, self.host.now())
            if status.only_manifest_moved(latest.status, desired):
                self.reports[key] = _PendingReport(planned, entry.uid)
                host.queue.add(AgentReport(key))
                return
            # This compile is the newest: a report of an older one must not write after it.
            self.reports.pop(key, None)

            def desire(stored: Entry) -> Mapping[str, Any] | None:
                if stored.generation != entry.generation:
                    return None  # the spec moved on; its own event queued a newer compile
                return planned.status(stored.status, self.host.now())

            await self._report(key, latest, desire)

    async def report(self, key: ObjectKey) -> None:
        """Write an Agent's status from its latest compile (a no-op when it has none pending)."""
        async with self.host.status_lock(key):
            pending = self.reports.get(key)
            if pending is None:
                return  # written meanwhile by a newer compile
            latest = self._still_stored(key, pending.uid)
            if latest is None:
                return

            def desire(stored: Entry) -> Mapping[str, Any] | None:
                generation = pending.plan.compiled.generation
                if self.reports.get(key) is not pending or stored.generation != generation:
                    return None  # never write an outcome older than the newest compile
                return pending.plan.status(stored.status, self.host.now())

            await self._report(key, latest, desire)
            if self.reports.get(key) is pending:
                del self.reports[key]

    def _still_stored(self, key: ObjectKey, uid: str) -> Entry | None:
        """The stored Agent if it is still the one compiled (same uid). Otherwise it was deleted or
        re-created meanwhile (its own event queued it again): its pending report is dropped."""
        latest = self.host.store.entry("Agent", key.namespace, key.name)
        if latest is None or latest.uid != uid:
            self.reports.pop(key, None)
            return None
        return latest

    async def _report(self, key: ObjectKey, latest: Entry, desire: Desire) -> None:
        """Write an Agent's status (the caller holds its status lock) and its warning Events."""
        before = latest.status
        patched, desired = await self.host.write_status(key, latest.uid, desire, owned=status.AGENT_FIELDS)
        if desired is None:
            return
        involved = _involved(latest)
        for reason, message in plan.agent_warnings(before, desired):
            self.host.recorder.record(involved, "Warning", reason, message)
        logger.debug(
            "reported Agent/%s/%s phase=%s status=%s",
            key.namespace,
            key.name,
            desired["phase"],
            "patched" if patched else "unchanged",
        )

    async def _apply_manifest(self, desired: Mapping[str, Any]) -> configmaps.Outcome:
        host = self.host
        metadata = desired["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        sha = metadata["annotations"][SHA_ANNOTATION]
        host.manifests.pending(namespace, name, sha)
        try:
            outcome, result = await configmaps.apply_configmap(
                host.kube, desired, current=host.manifests.get(namespace, name)
            )
        finally:
            host.manifests.settled(namespace, name)
        host.manifests.put(result)
        if outcome != "unchanged":
            host.counts["configmaps_written"] += 1
        return outcome

    def _doomed(self, namespace: str, agent: str, uid: str | None) -> list[str]:
        return plan.doomed_manifests(
            self.host.manifests.of(namespace, agent), uid, keep=self.host.settings.keep_manifests
        )

    async def _collect_garbage(self, namespace: str, agent: str, uid: str | None) -> None:
        """Delete ConfigMaps of an earlier Agent with this name, and all but the newest generations."""
        doomed = self._doomed(namespace, agent, uid)
        if not doomed:
            return
        manifests = self.host.manifests
        for doomed_name in doomed:
            manifests.pending(namespace, doomed_name, None)
            manifests.drop(namespace, doomed_name)
        try:
            deleted = await configmaps.delete_configmaps(self.host.kube, namespace, doomed)
        finally:
            for doomed_name in doomed:
                manifests.settled(namespace, doomed_name)
        self.host.counts["configmaps_deleted"] += len(deleted)

    async def _forget(self, key: ObjectKey) -> None:
        host = self.host
        self.reports.pop(key, None)
        for dependency in host.index.remove(key):
            if dependency.kind in status.COUNTED_KINDS:
                host.touch(dependency)
        await self._collect_garbage(key.namespace or "", key.name, None)

    # --- resync -----------------------------------------------------------------------------------

    def drifted(self, entry: Entry) -> Hashable | None:
        """The Agent's key when a compile now would change anything (status, ConfigMaps, index)."""
        return entry.key if self._drifted(entry) else None

    def _drifted(self, entry: Entry) -> bool:
        if entry.key in self.reports:
            return False  # its report is on its way
        host = self.host
        try:
            agent = entry.load()
        except pydantic.ValidationError as exc:
            desired = self._invalid(validation_message(exc), entry)
            return status.status_patch(desired, entry.status, owned=()) is not None
        assert isinstance(agent, Agent)
        planned = plan.plan_agent(agent, entry.uid, host.store, host.settings, host.programs)
        if host.index.dependencies(entry.key) != planned.dependencies:
            return True
        if planned.configmap is not None:
            wanted = ManifestConfigMap.from_body(planned.configmap)
            current = host.manifests.get(wanted.namespace, wanted.name)
            if current is None or not current.same_content(wanted):
                return True
        if self._doomed(entry.namespace or "", entry.name, entry.uid):
            return True
        desired = planned.status(entry.status, self.host.now())
        return status.status_patch(desired, entry.status, owned=status.AGENT_FIELDS) is not None

    # --- helpers ----------------------------------------------------------------------------------

    def _invalid(self, message: str, entry: Entry) -> dict[str, Any]:
        """The status of an Agent the model rejects (``message`` says which fields and why)."""
        return status.invalid_agent_status(
            message, generation=entry.generation, current=entry.status, now=self.host.now()
        )


def _involved(entry: Entry) -> events.InvolvedObject:
    return events.InvolvedObject(AGENT.api_version, "Agent", entry.namespace, entry.name, entry.uid)
