"""An Agent judged against the world it would live in: references, capabilities and policy preflight (D9).

This reuses the compiler's own steps, so admission and compilation always agree on what is allowed
(D-numbers: docs/decisions.md):

    gathered = compilation.gather(agent, world, settings)           # D2, D5, D6, effective policies
    checks.capability_problems / requirement_problems / safety_problems
    preflight.run_preflight(gathered, tools, policies)               # D9 (admission/preflight.py)

and skips what admission does not need (the manifest, its YAML and its hashes).

How each compiler problem is admitted:

| problem | admission |
|---|---|
| MissingReference | warning (D10: apply order must not matter) |
| ForbiddenReference in the Agent | error (reported by refs.py with the field path; not repeated here) |
| ForbiddenReference met through its Environment or Team | warning (the fault is the binding object's) |
| PolicyDenied, CapabilityMismatch, RequirementUnmet, ToolNotAllowed, InvalidName | error |
| InvalidPolicy (an effective Policy that does not compile, e.g. created before the webhook) | warning |

A problem located in another object (``ModelRoute/ns/name: spec.strategy.primary``) is reported at the
Agent field that leads there (``spec.modelRoute.routeRef``) with the foreign location in the message.

Preflight contexts follow joch.domain.compilation.preflight: ``hook: preflight``, the agent, its
environment (with ``allowedProviders``), and one model, tool or MCP server at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

import pydantic

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.domain.admission.preflight import CompiledPolicies, run_preflight
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import SelectorIndex, World
from joch.domain.compilation import checks, preflight, resolve, scope
from joch.domain.compilation.compiler import MAX_NAME, manifest_name
from joch.domain.compilation.problems import Problem
from joch.domain.settings import OperatorSettings

__all__ = [
    "ERROR_REASONS",
    "AgentReport",
    "agent_for_route",
    "agent_in_environment",
    "duplicate_tool_names",
    "evaluate_agent",
    "locate",
    "report_findings",
    "route_report",
]

ERROR_REASONS: Final = frozenset(
    {"PolicyDenied", "CapabilityMismatch", "RequirementUnmet", "ToolNotAllowed", "InvalidName"}
)
WARNING_REASONS: Final = frozenset({"MissingReference", "InvalidPolicy", "ForbiddenReference"})

ROUTE_PROBE_NAME: Final = "any-agent"
"""metadata.name of the stand-in Agent a ModelRoute is preflighted with."""


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReport:
    """What compiling the Agent in this world would report (without building the manifest)."""

    gathered: resolve.Gathered
    problems: tuple[Problem, ...]

    @property
    def denials(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.reason == "PolicyDenied")


def evaluate_agent(
    agent: Agent,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    *,
    with_checks: bool = True,
    index: SelectorIndex | None = None,
) -> AgentReport:
    """Gather ``agent`` in ``world`` and run the compiler's checks and policy preflight.

    With an ``index``, selector matching goes through it (World.selecting): same answer, much faster.
    """
    if index is not None:
        namespace = agent.metadata.namespace or ""
        world = world.selecting(
            index,
            namespace=namespace,
            labels=agent.metadata.labels or {},
            environment=scope.environment_of(agent, world.namespace_labels(namespace), settings),
        )
    gathered = resolve.gather(agent, world, settings)
    problems = [Problem("MissingReference", ref.path, ref.message) for ref in gathered.missing]
    # The Agent's own forbidden references are reported by refs.py with their field paths; those met
    # through its Environment or Team (``Environment/prod: spec.policies[0]``) are reported here.
    problems.extend(
        Problem("ForbiddenReference", ref.path, ref.message) for ref in gathered.forbidden if ": " in ref.path
    )
    tools = [facts for item in gathered.tools if (facts := preflight.tool_facts(item)) is not None]
    if with_checks:
        name = manifest_name(gathered.name, gathered.generation)
        if len(name) > MAX_NAME:
            problems.append(
                Problem(
                    "InvalidName", "metadata.name", f"manifest name {name[:40]}... is longer than {MAX_NAME}"
                )
            )
        problems.extend(checks.capability_problems(gathered))
        problems.extend(checks.requirement_problems(gathered))
        problems.extend(checks.safety_problems(gathered))
    problems.extend(run_preflight(gathered, tools, policies))
    return AgentReport(gathered, tuple(problems))


def locate(problem: Problem, gathered: resolve.Gathered) -> tuple[str, str]:
    """(Agent field path, message) for a compiler problem, whose path may name another object."""
    head, sep, rest = problem.path.partition(": ")
    if not sep or "/" not in head:
        return problem.path, problem.message
    kind = head.split("/", 1)[0]
    where = f"{head} {rest}"
    if kind == "ModelRoute":
        return "spec.modelRoute.routeRef", f"{where}: {problem.message}"
    if kind == "Environment":
        field = (
            "metadata.labels.env" if gathered.environment_source == "agent-label" else "metadata.namespace"
        )
        return field, f"environment {gathered.environment_name}, {where}: {problem.message}"
    if kind == "Team":
        return "metadata.namespace", f"{where}: {problem.message}"
    return problem.path, f"{where}: {problem.message}"


def report_findings(report: AgentReport, *, denials_only: bool = False) -> Findings:
    """Admission findings for an :class:`AgentReport` (see the module docstring's table)."""
    findings = Findings()
    for problem in report.problems:
        if denials_only and problem.reason != "PolicyDenied":
            continue
        path, message = locate(problem, report.gathered)
        if problem.reason in ERROR_REASONS:
            if problem.reason == "PolicyDenied":
                message = f"{message} (environment {report.gathered.environment_name})"
            findings.error(path, message, problem.reason)
        elif problem.reason in WARNING_REASONS:
            suffix = (
                "; admitted, the operator reports it until it appears"
                if problem.reason == "MissingReference"
                else ""
            )
            findings.warn(path, message + suffix, problem.reason)
    return findings


def duplicate_tool_names(report: AgentReport) -> Findings:
    """Two Tools of one Agent that the model would call by the same name (spec.toolName, D3)."""
    findings = Findings()
    seen: dict[str, str] = {}
    for item in report.gathered.tools:
        if item.tool is None:
            continue
        callable_name = item.tool.spec.tool_name or item.name
        first = seen.setdefault(callable_name, item.path)
        if first != item.path:
            findings.error(
                item.path,
                f"Tool {item.name} is called {callable_name!r} by the model, like the Tool at {first}; "
                "callable names must be unique per Agent",
                "Duplicate",
            )
    return findings


def agent_in_environment(agent: Agent, environment: str) -> Agent:
    """``agent`` as if it ran in ``environment``: its ``env`` label, which wins under D5, is set."""
    labels = {**(agent.metadata.labels or {}), scope.AGENT_ENVIRONMENT_LABEL: environment}
    metadata = agent.metadata.model_copy(update={"labels": labels})
    return agent.model_copy(update={"metadata": metadata})


def agent_for_route(route: ModelRoute) -> Agent | None:
    """A stand-in Agent of the route's namespace, without labels, using only this route.

    A ModelRoute has no Agent of its own; it is preflighted as any unlabelled Agent of its namespace
    would see it (the namespace's environment, its selector, Environment and Team policies). None when
    the route's own name or namespace is not a Kubernetes name (only a review posted straight to the
    webhook can carry one; the API server rejects such objects before admission).
    """
    namespace = route.metadata.namespace or ""
    try:
        return _route_probe(route.metadata.name or "", namespace)
    except pydantic.ValidationError:
        return None


def _route_probe(name: str, namespace: str) -> Agent:
    return Agent.model_validate(
        {
            "apiVersion": Agent.crd.api_version,
            "kind": "Agent",
            "metadata": {"name": ROUTE_PROBE_NAME, "namespace": namespace, "labels": {}},
            "spec": {
                "framework": {"adapterRef": {"name": "any"}},
                "modelRoute": {"routeRef": {"name": name, "namespace": namespace}},
            },
        }
    )


def route_report(
    route: ModelRoute,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    *,
    index: SelectorIndex | None = None,
) -> Findings:
    """Preflight a ModelRoute: each model denied for an unlabelled Agent of its namespace is an error."""
    probe = agent_for_route(route)
    if probe is None:
        return Findings()
    report = evaluate_agent(
        probe, world.with_overlay(route), settings, policies, with_checks=False, index=index
    )
    findings = Findings()
    namespace = route.metadata.namespace or ""
    for problem in report.denials:
        _, _, field = problem.path.partition(": ")
        findings.error(
            field or problem.path,
            f"{problem.message} (for Agents of namespace {namespace} in environment "
            f"{report.gathered.environment_name})",
            "PolicyDenied",
        )
    findings.extend(_route_requirements(route, report))
    return findings


def _route_requirements(route: ModelRoute, report: AgentReport) -> Findings:
    """Every resolved model must meet the route's requirements, as the compiler demands (checks.py)."""
    findings = Findings()
    if route.spec.requirements is None:
        return findings
    for problem in checks.requirement_problems(report.gathered):
        _, _, field = problem.path.partition(": ")
        findings.error(field or problem.path, problem.message, "RequirementUnmet")
    return findings


def environment_of(agent: Agent, world: World, settings: OperatorSettings) -> str:
    """The Agent's environment (decision D5)."""
    return scope.environment_of(agent, world.namespace_labels(agent.metadata.namespace or ""), settings)


def labels_of(obj: meta.Resource) -> Mapping[str, str]:
    return obj.metadata.labels or {}
