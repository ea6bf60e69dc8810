"""AgBOM objects and their document ConfigMaps (joch.domain.reconcile.agbom says what they hold).

Writes are idempotent: a document ConfigMap that already exists (a crash between writing it and the
status) is replaced, an AgBOM object that already exists is read back, so a re-run converges.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from joch.api.v1alpha1.agbom import AgBOM
from joch.domain.reconcile import agbom as plan
from joch.kube import client, errors, listing, paths

__all__ = ["AGBOMS", "create_agbom", "delete_document", "list_documents", "read_document", "write_document"]

AGBOMS: Final = paths.ResourceType.of(AgBOM)
_ATTEMPTS: Final = 4


async def list_documents(kube: client.Kube, *, namespace: str | None = None) -> list[plan.Document]:
    """Every AgBOM document ConfigMap (metadata only; ``namespace`` None: all namespaces)."""
    items = await listing.list_objects(
        kube, paths.CONFIGMAPS, namespace=namespace, label_selector=plan.SELECTOR, metadata_only=True
    )
    found = (plan.Document.from_body(item) for item in items)
    return [document for document in found if document is not None]


async def write_document(kube: client.Kube, desired: Mapping[str, Any]) -> plan.Document:
    """Create the document ConfigMap, or replace the one of that name; what is stored now."""
    metadata = desired["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    for _ in range(_ATTEMPTS):
        try:
            body = await kube.request(
                "POST",
                paths.CONFIGMAPS.collection_path(namespace),
                body=desired,
                accept=client.METADATA_ACCEPT,
            )
        except errors.AlreadyExists:
            try:
                current = await kube.request(
                    "GET", paths.CONFIGMAPS.object_path(namespace, name), accept=client.METADATA_ACCEPT
                )
            except errors.NotFound:
                continue
            version = (current.get("metadata") or {}).get("resourceVersion")
            replacement = {**desired, "metadata": {**metadata, "resourceVersion": version}}
            try:
                body = await kube.request(
                    "PUT",
                    paths.CONFIGMAPS.object_path(namespace, name),
                    body=replacement,
                    accept=client.METADATA_ACCEPT,
                )
            except (errors.Conflict, errors.NotFound):
                continue
        document = plan.Document.from_body(body)
        if document is None:
            raise errors.Invalid(
                f"ConfigMap {namespace}/{name} was stored without its AgBOM labels", status=422
            )
        return document
    raise errors.Conflict(f"ConfigMap {namespace}/{name} kept changing while it was written", status=409)


async def delete_document(kube: client.Kube, namespace: str, name: str) -> bool:
    """Delete one document ConfigMap; False when it was already gone."""
    try:
        await kube.request("DELETE", paths.CONFIGMAPS.object_path(namespace, name))
    except errors.NotFound:
        return False
    return True


async def create_agbom(kube: client.Kube, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Create the AgBOM object (or read the one that exists); the stored object."""
    metadata = desired["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    try:
        created: dict[str, Any] = await kube.request("POST", AGBOMS.collection_path(namespace), body=desired)
    except errors.AlreadyExists:
        existing: dict[str, Any] = await kube.request("GET", AGBOMS.object_path(namespace, name))
        return existing
    return created


async def read_document(kube: client.Kube, namespace: str, name: str) -> str:
    """The CycloneDX text stored in one document ConfigMap (raises NotFound)."""
    body = await kube.request("GET", paths.CONFIGMAPS.object_path(namespace, name))
    text = (body.get("data") or {}).get(plan.DOCUMENT_KEY)
    if not isinstance(text, str):
        raise errors.NotFound(f"ConfigMap {namespace}/{name} holds no {plan.DOCUMENT_KEY}", status=404)
    return text
