"""Tool (tools.joch.dev/v1alpha1): one callable capability with its schema, side effects and safety floor.

docs/catalog.md section 2.5; docs/decisions.md D3: metadata.name is a Kubernetes name, spec.toolName is the
name the model calls (it may contain '_'). spec.toolName defaults to metadata.name; the operator applies that
default (the CRD schema cannot copy one field into another).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

URL_PATTERN = r"^https?://[^\s]+$"

SideEffectLevel = Literal[
    "read_only",
    "local_write",
    "external_write",
    "financial",
    "communication",
    "code_execution",
    "privileged",
    "unknown",
]

NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=meta.DNS1123_LABEL)]
"""A Kubernetes namespace name (DNS-1123 label)."""


class ToolEndpointAuth(meta.Schema):
    """How the tool gateway authenticates to a REST endpoint."""

    type: Literal["bearer", "basic", "api_key", "oauth2"] = Field(
        description="Authentication scheme: bearer, basic, api_key or oauth2."
    )
    secret_ref: meta.Ref = Field(
        description="The joch Secret (ops.joch.dev) holding the credential; the gateway resolves it at call "
        "time and the control plane never reads it."
    )


class ToolEndpoint(meta.Schema):
    """The HTTP endpoint of a rest tool."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        description="HTTP method: GET, POST, PUT, PATCH or DELETE."
    )
    url: str = Field(max_length=2048, pattern=URL_PATTERN, description="URL the tool gateway calls.")
    auth: ToolEndpointAuth | None = Field(default=None, description="Credentials for the endpoint.")


class ToolSideEffects(meta.Schema):
    """What calling the tool can change. The level sets default approval, budget and audit behaviour."""

    level: SideEffectLevel = Field(
        description="read_only, local_write, external_write, financial, communication, code_execution, "
        "privileged, or unknown (treated as risky)."
    )
    idempotent: bool | None = Field(
        default=None, description="Repeating a call with the same arguments is safe."
    )
    requires_approval: bool | None = Field(
        default=None,
        description="Every call waits for an Approval. Unset: the level's default (policies may add more).",
    )
    idempotency_key_template: str | None = Field(
        default=None,
        max_length=1024,
        description="Template over the call arguments that yields the idempotency key, e.g. "
        "zendesk-{{ args.subject | hash }}.",
    )


class ToolRateLimit(meta.Schema):
    """Call rate caps for the tool, across all agents."""

    calls_per_minute: int | None = Field(default=None, ge=1, description="Most calls per minute.")
    calls_per_day: int | None = Field(default=None, ge=1, description="Most calls per day.")


class ToolSafety(meta.Schema):
    """A safety floor that always applies; Policies add rules on top."""

    allowed_agents: list[meta.Name] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Only these Agents (by metadata.name, same namespace) may call the tool. Unset: any "
        "Agent that lists it.",
    )
    denied_namespaces: list[NamespaceName] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Agents in these namespaces may never call the tool.",
    )
    rate_limit: ToolRateLimit | None = Field(default=None, description="Call rate caps.")


class ToolObservability(meta.Schema):
    """What the tool gateway records about calls."""

    log_args: bool | None = Field(default=None, description="Record call arguments in traces.")
    log_result: bool | None = Field(default=None, description="Record call results in traces.")
    redact_fields: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Paths redacted before recording, e.g. args.body or result.customer.email.",
    )


class ToolSpec(meta.Schema):
    """Desired state of a Tool."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "self.type != 'mcp' || (has(self.mcpServerRef) && !has(self.endpoint))",
                "type mcp requires mcpServerRef and forbids endpoint",
            ),
            ("self.type == 'mcp' || !has(self.mcpServerRef)", "mcpServerRef is only allowed for type mcp"),
            ("self.type != 'rest' || has(self.endpoint)", "type rest requires endpoint"),
        )
    }

    tool_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The name the model calls the tool by; it may contain '_' (e.g. zendesk.create_ticket). "
        "Defaults to metadata.name; the operator applies this default, not the schema (decision D3).",
    )
    type: Literal["function", "rest", "mcp", "os"] = Field(
        description="function: code in the agent process. rest: an HTTP endpoint (needs endpoint). mcp: a "
        "tool of an MCP server (needs mcpServerRef). os: a local operating-system action."
    )
    description: str | None = Field(
        default=None, max_length=4096, description="What the tool does; shown to the model."
    )
    endpoint: ToolEndpoint | None = Field(default=None, description="HTTP endpoint; rest tools only.")
    mcp_server_ref: meta.Ref | None = Field(
        default=None, description="The MCPServer that serves the tool; mcp tools only (instead of endpoint)."
    )
    input_schema: meta.JSONObject | None = Field(
        default=None, description="JSON Schema of the call arguments."
    )
    output_schema: meta.JSONObject | None = Field(default=None, description="JSON Schema of the result.")
    side_effects: ToolSideEffects | None = Field(
        default=None,
        description="What a call can change; it sets default approval and audit. Unset is treated as level "
        "unknown (risky).",
    )
    safety: ToolSafety | None = Field(
        default=None, description="Allowed agents, denied namespaces and rate limits; always enforced."
    )
    observability: ToolObservability | None = Field(default=None, description="Argument and result logging.")


class ToolStatus(meta.Status):
    """Observed state of a Tool."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: a reference (MCP server, secret) is not resolved yet. Ready: callable. Failed: "
        "misconfigured, e.g. the MCP server does not expose the tool.",
    )
    tool_name: str | None = Field(
        default=None,
        max_length=253,
        description="The effective callable name (spec.toolName or metadata.name).",
    )
    total_calls7d: int | None = Field(default=None, ge=0, description="Calls in the last 7 days.")
    failure_rate7d: float | None = Field(
        default=None, ge=0, le=1, description="Share of calls that failed in the last 7 days (0..1)."
    )


class Tool(meta.Resource):
    """A callable tool: type, endpoint or MCP server, input/output schema, side effects and safety floor."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="tools.joch.dev",
        kind="Tool",
        plural="tools",
        scope="Namespaced",
        short_names=("tl",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Type", ".spec.type", description="function, rest, mcp or os."),
            meta.PrinterColumn("ToolName", ".spec.toolName", description="Name the model calls."),
            meta.PrinterColumn("SideEffect", ".spec.sideEffects.level", description="Side-effect level."),
            meta.PrinterColumn(
                "Approval",
                ".spec.sideEffects.requiresApproval",
                "boolean",
                description="Calls need approval.",
            ),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
        ),
        description="A tool agents may call (function, REST, MCP or OS): callable name, schemas, side-effect "
        "level, approval and a safety floor that policies build on.",
    )

    spec: ToolSpec = Field(description="Desired state of the Tool.")
    status: ToolStatus | None = Field(default=None, description="Observed state, written by the operator.")
