"""The decision context: what a rule can look at, and how a ``when`` path addresses it.

A decision context is a plain nested mapping (JSON-shaped), docs/catalog.md section 4.4::

    hook          str         agentTrigger | toolCallRequest | toolCallResult | message | ... | preflight
    agent         {name, namespace, labels: {str: str}, version}
    framework     any         the FrameworkAdapter (a name or an object)
    tenant        any
    environment   {name, allowedProviders: [str]}       allowedProviders absent = every provider allowed
    tool          {name, type, sideEffect, requiresApproval}
    model         {provider, name, tier}
    mcpServer     {name, trustScore, schemaDrift}
    mcpResult     {injectionScan: {hit}}                runtime only
    data          {contains: [class]}                   runtime only
    cost          {runUsd}                              runtime only: the estimated cost of THIS call, USD
    execution     {name}                                runtime only: the run (Execution) the call belongs to
    payload       any                                   runtime only (the request being decided)
    reasoning, turnId, stepId   str

Every part is optional. ``DecisionContext`` below is the typed spelling of this shape; the engine only
needs a ``Mapping[str, Any]``.

Paths. A ``when`` key is a dotted path into the context: ``tool.sideEffect``, ``agent.labels.team``,
``mcpResult.injectionScan.hit``. A key that itself contains dots is written in brackets:
``agent.labels["app.kubernetes.io/name"]``. The first segments are checked against the schema above
(a typo such as ``cost.runUSD`` is rejected at admission); below ``agent.labels``, ``payload``,
``framework`` and ``tenant`` any key is accepted.

Absence. A path that is absent, or whose value is ``null``, does not match, whatever the matcher
(the one exception, ``not-allowlisted``, lives in matchers.py). ``RUNTIME_ONLY_ROOTS`` lists the parts
that only exist while an agent runs; preflight (admission) skips the rules that read them
(D9, docs/decisions.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypedDict

# --- the typed shape ---------------------------------------------------------------------------------


class AgentFacts(TypedDict, total=False):
    name: str
    namespace: str
    labels: Mapping[str, str]
    version: str


class EnvironmentFacts(TypedDict, total=False):
    name: str
    allowedProviders: list[str]


class ToolFacts(TypedDict, total=False):
    name: str
    type: str
    sideEffect: str
    requiresApproval: bool


class ModelFacts(TypedDict, total=False):
    provider: str
    name: str
    tier: str


class McpServerFacts(TypedDict, total=False):
    name: str
    trustScore: float
    schemaDrift: bool


class InjectionScanFacts(TypedDict, total=False):
    hit: bool


class McpResultFacts(TypedDict, total=False):
    injectionScan: InjectionScanFacts


class DataFacts(TypedDict, total=False):
    contains: list[str]


class CostFacts(TypedDict, total=False):
    runUsd: float


class ExecutionFacts(TypedDict, total=False):
    name: str
    """The Execution (in the agent's namespace) the call belongs to."""


class DecisionContext(TypedDict, total=False):
    """The typed spelling of a decision context (docs/catalog.md section 4.4). Every key is optional."""

    hook: str
    agent: AgentFacts
    framework: Any
    tenant: Any
    environment: EnvironmentFacts
    tool: ToolFacts
    model: ModelFacts
    mcpServer: McpServerFacts
    mcpResult: McpResultFacts
    data: DataFacts
    cost: CostFacts
    execution: ExecutionFacts
    payload: Any
    reasoning: str
    turnId: str
    stepId: str


# --- the schema paths are checked against ------------------------------------------------------------

Leaf = Literal["value", "list", "open"]
"""``value``: a scalar; ``list``: a list of scalars; ``open``: anything, any key below it is accepted."""

SchemaNode = Leaf | Mapping[str, "SchemaNode"]

CONTEXT_SCHEMA: Final[Mapping[str, SchemaNode]] = {
    "hook": "value",
    "agent": {"name": "value", "namespace": "value", "labels": "open", "version": "value"},
    "framework": "open",
    "tenant": "open",
    "environment": {"name": "value", "allowedProviders": "list"},
    "tool": {"name": "value", "type": "value", "sideEffect": "value", "requiresApproval": "value"},
    "model": {"provider": "value", "name": "value", "tier": "value"},
    "mcpServer": {"name": "value", "trustScore": "value", "schemaDrift": "value"},
    "mcpResult": {"injectionScan": {"hit": "value"}},
    "data": {"contains": "list"},
    "cost": {"runUsd": "value"},
    "execution": {"name": "value"},
    "payload": "open",
    "reasoning": "value",
    "turnId": "value",
    "stepId": "value",
}

ROOTS: Final = frozenset(CONTEXT_SCHEMA)

RUNTIME_ONLY_ROOTS: Final = frozenset({"cost", "data", "execution", "payload", "mcpResult"})
"""Context parts that exist only at run time; preflight skips every rule that reads one of them."""

_SEGMENT = re.compile(r"""\.?([^.\[\]\s'"]+)|\[(?:"([^"]*)"|'([^']*)')\]""")


def parse_path(text: str) -> tuple[str, ...]:
    """Split and check a ``when`` path against ``CONTEXT_SCHEMA``. Raises ValueError with a human reason."""
    keys: list[str] = []
    pos = 0
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if match is None or (pos == 0 and text.startswith(".")) or (pos > 0 and text[pos] not in ".["):
            raise ValueError(f'{text!r} is not a path (write a.b.c, or a.b["key.with.dots"])')
        key = next(group for group in match.groups() if group is not None)
        if not key:
            raise ValueError(f"{text!r} has an empty segment")
        keys.append(key)
        pos = match.end()
    if not keys:
        raise ValueError("a path cannot be empty")
    _check_schema(tuple(keys))
    return tuple(keys)


def _check_schema(keys: tuple[str, ...]) -> None:
    node: SchemaNode = CONTEXT_SCHEMA
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth])
        if isinstance(node, str):
            if node == "open":
                return
            raise ValueError(f"{where} is a {'list' if node == 'list' else 'value'}; it has no field {key!r}")
        if key not in node:
            known = ", ".join(sorted(node))
            what = "the decision context" if depth == 0 else where
            raise ValueError(f"{what} has no field {key!r} (known: {known})")
        node = node[key]
    if not isinstance(node, str):
        fields = ", ".join(sorted(node))
        raise ValueError(f"{'.'.join(keys)} is an object; match one of its fields: {fields}")


