"""MCP pinning and drift (pure): what the MCP gateway discovered against what was pinned.

A server's pins are its version (``spec.security.pinnedVersion``) and one schema hash per tool:
``spec.security.pinnedTools`` (what ``joch mcp pin`` accepted) first, else the schema of the Tool object
that binds the tool (``spec.type: mcp``, ``spec.mcpServerRef``), hashed as in the compiled manifest
(:func:`joch.domain.compilation.compiler.schema_sha`). The gateway reports what it found into
``status.discovered``; every difference is one human-readable line naming the tool and both hashes. No
discovery yet means no drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.tool import Tool

__all__ = ["binds", "server_drift"]


def binds(tool: Tool, server: MCPServer) -> bool:
    """Whether ``tool`` is a tool of ``server`` (type mcp, its mcpServerRef names the server)."""
    ref = tool.spec.mcp_server_ref
    if tool.spec.type != "mcp" or ref is None:
        return False
    namespace = ref.namespace or tool.metadata.namespace
    return ref.name == server.metadata.name and namespace == server.metadata.namespace


def server_drift(
    server: MCPServer, tools: Iterable[Tool], schema_sha: Callable[[Tool], str | None]
) -> tuple[str, ...]:
    """Each difference between the server's pins and its discovery, sorted (empty: no drift)."""
    status = server.status
    discovered = status.discovered if status is not None else None
    if discovered is None:
        return ()
    lines: list[str] = []
    security = server.spec.security
    if security.pinned_version and discovered.version and discovered.version != security.pinned_version:
        lines.append(f"version: pinned {security.pinned_version}, discovered {discovered.version}")
    explicit = {pin.name: pin.schema_sha for pin in security.pinned_tools or ()}
    pins: dict[str, str | None] = {}
    for tool in tools:
        if binds(tool, server):
            pins[tool.spec.tool_name or tool.metadata.name or ""] = schema_sha(tool)
    pins.update(explicit)
    found = {item.name: item.schema_sha for item in discovered.tools or ()}
    for name in sorted(pins):
        pinned = pins[name]
        if name not in found:
            if name in explicit:
                lines.append(f"tool {name}: pinned {pinned}, not discovered")
            continue
        seen = found[name]
        if pinned is not None and seen is not None and seen != pinned:
            lines.append(f"tool {name}: pinned {pinned}, discovered {seen}")
    if explicit:
        lines.extend(
            f"tool {name}: discovered {found[name]}, not pinned"
            for name in sorted(found)
            if name not in explicit
        )
    return tuple(sorted(lines))
