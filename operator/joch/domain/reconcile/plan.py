"""The compile service's plan for one Agent: what should exist and what should be said (pure).

:func:`plan_agent` gathers the Agent's references from the cache (any :class:`catalog.Lookup`) and
compiles it; the :class:`AgentPlan` says which manifest ConfigMap should exist, which dependencies the
fan-out index should record, and (:meth:`AgentPlan.status`) the status to report. :func:`doomed_manifests`
says which known ConfigMaps must go (an earlier Agent's of the same name, and all but the newest
generations); :func:`agent_warnings` and :func:`compiled_event` say which Events to record. The compile
service (joch.controllers.compile) applies the plan through joch.kube.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from joch.api.v1alpha1.agent import Agent
from joch.domain import compilation
from joch.domain.compilation import catalog
from joch.domain.compilation.configmap import desired_configmap, stale_manifests
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy import compiling as policy_compiling
from joch.domain.reconcile import status
from joch.domain.settings import OperatorSettings

__all__ = ["AgentPlan", "KnownManifest", "agent_warnings", "compiled_event", "doomed_manifests", "plan_agent"]


class KnownManifest(Protocol):
    """What the operator knows of one existing manifest ConfigMap."""

    @property
    def name(self) -> str: ...

    @property
    def owner_uid(self) -> str | None: ...

    @property
    def generation(self) -> int | None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class AgentPlan:
    """The outcome of compiling one Agent against the cache."""

    compiled: compilation.Compiled
    dependencies: frozenset[ObjectKey]
    """Every object the compile consulted, present or missing (the fan-out index records them)."""
    configmap: Mapping[str, Any] | None
    """The manifest ConfigMap that should exist (None: the Agent does not compile)."""

    def status(self, current: Mapping[str, Any], now: str) -> dict[str, Any]:
        """The Agent's status for this compile, given the stored one."""
        return status.agent_status(self.compiled, current=current, now=now)


def plan_agent(
    agent: Agent,
    uid: str,
    lookup: catalog.Lookup,
    settings: OperatorSettings,
    programs: policy_compiling.PolicyCompiler,
) -> AgentPlan:
    gathered = compilation.gather(agent, lookup, settings)
    compiled = compilation.compile_agent(gathered, settings, programs=programs)
    configmap = desired_configmap(compiled, uid) if compiled.ok else None
    return AgentPlan(compiled, frozenset(gathered.dependencies), configmap)


def doomed_manifests(known: Iterable[KnownManifest], uid: str | None, *, keep: int) -> list[str]:
    """The ConfigMaps of Agent ``uid`` to delete: an earlier Agent's of the same name (another owner
    uid), and all but the newest ``keep`` generations. With ``uid`` None (the Agent is gone): all."""
    items = list(known)
    if uid is None:
        return [item.name for item in items]
    doomed = [item.name for item in items if item.owner_uid is not None and item.owner_uid != uid]
    mine = [(i.name, i.generation) for i in items if i.owner_uid == uid and i.generation is not None]
    return doomed + stale_manifests(mine, keep=keep)


def compiled_event(compiled: compilation.Compiled) -> str:
    """The message of the Normal ``Compiled`` Event recorded when a new manifest is written."""
    return f"compiled manifest {compiled.name} (sha256 {compiled.sha256[:12]}) into its ConfigMap"


def agent_warnings(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Warning Events (reason, message) for the ResolvedRefs and Compiled conditions that turned False
    or changed their message (references still pending are not worth a warning)."""
    old = status.conditions_by_type(before)
    new = status.conditions_by_type(after)
    warnings = []
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
            warnings.append((condition["reason"], condition["message"]))
    return warnings
