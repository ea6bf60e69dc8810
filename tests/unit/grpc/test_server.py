"""The gRPC server in process (joch.grpc.server over 127.0.0.1; TokenReviews answered by a local reviewer).

Cases: Decide allows and denies like the HTTP endpoint; DecideStream answers in order, a bad message on
the stream gets an error response and the stream goes on; hostile messages (garbage bytes, unknown
fields, wrong types in context_json, over the size limit) answer INVALID_ARGUMENT / RESOURCE_EXHAUSTED
with the catalog code in the trailers and status details, and the server keeps serving; NotReady before
priming (health NOT_SERVING, then SERVING); no token, a bad scheme, a refused token -> UNAUTHENTICATED,
a subject not allowed -> PERMISSION_DENIED, tokens are reviewed once (cache); ext_authz Check: allow
with policy headers, deny with the reason in the body, approval required with the configured status and
header, a request without agent headers fails closed; reflection lists the services; metrics count.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from joch import metrics
from joch.decision_service.callers import CallerGate, Review
from joch.decision_service.service import DecisionService
from joch.grpc import ext_authz
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2, policy_service_pb2_grpc
from joch.grpc.server import GrpcServer, GrpcSettings
from tests.unit.decision_service import factories as f

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
TOKENS = {"good": "system:serviceaccount:gw:gateway", "other": "system:serviceaccount:gw:intruder"}
APPROVE = {"when": {"tool.name": "wire.transfer"}, "require": {"approval": "human"}}
AUTH = (("authorization", "Bearer good"),)

Scenario = Callable[[grpc.aio.Channel, GrpcServer, list[str]], Awaitable[None]]


def run(scenario: Scenario, *, ready: bool = True, settings: GrpcSettings | None = None) -> None:
    reviewed: list[str] = []

    async def review(token: str) -> Review:
        reviewed.append(token)
        user = TOKENS.get(token)
        return Review(authenticated=user is not None, username=user or "")

    async def main() -> None:
        service = DecisionService()
        if ready:
            service.load([f.policy(rules=[f.DENY_SHELL, APPROVE])], [])
        gate = CallerGate(("system:serviceaccount:gw:gateway",), review)
        server = GrpcServer(
            service,
            settings or GrpcSettings(host="127.0.0.1", port=0, max_message_bytes=64 * 1024),
            gate=gate,
            clock=lambda: NOW,
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await scenario(channel, server, reviewed)
        finally:
            await server.stop(0)

    asyncio.run(main())


def context(**parts: Any) -> decision_pb2.DecisionContext:
    ctx = decision_pb2.DecisionContext(hook="toolCallRequest")
    ctx.agent.name = "triage"
    ctx.agent.namespace = "support"
    ctx.agent.labels["team"] = "support-platform"
    for key, value in parts.items():
        getattr(ctx, key).name = value
    return ctx


def trailers_of(error: grpc.aio.AioRpcError) -> tuple[str, status_pb2.Status]:
    metadata = dict(error.trailing_metadata() or ())
    details = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    return str(metadata["joch-error-code"]), details


def test_decide_allows_and_denies() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
        deny = await stub.Decide(
            policy_service_pb2.DecideRequest(context=context(tool="shell.exec")), metadata=AUTH
        )
        assert deny.decision.decision == decision_pb2.EFFECT_DENY
        assert deny.decision.reason == "no shell"
        assert (deny.decision.policy_id, deny.decision.policy_version) == ("caps", "v1")
        allow = await stub.Decide(
            policy_service_pb2.DecideRequest(context=context(tool="zendesk.search"), request_id="r2"),
            metadata=AUTH,
        )
        assert allow.decision.decision == decision_pb2.EFFECT_ALLOW
        assert allow.request_id == "r2"
        approval = await stub.Decide(
            policy_service_pb2.DecideRequest(context=context(tool="wire.transfer")), metadata=AUTH
        )
        assert approval.decision.requires.approval.type == "human"
        assert reviewed == ["good"]  # cached

    run(scenario)


def test_stream_answers_in_order_and_survives_bad_messages() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        call = channel.stream_stream("/joch.v1.PolicyService/DecideStream")(metadata=AUTH)
        tools = ["shell.exec", "zendesk.search"] * 50
        for index, tool in enumerate(tools):
            await call.write(
                policy_service_pb2.DecideRequest(
                    context=context(tool=tool), request_id=str(index)
                ).SerializeToString()
            )
            if index == 10:
                await call.write(b"\xff\xff\xff")  # garbage
                bad = struct_pb2.Struct()
                bad.update({"agent": {"name": 7}})
                await call.write(
                    policy_service_pb2.DecideRequest(context_json=bad, request_id="bad").SerializeToString()
                )
        await call.done_writing()
        answers = [policy_service_pb2.DecideResponse.FromString(raw) async for raw in call]
        errors = [a for a in answers if a.HasField("error")]
        assert [e.error.code for e in errors] == ["InvalidRequest", "InvalidRequest"]
        assert errors[1].request_id == "bad"
        assert [e.field for e in errors[1].error.errors] == ["context.agent.name"]
        decided = [a for a in answers if not a.HasField("error")]
        assert [a.request_id for a in decided] == [str(i) for i in range(len(tools))]
        effects = [a.decision.decision for a in decided]
        assert effects == [decision_pb2.EFFECT_DENY, decision_pb2.EFFECT_ALLOW] * 50

    run(scenario)


def deep(levels: int) -> bytes:
    """A DecideRequest whose context_json payload nests ``levels`` objects."""
    nested: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels):
        nested = {"n": nested}
    message = policy_service_pb2.DecideRequest()
    message.context_json.update({"agent": {"name": "triage", "namespace": "support"}, "payload": nested})
    return message.SerializeToString()


def test_hostile_messages_answer_invalid_argument_and_the_server_keeps_serving() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        decide = channel.unary_unary("/joch.v1.PolicyService/Decide")
        bad = struct_pb2.Struct()
        bad.update({"agent": {"labels": {"team": 1}}, "tools": []})
        hostile = [
            deep(80),  # nested deeper than the decision service takes (64)
            deep(300),  # deeper than protobuf parses (its recursion limit)
            b"\xff\xff\xff",
            b"\x08\x01",  # context as a varint: wrong wire type
            policy_service_pb2.DecideRequest(context=context()).SerializeToString() + b"\xa2\x06\x01x",
            policy_service_pb2.DecideRequest(context_json=bad).SerializeToString(),
            b"",  # no context
        ]
        for raw in hostile:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await decide(raw, metadata=AUTH)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raw
            code, details = trailers_of(caught.value)
            assert code == "InvalidRequest"
            info = error_details_pb2.ErrorInfo()
            assert details.details[0].Unpack(info)
            assert (info.reason, info.domain) == ("InvalidRequest", "joch.dev")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await decide(
                policy_service_pb2.DecideRequest(context_json=bad).SerializeToString(), metadata=AUTH
            )
        _, details = trailers_of(caught.value)
        fields = error_details_pb2.BadRequest()
        assert details.details[1].Unpack(fields)
        assert {v.field for v in fields.field_violations} == {"context.agent.labels.team", "context.tools"}
        big = context()
        big.payload.string_value = "x" * (65 * 1024)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await decide(policy_service_pb2.DecideRequest(context=big).SerializeToString(), metadata=AUTH)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await decide(
            policy_service_pb2.DecideRequest(context=context()).SerializeToString(), metadata=AUTH
        )
        assert policy_service_pb2.DecideResponse.FromString(ok).decision.decision == decision_pb2.EFFECT_ALLOW

    run(scenario)


def test_authentication_and_allowed_subjects() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
        request = policy_service_pb2.DecideRequest(context=context())
        cases = [
            ((), grpc.StatusCode.UNAUTHENTICATED, "Unauthorized"),
            ((("authorization", "Basic Zm9v"),), grpc.StatusCode.UNAUTHENTICATED, "Unauthorized"),
            ((("authorization", "Bearer nope"),), grpc.StatusCode.UNAUTHENTICATED, "Unauthorized"),
            ((("authorization", "Bearer other"),), grpc.StatusCode.PERMISSION_DENIED, "Forbidden"),
        ]
        for metadata, status, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Decide(request, metadata=metadata)
            assert caught.value.code() == status, metadata
            assert trailers_of(caught.value)[0] == code
        call = stub.DecideStream(metadata=())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)  # no credentials needed
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(metadata=AUTH)
        await reflect.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await reflect.read()
        await reflect.done_writing()
        names = {s.name for s in listed.list_services_response.service}
        assert {
            "joch.v1.PolicyService",
            "envoy.service.auth.v3.Authorization",
            "grpc.health.v1.Health",
        } <= names
        text = metrics.render().decode()
        assert (
            'joch_grpc_requests_total{code="UNAUTHENTICATED",method="/joch.v1.PolicyService/Decide"}' in text
        )

    run(scenario)


def test_not_ready_until_primed() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service="joch.v1.PolicyService"))
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Decide(policy_service_pb2.DecideRequest(context=context()), metadata=AUTH)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert trailers_of(caught.value)[0] == "NotReady"
        server.service.load([f.policy()], [])
        for _ in range(100):
            answer = await health.Check(health_pb2.HealthCheckRequest(service="joch.v1.PolicyService"))
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.02)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    run(scenario, ready=False)


def check_request(
    headers: dict[str, str], metadata: dict[str, Any] | None = None
) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter sends it (lower-case headers, pseudo-headers too)."""
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method = "POST"
    http.path = "/mcp"
    http.host = "tools.internal"
    http.headers.update({":method": "POST", ":path": "/mcp", ":authority": "tools.internal", **headers})
    request.attributes.source.address.socket_address.address = "10.0.0.7"
    if metadata is not None:
        request.attributes.metadata_context.filter_metadata["joch"].update(metadata)
    return request


