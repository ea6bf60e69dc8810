"""Raw objects as the API server sends them (watch events, LIST items), for the decision tests: presets
over the one factory per kind in tests/factories.py."""

from __future__ import annotations

from typing import Any

from joch.api.v1alpha1 import meta
from joch.decision_service import preview
from joch.domain import compilation
from tests import factories, helpers

DENY_SHELL = {"when": {"tool.name": "shell.exec"}, "action": {"deny": True, "reason": "no shell"}}
DENY_OPENAI = {"when": {"model.provider": "openai"}, "action": {"deny": True, "reason": "no OpenAI here"}}
NOT_ALLOWLISTED = {
    "when": {"model.provider": "not-allowlisted"},
    "action": {"deny": True, "reason": "provider not allow-listed"},
}


def policy(
    name: str = "caps",
    namespace: str = "support",
    *,
    rules: list[dict[str, Any]] | None = None,
    generation: int = 1,
    uid: str | None = None,
    match_labels: dict[str, str] | None = None,
    applies_to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Policy as the API server sends it (tests.factories.policy, with a uid and resourceVersion);
    by default it denies shell.exec. ``match_labels`` is shorthand for an Agent label selector."""
    if applies_to is None and match_labels is not None:
        applies_to = {"agents": {"selector": {"matchLabels": match_labels}}}
    doc = factories.policy(
        name,
        rules if rules is not None else [DENY_SHELL],
        namespace=namespace,
        applies_to=applies_to,
        generation=generation,
        uid=uid or f"uid-{namespace}-{name}",
    )
    doc["metadata"]["resourceVersion"] = str(generation)
    return doc


def environment(
    name: str = "prod",
    *,
    allowed_providers: list[str] | None = None,
    policies: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """An Environment as the API server sends it (tests.factories.environment, with a uid)."""
    return factories.environment(name, allowed=allowed_providers, policies=policies, uid=f"uid-env-{name}")


def context(
    *,
    namespace: str = "support",
    labels: dict[str, str] | None = None,
    environment: str | None = None,
    **parts: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hook": "toolCallRequest",
        "agent": {"name": "triage", "namespace": namespace, "labels": labels or {"team": "support-platform"}},
    }
    if environment is not None:
        out["environment"] = {"name": environment}
    out.update(parts)
    return out


def snapshot(docs: list[dict[str, Any]] | None = None) -> preview.Snapshot:
    """examples/ (or ``docs``) as a cluster snapshot: the compiler's kinds parsed, Namespace labels kept."""
    docs = docs if docs is not None else helpers.example_documents()
    objects: list[meta.Resource] = []
    labels: dict[str, dict[str, str]] = {}
    kinds = {(k.crd.api_version, k.crd.kind): k for k in compilation.COMPILE_KINDS}
    for doc in docs:
        if doc["kind"] == "Namespace":
            labels[doc["metadata"]["name"]] = doc["metadata"].get("labels", {})
        elif (model := kinds.get((doc["apiVersion"], doc["kind"]))) is not None:
            objects.append(model.model_validate(doc))
    return preview.Snapshot(tuple(objects), labels)
