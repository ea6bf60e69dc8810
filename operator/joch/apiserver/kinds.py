"""The kinds the /v1 API serves, the kube-apiserver paths of their objects, and the paging and watch
limits: shared by the REST routes (joch.apiserver.app) and the gRPC ResourceService (joch.grpc.resources).

Refusals are :class:`joch.apiserver.errors.ApiError` (404 NotFound for an unknown kind, 400 BadRequest
for an invalid name); a front other than REST maps them onto its own errors.
"""

from __future__ import annotations

from typing import Final

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.apiserver.errors import ApiError
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
