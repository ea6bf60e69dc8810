"""Compile-time checks that need no policy: adapter capabilities, route requirements, tool safety floors.

Capability mapping (catalog.md section 3): what the Agent uses -> the FrameworkAdapter capability it
needs. An unset capability counts as false.

| the Agent uses | needs |
|---|---|
| spec.tools (non-empty) | toolBinding |
| spec.mcpServers (non-empty) | mcpBinding |
| spec.modelRoute | modelRouterBinding |
| spec.handoffs.allowedAgents (non-empty) | a2a |
| a route with requirements.streaming: true | streaming |
| a route with requirements.structuredOutput: true | structuredOutput |

Route requirements: EVERY model of the route (primary and each fallback) must meet each requirement
the route sets (toolCalling, structuredOutput, streaming: the model's capability is true;
contextWindowMin: limits.contextWindowTokens is at least that). One problem per model and requirement.

Tool safety floor: ``safety.allowedAgents`` (when set) must list the Agent, and
``safety.deniedNamespaces`` must not list its namespace.
"""

from __future__ import annotations

from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute, ModelRouteRequirements
from joch.domain.compilation import resolve
from joch.domain.compilation.problems import Problem

__all__ = ["capability_problems", "requirement_problems", "safety_problems"]


def capability_problems(gathered: resolve.Gathered) -> list[Problem]:
    """The FrameworkAdapter capabilities the Agent needs but the adapter lacks."""
    adapter = gathered.adapter
    if adapter is None:
        return []
    spec = gathered.agent.spec
    # (capability attribute, its camelCase name, field path, why the Agent needs it)
    needs: list[tuple[str, str, str, str]] = []
    if spec.tools:
        needs.append(("tool_binding", "toolBinding", "spec.tools", "the Agent uses tools"))
    if spec.mcp_servers:
        needs.append(("mcp_binding", "mcpBinding", "spec.mcpServers", "the Agent uses MCP servers"))
    if spec.model_route is not None:
        needs.append(
            ("model_router_binding", "modelRouterBinding", "spec.modelRoute", "the Agent uses a ModelRoute")
        )
    if spec.handoffs is not None and spec.handoffs.allowed_agents:
        needs.append(("a2a", "a2a", "spec.handoffs.allowedAgents", "the Agent hands off to other agents"))
    requirements = gathered.route.spec.requirements if gathered.route is not None else None
    route = f"ModelRoute {_route_name(gathered.route)}" if gathered.route is not None else ""
    if requirements is not None and requirements.streaming:
        needs.append(("streaming", "streaming", "spec.modelRoute.routeRef", f"{route} requires streaming"))
    if requirements is not None and requirements.structured_output:
        needs.append(
            (
                "structured_output",
                "structuredOutput",
                "spec.modelRoute.routeRef",
                f"{route} requires structuredOutput",
            )
        )

    capabilities = adapter.spec.capabilities
    return [
        Problem(
            "CapabilityMismatch",
            path,
            f"FrameworkAdapter {adapter.metadata.name} lacks capability {capability}, needed because {why}",
        )
        for attribute, capability, path, why in needs
        if capabilities is None or getattr(capabilities, attribute) is not True
    ]


def _route_name(route: ModelRoute) -> str:
    return f"{route.metadata.namespace}/{route.metadata.name}"


def requirement_problems(gathered: resolve.Gathered) -> list[Problem]:
    """Each (model, requirement) pair of the route where the model falls short."""
    route = gathered.route
    if route is None or route.spec.requirements is None:
        return []
    req = route.spec.requirements
    problems: list[Problem] = []
    for item in gathered.models:
        if item.model is None:
            continue
        for requirement, shortfall in _shortfalls(item.model, req):
            problems.append(
                Problem(
                    "RequirementUnmet",
                    item.path,
                    f"{item.role} model {item.address} (Model {item.model.metadata.namespace}/"
                    f"{item.model.metadata.name}) does not meet requirement {requirement} of ModelRoute "
                    f"{_route_name(route)}: {shortfall}",
                )
            )
    return problems


def _shortfalls(model: Model, req: ModelRouteRequirements) -> list[tuple[str, str]]:
    caps = model.spec.capabilities
    out: list[tuple[str, str]] = []
    for attribute, name in (
        ("tool_calling", "toolCalling"),
        ("structured_output", "structuredOutput"),
        ("streaming", "streaming"),
    ):
        if getattr(req, attribute) is True and (caps is None or getattr(caps, attribute) is not True):
            out.append((name, f"capabilities.{name} is not true"))
    if req.context_window_min is not None:
        window = model.spec.limits.context_window_tokens if model.spec.limits is not None else None
        if window is None:
            out.append(
                (
                    "contextWindowMin",
                    f"limits.contextWindowTokens is not set (at least {req.context_window_min} required)",
                )
            )
        elif window < req.context_window_min:
            out.append(
                ("contextWindowMin", f"limits.contextWindowTokens {window} is below {req.context_window_min}")
            )
    return out


def safety_problems(gathered: resolve.Gathered) -> list[Problem]:
    """Tools whose safety floor excludes this Agent."""
    problems: list[Problem] = []
    for item in gathered.tools:
        tool = item.tool
        if tool is None or tool.spec.safety is None:
            continue
        safety = tool.spec.safety
        if safety.allowed_agents is not None and gathered.name not in safety.allowed_agents:
            problems.append(
                Problem(
                    "ToolNotAllowed",
                    item.path,
                    f"Tool {item.name} allows only agents {', '.join(safety.allowed_agents) or '(none)'} "
                    "(spec.safety.allowedAgents)",
                )
            )
        if gathered.namespace in (safety.denied_namespaces or ()):
            problems.append(
                Problem(
                    "ToolNotAllowed",
                    item.path,
                    f"Tool {item.name} denies namespace {gathered.namespace} (spec.safety.deniedNamespaces)",
                )
            )
    return problems
