"""MCPServer (tools.joch.dev/v1alpha1): an MCP server whose tools agents may use, with trust controls.

docs/catalog.md sections 2.6 and 7; docs/decisions.md D2 (namespaced; servers shared fleet-wide live in a
shared namespace). Quarantine (catalog 8 #24) is ``status.phase: Suspended`` plus a ``Quarantined`` condition
with status True; there is no separate quarantine field.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

URL_PATTERN = r"^https?://[^\s]+$"

ItemName = Annotated[str, Field(min_length=1, max_length=253)]
"""A name reported by an MCP server (tool or resource)."""


class MCPServerEndpoint(meta.Schema):
    """Where the server is reached (streamable_http) or what is launched (stdio)."""

    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=URL_PATTERN,
        description="URL of a streamable_http server, e.g. https://mcp.example.com/mcp.",
    )
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        default=None,
        max_length=64,
        description="Command and arguments that start a stdio server, run by the MCP gateway (sandboxed "
        "when security.sandbox is true).",
    )


class MCPServerAuth(meta.Schema):
    """How the MCP gateway authenticates to the server."""

    type: Literal["oauth2", "bearer", "none"] = Field(
        description="Authentication scheme: oauth2, bearer or none."
    )
    secret_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret (ops.joch.dev) holding the credential; the control plane never reads "
        "it.",
    )


class MCPServerExposes(meta.Schema):
    """Which MCP primitives agents may use from this server (unset means false)."""

    tools: bool | None = Field(default=None, description="Expose the server's tools.")
    resources: bool | None = Field(default=None, description="Expose the server's resources.")
    prompts: bool | None = Field(default=None, description="Expose the server's prompts.")


class MCPServerDiscovery(meta.Schema):
    """Periodic listing of the server's tools and schemas."""

    enabled: bool | None = Field(default=None, description="Discover tools and resources periodically.")
    refresh_interval: meta.Duration | None = Field(
        default=None, description="How often to rediscover, e.g. 10m or 1h."
    )
    on_schema_drift: Literal["alert", "deny", "quarantine"] | None = Field(
        default=None,
        description="What happens when the tool list or a tool schema changes: alert (event and condition), "
        "deny (calls to changed tools are denied) or quarantine (the whole server is suspended).",
    )


class PinnedTool(meta.Schema):
    """One tool of the server as accepted: its name and the sha256 of its schemas."""

    name: ItemName = Field(description="Tool name as the server reports it.")
    schema_sha: str = Field(
        max_length=71,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256:<hex> of the canonical JSON of {inputSchema, outputSchema}, as in the compiled "
        "manifest's tools[].schemaSha.",
    )


class MCPServerSecurity(meta.Schema):
    """Trust and isolation controls."""

    sandbox: bool | None = Field(
        default=None, description="Run a local-process (stdio) server under cgroups and seccomp."
    )
    allow_stdio: bool | None = Field(
        default=None, description="Allow the stdio transport, which runs a local process. Required for stdio."
    )
    pin_server_version: bool = Field(
        default=True,
        description="Refuse a server whose version differs from pinnedVersion (or, if unset, from the "
        "version seen at first discovery).",
    )
    pinned_version: str | None = Field(
        default=None, max_length=128, description="The server version to accept."
    )
    pinned_tools: list[PinnedTool] | None = Field(
        default=None,
        max_length=4096,
        json_schema_extra=meta.list_map("name"),
        description="Tool schemas to accept, by tool name (`joch mcp pin` writes what was discovered). A "
        "tool listed here is pinned to this hash; one not listed is pinned to the schema of the Tool "
        "object that binds it, if any. A discovered hash that differs is schema drift.",
    )
    trusted_publisher: str | None = Field(
        default=None, max_length=253, description="Publisher identity the server must be signed by."
    )
    min_trust_score: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Lowest acceptable trust score, 0..1; below it the server is not Ready.",
    )


class MCPServerScanning(meta.Schema):
    """Content scanning of what the server returns."""

    prompt_injection_scan: bool | None = Field(
        default=None, description="Scan tool results for prompt-injection attempts."
    )
    redact_fields_in_results: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Result paths redacted before the agent sees them, e.g. result.email.",
    )


