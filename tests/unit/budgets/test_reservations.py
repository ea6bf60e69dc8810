"""Budget reservations, the pure part (joch.domain.reconcile.reservations): whether a call fits a
Budget, what the decision path writes, and when the budget service lets a reservation go.

Cases: a call fits below the daily and monthly caps and is refused past either (the message names the
Budget, the window, what is used, reserved and asked); live reservations count, expired ones do not;
perRunUsd counts the call, the Execution's cost and its outstanding reservations; the most restrictive
of several verdicts decides; a Budget not accounted, with an unknown zone, or full of reservations
refuses (fail closed); a window closed since the status was written starts empty; the patch keeps the
live reservations and sums the windows' reserved; the release rules (expired, finished, reported, the
reservations of one run laid end to end, an unknown run kept until it expires); budget_status carries
the reservations through and sums reserved from them.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from joch.api.v1alpha1.budget import Budget
from joch.domain.reconcile import budgets
from joch.domain.reconcile import reservations as holds

NS = "support"
KEY = f"{NS}/team"
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
TODAY = {"windowStart": "2026-11-27T00:00:00Z", "resetAt": "2026-11-28T00:00:00Z"}
MONTH = {"windowStart": "2026-11-01T00:00:00Z", "resetAt": "2026-12-01T00:00:00Z"}


def budget(tz: str = "UTC", **limits: Any) -> Budget:
    return Budget.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "team", "namespace": NS},
            "spec": {"limits": limits or {"dailyUsd": 10, "monthlyUsd": 100}, "timeZone": tz},
        }
    )


def status(
    daily: float = 0, monthly: float = 0, reservations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "windows": {
            "daily": {"used": daily, "hard": 10, **TODAY},
            "monthly": {"used": monthly, "hard": 100, **MONTH},
        }
    }
    if reservations is not None:
        out["reservations"] = reservations
    return out


def held(
    amount: float,
    *,
    rid: str = "r",
    execution: str | None = None,
    baseline: float = 0,
    created: datetime.datetime = NOW - datetime.timedelta(seconds=10),
    ttl: float = 300,
) -> dict[str, Any]:
    call = holds.Call(NS, "support-triage", amount, execution)
    return holds.new_reservation(rid, call, run=holds.RunCost(baseline, False), now=created, ttl_seconds=ttl)


def call(amount: float, execution: str | None = None) -> holds.Call:
    return holds.Call(NS, "support-triage", amount, execution)


def assess(b: Budget, s: dict[str, Any], c: holds.Call, run: holds.RunCost | None = None) -> holds.Verdict:
    return holds.assess(KEY, b, s, c, run=run, now=NOW)


def test_a_call_below_the_caps_fits_with_the_least_headroom_reported() -> None:
    verdict = assess(budget(), status(daily=6, monthly=50), call(2))
    assert verdict.fits
    assert verdict.headroom == pytest.approx(2)  # the day is tighter than the month


def test_exactly_at_the_cap_fits_and_a_cent_over_is_refused_naming_window_used_and_asked() -> None:
    assert assess(budget(), status(daily=8), call(2)).fits
    refused = assess(budget(), status(daily=8), call(2.01))
    assert not refused.fits
    assert refused.reason == (
        "BudgetExceeded: Budget support/team: daily window 2026-11-27T00:00:00Z..2026-11-28T00:00:00Z: "
        "used 8 and reserved 0 of 10 USD, this call 2.01 USD (onHardLimit: deny)"
    )


def test_the_monthly_cap_refuses_too() -> None:
    refused = assess(budget(dailyUsd=50, monthlyUsd=100), status(daily=0, monthly=99), call(2))
    assert not refused.fits
    assert "monthly window 2026-11-01T00:00:00Z..2026-12-01T00:00:00Z" in refused.reason


def test_live_reservations_count_and_expired_ones_do_not() -> None:
    four = [held(2, rid=f"r{i}") for i in range(4)]
    assert assess(budget(), status(daily=2, reservations=four), call(2)).fits is False
    assert assess(budget(), status(daily=0, reservations=four), call(2)).fits  # 8 + 2 = 10
    gone = [held(2, rid=f"r{i}", created=NOW - datetime.timedelta(seconds=400)) for i in range(4)]
    assert assess(budget(), status(daily=2, reservations=gone), call(2)).fits


def test_per_run_counts_the_call_the_runs_cost_and_its_outstanding_reservations() -> None:
    b = budget(dailyUsd=10, monthlyUsd=100, perRunUsd=5)
    assert not assess(b, status(), call(6)).fits  # the call alone
    one = [held(2, rid="a", execution="run-1", baseline=1)]
    run = holds.RunCost(1, False)
    assert assess(b, status(reservations=one), call(2, "run-1"), run).fits  # 1 + 2 + 2 = 5
    refused = assess(b, status(reservations=one), call(2.5, "run-1"), run)
    assert not refused.fits
    assert "per run (Execution run-1): spent and held 3 of 5 USD, this call 2.5 USD" in refused.reason
    # Reported (cost 3 >= baseline 1 + 2): the reservation no longer adds, the cost does.
    assert assess(b, status(reservations=one), call(2, "run-1"), holds.RunCost(3, False)).fits
    # Another run's reservations do not count towards this run.
    assert assess(b, status(reservations=one), call(2.5, "run-2"), holds.RunCost(1, False)).fits


def test_the_most_restrictive_verdict_decides() -> None:
    wide = holds.Verdict("a/wide", True, 50)
    tight = holds.Verdict("a/tight", True, 1)
    assert holds.most_restrictive([wide, tight]) is tight
    no = holds.Verdict("a/no", False, -2, "BudgetExceeded: ...")
    worse = holds.Verdict("a/worse", False, -5, "BudgetExceeded: ...")
    assert holds.most_restrictive([wide, no, tight, worse]) is worse
    with pytest.raises(ValueError, match="no verdicts"):
        holds.most_restrictive([])


@pytest.mark.parametrize(
    ("the_status", "the_budget", "says"),
    [
        pytest.param({}, budget(), "its state is unknown (not accounted yet)", id="no windows"),
        pytest.param(
            {"phase": "Failed", "conditions": []}, budget(), "its state is unknown", id="stalled, no windows"
        ),
        pytest.param(
            status(), budget(dailyUsd=10, monthlyUsd=100, tz="Mars/Olympus"), "spec.timeZone", id="zone"
        ),
        pytest.param(
            status(reservations=[held(0, rid=f"r{i}") for i in range(holds.MAX_RESERVATIONS)]),
            budget(),
            "holds 1000 reservations",
            id="full",
        ),
    ],
)
def test_unknown_state_refuses_fail_closed(the_status: dict[str, Any], the_budget: Budget, says: str) -> None:
    verdict = assess(the_budget, the_status, call(0.01))
    assert not verdict.fits
    assert verdict.headroom == -math.inf
    assert verdict.reason.startswith("BudgetExceeded: Budget support/team: ")
    assert says in verdict.reason


def test_a_window_closed_since_the_status_was_written_starts_empty() -> None:
    yesterday = {"windowStart": "2026-11-26T00:00:00Z", "resetAt": "2026-11-27T00:00:00Z"}
    stale = {"windows": {"daily": {"used": 10, "hard": 10, **yesterday}, "monthly": {"used": 10, **MONTH}}}
    assert assess(budget(), stale, call(2)).fits
    old = held(9, created=NOW - datetime.timedelta(hours=13), ttl=86400)  # made yesterday, still live
    assert assess(budget(), {**status(), "reservations": [old]}, call(2)).fits


def test_without_caps_every_call_fits() -> None:
    b = Budget.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "team", "namespace": NS},
            "spec": {"limits": {}},
        }
    )
    assert assess(b, status(), call(1e6)) == holds.Verdict(KEY, True, math.inf)


def test_the_patch_keeps_the_live_drops_the_expired_and_sums_reserved_per_window() -> None:
    expired = held(3, rid="old", created=NOW - datetime.timedelta(seconds=600))
    live = held(2, rid="live")
    new = held(1.5, rid="new", created=NOW)
    patch = holds.add(budget(), status(reservations=[expired, live]), new, NOW)
    assert [r["id"] for r in patch["reservations"]] == ["live", "new"]
    assert patch["windows"] == {"daily": {"reserved": 3.5}, "monthly": {"reserved": 3.5}}
    assert new["expiresAt"] == "2026-11-27T12:05:00.000Z"
    back = holds.remove(budget(), {**status(), "reservations": patch["reservations"]}, "new", NOW)
    assert back is not None
    assert [r["id"] for r in back["reservations"]] == ["live"]
    assert back["windows"]["daily"]["reserved"] == 2
    assert holds.remove(budget(), status(reservations=[live]), "absent", NOW) is None
    last = holds.remove(budget(), status(reservations=[live]), "live", NOW)
    assert last is not None
    assert last["reservations"] is None  # removes the key


def test_release_drops_expired_finished_and_reported_and_keeps_the_rest() -> None:
    reservations = [
        held(2, rid="expired", created=NOW - datetime.timedelta(seconds=301)),
        held(2, rid="finished", execution="done"),
        held(2, rid="reported", execution="busy", baseline=1),
        held(2, rid="pending", execution="slow", baseline=1),
        held(2, rid="unknown", execution="not-cached"),
        held(2, rid="unnamed"),
    ]
    runs = {
        (NS, "done"): holds.RunCost(0.5, True),
        (NS, "busy"): holds.RunCost(3, False),
        (NS, "slow"): holds.RunCost(2.5, False),
    }
    kept = holds.release({"reservations": reservations}, runs, NOW, namespace=NS)
    assert [r["id"] for r in kept] == ["pending", "unknown", "unnamed"]


def test_the_reservations_of_one_run_are_laid_end_to_end() -> None:
    first = held(2, rid="a", execution="run", created=NOW - datetime.timedelta(seconds=5))
    second = held(2, rid="b", execution="run", created=NOW - datetime.timedelta(seconds=4))
    both = {"reservations": [second, first]}

    def kept(cost: float) -> list[str]:
        runs = {(NS, "run"): holds.RunCost(cost, False)}
        return [r["id"] for r in holds.release(both, runs, NOW, namespace=NS)]

    assert kept(0) == ["b", "a"]
    assert kept(2) == ["b"]  # one call reported: the first one goes, the second stays
    assert kept(4) == []


def test_call_of_reads_agent_cost_and_execution() -> None:
    context = {"agent": {"namespace": NS, "name": "a"}, "cost": {"runUsd": 2}, "execution": {"name": "x"}}
    assert holds.call_of(context) == holds.Call(NS, "a", 2.0, "x")
    assert holds.call_of({"agent": {"namespace": NS, "name": "a"}}) is None
    assert holds.call_of({"cost": {"runUsd": 2}}) is None
    assert holds.call_of({"agent": {"namespace": NS, "name": "a"}, "cost": {"runUsd": True}}) is None


def test_budget_status_carries_the_reservations_and_sums_reserved_from_them() -> None:
    b = budget()
    live = held(2, rid="live")
    desired = budgets.budget_status(b, current={}, reservations=[live], now=NOW)
    assert desired["reservations"] == [live]
    assert desired["windows"]["daily"]["reserved"] == 2
    assert desired["windows"]["monthly"]["reserved"] == 2
    # None leaves them alone; an empty list over a status holding some removes the key (null).
    assert "reservations" not in budgets.budget_status(b, current={}, now=NOW)
    assert "reservations" not in budgets.budget_status(b, current={}, reservations=[], now=NOW)
    cleared = budgets.budget_status(b, current={"reservations": [live]}, reservations=[], now=NOW)
    assert cleared["reservations"] is None
    assert cleared["windows"]["daily"]["reserved"] == 0
