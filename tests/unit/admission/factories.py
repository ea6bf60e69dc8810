"""Raw objects (what the API server sends to a webhook) and worlds for admission tests.

Each factory returns a plain dict with sensible defaults; keyword overrides merge into ``spec``
(a value of None deletes the key). ``fleet()`` is a consistent support-triage style world in namespace
``support``: adapter, models, route, tools, MCP server, memory, an Environment per name, one Agent.
The documented scenario lives in ``prod_scenario()``.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.domain.admission import ALL_KINDS, Admission, Request, World
from joch.domain.compilation import Catalog
from joch.domain.settings import OperatorSettings

NS = "support"
SETTINGS = OperatorSettings()


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge; an override value of None deletes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def obj(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    namespace: str | None = NS,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
) -> dict[str, Any]:
    model = v1alpha1.kind_named(kind)
    assert model is not None, kind
    metadata: dict[str, Any] = {"name": name}
    if model.crd.scope == "Namespaced" and namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if generation is not None:
        metadata["generation"] = generation
    return {"apiVersion": model.crd.api_version, "kind": kind, "metadata": metadata, "spec": dict(spec)}


def agent(
    name: str = "support-triage", *, labels: Mapping[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    base = {
        "framework": {"adapterRef": {"name": "py-sdk"}, "entrypoint": "./agent.py"},
        "modelRoute": {"routeRef": {"name": "research-default"}},
        "tools": [{"name": "zendesk.search"}],
        "mcpServers": [{"name": "github"}],
    }
    return obj("Agent", name, merge(base, spec), labels=labels if labels is not None else {"team": "support"})


def adapter(name: str = "py-sdk", **capabilities: bool) -> dict[str, Any]:
    caps = {"toolBinding": True, "mcpBinding": True, "modelRouterBinding": True, "a2a": True}
    caps.update(capabilities)
    return obj("FrameworkAdapter", name, {"framework": "custom-python", "capabilities": caps}, namespace=None)


def model(name: str, provider: str, **spec: Any) -> dict[str, Any]:
    base = {
        "provider": provider,
        "model": f"{name}-id",
        "capabilities": {"text": True, "toolCalling": True, "structuredOutput": True, "streaming": True},
        "limits": {"contextWindowTokens": 200000},
    }
    return obj("Model", name, merge(base, spec))


def route(
    name: str = "research-default",
    primary: str = "openai:gpt-5-thinking",
    fallback: Iterable[str] = (),
    **spec: Any,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"primary": primary}
    if fallback:
        strategy["fallback"] = list(fallback)
    return obj("ModelRoute", name, merge({"strategy": strategy}, spec))


def tool(name: str = "zendesk.search", **spec: Any) -> dict[str, Any]:
    base = {"type": "function", "sideEffects": {"level": "read_only"}}
    return obj("Tool", name, merge(base, spec))


def mcp_server(name: str = "github", **spec: Any) -> dict[str, Any]:
    return obj(
        "MCPServer",
        name,
        merge({"transport": "streamable_http", "endpoint": {"url": "https://mcp.example"}}, spec),
    )


def policy(
    name: str,
    rules: list[Any],
    *,
    applies_to: Mapping[str, Any] | None = None,
    namespace: str = NS,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": rules, **extra}
    if applies_to is not None:
        spec["appliesTo"] = dict(applies_to)
    return obj("Policy", name, spec, namespace=namespace)


DENY_UNLISTED = [
    {
        "when": {"model.provider": "not-allowlisted"},
        "action": {"deny": True, "reason": "provider not allow-listed in this environment"},
    }
]


def environment(name: str, *, allowed: Iterable[str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(spec)
    if allowed is not None:
        body["allowedProviders"] = list(allowed)
    return obj("Environment", name, body, namespace=None)


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


def deployment(
    name: str = "triage",
    *,
    agent: str = "support-triage",
    promotion: Mapping[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A joch Deployment of ``agent``; ``promotion`` becomes spec.promotion."""
    body: dict[str, Any] = {"agentRef": {"name": agent}, "replicas": 2}
    if promotion is not None:
        body["promotion"] = dict(promotion)
    return obj("Deployment", name, merge(body, spec))


def eval_(
    name: str = "triage-quality",
    *,
    target: str = "support-triage",
    thresholds: Mapping[str, Any] | None = None,
    phase: str | None = "Passed",
    scores: Mapping[str, float] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An Eval of ``target`` with metrics accuracy and pii_leakage; ``phase`` None means no status."""
    base = {
        "target": {"kind": "Agent", "name": target},
        "dataset": {"type": "file", "uri": "./evals/cases.jsonl"},
        "metrics": [
            {"name": "accuracy", "type": "deterministic"},
            {"name": "pii_leakage", "type": "deterministic"},
        ],
        "thresholds": dict(thresholds)
        if thresholds is not None
        else {"accuracy": 0.9, "pii_leakage": "<=0.0"},
    }
    doc = obj("Eval", name, merge(base, spec))
    if phase is not None:
        doc["status"] = {
            "phase": phase,
            "lastRunAt": "2025-01-01T00:00:00Z",
            "scores": dict(scores) if scores is not None else {"accuracy": 0.93, "pii_leakage": 0.0},
        }
    return doc


def approval(
    name: str = "promote-triage",
    *,
    deployment: str | None = "triage",
    approvers: Iterable[str] = ("team:release-manager",),
    phase: str | None = "Approved",
    decision: str | None = "approve",
    action: str = "promotion",
) -> dict[str, Any]:
    """An Approval linked to ``deployment`` by label (None: unlabelled); ``phase`` None means no status."""
    action_body: dict[str, Any] = {"type": action}
    if action == "tool_call":
        action_body["toolCallRef"] = {"name": "call-1"}
    labels = {"joch.dev/deployment": deployment} if deployment is not None else None
    doc = obj(
        "Approval",
        name,
        {"action": action_body, "routing": {"approvers": list(approvers)}},
        labels=labels,
    )
    if phase is not None:
        status: dict[str, Any] = {"phase": phase}
        if decision is not None:
            status.update(decision=decision, decidedBy="user:alice", decidedAt="2025-01-01T00:00:00Z")
        doc["status"] = status
    return doc


def prod_scenario() -> list[dict[str, Any]]:
    """The documented scenario: prod allows only anthropic, and a policy denies non-allowlisted providers."""
    docs = [d for d in fleet() if d["kind"] != "Environment"]
    docs.append(environment("dev"))
    docs.append(environment("prod", allowed=["anthropic"], policies=[{"name": "allowlisted-providers-only"}]))
    docs.append(policy("allowlisted-providers-only", DENY_UNLISTED))
    return docs


def parse(doc: Mapping[str, Any]) -> meta.Resource:
    """The model of ``doc``, status included (as the operator's store keeps Evals and Approvals)."""
    model_cls = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
    assert model_cls is not None
    return model_cls.model_validate(doc)


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
