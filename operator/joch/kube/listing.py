"""LIST with pagination: every object of one resource type (in one namespace or all of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from joch.kube import client, errors, paths

__all__ = ["METADATA_LIST_ACCEPT", "PAGE_SIZE", "can_list", "list_objects", "list_with_version", "pages"]

PAGE_SIZE = 500
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


async def list_objects(
    kube: client.Kube,
    resource: paths.ResourceType,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = PAGE_SIZE,
    metadata_only: bool = False,
) -> list[dict[str, Any]]:
    """Every object of ``resource`` (``namespace`` None: all namespaces), following ``continue`` tokens.

    Items of a typed list carry no apiVersion/kind; they are filled in so each item is a full object.
    ``metadata_only``: the API server sends each item's metadata only (PartialObjectMetadataList).
    """
    items, _ = await list_with_version(
        kube,
        resource,
        namespace=namespace,
        label_selector=label_selector,
        page_size=page_size,
        metadata_only=metadata_only,
    )
    return items


async def list_with_version(
    kube: client.Kube,
    resource: paths.ResourceType,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = PAGE_SIZE,
    metadata_only: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """:func:`list_objects`, and the list's resourceVersion (where a WATCH of the same set starts)."""
    items: list[dict[str, Any]] = []
    version = ""
    async for page, page_version in pages(
        kube,
        resource,
        namespace=namespace,
        label_selector=label_selector,
        page_size=page_size,
        metadata_only=metadata_only,
    ):
        items.extend(page)
        version = page_version
    return items, version


async def pages(
    kube: client.Kube,
    resource: paths.ResourceType,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    page_size: int = PAGE_SIZE,
    metadata_only: bool = False,
) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    """The LIST page by page (for callers that keep a little of each item): each page's items, filled
    in as :func:`list_objects` says, with the list's resourceVersion."""
    accept = METADATA_LIST_ACCEPT if metadata_only else "application/json"
    query: dict[str, str | int] = {"limit": page_size}
    if label_selector:
        query["labelSelector"] = label_selector
    while True:
        page = await kube.request(
            "GET", resource.collection_path(namespace), query=dict(query), accept=accept
        )
        items: list[dict[str, Any]] = []
        for item in page.get("items") or ():
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
            items.append(item)
        metadata = page.get("metadata") or {}
        yield items, str(metadata.get("resourceVersion") or "")
        token = metadata.get("continue")
        if not token:
            return
        query["continue"] = token


def can_list(kube: client.Kube, resource: paths.ResourceType, *, namespace: str | None = None) -> bool:
    """Whether the operator may LIST ``resource`` (in ``namespace``, or across all): one GET with
    ``limit=1``, synchronously (before the event loop runs). A type that is not served counts as listable
    (it is missing, not forbidden); other failures propagate."""
    try:
        kube.send("GET", resource.collection_path(namespace), query={"limit": 1})
    except errors.Forbidden:
        return False
    except errors.NotFound:
        return True
    return True
