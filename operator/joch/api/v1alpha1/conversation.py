"""Conversation (runtime.joch.dev/v1alpha1): the portable message history of an Agent's sessions.

docs/catalog.md section 2.12. Messages are stored in the state store in the canonical format
joch.dev/conversation.v1, so a conversation can move between model backends (see StateCheckpoint).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta


class ConversationStateStore(meta.Schema):
    """Where the messages are stored."""

    type: Literal["postgres", "sqlite", "redis"] = Field(description="Store type: postgres, sqlite or redis.")
    ref: str | None = Field(
        default=None,
        max_length=253,
        description="Name of the joch Secret that refers to the store's connection details.",
    )


class ConversationRetention(meta.Schema):
    """How long messages are kept."""

    max_days: int | None = Field(default=None, ge=1, le=36500, description="Days to keep messages.")


class ConversationSummarization(meta.Schema):
    """Rolling summaries that keep long conversations within the context window."""

    enabled: bool | None = Field(default=None, description="Summarize the conversation periodically.")
    checkpoint_every_messages: int | None = Field(
        default=None, ge=1, le=100000, description="Write a StateCheckpoint every this many messages."
    )
    summarizer_model_ref: meta.Ref | None = Field(
        default=None, description="The Model that writes summaries, in this namespace by default."
    )


class ConversationPortability(meta.Schema):
    """How the conversation moves between model backends."""

    canonical_format: Literal["joch.dev/conversation.v1"] | None = Field(
        default=None, description="Canonical message format; joch.dev/conversation.v1 is the only one."
    )
    preserve_vendor_metadata: bool | None = Field(
        default=None, description="Keep vendor-specific message metadata next to the canonical form."
    )


class ConversationSpec(meta.Schema):
    """Desired state of a Conversation."""

    agent_ref: meta.Ref = Field(
        description="The Agent the conversation is with, in this namespace by default."
    )
    state_store: ConversationStateStore | None = Field(default=None, description="Where messages are stored.")
    retention: ConversationRetention | None = Field(default=None, description="How long messages are kept.")
    summarization: ConversationSummarization | None = Field(default=None, description="Rolling summaries.")
    portability: ConversationPortability | None = Field(default=None, description="Backend portability.")


class ConversationStatus(meta.Status):
    """Observed state of a Conversation."""

    phase: Literal["Pending", "Active", "Archived", "Failed"] | None = Field(
        default=None,
        description="Pending: no message yet. Active: in use. Archived: closed, kept until retention ends. "
        "Failed: the state store is unusable.",
    )
    message_count: int | None = Field(default=None, ge=0, description="Messages stored.")
    current_backend: meta.ProviderModel | None = Field(
        default=None, description="Model now serving the conversation, as provider:name."
    )
    last_checkpoint_ref: meta.Ref | None = Field(default=None, description="The newest StateCheckpoint.")
    last_message_at: str | None = Field(
        default=None, max_length=64, description="Time of the last message (RFC 3339)."
    )


class Conversation(meta.Resource):
    """The portable message history of an Agent, stored in canonical form."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="Conversation",
        plural="conversations",
        scope="Namespaced",
        short_names=("conv",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Agent."),
            meta.PrinterColumn("Messages", ".status.messageCount", "integer", description="Messages stored."),
            meta.PrinterColumn("Backend", ".status.currentBackend", description="Model serving it."),
            meta.PrinterColumn("Phase", ".status.phase"),
        ),
        description="The message history of an Agent in the canonical joch.dev/conversation.v1 format, "
        "portable between model backends, with retention and rolling summaries.",
    )

    spec: ConversationSpec = Field(description="Desired state of the Conversation.")
    status: ConversationStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
