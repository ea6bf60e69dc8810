"""Fan-out: which Agents a change to some object affects, so exactly those are recompiled.

Two sources, combined by :func:`affected_agents`:

1. The reverse index (:class:`ReverseIndex`): after each compile the controller records the Agent's
   ``Gathered.dependencies`` (every object consulted, present or missing: adapter, route, every model
   key tried, tools, MCP servers, memories, RAGs, effective policies, the Environment, the Team, and the
   Namespace when its label decided the environment). A change to any of those keys, including one
   appearing for the first time, affects the Agents indexed under it (decision D10: a missing
   reference compiles the moment its target appears).
2. Label-driven rules for what an Agent does not depend on yet:

   - a Policy affects, besides the Agents that used it (index), every Agent its new ``appliesTo``
     selects (scope.policy_selects), looked for in the Policy's namespace and, for a Policy in a shared
     namespace, in the namespaces its ``appliesTo.namespaces`` lists;
   - a Team affects, besides the Agents that used it (index), every Agent in the namespaces it now owns;
   - an Agent affects itself (its spec, labels or existence changed).

   Environment and Namespace changes need no rule: every Agent depends on its Environment key, and on
   its Namespace whenever the Namespace label could decide the environment.

Nothing here talks to the API server or the event loop; the controller calls it from watch handlers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.team import Team
from joch.domain.compilation import scope
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile.cache import Entry, Store
from joch.domain.settings import OperatorSettings

__all__ = ["ReverseIndex", "affected_agents", "agent_key", "policy_selected_agents"]


def agent_key(namespace: str, name: str) -> ObjectKey:
    return ObjectKey("Agent", namespace, name)


class ReverseIndex:
    """dependency key -> the Agents whose last compile consulted it (and the converse).

    Keys are interned (one instance per distinct key, shared by every Agent depending on it) and each
    Agent's dependencies are held as a tuple: thousands of Agents sharing a few dependencies cost a
    few hundred bytes each.
    """

    def __init__(self) -> None:
        self._dependants: dict[ObjectKey, set[ObjectKey]] = {}
        self._dependencies: dict[ObjectKey, tuple[ObjectKey, ...]] = {}
        self._interned: dict[ObjectKey, ObjectKey] = {}

    def _intern(self, key: ObjectKey) -> ObjectKey:
        return self._interned.setdefault(key, key)

    def update(
        self, agent: ObjectKey, dependencies: Iterable[ObjectKey]
    ) -> tuple[frozenset[ObjectKey], frozenset[ObjectKey]]:
        """Replace ``agent``'s dependencies; returns (added, removed) keys."""
        new = frozenset(dependencies)
        old = frozenset(self._dependencies.get(agent, ()))
        if new == old:
            return frozenset(), frozenset()
        agent = self._intern(agent)
        for key in old - new:
            dependants = self._dependants.get(key)
            if dependants is not None:
                dependants.discard(agent)
                if not dependants:
                    del self._dependants[key]
                    self._interned.pop(key, None)
        for key in new - old:
            self._dependants.setdefault(self._intern(key), set()).add(agent)
        if new:
            self._dependencies[agent] = tuple(
                self._intern(key) for key in sorted(new, key=ObjectKey.sort_key)
            )
        else:
            self._dependencies.pop(agent, None)
        return new - old, old - new

    def remove(self, agent: ObjectKey) -> frozenset[ObjectKey]:
        """Forget ``agent``; returns the keys it depended on."""
        _, removed = self.update(agent, ())
        return removed

    def dependants(self, key: ObjectKey) -> frozenset[ObjectKey]:
        return frozenset(self._dependants.get(key, ()))

    def count(self, key: ObjectKey) -> int:
        """How many Agents depend on ``key``."""
        return len(self._dependants.get(key, ()))

    def dependencies(self, agent: ObjectKey) -> frozenset[ObjectKey]:
        return frozenset(self._dependencies.get(agent, ()))

    def __len__(self) -> int:
        return len(self._dependencies)


def policy_selected_agents(policy: Policy, store: Store, settings: OperatorSettings) -> set[ObjectKey]:
    """Agents in the store that ``policy.spec.appliesTo`` selects now."""
    applies = policy.spec.applies_to
    if applies is None:
        return set()
    home = policy.metadata.namespace or ""
    namespaces = {home}
    if applies.namespaces is not None and settings.is_shared(home):
        namespaces.update(applies.namespaces)
    out: set[ObjectKey] = set()
    for namespace in sorted(namespaces):
        labels = store.namespace_labels(namespace)
        for name in store.agent_names(namespace):
            entry = store.entry("Agent", namespace, name)
            if entry is None:
                continue
            if scope.policy_selects(
                policy,
                agent_namespace=namespace,
                agent_labels=entry.labels,
                environment=scope.environment_of(_labelled(entry.labels), labels, settings),
                settings=settings,
            ):
                out.add(agent_key(namespace, name))
    return out


def _labelled(labels: dict[str, str]) -> Agent:
    """An unvalidated Agent carrying only ``labels``: what decision D5 reads (scope.environment_of),
    without parsing the stored Agent."""
    fields: dict[str, Any] = {"metadata": meta.ObjectMeta(labels=labels)}
    return Agent.model_construct(**fields)


def affected_agents(
    old: Entry | None,
    new: Entry | None,
    *,
    store: Store,
    index: ReverseIndex,
    settings: OperatorSettings,
) -> set[ObjectKey]:
    """The Agents to recompile after an object changed from ``old`` to ``new`` (None: absent).

    ``store`` must already hold ``new``. The caller decides whether the change matters at all
    (``Entry.fingerprint``); this says who it matters to.
    """
    current = new if new is not None else old
    if current is None:
        return set()
    key = current.key
    if current.kind == "Agent":
        return {key}
    out = set(index.dependants(key))
    if current.kind == "Policy" and new is not None and isinstance(new.obj, Policy):
        out |= policy_selected_agents(new.obj, store, settings)
    elif current.kind == "Team" and new is not None and isinstance(new.obj, Team):
        for namespace in new.obj.spec.namespaces or ():
            out.update(agent_key(namespace, name) for name in store.agent_names(namespace))
    return out


def namespace_affected(name: str, index: ReverseIndex) -> set[ObjectKey]:
    """Agents whose environment a label change on Namespace ``name`` may change (decision D5)."""
    return set(index.dependants(ObjectKey("Namespace", None, name)))
