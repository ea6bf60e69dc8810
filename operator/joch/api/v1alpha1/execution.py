"""Execution (runtime.joch.dev/v1alpha1): one run of an Agent.

docs/catalog.md section 2.10. On Kubernetes the ExecutionController runs it as a batch/v1 Job of the same
name; status.abomSnapshotRef pins the AgBOM generation live at start.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.artifact import ArtifactURI
from joch.api.v1alpha1.trace import SamplingMode


class ExecutionTrigger(meta.Schema):
    """What started the run."""

    type: Literal["manual", "webhook", "schedule", "upstream"] = Field(
        description="manual (CLI or API), webhook, schedule, or upstream (another execution or handoff)."
    )
    source_ref: meta.Ref | None = Field(default=None, description="The object that triggered it, if any.")


class ContentPart(meta.Schema):
    """One part of the input message."""

    kind: Literal["text", "data", "file"] = Field(description="text, data (JSON) or file (by URI).")
    text: str | None = Field(default=None, max_length=65536, description="For kind text: the text.")
    data: meta.JSONObject | None = Field(default=None, description="For kind data: the JSON object.")
    uri: str | None = Field(default=None, max_length=2048, description="For kind file: the file's URI.")
    mime_type: str | None = Field(default=None, max_length=255, description="MIME type of the part.")


class ExecutionInput(meta.Schema):
    """The task given to the agent."""

    content: list[ContentPart] | None = Field(
        default=None, max_length=64, description="Message parts, in order."
    )


class ExecutionRouteOverride(meta.Schema):
    """A ModelRoute to use instead of the Agent's for this run."""

    route_ref: meta.Ref = Field(description="The ModelRoute, in this namespace by default.")


class ExecutionBudgets(meta.Schema):
    """Budget caps of the run."""

    inherit_from_agent: bool | None = Field(
        default=None, description="Apply the Agent's inline caps (spec.budgets) to this run."
    )


class ExecutionObservability(meta.Schema):
    """Tracing of the run."""

    sampling: SamplingMode | None = Field(
        default=None, description="Trace sampling for this run: full, head, tail or exemplar."
    )


class ExecutionSpec(meta.Schema):
    """The run as requested."""

    agent_ref: meta.Ref = Field(description="The Agent to run, in this namespace by default.")
    trigger: ExecutionTrigger | None = Field(default=None, description="What started the run.")
    input: ExecutionInput | None = Field(default=None, description="The task given to the agent.")
    conversation_ref: meta.Ref | None = Field(default=None, description="The Conversation the run continues.")
    model_route_override: ExecutionRouteOverride | None = Field(
        default=None, description="A ModelRoute to use instead of the Agent's."
    )
    budgets: ExecutionBudgets | None = Field(default=None, description="Budget caps of the run.")
    observability: ExecutionObservability | None = Field(default=None, description="Tracing of the run.")


class AbomSnapshotRef(meta.Schema):
    """The AgBOM generation live when the run started."""

    name: str = Field(max_length=253, description="Name of the AgBOM.")
    generation: int = Field(ge=0, description="Its status.generation at start.")


class ExecutionStatus(meta.Status):
    """Observed state of an Execution."""

    phase: Literal["Pending", "Running", "WaitingForApproval", "Succeeded", "Failed", "Cancelled"] | None = (
        Field(
            default=None,
            description="Pending: not started. Running. WaitingForApproval: held by an Approval. Succeeded. "
            "Failed. Cancelled: stopped by a user or a budget.",
        )
    )
    started_at: str | None = Field(
        default=None, max_length=64, description="When the run started (RFC 3339)."
    )
    completed_at: str | None = Field(default=None, max_length=64, description="When it ended (RFC 3339).")
    cost_usd: float | None = Field(default=None, ge=0, description="Cost so far, USD.")
    duration_ms: int | None = Field(default=None, ge=0, description="Duration in milliseconds.")
    model_calls: int | None = Field(default=None, ge=0, description="Model calls made.")
    tool_calls: int | None = Field(default=None, ge=0, description="Tool calls made.")
    approvals: int | None = Field(default=None, ge=0, description="Approvals requested.")
    hook_decisions: int | None = Field(default=None, ge=0, description="Policy hook decisions taken.")
    artifact_refs: list[ArtifactURI] | None = Field(
        default=None, max_length=256, description="artifact:// URIs of the artifacts produced."
    )
    trace_ref: meta.Ref | None = Field(default=None, description="The Trace of the run.")
    abom_snapshot_ref: AbomSnapshotRef | None = Field(
        default=None, description="The AgBOM generation live at start."
    )


class Execution(meta.Resource):
    """One run of an Agent: trigger, input, cost, duration, tool calls and trace."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="Execution",
        plural="executions",
        scope="Namespaced",
        short_names=("exec", "jexec"),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Phase", ".status.phase", description="State of the run."),
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Agent run."),
            meta.PrinterColumn("Cost", ".status.costUsd", "number", description="Cost, USD."),
            meta.PrinterColumn("Duration", ".status.durationMs", "integer", description="Duration, ms."),
            meta.PrinterColumn("Trigger", ".spec.trigger.type", priority=1),
        ),
        description="One run of an Agent: what triggered it, its input, and its cost, duration, tool calls, "
        "approvals and trace. Runs as a batch/v1 Job on Kubernetes.",
    )

    spec: ExecutionSpec = Field(description="The run as requested.")
    status: ExecutionStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
