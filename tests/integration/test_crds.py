"""The generated CRDs served by a real kube-apiserver, driven with real kubectl.

Cases: every CRD Established with its names/columns; every example applies and reads back with the model's
spec (so CRD defaults equal model defaults); `kubectl explain` teaches; `kubectl get joch` lists all kinds;
invalid objects are rejected with the field named (enum, type, required, unknown field, each CEL rule).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from joch.api import v1alpha1
from tests import helpers

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


def test_every_crd_is_established_with_its_names(crds_installed: list[str], kubectl: Kubectl) -> None:
    assert len(crds_installed) == len(v1alpha1.KINDS)
    out = kubectl("get", "crd", "-o", "json")
    assert out.returncode == 0, out.stderr
    served = {i["metadata"]["name"]: i for i in json.loads(out.stdout)["items"]}
    for kind in v1alpha1.KINDS:
        crd = served[kind.crd.crd_name]
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert crd["spec"]["names"]["shortNames"] == list(kind.crd.short_names)


@pytest.fixture(scope="module")
def applied_examples(crds_installed: list[str], kubectl: Kubectl) -> list[dict[str, Any]]:
    out = kubectl("apply", "-f", str(helpers.EXAMPLES))
    assert out.returncode == 0, out.stderr + out.stdout
    return helpers.joch_examples()


def test_examples_apply_and_read_back_with_the_same_spec(
    applied_examples: list[dict[str, Any]], kubectl: Kubectl
) -> None:
    for doc in applied_examples:
        kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
        assert kind is not None
        args = ["get", f"{kind.crd.plural}.{kind.crd.group}", doc["metadata"]["name"], "-o", "json"]
        if "namespace" in doc["metadata"]:
            args += ["-n", doc["metadata"]["namespace"]]
        out = kubectl(*args)
        assert out.returncode == 0, out.stderr
        stored = json.loads(out.stdout)
        # The API server applied the CRD's defaults; the model applies the same defaults.
        assert stored["spec"] == kind.model_validate(doc).wire()["spec"], helpers.doc_id(doc)


def test_get_joch_lists_every_example(applied_examples: list[dict[str, Any]], kubectl: Kubectl) -> None:
    out = kubectl("get", "joch", "-A", "-o", "name")
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    for doc in applied_examples:
        kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
        assert kind is not None
        assert f"{kind.crd.singular}.{kind.crd.group}/{doc['metadata']['name']}" in listed


def test_printer_columns_show_in_kubectl_get(
    applied_examples: list[dict[str, Any]], kubectl: Kubectl
) -> None:
    out = kubectl("get", "agents", "-n", "support")
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "FRAMEWORK", "ROUTE", "ENV"]
    assert "openai-agents-sdk" in out.stdout
    assert "research-default" in out.stdout
    deploy = kubectl("get", "jdeploy", "-n", "support")
    assert deploy.returncode == 0, deploy.stderr
    assert "support-triage-prod" in deploy.stdout


def test_kubectl_explain_teaches(crds_installed: list[str], kubectl: Kubectl) -> None:
    out = kubectl("explain", "agents.spec.tools")
    assert out.returncode == 0, out.stderr
    assert "Tools the agent may call" in out.stdout
    out = kubectl("explain", "agents.spec.framework.adapterRef")
    assert out.returncode == 0, out.stderr
    assert "FrameworkAdapter" in out.stdout


# --- Rejections ---------------------------------------------------------------------------------------


# Kinds the worked example does not use: minimal valid objects to break in the table below.
EXTRA = [
    {
        "apiVersion": "memory.joch.dev/v1alpha1",
        "kind": "RAG",
        "metadata": {"name": "kb", "namespace": "support"},
        "spec": {"sources": [{"name": "docs"}], "chunking": {"maxTokens": 512, "overlapTokens": 64}},
    },
    {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "ticket-1", "namespace": "support"},
        "spec": {"action": {"type": "tool_call", "toolCallRef": {"name": "call-1"}}, "routing": {}},
    },
]


def _example(kind: str, name: str) -> dict[str, Any]:
    for doc in [*helpers.joch_examples(), *EXTRA]:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise LookupError(f"{kind}/{name}")


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return doc


_DELETE = object()

REJECTIONS = [
    pytest.param(
        "Agent",
        "support-triage",
        "spec.observability.tracing",
        "sometimes",
        "spec.observability.tracing",
        id="agent: wrong enum",
    ),
    pytest.param(
        "Agent",
        "support-triage",
        "spec.budgets.tokenLimitPerRun",
        "lots",
        "spec.budgets.tokenLimitPerRun",
        id="agent: wrong type",
    ),
    pytest.param(
        "Agent", "support-triage", "spec.framework", _DELETE, "spec.framework", id="agent: missing required"
    ),
    pytest.param(
        "Agent",
        "support-triage",
        "spec.tools",
        [{"name": "a"}, {"name": "a"}],
        "spec.tools[1]",
        id="agent: duplicate tool",
    ),
    pytest.param(
        "Agent",
        "support-triage",
        "spec.framework.adapterRef.name",
        "Not_A_Name",
        "spec.framework.adapterRef.name",
        id="agent: invalid reference name",
    ),
    pytest.param(
        "Tool", "slack.send", "spec.type", "mcp", "mcpServerRef", id="tool: mcp requires mcpServerRef"
    ),
    pytest.param("Tool", "slack.send", "spec.type", "rest", "endpoint", id="tool: rest requires endpoint"),
    pytest.param(
        "Tool",
        "slack.send",
        "spec.sideEffects.level",
        "dangerous",
        "spec.sideEffects.level",
        id="tool: wrong side-effect level",
    ),
    pytest.param(
        "ModelRoute",
        "research-default",
        "spec.strategy.fallback",
        ["openai:gpt-5-thinking"],
        "spec.strategy",
        id="route: fallback repeats primary",
    ),
    pytest.param(
        "ModelRoute",
        "research-default",
        "spec.strategy.primary",
        "gpt-5",
        "spec.strategy.primary",
        id="route: primary is not provider:model",
    ),
    pytest.param(
        "Budget",
        "support-platform-monthly",
        "spec.enforcement.softLimitPct",
        1.5,
        "softLimitPct",
        id="budget: softLimitPct above 1",
    ),
    pytest.param(
        "Budget",
        "support-platform-monthly",
        "spec.enforcement.softLimitPct",
        0,
        "softLimitPct",
        id="budget: softLimitPct zero",
    ),
    pytest.param(
        "Deployment",
        "support-triage-prod",
        "spec.autoscaling.minReplicas",
        9,
        "minReplicas",
        id="deployment: min above max",
    ),
    pytest.param(
        "MCPServer", "github", "spec.transport", "stdio", "allowStdio", id="mcp: stdio needs allowStdio"
    ),
    pytest.param(
        "MCPServer",
        "github",
        "spec.security.minTrustScore",
        2,
        "spec.security.minTrustScore",
        id="mcp: trust score above 1",
    ),
    pytest.param(
        "Model",
        "gpt-5-thinking",
        "spec.endpoint.baseUrlSecretRef",
        {"name": "openai-api-key", "key": "url"},
        "set at most one of baseUrl and baseUrlSecretRef",
        id="model: baseUrl and baseUrlSecretRef",
    ),
    pytest.param(
        "Model",
        "gpt-5-thinking",
        "spec.endpoint",
        {"type": "local"},
        "a local endpoint needs baseUrl or baseUrlSecretRef",
        id="model: local endpoint without url",
    ),
    pytest.param(
        "Secret",
        "openai-api-key",
        "spec.rotation",
        {"policy": "scheduled"},
        "policy scheduled needs intervalDays",
        id="secret: scheduled rotation without interval",
    ),
    pytest.param(
        "Tool",
        "slack.send",
        "spec.mcpServerRef",
        {"name": "github"},
        "mcpServerRef is only allowed for type mcp",
        id="tool: mcpServerRef on a function tool",
    ),
    pytest.param(
        "MCPServer",
        "github",
        "spec.endpoint",
        {},
        "transport streamable_http requires endpoint.url",
        id="mcp: http without url",
    ),
    pytest.param(
        "RAG",
        "kb",
        "spec.chunking.overlapTokens",
        512,
        "overlapTokens must be smaller than maxTokens",
        id="rag: overlap not below max",
    ),
    pytest.param(
        "Policy",
        "external-send-requires-approval",
        "spec.appliesTo.agents.selector",
        {"matchExpressions": [{"key": "team", "operator": "In"}]},
        "values must be non-empty for In and NotIn",
        id="policy: In without values",
    ),
    pytest.param(
        "Budget",
        "support-platform-monthly",
        "spec.limits.dailyUsd",
        9000,
        "dailyUsd must not exceed monthlyUsd",
        id="budget: daily above monthly",
    ),
    pytest.param(
        "Budget",
        "support-platform-monthly",
        "spec.limits.perRunUsd",
        300,
        "perRunUsd must not exceed dailyUsd",
        id="budget: per-run above daily",
    ),
    pytest.param(
        "Deployment",
        "support-triage-prod",
        "spec.autoscaling.metrics",
        [{"type": "latencyP95", "target": 3}],
        "latencyP95 needs targetMs",
        id="deployment: metric without its target",
    ),
    pytest.param(
        "Approval",
        "ticket-1",
        "spec.action",
        {"type": "tool_call"},
        "type tool_call needs toolCallRef",
        id="approval: tool_call without toolCallRef",
    ),
    pytest.param(
        "Model",
        "gpt-5-thinking",
        "spec.endpoint.type",
        "remote",
        "spec.endpoint.type",
        id="model: wrong endpoint type",
    ),
]


@pytest.mark.parametrize(("kind", "name", "path", "value", "expected"), REJECTIONS)
def test_invalid_objects_are_rejected_naming_the_field(
    crds_installed: list[str],
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Any,
    kind: str,
    name: str,
    path: str,
    value: Any,
    expected: str,
) -> None:
    doc = _set(_example(kind, name), path, value)
    doc["metadata"]["namespace"] = namespace
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(doc))
    out = kubectl("apply", "--validate=strict", "-f", str(file))
    assert out.returncode != 0, f"{kind} with {path}={value!r} was accepted"
    assert expected in out.stderr, out.stderr


def test_unknown_field_is_rejected_by_strict_validation(
    crds_installed: list[str], kubectl: Kubectl, namespace: str, tmp_path: Any
) -> None:
    doc = _example("Agent", "support-triage")
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["modelRoutes"] = {"routeRef": {"name": "x"}}
    file = tmp_path / "typo.json"
    file.write_text(json.dumps(doc))
    out = kubectl("apply", "--validate=strict", "-f", str(file))
    assert out.returncode != 0
    assert 'unknown field "spec.modelRoutes"' in out.stderr, out.stderr


def test_cluster_scoped_environment_round_trip(
    crds_installed: list[str], kubectl: Kubectl, tmp_path: Any
) -> None:
    doc = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "roundtrip-env"},
        "spec": {"description": "d", "allowedProviders": ["anthropic"]},
    }
    file = tmp_path / "env.json"
    file.write_text(json.dumps(doc))
    out = kubectl("apply", "-f", str(file))
    assert out.returncode == 0, out.stderr
    got = kubectl(
        "get", "environments.ops.joch.dev", "roundtrip-env", "-o", "jsonpath={.spec.allowedProviders}"
    )
    assert json.loads(got.stdout) == ["anthropic"]


def test_approval_decision_is_immutable_once_set(
    crds_installed: list[str], kubectl: Kubectl, namespace: str, tmp_path: Any
) -> None:
    doc = _example("Approval", "ticket-1")
    doc["metadata"]["namespace"] = namespace
    file = tmp_path / "approval.json"
    file.write_text(json.dumps(doc))
    assert kubectl("apply", "-f", str(file)).returncode == 0

    def patch_status(status: dict[str, Any]) -> Any:
        return kubectl(
            "patch",
            "approval",
            "ticket-1",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    decided = {
        "phase": "Approved",
        "decision": "approve",
        "decidedBy": "cy@example.com",
        "decidedAt": "2026-11-27T10:00:00Z",
    }
    first = patch_status(decided)
    assert first.returncode == 0, first.stderr
    flipped = patch_status({**decided, "decision": "reject", "phase": "Rejected"})
    assert flipped.returncode != 0
    assert "status.decision is immutable once set" in flipped.stderr, flipped.stderr
    assert "a decided Approval cannot change phase" in flipped.stderr, flipped.stderr
