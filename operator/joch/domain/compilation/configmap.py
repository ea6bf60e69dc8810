"""The ConfigMap that stores a CompiledAgentManifest (decision D7), and which old ones to delete.

One ConfigMap per manifest, in the Agent's namespace, named like the manifest (``<agent>-g<generation>``)::

    metadata:
      name: support-triage-g14
      namespace: support
      labels:
        app.kubernetes.io/managed-by: joch
        app.kubernetes.io/component: compiled-agent-manifest
        joch.dev/agent: support-triage          # agent_label_value(): names over 63 chars are shortened
        joch.dev/generation: "14"
      annotations:
        joch.dev/manifest-sha256: <sha256 of the canonical JSON>
        joch.dev/source-hash: <spec.sourceHash>
      ownerReferences: [{apiVersion: joch.dev/v1alpha1, kind: Agent, name, uid,
                         controller: true, blockOwnerDeletion: false}]
    data:
      manifest.yaml: <Compiled.manifest_yaml, byte for byte>

A recompile caused by a dependency keeps the name and rewrites the ConfigMap (new sha and source hash).
Retention: the newest ``keep`` generations (settings.keep_manifests, default 3) are kept; the operator
deletes the rest itself (:func:`stale_manifests`), it does not rely on garbage collection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from joch.domain.compilation.compiler import Compiled

__all__ = [
    "AGENT_LABEL",
    "COMPONENT",
    "DATA_KEY",
    "GENERATION_LABEL",
    "SHA_ANNOTATION",
    "SOURCE_HASH_ANNOTATION",
    "agent_label_value",
    "desired_configmap",
    "generation_from_labels",
    "manifest_selector",
    "stale_manifests",
]

DATA_KEY: Final = "manifest.yaml"
AGENT_LABEL: Final = "joch.dev/agent"
GENERATION_LABEL: Final = "joch.dev/generation"
SHA_ANNOTATION: Final = "joch.dev/manifest-sha256"
SOURCE_HASH_ANNOTATION: Final = "joch.dev/source-hash"
COMPONENT: Final = "compiled-agent-manifest"
_MAX_LABEL: Final = 63


def agent_label_value(agent_name: str) -> str:
    """The ``joch.dev/agent`` label value: the name itself when it fits a label (63 characters), else its
    first 52 characters, '-' and 10 hex digits of its sha256 (stable, and still unique in practice)."""
    if len(agent_name) <= _MAX_LABEL:
        return agent_name
    digest = hashlib.sha256(agent_name.encode()).hexdigest()[:10]
    return f"{agent_name[:52].rstrip('.-')}-{digest}"


def manifest_selector(agent_name: str) -> str:
    """Label selector listing every CAM ConfigMap of one Agent (for retention)."""
    return f"app.kubernetes.io/component={COMPONENT},{AGENT_LABEL}={agent_label_value(agent_name)}"


def desired_configmap(compiled: Compiled, agent_uid: str) -> dict[str, Any]:
    """The ConfigMap to create or replace for ``compiled`` (a plain dict, ready for the API)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": compiled.name,
            "namespace": compiled.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "joch",
                "app.kubernetes.io/component": COMPONENT,
                AGENT_LABEL: agent_label_value(compiled.agent_name),
                GENERATION_LABEL: str(compiled.generation),
            },
            "annotations": {
                SHA_ANNOTATION: compiled.sha256,
                SOURCE_HASH_ANNOTATION: compiled.source_hash,
            },
            "ownerReferences": [
                {
                    "apiVersion": "joch.dev/v1alpha1",
                    "kind": "Agent",
                    "name": compiled.agent_name,
                    "uid": agent_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {DATA_KEY: compiled.manifest_yaml},
    }


def generation_from_labels(labels: Mapping[str, str] | None) -> int | None:
    """The generation a CAM ConfigMap was labelled with, or None when the label is absent or malformed."""
    raw = (labels or {}).get(GENERATION_LABEL)
    if raw is None or not raw.isdigit():
        return None
    return int(raw)


def stale_manifests(existing: Iterable[tuple[str, int]], keep: int = 3) -> list[str]:
    """Names of the CAM ConfigMaps to delete: all but those of the newest ``keep`` generations.

    ``existing`` holds (ConfigMap name, generation) for one Agent. The result is sorted oldest first
    (then by name), so deletions are deterministic. Several ConfigMaps with one generation (not made by
    this operator) are kept or deleted together.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    items = list(existing)
    newest = set(sorted({generation for _, generation in items}, reverse=True)[:keep])
    return [
        name for name, generation in sorted(items, key=lambda i: (i[1], i[0])) if generation not in newest
    ]
