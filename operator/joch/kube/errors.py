"""Errors raised by joch.kube: API server failures translated into joch terms.

Nothing above joch.kube sees ``kubernetes.client.ApiException`` or urllib3 errors; :func:`translate`
turns them into this tree (the original is chained as ``__cause__``)::

    KubeError                      any failure talking to the API server
    +-- NotFound                   404: the object (or its namespace, or its CRD) does not exist
    +-- Conflict                   409: resourceVersion mismatch on update
    |   +-- AlreadyExists          409 with reason AlreadyExists on create
    +-- Forbidden                  401/403: RBAC or authentication
    +-- Invalid                    422 (and 400): the object is rejected (schema, CEL rule, bad patch)
    +-- TooManyRequests            429: API priority and fairness; ``retry_after`` seconds (Retry-After)
    +-- ServerError                5xx
    +-- Unavailable                no HTTP answer at all (connection refused, reset, timeout)
    +-- ConfigError                no usable kubeconfig / in-cluster configuration

``transient`` is True for errors worth retrying with backoff (429, 5xx, Unavailable, Conflict).
Messages carry the API server's Status message, truncated to 256 characters (foreign payloads).
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "KubeError",
    "NotFound",
    "ServerError",
    "TooManyRequests",
    "Unavailable",
    "from_status",
    "truncate",
]

MAX_FOREIGN: Final = 256
DEFAULT_RETRY_AFTER: Final = 1.0


def truncate(text: str, limit: int = MAX_FOREIGN) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) for logs and messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class KubeError(Exception):
    """A request to the API server failed. ``status`` is the HTTP status (0 when there was none)."""

    transient: bool = False

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """404: the object, its namespace or its resource type does not exist."""


class Conflict(KubeError):
    """409: the object changed since it was read (stale resourceVersion)."""

    transient = True


class AlreadyExists(Conflict):
    """409 AlreadyExists: create of an object that exists."""

    transient = False


class Forbidden(KubeError):
    """401/403: the operator's identity may not do this."""


class Invalid(KubeError):
    """400/422: the API server rejects the object or the patch."""


class TooManyRequests(KubeError):
    """429: the API server asks to slow down; retry after ``retry_after`` seconds."""

    transient = True

    def __init__(self, message: str, *, retry_after: float, status: int = 429, reason: str = "") -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class ServerError(KubeError):
    """5xx from the API server."""

    transient = True


class Unavailable(KubeError):
    """No HTTP answer: connection refused or reset, TLS failure, timeout."""

    transient = True


class ConfigError(KubeError):
    """The client configuration cannot be loaded (kubeconfig missing or invalid, not in a cluster)."""


def _retry_after(headers: Any) -> float:
    raw = None
    if headers is not None:
        try:
            raw = headers.get("Retry-After")
        except AttributeError:
            raw = None
    try:
        value = float(raw) if raw is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        value = DEFAULT_RETRY_AFTER
    return max(0.0, value)


def _status_payload(body: Any) -> tuple[str, str]:
    """(message, reason) from a Kubernetes Status body, tolerating anything."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return "", ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return truncate(body), ""
    if not isinstance(parsed, dict):
        return truncate(body), ""
    return truncate(str(parsed.get("message") or "")), str(parsed.get("reason") or "")


_BY_STATUS: Final[dict[int, type[KubeError]]] = {
    400: Invalid,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


def from_status(status: int, *, body: Any = None, headers: Any = None, what: str = "") -> KubeError:
    """The joch error for an HTTP ``status`` with a Kubernetes Status ``body``."""
    message, reason = _status_payload(body)
    text = f"{what}: {message or f'HTTP {status}'}" if what else (message or f"HTTP {status}")
    if status == 429:
        return TooManyRequests(text, retry_after=_retry_after(headers), status=status, reason=reason)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(text, status=status, reason=reason)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else KubeError)
    return cls(text, status=status, reason=reason)
