"""Read the cluster into a :class:`~.preview.Snapshot`: one LIST per kind the compiler reads.

Objects that fail validation against the models are skipped with a warning (the API server's schema
makes that rare); a kind whose CRD is not installed counts as empty, with a warning too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic

from joch.api.v1alpha1 import meta
from joch.decision_service.preview import Snapshot
from joch.domain import compilation
from joch.kube import client, errors, listing, paths

__all__ = ["read_snapshot"]


async def read_snapshot(kube: client.Kube) -> tuple[Snapshot, list[str]]:
    """Every object of ``compilation.COMPILE_KINDS`` and every Namespace's labels; warnings."""
    warnings: list[str] = []

    async def load(resource: paths.ResourceType) -> list[dict[str, Any]]:
        try:
            return await listing.list_objects(kube, resource)
        except errors.NotFound:
            warnings.append(f"{resource.kind} is not served (is its CRD installed?); treated as empty")
            return []

    kinds = compilation.COMPILE_KINDS
    results = await asyncio.gather(
        *(load(paths.ResourceType.of(kind)) for kind in kinds), load(paths.NAMESPACES)
    )
    objects: list[meta.Resource] = []
    for kind, items in zip(kinds, results, strict=False):
        for item in items:
            try:
                objects.append(_parse(kind, item))
            except pydantic.ValidationError as exc:
                metadata = item.get("metadata") or {}
                where = "/".join(p for p in (metadata.get("namespace"), metadata.get("name")) if p)
                first = exc.errors()[0]
                location = ".".join(str(part) for part in first["loc"]) or "(object)"
                warnings.append(f"{kind.crd.kind} {where} skipped: invalid: {location}: {first['msg']}")
    labels: dict[str, dict[str, str]] = {}
    for item in results[-1]:
        metadata = item.get("metadata") or {}
        if metadata.get("name"):
            labels[metadata["name"]] = dict(metadata.get("labels") or {})
    return Snapshot(tuple(objects), labels), warnings


def _parse(kind: type[meta.Resource], item: dict[str, Any]) -> meta.Resource:
    """The object with its status; without it when only the status does not validate (statuses are
    written by controllers of other versions; only MCPServer's trust score is read from one)."""
    metadata = {k: v for k, v in (item.get("metadata") or {}).items() if k != "managedFields"}
    doc = {**item, "metadata": metadata}
    try:
        return kind.model_validate(doc)
    except pydantic.ValidationError:
        if "status" not in doc:
            raise
        return kind.model_validate({k: v for k, v in doc.items() if k != "status"})
