"""Model (model.joch.dev/v1alpha1): one provider model that routes can choose, with limits and pricing.

docs/catalog.md section 2.3; docs/decisions.md D2 (namespaced; shared namespaces hold fleet-wide models), D6
(a model is addressed as ``provider:name``), D12 (only secret references, never values).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

URL_PATTERN = r"^https?://[^\s]+$"

PROVIDER_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
"""The provider half of a ``provider:name`` model address (meta.ProviderModel)."""


class SecretKeyRef(meta.Schema):
    """A key inside a joch Secret (ops.joch.dev) in the Model's namespace. The value is never read here."""

    name: meta.Name = Field(description="Name of the joch Secret.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the Secret that holds the value.",
    )


class ModelEndpoint(meta.Schema):
    """Where the model is served."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "!(has(self.baseUrl) && has(self.baseUrlSecretRef))",
                "set at most one of baseUrl and baseUrlSecretRef",
            ),
            (
                "self.type != 'local' || has(self.baseUrl) || has(self.baseUrlSecretRef)",
                "a local endpoint needs baseUrl or baseUrlSecretRef",
            ),
        )
    }

    type: Literal["hosted", "local"] = Field(
        description="hosted: the provider's cloud API. local: a server you run (ollama, vllm, llama-cpp)."
    )
    base_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=URL_PATTERN,
        description="Base URL of the API, e.g. http://ollama.models:11434. Unset for hosted models means the "
        "provider's public endpoint.",
    )
    base_url_secret_ref: SecretKeyRef | None = Field(
        default=None, description="A Secret key holding the base URL, when the URL itself is confidential."
    )


class ModelAuth(meta.Schema):
    """Credentials for the provider API. Leave empty ({}) for local models without auth."""

    secret_ref: meta.Ref | None = Field(
        default=None,
        description="The joch Secret (ops.joch.dev) holding the API credential. The control plane records "
        "the reference only; the gateway resolves it at call time.",
    )


class ModelCapabilities(meta.Schema):
    """What the model supports. ModelRoute requirements are matched against these (unset means false)."""

    text: bool | None = Field(default=None, description="Accepts and produces text.")
    vision: bool | None = Field(default=None, description="Accepts image input.")
    audio: bool | None = Field(default=None, description="Accepts or produces audio.")
    tool_calling: bool | None = Field(default=None, description="Supports tool (function) calling.")
    structured_output: bool | None = Field(default=None, description="Can be forced to a structured output.")
    json_schema: bool | None = Field(default=None, description="Honours a JSON Schema for its output.")
    streaming: bool | None = Field(default=None, description="Streams output tokens.")
    reasoning: bool | None = Field(default=None, description="Has a reasoning (thinking) mode.")
    computer_use: bool | None = Field(default=None, description="Supports computer-use actions.")
    embeddings: bool | None = Field(default=None, description="Produces embeddings (usable by RAG).")


class ModelLimits(meta.Schema):
    """Provider limits the router respects."""

    context_window_tokens: int | None = Field(
        default=None, ge=1, description="Size of the context window in tokens."
    )
    max_output_tokens: int | None = Field(
        default=None, ge=1, description="Most tokens one response may hold."
    )
    requests_per_minute: int | None = Field(default=None, ge=1, description="Request rate limit per minute.")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="Token rate limit per minute.")


class ModelPricing(meta.Schema):
    """List prices used for cost accounting; the pricing in force at call time applies."""

    currency: str | None = Field(
        default=None, max_length=3, pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code, e.g. USD."
    )
    input_per_million_tokens: float | None = Field(
        default=None, ge=0, description="Price per million input tokens."
    )
    output_per_million_tokens: float | None = Field(
        default=None, ge=0, description="Price per million output tokens."
    )


class ModelDefaultParameters(meta.Schema):
    """Sampling parameters sent when the agent does not set them."""

    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature, 0 to 2.")
    top_p: float | None = Field(
        default=None, ge=0, le=1, description="Nucleus sampling probability mass, 0 to 1."
    )
    reasoning_effort: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[a-z_]+$",
        description="Reasoning effort of reasoning models, as the provider names it, e.g. low or high.",
    )


class ModelRouting(meta.Schema):
    """Hints for the model router."""

    priority: int | None = Field(
        default=None,
        ge=0,
        description="Tie-breaker among candidates a route allows; higher wins. A route's primary/fallback "
        "order comes first.",
    )
    regions: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Regions the model is served from, e.g. eu, us. ModelRoute dataResidency is matched "
        "against them (EU matches eu).",
    )
    fallback_policy: Literal["on_error_or_budget", "on_error"] | None = Field(
        default=None,
        description="When the router may fall forward from this model: on_error, or on_error_or_budget "
        "(also when a budget is exceeded).",
    )


class ModelSpec(meta.Schema):
    """Desired state of a Model."""

    provider: str = Field(
        min_length=1,
        max_length=63,
        pattern=PROVIDER_PATTERN,
        description="Provider adapter: openai, anthropic, google, microsoft, ollama, vllm, llama-cpp or "
        "generic-openai. Routes address the model as <provider>:<metadata.name> (decision D6).",
    )
    model: str = Field(
        min_length=1,
        max_length=256,
        description="The provider's model id sent in API calls; it may differ from metadata.name.",
    )
    endpoint: ModelEndpoint | None = Field(default=None, description="Where the model is served.")
    auth: ModelAuth | None = Field(default=None, description="API credentials; {} for local models.")
    capabilities: ModelCapabilities | None = Field(default=None, description="What the model supports.")
    limits: ModelLimits | None = Field(default=None, description="Context window and rate limits.")
    pricing: ModelPricing | None = Field(default=None, description="Prices for cost accounting.")
    default_parameters: ModelDefaultParameters | None = Field(
        default=None, description="Sampling parameters used when the agent sets none."
    )
    routing: ModelRouting | None = Field(default=None, description="Priority, regions and fallback policy.")


class ModelStatus(meta.Status):
    """Observed state of a Model."""

    phase: Literal["Pending", "Ready", "Degraded", "Failed"] | None = Field(
        default=None,
        description="Pending: not probed yet. Ready: reachable and healthy. Degraded: reachable but slow or "
        "erroring. Failed: unreachable or misconfigured.",
    )
    health: Literal["Healthy", "Degraded", "Unhealthy", "Unknown"] | None = Field(
        default=None, description="Router health from latency and error signals and synthetic probes."
    )
    latency_p50_ms: int | None = Field(default=None, ge=0, description="Median call latency in milliseconds.")
    latency_p95_ms: int | None = Field(default=None, ge=0, description="95th percentile call latency in ms.")
    address: str | None = Field(
        default=None, max_length=317, description="The model's route address, <provider>:<metadata.name>."
    )


class Model(meta.Resource):
    """A provider model (hosted or local) with capabilities, limits and pricing, addressed provider:name."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="model.joch.dev",
        kind="Model",
        plural="models",
        scope="Namespaced",
        short_names=("mdl",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Provider", ".spec.provider", description="Provider adapter."),
            meta.PrinterColumn("Model", ".spec.model", description="Provider's model id."),
            meta.PrinterColumn("Health", ".status.health", description="Router health."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("P95ms", ".status.latencyP95Ms", "integer", priority=1),
        ),
        description="A provider model (hosted or local): endpoint, credentials reference, capabilities, "
        "limits and pricing. ModelRoutes address it as <spec.provider>:<metadata.name>.",
    )

    spec: ModelSpec = Field(description="Desired state of the Model.")
    status: ModelStatus | None = Field(default=None, description="Observed state, written by the operator.")
