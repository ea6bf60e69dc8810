"""The /v1 error shape: ``{"error": {"code", "message", "details"}}`` with the HTTP status it goes with."""

from __future__ import annotations

from typing import Any, Final

from joch.api.errors import error_body as body
from joch.kube import errors as kube_errors

__all__ = ["ApiError", "body", "code_for", "from_kube"]

_CODES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    413: "TooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "Unavailable",
}


class ApiError(Exception):
    """An answer other than success: ``status``, a ``code`` clients branch on, a message for a human."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def from_kube(exc: kube_errors.KubeError) -> ApiError:
    """The kube-apiserver's refusal, passed on with its status (a 5xx or no answer: 503)."""
    status = exc.status if 400 <= exc.status < 500 else 503
    message = exc.message
    # "GET /apis/...: message": the caller asked for /v1, the upstream path is noise to them.
    head, sep, rest = message.partition(": ")
    if sep and head.split(" ", 1)[0] in {"GET", "POST", "PATCH", "PUT", "DELETE"}:
        message = rest
    code = _CODES.get(status, "Error")
    if status == 409 and exc.reason == "AlreadyExists":
        code = "AlreadyExists"
    return ApiError(status, code, message, {"reason": exc.reason} if exc.reason else None)


def code_for(status: int) -> str:
    return _CODES.get(status, "Error")
