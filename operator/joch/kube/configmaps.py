"""CompiledAgentManifest ConfigMaps (D7, docs/decisions.md): create or replace idempotently, delete, list.

``apply_configmap`` writes only when something changed: the caller passes what it believes exists
(``current``, from the operator's cache) and nothing is sent when the sha annotation and the owner are
the same. When the belief is wrong the API server says so (409 AlreadyExists on create, 409 Conflict
or 404 on replace) and the function reads the object and tries again, so a re-run after a crash writes
the same bytes and never duplicates anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

from joch.domain.compilation import configmap as cam
from joch.kube import client, errors, listing, paths

__all__ = [
    "MANIFEST_SELECTOR",
    "ManifestConfigMap",
    "Outcome",
    "apply_configmap",
    "delete_configmaps",
    "list_manifest_configmaps",
]

MANIFEST_SELECTOR: Final = f"app.kubernetes.io/component={cam.COMPONENT}"
"""Label selector matching every CAM ConfigMap (of every Agent)."""

Outcome = Literal["created", "replaced", "unchanged"]
_ATTEMPTS: Final = 4
_ANSWER: Final = client.METADATA_ACCEPT
"""Writes are answered with the ConfigMap's metadata only: what is remembered of it (not the manifest
it was just sent)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestConfigMap:
    """What the operator remembers of one CAM ConfigMap (not its data)."""

    namespace: str
    name: str
    agent: str
    """Name of the owning Agent (its ownerReference, else the joch.dev/agent label)."""
    owner_uid: str | None
    generation: int | None
    sha256: str | None
    resource_version: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ManifestConfigMap:
        metadata = body.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        owner = next(
            (ref for ref in metadata.get("ownerReferences") or () if ref.get("kind") == "Agent"),
            None,
        )
        return cls(
            namespace=metadata.get("namespace") or "",
            name=metadata.get("name") or "",
            agent=(owner or {}).get("name") or labels.get(cam.AGENT_LABEL) or "",
            owner_uid=(owner or {}).get("uid"),
            generation=cam.generation_from_labels(labels),
            sha256=annotations.get(cam.SHA_ANNOTATION),
            resource_version=metadata.get("resourceVersion"),
        )

    def same_content(self, other: ManifestConfigMap) -> bool:
        """Same manifest bytes (sha), owner and generation: no write needed."""
        return (self.sha256, self.owner_uid, self.generation) == (
            other.sha256,
            other.owner_uid,
            other.generation,
        )


async def _get(kube: client.Kube, namespace: str, name: str) -> ManifestConfigMap | None:
    try:
        body = await kube.request("GET", paths.CONFIGMAPS.object_path(namespace, name), accept=_ANSWER)
    except errors.NotFound:
        return None
    return ManifestConfigMap.from_body(body)


async def apply_configmap(
    kube: client.Kube, desired: Mapping[str, Any], *, current: ManifestConfigMap | None
) -> tuple[Outcome, ManifestConfigMap]:
    """Make ``desired`` exist; ``current`` is what the caller believes exists (None: nothing).

    Returns what was done and the resulting ConfigMap. Raises :class:`errors.KubeError` on failures
    other than the stale-belief ones handled here.
    """
    wanted = ManifestConfigMap.from_body(desired)
    namespace, name = wanted.namespace, wanted.name
    for _ in range(_ATTEMPTS):
        if current is not None and current.same_content(wanted):
            return "unchanged", current
        if current is None:
            try:
                body = await kube.request(
                    "POST", paths.CONFIGMAPS.collection_path(namespace), body=desired, accept=_ANSWER
                )
            except errors.AlreadyExists:
                current = await _get(kube, namespace, name)
                continue
            return "created", ManifestConfigMap.from_body(body)
        replacement = {
            **desired,
            "metadata": {**desired["metadata"], "resourceVersion": current.resource_version},
        }
        try:
            body = await kube.request(
                "PUT", paths.CONFIGMAPS.object_path(namespace, name), body=replacement, accept=_ANSWER
            )
        except (errors.Conflict, errors.NotFound):
            current = await _get(kube, namespace, name)
            continue
        return "replaced", ManifestConfigMap.from_body(body)
    raise errors.Conflict(f"ConfigMap {namespace}/{name} kept changing while it was written", status=409)


async def delete_configmaps(kube: client.Kube, namespace: str, names: Iterable[str]) -> list[str]:
    """Delete each named ConfigMap (already gone is fine); the names that were deleted."""
    deleted = []
    for name in names:
        try:
            await kube.request("DELETE", paths.CONFIGMAPS.object_path(namespace, name))
        except errors.NotFound:
            continue
        deleted.append(name)
    return deleted


async def list_manifest_configmaps(
    kube: client.Kube, *, namespace: str | None = None, selector: str = MANIFEST_SELECTOR
) -> tuple[list[ManifestConfigMap], str]:
    """Every CAM ConfigMap (``namespace`` None: in all namespaces) matching ``selector``, and the list's
    resourceVersion (where a watch of the same set starts)."""
    items, version = await listing.list_with_version(
        kube, paths.CONFIGMAPS, namespace=namespace, label_selector=selector, metadata_only=True
    )
    return [ManifestConfigMap.from_body(item) for item in items], version
