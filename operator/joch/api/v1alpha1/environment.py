"""Environment (ops.joch.dev/v1alpha1, cluster-scoped): a promotion boundary such as dev, staging or prod.

docs/catalog.md section 2.19; docs/decisions.md D2 (cluster scope), D5 (how an Agent joins an Environment), D8
(spec.allowedProviders).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

RuntimeAdapter = Literal["local", "docker", "kubernetes", "nomad", "serverless"]
"""Where agent workers run."""

ProviderName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"),
]
"""A model provider name, the part before ':' of a model address (decision D6)."""


class EnvironmentRuntime(meta.Schema):
    """Where the environment's agents run."""

    orchestrator: RuntimeAdapter | None = Field(
        default=None,
        description="Runtime that runs agent workers: local, docker, kubernetes, nomad or serverless.",
    )
    cluster: str | None = Field(
        default=None,
        max_length=253,
        description="Name of the cluster (or runtime target) the environment uses.",
    )


class EnvironmentDefaults(meta.Schema):
    """Defaults that the admission webhook applies to objects of this environment (catalog section 5)."""

    model_route_ref: meta.Ref | None = Field(
        default=None,
        description="ModelRoute used by Agents of this environment that name none. Without a namespace it is "
        "the ModelRoute of that name in the Agent's namespace.",
    )
    trace_retention_days: int | None = Field(
        default=None, ge=1, le=3650, description="Days to keep Traces; overrides the built-in default of 30."
    )
    log_level: Literal["debug", "info", "warning", "error"] | None = Field(
        default=None, description="Log level of agent workers: debug, info, warning or error."
    )


class EnvironmentCompliance(meta.Schema):
    """Compliance requirements of the environment."""

    data_residency: str | None = Field(
        default=None, max_length=64, description="Region or jurisdiction data must stay in, e.g. eu."
    )
    pii_mode: Literal["redact", "block", "allow"] | None = Field(
        default=None,
        description="What happens to personal data in traces and logs: redact it, block the request, or "
        "allow it.",
    )
    audit_required: bool | None = Field(
        default=None, description="Require an audit record for every decision and change in this environment."
    )


class EnvironmentSpec(meta.Schema):
    """Desired state of an Environment."""

    description: str | None = Field(default=None, max_length=4096, description="What the environment is for.")
    region: str | None = Field(default=None, max_length=64, description="Region the environment runs in.")
    protected: bool | None = Field(
        default=None,
        description="Promotions into this environment need an explicit role: the requesting user must hold "
        "the promote verb on environments/<name> (ops.joch.dev) in the Deployment's namespace, checked by "
        "admission with a SubjectAccessReview (docs/teams.md).",
    )
    runtime: EnvironmentRuntime | None = Field(
        default=None, description="Orchestrator and cluster to run on."
    )
    defaults: EnvironmentDefaults | None = Field(
        default=None,
        description="Admission defaults that override the operator's defaults in this environment.",
    )
    compliance: EnvironmentCompliance | None = Field(
        default=None, description="Data residency, PII handling and audit requirements."
    )
    allowed_providers: list[ProviderName] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Model providers allowed in this environment (decision D8). Leave unset to allow every "
        "provider; a Policy matcher `model.provider: not-allowlisted` is true for providers not listed.",
    )
    policies: list[meta.Ref] | None = Field(
        default=None,
        max_length=256,
        description="Policies bound to every Agent of this environment. The Environment is cluster-scoped, "
        "so a reference without a namespace means the Policy of that name in the Agent's namespace; give a "
        "namespace (one of the shared namespaces) to bind one Policy everywhere.",
    )
    budget_refs: list[meta.Ref] | None = Field(
        default=None,
        max_length=64,
        description="Budgets that apply to this environment. Without a namespace, the Budget of that name in "
        "the Agent's namespace.",
    )


class EnvironmentStatus(meta.Status):
    """Observed state of an Environment."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: references not resolved yet. Ready: policies and budgets resolved. Failed: the "
        "environment cannot be used.",
    )
    agent_count: int | None = Field(
        default=None, ge=0, description="Agents currently in this environment (D5)."
    )


class Environment(meta.Resource):
    """A cluster-wide promotion boundary (dev, staging, prod) with policies, budgets and defaults."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Environment",
        plural="environments",
        scope="Cluster",
        short_names=("env",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Region", ".spec.region", description="Region."),
            meta.PrinterColumn("Providers", ".spec.allowedProviders", description="Allowed model providers."),
            meta.PrinterColumn(
                "Agents", ".status.agentCount", "integer", description="Agents in the environment."
            ),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
        ),
        description="A cluster-scoped promotion boundary such as dev, staging or prod: allowed model "
        "providers, bound policies and budgets, and admission defaults for its Agents.",
    )

    spec: EnvironmentSpec = Field(description="Desired state of the Environment.")
    status: EnvironmentStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