# --- reading a path ------------------------------------------------------------------------------------


class _Missing:
    """The sentinel for "absent": an absent key, a ``null`` value or a non-object on the way down."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

Getter = Callable[[Mapping[str, Any]], Any]


def _step(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return value.get(key, MISSING)
    if isinstance(value, Mapping):
        try:
            return value.get(key, MISSING)
        except Exception:  # a hostile Mapping: treat as absent
            return MISSING
    return MISSING


def make_getter(keys: tuple[str, ...]) -> Getter:
    """A closure reading ``keys`` from a context; returns ``MISSING`` for absent or null values.

    Specialised for the usual one and two segment paths; this is on the hot path of every decision.
    """
    if len(keys) == 1:
        (k0,) = keys

        def get1(ctx: Mapping[str, Any]) -> Any:
            value = ctx.get(k0) if ctx.__class__ is dict else _step(ctx, k0)
            return MISSING if value is None else value

        return get1
    if len(keys) == 2:
        k0, k1 = keys

        def get2(ctx: Mapping[str, Any]) -> Any:
            first = ctx.get(k0) if ctx.__class__ is dict else _step(ctx, k0)
            if first.__class__ is dict:
                value = first.get(k1)
            elif first is None:
                return MISSING
            else:
                value = _step(first, k1)
            return MISSING if value is None else value

        return get2

    def get_n(ctx: Mapping[str, Any]) -> Any:
        value: Any = ctx
        for key in keys:
            value = _step(value, key)
            if value is MISSING:
                return MISSING
        return MISSING if value is None else value

    return get_n
