"""The decision request: its JSON shape, checked field by field before the engine sees it.

``POST /v1/policy/evaluate`` takes::

    {"context":   {...},                  # required: a decision context (docs/catalog.md 4.4)
     "policies":  ["name" | "ns/name" | {"name": str, "namespace"?: str}, ...],   # optional
     "preflight": bool}                   # optional, default false

``policies`` names explicitly bound policies (an Agent's ``spec.policies``, as its compiled manifest
lists them); they are evaluated first, before the policies selected by ``appliesTo``. A name without a
namespace means the agent's namespace (``context.agent.namespace``).

The context is checked against the documented shape (``joch.domain.policy.context.CONTEXT_SCHEMA``):
unknown keys are rejected (a typo such as ``tools`` would otherwise never match, which fails open),
objects must be objects and lists lists, and the fields used to select policies (``agent.namespace``,
``agent.name``, ``agent.labels``, ``environment.name``, ``environment.allowedProviders``) must have
their documented types, as must the fields budgets read: ``cost.runUsd`` (a finite number, at
least 0) and ``execution.name`` (an object name). ``null`` anywhere means absent. Below
``payload``, ``framework`` and ``tenant`` anything goes, up to :data:`MAX_DEPTH` levels of nesting.

:func:`parse_request` raises :class:`RequestError` listing EVERY problem, each as a
:class:`Problem` (a field path such as ``context.agent.labels.team`` and a sentence). Pure code.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from joch.domain.policy import context as policy_context

__all__ = [
    "MAX_DEPTH",
    "MAX_POLICIES",
    "EvaluateRequest",
    "PolicyRef",
    "Problem",
    "RequestError",
    "check_context",
    "parse_request",
]

MAX_DEPTH: Final = 64
"""Deepest nesting of objects and lists accepted anywhere in a request."""
MAX_POLICIES: Final = 256
"""Most explicit policy references in one request (an Agent lists at most 256)."""

_OBJECT_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
REQUEST_FIELDS: Final = ("context", "policies", "preflight")
_SCALARS = (str, int, float, bool)


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (a field path) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestError(ValueError):
    """The request is malformed; ``problems`` lists every problem found (at least one)."""

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("RequestError needs at least one problem")
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(shown + more)


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyRef:
    """An explicitly bound policy; ``namespace`` None means the agent's namespace."""

    name: str
    namespace: str | None = None

    def resolve(self, agent_namespace: str | None) -> tuple[str, str]:
        return (self.namespace or agent_namespace or "", self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclasses.dataclass(frozen=True, slots=True)
class EvaluateRequest:
    context: Mapping[str, Any]
    policies: tuple[PolicyRef, ...] = ()
    preflight: bool = False


def parse_request(body: Any) -> EvaluateRequest:
    """The request in ``body`` (decoded JSON); raises RequestError naming every problem."""
    if not isinstance(body, dict):
        raise RequestError([Problem("(body)", f"must be a JSON object, not {_json_type(body)}")])
    problems: list[Problem] = [
        Problem(key, f"unknown field (known: {', '.join(REQUEST_FIELDS)})")
        for key in body
        if key not in REQUEST_FIELDS
    ]
    if problems:
        raise RequestError(problems)
    if "context" not in body or body["context"] is None:
        problems.append(Problem("context", "required: the decision context (a JSON object)"))
    else:
        problems.extend(check_context(body["context"]))
    preflight = body.get("preflight")
    if preflight is not None and not isinstance(preflight, bool):
        problems.append(Problem("preflight", f"must be true or false, not {_json_type(preflight)}"))
    refs = _policy_refs(body.get("policies"), problems)
    if not problems:
        agent = body["context"].get("agent") or {}
        if any(ref.namespace is None for ref in refs) and not agent.get("namespace"):
            problems.append(
                Problem("policies", "a policy named without a namespace needs context.agent.namespace")
            )
    if problems:
        raise RequestError(problems)
    return EvaluateRequest(context=body["context"], policies=tuple(refs), preflight=bool(preflight))


def _policy_refs(value: Any, problems: list[Problem]) -> list[PolicyRef]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem("policies", f"must be a list of policy names, not {_json_type(value)}"))
        return []
    if len(value) > MAX_POLICIES:
        problems.append(Problem("policies", f"at most {MAX_POLICIES} policies, not {len(value)}"))
        return []
    refs: list[PolicyRef] = []
    for index, item in enumerate(value):
        ref = _policy_ref(item, f"policies[{index}]", problems)
        if ref is not None:
            refs.append(ref)
    return refs


