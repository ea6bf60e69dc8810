"""One factory per joch kind: the raw object (a plain dict, as the API server stores and sends it).

    policy("no-shell", [{"when": {"tool.name": "shell.exec"}, "action": "deny"}], namespace="team-a")
    agent(labels={"env": "prod"}, modelRoute=None)          # spec overrides; None deletes a key
    parse(agent())                                            # -> joch.api.v1alpha1.Agent

Every factory takes the object's ``name`` first, then keyword arguments for its metadata (``namespace``,
``labels``, ``generation``, ``uid``, ``status``) and for the spec: ``**spec`` is merged recursively into
the kind's defaults (a value of None deletes the key), and a few kinds take named shortcuts
(``route(primary=..., fallback=...)``, ``policy(rules, applies_to=...)``). A dict is the most general form:
tests can build objects the models would reject (duplicates, bad types) and hand them to admission.

The defaults describe one consistent fleet, the worked example of the docs: the Agent support-triage in
namespace ``support`` using adapter py-sdk, route research-default (openai:gpt-5-thinking), Tool
zendesk.search and MCP server github.

A test suite with a fleet of its own names (tests/unit/compilation) derives typed variants with
:func:`preset`: the same factory, other defaults, returning parsed models.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta

__all__ = [
    "ADAPTER_CAPABILITIES",
    "MODEL_CAPABILITIES",
    "NOOP_RULES",
    "NS",
    "adapter",
    "agent",
    "approval",
    "budget",
    "deployment",
    "environment",
    "eval_",
    "execution",
    "knowledge_source",
    "mcp_server",
    "memory",
    "merge",
    "model",
    "obj",
    "overlay",
    "parse",
    "policy",
    "preset",
    "rag",
    "route",
    "secret",
    "team",
    "tool",
    "trace",
]

Doc = dict[str, Any]

NS = "support"
"""The namespace of the example fleet."""

ADAPTER_CAPABILITIES: Mapping[str, bool] = {
    "toolBinding": True,
    "mcpBinding": True,
    "modelRouterBinding": True,
    "a2a": True,
}
MODEL_CAPABILITIES: Mapping[str, bool] = {
    "text": True,
    "toolCalling": True,
    "structuredOutput": True,
    "streaming": True,
}
NOOP_RULES: list[dict[str, Any]] = [{"when": {"cost.runUsd": ">1000"}, "action": "deny"}]
"""Rules that never fire before run time (cost is runtime-only, so preflight skips them)."""


# --- building blocks ---------------------------------------------------------------------------------


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Doc:
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


def overlay(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Doc:
    """Recursive merge that keeps None values (so a later :func:`merge` still deletes those keys)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
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
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
) -> Doc:
    """Any kind by name. ``namespace`` is dropped for cluster-scoped kinds; None values are left out."""
    model = v1alpha1.kind_named(kind)
    assert model is not None, f"no joch kind {kind}"
    metadata: Doc = {"name": name}
    if model.crd.scope == "Namespaced" and namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if generation is not None:
        metadata["generation"] = generation
    if uid is not None:
        metadata["uid"] = uid
    doc: Doc = {"apiVersion": model.crd.api_version, "kind": kind, "metadata": metadata, "spec": dict(spec)}
    if status is not None:
        doc["status"] = copy.deepcopy(dict(status))
    return doc


def parse(doc: Mapping[str, Any]) -> meta.Resource:
    """The model of ``doc``, status included (as the operator's store keeps Evals and Approvals)."""
    model = v1alpha1.kind_for(str(doc.get("apiVersion")), str(doc.get("kind")))
    assert model is not None, f"no joch kind {doc.get('apiVersion')} {doc.get('kind')}"
    return model.model_validate(doc)


