"""Manifest fields: where each comes from (docs/catalog.md section 3, docs/compiled-manifest.md).

Cases: envelope and name <agent>-g<generation>; gateway and router URLs from the adapter's bindings,
else from the settings; requiresApproval from the Tool, else by side-effect level; toolName defaulting to
metadata.name; schemaSha over {inputSchema, outputSchema} and omitted without schemas; MCP pinnedVersion
and trustScore snapshot; memories, ragRefs, handoffs, budgets, team, observability; optional fields
omitted; an over-long manifest name; status_ref for Agent status.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain import compilation
from tests.unit.compilation import factories as f


def spec_of(compiled: compilation.Compiled) -> dict[str, Any]:
    spec: dict[str, Any] = compiled.manifest["spec"]
    return spec


def test_envelope_and_name() -> None:
    compiled = f.compile_one(f.replace(f.world(), f.agent(generation=14)))
    assert compiled.manifest["apiVersion"] == "internal.joch.dev/v1"
    assert compiled.manifest["kind"] == "CompiledAgentManifest"
    assert compiled.manifest["metadata"] == {"name": "triage-g14", "namespace": f.NS}
    assert compiled.name == "triage-g14"
    assert spec_of(compiled)["agent"] == {"name": "triage", "namespace": f.NS, "generation": 14}
    assert compiled.status_ref() == {
        "name": "triage-g14",
        "sha256": compiled.sha256,
        "sourceHash": compiled.source_hash,
        "generation": 14,
    }
    assert (compiled.framework, compiled.model_route) == ("py-sdk", "default")


def test_agent_without_generation_counts_as_generation_1() -> None:
    compiled = f.compile_one(f.replace(f.world(), f.agent(generation=None)))
    assert compiled.name == "triage-g1"


@pytest.mark.parametrize(
    ("bindings", "expected"),
    [
        pytest.param(
            None,
            ("http://joch-tool-gateway", "http://joch-mcp-gateway", "http://joch-model-router"),
            id="settings",
        ),
        pytest.param(
            {"toolGatewayUrl": "http://t", "mcpGatewayUrl": "http://m", "modelRouterUrl": "http://r"},
            ("http://t", "http://m", "http://r"),
            id="adapter bindings win",
        ),
        pytest.param(
            {"toolGatewayUrl": "http://t"},
            ("http://t", "http://joch-mcp-gateway", "http://joch-model-router"),
            id="partly bound",
        ),
    ],
)
def test_gateway_urls(bindings: dict[str, str] | None, expected: tuple[str, str, str]) -> None:
    spec = spec_of(f.compile_one(f.replace(f.world(), f.adapter(bindings=bindings))))
    assert {t["gatewayUrl"] for t in spec["tools"]} == {expected[0]}
    assert spec["mcpServers"][0]["gatewayUrl"] == expected[1]
    assert spec["modelRouterUrl"] == expected[2]


def test_settings_supply_memory_trace_and_agbom_endpoints() -> None:
    settings = f.with_settings(memory_url="http://mem", trace_url="http://tr", agbom_url="http://ab")
    spec = spec_of(f.compile_one(f.world(), settings=settings))
    assert spec["memories"] == {"working": {"endpoint": "http://mem", "namespace": f.NS, "name": "scratch"}}
    assert spec["observability"] == {
        "tracing": "enabled",
        "agbom": "enabled",
        "redactSensitiveData": True,
        "traceEndpoint": "http://tr",
        "abomEndpoint": "http://ab",
    }


@pytest.mark.parametrize(
    ("side_effects", "expected_level", "expected_approval"),
    [
        pytest.param({"level": "read_only"}, "read_only", False, id="read_only"),
        pytest.param({"level": "financial"}, "financial", True, id="financial defaults to approval"),
        pytest.param({"level": "privileged"}, "privileged", True, id="privileged defaults to approval"),
        pytest.param(
            {"level": "financial", "requiresApproval": False}, "financial", False, id="explicit false wins"
        ),
        pytest.param({"level": "read_only", "requiresApproval": True}, "read_only", True, id="explicit true"),
        pytest.param(None, "unknown", True, id="no sideEffects: unknown, risky"),
    ],
)
def test_tool_side_effect_and_approval(
    side_effects: dict[str, Any] | None, expected_level: str, expected_approval: bool
) -> None:
    tool = f.tool("search", sideEffects=side_effects)
    (entry, _) = spec_of(f.compile_one(f.replace(f.world(), tool)))["tools"]
    assert (entry["sideEffect"], entry["requiresApproval"]) == (expected_level, expected_approval)


def test_tool_name_and_schema_sha() -> None:
    search, ticket = spec_of(f.compile_one(f.world()))["tools"]
    assert (search["name"], search["toolName"]) == ("search", "search")
    assert (ticket["name"], ticket["toolName"]) == ("create-ticket", "tickets.create_ticket")
    expected = compilation.sha256_hex(
        compilation.canonical_json(
            {
                "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "outputSchema": {"type": "object"},
            }
        )
    )
    assert ticket["schemaSha"] == f"sha256:{expected}"
    assert search["schemaSha"] != ticket["schemaSha"]


def test_tool_without_schemas_has_no_schema_sha() -> None:
    tool = f.tool("search", inputSchema=None)
    (entry, _) = spec_of(f.compile_one(f.replace(f.world(), tool)))["tools"]
    assert "schemaSha" not in entry


def test_mcp_server_snapshot_and_optional_fields() -> None:
    spec = spec_of(f.compile_one(f.replace(f.world(), f.mcp_server(pinned_version=None, trust_score=None))))
    assert spec["mcpServers"] == [{"name": "github", "gatewayUrl": "http://joch-mcp-gateway"}]
    spec = spec_of(f.compile_one(f.world()))
    assert spec["mcpServers"] == [
        {
            "name": "github",
            "gatewayUrl": "http://joch-mcp-gateway",
            "pinnedVersion": "1.2.3",
            "trustScore": 0.9,
        }
    ]


def test_collections_budgets_handoffs_and_team() -> None:
    agent = f.agent(
        handoffs={"allowedAgents": ["escalation", "billing"]},
        budgets={"tokenLimitPerRun": 10, "costLimitUsdPerDay": 2.5, "toolCallLimitPerRun": 3},
    )
    spec = spec_of(f.compile_one(f.replace(f.world(), agent, f.team())))
    assert spec["handoffs"] == {"allowedAgents": ["escalation", "billing"]}
    assert spec["budgets"] == {"tokenLimitPerRun": 10, "costLimitUsdPerDay": 2.5, "toolCallLimitPerRun": 3}
    assert spec["ragRefs"] == [{"name": "docs"}]
    assert spec["team"] == "team-a"


def test_minimal_agent_omits_what_it_does_not_use() -> None:
    agent = f.agent(
        tools=None,
        mcpServers=None,
        memories=None,
        ragRefs=None,
        policies=None,
        budgets=None,
        modelRoute=None,
        framework={"entrypoint": None, "image": None},
    )
    spec = spec_of(f.compile_one(f.replace(f.world(), agent)))
    assert spec["tools"] == []
    assert spec["mcpServers"] == []
    assert spec["ragRefs"] == []
    assert spec["memories"] == {}
    assert spec["policies"] == {"resolved": []}
    assert spec["framework"] == {"adapter": "py-sdk", "adapterImage": "reg/adapter:1"}
    for absent in ("budgets", "handoffs", "modelRoute", "modelRouterUrl", "team"):
        assert absent not in spec


def test_over_long_manifest_name_is_a_problem() -> None:
    long_name = ".".join(["a" * 60] * 4)  # 243 characters, a valid Agent name
    objects = f.replace(f.world(), f.agent(long_name, generation=1234567890))
    compiled = f.compile_one(objects, agent_name=long_name)
    assert f.problems(compiled) == [("InvalidName", "metadata.name")]
