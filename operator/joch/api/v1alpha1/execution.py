"""Execution (runtime.joch.dev/v1alpha1): one run of an Agent.

docs/catalog.md section 2.10 and docs/executions.md. On Kubernetes the executions service runs it as a
batch/v1 Job of the same name, from the Agent's compiled manifest; status.manifestRef and
status.abomSnapshotRef pin the manifest and the AgBOM generation current at start.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.artifact import ArtifactURI
from joch.api.v1alpha1.trace import SamplingMode


class ExecutionTrigger(meta.Schema):
    """What started the run."""

    type: Literal["manual", "webhook", "schedule", "upstream", "eval"] = Field(
        description="manual (CLI or API), webhook, schedule, upstream (another execution or handoff), or "
        "eval (a run of an Eval, which sourceRef names)."
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
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=604800,
        description="Longest the run may take, in seconds, from the start of its Job "
        "(activeDeadlineSeconds); past it the run ends TimedOut. Default: the operator's setting (3600).",
    )
    cancel: bool | None = Field(
        default=None,
        description="true stops the run: its Job is deleted and the Execution ends Cancelled (a queued one "
        "never starts). The only field that may change after creation.",
    )


class ManifestRef(meta.Schema):
    """The compiled manifest a run started from."""

    name: str = Field(max_length=253, description="The CompiledAgentManifest ConfigMap mounted into the Job.")
    sha256: str = Field(
        max_length=64, pattern=r"^[0-9a-f]{64}$", description="sha256 of the manifest's canonical JSON."
    )


class AbomSnapshotRef(meta.Schema):
    """The AgBOM generation live when the run started."""

    name: str = Field(max_length=253, description="Name of the AgBOM.")
    generation: int = Field(ge=0, description="Its status.generation at start.")


class ExecutionStatus(meta.Status):
    """Observed state of an Execution."""

    phase: (
        Literal[
            "Pending",
            "Queued",
            "Running",
            "WaitingForApproval",
            "Succeeded",
            "Failed",
            "Cancelled",
            "TimedOut",
        ]
        | None
    ) = Field(
        default=None,
        description="Pending: admitted, not yet scheduled. Queued: waiting for a free slot of its Agent. "
        "Running: its Job exists. WaitingForApproval: held by an Approval. Succeeded. Failed (reason and "
        "message in the Ready condition). Cancelled: stopped by a user or a budget. TimedOut: ran past "
        "spec.timeoutSeconds.",
    )
    started_at: str | None = Field(
        default=None, max_length=64, description="When the run started (RFC 3339)."
    )
    completed_at: str | None = Field(default=None, max_length=64, description="When it ended (RFC 3339).")
    cost_usd: float | None = Field(
        default=None, ge=0, description="Cost so far, USD (reported by the worker)."
    )
    tokens: int | None = Field(default=None, ge=0, description="Model tokens used (reported by the worker).")
    duration_ms: int | None = Field(default=None, ge=0, description="Duration in milliseconds.")
    model_calls: int | None = Field(
        default=None, ge=0, description="Model calls made (reported by the worker)."
    )
    tool_calls: int | None = Field(
        default=None, ge=0, description="Tool calls made (reported by the worker)."
    )
    recorded_tool_calls: int | None = Field(
        default=None,
        ge=0,
        description="ToolCalls the tool gateway recorded for this run (counted by the operator).",
    )
    approvals: int | None = Field(
        default=None,
        ge=0,
        description="Approvals this run requested (spec.requestedBy.executionRef), counted by the operator.",
    )
    pending_approvals: int | None = Field(
        default=None, ge=0, description="Of those, the ones still waiting for a decision."
    )
    hook_decisions: int | None = Field(default=None, ge=0, description="Policy hook decisions taken.")
    artifact_refs: list[ArtifactURI] | None = Field(
        default=None, max_length=256, description="artifact:// URIs of the artifacts produced."
    )
    trace_ref: meta.Ref | None = Field(default=None, description="The Trace of the run.")
    abom_snapshot_ref: AbomSnapshotRef | None = Field(
        default=None, description="The AgBOM generation live at start (never changed after)."
    )
    manifest_ref: ManifestRef | None = Field(
        default=None, description="The compiled manifest the run started from (never changed after)."
    )
    pod_name: str | None = Field(
        default=None,
        max_length=253,
        description="The Pod running the Execution: the only worker whose token may report into this status.",
    )
    scores: dict[Annotated[str, Field(max_length=128)], float] | None = Field(
        default=None,
        max_length=64,
        description="For an eval run: metric name -> score (reported by the worker); the evals service "
        "compares them with the Eval's thresholds.",
    )
    agent_generation: int | None = Field(
        default=None,
        ge=0,
        description="The Agent's metadata.generation the run started from (recorded by the operator with "
        "manifestRef; never changed after).",
    )
    budgets_charged: list[Annotated[str, Field(max_length=317)]] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="The Budgets (namespace/name) whose ledger counts this finished run (written by the "
        "operator; a finished run is kept until every Budget covering it has counted it).",
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
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Agent run."),
            meta.PrinterColumn("Phase", ".status.phase", description="State of the run."),
            meta.PrinterColumn("Cost", ".status.costUsd", "number", description="Cost, USD."),
            meta.PrinterColumn("Duration", ".status.durationMs", "integer", description="Duration, ms."),
            meta.PrinterColumn("Trigger", ".spec.trigger.type", priority=1),
            meta.PrinterColumn("Pod", ".status.podName", priority=1),
        ),
        description="One run of an Agent: what triggered it, its input, and its cost, duration, tool calls, "
        "approvals and trace. Runs as a batch/v1 Job on Kubernetes.",
    )

    spec: ExecutionSpec = Field(description="The run as requested.")
    status: ExecutionStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
