"""Which existing Agents a Policy, Environment, ModelRoute or Team change would put in violation.

Such a change is admitted (the governing object is not wrong in itself; D9 of docs/decisions.md rejects
Agents, not the rules that govern them) with a warning listing the Agents that policy preflight would now
deny. The operator then marks those Agents PolicyCompliant=False and keeps serving their last compliant
manifest.

Candidates, by the kind that changed:

| change | Agents looked at |
|---|---|
| Policy in namespace N | Agents of N (every namespace when N is shared) |
| Environment E | Agents whose environment (D5) is E |
| ModelRoute R in N | Agents whose spec.modelRoute.routeRef resolves to N/R |
| Team T | Agents of T's namespaces |

Each candidate is preflighted with the changed object laid over the world ("after") and, when denied,
without it ("before"): an Agent already denied before the change is not reported as newly violating.
At most :data:`MAX_AGENTS` candidates are evaluated (the warning says when the list was cut).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.team import Team
from joch.domain.admission import agents as agent_checks
from joch.domain.admission.preflight import CompiledPolicies
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import SelectorIndex, World
from joch.domain.settings import OperatorSettings

__all__ = ["IMPACT_KINDS", "MAX_AGENTS", "MAX_LISTED", "Impact", "impact"]

MAX_AGENTS: Final = 200
"""Agents preflighted for one change at most."""
MAX_LISTED: Final = 5
"""Agents named in the warning; the rest are counted."""

IMPACT_KINDS: Final = (Policy, Environment, ModelRoute, Team)


@dataclasses.dataclass(frozen=True, slots=True)
class Impact:
    """Agents newly denied by a change: ``(namespace/name, first denial)``; ``truncated`` when capped."""

    violating: tuple[tuple[str, str], ...]
    evaluated: int
    truncated: bool


def _candidates(changed: meta.Resource, world: World, settings: OperatorSettings) -> list[Agent]:
    if isinstance(changed, Policy):
        namespace = changed.metadata.namespace or ""
        return list(world.agents(None if settings.is_shared(namespace) else namespace))
    if isinstance(changed, Environment):
        name = changed.metadata.name
        return [a for a in world.agents(None) if agent_checks.environment_of(a, world, settings) == name]
    if isinstance(changed, ModelRoute):
        namespace = changed.metadata.namespace or ""
        pool = world.agents(None if settings.is_shared(namespace) else namespace)
        out = []
        for agent in pool:
            route = agent.spec.model_route
            if route is None or route.route_ref.name != changed.metadata.name:
                continue
            if (route.route_ref.namespace or agent.metadata.namespace) == namespace:
                out.append(agent)
        return out
    if isinstance(changed, Team):
        return [a for ns in dict.fromkeys(changed.spec.namespaces or ()) for a in world.agents(ns)]
    return []


def _denial(
    agent: Agent,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    index: SelectorIndex | None,
) -> str | None:
    report = agent_checks.evaluate_agent(agent, world, settings, policies, with_checks=False, index=index)
    denials = report.denials
    return denials[0].message if denials else None


def impact(
    changed: meta.Resource,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    *,
    max_agents: int = MAX_AGENTS,
    index: SelectorIndex | None = None,
) -> Impact:
    """The Agents ``changed`` would newly put in violation; ``world`` must not contain it yet."""
    after = world.with_overlay(changed)
    candidates: Sequence[Agent] = _candidates(changed, after, settings)
    truncated = len(candidates) > max_agents
    violating: list[tuple[str, str]] = []
    for agent in candidates[:max_agents]:
        denial = _denial(agent, after, settings, policies, index)
        if denial is None or _denial(agent, world, settings, policies, index) is not None:
            continue
        violating.append((f"{agent.metadata.namespace}/{agent.metadata.name}", denial))
    return Impact(tuple(violating), min(len(candidates), max_agents), truncated)


def impact_findings(
    changed: meta.Resource,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    *,
    index: SelectorIndex | None = None,
) -> Findings:
    """A warning listing the Agents ``changed`` would put in violation (none when there are none)."""
    findings = Findings()
    if not world.can_list_agents:
        return findings
    found = impact(changed, world, settings, policies, index=index)
    if found.violating:
        shown = "; ".join(f"{name} ({denial})" for name, denial in found.violating[:MAX_LISTED])
        more = len(found.violating) - MAX_LISTED
        findings.warn(
            "spec",
            f"this change puts {len(found.violating)} existing Agent(s) in violation of policy; they keep "
            f"their last compliant manifest and report PolicyCompliant=False: {shown}"
            + (f" (and {more} more)" if more > 0 else ""),
            "AgentsInViolation",
        )
    if found.truncated:
        findings.warn(
            "spec",
            f"impact analysis stopped after {found.evaluated} Agents; others may be affected too",
            "ImpactTruncated",
        )
    return findings
