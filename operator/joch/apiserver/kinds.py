"""The kinds the /v1 API serves, the kube-apiserver paths of their objects, the paging and watch limits,
and the reading of a watch's lines and ERROR events: shared by the REST routes (joch.apiserver.app) and
the gRPC ResourceService (joch.grpc.resources).

Refusals are :class:`joch.apiserver.errors.ApiError` (404 NotFound for an unknown kind, 400 BadRequest
for an invalid name); a front other than REST maps them onto its own errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.apiserver.errors import ApiError, code_for
from joch.kube import paths

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_WATCH_LINE",
    "MAX_WATCH_TIMEOUT",
    "WATCH_TIMEOUT",
    "collection",
    "kind",
    "object_path",
    "segment",
    "watch_error",
    "watch_events",
]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
WATCH_TIMEOUT: Final = 300
MAX_WATCH_TIMEOUT: Final = 3600
MAX_WATCH_LINE: Final = 16 * 1024 * 1024


def kind(name: str) -> type[meta.Resource]:
    """A joch kind by plural (``agents``), singular or kind name, case-insensitive; 404 otherwise."""
    wanted = name.lower()
    for model in v1alpha1.KINDS:
        crd = model.crd
        if wanted in {crd.plural, crd.kind.lower(), crd.singular} or wanted in crd.short_names:
            return model
    raise ApiError(404, "NotFound", f"no kind {name!r}: use a plural such as agents, executions, approvals")


def collection(model: type[meta.Resource], namespace: str | None) -> str:
    """The collection's path; a namespaced kind without ``namespace``: across all namespaces."""
    return paths.ResourceType.of(model).collection_path(
        segment(namespace, "namespace") if namespace else None
    )


def object_path(
    model: type[meta.Resource], namespace: str | None, name: str, subresource: str | None = None
) -> str:
    """The path of one object (optionally of its ``subresource``)."""
    return paths.ResourceType.of(model).object_path(
        segment(namespace, "namespace") if namespace else None, segment(name, "name"), subresource
    )


def segment(value: str, what: str) -> str:
    """A path segment that is a valid object name (so nothing can be smuggled into the upstream path)."""
    if (
        not value
        or len(value) > 253
        or not all(c.isalnum() or c in "-." for c in value)
        or value != value.lower()
    ):
        raise ApiError(400, "BadRequest", f"{what} {value[:80]!r} is not a valid Kubernetes name")
    return value


async def watch_events(lines: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The events of a watch's lines (one JSON object a line); a line that is not one is skipped."""
    async for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def watch_error(event: Mapping[str, Any]) -> ApiError:
    """The refusal a watch's ERROR event (a Status object) stands for: its status when a 4xx (anything
    else 503); an expired position (410) has code Expired and tells to list again."""
    status = event.get("object")
    status = status if isinstance(status, Mapping) else {}
    try:
        code = int(status.get("code") or 500)
    except (TypeError, ValueError):
        code = 500
    message = str(status.get("message") or "the watch failed")
    answered = code if 400 <= code < 500 else 503
    if code == 410:
        message = f"{message}: list again and watch from the list's resourceVersion"
        return ApiError(answered, "Expired", message, {"reason": "Expired"})
    return ApiError(answered, code_for(code), message, {"reason": str(status.get("reason") or "")})
