"""Validation checks, one denial per check, each asserting the field path in the message.

| check | kind | path |
|---|---|---|
| schema (unknown field, pattern, required) | any | the field |
| unknown kind | any | kind |
| duplicate tools / MCP servers / policies | Agent | spec.tools[i] ... |
| fallback repeats primary / another fallback | ModelRoute | spec.strategy.fallback[i] |
| rules that do not parse, unknown paths | Policy | spec.rules[i].when.<path> |
| CEL that does not compile (rule index + error) | Policy | spec.rules[i].when.cel |
| malformed selectors | Policy | spec.appliesTo.agents.selector... |
| thresholds: not a comparison, unknown metric | Eval | spec.thresholds.<metric> |
| llm_judge without judge model | Eval | spec.metrics[i].judgeModelRef |
| tool schema not a JSON Schema | Tool | spec.inputSchema... |
| byAgent shares over 1 | Budget | spec.allocation.byAgent |
| cross-namespace reference (D2) | Agent, Tool, RAG, Deployment... | the reference field |
| missing references (D10) | any | warning at the reference field |
| UPDATE leaving spec and labels alone (kopf patches) | any | admitted unjudged |

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain.admission import Admission, Request, Verdict
from tests.unit.admission import factories as f


def _first(verdict: Verdict) -> str:
    assert not verdict.allowed, "expected a denial"
    return verdict.format(verdict.errors[0])


CEL_BROKEN = [{"when": {"cel": "tool.name == "}, "action": "deny"}]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(f.agent(bogus=1), "Agent/support-triage: spec.bogus: unknown field", id="unknown field"),
        pytest.param(
            f.agent(modelRoute={"routeRef": {"name": "Not_A_Name"}}),
            "Agent/support-triage: spec.modelRoute.routeRef.name: String should match pattern",
            id="pattern",
        ),
        pytest.param(
            f.agent(framework={"adapterRef": None}),
            "Agent/support-triage: spec.framework.adapterRef: required field is missing",
            id="required",
        ),
        pytest.param(
            {"apiVersion": "joch.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}},
            "Gadget/g: kind: joch does not serve apiVersion joch.dev/v1alpha1, kind Gadget",
            id="unknown kind",
        ),
        pytest.param(
            f.agent(tools=[{"name": "a"}, {"name": "b"}, {"name": "a"}]),
            "Agent/support-triage: spec.tools[2]: duplicate tool a (also at spec.tools[0])",
            id="duplicate tool names",
        ),
        pytest.param(
            f.agent(mcpServers=[{"name": "github"}, {"name": "github", "namespace": f.NS}]),
            "Agent/support-triage: spec.mcpServers[1]: duplicate MCP server support/github",
            id="duplicate mcp servers",
        ),
        pytest.param(
            f.route(fallback=["anthropic:claude-sonnet", "openai:gpt-5-thinking"]),
            "ModelRoute/research-default: spec.strategy.fallback[1]: openai:gpt-5-thinking repeats the "
            "primary",
            id="fallback repeats primary",
        ),
        pytest.param(
            f.route(fallback=["anthropic:claude-sonnet", "anthropic:claude-sonnet"]),
            "ModelRoute/research-default: spec.strategy.fallback[1]: anthropic:claude-sonnet repeats "
            "spec.strategy.fallback[0]",
            id="fallback repeated",
        ),
        pytest.param(
            f.policy("p", [{"when": {"tool.nme": "x"}, "action": "deny"}]),
            "Policy/p: spec.rules[0].when.tool.nme: ",
            id="unknown context path",
        ),
        pytest.param(
            f.policy("p", [{"when": {"tool.name": "x"}, "action": "explode"}]),
            "Policy/p: spec.rules[0].action: ",
            id="rule that does not parse",
        ),
        pytest.param(
            f.policy("p", [{"when": {"tool.name": "x"}, "action": "allow"}, *CEL_BROKEN]),
            "Policy/p: spec.rules[1].when.cel: rule 1: CEL ",
            id="CEL that does not compile",
        ),
        pytest.param(
            f.policy(
                "p",
                [{"action": "deny"}],
                applies_to={"agents": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}},
            ),
            "Policy/p: spec.appliesTo.agents.selector.matchExpressions[0]",
            id="malformed selector",
        ),
        pytest.param(
            f.policy(
                "p",
                [{"action": "deny"}],
                applies_to={"agents": {"selector": {"matchLabels": {"Bad Key!": "x"}}}},
            ),
            "Policy/p: spec.appliesTo.agents.selector.matchLabels['Bad Key!']: 'Bad Key!' is not a label key",
            id="malformed selector key",
        ),
        pytest.param(
            f.obj(
                "Eval",
                "e",
                {
                    "target": {"name": "support-triage"},
                    "dataset": {"type": "file", "uri": "./cases.jsonl"},
                    "metrics": [{"name": "accuracy", "type": "numeric"}],
                    "thresholds": {"accuracy": "about 0.9"},
                },
            ),
            "Eval/e: spec.thresholds.accuracy: 'about 0.9' is not a comparison",
            id="eval threshold not a comparison",
        ),
        pytest.param(
            f.obj(
                "Eval",
                "e",
                {
                    "target": {"name": "support-triage"},
                    "dataset": {"type": "file", "uri": "./cases.jsonl"},
                    "metrics": [{"name": "accuracy", "type": "numeric"}],
                    "thresholds": {"acuracy": 0.9},
                },
            ),
            "Eval/e: spec.thresholds.acuracy: no metric named acuracy",
            id="eval threshold for an unknown metric",
        ),
        pytest.param(
            f.obj(
                "Eval",
                "e",
                {
                    "target": {"name": "support-triage"},
                    "dataset": {"type": "file", "uri": "./cases.jsonl"},
                    "metrics": [{"name": "helpful", "type": "llm_judge"}],
                },
            ),
            "Eval/e: spec.metrics[0].judgeModelRef: metric helpful has type llm_judge",
            id="llm judge without a model",
        ),
        pytest.param(
            f.tool(inputSchema={"type": "objekt"}),
            "Tool/zendesk.search: spec.inputSchema.type: is not a valid JSON Schema",
            id="input schema",
        ),
        pytest.param(
            f.obj(
                "Budget", "b", {"limits": {"monthlyUsd": 10}, "allocation": {"byAgent": {"a": 0.7, "b": 0.6}}}
            ),
            "Budget/b: spec.allocation.byAgent: shares add up to 1.3",
            id="budget shares",
        ),
        pytest.param(
            f.agent(mcpServers=[{"name": "github", "namespace": "elsewhere"}]),
            "Agent/support-triage: spec.mcpServers[0]: reference into namespace elsewhere, not support",
            id="cross-namespace agent ref",
        ),
        pytest.param(
            f.agent(modelRoute={"routeRef": {"name": "r", "namespace": "elsewhere"}}),
            "Agent/support-triage: spec.modelRoute.routeRef: reference into namespace elsewhere",
            id="cross-namespace route ref",
        ),
        pytest.param(
            f.tool(type="mcp", mcpServerRef={"name": "github", "namespace": "elsewhere"}),
            "Tool/zendesk.search: spec.mcpServerRef: reference into namespace elsewhere",
            id="cross-namespace tool ref",
        ),
        pytest.param(
            f.obj("Deployment", "d", {"agentRef": {"name": "a", "namespace": "elsewhere"}}),
            "Deployment/d: spec.agentRef: reference into namespace elsewhere",
            id="cross-namespace deployment ref",
        ),
    ],
)
def test_denials_name_the_field(doc: dict[str, Any], expected: str) -> None:
    verdict = f.admit(doc, f.fleet())
    assert expected in verdict.message(), verdict.message()
    assert _first(verdict)


def test_references_into_shared_namespaces_are_allowed() -> None:
    doc = f.agent(mcpServers=[{"name": "github", "namespace": "joch-system"}])
    verdict = f.admit(doc, f.fleet())
    assert verdict.allowed, verdict.message()
    assert any("MCPServer joch-system/github not found" in w for w in verdict.warning_messages())


def test_missing_references_are_warnings() -> None:
    verdict = f.admit(f.agent(), [])
    assert verdict.allowed
    joined = "\n".join(verdict.warning_messages())
    assert "spec.framework.adapterRef: FrameworkAdapter py-sdk not found" in joined
    assert "spec.modelRoute.routeRef: ModelRoute support/research-default not found" in joined


def test_missing_reference_of_another_kind() -> None:
    verdict = f.admit(f.tool(type="mcp", mcpServerRef={"name": "nowhere"}), [])
    assert verdict.allowed
    assert verdict.warning_messages() == [
        "Tool/zendesk.search: spec.mcpServerRef: MCPServer support/nowhere does not exist (yet); admitted, "
        "the operator reports it until it appears"
    ]


def test_unknown_kinds_are_not_reported_missing() -> None:
    """The operator's store holds no Secrets: a reference to one can be neither confirmed nor denied."""
    doc = f.model("m", "openai", auth={"secretRef": {"name": "nope"}})
    verdict = Admission(f.SETTINGS).validate(f.request(doc), f.world([], known_kinds={"Model"}))
    assert verdict.allowed
    assert verdict.warnings == ()


