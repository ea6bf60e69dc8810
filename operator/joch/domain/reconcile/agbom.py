"""The AgBOM service's plan for one Agent (pure): which AgBOM object, document ConfigMaps and statuses
should exist.

Storage: the AgBOM object ``<agent>`` (ops.joch.dev, owned by the Agent, created when absent) and one
ConfigMap per generation, ``<agent>-agbom-v<generation>``, data key ``bom.cdx.json``, owned by the AgBOM
object (so deleting the Agent removes all of it through the garbage collector), labelled
``joch.dev/agent`` and ``joch.dev/agbom-generation``, annotated with the document's sha256 and its
content hash (the document without timestamp and version). The newest :data:`KEEP` generations stay.

Generations: the next generation is one more than the newest known (the AgBOM status or, when the
status was lost, the newest ConfigMap); a generation is made only when the content hash differs from
the newest one's. A ConfigMap written before a crash, whose status never followed, is adopted as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.agbom import AgBOM
from joch.api.v1alpha1.agent import Agent
from joch.domain.agbom import HighRisk
from joch.domain.compilation import configmap as cam
from joch.domain.reconcile.status import condition, merge_conditions

__all__ = [
    "AGBOM_FIELDS",
    "COMPONENT",
    "CONTENT_ANNOTATION",
    "DOCUMENT_KEY",
    "GENERATION_LABEL",
    "KEEP",
    "SELECTOR",
    "SHA_ANNOTATION",
    "Document",
    "agbom_status",
    "configmap_name",
    "desired_agbom",
    "desired_configmap",
    "doomed",
    "new_risks",
    "pending_status",
]

DOCUMENT_KEY: Final = "bom.cdx.json"
COMPONENT: Final = "agbom"
SELECTOR: Final = f"app.kubernetes.io/component={COMPONENT}"
GENERATION_LABEL: Final = "joch.dev/agbom-generation"
SHA_ANNOTATION: Final = "joch.dev/agbom-sha256"
CONTENT_ANNOTATION: Final = "joch.dev/agbom-content-hash"
KEEP: Final = 5
"""Generations of documents kept per Agent."""
AGBOM_FIELDS: Final = (
    "phase",
    "observedGeneration",
    "conditions",
    "generation",
    "lastGeneratedAt",
    "contentHash",
    "artifacts",
    "highRiskComponents",
    "highRiskCount",
)
"""The AgBOM status fields the service owns."""
_CONDITIONS: Final = ("Ready", "Complete")
_MAX_NAME: Final = 253


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One stored generation (what the service remembers of its ConfigMap)."""

    namespace: str
    name: str
    agent: str
    generation: int
    sha256: str
    content_hash: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Document | None:
        """What a listed AgBOM ConfigMap says (None when it is not one of the service's)."""
        metadata = body.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        try:
            generation = int(labels.get(GENERATION_LABEL, ""))
        except ValueError:
            return None
        agent = labels.get(cam.AGENT_LABEL)
        sha, content = annotations.get(SHA_ANNOTATION), annotations.get(CONTENT_ANNOTATION)
        if not agent or not sha or not content or generation < 1:
            return None
        return cls(
            metadata.get("namespace") or "", metadata.get("name") or "", agent, generation, sha, content
        )


def configmap_name(agent: str, generation: int) -> str:
    """``<agent>-agbom-v<generation>``; an Agent name too long for that is cut (its uid-derived AgBOM
    serial number, not the name, identifies the document)."""
    suffix = f"-agbom-v{generation}"
    return agent[: _MAX_NAME - len(suffix)].rstrip("-.") + suffix


def desired_agbom(agent: Agent, agent_uid: str) -> dict[str, Any]:
    """The AgBOM object the service creates for an Agent that has none."""
    name = agent.metadata.name or ""
    return {
        "apiVersion": AgBOM.crd.api_version,
        "kind": "AgBOM",
        "metadata": {
            "name": name,
            "namespace": agent.metadata.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "joch",
                cam.AGENT_LABEL: cam.agent_label_value(name),
            },
            "ownerReferences": [
                {
                    "apiVersion": Agent.crd.api_version,
                    "kind": "Agent",
                    "name": name,
                    "uid": agent_uid,
                    "controller": True,
                }
            ],
        },
        "spec": {"agentRef": {"name": name}},
    }


