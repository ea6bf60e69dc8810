"""Who the operator is and what a user may do, as the API server says: SelfSubjectReview and
LocalSubjectAccessReview; and the Approvals the operator requests.

Admission of Approval decisions needs both facts (joch.domain.admission.approvals): the operator's own
user name (its bookkeeping writes are trusted) and whether a user holds the ``override`` or
``acknowledge`` verb on an Approval (the joch-break-glass and joch-auditor ClusterRoles). Asking the API
server, rather than reading RoleBindings, follows every way RBAC can grant a verb (aggregated roles,
groups, other authorizers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.approval import Approval
from joch.kube import client, errors, paths

__all__ = ["APPROVALS", "allowed_verbs", "create_approval", "whoami"]

APPROVALS: Final = paths.ResourceType.of(Approval)
SELF_REVIEW: Final = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
ACCESS_REVIEW: Final = "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews"
"""LocalSubjectAccessReview: namespaced, so a namespace-scoped install's Role can grant its create."""


async def whoami(kube: client.Kube) -> str:
    """The user name the API server authenticates the operator's credentials as."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    review: dict[str, Any] = await kube.request("POST", SELF_REVIEW, body=body)
    user = ((review.get("status") or {}).get("userInfo") or {}).get("username")
    return user if isinstance(user, str) else ""


async def allowed_verbs(
    kube: client.Kube,
    *,
    username: str,
    groups: Sequence[str],
    extra: Mapping[str, Sequence[str]],
    namespace: str,
    name: str,
    verbs: Iterable[str],
    group: str = APPROVALS.group,
    resource: str = APPROVALS.plural,
) -> frozenset[str]:
    """The ``verbs`` the user holds on that object (one LocalSubjectAccessReview each, in its namespace)."""
    held: set[str] = set()
    for verb in verbs:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "LocalSubjectAccessReview",
            "spec": {
                "user": username,
                "groups": list(groups),
                "extra": {key: list(values) for key, values in extra.items()},
                "resourceAttributes": {
                    "group": group,
                    "resource": resource,
                    "verb": verb,
                    "namespace": namespace,
                    "name": name,
                },
            },
        }
        path = ACCESS_REVIEW.format(namespace=namespace)
        review: dict[str, Any] = await kube.request("POST", path, body=body)
        if (review.get("status") or {}).get("allowed") is True:
            held.add(verb)
    return frozenset(held)


async def create_approval(kube: client.Kube, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Approval, or read the one of that name; (the stored Approval, whether created)."""
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    try:
        created: dict[str, Any] = await kube.request("POST", APPROVALS.collection_path(namespace), body=body)
    except errors.AlreadyExists:
        existing: dict[str, Any] = await kube.request("GET", APPROVALS.object_path(namespace, name))
        return existing, False
    return created, True