AGENT = {"x-joch-agent": "triage", "x-joch-agent-namespace": "support"}


def test_ext_authz_check() -> None:
    async def scenario(channel: grpc.aio.Channel, server: GrpcServer, reviewed: list[str]) -> None:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        allowed = await stub.Check(check_request({**AGENT, "x-joch-tool": "zendesk.search"}), metadata=AUTH)
        assert allowed.status.code == 0
        assert {h.header.key: h.header.value for h in allowed.ok_response.headers} == {
            "x-joch-decision": "allow"
        }
        denied = await stub.Check(check_request({**AGENT, "x-joch-tool": "shell.exec"}), metadata=AUTH)
        assert denied.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert denied.denied_response.status.code == 403
        headers = {h.header.key: h.header.value for h in denied.denied_response.headers}
        assert headers["x-joch-policy-id"] == "caps"
        assert headers["x-joch-policy-version"] == "v1"
        assert json.loads(denied.denied_response.body)["reason"] == "no shell"
        # Metadata from an earlier filter wins over the headers.
        by_metadata = await stub.Check(
            check_request({**AGENT, "x-joch-tool": "zendesk.search"}, {"tool": {"name": "shell.exec"}}),
            metadata=AUTH,
        )
        assert by_metadata.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        approval = await stub.Check(check_request({**AGENT, "x-joch-tool": "wire.transfer"}), metadata=AUTH)
        assert approval.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert approval.denied_response.status.code == 428
        headers = {h.header.key: h.header.value for h in approval.denied_response.headers}
        assert headers[ext_authz.APPROVAL_HEADER].startswith("triage-")  # the Approval to create
        assert json.loads(approval.denied_response.body)["approval"]["kind"] == "Approval"
        unbuilt = await stub.Check(check_request({"x-joch-tool": "zendesk.search"}), metadata=AUTH)
        assert unbuilt.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert json.loads(unbuilt.denied_response.body)["error"]["code"] == "InvalidRequest"
        wrong = await stub.Check(check_request(AGENT, {"cost": {"runUsd": "lots"}}), metadata=AUTH)
        assert wrong.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")(
                b"\xff\xff", metadata=AUTH
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Check(check_request(AGENT))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    settings = GrpcSettings(
        host="127.0.0.1", port=0, ext_authz=ext_authz.ExtAuthzSettings(approval_status=428)
    )
    run(scenario, settings=settings)


def test_ext_authz_header_names_are_settings() -> None:
    settings = ext_authz.ExtAuthzSettings().with_headers({"agent": "X-Agent-Name"})
    built = ext_authz.context_of(
        check_request({"x-agent-name": "triage", "x-joch-agent-namespace": "support"}), settings
    )
    assert built["agent"] == {"name": "triage", "namespace": "support"}
    with pytest.raises(ValueError, match="unknown ext_authz header fields"):
        ext_authz.ExtAuthzSettings(headers={"agnt": "x"})
