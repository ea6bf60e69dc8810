"""The ClusterRoles of the Team roles (pure): who may do what with joch objects.

Every Team role (TeamMember.role: admin, operator, viewer, approver, auditor) is one ClusterRole
``joch-<role>``; the teams service (joch.controllers.teams) binds it, with one RoleBinding per role, in
each namespace of the Team (joch.domain.reconcile.teams). ``joch-break-glass`` is kept apart: no Team
role maps to it, so nothing joch does ever binds it; a cluster admin binds it by hand (docs/teams.md).

The rules are derived from the models (joch.api.v1alpha1: group, plural, scope), never listed by hand:

============== =================================================================================
joch-viewer    get, list, watch on every joch kind (the joch Secret kind is a reference: it holds
               no value; core Secrets are not granted)
joch-operator  viewer + create, update, patch, delete on Agents, Deployments, Executions, Approvals
joch-admin     viewer + every verb but the custom ones (create, update, patch, delete,
               deletecollection) on every namespaced joch kind, update/patch of approvals/status,
               read RoleBindings
joch-approver  get, list, watch on Approvals, ToolCalls, Executions, Agents; update/patch of
               approvals/status (joch admission decides who may decide which Approval)
joch-auditor   viewer + the verb ``acknowledge`` on approvals, update/patch of approvals/status,
               read Events
joch-break-glass  the verb ``override`` on approvals, get/list/watch of approvals, update/patch of
               approvals/status
============== =================================================================================

Writes to cluster-scoped kinds (Team, Environment, FrameworkAdapter) are in no role: whoever may write a
Team may grant any role in any namespace. A RoleBinding grants nothing cluster-scoped anyway.

:func:`cluster_roles` returns the six objects; ``joch manifests`` writes them to ``rbac/team-roles.yaml``
and into the chart (:func:`chart_template`, ``templates/team-roles.yaml``); ``joch operator`` applies them
at start-up where its credentials allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import yaml

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.domain.admission import approvals
from joch.domain.reconcile import teams
from joch.manifests import files

__all__ = [
    "ACKNOWLEDGE_VERB",
    "ADMIN_VERBS",
    "BREAK_GLASS",
    "DESCRIPTIONS",
    "OVERRIDE_VERB",
    "READ_VERBS",
    "ROLE_NAMES",
    "TEAM_ROLE_NAMES",
    "WRITE_VERBS",
    "chart_template",
    "cluster_role",
    "cluster_roles",
    "render_file",
    "rules",
]

BREAK_GLASS: Final = "joch-break-glass"
OVERRIDE_VERB: Final = approvals.OVERRIDE_VERB
"""The custom verb on approvals that lets a user override a decision (joch-break-glass only)."""
ACKNOWLEDGE_VERB: Final = approvals.ACKNOWLEDGE_VERB
"""The custom verb on approvals that lets an auditor acknowledge an override (joch-auditor)."""

TEAM_ROLE_NAMES: Final[dict[str, str]] = {role: teams.cluster_role(role) for role in teams.TEAM_ROLES}
"""Team role -> its ClusterRole (the five a Team binds)."""
ROLE_NAMES: Final[tuple[str, ...]] = (*TEAM_ROLE_NAMES.values(), BREAK_GLASS)
"""Every ClusterRole of this module: the five Team roles, then joch-break-glass."""

READ_VERBS: Final = ("get", "list", "watch")
WRITE_VERBS: Final = ("create", "update", "patch", "delete")
ADMIN_VERBS: Final = (*READ_VERBS, *WRITE_VERBS, "deletecollection")
STATUS_VERBS: Final = ("get", "update", "patch")
"""On approvals/status: reading it, and deciding (a merge patch of the status subresource)."""

DESCRIPTIONS: Final[dict[str, str]] = {
    "viewer": "Read every joch object in the team's namespaces.",
    "operator": "Read every joch object; create, change and delete Agents, Deployments, Executions and "
    "Approvals.",
    "admin": "Read and write every joch object in the team's namespaces (not the custom approval verbs); "
    "read RoleBindings.",
    "approver": "Read Approvals, ToolCalls, Executions and Agents; decide Approvals (approvals/status).",
    "auditor": "Read every joch object and Events; acknowledge break-glass overrides of Approvals.",
    "break-glass": "Override Approval decisions (the override verb). Never bound by a Team.",
}

_RBAC: Final = teams.RBAC_GROUP
_LABELS: Final = {"app.kubernetes.io/part-of": "joch", "app.kubernetes.io/component": "team-role"}

Rule = dict[str, Any]


def _grouped(models: Iterable[type[meta.Resource]], *, suffix: str = "") -> dict[str, list[str]]:
    """group -> sorted plurals (with ``suffix``, e.g. ``/status``) of ``models``, groups sorted."""
    by_group: dict[str, set[str]] = {}
    for model in models:
        by_group.setdefault(model.crd.group, set()).add(model.crd.plural + suffix)
    return {group: sorted(plurals) for group, plurals in sorted(by_group.items())}


def _rules(models: Iterable[type[meta.Resource]], verbs: Sequence[str], *, suffix: str = "") -> list[Rule]:
    return [
        {"apiGroups": [group], "resources": plurals, "verbs": list(verbs)}
        for group, plurals in _grouped(models, suffix=suffix).items()
    ]


def _approvals(verbs: Sequence[str]) -> list[Rule]:
    return _rules((v1alpha1.Approval,), verbs)


def _decide() -> list[Rule]:
    return _rules((v1alpha1.Approval,), STATUS_VERBS, suffix="/status")


def rules(role: str, kinds: Sequence[type[meta.Resource]] = v1alpha1.KINDS) -> list[Rule]:
    """The PolicyRules of ``role`` (a Team role, or ``break-glass``) over the joch ``kinds``."""
    namespaced = [k for k in kinds if k.crd.scope == "Namespaced"]
    viewer = _rules(kinds, READ_VERBS)
    if role == "viewer":
        return viewer
    if role == "operator":
        run = (v1alpha1.Agent, v1alpha1.Deployment, v1alpha1.Execution, v1alpha1.Approval)
        return [*viewer, *_rules([k for k in run if k in kinds], WRITE_VERBS)]
    if role == "admin":
        cluster = [k for k in kinds if k.crd.scope == "Cluster"]
        bindings = {"apiGroups": [_RBAC], "resources": ["rolebindings"], "verbs": list(READ_VERBS)}
        return [*_rules(cluster, READ_VERBS), *_rules(namespaced, ADMIN_VERBS), *_decide(), bindings]
    if role == "approver":
        read = (v1alpha1.Agent, v1alpha1.Approval, v1alpha1.Execution, v1alpha1.ToolCall)
        return [*_rules(read, READ_VERBS), *_decide()]
    if role == "auditor":
        events = {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": list(READ_VERBS)}
        return [*viewer, *_approvals((ACKNOWLEDGE_VERB,)), *_decide(), events]
    if role == "break-glass":
        return [*_approvals((*READ_VERBS, OVERRIDE_VERB)), *_decide()]
    raise ValueError(f"unknown role {role!r}")


def cluster_role(role: str) -> dict[str, Any]:
    """The ClusterRole of ``role`` (a Team role, or ``break-glass``)."""
    name = BREAK_GLASS if role == "break-glass" else TEAM_ROLE_NAMES[role]
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_LABELS, teams.ROLE_LABEL: role},
            "annotations": {"joch.dev/description": DESCRIPTIONS[role]},
        },
        "rules": rules(role),
    }


def cluster_roles() -> list[dict[str, Any]]:
    """The six ClusterRoles, in :data:`ROLE_NAMES` order."""
    return [cluster_role(role) for role in (*teams.TEAM_ROLES, "break-glass")]


def render_file() -> str:
    """``rbac/team-roles.yaml``: the ClusterRoles for ``kubectl apply -f`` (installs without the chart)."""
    return files.dump_yaml(*cluster_roles())


_TEMPLATE_HEAD: Final = """\
{{/* Code generated by 'make manifests' from joch.manifests.roles. DO NOT EDIT. */}}
{{- /*
The ClusterRoles of the Team roles (docs/teams.md): the teams service binds joch-<role> in every namespace
of a Team; joch-break-glass is bound by hand only. Fixed names (the operator refers to them by name):
one release per cluster renders them (rbac.teamRoles). A ClusterRole of that name that exists and belongs
to no release of this name (an operator with the rights to create it did, or kubectl apply -f
rbac/team-roles.yaml) is left as it is.
*/ -}}
{{- if and .Values.rbac.create .Values.rbac.teamRoles (eq .Values.rbac.scope "cluster") }}
"""


def _yaml(value: Any, indent: str) -> list[str]:
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=110)
    return [indent + line for line in text.rstrip("\n").split("\n")]


def chart_template() -> str:
    """``charts/joch/templates/team-roles.yaml``: the ClusterRoles with the chart's labels, rendered with
    rbac.create, rbac.teamRoles and rbac.scope=cluster."""
    lines = [_TEMPLATE_HEAD.rstrip("\n")]
    for role in cluster_roles():
        name = role["metadata"]["name"]
        extra = {k: v for k, v in role["metadata"]["labels"].items() if k != "app.kubernetes.io/part-of"}
        lines += [
            f'{{{{- $found := lookup "rbac.authorization.k8s.io/v1" "ClusterRole" "" "{name}" }}}}',
            '{{- $owner := dig "metadata" "annotations" "meta.helm.sh/release-name" "" $found }}',
            "{{- if or (not $found) (eq $owner $.Release.Name) }}",
            "---",
            f"apiVersion: {role['apiVersion']}",
            "kind: ClusterRole",
            "metadata:",
            f"  name: {name}",
            "  labels:",
            '    {{- include "joch.labels" $ | nindent 4 }}',
            *_yaml(extra, "    "),
            "  annotations:",
            *_yaml(role["metadata"]["annotations"], "    "),
            "rules:",
            *_yaml(role["rules"], ""),
            "{{- end }}",
        ]
    lines.append("{{- end }}")
    return "\n".join(lines) + "\n"
