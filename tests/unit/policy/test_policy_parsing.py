"""Parsing Policy specs into the normal form, and rejecting bad ones with field paths.

Case matrix:
- every accepted action form -> its normal form {effect, reason?, redact?, redactionRules?}
- every accepted matcher form -> its matcher (equality, comparison, any-of, not-allowlisted, CEL)
- rejected specs: one FieldError per problem, with the exact path and a message naming the rule
- validate_policy_spec returns ALL errors (structure and CEL compile errors together)
- compile_policy raises PolicySpecError carrying the same errors
- the normal form round-trips through to_dict()
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain import policy
from joch.domain.policy import model, parsing


def _only_rule(spec: dict[str, Any]) -> model.Rule:
    parsed = policy.parse_policy_spec(spec)
    assert len(parsed.rules) == 1
    return parsed.rules[0]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param("deny", {"effect": "deny"}, id="scalar deny"),
        pytest.param("allow", {"effect": "allow"}, id="scalar allow"),
        pytest.param(
            {"deny": True, "reason": "no shell"},
            {"effect": "deny", "reason": "no shell"},
            id="deny map with reason",
        ),
        pytest.param({"deny": True}, {"effect": "deny"}, id="deny map without reason"),
        pytest.param(
            {"redact": True, "redactionRules": ["emails", "ssn"]},
            {"effect": "modify", "redact": True, "redactionRules": ["emails", "ssn"]},
            id="redact with rules is a modify",
        ),
        pytest.param(
            {"redact": True},
            {
                "effect": "modify",
                "redact": True,
                "redactionRules": ["ssn", "creditCards", "emails", "phoneNumbers"],
            },
            id="redact without rules means every rule",
        ),
        pytest.param(
            {"modify": "redact", "reason": "pii"},
            {
                "effect": "modify",
                "reason": "pii",
                "redact": True,
                "redactionRules": ["ssn", "creditCards", "emails", "phoneNumbers"],
            },
            id="modify redact with reason",
        ),
        pytest.param(
            {"effect": "deny", "reason": "x"},
            {"effect": "deny", "reason": "x"},
            id="normal form deny is accepted",
        ),
        pytest.param(
            {"effect": "modify", "redact": True, "redactionRules": ["emails"]},
            {"effect": "modify", "redact": True, "redactionRules": ["emails"]},
            id="normal form modify is accepted",
        ),
    ],
)
def test_action_forms_normalise(action: Any, expected: dict[str, Any]) -> None:
    rule = _only_rule({"rules": [{"when": {"tool.name": "x"}, "action": action}]})
    assert rule.action is not None
    assert rule.action.to_dict() == expected


@pytest.mark.parametrize(
    ("rule", "path", "fragment"),
    [
        pytest.param(
            {"when": {"tool.name": "x"}, "action": "deny", "reason": "why"},
            "spec.rules[1].reason",
            "rule 1: reason belongs inside the action",
            id="scalar action with a sibling reason is the invalid form",
        ),
        pytest.param(
            {"action": "block"},
            "spec.rules[1].action",
            "rule 1: 'block' is not an action",
            id="unknown scalar action",
        ),
        pytest.param(
            {"action": "modify"},
            "spec.rules[1].action",
            "rule 1: a modify action needs its details",
            id="bare modify",
        ),
        pytest.param(
            {"action": {"deny": False}}, "spec.rules[1].action.deny", "deny must be true", id="deny false"
        ),
        pytest.param(
            {"action": {"deny": True, "why": "x"}},
            "spec.rules[1].action.why",
            "unknown field",
            id="deny extra key",
        ),
        pytest.param(
            {"action": {"allow": True}}, "spec.rules[1].action", "rule 1: the action must be", id="allow map"
        ),
        pytest.param(
            {"action": {"modify": "rewrite"}},
            "spec.rules[1].action.modify",
            "the only modification is redact",
            id="modify other than redact",
        ),
        pytest.param(
            {"action": {"redact": True, "redactionRules": ["emails", "iban"]}},
            "spec.rules[1].action.redactionRules[1]",
            "unknown redaction rule 'iban'",
            id="unknown redaction rule",
        ),
        pytest.param(
            {"action": {"redact": True, "redactionRules": []}},
            "spec.rules[1].action.redactionRules",
            "must not be empty",
            id="empty redaction rules",
        ),
        pytest.param(
            {"action": {"effect": "block"}},
            "spec.rules[1].action.effect",
            "effect must be",
            id="bad normal effect",
        ),
        pytest.param(
            {"action": {"effect": "deny", "redact": True}},
            "spec.rules[1].action",
            "only go with effect: modify",
            id="redact on a deny effect",
        ),
        pytest.param(
            {"action": {"deny": True, "reason": ""}},
            "spec.rules[1].action.reason",
            "non-empty",
            id="empty reason",
        ),
        pytest.param(
            {"action": 3}, "spec.rules[1].action", "rule 1: the action must be", id="numeric action"
        ),
        pytest.param(
            {"when": {"tool.name": "x"}}, "spec.rules[1]", "needs an action, a require", id="no outcome"
        ),
        pytest.param(
            {"require": {"approval": "human"}, "action": "deny"},
            "spec.rules[1].require",
            "no effect when the action is deny",
            id="require on a deny",
        ),
        pytest.param(
            {"require": {"approval": "robot"}},
            "spec.rules[1].require.approval",
            "must be human",
            id="bad approval",
        ),
        pytest.param(
            {"require": {}}, "spec.rules[1].require.approval", "must be human", id="approval missing"
        ),
        pytest.param(
            {"require": {"approval": "human", "approvalRouting": {"timeoutMinutes": 0}}},
            "spec.rules[1].require.approvalRouting.timeoutMinutes",
            "positive integer",
            id="zero timeout",
        ),
        pytest.param(
            {"require": {"approval": "human", "approvalRouting": {"onTimeout": "escalate"}}},
            "spec.rules[1].require.approvalRouting.onTimeout",
            "deny or allow",
            id="bad onTimeout",
        ),
        pytest.param(
            {"require": {"approval": "human", "channels": "slack:#x"}},
            "spec.rules[1].require.channels",
            "must be a list",
            id="channels not a list",
        ),
        pytest.param(
            {"when": {"cost.runUsd": ">five"}, "action": "deny"},
            "spec.rules[1].when.cost.runUsd",
            "is not a numeric comparison",
            id="malformed comparison",
        ),
        pytest.param(
            {"when": {"cost.runUSD": ">5"}, "action": "deny"},
            "spec.rules[1].when.cost.runUSD",
            "cost has no field 'runUSD' (known: runUsd)",
            id="unknown field under a known root",
        ),
        pytest.param(
            {"when": {"toolz.name": "x"}, "action": "deny"},
            "spec.rules[1].when.toolz.name",
            "the decision context has no field 'toolz'",
            id="unknown root",
        ),
        pytest.param(
            {"when": {"tool": "x"}, "action": "deny"},
            "spec.rules[1].when.tool",
            "tool is an object; match one of its fields",
            id="matching a whole object",
        ),
        pytest.param(
            {"when": {"tool.name.first": "x"}, "action": "deny"},
            "spec.rules[1].when.tool.name.first",
            "tool.name is a value",
            id="descending into a value",
        ),
        pytest.param(
            {"when": {"tool..name": "x"}, "action": "deny"},
            "spec.rules[1].when.tool..name",
            "is not a path",
            id="empty path segment",
        ),
        pytest.param(
            {"when": {"tool.name": "not-allowlisted"}, "action": "deny"},
            "spec.rules[1].when.tool.name",
            "only defined for model.provider",
            id="not-allowlisted off model.provider",
        ),
        pytest.param(
            {"when": {"tool.name": None}, "action": "deny"},
            "spec.rules[1].when.tool.name",
            "cannot be null",
            id="null matcher",
        ),
        pytest.param(
            {"when": {"tool.name": []}, "action": "deny"},
            "spec.rules[1].when.tool.name",
            "must not be empty",
            id="empty any-of",
        ),
        pytest.param(
            {"when": {"tool.name": ["a", ["b"]]}, "action": "deny"},
            "spec.rules[1].when.tool.name[1]",
            "a matcher must be",
            id="nested list in any-of",
        ),
        pytest.param(
            {"when": {"tool.name": {"regex": "a.*"}}, "action": "deny"},
            "spec.rules[1].when.tool.name",
            "exactly {cel:",
            id="map matcher that is not cel",
        ),
        pytest.param(
            {"when": {"cost.runUsd": float("inf")}, "action": "deny"},
            "spec.rules[1].when.cost.runUsd",
            "finite",
            id="infinite number",
        ),
        pytest.param(
            {"when": ["tool.name"], "action": "deny"},
            "spec.rules[1].when",
            "must be a map",
            id="when is a list",
        ),
        pytest.param(
            {"when": {"cel": 5}, "action": "deny"},
            "spec.rules[1].when.cel",
            "must be a string",
            id="cel not a string",
        ),
        pytest.param(
            {"when": {"cel": "tol.name == 'x'"}, "action": "deny"},
            "spec.rules[1].when.cel",
            "rule 1: CEL is rejected: unknown name 'tol'",
            id="cel names something outside the context",
        ),
        pytest.param(
            {"when": {"cel": "tool.name == 'x"}, "action": "deny"},
            "spec.rules[1].when.cel",
            "unterminated string",
            id="cel unterminated string",
        ),
        pytest.param(
            {"when": {"tool.name": "x"}, "action": "deny", "priority": 3},
            "spec.rules[1].priority",
            "unknown field in a rule",
            id="unknown rule field",
        ),
        pytest.param("deny", "spec.rules[1]", "rule 1: must be a map", id="rule not a map"),
    ],
)
def test_rejected_rules_name_the_field_and_rule(rule: Any, path: str, fragment: str) -> None:
    spec = {"rules": [{"when": {"tool.name": "ok"}, "action": "deny"}, rule]}
    found = policy.validate_policy_spec(spec)
    assert [error.path for error in found] == [path], found
    assert fragment in found[0].message
    with pytest.raises(policy.PolicySpecError) as raised:
        policy.compile_policy(name="p", namespace="ns", generation=1, spec=spec)
    assert raised.value.errors == tuple(found)
    assert path in str(raised.value)


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        pytest.param([], "spec", "must be a map", id="spec not a map"),
        pytest.param(
            {"rule": []}, "spec.rule", "unknown field in a Policy spec", id="unknown top-level field"
        ),
        pytest.param({"rules": {}}, "spec.rules", "must be a list", id="rules not a list"),
        pytest.param(
            {"description": 5}, "spec.description", "must be a string", id="description not a string"
        ),
        pytest.param(
            {"appliesTo": {"agents": {"selector": {"matchLabels": {"team": 5}}}}},
            "spec.appliesTo.agents.selector.matchLabels.team",
            "must be a string",
            id="label value not a string",
        ),
        pytest.param(
            {"appliesTo": {"agents": {"matchLabels": {"team": "a"}}}},
            "spec.appliesTo.agents.matchLabels",
            "unknown field",
            id="matchLabels without selector",
        ),
        pytest.param(
            {"appliesTo": {"agents": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}}},
            "spec.appliesTo.agents.selector.matchExpressions[0].operator",
            "must be one of In, NotIn, Exists, DoesNotExist",
            id="bad selector operator",
        ),
        pytest.param(
            {"appliesTo": {"agents": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}},
            "spec.appliesTo.agents.selector.matchExpressions[0].values",
            "needs at least one value",
            id="In without values",
        ),
        pytest.param(
            {
                "appliesTo": {
                    "agents": {
                        "selector": {
                            "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                        }
                    }
                }
            },
            "spec.appliesTo.agents.selector.matchExpressions[0].values",
            "takes no values",
            id="Exists with values",
        ),
        pytest.param(
            {"appliesTo": {"namespaces": []}},
            "spec.appliesTo.namespaces",
            "must not be empty",
            id="empty namespaces",
        ),
        pytest.param(
            {"appliesTo": {"environments": ["prod", ""]}},
            "spec.appliesTo.environments[1]",
            "non-empty string",
            id="empty environment name",
        ),
        pytest.param(
            {"audit": {"logRequests": "yes"}}, "spec.audit.logRequests", "true or false", id="audit not bool"
        ),
    ],
)
def test_rejected_specs(spec: Any, path: str, fragment: str) -> None:
    found = policy.validate_policy_spec(spec)
    assert [error.path for error in found] == [path], found
    assert fragment in found[0].message


def test_every_error_is_reported_not_just_the_first() -> None:
    spec = {
        "appliesTo": {"namespaces": "prod"},
        "rules": [
            {"when": {"cost.runUsd": ">x"}, "action": "deny", "reason": "r"},
            {"when": {"cel": "tool.name == "}, "action": "deny"},
            {"when": {"cel": "(((tool.name)))"}, "action": {"deny": "yes"}},
        ],
        "audit": {"logDecisions": 1},
    }
    found = policy.validate_policy_spec(spec)
    assert sorted(error.path for error in found) == sorted(
        [
            "spec.appliesTo.namespaces",
            "spec.rules[0].reason",
            "spec.rules[0].when.cost.runUsd",
            "spec.rules[1].when.cel",
            "spec.rules[2].action.deny",
            "spec.audit.logDecisions",
        ]
    )
    cel_error = next(error for error in found if error.path == "spec.rules[1].when.cel")
    assert cel_error.reason == "CelCompileFailed"
    assert cel_error.message.startswith("rule 1: CEL does not compile:")


@pytest.mark.parametrize("backend", ["common-expression-language", "cel-python"])
def test_cel_compile_errors_name_the_rule_with_either_backend(backend: str) -> None:
    spec = {
        "rules": [{"action": "allow"}, {"when": {"cost.runUsd": {"cel": "cost.runUsd >"}}, "action": "deny"}]
    }
    options = policy.CompileOptions(backend=policy.get_backend(backend))
    found = policy.validate_policy_spec(spec, options=options)
    assert [error.path for error in found] == ["spec.rules[1].when.cost.runUsd.cel"]
    assert found[0].message.startswith("rule 1: CEL does not compile: ")


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        pytest.param("financial", model.Equals("financial"), id="string equality"),
        pytest.param(5, model.Equals(5), id="int equality"),
        pytest.param(0.5, model.Equals(0.5), id="float equality"),
        pytest.param(True, model.Equals(True), id="bool equality"),
        pytest.param(">5", model.Compare(">", 5.0, ">5"), id="greater than"),
        pytest.param(">= 0.75", model.Compare(">=", 0.75, ">= 0.75"), id="at least, with a space"),
        pytest.param("<-1e3", model.Compare("<", -1000.0, "<-1e3"), id="less than, exponent"),
        pytest.param("<=.5", model.Compare("<=", 0.5, "<=.5"), id="at most, leading dot"),
        pytest.param(
            ["a", ">3"], model.AnyOf((model.Equals("a"), model.Compare(">", 3.0, ">3"))), id="any-of mixed"
        ),
    ],
)
def test_matcher_forms(matcher: Any, expected: model.Matcher) -> None:
    rule = _only_rule({"rules": [{"when": {"cost.runUsd": matcher}, "action": "deny"}]})
    assert rule.clauses[0].matcher == expected


def test_not_allowlisted_and_cel_forms() -> None:
    spec = {
        "rules": [
            {
                "when": {
                    "model.provider": "not-allowlisted",
                    'agent.labels["app.kubernetes.io/name"]': "triage",
                    "cost.runUsd": {"cel": "cost.runUsd > 2.0 && tool.name.startsWith('x')"},
                    "cel": "has(payload.inputs)",
                },
                "action": "deny",
            }
        ]
    }
    rule = _only_rule(spec)
    provider, label, path_cel, whole = rule.clauses
    assert provider.matcher == model.NotAllowlisted()
    assert label.keys == ("agent", "labels", "app.kubernetes.io/name")
    assert isinstance(path_cel.matcher, model.Cel)
    assert path_cel.matcher.roots == {"cost", "tool"}
    assert path_cel.matcher.paths == {("cost", "runUsd"), ("tool", "name")}
    assert whole.path is None
    assert rule.roots == {"model", "agent", "cost", "tool", "payload"}


def test_absent_when_is_unconditional_and_defaults_apply() -> None:
    parsed = policy.parse_policy_spec(
        {"rules": [{"action": "deny"}, {"when": {}, "require": {"approval": "human"}}]}
    )
    assert [rule.clauses for rule in parsed.rules] == [(), ()]
    assert parsed.rules[1].effect == "allow"
    assert parsed.audit == model.Audit(log_requests=True, log_decisions=True, redact_secrets=True)
    assert parsed.applies_to == model.AppliesTo()
    assert policy.parse_policy_spec({}).rules == ()


def test_normal_form_round_trips() -> None:
    spec: dict[str, Any] = {
        "rules": [
            {
                "description": "gate money",
                "when": {"tool.sideEffect": ["financial", "external_write"], "cost.runUsd": ">5"},
                "require": {
                    "approval": "human",
                    "approvalRouting": {
                        "approvers": ["team:finance"],
                        "timeoutMinutes": 30,
                        "onTimeout": "deny",
                    },
                    "channels": ["slack:#approvals"],
                },
                "action": "allow",
            },
            {
                "when": {"cel": "data.contains.exists(c, c == 'pii')"},
                "action": {"modify": "redact", "reason": "pii"},
            },
        ]
    }
    parsed = policy.parse_policy_spec(spec)
    normal: dict[str, Any] = {"rules": [rule.to_dict() for rule in parsed.rules]}
    assert normal["rules"][0]["action"] == {"effect": "allow"}
    assert normal["rules"][0]["require"] == spec["rules"][0]["require"]
    assert policy.parse_policy_spec(normal) == parsed


def test_rule_prefix() -> None:
    assert parsing.rule_prefix("spec.rules[12].when.cel") == "rule 12: "
    assert parsing.rule_prefix("spec.appliesTo") == ""


def test_field_error_str() -> None:
    error = policy.FieldError("spec.rules[0].action", "bad")
    assert str(error) == "spec.rules[0].action: bad"
    with pytest.raises(ValueError, match="at least one"):
        policy.PolicySpecError([])
