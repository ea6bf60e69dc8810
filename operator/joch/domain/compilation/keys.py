"""Object identity used across compilation: ``ObjectKey(kind, namespace, name)``.

``namespace`` is None for cluster-scoped kinds (FrameworkAdapter, Environment, Team, and the core
Namespace). Keys are what the controller indexes dependants by (``Gathered.dependencies``), so a key may
name an object that does not exist (yet): a missing reference is a dependency too (decision D10).
"""

from __future__ import annotations

import dataclasses

from joch.api.v1alpha1 import meta

__all__ = ["ObjectKey", "key_of"]


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectKey:
    """A kind plus a namespaced (or cluster-scoped) name."""

    kind: str
    namespace: str | None
    name: str

    def sort_key(self) -> tuple[str, str, str]:
        """Total order for deterministic output (cluster-scoped keys sort as namespace '')."""
        return (self.kind, self.namespace or "", self.name)

    def __str__(self) -> str:
        if self.namespace is None:
            return f"{self.kind}/{self.name}"
        return f"{self.kind}/{self.namespace}/{self.name}"


def key_of(obj: meta.Resource) -> ObjectKey:
    """The key of a parsed object; its scope comes from the kind's CRD info."""
    crd = type(obj).crd
    namespace = obj.metadata.namespace if crd.scope == "Namespaced" else None
    return ObjectKey(crd.kind, namespace, obj.metadata.name or "")
