"""REST paths of the resource types joch talks to: every joch kind (from its CRD info) plus the few core
kinds the operator uses (Namespace, ConfigMap, Event).

    ResourceType.of(Agent).object_path("support", "triage", "status")
    # -> /apis/joch.dev/v1alpha1/namespaces/support/agents/triage/status
"""

from __future__ import annotations

import dataclasses
from typing import Final
from urllib.parse import quote

from joch.api.v1alpha1 import meta

__all__ = ["CONFIGMAPS", "CRDS", "EVENTS", "NAMESPACES", "ResourceType"]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource: API group ('' for core), version, plural, scope, and its Kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @classmethod
    def of(cls, model: type[meta.Resource]) -> ResourceType:
        """The resource type of a joch kind."""
        crd = model.crd
        return cls(crd.group, meta.VERSION, crd.plural, crd.kind, crd.scope == "Namespaced")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def _base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        """The list/create path; ``namespace`` None lists a namespaced type across all namespaces."""
        if self.namespaced and namespace is not None:
            return f"{self._base()}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self._base()}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str | None = None) -> str:
        """The path of one object (optionally of its ``subresource``, e.g. status)."""
        if self.namespaced and namespace is None:
            raise ValueError(f"{self.kind} is namespaced: a namespace is required")
        path = f"{self.collection_path(namespace if self.namespaced else None)}/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


NAMESPACES: Final = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
CRDS: Final = ResourceType(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
)
CONFIGMAPS: Final = ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True)
EVENTS: Final = ResourceType("", "v1", "events", "Event", namespaced=True)
