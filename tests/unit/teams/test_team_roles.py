"""The ClusterRoles of the Team roles (joch.manifests.roles).

Cases: the six names; viewer reads only; no role grants core Secrets, a wildcard, escalate, bind or
impersonate; only break-glass may override and only the auditor acknowledge; the approver decides
Approvals but creates nothing; the operator runs agents but does not write Policies; no role writes a
cluster-scoped kind; render_file() and chart_template() hold those six and are what is committed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from joch.api import v1alpha1
from joch.manifests import roles

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("joch-admin", "joch-operator", "joch-viewer", "joch-approver", "joch-auditor", "joch-break-glass")
RUNTIME = "runtime.joch.dev"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def by_name() -> dict[str, dict[str, Any]]:
    return {role["metadata"]["name"]: role for role in roles.cluster_roles()}


def verbs(role: dict[str, Any], group: str, resource: str) -> set[str]:
    """Every verb ``role`` grants on ``group``/``resource`` (a rule with resourceNames counts too)."""
    out: set[str] = set()
    for rule in role["rules"]:
        if group in rule.get("apiGroups", ()) and resource in rule.get("resources", ()):
            out |= set(rule.get("verbs", ()))
    return out


def all_verbs(role: dict[str, Any]) -> set[str]:
    return {verb for rule in role["rules"] for verb in rule.get("verbs", ())}


def test_the_six_names() -> None:
    assert tuple(role["metadata"]["name"] for role in roles.cluster_roles()) == NAMES
    assert roles.ROLE_NAMES == NAMES
    for role in roles.cluster_roles():
        assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert role["kind"] == "ClusterRole"
        assert role["rules"]


def test_the_viewer_only_reads() -> None:
    viewer = by_name()["joch-viewer"]
    assert all_verbs(viewer) == {"get", "list", "watch"}
    for model in v1alpha1.KINDS:  # and it reads every joch kind
        assert verbs(viewer, model.crd.group, model.crd.plural) == {"get", "list", "watch"}, model.crd.kind


@pytest.mark.parametrize("name", NAMES)
def test_least_privilege(name: str) -> None:
    role = by_name()[name]
    for rule in role["rules"]:
        assert "*" not in rule.get("apiGroups", ()), rule
        assert "*" not in rule.get("resources", ()), rule
        assert "*" not in rule.get("verbs", ()), rule
        assert not any("*" in resource for resource in rule.get("resources", ())), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule.get("verbs", ())), rule
        assert not rule.get("nonResourceURLs"), rule
        assert not ("" in rule.get("apiGroups", ()) and "secrets" in rule.get("resources", ())), rule
    assert verbs(role, "", "secrets") == set()
    assert verbs(role, "rbac.authorization.k8s.io", "clusterroles") == set()
    assert verbs(role, "rbac.authorization.k8s.io", "rolebindings") <= {"get", "list", "watch"}


def test_only_break_glass_may_override() -> None:
    holders = {name for name, role in by_name().items() if roles.OVERRIDE_VERB in all_verbs(role)}
    assert roles.OVERRIDE_VERB == "override"
    assert holders == {"joch-break-glass"}
    assert verbs(by_name()["joch-break-glass"], RUNTIME, "approvals") == {"get", "list", "watch", "override"}


def test_only_the_auditor_may_acknowledge() -> None:
    holders = {name for name, role in by_name().items() if roles.ACKNOWLEDGE_VERB in all_verbs(role)}
    assert roles.ACKNOWLEDGE_VERB == "acknowledge"
    assert holders == {"joch-auditor"}
    assert "acknowledge" in verbs(by_name()["joch-auditor"], RUNTIME, "approvals")


def test_the_approver_decides_but_creates_nothing() -> None:
    approver = by_name()["joch-approver"]
    assert {"patch", "update"} <= verbs(approver, RUNTIME, "approvals/status")
    assert verbs(approver, "joch.dev", "agents") == {"get", "list", "watch"}
    assert "create" not in all_verbs(approver)
    assert "delete" not in all_verbs(approver)
    writable = {
        resource
        for rule in approver["rules"]
        if WRITES & set(rule["verbs"])
        for resource in rule["resources"]
    }
    assert writable == {"approvals/status"}


def test_the_operator_runs_agents_but_writes_no_policies() -> None:
    operator = by_name()["joch-operator"]
    for group, resource in (
        ("joch.dev", "agents"),
        ("ops.joch.dev", "deployments"),
        (RUNTIME, "executions"),
    ):
        assert {"create", "update", "patch", "delete"} <= verbs(operator, group, resource), resource
    assert verbs(operator, "joch.dev", "policies") == {"get", "list", "watch"}
    assert verbs(operator, "ops.joch.dev", "budgets") == {"get", "list", "watch"}


@pytest.mark.parametrize("name", NAMES)
def test_no_role_writes_a_cluster_scoped_kind(name: str) -> None:
    role = by_name()[name]
    cluster = [k for k in v1alpha1.KINDS if k.crd.scope == "Cluster"]
    assert {k.crd.plural for k in cluster} == {"teams", "environments", "frameworkadapters"}
    for model in cluster:
        granted = verbs(role, model.crd.group, model.crd.plural) | verbs(
            role, model.crd.group, f"{model.crd.plural}/status"
        )
        assert not granted & WRITES, (name, model.crd.plural, granted)


def test_render_file_parses_into_the_six_roles() -> None:
    docs = [doc for doc in yaml.safe_load_all(roles.render_file()) if doc is not None]
    assert [doc["metadata"]["name"] for doc in docs] == list(NAMES)
    assert docs == roles.cluster_roles()


def test_render_file_is_what_is_committed() -> None:
    assert roles.render_file() == (ROOT / "rbac" / "team-roles.yaml").read_text()


def test_the_chart_template_is_what_is_committed() -> None:
    template = roles.chart_template()
    assert template == (ROOT / "charts" / "joch" / "templates" / "team-roles.yaml").read_text()


def test_the_chart_template_holds_each_role_once() -> None:
    template = roles.chart_template()
    for name in NAMES:
        assert template.count(f"\n  name: {name}\n") == 1, name
        assert template.count(f'"ClusterRole" "" "{name}"') == 1, name
    # Without its template directives the chart renders the same six roles (labels aside).
    plain = re.sub(r"\{\{.*?\}\}", "", template, flags=re.DOTALL)
    docs = [doc for doc in yaml.safe_load_all(plain) if doc is not None]
    expected = roles.cluster_roles()
    assert [doc["metadata"]["name"] for doc in docs] == list(NAMES)
    for doc, want in zip(docs, expected, strict=True):
        assert doc["kind"] == "ClusterRole"
        assert doc["rules"] == want["rules"]
        assert doc["metadata"]["annotations"] == want["metadata"]["annotations"]
        assert doc["metadata"]["labels"]["joch.dev/role"] == want["metadata"]["labels"]["joch.dev/role"]
