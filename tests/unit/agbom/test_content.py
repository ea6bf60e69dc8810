"""describe/render: determinism, options, completeness, secrets and each high-risk rule."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from joch.api.v1alpha1.agbom import AgBOMSpec
from joch.domain import agbom
from joch.domain.compilation import ObjectKey
from tests.unit.agbom import fleet


def _replace(objects: list[Any], new: Any) -> list[Any]:
    kind, name = new.kind, new.metadata.name
    return [new if (o.kind, o.metadata.name) == (kind, name) else o for o in objects]


def _without(objects: list[Any], kind: str, name: str) -> list[Any]:
    return [o for o in objects if (o.kind, o.metadata.name) != (kind, name)]


def test_world_is_complete_valid_and_low_risk() -> None:
    content = fleet.content(fleet.world())
    assert content.complete
    assert content.missing == ()
    assert content.high_risk == ()
    assert content.agent_namespace == fleet.NS
    assert content.agent_name == "bot"
    assert content.dependencies == frozenset({ObjectKey("KnowledgeSource", fleet.NS, "handbook")})
    fleet.assert_valid(fleet.render(content))


def test_describe_is_deterministic() -> None:
    first, second = fleet.content(fleet.world()), fleet.content(list(reversed(fleet.world())))
    assert first.content_hash == second.content_hash
    assert first.body == second.body
    assert fleet.render(first) == fleet.render(second)
    assert fleet.render(first).encode() == fleet.render(first).encode()


def test_timestamp_changes_only_the_timestamp() -> None:
    content = fleet.content(fleet.world())
    one = json.loads(fleet.render(content, timestamp="2026-01-01T00:00:00Z"))
    two = json.loads(fleet.render(content, timestamp="2027-06-30T12:00:00Z"))
    assert one["metadata"].pop("timestamp") == "2026-01-01T00:00:00Z"
    assert two["metadata"].pop("timestamp") == "2027-06-30T12:00:00Z"
    assert one == two


def test_generation_is_the_version_and_serial_is_per_agent() -> None:
    content = fleet.content(fleet.world())
    doc = fleet.document(content, generation=7)
    assert doc["version"] == 7
    assert doc["serialNumber"] == agbom.serial_number(fleet.UID)
    assert doc["serialNumber"] == f"urn:uuid:{uuid.uuid5(agbom.NAMESPACE, fleet.UID)}"
    assert agbom.serial_number("other") != agbom.serial_number(fleet.UID)


def test_a_model_change_changes_the_content_hash() -> None:
    base = fleet.content(fleet.world())
    changed = fleet.content(_replace(fleet.world(), fleet.model("big", "openai", model_id="big-2026")))
    assert changed.content_hash != base.content_hash
    item = fleet.all_items(fleet.document(changed))["model:openai:big"]
    assert item["version"] == "big-2026"


def test_model_component_and_card() -> None:
    doc = fleet.document(fleet.content(fleet.world()))
    item = fleet.all_items(doc)["model:openai:big"]
    assert item["type"] == "machine-learning-model"
    assert item["name"] == "openai:big"
    assert item["supplier"] == {"name": "openai"}
    assert fleet.props(item)["joch:role"] == ["primary"]
    card = item["modelCard"]
    assert card["modelParameters"]["task"] == "text-generation"
    assert card["modelParameters"]["inputs"] == [{"format": "text"}]
    card_props = {p["name"]: p["value"] for p in card["properties"]}
    assert card_props["joch:contextWindowTokens"] == "128000"
    assert card_props["joch:capability:toolCalling"] == "true"
    assert fleet.props(fleet.all_items(doc)["model:anthropic:backup"])["joch:role"] == ["fallback"]


def test_images_are_containers_with_oci_purls() -> None:
    items = fleet.all_items(fleet.document(fleet.content(fleet.world())))
    digest = "sha256:" + "a" * 64
    adapter = items[f"image:ghcr.io/acme/adapter@{digest}"]
    assert adapter["type"] == "container"
    assert adapter["version"] == digest
    assert adapter["purl"] == f"pkg:oci/adapter@sha256:{'a' * 64}?repository_url=ghcr.io/acme/adapter"
    assert adapter["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    agent_image = items["image:registry.example.com/team-a/bot:2.0"]
    assert "version" not in agent_image
    assert agent_image["purl"] == "pkg:oci/bot?repository_url=registry.example.com/team-a/bot&tag=2.0"
    assert fleet.props(agent_image)["joch:role"] == ["agent"]


def test_mcp_server_with_nested_tools_and_dependencies() -> None:
    doc = fleet.document(fleet.content(fleet.world()))
    items = fleet.all_items(doc)
    server = items["mcp:team-a/github"]
    assert server["version"] == "1.0.0"
    assert server["endpoints"] == ["https://github.example.com/mcp"]
    assert fleet.props(server)["joch:pinned"] == ["true"]
    nested = sorted(s["bom-ref"] for s in server["services"])  # nested order is the library's
    assert nested == ["mcptool:team-a/github/gh-search", "tool:team-a/gh-issues"]
    top = [s["bom-ref"] for s in doc["services"]]
    assert "tool:team-a/gh-issues" not in top
    assert "tool:team-a/search" in top
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert deps["mcp:team-a/github"] == nested
    assert "mcp:team-a/github" in deps[fleet.UID]
    assert deps["rag:team-a/docs"] == ["knowledge:team-a/handbook"]


def test_policies_memories_and_knowledge_are_data() -> None:
    objects = [*fleet.world()]
    content = fleet.content(
        objects, compiled_hook=lambda spec: spec["policies"].update(resolved=["guard@v3"])
    )
    items = fleet.all_items(fleet.document(content))
    policy = items["policy:guard@v3"]
    assert (policy["type"], policy["name"], policy["version"]) == ("data", "guard", "v3")
    assert policy["data"] == [{"type": "configuration", "name": "guard"}]
    for ref in ("memory:team-a/bot-notes", "rag:team-a/docs", "knowledge:team-a/handbook"):
        assert items[ref]["type"] == "data"
        assert items[ref]["hashes"][0]["alg"] == "SHA-256"
        assert len(items[ref]["hashes"][0]["content"]) == 64


def test_memory_spec_change_changes_its_hash() -> None:
    base = fleet.all_items(fleet.document(fleet.content(fleet.world())))["memory:team-a/bot-notes"]
    other = fleet.memory()
    other.spec.description = "changed"
    changed = fleet.all_items(fleet.document(fleet.content(_replace(fleet.world(), other))))
    assert changed["memory:team-a/bot-notes"]["hashes"] != base["hashes"]


def test_secrets_only_on_request_and_never_values() -> None:
    secret_names = ("openai-key", "anthropic-key", "github-token", "ticket-token")
    hidden = fleet.render(fleet.content(fleet.world()))
    for name in secret_names:
        assert name not in hidden
    shown = fleet.render(fleet.content(fleet.world(), options=agbom.Options(secrets=True)))
    fleet.assert_valid(shown)
    items = fleet.all_items(json.loads(shown))
    for name in secret_names:
        item = items[f"secret:team-a/{name}"]
        assert item["name"] == f"secret:team-a/{name}"
        assert fleet.props(item)["joch:kind"] == ["Secret"]
    assert fleet.props(items["secret:team-a/ticket-token"])["joch:usedBy"] == ["tool:team-a/create-ticket"]


@pytest.mark.parametrize(
    ("option", "prefixes"),
    [
        ("models", ("model:",)),
        ("tools", ("tool:",)),
        ("mcp_servers", ("mcp:", "mcptool:")),
        ("policies", ("policy:",)),
        ("memory", ("memory:",)),
        ("knowledge", ("rag:", "knowledge:")),
    ],
)
def test_options_switch_classes_off(option: str, prefixes: tuple[str, ...]) -> None:
    hook = lambda spec: spec["policies"].update(resolved=["guard@v1"])  # noqa: E731
    on = fleet.all_items(fleet.document(fleet.content(fleet.world(), compiled_hook=hook)))
    assert any(ref.startswith(prefixes) for ref in on)
    text = fleet.render(
        fleet.content(fleet.world(), options=agbom.Options(**{option: False}), compiled_hook=hook)
    )
    fleet.assert_valid(text)
    off = fleet.all_items(json.loads(text))
    assert not any(ref.startswith(prefixes) for ref in off)
    # Without Tools, an MCP server still names the tools it serves (as discovered MCP tools).
    stand_ins = {ref for ref in off if ref.startswith("mcptool:")} if option == "tools" else set()
    assert set(off) - stand_ins < set(on)


def test_mcp_tools_move_to_top_level_without_mcp_servers() -> None:
    items = fleet.all_items(
        fleet.document(fleet.content(fleet.world(), options=agbom.Options(mcp_servers=False)))
    )
    assert "tool:team-a/gh-issues" in items


def test_capabilities_option_drops_capability_properties() -> None:
    items = fleet.all_items(
        fleet.document(fleet.content(fleet.world(), options=agbom.Options(capabilities=False)))
    )
    names = [p["name"] for p in items["model:openai:big"]["modelCard"]["properties"]]
    assert names == ["joch:contextWindowTokens"]


def test_options_from_spec() -> None:
    assert agbom.Options.from_spec(None) == agbom.Options()
    bare = AgBOMSpec.model_validate({"agentRef": {"name": "bot"}})
    assert agbom.Options.from_spec(bare) == agbom.Options()
    spec = AgBOMSpec.model_validate(
        {"agentRef": {"name": "bot"}, "components": {"tools": False, "models": True, "secrets": True}}
    )
    assert agbom.Options.from_spec(spec) == agbom.Options(tools=False, secrets=True)
    no_secrets = AgBOMSpec.model_validate({"agentRef": {"name": "bot"}, "components": {"memory": False}})
    assert agbom.Options.from_spec(no_secrets) == agbom.Options(memory=False, secrets=False)


# --- completeness ----------------------------------------------------------------------------------------


def test_missing_tool_makes_the_document_incomplete() -> None:
    content = fleet.content(_without(fleet.world(), "Tool", "search"))
    assert not content.complete
    assert content.missing == ("Tool team-a/search",)
    doc = fleet.document(content)
    assert doc["compositions"][0]["aggregate"] == "incomplete"
    assert fleet.props(doc["metadata"]["component"])["joch:missing"] == ["Tool team-a/search"]
    fleet.assert_valid(fleet.render(content))


def test_missing_knowledge_source_is_missing() -> None:
    content = fleet.content(_without(fleet.world(), "KnowledgeSource", "handbook"))
    assert not content.complete
    assert content.missing == ("KnowledgeSource team-a/handbook",)
    assert ObjectKey("KnowledgeSource", fleet.NS, "handbook") in content.dependencies
    no_knowledge = fleet.content(
        _without(fleet.world(), "KnowledgeSource", "handbook"), options=agbom.Options(knowledge=False)
    )
    assert no_knowledge.complete
    assert no_knowledge.dependencies == frozenset()


def test_forbidden_reference_is_missing() -> None:
    objects = [
        *_without(fleet.world(), "Agent", "bot"),
        fleet.Agent.model_validate(
            {
                **fleet.agent().wire(),
                "spec": {
                    **fleet.agent().spec.wire(),
                    "mcpServers": [{"name": "x", "namespace": "elsewhere"}],
                },
            }
        ),
    ]
    content = fleet.content(objects)
    assert not content.complete
    assert content.missing == ("MCPServer elsewhere/x (namespace not shared)",)


# --- high risk -------------------------------------------------------------------------------------------


def test_unpinned_mcp_server_is_high_risk() -> None:
    objects = _replace(fleet.world(), fleet.mcp_server("github", pinned=None, discovered=["gh-issues"]))
    content = fleet.content(objects)
    assert [r.wire() for r in content.high_risk] == [
        {"kind": "MCPServer", "name": "team-a/github", "reason": "no pinned version"}
    ]
    server = fleet.all_items(fleet.document(content))["mcp:team-a/github"]
    assert "version" not in server
    assert fleet.props(server)["joch:pinned"] == ["false"]
    assert fleet.props(server)["joch:highRisk"] == ["no pinned version"]


@pytest.mark.parametrize("level", ["external_write", "financial", "code_execution"])
def test_risky_tool_without_approval_is_high_risk(level: str) -> None:
    objects = _replace(fleet.world(), fleet.tool("search", level, approval=False))
    content = fleet.content(objects)
    assert content.high_risk == (
        agbom.HighRisk("Tool", "team-a/search", f"{level} side effects without approval"),
    )


def test_risky_tool_with_approval_is_not_high_risk() -> None:
    objects = _replace(fleet.world(), fleet.tool("search", "financial", approval=True))
    assert fleet.content(objects).high_risk == ()


def test_provider_outside_the_allow_list_is_high_risk() -> None:
    objects = _replace(fleet.world(), fleet.environment("prod", ["openai"]))
    content = fleet.content(objects)
    assert content.high_risk == (
        agbom.HighRisk(
            "Model", "anthropic:backup", "provider anthropic is not allow-listed in environment prod"
        ),
    )
    unrestricted = fleet.content(_replace(fleet.world(), fleet.environment("prod", None)))
    assert unrestricted.high_risk == ()


def test_drifted_mcp_server_is_high_risk_and_flagged() -> None:
    def drift(spec: dict[str, Any]) -> None:
        spec["mcpServers"][0]["drift"] = [
            "tool gh-issues: pinned a, discovered b",
            "version: pinned 1, discovered 2",
        ]

    content = fleet.content(fleet.world(), compiled_hook=drift)
    assert content.high_risk == (
        agbom.HighRisk(
            "MCPServer",
            "team-a/github",
            "schema drift: tool gh-issues: pinned a, discovered b; version: pinned 1, discovered 2",
        ),
    )
    server = fleet.all_items(fleet.document(content))["mcp:team-a/github"]
    assert fleet.props(server)["joch:drifted"] == ["true"]


def test_high_risk_is_sorted_and_merged() -> None:
    def drift(spec: dict[str, Any]) -> None:
        spec["mcpServers"][0]["drift"] = ["version: pinned 1, discovered 2"]

    objects = _replace(
        _replace(fleet.world(), fleet.mcp_server("github", pinned=None)),
        fleet.tool("search", "code_execution"),
    )
    content = fleet.content(objects, compiled_hook=drift)
    assert content.high_risk == (
        agbom.HighRisk(
            "MCPServer", "team-a/github", "no pinned version; schema drift: version: pinned 1, discovered 2"
        ),
        agbom.HighRisk("Tool", "team-a/search", "code_execution side effects without approval"),
    )


def test_high_risk_ignores_options() -> None:
    objects = _replace(fleet.world(), fleet.tool("search", "code_execution"))
    content = fleet.content(objects, options=agbom.Options(tools=False))
    assert [r.kind for r in content.high_risk] == ["Tool"]
