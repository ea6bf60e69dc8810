"""Memory (memory.joch.dev/v1alpha1): a store of agent memories with its backend, retention and access.

docs/catalog.md section 2.14; docs/decisions.md D2 (namespaced, references in the same namespace by default),
D12 (the connection secret is only referenced).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta


class MemoryScope(meta.Schema):
    """The object that owns the memory."""

    owner_kind: Literal["Agent"] = Field(description="Kind of the owner; only Agent is supported.")
    owner_name: meta.Name = Field(description="metadata.name of the owning Agent, in the Memory's namespace.")


class MemoryBackend(meta.Schema):
    """Where the memory items are stored."""

    type: Literal["postgres", "pgvector", "qdrant", "pinecone", "weaviate", "redis"] = Field(
        description="Storage engine: postgres, pgvector, qdrant, pinecone, weaviate or redis."
    )
    connection_secret_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret (ops.joch.dev) holding the connection string; the control plane never "
        "reads it.",
    )


class MemoryRetention(meta.Schema):
    """How long and how many items are kept."""

    ttl: meta.Duration | None = Field(
        default=None, description="Items older than this are deleted, e.g. 30d."
    )
    max_items: int | None = Field(default=None, ge=1, description="Most items kept; the oldest are evicted.")


class MemoryField(meta.Schema):
    """One field of a memory item."""

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Field name, e.g. summary.",
    )
    type: Literal["text", "float", "string", "timestamp"] = Field(
        description="text (free text, searchable), string (exact value), float or timestamp."
    )


class MemorySchema(meta.Schema):
    """The shape of a memory item."""

    fields: list[MemoryField] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra=meta.list_map("name"),
        description="Fields of each item. Names are unique.",
    )


class MemoryAccess(meta.Schema):
    """Which Agents may read and write, by metadata.name in the Memory's namespace."""

    readable_by: list[meta.Name] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Agents that may read the memory. Unset: only the owner.",
    )
    writable_by: list[meta.Name] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Agents that may write the memory. Unset: only the owner.",
    )


class MemoryPrivacy(meta.Schema):
    """Handling of personal data and encryption."""

    pii_handling: Literal["redact", "block", "allow"] | None = Field(
        default=None,
        description="redact: PII is redacted before storing. block: items with PII are rejected. allow: "
        "stored as given.",
    )
    encryption: Literal["required", "optional"] | None = Field(
        default=None, description="required: the backend must encrypt at rest, or the Memory is not Ready."
    )


class MemorySpec(meta.Schema):
    """Desired state of a Memory."""

    type: Literal["working", "episodic", "semantic", "procedural", "preference", "blackboard"] = Field(
        description="working (current task), episodic (past events), semantic (facts), procedural (how-tos), "
        "preference (user preferences) or blackboard (shared between agents)."
    )
    description: str | None = Field(default=None, max_length=4096, description="What the memory holds.")
    scope: MemoryScope | None = Field(default=None, description="The Agent that owns the memory.")
    backend: MemoryBackend = Field(description="Storage engine and connection.")
    retention: MemoryRetention | None = Field(default=None, description="TTL and item cap.")
    # `schema` would shadow pydantic's BaseModel.schema, so the attribute is schema_ (wire name schema).
    schema_: MemorySchema | None = Field(
        default=None, alias="schema", description="Fields of each memory item."
    )
    access: MemoryAccess | None = Field(default=None, description="Agents that may read and write.")
    privacy: MemoryPrivacy | None = Field(default=None, description="PII handling and encryption.")
    policies: list[meta.Ref] | None = Field(
        default=None, max_length=256, description="Policies applied to reads and writes of this memory."
    )


class MemoryStatus(meta.Status):
    """Observed state of a Memory."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: backend not checked yet. Ready: the backend is reachable. Failed: the backend "
        "is unreachable or does not meet privacy requirements.",
    )
    item_count: int | None = Field(default=None, ge=0, description="Items stored.")


class Memory(meta.Resource):
    """A memory store for agents: type, backend, retention, item schema, access and privacy."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="memory.joch.dev",
        kind="Memory",
        plural="memories",
        scope="Namespaced",
        short_names=("mem",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Type", ".spec.type", description="Memory type."),
            meta.PrinterColumn("Backend", ".spec.backend.type", description="Storage engine."),
            meta.PrinterColumn("Owner", ".spec.scope.ownerName", description="Owning Agent."),
            meta.PrinterColumn("Items", ".status.itemCount", "integer", description="Items stored."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
        ),
        description="A memory store agents read and write: type, backend, retention, item schema, access "
        "lists and privacy handling.",
    )

    spec: MemorySpec = Field(description="Desired state of the Memory.")
    status: MemoryStatus | None = Field(default=None, description="Observed state, written by the operator.")
