"""Preview a Policy change: which Agents would it newly deny, and why? (pure; ``joch policy preview``)

Given a snapshot of the cluster (every object the compiler reads, plus Namespace labels) and the
Policies to apply, :func:`preview` evaluates every Agent twice, with the current policies and with the
changed set, exactly as admission preflight does (decision D9 of docs/decisions.md;
joch.domain.compilation.preflight):

- the effective policies of the Agent (explicit, selector, environment, team; ``gather``), compiled;
  a Policy that does not compile is left out, as preflight leaves it out;
- one ``preflight`` context per referenced model (primary and every fallback), Tool and MCP server,
  built by :func:`preflight_items` with the same fields as preflight;
- ``evaluate(..., preflight=True)``: rules reading runtime-only facts (cost, data, payload, mcpResult)
  are skipped.

An item is *newly denied* when the changed set denies it and the current set did not; *no longer
denied* is the reverse. A Policy in the change replaces the stored one of the same namespace and name;
its generation (hence ``policyVersion``) is the stored one, plus one when the spec differs, or 1 for a
new Policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.domain import compilation
from joch.domain import policy as engine
from joch.domain.compilation import preflight, resolve
from joch.domain.settings import OperatorSettings

__all__ = ["Denial", "Item", "Preview", "Snapshot", "preflight_items", "preview", "with_policies"]

ItemKind = preflight.PreflightKind


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Every object the compiler reads, and Namespace labels: what a preview is computed over."""

    objects: tuple[meta.Resource, ...]
    namespace_labels: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def catalog(self, settings: OperatorSettings) -> compilation.Catalog:
        labels = {namespace: dict(values) for namespace, values in self.namespace_labels.items()}
        return compilation.Catalog(
            self.objects, namespace_labels=labels, shared_namespaces=settings.shared_namespaces
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One thing preflight evaluates for an Agent, with its decision context."""

    kind: ItemKind
    name: str
    """The model address (provider:name), the Tool's callable name, or the MCP server's name."""
    path: str
    """Where the Agent (or its route) references it, e.g. ``spec.tools[1]``."""
    context: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{'MCP server' if self.kind == 'mcpServer' else self.kind} {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Denial:
    """One item of one Agent denied by one rule."""

    namespace: str
    agent: str
    item: Item
    decision: engine.Decision

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": {"namespace": self.namespace, "name": self.agent},
            "item": {"kind": self.item.kind, "name": self.item.name, "path": self.item.path},
            "policyId": self.decision.policy_id,
            "policyNamespace": self.decision.policy_namespace,
            "policyVersion": self.decision.policy_version,
            "rule": self.decision.rule,
            "reason": self.decision.reason,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    policies: tuple[str, ...]
    """The previewed policies, ``namespace/name@vN``."""
    agents: int
    """Agents evaluated."""
    newly_denied: tuple[Denial, ...]
    no_longer_denied: tuple[Denial, ...]
    """The denials the change lifts (each as the current policies decide it)."""

    @property
    def denied_agents(self) -> list[tuple[str, str]]:
        return sorted({(d.namespace, d.agent) for d in self.newly_denied})

    def to_dict(self) -> dict[str, Any]:
        return {
            "policies": list(self.policies),
            "agentsEvaluated": self.agents,
            "newlyDenied": [d.to_dict() for d in self.newly_denied],
            "noLongerDenied": [d.to_dict() for d in self.no_longer_denied],
        }


def with_policies(snapshot: Snapshot, policies: Sequence[Policy]) -> tuple[Snapshot, tuple[Policy, ...]]:
    """``snapshot`` with ``policies`` added or replacing their namesakes; the policies as placed
    (with their generation set as the module docstring says)."""
    stored: dict[tuple[str, str], Policy] = {
        _key(obj): obj for obj in snapshot.objects if isinstance(obj, Policy)
    }
    placed: list[Policy] = []
    for policy in policies:
        current = stored.get(_key(policy))
        generation = 1
        if current is not None:
            generation = resolve.generation_of(current)
            if current.spec.wire() != policy.spec.wire():
                generation += 1
        metadata = policy.metadata.model_copy(update={"generation": generation})
        placed.append(policy.model_copy(update={"metadata": metadata}))
    replaced = {_key(policy) for policy in placed}
    kept = [obj for obj in snapshot.objects if not (isinstance(obj, Policy) and _key(obj) in replaced)]
    return Snapshot((*kept, *placed), snapshot.namespace_labels), tuple(placed)


def preview(
    snapshot: Snapshot,
    policies: Sequence[Policy],
    settings: OperatorSettings,
    *,
    namespaces: Iterable[str] | None = None,
) -> Preview:
    """Which Agents (of ``namespaces``, default all) the change would newly deny; see the module docstring."""
    changed, placed = with_policies(snapshot, policies)
    before_catalog, after_catalog = snapshot.catalog(settings), changed.catalog(settings)
    options = engine.CompileOptions(cel_backend=settings.cel_backend)
    before_programs, after_programs = engine.PolicyCompiler(options), engine.PolicyCompiler(options)
    wanted = set(namespaces) if namespaces is not None else None
    agents = [a for a in before_catalog.agents() if wanted is None or a.metadata.namespace in wanted]
    newly: list[Denial] = []
    lifted: list[Denial] = []
    for agent in agents:
        before = decisions(agent, before_catalog, settings, before_programs)
        after = decisions(agent, after_catalog, settings, after_programs)
        namespace, name = agent.metadata.namespace or "", agent.metadata.name or ""
        for key, (item, decision) in after.items():
            previous = before.get(key)
            if decision.denied and (previous is None or not previous[1].denied):
                newly.append(Denial(namespace, name, item, decision))
        for key, (item, decision) in before.items():
            following = after.get(key)
            if decision.denied and (following is None or not following[1].denied):
                lifted.append(Denial(namespace, name, item, decision))
    return Preview(
        policies=tuple(
            f"{p.metadata.namespace}/{p.metadata.name}@v{resolve.generation_of(p)}" for p in placed
        ),
        agents=len(agents),
        newly_denied=tuple(newly),
        no_longer_denied=tuple(lifted),
    )


def decisions(
    agent: Agent,
    catalog: compilation.Catalog,
    settings: OperatorSettings,
    programs: compilation.PolicyPrograms,
) -> dict[tuple[str, str, str], tuple[Item, engine.Decision]]:
    """The preflight decision of every item of ``agent``, keyed by (kind, name, path)."""
    gathered = compilation.gather(agent, catalog, settings)
    compiled: list[engine.CompiledPolicy] = []
    for entry in gathered.policies:
        try:
            compiled.append(
                programs.compile(
                    name=entry.name,
                    namespace=entry.namespace,
                    generation=resolve.generation_of(entry.policy),
                    spec=entry.policy.spec.wire(),
                )
            )
        except engine.PolicySpecError:
            continue  # preflight leaves an invalid policy out too (and reports it as InvalidPolicy)
    return {
        (item.kind, item.name, item.path): (item, engine.evaluate(compiled, item.context, preflight=True))
        for item in preflight_items(gathered)
    }


def preflight_items(gathered: resolve.Gathered) -> list[Item]:
    """The preflight contexts of one Agent: one per model, Tool and MCP server that resolved.

    Built by ``joch.domain.compilation.preflight.preflight_contexts``, as ``run_preflight`` builds them
    (tests hold them equal).
    """
    tools = [facts for resolved in gathered.tools if (facts := preflight.tool_facts(resolved)) is not None]
    return [
        Item(item.kind, item.name, item.path, item.context)
        for item in preflight.preflight_contexts(gathered, tools)
    ]


def _key(policy: Policy) -> tuple[str, str]:
    return (policy.metadata.namespace or "", policy.metadata.name or "")
