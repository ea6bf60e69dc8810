"""Factories for compilation tests: each returns a parsed model with sensible defaults and overrides.

``world()`` builds a small, fully consistent fleet (one Agent in namespace ``team-a`` that uses every
kind of reference) that compiles without problems; tests change one thing and look at the effect.
Every factory takes ``generation`` and ``uid`` so the source hash can be exercised.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterable, Mapping
from typing import Any

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.domain import compilation
from joch.domain.settings import OperatorSettings

NS = "team-a"
SETTINGS = OperatorSettings()

ALL_CAPABILITIES = {
    "toolBinding": True,
    "mcpBinding": True,
    "modelRouterBinding": True,
    "streaming": True,
    "a2a": True,
    "structuredOutput": True,
}
FULL_MODEL_CAPABILITIES = {"text": True, "toolCalling": True, "structuredOutput": True, "streaming": True}


def _metadata(
    name: str, namespace: str | None, generation: int | None, uid: str | None, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if namespace is not None:
        out["namespace"] = namespace
    if generation is not None:
        out["generation"] = generation
    if uid is not None:
        out["uid"] = uid
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge; an override value of None deletes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def agent(
    name: str = "triage",
    namespace: str = NS,
    *,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = "uid-agent",
    **spec: Any,
) -> Agent:
    base: dict[str, Any] = {
        "framework": {"adapterRef": {"name": "py-sdk"}, "entrypoint": "./agent.py", "image": "reg/agent:1"},
        "modelRoute": {"routeRef": {"name": "default"}},
        "tools": [{"name": "search"}, {"name": "create-ticket"}],
        "mcpServers": [{"name": "github"}],
        "memories": {"working": {"name": "scratch"}},
        "ragRefs": [{"name": "docs"}],
        "policies": [{"name": "explicit"}],
        "budgets": {"tokenLimitPerRun": 1000},
    }
    return Agent.model_validate(
        {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "Agent",
            "metadata": _metadata(name, namespace, generation, uid, labels=dict(labels or {"team": "a"})),
            "spec": _merge(base, spec),
        }
    )


def adapter(
    name: str = "py-sdk",
    *,
    capabilities: Mapping[str, bool] | None = None,
    bindings: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = "uid-adapter",
) -> FrameworkAdapter:
    spec: dict[str, Any] = {
        "framework": "custom-python",
        "adapterImage": "reg/adapter:1",
        "capabilities": dict(ALL_CAPABILITIES if capabilities is None else capabilities),
    }
    if bindings is not None:
        spec["bindings"] = dict(bindings)
    return FrameworkAdapter.model_validate(
        {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "FrameworkAdapter",
            "metadata": _metadata(name, None, generation, uid),
            "spec": spec,
        }
    )


def model(
    name: str = "big",
    provider: str = "openai",
    namespace: str = NS,
    *,
    capabilities: Mapping[str, bool] | None = None,
    context_window: int | None = 200_000,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
) -> Model:
    spec: dict[str, Any] = {
        "provider": provider,
        "model": f"{name}-id",
        "capabilities": dict(FULL_MODEL_CAPABILITIES if capabilities is None else capabilities),
    }
    if context_window is not None:
        spec["limits"] = {"contextWindowTokens": context_window}
    doc: dict[str, Any] = {
        "apiVersion": "model.joch.dev/v1alpha1",
        "kind": "Model",
        "metadata": _metadata(name, namespace, generation, uid or f"uid-model-{namespace}-{name}"),
        "spec": spec,
    }
    if status is not None:
        doc["status"] = dict(status)
    return Model.model_validate(doc)


def route(
    name: str = "default",
    namespace: str = NS,
    *,
    primary: str = "openai:big",
    fallback: Iterable[str] | None = ("anthropic:backup",),
    requirements: Mapping[str, Any] | None = None,
    generation: int | None = 1,
    uid: str | None = "uid-route",
) -> ModelRoute:
    strategy: dict[str, Any] = {"primary": primary}
    if fallback is not None:
        strategy["fallback"] = list(fallback)
    spec: dict[str, Any] = {"strategy": strategy}
    if requirements is not None:
        spec["requirements"] = dict(requirements)
    return ModelRoute.model_validate(
        {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "ModelRoute",
            "metadata": _metadata(name, namespace, generation, uid),
            "spec": spec,
        }
    )


def tool(
    name: str = "search",
    namespace: str = NS,
    *,
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Tool:
    base: dict[str, Any] = {
        "type": "function",
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "sideEffects": {"level": "read_only"},
    }
    return Tool.model_validate(
        {
            "apiVersion": "tools.joch.dev/v1alpha1",
            "kind": "Tool",
            "metadata": _metadata(name, namespace, generation, uid or f"uid-tool-{name}"),
            "spec": _merge(base, spec),
        }
    )


def mcp_server(
    name: str = "github",
    namespace: str = NS,
    *,
    pinned_version: str | None = "1.2.3",
    trust_score: float | None = 0.9,
    generation: int | None = 1,
    uid: str | None = None,
) -> MCPServer:
    security: dict[str, Any] = {}
    if pinned_version is not None:
        security["pinnedVersion"] = pinned_version
    doc: dict[str, Any] = {
        "apiVersion": "tools.joch.dev/v1alpha1",
        "kind": "MCPServer",
        "metadata": _metadata(name, namespace, generation, uid or f"uid-mcp-{name}"),
        "spec": {
            "transport": "streamable_http",
            "endpoint": {"url": "https://mcp.example.com"},
            "security": security,
        },
    }
    if trust_score is not None:
        doc["status"] = {"trustScore": trust_score}
    return MCPServer.model_validate(doc)


def memory(name: str = "scratch", namespace: str = NS, *, generation: int | None = 1) -> Memory:
    return Memory.model_validate(
        {
            "apiVersion": "memory.joch.dev/v1alpha1",
            "kind": "Memory",
            "metadata": _metadata(name, namespace, generation, f"uid-memory-{name}"),
            "spec": {"type": "working", "backend": {"type": "redis"}},
        }
    )


def rag(name: str = "docs", namespace: str = NS, *, generation: int | None = 1) -> RAG:
    return RAG.model_validate(
        {
            "apiVersion": "memory.joch.dev/v1alpha1",
            "kind": "RAG",
            "metadata": _metadata(name, namespace, generation, f"uid-rag-{name}"),
            "spec": {"sources": [{"name": "handbook"}]},
        }
    )


NOOP_RULES: list[dict[str, Any]] = [{"when": {"cost.runUsd": ">1000"}, "action": "deny"}]
"""A rule that never fires at compile time (cost is runtime-only, so preflight skips it)."""

SELECTS_NOTHING: Mapping[str, Any] = {
    "agents": {"selector": {"matchLabels": {"joch.test/selected": "never"}}}
}
"""The default appliesTo of :func:`policy`: bound only explicitly, by an Environment or by a Team. (A Policy
without appliesTo governs every Agent of its namespace.)"""


def policy(
    name: str,
    namespace: str = NS,
    *,
    rules: list[dict[str, Any]] | None = None,
    applies_to: Mapping[str, Any] | None = SELECTS_NOTHING,
    generation: int | None = 1,
    uid: str | None = None,
) -> Policy:
    """A Policy; ``applies_to=None`` leaves spec.appliesTo out."""
    spec: dict[str, Any] = {"rules": copy.deepcopy(rules if rules is not None else NOOP_RULES)}
    if applies_to is not None:
        spec["appliesTo"] = copy.deepcopy(dict(applies_to))
    return Policy.model_validate(
        {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "Policy",
            "metadata": _metadata(name, namespace, generation, uid or f"uid-policy-{namespace}-{name}"),
            "spec": spec,
        }
    )


def environment(
    name: str = "dev",
    *,
    policies: Iterable[Mapping[str, str]] = (),
    allowed_providers: Iterable[str] | None = None,
    generation: int | None = 1,
) -> Environment:
    spec: dict[str, Any] = {"policies": [dict(p) for p in policies]}
    if allowed_providers is not None:
        spec["allowedProviders"] = list(allowed_providers)
    return Environment.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Environment",
            "metadata": _metadata(name, None, generation, f"uid-env-{name}"),
            "spec": spec,
        }
    )


def team(
    name: str = "team-a",
    *,
    namespaces: Iterable[str] = (NS,),
    default_policies: Iterable[str] = (),
    generation: int | None = 1,
) -> Team:
    return Team.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": _metadata(name, None, generation, f"uid-team-{name}"),
            "spec": {"namespaces": list(namespaces), "defaultPolicies": list(default_policies)},
        }
    )


def world() -> list[meta.Resource]:
    """Every object the default :func:`agent` needs, in a fixed order."""
    return [
        adapter(),
        route(),
        model("big", "openai"),
        model("backup", "anthropic"),
        tool("search"),
        tool(
            "create-ticket",
            toolName="tickets.create_ticket",
            sideEffects={"level": "external_write"},
            outputSchema={"type": "object"},
        ),
        mcp_server(),
        memory(),
        rag(),
        policy("explicit"),
        agent(),
    ]


def catalog(
    objects: Iterable[meta.Resource],
    *,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    settings: OperatorSettings = SETTINGS,
) -> compilation.Catalog:
    return compilation.Catalog(
        objects, namespace_labels=namespace_labels, shared_namespaces=settings.shared_namespaces
    )


def replace(objects: Iterable[meta.Resource], *new: meta.Resource) -> list[meta.Resource]:
    """``objects`` with each of ``new`` replacing the object of the same key (or appended)."""
    by_key = {compilation.key_of(obj): obj for obj in objects}
    for obj in new:
        by_key[compilation.key_of(obj)] = obj
    return list(by_key.values())


def without(objects: Iterable[meta.Resource], kind: str, name: str) -> list[meta.Resource]:
    return [obj for obj in objects if not (type(obj).crd.kind == kind and obj.metadata.name == name)]


def shuffled(objects: Iterable[meta.Resource], seed: int) -> list[meta.Resource]:
    items = list(objects)
    random.Random(seed).shuffle(items)
    return items


def compile_one(
    objects: Iterable[meta.Resource],
    *,
    agent_name: str = "triage",
    namespace: str = NS,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    settings: OperatorSettings = SETTINGS,
) -> compilation.Compiled:
    """Compile one Agent of ``objects`` with a fresh Catalog."""
    cat = catalog(objects, namespace_labels=namespace_labels, settings=settings)
    found = cat.get(Agent, namespace, agent_name)
    assert found is not None, f"no Agent {namespace}/{agent_name}"
    return compilation.compile_agent(compilation.gather(found, cat, settings), settings)


def gather_one(
    objects: Iterable[meta.Resource],
    *,
    agent_name: str = "triage",
    namespace: str = NS,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    settings: OperatorSettings = SETTINGS,
) -> compilation.Gathered:
    cat = catalog(objects, namespace_labels=namespace_labels, settings=settings)
    found = cat.get(Agent, namespace, agent_name)
    assert found is not None
    return compilation.gather(found, cat, settings)


def with_settings(**changes: Any) -> OperatorSettings:
    return dataclasses.replace(SETTINGS, **changes)


def problems(compiled: compilation.Compiled) -> list[tuple[str, str]]:
    """(reason, path) of every problem, in order."""
    return [(p.reason, p.path) for p in compiled.problems]
