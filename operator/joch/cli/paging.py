"""Listing a collection page by page (``limit`` + ``continue``), as every ``ls`` command of the CLI does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from joch.kube.rest import Answer

__all__ = ["PAGE", "ApiCaller", "ListFailed", "Refused", "Unserved", "list_all"]

PAGE: Final = 500


class ApiCaller(Protocol):
    """What the commands need of :class:`joch.kube.rest.Cluster` (tests hand in a fake)."""

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Answer: ...


class ListFailed(Exception):
    """The collection could not be listed; the message says why, for a user."""


class Unserved(ListFailed):
    """404: the cluster does not serve the kind (its CRD is not installed)."""


class Refused(ListFailed):
    """The API server answered with another error (RBAC, say)."""


def list_all(
    cluster: ApiCaller, path: str, *, kind: str, api_version: str, page: int = PAGE
) -> list[dict[str, Any]]:
    """Every item of the collection at ``path`` (``kind``: the plural name used in messages, e.g.
    Budgets), following ``continue`` tokens."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {"limit": str(page), **({"continue": token} if token else {})}
        answer = cluster.call("GET", path, query=query)
        if answer.status == 404:
            raise Unserved(f"the cluster does not serve {kind} ({api_version}): is Joch installed?")
        if answer.error is not None:
            raise Refused(f"cannot list {kind}: {answer.error}")
        body = answer.body if isinstance(answer.body, dict) else {}
        items.extend(item for item in body.get("items") or () if isinstance(item, dict))
        token = str((body.get("metadata") or {}).get("continue") or "")
        if not token:
            return items
