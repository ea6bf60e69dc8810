"""KnowledgeSource (memory.joch.dev/v1alpha1): a body of documents that RAG pipelines index.

docs/catalog.md section 2.15 (brief); docs/decisions.md D2 (references in the same namespace by default),
D12 (connector credentials are only referenced).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

Pattern = Annotated[str, Field(min_length=1, max_length=1024)]
"""A glob or URL pattern."""


class KnowledgeSourceConnector(meta.Schema):
    """Credentials the connector uses to read the source."""

    secret_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret (ops.joch.dev) holding the connector credentials; the control plane "
        "never reads it.",
    )


class KnowledgeSourceCrawl(meta.Schema):
    """Crawl limits for web-like sources."""

    max_depth: int | None = Field(default=None, ge=0, le=100, description="Most links followed from the url.")
    include_patterns: list[Pattern] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Only documents matching one of these patterns are read, e.g. https://docs.example.com/**.",
    )
    exclude_patterns: list[Pattern] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Documents matching any of these patterns are skipped.",
    )


class KnowledgeSourceLocation(meta.Schema):
    """Where the documents are."""

    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+$",
        description="URI of the source, e.g. https://docs.example.com, s3://bucket/prefix, gs://bucket/docs.",
    )
    crawl: KnowledgeSourceCrawl | None = Field(
        default=None, description="Crawl depth and include/exclude rules."
    )


class KnowledgeSourceSync(meta.Schema):
    """How the source is synchronised."""

    mode: Literal["incremental", "full"] | None = Field(
        default=None, description="incremental (changed documents only) or full (everything each time)."
    )
    interval: meta.Duration | None = Field(default=None, description="How often to sync, e.g. 6h.")


class KnowledgeSourceRetention(meta.Schema):
    """How long synced documents are kept."""

    days: int | None = Field(default=None, ge=1, description="Documents are kept this many days after sync.")


class KnowledgeSourceClassification(meta.Schema):
    """Data classification, used by policies (e.g. data.sensitivity)."""

    sensitivity: Literal["public", "internal", "customer-tier", "pii", "regulated"] | None = Field(
        default=None, description="public, internal, customer-tier, pii or regulated."
    )
    retention: KnowledgeSourceRetention | None = Field(
        default=None, description="Retention of synced documents."
    )


class KnowledgeSourcePermissions(meta.Schema):
    """Document-level access control."""

    mode: Literal["source_inherited", "public", "restricted"] | None = Field(
        default=None,
        description="source_inherited: documents keep the source system's ACLs. public: readable by every "
        "agent that uses the source. restricted: readable only through explicit policy.",
    )


class KnowledgeSourceSpec(meta.Schema):
    """Desired state of a KnowledgeSource."""

    type: Literal["web", "file", "s3", "gcs", "google_drive", "http-archive", "database", "api"] = Field(
        description="Connector: web, file, s3, gcs, google_drive, http-archive, database or api."
    )
    description: str | None = Field(default=None, max_length=4096, description="What the source contains.")
    connector: KnowledgeSourceConnector | None = Field(default=None, description="Connector credentials.")
    source: KnowledgeSourceLocation | None = Field(default=None, description="Location and crawl rules.")
    sync: KnowledgeSourceSync | None = Field(default=None, description="Sync mode and interval.")
    classification: KnowledgeSourceClassification | None = Field(
        default=None, description="Sensitivity and retention."
    )
    permissions: KnowledgeSourcePermissions | None = Field(
        default=None, description="Document access control."
    )
    transforms: list[meta.JSONObject] | None = Field(
        default=None,
        max_length=64,
        description="Ordered document transforms applied before indexing (e.g. PII redaction, HTML to text); "
        "each is an object interpreted by the connector.",
    )
    policies: list[meta.Ref] | None = Field(
        default=None, max_length=256, description="Policies applied to reads of this source."
    )


class KnowledgeSourceStatus(meta.Status):
    """Observed state of a KnowledgeSource."""

    phase: Literal["Pending", "Syncing", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: never synced. Syncing: a sync is running. Ready: the last sync succeeded. "
        "Failed: the last sync failed.",
    )
    documents_found: int | None = Field(default=None, ge=0, description="Documents found at the last sync.")
    last_sync_at: str | None = Field(
        default=None, max_length=64, description="When the last sync completed (RFC 3339)."
    )
    bytes: int | None = Field(default=None, ge=0, description="Total size of the synced documents in bytes.")


class KnowledgeSource(meta.Resource):
    """A body of documents (web, files, buckets, drives, databases, APIs) that RAG pipelines index."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="memory.joch.dev",
        kind="KnowledgeSource",
        plural="knowledgesources",
        scope="Namespaced",
        short_names=("ks",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Type", ".spec.type", description="Connector type."),
            meta.PrinterColumn(
                "Sensitivity", ".spec.classification.sensitivity", description="Data classification."
            ),
            meta.PrinterColumn("Docs", ".status.documentsFound", "integer", description="Documents found."),
            meta.PrinterColumn("LastSync", ".status.lastSyncAt", "date", description="Last completed sync."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
        ),
        description="A body of documents RAG pipelines index: connector, location, sync schedule, data "
        "classification, permissions and transforms.",
    )

    spec: KnowledgeSourceSpec = Field(description="Desired state of the KnowledgeSource.")
    status: KnowledgeSourceStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
