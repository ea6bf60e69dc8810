"""Defaults that depend on the object's name or on other objects (decision D14), as JSON Patch operations.

Decision D14 (docs/decisions.md) splits the defaults: static defaults live in the CRD schemas (the API server
applies them before any webhook runs); the mutating webhook adds only these:

| kind | field | default |
|---|---|---|
| Tool | spec.toolName | metadata.name (D3) |
| Trace | spec.sampling.mode | ``tail`` in environment prod, ``full`` in every other (dev, staging...) |
| Trace | spec.retention.days | the Environment's spec.defaults.traceRetentionDays, else 30 |
| Agent | spec.modelRoute | the Environment's spec.defaults.modelRouteRef, when the Agent names none |

Environment (D5): an Agent's label ``env``, else its Namespace's label ``joch.dev/environment``, else the
operator's default. A Trace is placed the same way through its own labels and namespace (and, when
the World can resolve them, its Execution's Agent).

Idempotent by construction: a default is only added where the field is absent, and only on CREATE or
on an UPDATE that changes the spec. kopf's own metadata patches (annotations, finalizers) are UPDATEs
that leave the spec alone, so they pass through unchanged; so does re-applying a defaulted object.

Everything here reads raw JSON defensively (the mutating webhook runs before the API server's schema
validation, so the object can be anything); it never raises on odd shapes, it just adds nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.execution import Execution
from joch.domain.admission.world import World
from joch.domain.compilation import scope
from joch.domain.settings import OperatorSettings

__all__ = [
    "DEFAULTED_KINDS",
    "PROD_ENVIRONMENTS",
    "TRACE_RETENTION_DAYS",
    "Mutation",
    "apply_patch",
    "defaults_for",
]

PROD_ENVIRONMENTS: Final = frozenset({"prod", "production"})
TRACE_RETENTION_DAYS: Final = 30

JSONPatch = list[dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Mutation:
    """JSON Patch operations (RFC 6902) to apply to the object; empty when nothing is defaulted."""

    patch: tuple[dict[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.patch)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _set(patch: JSONPatch, obj: Mapping[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Add ``value`` at ``path`` unless something is there; creates missing parent objects."""
    node: Any = obj
    for depth, key in enumerate(path):
        if not isinstance(node, Mapping):
            return  # a parent is not an object: leave it to schema validation
        if key not in node or node[key] is None:
            rest = path[depth + 1 :]
            for inner in reversed(rest):
                value = {inner: value}
            op = "replace" if key in node else "add"
            patch.append(
                {"op": op, "path": "/" + "/".join(_escape(p) for p in path[: depth + 1]), "value": value}
            )
            return
        node = node[key]


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def environment_name(
    obj: Mapping[str, Any], namespace: str | None, world: World, settings: OperatorSettings
) -> str:
    """D5 for a raw object: its ``env`` label, its Namespace's label, then the operator default."""
    labels = _str_map(_get(obj, "metadata", "labels"))
    own = labels.get(scope.AGENT_ENVIRONMENT_LABEL)
    if own:
        return own
    if namespace:
        from_namespace = world.namespace_labels(namespace).get(scope.NAMESPACE_ENVIRONMENT_LABEL)
        if from_namespace:
            return from_namespace
    return settings.default_environment


def _environment(name: str, world: World) -> Environment | None:
    return world.get(Environment, None, name)


def _trace_environment(
    obj: Mapping[str, Any], namespace: str | None, world: World, settings: OperatorSettings
) -> str:
    labels = _str_map(_get(obj, "metadata", "labels"))
    if labels.get(scope.AGENT_ENVIRONMENT_LABEL) or not namespace:
        return environment_name(obj, namespace, world, settings)
    execution_name = _get(obj, "spec", "executionRef", "name")
    if isinstance(execution_name, str) and world.knows("Execution"):
        execution = world.get(Execution, namespace, execution_name)
        if execution is not None:
            agent_ref = execution.spec.agent_ref
            agent = world.get(Agent, agent_ref.namespace or namespace, agent_ref.name)
            if agent is not None:
                return scope.environment_of(
                    agent, world.namespace_labels(agent.metadata.namespace or ""), settings
                )
    return environment_name(obj, namespace, world, settings)