def test_cluster_scoped_referrer_with_a_non_shared_namespace_is_a_warning() -> None:
    env = f.environment("prod", policies=[{"name": "p", "namespace": "support"}])
    verdict = f.admit(env, [f.policy("p", [{"action": "deny"}])])
    assert verdict.allowed
    assert "applies only to Agents of namespace support" in verdict.warning_messages()[0]


def test_policy_namespaces_outside_a_shared_namespace_warn() -> None:
    doc = f.policy("p", [{"action": "allow"}], applies_to={"namespaces": ["support", "other"]})
    verdict = f.admit(doc, [])
    assert verdict.allowed
    assert "spec.appliesTo.namespaces" in verdict.warning_messages()[0]


def test_kopf_metadata_patch_is_admitted_unjudged() -> None:
    """An UPDATE that only changes annotations/finalizers passes, even for an object now in violation."""
    old = f.agent(labels={"env": "prod"})
    new = f.merge(old, {"metadata": {"annotations": {"joch.dev/last-handled-configuration": "{}"}}})
    new["metadata"]["finalizers"] = ["joch.dev/finalizer"]
    verdict = f.admit(new, f.prod_scenario(), operation="UPDATE", old=old)
    assert verdict.allowed
    assert verdict.warnings == ()


def test_label_change_is_judged() -> None:
    old = f.agent(labels={"env": "dev"})
    new = f.agent(labels={"env": "prod"})
    assert not f.admit(new, f.prod_scenario(), operation="UPDATE", old=old).allowed


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_pass(operation: str) -> None:
    assert f.admit({"kind": "Agent"}, [], operation=operation).allowed


def test_namespace_comes_from_the_request() -> None:
    doc = f.agent(labels={"env": "prod"})
    del doc["metadata"]["namespace"]
    request = Request("CREATE", "Agent", "support-triage", f.NS, doc)
    verdict = Admission(f.SETTINGS).validate(request, f.world(f.prod_scenario()))
    assert not verdict.allowed
    assert "allowlisted-providers-only" in verdict.message()


def test_namespaced_kind_without_any_namespace() -> None:
    doc = f.agent()
    del doc["metadata"]["namespace"]
    verdict = Admission(f.SETTINGS).validate(Request("CREATE", "Agent", object=doc), f.world())
    assert "metadata.namespace: a Agent is namespaced" in verdict.message()


def test_status_is_ignored() -> None:
    doc = f.agent()
    doc["status"] = {"phase": "Whatever", "unknown": True}
    assert f.admit(doc, f.fleet()).allowed


def test_many_errors_are_counted() -> None:
    tools = [{"name": "a"}] * 15
    verdict = f.admit(f.agent(tools=tools), f.fleet())
    assert "(and" in verdict.message()
    assert verdict.message().count("Agent/support-triage: ") == 10
