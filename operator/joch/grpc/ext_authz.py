"""Envoy's ``envoy.service.auth.v3.Authorization/Check`` over the decision service (docs/grpc-ext-authz.md).

A gateway (Envoy's ``envoy.filters.http.ext_authz``, agentgateway's ``extAuthz``) asks before it
forwards a request. :func:`context_of` builds the decision context of its ``CheckRequest``; the
server's ``decide`` step (readiness, policies, budgets) decides; :func:`check` answers a
``CheckResponse``.

The context, lowest precedence first (a later source wins, key by key):

1. ``payload``: ``{"method", "path", "host"}`` of the HTTP request (never its headers or body);
2. request headers, through ``ExtAuthzSettings.headers`` (field -> header, :data:`DEFAULT_HEADERS`);
3. ``attributes.context_extensions`` keyed by field name (:data:`FIELDS`; set per route by the
   gateway's own configuration); an unknown key is refused, as a typo would fail open;
4. ``attributes.metadata_context.filter_metadata[settings.metadata_namespace]``: a Struct shaped like
   the context itself (``{"tool": {"name": ...}, "cost": {"runUsd": ...}}``), from an earlier filter.

``hook`` defaults to ``settings.hook``. The result is checked as ``POST /v1/policy/evaluate`` checks
its body (joch.decision_service.requests), and ``agent.name`` and ``agent.namespace`` are required:
a context that cannot be built is refused (fail closed).

Answers (``status`` is the gRPC code Envoy reads; ``denied_response.status`` the HTTP status sent):

- allow: OK; ``x-joch-decision: allow``, the policy headers, the reservation headers;
- modify: OK; ``x-joch-decision: modify`` and ``x-joch-redaction-rules``;
- deny: PERMISSION_DENIED, HTTP 403; ``x-joch-decision: deny``, the policy headers, the Decision as
  JSON;
- approval required: PERMISSION_DENIED, HTTP ``approval_status``; ``x-joch-decision:
  approval-required``, ``approval_header`` naming the Approval, the Decision and the Approval template;
- no usable context: PERMISSION_DENIED, HTTP 403; ``x-joch-decision: deny``, ``x-joch-error-code``,
  the catalog's error body (``details.errors``).

Policy headers: ``x-joch-policy-id``, ``x-joch-policy-namespace``, ``x-joch-policy-version``.
Reservation headers (from the budget step): ``x-joch-reservation-id``, ``x-joch-reservation-expires``,
``x-joch-budget`` (the Budgets, ``ns/name`` comma-separated; on a BudgetExceeded deny, the one at
fault). On OK every ``x-joch-*`` answer header is overwritten or removed, so a client cannot forge
one upstream. ext_authz cannot rewrite bodies: a modify passes the request on unchanged.

Approvals. The name is deterministic (:func:`approval_name`): the gateway creates that Approval (the
body's template) and retries with the same ``x-request-id``. With an ``approvals`` lookup (the
Approval's object by namespace and name), a retry whose Approval matches the call and is approved
(Approved, Overridden, or Expired with decision approve) is answered as the decision says; a rejected
or expired one denies; a pending or missing one asks again. Without a request id no Approval is
honoured: it could not tell one call from the next.

A GrpcError from ``decide`` (NotReady, Unavailable) propagates: the server ends the call with it and
Envoy, with ``failure_mode_allow: false``, denies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import json_format, struct_pb2
from google.rpc import code_pb2, status_pb2

from joch.api.errors import error_body
from joch.decision_service import requests
from joch.domain.policy import composition
from joch.domain.policy.decision import Decision

__all__ = [
    "ANSWER_HEADERS",
    "APPROVAL_HEADER",
    "DEFAULT_HEADERS",
    "FIELDS",
    "Approvals",
    "Decide",
    "ExtAuthzSettings",
    "approval_name",
    "check",
    "context_of",
]

FIELDS: Final = (
    "agent",
    "agent-namespace",
    "tool",
    "environment",
    "mcp-server",
    "model-provider",
    "model",
    "execution",
    "hook",
)
"""What a header or a context extension can set; :data:`_PATHS` says where in the context."""

_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "agent": ("agent", "name"),
    "agent-namespace": ("agent", "namespace"),
    "tool": ("tool", "name"),
    "environment": ("environment", "name"),
    "mcp-server": ("mcpServer", "name"),
    "model-provider": ("model", "provider"),
    "model": ("model", "name"),
    "execution": ("execution", "name"),
    "hook": ("hook",),
}

DEFAULT_HEADERS: Final[Mapping[str, str]] = types.MappingProxyType({f: f"x-joch-{f}" for f in FIELDS})
APPROVAL_HEADER: Final = "x-joch-approval"

DECISION_HEADER: Final = "x-joch-decision"
POLICY_ID_HEADER: Final = "x-joch-policy-id"
POLICY_NAMESPACE_HEADER: Final = "x-joch-policy-namespace"
POLICY_VERSION_HEADER: Final = "x-joch-policy-version"
REDACTION_HEADER: Final = "x-joch-redaction-rules"
RESERVATION_HEADER: Final = "x-joch-reservation-id"
RESERVATION_EXPIRES_HEADER: Final = "x-joch-reservation-expires"
BUDGET_HEADER: Final = "x-joch-budget"
ERROR_CODE_HEADER: Final = "x-joch-error-code"
ANSWER_HEADERS: Final = (
    DECISION_HEADER,
    POLICY_ID_HEADER,
    POLICY_NAMESPACE_HEADER,
    POLICY_VERSION_HEADER,
    REDACTION_HEADER,
    RESERVATION_HEADER,
    RESERVATION_EXPIRES_HEADER,
    BUDGET_HEADER,
)
"""The headers :func:`check` answers with (plus ``settings.approval_header``); on OK the ones not set
are removed from the forwarded request."""

APPROVAL_REQUIRED: Final = "approval-required"
"""``x-joch-decision`` of an answer that waits for an Approval (ext_authz's own value)."""

_REQUEST_ID_HEADER: Final = "x-request-id"
_APPROVED: Final = frozenset({"Approved", "Overridden"})
_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NOT_NAME_CHARS: Final = re.compile(r"[^a-z0-9-]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_MAX_HEADER_VALUE: Final = 4096
_MAX_SUMMARY: Final = 4096

Decide = Callable[[requests.EvaluateRequest], Awaitable[tuple[Decision, Mapping[str, Any] | None]]]
"""The server's decide step: the Decision and what goes with it (``reservation`` or ``budget``);
raises joch.grpc.errors.GrpcError (e.g. UNAVAILABLE with code NotReady)."""

Approvals = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
"""(namespace, name) -> the Approval object (``spec``, ``status``), or None when there is none."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExtAuthzSettings:
    """How CheckRequests are read and answered (module docstring).

    ``headers`` maps a field of :data:`FIELDS` to the request header it is read from (lower-cased
    here); an empty header name turns the field's header off (e.g. when identity must come from
    metadata only). ``approval_status`` is the HTTP status of "approval required" (100..599).
    """

    headers: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_HEADERS))
    metadata_namespace: str = "joch"
    approval_status: int = 403
    approval_header: str = APPROVAL_HEADER
    hook: str = "toolCallRequest"

    def __post_init__(self) -> None:
        unknown = sorted(str(field) for field in self.headers if field not in _PATHS)
        if unknown:
            raise ValueError(
                f"unknown ext_authz header fields: {', '.join(unknown)} (known: {', '.join(FIELDS)})"
            )
        for field, header in self.headers.items():
            if not isinstance(header, str) or header != header.strip() or _CONTROL.search(header):
                raise ValueError(f"ext_authz header of {field}: {header!r} is not a header name")
        headers = {field: header.lower() for field, header in self.headers.items() if header}
        object.__setattr__(self, "headers", types.MappingProxyType(headers))
        if isinstance(self.approval_status, bool) or not isinstance(self.approval_status, int):
            raise ValueError(
                f"ext_authz approval_status must be an HTTP status, not {self.approval_status!r}"
            )
        if not 100 <= self.approval_status <= 599:
            raise ValueError(f"ext_authz approval_status must be 100..599, not {self.approval_status}")
        if not self.approval_header or self.approval_header != self.approval_header.strip():
            raise ValueError(f"ext_authz approval_header {self.approval_header!r} is not a header name")
        object.__setattr__(self, "approval_header", self.approval_header.lower())
        if not self.metadata_namespace:
            raise ValueError("ext_authz metadata_namespace must not be empty")
        if not self.hook:
            raise ValueError("ext_authz hook must not be empty")

    def with_headers(self, overrides: Mapping[str, str]) -> ExtAuthzSettings:
        """These settings with some fields read from other headers (``""``: not from a header)."""
        merged = {**self.headers, **overrides}
        return dataclasses.replace(self, headers=merged)


# --- the context ---------------------------------------------------------------------------------------


def context_of(request: external_auth_pb2.CheckRequest, settings: ExtAuthzSettings) -> dict[str, Any]:
    """The decision context of a CheckRequest; raises joch.decision_service.requests.RequestError."""
    return dict(_evaluate_request(request, settings).context)


def _evaluate_request(
    request: external_auth_pb2.CheckRequest, settings: ExtAuthzSettings
) -> requests.EvaluateRequest:
    attributes = request.attributes
    http = attributes.request.http
    problems: list[requests.Problem] = []
    context: dict[str, Any] = {}
    payload = {
        key: value
        for key, value in (("method", http.method), ("path", http.path), ("host", http.host))
        if value
    }
    if payload:
        context["payload"] = payload
    headers = _headers(http)
    for field, header in settings.headers.items():
        value = headers.get(header)
        if value:
            _put(context, _PATHS[field], value)
    for key, value in sorted(attributes.context_extensions.items()):
        path = _PATHS.get(key)
        if path is None:
            problems.append(
                requests.Problem(f"contextExtensions.{key}", f"unknown field (known: {', '.join(FIELDS)})")
            )
        elif value:
            _put(context, path, value)
    metadata = attributes.metadata_context.filter_metadata.get(settings.metadata_namespace)
    if metadata is not None:
        context = composition.deep_merge(context, json_format.MessageToDict(metadata))
    if context.get("hook") is None:
        context["hook"] = settings.hook
    try:
        parsed: requests.EvaluateRequest | None = requests.parse_request({"context": context})
    except requests.RequestError as exc:
        problems.extend(exc.problems)
        parsed = None
    agent = context.get("agent")
    agent = agent if isinstance(agent, dict) else {}
    for key, field in (("name", "agent"), ("namespace", "agent-namespace")):
        if agent.get(key) is None or agent.get(key) == "":
            where = settings.headers.get(field)
            source = f"header {where}, " if where else ""
            problems.append(
                requests.Problem(
                    f"context.agent.{key}",
                    f"required: set by {source}context extension {field} or metadata "
                    f"{settings.metadata_namespace}.agent.{key}",
                )
            )
    if problems:
        raise requests.RequestError(problems)
    assert parsed is not None
    return parsed


def _headers(http: Any) -> dict[str, str]:
    """The request's headers, lower-case keys; ``headers`` first, then ``header_map`` (raw values)."""
    out = {str(key).lower(): str(value) for key, value in http.headers.items()}
    for item in http.header_map.headers:
        value = item.value or item.raw_value.decode("utf-8", "replace")
        out.setdefault(item.key.lower(), value)
    return out


def _put(context: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = context
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


# --- the answer -----------------------------------------------------------------------------------------


async def check(
    request: external_auth_pb2.CheckRequest,
    decide: Decide,
    settings: ExtAuthzSettings,
    *,
    approvals: Approvals | None = None,
) -> external_auth_pb2.CheckResponse:
    """The answer to one Check (module docstring); a GrpcError from ``decide`` propagates."""
    try:
        evaluate = _evaluate_request(request, settings)
    except requests.RequestError as exc:
        return _refused(exc)
    decision, extra = await decide(evaluate)
    if decision.denied:
        return _denied(decision, extra, 403, decision.to_dict())
    if not decision.requires_approval:
        return _ok(decision, extra, settings)
    context = evaluate.context
    request_id = _request_id(request)
    name = approval_name(context, decision, request_id)
    template = approval_template(name, context, decision)
    found = await approvals(template["metadata"]["namespace"], name) if approvals and request_id else None
    state, why = _approval_state(found, template)
    if state == "approved":
        return _ok(decision, extra, settings, approval=(settings.approval_header, name))
    if state == "refused":
        refused = dataclasses.replace(decision, decision="deny", reason=why, requires=None)
        return _denied(
            refused,
            extra,
            403,
            {**refused.to_dict(), "approval": template},
            approval=(settings.approval_header, name),
        )
    body = {**decision.to_dict(), "approval": template}
    return _denied(
        decision,
        extra,
        settings.approval_status,
        body,
        label=APPROVAL_REQUIRED,
        approval=(settings.approval_header, name),
    )


def approval_name(context: Mapping[str, Any], decision: Decision, request_id: str) -> str:
    """``<agent>-<12 hex>``: the Approval a call waits for, the same for the same agent, tool, deciding
    policy and rule, and request id."""
    agent = context.get("agent") or {}
    tool = context.get("tool") or {}
    policy_namespace, policy_id, rule = _guardian(decision)
    facts = [agent.get("namespace"), agent.get("name"), tool.get("name"), policy_namespace, policy_id, rule]
    digest = hashlib.sha256(json.dumps([*facts, request_id], default=str).encode()).hexdigest()[:12]
    prefix = _NOT_NAME_CHARS.sub("-", str(agent.get("name") or "").lower()).strip("-")[:48].strip("-")
    return f"{prefix or 'call'}-{digest}"


def approval_template(name: str, context: Mapping[str, Any], decision: Decision) -> dict[str, Any]:
    """The Approval the gateway creates (``POST /v1/resources/apply``) for a call that needs one."""
    agent = context.get("agent") or {}
    tool = (context.get("tool") or {}).get("name")
    execution = (context.get("execution") or {}).get("name")
    payload = context.get("payload")
    asked = dict((decision.requires or {}).get("approval") or {})
    policy_namespace, policy_id, _ = _guardian(decision)
    requested_by: dict[str, Any] = {"agentRef": {"name": agent.get("name")}}
    if execution:
        requested_by["executionRef"] = {"name": execution}
    action: dict[str, Any] = {"type": "tool_call", "toolCallRef": {"name": name}}
    if isinstance(tool, str) and _NAME.fullmatch(tool) and len(tool) <= 253:
        action["tool"] = tool
    if isinstance(payload, Mapping):
        summary = " ".join(str(payload[key]) for key in ("method", "host", "path") if payload.get(key))
        shown = f"{summary} (tool {tool})" if tool else summary
        if shown:
            action["inputSummary"] = shown[:_MAX_SUMMARY]
    routing: dict[str, Any] = {}
    if asked.get("approvers"):
        routing["approvers"] = list(asked["approvers"])
    if asked.get("timeoutMinutes") is not None:
        routing["timeoutMinutes"] = asked["timeoutMinutes"]
    if asked.get("onTimeout") is not None:
        routing["onTimeout"] = "approve" if asked["onTimeout"] == "allow" else asked["onTimeout"]
    spec: dict[str, Any] = {"requestedBy": requested_by, "action": action}
    if policy_id:
        spec["policyRef"] = {
            "name": policy_id,
            **({"namespace": policy_namespace} if policy_namespace else {}),
        }
    spec["routing"] = routing
    if asked.get("channels"):
        spec["channels"] = list(asked["channels"])
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": agent.get("namespace")},
        "spec": spec,
    }


def _guardian(decision: Decision) -> tuple[str | None, str | None, Any]:
    """(policy namespace, policy id, rule) of the rule that asked for the approval."""
    asked = (decision.requires or {}).get("approval") or {}
    return (
        asked.get("policyNamespace", decision.policy_namespace),
        asked.get("policyId", decision.policy_id),
        asked.get("rule", decision.rule),
    )


def _request_id(request: external_auth_pb2.CheckRequest) -> str:
    http = request.attributes.request.http
    return _headers(http).get(_REQUEST_ID_HEADER) or http.id


_MATCHED: Final = (
    ("action", "type"),
    ("action", "tool"),
    ("action", "toolCallRef"),
    ("requestedBy", "agentRef"),
    ("policyRef",),
)


def _approval_state(found: Mapping[str, Any] | None, template: Mapping[str, Any]) -> tuple[str, str]:
    """``("approved" | "refused" | "pending", why)``: what the Approval ``found`` says about the call
    of ``template`` (an Approval of that name made for another call refuses: it cannot be replaced)."""
    where = f"Approval {template['metadata']['namespace']}/{template['metadata']['name']}"
    if found is None:
        return "pending", f"{where} does not exist yet"
    spec = _mapping(found.get("spec"))
    wanted = template["spec"]
    for path in _MATCHED:
        if _dig(spec, path) != _dig(wanted, path):
            return "refused", f"{where} was made for another call (spec.{'.'.join(path)} differs)"
    approvers = sorted(map(str, _dig(spec, ("routing", "approvers")) or []))
    if approvers != sorted(map(str, _dig(wanted, ("routing", "approvers")) or [])):
        return "refused", f"{where} was made for another call (spec.routing.approvers differs)"
    status = _mapping(found.get("status"))
    phase, answer = status.get("phase"), status.get("decision")
    if phase in _APPROVED or (phase == "Expired" and answer == "approve"):
        return "approved", f"{where} is {phase}"
    if phase in ("Rejected", "Expired"):
        by = f" by {status.get('decidedBy')}" if status.get("decidedBy") else ""
        return "refused", f"{where} is {phase}{by}"
    return "pending", f"{where} is {phase or 'not decided yet'}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


# --- responses ------------------------------------------------------------------------------------------


def _ok(
    decision: Decision,
    extra: Mapping[str, Any] | None,
    settings: ExtAuthzSettings,
    *,
    approval: tuple[str, str] | None = None,
) -> external_auth_pb2.CheckResponse:
    headers = _decision_headers(decision, decision.decision) + _extra_headers(extra)
    if decision.decision == "modify" and decision.redaction_rules:
        headers.append((REDACTION_HEADER, ",".join(decision.redaction_rules)))
    if approval is not None:
        headers.append(approval)
    answered = {key for key, _ in headers}
    removed = [key for key in (*ANSWER_HEADERS, settings.approval_header) if key not in answered]
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(headers=_options(headers), headers_to_remove=removed),
        dynamic_metadata=_metadata(decision, extra, approval),
    )


