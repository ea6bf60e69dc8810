"""ModelRoute (model.joch.dev/v1alpha1): which models an agent uses, in which order, under which limits.

docs/catalog.md section 2.4; docs/decisions.md D6 (models addressed as ``provider:name``, resolved in the
route's namespace then the shared namespaces) and D9 (every referenced model is policy-checked at admission).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta


class ModelRouteRequirements(meta.Schema):
    """Capabilities every candidate model must have. At least one candidate must meet them at admission."""

    tool_calling: bool | None = Field(default=None, description="Candidates must support tool calling.")
    context_window_min: int | None = Field(
        default=None, ge=1, description="Candidates must have at least this many context window tokens."
    )
    structured_output: bool | None = Field(
        default=None, description="Candidates must support structured output."
    )
    streaming: bool | None = Field(default=None, description="Candidates must support streaming.")


class ModelRouteFailover(meta.Schema):
    """Which failures make the router fall forward to the next model."""

    on_error: bool | None = Field(default=None, description="Fall forward when the call fails.")
    on_budget_exceeded: bool | None = Field(
        default=None, description="Fall forward when a budget is exceeded."
    )
    on_capability_mismatch: bool | None = Field(
        default=None, description="Fall forward when the model lacks a capability the call needs."
    )
    on_region_mismatch: bool | None = Field(
        default=None, description="Fall forward when the model is not served in the required region."
    )
    on_health_degraded: bool | None = Field(
        default=None, description="Fall forward when the model's health is Degraded or Unhealthy."
    )


class ModelRouteStrategy(meta.Schema):
    """The primary model and ordered fallbacks."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "!has(self.fallback) || !(self.primary in self.fallback)",
                "fallback must not repeat the primary model",
                ".fallback",
            ),
        )
    }

    primary: meta.ProviderModel = Field(
        description="The model tried first, as <provider>:<Model metadata.name>, e.g. openai:gpt-5-thinking."
    )
    fallback: list[meta.ProviderModel] | None = Field(
        default=None,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Models tried in order when the primary fails over, as <provider>:<name>. Unique, and "
        "different from primary.",
    )
    failover: ModelRouteFailover | None = Field(
        default=None, description="Which failures trigger fall-forward."
    )


class ModelRouteConstraints(meta.Schema):
    """Hard limits: a call that would breach them is denied, never truncated."""

    max_cost_usd_per_execution: float | None = Field(
        default=None, ge=0, description="Most USD one execution may spend on model calls."
    )
    max_cost_usd_per_call: float | None = Field(
        default=None, ge=0, description="Most USD one model call may cost."
    )
    data_residency: str | None = Field(
        default=None,
        max_length=32,
        description="Region the data must stay in, e.g. EU; matched case-insensitively against each "
        "Model's routing.regions.",
    )


class ModelRouteObservability(meta.Schema):
    """Route diagnostics."""

    explain_on_fallback: bool | None = Field(
        default=None,
        description="Record why the router fell forward (a ProviderSwitched event with its reason).",
    )


class ModelRouteSpec(meta.Schema):
    """Desired state of a ModelRoute."""

    description: str | None = Field(default=None, max_length=4096, description="What the route is for.")
    requirements: ModelRouteRequirements | None = Field(
        default=None, description="Capabilities every candidate model must have."
    )
    strategy: ModelRouteStrategy = Field(description="Primary model, fallbacks and failover triggers.")
    constraints: ModelRouteConstraints | None = Field(
        default=None, description="Cost and data residency limits."
    )
    observability: ModelRouteObservability | None = Field(default=None, description="Route diagnostics.")


class ModelRouteStatus(meta.Status):
    """Observed state of a ModelRoute."""

    phase: Literal["Pending", "Ready", "Degraded", "Failed"] | None = Field(
        default=None,
        description="Pending: models not resolved yet. Ready: every model resolved and the primary is "
        "healthy. Degraded: the primary is unhealthy and fallbacks serve. Failed: no usable model.",
    )
    primary_health: str | None = Field(
        default=None, max_length=32, description="Health of the primary model (Healthy, Degraded, Unhealthy)."
    )
    fallback_health: dict[str, Annotated[str, Field(max_length=32)]] | None = Field(
        default=None, max_length=16, description="Health of each fallback, keyed by <provider>:<name>."
    )
    fallback_rate7d: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of calls served by a fallback over the last 7 days (0..1).",
    )


class ModelRoute(meta.Resource):
    """Which models an agent uses: a primary, ordered fallbacks, failover triggers and cost limits."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="model.joch.dev",
        kind="ModelRoute",
        plural="modelroutes",
        scope="Namespaced",
        short_names=("mr", "route"),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Primary", ".spec.strategy.primary", description="Primary model."),
            meta.PrinterColumn(
                "Fallbacks", ".spec.strategy.fallback", description="Fallback models, in order."
            ),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("FallbackRate7d", ".status.fallbackRate7d", "number", priority=1),
        ),
        description="Model selection for agents: a primary provider:model, ordered fallbacks, failover "
        "triggers, requirements and cost and residency constraints.",
    )

    spec: ModelRouteSpec = Field(description="Desired state of the ModelRoute.")
    status: ModelRouteStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
