"""Who calls the gRPC server: the bearer token of the call's metadata, as the REST API reads it.

gRPC metadata keys are lower case; :func:`headers_of` gives them to joch.kube.bearer as HTTP headers,
so the rules are the REST API's: ``authorization: Bearer <token>`` is required (missing or malformed:
UNAUTHENTICATED, code Unauthorized) and any ``impersonate-*`` key is refused (INVALID_ARGUMENT, code
ImpersonationRefused): a caller is who its token says.

- PolicyService and ext_authz: :func:`caller` checks the token with a TokenReview through the
  operator's client (joch.decision_service.callers.CallerGate: cached, fail closed) and, with
  ``decision_callers`` set, the user against that list (PERMISSION_DENIED otherwise);
- ResourceService: :func:`token` only takes the token; kube-apiserver authenticates it on every call
  made with it, and RBAC authorizes (the REST API's way).
"""

from __future__ import annotations

from typing import Any

import grpc

from joch.decision_service import callers
from joch.grpc import errors
from joch.kube import bearer

__all__ = ["caller", "headers_of", "token"]


def headers_of(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's text metadata as HTTP headers (``authorization`` as ``Authorization``)."""
    headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key.endswith("-bin") or not isinstance(value, str):
            continue
        headers["Authorization" if key == "authorization" else key] = value
    return headers


def token(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's bearer token; raises GrpcError (UNAUTHENTICATED, or INVALID_ARGUMENT for
    impersonation metadata)."""
    try:
        return bearer.bearer_token(headers_of(context))
    except bearer.BearerRefused as exc:
        raise errors.from_http(exc.status, exc.code, exc.message) from None


async def caller(gate: callers.CallerGate, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's user name, authenticated by ``gate`` (TokenReview); raises GrpcError."""
    try:
        return await gate(headers_of(context))
    except callers.Refused as exc:
        user = exc.details.get("user") if exc.details else None
        extra = {"user": str(user)} if user else {}
        raise errors.from_http(exc.status, exc.code, exc.message, (), **extra) from None
