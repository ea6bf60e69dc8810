"""Agent (joch.dev/v1alpha1): one agent's desired state, compiled into a CompiledAgentManifest.

docs/catalog.md section 2.1; docs/decisions.md D3 (tool names), D5 (environment), D7 (compiled manifest
status), D13 (inline budgets).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

Toggle = Literal["enabled", "disabled"]


class AgentFramework(meta.Schema):
    """Which framework adapter runs the agent and where its code lives."""

    adapter_ref: meta.ClusterRef = Field(
        description="The FrameworkAdapter (cluster-scoped) that runs this agent. It is the only field "
        "that differs between agent SDKs."
    )
    entrypoint: str | None = Field(
        default=None,
        max_length=1024,
        description="Source path of the agent, e.g. ./agents/support_triage.py.",
    )
    python_module: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_.]*)?$",
        description="Python import path of the agent object, as module.path:attr.",
    )
    image: str | None = Field(
        default=None, max_length=1024, description="OCI image that holds the agent code."
    )


class AgentModelRoute(meta.Schema):
    """The ModelRoute that chooses the agent's models."""

    route_ref: meta.Ref = Field(description="The ModelRoute to use, in the Agent's namespace by default.")


class AgentToolRef(meta.Schema):
    """A Tool the agent may call, by the Tool's metadata.name (decision D3)."""

    name: meta.Name = Field(description="metadata.name of a Tool in the Agent's namespace.")


class AgentHandoffs(meta.Schema):
    """Other agents this agent may hand work off to."""

    allowed_agents: list[meta.Name] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of Agents (same namespace) this agent may hand off to.",
    )


class AgentBudgets(meta.Schema):
    """Inline caps compiled into the manifest (decision D13). Budget resources are separate."""

    token_limit_per_run: int | None = Field(default=None, ge=1, description="Most tokens one run may use.")
    cost_limit_usd_per_day: float | None = Field(
        default=None, ge=0, description="Most USD the agent may spend in one day."
    )
    tool_call_limit_per_run: int | None = Field(default=None, ge=1, description="Most tool calls in one run.")


class AgentObservability(meta.Schema):
    """Tracing and bill-of-materials switches."""

    tracing: Toggle = Field(default="enabled", description="Emit traces for this agent's executions.")
    agbom: Toggle = Field(default="enabled", description="Generate an AI bill of materials (AgBOM).")
    redact_sensitive_data: bool = Field(
        default=True, description="Redact secret-shaped and PII values from traces and logs."
    )


class AgentSpec(meta.Schema):
    """Desired state of an Agent."""

    display_name: str | None = Field(default=None, max_length=256, description="Human-friendly name.")
    description: str | None = Field(default=None, max_length=4096, description="What the agent does.")
    framework: AgentFramework = Field(description="Framework adapter and agent code location.")
    model_route: AgentModelRoute | None = Field(
        default=None, description="The ModelRoute that selects the agent's models."
    )
    tools: list[AgentToolRef] | None = Field(
        default=None,
        max_length=512,
        json_schema_extra=meta.list_map("name"),
        description="Tools the agent may call, by Tool metadata.name. Names are unique.",
    )
    mcp_servers: list[meta.Ref] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra=meta.list_map("name"),
        description="MCP servers the agent may use. Names are unique.",
    )
    memories: dict[str, meta.Ref] | None = Field(
        default=None,
        max_length=64,
        description="Memory slots (e.g. working, longTerm), each bound to a Memory object.",
    )
    rag_refs: list[meta.Ref] | None = Field(
        default=None, max_length=128, description="RAG pipelines the agent may retrieve from."
    )
    handoffs: AgentHandoffs | None = Field(default=None, description="Agents this agent may hand off to.")
    policies: list[meta.Ref] | None = Field(
        default=None,
        max_length=256,
        description="Policies bound explicitly. Policies whose appliesTo selector matches the Agent, its "
        "Environment's policies and its Team's default policies are added on top.",
    )
    budgets: AgentBudgets | None = Field(default=None, description="Inline per-run and per-day caps.")
    observability: AgentObservability = Field(
        default_factory=AgentObservability,
        description="Tracing and AgBOM switches (both enabled by default).",
    )


class CompiledManifestRef(meta.Schema):
    """Where the newest CompiledAgentManifest is stored (decision D7)."""

    name: str = Field(description="Name of the ConfigMap (and manifest): <agent>-g<generation>.")
    sha256: str = Field(description="sha256 of the manifest's canonical JSON.")
    source_hash: str = Field(description="sha256 over every resolved input of the compile.")
    generation: int = Field(ge=0, description="Agent generation the manifest was compiled from.")


class AgBOMRef(meta.Schema):
    """Which AgBOM generation describes the agent now."""

    name: str = Field(max_length=253, description="The AgBOM object (same name as the Agent).")
    generation: int = Field(ge=1, description="The AgBOM generation (CycloneDX version).")
    sha256: str = Field(
        max_length=64, pattern=r"^[0-9a-f]{64}$", description="sha256 of the stored bom.cdx.json."
    )


class AgentStatus(meta.Status):
    """Observed state of an Agent."""

    phase: Literal["Pending", "Ready", "Failed", "Suspended"] | None = Field(
        default=None,
        description="Pending: not compiled yet or a reference is missing. Ready: compiled. Failed: the "
        "last compile failed. Suspended: quarantined by an operator.",
    )
    framework: str | None = Field(default=None, description="Framework adapter name copied at compile time.")
    model_route: str | None = Field(default=None, description="The route the latest compile resolved.")
    environment: str | None = Field(default=None, description="The environment the Agent belongs to (D5).")
    compiled_manifest: CompiledManifestRef | None = Field(
        default=None, description="The newest CompiledAgentManifest."
    )
    active_executions: int | None = Field(default=None, ge=0, description="Executions running now.")
    last_run_at: str | None = Field(default=None, description="When the latest execution started (RFC 3339).")
    agbom: AgBOMRef | None = Field(
        default=None,
        description="The newest AgBOM generation of this agent (its AgBOM object, generation and the "
        "sha256 of the stored CycloneDX document).",
    )


class Agent(meta.Resource):
    """An AI agent: framework, model route, tools, MCP servers, memories, policies, budgets."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="joch.dev",
        kind="Agent",
        plural="agents",
        scope="Namespaced",
        short_names=("ag", "jag"),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn(
                "Framework", ".spec.framework.adapterRef.name", description="Framework adapter."
            ),
            meta.PrinterColumn("Route", ".spec.modelRoute.routeRef.name", description="ModelRoute."),
            meta.PrinterColumn("Env", ".status.environment", description="Environment (decision D5)."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("Manifest", ".status.compiledManifest.name", priority=1),
        ),
        description="An AI agent: framework adapter, model route, tools, MCP servers, memories, policies "
        "and budgets. The operator compiles it into a CompiledAgentManifest ConfigMap.",
    )

    spec: AgentSpec = Field(description="Desired state of the Agent.")
    status: AgentStatus | None = Field(default=None, description="Observed state, written by the operator.")
