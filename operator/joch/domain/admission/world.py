"""The objects admission may consult: a :class:`World`, the compiler's ``Lookup`` plus an overlay.

Admission judges an object against everything else that exists. That "everything else" is

- in the operator: the controller's in-memory store (a ``Lookup``, fed by watches), with the object
  under review laid over it (on UPDATE the store still holds the old version);
- in ``joch apply``: the cluster's objects (listed once into a ``Catalog``) with the whole batch laid
  over them, so references inside the batch resolve;
- in ``joch validate``: the batch alone.

``known_kinds`` says which kinds the base can answer for. A reference to a kind outside it (the
operator's store holds only the kinds the compiler reads; a Secret or an Execution is not among them)
is neither reported missing nor resolved: admission cannot tell, so it stays silent.

Listing Agents (for "this change puts these Agents in violation") needs more than ``Lookup``: a base
that also implements :class:`AgentIndex` (``agents(namespace)``). Without one, impact analysis is
skipped. Listing objects by label (the promotion Approvals of a Deployment, promotion.py) needs a base
implementing :class:`LabelIndex`; without one only the overlay is searched.

Overlay semantics: an overlaid object replaces the base object with the same (kind, namespace, name);
``policies_in``, ``agents`` and ``labelled`` merge the two. ``team_for_namespace`` prefers overlaid
Teams; a base Team that the overlay redefines is only kept when its new version still lists the
namespace.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.team import Team
from joch.domain import policy as engine
from joch.domain.compilation import catalog
from joch.domain.policy import model as policy_model

__all__ = [
    "ALL_KINDS",
    "COMPILE_KIND_NAMES",
    "WATCHED_KIND_NAMES",
    "AgentIndex",
    "LabelIndex",
    "SelectorIndex",
    "World",
]

R = TypeVar("R", bound=meta.Resource)

ALL_KINDS: frozenset[str] = frozenset(k.crd.kind for k in v1alpha1.KINDS)
COMPILE_KIND_NAMES: frozenset[str] = frozenset(k.crd.kind for k in catalog.COMPILE_KINDS)
"""The kinds the compiler reads."""
WATCHED_KIND_NAMES: frozenset[str] = COMPILE_KIND_NAMES | {"Eval", "Approval"}
"""The kinds the operator's store holds: the compiler's, plus the Evals and Approvals (status included)
that Deployment promotion gates read (promotion.GATE_KINDS; a unit test holds the two together)."""

_Key = tuple[str, str | None, str]
MAX_INDEXES: Final = 64


@runtime_checkable
class AgentIndex(Protocol):
    """A base that can list Agents (``joch.domain.compilation.Catalog`` is one)."""

    def agents(self, namespace: str | None = None) -> Sequence[Agent]:
        """Every Agent, or those of ``namespace``."""
        ...


@runtime_checkable
class LabelIndex(Protocol):
    """A base that can list the objects of a kind in a namespace by labels (the operator's store and
    ``joch.domain.compilation.Catalog`` are)."""

    def labelled(self, kind: type[R], namespace: str, labels: Mapping[str, str]) -> Sequence[R]:
        """The objects of ``kind`` in ``namespace`` carrying every one of ``labels`` (any order)."""
        ...


def _has_labels(obj: meta.Resource, labels: Mapping[str, str]) -> bool:
    own = obj.metadata.labels or {}
    return all(own.get(key) == value for key, value in labels.items())


def _key(obj: meta.Resource) -> _Key:
    crd = type(obj).crd
    namespace = obj.metadata.namespace if crd.scope == "Namespaced" else None
    return (crd.kind, namespace, obj.metadata.name or "")


class World:
    """A ``Lookup`` (and :class:`AgentIndex`) over ``base`` with ``overlay`` objects laid over it."""

    def __init__(
        self,
        base: catalog.Lookup | None = None,
        *,
        overlay: Iterable[meta.Resource] = (),
        known_kinds: Iterable[str] = COMPILE_KIND_NAMES,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        agent_index: AgentIndex | None = None,
    ) -> None:
        self.base = base
        self.known_kinds = frozenset(known_kinds)
        self._overlay: dict[_Key, meta.Resource] = {}
        self._labels = {ns: dict(labels) for ns, labels in (namespace_labels or {}).items()}
        if agent_index is None and callable(getattr(base, "agents", None)):
            agent_index = cast(AgentIndex, base)
        self.agent_index = agent_index
        self._selected: Mapping[str, Sequence[Policy]] | None = None
        for obj in overlay:
            self._overlay[_key(obj)] = obj

    def selecting(
        self, index: SelectorIndex, *, namespace: str, labels: Mapping[str, str], environment: str
    ) -> World:
        """A view whose ``policies_in`` lists only the Policies whose appliesTo selects this Agent.

        ``compilation.gather`` asks for every Policy of the Agent's namespace and the shared namespaces and
        tests each selector; with a hundred Policies that test dominates an admission. The view answers
        from :class:`SelectorIndex` instead (the policy engine's own index and definition,
        ``joch.domain.policy.applies``), so gather sees exactly the Policies it would have kept.
        """
        view = World(
            self.base,
            overlay=self._overlay.values(),
            known_kinds=self.known_kinds,
            namespace_labels=self._labels,
            agent_index=self.agent_index,
        )
        view._selected = index.selected(self, namespace=namespace, labels=labels, environment=environment)
        return view

    def with_overlay(self, *objects: meta.Resource) -> World:
        """A new World with ``objects`` laid over this one's overlay (same base)."""
        return World(
            self.base,
            overlay=(*self._overlay.values(), *objects),
            known_kinds=self.known_kinds,
            namespace_labels=self._labels,
            agent_index=self.agent_index,
        )

    def knows(self, kind: str) -> bool:
        """Whether a missing object of ``kind`` really is missing (the base answers for the kind)."""
        return kind in self.known_kinds

    @property
    def can_list_agents(self) -> bool:
        return self.agent_index is not None or self.base is None

    # --- Lookup ------------------------------------------------------------------------------------

    def get(self, kind: type[R], namespace: str | None, name: str) -> R | None:
        crd = kind.crd
        key = (crd.kind, namespace if crd.scope == "Namespaced" else None, name)
        found = self._overlay.get(key)
        if found is not None:
            return found if isinstance(found, kind) else None
        if self.base is None or crd.kind not in self.known_kinds:
            return None
        return self.base.get(kind, key[1], name)

    def stored(self, kind: type[R], namespace: str | None, name: str) -> R | None:
        """Like :meth:`get`, for kinds outside ``known_kinds`` too (the runtime kinds the operator's
        store holds but admission does not resolve references to): the overlay, else the base if it
        holds the kind."""
        found = self._overlay.get((kind.crd.kind, namespace, name))
        if found is not None:
            return found if isinstance(found, kind) else None
        if not self.base_holds(kind.crd.kind):
            return None
        return self.base.get(kind, namespace, name)  # type: ignore[union-attr]

    def base_holds(self, kind: str) -> bool:
        """Whether the base holds objects of ``kind`` (the operator's store: ``holds(kind)``)."""
        holds = getattr(self.base, "holds", None)
        return bool(callable(holds) and holds(kind))

    def status_of(self, kind: str, namespace: str | None, name: str) -> Mapping[str, Any] | None:
        """The stored status of an object, when the base keeps statuses (the operator's store does);
        None when it does not, or the object is unknown."""
        reader = getattr(self.base, "status_of", None)
        if not callable(reader):
            return None
        status = reader(kind, namespace, name)
        return status if isinstance(status, Mapping) else None

    def labelled(self, kind: type[R], namespace: str, labels: Mapping[str, str]) -> list[R]:
        """The objects of ``kind`` in ``namespace`` carrying ``labels``, overlay included, by name.

        An overlaid object hides the base object of the same name, whether or not it still matches."""
        crd = kind.crd
        found: dict[str, R] = {}
        if self.base is not None and crd.kind in self.known_kinds and isinstance(self.base, LabelIndex):
            for obj in self.base.labelled(kind, namespace, labels):
                found[obj.metadata.name or ""] = obj
        for (k, ns, name), overlaid in self._overlay.items():
            if k != crd.kind or ns != namespace:
                continue
            found.pop(name, None)
            if isinstance(overlaid, kind) and _has_labels(overlaid, labels):
                found[name] = overlaid
        return [found[name] for name in sorted(found)]

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        if self._selected is not None and namespace in self._selected:
            return self._selected[namespace]
        return self._all_policies_in(namespace)

    def _all_policies_in(self, namespace: str) -> Sequence[Policy]:
        by_name: dict[str, Policy] = {}
        if self.base is not None:
            for policy in self.base.policies_in(namespace):
                by_name[policy.metadata.name or ""] = policy
        for (kind, ns, name), obj in self._overlay.items():
            if kind == "Policy" and ns == namespace and isinstance(obj, Policy):
                by_name[name] = obj
        return [by_name[name] for name in sorted(by_name)]

    def team_for_namespace(self, namespace: str) -> Team | None:
        overlaid = sorted(
            (name, obj)
            for (kind, _, name), obj in self._overlay.items()
            if kind == "Team" and isinstance(obj, Team)
        )
        for _, team in overlaid:
            if namespace in (team.spec.namespaces or ()):
                return team
        if self.base is None:
            return None
        found = self.base.team_for_namespace(namespace)
        if found is not None and ("Team", None, found.metadata.name or "") in self._overlay:
            return None
        return found

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        if namespace in self._labels:
            return self._labels[namespace]
        return self.base.namespace_labels(namespace) if self.base is not None else {}

    # --- AgentIndex ----------------------------------------------------------------------------------

    def agents(self, namespace: str | None = None) -> Sequence[Agent]:
        """Every Agent (of ``namespace``), overlay included, sorted by namespace and name."""
        found: dict[tuple[str, str], Agent] = {}
        if self.agent_index is not None:
            for agent in self.agent_index.agents(namespace):
                found[(agent.metadata.namespace or "", agent.metadata.name or "")] = agent
        for (kind, ns, name), obj in self._overlay.items():
            if kind == "Agent" and isinstance(obj, Agent) and namespace in (None, ns):
                found[(ns or "", name)] = obj
        return [found[key] for key in sorted(found)]

    def overlaid(self) -> list[meta.Resource]:
        """The overlay objects, in insertion order."""
        return list(self._overlay.values())


