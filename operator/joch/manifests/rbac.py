"""The operator's RBAC, declared once as a table of grants per feature and rendered from it (pure).

Every permission the operator holds is a :class:`Grant` in :data:`GRANTS`: the feature that needs it, the
API group, resources and verbs, *where* it applies and why. Nothing else grants anything: the Helm chart's
Roles and ClusterRoles are rendered from this table (:func:`render_chart_helpers` writes
``charts/joch/templates/_rbac-rules.tpl``), and so are the plain objects of :func:`render` and the table
in the chart README (:func:`markdown_table`). Tests compare the table with what the handlers use.

Where a grant applies::

    namespaces   the namespaces the operator manages: cluster-wide (ClusterRole) with rbac.scope=cluster,
                 one Role per listed namespace with rbac.scope=namespace; read verbs also in the
                 shared namespaces (decision D2, docs/decisions.md) that are not managed
    cluster      cluster-scoped resources (Namespaces, FrameworkAdapter, Environment, Team, webhook
                 configurations): only with rbac.scope=cluster (a namespace-scoped install holds no
                 ClusterRole; see rbac.clusterReader for the read-only exception, and grpc.enabled
                 or decisions.callers for the TokenReview one)
    release      the operator's own namespace (its Lease, its webhook serving Secret): always a Role

The operator holds no permission on core Secrets except ``get``/``update``/``patch`` of its own webhook
serving Secret, by name, in its own namespace, and only when the operator manages webhook TLS (decision
D12: it never reads secret values; ``list`` and ``watch`` are never granted, nor any other Secret).
It holds ``bind`` on the five Team-role ClusterRoles by name (so it can bind them for Team members
without holding what they grant), never on joch-break-glass, and never ``escalate``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.team import TeamRole
from joch.domain.compilation import catalog

__all__ = [
    "GRANTS",
    "READ_VERBS",
    "Grant",
    "Where",
    "markdown_table",
    "render",
    "render_chart_helpers",
    "rules",
]

Where = Literal["namespaces", "cluster", "release"]

READ_VERBS: Final = ("get", "list", "watch")
_RBAC: Final = "rbac.authorization.k8s.io"
_RBAC_VERSION: Final = f"{_RBAC}/v1"


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """One rule of the operator's RBAC, and why it exists."""

    feature: str
    """The part of the operator that needs it (controllers, admission, leader-election, webhook-tls...)."""
    why: str
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    where: Where
    resource_names: tuple[str, ...] = ()
    """The only objects allowed: chart helper templates (a name with a dot, e.g. ``joch.leaseName``) or
    literal names (``joch-admin``); empty = any."""
    when: str = ""
    """A Helm condition (a template pipeline) under which the chart renders this grant; empty = always."""

    def rule(self, *, read_only: bool = False, names: Sequence[str] = ()) -> dict[str, Any]:
        """The grant as a PolicyRule (``read_only`` keeps only get/list/watch)."""
        verbs = [v for v in self.verbs if v in READ_VERBS] if read_only else list(self.verbs)
        rule: dict[str, Any] = {
            "apiGroups": [self.api_group],
            "resources": list(self.resources),
            "verbs": verbs,
        }
        if names:
            rule["resourceNames"] = list(names)
        return rule


def _plurals(models: Iterable[type[meta.Resource]], *, namespaced: bool) -> dict[str, list[str]]:
    """group -> sorted plurals of the joch kinds with that scope."""
    by_group: dict[str, list[str]] = {}
    for model in models:
        if (model.crd.scope == "Namespaced") == namespaced:
            by_group.setdefault(model.crd.group, []).append(model.crd.plural)
    return {group: sorted(plurals) for group, plurals in sorted(by_group.items())}


def _catalog_grants() -> list[Grant]:
    """Read every joch kind (controllers' watches, admission's cross-reference checks); write the status of
    the kinds the controllers reconcile (catalog.COMPILE_KINDS)."""
    grants: list[Grant] = []
    places: tuple[tuple[bool, Where], ...] = ((True, "namespaces"), (False, "cluster"))
    for namespaced, where in places:
        for group, plurals in _plurals(v1alpha1.KINDS, namespaced=namespaced).items():
            grants.append(
                Grant(
                    "controllers",
                    "watch the catalog; admission resolves references",
                    group,
                    tuple(plurals),
                    READ_VERBS,
                    where,
                )
            )
        for group, plurals in _plurals(catalog.COMPILE_KINDS, namespaced=namespaced).items():
            grants.append(
                Grant(
                    "controllers",
                    "write status (kstatus conditions, observedGeneration, compiledManifest)",
                    group,
                    tuple(f"{p}/status" for p in plurals),
                    ("get", "patch", "update"),
                    where,
                )
            )
    return grants


