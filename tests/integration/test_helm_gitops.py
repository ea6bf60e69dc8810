"""The chart's Argo CD Lua health checks and Flux healthCheckExprs on real status objects, read back from
the test cluster after the operator reconciled them (`kubectl get -o json`).

| object (real, from the cluster)                       | Argo CD     | Flux       |
|-------------------------------------------------------|-------------|------------|
| Agent support-triage, compiled                        | Healthy     | Current    |
| Model, Tool, ModelRoute, FrameworkAdapter it uses     | Healthy     | Current    |
| Agent naming a Tool that does not exist               | Progressing | InProgress |
| Agent whose adapter lacks a capability (Stalled)      | Degraded    | Failed     |
| Policy whose CEL does not compile (phase Failed)      | Degraded    | Failed     |
| Agent in a namespace no operator manages (no status)  | Progressing | InProgress |
| Budget (not reconciled)                               | Healthy     | (kstatus)  |
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
)
from tests.unit.chart import gitops

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


def _get(kubectl: Kubectl, resource: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", resource, "-o", "json"] + (["-n", namespace] if namespace else [])
    out = kubectl(*args)
    assert out.returncode == 0, out.stderr
    loaded: dict[str, Any] = json.loads(out.stdout)
    return loaded


def _verdicts(obj: dict[str, Any]) -> tuple[str, str | None]:
    return gitops.argocd_health(obj)[0], gitops.flux_health(obj)


def test_health_checks_on_real_statuses(
    namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator, tmp_path: Path
) -> None:
    example = support_triage(namespace)
    start_operator(namespace)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=120)

    waiting = agent_doc(example, "waits-for-a-tool", tools=[{"name": "no-such-tool"}])
    no_mcp = copy.deepcopy(example.find("FrameworkAdapter", example.adapter))
    no_mcp["metadata"] = {"name": f"{example.adapter}-nomcp"}
    no_mcp["spec"]["capabilities"]["mcpBinding"] = False
    stalled = agent_doc(example, "needs-mcp")
    stalled["spec"]["framework"]["adapterRef"]["name"] = no_mcp["metadata"]["name"]
    bad_policy = copy.deepcopy(example.find("Policy", "external-send-requires-approval"))
    bad_policy["metadata"] = {"name": "does-not-compile", "namespace": namespace}
    bad_policy["spec"]["rules"] = [{"when": {"cel": "tool.name == ((("}, "action": "deny"}]
    # Selects no Agent: a broken policy would otherwise (rightly) fail the agents it applies to.
    bad_policy["spec"]["appliesTo"] = {"agents": {"selector": {"matchLabels": {"joch.dev/none": "none"}}}}
    apply(kubectl, [no_mcp, waiting, stalled, bad_policy])

    def settled() -> None:
        assert cluster.condition(namespace, "waits-for-a-tool", "Reconciling")["status"] == "True"
        assert cluster.condition(namespace, "needs-mcp", "Stalled")["status"] == "True"
        policy = cluster.status("Policy", namespace, "does-not-compile")
        assert policy.get("phase") == "Failed", policy

    eventually(settled, timeout=60)

    expectations = {
        "agent/support-triage": ("Healthy", "Current"),
        "model/gpt-5-thinking": ("Healthy", "Current"),
        "tool/slack.send": ("Healthy", "Current"),
        "modelroute/research-default": ("Healthy", "Current"),
        "agent/waits-for-a-tool": ("Progressing", "InProgress"),
        "agent/needs-mcp": ("Degraded", "Failed"),
        "policy/does-not-compile": ("Degraded", "Failed"),
    }
    got = {resource: _verdicts(_get(kubectl, resource, namespace)) for resource in expectations}
    adapter = _get(kubectl, f"frameworkadapter/{example.adapter}")
    got["frameworkadapter"] = _verdicts(adapter)
    expectations["frameworkadapter"] = ("Healthy", "Current")
    budget = _get(kubectl, "budget/support-platform-monthly", namespace)
    got["budget"] = (gitops.argocd_health(budget)[0], gitops.flux_health(budget))
    expectations["budget"] = ("Healthy", None)
    assert got == expectations

    message = gitops.argocd_health(_get(kubectl, "agent/needs-mcp", namespace))[1]
    assert message.startswith("CapabilityMismatch")


def test_fresh_object_without_status_is_progressing(namespace: str, kubectl: Kubectl) -> None:
    """No operator manages this namespace: the Agent, as the API server stores it, has no status."""
    example = support_triage(namespace)
    apply(kubectl, [d for d in example.docs if d["kind"] in ("Namespace", "Agent")])
    agent = _get(kubectl, "agent/support-triage", namespace)
    assert "status" not in agent or not agent["status"].get("conditions")
    assert gitops.argocd_health(agent) == ("Progressing", "Waiting for the joch operator to report status")
    assert gitops.flux_health(agent) == "InProgress"
