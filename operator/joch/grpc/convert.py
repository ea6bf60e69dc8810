"""joch.v1 messages <-> the JSON shapes of the decision service (pure functions).

A :class:`DecideRequest` becomes the same dict as the body of ``POST /v1/policy/evaluate`` and is then
parsed and checked by :func:`joch.decision_service.requests.parse_request`, so gRPC and HTTP accept and
reject exactly the same requests:

- the typed ``context`` (``DecisionContext``) maps field by field onto the context's JSON keys (the
  proto3 JSON names: ``mcp_server`` -> ``mcpServer``, ``run_usd`` -> ``runUsd``); a field that is not
  set is absent; ``google.protobuf.Value`` fields (framework, tenant, payload) become plain JSON values;
- ``context_json`` (a Struct) is the JSON context itself;
- ``policies`` become ``{"name", "namespace"?}`` objects; ``preflight`` a boolean.

Hostile messages: unknown fields anywhere in a joch.v1 message (which also catches a known field sent
with the wrong wire type), nesting deeper than :data:`~joch.decision_service.requests.MAX_DEPTH`, and
NaN or infinite numbers (not JSON) are problems of a :class:`~joch.decision_service.requests.RequestError`,
like every shape problem of the context.

:func:`decision_message` is the other way: a Decision (and what the budget step adds) as a
``DecideResponse``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import message, struct_pb2, unknown_fields

from joch.decision_service import requests
from joch.domain.policy.decision import Decision
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2

__all__ = [
    "EFFECTS",
    "decide_request_body",
    "decision_message",
    "parse_decide_request",
    "struct_to_dict",
    "to_value",
    "value_to_python",
]

EFFECTS: Final = {
    "allow": decision_pb2.EFFECT_ALLOW,
    "deny": decision_pb2.EFFECT_DENY,
    "modify": decision_pb2.EFFECT_MODIFY,
}
_VALUE: Final = struct_pb2.Value.DESCRIPTOR.full_name
_OWN_PACKAGE: Final = "joch.v1."


def parse_decide_request(raw: bytes) -> requests.EvaluateRequest:
    """The request in the serialized ``DecideRequest`` ``raw``; raises RequestError for any problem
    (a message that does not parse, unknown fields, the problems parse_request finds)."""
    try:
        request = policy_service_pb2.DecideRequest.FromString(raw)
    except (message.DecodeError, RecursionError) as exc:
        raise requests.RequestError(
            [requests.Problem("(message)", f"not a joch.v1.DecideRequest: {exc}")]
        ) from None
    return requests.parse_request(decide_request_body(request))


def decide_request_body(request: policy_service_pb2.DecideRequest) -> dict[str, Any]:
    """The HTTP body equivalent to ``request``; raises RequestError for unknown fields, NaN and depth."""
    problems: list[requests.Problem] = []
    _unknown(request, "(message)", problems)
    body: dict[str, Any] = {}
    which = request.WhichOneof("context_kind")
    if which == "context":
        body["context"] = _message_dict(request.context, "context", problems)
    elif which == "context_json":
        body["context"] = struct_to_dict(request.context_json, "context", problems)
    if request.policies:
        body["policies"] = [
            {"name": ref.name, "namespace": ref.namespace} if ref.namespace else {"name": ref.name}
            for ref in request.policies
        ]
    if request.preflight:
        body["preflight"] = True
    if problems:
        raise requests.RequestError(list(problems))
    return body


def _unknown(root: message.Message, where: str, problems: list[requests.Problem]) -> None:
    """Unknown fields in ``root`` or any joch.v1 message below it (iterative)."""
    stack: list[tuple[message.Message, str]] = [(root, where)]
    while stack:
        msg, path = stack.pop()
        found = unknown_fields.UnknownFieldSet(msg)
        if len(found):
            numbers = sorted({found[index].field_number for index in range(len(found))})
            problems.append(
                requests.Problem(path, f"unknown fields (numbers {', '.join(map(str, numbers[:10]))})")
            )
        for field, value in msg.ListFields():
            child = field.message_type
            if child is None or not child.full_name.startswith(_OWN_PACKAGE) or child.GetOptions().map_entry:
                continue
            name = f"{path}.{field.json_name}" if path != "(message)" else field.json_name
            if field.is_repeated:
                stack.extend((item, f"{name}[{index}]") for index, item in enumerate(value))
            else:
                stack.append((value, name))


def _message_dict(msg: message.Message, path: str, problems: list[requests.Problem]) -> dict[str, Any]:
    """A typed context message as JSON: set fields only, under their JSON names."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        key = field.json_name
        child = field.message_type
        if child is None:
            if field.is_repeated:
                out[key] = list(value)
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(requests.Problem(f"{path}.{key}", f"{value} is not a number of JSON"))
            else:
                out[key] = value
        elif child.GetOptions().map_entry:
            out[key] = dict(value)
        elif child.full_name == _VALUE:
            out[key] = value_to_python(value, f"{path}.{key}", problems)
        else:
            out[key] = _message_dict(value, f"{path}.{key}", problems)
    return out


