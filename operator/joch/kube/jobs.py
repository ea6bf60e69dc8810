"""Jobs, their Pods and the worker's identity: the writes of the executions service.

    body = await create_job(kube, desired)              # or the Job that already exists (409)
    await delete_job(kube, namespace, name)              # background propagation; False when absent
    await ensure_worker_identity(kube, namespace, "joch-worker")   # ServiceAccount + Role + RoleBinding
    await delete_execution(kube, namespace, name)        # retention; its Job goes with it (GC)

Only these core and batch objects are touched: Jobs (labelled ``joch.dev/execution``), Pods (read
only), and one ServiceAccount, Role and RoleBinding per namespace for the workers. No Secrets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from joch.api.v1alpha1.execution import Execution
from joch.kube import client, errors, paths

__all__ = [
    "EXECUTIONS",
    "JOBS",
    "PODS",
    "ROLEBINDINGS",
    "ROLES",
    "SERVICEACCOUNTS",
    "create_execution",
    "create_job",
    "delete_execution",
    "delete_job",
    "ensure_worker_identity",
    "worker_role",
]

JOBS: Final = paths.ResourceType("batch", "v1", "jobs", "Job", namespaced=True)
PODS: Final = paths.ResourceType("", "v1", "pods", "Pod", namespaced=True)
SERVICEACCOUNTS: Final = paths.ResourceType("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
ROLES: Final = paths.ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced=True)
ROLEBINDINGS: Final = paths.ResourceType(
    "rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", namespaced=True
)
EXECUTIONS: Final = paths.ResourceType.of(Execution)
_MANAGED: Final = {"app.kubernetes.io/managed-by": "joch", "app.kubernetes.io/component": "worker"}


async def create_job(kube: client.Kube, desired: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Job, or read the one of that name that exists; (the stored Job, whether created)."""
    metadata = desired["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    try:
        created: dict[str, Any] = await kube.request("POST", JOBS.collection_path(namespace), body=desired)
    except errors.AlreadyExists:
        existing: dict[str, Any] = await kube.request("GET", JOBS.object_path(namespace, name))
        return existing, False
    return created, True


async def create_execution(kube: client.Kube, body: Mapping[str, Any]) -> bool:
    """Create the Execution; False when one of that name exists already (a run made once)."""
    return await _create(kube, EXECUTIONS, body)


async def delete_job(kube: client.Kube, namespace: str, name: str, *, uid: str | None = None) -> bool:
    """Delete the Job and (in the background) its Pods; False when it was already gone."""
    body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        await kube.request("DELETE", JOBS.object_path(namespace, name), body=body)
    except (errors.NotFound, errors.Conflict):
        return False
    return True


async def delete_execution(kube: client.Kube, namespace: str, name: str, *, uid: str) -> bool:
    """Delete a finished Execution (retention); its Job and Pods follow through the garbage collector."""
    body = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": "Background",
        "preconditions": {"uid": uid},
    }
    try:
        await kube.request("DELETE", EXECUTIONS.object_path(namespace, name), body=body)
    except (errors.NotFound, errors.Conflict):
        return False
    return True


def worker_role(namespace: str, name: str) -> dict[str, Any]:
    """What a worker may do: read Executions, report into their status (the status webhook narrows that
    to its own Execution and the reported fields)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
        "rules": [
            {"apiGroups": [EXECUTIONS.group], "resources": ["executions"], "verbs": ["get"]},
            {"apiGroups": [EXECUTIONS.group], "resources": ["executions/status"], "verbs": ["get", "patch"]},
        ],
    }


async def _create(kube: client.Kube, resource: paths.ResourceType, body: Mapping[str, Any]) -> bool:
    try:
        await kube.request("POST", resource.collection_path(body["metadata"]["namespace"]), body=body)
    except errors.AlreadyExists:
        return False
    return True


async def ensure_worker_identity(kube: client.Kube, namespace: str, name: str) -> int:
    """Create the workers' ServiceAccount, Role and RoleBinding in ``namespace`` where missing (all
    named ``name``); how many were created."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(_MANAGED)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    created = await asyncio.gather(
        _create(kube, SERVICEACCOUNTS, account), _create(kube, ROLES, worker_role(namespace, name))
    )
    return sum(created) + int(await _create(kube, ROLEBINDINGS, binding))
