"""Batch-A kinds: FrameworkAdapter, Policy, Model, ModelRoute, Tool, MCPServer, Memory, RAG, KnowledgeSource.

Case matrix, per kind:

- a minimal valid object parses and round-trips to the same wire form;
- static defaults (docs/catalog.md section 5, decision D14) appear after parse and in the CRD schema;
- an unknown enum value is rejected by pydantic, and the error names the field;
- the CRD renders structurally: no ``$ref``, every property described, group/scope/shortNames/categories
  as decided (D1, D2, D4), every CEL rule carries a message, every list/string/map is bounded (CEL cost),
  list-map keys are required, and the printer columns start with Ready.

CEL semantics are exercised against a real API server by the integration tests.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.tool import Tool
from joch.manifests import crds

KINDS_A = (
    v1alpha1.FrameworkAdapter,
    v1alpha1.Policy,
    v1alpha1.Model,
    v1alpha1.ModelRoute,
    v1alpha1.Tool,
    v1alpha1.MCPServer,
    v1alpha1.Memory,
    v1alpha1.RAG,
    v1alpha1.KnowledgeSource,
)


MINIMAL_SPECS: dict[type[meta.Resource], dict[str, Any]] = {
    FrameworkAdapter: {"framework": "langgraph"},
    Policy: {"rules": [{"when": {"tool.sideEffects.level": "financial"}, "action": "deny"}]},
    Model: {"provider": "openai", "model": "gpt-5"},
    ModelRoute: {"strategy": {"primary": "openai:gpt-5"}},
    Tool: {"type": "function"},
    MCPServer: {"transport": "streamable_http", "endpoint": {"url": "https://mcp.example.com/mcp"}},
    Memory: {"type": "working", "backend": {"type": "redis"}},
    RAG: {"sources": [{"name": "docs"}]},
    KnowledgeSource: {"type": "web"},
}

EXPECTED: dict[type[meta.Resource], tuple[str, str, tuple[str, ...]]] = {
    FrameworkAdapter: ("joch.dev", "Cluster", ("fwa",)),
    Policy: ("joch.dev", "Namespaced", ("jpol",)),
    Model: ("model.joch.dev", "Namespaced", ("mdl",)),
    ModelRoute: ("model.joch.dev", "Namespaced", ("mr", "route")),
    Tool: ("tools.joch.dev", "Namespaced", ("tl",)),
    MCPServer: ("tools.joch.dev", "Namespaced", ("mcp",)),
    Memory: ("memory.joch.dev", "Namespaced", ("mem",)),
    RAG: ("memory.joch.dev", "Namespaced", ("rag",)),
    KnowledgeSource: ("memory.joch.dev", "Namespaced", ("ks",)),
}

# (kind, spec overrides, wire path of the bad enum value)
BAD_ENUMS = [
    pytest.param(
        FrameworkAdapter, {"framework": "autogen"}, ("spec", "framework"), id="FrameworkAdapter framework"
    ),
    pytest.param(
        Policy,
        {
            "appliesTo": {
                "agents": {
                    "selector": {
                        "matchExpressions": [{"key": "team", "operator": "Matches", "values": ["a"]}]
                    }
                }
            }
        },
        ("spec", "appliesTo", "agents", "selector", "matchExpressions", 0, "operator"),
        id="Policy selector operator",
    ),
    pytest.param(
        Model, {"endpoint": {"type": "remote"}}, ("spec", "endpoint", "type"), id="Model endpoint type"
    ),
    pytest.param(
        ModelRoute,
        {"strategy": {"primary": "openai:gpt-5", "fallback": ["Not A Model"]}},
        ("spec", "strategy", "fallback", 0),
        id="ModelRoute fallback address",
    ),
    pytest.param(Tool, {"type": "grpc"}, ("spec", "type"), id="Tool type"),
    pytest.param(
        Tool,
        {"sideEffects": {"level": "harmless"}},
        ("spec", "sideEffects", "level"),
        id="Tool side-effect level",
    ),
    pytest.param(MCPServer, {"transport": "sse"}, ("spec", "transport"), id="MCPServer transport"),
    pytest.param(Memory, {"type": "cache"}, ("spec", "type"), id="Memory type"),
    pytest.param(
        RAG, {"vectorStore": {"type": "sqlite"}}, ("spec", "vectorStore", "type"), id="RAG vector store"
    ),
    pytest.param(KnowledgeSource, {"type": "ftp"}, ("spec", "type"), id="KnowledgeSource type"),
]


def _obj(kind: type[meta.Resource], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": kind.crd.api_version,
        "kind": kind.crd.kind,
        "metadata": {"name": "example"},
        "spec": {**MINIMAL_SPECS[kind], **spec},
    }


def _openapi(kind: type[meta.Resource]) -> dict[str, Any]:
    schema: dict[str, Any] = crds.render(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _schemas(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under node (properties, items, additionalProperties)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _schemas(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schemas(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schemas(node["additionalProperties"], f"{path}.*")


KIND_PARAMS = [pytest.param(k, id=k.crd.kind) for k in KINDS_A]


def test_kinds_a_lists_every_kind_once() -> None:
    assert len(set(KINDS_A)) == len(KINDS_A) == len(MINIMAL_SPECS) == 9


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_minimal_object_parses_and_round_trips(kind: type[meta.Resource]) -> None:
    obj = kind.model_validate(_obj(kind))
    again = kind.model_validate(obj.wire())
    assert again.wire() == obj.wire()


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_wrong_api_version_is_rejected(kind: type[meta.Resource]) -> None:
    with pytest.raises(pydantic.ValidationError, match="apiVersion"):
        kind.model_validate({**_obj(kind), "apiVersion": "joch.ai/v1alpha1"})


def test_policy_audit_defaults() -> None:
    policy = Policy.model_validate(_obj(Policy))
    assert policy.wire()["spec"]["audit"] == {"logRequests": True, "redactSecrets": True}
    audit = _openapi(Policy)["properties"]["spec"]["properties"]["audit"]
    assert audit["default"] == {}
    assert audit["properties"]["logRequests"]["default"] is True
    assert audit["properties"]["redactSecrets"]["default"] is True
    assert "default" not in audit["properties"]["logDecisions"]


def test_mcpserver_pins_server_version_by_default() -> None:
    server = MCPServer.model_validate(_obj(MCPServer))
    assert server.spec.security.pin_server_version is True
    assert server.wire()["spec"]["security"] == {"pinServerVersion": True}
    security = _openapi(MCPServer)["properties"]["spec"]["properties"]["security"]
    assert security["default"] == {}
    assert security["properties"]["pinServerVersion"]["default"] is True


def test_tool_name_may_contain_underscores_but_not_spaces() -> None:
    tool = Tool.model_validate(_obj(Tool, toolName="zendesk.create_ticket"))
    assert tool.spec.tool_name == "zendesk.create_ticket"
    with pytest.raises(pydantic.ValidationError, match="toolName"):
        Tool.model_validate(_obj(Tool, toolName="create ticket"))


def test_memory_schema_uses_wire_name_schema() -> None:
    memory = Memory.model_validate(_obj(Memory, schema={"fields": [{"name": "summary", "type": "text"}]}))
    assert memory.wire()["spec"]["schema"] == {"fields": [{"name": "summary", "type": "text"}]}
    assert "schema" in _openapi(Memory)["properties"]["spec"]["properties"]


@pytest.mark.parametrize("score", [-0.1, 1.5])
def test_trust_scores_are_between_zero_and_one(score: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="minTrustScore"):
        MCPServer.model_validate(_obj(MCPServer, security={"minTrustScore": score}))
    with pytest.raises(pydantic.ValidationError, match="trustScore"):
        MCPServer.model_validate({**_obj(MCPServer), "status": {"trustScore": score}})


def test_policy_rules_must_be_objects() -> None:
    with pytest.raises(pydantic.ValidationError, match="rules"):
        Policy.model_validate(_obj(Policy, rules=["deny"]))
    rules = _openapi(Policy)["properties"]["spec"]["properties"]["rules"]
    assert rules["items"]["type"] == "object"
    assert rules["maxItems"] > 0


@pytest.mark.parametrize(("kind", "spec", "loc"), BAD_ENUMS)
def test_invalid_enum_is_rejected_naming_the_field(
    kind: type[meta.Resource], spec: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        kind.model_validate(_obj(kind, **spec))
    locs = [error["loc"] for error in info.value.errors()]
    assert any(error_loc[: len(loc)] == loc for error_loc in locs), locs


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_crd_names_group_scope_and_categories(kind: type[meta.Resource]) -> None:
    group, scope, short_names = EXPECTED[kind]
    crd = crds.render(kind)
    assert crd["spec"]["group"] == group
    assert crd["spec"]["scope"] == scope
    assert crd["spec"]["names"]["shortNames"] == list(short_names)
    assert crd["spec"]["names"]["categories"] == ["joch"]
    assert crd["metadata"]["name"] == f"{kind.crd.plural}.{group}"
    assert crd["spec"]["versions"][0]["name"] == "v1alpha1"
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert kind.crd.description


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_crd_has_no_ref(kind: type[meta.Resource]) -> None:
    refs = [path for path, node in _walk(crds.render(kind)) if isinstance(node, dict) and "$ref" in node]
    assert refs == []


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_every_property_is_described(kind: type[meta.Resource]) -> None:
    missing = [
        f"{path}.{name}"
        for path, node in _schemas(_openapi(kind))
        for name, sub in node.get("properties", {}).items()
        if not sub.get("description") and not path.startswith(".metadata") and name != "metadata"
    ]
    assert missing == []


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_every_cel_rule_has_a_message(kind: type[meta.Resource]) -> None:
    rules = [
        rule for _, node in _schemas(_openapi(kind)) for rule in node.get("x-kubernetes-validations", [])
    ]
    for rule in rules:
        assert rule["rule"].strip()
        assert rule["message"].strip()


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_spec_is_bounded_for_cel_cost(kind: type[meta.Resource]) -> None:
    spec = _openapi(kind)["properties"]["spec"]
    unbounded = []
    for path, node in _schemas(spec, ".spec"):
        kind_of = node.get("type")
        if kind_of == "string" and "enum" not in node and "maxLength" not in node:
            unbounded.append(path)
        if kind_of == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind_of == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert unbounded == []


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_list_map_keys_are_required(kind: type[meta.Resource]) -> None:
    for path, node in _schemas(_openapi(kind)):
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            assert set(node["x-kubernetes-list-map-keys"]) <= required, path


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_printer_columns_start_with_ready(kind: type[meta.Resource]) -> None:
    columns = crds.render(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[0]["name"] == "Ready"
    assert columns[-1]["name"] == "Age"
    assert all(column["jsonPath"].startswith(".") for column in columns)


@pytest.mark.parametrize("kind", KIND_PARAMS)
def test_status_has_a_phase_enum(kind: type[meta.Resource]) -> None:
    status = _openapi(kind)["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "phase"} <= set(status)
    assert "Ready" in status["phase"]["enum"]
