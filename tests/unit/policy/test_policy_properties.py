"""Properties (hypothesis): evaluation never raises and is deterministic; validation never raises.

- generated valid rules (every matcher kind, every action form, require, CEL from a pool that
  includes failing expressions) against generated contexts (well-shaped, odd types, nulls, garbage):
  evaluate() returns a Decision, the same one twice, the same one after recompiling, and the same
  one through a PolicySet; preflight evaluation never raises either
- arbitrary JSON-shaped specs: validate_policy_spec() returns a list and never raises, and
  compile_policy() either compiles or raises PolicySpecError
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joch.domain import policy

SCALARS = st.one_of(
    st.sampled_from(["financial", "external_write", "openai", "pii", "prod", "x", ""]),
    st.integers(min_value=-3, max_value=10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)

PATHS = [
    "hook",
    "tool.name",
    "tool.sideEffect",
    "tool.requiresApproval",
    "model.provider",
    "model.tier",
    "mcpServer.trustScore",
    "mcpServer.schemaDrift",
    "mcpResult.injectionScan.hit",
    "data.contains",
    "cost.runUsd",
    "agent.labels.team",
    "payload.inputs",
    "environment.name",
]
CEL_POOL = [
    "tool.sideEffect == 'financial' && cost.runUsd > 1.0",
    "data.contains.exists(c, c == 'pii')",
    "has(tool.name) && tool.name.startsWith('x')",
    "cost.runUsd / 0.0 > 1.0",
    "1 / 0 == 1",
    "tool.name",
    "size(payload) > 1",
    "agent.labels.team in ['a', 'b']",
    "mcpServer.trustScore < 0.5 || mcpServer.schemaDrift",
]

comparisons = st.builds(
    lambda op, n: f"{op}{n}", st.sampled_from(["<", "<=", ">", ">="]), st.integers(min_value=-2, max_value=8)
)
scalar_matchers = st.one_of(
    st.sampled_from(["financial", "pii", "openai", "x", "prod"]),
    st.integers(min_value=-2, max_value=8),
    st.booleans(),
    comparisons,
)
matchers = st.one_of(
    scalar_matchers,
    st.lists(scalar_matchers, min_size=1, max_size=3),
    st.builds(lambda source: {"cel": source}, st.sampled_from(CEL_POOL)),
)


@st.composite
def when_maps(draw: st.DrawFn) -> dict[str, Any]:
    when: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True)):
        when[path] = draw(matchers)
    if draw(st.booleans()) and draw(st.booleans()):
        when["model.provider"] = "not-allowlisted"
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        when["cel"] = draw(st.sampled_from(CEL_POOL))
    return when


actions = st.sampled_from(
    [
        "deny",
        "allow",
        {"deny": True, "reason": "because"},
        {"redact": True, "redactionRules": ["emails", "ssn"]},
        {"modify": "redact", "reason": "pii"},
        {"effect": "allow"},
    ]
)


@st.composite
def rule_dicts(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        rule["when"] = draw(when_maps())
    action = draw(st.one_of(st.none(), actions))
    if action is not None:
        rule["action"] = action
    if action is None or (
        draw(st.booleans()) and action not in ("deny", {"deny": True, "reason": "because"})
    ):
        rule["require"] = {"approval": "human", "approvalRouting": {"approvers": ["team:x"]}}
    return rule


@st.composite
def contexts(draw: st.DrawFn) -> Any:
    values = st.one_of(SCALARS, JSON)
    context: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=8, unique=True)):
        keys = path.split(".")
        node = context
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = draw(values)
    if draw(st.booleans()):
        context["environment"] = {"name": "prod", "allowedProviders": draw(st.one_of(st.none(), JSON))}
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        context[draw(st.sampled_from(["tool", "cost", "agent", "payload"]))] = draw(JSON)
    if draw(st.integers(min_value=0, max_value=19)) == 0:
        return draw(JSON)  # not even a map, sometimes
    return context


NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(rule_dicts(), min_size=1, max_size=4), min_size=1, max_size=3),
    contexts(),
    st.booleans(),
)
def test_evaluation_never_raises_and_is_deterministic(
    rule_sets: list[list[dict[str, Any]]], context: Any, preflight: bool
) -> None:
    def build() -> list[policy.CompiledPolicy]:
        return [
            policy.compile_policy(name=f"p{index}", namespace="ns", generation=1, spec={"rules": rules})
            for index, rules in enumerate(rule_sets)
        ]

    compiled = build()
    disabled = {("p0", 0): NOW + datetime.timedelta(minutes=1)}
    first = policy.evaluate(compiled, context, preflight=preflight, now=NOW, disabled_rules=disabled)
    again = policy.evaluate(compiled, context, preflight=preflight, now=NOW, disabled_rules=disabled)
    rebuilt = policy.evaluate(build(), context, preflight=preflight, now=NOW, disabled_rules=disabled)
    assert first == again == rebuilt
    assert first.to_dict() == rebuilt.to_dict()
    assert first.decision in ("allow", "deny", "modify")
    if first.decision == "deny" and first.reason.startswith("PolicyError: rule"):
        assert first.rule is not None
    through_set = policy.PolicySet(compiled).decide(context, preflight=preflight)
    plain = policy.evaluate(
        policy.PolicySet(compiled).select(namespace=None, labels={}, environment=None),
        context,
        preflight=preflight,
    )
    if not isinstance(context, dict) or not isinstance(context.get("agent"), dict):
        assert through_set == plain


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        JSON, st.fixed_dictionaries({}, optional={"rules": st.lists(JSON, max_size=3), "appliesTo": JSON})
    )
)
def test_validation_never_raises(spec: Any) -> None:
    found = policy.validate_policy_spec(spec)
    assert isinstance(found, list)
    if found:
        with pytest.raises(policy.PolicySpecError) as raised:
            policy.compile_policy(name="p", namespace="n", generation=1, spec=spec)
        assert list(raised.value.errors) == found
    else:
        policy.compile_policy(name="p", namespace="n", generation=1, spec=spec)
