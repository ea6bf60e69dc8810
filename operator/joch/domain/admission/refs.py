"""References of any kind, found by walking the model: cross-namespace rules (D2) and missing targets (D10).

:func:`references` yields every ``Ref`` / ``ClusterRef`` in an object's spec with its field path
(``spec.export.ocsf.sinkSecretRef``, ``spec.policies[2]``, ``spec.memories.working``) and the kind it
points to, found from the field's name (:data:`TARGETS`). Which fields can hold a reference is worked
out once per model class, so the walk skips free-form JSON (schemas, payloads) entirely.

Rules, for a namespaced referrer (decision D2 of docs/decisions.md): a reference names its own namespace (or
none, which means its own) or a shared namespace; anything else is an error naming the field. A cluster-scoped
referrer (Environment, Team) has no namespace of its own: a reference without a namespace is resolved against
each Agent's namespace, and one with a namespace outside the shared ones binds only the Agents of that
namespace (the compiler reports it for the others), which earns a warning, not an error.

Missing targets (decision D10) are warnings, and only for kinds the World can answer for.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator
from typing import Any, Final

import pydantic

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import World
from joch.domain.settings import OperatorSettings

__all__ = ["TARGETS", "RefSite", "check_references", "references"]

TARGETS: Final[dict[str, str]] = {
    "adapterRef": "FrameworkAdapter",
    "agentRef": "Agent",
    "approvalRef": "Approval",
    "budgetRefs": "Budget",
    "connectionSecretRef": "Secret",
    "conversationRef": "Conversation",
    "embeddingModelRef": "Model",
    "endpointSecretRef": "Secret",
    "environmentRef": "Environment",
    "executionRef": "Execution",
    "judgeModelRef": "Model",
    "keyRef": "Secret",
    "mcpServerRef": "MCPServer",
    "mcpServers": "MCPServer",
    "memories": "Memory",
    "modelRef": "Model",
    "modelRouteRef": "ModelRoute",
    "policies": "Policy",
    "policyRef": "Policy",
    "ragRefs": "RAG",
    "routeRef": "ModelRoute",
    "secretRef": "Secret",
    "sinkSecretRef": "Secret",
    "summarizerModelRef": "Model",
    "toolCallRef": "ToolCall",
    "toolRef": "Tool",
}
"""Reference field name -> the Kind it points to. Fields not listed (e.g. ``destinationRef``, whose
target kind the catalog never defines) are checked for D2 only."""

_KINDS: Final = {k.crd.kind: k for k in v1alpha1.KINDS}


@dataclasses.dataclass(frozen=True, slots=True)
class RefSite:
    """One reference inside an object."""

    path: str
    field: str
    ref: meta.Ref | meta.ClusterRef
    target: str | None

    @property
    def namespace(self) -> str | None:
        return self.ref.namespace if isinstance(self.ref, meta.Ref) else None


def _types(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _types(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(annotation):
            yield from _types(arg)
    else:
        yield annotation


@functools.cache
def _may_hold_refs(cls: type[pydantic.BaseModel]) -> bool:
    return bool(_ref_fields(cls))


@functools.cache
def _ref_fields(cls: type[pydantic.BaseModel]) -> tuple[tuple[str, str], ...]:
    """(attribute, wire name) of the fields of ``cls`` that are, or may contain, a reference."""
    out: list[tuple[str, str]] = []
    for attribute, info in cls.model_fields.items():
        if attribute in ("status", "metadata"):
            continue
        for tp in _types(info.annotation):
            if not isinstance(tp, type) or not issubclass(tp, pydantic.BaseModel):
                continue
            if issubclass(tp, meta.Ref | meta.ClusterRef) or (tp is not cls and _may_hold_refs(tp)):
                out.append((attribute, info.alias or attribute))
                break
    return tuple(out)


def references(obj: pydantic.BaseModel, path: str = "") -> Iterator[RefSite]:
    """Every reference in ``obj`` (a Resource: its spec), in field order, with its path."""
    yield from _walk(obj, path, None)


def _walk(value: Any, path: str, field: str | None) -> Iterator[RefSite]:
    if isinstance(value, meta.Ref | meta.ClusterRef):
        name = field or ""
        yield RefSite(path, name, value, TARGETS.get(name))
    elif isinstance(value, pydantic.BaseModel):
        for attribute, wire in _ref_fields(type(value)):
            child = getattr(value, attribute)
            if child is not None:
                yield from _walk(child, f"{path}.{wire}" if path else wire, wire)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", field)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}", field)


def check_references(
    obj: meta.Resource,
    world: World,
    settings: OperatorSettings,
    *,
    missing: bool = True,
) -> Findings:
    """D2 errors for every reference, and (with ``missing``) D10 warnings for absent targets."""
    findings = Findings()
    crd = type(obj).crd
    own = obj.metadata.namespace if crd.scope == "Namespaced" else None
    shared = settings.shared_namespaces
    for site in references(obj):
        namespace = site.namespace
        if namespace is not None and namespace != own and not settings.is_shared(namespace):
            allowed = ", ".join(shared) or "none"
            if own is None:
                findings.warn(
                    site.path,
                    f"{site.target or 'the object'} {namespace}/{site.ref.name} is not in a shared namespace "
                    f"({allowed}): it applies only to Agents of namespace {namespace} (D2 forbids "
                    "references into it from elsewhere)",
                    "NamespacedBinding",
                )
            else:
                findings.error(
                    site.path,
                    f"reference into namespace {namespace}, not {own}: only the object's own namespace and "
                    f"the shared namespaces ({allowed}) may be referenced",
                    "ForbiddenReference",
                )
                continue
        if not missing or site.target is None or not world.knows(site.target):
            continue
        target = _KINDS.get(site.target)
        if target is None:
            continue
        if target.crd.scope == "Cluster":
            found = world.get(target, None, site.ref.name)
            where = site.ref.name
        else:
            resolved = namespace or own
            if resolved is None:  # a cluster-scoped referrer: resolved per Agent later
                continue
            found = world.get(target, resolved, site.ref.name)
            where = f"{resolved}/{site.ref.name}"
        if found is None:
            findings.warn(
                site.path,
                f"{site.target} {where} does not exist (yet); admitted, the operator reports it until it "
                "appears",
                "MissingReference",
            )
    return findings
