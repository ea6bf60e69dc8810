"""The operator's in-memory view of every object compilation reads, fed by watch events.

It also holds the Evals and Approvals, status included: not for the compiler but for admission, whose
Deployment promotion gates read them (joch.domain.admission.promotion). The webhooks judge against this
store; no controller acts on those two kinds.

:class:`Store` implements the compiler's ``Lookup`` protocol (joch.domain.compilation.catalog) over
parsed models, plus the Namespace labels of decision D5. It is only touched from the operator's event
loop, and ``gather`` runs there without awaiting, so one ``gather`` sees one consistent snapshot.

Each object is kept as an :class:`Entry`: its identity (uid, generation, resourceVersion, labels), its
status as compact JSON (to compare before writing one), and either the parsed model (every referenced
kind: few objects, read by many compiles; MCPServer with its status, whose ``trustScore`` the manifest
snapshots; Eval with its status) or, for Agents and Approvals, the compact JSON of the object (without
its status for Agents, with it for Approvals), parsed only when it is read (:meth:`Entry.load`). Agents
are most of the objects, Approvals (one per held tool call) may be many, and a parsed object costs about
six times its JSON: this keeps 10,000 Agents in tens of megabytes. Approvals are also indexed by
namespace, so listing a namespace's Approvals by label (:meth:`Store.labelled`) reads labels only and
parses just the matches. ``metadata.managedFields`` and the
``last-applied-configuration`` annotation are dropped on the way in.

A referenced object the model rejects (the CRD schema and the model disagree, or an old object
predates a tightened rule) is kept with ``obj`` None and ``error`` set and counts as absent; an Agent
that does not parse is reported when it is reconciled (Stalled, reason InvalidSpec).

Stale events (a resourceVersion lower than the one stored, possible when the start-up LIST and the
watch overlap) are ignored; resourceVersions are compared as integers when both are numeric.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import pydantic

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agbom import AgBOM
from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.toolcall import ToolCall
from joch.domain.admission import promotion
from joch.domain.compilation import catalog, keys

__all__ = ["RUNTIME_KIND_NAMES", "WATCHED_KINDS", "Entry", "Store", "parse_entry"]

_AGBOM_READS: Final[tuple[type[meta.Resource], ...]] = (KnowledgeSource, AgBOM)
RUNTIME_KINDS: Final[tuple[type[meta.Resource], ...]] = (Execution, ToolCall, Deployment, Budget)
"""What the executions and budgets services read (runs, their tool calls, the Deployments whose replicas
cap an Agent's running Executions, and the Budgets that count the runs' spend); no compile reads them."""
WATCHED_KINDS: Final[Mapping[str, type[meta.Resource]]] = {
    kind.crd.kind: kind
    for kind in (*catalog.COMPILE_KINDS, *promotion.GATE_KINDS, *_AGBOM_READS, *RUNTIME_KINDS)
}
"""Every joch kind the operator watches (the kinds the compiler reads, the kinds admission's promotion
gates read, what the AgBOM service reads besides: KnowledgeSources and the AgBOMs, then the runtime
kinds of the executions and budgets services: Executions, ToolCalls, Deployments and Budgets), by Kind
name."""
RUNTIME_KIND_NAMES: Final = frozenset(kind.crd.kind for kind in RUNTIME_KINDS)

_DROPPED_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
_STATUS_PARSED: Final = frozenset({"MCPServer", "Eval", "Approval"})
"""Kinds whose model is read with its status."""
_LAZY: Final = frozenset({"Agent", "Approval", "Execution", "ToolCall"})
"""Kinds kept as compact JSON and parsed when read."""
_BY_NAMESPACE: Final = frozenset({"Approval"})
"""Kinds indexed by namespace for :meth:`Store.labelled`."""


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass(slots=True)
class Entry:
    """One stored object."""

    kind: str
    namespace: str | None
    name: str
    uid: str
    generation: int | None
    resource_version: str
    labels: dict[str, str]
    raw_status: bytes
    """The status as compact JSON (sorted keys): equal bytes mean equal statuses."""
    obj: meta.Resource | None = None
    """The parsed model (referenced kinds); None for lazy kinds (Agents, Approvals) and for objects the
    model rejects."""
    source: bytes | None = None
    """Lazy kinds: the object as compact JSON, without its status (Agents) or with it (Approvals); see
    :meth:`load`."""
    error: str | None = None

    @property
    def key(self) -> keys.ObjectKey:
        return keys.ObjectKey(self.kind, self.namespace, self.name)

    @property
    def status(self) -> dict[str, Any]:
        """The status as stored (a fresh dict on every call)."""
        loaded: dict[str, Any] = json.loads(self.raw_status)
        return loaded

    def set_status(self, status: Mapping[str, Any] | None) -> None:
        self.raw_status = _compact(dict(status) if isinstance(status, Mapping) else {})

    def document(self) -> dict[str, Any]:
        """The stored object as the cache keeps it (``source`` as JSON; {} when there is none)."""
        try:
            loaded = json.loads(self.source or b"{}")
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def load(self) -> meta.Resource:
        """The parsed object: ``obj``, or for an Agent its JSON parsed now. Raises
        ``pydantic.ValidationError`` when the model rejects it."""
        if self.obj is not None:
            return self.obj
        if self.source is None:
            raise ValueError(f"{self.key} holds no object")
        return WATCHED_KINDS[self.kind].model_validate_json(self.source)

    def fingerprint(self) -> tuple[Any, ...]:
        """What, when it changes, may change a compile result: identity, spec generation, and for
        Agents their labels (selectors, D5), for MCPServers their trust score (snapshotted) and what the
        gateway discovered (drift)."""
        if self.kind == "Agent":
            return (self.uid, self.generation, tuple(sorted(self.labels.items())))
        if self.kind == "MCPServer":  # the gateway's discovery decides drift (joch.domain.compilation.drift)
            discovered = self.status.get("discovered")
            seen = _compact(discovered) if discovered else None
            return (self.uid, self.generation, self.status.get("trustScore"), seen, self.error)
        return (self.uid, self.generation, self.error)


def _trimmed_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in metadata.items() if k != "managedFields"}
    annotations = out.get("annotations")
    if annotations and any(a in annotations for a in _DROPPED_ANNOTATIONS):
        out["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
    return out


def validation_message(exc: pydantic.ValidationError) -> str:
    """The first few validation errors, as ``field.path: message; ...``."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "(object)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_entry(model: type[meta.Resource], body: Mapping[str, Any]) -> Entry:
    """An :class:`Entry` from a raw object as the API server sends it."""
    crd = model.crd
    metadata = _trimmed_metadata(body.get("metadata") or {})
    status = body.get("status")
    status = dict(status) if isinstance(status, Mapping) else {}
    doc: dict[str, Any] = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    doc["metadata"] = metadata
    doc.setdefault("apiVersion", crd.api_version)
    doc.setdefault("kind", crd.kind)
    entry = Entry(
        kind=crd.kind,
        namespace=metadata.get("namespace") if crd.scope == "Namespaced" else None,
        name=metadata.get("name") or "",
        uid=metadata.get("uid") or "",
        generation=metadata.get("generation"),
        resource_version=str(metadata.get("resourceVersion") or ""),
        labels=dict(metadata.get("labels") or {}),
        raw_status=_compact(status),
    )
    if crd.kind in _LAZY:
        entry.source = _compact({**doc, "status": status} if crd.kind in _STATUS_PARSED and status else doc)
        return entry
    try:
        if crd.kind in _STATUS_PARSED and status:
            try:
                entry.obj = model.model_validate({**doc, "status": status})
            except pydantic.ValidationError:
                entry.obj = model.model_validate(doc)
        else:
            entry.obj = model.model_validate(doc)
    except pydantic.ValidationError as exc:
        entry.error = validation_message(exc)
    return entry


