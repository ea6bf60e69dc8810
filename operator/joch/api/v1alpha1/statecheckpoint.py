"""StateCheckpoint (runtime.joch.dev/v1alpha1): a portable snapshot of a Conversation's working state.

docs/catalog.md section 2.13 (activeArtifacts and relevantMemoryRefs sit under summary, as in the k8s pages;
catalog section 8 #5). A checkpoint lets a conversation move from one model backend to another.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.artifact import ArtifactURI

Line = Annotated[str, Field(max_length=4096)]
"""One item of a summary list."""

MemoryURI = Annotated[str, Field(min_length=1, max_length=2048)]
"""A URI of a memory item."""


class CheckpointSummary(meta.Schema):
    """The state of the work, in words a new backend can pick up."""

    user_goal: str | None = Field(default=None, max_length=4096, description="What the user wants overall.")
    current_task: str | None = Field(default=None, max_length=4096, description="What is being done now.")
    decisions: list[Line] | None = Field(default=None, max_length=256, description="Decisions made so far.")
    open_questions: list[Line] | None = Field(
        default=None, max_length=256, description="Questions still open."
    )
    active_artifacts: list[ArtifactURI] | None = Field(
        default=None, max_length=128, description="artifact:// URIs of artifacts in use."
    )
    relevant_memory_refs: list[MemoryURI] | None = Field(
        default=None, max_length=128, description="URIs of relevant memory items."
    )


class ProviderStateFrom(meta.Schema):
    """The backend the state was taken from."""

    provider: str | None = Field(default=None, max_length=63, description="Model provider, e.g. openai.")
    model: str | None = Field(default=None, max_length=253, description="Model name.")
    vendor_metadata: meta.JSONObject | None = Field(
        default=None, description="Vendor-specific state (response ids, cache keys), kept as given."
    )


class CheckpointProviderState(meta.Schema):
    """Vendor-specific state captured with the checkpoint."""

    from_: ProviderStateFrom | None = Field(
        default=None, alias="from", description="Where the state came from."
    )
    portable: bool | None = Field(
        default=None, description="True when the checkpoint can be applied without the vendor state."
    )


class StateCheckpointSpec(meta.Schema):
    """The snapshot."""

    conversation_ref: meta.Ref = Field(description="The Conversation, in this namespace by default.")
    execution_ref: meta.Ref | None = Field(
        default=None, description="The Execution that wrote the checkpoint."
    )
    from_backend: meta.ProviderModel | None = Field(
        default=None, description="Model the conversation ran on, as provider:name."
    )
    to_backend: meta.ProviderModel | None = Field(
        default=None, description="Model the conversation moves to, as provider:name."
    )
    summary: CheckpointSummary | None = Field(default=None, description="The state of the work.")
    provider_state: CheckpointProviderState | None = Field(default=None, description="Vendor-specific state.")


class StateCheckpointStatus(meta.Status):
    """Observed state of a StateCheckpoint."""

    phase: Literal["Pending", "Created", "Applied", "Failed"] | None = Field(
        default=None,
        description="Pending: being written. Created: stored. Applied: a backend resumed from it. Failed.",
    )
    created_at: str | None = Field(default=None, max_length=64, description="When it was stored (RFC 3339).")
    applied_to_backend: meta.ProviderModel | None = Field(
        default=None, description="Model that resumed from it, as provider:name."
    )
    applied_at: str | None = Field(default=None, max_length=64, description="When it was applied (RFC 3339).")


class StateCheckpoint(meta.Resource):
    """A portable snapshot of a Conversation's state, used to move it between model backends."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="StateCheckpoint",
        plural="statecheckpoints",
        scope="Namespaced",
        short_names=("chk",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Conversation", ".spec.conversationRef.name", description="Conversation."),
            meta.PrinterColumn("From", ".spec.fromBackend", description="Model it ran on."),
            meta.PrinterColumn("To", ".spec.toBackend", description="Model it moves to."),
            meta.PrinterColumn("Phase", ".status.phase"),
        ),
        description="A portable snapshot of a Conversation (goal, current task, decisions, open questions, "
        "artifacts), used to move it from one model backend to another.",
    )

    spec: StateCheckpointSpec = Field(description="The snapshot.")
    status: StateCheckpointStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