def _denied(
    decision: Decision,
    extra: Mapping[str, Any] | None,
    http_status: int,
    body: Mapping[str, Any],
    *,
    label: str | None = None,
    approval: tuple[str, str] | None = None,
) -> external_auth_pb2.CheckResponse:
    headers = _decision_headers(decision, label or decision.decision) + _extra_headers(extra)
    if approval is not None:
        headers.append(approval)
    headers.append(("content-type", "application/json"))
    full = {**body, **{key: value for key, value in (extra or {}).items() if key not in body}}
    return _deny_response(
        http_status, headers, full, decision.reason, _metadata(decision, extra, approval, label=label)
    )


def _refused(exc: requests.RequestError) -> external_auth_pb2.CheckResponse:
    message = f"the request carries no usable decision context: {exc}"
    body = error_body("InvalidRequest", message, {"errors": [p.to_dict() for p in exc.problems]})
    headers = [
        (DECISION_HEADER, "deny"),
        (ERROR_CODE_HEADER, "InvalidRequest"),
        ("content-type", "application/json"),
    ]
    metadata = struct_pb2.Struct()
    metadata.update({"decision": "deny", "errorCode": "InvalidRequest"})
    return _deny_response(403, headers, body, message, metadata)


def _deny_response(
    http_status: int,
    headers: list[tuple[str, str]],
    body: Mapping[str, Any],
    message: str,
    metadata: struct_pb2.Struct,
) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=_header_value(message)),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=http_status),
            headers=_options(headers),
            body=json.dumps(body, separators=(",", ":"), sort_keys=True, default=str),
        ),
        dynamic_metadata=metadata,
    )


