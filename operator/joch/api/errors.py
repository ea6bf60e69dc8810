"""The error shape of Joch's HTTP APIs (the /v1 API, the decision service): one definition."""

from __future__ import annotations

from typing import Any

__all__ = ["error_body"]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"}}``: ``code`` for clients to branch on, ``message`` for a
    human, ``details`` (an object, empty when there are none)."""
    return {"error": {"code": code, "message": message, "details": details or {}}}
