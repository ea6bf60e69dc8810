"""The budgets service (joch.controllers.budgets) over the in-memory API server.

Cases: three finished runs of a Team's namespace are counted into its Budget (day spend, the day and
month ledger entries, ``charging`` empty at the end) and each run's status names the Budget in
``budgetsCharged``; reconciling again, with the watch echoes delivered or before they arrive, writes
nothing and counts nothing twice; a run already in ``charging`` (a crash after the first write) is marked
but not added again; a running run counts in the window but not in the ledger; crossing the soft then
the hard limit records one Warning Event each (a jump past both: one); a run deleted while in
``charging`` is dropped from it; the Budget comes back at the next local midnight.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Hashable, Mapping
from typing import Any

from joch import audit
from joch.controllers.budgets import BudgetService
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.domain.compilation.keys import ObjectKey
from joch.kube import events
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, NS, obj, run, settle

TEAM = "support-platform"
BUDGET = "support-budget"
KEY = f"{NS}/{BUDGET}"
TODAY = "2026-11-27"
MONTH = "2026-11"
COSTS = {"run-1": 1.5, "run-2": 2.0, "run-3": 3.0}
BUDGET_STATUS = f"/apis/ops.joch.dev/v1alpha1/namespaces/{NS}/budgets/{BUDGET}/status"
EXECUTIONS = f"/apis/runtime.joch.dev/v1alpha1/namespaces/{NS}/executions/"


def budget_doc(*, status: Mapping[str, Any] | None = None, **limits: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": BUDGET, "namespace": NS},
        "spec": {"scope": {"teams": [TEAM]}, "limits": limits or {"dailyUsd": 10, "monthlyUsd": 100}},
    }
    if status is not None:
        doc["status"] = dict(status)
    return doc


def team_doc() -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": TEAM},
        "spec": {"namespaces": [NS]},
    }


def execution_doc(
    name: str,
    cost: float,
    *,
    phase: str = "Succeeded",
    started: str = f"{TODAY}T09:00:00Z",
    **status: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {
            "agentRef": {"name": "support-triage"},
            "input": {"content": [{"kind": "text", "text": "hi"}]},
        },
        "status": {"phase": phase, "costUsd": cost, "startedAt": started, **status},
    }


def three_runs() -> list[dict[str, Any]]:
    return [execution_doc(name, cost) for name, cost in COSTS.items()]


def world(*docs: dict[str, Any], budget: dict[str, Any] | None = None) -> FakeKube:
    kube = FakeKube()
    labels = {"kubernetes.io/metadata.name": NS}
    kube.put(
        "",
        "namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}},
    )
    kube.put("ops.joch.dev", "teams", team_doc())
    kube.put("ops.joch.dev", "budgets", budget if budget is not None else budget_doc())
    for doc in docs:
        kube.put("runtime.joch.dev", "executions", doc)
    return kube


def controller_for(kube: FakeKube) -> Controller:
    return Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0),
        clock=lambda: NOW,
        services=(BudgetService,),
    )


async def started(kube: FakeKube) -> Controller:
    controller = controller_for(kube)
    await controller.start()
    await settle(controller)
    return controller


def budget_status(kube: FakeKube) -> dict[str, Any]:
    status: dict[str, Any] = obj(kube, "budgets", BUDGET)["status"]
    return status


def ledger(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {e["period"]: e for e in budget_status(kube).get("ledger") or ()}


def charged(kube: FakeKube, name: str) -> Any:
    return (obj(kube, "executions", name).get("status") or {}).get("budgetsCharged")


def budget_writes(kube: FakeKube, since: int = 0) -> list[dict[str, Any]]:
    return [body for method, path, body in kube.landed[since:] if method == "PATCH" and path == BUDGET_STATUS]


def execution_writes(kube: FakeKube, since: int = 0) -> list[tuple[str, Any]]:
    return [(path, body) for _, path, body in kube.landed[since:] if path.startswith(EXECUTIONS)]


def echo_executions(controller: Controller, kube: FakeKube) -> None:
    """What the Execution watch delivers after the service's writes."""
    for body in kube.of("executions"):
        controller.observe("Execution", "MODIFIED", copy.deepcopy(body))


async def reconcile_again(controller: Controller) -> None:
    controller.queue.add(ObjectKey("Budget", NS, BUDGET))
    await settle(controller)


