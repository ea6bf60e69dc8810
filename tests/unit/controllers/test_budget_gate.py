"""The budget step of the decision service (joch.controllers.reservations.BudgetGate) over the in-memory
API server, and the budgets service letting reservations go.

Cases: 20 concurrent calls of 2 USD under a daily cap of 10 -> exactly 5 allowed with a reservation each,
15 denied BudgetExceeded, the Budget holding 5 reservations and reserved 10; two replicas (two
controllers over one API server, each with its own cache) splitting the calls still allow exactly 5 (the
409s are decided again on the fresh status); a policy deny, a call without cost and an alert Budget
reserve nothing; a Budget not accounted denies; a refusal by a second Budget takes the first one's
reservation back; the budgets service drops an expired reservation, one whose run reported its cost and
one whose run finished, and writes reserved again, keeping reservations written behind its back.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

from joch.controllers.budgets import BudgetService
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.reservations import BudgetGate
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy.decision import Decision
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, NS, obj, run, settle

TEAM = "support-platform"
ALLOW = Decision("allow", "no rule matched")
TODAY = {"windowStart": "2026-11-27T00:00:00Z", "resetAt": "2026-11-28T00:00:00Z"}
MONTH = {"windowStart": "2026-11-01T00:00:00Z", "resetAt": "2026-12-01T00:00:00Z"}


def accounted(daily: float = 0) -> dict[str, Any]:
    return {
        "windows": {
            "daily": {"used": daily, "hard": 10, "reserved": 0, **TODAY},
            "monthly": {"used": daily, "hard": 100, "reserved": 0, **MONTH},
        }
    }


def budget_doc(
    name: str = "team",
    *,
    status: dict[str, Any] | None = None,
    on_hard_limit: str = "deny",
    daily: float = 10,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "scope": {"teams": [TEAM]},
            "limits": {"dailyUsd": daily, "monthlyUsd": 100},
            "enforcement": {"onHardLimit": on_hard_limit},
        },
    }
    if status is not None:
        doc["status"] = status
    return doc


def world(*budgets: dict[str, Any], executions: tuple[dict[str, Any], ...] = ()) -> FakeKube:
    kube = FakeKube()
    labels = {"kubernetes.io/metadata.name": NS}
    kube.put(
        "",
        "namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": labels}},
    )
    kube.put(
        "ops.joch.dev",
        "teams",
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": TEAM},
            "spec": {"namespaces": [NS]},
        },
    )
    for doc in budgets or (budget_doc(status=accounted()),):
        kube.put("ops.joch.dev", "budgets", doc)
    for doc in executions:
        kube.put("runtime.joch.dev", "executions", doc)
    return kube


def execution_doc(name: str, cost: float, phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "agentRef": {"name": "support-triage"},
            "input": {"content": [{"kind": "text", "text": "hi"}]},
        },
        "status": {"phase": phase, "costUsd": cost, "startedAt": "2026-11-27T09:00:00Z"},
    }


async def primed(
    kube: FakeKube, *, services: tuple[Any, ...] = (), now: datetime.datetime = NOW
) -> Controller:
    controller = Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0),
        clock=lambda: now,
        services=services,
    )
    await controller.prime()
    return controller


def context(cost: float | None = 2, execution: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"agent": {"namespace": NS, "name": "support-triage"}}
    if cost is not None:
        out["cost"] = {"runUsd": cost}
    if execution is not None:
        out["execution"] = {"name": execution}
    return out


def status_of(kube: FakeKube, name: str = "team") -> dict[str, Any]:
    found: dict[str, Any] = obj(kube, "budgets", name)["status"]
    return found


def test_twenty_concurrent_calls_of_2_usd_under_10_allow_exactly_5() -> None:
    async def scenario() -> list[tuple[Decision, Any]]:
        kube = world()
        gate = BudgetGate(await primed(kube))
        return await asyncio.gather(*(gate(context(2), ALLOW, NOW) for _ in range(20)))

    kube_answers = run(scenario)
    allowed = [extra for decision, extra in kube_answers if decision.decision == "allow"]
    denied = [decision for decision, _ in kube_answers if decision.decision == "deny"]
    assert len(allowed) == 5
    assert len(denied) == 15
    assert all(d.reason.startswith("BudgetExceeded: Budget support/team: daily window") for d in denied)
    assert all(extra["reservation"]["budgets"] == ["support/team"] for extra in allowed)
    assert all(extra["reservation"]["amountUsd"] == 2 for extra in allowed)
    assert len({extra["reservation"]["id"] for extra in allowed}) == 5


def test_two_replicas_over_one_api_server_still_allow_exactly_5() -> None:
    async def scenario() -> tuple[list[tuple[Decision, Any]], dict[str, Any], int]:
        kube = world()
        one, two = await primed(kube), await primed(kube)
        gates = (BudgetGate(one), BudgetGate(two))
        answers = await asyncio.gather(*(gates[i % 2](context(2), ALLOW, NOW) for i in range(20)))
        conflicts = one.counts["budget_reservation_conflicts"] + two.counts["budget_reservation_conflicts"]
        return answers, status_of(kube), conflicts

    answers, status, conflicts = run(scenario)
    assert sum(1 for decision, _ in answers if decision.decision == "allow") == 5
    assert len(status["reservations"]) == 5
    assert status["windows"]["daily"]["reserved"] == 10
    assert status["windows"]["monthly"]["reserved"] == 10
    assert conflicts > 0  # the replicas did race, and the 409s were decided again


def test_what_reserves_nothing() -> None:
    async def scenario() -> None:
        kube = world(
            budget_doc(status=accounted()),
            budget_doc("alerting", status=accounted(50), on_hard_limit="alert"),
        )
        gate = BudgetGate(await primed(kube))
        deny = Decision("deny", "no shell", policy_id="caps")
        assert await gate(context(2), deny, NOW) == (deny, None)
        assert await gate(context(None), ALLOW, NOW) == (ALLOW, None)
        assert await gate({"cost": {"runUsd": 2}}, ALLOW, NOW) == (ALLOW, None)
        assert "reservations" not in status_of(kube)
        decision, extra = await gate(context(2), ALLOW, NOW)
        assert decision == ALLOW
        assert extra is not None
        assert extra["reservation"]["budgets"] == ["support/team"]  # not the alert Budget
        assert "reservations" not in status_of(kube, "alerting")

    run(scenario)


def test_a_budget_not_accounted_denies_and_a_cache_not_loaded_too() -> None:
    async def scenario() -> None:
        kube = world(budget_doc(status=None))
        controller = await primed(kube)
        decision, extra = await BudgetGate(controller)(context(0.01), ALLOW, NOW)
        assert decision.decision == "deny"
        assert decision.reason.startswith("BudgetExceeded: Budget support/team: its state is unknown")
        assert extra == {"budget": {"namespace": NS, "name": "team"}}
        cold = Controller(kube, ControllerConfig(), services=())  # type: ignore[arg-type]
        decision, _ = await BudgetGate(cold)(context(0.01), ALLOW, NOW)
        assert decision.decision == "deny"
        assert "not loaded" in decision.reason

    run(scenario)


def test_the_tightest_budget_is_named_and_a_late_refusal_takes_back_the_first_reservation() -> None:
    async def scenario() -> None:
        kube = world(
            budget_doc("a-wide", status=accounted(), daily=50), budget_doc("b-tight", status=accounted(6))
        )
        controller = await primed(kube)
        gate = BudgetGate(controller)
        decision, _ = await gate(context(5), ALLOW, NOW)
        assert decision.decision == "deny"
        assert "Budget support/b-tight" in decision.reason
        # b-tight fills up behind the cache's back: the first write (a-wide) lands, b-tight refuses on
        # its fresh status, and a-wide's reservation is taken back.
        tight = copy.deepcopy(obj(kube, "budgets", "b-tight"))
        tight["status"]["windows"]["daily"]["used"] = 9.5
        kube.put("ops.joch.dev", "budgets", tight)
        decision, _ = await gate(context(2), ALLOW, NOW)
        assert decision.decision == "deny"
        assert "Budget support/b-tight" in decision.reason
        assert not status_of(kube, "a-wide").get("reservations")
        assert status_of(kube, "a-wide")["windows"]["daily"]["reserved"] == 0

    run(scenario)


def test_the_budgets_service_lets_reservations_go_and_keeps_new_ones() -> None:
    async def scenario() -> None:
        kube = world(
            budget_doc(status=accounted()),
            executions=(execution_doc("reports", 1), execution_doc("ends", 1), execution_doc("waits", 1)),
        )
        decider = await primed(kube)
        gate = BudgetGate(decider, ttl_seconds=60)
        for run_name in ("reports", "ends", "waits"):
            decision, _ = await gate(context(2, run_name), ALLOW, NOW)
            assert decision == ALLOW
        early = NOW - datetime.timedelta(seconds=120)
        old = BudgetGate(await primed(kube, now=early), ttl_seconds=60)
        assert (await old(context(1), ALLOW, early))[0] == ALLOW  # made two minutes ago: expired
        assert len(status_of(kube)["reservations"]) == 4
        # The worker reports the first run's call; the second run ends.
        kube.put(
            "runtime.joch.dev",
            "executions",
            {**obj(kube, "executions", "reports"), "status": {**execution_doc("reports", 3)["status"]}},
        )
        kube.put(
            "runtime.joch.dev",
            "executions",
            {
                **obj(kube, "executions", "ends"),
                "status": {**execution_doc("ends", 1.5, "Succeeded")["status"]},
            },
        )
        service_host = await primed(kube, services=(BudgetService,))
        await service_host.start()
        await settle(service_host)
        status = status_of(kube)
        assert [r["execution"] for r in status["reservations"]] == ["waits"]
        assert status["windows"]["daily"]["reserved"] == 2
        # A reservation made by another replica lands between the service's read and its write: the 409
        # makes the service decide again, and the new reservation stays.
        decision, _ = await gate(context(1), ALLOW, NOW)
        assert decision == ALLOW
        service_host.queue.add(ObjectKey("Budget", NS, "team"))
        await settle(service_host)
        assert len(status_of(kube)["reservations"]) == 2
        await service_host.stop()

    run(scenario)


def test_a_budget_with_an_unknown_time_zone_is_stalled_without_windows_and_denies() -> None:
    async def scenario() -> None:
        doc = budget_doc(status=accounted())
        doc["spec"]["timeZone"] = "Mars/Olympus"
        kube = world(doc)
        host = await primed(kube, services=(BudgetService,))
        await host.start()
        await settle(host)
        status = status_of(kube)
        assert "windows" not in status  # the stale windows are gone: nobody reads them as current
        stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
        assert stalled["status"] == "True"
        assert "spec.timeZone" in stalled["message"]
        decision, _ = await BudgetGate(host)(context(0.01), ALLOW, NOW)
        assert decision.decision == "deny"
        assert "its state is unknown" in decision.reason
        await host.stop()

    run(scenario)
