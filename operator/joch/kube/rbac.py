"""ClusterRoles and RoleBindings: the writes of the teams service (joch.controllers.teams).

    await ensure_cluster_role(kube, desired)        # "created" | "updated" | "unchanged"
    items, version = await list_role_bindings(kube, namespace=None, label_selector="joch.dev/team")
    body = await create_role_binding(kube, desired)  # AlreadyExists propagates
    body = await patch_role_binding(kube, desired)   # subjects, labels, annotations, owner
    await delete_role_binding(kube, namespace, name, uid=uid)   # False when already gone

A ClusterRole is read first and written only when its rules or labels differ: writing RBAC needs every
permission it grants (or ``escalate``, which the operator is never granted), so a ClusterRole that is
already right costs one GET and never a 403. A RoleBinding's roleRef cannot change: the caller deletes and
creates it again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from joch.kube import client, errors, listing, paths

__all__ = [
    "CLUSTERROLES",
    "ROLEBINDINGS",
    "create_role_binding",
    "delete_role_binding",
    "ensure_cluster_role",
    "list_role_bindings",
    "patch_role_binding",
    "read_role_binding",
    "same_rules",
]

_GROUP: Final = "rbac.authorization.k8s.io"
CLUSTERROLES: Final = paths.ResourceType(_GROUP, "v1", "clusterroles", "ClusterRole", namespaced=False)
ROLEBINDINGS: Final = paths.ResourceType(_GROUP, "v1", "rolebindings", "RoleBinding", namespaced=True)
_MERGE: Final = "application/merge-patch+json"
_RULE_FIELDS: Final = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")


def _rule(rule: Mapping[str, Any]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((key, tuple(rule.get(key) or ())) for key in _RULE_FIELDS if rule.get(key))


def same_rules(current: Sequence[Mapping[str, Any]] | None, desired: Sequence[Mapping[str, Any]]) -> bool:
    """Whether two PolicyRule lists say the same, field by field (empty fields left out)."""
    return [_rule(r) for r in current or ()] == [_rule(r) for r in desired]


async def ensure_cluster_role(kube: client.Kube, desired: Mapping[str, Any]) -> str:
    """Make the ClusterRole ``desired``: its rules, and its labels among the stored ones (others' labels
    and annotations kept). ``created``, ``updated`` or ``unchanged``; errors (Forbidden) propagate."""
    name = desired["metadata"]["name"]
    path = CLUSTERROLES.object_path(None, name)
    try:
        current: dict[str, Any] = await kube.request("GET", path)
    except errors.NotFound:
        try:
            await kube.request("POST", CLUSTERROLES.collection_path(), body=desired)
            return "created"
        except errors.AlreadyExists:
            current = await kube.request("GET", path)
    labels = (current.get("metadata") or {}).get("labels") or {}
    wanted = desired["metadata"].get("labels") or {}
    if same_rules(current.get("rules"), desired["rules"]) and all(
        labels.get(k) == v for k, v in wanted.items()
    ):
        return "unchanged"
    patch = {
        "metadata": {
            "labels": dict(wanted),
            "annotations": dict(desired["metadata"].get("annotations") or {}),
        },
        "rules": list(desired["rules"]),
    }
    await kube.request("PATCH", path, body=patch, content_type=_MERGE)
    return "updated"


async def list_role_bindings(
    kube: client.Kube, *, namespace: str | None, label_selector: str
) -> tuple[list[dict[str, Any]], str]:
    """The RoleBindings carrying ``label_selector`` (``namespace`` None: all namespaces), and the list's
    resourceVersion (where a watch of them starts)."""
    return await listing.list_with_version(
        kube, ROLEBINDINGS, namespace=namespace, label_selector=label_selector
    )


async def create_role_binding(kube: client.Kube, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Create the RoleBinding; the stored object. AlreadyExists propagates."""
    namespace = desired["metadata"]["namespace"]
    body: dict[str, Any] = await kube.request("POST", ROLEBINDINGS.collection_path(namespace), body=desired)
    return body


async def read_role_binding(kube: client.Kube, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = await kube.request("GET", ROLEBINDINGS.object_path(namespace, name))
    return body


async def patch_role_binding(kube: client.Kube, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Make an existing RoleBinding's subjects, labels, annotations and ownerReferences those of
    ``desired`` (a merge patch: lists are replaced); the stored object."""
    metadata = desired["metadata"]
    patch = {
        "metadata": {
            key: metadata[key] for key in ("labels", "annotations", "ownerReferences") if key in metadata
        },
        "subjects": list(desired.get("subjects") or ()),
    }
    body: dict[str, Any] = await kube.request(
        "PATCH",
        ROLEBINDINGS.object_path(metadata["namespace"], metadata["name"]),
        body=patch,
        content_type=_MERGE,
    )
    return body


async def delete_role_binding(kube: client.Kube, namespace: str, name: str, *, uid: str = "") -> bool:
    """Delete the RoleBinding (only that one, when ``uid`` is given); False when it was already gone."""
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        await kube.request("DELETE", ROLEBINDINGS.object_path(namespace, name), body=body)
    except (errors.NotFound, errors.Conflict):
        return False
    return True
