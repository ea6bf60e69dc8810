"""Semantic checks the CRD schema cannot express, one function per kind, dispatched from :data:`CHECKS`.

Each check reads only the parsed object (and, where it needs them, the settings); cross-object checks
live in refs.py (references), agents.py (compile-time checks and policy preflight) and impact.py.

| kind | errors | warnings |
|---|---|---|
| Agent | duplicate tools / MCP servers / policies / RAGs | hands off to itself |
| ModelRoute | a fallback repeating the primary or another fallback | |
| Policy | rules, matchers, paths, selectors, label keys that fail to parse; CEL that fails | futile scope |
| Eval | thresholds naming no metric; llm_judge metrics without judgeModelRef | |
| Tool | inputSchema / outputSchema that are not JSON Schemas | financial/privileged tools without approval |
| Budget | allocation.byAgent shares adding up to more than 1 | |
| Environment | duplicate policies / budgets | |
| Team | duplicate members, namespaces, policies, budgets | |
| MCPServer | duplicate policies | |
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import jsonschema.exceptions
import jsonschema.validators

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import LABEL_KEY, Policy
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.domain import policy as engine
from joch.domain.admission.verdict import Findings
from joch.domain.settings import OperatorSettings

# Policy messages name the rule index and carry the CEL compiler's error; "futile scope" means
# appliesTo.namespaces entries that cannot take effect for a Policy outside the shared namespaces.

__all__ = ["CHECKS", "Check", "check_object"]

Check = Callable[[Any, OperatorSettings], Findings]

MAX_SCHEMA_ERRORS: Final = 5
_LABEL_KEY: Final = re.compile(LABEL_KEY)


def _duplicates(findings: Findings, path: str, items: Iterable[Any], what: str) -> None:
    seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        first = seen.setdefault(item, index)
        if first != index:
            shown = "/".join(part for part in item if part) if isinstance(item, tuple) else str(item)
            findings.error(
                f"{path}[{index}]", f"duplicate {what} {shown} (also at {path}[{first}])", "Duplicate"
            )


def _refs(refs: Iterable[meta.Ref] | None, own: str | None) -> list[tuple[str | None, str]]:
    return [(ref.namespace or own, ref.name) for ref in refs or ()]


def check_agent(agent: Agent, settings: OperatorSettings) -> Findings:
    findings = Findings()
    spec = agent.spec
    own = agent.metadata.namespace
    _duplicates(findings, "spec.tools", [tool.name for tool in spec.tools or ()], "tool")
    _duplicates(findings, "spec.mcpServers", _refs(spec.mcp_servers, own), "MCP server")
    _duplicates(findings, "spec.policies", _refs(spec.policies, own), "policy")
    _duplicates(findings, "spec.ragRefs", _refs(spec.rag_refs, own), "RAG")
    if spec.handoffs is not None and agent.metadata.name in spec.handoffs.allowed_agents:
        index = spec.handoffs.allowed_agents.index(agent.metadata.name or "")
        findings.warn(f"spec.handoffs.allowedAgents[{index}]", "the Agent lists itself as a handoff target")
    return findings


def check_route(route: ModelRoute, settings: OperatorSettings) -> Findings:
    findings = Findings()
    strategy = route.spec.strategy
    seen = {strategy.primary: "spec.strategy.primary"}
    for index, address in enumerate(strategy.fallback or ()):
        path = f"spec.strategy.fallback[{index}]"
        first = seen.setdefault(address, path)
        if first != path:
            what = "repeats the primary model" if first == "spec.strategy.primary" else f"repeats {first}"
            findings.error(path, f"{address} {what}; each model appears once in a route", "Duplicate")
    return findings


def _label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label key ([prefix/]name), or None."""
    prefix, _, name = key.rpartition("/")
    if not _LABEL_KEY.match(key):
        return "is not a label key ([prefix/]name: alphanumerics, '-', '_', '.'; a DNS prefix)"
    if len(name) > 63:
        return "has a name part longer than 63 characters"
    if len(prefix) > 253:
        return "has a prefix longer than 253 characters"
    return None


def check_policy(policy: Policy, settings: OperatorSettings) -> Findings:
    findings = Findings()
    options = engine.CompileOptions(cel_backend=settings.cel_backend)
    for error in engine.validate_policy_spec(policy.spec.wire(), options=options):
        findings.error(error.path, error.message, error.reason)
    namespace = policy.metadata.namespace or ""
    applies = policy.spec.applies_to
    selector = applies.agents.selector if applies is not None and applies.agents is not None else None
    for key in (selector.match_labels or {}) if selector is not None else {}:
        problem = _label_key_problem(key)
        if problem is not None:
            findings.error(f"spec.appliesTo.agents.selector.matchLabels[{key!r}]", f"{key!r} {problem}")
    if applies is not None and applies.namespaces is not None and not settings.is_shared(namespace):
        others = [ns for ns in applies.namespaces if ns != namespace]
        if others:
            findings.warn(
                "spec.appliesTo.namespaces",
                f"a Policy in namespace {namespace} governs only Agents of {namespace}; "
                f"{', '.join(others)} take effect only for a Policy in a shared namespace "
                f"({', '.join(settings.shared_namespaces) or 'none'})",
            )
    return findings


