"""Which policies govern an agent, found through an index rather than a scan: ``PolicySet``.

A policy applies to an agent (namespace, labels, environment) when ALL of these hold:

- scope: the policy lives in the agent's namespace, or in a shared namespace (D2 of docs/decisions.md;
  default ``joch-shared``). A policy in a shared namespace governs every namespace unless
  ``appliesTo.namespaces`` narrows it; elsewhere ``appliesTo.namespaces`` can only narrow (a list that
  omits the policy's own namespace makes it apply nowhere).
- ``appliesTo.environments``, when given, contains the agent's environment (D5).
- ``appliesTo.agents.selector`` selects the agent's labels (Kubernetes semantics; an empty or absent
  selector selects every agent).

``applies()`` is that definition, written as a plain scan. ``PolicySet`` gives the same answer
(tests check it against the scan) without visiting every policy: each policy is filed in ONE bucket per
scope namespace, under ONE of its ``matchLabels`` pairs (the rarest pair across the set, so buckets stay
small), or under "no label" when it has none. Selecting for an agent looks up
``(namespace | shared, label pair | none)`` for each of the agent's labels, 2L + 2 dictionary lookups,
then checks the few candidates in full.

Order: a PolicySet keeps its policies sorted by (namespace, name), so a decision does not depend on the
order in which a watch delivered them. Callers that need another order (admission's explicit bindings
first) pass their own sequence to ``evaluation.evaluate``.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, cast

from joch.domain.policy import compiling, decision, evaluation

DEFAULT_SHARED_NAMESPACES: Final = frozenset({"joch-shared"})
"""The default of the operator setting sharedNamespaces (decision D2); callers pass the setting."""
MAX_CACHED_SELECTIONS: Final = 4096

_BucketKey = tuple[str | None, str | None, str | None]


def applies(
    policy: compiling.CompiledPolicy,
    *,
    namespace: str | None,
    labels: Mapping[str, Any],
    environment: str | None,
    shared_namespaces: frozenset[str] = DEFAULT_SHARED_NAMESPACES,
) -> bool:
    """Whether ``policy`` governs an agent; the reference definition (see the module docstring)."""
    target = policy.applies_to
    if policy.namespace in shared_namespaces:
        if target.namespaces is not None and namespace not in target.namespaces:
            return False
    elif namespace != policy.namespace or (
        target.namespaces is not None and namespace not in target.namespaces
    ):
        return False
    if target.environments is not None and environment not in target.environments:
        return False
    return target.selects_labels(labels)


def agent_of(context: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any], str | None]:
    """(namespace, labels, environment) of the agent a context describes; absent parts are None / {}."""
    agent = context.get("agent")
    agent = agent if isinstance(agent, Mapping) else {}
    environment = context.get("environment")
    environment = environment if isinstance(environment, Mapping) else {}
    namespace = agent.get("namespace")
    labels = agent.get("labels")
    env_name = environment.get("name")
    return (
        namespace if isinstance(namespace, str) else None,
        labels if isinstance(labels, Mapping) else {},
        env_name if isinstance(env_name, str) else None,
    )


class PolicySet:
    """An immutable, indexed set of compiled policies, at most one per (namespace, name)."""

    def __init__(
        self,
        policies: Iterable[compiling.CompiledPolicy] = (),
        *,
        shared_namespaces: Iterable[str] = DEFAULT_SHARED_NAMESPACES,
    ) -> None:
        self.shared_namespaces = frozenset(shared_namespaces)
        by_key: dict[tuple[str, str], compiling.CompiledPolicy] = {}
        for policy in policies:
            if policy.key in by_key:
                raise ValueError(f"policy {policy.qualified_name} is given twice")
            by_key[policy.key] = policy
        self._by_key = by_key
        self._policies = tuple(by_key[key] for key in sorted(by_key))
        self._buckets = self._build_index()
        self._selections: dict[Any, tuple[compiling.CompiledPolicy, ...]] = {}

    def _build_index(self) -> dict[_BucketKey, tuple[int, ...]]:
        frequency = collections.Counter(
            pair for policy in self._policies for pair in (policy.applies_to.match_labels or {}).items()
        )
        buckets: dict[_BucketKey, list[int]] = collections.defaultdict(list)
        for position, policy in enumerate(self._policies):
            match_labels = policy.applies_to.match_labels or {}
            pair: tuple[str | None, str | None] = (None, None)
            if match_labels:
                pair = min(match_labels.items(), key=lambda item: (frequency[item], item))
            for scope in self._scopes(policy):
                buckets[(scope, *pair)].append(position)
        return {key: tuple(positions) for key, positions in buckets.items()}

    def _scopes(self, policy: compiling.CompiledPolicy) -> Iterable[str | None]:
        namespaces = policy.applies_to.namespaces
        if policy.namespace in self.shared_namespaces:
            return [None] if namespaces is None else sorted(namespaces)
        if namespaces is None or policy.namespace in namespaces:
            return [policy.namespace]
        return []

    # --- reading -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._policies)

    def __iter__(self) -> Iterator[compiling.CompiledPolicy]:
        return iter(self._policies)

    def get(self, namespace: str, name: str) -> compiling.CompiledPolicy | None:
        return self._by_key.get((namespace, name))

    def select(
        self,
        *,
        namespace: str | None,
        labels: Mapping[str, Any],
        environment: str | None,
        use_cache: bool = True,
    ) -> tuple[compiling.CompiledPolicy, ...]:
        """The policies that govern this agent, in set order, found through the index.

        Results are remembered per (namespace, environment, labels): agents repeat, and a set is
        immutable, so a cached answer stays right for the set's lifetime.
        """
        if not use_cache:
            return self._select(namespace=namespace, labels=labels, environment=environment)
        try:
            key: Any = (namespace, environment, frozenset(labels.items()))
            cached = self._selections.get(key)
        except TypeError:  # unhashable label values: no caching, still a correct answer
            key, cached = None, None
        if cached is not None:
            return cached
        selected = self._select(namespace=namespace, labels=labels, environment=environment)
        if key is not None:
            if len(self._selections) >= MAX_CACHED_SELECTIONS:
                self._selections.clear()
            self._selections[key] = selected
        return selected

    def _select(
        self, *, namespace: str | None, labels: Mapping[str, Any], environment: str | None
    ) -> tuple[compiling.CompiledPolicy, ...]:
        buckets = self._buckets
        found: list[int] = []
        for scope in (namespace, None) if namespace is not None else (None,):
            positions = buckets.get((scope, None, None))
            if positions:
                found.extend(positions)
            for key, value in labels.items():
                if isinstance(value, str):
                    positions = buckets.get((scope, key, value))
                    if positions:
                        found.extend(positions)
        if not found:
            return ()
        shared = self.shared_namespaces
        policies = self._policies
        return tuple(
            policies[position]
            for position in sorted(set(found))
            if applies(
                policies[position],
                namespace=namespace,
                labels=labels,
                environment=environment,
                shared_namespaces=shared,
            )
        )

    def scan(
        self, *, namespace: str | None, labels: Mapping[str, Any], environment: str | None
    ) -> tuple[compiling.CompiledPolicy, ...]:
        """``select`` by brute force over every policy: the reference for tests and benchmarks."""
        return tuple(
            policy
            for policy in self._policies
            if applies(
                policy,
                namespace=namespace,
                labels=labels,
                environment=environment,
                shared_namespaces=self.shared_namespaces,
            )
        )

    def effective(
        self,
        *,
        namespace: str | None,
        labels: Mapping[str, Any],
        environment: str | None,
        explicit: Iterable[tuple[str, str]] = (),
    ) -> tuple[compiling.CompiledPolicy, ...]:
        """Explicitly bound policies (by (namespace, name), in the order given, missing ones skipped)
        followed by the selected ones, without duplicates."""
        chosen: dict[tuple[str, str], compiling.CompiledPolicy] = {}
        for key in explicit:
            policy = self._by_key.get(key)
            if policy is not None:
                chosen.setdefault(key, policy)
        for policy in self.select(namespace=namespace, labels=labels, environment=environment):
            chosen.setdefault(policy.key, policy)
        return tuple(chosen.values())

    def decide(
        self,
        context: Mapping[str, Any],
        *,
        now: datetime.datetime | None = None,
        disabled_rules: evaluation.DisabledRules | None = None,
        preflight: bool = False,
        explicit: Iterable[tuple[str, str]] = (),
    ) -> decision.Decision:
        """Select the policies for the agent in ``context`` (agent.namespace, agent.labels,
        environment.name), then ``evaluation.evaluate`` them."""
        if not isinstance(cast(object, context), Mapping):
            return evaluation.evaluate((), context)
        namespace, labels, environment = agent_of(context)
        if explicit:
            policies = self.effective(
                namespace=namespace, labels=labels, environment=environment, explicit=explicit
            )
        else:
            policies = self.select(namespace=namespace, labels=labels, environment=environment)
        return evaluation.evaluate(
            policies, context, now=now, disabled_rules=disabled_rules, preflight=preflight
        )

    # --- updating (returns a new set) ---------------------------------------------------------------

    def with_policy(self, policy: compiling.CompiledPolicy) -> PolicySet:
        """A copy with ``policy`` added, or replacing the one with the same (namespace, name)."""
        others = (p for p in self._policies if p.key != policy.key)
        return PolicySet([*others, policy], shared_namespaces=self.shared_namespaces)

    def without(self, namespace: str, name: str) -> PolicySet:
        return PolicySet(
            (p for p in self._policies if p.key != (namespace, name)),
            shared_namespaces=self.shared_namespaces,
        )
