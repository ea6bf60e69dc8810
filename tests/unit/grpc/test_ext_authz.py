"""ext_authz's Check over a real DecisionService: CheckRequests as Envoy sends them, answers as Envoy reads
them (gRPC status, HTTP status, headers, JSON body)."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping
from typing import Any

import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2

from joch.decision_service import requests
from joch.decision_service.service import DecisionService
from joch.domain.policy.decision import Decision
from joch.grpc import errors, ext_authz
from tests.unit.decision_service import factories as f

NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
APPROVE_WIRE = {
    "when": {"tool.name": "wire.transfer"},
    "require": {
        "approval": "human",
        "approvalRouting": {"approvers": ["team:finance"], "timeoutMinutes": 15, "onTimeout": "deny"},
        "channels": ["slack:#pay"],
    },
}
REDACT = {"when": {"tool.name": "search"}, "action": {"redact": True}}
SETTINGS = ext_authz.ExtAuthzSettings()


def service() -> DecisionService:
    svc = DecisionService()
    svc.load([f.policy(rules=[f.DENY_SHELL, APPROVE_WIRE, REDACT])], [])
    return svc


def decider(svc: DecisionService, extra: Mapping[str, Any] | None = None) -> ext_authz.Decide:
    async def decide(request: requests.EvaluateRequest) -> tuple[Decision, Mapping[str, Any] | None]:
        return svc.decide(request, now=NOW), extra

    return decide


def check_request(
    headers: Mapping[str, str] | None = None,
    *,
    agent: bool = True,
    metadata: Mapping[str, Any] | None = None,
    extensions: Mapping[str, str] | None = None,
    namespace: str = "joch",
) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy builds it: lower-case headers, pseudo-headers, a source address."""
    sent = {
        ":method": "POST",
        ":path": "/tools/call",
        ":authority": "tools.internal",
        "x-request-id": "0b6e2a3c-1111-4222-8333-944445555666",
        "content-type": "application/json",
    }
    if agent:
        sent.update({"x-joch-agent": "triage", "x-joch-agent-namespace": "support"})
    sent.update(headers or {})
    attributes = attribute_context_pb2.AttributeContext(
        source=attribute_context_pb2.AttributeContext.Peer(
            address={"socket_address": {"address": "10.0.3.7", "port_value": 51234}}
        ),
        request=attribute_context_pb2.AttributeContext.Request(
            http=attribute_context_pb2.AttributeContext.HttpRequest(
                id="17351735", method="POST", path="/tools/call", host="tools.internal", headers=sent
            )
        ),
        context_extensions=dict(extensions or {}),
    )
    if metadata is not None:
        struct = struct_pb2.Struct()
        struct.update(dict(metadata))
        attributes.metadata_context.filter_metadata[namespace].CopyFrom(struct)
    return external_auth_pb2.CheckRequest(attributes=attributes)


def run(
    request: external_auth_pb2.CheckRequest,
    svc: DecisionService | None = None,
    settings: ext_authz.ExtAuthzSettings = SETTINGS,
    **kwargs: Any,
) -> external_auth_pb2.CheckResponse:
    decide = kwargs.pop("decide", None) or decider(svc or service(), kwargs.pop("extra", None))
    return asyncio.run(ext_authz.check(request, decide, settings, **kwargs))