_TEAM_ROLES: Final = typing.get_args(TeamRole)

_WEBHOOK_TLS: Final = '(include "joch.webhookTLSMode" .) | eq "operator"'
_CALLER_REVIEWS: Final = 'include "joch.tokenReviews" .'
"""gRPC served (it always authenticates), or the decision endpoint with decisions.callers."""

GRANTS: Final[tuple[Grant, ...]] = (
    *_catalog_grants(),
    Grant(
        "controllers",
        "CompiledAgentManifest ConfigMaps <agent>-g<generation> (decision D7, docs/decisions.md)",
        "",
        ("configmaps",),
        ("get", "list", "watch", "create", "update", "delete"),
        "namespaces",
    ),
    Grant(
        "agbom",
        "the AgBOM object of every Agent (created when absent) and its status",
        "ops.joch.dev",
        ("agboms", "agboms/status"),
        ("create", "patch", "update"),
        "namespaces",
    ),
    Grant(
        "agbom",
        "AgBOM documents: ConfigMaps <agent>-agbom-v<generation> (the newest 5 kept)",
        "",
        ("configmaps",),
        ("get", "list", "create", "update", "delete"),
        "namespaces",
    ),
    Grant(
        "agbom",
        "Agent status.agbom (the generation in force)",
        "joch.dev",
        ("agents/status",),
        ("get", "patch"),
        "namespaces",
    ),
    Grant(
        "executions",
        "Execution status (phase, manifestRef, abomSnapshotRef) and retention (finished ones deleted)",
        "runtime.joch.dev",
        ("executions", "executions/status"),
        ("get", "patch", "update", "delete"),
        "namespaces",
    ),
    Grant(
        "executions",
        "ToolCalls linked to their Execution (ownerReference, label)",
        "runtime.joch.dev",
        ("toolcalls",),
        ("get", "patch"),
        "namespaces",
    ),
    Grant(
        "executions",
        "one Job per Execution (same name, owned by it); cancelled ones deleted",
        "batch",
        ("jobs",),
        ("get", "list", "watch", "create", "delete"),
        "namespaces",
    ),
    Grant(
        "executions",
        "the Pods of those Jobs (phase, failure reason): read only",
        "",
        ("pods",),
        READ_VERBS,
        "namespaces",
    ),
    Grant(
        "executions",
        "the workers' ServiceAccount joch-worker, created per namespace",
        "",
        ("serviceaccounts",),
        ("get", "create"),
        "namespaces",
    ),
    Grant(
        "executions",
        "the workers' Role and RoleBinding joch-worker (read Executions, report into their status)",
        _RBAC,
        ("roles", "rolebindings"),
        ("get", "create"),
        "namespaces",
    ),
    Grant(
        "approvals",
        "Pending requests with their deadline, Expired on timeout (status); promotion requests created "
        "for blocked Deployments",
        v1alpha1.Approval.crd.group,
        ("approvals", "approvals/status"),
        ("get", "create", "patch", "update"),
        "namespaces",
    ),
    Grant(
        "approvals",
        "whether a user holds the override or acknowledge verb on an Approval (break-glass, review)",
        "authorization.k8s.io",
        ("localsubjectaccessreviews",),
        ("create",),
        "namespaces",
    ),
    Grant(
        "decisions",
        "who calls gRPC (always) and POST /v1/policy/evaluate (with decisions.callers): TokenReviews of the "
        "callers' bearer tokens (in namespace scope through a ClusterRole of this rule alone)",
        "authentication.k8s.io",
        ("tokenreviews",),
        ("create",),
        "cluster",
        when=_CALLER_REVIEWS,
    ),
    Grant(
        "budgets",
        "Budget status: windows, ledger, phase and conditions",
        v1alpha1.Budget.crd.group,
        ("budgets/status",),
        ("get", "patch", "update"),
        "namespaces",
    ),
    Grant(
        "evals",
        "Eval status: runs, scores, phase, schedule ticks",
        v1alpha1.Eval.crd.group,
        ("evals/status",),
        ("get", "patch", "update"),
        "namespaces",
    ),
    Grant(
        "evals",
        "eval runs: Executions of the Eval's Agent (trigger eval), on schedule and on promotion",
        "runtime.joch.dev",
        ("executions",),
        ("create",),
        "namespaces",
    ),
    Grant(
        "teams",
        "one RoleBinding per Team role in each of the team's namespaces (label joch.dev/team)",
        _RBAC,
        ("rolebindings",),
        ("get", "list", "watch", "create", "patch", "update", "delete"),
        "namespaces",
    ),
    Grant(
        "teams",
        "bind the Team roles' ClusterRoles (only these, by name; never joch-break-glass, never escalate)",
        _RBAC,
        ("clusterroles",),
        ("bind",),
        "namespaces",
        resource_names=tuple(f"joch-{role}" for role in _TEAM_ROLES),
    ),
    Grant(
        "teams",
        "read the Team roles' ClusterRoles at start-up (the chart creates them)",
        _RBAC,
        ("clusterroles",),
        ("get",),
        "cluster",
        resource_names=(*(f"joch-{role}" for role in _TEAM_ROLES), "joch-break-glass"),
    ),
    Grant(
        "controllers", "Kubernetes Events on joch objects", "", ("events",), ("create", "patch"), "namespaces"
    ),
    Grant(
        "controllers",
        "Namespace labels choose an Agent's environment (decision D5, docs/decisions.md)",
        "",
        ("namespaces",),
        READ_VERBS,
        "cluster",
    ),
    Grant(
        "controllers",
        "kopf notices CRDs installed or removed while it runs",
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("list", "watch"),
        "cluster",
    ),
    Grant(
        "leader-election",
        "one replica reconciles at a time: the Lease it holds",
        "coordination.k8s.io",
        ("leases",),
        ("get", "update", "patch"),
        "release",
        resource_names=("joch.leaseName",),
        when=".Values.leaderElection.enabled",
    ),
    Grant(
        "leader-election",
        "create the Lease the first time (create cannot be limited by name)",
        "coordination.k8s.io",
        ("leases",),
        ("create",),
        "release",
        when=".Values.leaderElection.enabled",
    ),
    Grant(
        "leader-election",
        "Events recording leadership changes",
        "",
        ("events",),
        ("create", "patch"),
        "release",
        when=".Values.leaderElection.enabled",
    ),
    Grant(
        "webhook-tls",
        "the webhook serving certificate it creates and rotates (its own Secret only)",
        "",
        ("secrets",),
        ("get", "update", "patch"),
        "release",
        resource_names=("joch.webhookSecretName",),
        when=_WEBHOOK_TLS,
    ),
    Grant(
        "webhook-tls",
        "patch its CA bundle into its own webhook configurations",
        "admissionregistration.k8s.io",
        ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"),
        ("get", "update", "patch"),
        "cluster",
        resource_names=("joch.webhookConfigurationName",),
        when=_WEBHOOK_TLS,
    ),
)
"""Every permission the operator holds (see the module docstring)."""