def preset(
    factory: Callable[..., Doc], *, uid_prefix: str | None = None, **defaults: Any
) -> Callable[..., Any]:
    """``factory`` with other defaults, returning the parsed model.

    ``defaults`` name the factory's parameters (including its positional ones, e.g. ``name``); keys that
    are not parameters are spec defaults, merged under the caller's spec overrides (where None still
    deletes). With ``uid_prefix``, an object built without ``uid`` gets ``<prefix>-<namespace>-<name>``.
    """
    signature = inspect.signature(factory)
    params = signature.parameters
    spec_param = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
    named = {k: v for k, v in defaults.items() if k in params}
    spec_defaults = {k: v for k, v in defaults.items() if k not in params}
    assert spec_param is not None or not spec_defaults, f"{factory.__name__} takes no spec overrides"

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs)
        for key, value in named.items():
            bound.arguments.setdefault(key, copy.deepcopy(value))
        if spec_param is not None:
            bound.arguments[spec_param] = overlay(spec_defaults, bound.arguments.get(spec_param, {}))
        doc = factory(*bound.args, **bound.kwargs)
        if uid_prefix is not None and "uid" not in doc["metadata"]:
            where = doc["metadata"].get("namespace", "cluster")
            doc["metadata"]["uid"] = f"{uid_prefix}-{where}-{doc['metadata']['name']}"
        return parse(doc)

    return build


# --- desired state -----------------------------------------------------------------------------------


