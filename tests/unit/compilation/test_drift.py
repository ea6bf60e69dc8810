"""MCP pinning and drift (joch.domain.compilation.drift) and where the compiled manifest says it."""

from __future__ import annotations

from typing import Any

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.tool import Tool
from joch.domain import compilation
from joch.domain.reconcile import status
from joch.domain.settings import OperatorSettings
from tests import factories as f

SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}
OTHER = "sha256:" + "1" * 64


def _mcp_tool(name: str = "github.search", tool_name: str = "search", **spec: Any) -> Tool:
    doc = f.tool(
        name, type="mcp", toolName=tool_name, mcpServerRef={"name": "github"}, inputSchema=SCHEMA, **spec
    )
    parsed = f.parse(doc)
    assert isinstance(parsed, Tool)
    return parsed


def _server(discovered: dict[str, Any] | None, **spec: Any) -> MCPServer:
    status = {"discovered": discovered} if discovered is not None else None
    parsed = f.parse(f.mcp_server(pinned_version="2026.10.1", status=status, **spec))
    assert isinstance(parsed, MCPServer)
    return parsed


def test_no_discovery_means_no_drift() -> None:
    assert compilation.server_drift(_server(None), [_mcp_tool()]) == ()


def test_a_tool_schema_that_differs_from_the_tool_object_is_drift_naming_both_hashes() -> None:
    tool = _mcp_tool()
    pinned = compilation.schema_sha(tool)
    server = _server({"version": "2026.10.1", "tools": [{"name": "search", "schemaSha": OTHER}]})
    assert compilation.server_drift(server, [tool]) == (f"tool search: pinned {pinned}, discovered {OTHER}",)


def test_matching_discovery_is_no_drift_and_unbound_tools_are_ignored() -> None:
    tool = _mcp_tool()
    unbound = f.parse(f.tool("other", inputSchema={"type": "object"}))
    assert isinstance(unbound, Tool)
    found = {"version": "2026.10.1", "tools": [{"name": "search", "schemaSha": compilation.schema_sha(tool)}]}
    assert compilation.server_drift(_server(found), [tool, unbound]) == ()


def test_a_version_other_than_the_pin_is_drift() -> None:
    server = _server({"version": "2026.11.0", "tools": []})
    assert compilation.server_drift(server, []) == ("version: pinned 2026.10.1, discovered 2026.11.0",)


def test_explicit_pins_win_over_the_tool_object_and_name_new_and_missing_tools() -> None:
    tool = _mcp_tool()
    discovered = {"tools": [{"name": "search", "schemaSha": OTHER}, {"name": "push", "schemaSha": OTHER}]}
    pins = [{"name": "search", "schemaSha": OTHER}, {"name": "gone", "schemaSha": OTHER}]
    server = _server(discovered, security={"pinnedVersion": "2026.10.1", "pinnedTools": pins})
    assert compilation.server_drift(server, [tool]) == (
        f"tool gone: pinned {OTHER}, not discovered",
        f"tool push: discovered {OTHER}, not pinned",
    )


def test_the_compiled_manifest_marks_a_drifted_server() -> None:
    tool = f.tool("github.search", type="mcp", toolName="search", mcpServerRef={"name": "github"})
    discovered = {"version": "2026.12.0"}
    catalog = compilation.Catalog(
        f.parse(doc)
        for doc in (
            f.agent(tools=[{"name": "github.search"}], mcpServers=[{"name": "github"}]),
            f.adapter(),
            f.route(),
            f.model(),
            tool,
            f.mcp_server(pinned_version="2026.10.1", status={"discovered": discovered}),
        )
    )
    agent = catalog.get(Agent, f.NS, "support-triage")
    assert agent is not None
    settings = OperatorSettings()
    compiled = compilation.compile_agent(compilation.gather(agent, catalog, settings), settings)
    (entry,) = compiled.manifest["spec"]["mcpServers"]
    assert entry["drifted"] is True
    assert entry["drift"] == ["version: pinned 2026.10.1, discovered 2026.12.0"]


def test_a_drift_warning_is_said_once_per_change_of_the_drifted_condition() -> None:
    def drifted(state: str, message: str) -> dict[str, Any]:
        return {"conditions": [{"type": "Drifted", "status": state, "reason": "x", "message": message}]}

    assert status.drift_warning({}, drifted("True", "tool a: pinned x, discovered y")) == (
        "tool a: pinned x, discovered y"
    )
    assert status.drift_warning(drifted("False", "ok"), drifted("True", "version: ...")) == "version: ..."
    assert status.drift_warning(drifted("True", "same"), drifted("True", "same")) is None
    assert status.drift_warning(drifted("True", "old"), drifted("True", "new")) == "new"
    assert status.drift_warning(drifted("True", "old"), drifted("False", "ok")) is None
