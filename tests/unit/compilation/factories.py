"""The compilation tests' fleet, built with the factories of tests/factories.py.

Each kind here is :func:`tests.factories.preset` of the one factory for that kind: the same arguments, the
names of this fleet as defaults (namespace ``team-a``, Agent triage, route default, models openai:big and
anthropic:backup, Tools search and create-ticket...), and a parsed model as the result. ``world()`` builds
the fleet, fully consistent (one Agent that uses every kind of reference) and compiling without problems;
tests change one thing and look at the effect. Every object takes ``generation`` and ``uid`` so the source
hash can be exercised.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable, Mapping
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
from tests import factories

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


AGENT_SPEC: Mapping[str, Any] = {
    "framework": {"adapterRef": {"name": "py-sdk"}, "entrypoint": "./agent.py", "image": "reg/agent:1"},
    "modelRoute": {"routeRef": {"name": "default"}},
    "tools": [{"name": "search"}, {"name": "create-ticket"}],
    "mcpServers": [{"name": "github"}],
    "memories": {"working": {"name": "scratch"}},
    "ragRefs": [{"name": "docs"}],
    "policies": [{"name": "explicit"}],
    "budgets": {"tokenLimitPerRun": 1000},
}
"""The Agent triage uses every kind of reference."""

SELECTS_NOTHING: Mapping[str, Any] = {
    "agents": {"selector": {"matchLabels": {"joch.test/selected": "never"}}}
}
"""The default appliesTo of :func:`policy` here: bound only explicitly, by an Environment or by a Team. (A
Policy without appliesTo governs every Agent of its namespace; pass ``applies_to=None`` for that.)"""

# This suite's fleet: the factories of tests/factories.py with this world's names, returning models.
agent: Callable[..., Agent] = factories.preset(
    factories.agent, name="triage", namespace=NS, labels={"team": "a"}, uid="uid-agent", **AGENT_SPEC
)
adapter: Callable[..., FrameworkAdapter] = factories.preset(
    factories.adapter,
    capabilities=ALL_CAPABILITIES,
    spec={"adapterImage": "reg/adapter:1"},
    uid="uid-adapter",
)
model: Callable[..., Model] = factories.preset(
    factories.model, name="big", provider="openai", namespace=NS, uid_prefix="uid-model"
)
route: Callable[..., ModelRoute] = factories.preset(
    factories.route,
    name="default",
    namespace=NS,
    primary="openai:big",
    fallback=("anthropic:backup",),
    uid="uid-route",
)
tool: Callable[..., Tool] = factories.preset(
    factories.tool,
    name="search",
    namespace=NS,
    uid_prefix="uid-tool",
    inputSchema={"type": "object", "properties": {"q": {"type": "string"}}},
)
mcp_server: Callable[..., MCPServer] = factories.preset(
    factories.mcp_server,
    namespace=NS,
    pinned_version="1.2.3",
    trust_score=0.9,
    uid_prefix="uid-mcp",
    endpoint={"url": "https://mcp.example.com"},
)
memory: Callable[..., Memory] = factories.preset(factories.memory, namespace=NS, uid_prefix="uid-memory")
rag: Callable[..., RAG] = factories.preset(factories.rag, namespace=NS, uid_prefix="uid-rag")
policy: Callable[..., Policy] = factories.preset(
    factories.policy, namespace=NS, applies_to=SELECTS_NOTHING, uid_prefix="uid-policy"
)
environment: Callable[..., Environment] = factories.preset(
    factories.environment, policies=(), uid_prefix="uid-env"
)
team: Callable[..., Team] = factories.preset(
    factories.team, name="team-a", namespaces=(NS,), uid_prefix="uid-team"
)

NOOP_RULES = factories.NOOP_RULES


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
