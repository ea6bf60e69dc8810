"""Admission through the real API server: every check denied through kubectl AND the Python client.

The webhook server runs in-process; its configurations are registered with their CA bundle (url mode,
https://127.0.0.1:<port>). Each test gets a fresh namespace and uniquely named cluster-scoped objects.

| case | clients | expected |
|---|---|---|
| documented: prod allows anthropic only | both | prod: denied naming policy, rule, model; dev: admitted |
| each semantic / reference / preflight check | both | denied; message names the field (and the policy) |
| missing references | both | admitted with warnings |
| a Policy change that puts an Agent in violation | both | admitted with a warning listing the Agent |
| mutating defaults (Tool, Trace, Agent) | both | stored with the defaults |
| kopf-style metadata patch of an Agent now in violation | python | admitted unchanged |
| server-side dry run of a denied object | both | denied, nothing stored |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.integration.admission_fixtures import (
    Harness,
    Outcome,
    harness_fixture,
    webhooks_fixture,
)
from tests.unit.admission import factories as f

pytestmark = pytest.mark.integration

webhooks = pytest.fixture(scope="module")(webhooks_fixture)
harness = pytest.fixture(harness_fixture)

VIA = ["kubectl", "python"]


def _create(h: Harness, via: str, doc: dict[str, Any]) -> Outcome:
    return h.kubectl_apply(doc) if via == "kubectl" else h.py_create(doc)


def _world(h: Harness) -> dict[str, Any]:
    """Names of this test's cluster-scoped objects, and the fleet that goes with them."""
    s = h.suffix
    adapter = f"py-sdk-{s}"
    docs = [d for d in f.fleet() if d["kind"] not in ("FrameworkAdapter", "Environment")]
    docs += [f.adapter(adapter), f.environment(f"dev-{s}")]
    return {"adapter": adapter, "prod": f"prod-{s}", "dev": f"dev-{s}", "docs": docs}


def _agent(w: dict[str, Any], env: str, **spec: Any) -> dict[str, Any]:
    return f.agent(labels={"env": env}, framework={"adapterRef": {"name": w["adapter"]}}, **spec)


def _prod(h: Harness, w: dict[str, Any]) -> None:
    h.setup(
        [
            *w["docs"],
            f.policy("allowlisted-providers-only", f.DENY_UNLISTED),
            f.environment(
                w["prod"], allowed=["anthropic"], policies=[{"name": "allowlisted-providers-only"}]
            ),
        ]
    )


@pytest.mark.parametrize("via", VIA)
def test_documented_scenario(harness: Harness, via: str) -> None:
    w = _world(harness)
    _prod(harness, w)
    denied = _create(harness, via, _agent(w, w["prod"]))
    assert not denied.ok
    assert 'admission webhook "validate.agents.joch.dev" denied the request' in denied.message
    assert "Agent/support-triage: spec.modelRoute.routeRef:" in denied.message
    assert f"Policy {harness.namespace}/allowlisted-providers-only (v1) rule 0" in denied.message
    assert "denies model openai:gpt-5-thinking" in denied.message
    assert harness.get("Agent", "support-triage") is None
    admitted = _create(harness, via, _agent(w, w["dev"]))
    assert admitted.ok, admitted.message
    assert admitted.warnings == ()


Case = Callable[[dict[str, Any]], tuple[list[dict[str, Any]], dict[str, Any], list[str]]]