def check_eval(evaluation: Eval, settings: OperatorSettings) -> Findings:
    findings = Findings()
    spec = evaluation.spec
    names = {metric.name for metric in spec.metrics}
    for index, metric in enumerate(spec.metrics):
        if metric.type == "llm_judge" and metric.judge_model_ref is None:
            findings.error(
                f"spec.metrics[{index}].judgeModelRef",
                f"metric {metric.name} has type llm_judge and needs a judge Model",
                "FieldValueRequired",
            )
    for key, threshold in (spec.thresholds or {}).items():
        path = f"spec.thresholds.{key}"
        if key not in names:
            findings.error(path, f"no metric named {key} in spec.metrics (known: {', '.join(sorted(names))})")
        if isinstance(threshold, float) and not math.isfinite(threshold):
            findings.error(path, "a threshold must be a finite number")
    return findings


def _schema_errors(findings: Findings, path: str, schema: Mapping[str, Any]) -> None:
    try:
        cls = jsonschema.validators.validator_for(schema)
        meta_validator = cls(cls.META_SCHEMA)
        errors = sorted(meta_validator.iter_errors(schema), key=lambda e: list(e.path))
    except (jsonschema.exceptions.SchemaError, RecursionError, TypeError, ValueError) as exc:
        findings.error(path, f"is not a JSON Schema: {str(exc)[:200]}")
        return
    for error in errors[:MAX_SCHEMA_ERRORS]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        findings.error(f"{path}{where}", f"is not a valid JSON Schema: {error.message[:200]}")


def check_tool(tool: Tool, settings: OperatorSettings) -> Findings:
    findings = Findings()
    spec = tool.spec
    if spec.input_schema is not None:
        _schema_errors(findings, "spec.inputSchema", spec.input_schema)
    if spec.output_schema is not None:
        _schema_errors(findings, "spec.outputSchema", spec.output_schema)
    effects = spec.side_effects
    if (
        effects is not None
        and effects.level in ("financial", "privileged")
        and effects.requires_approval is False
    ):
        findings.warn(
            "spec.sideEffects.requiresApproval",
            f"calls of a {effects.level} tool run without human approval",
        )
    return findings


def check_budget(budget: Budget, settings: OperatorSettings) -> Findings:
    findings = Findings()
    allocation = budget.spec.allocation
    shares = (allocation.by_agent or {}) if allocation is not None else {}
    total = sum(shares.values())
    if total > 1 + 1e-9:
        findings.error(
            "spec.allocation.byAgent", f"shares add up to {total:g}; together they may be at most 1"
        )
    return findings


def check_environment(environment: Environment, settings: OperatorSettings) -> Findings:
    findings = Findings()
    _duplicates(findings, "spec.policies", _refs(environment.spec.policies, None), "policy")
    _duplicates(findings, "spec.budgetRefs", _refs(environment.spec.budget_refs, None), "budget")
    return findings


def check_team(team: Team, settings: OperatorSettings) -> Findings:
    findings = Findings()
    spec = team.spec
    _duplicates(findings, "spec.members", [member.user for member in spec.members or ()], "member")
    _duplicates(findings, "spec.namespaces", list(spec.namespaces or ()), "namespace")
    _duplicates(findings, "spec.defaultPolicies", list(spec.default_policies or ()), "policy")
    _duplicates(findings, "spec.budgetRefs", list(spec.budget_refs or ()), "budget")
    return findings


def check_mcp_server(server: MCPServer, settings: OperatorSettings) -> Findings:
    findings = Findings()
    _duplicates(findings, "spec.policies", _refs(server.spec.policies, server.metadata.namespace), "policy")
    return findings


CHECKS: Final[Mapping[type[meta.Resource], Check]] = {
    Agent: check_agent,
    ModelRoute: check_route,
    Policy: check_policy,
    Eval: check_eval,
    Tool: check_tool,
    Budget: check_budget,
    Environment: check_environment,
    Team: check_team,
    MCPServer: check_mcp_server,
}


def check_object(obj: meta.Resource, settings: OperatorSettings) -> Findings:
    """The semantic checks of ``obj``'s kind (none for kinds without any)."""
    check = CHECKS.get(type(obj))
    return check(obj, settings) if check is not None else Findings()