def _policy_ref(item: Any, where: str, problems: list[Problem]) -> PolicyRef | None:
    if isinstance(item, str):
        namespace, sep, name = item.rpartition("/")
        if not name or "/" in namespace or (sep and not namespace):
            problems.append(Problem(where, f"{item!r} is not NAME or NAMESPACE/NAME"))
            return None
        return PolicyRef(name, namespace or None)
    if not isinstance(item, dict):
        problems.append(Problem(where, f"must be a string or an object, not {_json_type(item)}"))
        return None
    unknown = [key for key in item if key not in ("name", "namespace")]
    problems.extend(Problem(f"{where}.{key}", "unknown field (known: name, namespace)") for key in unknown)
    ref_name, ref_namespace = item.get("name"), item.get("namespace")
    if not isinstance(ref_name, str) or not ref_name:
        problems.append(Problem(f"{where}.name", "required: a non-empty string"))
        return None
    if ref_namespace is not None and (not isinstance(ref_namespace, str) or not ref_namespace):
        problems.append(Problem(f"{where}.namespace", "must be a non-empty string"))
        return None
    return None if unknown else PolicyRef(ref_name, ref_namespace)


# --- the context ---------------------------------------------------------------------------------------


def check_context(value: Any, *, path: str = "context") -> list[Problem]:
    """Every way ``value`` departs from the decision-context shape (see the module docstring).

    On the hot path of every decision request: plain loops, messages built only for problems.
    """
    if not isinstance(value, dict):
        return [Problem(path, f"must be a JSON object, not {_json_type(value)}")]
    problems: list[Problem] = []
    _check_node(value, policy_context.CONTEXT_SCHEMA, path, problems)
    agent = value.get("agent")
    if isinstance(agent, dict):
        for key in ("name", "namespace"):
            _want_string(agent, key, f"{path}.agent", problems)
        labels = agent.get("labels")
        if labels is not None and isinstance(labels, dict):
            problems.extend(
                Problem(f"{path}.agent.labels.{key}", f"a label value must be a string, not {_json_type(v)}")
                for key, v in labels.items()
                if not isinstance(v, str)
            )
        elif labels is not None:
            problems.append(Problem(f"{path}.agent.labels", f"must be an object, not {_json_type(labels)}"))
    environment = value.get("environment")
    if isinstance(environment, dict):
        _want_string(environment, "name", f"{path}.environment", problems)
        providers = environment.get("allowedProviders")
        if isinstance(providers, list):
            problems.extend(
                Problem(f"{path}.environment.allowedProviders[{i}]", f"must be a string, not {_json_type(v)}")
                for i, v in enumerate(providers)
                if not isinstance(v, str)
            )
    cost = value.get("cost")
    if isinstance(cost, dict):
        amount = cost.get("runUsd")
        if amount is not None and (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or amount < 0
        ):
            shown = (
                _json_type(amount)
                if not isinstance(amount, int | float) or isinstance(amount, bool)
                else amount
            )
            problems.append(
                Problem(f"{path}.cost.runUsd", f"must be a finite number of USD, at least 0, not {shown}")
            )
    execution = value.get("execution")
    if isinstance(execution, dict):
        name = execution.get("name")
        if name is not None and (not isinstance(name, str) or not _OBJECT_NAME.fullmatch(name)):
            shown = repr(name) if isinstance(name, str) else _json_type(name)
            problems.append(
                Problem(f"{path}.execution.name", f"must be the name of an Execution, not {shown}")
            )
    return problems


def _want_string(obj: Mapping[str, Any], key: str, where: str, problems: list[Problem]) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        problems.append(Problem(f"{where}.{key}", f"must be a string, not {_json_type(value)}"))


def _check_node(
    value: Mapping[str, Any], schema: Mapping[str, Any], path: str, problems: list[Problem]
) -> None:
    for key, item in value.items():
        node = schema.get(key)
        if node is None:
            problems.append(Problem(f"{path}.{key}", f"unknown field (known: {', '.join(sorted(schema))})"))
        elif item is None:
            continue
        elif node == "value":
            if not isinstance(item, _SCALARS):
                problems.append(
                    Problem(f"{path}.{key}", f"must be a string, number or boolean, not {_json_type(item)}")
                )
        elif node == "open":
            if isinstance(item, dict | list) and _too_deep(item, MAX_DEPTH):
                problems.append(Problem(f"{path}.{key}", f"nested more than {MAX_DEPTH} levels deep"))
        elif node == "list":
            _check_list(item, f"{path}.{key}", problems)
        elif isinstance(item, dict):
            _check_node(item, node, f"{path}.{key}", problems)
        else:
            problems.append(Problem(f"{path}.{key}", f"must be an object, not {_json_type(item)}"))


def _check_list(item: Any, where: str, problems: list[Problem]) -> None:
    if not isinstance(item, list):
        problems.append(Problem(where, f"must be a list, not {_json_type(item)}"))
        return
    for index, element in enumerate(item):
        if not isinstance(element, _SCALARS):
            problems.append(
                Problem(
                    f"{where}[{index}]", f"must be a string, number or boolean, not {_json_type(element)}"
                )
            )


def _too_deep(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` containers deep (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


_JSON_TYPES: Final = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "a list"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)