CASES: dict[str, Case] = {
    "duplicate callable tool names": lambda w: (
        [f.tool("zendesk.search-v2", toolName="zendesk.search")],
        _agent(w, w["dev"], tools=[{"name": "zendesk.search"}, {"name": "zendesk.search-v2"}]),
        ["spec.tools[1]", "callable names must be unique"],
    ),
    "fallback repeats the primary": lambda w: (
        [],
        f.route("r2", fallback=["openai:gpt-5-thinking"]),
        ["spec.strategy.fallback", "primary"],
    ),
    "malformed selector": lambda w: (
        [],
        f.policy(
            "p", [{"action": "deny"}], applies_to={"agents": {"selector": {"matchLabels": {"Bad Key!": "x"}}}}
        ),
        ["Policy/p: spec.appliesTo.agents.selector.matchLabels['Bad Key!']", "is not a label key"],
    ),
    "policy rule that does not parse": lambda w: (
        [],
        f.policy("p", [{"when": {"tool.nme": "x"}, "action": "deny"}]),
        ["Policy/p: spec.rules[0].when.tool.nme:", "tool has no field 'nme'"],
    ),
    "CEL that does not compile": lambda w: (
        [],
        f.policy("p", [{"action": "allow"}, {"when": {"cel": "tool.name == "}, "action": "deny"}]),
        ["Policy/p: spec.rules[1].when.cel: rule 1: CEL does not compile", "Syntax error"],
    ),
    "eval threshold": lambda w: (
        [],
        f.obj(
            "Eval",
            "e",
            {
                "target": {"name": "support-triage"},
                "dataset": {"type": "file", "uri": "./cases.jsonl"},
                "metrics": [{"name": "accuracy", "type": "numeric"}],
                "thresholds": {"accuracy": "about 0.9", "recall": 0.5},
            },
        ),
        ["Eval/e: spec.thresholds.accuracy: 'about 0.9' is not a comparison"],
    ),
    "eval threshold without a metric": lambda w: (
        [],
        f.obj(
            "Eval",
            "e",
            {
                "target": {"name": "support-triage"},
                "dataset": {"type": "file", "uri": "./cases.jsonl"},
                "metrics": [{"name": "accuracy", "type": "numeric"}],
                "thresholds": {"recall": 0.5},
            },
        ),
        ["Eval/e: spec.thresholds.recall: no metric named recall"],
    ),
    "cross-namespace reference": lambda w: (
        [],
        _agent(w, w["dev"], mcpServers=[{"name": "github", "namespace": "someone-else"}]),
        ["Agent/support-triage: spec.mcpServers[0]: reference into namespace someone-else"],
    ),
    "tool schema": lambda w: (
        [],
        f.tool("broken", inputSchema={"type": "objekt"}),
        ["Tool/broken: spec.inputSchema.type: is not a valid JSON Schema"],
    ),
    "budget shares": lambda w: (
        [],
        f.obj("Budget", "b", {"limits": {"monthlyUsd": 10}, "allocation": {"byAgent": {"a": 0.7, "b": 0.6}}}),
        ["Budget/b: spec.allocation.byAgent: shares add up to 1.3"],
    ),
    "adapter capability": lambda w: (
        [f.adapter(w["adapter"] + "-lite", mcpBinding=False)],
        f.agent(labels={"env": w["dev"]}, framework={"adapterRef": {"name": w["adapter"] + "-lite"}}),
        ["Agent/support-triage: spec.mcpServers: FrameworkAdapter", "lacks capability mcpBinding"],
    ),
    "tool policy preflight": lambda w: (
        [f.policy("no-external-writes", [{"when": {"tool.sideEffect": "external_write"}, "action": "deny"}])],
        _agent(w, w["dev"], tools=[{"name": "zendesk.search"}, {"name": "zendesk.create-ticket"}]),
        [
            "Agent/support-triage: spec.tools[1]:",
            "no-external-writes (v1) rule 0 denies tool zendesk.create-ticket",
        ],
    ),
}


@pytest.mark.parametrize("via", VIA)
@pytest.mark.parametrize("case", list(CASES))
def test_each_check_denies_naming_the_field(harness: Harness, case: str, via: str) -> None:
    w = _world(harness)
    extra, doc, expected = CASES[case](w)
    harness.setup([*w["docs"], *extra])
    outcome = _create(harness, via, doc)
    assert not outcome.ok, f"{case} was admitted"
    for text in expected:
        assert text in outcome.message, outcome.message
    assert harness.get(doc["kind"], doc["metadata"]["name"]) is None


@pytest.mark.parametrize("via", VIA)
def test_deployment_preflight(harness: Harness, via: str) -> None:
    w = _world(harness)
    _prod(harness, w)
    harness.setup([_agent(w, w["dev"])])
    deployment = f.obj(
        "Deployment",
        "triage-prod",
        {"agentRef": {"name": "support-triage"}, "environmentRef": {"name": w["prod"]}},
    )
    outcome = _create(harness, via, deployment)
    assert not outcome.ok
    assert "Deployment/triage-prod: spec.environmentRef: Agent" in outcome.message
    assert f"in environment {w['prod']}" in outcome.message
    assert "allowlisted-providers-only (v1) rule 0 denies model openai:gpt-5-thinking" in outcome.message


@pytest.mark.parametrize("via", VIA)
def test_route_preflight_in_a_prod_namespace(harness: Harness, via: str) -> None:
    w = _world(harness)
    _prod(harness, w)
    harness.label_namespace({"joch.dev/environment": w["prod"]})
    outcome = _create(harness, via, f.route("openai-first"))
    assert not outcome.ok
    assert "ModelRoute/openai-first: spec.strategy.primary:" in outcome.message
    assert "allowlisted-providers-only" in outcome.message


