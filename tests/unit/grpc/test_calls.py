"""joch.grpc.calls.parse: garbage and unknown fields (at any depth) are refused naming where; a valid
message in an unusual encoding is accepted."""

from __future__ import annotations

import grpc
import pytest

from joch.grpc import calls, errors
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2


def _request() -> policy_service_pb2.DecideRequest:
    message = policy_service_pb2.DecideRequest(request_id="r1")
    message.context.agent.name = "triage"
    return message


def test_an_unknown_field_deep_in_the_context_is_named() -> None:
    agent = decision_pb2.AgentFacts(name="triage").SerializeToString() + b"\xf8\x06\x01"  # field 111
    context = b"\x12" + bytes([len(agent)]) + agent  # DecisionContext.agent (2)
    raw = b"\x0a" + bytes([len(context)]) + context  # DecideRequest.context (1)
    with pytest.raises(errors.GrpcError) as caught:
        calls.parse(policy_service_pb2.DecideRequest, raw)
    assert caught.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.fields == (("context.agent.#111", "unknown field"),)
    kept = calls.parse(policy_service_pb2.DecideRequest, raw, allow_unknown=True)
    assert kept.context.agent.name == "triage"


def test_a_field_sent_twice_is_valid_protobuf_and_the_last_one_wins() -> None:
    raw = (
        _request().SerializeToString() + policy_service_pb2.DecideRequest(request_id="r2").SerializeToString()
    )
    parsed = calls.parse(policy_service_pb2.DecideRequest, raw)
    assert (parsed.request_id, parsed.context.agent.name) == ("r2", "triage")


@pytest.mark.parametrize(
    "raw", [b"\xff\xff\xff", b"\x08\x01", b"\x0a\x05ab"], ids=["garbage", "wire-type", "short"]
)
def test_what_does_not_parse_is_invalid_argument(raw: bytes) -> None:
    with pytest.raises(errors.GrpcError) as caught:
        calls.parse(policy_service_pb2.DecideRequest, raw)
    assert (caught.value.status, caught.value.code) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidRequest")
