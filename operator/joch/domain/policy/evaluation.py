"""Evaluate compiled policies against one decision context: ``evaluate(policies, context) -> Decision``.

Order and outcome (decision D8, docs/decisions.md):

1. Policies in the order given, and each policy's rules in declared order.
2. A rule whose ``when`` matches applies its effect. The first matching ``deny`` ends the evaluation
   (short-circuit). ``modify`` rules accumulate: their redaction rules merge, in order. ``allow`` rules
   never override a deny; they only name the deciding rule when nothing else does.
3. ``require.approval`` on a matching (non-deny) rule adds ``requires.approval`` (first one wins).
4. Nothing matched: ``allow``.

Failing closed. A rule that raises while matching (a CEL runtime error, a CEL timeout, anything
unexpected) denies at once, with a reason ``PolicyError: rule <i> of policy <ns>/<name> failed: ...``.
So does a context that is not a map. ``evaluate`` itself never raises for any context.

Preflight (D9). With ``preflight=True`` the rules that read runtime-only parts of the context
(cost, data, payload, mcpResult; found at compile time, CEL included) are skipped: admission evaluates
what it can know before anything runs.

Emergency disable. ``disabled_rules`` maps ``(policyId, ruleIndex)`` to an expiry time; policyId is the
Policy's name or ``namespace/name``. A rule is skipped while ``now < expiry`` and reported in
``Decision.disabled_rules``; after it, the rule is back. ``now`` is an argument (the domain never reads
the clock); naive datetimes are read as UTC.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, cast

from joch.domain.policy import compiling, decision, errors, redaction

DisabledRules = Mapping[tuple[str, int], datetime.datetime]
_Hit = tuple[compiling.CompiledPolicy, compiling.CompiledRule]


def evaluate(
    policies: Iterable[compiling.CompiledPolicy],
    context: Mapping[str, Any],
    *,
    now: datetime.datetime | None = None,
    disabled_rules: DisabledRules | None = None,
    preflight: bool = False,
) -> decision.Decision:
    """The decision of ``policies`` (in order) for ``context``; see the module docstring."""
    if not isinstance(cast(object, context), Mapping):
        return decision.Decision("deny", "PolicyError: the decision context must be a map")
    disabled = _in_force(disabled_rules, now) if disabled_rules else None
    skipped: list[decision.DisabledRule] = []
    modifies: list[_Hit] = []
    approval: _Hit | None = None
    allowed: _Hit | None = None
    scratch: dict[Any, Any] = {}  # per-decision CEL memo (compiling._cel_test)
    for policy in policies:
        for rule in policy.rules:
            if (preflight and rule.runtime_only) or (
                disabled is not None and _disabled(disabled, policy, rule, skipped)
            ):
                continue
            try:
                if not rule.test(context) or (
                    rule.cel_tests and not all(test(context, scratch) for test in rule.cel_tests)
                ):
                    continue
            except Exception as exc:
                return _failure(policy, rule, exc, skipped)
            if rule.effect == "deny":
                reason = rule.reason or _default_reason("denied", policy, rule)
                return _decided(policy, rule, "deny", reason, skipped)
            if rule.effect == "modify":
                modifies.append((policy, rule))
            elif allowed is None:
                allowed = (policy, rule)
            if approval is None and rule.requires is not None:
                approval = (policy, rule)
    return _outcome(context, modifies, approval, allowed, skipped)


def _disabled(
    disabled: Mapping[tuple[str, int], datetime.datetime],
    policy: compiling.CompiledPolicy,
    rule: compiling.CompiledRule,
    skipped: list[decision.DisabledRule],
) -> bool:
    until = disabled.get((policy.name, rule.index)) or disabled.get((policy.qualified_name, rule.index))
    if until is None:
        return False
    skipped.append(decision.DisabledRule(policy.name, policy.namespace, rule.index, until))
    return True


def _in_force(
    disabled_rules: DisabledRules, now: datetime.datetime | None
) -> dict[tuple[str, int], datetime.datetime]:
    if now is None:
        raise ValueError("evaluate(): `now` is required when disabled_rules is given")
    current = _aware(now)
    return {key: _aware(until) for key, until in disabled_rules.items() if current < _aware(until)}


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _default_reason(verb: str, policy: compiling.CompiledPolicy, rule: compiling.CompiledRule) -> str:
    return f"{verb} by policy {policy.qualified_name} rule {rule.index}"


def _decided(
    policy: compiling.CompiledPolicy,
    rule: compiling.CompiledRule,
    effect: Any,
    reason: str,
    skipped: list[decision.DisabledRule],
    **extra: Any,
) -> decision.Decision:
    return decision.Decision(
        decision=effect,
        reason=reason,
        policy_id=policy.name,
        policy_namespace=policy.namespace,
        policy_version=policy.version,
        rule=rule.index,
        disabled_rules=tuple(skipped),
        **extra,
    )


def _failure(
    policy: compiling.CompiledPolicy,
    rule: compiling.CompiledRule,
    exc: Exception,
    skipped: list[decision.DisabledRule],
) -> decision.Decision:
    if isinstance(exc, errors.PolicyError):
        detail = str(exc)
    else:
        detail = f"internal error {type(exc).__name__}: {errors.truncate(str(exc))}"
    reason = f"PolicyError: rule {rule.index} of policy {policy.qualified_name} failed: {detail}"
    return _decided(policy, rule, "deny", reason, skipped)


def _requires(hit: _Hit | None) -> Mapping[str, Any] | None:
    if hit is None:
        return None
    policy, rule = hit
    assert rule.requires is not None
    approval = rule.requires.to_decision()
    approval.update(policyId=policy.name, policyNamespace=policy.namespace, rule=rule.index)
    return {"approval": approval}


def _outcome(
    context: Mapping[str, Any],
    modifies: list[_Hit],
    approval: _Hit | None,
    allowed: _Hit | None,
    skipped: list[decision.DisabledRule],
) -> decision.Decision:
    requires = _requires(approval)
    if modifies:
        policy, rule = modifies[0]
        rules = redaction.canonical_order(name for _, hit in modifies for name in hit.redaction_rules)
        payload = context.get("payload")
        try:
            modified = None if payload is None else redaction.redact(payload, rules)
        except Exception as exc:
            return _failure(policy, rule, exc, skipped)
        reason = (
            rule.reason
            or f"redacted ({', '.join(rules)}) by policy {policy.qualified_name} rule {rule.index}"
        )
        return _decided(
            policy,
            rule,
            "modify",
            reason,
            skipped,
            modified_request=modified,
            redaction_rules=rules,
            requires=requires,
        )
    if approval is not None:
        policy, rule = approval
        reason = rule.reason or _default_reason("approval required", policy, rule)
        return _decided(policy, rule, "allow", reason, skipped, requires=requires)
    if allowed is not None:
        policy, rule = allowed
        return _decided(
            policy, rule, "allow", rule.reason or _default_reason("allowed", policy, rule), skipped
        )
    return decision.Decision("allow", "no rule matched", disabled_rules=tuple(skipped))
