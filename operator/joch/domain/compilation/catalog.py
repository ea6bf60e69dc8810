"""What the compiler may look up: the :class:`Lookup` protocol and its in-memory twin :class:`Catalog`.

The operator implements :class:`Lookup` over its shared cache (``joch.domain.reconcile.cache.Store``: the
parsed objects of every watched kind, Policies and Teams by namespace, and the Namespace labels), which
the controllers and the admission webhooks read alike. ``joch compile`` and the unit tests use
:class:`Catalog`, built from parsed objects. Both answer
from memory; neither talks to the API server.

Contract of every method: pure reads, no I/O, answers reflect one consistent snapshot for the duration of
one ``gather`` call. Order of ``policies_in`` does not matter (the compiler sorts).

D6, model addresses: :func:`find_model` resolves ``provider:name`` in the route's namespace, then in each
shared namespace in the order the settings list them. A Model matches when its metadata.name is ``name``
and its spec.provider is ``provider``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.domain.compilation import keys

__all__ = [
    "COMPILE_KINDS",
    "Catalog",
    "CatalogError",
    "Lookup",
    "find_model",
    "model_candidates",
]

R = TypeVar("R", bound=meta.Resource)

COMPILE_KINDS: tuple[type[meta.Resource], ...] = (
    Agent,
    FrameworkAdapter,
    ModelRoute,
    Model,
    Tool,
    MCPServer,
    Memory,
    RAG,
    Policy,
    Environment,
    Team,
)
"""Every kind the compiler reads. A controller keeps an index of each (plus Namespace labels)."""


class Lookup(Protocol):
    """Read access to the objects compilation depends on (the operator's shared cache implements it)."""

    def get(self, kind: type[R], namespace: str | None, name: str) -> R | None:
        """The object of ``kind`` named ``name`` (``namespace`` None for cluster-scoped kinds), or None."""
        ...

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        """Every Policy in ``namespace`` (any order)."""
        ...

    def team_for_namespace(self, namespace: str) -> Team | None:
        """The Team whose spec.namespaces lists ``namespace``; when several do, the first by name."""
        ...

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        """Labels of the Namespace object (empty when unknown)."""
        ...


class CatalogError(ValueError):
    """An object cannot be added to a :class:`Catalog` (no namespace, no name, or a duplicate)."""


def model_candidates(namespace: str, shared_namespaces: Sequence[str]) -> list[str]:
    """Namespaces searched for a model address, in order (decision D6), without repeats."""
    return list(dict.fromkeys((namespace, *shared_namespaces)))


def find_model(
    lookup: Lookup, provider: str, name: str, namespace: str, shared_namespaces: Sequence[str]
) -> Model | None:
    """The Model addressed ``provider:name`` from a route in ``namespace`` (decision D6), or None."""
    for candidate in model_candidates(namespace, shared_namespaces):
        found = lookup.get(Model, candidate, name)
        if found is not None and found.spec.provider == provider:
            return found
    return None


class Catalog:
    """An in-memory :class:`Lookup` over parsed objects, plus Namespace labels.

    Objects are keyed by (kind, namespace, name); adding a second object with the same key raises
    :class:`CatalogError`. Namespaced objects must carry metadata.namespace.
    """

    def __init__(
        self,
        objects: Iterable[meta.Resource] = (),
        *,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        shared_namespaces: Sequence[str] = ("joch-system",),
    ) -> None:
        self._objects: dict[keys.ObjectKey, meta.Resource] = {}
        self._by_triple: dict[tuple[str, str | None, str], meta.Resource] = {}
        """The same objects by (kind, namespace, name): tuples hash faster than ObjectKeys."""
        self._sorted_policies: dict[str, list[Policy]] = {}
        self._team_of: dict[str, Team | None] = {}
        self._policies: dict[str, dict[str, Policy]] = {}
        self._teams: dict[str, Team] = {}
        self._labels: dict[str, dict[str, str]] = {
            ns: dict(labels) for ns, labels in (namespace_labels or {}).items()
        }
        self.shared_namespaces = tuple(shared_namespaces)
        for obj in objects:
            self.add(obj)

    def add(self, obj: meta.Resource) -> None:
        """Add one object; raises :class:`CatalogError` on a duplicate or a missing name/namespace."""
        crd = type(obj).crd
        if not obj.metadata.name:
            raise CatalogError(f"{crd.kind} without metadata.name")
        if crd.scope == "Namespaced" and not obj.metadata.namespace:
            raise CatalogError(f"{crd.kind}/{obj.metadata.name} has no metadata.namespace")
        key = keys.key_of(obj)
        if key in self._objects:
            raise CatalogError(f"{key} is defined twice")
        self._objects[key] = obj
        self._by_triple[(key.kind, key.namespace, key.name)] = obj
        if isinstance(obj, Policy):
            self._policies.setdefault(key.namespace or "", {})[key.name] = obj
            self._sorted_policies.pop(key.namespace or "", None)
        elif isinstance(obj, Team):
            self._teams[key.name] = obj
            self._team_of.clear()

    def set_namespace_labels(self, namespace: str, labels: Mapping[str, str]) -> None:
        """Replace the labels of ``namespace``."""
        self._labels[namespace] = dict(labels)

    def __iter__(self) -> Iterator[meta.Resource]:
        """Every object, sorted by key."""
        for key in sorted(self._objects, key=keys.ObjectKey.sort_key):
            yield self._objects[key]

    def __len__(self) -> int:
        return len(self._objects)

    # --- Lookup ----------------------------------------------------------------------------------------

    def get(self, kind: type[R], namespace: str | None, name: str) -> R | None:
        crd = kind.crd
        found = self._by_triple.get((crd.kind, None if crd.scope == "Cluster" else namespace, name))
        return found if isinstance(found, kind) else None

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        listed = self._sorted_policies.get(namespace)
        if listed is None:
            in_namespace = self._policies.get(namespace, {})
            listed = self._sorted_policies[namespace] = [in_namespace[name] for name in sorted(in_namespace)]
        return list(listed)

    def team_for_namespace(self, namespace: str) -> Team | None:
        if namespace in self._team_of:
            return self._team_of[namespace]
        found = None
        for name in sorted(self._teams):
            if namespace in (self._teams[name].spec.namespaces or ()):
                found = self._teams[name]
                break
        self._team_of[namespace] = found
        return found

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._labels.get(namespace, {})

    # --- conveniences ----------------------------------------------------------------------------------

    def labelled(self, kind: type[R], namespace: str, labels: Mapping[str, str]) -> list[R]:
        """The objects of ``kind`` in ``namespace`` carrying every one of ``labels``, sorted by name
        (admission's ``LabelIndex``: the promotion Approvals of a Deployment)."""
        crd = kind.crd
        out: dict[str, R] = {}
        for key, obj in self._objects.items():
            if key.kind != crd.kind or key.namespace != namespace or not isinstance(obj, kind):
                continue
            own = obj.metadata.labels or {}
            if all(own.get(k) == v for k, v in labels.items()):
                out[key.name] = obj
        return [out[name] for name in sorted(out)]

    def agents(self, namespace: str | None = None) -> list[Agent]:
        """Every Agent (optionally of one namespace), sorted by namespace and name."""
        return [obj for obj in self if isinstance(obj, Agent) and namespace in (None, obj.metadata.namespace)]

    def environment(self, name: str) -> Environment | None:
        """The Environment called ``name``."""
        return self.get(Environment, None, name)

    def model_by_address(self, provider: str, name: str, namespace: str) -> Model | None:
        """The Model ``provider:name`` as seen from a route in ``namespace`` (decision D6)."""
        return find_model(self, provider, name, namespace, self.shared_namespaces)