class MCPServerSpec(meta.Schema):
    """Desired state of an MCPServer."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "self.transport != 'stdio' || (has(self.security) && has(self.security.allowStdio) "
                "&& self.security.allowStdio == true)",
                "transport stdio requires security.allowStdio: true",
                ".transport",
            ),
            (
                "self.transport != 'streamable_http' || (has(self.endpoint) && has(self.endpoint.url))",
                "transport streamable_http requires endpoint.url",
            ),
            (
                "self.transport != 'stdio' || (has(self.endpoint) && has(self.endpoint.command))",
                "transport stdio requires endpoint.command",
            ),
        )
    }

    transport: Literal["streamable_http", "stdio"] = Field(
        description="streamable_http: a remote server at endpoint.url. stdio: a local process started from "
        "endpoint.command; allowed only with security.allowStdio: true."
    )
    endpoint: MCPServerEndpoint | None = Field(default=None, description="URL or command of the server.")
    auth: MCPServerAuth | None = Field(default=None, description="Credentials for the server.")
    exposes: MCPServerExposes | None = Field(
        default=None, description="Tools, resources and prompts exposed."
    )
    discovery: MCPServerDiscovery | None = Field(
        default=None, description="Periodic discovery and the reaction to schema drift."
    )
    security: MCPServerSecurity = Field(
        default_factory=MCPServerSecurity,
        description="Sandbox, stdio permission, version pinning (on by default) and trust score floor.",
    )
    policies: list[meta.Ref] | None = Field(
        default=None, max_length=256, description="Policies applied to every call to this server."
    )
    scanning: MCPServerScanning | None = Field(
        default=None, description="Prompt-injection scanning and result redaction."
    )


class DiscoveredTool(meta.Schema):
    """One tool as the MCP gateway found it."""

    name: ItemName = Field(description="Tool name as the server reports it.")
    schema_sha: str | None = Field(
        default=None,
        max_length=71,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="sha256:<hex> of the canonical JSON of the tool's {inputSchema, outputSchema}.",
    )


class MCPServerDiscovered(meta.Schema):
    """What the MCP gateway discovered at its last listing (it writes this; the operator compares it with
    the pins)."""

    version: str | None = Field(default=None, max_length=128, description="Server version reported.")
    tools: list[DiscoveredTool] | None = Field(
        default=None,
        max_length=4096,
        json_schema_extra=meta.list_map("name"),
        description="Tools found, with their schema hashes.",
    )
    observed_at: str | None = Field(
        default=None, max_length=64, description="When the gateway listed the server (RFC 3339)."
    )


class MCPServerStatus(meta.Status):
    """Observed state of an MCPServer."""

    phase: Literal["Pending", "Ready", "Failed", "Suspended"] | None = Field(
        default=None,
        description="Pending: not discovered yet. Ready: reachable and trusted. Failed: unreachable, or "
        "below minTrustScore, or version mismatch. Suspended: quarantined (the Quarantined condition is "
        "True and says why); every call is denied until an audited override lifts it.",
    )
    discovered_tools: list[ItemName] | None = Field(
        default=None, max_length=4096, description="Tool names found at the last discovery."
    )
    discovered_resources: list[ItemName] | None = Field(
        default=None, max_length=4096, description="Resource names found at the last discovery."
    )
    last_discovery_at: str | None = Field(
        default=None, max_length=64, description="When discovery last ran (RFC 3339)."
    )
    server_version: str | None = Field(
        default=None, max_length=128, description="Server version reported at the last discovery."
    )
    trust_score: float | None = Field(default=None, ge=0, le=1, description="Current trust score, 0..1.")
    discovered: MCPServerDiscovered | None = Field(
        default=None,
        description="What the MCP gateway discovered (version, tools and schema hashes); the operator "
        "compares it with the pins and sets the Drifted condition.",
    )
    schema_drift: bool | None = Field(
        default=None, description="The server version or a tool schema differs from its pin (Drifted)."
    )
    call_count7d: int | None = Field(default=None, ge=0, description="Calls in the last 7 days.")
    deny_count7d: int | None = Field(default=None, ge=0, description="Denied calls in the last 7 days.")


class MCPServer(meta.Resource):
    """An MCP server agents may use, with transport, discovery, version pinning and trust controls."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="tools.joch.dev",
        kind="MCPServer",
        plural="mcpservers",
        scope="Namespaced",
        short_names=("mcp",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Transport", ".spec.transport", description="streamable_http or stdio."),
            meta.PrinterColumn("Trust", ".status.trustScore", "number", description="Trust score, 0..1."),
            meta.PrinterColumn("Phase", ".status.phase", description="Suspended means quarantined."),
            meta.PrinterColumn("Drift", ".status.schemaDrift", "boolean", priority=1),
            meta.PrinterColumn("Version", ".status.serverVersion", priority=1),
        ),
        description="An MCP server agents may use: transport, endpoint, discovery, version pinning and trust "
        "controls. Quarantine is phase Suspended plus a Quarantined condition.",
    )

    spec: MCPServerSpec = Field(description="Desired state of the MCPServer.")
    status: MCPServerStatus | None = Field(
        default=None,
        description="Observed state, written by the operator. A quarantined server has phase Suspended and "
        "a Quarantined condition with status True.",
    )
