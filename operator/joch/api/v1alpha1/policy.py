"""Policy (joch.dev/v1alpha1): ordered rules that allow, deny or modify what governed agents do.

docs/catalog.md sections 2.7 and 4; docs/decisions.md D8 (rule normal form, version v<generation>) and D9
(preflight). The rules are free-form here: the policy engine parses and validates their grammar at admission.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LabelValue = Annotated[str, Field(max_length=63, pattern=r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")]
"""A Kubernetes label value (empty, or up to 63 alphanumerics, '-', '_' and '.')."""

NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=meta.DNS1123_LABEL)]
"""A Kubernetes namespace name (DNS-1123 label)."""


class LabelSelectorRequirement(meta.Schema):
    """One label requirement: key, operator and (for In/NotIn) values."""

    model_config = meta.Schema.model_config | {
        "json_schema_extra": meta.cel_rules(
            (
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
                ": !has(self.values)",
                "values must be non-empty for In and NotIn, and absent for Exists and DoesNotExist",
            ),
        )
    }

    key: str = Field(
        min_length=1,
        max_length=317,
        pattern=LABEL_KEY,
        description="The label key, e.g. team or joch.dev/tier.",
    )
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In: the label value is one of values. NotIn: it is not (or the label is absent). "
        "Exists / DoesNotExist: the label is present / absent, whatever its value."
    )
    values: list[LabelValue] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Label values for In and NotIn; must be empty for Exists and DoesNotExist.",
    )


class LabelSelector(meta.Schema):
    """A Kubernetes label selector. All matchLabels and matchExpressions must hold (they are ANDed)."""

    match_labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Labels the Agent must carry with exactly these values.",
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=64, description="Set-based label requirements, all of which must hold."
    )


class PolicyAgentSelector(meta.Schema):
    """Which Agents the policy governs, by label."""

    selector: LabelSelector = Field(
        description="Label selector over Agents in the policy's namespace. An empty selector ({}) matches "
        "every Agent."
    )


class PolicyAppliesTo(meta.Schema):
    """Selector-based binding, added on top of explicit bindings (Agent, Environment and Team policies)."""

    agents: PolicyAgentSelector | None = Field(
        default=None, description="Agents governed by label selector, in the policy's namespace."
    )
    namespaces: list[NamespaceName] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Namespaces whose Agents the policy governs. Naming another namespace takes effect only "
        "for a policy in a shared namespace (operator setting sharedNamespaces).",
    )
    environments: list[meta.Name] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Environments (by name, e.g. prod) whose Agents the policy governs. An Agent's "
        "environment is its env label, else its namespace's joch.dev/environment label, else the operator "
        "default (decision D5).",
    )


class PolicyAudit(meta.Schema):
    """What the policy engine records about the decisions this policy takes part in."""

    log_requests: bool = Field(default=True, description="Log each request evaluated against the policy.")
    log_decisions: bool | None = Field(
        default=None, description="Log each decision (allow, deny, modify) with the matching rule index."
    )
    redact_secrets: bool = Field(
        default=True, description="Redact secret-shaped values from the audit log before writing it."
    )


class PolicySpec(meta.Schema):
    """Desired state of a Policy."""

    description: str | None = Field(default=None, max_length=4096, description="What the policy enforces.")
    applies_to: PolicyAppliesTo | None = Field(
        default=None,
        description="Agents governed through selectors (labels, namespaces, environments). Agents that "
        "list the policy in spec.policies, and Environments and Teams that bind it, are governed as well.",
    )
    rules: list[meta.JSONObject] = Field(
        min_length=1,
        max_length=256,
        description="Ordered rules, each an object {when, action | require}. `when` maps a context path to "
        "a matcher (scalar = equal, list = any of, '<5' style string = numeric comparison, {cel: expr}); all "
        "entries must match. Actions: deny, {deny: true, reason}, {redact: true, redactionRules: [...]}, "
        "allow; require.approval asks for an Approval. Rules run in order, the first deny wins, and no "
        "match means allow. The grammar is checked at admission (decision D8).",
    )
    audit: PolicyAudit = Field(
        default_factory=PolicyAudit,
        description="Audit logging (logRequests and redactSecrets default to true).",
    )


class PolicyStatus(meta.Status):
    """Observed state of a Policy."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: not compiled yet. Ready: compiled and shipped to the gateways. Failed: a "
        "rule does not compile (see the Ready condition's message).",
    )
    version: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^v[0-9]+$",
        description="The policy version, v<metadata.generation> (decision D8), as pinned in compiled "
        "manifests.",
    )
    agents_selected: int | None = Field(
        default=None, ge=0, description="Number of Agents the policy applies to (explicit and by selector)."
    )
    last_evaluated_at: str | None = Field(
        default=None, max_length=64, description="When the policy was last evaluated (RFC 3339)."
    )
    evaluations7d: int | None = Field(default=None, ge=0, description="Evaluations in the last 7 days.")
    denials7d: int | None = Field(default=None, ge=0, description="Deny decisions in the last 7 days.")
    modifications7d: int | None = Field(
        default=None, ge=0, description="Modify decisions (e.g. redactions) in the last 7 days."
    )


class Policy(meta.Resource):
    """Governance rules over agents' model, tool, MCP and data use, bound explicitly or by selector."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="joch.dev",
        kind="Policy",
        plural="policies",
        scope="Namespaced",
        short_names=("jpol",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Version", ".status.version", description="Policy version v<generation>."),
            meta.PrinterColumn(
                "Agents", ".status.agentsSelected", "integer", description="Agents the policy applies to."
            ),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
            meta.PrinterColumn("Denials7d", ".status.denials7d", "integer", priority=1),
        ),
        description="Ordered governance rules (allow, deny, modify, require approval) over what agents "
        "do, bound explicitly or through appliesTo selectors. Version is v<metadata.generation>.",
    )

    spec: PolicySpec = Field(description="Desired state of the Policy.")
    status: PolicyStatus | None = Field(default=None, description="Observed state, written by the operator.")
