"""Envoy's external authorization (``envoy.service.auth.v3.Authorization/Check``) as policy decisions.

A gateway in front of a tool or an MCP server (Envoy, Envoy Gateway, Istio, agentgateway) sends a
``CheckRequest`` for every call; :func:`context_of` turns it into a decision context and
:func:`check_response` the Decision into the ``CheckResponse``:

=====================  ==========================================================================
context field          read from (first found)
=====================  ==========================================================================
agent.name             ``metadata_context.filter_metadata["joch"].agent.name``; header ``x-joch-agent``
agent.namespace        ... ``.agent.namespace``; header ``x-joch-agent-namespace``
tool.name              ... ``.tool.name``; header ``x-joch-tool``
environment.name       ... ``.environment.name``; header ``x-joch-environment``
mcpServer.name         ... ``.mcpServer.name``; header ``x-joch-mcp-server``
hook                   ... ``.hook``; else ``toolCallRequest``
=====================  ==========================================================================

The header names are settings (:class:`ExtAuthzSettings`, ``joch operator --ext-authz-header
FIELD=HEADER``). The ``joch`` filter metadata (written by an earlier filter, e.g. from a verified JWT)
may carry any part of a decision context, in its JSON shape; it wins over headers field by field.

Answers:

- allow (or modify: the gateway cannot redact a payload it did not send, so the call goes on) -> status
  OK, ``ok_response`` headers ``x-joch-decision`` and, when a policy decided, ``x-joch-policy-id``,
  ``x-joch-policy-namespace``, ``x-joch-policy-version``;
- deny -> status PERMISSION_DENIED, ``denied_response`` 403 with the Decision as a JSON body (its
  ``reason`` says why) and the same headers;
- allow that requires an approval -> status PERMISSION_DENIED, ``denied_response`` with the configured
  HTTP status (default 403), header ``x-joch-approval-required: NAMESPACE/POLICY/RULE`` naming the
  policy rule whose Approval the caller must obtain, and the Decision as the body;
- a context that cannot be built (no agent name or namespace, a value of the wrong shape) -> deny
  (fails closed), reason ``InvalidRequest: ...``.

Pure code: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from google.rpc import code_pb2

from joch.decision_service import requests
from joch.domain.policy.decision import Decision
from joch.grpc import convert

__all__ = [
    "APPROVAL_HEADER",
    "FIELDS",
    "ExtAuthzSettings",
    "check_response",
    "context_of",
    "denied",
]

APPROVAL_HEADER: Final = "x-joch-approval-required"
METADATA_NAMESPACE: Final = "joch"
FIELDS: Final = {
    "agent": ("agent", "name"),
    "agent-namespace": ("agent", "namespace"),
    "tool": ("tool", "name"),
    "environment": ("environment", "name"),
    "mcp-server": ("mcpServer", "name"),
}
"""The header-settable context fields, by setting name (``--ext-authz-header FIELD=HEADER``)."""
MAX_HEADER_VALUE: Final = 253
"""Longest header value taken as a name (a Kubernetes object name is at most 253 characters)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ExtAuthzSettings:
    """Where the agent, tool and environment come from, and how an approval is answered."""

    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {
            "agent": "x-joch-agent",
            "agent-namespace": "x-joch-agent-namespace",
            "tool": "x-joch-tool",
            "environment": "x-joch-environment",
            "mcp-server": "x-joch-mcp-server",
        }
    )
    """Context field (a key of FIELDS) -> request header (lower case)."""
    approval_status: int = 403
    """HTTP status of a call that needs an approval first."""
    hook: str = "toolCallRequest"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.headers) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown ext_authz header fields {unknown} (known: {', '.join(FIELDS)})")
        if not 200 <= self.approval_status <= 599:
            raise ValueError(f"the approval status must be an HTTP status, not {self.approval_status}")

    def with_headers(self, overrides: Mapping[str, str]) -> ExtAuthzSettings:
        return dataclasses.replace(
            self, headers={**self.headers, **{k: v.lower() for k, v in overrides.items()}}
        )