def struct_to_dict(
    struct: struct_pb2.Struct, path: str = "(struct)", problems: list[requests.Problem] | None = None
) -> dict[str, Any]:
    """A Struct as a plain dict (numbers that are whole become ints, as JSON parsing would give)."""
    sink: list[requests.Problem] = [] if problems is None else problems
    return {key: value_to_python(item, f"{path}.{key}", sink, 2) for key, item in struct.fields.items()}


def value_to_python(  # noqa: PLR0911 - one return per kind of Value
    value: struct_pb2.Value, path: str, problems: list[requests.Problem], depth: int = 1
) -> Any:
    """A Value as plain JSON data; too deep or not finite -> a problem (and None in its place)."""
    if depth > requests.MAX_DEPTH:
        problems.append(requests.Problem(path, f"nested more than {requests.MAX_DEPTH} levels deep"))
        return None
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            problems.append(requests.Problem(path, f"{number} is not a number of JSON"))
            return None
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "struct_value":
        return {
            key: value_to_python(item, f"{path}.{key}", problems, depth + 1)
            for key, item in value.struct_value.fields.items()
        }
    if kind == "list_value":
        return [
            value_to_python(item, f"{path}[{index}]", problems, depth + 1)
            for index, item in enumerate(value.list_value.values)
        ]
    return None  # null_value, or no kind at all


def to_value(data: Any, out: struct_pb2.Value) -> None:
    """Fill ``out`` with plain JSON data (dicts, lists, strings, numbers, booleans, None)."""
    if data is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        out.bool_value = data
    elif isinstance(data, int | float):
        out.number_value = data
    elif isinstance(data, str):
        out.string_value = data
    elif isinstance(data, Mapping):
        out.struct_value.update({str(key): item for key, item in data.items()})
    elif isinstance(data, list | tuple):
        out.list_value.extend(list(data))
    else:
        out.string_value = str(data)


def decision_message(
    decision: Decision,
    extra: Mapping[str, Any] | None = None,
    *,
    request_id: str = "",
) -> policy_service_pb2.DecideResponse:
    """The DecideResponse of ``decision`` (and the budget step's ``reservation`` / ``budget``)."""
    response = policy_service_pb2.DecideResponse(request_id=request_id)
    out = response.decision
    out.decision = EFFECTS.get(decision.decision, decision_pb2.EFFECT_UNSPECIFIED)
    out.reason = decision.reason
    if decision.policy_id is not None:
        out.policy_id = decision.policy_id
    if decision.policy_namespace is not None:
        out.policy_namespace = decision.policy_namespace
    if decision.policy_version is not None:
        out.policy_version = decision.policy_version
    if decision.rule is not None:
        out.rule = decision.rule
    if decision.modified_request is not None:
        to_value(decision.modified_request, out.modified_request)
    out.redaction_rules.extend(decision.redaction_rules)
    approval = (decision.requires or {}).get("approval")
    if isinstance(approval, Mapping):
        target = out.requires.approval
        target.type = str(approval.get("type") or "")
        target.approvers.extend(str(a) for a in approval.get("approvers") or ())
        if isinstance(approval.get("timeoutMinutes"), int):
            target.timeout_minutes = approval["timeoutMinutes"]
        if isinstance(approval.get("onTimeout"), str):
            target.on_timeout = approval["onTimeout"]
        target.channels.extend(str(c) for c in approval.get("channels") or ())
        target.policy_id = str(approval.get("policyId") or "")
        target.policy_namespace = str(approval.get("policyNamespace") or "")
        if isinstance(approval.get("rule"), int):
            target.rule = approval["rule"]
    for item in decision.disabled_rules:
        rule = item.to_dict()
        out.disabled_rules.add(
            policy_id=rule["policyId"],
            policy_namespace=rule["policyNamespace"],
            rule=rule["rule"],
            until=rule["until"],
        )
    for key in ("reservation", "budget"):
        found = (extra or {}).get(key)
        if isinstance(found, Mapping):
            getattr(response, key).update(dict(found))
    return response
