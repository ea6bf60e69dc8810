"""Secret (ops.joch.dev/v1alpha1): a reference to a credential held elsewhere. It never holds a value.

docs/catalog.md section 2.22; docs/decisions.md D4 (short names jsecret, jsec: the kind clashes with core/v1
Secret) and D12 (the control plane never reads secret values and has no RBAC to read core Secrets). Values are
resolved at the data-plane edge: provider keys by the model router, tool credentials by the tool gateway, MCP
credentials by the MCP gateway.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from joch.api.v1alpha1 import meta


class SecretSource(meta.Schema):
    """Where the value lives."""

    type: Literal[
        "env", "kubernetes", "vault", "aws-secrets-manager", "gcp-secret-manager", "azure-key-vault"
    ] = Field(
        description="Secret store: env (an environment variable of the data-plane component), kubernetes (a "
        "core/v1 Secret in this namespace), vault, aws-secrets-manager, gcp-secret-manager or "
        "azure-key-vault."
    )
    name: str = Field(
        min_length=1,
        max_length=1024,
        description="Name of the secret in the store: the env var name, the core Secret name, or the "
        "path/ARN.",
    )
    key: str | None = Field(
        default=None, max_length=253, description="Key inside the secret, e.g. the data key of a core Secret."
    )


class SecretRotation(meta.Schema):
    """How the value is rotated (by its owner; joch only tracks when rotation is due)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "self.policy != 'scheduled' || has(self.intervalDays)",
                "policy scheduled needs intervalDays",
                ".intervalDays",
            ),
        )
    )

    policy: Literal["scheduled", "manual"] = Field(
        description="scheduled: rotation is due every intervalDays. manual: no due date is tracked."
    )
    interval_days: int | None = Field(default=None, ge=1, le=3650, description="Days between rotations.")

    @pydantic.model_validator(mode="after")
    def _check_interval(self) -> SecretRotation:
        if self.policy == "scheduled" and self.interval_days is None:
            raise ValueError("policy scheduled needs intervalDays")
        return self


class SecretBoundTo(meta.Schema):
    """The only consumers that may use the secret."""

    models: list[meta.ProviderModel] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Models, as provider:name, that may use the secret.",
    )
    mcp_servers: list[meta.Name] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="MCPServer names that may use the secret.",
    )
    tools: list[meta.Name] | None = Field(
        default=None,
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Tool names (metadata.name) that may use the secret.",
    )


class SecretScope(meta.Schema):
    """Restricts which consumers may use the secret."""

    bound_to: SecretBoundTo | None = Field(
        default=None,
        description="Consumers allowed to use the secret; unset means any referrer in the namespace.",
    )


class SecretSpec(meta.Schema):
    """Desired state of a joch Secret: a reference only, never a value."""

    source: SecretSource = Field(
        description="Where the value lives. joch records this reference only; it never stores or reads the "
        "value."
    )
    rotation: SecretRotation | None = Field(default=None, description="Rotation tracking.")
    scope: SecretScope | None = Field(default=None, description="Which consumers may use the secret.")


class SecretStatus(meta.Status):
    """Observed state of a joch Secret, as reported by the data-plane components that resolve it."""

    phase: Literal["Pending", "Ready", "RotationDue", "Failed"] | None = Field(
        default=None,
        description="Pending: not resolved yet. Ready: last resolution succeeded. RotationDue: rotation is "
        "overdue. Failed: the last resolution failed.",
    )
    last_resolved_at: str | None = Field(
        default=None, max_length=64, description="When a data-plane component last resolved it (RFC 3339)."
    )
    rotation_due_at: str | None = Field(
        default=None, max_length=64, description="When rotation is due (RFC 3339)."
    )


class Secret(meta.Resource):
    """A reference to a credential held in an external store; joch never holds or reads the value."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Secret",
        plural="secrets",
        scope="Namespaced",
        short_names=("jsecret", "jsec"),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Type", ".spec.source.type", description="Secret store."),
            meta.PrinterColumn("Source", ".spec.source.name", description="Name in the store."),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("Rotation Due", ".status.rotationDueAt", "date", priority=1),
        ),
        description="A joch Secret (not core/v1): a reference to a credential in an external store (env, "
        "Kubernetes, Vault, cloud secret managers). It records references only, never values; use `jsecret` "
        "or secrets.ops.joch.dev with kubectl.",
    )

    spec: SecretSpec = Field(
        description="Desired state of the Secret: where the value lives, never the value."
    )
    status: SecretStatus | None = Field(default=None, description="Observed state, written by the operator.")