def _tool(
    obj: Mapping[str, Any], namespace: str | None, world: World, settings: OperatorSettings
) -> JSONPatch:
    patch: JSONPatch = []
    name = _get(obj, "metadata", "name")
    if isinstance(name, str) and name and isinstance(obj.get("spec"), Mapping):
        _set(patch, obj, ("spec", "toolName"), name)
    return patch


def _trace(
    obj: Mapping[str, Any], namespace: str | None, world: World, settings: OperatorSettings
) -> JSONPatch:
    patch: JSONPatch = []
    if not isinstance(obj.get("spec"), Mapping):
        return patch
    env = _trace_environment(obj, namespace, world, settings)
    mode = "tail" if env in PROD_ENVIRONMENTS else "full"
    _set(patch, obj, ("spec", "sampling", "mode"), mode)
    environment = _environment(env, world)
    days = TRACE_RETENTION_DAYS
    if environment is not None and environment.spec.defaults is not None:
        days = environment.spec.defaults.trace_retention_days or days
    _set(patch, obj, ("spec", "retention", "days"), days)
    return patch


def _agent(
    obj: Mapping[str, Any], namespace: str | None, world: World, settings: OperatorSettings
) -> JSONPatch:
    patch: JSONPatch = []
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or spec.get("modelRoute") is not None:
        return patch
    environment = _environment(environment_name(obj, namespace, world, settings), world)
    defaults = environment.spec.defaults if environment is not None else None
    ref = defaults.model_route_ref if defaults is not None else None
    if ref is None:
        return patch
    if ref.namespace is not None and ref.namespace != namespace and not settings.is_shared(ref.namespace):
        return patch  # D2 would reject it; the Environment's own admission warned about it
    route: dict[str, Any] = {"name": ref.name}
    if ref.namespace is not None and ref.namespace != namespace:
        route["namespace"] = ref.namespace
    _set(patch, obj, ("spec", "modelRoute"), {"routeRef": route})
    return patch


Defaulter = Callable[[Mapping[str, Any], str | None, World, OperatorSettings], JSONPatch]

DEFAULTERS: Final[Mapping[str, Defaulter]] = {"Tool": _tool, "Trace": _trace, "Agent": _agent}
DEFAULTED_KINDS: Final = frozenset(DEFAULTERS)
"""Kinds the mutating webhook is registered for."""

NEEDS_DEFAULTS: Final[Mapping[str, str]] = {
    "Tool": "!has(object.spec) || !has(object.spec.toolName)",
    "Trace": (
        "!has(object.spec) || !has(object.spec.sampling) || !has(object.spec.sampling.mode) "
        "|| !has(object.spec.retention) || !has(object.spec.retention.days)"
    ),
    "Agent": "!has(object.spec) || !has(object.spec.modelRoute)",
}
"""Per kind, a CEL condition (the webhook configuration's matchConditions) that holds whenever a
default above may apply: when it is false the API server does not call the mutating webhook at all.
Every defaulter only fills fields these conditions test for absence."""


def defaults_for(
    kind: str,
    obj: Any,
    *,
    namespace: str | None,
    world: World,
    settings: OperatorSettings,
    old: Any = None,
    operation: str = "CREATE",
) -> Mutation:
    """The JSON Patch that adds ``obj``'s dynamic defaults (see the module docstring)."""
    defaulter = DEFAULTERS.get(kind)
    if defaulter is None or not isinstance(obj, Mapping):
        return Mutation()
    if operation == "UPDATE" and isinstance(old, Mapping) and old.get("spec") == obj.get("spec"):
        return Mutation()
    if operation not in ("CREATE", "UPDATE"):
        return Mutation()
    return Mutation(tuple(defaulter(obj, namespace, world, settings)))


def apply_patch(
    obj: Mapping[str, Any], patch: tuple[dict[str, Any], ...] | list[dict[str, Any]]
) -> dict[str, Any]:
    """A copy of ``obj`` with ``add``/``replace`` operations applied (what :func:`defaults_for` emits)."""
    out: dict[str, Any] = dict(obj)
    for op in patch:
        keys = [part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]]
        node = out
        for key in keys[:-1]:
            child = node.get(key)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[key] = child
            node = child
        node[keys[-1]] = op["value"]
    return out
