"""The operator with the RBAC it is granted (joch.manifests.rbac, what the chart installs), not admin.

Cases:
- cluster scope (a ClusterRole): the examples compile, the referenced kinds get their status, and the
  log holds no 403 at all;
- namespace scope (Roles only, no ClusterRole): the operator starts and keeps running without watching
  what it may not list; namespaced kinds get their status; the Agent waits for the cluster-scoped
  FrameworkAdapter it cannot see (ResolvedRefs False naming it) instead of the operator failing.

The credentials are a ServiceAccount token (``kubectl create token``), as in a pod.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from joch.manifests import rbac
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    OperatorProcess,
    apply,
    cluster_fixture,
    eventually,
    ready,
    support_triage,
)
from tests.unit.chart import helm

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


def grant(
    kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path, scope: Literal["cluster", "namespace"]
) -> str:
    """A ServiceAccount in ``namespace`` with the operator's RBAC in ``scope``; its kubeconfig."""
    name = f"joch-{namespace}"[:63]
    created = kubectl("create", "serviceaccount", "joch", "-n", namespace)
    assert created.returncode == 0, created.stderr
    objects = rbac.render(
        name=name,
        namespace=namespace,
        service_account="joch",
        scope=scope,
        namespaces=[namespace] if scope == "namespace" else (),
    )
    apply(kubectl, objects)
    return helm.service_account_kubeconfig(
        kubectl=kubectl,
        admin_kubeconfig=kubeconfig,
        namespace=namespace,
        service_account="joch",
        path=tmp_path / "sa.kubeconfig",
    )


def forbidden_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\b403\b", line) or "orbidden" in line]


def ready_condition(cluster: Cluster, kind: str, namespace: str | None, name: str) -> None:
    conditions = {c["type"]: c for c in cluster.status(kind, namespace, name).get("conditions") or ()}
    assert conditions.get("Ready", {}).get("status") == "True", (kind, name, conditions)


def test_cluster_scope_compiles_without_a_single_403(
    namespace: str,
    kubeconfig: str,
    kubectl: Kubectl,
    cluster: Cluster,
    crds_installed: list[str],
    tmp_path: Path,
) -> None:
    sa = grant(kubectl, kubeconfig, namespace, tmp_path, "cluster")
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    operator = OperatorProcess(sa, (namespace,), tmp_path / "operator.log", ()).start()
    try:
        operator.wait_synced()
        eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
        assert "support-triage-g1" in cluster.manifests(namespace)
        eventually(lambda: ready_condition(cluster, "FrameworkAdapter", None, example.adapter), timeout=30)
        eventually(lambda: ready_condition(cluster, "Model", namespace, "gpt-5-thinking"), timeout=30)
        assert not forbidden_lines(operator.log()), "\n".join(forbidden_lines(operator.log()))
    finally:
        operator.stop()
        print(operator.tail(60))


def test_namespace_scope_with_roles_only_runs_and_waits_for_what_it_cannot_see(
    namespace: str,
    kubeconfig: str,
    kubectl: Kubectl,
    cluster: Cluster,
    crds_installed: list[str],
    tmp_path: Path,
) -> None:
    sa = grant(kubectl, kubeconfig, namespace, tmp_path, "namespace")
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    operator = OperatorProcess(
        sa, (namespace,), tmp_path / "operator.log", ("--shared-namespaces", namespace)
    )
    operator.start()
    try:
        operator.wait_synced()
        eventually(lambda: ready_condition(cluster, "Model", namespace, "gpt-5-thinking"), timeout=60)
        eventually(lambda: ready_condition(cluster, "Tool", namespace, "slack.send"), timeout=30)

        def waiting() -> None:
            resolved = cluster.condition(namespace, "support-triage", "ResolvedRefs")
            assert resolved["status"] == "False", resolved
            assert f"FrameworkAdapter {example.adapter} not found" in resolved["message"], resolved

        eventually(waiting, timeout=60)
        assert operator.running(), operator.tail()
        log = operator.current_log()
        assert "no permission to list frameworkadapters cluster-wide" in log
        assert "Traceback" not in log, operator.tail()
    finally:
        operator.stop()
        print(operator.tail(60))
