"""The evals service's pure part (joch.domain.reconcile.evals).

Cases: run names (short ones kept, long ones shortened to 63 characters with a hash: deterministic and
distinct); the run's Execution (trigger, labels, owner, input, generation label); run_of reading an
Execution; judging (Running, Inconclusive for a failed Execution or a missing score, Failed naming
metric, threshold and value, comparison thresholds, Passed, a decided review turning Inconclusive into
Passed or Failed); review_of on Approvals; schedule_due (no schedule, ticks before creation, only the
newest missed tick, a recorded tick not due again, nightly in the time zone); promotion_due (gated
Deployments, onDeployment, other agents ignored, one run per generation); eval_status (phase, summary,
passedGeneration, bounded newest-first history, runs whose Execution is gone, review requests,
conditions).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import pytest

from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.execution import Execution
from joch.domain.reconcile import evals
from joch.domain.reconcile.cache import parse_entry
from tests import factories
from tests.factories import eval_

NS = "support"
NAME = "triage-quality"
UID = "4f1c-eval-uid"
NOW = "2026-05-06T12:00:00Z"
UTC = datetime.UTC


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=UTC)


def evaluation(name: str = NAME, **spec: Any) -> Eval:
    return Eval.model_validate(eval_(name, phase=None, **spec))


def run(name: str = "triage-quality-m1", **changes: Any) -> evals.RunView:
    base = evals.RunView(
        name=name,
        trigger="manual",
        created="2026-05-06T10:00:00Z",
        phase="Succeeded",
        message="",
        agent_generation=1,
        started_generation=True,
        abom_generation=4,
        started_at="2026-05-06T10:00:05Z",
        completed_at="2026-05-06T10:03:00Z",
        scores={"accuracy": 0.95, "pii_leakage": 0.0},
    )
    return dataclasses.replace(base, **changes)


def review(approved: bool, decided: bool = True, by: str | None = "user:alice") -> evals.Review:
    return evals.Review("triage-quality-m1-review", decided, approved, by)


# --- naming -----------------------------------------------------------------------------------------


def test_a_short_run_name_is_the_eval_and_the_suffix() -> None:
    assert evals.run_name(NAME, "m1a2b3c") == "triage-quality-m1a2b3c"
    exact = "e" * (63 - len("-g7"))
    assert evals.run_name(exact, "g7") == f"{exact}-g7"


def test_a_long_eval_name_is_shortened_to_63_with_a_hash() -> None:
    long_a = "quality-of-the-support-triage-agent-over-the-golden-dataset-" + "a" * 40
    long_b = "quality-of-the-support-triage-agent-over-the-golden-dataset-" + "b" * 40
    suffix = "s202605060230"
    a = evals.run_name(long_a, suffix)
    assert len(a) <= 63
    assert a.endswith(f"-{suffix}")
    assert a.startswith("quality-of-the-support-triage")
    assert a == evals.run_name(long_a, suffix)  # deterministic: two operators agree
    b = evals.run_name(long_b, suffix)
    assert len(b) <= 63
    assert a != b
    assert evals.run_name(long_a, "g2") != a


def test_a_shortened_name_does_not_end_its_prefix_with_a_dash() -> None:
    # 63 - len("g1") - 8 (hash) - 2 (dashes) = 51 characters kept: the cut falls in the dashes.
    name = "x" * 49 + "-" * 5 + "y" * 60
    shortened = evals.run_name(name, "g1")
    assert len(shortened) <= 63
    assert shortened.startswith("x" * 49 + "-")
    assert "--" not in shortened
    assert shortened.endswith("-g1")


# --- the run's Execution ----------------------------------------------------------------------------


def test_run_execution_is_an_eval_triggered_execution_of_the_target() -> None:
    body = evals.run_execution(evaluation(), name="triage-quality-s202605060230", trigger="schedule", uid=UID)
    assert body["apiVersion"] == "runtime.joch.dev/v1alpha1"
    assert body["kind"] == "Execution"
    metadata = body["metadata"]
    assert metadata["name"] == "triage-quality-s202605060230"
    assert metadata["namespace"] == NS
    assert metadata["labels"] == {"joch.dev/eval": NAME, "joch.dev/eval-trigger": "schedule"}
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Eval",
            "name": NAME,
            "uid": UID,
            "blockOwnerDeletion": False,
        }
    ]
    spec = body["spec"]
    assert spec["agentRef"] == {"name": "support-triage"}
    assert spec["trigger"] == {"type": "eval", "sourceRef": {"name": NAME}}
    assert spec["input"]["content"] == [
        {
            "kind": "data",
            "data": {
                "eval": NAME,
                "dataset": {"type": "file", "uri": "./evals/cases.jsonl"},
                "metrics": [
                    {"name": "accuracy", "type": "deterministic"},
                    {"name": "pii_leakage", "type": "deterministic"},
                ],
                "thresholds": {"accuracy": 0.9, "pii_leakage": "<=0.0"},
            },
        }
    ]
    Execution.model_validate(body)  # what the API server's schema and the webhook accept


def test_run_execution_labels_the_generation_only_when_given() -> None:
    plain = evals.run_execution(evaluation(), name="r", trigger="manual", uid=UID)
    assert "joch.dev/agent-generation" not in plain["metadata"]["labels"]
    promoted = evals.run_execution(evaluation(), name="r", trigger="promotion", uid=UID, generation=3)
    assert promoted["metadata"]["labels"]["joch.dev/agent-generation"] == "3"
    assert promoted["metadata"]["labels"]["joch.dev/eval-trigger"] == "promotion"


def test_run_execution_without_uid_has_no_owner_and_without_thresholds_no_thresholds() -> None:
    body = evals.run_execution(evaluation(thresholds={}), name="r", trigger="manual")
    assert "ownerReferences" not in body["metadata"]
    assert "thresholds" not in body["spec"]["input"]["content"][0]["data"]


def test_run_execution_of_an_eval_whose_name_is_no_label_value_leaves_the_label_out() -> None:
    long_name = "q" * 70
    body = evals.run_execution(evaluation(long_name), name="r", trigger="manual", uid=UID)
    assert body["metadata"]["labels"] == {"joch.dev/eval-trigger": "manual"}
    assert body["spec"]["trigger"]["sourceRef"] == {"name": long_name}


# --- run_of -----------------------------------------------------------------------------------------


def execution_body(
    name: str = "triage-quality-m1",
    *,
    source: str = NAME,
    trigger_type: str = "eval",
    labels: Mapping[str, str] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": "exec-uid",
            "creationTimestamp": "2026-05-06T10:00:00Z",
            "labels": dict(labels if labels is not None else {"joch.dev/eval-trigger": "schedule"}),
        },
        "spec": {
            "agentRef": {"name": "support-triage"},
            "trigger": {"type": trigger_type, "sourceRef": {"name": source}},
        },
        "status": dict(status or {}),
    }


def test_run_of_reads_the_execution() -> None:
    body = execution_body(
        status={
            "phase": "Failed",
            "agentGeneration": 3,
            "abomSnapshotRef": {"name": "support-triage", "generation": 7},
            "startedAt": "2026-05-06T10:00:05Z",
            "completedAt": "2026-05-06T10:03:00Z",
            "scores": {"accuracy": 0.5, "latency_ms": 1200, "flag": True, "text": "high"},
            "conditions": [
                {"type": "Progressing", "status": "False", "message": "not this"},
                {"type": "Ready", "status": "False", "reason": "Failed", "message": "worker crashed"},
            ],
        }
    )
    view = evals.run_of(parse_entry(Execution, body), NAME)
    assert view == evals.RunView(
        name="triage-quality-m1",
        trigger="schedule",
        created="2026-05-06T10:00:00Z",
        phase="Failed",
        message="worker crashed",
        agent_generation=3,
        started_generation=True,
        abom_generation=7,
        started_at="2026-05-06T10:00:05Z",
        completed_at="2026-05-06T10:03:00Z",
        scores={"accuracy": 0.5, "latency_ms": 1200.0},
    )
    assert view.ended


def test_run_of_before_start_takes_the_generation_label_and_defaults_to_manual() -> None:
    labelled = execution_body(labels={"joch.dev/agent-generation": "5"}, status={"phase": "Pending"})
    view = evals.run_of(parse_entry(Execution, labelled), NAME)
    assert view is not None
    assert (view.agent_generation, view.started_generation) == (5, False)
    assert view.trigger == "manual"
    assert view.phase == "Pending"
    assert not view.ended
    assert view.scores == {}
    assert view.abom_generation is None
    bare = evals.run_of(parse_entry(Execution, execution_body(labels={})), NAME)
    assert bare is not None
    assert bare.agent_generation is None
    assert bare.phase is None


def test_run_of_ignores_other_evals_and_other_triggers() -> None:
    assert evals.run_of(parse_entry(Execution, execution_body(source="other-eval")), NAME) is None
    assert evals.run_of(parse_entry(Execution, execution_body(trigger_type="manual")), NAME) is None
    plain = factories.execution("plain")
    assert evals.run_of(parse_entry(Execution, plain), NAME) is None


def test_created_at_reads_the_creation_timestamp() -> None:
    assert evals.created_at(parse_entry(Execution, execution_body())) == at(2026, 5, 6, 10)


# --- judging ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [None, "Pending", "Running"])
def test_a_run_not_ended_is_running(phase: str | None) -> None:
    judged = evals.judge(evaluation(), run(phase=phase, scores={}))
    assert judged.phase == "Running"
    assert judged.failures == ()
    assert judged.message == f"Execution triage-quality-m1 is {phase or 'Pending'}"


@pytest.mark.parametrize("phase", ["Failed", "Cancelled", "TimedOut"])
def test_a_run_that_ended_other_than_succeeded_is_inconclusive(phase: str) -> None:
    judged = evals.judge(evaluation(), run(phase=phase, message="OOMKilled"))
    assert judged.phase == "Inconclusive"
    assert judged.failures == ()
    assert judged.message == f"Execution triage-quality-m1 ended {phase}: OOMKilled"


def test_a_failed_execution_with_low_scores_is_still_inconclusive_not_failed() -> None:
    judged = evals.judge(evaluation(), run(phase="Failed", scores={"accuracy": 0.1, "pii_leakage": 1.0}))
    assert judged.phase == "Inconclusive"


def test_a_missing_score_is_inconclusive() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.95}))
    assert judged.phase == "Inconclusive"
    assert "no score reported for metric pii_leakage" in judged.message


def test_a_threshold_on_a_metric_not_listed_needs_a_score_too() -> None:
    gated = evaluation(thresholds={"accuracy": 0.9, "pii_leakage": "<=0.0", "latency_ms": "<2000"})
    assert evals.judge(gated, run()).phase == "Inconclusive"
    assert evals.judge(
        gated, run(scores={"accuracy": 0.95, "pii_leakage": 0.0, "latency_ms": 900})
    ).phase == ("Passed")


def test_a_missed_threshold_fails_naming_metric_threshold_and_value() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.5, "pii_leakage": 0.0}))
    assert judged.phase == "Failed"
    assert judged.failures == ({"metric": "accuracy", "threshold": ">=0.9", "value": 0.5},)
    assert judged.message == "metric accuracy scored 0.5, which misses its threshold >=0.9"


def test_a_comparison_threshold_sets_the_direction() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.95, "pii_leakage": 0.02}))
    assert judged.phase == "Failed"
    assert judged.failures == ({"metric": "pii_leakage", "threshold": "<=0", "value": 0.02},)
    strict = evaluation(thresholds={"accuracy": ">0.9", "pii_leakage": "<=0.0"})
    assert evals.judge(strict, run(scores={"accuracy": 0.9, "pii_leakage": 0.0})).phase == "Failed"
    assert evals.judge(strict, run(scores={"accuracy": 0.91, "pii_leakage": 0.0})).phase == "Passed"


def test_every_missed_threshold_is_listed_by_metric() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.5, "pii_leakage": 0.3}))
    assert [f["metric"] for f in judged.failures] == ["accuracy", "pii_leakage"]


def test_a_missed_threshold_wins_over_a_missing_score() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.5}))
    assert judged.phase == "Failed"
    assert judged.failures == ({"metric": "accuracy", "threshold": ">=0.9", "value": 0.5},)


def test_every_threshold_met_passes() -> None:
    judged = evals.judge(evaluation(), run(scores={"accuracy": 0.9, "pii_leakage": 0.0}))
    assert judged.phase == "Passed"
    assert judged.failures == ()
    assert judged.message == "every threshold met (accuracy 0.9, pii_leakage 0)"


def test_metrics_without_thresholds_need_only_a_score() -> None:
    free = evaluation(thresholds={})
    assert evals.judge(free, run(scores={"accuracy": 0.0, "pii_leakage": 1.0})).phase == "Passed"
    assert evals.judge(free, run(scores={"accuracy": 0.0})).phase == "Inconclusive"


def test_a_decided_review_turns_an_inconclusive_run_into_passed_or_failed() -> None:
    inconclusive = run(phase="Failed", message="OOMKilled")
    approved = evals.judge(evaluation(), inconclusive, review(approved=True))
    assert approved.phase == "Passed"
    assert approved.message.endswith("counted as passed by user:alice (Approval triage-quality-m1-review)")
    rejected = evals.judge(evaluation(), inconclusive, review(approved=False, by=None))
    assert rejected.phase == "Failed"
    assert rejected.message.endswith("; not accepted (Approval triage-quality-m1-review)")
    pending = evals.judge(evaluation(), inconclusive, review(approved=False, decided=False))
    assert pending.phase == "Inconclusive"


def test_a_review_does_not_change_a_decided_result() -> None:
    failed = run(scores={"accuracy": 0.5, "pii_leakage": 0.0})
    assert evals.judge(evaluation(), failed, review(approved=True)).phase == "Failed"
    passed = run()
    assert evals.judge(evaluation(), passed, review(approved=False)).phase == "Passed"
    assert evals.judge(evaluation(), run(phase="Running"), review(approved=True)).phase == "Running"


# --- review_of --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "decision", "decided", "approved"),
    [
        ("Approved", "approve", True, True),
        ("Rejected", "reject", True, False),
        ("Expired", "deny", True, False),
        ("Expired", "approve", True, True),  # onTimeout: approve
        ("Overridden", "reject", True, True),
        ("Pending", None, False, False),
        (None, None, False, False),
    ],
)
def test_review_of_an_approval(
    phase: str | None, decision: str | None, decided: bool, approved: bool
) -> None:
    doc = factories.approval("triage-quality-m1-review", phase=phase, decision=decision, action="eval")
    answer = evals.review_of(doc)
    assert answer.approval == "triage-quality-m1-review"
    assert (answer.decided, answer.approved) == (decided, approved)
    assert answer.by == ("user:alice" if decision is not None else None)


def test_review_approval_asks_about_the_run() -> None:
    inconclusive = run(phase="Failed", message="OOMKilled")
    judged = evals.judge(evaluation(), inconclusive)
    doc = evals.review_approval(evaluation(), inconclusive, judged, uid=UID, approvers=["team:ml"])
    assert doc["metadata"]["name"] == "triage-quality-m1-review"
    assert doc["metadata"]["labels"] == {"joch.dev/eval-run": "triage-quality-m1", "joch.dev/eval": NAME}
    assert doc["metadata"]["ownerReferences"][0]["uid"] == UID
    assert doc["spec"]["action"]["type"] == "eval"
    assert (
        "was inconclusive: Execution triage-quality-m1 ended Failed: OOMKilled"
        in (doc["spec"]["action"]["inputSummary"])
    )
    assert doc["spec"]["routing"] == {"approvers": ["team:ml"]}
    assert doc["spec"]["options"] == ["approve", "reject"]


# --- schedule_due -----------------------------------------------------------------------------------


def due(
    ev: Eval, *, last: datetime.datetime | None, created: datetime.datetime | None, now: datetime.datetime
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    return evals.schedule_due(ev, last=last, created=created, now=now)


def test_no_schedule_is_never_due() -> None:
    assert due(evaluation(), last=None, created=at(2026, 1, 1), now=at(2026, 5, 6)) == (None, None)
    on_deployment_only = evaluation(schedule={"onDeployment": True})
    assert due(on_deployment_only, last=None, created=at(2026, 1, 1), now=at(2026, 5, 6)) == (None, None)
    assert evals.schedule_of(on_deployment_only) is None


def test_ticks_before_the_eval_was_created_never_run() -> None:
    hourly = evaluation(schedule={"cron": "0 * * * *"})
    assert due(hourly, last=None, created=at(2026, 5, 6, 10, 20), now=at(2026, 5, 6, 10, 50)) == (
        None,
        at(2026, 5, 6, 11),
    )
    # A tick at the very moment of creation does not run either; the next one does.
    assert due(hourly, last=None, created=at(2026, 5, 6, 10), now=at(2026, 5, 6, 10, 50))[0] is None
    assert due(hourly, last=None, created=at(2026, 5, 6, 10, 20), now=at(2026, 5, 6, 11))[0] == at(
        2026, 5, 6, 11
    )


def test_only_the_newest_missed_tick_is_due() -> None:
    hourly = evaluation(schedule={"cron": "0 * * * *"})
    # Down from 03:10 to 10:50: seven ticks missed, one run (the 10:00 tick).
    assert due(hourly, last=at(2026, 5, 6, 3), created=at(2026, 5, 1), now=at(2026, 5, 6, 10, 50)) == (
        at(2026, 5, 6, 10),
        at(2026, 5, 6, 11),
    )


def test_a_recorded_tick_is_not_due_again() -> None:
    hourly = evaluation(schedule={"cron": "0 * * * *"})
    created = at(2026, 5, 1)
    first, _ = due(hourly, last=None, created=created, now=at(2026, 5, 6, 10, 0))
    assert first == at(2026, 5, 6, 10)
    # After a restart, with the tick recorded in status.lastScheduleTime: not again.
    for now in (at(2026, 5, 6, 10, 0), at(2026, 5, 6, 10, 30), at(2026, 5, 6, 10, 59)):
        assert due(hourly, last=first, created=created, now=now) == (None, at(2026, 5, 6, 11))
    assert due(hourly, last=first, created=created, now=at(2026, 5, 6, 11))[0] == at(2026, 5, 6, 11)


def test_nightly_is_midnight_in_the_schedule_time_zone() -> None:
    berlin = evaluation(schedule={"nightly": True, "timeZone": "Europe/Berlin"})
    assert due(berlin, last=None, created=at(2026, 7, 1), now=at(2026, 7, 15, 12)) == (
        at(2026, 7, 14, 22),
        at(2026, 7, 15, 22),
    )
    utc = evaluation(schedule={"nightly": True})
    assert due(utc, last=None, created=at(2026, 7, 1), now=at(2026, 7, 15, 12)) == (
        at(2026, 7, 15),
        at(2026, 7, 16),
    )


def test_cron_is_read_in_the_time_zone() -> None:
    weekday_mornings = evaluation(schedule={"cron": "30 2 * * 1-5", "timeZone": "Europe/Berlin"})
    # Wednesday 2026-05-06: 02:30 CEST is 00:30 UTC.
    assert due(weekday_mornings, last=None, created=at(2026, 5, 1), now=at(2026, 5, 6, 12)) == (
        at(2026, 5, 6, 0, 30),
        at(2026, 5, 7, 0, 30),
    )


# --- promotion_due ----------------------------------------------------------------------------------


def deployment(
    name: str = "triage", *, agent: str = "support-triage", requires: str | None = None
) -> Deployment:
    promotion = {"requiresEval": requires} if requires is not None else None
    return Deployment.model_validate(factories.deployment(name, agent=agent, promotion=promotion))


def test_a_gated_deployment_needs_a_run_of_the_generation() -> None:
    gated = [deployment(requires=NAME)]
    assert evals.promotion_due(evaluation(), gated, [], 3) == "promotion"
    assert evals.promotion_due(evaluation(), gated, [run(agent_generation=2)], 3) == "promotion"
    assert evals.promotion_due(evaluation(), gated, [run(agent_generation=3)], 3) is None
    not_started = run(phase=None, agent_generation=3, started_generation=False)
    assert evals.promotion_due(evaluation(), gated, [not_started], 3) is None


def test_no_generation_no_promotion_run() -> None:
    assert evals.promotion_due(evaluation(), [deployment(requires=NAME)], [], None) is None


def test_an_ungated_deployment_triggers_only_with_on_deployment() -> None:
    plain = [deployment()]
    assert evals.promotion_due(evaluation(), plain, [], 3) is None
    watching = evaluation(schedule={"onDeployment": True})
    assert evals.promotion_due(watching, plain, [], 3) == "deployment"
    assert evals.promotion_due(watching, plain, [run(agent_generation=3)], 3) is None
    other_gate = [deployment(requires="another-eval")]
    assert evals.promotion_due(evaluation(), other_gate, [], 3) is None
    assert evals.promotion_due(watching, other_gate, [], 3) == "deployment"


def test_a_gate_wins_over_on_deployment() -> None:
    watching = evaluation(schedule={"onDeployment": True})
    both = [deployment("plain"), deployment("gated", requires=NAME)]
    assert evals.promotion_due(watching, both, [], 3) == "promotion"


def test_deployments_of_other_agents_are_ignored() -> None:
    watching = evaluation(schedule={"onDeployment": True})
    others = [deployment(agent="billing-bot", requires=NAME), deployment("b", agent="billing-bot")]
    assert evals.promotion_due(watching, others, [], 3) is None
    elsewhere = Deployment.model_validate(
        factories.deployment(
            agentRef={"name": "support-triage", "namespace": "other"}, promotion={"requiresEval": NAME}
        )
    )
    assert evals.promotion_due(watching, [elsewhere], [], 3) is None


# --- eval_status ------------------------------------------------------------------------------------


def status(
    ev: Eval,
    runs: list[evals.RunView],
    *,
    generation: int | None = 1,
    reviews: Mapping[str, evals.Review] | None = None,
    current: Mapping[str, Any] | None = None,
    last: datetime.datetime | None = None,
    upcoming: datetime.datetime | None = None,
) -> tuple[dict[str, Any], list[tuple[evals.RunView, evals.Judgement]]]:
    return evals.eval_status(
        ev,
        runs,
        reviews=reviews or {},
        generation=generation,
        current=current or {},
        last_schedule=last,
        next_schedule=upcoming,
        now=NOW,
    )


def conditions(desired: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in desired["conditions"]}


def test_no_runs_is_pending_and_not_ready() -> None:
    desired, asked = status(evaluation(), [])
    assert desired["phase"] == "Pending"
    assert desired["runs"] == []
    assert desired["targetGeneration"] == 1
    assert desired["observedGeneration"] == 1
    for key in ("lastRunAt", "scores", "failures", "lastExecutionRef", "passedGeneration"):
        assert key not in desired
    ready = conditions(desired)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "NotRun")
    assert ready["lastTransitionTime"] == NOW
    assert conditions(desired)["Reconciling"]["status"] == "False"
    assert asked == []


def test_the_only_run_running_is_running() -> None:
    going = run(phase="Running", completed_at=None, scores={})
    desired, _ = status(evaluation(), [going])
    assert desired["phase"] == "Running"
    assert desired["runs"] == [
        {
            "execution": "triage-quality-m1",
            "trigger": "manual",
            "phase": "Running",
            "createdAt": "2026-05-06T10:00:00Z",
            "agentGeneration": 1,
            "abomGeneration": 4,
            "startedAt": "2026-05-06T10:00:05Z",
            "message": "Execution triage-quality-m1 is Running",
        }
    ]
    assert desired["lastExecutionRef"] == {"name": "triage-quality-m1"}
    assert "lastRunAt" not in desired
    cond = conditions(desired)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "Running")
    assert (cond["Reconciling"]["status"], cond["Reconciling"]["reason"]) == ("True", "Running")
    assert "triage-quality-m1 is running" in cond["Reconciling"]["message"]


def test_a_passed_run_fills_the_summary_and_makes_it_ready() -> None:
    desired, _ = status(evaluation(), [run(agent_generation=2)], generation=2)
    assert desired["phase"] == "Passed"
    assert desired["lastRunAt"] == "2026-05-06T10:03:00Z"
    assert desired["scores"] == {"accuracy": 0.95, "pii_leakage": 0.0}
    assert desired["failures"] == []
    assert desired["agentGeneration"] == 2
    assert desired["abomGeneration"] == 4
    assert desired["passedGeneration"] == 2
    assert desired["targetGeneration"] == 2
    ready = conditions(desired)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Passed")
    assert "for Agent generation 2" in ready["message"]
    assert conditions(desired)["Reconciling"]["status"] == "False"


def test_a_failed_run_records_its_failures_and_is_not_ready() -> None:
    desired, _ = status(evaluation(), [run(scores={"accuracy": 0.5, "pii_leakage": 0.0})])
    assert desired["phase"] == "Failed"
    assert desired["failures"] == [{"metric": "accuracy", "threshold": ">=0.9", "value": 0.5}]
    assert desired["runs"][0]["failures"] == desired["failures"]
    assert "passedGeneration" not in desired
    ready = conditions(desired)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert "metric accuracy scored 0.5, which misses its threshold >=0.9" in ready["message"]


def test_the_newest_ended_run_fills_the_summary() -> None:
    older = run("triage-quality-m1", created="2026-05-06T09:00:00Z", completed_at="2026-05-06T09:03:00Z")
    newer = run(
        "triage-quality-m2",
        created="2026-05-06T10:00:00Z",
        completed_at="2026-05-06T10:03:00Z",
        scores={"accuracy": 0.5, "pii_leakage": 0.0},
        abom_generation=5,
    )
    going = run("triage-quality-m3", created="2026-05-06T11:00:00Z", phase="Running", completed_at=None)
    desired, _ = status(evaluation(), [older, going, newer])
    assert [r["execution"] for r in desired["runs"]] == [
        "triage-quality-m3",
        "triage-quality-m2",
        "triage-quality-m1",
    ]
    assert desired["lastExecutionRef"] == {"name": "triage-quality-m3"}
    assert desired["phase"] == "Failed"  # a run of this generation has ended: its result, not Running
    assert desired["lastRunAt"] == "2026-05-06T10:03:00Z"
    assert desired["scores"] == {"accuracy": 0.5, "pii_leakage": 0.0}
    assert desired["abomGeneration"] == 5
    # m1 passed, but the newest ended run of generation 1 (m2) failed: no generation has passed.
    assert "passedGeneration" not in desired
    assert conditions(desired)["Reconciling"]["status"] == "True"


def test_phase_is_the_current_generation_s() -> None:
    passed_1 = run("triage-quality-g1", created="2026-05-06T09:00:00Z", agent_generation=1)
    running_2 = run("triage-quality-g2", created="2026-05-06T10:00:00Z", agent_generation=2, phase="Running")
    desired, _ = status(evaluation(), [passed_1, running_2], generation=2)
    assert desired["phase"] == "Running"
    assert desired["passedGeneration"] == 1
    assert desired["agentGeneration"] == 1  # the newest ended run's
    assert conditions(desired)["Ready"]["status"] == "False"
    failed_2 = dataclasses.replace(running_2, phase="Succeeded", scores={"accuracy": 0.1, "pii_leakage": 0.0})
    desired, _ = status(evaluation(), [passed_1, failed_2], generation=2)
    assert desired["phase"] == "Failed"
    assert desired["passedGeneration"] == 1  # the newest generation whose newest run passed
    assert conditions(desired)["Ready"]["status"] == "False"


def test_a_new_generation_without_runs_shows_the_last_result_but_is_not_ready() -> None:
    passed_1 = run("triage-quality-g1", agent_generation=1)
    desired, _ = status(evaluation(), [passed_1], generation=2)
    assert desired["phase"] == "Passed"  # the newest ended run's result (EvalStatus.phase)
    assert desired["passedGeneration"] == 1
    assert desired["targetGeneration"] == 2
    assert conditions(desired)["Ready"]["status"] == "False"  # generation 2 has not passed


def test_history_is_bounded_newest_first() -> None:
    many = [
        run(f"triage-quality-m{i:02d}", created=f"2026-05-06T{i:02d}:00:00Z", completed_at=None)
        for i in range(evals.HISTORY + 4)
    ]
    desired, _ = status(evaluation(), list(reversed(many[:12])) + many[12:])
    names = [r["execution"] for r in desired["runs"]]
    assert len(names) == evals.HISTORY
    assert names == [f"triage-quality-m{i:02d}" for i in range(evals.HISTORY + 3, 3, -1)]


def test_a_gone_execution_is_kept_once_ended_and_dropped_while_running() -> None:
    current = {
        "runs": [
            {
                "execution": "triage-quality-m9",
                "trigger": "manual",
                "phase": "Running",
                "createdAt": "2026-05-06T11:00:00Z",
            },
            {
                "execution": "triage-quality-m0",
                "trigger": "schedule",
                "phase": "Passed",
                "createdAt": "2026-05-05T10:00:00Z",
                "agentGeneration": 1,
                "message": "kept",
            },
            {
                "execution": "triage-quality-m1",
                "trigger": "manual",
                "phase": "Failed",
                "createdAt": "2026-05-06T10:00:00Z",
                "message": "stale record of a live run",
            },
        ]
    }
    desired, _ = status(evaluation(), [run()], current=current)
    by_name = {r["execution"]: r for r in desired["runs"]}
    assert list(by_name) == ["triage-quality-m1", "triage-quality-m0"]
    assert by_name["triage-quality-m0"] == current["runs"][1]
    assert by_name["triage-quality-m1"]["phase"] == "Passed"  # the live Execution wins


def test_release_gate_asks_to_review_inconclusive_runs() -> None:
    gated = evaluation(releaseGate={"enabled": True})
    inconclusive = run(phase="Failed", message="OOMKilled")
    desired, asked = status(gated, [inconclusive])
    assert desired["phase"] == "Inconclusive"
    assert [(r.name, j.phase) for r, j in asked] == [("triage-quality-m1", "Inconclusive")]
    # Without the gate, nobody is asked.
    assert status(evaluation(), [inconclusive])[1] == []
    assert status(evaluation(releaseGate={"enabled": False}), [inconclusive])[1] == []


def test_a_reviewed_run_is_not_asked_again_and_takes_the_answer() -> None:
    gated = evaluation(releaseGate={"enabled": True})
    inconclusive = run(phase="Failed", message="OOMKilled")
    reviews = {"triage-quality-m1": review(approved=True)}
    desired, asked = status(gated, [inconclusive], reviews=reviews)
    assert asked == []
    assert desired["phase"] == "Passed"
    assert desired["runs"][0]["approval"] == "triage-quality-m1-review"
    assert conditions(desired)["Ready"]["status"] == "True"
    pending = {"triage-quality-m1": review(approved=False, decided=False)}
    desired, asked = status(gated, [inconclusive], reviews=pending)
    assert asked == []
    assert desired["phase"] == "Inconclusive"
    rejected = {"triage-quality-m1": review(approved=False)}
    assert status(gated, [inconclusive], reviews=rejected)[0]["phase"] == "Failed"


def test_ready_is_true_only_when_passed() -> None:
    cases = {
        "Passed": run(),
        "Failed": run(scores={"accuracy": 0.1, "pii_leakage": 0.0}),
        "Inconclusive": run(scores={}),
        "Running": run(phase="Running"),
    }
    for phase, one in cases.items():
        desired, _ = status(evaluation(), [one])
        assert desired["phase"] == phase
        ready = conditions(desired)["Ready"]
        assert ready["status"] == ("True" if phase == "Passed" else "False"), phase
        assert ready["reason"] == phase


def test_schedule_times_and_transition_times() -> None:
    earlier = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Passed",
                "lastTransitionTime": "2026-05-01T00:00:00Z",
            },
            {"type": "Other", "status": "True", "lastTransitionTime": "x"},
        ]
    }
    desired, _ = status(
        evaluation(), [run()], current=earlier, last=at(2026, 5, 6, 10), upcoming=at(2026, 5, 6, 11)
    )
    assert desired["lastScheduleTime"] == "2026-05-06T10:00:00Z"
    assert desired["nextScheduleTime"] == "2026-05-06T11:00:00Z"
    cond = conditions(desired)
    assert cond["Ready"]["lastTransitionTime"] == "2026-05-01T00:00:00Z"  # unchanged status
    assert cond["Reconciling"]["lastTransitionTime"] == NOW
    assert "Other" in cond  # another writer's condition is kept


def test_without_agent_no_target_generation_and_any_generation_counts() -> None:
    desired, _ = status(evaluation(), [run(agent_generation=4)], generation=None)
    assert "targetGeneration" not in desired
    assert desired["phase"] == "Passed"
    assert conditions(desired)["Ready"]["status"] == "True"
    assert "for Agent generation" not in conditions(desired)["Ready"]["message"]
