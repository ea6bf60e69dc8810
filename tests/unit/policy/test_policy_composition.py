"""Composing guardians: any deny wins, modify outputs merge in declared order, allow needs unanimity.

Case matrix: empty; all allow; one deny among allows (first deny returned as is); a missing decision
(fails closed); modify + allow; two modifies (deep merge, later keys win, redaction rules unioned,
reasons joined); requires kept from the first guardian asking; disabled-rule reports concatenated.
"""

from __future__ import annotations

import datetime

import pytest

from joch.domain import policy

ALLOW = policy.Decision("allow", "no rule matched")
DENY_A = policy.Decision("deny", "a says no", policy_id="a", policy_version="v1", rule=0)
DENY_B = policy.Decision("deny", "b says no", policy_id="b", policy_version="v2", rule=3)
MODIFY_1 = policy.Decision(
    "modify",
    "redact emails",
    policy_id="m1",
    policy_version="v1",
    rule=1,
    modified_request={"inputs": {"to": "[REDACTED:emails]", "cc": "x"}, "keep": [1, 2]},
    redaction_rules=("emails",),
)
MODIFY_2 = policy.Decision(
    "modify",
    "redact ssn",
    policy_id="m2",
    policy_version="v4",
    rule=0,
    modified_request={"inputs": {"cc": "[REDACTED:ssn]"}, "keep": [3]},
    redaction_rules=("ssn", "emails"),
)
APPROVAL = {"approval": {"type": "human", "policyId": "g", "rule": 2}}
ASKING = policy.Decision("allow", "approval required", policy_id="g", rule=2, requires=APPROVAL)


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        pytest.param([], policy.Decision("allow", "no guardian objected"), id="no guardians"),
        pytest.param([ALLOW, ALLOW], ALLOW, id="unanimous allow"),
        pytest.param([ALLOW, DENY_A, DENY_B], DENY_A, id="first deny wins"),
        pytest.param([MODIFY_1, DENY_B], DENY_B, id="deny beats modify"),
        pytest.param(
            [ALLOW, None, DENY_A],
            policy.Decision("deny", "PolicyError: guardian 1 gave no decision"),
            id="a missing decision fails closed",
        ),
        pytest.param([ALLOW, MODIFY_1], MODIFY_1, id="one modify among allows"),
        pytest.param(
            [MODIFY_1, ALLOW, MODIFY_2],
            policy.Decision(
                "modify",
                "redact emails; redact ssn",
                policy_id="m1",
                policy_version="v1",
                rule=1,
                modified_request={"inputs": {"to": "[REDACTED:emails]", "cc": "[REDACTED:ssn]"}, "keep": [3]},
                redaction_rules=("ssn", "emails"),
            ),
            id="modifies deep-merge in declared order",
        ),
        pytest.param(
            [ALLOW, ASKING, ALLOW], ASKING, id="allow with approval keeps the guardian that asked for it"
        ),
        pytest.param(
            [MODIFY_2, ASKING],
            policy.Decision(
                "modify",
                "redact ssn",
                policy_id="m2",
                policy_version="v4",
                rule=0,
                modified_request=MODIFY_2.modified_request,
                redaction_rules=("ssn", "emails"),
                requires=APPROVAL,
            ),
            id="modify carries a requested approval",
        ),
    ],
)
def test_compose(decisions: list[policy.Decision | None], expected: policy.Decision) -> None:
    assert policy.compose(decisions) == expected


def test_compose_concatenates_disabled_rule_reports() -> None:
    until = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    first = policy.Decision("allow", "x", disabled_rules=(policy.DisabledRule("a", "ns", 0, until),))
    second = policy.Decision("allow", "y", disabled_rules=(policy.DisabledRule("b", "ns", 1, until),))
    composed = policy.compose([first, second])
    assert [item.policy_id for item in composed.disabled_rules] == ["a", "b"]
    assert composed.reason == "x"