def _decision_headers(decision: Decision, label: str) -> list[tuple[str, str]]:
    headers = [(DECISION_HEADER, label)]
    for header, value in (
        (POLICY_ID_HEADER, decision.policy_id),
        (POLICY_NAMESPACE_HEADER, decision.policy_namespace),
        (POLICY_VERSION_HEADER, decision.policy_version),
    ):
        if value:
            headers.append((header, value))
    return headers


def _extra_headers(extra: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Headers of the budget step's extras: a ``reservation`` (allow) or the ``budget`` (a deny)."""
    headers: list[tuple[str, str]] = []
    reservation = (extra or {}).get("reservation")
    if isinstance(reservation, Mapping):
        if reservation.get("id"):
            headers.append((RESERVATION_HEADER, str(reservation["id"])))
        if reservation.get("expiresAt"):
            headers.append((RESERVATION_EXPIRES_HEADER, str(reservation["expiresAt"])))
        budgets = reservation.get("budgets")
        if isinstance(budgets, list | tuple) and budgets:
            headers.append((BUDGET_HEADER, ",".join(str(b) for b in budgets)))
    budget = (extra or {}).get("budget")
    if isinstance(budget, Mapping) and budget.get("name"):
        namespace = budget.get("namespace")
        headers.append((BUDGET_HEADER, f"{namespace}/{budget['name']}" if namespace else str(budget["name"])))
    return headers


def _options(headers: list[tuple[str, str]]) -> list[base_pb2.HeaderValueOption]:
    """Each header set, overwriting whatever the client sent under that name."""
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value=_header_value(value)),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for key, value in headers
    ]


def _header_value(value: str) -> str:
    """``value`` safe for a header: control characters replaced, at most 4 KiB."""
    return _CONTROL.sub(" ", value)[:_MAX_HEADER_VALUE]


def _metadata(
    decision: Decision,
    extra: Mapping[str, Any] | None,
    approval: tuple[str, str] | None,
    *,
    label: str | None = None,
) -> struct_pb2.Struct:
    """The dynamic metadata Envoy keeps for access logs and later filters (under the filter's name)."""
    facts: dict[str, Any] = {"decision": label or decision.decision}
    for key, value in (
        ("policyId", decision.policy_id),
        ("policyNamespace", decision.policy_namespace),
        ("policyVersion", decision.policy_version),
        ("rule", decision.rule),
    ):
        if value is not None:
            facts[key] = value
    if approval is not None:
        facts["approval"] = approval[1]
    reservation = (extra or {}).get("reservation")
    if isinstance(reservation, Mapping) and reservation.get("id"):
        facts["reservationId"] = str(reservation["id"])
    metadata = struct_pb2.Struct()
    metadata.update(facts)
    return metadata
