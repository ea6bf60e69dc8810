"""Trace (ops.joch.dev/v1alpha1): the recorded spans of one Execution and where they are exported.

docs/catalog.md section 2.11 and section 5: retention.days defaults to 30. sampling.mode has no schema
default: it depends on the environment (full in dev and staging, tail in prod), so the mutating webhook fills
it in (docs/decisions.md D14).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

SamplingMode = Literal["full", "head", "tail", "exemplar"]

HeaderValue = Annotated[str, Field(max_length=4096)]
"""An HTTP header value."""


class TraceSampling(meta.Schema):
    """Which spans are kept."""

    mode: SamplingMode | None = Field(
        default=None,
        description="full: keep every span. head: decide at the start of the execution. tail: decide at the "
        "end (keeps errors and slow runs). exemplar: keep representative runs. When unset, the admission "
        "webhook sets full in dev and staging, tail in prod.",
    )


class TraceRetry(meta.Schema):
    """Retries of failed exports."""

    max_attempts: int | None = Field(default=None, ge=1, le=100, description="Most export attempts.")
    initial_interval_ms: int | None = Field(
        default=None,
        ge=1,
        le=3_600_000,
        description="Wait before the first retry, in milliseconds; it doubles.",
    )


class TraceOpenTelemetry(meta.Schema):
    """Export to an OpenTelemetry (OTLP) collector."""

    enabled: bool | None = Field(default=None, description="Export spans over OTLP.")
    endpoint_secret_ref: meta.Ref | None = Field(
        default=None, description="The joch Secret that refers to the collector endpoint and credentials."
    )
    headers: dict[str, HeaderValue] | None = Field(
        default=None, max_length=32, description="Extra OTLP headers (no credentials: use endpointSecretRef)."
    )
    compression: Literal["gzip", "none"] | None = Field(default=None, description="Payload compression.")
    retry: TraceRetry | None = Field(default=None, description="Retries of failed exports.")


class TraceOCSF(meta.Schema):
    """Export as OCSF security events."""

    enabled: bool | None = Field(default=None, description="Export OCSF events.")
    event_classes: list[int] = Field(
        default=[8001, 1003],
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="OCSF event class ids to emit (default 8001 and 1003).",
    )
    sink_secret_ref: meta.Ref | None = Field(
        default=None, description="The joch Secret that refers to the sink's endpoint and credentials."
    )
    transport: str | None = Field(
        default=None, max_length=64, description="Sink transport, e.g. kafka or https."
    )
    topic: str | None = Field(default=None, max_length=256, description="Topic or stream name at the sink.")


class TraceExport(meta.Schema):
    """Where spans are sent."""

    open_telemetry: TraceOpenTelemetry | None = Field(default=None, description="OTLP export.")
    ocsf: TraceOCSF | None = Field(default=None, description="OCSF export.")


class TracePII(meta.Schema):
    """Personal data in stored spans."""

    redact: bool | None = Field(default=None, description="Redact personal data before storing spans.")


class TraceRetention(meta.Schema):
    """How long spans are kept."""

    days: int = Field(default=30, ge=1, le=3650, description="Days to keep the spans (default 30).")
    pii: TracePII | None = Field(default=None, description="Handling of personal data.")


class TraceSpec(meta.Schema):
    """Desired state of a Trace."""

    execution_ref: meta.Ref = Field(description="The Execution traced, in this namespace by default.")
    sampling: TraceSampling | None = Field(
        default=None, description="Sampling; the webhook sets the environment's default mode."
    )
    export: TraceExport | None = Field(default=None, description="OpenTelemetry and OCSF export.")
    retention: TraceRetention = Field(
        default_factory=TraceRetention, description="Retention (30 days by default)."
    )


class TraceSpans(meta.Schema):
    """Span counts by type."""

    total: int | None = Field(default=None, ge=0, description="All spans.")
    llm_calls: int | None = Field(default=None, ge=0, description="Model call spans.")
    tool_calls: int | None = Field(default=None, ge=0, description="Tool call spans.")
    handoffs: int | None = Field(default=None, ge=0, description="Handoff spans.")
    hook_decisions: int | None = Field(default=None, ge=0, description="Policy hook decision events.")
    knowledge_retrievals: int | None = Field(default=None, ge=0, description="RAG retrieval spans.")


class TraceStatus(meta.Status):
    """Observed state of a Trace."""

    phase: Literal["Recording", "Complete", "Exported", "Failed"] | None = Field(
        default=None,
        description="Recording: the execution is running. Complete: every span is stored. Exported: stored "
        "and exported everywhere. Failed: storing or exporting failed.",
    )
    spans: TraceSpans | None = Field(default=None, description="Span counts by type.")
    cost_usd: float | None = Field(default=None, ge=0, description="Cost of the traced execution, USD.")
    duration_ms: int | None = Field(default=None, ge=0, description="Duration of the traced execution, ms.")


class Trace(meta.Resource):
    """The spans of one Execution: sampling, export to OpenTelemetry/OCSF, retention."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Trace",
        plural="traces",
        scope="Namespaced",
        short_names=("tr",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Execution", ".spec.executionRef.name", description="Execution traced."),
            meta.PrinterColumn("Spans", ".status.spans.total", "integer", description="Total spans."),
            meta.PrinterColumn("Cost", ".status.costUsd", "number", description="Cost, USD."),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("Sampling", ".spec.sampling.mode", priority=1),
        ),
        description="The trace of one Execution: its spans, sampling mode, export to OpenTelemetry and OCSF, "
        "and retention.",
    )

    spec: TraceSpec = Field(description="Desired state of the Trace.")
    status: TraceStatus | None = Field(default=None, description="Observed state, written by the operator.")
