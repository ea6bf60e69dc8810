"""FrameworkAdapter (joch.dev/v1alpha1, cluster-scoped): how one agent SDK is run and bound to joch.

docs/catalog.md section 2.2; docs/decisions.md D1 (group), D2 (cluster scope). The conformance result is an
observation, so its timestamp lives in status (status.conformance.lastPassedAt), not in spec as the catalog
sketch shows.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

Framework = Literal[
    "openai-agents-sdk",
    "claude-agent-sdk",
    "google-adk",
    "ms-agent-framework",
    "langgraph",
    "crewai",
    "custom-python",
    "custom-typescript",
]

URL_PATTERN = r"^https?://[^\s]+$"


class FrameworkAdapterCapabilities(meta.Schema):
    """What the adapter can do. The compiler rejects an Agent needing a capability that is false or unset."""

    tool_binding: bool | None = Field(
        default=None, description="The adapter can bind joch Tools to the agent (unset means false)."
    )
    mcp_binding: bool | None = Field(
        default=None, description="The adapter can bind MCP servers to the agent (unset means false)."
    )
    model_router_binding: bool | None = Field(
        default=None,
        description="The adapter sends model calls through the joch model router, so ModelRoutes apply "
        "(unset means false).",
    )
    streaming: bool | None = Field(
        default=None, description="The adapter streams model output (unset means false)."
    )
    a2a: bool | None = Field(
        default=None, description="The adapter supports agent-to-agent (A2A) handoffs (unset means false)."
    )
    structured_output: bool | None = Field(
        default=None,
        description="The adapter supports structured (schema-shaped) output (unset means false).",
    )
    vision: bool | None = Field(
        default=None, description="The adapter passes image inputs (unset means false)."
    )
    audio: bool | None = Field(
        default=None, description="The adapter passes audio inputs (unset means false)."
    )


class FrameworkAdapterBindings(meta.Schema):
    """joch service endpoints the adapter injects into agent processes."""

    tool_gateway_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=URL_PATTERN,
        description="URL of the joch tool gateway, e.g. http://joch-tool-gateway. Tool calls go through it.",
    )
    mcp_gateway_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=URL_PATTERN,
        description="URL of the joch MCP gateway, e.g. http://joch-mcp-gateway. MCP traffic goes through it.",
    )
    model_router_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=URL_PATTERN,
        description="URL of the joch model router; model calls go through it if modelRouterBinding is true.",
    )


class FrameworkAdapterConformance(meta.Schema):
    """The conformance suite that must pass before the adapter is Ready."""

    suite: str = Field(
        min_length=1,
        max_length=1024,
        description="OCI image reference of the conformance test suite, e.g. ghcr.io/joch/conformance:v1.",
    )


class FrameworkAdapterSpec(meta.Schema):
    """Desired state of a FrameworkAdapter."""

    framework: Framework = Field(
        description="The agent SDK this adapter runs: openai-agents-sdk, claude-agent-sdk, google-adk, "
        "ms-agent-framework, langgraph, crewai, custom-python or custom-typescript."
    )
    description: str | None = Field(default=None, max_length=4096, description="What the adapter is for.")
    language: Literal["python", "typescript"] | None = Field(
        default=None,
        description="Language of the agent code: python or typescript. Custom entrypoints are "
        "joch_entrypoint(execution_context, joch) in Python and jochEntrypoint(ctx, joch) in TypeScript.",
    )
    adapter_image: str | None = Field(
        default=None, max_length=1024, description="OCI image that runs agents with this framework."
    )
    sdk_min_version: str | None = Field(
        default=None, max_length=64, description="Oldest SDK version the adapter supports, e.g. 0.4.0."
    )
    capabilities: FrameworkAdapterCapabilities | None = Field(
        default=None,
        description="What the adapter supports. Agents needing anything else are rejected at admission.",
    )
    bindings: FrameworkAdapterBindings | None = Field(
        default=None, description="joch gateway and router URLs injected into agent processes."
    )
    conformance: FrameworkAdapterConformance | None = Field(
        default=None, description="Conformance suite; the adapter becomes Ready only after it passes."
    )


class ConformanceStatus(meta.Schema):
    """Result of the latest conformance run."""

    last_passed_at: str | None = Field(
        default=None, max_length=64, description="When the conformance suite last passed (RFC 3339)."
    )
    last_run_at: str | None = Field(
        default=None, max_length=64, description="When the conformance suite last ran (RFC 3339)."
    )
    passed: bool | None = Field(default=None, description="Whether the latest run passed.")


class FrameworkAdapterStatus(meta.Status):
    """Observed state of a FrameworkAdapter."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: conformance has not run yet. Ready: the conformance suite passed. Failed: "
        "the latest conformance run failed.",
    )
    agents_bound: int | None = Field(default=None, ge=0, description="Number of Agents using this adapter.")
    conformance: ConformanceStatus | None = Field(
        default=None, description="Result of the latest conformance run."
    )


class FrameworkAdapter(meta.Resource):
    """How one agent framework (SDK) is run and bound to joch's gateways; one per framework."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="joch.dev",
        kind="FrameworkAdapter",
        plural="frameworkadapters",
        scope="Cluster",
        short_names=("fwa",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Framework", ".spec.framework", description="Agent SDK."),
            meta.PrinterColumn("Language", ".spec.language", description="Language of agent code."),
            meta.PrinterColumn("Agents", ".status.agentsBound", "integer", description="Agents bound."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("Image", ".spec.adapterImage", priority=1),
        ),
        description="How one agent framework (SDK) runs under joch: adapter image, capabilities, gateway "
        "bindings and the conformance suite that must pass before it is Ready. Cluster-scoped.",
    )

    spec: FrameworkAdapterSpec = Field(description="Desired state of the FrameworkAdapter.")
    status: FrameworkAdapterStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
