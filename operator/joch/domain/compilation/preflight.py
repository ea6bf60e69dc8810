"""Policy preflight at compile time (decision D9), on top of the policy engine (joch.domain.policy).

The effective policies of the Agent (``Gathered.policies``, in their documented order) are compiled
through a :class:`PolicyPrograms` cache and evaluated with ``preflight=True`` (rules reading runtime-only
facts such as cost.runUsd or data.contains are skipped) once per item:

- every model of the route (primary and each fallback): ``model: {provider, name}``;
- every Tool: ``tool: {name (the callable spec.toolName), type, sideEffect, requiresApproval}``;
- every MCP server: ``mcpServer: {name, trustScore, schemaDrift}`` (the last two from its status).

Each context also carries ``hook: preflight``, ``agent: {name, namespace, labels, version}``,
``framework`` (the adapter name) and ``environment: {name, allowedProviders?}``. :func:`preflight_contexts`
builds them all; admission preflight and ``joch policy preview`` (joch.decision_service.preview) use it too.

Outcome: a deny becomes a ``PolicyDenied`` problem naming the policy, the rule index, the item and the
reason; a tool decision with ``requires.approval`` forces that tool's ``requiresApproval`` to true in the
manifest. A policy that does not parse or compile becomes an ``InvalidPolicy`` problem and is left out
of the evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from joch.api.v1alpha1.tool import Tool
from joch.domain import policy as engine
from joch.domain.compilation import memo, resolve
from joch.domain.compilation.problems import Problem

__all__ = [
    "APPROVAL_BY_DEFAULT",
    "PolicyPrograms",
    "PreflightContext",
    "PreflightKind",
    "PreflightOutcome",
    "ToolFacts",
    "evaluate_preflight",
    "preflight_contexts",
    "run_preflight",
    "tool_facts",
]

PreflightKind = Literal["model", "tool", "mcpServer"]


class PolicyPrograms(Protocol):
    """A cache of compiled policies; ``joch.domain.policy.PolicyCompiler`` is the one the operator keeps
    (the controllers, admission and the decision service share one instance)."""

    def compile(self, *, name: str, namespace: str, generation: int, spec: Any) -> engine.CompiledPolicy:
        """The compiled policy of a wire spec; raises ``PolicySpecError`` when the spec is invalid."""
        ...

    def compile_object(self, policy: engine.PolicyObject) -> engine.CompiledPolicy:
        """The compiled policy of a parsed Policy, cached by object version; raises ``PolicySpecError``."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ToolFacts:
    """What preflight and the manifest know about one resolved Tool."""

    path: str
    name: str
    tool_name: str
    type: str
    side_effect: str
    requires_approval: bool


APPROVAL_BY_DEFAULT: Final[frozenset[str]] = frozenset({"financial", "privileged", "unknown"})
"""Side-effect levels whose Tools need approval when spec.sideEffects.requiresApproval is unset."""


def tool_facts(item: resolve.ResolvedTool) -> ToolFacts | None:
    """The preflight facts of a resolved Tool (None when it is missing).

    A Tool without sideEffects counts as level ``unknown``; requiresApproval, when unset, follows
    :data:`APPROVAL_BY_DEFAULT`. Admission, the compiler and policy preview all read Tools this way.
    """
    tool = item.tool
    if tool is None:
        return None
    tool_name, kind, level, requires_approval = _spec_facts(tool)
    return ToolFacts(
        path=item.path,
        name=item.name,
        tool_name=tool_name or item.name,
        type=kind,
        side_effect=level,
        requires_approval=requires_approval,
    )


def _read_spec_facts(tool: Tool) -> tuple[str | None, str, str, bool]:
    """(spec.toolName, type, side-effect level, requires approval) of a Tool."""
    effects = tool.spec.side_effects
    level = effects.level if effects is not None else "unknown"
    explicit = effects.requires_approval if effects is not None else None
    requires = explicit if explicit is not None else level in APPROVAL_BY_DEFAULT
    return (tool.spec.tool_name, tool.spec.type, level, requires)


_spec_facts: Final[memo.ObjectMemo[Tool, tuple[str | None, str, str, bool]]] = memo.ObjectMemo(
    "preflight.tool", _read_spec_facts
)


@dataclasses.dataclass(frozen=True, slots=True)
class PreflightContext:
    """One item preflight evaluates for an Agent (a model, Tool or MCP server), with its context."""

    kind: PreflightKind
    name: str
    """The model address (provider:name), the Tool's callable name, or the MCP server's name."""
    path: str
    """Where the Agent (or its route) references it, e.g. ``spec.tools[1]``."""
    context: Mapping[str, Any]
    tool: ToolFacts | None = None
    """The Tool's facts, for a ``tool`` item."""

    @property
    def label(self) -> str:
        """How a ``PolicyDenied`` message names the item: ``model …``, ``tool …``, ``MCP server …``."""
        return f"{'MCP server' if self.kind == 'mcpServer' else self.kind} {self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class PreflightOutcome:
    problems: tuple[Problem, ...]
    approval_required: frozenset[str]
    """metadata.name of every Tool whose preflight decision requires approval."""