def headers_of(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


def body_of(response: external_auth_pb2.CheckResponse) -> Any:
    return json.loads(response.denied_response.body)


# --- allow, modify, deny -----------------------------------------------------------------------------


def test_allow_is_ok_with_the_decision_headers_and_strips_forged_ones() -> None:
    response = run(check_request({"x-joch-tool": "read.file", "x-joch-policy-id": "forged"}))
    assert response.status.code == code_pb2.OK
    assert response.WhichOneof("http_response") == "ok_response"
    assert headers_of(response.ok_response.headers) == {"x-joch-decision": "allow"}
    assert "x-joch-policy-id" in response.ok_response.headers_to_remove
    assert "x-joch-approval" in response.ok_response.headers_to_remove
    assert all(
        option.append_action == option.OVERWRITE_IF_EXISTS_OR_ADD for option in response.ok_response.headers
    )
    assert response.dynamic_metadata["decision"] == "allow"


def test_deny_is_permission_denied_403_with_headers_and_the_decision_as_json() -> None:
    response = run(check_request({"x-joch-tool": "shell.exec"}))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.status.message == "no shell"
    assert response.denied_response.status.code == 403
    assert headers_of(response.denied_response.headers) == {
        "x-joch-decision": "deny",
        "x-joch-policy-id": "caps",
        "x-joch-policy-namespace": "support",
        "x-joch-policy-version": "v1",
        "content-type": "application/json",
    }
    assert body_of(response) == {
        "decision": "deny",
        "reason": "no shell",
        "policyId": "caps",
        "policyNamespace": "support",
        "policyVersion": "v1",
        "rule": 0,
    }


def test_modify_passes_with_the_redaction_rules_in_a_header() -> None:
    response = run(check_request({"x-joch-tool": "search"}))
    assert response.status.code == code_pb2.OK
    headers = headers_of(response.ok_response.headers)
    assert headers["x-joch-decision"] == "modify"
    assert headers["x-joch-policy-id"] == "caps"
    assert headers["x-joch-redaction-rules"]
    assert "x-joch-redaction-rules" not in response.ok_response.headers_to_remove


def test_the_context_has_headers_payload_and_default_hook() -> None:
    request = check_request(
        {"x-joch-tool": "read.file", "x-joch-environment": "prod", "x-joch-mcp-server": "files"}
    )
    assert ext_authz.context_of(request, SETTINGS) == {
        "hook": "toolCallRequest",
        "agent": {"name": "triage", "namespace": "support"},
        "tool": {"name": "read.file"},
        "environment": {"name": "prod"},
        "mcpServer": {"name": "files"},
        "payload": {"method": "POST", "path": "/tools/call", "host": "tools.internal"},
    }


def test_metadata_overrides_headers_key_by_key() -> None:
    request = check_request(
        {"x-joch-tool": "read.file"},
        metadata={"tool": {"name": "shell.exec"}, "cost": {"runUsd": 0.2}, "hook": "message"},
    )
    context = ext_authz.context_of(request, SETTINGS)
    assert context["tool"] == {"name": "shell.exec"}
    assert context["agent"] == {"name": "triage", "namespace": "support"}
    assert context["cost"] == {"runUsd": 0.2}
    assert context["hook"] == "message"
    assert run(request).denied_response.status.code == 403


def test_metadata_of_another_namespace_is_not_read() -> None:
    request = check_request(
        {"x-joch-tool": "read.file"}, metadata={"tool": {"name": "shell.exec"}}, namespace="x"
    )
    assert run(request).status.code == code_pb2.OK


def test_context_extensions_set_fields_per_route_and_unknown_keys_fail_closed() -> None:
    request = check_request({"x-joch-tool": "read.file"}, extensions={"tool": "shell.exec"})
    assert run(request).status.code == code_pb2.PERMISSION_DENIED
    typo = run(check_request(extensions={"tools": "shell.exec"}))
    assert typo.status.code == code_pb2.PERMISSION_DENIED
    assert body_of(typo)["error"]["details"]["errors"][0]["field"] == "contextExtensions.tools"


# --- approvals ---------------------------------------------------------------------------------------


def test_approval_required_names_a_deterministic_approval_and_carries_its_template() -> None:
    response = run(check_request({"x-joch-tool": "wire.transfer", "x-joch-execution": "run-1"}))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    headers = headers_of(response.denied_response.headers)
    assert headers["x-joch-decision"] == "approval-required"
    name = headers["x-joch-approval"]
    assert name.startswith("triage-")
    assert len(name) == len("triage-") + 12
    body = body_of(response)
    assert body["decision"] == "allow"
    assert body["requires"]["approval"]["approvers"] == ["team:finance"]
    assert body["approval"] == {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": "support"},
        "spec": {
            "requestedBy": {"agentRef": {"name": "triage"}, "executionRef": {"name": "run-1"}},
            "action": {
                "type": "tool_call",
                "toolCallRef": {"name": name},
                "tool": "wire.transfer",
                "inputSummary": "POST tools.internal /tools/call (tool wire.transfer)",
            },
            "policyRef": {"name": "caps", "namespace": "support"},
            "routing": {"approvers": ["team:finance"], "timeoutMinutes": 15, "onTimeout": "deny"},
            "channels": ["slack:#pay"],
        },
    }
    again = run(check_request({"x-joch-tool": "wire.transfer", "x-joch-execution": "run-1"}))
    assert headers_of(again.denied_response.headers)["x-joch-approval"] == name


def test_the_approval_name_changes_with_the_tool_and_the_request_id() -> None:
    svc = service()
    decision = svc.decide(
        requests.parse_request({"context": f.context(tool={"name": "wire.transfer"})}), now=NOW
    )
    context = f.context(tool={"name": "wire.transfer"})
    name = ext_authz.approval_name(context, decision, "r1")
    assert ext_authz.approval_name(context, decision, "r1") == name
    assert ext_authz.approval_name(f.context(tool={"name": "wire.other"}), decision, "r1") != name
    assert ext_authz.approval_name(context, decision, "r2") != name


def test_approval_status_and_header_are_settings() -> None:
    settings = ext_authz.ExtAuthzSettings(approval_status=409, approval_header="X-Approval-Name")
    response = run(check_request({"x-joch-tool": "wire.transfer"}), settings=settings)
    assert response.denied_response.status.code == 409
    assert "x-approval-name" in headers_of(response.denied_response.headers)


def approval_lookup(found: dict[str, Any]) -> ext_authz.Approvals:
    async def lookup(namespace: str, name: str) -> Mapping[str, Any] | None:
        return found.get(f"{namespace}/{name}")

    return lookup


def test_an_approved_approval_lets_the_retry_pass_and_a_rejected_one_denies() -> None:
    first = run(check_request({"x-joch-tool": "wire.transfer"}))
    template = body_of(first)["approval"]
    key = f"support/{template['metadata']['name']}"
    approved = {key: {"spec": template["spec"], "status": {"phase": "Approved", "decision": "approve"}}}
    passed = run(check_request({"x-joch-tool": "wire.transfer"}), approvals=approval_lookup(approved))
    assert passed.status.code == code_pb2.OK
    assert headers_of(passed.ok_response.headers)["x-joch-approval"] == template["metadata"]["name"]
    rejected = {key: {"spec": template["spec"], "status": {"phase": "Rejected", "decidedBy": "alice"}}}
    denied = run(check_request({"x-joch-tool": "wire.transfer"}), approvals=approval_lookup(rejected))
    assert denied.denied_response.status.code == 403
    assert body_of(denied)["reason"].endswith("is Rejected by alice")
    pending = {key: {"spec": template["spec"], "status": {"phase": "Pending"}}}
    waiting = run(check_request({"x-joch-tool": "wire.transfer"}), approvals=approval_lookup(pending))
    assert headers_of(waiting.denied_response.headers)["x-joch-decision"] == "approval-required"


def test_an_approval_made_for_another_call_does_not_pass() -> None:
    template = body_of(run(check_request({"x-joch-tool": "wire.transfer"})))["approval"]
    spec = {**template["spec"], "routing": {"approvers": ["user:accomplice"]}}
    found = {f"support/{template['metadata']['name']}": {"spec": spec, "status": {"phase": "Approved"}}}
    response = run(check_request({"x-joch-tool": "wire.transfer"}), approvals=approval_lookup(found))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert "spec.routing.approvers differs" in body_of(response)["reason"]


# --- failing closed ----------------------------------------------------------------------------------


def test_missing_agent_headers_fail_closed_with_the_catalog_error() -> None:
    response = run(check_request({"x-joch-tool": "read.file"}, agent=False))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    headers = headers_of(response.denied_response.headers)
    assert headers["x-joch-decision"] == "deny"
    assert headers["x-joch-error-code"] == "InvalidRequest"
    error = body_of(response)["error"]
    assert error["code"] == "InvalidRequest"
    assert [e["field"] for e in error["details"]["errors"]] == [
        "context.agent.name",
        "context.agent.namespace",
    ]
    assert "x-joch-agent" in error["details"]["errors"][0]["message"]
    with pytest.raises(requests.RequestError):
        ext_authz.context_of(check_request(agent=False), SETTINGS)


def test_wrong_types_in_metadata_fail_closed_as_http_does() -> None:
    response = run(check_request(metadata={"cost": {"runUsd": "lots"}, "tools": {"name": "x"}}))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    fields = [e["field"] for e in body_of(response)["error"]["details"]["errors"]]
    assert fields == ["context.tools", "context.cost.runUsd"]


def test_a_grpc_error_from_decide_propagates() -> None:
    async def not_ready(request: requests.EvaluateRequest) -> tuple[Decision, Mapping[str, Any] | None]:
        raise errors.from_http(503, "NotReady", "the policies are not loaded yet")

    with pytest.raises(errors.GrpcError) as raised:
        run(check_request({"x-joch-tool": "read.file"}), decide=not_ready)
    assert raised.value.code == "NotReady"


# --- budgets -----------------------------------------------------------------------------------------


def test_a_reservation_goes_into_headers() -> None:
    extra = {
        "reservation": {
            "id": "7c0c6b1e-0000-4000-8000-000000000001",
            "budgets": ["support/monthly"],
            "amountUsd": 0.2,
            "expiresAt": "2025-01-01T00:05:00Z",
        }
    }
    response = run(check_request({"x-joch-tool": "read.file"}), extra=extra)
    headers = headers_of(response.ok_response.headers)
    assert headers["x-joch-reservation-id"] == "7c0c6b1e-0000-4000-8000-000000000001"
    assert headers["x-joch-reservation-expires"] == "2025-01-01T00:05:00Z"
    assert headers["x-joch-budget"] == "support/monthly"


def test_a_budget_exceeded_deny_names_the_budget() -> None:
    async def over(request: requests.EvaluateRequest) -> tuple[Decision, Mapping[str, Any] | None]:
        return Decision("deny", "BudgetExceeded: support/monthly"), {
            "budget": {"namespace": "support", "name": "monthly"}
        }

    response = run(check_request({"x-joch-tool": "read.file"}), decide=over)
    assert response.denied_response.status.code == 403
    assert headers_of(response.denied_response.headers)["x-joch-budget"] == "support/monthly"
    assert body_of(response)["budget"] == {"namespace": "support", "name": "monthly"}


# --- settings ----------------------------------------------------------------------------------------


def test_with_headers_reads_another_header_lower_cased() -> None:
    settings = SETTINGS.with_headers({"agent": "X-Agent-Name"})
    assert settings.headers["agent"] == "x-agent-name"
    assert settings.headers["tool"] == "x-joch-tool"
    request = check_request({"x-agent-name": "billing", "x-joch-tool": "read.file"}, agent=False)
    request.attributes.request.http.headers["x-joch-agent-namespace"] = "support"
    assert ext_authz.context_of(request, settings)["agent"] == {"name": "billing", "namespace": "support"}


def test_an_empty_header_name_turns_a_field_header_off() -> None:
    settings = SETTINGS.with_headers({"agent": ""})
    assert "agent" not in settings.headers
    response = run(check_request({"x-joch-tool": "read.file"}), settings=settings)
    assert body_of(response)["error"]["details"]["errors"][0]["field"] == "context.agent.name"


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown ext_authz header fields: agents"):
        SETTINGS.with_headers({"agents": "x-a"})
    with pytest.raises(ValueError, match=r"100\.\.599"):
        ext_authz.ExtAuthzSettings(approval_status=700)
