"""Between the joch.v1 messages and the decision service's plain values.

- :func:`request_of`: a ``DecideRequest`` -> the decision service's ``EvaluateRequest``. The typed
  context becomes the JSON-shaped mapping the engine reads, key by key: a field's lowerCamelCase JSON
  name is the context key (``mcp_server.trust_score`` -> ``mcpServer.trustScore``); a field that is
  not set is absent; ``StringList`` wrappers become lists; ``google.protobuf.Value`` fields their JSON
  values. ``context_json`` is taken as it is. Either way the result then goes through
  :func:`joch.decision_service.requests.parse_request`, the very check of ``POST /v1/policy/evaluate``,
  so both faces refuse the same requests with the same field paths.
- :func:`decision_message`: a ``Decision`` (and the budget step's extras) -> a ``DecideResponse``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf import message as pb_message

from joch.decision_service import requests
from joch.domain.policy.decision import Decision
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2

__all__ = ["context_dict", "decision_message", "request_of"]

_EFFECTS: Final = {
    "allow": decision_pb2.EFFECT_ALLOW,
    "deny": decision_pb2.EFFECT_DENY,
    "modify": decision_pb2.EFFECT_MODIFY,
}
_VALUE: Final = "google.protobuf.Value"
_STRING_LIST: Final = "joch.v1.StringList"


def context_dict(message: pb_message.Message) -> dict[str, Any]:
    """The JSON-shaped mapping of a ``DecisionContext`` (or any of its parts): set fields only."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name = field.json_name
        kind = field.message_type
        if kind is None:
            out[name] = list(value) if field.is_repeated else value
        elif kind.GetOptions().map_entry:
            out[name] = dict(value)
        elif kind.full_name == _VALUE:
            out[name] = json_format.MessageToDict(value)
        elif kind.full_name == _STRING_LIST:
            out[name] = list(value.values)
        elif field.is_repeated:
            out[name] = [context_dict(item) for item in value]
        else:
            out[name] = context_dict(value)
    return out


def request_of(message: policy_service_pb2.DecideRequest) -> requests.EvaluateRequest:
    """The decision request of ``message``; raises requests.RequestError naming every problem."""
    which = message.WhichOneof("context_kind")
    body: dict[str, Any] = {}
    if which == "context":
        body["context"] = context_dict(message.context)
    elif which == "context_json":
        body["context"] = json_format.MessageToDict(message.context_json)
    if message.policies:
        body["policies"] = list(message.policies)
    if message.preflight:
        body["preflight"] = True
    return requests.parse_request(body)


def decision_message(
    decision: Decision, extra: Mapping[str, Any] | None, request_id: str
) -> policy_service_pb2.DecideResponse:
    """The response carrying ``decision`` (and a reservation or the Budget that denied, from ``extra``)."""
    answer = decision_pb2.Decision(decision=_EFFECTS[decision.decision], reason=decision.reason)
    if decision.policy_id is not None:
        answer.policy_id = decision.policy_id
    if decision.policy_namespace is not None:
        answer.policy_namespace = decision.policy_namespace
    if decision.policy_version is not None:
        answer.policy_version = decision.policy_version
    if decision.rule is not None:
        answer.rule = decision.rule
    if decision.modified_request is not None:
        answer.modified_request.CopyFrom(_value(decision.modified_request))
    answer.redaction_rules.extend(decision.redaction_rules)
    approval = (decision.requires or {}).get("approval")
    if isinstance(approval, Mapping):
        wanted = answer.requires.approval
        wanted.type = str(approval.get("type") or "human")
        wanted.approvers.extend(str(item) for item in approval.get("approvers") or ())
        if isinstance(approval.get("timeoutMinutes"), int):
            wanted.timeout_minutes = approval["timeoutMinutes"]
        if approval.get("onTimeout"):
            wanted.on_timeout = str(approval["onTimeout"])
        wanted.channels.extend(str(item) for item in approval.get("channels") or ())
    for disabled in decision.disabled_rules:
        until = timestamp_pb2.Timestamp()
        until.FromDatetime(disabled.until.astimezone(datetime.UTC))
        answer.disabled_rules.append(
            decision_pb2.DisabledRule(
                policy_id=disabled.policy_id,
                policy_namespace=disabled.policy_namespace,
                rule=disabled.rule,
                until=until,
            )
        )
    response = policy_service_pb2.DecideResponse(request_id=request_id, decision=answer)
    if extra:
        _extras(response, extra)
    return response


def _extras(response: policy_service_pb2.DecideResponse, extra: Mapping[str, Any]) -> None:
    reservation = extra.get("reservation")
    if isinstance(reservation, Mapping):
        response.reservation.id = str(reservation.get("id") or "")
        response.reservation.budgets.extend(_budget_name(item) for item in reservation.get("budgets") or ())
        amount = reservation.get("amountUsd")
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            response.reservation.amount_usd = float(amount)
        response.reservation.expires_at = str(reservation.get("expiresAt") or "")
    budget = extra.get("budget")
    if isinstance(budget, Mapping):
        response.budget.namespace = str(budget.get("namespace") or "")
        response.budget.name = str(budget.get("name") or "")


def _budget_name(item: Any) -> str:
    if isinstance(item, list | tuple) and len(item) == 2:
        return f"{item[0]}/{item[1]}"
    return str(item)


def _value(value: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(value, out)
    return out
