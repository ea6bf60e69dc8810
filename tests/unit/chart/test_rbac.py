"""The RBAC grant table (joch.manifests.rbac) against what the handlers use.

| check                                   | source of truth                                        |
|-----------------------------------------|--------------------------------------------------------|
| every watched kind is readable          | joch.domain.reconcile.cache.WATCHED_KINDS                   |
| every status the controller writes      | joch.domain.reconcile.status (REFERENCED_KINDS + Agent)     |
| core kinds the kube layer calls         | joch.kube.paths (ConfigMap, Event, Namespace)          |
| the webhook TLS writes                  | joch.kube.webhook_tls (Secret, webhook configurations) |
| leader election                         | joch.kube.leader (Lease)                               |
| least privilege                         | no Secret list/watch, wildcard or escalate; bind: Team roles |
| render(): cluster vs namespace scope    | ClusterRole vs Roles only                              |
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.api import v1alpha1
from joch.domain.reconcile import status
from joch.domain.reconcile.cache import WATCHED_KINDS
from joch.kube import leader, paths
from joch.manifests import rbac


def _allowed(group: str, resource: str, verb: str, *, where: tuple[rbac.Where, ...]) -> bool:
    return any(
        g.api_group == group and resource in g.resources and verb in g.verbs and g.where in where
        for g in rbac.GRANTS
    )


def _where(model: type[v1alpha1.meta.Resource]) -> tuple[rbac.Where, ...]:
    return ("namespaces",) if model.crd.scope == "Namespaced" else ("cluster",)


@pytest.mark.parametrize("kind", sorted(WATCHED_KINDS))
def test_every_watched_kind_can_be_listed_and_watched(kind: str) -> None:
    model = WATCHED_KINDS[kind]
    for verb in ("get", "list", "watch"):
        assert _allowed(model.crd.group, model.crd.plural, verb, where=_where(model)), (kind, verb)


@pytest.mark.parametrize("kind", sorted({*status.REFERENCED_KINDS, "Agent"}))
def test_every_status_the_controller_writes_can_be_patched(kind: str) -> None:
    model = WATCHED_KINDS[kind]
    assert _allowed(model.crd.group, f"{model.crd.plural}/status", "patch", where=_where(model))


def test_every_kind_is_readable_for_admission() -> None:
    for model in v1alpha1.KINDS:
        assert _allowed(model.crd.group, model.crd.plural, "list", where=_where(model)), model.crd.kind


@pytest.mark.parametrize(
    ("resource", "verbs", "where"),
    [
        pytest.param(paths.CONFIGMAPS, ("get", "list", "watch", "create", "update", "delete"), "namespaces"),
        pytest.param(paths.EVENTS, ("create",), "namespaces"),
        pytest.param(paths.NAMESPACES, ("get", "list", "watch"), "cluster"),
    ],
    ids=lambda v: getattr(v, "kind", None) or str(v),
)
def test_core_kinds_used_by_the_kube_layer(
    resource: paths.ResourceType, verbs: tuple[str, ...], where: Any
) -> None:
    for verb in verbs:
        assert _allowed(resource.group, resource.plural, verb, where=(where,)), (resource.kind, verb)


def test_leader_election_lease() -> None:
    named = [g for g in rbac.GRANTS if g.api_group == leader.LEASES_GROUP and g.resource_names]
    assert {v for g in named for v in g.verbs} >= {"get", "update"}
    assert all(g.where == "release" and g.resource_names == ("joch.leaseName",) for g in named)
    assert _allowed(leader.LEASES_GROUP, "leases", "create", where=("release",))


def test_secrets_only_its_own_by_name_never_listed() -> None:
    secrets = [g for g in rbac.GRANTS if g.api_group == "" and "secrets" in g.resources]
    assert secrets, "operator TLS mode needs its Secret"
    for grant in secrets:
        assert grant.resource_names == ("joch.webhookSecretName",)
        assert grant.where == "release"
        assert not {"list", "watch", "create", "delete"} & set(grant.verbs)
        assert grant.when  # only rendered in operator TLS mode


def test_least_privilege() -> None:
    for grant in rbac.GRANTS:
        assert "*" not in grant.verbs, grant
        assert "*" not in grant.resources, grant
        assert grant.api_group != "*", grant
        assert not {"escalate", "impersonate"} & set(grant.verbs), grant
        if "bind" in grant.verbs:  # only the Team roles, by name: never break-glass, never any role
            assert (grant.api_group, grant.resources, grant.verbs) == (
                "rbac.authorization.k8s.io",
                ("clusterroles",),
                ("bind",),
            ), grant
            assert set(grant.resource_names) == {
                "joch-admin",
                "joch-operator",
                "joch-viewer",
                "joch-approver",
                "joch-auditor",
            }, grant
        assert grant.why
        assert grant.feature
    webhook_configs = [g for g in rbac.GRANTS if g.api_group == "admissionregistration.k8s.io"]
    assert all(g.resource_names and "create" not in g.verbs for g in webhook_configs)


def test_render_cluster_scope() -> None:
    objects = rbac.render(name="joch", namespace="joch-system", service_account="joch", scope="cluster")
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    assert objects[1]["subjects"] == [{"kind": "ServiceAccount", "name": "joch", "namespace": "joch-system"}]


def test_render_namespace_scope_has_no_cluster_objects() -> None:
    objects = rbac.render(
        name="joch",
        namespace="joch-system",
        service_account="joch",
        scope="namespace",
        namespaces=["a", "b"],
        shared_namespaces=["joch-system", "a"],
    )
    assert {o["kind"] for o in objects} == {"Role", "RoleBinding"}
    where = sorted(
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Role"
    )
    assert where == [
        ("a", "joch"),
        ("b", "joch"),
        ("joch-system", "joch-self"),
        ("joch-system", "joch-shared"),
    ]
    with pytest.raises(ValueError, match="at least one namespace"):
        rbac.render(name="j", namespace="n", service_account="s", scope="namespace")


def test_chart_helpers_and_readme_table_cover_every_grant() -> None:
    helpers_text = rbac.render_chart_helpers()
    table = rbac.markdown_table()
    for grant in rbac.GRANTS:
        assert f"# {grant.feature}: {grant.why}" in helpers_text
        assert grant.why in table
