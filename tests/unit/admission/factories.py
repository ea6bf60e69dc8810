"""Worlds, requests and AdmissionReviews for admission tests, over the factories of tests/factories.py.

The per-kind factories (``agent``, ``policy``, ``tool``...) are tests/factories.py's, re-exported here
unchanged: each returns the raw dict the API server would send, and the defaults are the worked
example in namespace ``support``. ``fleet()`` is a consistent support-triage world: adapter, models,
route, tools, MCP server, an Environment per name (dev, prod), for one Agent (``agent()``). The
documented scenario lives in ``prod_scenario()``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from joch.api import v1alpha1
from joch.domain.admission import ALL_KINDS, Admission, Request, World
from joch.domain.compilation import Catalog
from joch.domain.settings import OperatorSettings
from tests.factories import (
    NS,
    adapter,
    agent,
    approval,
    deployment,
    environment,
    eval_,
    mcp_server,
    merge,
    model,
    obj,
    parse,
    policy,
    route,
    tool,
)

__all__ = [
    "DENY_UNLISTED",
    "NS",
    "SETTINGS",
    "adapter",
    "admit",
    "agent",
    "approval",
    "deployment",
    "environment",
    "eval_",
    "fleet",
    "mcp_server",
    "merge",
    "model",
    "obj",
    "parse",
    "policy",
    "prod_scenario",
    "request",
    "review",
    "review_bytes",
    "route",
    "tool",
    "world",
]

SETTINGS = OperatorSettings()


DENY_UNLISTED = [
    {
        "when": {"model.provider": "not-allowlisted"},
        "action": {"deny": True, "reason": "provider not allow-listed in this environment"},
    }
]


def fleet() -> list[dict[str, Any]]:
    """A consistent world for one Agent (``agent()``) in namespace ``support``, environments dev and prod."""
    return [
        adapter(),
        model("gpt-5-thinking", "openai"),
        model("claude-sonnet", "anthropic"),
        route(),
        tool(),
        tool("zendesk.create-ticket", sideEffects={"level": "external_write"}),
        mcp_server(),
        environment("dev"),
        environment("prod"),
    ]


def prod_scenario() -> list[dict[str, Any]]:
    """The documented scenario: prod allows only anthropic, and a policy denies non-allowlisted providers."""
    docs = [d for d in fleet() if d["kind"] != "Environment"]
    docs.append(environment("dev"))
    docs.append(environment("prod", allowed=["anthropic"], policies=[{"name": "allowlisted-providers-only"}]))
    docs.append(policy("allowlisted-providers-only", DENY_UNLISTED))
    return docs


def world(
    docs: Iterable[Mapping[str, Any]] = (),
    *,
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    known_kinds: Iterable[str] = ALL_KINDS,
) -> World:
    catalog = Catalog(
        [parse(doc) for doc in docs],
        namespace_labels=namespace_labels,
        shared_namespaces=SETTINGS.shared_namespaces,
    )
    return World(catalog, known_kinds=known_kinds)


def request(
    doc: Mapping[str, Any], *, operation: str = "CREATE", old: Mapping[str, Any] | None = None
) -> Request:
    metadata = doc.get("metadata") or {}
    return Request(
        operation=operation,
        kind=str(doc.get("kind")),
        name=metadata.get("name"),
        namespace=metadata.get("namespace"),
        object=dict(doc),
        old_object=dict(old) if old is not None else None,
    )


def admit(doc: Mapping[str, Any], docs: Iterable[Mapping[str, Any]] = (), **kwargs: Any) -> Any:
    """Validate ``doc`` against a world of ``docs``; the Verdict."""
    labels = kwargs.pop("namespace_labels", None)
    return Admission(SETTINGS).validate(request(doc, **kwargs), world(docs, namespace_labels=labels))


def review(
    doc: Any,
    *,
    operation: str = "CREATE",
    old: Any = None,
    dry_run: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview (admission.k8s.io/v1) for ``doc`` as the API server would send it."""
    kind = v1alpha1.kind_named(str(doc.get("kind"))) if isinstance(doc, Mapping) else None
    group = kind.crd.group if kind is not None else "joch.dev"
    plural = kind.crd.plural if kind is not None else "unknowns"
    metadata = doc.get("metadata") if isinstance(doc, Mapping) else {}
    metadata = metadata if isinstance(metadata, Mapping) else {}
    body: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {
            "group": group,
            "version": "v1alpha1",
            "kind": doc.get("kind") if isinstance(doc, Mapping) else "Agent",
        },
        "resource": {"group": group, "version": "v1alpha1", "resource": plural},
        "operation": operation,
        "userInfo": {"username": "tester"},
        "object": doc,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if isinstance(metadata.get("name"), str):
        body["name"] = metadata["name"]
    if isinstance(metadata.get("namespace"), str):
        body["namespace"] = metadata["namespace"]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}


def review_bytes(doc: Any, **kwargs: Any) -> bytes:
    return json.dumps(review(doc, **kwargs)).encode()
