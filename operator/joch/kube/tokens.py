"""Who a bearer token belongs to, as the API server says: a TokenReview (authentication.k8s.io/v1).

The gRPC server (joch.grpc) authenticates each caller with it, as the API server itself would: a
service-account token (``kubectl create token``, a projected volume) or any token the API server's
authenticators accept. The operator needs ``create`` on ``tokenreviews`` (cluster scope; the
``grpc`` grant of joch.manifests.rbac).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from joch.kube import client

__all__ = ["TOKEN_REVIEWS", "Identity", "review"]

TOKEN_REVIEWS: Final = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller (TokenReview ``status.user``)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()


async def review(kube: client.Kube, token: str, *, audiences: Sequence[str] = ()) -> Identity | None:
    """The identity the token authenticates, or None when the API server does not accept it.

    Raises joch.kube.errors.KubeError when the review itself fails (the API server unreachable, the
    operator not allowed to create TokenReviews)."""
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = list(audiences)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
    answer: dict[str, Any] = await kube.request("POST", TOKEN_REVIEWS, body=body)
    status = answer.get("status") or {}
    if status.get("authenticated") is not True:
        return None
    user = status.get("user") or {}
    username = user.get("username")
    if not isinstance(username, str) or not username:
        return None
    groups = user.get("groups") or ()
    return Identity(
        username=username,
        uid=str(user.get("uid") or ""),
        groups=tuple(g for g in groups if isinstance(g, str)),
    )
