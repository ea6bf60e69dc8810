"""Policy spec (camelCase, as stored in the cluster) -> normal form (model.PolicySpec), with EVERY error.

Grammar accepted (docs/decisions.md D8; docs/catalog.md sections 4.1, 4.2)::

    description: str
    appliesTo:
      agents: {selector: {matchLabels: {k: v}, matchExpressions: [{key, operator, values}]}}
      namespaces: [str]            # omitted = not restricted
      environments: [str]          # omitted = not restricted
    rules:
      - description: str           # optional
        when:                      # optional; omitted or {} = always
          <path>: <matcher>        # several keys are ANDed
          cel: "<expr>"            # a whole-context CEL clause (may stand alone)
        require: {approval: human, approvalRouting: {approvers, timeoutMinutes, onTimeout}, channels}
        action: <action>           # a rule has require, action, or both
    audit: {logRequests: bool, logDecisions: bool, redactSecrets: bool}   # all default true

    matcher := scalar                              equality (membership for list-valued context)
             | "<n" | "<=n" | ">n" | ">=n"         numeric comparison
             | not-allowlisted                     model.provider only
             | [scalar | comparison, ...]          any-of
             | {cel: "<expr>"}                     CEL over the whole context (the path must be present)
    action  := deny | allow
             | {deny: true, reason?}
             | {redact: true, redactionRules?, reason?}            (modify)
             | {modify: redact, redactionRules?, reason?}          (modify)
             | {effect: allow|deny|modify, reason?, redact?, redactionRules?}   (the normal form itself)

Rejected, with a field path and a message that names the rule: a scalar action with a sibling
``reason`` (write ``{deny: true, reason: ...}``), unknown fields, unknown context paths, malformed
comparisons, ``require`` on a deny, and CEL that breaks the compile-time limits or names something
outside the decision context. Whether CEL *compiles* is checked in compiling.py (it needs a backend).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Final, cast

from joch.domain.policy import cel, context, errors, model, redaction

_COMPARISON = re.compile(r"^(<=|>=|<|>)\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$")
_NOT_ALLOWLISTED: Final = "not-allowlisted"
_ACTION_FORMS: Final = (
    "deny, allow, {deny: true, reason: ...}, {redact: true, redactionRules: [...]}"
    " or {modify: redact, reason: ...}"
)
_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclasses.dataclass
class ParseOutcome:
    """What parsing found: the normal form (None when there are errors), the errors, every CEL clause."""

    spec: model.PolicySpec | None
    errors: list[errors.FieldError]
    cel_clauses: list[model.Clause]


class _Context:
    def __init__(self, limits: cel.CelLimits) -> None:
        self.limits = limits
        self.errors: list[errors.FieldError] = []
        self.cel_clauses: list[model.Clause] = []

    def error(self, path: str, message: str, reason: errors.FieldErrorReason = "Invalid") -> None:
        self.errors.append(errors.FieldError(path=path, message=message, reason=reason))

    def unknown_fields(self, value: Mapping[Any, Any], path: str, known: tuple[str, ...], what: str) -> None:
        for key in value:
            if key not in known:
                self.error(f"{path}.{key}", f"unknown field in {what} (known: {', '.join(known)})", "Unknown")


def parse_policy_spec(spec: Any, *, limits: cel.CelLimits = cel.DEFAULT_LIMITS) -> model.PolicySpec:
    """The normal form of ``spec``. Raises PolicySpecError listing every problem."""
    outcome = parse(spec, limits=limits)
    if outcome.spec is None:
        raise errors.PolicySpecError(outcome.errors)
    return outcome.spec


def parse(spec: Any, *, limits: cel.CelLimits = cel.DEFAULT_LIMITS) -> ParseOutcome:
    """Parse without raising; see ``ParseOutcome``."""
    ctx = _Context(limits)
    if not isinstance(spec, Mapping):
        ctx.error("spec", "the Policy spec must be a map")
        return ParseOutcome(None, ctx.errors, ctx.cel_clauses)
    ctx.unknown_fields(spec, "spec", ("description", "appliesTo", "rules", "audit"), "a Policy spec")
    description = _optional_str(ctx, spec.get("description"), "spec.description")
    applies_to = _applies_to(ctx, spec.get("appliesTo"), "spec.appliesTo")
    rules = _rules(ctx, spec.get("rules"), "spec.rules")
    audit = _audit(ctx, spec.get("audit"), "spec.audit")
    if ctx.errors:
        return ParseOutcome(None, ctx.errors, ctx.cel_clauses)
    parsed = model.PolicySpec(description=description, applies_to=applies_to, rules=rules, audit=audit)
    return ParseOutcome(parsed, ctx.errors, ctx.cel_clauses)


# --- small typed readers ------------------------------------------------------------------------------


def _optional_str(ctx: _Context, value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        ctx.error(path, "must be a string")
        return None
    return value


def _str_list(ctx: _Context, value: Any, path: str, *, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        ctx.error(path, f"must be a list of {what}")
        return ()
    items: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            ctx.error(f"{path}[{index}]", f"must be a non-empty string ({what})")
        else:
            items.append(item)
    return tuple(items)


def _bool(ctx: _Context, value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        ctx.error(path, "must be true or false")
        return default
    return value


# --- appliesTo and audit ------------------------------------------------------------------------------


def _applies_to(ctx: _Context, value: Any, path: str) -> model.AppliesTo:
    if value is None:
        return model.AppliesTo()
    if not isinstance(value, Mapping):
        ctx.error(path, "must be a map with agents, namespaces and/or environments")
        return model.AppliesTo()
    ctx.unknown_fields(value, path, ("agents", "namespaces", "environments"), "appliesTo")
    match_labels: dict[str, str] | None = None
    expressions: list[model.LabelRequirement] = []
    agents = value.get("agents")
    if agents is not None:
        if not isinstance(agents, Mapping):
            ctx.error(f"{path}.agents", "must be a map: {selector: {matchLabels: {...}}}")
        else:
            ctx.unknown_fields(agents, f"{path}.agents", ("selector",), "appliesTo.agents")
            match_labels, expressions = _selector(ctx, agents.get("selector"), f"{path}.agents.selector")
    namespaces = _scope_list(ctx, value.get("namespaces"), f"{path}.namespaces", what="namespace names")
    environments = _scope_list(
        ctx, value.get("environments"), f"{path}.environments", what="environment names"
    )
    return model.AppliesTo(
        match_labels=match_labels or None,
        match_expressions=tuple(expressions),
        namespaces=namespaces,
        environments=environments,
    )


def _scope_list(ctx: _Context, value: Any, path: str, *, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = _str_list(ctx, value, path, what=what)
    if isinstance(value, list) and not value:
        ctx.error(path, "must not be empty; omit it to apply everywhere")
    return frozenset(items)


def _selector(
    ctx: _Context, value: Any, path: str
) -> tuple[dict[str, str] | None, list[model.LabelRequirement]]:
    if value is None:
        return None, []
    if not isinstance(value, Mapping):
        ctx.error(path, "must be a label selector: {matchLabels: {...}, matchExpressions: [...]}")
        return None, []
    ctx.unknown_fields(value, path, ("matchLabels", "matchExpressions"), "a label selector")
    labels = _match_labels(ctx, value.get("matchLabels"), f"{path}.matchLabels")
    expressions: list[model.LabelRequirement] = []
    raw_expressions = value.get("matchExpressions")
    if raw_expressions is not None:
        if not isinstance(raw_expressions, list):
            ctx.error(f"{path}.matchExpressions", "must be a list of {key, operator, values}")
        else:
            for index, raw in enumerate(raw_expressions):
                requirement = _label_requirement(ctx, raw, f"{path}.matchExpressions[{index}]")
                if requirement is not None:
                    expressions.append(requirement)
    return labels, expressions


def _match_labels(ctx: _Context, value: Any, path: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    if value is None:
        return labels
    if not isinstance(value, Mapping):
        ctx.error(path, "must be a map of label: value")
        return labels
    for key, label_value in value.items():
        if not isinstance(key, str) or not key:
            ctx.error(path, f"label key {key!r} must be a non-empty string")
        elif not isinstance(label_value, str):
            ctx.error(f"{path}.{key}", "a label value must be a string (quote it)")
        else:
            labels[key] = label_value
    return labels


def _label_requirement(ctx: _Context, raw: Any, path: str) -> model.LabelRequirement | None:
    if not isinstance(raw, Mapping):
        ctx.error(path, "must be a map: {key, operator, values}")
        return None
    ctx.unknown_fields(raw, path, ("key", "operator", "values"), "a label selector requirement")
    key, op, values = raw.get("key"), raw.get("operator"), raw.get("values")
    ok = True
    if not isinstance(key, str) or not key:
        ctx.error(f"{path}.key", "must be a non-empty string", "Required" if key is None else "Invalid")
        ok = False
    if op not in _OPERATORS:
        ctx.error(f"{path}.operator", f"must be one of {', '.join(_OPERATORS)}", "NotSupported")
        return None
    items: tuple[str, ...] = ()
    if op in ("In", "NotIn"):
        if not values:
            ctx.error(f"{path}.values", f"operator {op} needs at least one value", "Required")
            return None
        items = _str_list(ctx, values, f"{path}.values", what="label values")
        ok = ok and isinstance(values, list) and len(items) == len(values)
    elif values not in (None, []):
        ctx.error(f"{path}.values", f"operator {op} takes no values")
        ok = False
    if not ok:
        return None
    return model.LabelRequirement(key=cast(str, key), operator=op, values=frozenset(items))


def _audit(ctx: _Context, value: Any, path: str) -> model.Audit:
    if value is None:
        return model.Audit()
    if not isinstance(value, Mapping):
        ctx.error(path, "must be a map of logRequests, logDecisions, redactSecrets")
        return model.Audit()
    ctx.unknown_fields(value, path, ("logRequests", "logDecisions", "redactSecrets"), "audit")
    return model.Audit(
        log_requests=_bool(ctx, value.get("logRequests"), f"{path}.logRequests", True),
        log_decisions=_bool(ctx, value.get("logDecisions"), f"{path}.logDecisions", True),
        redact_secrets=_bool(ctx, value.get("redactSecrets"), f"{path}.redactSecrets", True),
    )


# --- rules --------------------------------------------------------------------------------------------


def _rules(ctx: _Context, value: Any, path: str) -> tuple[model.Rule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        ctx.error(path, "must be a list of rules")
        return ()
    rules = [_rule(ctx, raw, index, f"{path}[{index}]") for index, raw in enumerate(value)]
    return tuple(rule for rule in rules if rule is not None)


def _rule(ctx: _Context, raw: Any, index: int, path: str) -> model.Rule | None:
    if not isinstance(raw, Mapping):
        ctx.error(path, f"rule {index}: must be a map with when, require and/or action")
        return None
    before = len(ctx.errors)
    if "reason" in raw:
        ctx.error(
            f"{path}.reason",
            f"rule {index}: reason belongs inside the action; write action: {{deny: true, reason: ...}}",
        )
    ctx.unknown_fields(
        {key: None for key in raw if key != "reason"},
        path,
        ("description", "when", "require", "action"),
        "a rule",
    )
    description = _optional_str(ctx, raw.get("description"), f"{path}.description")
    clauses = _when(ctx, raw.get("when"), f"{path}.when")
    require = _require(ctx, raw.get("require"), f"{path}.require") if raw.get("require") is not None else None
    action = (
        _action(ctx, raw.get("action"), index, f"{path}.action") if raw.get("action") is not None else None
    )
    if raw.get("require") is None and raw.get("action") is None:
        ctx.error(path, f"rule {index}: a rule needs an action, a require, or both", "Required")
    if require is not None and action is not None and action.effect == "deny":
        ctx.error(f"{path}.require", f"rule {index}: require has no effect when the action is deny")
    if len(ctx.errors) > before:
        return None
    return model.Rule(index=index, clauses=clauses, action=action, require=require, description=description)


def _when(ctx: _Context, value: Any, path: str) -> tuple[model.Clause, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        ctx.error(path, 'must be a map of path: matcher (or {cel: "<expression>"})')
        return ()
    clauses: list[model.Clause] = []
    for key, matcher_value in value.items():
        clause_path = f"{path}.{key}"
        if not isinstance(key, str):
            ctx.error(path, f"key {key!r} must be a string path")
            continue
        if key == "cel":
            cel_matcher = _cel(ctx, matcher_value, clause_path)
            if cel_matcher is not None:
                _add_cel(ctx, clauses, model.Clause(None, (), cel_matcher, clause_path))
            continue
        try:
            keys = context.parse_path(key)
        except ValueError as exc:
            ctx.error(clause_path, str(exc), "Unknown")
            continue
        if isinstance(matcher_value, Mapping):
            if set(matcher_value) != {"cel"}:
                ctx.error(clause_path, 'a map matcher must be exactly {cel: "<expression>"}')
                continue
            cel_matcher = _cel(ctx, matcher_value["cel"], f"{clause_path}.cel")
            if cel_matcher is not None:
                _add_cel(ctx, clauses, model.Clause(key, keys, cel_matcher, f"{clause_path}.cel"))
            continue
        matcher = _matcher(ctx, matcher_value, keys, clause_path)
        if matcher is not None:
            clauses.append(model.Clause(key, keys, matcher, clause_path))
    return tuple(clauses)


def _add_cel(ctx: _Context, clauses: list[model.Clause], clause: model.Clause) -> None:
    clauses.append(clause)
    ctx.cel_clauses.append(clause)


def _cel(ctx: _Context, source: Any, path: str) -> model.Cel | None:
    if not isinstance(source, str):
        ctx.error(path, "a CEL expression must be a string")
        return None
    try:
        scanned = cel.scan(source, ctx.limits)
    except errors.CelCompileError as exc:
        ctx.error(path, f"{rule_prefix(path)}CEL is rejected: {exc}", "CelCompileFailed")
        return None
    return model.Cel(source=source, roots=scanned.roots, paths=scanned.paths)


def rule_prefix(path: str) -> str:
    """``"rule <i>: "`` for a path inside ``spec.rules[<i>]``, else the empty string."""
    match = re.match(r"spec\.rules\[(\d+)\]", path)
    return f"rule {match.group(1)}: " if match else ""


def _matcher(ctx: _Context, value: Any, keys: tuple[str, ...], path: str) -> model.Matcher | None:
    if isinstance(value, list):
        if not value:
            ctx.error(path, "an any-of list must not be empty")
            return None
        options = [_scalar_matcher(ctx, item, keys, f"{path}[{index}]") for index, item in enumerate(value)]
        if any(option is None for option in options):
            return None
        return model.AnyOf(tuple(option for option in options if option is not None))
    return _scalar_matcher(ctx, value, keys, path)


def _scalar_matcher(
    ctx: _Context, value: Any, keys: tuple[str, ...], path: str
) -> model.ScalarMatcher | None:
    if isinstance(value, bool):
        return model.Equals(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            ctx.error(path, "a number must be finite")
            return None
        return model.Equals(value)
    if isinstance(value, str):
        return _string_matcher(ctx, value, keys, path)
    if value is None:
        ctx.error(path, "a matcher cannot be null", "Required")
    else:
        ctx.error(path, "a matcher must be a string, number, boolean, list or {cel: ...}")
    return None


def _string_matcher(
    ctx: _Context, value: str, keys: tuple[str, ...], path: str
) -> model.ScalarMatcher | None:
    if value == _NOT_ALLOWLISTED:
        if keys != ("model", "provider"):
            ctx.error(path, "not-allowlisted is only defined for model.provider", "NotSupported")
            return None
        return model.NotAllowlisted()
    if value[:1] in ("<", ">"):
        match = _COMPARISON.match(value)
        if match is None:
            ctx.error(path, f'{value!r} is not a numeric comparison; write e.g. ">5" or "<=0.75"')
            return None
        op = cast(model.CompareOp, match.group(1))
        return model.Compare(op=op, number=float(match.group(2)), text=value)
    return model.Equals(value)


# --- require and action -------------------------------------------------------------------------------


def _require(ctx: _Context, value: Any, path: str) -> model.Requirement | None:
    if not isinstance(value, Mapping):
        ctx.error(path, "must be a map: {approval: human, approvalRouting: {...}, channels: [...]}")
        return None
    ctx.unknown_fields(value, path, ("approval", "approvalRouting", "channels"), "require")
    before = len(ctx.errors)
    if value.get("approval") != "human":
        reason: errors.FieldErrorReason = "Required" if value.get("approval") is None else "NotSupported"
        ctx.error(f"{path}.approval", "must be human (the only gate there is)", reason)
    approvers: tuple[str, ...] = ()
    timeout: int | None = None
    on_timeout: str | None = None
    routing = value.get("approvalRouting")
    if routing is not None:
        routing_path = f"{path}.approvalRouting"
        if not isinstance(routing, Mapping):
            ctx.error(routing_path, "must be a map: {approvers: [...], timeoutMinutes: n, onTimeout: deny}")
        else:
            ctx.unknown_fields(
                routing, routing_path, ("approvers", "timeoutMinutes", "onTimeout"), "approvalRouting"
            )
            if routing.get("approvers") is not None:
                approvers = _str_list(
                    ctx, routing["approvers"], f"{routing_path}.approvers", what="approvers"
                )
            timeout = routing.get("timeoutMinutes")
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0
            ):
                ctx.error(f"{routing_path}.timeoutMinutes", "must be a positive integer")
            on_timeout = routing.get("onTimeout")
            if on_timeout is not None and on_timeout not in ("deny", "allow"):
                ctx.error(f"{routing_path}.onTimeout", "must be deny or allow", "NotSupported")
    channels: tuple[str, ...] = ()
    if value.get("channels") is not None:
        channels = _str_list(ctx, value["channels"], f"{path}.channels", what="channels")
    if len(ctx.errors) > before:
        return None
    return model.Requirement(
        approvers=approvers,
        timeout_minutes=timeout,
        on_timeout=cast("Any", on_timeout),
        channels=channels,
    )


def _scalar_action(ctx: _Context, value: str, index: int, path: str) -> model.Action | None:
    if value in ("deny", "allow"):
        return model.Action(effect=cast(model.Effect, value))
    if value in ("modify", "redact"):
        message = f"rule {index}: a modify action needs its details: {{redact: true, redactionRules: [...]}}"
        ctx.error(path, message)
    else:
        ctx.error(path, f"rule {index}: {value!r} is not an action; use {_ACTION_FORMS}", "NotSupported")
    return None


def _action(ctx: _Context, value: Any, index: int, path: str) -> model.Action | None:
    if isinstance(value, str):
        return _scalar_action(ctx, value, index, path)
    if not isinstance(value, Mapping):
        ctx.error(path, f"rule {index}: the action must be {_ACTION_FORMS}")
        return None
    before = len(ctx.errors)
    if "effect" in value:
        action = _normal_action(ctx, value, index, path)
    elif "deny" in value:
        ctx.unknown_fields(value, path, ("deny", "reason"), "a {deny: true} action")
        if value["deny"] is not True:
            ctx.error(f"{path}.deny", f"rule {index}: deny must be true (to allow, write action: allow)")
        action = model.Action(effect="deny", reason=_reason(ctx, value, path))
    elif "redact" in value:
        ctx.unknown_fields(value, path, ("redact", "redactionRules", "reason"), "a {redact: true} action")
        if value["redact"] is not True:
            ctx.error(f"{path}.redact", f"rule {index}: redact must be true")
        action = _modify(ctx, value, path)
    elif "modify" in value:
        ctx.unknown_fields(value, path, ("modify", "redactionRules", "reason"), "a {modify: redact} action")
        if value["modify"] != "redact":
            ctx.error(f"{path}.modify", f"rule {index}: the only modification is redact", "NotSupported")
        action = _modify(ctx, value, path)
    else:
        ctx.error(path, f"rule {index}: the action must be {_ACTION_FORMS}")
        return None
    return action if len(ctx.errors) == before else None


def _normal_action(ctx: _Context, value: Mapping[str, Any], index: int, path: str) -> model.Action:
    ctx.unknown_fields(
        value, path, ("effect", "reason", "redact", "redactionRules"), "an {effect: ...} action"
    )
    effect = value["effect"]
    if effect not in ("allow", "deny", "modify"):
        ctx.error(f"{path}.effect", f"rule {index}: effect must be allow, deny or modify", "NotSupported")
        return model.Action(effect="deny")
    if effect == "modify":
        if value.get("redact", True) is not True:
            ctx.error(f"{path}.redact", f"rule {index}: a modify must redact (redact: true)")
        return _modify(ctx, value, path)
    if value.get("redact") is not None or value.get("redactionRules") is not None:
        ctx.error(path, f"rule {index}: redact and redactionRules only go with effect: modify")
    return model.Action(effect=effect, reason=_reason(ctx, value, path))


def _modify(ctx: _Context, value: Mapping[str, Any], path: str) -> model.Action:
    rules: tuple[str, ...] = redaction.ALL_RULES
    raw = value.get("redactionRules")
    if raw is not None:
        rules = _str_list(ctx, raw, f"{path}.redactionRules", what="redaction rule names")
        if isinstance(raw, list) and not raw:
            ctx.error(f"{path}.redactionRules", "must not be empty; omit it to apply every rule")
        for position, name in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(name, str) and name and name not in redaction.RULES:
                known = ", ".join(redaction.RULES)
                ctx.error(
                    f"{path}.redactionRules[{position}]", f"unknown redaction rule {name!r} (known: {known})"
                )
    return model.Action(effect="modify", reason=_reason(ctx, value, path), redact=True, redaction_rules=rules)


def _reason(ctx: _Context, value: Mapping[str, Any], path: str) -> str | None:
    reason = value.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or not reason.strip():
        ctx.error(f"{path}.reason", "must be a non-empty string")
        return None
    return reason
