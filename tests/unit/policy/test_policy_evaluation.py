"""Evaluating compiled policies: order, outcomes, failing closed, disable, preflight, the Decision shape.

Case matrix:
- order: rules in declared order, policies in the given order; first deny wins and short-circuits
  (a later rule that would fail is never reached); allow never overrides a later deny
- outcomes: no match -> allow; explicit allow names its rule; modify merges redaction rules and
  redacts the payload; require.approval -> allow + requires (also on a modify)
- failing closed: CEL runtime error, non-bool result, timeout (fake timer and a real tiny budget),
  a context that is not a map -> deny with a reason starting "PolicyError" that names the rule
- emergency disable: unexpired -> skipped and reported; expired -> active; by name or ns/name;
  naive datetimes read as UTC; `now` required
- preflight: runtime-only rules (structured and CEL) skipped, the others still deny
- the per-decision CEL memo: a source shared by several rules runs once per decision
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from joch.domain import policy

Decide = Callable[..., policy.Decision]
Make = Callable[..., policy.CompiledPolicy]

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
FINANCIAL = {"tool": {"name": "pay", "sideEffect": "financial"}, "cost": {"runUsd": 7.5}}


def test_no_match_allows(decide: Decide) -> None:
    result = decide({"tool": {"name": "web.search"}}, {"when": {"tool.name": "shell.exec"}, "action": "deny"})
    assert result.to_dict() == {"decision": "allow", "reason": "no rule matched"}


def test_no_policies_allow() -> None:
    assert policy.evaluate([], {}).decision == "allow"


def test_first_deny_wins_and_names_policy_version_and_rule(make: Make) -> None:
    spec = {
        "rules": [
            {"when": {"tool.name": "web.search"}, "action": "deny"},
            {"when": {"tool.sideEffect": "financial"}, "action": {"deny": True, "reason": "money"}},
            {"when": {"cost.runUsd": ">5"}, "action": {"deny": True, "reason": "too expensive"}},
        ]
    }
    compiled = make(spec, name="spend", namespace="team-a", generation=7)
    result = policy.evaluate([compiled], FINANCIAL)
    assert result.to_dict() == {
        "decision": "deny",
        "reason": "money",
        "policyId": "spend",
        "policyNamespace": "team-a",
        "policyVersion": "v7",
        "rule": 1,
    }


def test_deny_short_circuits_before_a_failing_rule(decide: Decide) -> None:
    result = decide(
        FINANCIAL,
        {"when": {"tool.sideEffect": "financial"}, "action": "deny"},
        {"when": {"cel": "cost.runUsd / 0.0 > 1.0 || 1 / 0 == 1"}, "action": "deny"},
    )
    assert result.decision == "deny"
    assert result.rule == 0
    assert result.reason == "denied by policy default/p rule 0"


def test_allow_never_overrides_a_later_deny(decide: Decide) -> None:
    result = decide(
        FINANCIAL,
        {"when": {"tool.name": "pay"}, "action": {"effect": "allow", "reason": "payments are fine"}},
        {"when": {"cost.runUsd": ">5"}, "action": "deny"},
    )
    assert (result.decision, result.rule) == ("deny", 1)


def test_explicit_allow_names_its_rule(decide: Decide) -> None:
    result = decide(FINANCIAL, {"when": {"tool.name": "other"}, "action": "deny"}, {"action": "allow"})
    assert (result.decision, result.rule, result.reason) == ("allow", 1, "allowed by policy default/p rule 1")


def test_policies_run_in_the_given_order(make: Make) -> None:
    first = make({"rules": [{"action": {"deny": True, "reason": "first"}}]}, name="a")
    second = make({"rules": [{"action": {"deny": True, "reason": "second"}}]}, name="b")
    assert policy.evaluate([second, first], {}).reason == "second"
    assert policy.evaluate([first, second], {}).reason == "first"


def test_modify_merges_redaction_rules_in_order_and_redacts_the_payload(make: Make) -> None:
    emails = make(
        {
            "rules": [
                {"when": {"data.contains": "pii"}, "action": {"redact": True, "redactionRules": ["emails"]}}
            ]
        }
    )
    ssn = make(
        {"rules": [{"action": {"modify": "redact", "redactionRules": ["ssn", "emails"], "reason": "ssn"}}]},
        name="q",
    )
    context: dict[str, Any] = {
        "data": {"contains": ["pii"]},
        "payload": {
            "inputs": [{"name": "body", "value": "mail bob@example.com, ssn 123-45-6789, call 555-123-4567"}]
        },
    }
    result = policy.evaluate([emails, ssn], context)
    assert result.decision == "modify"
    assert (result.policy_id, result.rule) == ("p", 0)
    assert result.redaction_rules == ("ssn", "emails")
    assert result.modified_request == {
        "inputs": [{"name": "body", "value": "mail [REDACTED:emails], ssn [REDACTED:ssn], call 555-123-4567"}]
    }
    assert context["payload"]["inputs"][0]["value"].startswith("mail bob@")  # the input is not mutated
    assert result.reason == "redacted (ssn, emails) by policy default/p rule 0"


def test_modify_without_payload_still_modifies(decide: Decide) -> None:
    result = decide({}, {"action": {"redact": True, "redactionRules": ["phoneNumbers"]}})
    assert result.decision == "modify"
    assert result.modified_request is None
    assert result.to_dict()["redactionRules"] == ["phoneNumbers"]


def test_deny_after_modify_still_denies(decide: Decide) -> None:
    result = decide({"payload": "x"}, {"action": {"redact": True}}, {"action": "deny"})
    assert (result.decision, result.rule, result.modified_request) == ("deny", 1, None)


def test_require_approval_is_allow_plus_requires(decide: Decide) -> None:
    result = decide(
        FINANCIAL,
        {
            "when": {"tool.sideEffect": ["financial", "external_write"]},
            "require": {
                "approval": "human",
                "approvalRouting": {"approvers": ["team:finance"], "timeoutMinutes": 15, "onTimeout": "deny"},
                "channels": ["slack:#pay"],
            },
        },
        {"require": {"approval": "human"}, "action": "allow"},
    )
    assert result.requires_approval
    assert result.to_dict() == {
        "decision": "allow",
        "reason": "approval required by policy default/p rule 0",
        "policyId": "p",
        "policyNamespace": "default",
        "policyVersion": "v1",
        "rule": 0,
        "requires": {
            "approval": {
                "type": "human",
                "approvers": ["team:finance"],
                "timeoutMinutes": 15,
                "onTimeout": "deny",
                "channels": ["slack:#pay"],
                "policyId": "p",
                "policyNamespace": "default",
                "rule": 0,
            }
        },
    }


def test_require_on_a_modify_keeps_both(decide: Decide) -> None:
    result = decide(
        {"payload": {"q": "a@b.io"}}, {"require": {"approval": "human"}, "action": {"redact": True}}
    )
    assert result.decision == "modify"
    assert result.modified_request == {"q": "[REDACTED:emails]"}
    assert result.requires is not None
    assert result.requires["approval"]["rule"] == 0


def test_require_then_deny_is_deny(decide: Decide) -> None:
    result = decide(FINANCIAL, {"require": {"approval": "human"}}, {"action": "deny"})
    assert result.decision == "deny"
    assert result.requires is None


# --- failing closed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["common-expression-language", "cel-python"])
@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        pytest.param("1 / 0 == 1", "", id="division by zero"),
        pytest.param("tool.name + 1 == 2", "", id="type error"),
        pytest.param("tool.name", "returned", id="non-bool result"),
    ],
)
def test_cel_runtime_errors_deny_with_policy_error(
    make: Make, backend: str, expression: str, detail: str
) -> None:
    options = policy.CompileOptions(backend=policy.get_backend(backend))
    compiled = make(
        {"rules": [{"action": "allow"}, {"when": {"cel": expression}, "action": "allow"}]}, options=options
    )
    result = policy.evaluate([compiled], {"tool": {"name": "x"}})
    assert result.decision == "deny"
    assert result.reason.startswith("PolicyError: rule 1 of policy default/p failed: ")
    assert detail in result.reason
    assert (result.policy_id, result.rule) == ("p", 1)


def _stepping_timer(step: float) -> Callable[[], float]:
    counter = itertools.count()
    return lambda: next(counter) * step


def test_cel_timeout_denies_with_a_fake_timer(make: Make) -> None:
    options = policy.CompileOptions(
        timer=_stepping_timer(1.0), limits=policy.CelLimits(time_budget_seconds=0.5)
    )
    compiled = make({"rules": [{"when": {"cel": "tool.name == 'x'"}, "action": "allow"}]}, options=options)
    result = policy.evaluate([compiled], {"tool": {"name": "x"}})
    assert result.decision == "deny"
    assert result.reason.startswith(
        "PolicyError: rule 0 of policy default/p failed: CEL evaluation took 1000.000 ms"
    )


def test_cel_within_budget_with_a_fake_timer(make: Make) -> None:
    options = policy.CompileOptions(
        timer=_stepping_timer(0.1), limits=policy.CelLimits(time_budget_seconds=0.5)
    )
    compiled = make({"rules": [{"when": {"cel": "tool.name == 'x'"}, "action": "deny"}]}, options=options)
    assert policy.evaluate([compiled], {"tool": {"name": "x"}}).reason == "denied by policy default/p rule 0"


def test_cel_timeout_denies_with_a_real_clock(make: Make) -> None:
    options = policy.CompileOptions(
        backend=policy.get_backend("cel-python"), limits=policy.CelLimits(time_budget_seconds=1e-9)
    )
    compiled = make(
        {
            "rules": [
                {"when": {"cel": "payload.items.all(x, payload.items.exists(y, y == x))"}, "action": "allow"}
            ]
        },
        options=options,
    )
    result = policy.evaluate([compiled], {"payload": {"items": list(range(30))}})
    assert result.decision == "deny"
    assert "over its budget" in result.reason


def test_a_context_that_is_not_a_map_denies() -> None:
    result = policy.evaluate([], ["not", "a", "map"])  # type: ignore[arg-type]
    assert (result.decision, result.reason) == ("deny", "PolicyError: the decision context must be a map")


def test_a_hostile_mapping_denies_instead_of_raising(make: Make) -> None:
    class Hostile(dict[str, Any]):
        def get(self, *args: Any) -> Any:
            raise RuntimeError("boom")

    compiled = make({"rules": [{"when": {"tool.name": "x"}, "action": "allow"}]})
    result = policy.evaluate([compiled], Hostile())
    assert result.decision == "deny"
    assert (
        result.reason == "PolicyError: rule 0 of policy default/p failed: internal error RuntimeError: boom"
    )


# --- emergency disable --------------------------------------------------------------------------------


def _two_denies(make: Make) -> policy.CompiledPolicy:
    return make(
        {
            "rules": [
                {"action": {"deny": True, "reason": "first"}},
                {"action": {"deny": True, "reason": "second"}},
            ]
        },
        name="guard",
        namespace="ops",
    )


@pytest.mark.parametrize(
    ("key", "until", "expected_reason", "reported"),
    [
        pytest.param(
            ("guard", 0), NOW + datetime.timedelta(minutes=5), "second", True, id="unexpired, by name"
        ),
        pytest.param(
            ("ops/guard", 0), NOW + datetime.timedelta(minutes=5), "second", True, id="unexpired, ns/name"
        ),
        pytest.param(("guard", 0), NOW, "first", False, id="expires exactly now"),
        pytest.param(("guard", 0), NOW - datetime.timedelta(seconds=1), "first", False, id="expired"),
        pytest.param(("guard", 3), NOW + datetime.timedelta(minutes=5), "first", False, id="other rule"),
        pytest.param(("other", 0), NOW + datetime.timedelta(minutes=5), "first", False, id="other policy"),
        pytest.param(
            ("guard", 0),
            datetime.datetime(2026, 11, 27, 12, 30),
            "second",
            True,
            id="naive expiry read as UTC",
        ),
    ],
)
def test_emergency_disable(
    make: Make, key: tuple[str, int], until: datetime.datetime, expected_reason: str, reported: bool
) -> None:
    result = policy.evaluate([_two_denies(make)], {}, now=NOW, disabled_rules={key: until})
    assert result.reason == expected_reason
    if reported:
        assert result.to_dict()["disabledRules"] == [
            {
                "policyId": "guard",
                "policyNamespace": "ops",
                "rule": 0,
                "until": until.replace(tzinfo=until.tzinfo or datetime.UTC)
                .isoformat()
                .replace("+00:00", "Z"),
            }
        ]
    else:
        assert result.disabled_rules == ()


def test_emergency_disable_of_every_deny_allows_and_reports_both(make: Make) -> None:
    until = NOW + datetime.timedelta(hours=1)
    result = policy.evaluate(
        [_two_denies(make)],
        {},
        now=NOW.replace(tzinfo=None),
        disabled_rules={("guard", 0): until, ("guard", 1): until},
    )
    assert result.decision == "allow"
    assert [item.rule for item in result.disabled_rules] == [0, 1]


def test_emergency_disable_needs_now(make: Make) -> None:
    with pytest.raises(ValueError, match="now"):
        policy.evaluate([_two_denies(make)], {}, disabled_rules={("guard", 0): NOW})


# --- preflight ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "skipped"),
    [
        pytest.param({"when": {"cost.runUsd": ">5"}, "action": "deny"}, True, id="cost"),
        pytest.param({"when": {"data.contains": "pii"}, "action": "deny"}, True, id="data"),
        pytest.param({"when": {"payload.to": "x"}, "action": "deny"}, True, id="payload"),
        pytest.param({"when": {"mcpResult.injectionScan.hit": True}, "action": "deny"}, True, id="mcpResult"),
        pytest.param({"when": {"cel": "cost.runUsd > 5.0"}, "action": "deny"}, True, id="cel reading cost"),
        pytest.param(
            {"when": {"tool.name": "pay", "cel": "has(payload.x) || true"}, "action": "deny"},
            True,
            id="mixed, cel reads payload",
        ),
        pytest.param(
            {"when": {"tool.name": "pay"}, "action": "deny"}, False, id="tool is known at preflight"
        ),
        pytest.param({"when": {"cel": "tool.name == 'pay'"}, "action": "deny"}, False, id="cel reading tool"),
        pytest.param({"action": "deny"}, False, id="unconditional"),
    ],
)
def test_preflight_skips_runtime_only_rules(decide: Decide, rule: dict[str, Any], skipped: bool) -> None:
    context = {
        **FINANCIAL,
        "data": {"contains": ["pii"]},
        "payload": {"to": "x", "x": 1},
        "mcpResult": {"injectionScan": {"hit": True}},
    }
    assert decide(context, rule).decision == "deny"
    assert decide(context, rule, preflight=True).decision == ("allow" if skipped else "deny")


# --- the per-decision CEL memo --------------------------------------------------------------------------


class CountingBackend:
    """Wraps a real backend and counts prepares and evaluations."""

    def __init__(self, inner: policy.CelBackend) -> None:
        self.inner = inner
        self.prepares = 0
        self.evaluations = 0

    @property
    def name(self) -> str:
        return "counting"

    def compile(self, source: str) -> policy.Program:
        program = self.inner.compile(source)
        outer = self

        class Counted:
            def evaluate(self, activation: Any) -> Any:
                outer.evaluations += 1
                return program.evaluate(activation)

        return Counted()

    def prepare(self, activation: Any) -> Any:
        self.prepares += 1
        return self.inner.prepare(activation)


def test_shared_cel_runs_once_per_decision(make: Make) -> None:
    backend = CountingBackend(policy.get_backend())
    options = policy.CompileOptions(backend=backend)
    same = {"when": {"cel": "tool.name == 'x'"}, "action": "allow"}
    other = {"when": {"cel": "tool.name != 'y'"}, "action": "allow"}
    policies = [make({"rules": [same, other]}, name=f"p{i}", options=options) for i in range(5)]
    assert policy.evaluate(policies, {"tool": {"name": "x"}}).decision == "allow"
    assert backend.evaluations == 2  # two distinct sources
    assert backend.prepares == 1  # both read only tool.name
    policy.evaluate(policies, {"tool": {"name": "x"}})
    assert backend.evaluations == 4  # nothing leaks from one decision to the next


def test_decision_properties() -> None:
    deny = policy.Decision("deny", "x")
    assert deny.denied
    assert not deny.requires_approval


# --- the shipped examples -----------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "50-policies.yaml"


@pytest.mark.skipif(not EXAMPLES.exists(), reason="examples/50-policies.yaml is not there")
def test_the_example_policies_are_valid_and_decide_as_documented() -> None:
    documents = [
        doc for doc in yaml.safe_load_all(EXAMPLES.read_text()) if doc and doc.get("kind") == "Policy"
    ]
    assert documents
    for document in documents:
        assert policy.validate_policy_spec(document["spec"]) == []
    policies = policy.PolicySet(
        policy.compile_policy(
            name=doc["metadata"]["name"],
            namespace=doc["metadata"]["namespace"],
            generation=2,
            spec=doc["spec"],
        )
        for doc in documents
    )
    labels = {label: value for doc in documents for label, value in _match_labels(doc).items()}
    context = {
        "agent": {"namespace": documents[0]["metadata"]["namespace"], "labels": labels},
        "environment": {"name": "prod"},
        "tool": {"name": "zendesk.create_ticket", "sideEffect": "external_write"},
        "cost": {"runUsd": 9.0},
    }
    assert policies.decide(context).decision == "deny"
    assert policies.decide(context, preflight=True).decision in ("allow", "modify")


def _match_labels(document: dict[str, Any]) -> dict[str, str]:
    selector = document["spec"].get("appliesTo", {}).get("agents", {}).get("selector", {})
    return dict(selector.get("matchLabels", {}))
