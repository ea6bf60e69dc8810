"""The normal form of a Policy spec (decision D8), produced by parsing.py and consumed by compiling.py.

Decision D8 is in docs/decisions.md. Everything here is a frozen value with no behaviour beyond ``to_dict()``,
which renders the normal form back into the camelCase shape admission may store (``action`` always as
``{effect, reason?, redact?, redactionRules?}``).

A rule::

    Rule(index, clauses=(Clause...), action=Action | None, require=Requirement | None)

``clauses`` are ANDed; no clauses means "always". A clause is a path plus a matcher, or a whole-context
CEL expression (path ``None``). The matchers are:

    Equals(value)         scalar equality (membership when the context value is a list)
    Compare(op, number)   ``"<0.75"``, ``">=5"``: numeric comparison
    NotAllowlisted()      ``model.provider: not-allowlisted``
    AnyOf(matchers)       a YAML list: any element matches
    Cel(source)           ``{cel: "..."}``: CEL over the whole context
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

Effect = Literal["allow", "deny", "modify"]
CompareOp = Literal["<", "<=", ">", ">="]
COMPARISONS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
"""Every comparison operator the policy grammar, CEL guards and Eval thresholds use, by its symbol."""
Scalar = str | int | float | bool


@dataclasses.dataclass(frozen=True, slots=True)
class Equals:
    value: Scalar

    def to_yaml(self) -> Any:
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOp
    number: float
    text: str

    def to_yaml(self) -> Any:
        return self.text


@dataclasses.dataclass(frozen=True, slots=True)
class NotAllowlisted:
    def to_yaml(self) -> Any:
        return "not-allowlisted"


ScalarMatcher = Equals | Compare | NotAllowlisted


@dataclasses.dataclass(frozen=True, slots=True)
class AnyOf:
    options: tuple[ScalarMatcher, ...]

    def to_yaml(self) -> Any:
        return [option.to_yaml() for option in self.options]


@dataclasses.dataclass(frozen=True, slots=True)
class Cel:
    source: str
    roots: frozenset[str]
    """Context roots the expression reads (found by scanning the source; see cel.scan)."""
    paths: frozenset[tuple[str, ...]] = frozenset()
    """Field chains the expression reads; only these parts of the context are bound (cel.access_plan)."""

    def to_yaml(self) -> Any:
        return {"cel": self.source}


Matcher = Equals | Compare | NotAllowlisted | AnyOf | Cel


@dataclasses.dataclass(frozen=True, slots=True)
class Clause:
    """``path: matcher`` inside ``when``; ``path`` is None for the whole-rule ``when: {cel: ...}``."""

    path: str | None
    keys: tuple[str, ...]
    matcher: Matcher
    field_path: str
    """Where it came from, e.g. ``spec.rules[2].when.cost.runUsd``: used to report CEL compile errors."""

    @property
    def roots(self) -> frozenset[str]:
        own = frozenset(self.keys[:1])
        return own | self.matcher.roots if isinstance(self.matcher, Cel) else own


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    effect: Effect
    reason: str | None = None
    redact: bool = False
    redaction_rules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"effect": self.effect}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.redact:
            out["redact"] = True
            out["redactionRules"] = list(self.redaction_rules)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Requirement:
    """``require: {approval: human, approvalRouting: {...}, channels: [...]}``."""

    approval: Literal["human"] = "human"
    approvers: tuple[str, ...] = ()
    timeout_minutes: int | None = None
    on_timeout: Literal["deny", "allow"] | None = None
    channels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        routing: dict[str, Any] = {}
        if self.approvers:
            routing["approvers"] = list(self.approvers)
        if self.timeout_minutes is not None:
            routing["timeoutMinutes"] = self.timeout_minutes
        if self.on_timeout is not None:
            routing["onTimeout"] = self.on_timeout
        out: dict[str, Any] = {"approval": self.approval}
        if routing:
            out["approvalRouting"] = routing
        if self.channels:
            out["channels"] = list(self.channels)
        return out

    def to_decision(self) -> dict[str, Any]:
        """The ``requires.approval`` object of a Decision: the type plus its routing, flattened."""
        out: dict[str, Any] = {"type": self.approval}
        if self.approvers:
            out["approvers"] = list(self.approvers)
        if self.timeout_minutes is not None:
            out["timeoutMinutes"] = self.timeout_minutes
        if self.on_timeout is not None:
            out["onTimeout"] = self.on_timeout
        if self.channels:
            out["channels"] = list(self.channels)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    index: int
    clauses: tuple[Clause, ...]
    action: Action | None
    require: Requirement | None
    description: str | None = None

    @property
    def effect(self) -> Effect:
        return self.action.effect if self.action is not None else "allow"

    @property
    def roots(self) -> frozenset[str]:
        return frozenset().union(*(clause.roots for clause in self.clauses))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["description"] = self.description
        if self.clauses:
            when: dict[str, Any] = {}
            for clause in self.clauses:
                if clause.path is None and isinstance(clause.matcher, Cel):
                    when["cel"] = clause.matcher.source
                else:
                    when[str(clause.path)] = clause.matcher.to_yaml()
            out["when"] = when
        if self.require is not None:
            out["require"] = self.require.to_dict()
        if self.action is not None:
            out["action"] = self.action.to_dict()
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One ``matchExpressions`` entry (Kubernetes label selector semantics)."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        value = labels.get(self.key)
        present = isinstance(value, str) and value in self.values
        return present if self.operator == "In" else not present


@dataclasses.dataclass(frozen=True, slots=True)
class AppliesTo:
    """``appliesTo``. ``None`` for a part means "not restricted by it"."""

    match_labels: Mapping[str, str] | None = None
    match_expressions: tuple[LabelRequirement, ...] = ()
    namespaces: frozenset[str] | None = None
    environments: frozenset[str] | None = None

    def selects_labels(self, labels: Mapping[str, Any]) -> bool:
        """Kubernetes label-selector semantics; an empty or absent selector selects everything."""
        if self.match_labels:
            for key, value in self.match_labels.items():
                if labels.get(key, None) != value:
                    return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)


@dataclasses.dataclass(frozen=True, slots=True)
class Audit:
    log_requests: bool = True
    log_decisions: bool = True
    redact_secrets: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySpec:
    description: str | None
    applies_to: AppliesTo
    rules: tuple[Rule, ...]
    audit: Audit