def _scope_only(policy: Policy) -> engine.CompiledPolicy:
    """A compiled policy without rules: enough for ``engine.applies`` and ``PolicySet`` (as scope.py)."""
    applies = policy.spec.applies_to
    target = policy_model.AppliesTo()
    if applies is not None:
        selector = applies.agents.selector if applies.agents is not None else None
        target = policy_model.AppliesTo(
            match_labels=dict(selector.match_labels)
            if selector is not None and selector.match_labels
            else None,
            match_expressions=tuple(
                policy_model.LabelRequirement(req.key, req.operator, frozenset(req.values or ()))
                for req in ((selector.match_expressions or []) if selector is not None else [])
            ),
            namespaces=frozenset(applies.namespaces) if applies.namespaces is not None else None,
            environments=frozenset(applies.environments) if applies.environments is not None else None,
        )
    return engine.CompiledPolicy(
        name=policy.metadata.name or "",
        namespace=policy.metadata.namespace or "",
        generation=policy.metadata.generation or 1,
        spec=policy_model.PolicySpec(
            description=None, applies_to=target, rules=(), audit=policy_model.Audit()
        ),
        rules=(),
    )


class SelectorIndex:
    """Selector lookups over a World's Policies, indexed once per set of Policy objects.

    Keyed by the identity of the Policy objects (the operator's store replaces an object when it
    changes), with strong references held so an identity cannot be reused while its entry lives. At most
    :data:`MAX_INDEXES` sets are remembered (least recently used first out). Not thread-safe.
    """

    def __init__(self, shared_namespaces: Iterable[str]) -> None:
        self.shared_namespaces = tuple(shared_namespaces)
        self._sets: collections.OrderedDict[tuple[int, ...], tuple[tuple[Policy, ...], engine.PolicySet]] = (
            collections.OrderedDict()
        )

    def _policy_set(self, policies: tuple[Policy, ...]) -> engine.PolicySet:
        key = tuple(map(id, policies))
        found = self._sets.get(key)
        if found is not None:
            self._sets.move_to_end(key)
            return found[1]
        unique = {(p.metadata.namespace or "", p.metadata.name or ""): p for p in policies}
        policy_set = engine.PolicySet(
            (_scope_only(p) for p in unique.values()), shared_namespaces=self.shared_namespaces
        )
        self._sets[key] = (policies, policy_set)
        if len(self._sets) > MAX_INDEXES:
            self._sets.popitem(last=False)
        return policy_set

    def selected(
        self, world: World, *, namespace: str, labels: Mapping[str, str], environment: str
    ) -> Mapping[str, Sequence[Policy]]:
        """The selecting Policies of each namespace gather looks in (the Agent's and the shared ones)."""
        by_namespace = {
            ns: world._all_policies_in(ns) for ns in dict.fromkeys((namespace, *self.shared_namespaces))
        }
        policies = tuple(p for listed in by_namespace.values() for p in listed)
        chosen = {
            (p.namespace, p.name)
            for p in self._policy_set(policies).select(
                namespace=namespace, labels=labels, environment=environment
            )
        }
        return {
            ns: [p for p in listed if (p.metadata.namespace or "", p.metadata.name or "") in chosen]
            for ns, listed in by_namespace.items()
        }