def rules(
    grants: Sequence[Grant] = GRANTS,
    *,
    where: Iterable[Where],
    read_only: bool = False,
    names: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """PolicyRules of the grants applying ``where`` (in that order of places, then table order);
    ``names`` maps the helper names of :attr:`Grant.resource_names` to object names."""
    lookup = names or {}
    return [
        g.rule(read_only=read_only, names=[lookup.get(n, n) for n in g.resource_names])
        for place in dict.fromkeys(where)
        for g in grants
        if g.where == place and (not read_only or "watch" in g.verbs)
    ]


def render(
    *,
    name: str,
    namespace: str,
    service_account: str,
    scope: Literal["cluster", "namespace"],
    namespaces: Sequence[str] = (),
    shared_namespaces: Sequence[str] = (),
    names: dict[str, str] | None = None,
    grants: Sequence[Grant] = GRANTS,
) -> list[dict[str, Any]]:
    """Plain RBAC objects (no Helm) for an operator running as ``service_account`` in ``namespace``.

    ``scope`` cluster: a ClusterRole with the ``namespaces`` and ``cluster`` grants and its binding.
    ``scope`` namespace: a Role per managed namespace, a read-only Role per shared namespace not managed,
    and no cluster-wide object at all. Both: a Role in ``namespace`` with the ``release`` grants.
    """
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    objects: list[dict[str, Any]] = []

    def bound(kind: str, role_name: str, role_ns: str | None, role_rules: list[dict[str, Any]]) -> None:
        metadata: dict[str, Any] = {"name": role_name}
        if role_ns is not None:
            metadata["namespace"] = role_ns
        objects.append({"apiVersion": _RBAC_VERSION, "kind": kind, "metadata": metadata, "rules": role_rules})
        objects.append(
            {
                "apiVersion": _RBAC_VERSION,
                "kind": f"{kind}Binding",
                "metadata": dict(metadata),
                "roleRef": {"apiGroup": _RBAC, "kind": kind, "name": role_name},
                "subjects": [subject],
            }
        )

    if scope == "cluster":
        bound("ClusterRole", name, None, rules(grants, where=("namespaces", "cluster"), names=names))
    else:
        if not namespaces:
            raise ValueError("scope 'namespace' needs at least one namespace to manage")
        for ns in dict.fromkeys(namespaces):
            bound("Role", name, ns, rules(grants, where=("namespaces",), names=names))
        for ns in dict.fromkeys(shared_namespaces):
            if ns not in namespaces:
                bound("Role", f"{name}-shared", ns, rules(grants, where=("namespaces",), read_only=True))
    bound("Role", f"{name}-self", namespace, rules(grants, where=("release",), names=names))
    return objects


# --- the chart ----------------------------------------------------------------------------------------

_TPL_HEADER: Final = "{{/* Code generated by 'make manifests' from joch.manifests.rbac. DO NOT EDIT. */}}\n"


def _yaml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _tpl_rule(grant: Grant, *, read_only: bool) -> list[str]:
    verbs = [v for v in grant.verbs if v in READ_VERBS] if read_only else list(grant.verbs)
    lines = [
        f"# {grant.feature}: {grant.why}",
        f'- apiGroups: ["{grant.api_group}"]',
        f"  resources: {_yaml_list(grant.resources)}",
        f"  verbs: {_yaml_list(verbs)}",
    ]
    if grant.resource_names:
        lines.append("  resourceNames:")
        lines.extend(
            f"  - {{{{ include {name!r} . | quote }}}}".replace("'", '"') if "." in name else f'  - "{name}"'
            for name in grant.resource_names
        )
    if grant.when:
        lines = [f"{{{{- if {grant.when} }}}}", *lines, "{{- end }}"]
    return lines


def _define(name: str, grants: Iterable[Grant], *, read_only: bool = False) -> list[str]:
    body: list[str] = []
    for grant in grants:
        if read_only and "watch" not in grant.verbs:
            continue
        body.extend(_tpl_rule(grant, read_only=read_only))
    return [f'{{{{- define "{name}" }}}}', *body, "{{- end }}", ""]


def render_chart_helpers(grants: Sequence[Grant] = GRANTS) -> str:
    """``templates/_rbac-rules.tpl``: one named template of PolicyRules per place (module docstring).

    - ``joch.rbac.namespacedRules``: the ``namespaces`` grants (a ClusterRole's or each managed Role's);
    - ``joch.rbac.sharedRules``: their read-only part (the shared namespaces that are not managed);
    - ``joch.rbac.clusterRules``: the ``cluster`` grants (rbac.scope=cluster only);
    - ``joch.rbac.clusterReaderRules``: the read-only ``cluster`` grants without resource names
      (rbac.clusterReader in namespace scope);
    - ``joch.rbac.releaseRules``: the ``release`` grants (the operator's own namespace);
    - ``joch.rbac.tokenReviewRules``: the ``cluster`` grants of the decision service (TokenReview; its
      own ClusterRole in namespace scope, when gRPC is served or decisions.callers is set).
    """
    out = [_TPL_HEADER]
    out += _define("joch.rbac.namespacedRules", (g for g in grants if g.where == "namespaces"))
    out += _define("joch.rbac.sharedRules", (g for g in grants if g.where == "namespaces"), read_only=True)
    out += _define("joch.rbac.clusterRules", (g for g in grants if g.where == "cluster"))
    out += _define(
        "joch.rbac.clusterReaderRules",
        (g for g in grants if g.where == "cluster" and not g.resource_names and g.feature == "controllers"),
        read_only=True,
    )
    out += _define("joch.rbac.releaseRules", (g for g in grants if g.where == "release"))
    out += _define(
        "joch.rbac.tokenReviewRules", (g for g in grants if g.where == "cluster" and g.feature == "decisions")
    )
    return "\n".join(out)


def markdown_table(grants: Sequence[Grant] = GRANTS) -> str:
    """The grants as a Markdown table (the chart README's "Permissions" section)."""
    lines = [
        "| feature | where | API group | resources | verbs | why |",
        "|---|---|---|---|---|---|",
    ]
    for g in grants:
        resources = ", ".join(g.resources)
        if g.resource_names:
            resources += " (only its own, by name)"
        group = g.api_group or "core"
        lines.append(f"| {g.feature} | {g.where} | {group} | {resources} | {', '.join(g.verbs)} | {g.why} |")
    return "\n".join(lines) + "\n"
