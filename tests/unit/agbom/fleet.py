"""Small fleets for the AgBOM tests, built from plain wire dicts (namespace ``team-a``, Agent ``bot``)."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.cli import agbom as agbom_cli
from joch.domain import agbom, compilation
from joch.domain.settings import OperatorSettings

NS = "team-a"
UID = "0b8f7c52-5d6e-4d1f-9c1a-000000000001"
TIMESTAMP = "2026-01-02T03:04:05Z"
TOOL_VERSION = "0.0.0-test"
EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def _meta(name: str, namespace: str | None = NS, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def adapter(image: str = "ghcr.io/acme/adapter@sha256:" + "a" * 64) -> FrameworkAdapter:
    return FrameworkAdapter.model_validate(
        {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "FrameworkAdapter",
            "metadata": _meta("py", None),
            "spec": {"framework": "openai-agents-sdk", "adapterImage": image},
        }
    )


def model(name: str, provider: str = "openai", *, model_id: str | None = None, **spec: Any) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "Model",
            "metadata": _meta(name),
            "spec": {
                "provider": provider,
                "model": model_id or name,
                "auth": {"secretRef": {"name": f"{provider}-key"}},
                "capabilities": {"text": True, "toolCalling": True},
                "limits": {"contextWindowTokens": 128000},
                **spec,
            },
        }
    )


def route(primary: str, *fallback: str) -> ModelRoute:
    return ModelRoute.model_validate(
        {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "ModelRoute",
            "metadata": _meta("default"),
            "spec": {"strategy": {"primary": primary, "fallback": list(fallback)}},
        }
    )


def tool(
    name: str,
    side_effect: str = "read_only",
    *,
    approval: bool | None = None,
    mcp: str | None = None,
    secret: str | None = None,
) -> Tool:
    spec: dict[str, Any] = {
        "type": "function",
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "sideEffects": {"level": side_effect},
    }
    if approval is not None:
        spec["sideEffects"]["requiresApproval"] = approval
    if mcp is not None:
        spec["type"] = "mcp"
        spec["mcpServerRef"] = {"name": mcp}
    if secret is not None:
        spec["type"] = "rest"
        spec["endpoint"] = {
            "method": "POST",
            "url": f"https://api.example.com/{name}",
            "auth": {"type": "bearer", "secretRef": {"name": secret}},
        }
    return Tool.model_validate(
        {"apiVersion": "tools.joch.dev/v1alpha1", "kind": "Tool", "metadata": _meta(name), "spec": spec}
    )


def mcp_server(name: str, *, pinned: str | None = "1.0.0", discovered: Iterable[str] = ()) -> MCPServer:
    security: dict[str, Any] = {}
    if pinned is not None:
        security["pinnedVersion"] = pinned
    obj: dict[str, Any] = {
        "apiVersion": "tools.joch.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": _meta(name),
        "spec": {
            "transport": "streamable_http",
            "endpoint": {"url": f"https://{name}.example.com/mcp"},
            "auth": {"type": "bearer", "secretRef": {"name": f"{name}-token"}},
            "security": security,
        },
    }
    if discovered:
        obj["status"] = {"discoveredTools": list(discovered)}
    return MCPServer.model_validate(obj)


def memory(name: str = "bot-notes") -> Memory:
    return Memory.model_validate(
        {
            "apiVersion": "memory.joch.dev/v1alpha1",
            "kind": "Memory",
            "metadata": _meta(name),
            "spec": {"type": "episodic", "backend": {"type": "redis"}},
        }
    )


def rag(name: str = "docs", *sources: str) -> RAG:
    return RAG.model_validate(
        {
            "apiVersion": "memory.joch.dev/v1alpha1",
            "kind": "RAG",
            "metadata": _meta(name),
            "spec": {"sources": [{"name": s} for s in sources or ("handbook",)]},
        }
    )


def knowledge_source(name: str = "handbook") -> KnowledgeSource:
    return KnowledgeSource.model_validate(
        {
            "apiVersion": "memory.joch.dev/v1alpha1",
            "kind": "KnowledgeSource",
            "metadata": _meta(name),
            "spec": {"type": "web", "source": {"url": "https://handbook.example.com"}},
        }
    )


def environment(name: str = "prod", allowed: Iterable[str] | None = None) -> Environment:
    spec: dict[str, Any] = {}
    if allowed is not None:
        spec["allowedProviders"] = list(allowed)
    return Environment.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Environment",
            "metadata": _meta(name, None),
            "spec": spec,
        }
    )


def team(name: str = "platform") -> Team:
    return Team.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": _meta(name, None),
            "spec": {"namespaces": [NS]},
        }
    )


def agent(
    *,
    tools: Iterable[str] = (),
    mcp_servers: Iterable[str] = (),
    memories: Mapping[str, str] | None = None,
    rags: Iterable[str] = (),
    environment_name: str = "prod",
    route_name: str | None = "default",
    image: str | None = "registry.example.com/team-a/bot:2.0",
) -> Agent:
    spec: dict[str, Any] = {"framework": {"adapterRef": {"name": "py"}}}
    if image is not None:
        spec["framework"]["image"] = image
    if route_name is not None:
        spec["modelRoute"] = {"routeRef": {"name": route_name}}
    if tools:
        spec["tools"] = [{"name": t} for t in tools]
    if mcp_servers:
        spec["mcpServers"] = [{"name": s} for s in mcp_servers]
    if memories:
        spec["memories"] = {slot: {"name": n} for slot, n in memories.items()}
    if rags:
        spec["ragRefs"] = [{"name": r} for r in rags]
    return Agent.model_validate(
        {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "Agent",
            "metadata": _meta("bot", labels={"env": environment_name}),
            "spec": spec,
        }
    )


def world() -> list[meta.Resource]:
    """A consistent fleet: every reference resolves, nothing is high risk."""
    return [
        adapter(),
        model("big", "openai"),
        model("backup", "anthropic"),
        route("openai:big", "anthropic:backup"),
        tool("search"),
        tool("create-ticket", "external_write", approval=True, secret="ticket-token"),
        tool("gh-issues", mcp="github"),
        mcp_server("github", discovered=["gh-issues", "gh-search"]),
        memory(),
        rag("docs", "handbook"),
        knowledge_source("handbook"),
        environment("prod", ["openai", "anthropic"]),
        team(),
        agent(
            tools=["search", "create-ticket", "gh-issues"],
            mcp_servers=["github"],
            memories={"notes": "bot-notes"},
            rags=["docs"],
        ),
    ]


def catalog(objects: Iterable[meta.Resource]) -> compilation.Catalog:
    return compilation.Catalog(list(objects))


def content(
    objects: Iterable[meta.Resource] | compilation.Catalog,
    *,
    options: agbom.Options | None = None,
    namespace: str = NS,
    name: str = "bot",
    uid: str = UID,
    compiled_hook: Any = None,
) -> agbom.Content:
    """describe() of one Agent; ``compiled_hook(manifest_spec)`` may edit the compiled manifest first."""
    cat = objects if isinstance(objects, compilation.Catalog) else catalog(objects)
    settings = OperatorSettings()
    chosen = next(a for a in cat.agents() if a.metadata.namespace == namespace and a.metadata.name == name)
    gathered = compilation.gather(chosen, cat, settings)
    compiled = compilation.compile_agent(gathered, settings)
    if compiled_hook is not None:
        compiled_hook(compiled.manifest["spec"])
    return agbom.describe(
        gathered,
        compiled,
        agent_uid=uid,
        options=options or agbom.Options(),
        lookup=cat,
        tool_version=TOOL_VERSION,
    )


def render(value: agbom.Content, *, generation: int = 1, timestamp: str = TIMESTAMP) -> str:
    return agbom.render(value, generation=generation, timestamp=timestamp)


def document(value: agbom.Content, **kwargs: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(render(value, **kwargs))
    return parsed


def assert_valid(text: str) -> None:
    error = VALIDATOR.validate_str(text)
    assert error is None, f"not valid CycloneDX 1.6: {error}"


def examples_catalog() -> compilation.Catalog:
    return agbom_cli.load_catalog([str(EXAMPLES)], default_namespace="default", settings=OperatorSettings())


def all_items(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every component and service (nested ones too) by bom-ref."""
    out: dict[str, Mapping[str, Any]] = {}

    def walk(items: Iterable[Mapping[str, Any]], key: str) -> None:
        for item in items:
            out[str(item["bom-ref"])] = item
            walk(item.get(key, ()), key)

    walk(doc.get("components", ()), "components")
    walk(doc.get("services", ()), "services")
    return out


def props(item: Mapping[str, Any]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for p in item.get("properties", ()):
        grouped.setdefault(p["name"], []).append(p["value"])
    return grouped