def _headers(request: external_auth_pb2.CheckRequest) -> dict[str, str]:
    http = request.attributes.request.http
    if http.headers:
        return {key.lower(): value for key, value in http.headers.items()}
    found: dict[str, str] = {}
    for header in http.header_map.headers:  # Envoy's encode_raw_headers form
        value = header.value or header.raw_value.decode("utf-8", "replace")
        found.setdefault(header.key.lower(), value)
    return found


def context_of(request: external_auth_pb2.CheckRequest, settings: ExtAuthzSettings) -> dict[str, Any]:
    """The decision context of a CheckRequest; raises RequestError when none can be built."""
    problems: list[requests.Problem] = []
    context: dict[str, Any] = {"hook": settings.hook}
    headers = _headers(request)
    for field, header in settings.headers.items():
        value = headers.get(header)
        if value is None or value == "":
            continue
        if len(value) > MAX_HEADER_VALUE:
            problems.append(
                requests.Problem(f"header {header}", f"longer than {MAX_HEADER_VALUE} characters")
            )
            continue
        part, key = FIELDS[field]
        context.setdefault(part, {})[key] = value
    metadata = request.attributes.metadata_context.filter_metadata
    if METADATA_NAMESPACE in metadata:
        fragment = convert.struct_to_dict(
            metadata[METADATA_NAMESPACE], f"metadata_context.filter_metadata.{METADATA_NAMESPACE}", problems
        )
        for key, value in fragment.items():
            if isinstance(value, dict) and isinstance(context.get(key), dict):
                context[key] = {**context[key], **value}
            else:
                context[key] = value
    agent = context.get("agent")
    for key, field in (("name", "agent"), ("namespace", "agent-namespace")):
        if not isinstance(agent, dict) or not agent.get(key):
            where = settings.headers.get(field, "(unset)")
            problems.append(
                requests.Problem(
                    f"context.agent.{key}", f"required: header {where} or metadata joch.agent.{key}"
                )
            )
    problems.extend(requests.check_context(context))
    if problems:
        raise requests.RequestError(problems)
    return context


def _header(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))


def _decision_headers(decision: Decision) -> list[base_pb2.HeaderValueOption]:
    out = [_header("x-joch-decision", decision.decision)]
    for key, value in (
        ("x-joch-policy-id", decision.policy_id),
        ("x-joch-policy-namespace", decision.policy_namespace),
        ("x-joch-policy-version", decision.policy_version),
    ):
        if value is not None:
            out.append(_header(key, value))
    return out


def check_response(decision: Decision, settings: ExtAuthzSettings) -> external_auth_pb2.CheckResponse:
    """The CheckResponse of a decision (see the module docstring)."""
    response = external_auth_pb2.CheckResponse()
    headers = _decision_headers(decision)
    approval = (decision.requires or {}).get("approval") if not decision.denied else None
    if approval is None and not decision.denied:
        response.status.code = code_pb2.OK
        response.ok_response.headers.extend(headers)
        return response
    response.status.code = code_pb2.PERMISSION_DENIED
    response.status.message = decision.reason
    denied_response = response.denied_response
    if approval is not None:
        where = (
            f"{approval.get('policyNamespace', '')}/{approval.get('policyId', '')}/{approval.get('rule', '')}"
        )
        headers.append(_header(APPROVAL_HEADER, where))
        denied_response.status.code = settings.approval_status
    else:
        denied_response.status.code = 403
    headers.append(_header("content-type", "application/json"))
    denied_response.headers.extend(headers)
    denied_response.body = json.dumps(decision.to_dict(), separators=(",", ":"))
    return response


def denied(code: str, message: str, *, http_status: int = 403) -> external_auth_pb2.CheckResponse:
    """A deny that no policy decided (fail closed): ``code`` InvalidRequest, NotReady, InternalError."""
    response = external_auth_pb2.CheckResponse()
    response.status.code = code_pb2.PERMISSION_DENIED
    response.status.message = f"{code}: {message}"
    denied_response = response.denied_response
    denied_response.status.code = http_status
    denied_response.headers.extend(
        [_header("x-joch-decision", "deny"), _header("content-type", "application/json")]
    )
    denied_response.body = json.dumps(
        {"decision": "deny", "reason": f"{code}: {message}", "error": {"code": code, "message": message}},
        separators=(",", ":"),
    )
    return response
