"""Status writes through the status subresource (JSON merge patch: only the given fields change).

Every write carries the resourceVersion the caller computed it against (``metadata.resourceVersion``
in the patch is a precondition for the API server): when the object changed since, the write fails
with 409 (:class:`joch.kube.errors.Conflict`) instead of merging a patch computed against a stale
status into a newer one. The caller then reads the object again (:func:`read`) and recomputes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joch.kube import client, paths

__all__ = ["patch_status", "read"]


async def patch_status(
    kube: client.Kube,
    resource: paths.ResourceType,
    namespace: str | None,
    name: str,
    status: Mapping[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge ``status`` into the object's status; the object as stored afterwards.

    Fields not in ``status`` are left alone (other writers own them); a key mapped to None removes it.
    Lists (conditions) are replaced as a whole, as JSON merge patch does. With ``resource_version``
    the write applies only to that version of the object (else :class:`joch.kube.errors.Conflict`).
    Raises :class:`joch.kube.errors.NotFound` when the object is gone.
    """
    body: dict[str, Any] = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    result: dict[str, Any] = await kube.request(
        "PATCH",
        resource.object_path(namespace if resource.namespaced else None, name, "status"),
        body=body,
        content_type=client.JSON_MERGE_PATCH,
    )
    return result


async def read(
    kube: client.Kube, resource: paths.ResourceType, namespace: str | None, name: str
) -> dict[str, Any]:
    """The object as stored now (after a :class:`joch.kube.errors.Conflict`); raises NotFound."""
    result: dict[str, Any] = await kube.request(
        "GET", resource.object_path(namespace if resource.namespaced else None, name)
    )
    return result