def run_preflight(
    gathered: resolve.Gathered, tools: Sequence[ToolFacts], programs: PolicyPrograms
) -> PreflightOutcome:
    """Evaluate the effective policies against every model, tool and MCP server of the Agent."""

    return evaluate_preflight(gathered, tools, lambda entry: programs.compile_object(entry.policy))


def evaluate_preflight(
    gathered: resolve.Gathered,
    tools: Sequence[ToolFacts],
    compile_entry: Callable[[resolve.ResolvedPolicy], engine.CompiledPolicy],
) -> PreflightOutcome:
    """:func:`run_preflight` with the caller's way of compiling a policy.

    An invalid policy is an ``InvalidPolicy`` problem on its binding; each denied item is a
    ``PolicyDenied`` problem naming policy, version, rule and item.
    """
    problems: list[Problem] = []
    compiled: list[engine.CompiledPolicy] = []
    for entry in gathered.policies:
        try:
            compiled.append(compile_entry(entry))
        except engine.PolicySpecError as exc:
            shown = "; ".join(str(error) for error in exc.errors[:3])
            more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
            problems.append(
                Problem(
                    "InvalidPolicy",
                    entry.path,
                    f"Policy {entry.namespace}/{entry.name} is invalid: {shown}{more}",
                )
            )
    if not compiled:
        return PreflightOutcome(tuple(problems), frozenset())

    approval: set[str] = set()
    for item in preflight_contexts(gathered, tools):
        decision = _check(compiled, item.context, item.label, item.path, problems)
        if item.tool is not None and decision is not None and decision.requires_approval:
            approval.add(item.tool.name)
    return PreflightOutcome(tuple(problems), frozenset(approval))


def preflight_contexts(gathered: resolve.Gathered, tools: Sequence[ToolFacts]) -> list[PreflightContext]:
    """The preflight decision contexts of one Agent, in evaluation order: one per model of the route
    that resolved (primary, then each fallback), one per Tool of ``tools``, one per MCP server that
    resolved. The one builder behind compile-time and admission preflight and ``joch policy preview``.
    """
    base = _base_context(gathered)
    items: list[PreflightContext] = []
    for item in gathered.models:
        if item.model is not None:
            model = {"provider": item.model.spec.provider, "name": item.model.metadata.name}
            items.append(PreflightContext("model", item.address, item.path, {**base, "model": model}))
    for tool in tools:
        facts: dict[str, Any] = {
            "name": tool.tool_name,
            "type": tool.type,
            "sideEffect": tool.side_effect,
            "requiresApproval": tool.requires_approval,
        }
        items.append(PreflightContext("tool", tool.tool_name, tool.path, {**base, "tool": facts}, tool))
    for server in gathered.mcp_servers:
        if server.server is not None:
            status = server.server.status
            mcp: dict[str, Any] = {"name": server.name}
            if status is not None and status.trust_score is not None:
                mcp["trustScore"] = status.trust_score
            if status is not None and status.schema_drift is not None:
                mcp["schemaDrift"] = status.schema_drift
            items.append(PreflightContext("mcpServer", server.name, server.path, {**base, "mcpServer": mcp}))
    return items


def _base_context(gathered: resolve.Gathered) -> dict[str, Any]:
    agent = gathered.agent
    environment: dict[str, Any] = {"name": gathered.environment_name}
    if gathered.environment is not None and gathered.environment.spec.allowed_providers is not None:
        environment["allowedProviders"] = list(gathered.environment.spec.allowed_providers)
    return {
        "hook": "preflight",
        "agent": {
            "name": gathered.name,
            "namespace": gathered.namespace,
            "labels": dict(agent.metadata.labels or {}),
            "version": str(gathered.generation),
        },
        "framework": agent.spec.framework.adapter_ref.name,
        "environment": environment,
    }


def _check(
    compiled: Sequence[engine.CompiledPolicy],
    context: Mapping[str, Any],
    item: str,
    path: str,
    problems: list[Problem],
) -> engine.Decision | None:
    decision = engine.evaluate(compiled, context, preflight=True)
    if decision.denied:
        policy = f"{decision.policy_namespace}/{decision.policy_id}"
        who = f"Policy {policy} ({decision.policy_version}) rule {decision.rule}"
        problems.append(Problem("PolicyDenied", path, f"{who} denies {item}: {decision.reason}"))
        return None
    return decision