def desired_configmap(
    *, namespace: str, agent: str, agbom_uid: str, generation: int, text: str, sha256: str, content_hash: str
) -> dict[str, Any]:
    """The ConfigMap holding one generation's CycloneDX document."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(agent, generation),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "joch",
                "app.kubernetes.io/component": COMPONENT,
                cam.AGENT_LABEL: cam.agent_label_value(agent),
                GENERATION_LABEL: str(generation),
            },
            "annotations": {SHA_ANNOTATION: sha256, CONTENT_ANNOTATION: content_hash},
            "ownerReferences": [
                {
                    "apiVersion": AgBOM.crd.api_version,
                    "kind": "AgBOM",
                    "name": agent,
                    "uid": agbom_uid,
                    "controller": True,
                }
            ],
        },
        "data": {DOCUMENT_KEY: text},
    }


def doomed(generations: Iterable[int], *, keep: int = KEEP) -> list[int]:
    """The generations to delete: all but the newest ``keep``."""
    return sorted(generations, reverse=True)[keep:]


def agbom_status(
    *,
    document: Document,
    generated_at: str,
    high_risk: Sequence[HighRisk],
    complete: bool,
    missing: Sequence[str],
    observed_generation: int | None,
    notes: Sequence[str],
    current: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """The AgBOM status for its newest generation. ``notes`` are what the spec asks for that is not done
    (formats other than CycloneDX, refresh on change switched off)."""
    risks = ", ".join(f"{item.kind} {item.name}" for item in high_risk)
    message = f"generation {document.generation} in ConfigMap {document.name}"
    if high_risk:
        message += f"; high risk: {risks}"
    if notes:
        message += "; " + "; ".join(notes)
    if complete:
        completeness = condition("Complete", "True", "AllResolved", "every reference resolved", None)
    else:
        completeness = condition(
            "Complete", "False", "MissingReferences", "not resolved: " + ", ".join(missing), None
        )
    conditions = [condition("Ready", "True", "Generated", message, observed_generation), completeness]
    out: dict[str, Any] = {
        "phase": "Ready",
        "conditions": merge_conditions(conditions, current.get("conditions"), now, owned=_CONDITIONS),
        "generation": document.generation,
        "lastGeneratedAt": generated_at,
        "contentHash": document.content_hash,
        "artifacts": {
            "cyclonedx": {"configMap": document.name, "key": DOCUMENT_KEY, "sha256": document.sha256}
        },
        "highRiskComponents": [item.wire() for item in high_risk],
        "highRiskCount": len(high_risk),
    }
    if observed_generation is not None:
        out["observedGeneration"] = observed_generation
    return out


def pending_status(
    reason: str, message: str, *, observed_generation: int | None, current: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """The status of an AgBOM that cannot be generated (its Agent is missing, or it names another);
    an earlier generation, if any, stays recorded."""
    ready = condition("Ready", "False", reason, message, observed_generation)
    out: dict[str, Any] = {
        **{key: current[key] for key in AGBOM_FIELDS if key in current},
        "phase": "Pending" if reason == "AgentNotFound" else "Failed",
        "conditions": merge_conditions([ready], current.get("conditions"), now, owned=("Ready",)),
    }
    if observed_generation is not None:
        out["observedGeneration"] = observed_generation
    return out


def new_risks(before: Mapping[str, Any], risks: Sequence[HighRisk]) -> list[HighRisk]:
    """The high-risk components not in the stored status (each is worth a Warning Event once)."""
    seen = {
        (item.get("kind"), item.get("name"))
        for item in before.get("highRiskComponents") or ()
        if isinstance(item, Mapping)
    }
    return [item for item in risks if (item.kind, item.name) not in seen]