def is_stale(old_rv: str, new_rv: str) -> bool:
    """Whether ``new_rv`` is older than ``old_rv`` (numeric resourceVersions only)."""
    if old_rv.isdigit() and new_rv.isdigit():
        return int(new_rv) < int(old_rv)
    return False


class Store:
    """Parsed objects by kind and (namespace, name); implements the compiler's ``Lookup``."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[tuple[str | None, str], Entry]] = {kind: {} for kind in WATCHED_KINDS}
        self._agents_by_namespace: dict[str, set[str]] = {}
        self._policies_by_namespace: dict[str, dict[str, Policy]] = {}
        self._teams_by_namespace: dict[str, set[str]] = {}
        self._names_by_namespace: dict[tuple[str, str], set[str]] = {}
        self._namespace_labels: dict[str, dict[str, str]] = {}

    # --- writes (watch events) ------------------------------------------------------------------

    def upsert(self, entry: Entry) -> Entry | None:
        """Store ``entry``; returns the entry it replaced. A stale event (older resourceVersion) is
        ignored and returns the stored entry unchanged (check with ``is``)."""
        table = self._entries[entry.kind]
        where = (entry.namespace, entry.name)
        old = table.get(where)
        if old is not None and is_stale(old.resource_version, entry.resource_version):
            return old
        table[where] = entry
        self._unindex(old)
        self._index(entry)
        return old

    def remove(self, kind: str, namespace: str | None, name: str) -> Entry | None:
        """Forget an object; returns what was stored."""
        old = self._entries[kind].pop((namespace, name), None)
        self._unindex(old)
        return old

    def set_status(self, kind: str, namespace: str | None, name: str, body: Mapping[str, Any]) -> None:
        """Record the status the API server returned for our own write (if not older than what is held)."""
        entry = self._entries[kind].get((namespace, name))
        metadata = body.get("metadata") or {}
        if entry is None or metadata.get("uid") != entry.uid:
            return
        rv = str(metadata.get("resourceVersion") or "")
        if is_stale(entry.resource_version, rv):
            return
        entry.resource_version = rv
        entry.set_status(body.get("status"))

    def set_namespace(self, name: str, labels: Mapping[str, str] | None) -> dict[str, str] | None:
        """Set (or with None, forget) a Namespace's labels; returns the previous labels."""
        old = self._namespace_labels.pop(name, None)
        if labels is not None:
            self._namespace_labels[name] = dict(labels)
        return old

    def _index(self, entry: Entry) -> None:
        if entry.kind in _BY_NAMESPACE:
            self._names_by_namespace.setdefault((entry.kind, entry.namespace or ""), set()).add(entry.name)
        if entry.kind == "Agent":
            self._agents_by_namespace.setdefault(entry.namespace or "", set()).add(entry.name)
        elif entry.kind == "Policy" and isinstance(entry.obj, Policy):
            self._policies_by_namespace.setdefault(entry.namespace or "", {})[entry.name] = entry.obj
        elif entry.kind == "Team" and isinstance(entry.obj, Team):
            for namespace in entry.obj.spec.namespaces or ():
                self._teams_by_namespace.setdefault(namespace, set()).add(entry.name)

    def _unindex(self, entry: Entry | None) -> None:
        if entry is None:
            return
        if entry.kind in _BY_NAMESPACE:
            self._names_by_namespace.get((entry.kind, entry.namespace or ""), set()).discard(entry.name)
        if entry.kind == "Agent":
            self._agents_by_namespace.get(entry.namespace or "", set()).discard(entry.name)
        elif entry.kind == "Policy":
            self._policies_by_namespace.get(entry.namespace or "", {}).pop(entry.name, None)
        elif entry.kind == "Team" and isinstance(entry.obj, Team):
            for namespace in entry.obj.spec.namespaces or ():
                self._teams_by_namespace.get(namespace, set()).discard(entry.name)

    # --- reads ------------------------------------------------------------------------------------

    def holds(self, kind: str) -> bool:
        """Whether the store keeps objects of ``kind``."""
        return kind in self._entries

    def status_of(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored status of one object (None when it is not stored)."""
        entry = self.entry(kind, namespace, name) if kind in self._entries else None
        return entry.status if entry is not None else None

    def entry(self, kind: str, namespace: str | None, name: str) -> Entry | None:
        return self._entries[kind].get((namespace, name))

    def entries(self, kind: str) -> Iterator[Entry]:
        yield from list(self._entries[kind].values())

    def agent_names(self, namespace: str) -> list[str]:
        return sorted(self._agents_by_namespace.get(namespace, ()))

    def namespaces_with_agents(self) -> list[str]:
        return sorted(ns for ns, names in self._agents_by_namespace.items() if names)

    def count(self, kind: str) -> int:
        return len(self._entries[kind])

    # --- Lookup -----------------------------------------------------------------------------------

    def get(self, kind: type[catalog.R], namespace: str | None, name: str) -> catalog.R | None:
        crd = kind.crd
        entry = self._entries[crd.kind].get((namespace if crd.scope == "Namespaced" else None, name))
        if entry is None:
            return None
        if entry.obj is None and entry.source is not None:
            try:
                loaded = entry.load()
            except pydantic.ValidationError:
                return None
            return loaded if isinstance(loaded, kind) else None
        return entry.obj if isinstance(entry.obj, kind) else None

    def labelled(self, kind: type[catalog.R], namespace: str, labels: Mapping[str, str]) -> list[catalog.R]:
        """The objects of ``kind`` in ``namespace`` carrying every one of ``labels``, sorted by name
        (admission's ``LabelIndex``). Objects that do not parse are left out."""
        crd = kind.crd
        table = self._entries.get(crd.kind, {})
        if crd.kind in _BY_NAMESPACE:
            names: Iterable[str] = self._names_by_namespace.get((crd.kind, namespace), ())
        else:
            names = [name for (ns, name) in table if ns == namespace]
        out: list[catalog.R] = []
        for name in sorted(names):
            entry = table.get((namespace, name))
            if entry is None or any(entry.labels.get(k) != v for k, v in labels.items()):
                continue
            found = self.get(kind, namespace, name)
            if found is not None:
                out.append(found)
        return out

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        return list(self._policies_by_namespace.get(namespace, {}).values())

    def team_for_namespace(self, namespace: str) -> Team | None:
        for name in sorted(self._teams_by_namespace.get(namespace, ())):
            team = self.get(Team, None, name)
            if team is not None:
                return team
        return None

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self._namespace_labels.get(namespace, {})

    def has_namespace(self, namespace: str) -> bool | None:
        """Whether the Namespace exists; None when no Namespace is known at all (the operator may not
        list Namespaces: a cluster always has some)."""
        if not self._namespace_labels:
            return None
        return namespace in self._namespace_labels