@pytest.mark.parametrize("via", VIA)
def test_missing_references_are_admitted_with_warnings(harness: Harness, via: str) -> None:
    outcome = _create(harness, via, f.agent(labels={"env": "dev"}))
    assert outcome.ok, outcome.message
    joined = "\n".join(outcome.warnings)
    assert "spec.modelRoute.routeRef: ModelRoute" in joined
    assert "not found; admitted" in joined


@pytest.mark.parametrize("via", VIA)
def test_policy_change_putting_an_agent_in_violation_warns(harness: Harness, via: str) -> None:
    w = _world(harness)
    harness.setup([*w["docs"], _agent(w, w["dev"])])
    rules = [{"when": {"model.provider": "openai"}, "action": {"deny": True, "reason": "no openai here"}}]
    outcome = _create(harness, via, f.policy("no-openai", rules))
    assert outcome.ok, outcome.message
    [warning] = [w for w in outcome.warnings if "in violation" in w]
    assert f"{harness.namespace}/support-triage" in warning
    assert "no openai here" in warning


@pytest.mark.parametrize("via", VIA)
def test_mutating_defaults(harness: Harness, via: str) -> None:
    w = _world(harness)
    env = f.environment(
        w["prod"], defaults={"modelRouteRef": {"name": "research-default"}, "traceRetentionDays": 90}
    )
    harness.setup([*w["docs"], env])
    assert _create(harness, via, f.tool("slack.send")).ok
    assert harness.get("Tool", "slack.send")["spec"]["toolName"] == "slack.send"  # type: ignore[index]
    trace = f.obj("Trace", "t1", {"executionRef": {"name": "run-1"}}, labels={"env": "prod"})
    assert _create(harness, via, trace).ok
    stored = harness.get("Trace", "t1")
    assert stored is not None
    assert stored["spec"]["sampling"] == {"mode": "tail"}
    dev_trace = f.obj("Trace", "t2", {"executionRef": {"name": "run-2"}}, labels={"env": "dev"})
    assert _create(harness, via, dev_trace).ok
    assert harness.get("Trace", "t2")["spec"]["sampling"] == {"mode": "full"}  # type: ignore[index]
    assert _create(harness, via, _agent(w, w["prod"], modelRoute=None)).ok
    agent = harness.get("Agent", "support-triage")
    assert agent is not None
    assert agent["spec"]["modelRoute"] == {"routeRef": {"name": "research-default"}}


def test_kopf_metadata_patches_pass_unchanged(harness: Harness, kube_api: client.ApiClient) -> None:
    w = _world(harness)
    harness.setup([*w["docs"], _agent(w, w["dev"])])
    rules = [{"when": {"model.provider": "openai"}, "action": "deny"}]
    assert harness.py_create(f.policy("no-openai", rules)).ok  # the Agent is now in violation
    custom = client.CustomObjectsApi(kube_api)
    patch = {
        "metadata": {
            "annotations": {"joch.dev/last-handled-configuration": "{}"},
            "finalizers": ["joch.dev/finalizer"],
        }
    }
    patched = custom.patch_namespaced_custom_object(
        "joch.dev", "v1alpha1", harness.namespace, "agents", "support-triage", patch
    )
    assert patched["metadata"]["finalizers"] == ["joch.dev/finalizer"]
    assert patched["spec"] == harness.get("Agent", "support-triage")["spec"]  # type: ignore[index]
    custom.patch_namespaced_custom_object(
        "joch.dev",
        "v1alpha1",
        harness.namespace,
        "agents",
        "support-triage",
        {"metadata": {"finalizers": None}},
    )
    relabel = harness.kubectl("label", "agent", "support-triage", "-n", harness.namespace, "tier=gold")
    assert not relabel.ok  # a label change is judged: the Agent now violates no-openai
    assert "no-openai" in relabel.message


@pytest.mark.parametrize("via", VIA)
def test_server_side_dry_run(harness: Harness, via: str) -> None:
    w = _world(harness)
    _prod(harness, w)
    doc = _agent(w, w["prod"])
    outcome = (
        harness.kubectl_apply(doc, "--dry-run=server")
        if via == "kubectl"
        else harness.py_create(doc, dry_run=True)
    )
    assert not outcome.ok
    assert "allowlisted-providers-only" in outcome.message
    ok = (
        harness.kubectl_apply(_agent(w, w["dev"]), "--dry-run=server")
        if via == "kubectl"
        else harness.py_create(_agent(w, w["dev"]), dry_run=True)
    )
    assert ok.ok, ok.message
    assert harness.get("Agent", "support-triage") is None
