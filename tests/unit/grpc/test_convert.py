"""joch.v1 messages <-> the decision service's JSON shapes (joch.grpc.convert).

Cases: every typed context field maps onto its JSON key (and unset fields are absent, set zero values
present); the typed and the JSON (Struct) context give the same request as the HTTP body; policies and
preflight; unknown fields (top level, nested, a known field with the wrong wire type), NaN, nesting
past 64 and shape problems (context_json with wrong types) are RequestErrors naming the field; a
Decision (deny, modify, approval, disabled rules, budget extras) round-trips onto DecideResponse.
"""

from __future__ import annotations

import datetime
import math

import pytest
from google.protobuf import json_format, struct_pb2

from joch.decision_service import requests
from joch.domain.policy.decision import Decision, DisabledRule
from joch.grpc import convert
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2

pb = policy_service_pb2


def full_context() -> decision_pb2.DecisionContext:
    ctx = decision_pb2.DecisionContext(hook="toolCallRequest", reasoning="r", turn_id="t1", step_id="s1")
    ctx.agent.name = "triage"
    ctx.agent.namespace = "support"
    ctx.agent.labels["team"] = "support-platform"
    ctx.agent.version = "v3"
    ctx.environment.name = "prod"
    ctx.environment.allowed_providers.extend(["anthropic"])
    ctx.tool.name = "shell.exec"
    ctx.tool.type = "mcp"
    ctx.tool.side_effect = "write"
    ctx.tool.requires_approval = False
    ctx.model.provider = "openai"
    ctx.model.name = "gpt"
    ctx.model.tier = "large"
    ctx.mcp_server.name = "files"
    ctx.mcp_server.trust_score = 0.5
    ctx.mcp_server.schema_drift = True
    ctx.mcp_result.injection_scan.hit = False
    ctx.data.contains.extend(["pii"])
    ctx.cost.run_usd = 0.25
    ctx.execution.name = "run-1"
    ctx.framework.string_value = "openai-agents-sdk"
    ctx.tenant.struct_value.update({"id": "acme", "tier": 2})
    ctx.payload.struct_value.update({"messages": [{"role": "user", "content": "hi"}], "n": 1.5})
    return ctx


EXPECTED = {
    "hook": "toolCallRequest",
    "agent": {
        "name": "triage",
        "namespace": "support",
        "labels": {"team": "support-platform"},
        "version": "v3",
    },
    "framework": "openai-agents-sdk",
    "tenant": {"id": "acme", "tier": 2},
    "environment": {"name": "prod", "allowedProviders": ["anthropic"]},
    "tool": {"name": "shell.exec", "type": "mcp", "sideEffect": "write", "requiresApproval": False},
    "model": {"provider": "openai", "name": "gpt", "tier": "large"},
    "mcpServer": {"name": "files", "trustScore": 0.5, "schemaDrift": True},
    "mcpResult": {"injectionScan": {"hit": False}},
    "data": {"contains": ["pii"]},
    "cost": {"runUsd": 0.25},
    "execution": {"name": "run-1"},
    "payload": {"messages": [{"role": "user", "content": "hi"}], "n": 1.5},
    "reasoning": "r",
    "turnId": "t1",
    "stepId": "s1",
}


def test_every_typed_field_maps_onto_its_json_key() -> None:
    body = convert.decide_request_body(pb.DecideRequest(context=full_context()))
    assert body == {"context": EXPECTED}
    parsed = requests.parse_request(body)
    assert parsed.context == EXPECTED


def test_unset_fields_are_absent_and_set_zero_values_present() -> None:
    ctx = decision_pb2.DecisionContext()
    ctx.agent.name = ""  # set, though empty
    ctx.cost.run_usd = 0.0
    ctx.tool.SetInParent()
    assert convert.decide_request_body(pb.DecideRequest(context=ctx)) == {
        "context": {"agent": {"name": ""}, "cost": {"runUsd": 0.0}, "tool": {}}
    }
    assert convert.decide_request_body(pb.DecideRequest()) == {}
    with pytest.raises(requests.RequestError, match="context: required"):
        requests.parse_request(convert.decide_request_body(pb.DecideRequest()))


def test_json_context_is_the_same_request() -> None:
    struct = struct_pb2.Struct()
    struct.update(EXPECTED)
    request = pb.DecideRequest(context_json=struct, preflight=True)
    request.policies.add(name="guard")
    request.policies.add(name="floor", namespace="shared")
    body = convert.decide_request_body(request)
    assert body == {
        "context": EXPECTED,
        "policies": [{"name": "guard"}, {"name": "floor", "namespace": "shared"}],
        "preflight": True,
    }
    parsed = requests.parse_request(body)
    assert [str(ref) for ref in parsed.policies] == ["guard", "shared/floor"]
    assert parsed.preflight


def test_json_context_wrong_types_name_every_field() -> None:
    struct = struct_pb2.Struct()
    struct.update({"agent": {"name": 5, "labels": {"team": True}}, "tools": {}, "cost": {"runUsd": -1}})
    with pytest.raises(requests.RequestError) as caught:
        requests.parse_request(convert.decide_request_body(pb.DecideRequest(context_json=struct)))
    fields = {problem.field for problem in caught.value.problems}
    assert fields == {
        "context.agent.name",
        "context.agent.labels.team",
        "context.tools",
        "context.cost.runUsd",
    }


