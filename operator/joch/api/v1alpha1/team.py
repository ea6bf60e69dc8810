"""Team (ops.joch.dev/v1alpha1, cluster-scoped): people, roles, namespaces and default policies and budgets.

docs/catalog.md section 2.20; docs/decisions.md D2 (cluster scope). defaultPolicies and budgetRefs are plain
name lists, as the catalog writes them (catalog section 8 #8).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta

TeamRole = Literal["admin", "operator", "viewer", "approver", "auditor"]

NamespaceName = Annotated[str, Field(min_length=1, max_length=63, pattern=meta.DNS1123_LABEL)]
"""A Kubernetes namespace name (DNS-1123 label)."""


class TeamMember(meta.Schema):
    """A person in the team and their role."""

    user: str = Field(
        min_length=1,
        max_length=254,
        description="The member's user name as the API server knows it, e.g. email.",
    )
    role: TeamRole = Field(
        description="admin: manage the team and its objects. operator: apply and run agents. viewer: read "
        "only. approver: decide Approvals routed to the team. auditor: read objects and audit records."
    )


class TeamSpec(meta.Schema):
    """Desired state of a Team."""

    description: str | None = Field(default=None, max_length=4096, description="What the team does.")
    members: list[TeamMember] | None = Field(
        default=None,
        max_length=1024,
        json_schema_extra=meta.list_map("user"),
        description="Members and their roles; each user appears once. RBAC is derived from these roles and "
        "applied in every namespace of the team.",
    )
    namespaces: list[NamespaceName] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Namespaces the team owns.",
    )
    default_policies: list[meta.Name] | None = Field(
        default=None,
        max_length=256,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of Policies bound to every Agent in the team's namespaces, each looked up in the "
        "Agent's namespace.",
    )
    budget_refs: list[meta.Name] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of Budgets that apply to the team, each looked up in the team's namespaces.",
    )


class TeamStatus(meta.Status):
    """Observed state of a Team."""

    phase: Literal["Pending", "Ready", "Failed"] | None = Field(
        default=None,
        description="Pending: RBAC not applied yet. Ready: RBAC applied in every namespace. Failed: a "
        "namespace or reference could not be used.",
    )
    member_count: int | None = Field(default=None, ge=0, description="Number of members.")


class Team(meta.Resource):
    """A team: members with roles, owned namespaces, default policies and budgets."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Team",
        plural="teams",
        scope="Cluster",
        short_names=("team",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Members", ".status.memberCount", "integer", description="Number of members."),
            meta.PrinterColumn("Namespaces", ".spec.namespaces", description="Namespaces the team owns."),
            meta.PrinterColumn("Phase", ".status.phase", priority=1),
        ),
        description="A cluster-scoped team: members with roles, the namespaces it owns, and the policies and "
        "budgets that apply to its agents.",
    )

    spec: TeamSpec = Field(description="Desired state of the Team.")
    status: TeamStatus | None = Field(default=None, description="Observed state, written by the operator.")
