"""Team roles against the real API server: the operator applies the joch-* ClusterRoles and turns a Team's
members into RoleBindings in each of its namespaces; what each role may do is asked of the server as the
member (``kubectl --as``: impersonation, so the server authenticates and authorizes each request as that
user), both with ``kubectl auth can-i`` and with real reads and writes.

Cases: every role's allowed and denied actions in both namespaces of the team; no Team member holds the
break-glass verb; removing a member, changing a role and removing a namespace take the access away; a
RoleBinding deleted or edited by hand is put back; deleting the Team removes its RoleBindings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from joch.kube import rbac as kube_rbac
from joch.manifests import roles
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    apply,
    cluster_fixture,
    eventually,
    start_operator_fixture,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
LABEL = "joch.dev/team"
RBAC = "rbac.authorization.k8s.io"

CAMEL = {
    "api_groups": "apiGroups",
    "resources": "resources",
    "verbs": "verbs",
    "resource_names": "resourceNames",
    "non_resource_urls": "nonResourceURLs",
}
"""The kubernetes client's PolicyRule.to_dict() keys -> the API's."""

USERS = {"ana": "admin", "bo": "operator", "cy": "viewer", "dee": "approver", "eve": "auditor"}

# (verb, resource[, subresource]) -> the members allowed; everyone else must be refused.
MATRIX: dict[tuple[str, ...], set[str]] = {
    ("get", "agents.joch.dev"): {"ana", "bo", "cy", "dee", "eve"},
    ("list", "policies.joch.dev"): {"ana", "bo", "cy", "eve"},
    ("create", "agents.joch.dev"): {"ana", "bo"},
    ("delete", "deployments.ops.joch.dev"): {"ana", "bo"},
    ("create", "executions.runtime.joch.dev"): {"ana", "bo"},
    ("delete", "policies.joch.dev"): {"ana"},
    ("patch", "approvals.runtime.joch.dev", "status"): {"ana", "dee", "eve"},
    ("get", "toolcalls.runtime.joch.dev"): {"ana", "bo", "cy", "dee", "eve"},
    ("acknowledge", "approvals.runtime.joch.dev"): {"eve"},
    ("override", "approvals.runtime.joch.dev"): set(),
    ("list", "events"): {"eve"},
    ("list", "rolebindings.rbac.authorization.k8s.io"): {"ana"},
    ("get", "secrets"): set(),
    ("create", "rolebindings.rbac.authorization.k8s.io"): set(),
}


def can(kubectl: Kubectl, user: str, namespace: str, verb: str, resource: str, sub: str = "") -> bool:
    """``kubectl auth can-i ... --as=user``: the server's answer for that user."""
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={user}"]
    if sub:
        args.append(f"--subresource={sub}")
    out = kubectl(*args)
    answer = out.stdout.strip()
    assert answer in ("yes", "no"), (args, out.stdout, out.stderr)
    return answer == "yes"


class Impersonated:
    """SelfSubjectAccessReviews sent as ``user`` (the Impersonate-User header, as ``kubectl --as`` sends
    it): what ``kubectl auth can-i`` asks, without a process per question."""

    def __init__(self, kubeconfig: str, user: str) -> None:
        self.api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
        self.api.set_default_header("Impersonate-User", user)
        self.authz = client.AuthorizationV1Api(self.api)

    def can(self, namespace: str, verb: str, resource: str, sub: str = "") -> bool:
        plural, _, group = resource.partition(".")
        attributes = client.V1ResourceAttributes(
            namespace=namespace, verb=verb, resource=plural, group=group, subresource=sub or None
        )
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        )
        return bool(self.authz.create_self_subject_access_review(review).status.allowed)

    def close(self) -> None:
        self.api.close()


def team_doc(name: str, members: dict[str, str], namespaces: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [{"user": user, "role": role} for user, role in members.items()],
            "namespaces": namespaces,
        },
    }


def bindings(rbac_api: client.RbacAuthorizationV1Api, namespace: str, team: str) -> dict[str, Any]:
    found = rbac_api.list_namespaced_role_binding(namespace, label_selector=f"{LABEL}={team}").items
    return {b.metadata.name: b for b in found}


def subjects(binding: Any) -> list[str]:
    return [s.name for s in binding.subjects or ()]


