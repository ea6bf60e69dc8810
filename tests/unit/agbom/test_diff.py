"""diff(old, new): components and services added, removed and changed between two documents."""

from __future__ import annotations

from typing import Any

from joch.domain import agbom
from tests.unit.agbom import fleet


def _doc(objects: list[Any]) -> dict[str, Any]:
    return fleet.document(fleet.content(objects))


def _with(objects: list[Any], *new: Any) -> list[Any]:
    keys = {(o.kind, o.metadata.name) for o in new}
    return [o for o in objects if (o.kind, o.metadata.name) not in keys] + list(new)


def test_equal_documents_have_no_changes() -> None:
    doc = _doc(fleet.world())
    assert agbom.diff(doc, doc) == []
    other_time = fleet.document(fleet.content(fleet.world()), timestamp="2030-01-01T00:00:00Z", generation=9)
    assert agbom.diff(doc, other_time) == []


def test_changes_are_listed_by_kind_and_name() -> None:
    old = _doc(fleet.world())
    changed_tool = fleet.tool("create-ticket", "external_write", approval=True, secret="ticket-token")
    changed_tool.spec.input_schema = {"type": "object"}
    new_objects = _with(
        fleet.world(),
        fleet.model("big", "openai", model_id="big-2026"),
        changed_tool,
        fleet.tool("lookup"),
        fleet.agent(
            tools=["lookup", "create-ticket", "gh-issues"],
            mcp_servers=["github"],
            memories={"notes": "bot-notes"},
            rags=["docs"],
        ),
    )
    changes = agbom.diff(old, _doc(new_objects))
    by_key = {(c.change, c.kind, c.name): c for c in changes}
    assert set(by_key) == {
        ("changed", "Model", "openai:big"),
        ("changed", "Tool", "team-a/create-ticket"),
        ("added", "Tool", "team-a/lookup"),
        ("removed", "Tool", "team-a/search"),
    }
    assert by_key["changed", "Model", "openai:big"].details == ("version: big -> big-2026",)
    (detail,) = by_key["changed", "Tool", "team-a/create-ticket"].details
    assert detail.startswith("property joch:schemaSha: sha256:")
    assert [c.kind for c in changes] == sorted(c.kind for c in changes)
    lines = [c.line() for c in changes]
    assert "+ Tool team-a/lookup" in lines
    assert "- Tool team-a/search" in lines
    assert "~ Model openai:big version: big -> big-2026" in lines


def test_nested_mcp_tools_and_the_agent_itself() -> None:
    old = _doc(fleet.world())
    new_objects = _with(fleet.world(), fleet.mcp_server("github", pinned="2.0.0", discovered=["gh-issues"]))
    changes = agbom.diff(old, _doc(new_objects))
    assert [(c.change, c.kind, c.name) for c in changes] == [
        ("changed", "MCPServer", "team-a/github"),
        ("removed", "MCPTool", "team-a/github/gh-search"),
    ]
    assert changes[0].details == ("version: 1.0.0 -> 2.0.0",)

    missing = _doc([o for o in fleet.world() if (o.kind, o.metadata.name) != ("Tool", "search")])
    agent_change = next(c for c in agbom.diff(old, missing) if c.kind == "Agent")
    assert agent_change.name == "team-a/bot"
    assert agent_change.details == ("property joch:missing: (none) -> Tool team-a/search",)


def test_diff_tolerates_foreign_documents() -> None:
    foreign = {
        "bomFormat": "CycloneDX",
        "components": [{"type": "library", "name": "left-pad", "version": "1"}],
    }
    newer = {
        "bomFormat": "CycloneDX",
        "components": [{"type": "library", "name": "left-pad", "version": "2"}],
    }
    assert [c.line() for c in agbom.diff(foreign, newer)] == ["~ library left-pad version: 1 -> 2"]
    assert agbom.diff({}, {}) == []