def agent(
    name: str = "support-triage",
    namespace: str = NS,
    *,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """An Agent (labels default to ``{team: support}``; pass ``{}`` for none)."""
    base = {
        "framework": {"adapterRef": {"name": "py-sdk"}, "entrypoint": "./agent.py"},
        "modelRoute": {"routeRef": {"name": "research-default"}},
        "tools": [{"name": "zendesk.search"}],
        "mcpServers": [{"name": "github"}],
    }
    return obj(
        "Agent",
        name,
        merge(base, spec),
        namespace=namespace,
        labels=labels if labels is not None else {"team": "support"},
        generation=generation,
        uid=uid,
        status=status,
    )


def adapter(
    name: str = "py-sdk",
    *,
    capabilities: Mapping[str, bool] | None = None,
    bindings: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    **flags: bool,
) -> Doc:
    """A FrameworkAdapter: ``capabilities`` replaces :data:`ADAPTER_CAPABILITIES`, ``flags`` then override
    single ones (``adapter(mcpBinding=False)``); ``spec`` merges into the rest of the spec."""
    caps = dict(ADAPTER_CAPABILITIES if capabilities is None else capabilities)
    caps.update(flags)
    body: Doc = {"framework": "custom-python", "capabilities": caps}
    if bindings is not None:
        body["bindings"] = dict(bindings)
    return obj(
        "FrameworkAdapter",
        name,
        merge(body, spec or {}),
        namespace=None,
        generation=generation,
        uid=uid,
        status=status,
    )


def model(
    name: str = "gpt-5-thinking",
    provider: str = "openai",
    namespace: str = NS,
    *,
    capabilities: Mapping[str, bool] | None = None,
    context_window: int | None = 200_000,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """A Model addressed as ``<provider>:<name>`` (``context_window=None`` leaves spec.limits out)."""
    base: Doc = {
        "provider": provider,
        "model": f"{name}-id",
        "capabilities": dict(MODEL_CAPABILITIES if capabilities is None else capabilities),
    }
    if context_window is not None:
        base["limits"] = {"contextWindowTokens": context_window}
    return obj(
        "Model",
        name,
        merge(base, spec),
        namespace=namespace,
        labels=labels,
        generation=generation,
        uid=uid,
        status=status,
    )


def route(
    name: str = "research-default",
    namespace: str = NS,
    *,
    primary: str = "openai:gpt-5-thinking",
    fallback: Iterable[str] | None = (),
    requirements: Mapping[str, Any] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """A ModelRoute; an empty or None ``fallback`` leaves strategy.fallback out."""
    strategy: Doc = {"primary": primary}
    if fallback:
        strategy["fallback"] = list(fallback)
    base: Doc = {"strategy": strategy}
    if requirements is not None:
        base["requirements"] = dict(requirements)
    return obj(
        "ModelRoute",
        name,
        merge(base, spec),
        namespace=namespace,
        generation=generation,
        uid=uid,
        status=status,
    )


def tool(
    name: str = "zendesk.search",
    namespace: str = NS,
    *,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """A read-only function Tool."""
    base = {"type": "function", "sideEffects": {"level": "read_only"}}
    return obj(
        "Tool",
        name,
        merge(base, spec),
        namespace=namespace,
        labels=labels,
        generation=generation,
        uid=uid,
        status=status,
    )


def mcp_server(
    name: str = "github",
    namespace: str = NS,
    *,
    pinned_version: str | None = None,
    trust_score: float | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """An MCPServer over streamable HTTP; ``trust_score`` goes into status (what discovery observed)."""
    base: Doc = {"transport": "streamable_http", "endpoint": {"url": "https://mcp.example"}}
    if pinned_version is not None:
        base["security"] = {"pinnedVersion": pinned_version}
    observed = dict(status or {})
    if trust_score is not None:
        observed["trustScore"] = trust_score
    return obj(
        "MCPServer",
        name,
        merge(base, spec),
        namespace=namespace,
        generation=generation,
        uid=uid,
        status=observed or None,
    )


def memory(
    name: str = "scratch",
    namespace: str = NS,
    *,
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Doc:
    """A working Memory on redis."""
    base = {"type": "working", "backend": {"type": "redis"}}
    return obj("Memory", name, merge(base, spec), namespace=namespace, generation=generation, uid=uid)


def knowledge_source(
    name: str = "handbook",
    namespace: str = NS,
    *,
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Doc:
    """A web KnowledgeSource."""
    base = {"type": "web", "source": {"url": "https://docs.example.com"}}
    return obj(
        "KnowledgeSource", name, merge(base, spec), namespace=namespace, generation=generation, uid=uid
    )


def rag(
    name: str = "docs",
    namespace: str = NS,
    *,
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Doc:
    """A RAG over the KnowledgeSource handbook."""
    base = {"sources": [{"name": "handbook"}]}
    return obj("RAG", name, merge(base, spec), namespace=namespace, generation=generation, uid=uid)


def policy(
    name: str = "caps",
    rules: list[Any] | None = None,
    *,
    namespace: str = NS,
    applies_to: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    status: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """A Policy with ``rules`` (default :data:`NOOP_RULES`); ``applies_to`` None leaves appliesTo out (the
    policy then governs every Agent of its namespace)."""
    body: Doc = {"rules": copy.deepcopy(rules if rules is not None else NOOP_RULES)}
    if applies_to is not None:
        body["appliesTo"] = copy.deepcopy(dict(applies_to))
    return obj(
        "Policy",
        name,
        merge(body, spec),
        namespace=namespace,
        labels=labels,
        generation=generation,
        uid=uid,
        status=status,
    )


def environment(
    name: str = "dev",
    *,
    allowed: Iterable[str] | None = None,
    policies: Iterable[Mapping[str, str]] | None = None,
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Doc:
    """An Environment (cluster-scoped); ``allowed`` is spec.allowedProviders. None leaves either out."""
    body: Doc = {}
    if allowed is not None:
        body["allowedProviders"] = list(allowed)
    if policies is not None:
        body["policies"] = [dict(p) for p in policies]
    return obj("Environment", name, merge(body, spec), namespace=None, generation=generation, uid=uid)


def team(
    name: str = "support",
    *,
    namespaces: Iterable[str] = (NS,),
    default_policies: Iterable[str] = (),
    generation: int | None = 1,
    uid: str | None = None,
    **spec: Any,
) -> Doc:
    """A Team (cluster-scoped) owning ``namespaces``."""
    body = {"namespaces": list(namespaces), "defaultPolicies": list(default_policies)}
    return obj("Team", name, merge(body, spec), namespace=None, generation=generation, uid=uid)


def secret(name: str = "provider-keys", namespace: str = NS, **spec: Any) -> Doc:
    """A joch Secret (a reference to a Kubernetes Secret key; never a value)."""
    base = {"source": {"type": "kubernetes", "name": name, "key": "api-key"}}
    return obj("Secret", name, merge(base, spec), namespace=namespace)


def budget(name: str = "support-monthly", namespace: str = NS, **spec: Any) -> Doc:
    """A Budget of the team support."""
    base = {"scope": {"teams": ["support"]}, "limits": {"monthlyUsd": 100}}
    return obj("Budget", name, merge(base, spec), namespace=namespace)


# --- promotion and runtime ---------------------------------------------------------------------------


def deployment(
    name: str = "triage",
    *,
    agent: str = "support-triage",
    namespace: str = NS,
    promotion: Mapping[str, Any] | None = None,
    **spec: Any,
) -> Doc:
    """A joch Deployment of ``agent``; ``promotion`` becomes spec.promotion."""
    body: Doc = {"agentRef": {"name": agent}, "replicas": 2}
    if promotion is not None:
        body["promotion"] = dict(promotion)
    return obj("Deployment", name, merge(body, spec), namespace=namespace)


def eval_(
    name: str = "triage-quality",
    *,
    target: str = "support-triage",
    namespace: str = NS,
    thresholds: Mapping[str, Any] | None = None,
    phase: str | None = "Passed",
    scores: Mapping[str, float] | None = None,
    agent_generation: int | None = 1,
    **spec: Any,
) -> Doc:
    """An Eval of ``target`` with metrics accuracy and pii_leakage and one recorded run (``phase``; None
    means no status) for ``agent_generation`` (None: unrecorded)."""
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
    status = None
    if phase is not None:
        measured = dict(scores) if scores is not None else {"accuracy": 0.93, "pii_leakage": 0.0}
        run: Doc = {"execution": f"{name}-run", "trigger": "manual", "phase": phase, "scores": measured}
        if agent_generation is not None:
            run["agentGeneration"] = agent_generation
        if phase != "Running":
            run["completedAt"] = "2025-01-01T00:00:00Z"
        status = {"phase": phase, "runs": [run]}
        if phase != "Running":
            status.update(lastRunAt="2025-01-01T00:00:00Z", scores=measured)
    return obj("Eval", name, merge(base, spec), namespace=namespace, status=status)


def approval(
    name: str = "promote-triage",
    *,
    namespace: str = NS,
    deployment: str | None = "triage",
    approvers: Iterable[str] = ("team:release-manager",),
    phase: str | None = "Approved",
    decision: str | None = "approve",
    action: str = "promotion",
) -> Doc:
    """An Approval linked to ``deployment`` by label (None: unlabelled); ``phase`` None means no status."""
    action_body: Doc = {"type": action}
    if action == "tool_call":
        action_body["toolCallRef"] = {"name": "call-1"}
    status: Doc | None = None
    if phase is not None:
        status = {"phase": phase}
        if decision is not None:
            status.update(decision=decision, decidedBy="user:alice", decidedAt="2025-01-01T00:00:00Z")
    return obj(
        "Approval",
        name,
        {"action": action_body, "routing": {"approvers": list(approvers)}},
        namespace=namespace,
        labels={"joch.dev/deployment": deployment} if deployment is not None else None,
        status=status,
    )


def execution(name: str = "run-1", *, agent: str = "support-triage", namespace: str = NS, **spec: Any) -> Doc:
    """An Execution of ``agent``."""
    return obj("Execution", name, merge({"agentRef": {"name": agent}}, spec), namespace=namespace)


def trace(
    name: str = "t",
    *,
    execution: str = "run-1",
    namespace: str = NS,
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> Doc:
    """A Trace of ``execution``."""
    base = {"executionRef": {"name": execution}}
    return obj("Trace", name, merge(base, spec), namespace=namespace, labels=labels)
