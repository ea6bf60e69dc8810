"""The OpenAPI 3.1 document of the /v1 API, generated from :data:`joch.apiserver.app.ROUTES` and the
pydantic models of their bodies (``make manifests`` writes it to docs/api/openapi.json)."""

from __future__ import annotations

import re
from typing import Any, Final

import pydantic

from joch.apiserver import app, bodies

__all__ = ["document"]

VERSION: Final = "v1"

_QUERY: Final[dict[str, tuple[dict[str, Any], str]]] = {
    "namespace": ({"type": "string"}, "Namespace of namespaced documents that name none (default: default)."),
    "allowPending": ({"type": "boolean"}, "Admit references to objects that do not exist yet."),
    "fieldManager": ({"type": "string"}, "Server-side apply field manager (default: joch-api)."),
    "force": ({"type": "boolean"}, "Take over fields another field manager owns."),
    "limit": ({"type": "integer", "minimum": 1, "maximum": app.MAX_LIMIT}, "Page size (default 100)."),
    "continue": ({"type": "string"}, "The continue token of the previous page."),
    "selector": ({"type": "string"}, "A label selector (app=x,tier!=y)."),
    "kind": ({"type": "string"}, "The kind to watch, as a plural (agents, executions, approvals...)."),
    "resourceVersion": ({"type": "string"}, "Resume after this position; an expired one answers 410."),
    "timeoutSeconds": (
        {"type": "integer", "minimum": 1, "maximum": app.MAX_WATCH_TIMEOUT},
        "End the stream after this many seconds (default 300).",
    ),
    "format": ({"type": "string", "enum": ["cyclonedx"]}, "Document format."),
    "generation": ({"type": "integer", "minimum": 1}, "An older AgBOM generation (default: the newest)."),
}

_ERROR: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Machine-readable: Unauthorized, Forbidden, Invalid...",
                },
                "message": {"type": "string", "description": "For a human: what was wrong and why."},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

_ERRORS: Final = {
    "400": "The request is malformed (a query value, a path segment, nesting too deep, invalid UTF-8).",
    "401": "No bearer token, or kube-apiserver does not accept it.",
    "403": "RBAC refuses the caller, or admission denies the change.",
    "404": "No such object or kind.",
    "413": "The body is too large or holds too many documents.",
    "415": "The Content-Type is not accepted.",
    "422": "A field is invalid; the message names it.",
}


def _operation_id(route: app.Route) -> str:
    words = re.findall(r"[a-z]+", route.path.replace("{", " ").replace("}", " ").lower())
    return route.method.lower() + "".join(w.capitalize() for w in words if w not in {"v", "namespace"})


def _schema(model: type[pydantic.BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _request_body(route: app.Route, components: dict[str, Any]) -> dict[str, Any] | None:
    if route.request is None:
        return None
    if route.request == "documents":
        return {
            "required": True,
            "description": "Multi-document YAML, or JSON: an object, an array of objects or a List (at most "
            f"{bodies.MAX_DOCUMENTS} documents, {bodies.MAX_BODY_BYTES // (1024 * 1024)} MiB, "
            f"{bodies.MAX_DEPTH} levels, no YAML aliases).",
            "content": {
                **{kind: {"schema": {"type": "string"}} for kind in sorted(bodies.YAML_TYPES)},
                "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            },
        }
    return {"required": True, "content": {"application/json": {"schema": _schema(route.request, components)}}}


def _parameters(route: app.Route) -> list[dict[str, Any]]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    for name in route.query:
        schema, description = _QUERY[name]
        required = name == "kind" or (name == "namespace" and route.path.startswith("/v1/eval/"))
        parameters.append(
            {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
        )
    return parameters


def _responses(route: app.Route) -> dict[str, Any]:
    content = {route.response: {"schema": {"type": "string"} if route.response != "application/json" else {}}}
    responses: dict[str, Any] = {
        str(status): {"description": "Success.", "content": content} for status in route.statuses
    }
    if route.auth:
        for status, description in _ERRORS.items():
            responses[status] = {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
    if route.path == "/v1/resources":
        responses["410"] = {
            "description": "The resourceVersion is too old: list again, then watch from the list's "
            "resourceVersion.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses


def document() -> dict[str, Any]:
    """The whole OpenAPI document (deterministic: the same routes give the same bytes)."""
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, dict[str, Any]] = {}
    for route in app.ROUTES:
        operation: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "parameters": _parameters(route),
            "responses": _responses(route),
        }
        request = _request_body(route, components)
        if request is not None:
            operation["requestBody"] = request
        if not route.auth:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Joch API",
            "version": VERSION,
            "description": "The control plane's REST and watch API. Every call runs as the caller: the "
            "bearer token is passed to kube-apiserver, whose RBAC and audit apply to the real user.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