def spy_events(controller: Controller) -> list[tuple[str, str, str, str]]:
    """Every Event the service asks the recorder for: (object name, type, reason, message)."""
    said: list[tuple[str, str, str, str]] = []
    record = controller.recorder.record

    def spy(involved: events.InvolvedObject, type_: Any, reason: str, message: str) -> bool:
        said.append((involved.name, type_, reason, message))
        return record(involved, type_, reason, message)

    controller.recorder.record = spy  # type: ignore[method-assign]
    return said


def spy_delays(controller: Controller) -> list[tuple[Hashable, float]]:
    delayed: list[tuple[Hashable, float]] = []
    add_after = controller.queue.add_after

    def spy(key: Hashable, delay: float) -> None:
        delayed.append((key, delay))
        add_after(key, delay)

    controller.queue.add_after = spy  # type: ignore[method-assign]
    return delayed


def add_execution(controller: Controller, kube: FakeKube, doc: dict[str, Any]) -> dict[str, Any]:
    """A new Execution, created and delivered as its watch would."""
    body = kube.put("runtime.joch.dev", "executions", doc)
    controller.observe("Execution", "ADDED", copy.deepcopy(body))
    return body


def conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or ()}


# --- counting ------------------------------------------------------------------------------------


def test_three_finished_runs_are_counted_into_the_team_budget() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = await started(kube)

        status = budget_status(kube)
        assert status["daySpentUsd"] == 6.5
        assert status["monthSpentUsd"] == 6.5
        assert status["phase"] == "WithinBudget"
        entries = ledger(kube)
        assert sorted(entries) == [MONTH, TODAY]
        for period in (MONTH, TODAY):
            assert entries[period]["executions"] == 3
            assert entries[period]["spentUsd"] == 6.5
        assert status["charging"] == []
        window = status["windows"]["daily"]
        assert (window["used"], window["hard"], window["soft"]) == (6.5, 10, 8.0)
        assert (window["windowStart"], window["resetAt"]) == (f"{TODAY}T00:00:00Z", "2026-11-28T00:00:00Z")
        ready = conditions(status)["Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "Accounted")
        for name in COSTS:
            assert charged(kube, name) == [KEY]
        assert controller.counts["executions_charged"] == 3
        await controller.stop()

    run(scenario)


def test_the_first_write_holds_the_runs_in_charging_and_the_last_releases_them() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = await started(kube)
        writes = budget_writes(kube)
        assert len(writes) == 2, writes
        first, last = writes
        assert sorted(first["status"]["charging"]) == sorted(f"uid-{name}" for name in COSTS)
        assert {e["period"]: e["executions"] for e in first["status"]["ledger"]} == {MONTH: 3, TODAY: 3}
        assert last["status"]["charging"] == []
        # the runs were marked between the two writes
        marks = [i for i, (_, path, _) in enumerate(kube.landed) if path.startswith(EXECUTIONS)]
        budget_at = [i for i, (_, path, _) in enumerate(kube.landed) if path == BUDGET_STATUS]
        assert len(marks) == 3
        assert budget_at[0] < min(marks)
        assert max(marks) < budget_at[1]
        await controller.stop()

    run(scenario)


def test_reconciling_again_after_the_echoes_writes_nothing_and_counts_nothing_twice() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = await started(kube)
        echo_executions(controller, kube)
        await settle(controller)
        before = len(kube.landed)
        await reconcile_again(controller)
        assert budget_writes(kube, before) == []
        assert execution_writes(kube, before) == []
        assert ledger(kube)[TODAY]["executions"] == 3
        assert budget_status(kube)["daySpentUsd"] == 6.5
        await controller.stop()

        # a restart counts nothing twice either
        before = len(kube.landed)
        again = await started(kube)
        assert budget_writes(kube, before) == []
        assert execution_writes(kube, before) == []
        assert ledger(kube)[MONTH]["executions"] == 3
        await again.stop()

    run(scenario)


def test_reconciling_again_before_the_echoes_arrive_counts_nothing_twice() -> None:
    """The Execution watch lags behind the service's own marks: the cache still shows the runs without
    ``budgetsCharged`` while ``charging`` no longer holds them. A reconcile then (another run's change,
    the resync) must not count them again."""

    async def scenario() -> None:
        kube = world(*three_runs())
        controller = await started(kube)
        assert budget_status(kube)["charging"] == []
        await reconcile_again(controller)
        entries = ledger(kube)
        assert entries[TODAY]["executions"] == 3, entries
        assert budget_status(kube)["daySpentUsd"] == 6.5
        await controller.stop()

    run(scenario)


def test_a_run_already_in_charging_is_marked_but_not_added_again() -> None:
    """A crash after the first write: the run is in the ledger and in ``charging``, its own status does
    not say so yet."""

    async def scenario() -> None:
        crashed = {
            "ledger": [
                {"period": MONTH, "spentUsd": 1.5, "tokens": 0, "executions": 1},
                {"period": TODAY, "spentUsd": 1.5, "tokens": 0, "executions": 1},
            ],
            "charging": ["uid-run-1"],
        }
        kube = world(*three_runs(), budget=budget_doc(status=crashed))
        controller = await started(kube)
        entries = ledger(kube)
        assert entries[TODAY]["executions"] == 3
        assert entries[TODAY]["spentUsd"] == 6.5
        assert entries[MONTH]["executions"] == 3
        assert entries[MONTH]["spentUsd"] == 6.5
        assert budget_status(kube)["daySpentUsd"] == 6.5
        assert budget_status(kube)["charging"] == []
        for name in COSTS:
            assert charged(kube, name) == [KEY]
        await controller.stop()

    run(scenario)


def test_a_run_counted_elsewhere_keeps_that_budget_in_its_list() -> None:
    async def scenario() -> None:
        kube = world(execution_doc("run-1", 1.5, budgetsCharged=["finance/company"]))
        controller = await started(kube)
        assert charged(kube, "run-1") == ["finance/company", KEY]
        assert ledger(kube)[TODAY]["executions"] == 1
        await controller.stop()

    run(scenario)


def test_a_running_run_counts_in_the_window_but_not_in_the_ledger() -> None:
    async def scenario() -> None:
        going = execution_doc("run-4", 0.75, phase="Running", tokens=40)
        kube = world(*three_runs(), going)
        controller = await started(kube)
        status = budget_status(kube)
        assert status["daySpentUsd"] == 7.25
        assert status["monthSpentUsd"] == 7.25
        assert status["windows"]["daily"]["tokens"] == 40
        entries = ledger(kube)
        assert entries[TODAY]["spentUsd"] == 6.5
        assert entries[TODAY]["executions"] == 3
        assert status["charging"] == []
        assert charged(kube, "run-4") is None
        assert all(not path.endswith("/run-4/status") for path, _ in execution_writes(kube))
        await controller.stop()

    run(scenario)


def test_a_run_of_another_namespace_is_not_counted() -> None:
    async def scenario() -> None:
        other = execution_doc("run-x", 50.0)
        other["metadata"]["namespace"] = "billing"
        kube = world(*three_runs(), other)
        controller = await started(kube)
        assert budget_status(kube)["daySpentUsd"] == 6.5
        stored = kube.objects[("runtime.joch.dev", "executions", "billing", "run-x")]
        assert "budgetsCharged" not in stored["status"]
        await controller.stop()

    run(scenario)


# --- limits and Events ---------------------------------------------------------------------------


def test_crossing_the_soft_then_the_hard_limit_records_one_warning_each() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = controller_for(kube)
        said = spy_events(controller)
        await controller.start()
        await settle(controller)
        echo_executions(controller, kube)
        await settle(controller)
        assert budget_status(kube)["phase"] == "WithinBudget"
        assert said == []

        add_execution(controller, kube, execution_doc("run-4", 2.0))  # 8.5 of 10: over the soft limit (8)
        await settle(controller)
        echo_executions(controller, kube)
        await settle(controller)
        status = budget_status(kube)
        assert status["phase"] == "OverSoftLimit"
        assert status["daySpentUsd"] == 8.5
        soft = conditions(status)["SoftLimitReached"]
        assert (soft["status"], soft["reason"]) == ("True", "SoftLimitReached")
        assert [(name, type_, reason) for name, type_, reason, _ in said] == [
            (BUDGET, "Warning", "SoftLimitReached")
        ]
        assert said[0][3] == soft["message"]
        assert "used 8.5 of 10 USD" in said[0][3]

        add_execution(controller, kube, execution_doc("run-5", 2.0))  # 10.5 of 10: over the hard limit
        await settle(controller)
        echo_executions(controller, kube)
        await settle(controller)
        status = budget_status(kube)
        assert status["phase"] == "OverHardLimit"
        assert status["daySpentUsd"] == 10.5
        hard = conditions(status)["HardLimitReached"]
        assert (hard["status"], hard["reason"]) == ("True", "HardLimitReached")
        assert "denied" in hard["message"]
        assert [(type_, reason) for _, type_, reason, _ in said] == [
            ("Warning", "SoftLimitReached"),
            ("Warning", "HardLimitReached"),
        ]
        assert said[1][3] == hard["message"]

        # reconciling again says nothing more
        await reconcile_again(controller)
        assert len(said) == 2
        assert ledger(kube)[TODAY]["executions"] == 5
        await controller.stop()

    run(scenario)


def test_a_jump_past_both_limits_is_one_hard_limit_warning() -> None:
    async def scenario() -> None:
        kube = world(execution_doc("run-1", 12.0))
        controller = controller_for(kube)
        said = spy_events(controller)
        trail = io.StringIO()
        controller.governance = audit.GovernanceLog(trail)
        await controller.start()
        await settle(controller)
        assert budget_status(kube)["phase"] == "OverHardLimit"
        assert [(type_, reason) for _, type_, reason, _ in said] == [("Warning", "HardLimitReached")]
        (record,) = (json.loads(line) for line in trail.getvalue().splitlines())
        assert (record["class_name"], record["activity_name"], record["severity"]) == (
            "Budget Breach",
            "Breach",
            "High",
        )
        assert record["actor"]["user"]["name"] == "system:joch:operator"
        assert record["joch"]["resource"]["kind"] == "Budget"
        assert record["joch"]["details"] == {"condition": "HardLimitReached"}
        assert record["message"] == said[0][3]
        await controller.stop()

    run(scenario)


def test_the_budget_comes_back_when_the_day_window_resets() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = controller_for(kube)
        delayed = spy_delays(controller)
        await controller.start()
        await settle(controller)
        key = ObjectKey("Budget", NS, BUDGET)
        resets = [delay for k, delay in delayed if k == key and delay > 1]
        assert resets, delayed
        assert all(delay == 12 * 3600 + 1 for delay in resets)
        await controller.stop()

    run(scenario)


# --- runs gone -----------------------------------------------------------------------------------


def test_a_run_deleted_while_in_charging_is_dropped_from_it() -> None:
    async def scenario() -> None:
        kube = world(*three_runs())
        controller = await started(kube)
        echo_executions(controller, kube)
        await settle(controller)

        # created, seen by the cache, then deleted before the service marks it
        add_execution(controller, kube, execution_doc("run-4", 1.0))
        del kube.objects[("runtime.joch.dev", "executions", NS, "run-4")]
        await settle(controller)
        status = budget_status(kube)
        assert status["charging"] == []
        writes = budget_writes(kube)
        assert any("uid-run-4" in (w["status"].get("charging") or ()) for w in writes)
        assert ledger(kube)[TODAY]["executions"] == 4  # its cost was spent: it stays counted
        await controller.stop()

    run(scenario)


def test_a_uid_in_charging_of_an_execution_no_longer_there_is_dropped() -> None:
    async def scenario() -> None:
        left_over = {
            "ledger": [
                {"period": MONTH, "spentUsd": 4.0, "tokens": 0, "executions": 1},
                {"period": TODAY, "spentUsd": 4.0, "tokens": 0, "executions": 1},
            ],
            "charging": ["uid-of-a-deleted-run"],
        }
        kube = world(*three_runs(), budget=budget_doc(status=left_over))
        controller = await started(kube)
        status = budget_status(kube)
        assert status["charging"] == []
        assert ledger(kube)[TODAY]["executions"] == 4
        assert status["daySpentUsd"] == 10.5
        await controller.stop()

    run(scenario)


def test_more_uncounted_runs_than_charging_holds_are_counted_in_batches(monkeypatch: Any) -> None:
    """status.charging has a bound; a Budget meeting more finished, uncounted runs than it holds counts
    them a batch at a time, each run once (here the bound is 2 and there are 5 runs)."""
    monkeypatch.setattr("joch.domain.reconcile.budgets.MAX_CHARGING", 2)
    costs = {f"run-{i}": 1.0 + i for i in range(5)}
    kube = world(*(execution_doc(name, cost) for name, cost in costs.items()))

    async def scenario() -> None:
        controller = await started(kube)
        try:
            assert all(charged(kube, name) == [KEY] for name in costs), kube.of("executions")
            status = budget_status(kube)
            assert not status.get("charging"), status
            assert ledger(kube)[TODAY]["executions"] == 5
            assert ledger(kube)[TODAY]["spentUsd"] == sum(costs.values())
            assert all(len(body.get("status", {}).get("charging") or ()) <= 2 for body in budget_writes(kube))
        finally:
            await controller.stop()

    run(scenario)
