"""Which Environment an Agent is in (D5) and which Policies select it (appliesTo).

Both answers depend on labels rather than on references, so the controller needs them for fan-out too:
when an Agent's labels, a Namespace's labels or a Policy's appliesTo change, it recomputes them with the
same functions to find the Agents to recompile.

Environment (decision D5): the Agent's label ``env``; else the label ``joch.dev/environment`` on its
Namespace; else ``settings.default_environment``.

Selection by ``spec.appliesTo`` is the policy engine's definition, ``joch.domain.policy.index.applies``,
used verbatim so admission preflight and compilation always agree. In short: a Policy governs Agents of
its own namespace, or of every namespace when it lives in a shared namespace; ``appliesTo.namespaces``
narrows that, ``appliesTo.environments`` narrows it to those environments (D5), and
``appliesTo.agents.selector`` to matching labels. An absent or empty selector selects every Agent, so a
Policy without ``appliesTo`` governs its whole namespace (or, in a shared namespace, the fleet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.domain import policy as engine
from joch.domain.compilation import memo
from joch.domain.policy import model as policy_model
from joch.domain.settings import OperatorSettings

__all__ = [
    "AGENT_ENVIRONMENT_LABEL",
    "NAMESPACE_ENVIRONMENT_LABEL",
    "EnvironmentSource",
    "environment_of",
    "environment_source",
    "policy_selects",
]

AGENT_ENVIRONMENT_LABEL: Final = "env"
NAMESPACE_ENVIRONMENT_LABEL: Final = "joch.dev/environment"

EnvironmentSource = Literal["agent-label", "namespace-label", "default"]


def environment_source(agent: Agent, namespace_labels: Mapping[str, str]) -> EnvironmentSource:
    """Which of the three D5 sources decides the Agent's environment."""
    if (agent.metadata.labels or {}).get(AGENT_ENVIRONMENT_LABEL):
        return "agent-label"
    if namespace_labels.get(NAMESPACE_ENVIRONMENT_LABEL):
        return "namespace-label"
    return "default"


def environment_of(agent: Agent, namespace_labels: Mapping[str, str], settings: OperatorSettings) -> str:
    """The name of the Agent's environment (decision D5)."""
    own = (agent.metadata.labels or {}).get(AGENT_ENVIRONMENT_LABEL)
    if own:
        return own
    return namespace_labels.get(NAMESPACE_ENVIRONMENT_LABEL) or settings.default_environment


def _applies_to(policy: Policy) -> policy_model.AppliesTo:
    """The engine's normal form of ``spec.appliesTo`` (parsing.py builds the same from the wire form)."""
    applies = policy.spec.applies_to
    if applies is None:
        return policy_model.AppliesTo()
    selector = applies.agents.selector if applies.agents is not None else None
    return policy_model.AppliesTo(
        match_labels=dict(selector.match_labels) if selector is not None and selector.match_labels else None,
        match_expressions=tuple(
            policy_model.LabelRequirement(req.key, req.operator, frozenset(req.values or ()))
            for req in ((selector.match_expressions or []) if selector is not None else [])
        ),
        namespaces=frozenset(applies.namespaces) if applies.namespaces is not None else None,
        environments=frozenset(applies.environments) if applies.environments is not None else None,
    )


def _scope_only(policy: Policy) -> engine.CompiledPolicy:
    """The Policy as the engine's ``applies`` reads it: its scope, no rules."""
    return engine.CompiledPolicy(
        name=policy.metadata.name or "",
        namespace=policy.metadata.namespace or "",
        generation=policy.metadata.generation or 1,
        spec=policy_model.PolicySpec(
            description=None, applies_to=_applies_to(policy), rules=(), audit=policy_model.Audit()
        ),
        rules=(),
    )


_scopes: Final[memo.ObjectMemo[Policy, engine.CompiledPolicy]] = memo.ObjectMemo("scope.policy", _scope_only)
"""The scope of each Policy, by object version: every Agent's selection reads it."""

_shared_sets: Final[memo.Memo[tuple[str, ...], frozenset[str]]] = memo.Memo("scope.shared", 64)


def _shared_set(namespaces: tuple[str, ...]) -> frozenset[str]:
    found = _shared_sets.get(namespaces)
    return found if found is not None else _shared_sets.put(namespaces, frozenset(namespaces))


def policy_selects(
    policy: Policy,
    *,
    agent_namespace: str,
    agent_labels: Mapping[str, str],
    environment: str,
    settings: OperatorSettings,
) -> bool:
    """Whether ``policy`` governs an Agent with these facts (the engine's ``index.applies``).

    Only ``spec.appliesTo`` is read, so a Policy whose rules do not compile is still placed correctly.
    """
    return engine.applies(
        _scopes(policy),
        namespace=agent_namespace,
        labels=agent_labels,
        environment=environment,
        shared_namespaces=_shared_set(settings.shared_namespaces),
    )
