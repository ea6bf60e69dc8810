"""The status service: every object an Agent references (FrameworkAdapter, ModelRoute, Model, Tool,
MCPServer, Memory, RAG, Policy, Environment; a Team's status is the teams service's) reports Ready,
observedGeneration, phase and its counters (how many Agents use it), decided by
joch.domain.reconcile.status from the cache.

A change to such an object (its spec, or a status written by someone else), a Model's change for the
ModelRoutes that may route to it, and a moved Agent count (:meth:`touched`, from the compile service)
queue the object after ``ControllerConfig.status_delay`` seconds, so a burst of changes makes one
write. Statuses are first computed once the start-up pass has drained, when every Agent count is
complete (:meth:`synced_keys`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final

from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.tool import Tool
from joch.controllers.service import Change, Service
from joch.domain import compilation
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy import errors as policy_errors
from joch.domain.reconcile import status
from joch.domain.reconcile.cache import Entry
from joch.kube import events, paths

__all__ = ["ReferencedStatusService"]

MCP: Final = paths.ResourceType.of(MCPServer)
KINDS: Final = status.REFERENCED_KINDS - {"Team"}
"""The kinds whose status this service writes (joch.controllers.teams writes the Teams')."""


class ReferencedStatusService(Service):
    name = "status"
    watches = KINDS
    resync_kinds = tuple(sorted(KINDS))

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind in KINDS

    def observe(self, change: Change) -> None:
        if change.kind == "Model" and change.changed and change.current is not None:
            self._queue_routes_of(change.current.namespace or "")
        if change.new is not None and (change.changed or change.status_changed):
            self.touched(change.new.key)

    def touched(self, key: Hashable) -> None:
        host = self.host
        if host.synced and self.owns(key) and isinstance(key, ObjectKey) and host.manages(key.namespace):
            host.queue.add_after(key, host.status_delay)

    def _queue_routes_of(self, model_namespace: str) -> None:
        shared = self.host.settings.is_shared(model_namespace)
        for entry in self.host.store.entries("ModelRoute"):
            if shared or entry.namespace == model_namespace:
                self.touched(entry.key)

    def synced_keys(self) -> Iterable[Hashable]:
        for kind in KINDS:
            for entry in self.host.store.entries(kind):
                yield entry.key

    async def reconcile(self, key: Hashable) -> None:
        """Write the status of a referenced object (Ready, observedGeneration, phase, counters)."""
        assert isinstance(key, ObjectKey)
        host = self.host
        entry = host.store.entry(key.kind, key.namespace, key.name)
        if entry is None:
            return
        before = entry.status
        async with host.status_lock(key):
            _, desired = await host.write_status(key, entry.uid, self.desired, owned=())
        message = status.drift_warning(before, desired or {}) if key.kind == "MCPServer" else None
        if message is not None:
            involved = events.InvolvedObject(
                MCP.api_version, "MCPServer", entry.namespace, entry.name, entry.uid
            )
            host.recorder.record(involved, "Warning", "SchemaDrift", message)

    def desired(self, entry: Entry) -> Mapping[str, Any] | None:
        """The status a referenced object should have, from the cache (InvalidSpec when the model
        rejects it)."""
        host = self.host
        if entry.obj is None:
            if entry.error is None:
                return None
            return status.invalid_status(
                entry.kind, entry.error, generation=entry.generation, current=entry.status, now=host.now()
            )
        policy_error = None
        if isinstance(entry.obj, Policy):
            try:
                host.programs.compile_object(entry.obj)
            except policy_errors.PolicyError as exc:
                policy_error = str(exc)
        drift: tuple[str, ...] = ()
        if isinstance(entry.obj, MCPServer):
            drift = self._drift(entry.obj)
        return status.referenced_status(
            entry.obj,
            current=entry.status,
            lookup=host.store,
            settings=host.settings,
            agents=self._count_agents(entry.key),
            policy_error=policy_error,
            now=host.now(),
            drift=drift,
        )

    def _drift(self, server: MCPServer) -> tuple[str, ...]:
        namespace = server.metadata.namespace
        tools = (
            entry.obj
            for entry in self.host.store.entries("Tool")
            if entry.namespace == namespace and isinstance(entry.obj, Tool)
        )
        return compilation.server_drift(server, tools)

    def drifted(self, entry: Entry) -> Hashable | None:
        desired = self.desired(entry)
        differs = desired is not None and status.status_patch(desired, entry.status) is not None
        return entry.key if differs else None

    def _count_agents(self, key: ObjectKey) -> int:
        store = self.host.store
        return sum(
            1
            for agent in self.host.index.dependants(key)
            if store.entry("Agent", agent.namespace, agent.name)
        )
