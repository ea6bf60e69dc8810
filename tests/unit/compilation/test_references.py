"""Reference resolution: missing and forbidden refs with field paths, dependencies, D6 model addresses.

Cases: each kind of missing reference (adapter, route, primary/fallback model, tool, MCP server, memory,
RAG) with its path and message, and the key still listed as a dependency (D10: the controller recompiles
when it appears); references into non-shared namespaces (D2) and into a shared one; the dependency set
(Namespace included only when its label could decide the environment); D6 model resolution: the route's
namespace first, then the shared namespaces in order, the provider must match.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain import compilation
from joch.domain.compilation import ObjectKey
from tests.unit.compilation import factories as f


@pytest.mark.parametrize(
    ("kind", "name", "path", "message"),
    [
        pytest.param(
            "FrameworkAdapter",
            "py-sdk",
            "spec.framework.adapterRef",
            "FrameworkAdapter py-sdk not found",
            id="adapter",
        ),
        pytest.param(
            "ModelRoute",
            "default",
            "spec.modelRoute.routeRef",
            "ModelRoute team-a/default not found",
            id="route",
        ),
        pytest.param(
            "Model",
            "big",
            "ModelRoute/team-a/default: spec.strategy.primary",
            "Model team-a/big not found (model address openai:big, looked in team-a, joch-system)",
            id="primary model",
        ),
        pytest.param(
            "Model",
            "backup",
            "ModelRoute/team-a/default: spec.strategy.fallback[0]",
            "Model team-a/backup not found (model address anthropic:backup, looked in team-a, joch-system)",
            id="fallback model",
        ),
        pytest.param(
            "Tool", "create-ticket", "spec.tools[1]", "Tool team-a/create-ticket not found", id="tool"
        ),
        pytest.param(
            "MCPServer", "github", "spec.mcpServers[0]", "MCPServer team-a/github not found", id="mcp"
        ),
        pytest.param(
            "Memory", "scratch", "spec.memories.working", "Memory team-a/scratch not found", id="memory"
        ),
        pytest.param("RAG", "docs", "spec.ragRefs[0]", "RAG team-a/docs not found", id="rag"),
    ],
)
def test_missing_reference_is_reported_with_its_path(kind: str, name: str, path: str, message: str) -> None:
    compiled = f.compile_one(f.without(f.world(), kind, name))
    assert [(p.reason, p.path, p.message) for p in compiled.problems] == [("MissingReference", path, message)]
    assert not compiled.ok
    assert compiled.reference_problems == compiled.problems
    assert compiled.compile_problems == ()
    namespace = None if kind == "FrameworkAdapter" else f.NS
    assert ObjectKey(kind, namespace, name) in compiled.dependencies


def test_everything_missing_is_reported_at_once_and_a_manifest_is_still_built() -> None:
    compiled = f.compile_one([f.agent()])
    assert [p.path for p in compiled.problems] == [
        "spec.framework.adapterRef",
        "spec.modelRoute.routeRef",
        "spec.tools[0]",
        "spec.tools[1]",
        "spec.mcpServers[0]",
        "spec.memories.working",
        "spec.ragRefs[0]",
        "spec.policies[0]",
    ]
    spec = compiled.manifest["spec"]
    assert spec["tools"] == []
    assert spec["modelRoute"] == {"name": "default"}
    assert spec["framework"] == {"adapter": "py-sdk", "entrypoint": "./agent.py", "image": "reg/agent:1"}


@pytest.mark.parametrize(
    ("agent_changes", "path", "kind"),
    [
        pytest.param(
            {"modelRoute": {"routeRef": {"name": "r", "namespace": "other"}}},
            "spec.modelRoute.routeRef",
            "ModelRoute",
            id="route",
        ),
        pytest.param(
            {"mcpServers": [{"name": "github", "namespace": "other"}]},
            "spec.mcpServers[0]",
            "MCPServer",
            id="mcp",
        ),
        pytest.param(
            {"memories": {"working": {"name": "m", "namespace": "other"}}},
            "spec.memories.working",
            "Memory",
            id="memory",
        ),
        pytest.param(
            {"ragRefs": [{"name": "docs", "namespace": "other"}]}, "spec.ragRefs[0]", "RAG", id="rag"
        ),
        pytest.param(
            {"policies": [{"name": "explicit", "namespace": "other"}]},
            "spec.policies[0]",
            "Policy",
            id="policy",
        ),
    ],
)
def test_reference_into_a_non_shared_namespace_is_forbidden(
    agent_changes: dict[str, Any], path: str, kind: str
) -> None:
    compiled = f.compile_one(f.replace(f.world(), f.agent(**agent_changes)))
    assert f.problems(compiled) == [("ForbiddenReference", path)]
    assert compiled.problems[0].message.startswith(f"{kind} other/")
    assert "shared namespaces: joch-system" in compiled.problems[0].message
    assert not any(key.namespace == "other" for key in compiled.dependencies)


def test_reference_into_a_shared_namespace_resolves_and_is_written_with_its_namespace() -> None:
    objects = f.replace(
        f.world(),
        f.mcp_server("github", "joch-system"),
        f.agent(mcpServers=[{"name": "github", "namespace": "joch-system"}]),
    )
    compiled = f.compile_one(objects)
    assert compiled.ok, compiled.problems
    assert compiled.manifest["spec"]["mcpServers"][0]["namespace"] == "joch-system"
    assert ObjectKey("MCPServer", "joch-system", "github") in compiled.dependencies


def test_dependencies_hold_every_consulted_object() -> None:
    objects = [*f.world(), f.team(), f.policy("sel", applies_to={"agents": {"selector": {}}})]
    gathered = f.gather_one(objects)
    assert gathered.dependencies == {
        ObjectKey("FrameworkAdapter", None, "py-sdk"),
        ObjectKey("ModelRoute", f.NS, "default"),
        ObjectKey("Model", f.NS, "big"),
        ObjectKey("Model", f.NS, "backup"),
        ObjectKey("Tool", f.NS, "search"),
        ObjectKey("Tool", f.NS, "create-ticket"),
        ObjectKey("MCPServer", f.NS, "github"),
        ObjectKey("Memory", f.NS, "scratch"),
        ObjectKey("RAG", f.NS, "docs"),
        ObjectKey("Policy", f.NS, "explicit"),
        ObjectKey("Policy", f.NS, "sel"),
        ObjectKey("Environment", None, "dev"),
        ObjectKey("Team", None, "team-a"),
        ObjectKey("Namespace", None, f.NS),
    }
    assert gathered.inputs[ObjectKey("Environment", None, "dev")] is None


def test_namespace_is_a_dependency_only_when_the_agent_has_no_env_label() -> None:
    with_label = f.gather_one(f.replace(f.world(), f.agent(labels={"env": "dev"})))
    assert ObjectKey("Namespace", None, f.NS) not in with_label.dependencies
    assert ObjectKey("Namespace", None, f.NS) in f.gather_one(f.world()).dependencies


# --- D6 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "expected_namespace", "tried"),
    [
        pytest.param([("big", "openai", f.NS)], f.NS, [f.NS], id="route namespace"),
        pytest.param(
            [("big", "openai", "joch-system")], "joch-system", [f.NS, "joch-system"], id="shared namespace"
        ),
        pytest.param(
            [("big", "openai", f.NS), ("big", "openai", "joch-system")],
            f.NS,
            [f.NS],
            id="route namespace wins",
        ),
        pytest.param(
            [("big", "azure", f.NS), ("big", "openai", "joch-system")],
            "joch-system",
            [f.NS, "joch-system"],
            id="provider must match",
        ),
        pytest.param(
            [("big", "openai", "elsewhere")], None, [f.NS, "joch-system"], id="non-shared namespace ignored"
        ),
    ],
)
def test_d6_model_resolution(
    models: list[tuple[str, str, str]], expected_namespace: str | None, tried: list[str]
) -> None:
    objects = [*f.without(f.world(), "Model", "big"), *(f.model(n, p, ns) for n, p, ns in models)]
    gathered = f.gather_one(objects)
    primary = gathered.models[0]
    assert primary.role == "primary"
    found_namespace = primary.model.metadata.namespace if primary.model is not None else None
    assert found_namespace == expected_namespace
    consulted = sorted(
        k.namespace or "" for k in gathered.dependencies if k.kind == "Model" and k.name == "big"
    )
    assert consulted == sorted(tried)
    cat = f.catalog(objects)
    via_catalog = cat.model_by_address("openai", "big", f.NS)
    assert (via_catalog.metadata.namespace if via_catalog else None) == expected_namespace


def test_d6_wrong_provider_is_explained() -> None:
    objects = [*f.without(f.world(), "Model", "big"), f.model("big", "azure")]
    compiled = f.compile_one(objects)
    assert f.problems(compiled) == [("MissingReference", "ModelRoute/team-a/default: spec.strategy.primary")]
    assert "team-a/big has provider azure" in compiled.problems[0].message


def test_d6_respects_the_configured_shared_namespaces() -> None:
    settings = f.with_settings(shared_namespaces=("models", "joch-system"))
    objects = [*f.without(f.world(), "Model", "big"), f.model("big", "openai", "models")]
    compiled = f.compile_one(objects, settings=settings)
    assert compiled.ok, compiled.problems
    assert compilation.find_model(f.catalog(objects), "openai", "big", f.NS, ("models",)) is not None
