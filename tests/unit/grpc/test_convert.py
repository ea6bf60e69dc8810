"""The joch.v1 messages mirror the policy language: every context key has a proto field of that JSON
name and every proto field is a context key; conversion keeps presence; decisions convert whole."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from google.protobuf import json_format

from joch.decision_service import requests
from joch.domain.policy import context as policy_context
from joch.domain.policy.decision import Decision, DisabledRule
from joch.grpc import convert
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2


def _schema_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    out: set[str] = set()
    for key, child in node.items():
        out |= _schema_paths(child, f"{prefix}.{key}" if prefix else key)
    return out


def _message_paths(descriptor: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for field in descriptor.fields:
        name = f"{prefix}.{field.json_name}" if prefix else field.json_name
        kind = field.message_type
        leaf = kind is None or kind.GetOptions().map_entry or kind.full_name.startswith("google.protobuf.")
        if leaf or kind.full_name == "joch.v1.StringList":
            out.add(name)
        else:
            out |= _message_paths(kind, name)
    return out


def full_context() -> decision_pb2.DecisionContext:
    ctx = decision_pb2.DecisionContext(hook="toolCallRequest", reasoning="r", turn_id="t1", step_id="s1")
    ctx.agent.name, ctx.agent.namespace, ctx.agent.version = "triage", "support", "3"
    ctx.agent.labels["team"] = "support-platform"
    ctx.framework.string_value = "langgraph"
    ctx.tenant.struct_value.update({"id": "acme"})
    ctx.environment.name = "prod"
    ctx.environment.allowed_providers.values.extend(["anthropic"])
    ctx.tool.name, ctx.tool.type, ctx.tool.side_effect = "zendesk.search", "http", "read"
    ctx.tool.requires_approval = False
    ctx.model.provider, ctx.model.name, ctx.model.tier = "anthropic", "claude", "large"
    ctx.mcp_server.name, ctx.mcp_server.trust_score, ctx.mcp_server.schema_drift = "zendesk", 0.9, False
    ctx.mcp_result.injection_scan.hit = True
    ctx.data.contains.extend(["pii"])
    ctx.cost.run_usd = 0.25
    ctx.execution.name = "run-1"
    ctx.payload.struct_value.update({"query": "refund", "n": 3})
    return ctx


def test_the_proto_context_and_the_policy_language_name_the_same_paths() -> None:
    assert _message_paths(decision_pb2.DecisionContext.DESCRIPTOR) == _schema_paths(
        dict(policy_context.CONTEXT_SCHEMA)
    )


def test_a_full_context_converts_to_the_json_shape_and_passes_the_http_check() -> None:
    converted = convert.context_dict(full_context())
    assert converted == {
        "hook": "toolCallRequest",
        "agent": {
            "name": "triage",
            "namespace": "support",
            "labels": {"team": "support-platform"},
            "version": "3",
        },
        "framework": "langgraph",
        "tenant": {"id": "acme"},
        "environment": {"name": "prod", "allowedProviders": ["anthropic"]},
        "tool": {"name": "zendesk.search", "type": "http", "sideEffect": "read", "requiresApproval": False},
        "model": {"provider": "anthropic", "name": "claude", "tier": "large"},
        "mcpServer": {"name": "zendesk", "trustScore": 0.9, "schemaDrift": False},
        "mcpResult": {"injectionScan": {"hit": True}},
        "data": {"contains": ["pii"]},
        "cost": {"runUsd": 0.25},
        "execution": {"name": "run-1"},
        "payload": {"query": "refund", "n": 3.0},
        "reasoning": "r",
        "turnId": "t1",
        "stepId": "s1",
    }
    assert requests.check_context(converted) == []


def test_unset_is_absent_and_an_empty_list_is_present() -> None:
    ctx = decision_pb2.DecisionContext()
    ctx.agent.name = "triage"
    assert convert.context_dict(ctx) == {"agent": {"name": "triage"}}
    ctx.environment.allowed_providers.SetInParent()
    assert convert.context_dict(ctx)["environment"] == {"allowedProviders": []}


def test_context_json_goes_through_the_same_check_with_the_same_field_paths() -> None:
    message = policy_service_pb2.DecideRequest(policies=["caps", "shared/base"], preflight=True)
    message.context_json.update({"agent": {"name": "triage", "namespace": "support"}, "tools": {}})
    with pytest.raises(requests.RequestError) as caught:
        convert.request_of(message)
    assert [p.field for p in caught.value.problems] == ["context.tools"]
    del message.context_json["tools"]
    parsed = convert.request_of(message)
    assert parsed.preflight is True
    assert [str(ref) for ref in parsed.policies] == ["caps", "shared/base"]


def test_a_decision_converts_whole_with_the_budget_extras() -> None:
    until = datetime.datetime(2026, 12, 8, 12, 0, tzinfo=datetime.UTC)
    decision = Decision(
        "modify",
        "redacted",
        policy_id="caps",
        policy_namespace="support",
        policy_version="v2",
        rule=1,
        modified_request={"q": "[REDACTED]"},
        redaction_rules=("pii",),
        requires={"approval": {"type": "human", "approvers": ["team:pay"], "timeoutMinutes": 30}},
        disabled_rules=(DisabledRule("caps", "support", 0, until),),
    )
    extra = {"reservation": {"id": "r1", "budgets": ["support/monthly"], "amountUsd": 0.5, "expiresAt": "x"}}
    response = convert.decision_message(decision, extra, "req-1")
    as_json = json_format.MessageToDict(response)
    assert as_json == {
        "requestId": "req-1",
        "decision": {
            "decision": "EFFECT_MODIFY",
            "reason": "redacted",
            "policyId": "caps",
            "policyNamespace": "support",
            "policyVersion": "v2",
            "rule": 1,
            "modifiedRequest": {"q": "[REDACTED]"},
            "redactionRules": ["pii"],
            "requires": {"approval": {"type": "human", "approvers": ["team:pay"], "timeoutMinutes": 30}},
            "disabledRules": [
                {"policyId": "caps", "policyNamespace": "support", "rule": 0, "until": "2026-12-08T12:00:00Z"}
            ],
        },
        "reservation": {"id": "r1", "budgets": ["support/monthly"], "amountUsd": 0.5, "expiresAt": "x"},
    }
    denied = convert.decision_message(
        Decision("deny", "BudgetExceeded: over"), {"budget": {"namespace": "support", "name": "m"}}, ""
    )
    assert (denied.budget.namespace, denied.budget.name) == ("support", "m")
    assert not denied.HasField("reservation")
