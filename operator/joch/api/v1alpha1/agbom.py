"""AgBOM (ops.joch.dev/v1alpha1): the AI bill of materials of one Agent, regenerated when its inputs change.

docs/catalog.md section 2.16 and section 5 (formats default [cyclonedx], refresh.onChange default true).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.artifact import ArtifactURI

AgBOMFormat = Literal["cyclonedx", "spdx", "swid"]


class AgBOMRefresh(meta.Schema):
    """When the AgBOM is regenerated."""

    on_change: bool = Field(
        default=True,
        description="Regenerate when any input changes: the agent, its tools, MCP servers, models, routes, "
        "memories, knowledge, matching policies or the framework adapter version (default true).",
    )
    schedule: str | None = Field(
        default=None, max_length=256, description="Cron schedule for periodic regeneration, e.g. '0 3 * * *'."
    )


class AgBOMSigning(meta.Schema):
    """Signing of the generated documents."""

    enabled: bool | None = Field(default=None, description="Sign every generated document.")
    key_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret that refers to the signing key; the operator never reads it.",
    )


class AgBOMComponents(meta.Schema):
    """Which component classes the AgBOM lists. Unset means included."""

    standard_packages: bool | None = Field(default=None, description="Software packages of the agent code.")
    models: bool | None = Field(default=None, description="Models reachable through the agent's route.")
    capabilities: bool | None = Field(default=None, description="Capabilities the agent declares.")
    knowledge: bool | None = Field(default=None, description="RAG pipelines and knowledge sources.")
    memory: bool | None = Field(default=None, description="Memories the agent uses.")
    tools: bool | None = Field(default=None, description="Tools the agent may call.")
    mcp_servers: bool | None = Field(default=None, description="MCP servers and their discovered tools.")
    policies: bool | None = Field(default=None, description="Effective policies and their versions.")
    secrets: bool | None = Field(default=None, description="Secret references (names only, never values).")


class AgBOMExport(meta.Schema):
    """Where one format is exported."""

    destination_ref: meta.Ref = Field(
        description="The destination object (an artifact store; the kind is not defined yet, catalog section "
        "8 #26)."
    )
    filename_template: str | None = Field(
        default=None,
        max_length=1024,
        description="File name template; variables {agent} and {generation}, e.g. "
        "{agent}-{generation}.cdx.json.",
    )


class AgBOMExports(meta.Schema):
    """Export destination per format."""

    cyclonedx: AgBOMExport | None = Field(default=None, description="Export of the CycloneDX document.")
    spdx: AgBOMExport | None = Field(default=None, description="Export of the SPDX document.")
    swid: AgBOMExport | None = Field(default=None, description="Export of the SWID tags.")


class AgBOMSpec(meta.Schema):
    """Desired state of an AgBOM."""

    agent_ref: meta.Ref = Field(description="The Agent described, in this namespace by default.")
    formats: list[AgBOMFormat] = Field(
        default=["cyclonedx"],
        min_length=1,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Document formats to generate: cyclonedx, spdx, swid (default [cyclonedx]).",
    )
    refresh: AgBOMRefresh = Field(
        default_factory=AgBOMRefresh, description="When to regenerate (on every input change by default)."
    )
    signing: AgBOMSigning | None = Field(default=None, description="Document signing.")
    components: AgBOMComponents | None = Field(default=None, description="Component classes to include.")
    exports: AgBOMExports | None = Field(default=None, description="Where to export each format.")


class StoredDocument(meta.Schema):
    """Where the newest generation's document is stored in the cluster."""

    config_map: str = Field(max_length=253, description="ConfigMap <agent>-agbom-v<generation>.")
    key: str = Field(max_length=253, description="Data key of the document (bom.cdx.json).")
    sha256: str = Field(max_length=64, pattern=r"^[0-9a-f]{64}$", description="sha256 of the document.")


class AgBOMArtifacts(meta.Schema):
    """Stored documents of the newest generation."""

    cyclonedx: StoredDocument | None = Field(
        default=None, description="The CycloneDX 1.6 JSON document in a ConfigMap of the namespace."
    )
    cyclonedx_ref: ArtifactURI | None = Field(
        default=None, description="artifact:// URI of the CycloneDX document."
    )
    spdx_ref: ArtifactURI | None = Field(default=None, description="artifact:// URI of the SPDX document.")
    swid_ref: ArtifactURI | None = Field(default=None, description="artifact:// URI of the SWID tags.")


class HighRiskComponent(meta.Schema):
    """A component flagged as high risk."""

    kind: str = Field(max_length=63, description="Kind of component, e.g. Tool, MCPServer, Model.")
    name: str = Field(max_length=317, description="Name of the component.")
    reason: str | None = Field(default=None, max_length=1024, description="Why it is high risk.")


class AgBOMStatus(meta.Status):
    """Observed state of an AgBOM."""

    phase: Literal["Pending", "Generating", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: the agent is not compiled yet. Generating: documents are being built. Ready: "
        "the newest generation is stored. Failed: generation failed.",
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        description="AgBOM generation, counted separately from the Agent's; CycloneDX metadata.version.",
    )
    last_generated_at: str | None = Field(
        default=None, max_length=64, description="When the newest generation was built (RFC 3339)."
    )
    content_hash: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the document's content without its timestamp and version: the generation "
        "moves only when this does.",
    )
    artifacts: AgBOMArtifacts | None = Field(default=None, description="Stored documents, one per format.")
    high_risk_count: int | None = Field(default=None, ge=0, description="How many high-risk components.")
    high_risk_components: list[HighRiskComponent] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra=meta.list_map("kind", "name"),
        description="Components flagged as high risk; promotion gates reject new ones.",
    )


class AgBOM(meta.Resource):
    """An AI bill of materials for one Agent (CycloneDX, SPDX or SWID)."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="AgBOM",
        plural="agboms",
        scope="Namespaced",
        short_names=("agbom",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Agent described."),
            meta.PrinterColumn(
                "Generation", ".status.generation", "integer", description="AgBOM generation."
            ),
            meta.PrinterColumn(
                "High-risk", ".status.highRiskCount", "integer", description="High-risk components."
            ),
            meta.PrinterColumn(
                "Generated", ".status.lastGeneratedAt", "date", description="Last generated.", priority=1
            ),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("Formats", ".spec.formats", priority=1),
        ),
        description="An AI bill of materials of one Agent: its models, tools, MCP servers, knowledge, "
        "memories and policies, regenerated whenever one of them changes.",
    )

    spec: AgBOMSpec = Field(description="Desired state of the AgBOM.")
    status: AgBOMStatus | None = Field(default=None, description="Observed state, written by the operator.")