def test_unknown_fields_are_problems() -> None:
    raw = pb.DecideRequest(context=full_context()).SerializeToString()
    extra = raw + b"\xa2\x06\x03abc"  # field 100, length-delimited
    with pytest.raises(requests.RequestError, match="unknown fields"):
        convert.parse_decide_request(extra)
    # A known field with the wrong wire type (context, field 1, as a varint) is unknown too.
    with pytest.raises(requests.RequestError, match="unknown fields"):
        convert.parse_decide_request(b"\x08\x01")
    # Nested: agent (DecisionContext field 2) with an unknown field 9.
    agent = decision_pb2.Agent(name="a").SerializeToString() + b"\x48\x01"
    ctx = b"\x12" + bytes([len(agent)]) + agent
    with pytest.raises(requests.RequestError) as caught:
        convert.parse_decide_request(b"\x0a" + bytes([len(ctx)]) + ctx)
    assert caught.value.problems[0].field == "context.agent"


def test_garbage_and_invalid_utf8_are_problems() -> None:
    with pytest.raises(requests.RequestError, match=r"not a joch\.v1\.DecideRequest"):
        convert.parse_decide_request(b"\xff\xff\xff")
    # context.hook (DecisionContext field 1, string) with invalid UTF-8
    ctx = b"\x0a\x02\xc3\x28"
    with pytest.raises(requests.RequestError, match=r"not a joch\.v1\.DecideRequest"):
        convert.parse_decide_request(b"\x0a" + bytes([len(ctx)]) + ctx)


def test_not_finite_numbers_are_problems() -> None:
    ctx = decision_pb2.DecisionContext()
    ctx.cost.run_usd = math.nan
    ctx.payload.struct_value.update({"x": math.inf})
    with pytest.raises(requests.RequestError) as caught:
        convert.decide_request_body(pb.DecideRequest(context=ctx))
    assert {p.field for p in caught.value.problems} == {"context.cost.runUsd", "context.payload.x"}


def test_nesting_past_the_limit_is_a_problem() -> None:
    deep: object = "leaf"
    for _ in range(requests.MAX_DEPTH + 2):
        deep = [deep]
    request = pb.DecideRequest()
    convert.to_value(deep, request.context.payload)
    with pytest.raises(requests.RequestError, match="nested more than 64 levels"):
        convert.decide_request_body(request)
    # On the wire protobuf's own depth limit (100 messages: a list level is two) refuses it first.
    with pytest.raises(requests.RequestError, match=r"not a joch\.v1\.DecideRequest"):
        convert.parse_decide_request(request.SerializeToString())
    shallow: object = "leaf"
    for _ in range(40):
        shallow = [shallow]
    ok = pb.DecideRequest()
    convert.to_value(shallow, ok.context.payload)
    ok.context.agent.name = "a"
    assert convert.parse_decide_request(ok.SerializeToString()).context["agent"] == {"name": "a"}


def test_a_decision_maps_onto_the_response() -> None:
    until = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    decision = Decision(
        "allow",
        "needs a human",
        policy_id="guard",
        policy_namespace="support",
        policy_version="v2",
        rule=1,
        requires={
            "approval": {
                "type": "human",
                "approvers": ["group:sre"],
                "timeoutMinutes": 30,
                "onTimeout": "deny",
                "channels": ["slack"],
                "policyId": "guard",
                "policyNamespace": "support",
                "rule": 1,
            }
        },
        disabled_rules=(DisabledRule("old", "support", 0, until),),
    )
    response = convert.decision_message(
        decision, {"reservation": {"id": "r1", "amountUsd": 0.5}}, request_id="7"
    )
    as_json = json_format.MessageToDict(response)
    assert as_json == {
        "requestId": "7",
        "decision": {
            "decision": "EFFECT_ALLOW",
            "reason": "needs a human",
            "policyId": "guard",
            "policyNamespace": "support",
            "policyVersion": "v2",
            "rule": 1,
            "requires": {
                "approval": {
                    "type": "human",
                    "approvers": ["group:sre"],
                    "timeoutMinutes": 30,
                    "onTimeout": "deny",
                    "channels": ["slack"],
                    "policyId": "guard",
                    "policyNamespace": "support",
                    "rule": 1,
                }
            },
            "disabledRules": [
                {"policyId": "old", "policyNamespace": "support", "until": "2026-12-01T00:00:00Z"}
            ],
        },
        "reservation": {"id": "r1", "amountUsd": 0.5},
    }
    modify = convert.decision_message(
        Decision(
            "modify", "redacted", modified_request={"text": "***", "n": [1, None]}, redaction_rules=("pii",)
        )
    )
    assert modify.decision.decision == decision_pb2.EFFECT_MODIFY
    assert convert.value_to_python(modify.decision.modified_request, "m", []) == {
        "text": "***",
        "n": [1, None],
    }
    assert list(modify.decision.redaction_rules) == ["pii"]
    assert not modify.decision.HasField("policy_id")
