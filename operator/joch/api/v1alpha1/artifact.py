"""Artifact (ops.joch.dev/v1alpha1): a file or document produced by an Execution, with its provenance.

docs/catalog.md section 2.23. status.uri is the artifact:// URI other objects use to refer to it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

URI = Annotated[str, Field(min_length=1, max_length=2048)]
"""A URI such as https://..., s3://... or artifact://..."""

ArtifactURI = Annotated[str, Field(max_length=2048, pattern=r"^artifact://.+$")]
"""The artifact:// URI of an Artifact's content."""


class ArtifactProducedBy(meta.Schema):
    """The run that produced the artifact."""

    execution_ref: meta.Ref = Field(description="The Execution, in this namespace by default.")


class ArtifactEncryption(meta.Schema):
    """Encryption at rest."""

    type: Literal["kms", "none"] = Field(description="kms: encrypt with a key management service key. none.")
    key_ref: meta.Ref | None = Field(
        default=None, description="For kms: the joch Secret that refers to the key."
    )


class ArtifactStorage(meta.Schema):
    """Where the content is stored."""

    backend: Literal["local", "s3", "gcs", "minio", "azure-blob"] = Field(
        description="Object store: local, s3, gcs, minio or azure-blob."
    )
    bucket: str | None = Field(default=None, max_length=253, description="Bucket or container name.")
    key_template: str | None = Field(
        default=None, max_length=1024, description="Object key template, e.g. {namespace}/{execution}/{name}."
    )
    encryption: ArtifactEncryption | None = Field(default=None, description="Encryption at rest.")


class ArtifactContent(meta.Schema):
    """What the content is."""

    mime_type: str | None = Field(
        default=None, max_length=255, description="MIME type, e.g. application/pdf."
    )
    classification: str | None = Field(
        default=None, max_length=64, description="Data classification, e.g. public, internal, pii, regulated."
    )
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the content in bytes.")
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        max_length=64,
        description="sha256 of the content, lowercase hex.",
    )


class ArtifactProvenance(meta.Schema):
    """Inputs the artifact was derived from."""

    sources: list[URI] | None = Field(
        default=None,
        max_length=256,
        description="URIs of the sources used (documents, artifacts, web pages).",
    )
    tool_calls: list[meta.Name] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of the ToolCalls (same namespace) that contributed.",
    )


class ArtifactRetention(meta.Schema):
    """How long the content is kept."""

    days: int | None = Field(default=None, ge=1, le=36500, description="Days to keep the artifact.")


class ArtifactSpec(meta.Schema):
    """Desired state of an Artifact."""

    type: str = Field(
        min_length=1, max_length=64, description="What the artifact is, e.g. report, file, dataset."
    )
    produced_by: ArtifactProducedBy | None = Field(
        default=None, description="The Execution that produced it."
    )
    agent_ref: meta.Ref | None = Field(default=None, description="The Agent that produced it.")
    storage: ArtifactStorage | None = Field(default=None, description="Where the content is stored.")
    content: ArtifactContent | None = Field(
        default=None, description="MIME type, size, digest, classification."
    )
    provenance: ArtifactProvenance | None = Field(default=None, description="Sources and tool calls used.")
    retention: ArtifactRetention | None = Field(default=None, description="How long it is kept.")


class ArtifactStatus(meta.Status):
    """Observed state of an Artifact."""

    phase: Literal["Pending", "Stored", "Failed", "Expired"] | None = Field(
        default=None,
        description="Pending: not stored yet. Stored: content is in the store. Failed: storing failed. "
        "Expired: deleted after its retention.",
    )
    uri: ArtifactURI | None = Field(default=None, description="The artifact:// URI of the content.")
    stored_at: str | None = Field(default=None, max_length=64, description="When it was stored (RFC 3339).")


class Artifact(meta.Resource):
    """A file or document produced by an Execution, with storage location and provenance."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Artifact",
        plural="artifacts",
        scope="Namespaced",
        short_names=("art",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Type", ".spec.type", description="What the artifact is."),
            meta.PrinterColumn(
                "Execution", ".spec.producedBy.executionRef.name", description="Producing run."
            ),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("URI", ".status.uri", priority=1),
        ),
        description="A file or document produced by an Execution: where it is stored, what it contains and "
        "what it was derived from.",
    )

    spec: ArtifactSpec = Field(description="Desired state of the Artifact.")
    status: ArtifactStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
