"""AdmissionReview (admission.k8s.io/v1) <-> the domain's :class:`~joch.domain.admission.Request`.

Only this module knows the wire shape. Two kinds of failure are kept apart (as kopf does):

- the review itself is malformed (not JSON, not an AdmissionReview, no ``request.uid``...):
  :class:`BadReview`, answered with HTTP 400 and no AdmissionReview (the API server treats it as a
  webhook failure, and failurePolicy Fail rejects the request);
- the review is fine but the object is not: an ordinary denial (``allowed: false`` with a Status).

Fields read from ``request``: uid, kind {group, version, kind}, operation, name, namespace, object,
oldObject, dryRun, subResource and userInfo (who the API server authenticated). Everything else (options,
resource) is ignored.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NotRequired, TypedDict

from joch.domain.admission import Request, UserInfo

__all__ = [
    "API_VERSION",
    "BadReview",
    "Response",
    "ReviewRequest",
    "allowed",
    "denied",
    "parse_review",
]

API_VERSION: Final = "admission.k8s.io/v1"
MAX_UID: Final = 256


class BadReview(ValueError):
    """The body is not a usable AdmissionReview; answered with HTTP 400."""


class Status(TypedDict, total=False):
    code: int
    message: str
    reason: str
    status: Literal["Failure"]


class ResponsePayload(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[Status]
    warnings: NotRequired[list[str]]
    patch: NotRequired[str]
    patchType: NotRequired[Literal["JSONPatch"]]


class Response(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: ResponsePayload


class ReviewRequest(TypedDict):
    """The parsed request plus the uid to echo."""

    uid: str
    request: Request
    group: str
    version: str


def _str(value: Any, what: str, *, required: bool = True, limit: int = 253) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadReview(f"{what} must be a non-empty string")
    if len(value) > limit:
        raise BadReview(f"{what} is longer than {limit} characters")
    return value


def parse_review(body: Any) -> ReviewRequest:
    """The request inside a decoded AdmissionReview body; raises :class:`BadReview`."""
    if not isinstance(body, Mapping):
        raise BadReview(f"the body must be a JSON object (an AdmissionReview), not {type(body).__name__}")
    if body.get("kind") != "AdmissionReview":
        raise BadReview("kind must be AdmissionReview")
    if body.get("apiVersion") != API_VERSION:
        raise BadReview(f"apiVersion must be {API_VERSION} (admissionReviewVersions [v1])")
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise BadReview("request must be an object")
    uid = _str(request.get("uid"), "request.uid", limit=MAX_UID)
    kind = request.get("kind")
    if not isinstance(kind, Mapping):
        raise BadReview("request.kind must be an object {group, version, kind}")
    group = _str(kind.get("group"), "request.kind.group", required=False)
    version = _str(kind.get("version"), "request.kind.version")
    kind_name = _str(kind.get("kind"), "request.kind.kind")
    operation = _str(request.get("operation"), "request.operation", limit=16)
    name = request.get("name")
    namespace = request.get("namespace")
    dry_run = request.get("dryRun")
    sub_resource = request.get("subResource")
    return ReviewRequest(
        uid=uid,
        group=group,
        version=version,
        request=Request(
            operation=operation,
            kind=kind_name,
            name=name[:253] if isinstance(name, str) else None,
            namespace=namespace[:63] if isinstance(namespace, str) and namespace else None,
            object=request.get("object"),
            old_object=request.get("oldObject"),
            dry_run=dry_run is True,
            sub_resource=sub_resource[:63] if isinstance(sub_resource, str) else "",
            user=_user(request.get("userInfo")),
        ),
    )


def _user(value: Any) -> UserInfo:
    """The authenticated user of the request (missing or malformed parts are left empty)."""
    if not isinstance(value, Mapping):
        return UserInfo()
    username = value.get("username")
    groups = value.get("groups")
    extra = value.get("extra")
    return UserInfo(
        username=username[:512] if isinstance(username, str) else "",
        groups=tuple(g for g in groups[:64] if isinstance(g, str)) if isinstance(groups, list) else (),
        extra={
            str(key)[:256]: tuple(v for v in values[:16] if isinstance(v, str))
            for key, values in list(extra.items())[:32]
            if isinstance(values, list)
        }
        if isinstance(extra, Mapping)
        else {},
    )


def allowed(
    uid: str, *, warnings: Sequence[str] = (), patch: Sequence[Mapping[str, Any]] | None = None
) -> Response:
    """An admitting response, with optional warnings and JSON Patch."""
    payload = ResponsePayload(uid=uid, allowed=True)
    if warnings:
        payload["warnings"] = list(warnings)
    if patch:
        payload["patchType"] = "JSONPatch"
        payload["patch"] = base64.b64encode(json.dumps(list(patch)).encode()).decode("ascii")
    return Response(apiVersion=API_VERSION, kind="AdmissionReview", response=payload)


def denied(uid: str, *, message: str, code: int, reason: str, warnings: Sequence[str] = ()) -> Response:
    """A rejecting response; ``message`` is what the client sees after the API server's prefix."""
    payload = ResponsePayload(
        uid=uid,
        allowed=False,
        status=Status(code=code, message=message, reason=reason, status="Failure"),
    )
    if warnings:
        payload["warnings"] = list(warnings)
    return Response(apiVersion=API_VERSION, kind="AdmissionReview", response=payload)