@pytest.fixture
def other_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    name = f"t-teams-other-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"joch.dev/test": "true"}))
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_team_roles_are_what_members_may_do_and_go_with_them(
    namespace: str,
    other_namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    kube_api: client.ApiClient,
    cluster: Cluster,
    start_operator: StartOperator,
) -> None:
    rbac_api = client.RbacAuthorizationV1Api(kube_api)
    team = f"t-team-{uuid.uuid4().hex[:6]}"
    both = [namespace, other_namespace]
    start_operator(namespace, other_namespace)
    try:
        # --- the ClusterRoles, applied by the operator at start ---------------------------------------------
        for role in roles.cluster_roles():
            stored = rbac_api.read_cluster_role(role["metadata"]["name"])
            got = [{CAMEL[k]: v for k, v in r.to_dict().items() if v} for r in stored.rules or ()]
            assert kube_rbac.same_rules(got, role["rules"]), role["metadata"]["name"]

        apply(kubectl, [team_doc(team, USERS, both)])

        def applied() -> None:
            status = cluster.status("Team", None, team)
            assert status.get("phase") == "Ready", status
            assert status.get("memberCount") == 5
            ready = cluster.condition("", team, "Ready", kind="Team")
            assert (ready["status"], ready["reason"]) == ("True", "RoleBindingsApplied"), ready
            assert ready["message"] == "10 RoleBindings for 5 members in 2 namespaces", ready
            for ns in both:
                found = bindings(rbac_api, ns, team)
                assert len(found) == 5, sorted(found)
                for user, role in USERS.items():
                    binding = found[f"joch-team-{team}-{role}"]
                    assert binding.role_ref.name == f"joch-{role}"
                    assert subjects(binding) == [user]
                    assert binding.metadata.owner_references[0].kind == "Team"

        eventually(applied, timeout=60)
        events = [
            e for e in cluster.core.list_namespaced_event("default").items if e.involved_object.name == team
        ]
        assert any(e.reason == "RoleBindingsApplied" for e in events), [e.reason for e in events]

        # --- what each role may do, as the server says ------------------------------------------------------
        for user, role in USERS.items():
            member = Impersonated(kubeconfig, user)
            try:
                for ns in both:
                    for (verb, resource, *sub), allowed in MATRIX.items():
                        got = member.can(ns, verb, resource, *sub)
                        assert got == (user in allowed), (user, role, verb, resource, sub, ns)
                # cluster-scoped writes are in no role
                assert not member.can("", "create", "teams.ops.joch.dev")
                assert not member.can("", "patch", "environments.ops.joch.dev")
            finally:
                member.close()
        # the same answers through kubectl
        assert can(kubectl, "eve", namespace, "acknowledge", "approvals.runtime.joch.dev")
        assert not can(kubectl, "ana", namespace, "override", "approvals.runtime.joch.dev")
        assert can(kubectl, "dee", other_namespace, "patch", "approvals.runtime.joch.dev", "status")
        assert not can(kubectl, "cy", other_namespace, "patch", "approvals.runtime.joch.dev", "status")

        # --- and with real requests -------------------------------------------------------------------------
        approval = _approval(kubectl, namespace)
        decide = json.dumps({"status": {"decision": "approve", "rationale": "fine"}})
        patch = ("patch", "approvals.runtime.joch.dev", approval, "-n", namespace, "--subresource=status")
        refused = kubectl("--as=cy", *patch, "--type=merge", "-p", decide)
        assert refused.returncode != 0
        assert "forbidden" in refused.stderr.lower(), refused.stderr
        assert kubectl("--as=cy", "get", "agents.joch.dev", "-n", namespace).returncode == 0
        created = kubectl("--as=cy", "create", "configmap", "x", "-n", namespace)
        assert created.returncode != 0
        assert "forbidden" in created.stderr.lower(), created.stderr
        accepted = kubectl("--as=dee", *patch, "--type=merge", "-p", decide)
        assert accepted.returncode == 0, accepted.stderr

        # --- a member removed, a role changed, a namespace removed ------------------------------------------
        changed = {**USERS, "bo": "viewer"}
        del changed["cy"]
        apply(kubectl, [team_doc(team, changed, [namespace])])

        def reduced() -> None:
            found = bindings(rbac_api, namespace, team)
            assert sorted(found) == sorted(
                f"joch-team-{team}-{role}" for role in ("admin", "viewer", "approver", "auditor")
            ), sorted(found)
            assert subjects(found[f"joch-team-{team}-viewer"]) == ["bo"]
            assert bindings(rbac_api, other_namespace, team) == {}
            assert cluster.status("Team", None, team).get("memberCount") == 4

        eventually(reduced, timeout=60)
        assert not can(kubectl, "cy", namespace, "get", "agents.joch.dev")
        assert not can(kubectl, "bo", namespace, "create", "agents.joch.dev")
        assert can(kubectl, "bo", namespace, "get", "agents.joch.dev")
        assert not can(kubectl, "ana", other_namespace, "get", "agents.joch.dev")
        assert can(kubectl, "ana", namespace, "delete", "policies.joch.dev")

        # --- hand edits are put back ------------------------------------------------------------------------
        name = f"joch-team-{team}-approver"
        old_uid = bindings(rbac_api, namespace, team)[name].metadata.uid
        rbac_api.delete_namespaced_role_binding(name, namespace)
        admin = f"joch-team-{team}-admin"
        rbac_api.patch_namespaced_role_binding(
            admin,
            namespace,
            {"subjects": [{"kind": "User", "name": n, "apiGroup": RBAC} for n in ("ana", "mallory")]},
        )

        def restored() -> None:
            found = bindings(rbac_api, namespace, team)
            assert name in found, sorted(found)
            assert found[name].metadata.uid != old_uid
            assert subjects(found[name]) == ["dee"]
            assert subjects(found[admin]) == ["ana"]

        eventually(restored, timeout=60)
        assert not can(kubectl, "mallory", namespace, "get", "agents.joch.dev")
    finally:
        kubectl("delete", "teams.ops.joch.dev", team, "--ignore-not-found", "--wait=false")

    # --- the Team deleted: its RoleBindings go -------------------------------------------------------------
    eventually(lambda: _none_left(rbac_api, namespace, team), timeout=60)
    assert not can(kubectl, "ana", namespace, "get", "agents.joch.dev")


def _none_left(rbac_api: client.RbacAuthorizationV1Api, namespace: str, team: str) -> None:
    assert bindings(rbac_api, namespace, team) == {}


def _approval(kubectl: Kubectl, namespace: str) -> str:
    name = f"a-{uuid.uuid4().hex[:6]}"
    doc = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "requestedBy": {"user": "bo"},
            "action": {"type": "promotion", "inputSummary": "test"},
            "risk": {"level": "financial"},
            "routing": {"approvers": ["role:approver"], "timeoutMinutes": 60},
        },
    }
    apply(kubectl, [doc])
    return name
