"""Deployment promotion gates (joch.domain.admission.promotion) through ``Admission.validate``.

| case | gate | expected |
|---|---|---|
| Eval Passed, thresholds met | requiresEval | admitted, no warning |
| Eval Failed / Pending / never run | requiresEval | denied, the phase named |
| no such Eval | requiresEval | denied (a failed gate, not a D10 warning) |
| Eval of another Agent / Deployment of a shared-namespace Agent | requiresEval | denied, both Agents named |
| a threshold missed (minimum, comparison), no score | requiresEval | denied: metric, threshold, value |
| Passed, but a threshold tightened since the run | requiresEval | denied |
| Eval releaseGate for another environment | requiresEval | no effect on the verdict |
| Approval Approved / Overridden | requiresApproval | admitted |
| Pending, Rejected, Expired, Approved with decision edit | requiresApproval | denied, the state named |
| approvers without the role, user:<role>, tool_call action | requiresApproval | denied, the reason named |
| no Approval, one for another Deployment, one in another namespace | requiresApproval | denied |
| one bad and one good Approval | requiresApproval | admitted |
| both gates failing | both | two errors, 403 Forbidden |
| UPDATE scaling replicas / metadata only, gates failing | both | admitted unjudged by the gates |
| UPDATE of agentRef, environmentRef, promotion; old object unparsable | both | gates checked |
| thresholds and approver addresses | pure functions | table |

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from joch.api.v1alpha1.deployment import Deployment
from joch.domain.admission import COMPILE_KIND_NAMES, WATCHED_KIND_NAMES, Admission, Verdict, promotion
from tests.unit.admission import factories as f

EVAL = {"requiresEval": "triage-quality"}
APPROVAL = {"requiresApproval": "release-manager"}


def _world(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [*f.fleet(), f.agent(), f.agent("other-agent"), *extra]


def _errors(verdict: Verdict) -> list[str]:
    return [verdict.format(e) for e in verdict.errors]


def _denied(verdict: Verdict, *fragments: str) -> str:
    assert not verdict.allowed, "expected a denial"
    message = verdict.message()
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- requiresEval -------------------------------------------------------------------------------------


def test_a_passed_eval_admits_the_deployment() -> None:
    verdict = f.admit(f.deployment(promotion=EVAL), _world(f.eval_()))
    assert verdict.allowed, verdict.message()
    assert verdict.warnings == ()


@pytest.mark.parametrize(
    ("evaluation", "expected"),
    [
        pytest.param(
            f.eval_(phase="Failed"),
            "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality: its newest run for "
            "Agent support-triage generation 1 "
            "(Execution triage-quality-run) is Failed",
            id="failed phase",
        ),
        pytest.param(
            f.eval_(phase="Running"),
            "Eval support/triage-quality: its run for Agent support-triage generation 1 (Execution "
            "triage-quality-run) has not ended yet",
            id="running",
        ),
        pytest.param(
            f.eval_(phase=None),
            "Eval support/triage-quality has not run yet; it must have passed (joch eval run triage-quality "
            "-n support)",
            id="never run",
        ),
        pytest.param(
            f.eval_("another-eval"),
            "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality not found; the gate "
            "cannot pass until it exists and has passed",
            id="missing eval",
        ),
        pytest.param(
            f.eval_(target="other-agent"),
            "Eval support/triage-quality evaluates Agent support/other-agent, not the Deployment's Agent "
            "support/support-triage",
            id="wrong target",
        ),
        pytest.param(
            f.eval_(scores={"accuracy": 0.82, "pii_leakage": 0.0}),
            "Eval support/triage-quality: metric accuracy scored 0.82 in run triage-quality-run, which "
            "misses its threshold >=0.9",
            id="minimum missed",
        ),
        pytest.param(
            f.eval_(scores={"accuracy": 0.95, "pii_leakage": 0.02}),
            "Eval support/triage-quality: metric pii_leakage scored 0.02 in run triage-quality-run, which "
            "misses its threshold <=0",
            id="comparison missed",
        ),
        pytest.param(
            f.eval_(scores={"pii_leakage": 0.0}),
            "Eval support/triage-quality: metric accuracy has no score in run triage-quality-run (threshold "
            ">=0.9)",
            id="score missing",
        ),
        pytest.param(
            f.eval_(thresholds={"accuracy": ">0.95"}, scores={"accuracy": 0.93}),
            "Eval support/triage-quality: metric accuracy scored 0.93 in run triage-quality-run, which "
            "misses its threshold >0.95",
            id="passed but threshold tightened since",
        ),
    ],
)
def test_eval_gate_denials(evaluation: dict[str, Any], expected: str) -> None:
    verdict = f.admit(f.deployment(promotion=EVAL), _world(evaluation))
    _denied(verdict, expected)
    assert verdict.warnings == (), "a failed gate is an error, never a D10 warning"
    assert verdict.code == 403
    assert {e.reason for e in verdict.errors} == {promotion.REASON}


def test_every_missed_threshold_and_the_phase_are_reported_together() -> None:
    evaluation = f.eval_(phase="Failed", scores={"accuracy": 0.5, "pii_leakage": 0.3})
    verdict = f.admit(f.deployment(promotion=EVAL), _world(evaluation))
    assert _errors(verdict) == [
        "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality: its newest run for "
        "Agent support-triage generation 1 "
        "(Execution triage-quality-run) is Failed",
        "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality: metric accuracy "
        "scored 0.5 in run triage-quality-run, which misses its threshold >=0.9",
        "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality: metric pii_leakage "
        "scored 0.3 in run triage-quality-run, which misses its threshold <=0",
    ]


def test_an_agent_in_a_shared_namespace_is_not_the_target_of_a_local_eval() -> None:
    deployment = f.deployment(agent="support-triage", promotion=EVAL)
    deployment["spec"]["agentRef"]["namespace"] = "joch-system"
    verdict = f.admit(deployment, _world(f.eval_()))
    _denied(
        verdict,
        "Eval support/triage-quality evaluates Agent support/support-triage, not the Deployment's Agent "
        "joch-system/support-triage",
    )


def test_the_evals_release_gate_does_not_change_the_check() -> None:
    for_prod = f.eval_(releaseGate={"enabled": True, "blocksPromotionTo": "prod"})
    to_dev = f.deployment(promotion=EVAL, environmentRef={"name": "dev"})
    verdict = f.admit(to_dev, _world(for_prod))
    assert verdict.allowed, verdict.message()
    assert verdict.warnings == ()
    failing = f.eval_(phase="Failed", releaseGate={"enabled": False})
    _denied(f.admit(to_dev, _world(failing)), "(Execution triage-quality-run) is Failed")


# --- requiresApproval ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "approvals",
    [
        pytest.param([f.approval()], id="approved, team:<role>"),
        pytest.param([f.approval(approvers=["role:release-manager"])], id="role:<role>"),
        pytest.param([f.approval(approvers=["user:bob", "group:release-manager"])], id="group:<role>"),
        pytest.param([f.approval(phase="Overridden", decision="reject")], id="overridden rejection"),
        pytest.param(
            [f.approval("a-pending", phase="Pending", decision=None), f.approval("b-approved")],
            id="one pending, one approved",
        ),
    ],
)
def test_approval_gate_passes(approvals: list[dict[str, Any]]) -> None:
    verdict = f.admit(f.deployment(promotion=APPROVAL), _world(*approvals))
    assert verdict.allowed, verdict.message()


@pytest.mark.parametrize(
    ("approvals", "expected"),
    [
        pytest.param(
            [f.approval(phase="Pending", decision=None)],
            "Deployment/triage: spec.promotion.requiresApproval: an approved promotion Approval for "
            "release-manager is required; none of the Approvals labelled joch.dev/deployment=triage is one: "
            "Approval support/promote-triage: it is Pending (not decided yet)",
            id="pending",
        ),
        pytest.param(
            [f.approval(phase=None)],
            "Approval support/promote-triage: it is Pending (not decided yet)",
            id="no status yet",
        ),
        pytest.param(
            [f.approval(phase="Rejected", decision="reject")],
            "Approval support/promote-triage: it is Rejected by user:alice",
            id="rejected",
        ),
        pytest.param(
            [f.approval(phase="Expired", decision=None)],
            "Approval support/promote-triage: it is Expired",
            id="expired",
        ),
        pytest.param(
            [f.approval(decision="edit")],
            "Approval support/promote-triage: its status.decision is edit, not approve",
            id="approved with an edit",
        ),
        pytest.param(
            [f.approval(approvers=["team:qa", "user:carol"])],
            "Approval support/promote-triage: its spec.routing.approvers (team:qa, user:carol) do not "
            "include release-manager",
            id="wrong role",
        ),
        pytest.param(
            [f.approval(approvers=["user:release-manager"])],
            "its spec.routing.approvers (user:release-manager) do not include release-manager",
            id="a user is not a role",
        ),
        pytest.param(
            [f.approval(action="tool_call")],
            "Approval support/promote-triage: its spec.action.type is tool_call, not promotion",
            id="not a promotion",
        ),
        pytest.param(
            [],
            "Deployment/triage: spec.promotion.requiresApproval: an approved promotion Approval for "
            "release-manager is required; there is none (no Approval in namespace support is labelled "
            "joch.dev/deployment=triage)",
            id="missing",
        ),
        pytest.param(
            [f.approval(deployment="other-deployment")],
            "there is none (no Approval in namespace support is labelled joch.dev/deployment=triage)",
            id="approval of another deployment",
        ),
        pytest.param(
            [f.approval(deployment=None)],
            "there is none",
            id="unlabelled approval",
        ),
    ],
)
def test_approval_gate_denials(approvals: list[dict[str, Any]], expected: str) -> None:
    verdict = f.admit(f.deployment(promotion=APPROVAL), _world(*approvals))
    _denied(verdict, expected)
    assert verdict.warnings == ()
    assert verdict.code == 403


def test_an_approval_in_another_namespace_does_not_count() -> None:
    elsewhere = f.approval()
    elsewhere["metadata"]["namespace"] = "joch-system"
    _denied(f.admit(f.deployment(promotion=APPROVAL), _world(elsewhere)), "there is none")


def test_a_prefixed_requirement_matches_that_address_only() -> None:
    gate = {"requiresApproval": "team:release-managers"}
    ok = f.admit(f.deployment(promotion=gate), _world(f.approval(approvers=["team:release-managers"])))
    assert ok.allowed, ok.message()
    other = f.admit(f.deployment(promotion=gate), _world(f.approval(approvers=["group:release-managers"])))
    _denied(other, "do not include team:release-managers")


def test_many_unsuitable_approvals_are_counted_beyond_five() -> None:
    approvals = [f.approval(f"a{i}", phase="Pending", decision=None) for i in range(7)]
    message = _denied(f.admit(f.deployment(promotion=APPROVAL), _world(*approvals)), "(and 2 more)")
    assert "Approval support/a4" in message
    assert "Approval support/a5" not in message


def test_an_empty_role_is_a_schema_error() -> None:
    verdict = f.admit(f.deployment(promotion={"requiresApproval": ""}), _world(f.approval()))
    _denied(
        verdict, "Deployment/triage: spec.promotion.requiresApproval: String should have at least 1 character"
    )


# --- both, and when ---------------------------------------------------------------------------------


def test_both_gates_fail_with_one_error_each() -> None:
    deployment = f.deployment(promotion={**EVAL, **APPROVAL})
    verdict = f.admit(
        deployment, _world(f.eval_(phase="Failed"), f.approval(phase="Rejected", decision="reject"))
    )
    paths = [e.path for e in verdict.errors]
    assert paths == ["spec.promotion.requiresEval", "spec.promotion.requiresApproval"]
    assert verdict.status_reason == "Forbidden"
    passing = f.admit(deployment, _world(f.eval_(), f.approval()))
    assert passing.allowed, passing.message()


def test_a_deployment_without_promotion_is_not_gated() -> None:
    verdict = f.admit(f.deployment(), _world(f.eval_(phase="Failed")))
    assert verdict.allowed, verdict.message()


FAILING = (f.eval_(phase="Failed"), f.approval(phase="Pending", decision=None))
GATED = f.deployment(promotion={**EVAL, **APPROVAL})


def _with_metadata(doc: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], **metadata}}


@pytest.mark.parametrize(
    ("new", "old"),
    [
        pytest.param(f.merge(GATED, {"spec": {"replicas": 5}}), GATED, id="scaling replicas"),
        pytest.param(
            f.merge(
                GATED, {"spec": {"rollout": {"strategy": "recreate"}, "autoscaling": {"maxReplicas": 4}}}
            ),
            GATED,
            id="rollout and autoscaling",
        ),
        pytest.param(
            _with_metadata(GATED, annotations={"kopf.zalando.org/last-handled": "x"}, resourceVersion="7"),
            GATED,
            id="metadata only (kopf annotations)",
        ),
        pytest.param(
            {**GATED, "status": {"phase": "Available", "replicasReady": 2}}, GATED, id="status only"
        ),
        pytest.param(
            f.merge(GATED, {"metadata": {"labels": {"team": "support"}}}), GATED, id="labels changed"
        ),
    ],
)
def test_updates_that_do_not_touch_the_promotion_pass(new: dict[str, Any], old: dict[str, Any]) -> None:
    verdict = f.admit(new, _world(*FAILING), operation="UPDATE", old=old)
    assert verdict.allowed, verdict.message()


@pytest.mark.parametrize(
    ("new", "old"),
    [
        pytest.param(f.merge(GATED, {"spec": {"agentRef": {"name": "other-agent"}}}), GATED, id="agentRef"),
        pytest.param(
            f.merge(GATED, {"spec": {"environmentRef": {"name": "prod"}}}), GATED, id="environmentRef"
        ),
        pytest.param(GATED, f.deployment(), id="promotion added"),
        pytest.param(GATED, f.deployment(promotion=EVAL), id="promotion changed"),
        pytest.param(GATED, f.merge(GATED, {"spec": {"bogus": 1}}), id="old object does not parse"),
        pytest.param(GATED, None, id="old object absent"),
    ],
)
def test_updates_that_touch_the_promotion_are_gated(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    verdict = f.admit(new, _world(*FAILING), operation="UPDATE", old=old)
    _denied(verdict, "spec.promotion.requiresEval", "spec.promotion.requiresApproval")


def test_gates_due() -> None:
    gated = Deployment.model_validate(GATED)
    assert promotion.gates_due(gated, None)
    assert not promotion.gates_due(gated, gated)
    assert not promotion.gates_due(Deployment.model_validate(f.deployment()), None), "nothing to gate"
    scaled = Deployment.model_validate(f.merge(GATED, {"spec": {"replicas": 9}}))
    assert not promotion.gates_due(scaled, gated)


# --- pure pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "score", "met", "text"),
    [
        pytest.param(0.9, 0.9, True, ">=0.9", id="bare number is a minimum (equal)"),
        pytest.param(0.9, 0.8999, False, ">=0.9", id="bare number missed"),
        pytest.param(2000, 2000.0, True, ">=2000", id="integer minimum"),
        pytest.param("<=0.05", 0.05, True, "<=0.05", id="at most"),
        pytest.param("< 2000", 2000.0, False, "<2000", id="below, with a space"),
        pytest.param(">0.9", 0.95, True, ">0.9", id="above"),
        pytest.param("==1", 1.0, True, "==1", id="equal"),
        pytest.param("-0.5", None, None, None, id="a numeric string is not a comparison"),
        pytest.param(True, None, None, None, id="a boolean is not a number"),
        pytest.param(float("nan"), None, None, None, id="nan is not a threshold"),
        pytest.param({"min": 1}, None, None, None, id="an object is not a threshold"),
    ],
)
def test_parse_threshold(written: Any, score: float | None, met: bool | None, text: str | None) -> None:
    threshold = promotion.parse_threshold(written)
    if text is None:
        assert threshold is None
        return
    assert threshold is not None
    assert str(threshold) == text
    assert score is not None
    assert threshold.met_by(score) is met


@pytest.mark.parametrize(
    ("approver", "required", "matches"),
    [
        ("team:release-manager", "release-manager", True),
        ("role:release-manager", "release-manager", True),
        ("group:release-manager", "release-manager", True),
        ("user:release-manager", "release-manager", False),
        ("email:release-manager", "release-manager", False),
        ("team:release-managers", "release-manager", False),
        ("team:release-managers", "team:release-managers", True),
        ("group:release-managers", "team:release-managers", False),
    ],
)
def test_approver_matches(approver: str, required: str, matches: bool) -> None:
    assert promotion.approver_matches(approver, required) is matches


def test_gate_kinds_are_what_the_operator_watches_for_admission() -> None:
    gate_kinds = {k.crd.kind for k in promotion.GATE_KINDS}
    assert gate_kinds | COMPILE_KIND_NAMES == WATCHED_KIND_NAMES


# --- protected environments -------------------------------------------------------------------------


def _protected_world() -> list[dict[str, Any]]:
    docs = [d for d in _world() if d["kind"] != "Environment" or d["metadata"]["name"] != "prod"]
    return [*docs, f.environment("prod", protected=True)]


def _admit_with(doc: dict[str, Any], grants: frozenset[str] | None, **kwargs: Any) -> Verdict:
    request = f.request(doc, **kwargs)
    if grants is not None:
        request = dataclasses.replace(request, grants=grants)
    return Admission(f.SETTINGS).validate(request, f.world(_protected_world()))


def test_a_promotion_into_a_protected_environment_needs_the_promote_verb() -> None:
    into_prod = f.deployment(environmentRef={"name": "prod"})
    message = _denied(
        _admit_with(into_prod, frozenset()),
        "Deployment/triage: spec.environmentRef: Environment prod is protected",
        "needs the promote verb on environments/prod (ops.joch.dev) in namespace support",
    )
    assert "403" not in message
    assert _admit_with(into_prod, frozenset({promotion.PROMOTE_VERB})).allowed


def test_an_unprotected_environment_needs_no_role() -> None:
    assert _admit_with(f.deployment(environmentRef={"name": "dev"}), frozenset()).allowed


def test_the_agents_environment_counts_when_the_deployment_names_none() -> None:
    """D5: the Agent's environment (its env label here) is the promotion's target."""
    docs = [
        d for d in _protected_world() if d["kind"] != "Agent" or d["metadata"]["name"] != "support-triage"
    ]
    docs.append(f.agent(labels={"env": "prod"}))
    deployment = promotion.target_environment(
        Deployment.model_validate(f.deployment()), f.world(docs), f.SETTINGS
    )
    assert deployment == "prod"


def test_scaling_a_deployment_in_a_protected_environment_is_not_a_promotion() -> None:
    old = f.deployment(environmentRef={"name": "prod"})
    scaled = f.deployment(environmentRef={"name": "prod"}, replicas=5)
    assert _admit_with(scaled, frozenset(), operation="UPDATE", old=old).allowed


def test_offline_checks_do_not_know_the_grants_and_leave_the_gate_to_the_server() -> None:
    """joch validate / joch apply judge without grants (None): the protected gate is the server's."""
    into_prod = Deployment.model_validate(f.deployment(environmentRef={"name": "prod"}))
    offline = Admission(f.SETTINGS).judge(into_prod, f.world(_protected_world()))
    assert not offline.errors, offline.errors
    webhook = Admission(f.SETTINGS).judge(into_prod, f.world(_protected_world()), grants=frozenset())
    assert [e.path for e in webhook.errors] == ["spec.environmentRef"]
