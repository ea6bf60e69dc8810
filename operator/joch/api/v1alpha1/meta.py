"""Building blocks shared by every joch kind: the envelope, references, conditions and status.

Conventions every kind module follows (the CRD renderer in ``joch.manifests.crds`` relies on them):

- Python attributes are snake_case; the wire form (YAML, JSON, the CRD schema) is camelCase, produced by
  :func:`camel`. ``model_dump(by_alias=True, exclude_none=True)`` gives the wire form.
- Every field has a ``description``: it becomes the ``kubectl explain`` text, so it teaches the user.
- Optional fields default to ``None`` and are omitted on the wire.
- Static defaults (docs/decisions.md D14) are declared on the field and rendered as CRD schema defaults,
  so the API server and the models agree on them. A nested object that should always exist with its
  defaults uses ``default_factory`` (rendered as ``default: {}``).
- Invariants inside one object are CEL rules, declared with :func:`cel_rules` on the model config and
  rendered as ``x-kubernetes-validations``.
- Free-form JSON (schemas, payloads, policy matchers) uses :data:`JSONObject` / :data:`JSONValue`, which
  render with ``x-kubernetes-preserve-unknown-fields``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, WithJsonSchema

__all__ = [
    "DNS1123_LABEL",
    "DNS1123_SUBDOMAIN",
    "VERSION",
    "CRDInfo",
    "ClusterRef",
    "Comparison",
    "Condition",
    "ConditionStatus",
    "Duration",
    "JSONObject",
    "JSONValue",
    "Name",
    "ObjectMeta",
    "PrinterColumn",
    "ProviderModel",
    "Ref",
    "Resource",
    "Schema",
    "Status",
    "camel",
    "cel_rules",
    "list_map",
    "ready_columns",
]

VERSION = "v1alpha1"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def camel(snake: str) -> str:
    """``fallback_rate_7d`` -> ``fallbackRate7d`` (digits are kept as they are, unlike pydantic's)."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Schema(pydantic.BaseModel):
    """Base of every spec/status object: camelCase on the wire, unknown fields rejected."""

    model_config = pydantic.ConfigDict(
        alias_generator=camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it is written to the API server: camelCase keys, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel_rules(*rules: tuple[str, str] | tuple[str, str, str]) -> dict[str, Any]:
    """``json_schema_extra`` holding CEL invariants: each rule is ``(expression, message[, fieldPath])``."""
    rendered = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        rendered.append(entry)
    return {"x-kubernetes-validations": rendered}


def list_map(*keys: str) -> dict[str, Any]:
    """``json_schema_extra`` for a list of objects unique by ``keys`` (the API server rejects duplicates)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


# --- Scalar types ---------------------------------------------------------------------------------

Name = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN),
]
"""A Kubernetes object name (lowercase DNS-1123 subdomain), decision D3."""

Duration = Annotated[
    str,
    Field(pattern=r"^([0-9]+(ms|s|m|h|d))+$", max_length=64),
]
"""A duration such as ``10m``, ``24h`` or ``7d``."""

Comparison = Annotated[
    str,
    Field(pattern=r"^(<=|>=|<|>|==)\s*-?[0-9]+(\.[0-9]+)?$", max_length=64),
]
"""A numeric comparison such as ``>5`` or ``<0.40``."""

ProviderModel = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=317,
    ),
]
"""A model address ``provider:name``: the Model's spec.provider and metadata.name (decision D6)."""

JSONValue = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]
"""Any JSON value, stored as given."""

JSONObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A free-form JSON object, stored as given."""


# --- References ------------------------------------------------------------------------------------


class Ref(Schema):
    """A reference to a namespaced object (decision D2)."""

    name: Name = Field(description="Name of the referenced object.")
    namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS1123_LABEL,
        description=(
            "Namespace of the referenced object. Defaults to the referrer's namespace. Another namespace "
            "is allowed only if the operator lists it as shared (setting sharedNamespaces, decision D2)."
        ),
    )


class ClusterRef(Schema):
    """A reference to a cluster-scoped object (FrameworkAdapter, Environment, Team)."""

    name: Name = Field(description="Name of the referenced cluster-scoped object.")


# --- Status ------------------------------------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Schema):
    """A kstatus condition (decision D11). Ready, Reconciling and Stalled are common to every kind."""

    type: str = Field(
        max_length=316,
        description="Condition type: Ready, Reconciling, Stalled, or a kind-specific one such as "
        "ResolvedRefs, Compiled or PolicyCompliant.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(
        default=None,
        max_length=1024,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str | None = Field(default=None, max_length=32768, description="Human-readable explanation.")
    last_transition_time: str | None = Field(
        default=None, max_length=64, description="When the condition last changed status (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed from."
    )


class Status(Schema):
    """Fields every status carries. Only controllers write status (it is a subresource)."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the controller last acted on."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Current observations of the object's state, kstatus style (Ready, Reconciling, "
        "Stalled, and kind-specific conditions).",
    )


# --- Envelope ------------------------------------------------------------------------------------------


class ObjectMeta(pydantic.BaseModel):
    """Kubernetes object metadata. Only the fields joch reads are typed; the rest is kept as given."""

    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True, alias_generator=camel)

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


def ready_columns() -> tuple[PrinterColumn, ...]:
    """The Ready column every kind shows first."""
    return (
        PrinterColumn(
            "Ready",
            '.status.conditions[?(@.type=="Ready")].status',
            description="Whether the object is ready (the Ready condition).",
        ),
    )


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclasses.dataclass(frozen=True)
class CRDInfo:
    """How a kind is served: group, names, scope, printer columns (decisions D1, D2, D4)."""

    group: str
    kind: str
    plural: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...] = ()
    description: str = ""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{VERSION}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def printer_columns(self) -> tuple[PrinterColumn, ...]:
        return (*self.columns, AGE)


class Resource(Schema):
    """The envelope of every joch object: apiVersion, kind, metadata, spec, status.

    Subclasses set ``crd`` and declare ``spec`` and ``status`` with their own types.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    crd: ClassVar[CRDInfo]

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @pydantic.model_validator(mode="after")
    def _check_type(self) -> Resource:
        crd = type(self).crd
        if self.api_version != crd.api_version:
            raise ValueError(f"apiVersion must be {crd.api_version!r} for kind {crd.kind}")
        if self.kind != crd.kind:
            raise ValueError(f"kind must be {crd.kind!r}")
        return self
