"""The caller's bearer token of an HTTP request, for the servers that act as their callers (the /v1 API)
or authenticate them (the decision service): one reading of ``Authorization`` and one refusal of
``Impersonate-*`` headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_TOKEN_BYTES", "BearerRefused", "bearer_token"]

MAX_TOKEN_BYTES: Final = 16 * 1024
"""A bearer token longer than this is refused before it is sent anywhere."""


class BearerRefused(Exception):
    """No usable token: ``status`` (400 for impersonation headers, 401 otherwise), a ``code`` and why."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of ``Authorization: Bearer <token>``. A caller is who its token says: any
    ``Impersonate-*`` header is refused (400); no, or a malformed, token is a 401."""
    for header in headers:
        if header.lower().startswith("impersonate-"):
            raise BearerRefused(
                400,
                "ImpersonationRefused",
                f"header {header}: a caller is who its token says; impersonation headers are refused",
                {"header": header},
            )
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise BearerRefused(401, "Unauthorized", "an Authorization: Bearer <token> header is required")
    if len(token) > MAX_TOKEN_BYTES or any(c.isspace() or not c.isprintable() for c in token):
        raise BearerRefused(401, "Unauthorized", "the bearer token is malformed")
    return token
