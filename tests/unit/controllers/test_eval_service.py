"""The evals service (joch.controllers.evals) over the in-memory API server, with an injected clock.

Cases: a cron Eval creates one run for the newest tick since it was created and records the tick; a
restart at the same moment creates nothing more (the tick is in status, and its run's name is taken);
after missed ticks a restart creates one run for the newest, not one per missed tick; a run's scores are
judged into the Eval's status; a Deployment gated by the Eval makes the run of the Agent's generation.
"""

from __future__ import annotations

import datetime
from typing import Any

from joch.controllers.evals import EvalService
from joch.controllers.reconciler import Controller, ControllerConfig
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NS, obj, run, settle

CREATED = "2026-11-27T11:58:00Z"
START = datetime.datetime(2026, 11, 27, 12, 12, 30, tzinfo=datetime.UTC)


def eval_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Eval",
        "metadata": {"name": "quality", "namespace": NS, "creationTimestamp": CREATED},
        "spec": {
            "target": {"kind": "Agent", "name": "support-triage"},
            "dataset": {"type": "file", "uri": "./cases.jsonl"},
            "metrics": [{"name": "accuracy", "type": "deterministic"}],
            "thresholds": {"accuracy": 0.9},
            **spec,
        },
    }


def agent_doc() -> dict[str, Any]:
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "support-triage", "namespace": NS, "generation": 3},
        "spec": {"framework": {"adapterRef": {"name": "sdk"}}},
    }


def world(*docs: tuple[str, str, dict[str, Any]]) -> FakeKube:
    kube = FakeKube()
    kube.put("", "namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    kube.put("joch.dev", "agents", agent_doc())
    for group, plural, doc in docs:
        kube.put(group, plural, doc)
    return kube


class Clock:
    def __init__(self, at: datetime.datetime) -> None:
        self.at = at

    def __call__(self) -> datetime.datetime:
        return self.at


async def reconciled(kube: FakeKube, clock: Clock) -> Controller:
    controller = Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0),
        clock=clock,
        services=(EvalService,),
    )
    await controller.start()
    await settle(controller)
    await controller.stop()
    return controller


def runs(kube: FakeKube) -> list[str]:
    return sorted(e["metadata"]["name"] for e in kube.of("executions"))


def test_a_cron_eval_runs_once_per_tick_across_restarts() -> None:
    kube = world(("ops.joch.dev", "evals", eval_doc(schedule={"cron": "*/5 * * * *"})))
    clock = Clock(START)

    async def scenario() -> None:
        await reconciled(kube, clock)
        assert runs(kube) == ["quality-s202611271210"]
        status = obj(kube, "evals", "quality")["status"]
        assert status["lastScheduleTime"] == "2026-11-27T12:10:00Z"
        assert status["nextScheduleTime"] == "2026-11-27T12:15:00Z"
        (created,) = kube.of("executions")
        assert created["spec"]["trigger"] == {"type": "eval", "sourceRef": {"name": "quality"}}
        assert created["metadata"]["labels"]["joch.dev/eval-trigger"] == "schedule"
        assert created["metadata"]["ownerReferences"][0]["kind"] == "Eval"

        # A restart at the same moment: nothing more.
        await reconciled(kube, clock)
        assert runs(kube) == ["quality-s202611271210"]

        # Down over four ticks (12:15 .. 12:30): one run, for the newest.
        clock.at = START + datetime.timedelta(minutes=20)
        await reconciled(kube, clock)
        assert runs(kube) == ["quality-s202611271210", "quality-s202611271230"]
        assert obj(kube, "evals", "quality")["status"]["lastScheduleTime"] == "2026-11-27T12:30:00Z"

    run(scenario)


def test_a_tick_whose_run_exists_is_recorded_not_run_again() -> None:
    """A crash after creating the run and before recording its tick: the restart finds the name taken."""
    kube = world(("ops.joch.dev", "evals", eval_doc(schedule={"cron": "*/5 * * * *"})))
    existing = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": "quality-s202611271210", "namespace": NS},
        "spec": {
            "agentRef": {"name": "support-triage"},
            "trigger": {"type": "eval", "sourceRef": {"name": "quality"}},
        },
    }
    kube.put("runtime.joch.dev", "executions", existing)

    async def scenario() -> None:
        await reconciled(kube, Clock(START))
        assert runs(kube) == ["quality-s202611271210"]
        assert obj(kube, "evals", "quality")["status"]["lastScheduleTime"] == "2026-11-27T12:10:00Z"

    run(scenario)


def test_ticks_before_the_eval_existed_never_run() -> None:
    kube = world(("ops.joch.dev", "evals", eval_doc(schedule={"cron": "0 0 * * *"})))

    async def scenario() -> None:
        await reconciled(kube, Clock(START))
        assert runs(kube) == []
        status = obj(kube, "evals", "quality")["status"]
        assert status["phase"] == "Pending"
        assert status["nextScheduleTime"] == "2026-11-28T00:00:00Z"
        assert "lastScheduleTime" not in status

    run(scenario)


def _run_doc(name: str, phase: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-11-27T12:00:00Z"},
        "spec": {
            "agentRef": {"name": "support-triage"},
            "trigger": {"type": "eval", "sourceRef": {"name": "quality"}},
        },
        "status": {"phase": phase, "agentGeneration": 3, "completedAt": "2026-11-27T12:05:00Z", **status},
    }


def test_scores_are_judged_into_the_status() -> None:
    kube = world(
        ("ops.joch.dev", "evals", eval_doc()),
        ("runtime.joch.dev", "executions", _run_doc("quality-m1", "Succeeded", scores={"accuracy": 0.5})),
    )

    async def scenario() -> None:
        await reconciled(kube, Clock(START))
        status = obj(kube, "evals", "quality")["status"]
        assert status["phase"] == "Failed"
        assert status["failures"] == [{"metric": "accuracy", "threshold": ">=0.9", "value": 0.5}]
        assert status["agentGeneration"] == 3
        assert status["targetGeneration"] == 3
        assert "passedGeneration" not in status
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "Failed")
        assert "metric accuracy scored 0.5, which misses its threshold >=0.9" in ready["message"]

    run(scenario)


def test_a_gated_deployment_makes_the_run_of_the_agents_generation() -> None:
    deployment = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "triage", "namespace": NS},
        "spec": {"agentRef": {"name": "support-triage"}, "promotion": {"requiresEval": "quality"}},
    }
    kube = world(("ops.joch.dev", "evals", eval_doc()), ("ops.joch.dev", "deployments", deployment))

    async def scenario() -> None:
        await reconciled(kube, Clock(START))
        assert runs(kube) == ["quality-g3"]
        (created,) = kube.of("executions")
        assert created["metadata"]["labels"]["joch.dev/eval-trigger"] == "promotion"
        assert created["metadata"]["labels"]["joch.dev/agent-generation"] == "3"
        # Once that generation has a run, no other is made for it.
        await reconciled(kube, Clock(START))
        assert runs(kube) == ["quality-g3"]

    run(scenario)
