"""Handoff (runtime.joch.dev/v1alpha1): one agent passing work to another during an Execution.

docs/catalog.md section 2.23. fromAgent and toAgent are Agent names in the Handoff's namespace, as the catalog
writes them; the receiving agent must be listed in the sender's spec.handoffs.allowedAgents.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.artifact import ArtifactURI

MemoryURI = Annotated[str, Field(min_length=1, max_length=2048)]
"""A URI of a memory item."""


class HandoffContext(meta.Schema):
    """What the receiving agent is told."""

    summary: str | None = Field(default=None, max_length=16384, description="Summary of the work so far.")
    artifact_refs: list[ArtifactURI] | None = Field(
        default=None, max_length=128, description="artifact:// URIs of artifacts passed along."
    )
    memory_refs: list[MemoryURI] | None = Field(
        default=None, max_length=128, description="URIs of memory items passed along."
    )


class HandoffExpectedOutput(meta.Schema):
    """What the receiving agent should hand back."""

    type: str = Field(
        min_length=1, max_length=256, description="Type of the expected output, e.g. ticket_draft."
    )


class HandoffSpec(meta.Schema):
    """The handoff as requested."""

    execution_ref: meta.Ref = Field(description="The Execution during which the handoff happens.")
    from_agent: meta.Name = Field(description="Name of the Agent handing off (same namespace).")
    to_agent: meta.Name = Field(
        description="Name of the Agent receiving the work (same namespace); must be in the sender's "
        "spec.handoffs.allowedAgents."
    )
    reason: str | None = Field(default=None, max_length=4096, description="Why the work is handed off.")
    context: HandoffContext | None = Field(
        default=None, description="Summary, artifacts and memories passed on."
    )
    expected_output: HandoffExpectedOutput | None = Field(default=None, description="What should come back.")


class HandoffStatus(meta.Status):
    """Observed state of a Handoff."""

    phase: Literal["Pending", "Accepted", "Rejected", "Completed", "Failed"] | None = Field(
        default=None,
        description="Pending: not yet picked up. Accepted: the receiving agent took it. Rejected: refused "
        "(e.g. not in allowedAgents). Completed: the output came back. Failed.",
    )
    accepted_at: str | None = Field(
        default=None, max_length=64, description="When it was accepted (RFC 3339)."
    )
    completed_at: str | None = Field(default=None, max_length=64, description="When it completed (RFC 3339).")
    to_execution_ref: meta.Ref | None = Field(
        default=None, description="The Execution in which the receiving agent does the work."
    )


class Handoff(meta.Resource):
    """One agent handing work to another during an Execution."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="Handoff",
        plural="handoffs",
        scope="Namespaced",
        short_names=("ho",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("From", ".spec.fromAgent", description="Agent handing off."),
            meta.PrinterColumn("To", ".spec.toAgent", description="Agent receiving."),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("Execution", ".spec.executionRef.name", priority=1),
        ),
        description="One agent handing work to another during an Execution: reason, context passed on and "
        "the expected output.",
    )

    spec: HandoffSpec = Field(description="The handoff as requested.")
    status: HandoffStatus | None = Field(default=None, description="Observed state, written by the operator.")
