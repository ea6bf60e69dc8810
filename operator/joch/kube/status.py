"""Status writes through the status subresource (JSON merge patch: only the given fields change)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joch.kube import client, paths

__all__ = ["patch_status"]


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
    Lists (conditions) are replaced as a whole, as JSON merge patch does. Raises
    :class:`joch.kube.errors.NotFound` when the object is gone. With ``resource_version``, the patch
    applies only to that version of the object (a precondition): raises
    :class:`joch.kube.errors.Conflict` (409) when the object has changed since.
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
