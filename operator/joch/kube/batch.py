"""All-or-nothing writes of a judged batch: what ``joch apply`` and ``POST /v1/resources/apply`` share.

Both judge every document first (:func:`joch.domain.admission.check_batch`), then :func:`dry_run` each
one on the API server (server-side apply with ``dryRun=All``: schema validation and the admission
webhooks, which have no side effects on dry runs), and only when every document passed both,
:func:`apply_all` writes them (Namespaces first, then the joch kinds in dependency order, then anything
else). The calls go through :class:`joch.kube.rest.Cluster`, so the API server's Warning headers and
untruncated Status messages reach the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any, Final

from joch.api import v1alpha1
from joch.domain.admission import DocumentResult
from joch.kube.rest import Cluster

__all__ = ["Applied", "Checked", "Write", "apply_all", "dry_run", "ordered", "target"]

_KIND_ORDER: Final = {kind.crd.kind: index for index, kind in enumerate(v1alpha1.KINDS)}
_MISSING_REFERENCE: Final = "admitted, the operator reports it until it appears"


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    """How documents are written: server-side apply as ``field_manager`` (``force``: take over fields
    another manager owns); ``namespace`` for namespaced documents that name none."""

    field_manager: str = "joch"
    force: bool = False
    namespace: str = "default"

    def query(self, *, dry_run: bool) -> dict[str, str]:
        query = {"fieldManager": self.field_manager}
        if self.force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return query


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    """The server's verdict on one document's dry run."""

    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    answer: Any = None
    """The object the API server would store (None when not dry-run)."""
    status: int = 0
    """The HTTP status of the API server's refusal (403: RBAC or a webhook's denial), 0 if none."""


@dataclasses.dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply_all` wrote: the results applied, in order, with their warnings and the stored
    objects; ``failed`` the first document the API server refused (the cluster changed since the dry
    run) with its error, after which nothing more was written."""

    applied: list[tuple[DocumentResult, list[str], Any]]
    failed: tuple[DocumentResult, str] | None = None


def target(cluster: Cluster, result: DocumentResult, write: Write) -> tuple[str, dict[str, Any]] | None:
    """(object path, body with its namespace filled in) of a judged document; None when the cluster does
    not serve its kind."""
    assert result.body is not None
    mapping = cluster.mapping(result.api_version, result.kind)
    if mapping is None:
        return None
    namespace = result.namespace if mapping.namespaced else None
    if mapping.namespaced and not namespace:
        namespace = write.namespace
    body = dict(result.body)
    if namespace:
        body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
    return mapping.object_path(namespace, result.name), body


def dry_run(
    cluster: Cluster,
    result: DocumentResult,
    write: Write,
    *,
    existing: Collection[str] | None,
    created: Collection[str],
) -> Checked:
    """Server-side dry-run of one document. A document in a namespace only this batch creates cannot be
    dry-run (``existing`` None: every namespace is taken to exist); it is checked offline only."""
    found = target(cluster, result, write)
    if found is None:
        return Checked(
            errors=[f"the cluster does not serve {result.api_version} {result.kind} (is its CRD installed?)"]
        )
    path, body = found
    namespace = (body.get("metadata") or {}).get("namespace")
    if namespace and existing is not None and namespace not in existing and namespace in created:
        return Checked(
            notes=[f"namespace {namespace} is created by this batch: checked offline only (no dry run)"]
        )
    answer = cluster.call("PATCH", path, query=write.query(dry_run=True), body=body)
    warnings = [w for w in answer.warnings if _MISSING_REFERENCE not in w]
    if answer.error is not None:
        return Checked(errors=[f"server dry-run: {answer.error}"], warnings=warnings, status=answer.status)
    return Checked(warnings=warnings, answer=answer.body)


def ordered(results: Sequence[DocumentResult]) -> list[DocumentResult]:
    """``results`` in write order: Namespaces, the joch kinds by dependency, then the rest."""

    def order(result: DocumentResult) -> tuple[int, int]:
        if result.kind == "Namespace" and result.api_version == "v1":
            return (0, 0)
        if result.joch:
            return (1, _KIND_ORDER.get(result.kind, 99))
        return (2, 0)

    return sorted(results, key=order)


def apply_all(cluster: Cluster, results: Sequence[DocumentResult], write: Write) -> Applied:
    """Server-side apply every result, in :func:`ordered` order, stopping at the first refusal."""
    applied: list[tuple[DocumentResult, list[str], Any]] = []
    for result in ordered(results):
        found = target(cluster, result, write)
        assert found is not None, result.label  # the dry run found the mapping
        path, body = found
        answer = cluster.call("PATCH", path, query=write.query(dry_run=False), body=body)
        if answer.error is not None:
            return Applied(applied, (result, answer.error))
        applied.append((result, list(answer.warnings), answer.body))
    return Applied(applied)
