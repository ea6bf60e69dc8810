"""Budget accounting (joch.domain.reconcile.budgets): windows, coverage, the ledger and the status.

Cases: the day window from local midnight in UTC and in Europe/Berlin, a DST day of 23 (and 25) hours,
the month window across the Dec -> Jan rollover, an unknown time zone is a ValueError naming it; a
Budget covers a run through scope.teams (the Team owning the namespace), an Environment's budgetRefs
(with and without a namespace) and a Team's budgetRefs (the Budget in one of its namespaces), and not
otherwise; to_charge skips running and already charged runs and marks the ones in ``charging``; charge
adds a run to its day and month entries once each (byAgent split), never lists a uid twice in
``charging`` and prunes the ledger to 62 days and 24 months; settle drops marked and gone uids; the
status: used (ledger plus running runs of the window), UTC window bounds, hard and soft limits, the
phases and conditions, the token limit, a closed month kept but not counted, the per-agent breakdown,
and a status recomputed from itself is equal; run_of reads an Execution entry.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.budget import Budget, BudgetStatus
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.team import Team
from joch.domain.reconcile import budgets
from joch.domain.reconcile.budgets import Run, Window
from joch.domain.reconcile.cache import Entry, Store, parse_entry
from joch.domain.settings import OperatorSettings
from tests import helpers

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NS = "support"
TEAM = "support-platform"
NAME = "team-budget"
KEY = f"{NS}/{NAME}"
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def budget(
    name: str = NAME,
    namespace: str = NS,
    *,
    teams: Sequence[str] | None = (TEAM,),
    limits: Mapping[str, Any] | None = None,
    enforcement: Mapping[str, Any] | None = None,
    shares: Mapping[str, float] | None = None,
    time_zone: str | None = None,
    generation: int | None = 4,
) -> Budget:
    spec: dict[str, Any] = {
        "limits": dict(limits if limits is not None else {"dailyUsd": 10, "monthlyUsd": 100})
    }
    if teams is not None:
        spec["scope"] = {"teams": list(teams)}
    if enforcement is not None:
        spec["enforcement"] = dict(enforcement)
    if shares is not None:
        spec["allocation"] = {"byAgent": dict(shares)}
    if time_zone is not None:
        spec["timeZone"] = time_zone
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if generation is not None:
        metadata["generation"] = generation
    return Budget.model_validate(
        {"apiVersion": "ops.joch.dev/v1alpha1", "kind": "Budget", "metadata": metadata, "spec": spec}
    )


def team(
    name: str = TEAM, *, namespaces: Sequence[str] = (NS,), budget_refs: Sequence[str] | None = None
) -> Team:
    spec: dict[str, Any] = {"namespaces": list(namespaces)}
    if budget_refs is not None:
        spec["budgetRefs"] = list(budget_refs)
    return Team.model_validate(
        {"apiVersion": "ops.joch.dev/v1alpha1", "kind": "Team", "metadata": {"name": name}, "spec": spec}
    )


def environment(name: str = "prod", *, refs: Sequence[Mapping[str, str]] = ()) -> Environment:
    return Environment.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": name},
            "spec": {"budgetRefs": [dict(r) for r in refs]},
        }
    )


def a_run(
    uid: str,
    cost: float = 1.0,
    *,
    agent: str = "support-triage",
    tokens: int = 0,
    when: datetime.datetime = NOW,
    finished: bool = True,
    charged: frozenset[str] = frozenset(),
) -> Run:
    return Run(
        uid=uid,
        namespace=NS,
        name=f"run-{uid}",
        agent=agent,
        cost_usd=cost,
        tokens=tokens,
        at=when,
        finished=finished,
        charged=charged,
    )


def ledger_of(entries: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(e["period"]): e for e in entries}


def conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def status_with(
    target: Budget,
    runs: Sequence[Run] = (),
    *,
    running: Sequence[Run] = (),
    current: Mapping[str, Any] | None = None,
    now: datetime.datetime = NOW,
) -> dict[str, Any]:
    """The status after charging the finished ``runs`` into ``current``'s ledger."""
    current = current or {}
    tz = budgets.time_zone(target.spec.time_zone)
    by_agent = bool(target.spec.allocation and target.spec.allocation.by_agent)
    ledger, charging = budgets.charge(current, list(runs), tz, by_agent=by_agent)
    return budgets.budget_status(
        target, current=current, ledger=ledger, charging=charging, running=running, now=now
    )


# --- windows -----------------------------------------------------------------------------------------


def test_the_day_window_in_utc_runs_from_midnight_to_midnight() -> None:
    window = budgets.day_window(NOW, UTC)
    assert window == Window("2026-11-27", at("2026-11-27T00:00:00Z"), at("2026-11-28T00:00:00Z"))
    assert window.holds(at("2026-11-27T00:00:00Z"))
    assert window.holds(at("2026-11-27T23:59:59Z"))
    assert not window.holds(at("2026-11-28T00:00:00Z"))
    assert not window.holds(at("2026-11-26T23:59:59Z"))


def test_the_day_window_in_berlin_starts_at_local_midnight() -> None:
    # 23:30 UTC on Dec 7 is 00:30 on Dec 8 in Berlin (CET, UTC+1)
    window = budgets.day_window(at("2026-12-07T23:30:00Z"), BERLIN)
    assert window.key == "2026-12-08"
    assert window.start == at("2026-12-07T23:00:00Z")
    assert window.reset == at("2026-12-08T23:00:00Z")
    assert window.start.tzinfo == UTC
    assert window.reset.tzinfo == UTC
    # 22:30 UTC is still Dec 7 in Berlin
    assert budgets.day_window(at("2026-12-07T22:30:00Z"), BERLIN).key == "2026-12-07"


def test_a_dst_day_is_23_hours_long_and_the_autumn_one_25() -> None:
    spring = budgets.day_window(at("2026-03-29T12:00:00Z"), BERLIN)
    assert spring.key == "2026-03-29"
    assert spring.start == at("2026-03-28T23:00:00Z")  # midnight CET
    assert spring.reset == at("2026-03-29T22:00:00Z")  # midnight CEST
    assert spring.reset - spring.start == datetime.timedelta(hours=23)

    autumn = budgets.day_window(at("2026-10-25T12:00:00Z"), BERLIN)
    assert autumn.key == "2026-10-25"
    assert autumn.start == at("2026-10-24T22:00:00Z")
    assert autumn.reset == at("2026-10-25T23:00:00Z")
    assert autumn.reset - autumn.start == datetime.timedelta(hours=25)


def test_the_month_window_rolls_over_from_december_to_january() -> None:
    december = budgets.month_window(at("2026-12-15T08:00:00Z"), UTC)
    assert december == Window("2026-12", at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))

    # 23:30 UTC on Dec 31 is already January 1st in Berlin
    january = budgets.month_window(at("2026-12-31T23:30:00Z"), BERLIN)
    assert january == Window("2027-01", at("2026-12-31T23:00:00Z"), at("2027-01-31T23:00:00Z"))
    assert budgets.month_window(at("2026-12-31T22:30:00Z"), BERLIN).key == "2026-12"


def test_periods_are_the_day_and_month_keys_in_the_zone() -> None:
    assert budgets.periods(at("2026-11-30T23:30:00Z"), UTC) == ("2026-11-30", "2026-11")
    assert budgets.periods(at("2026-11-30T23:30:00Z"), BERLIN) == ("2026-12-01", "2026-12")


def test_time_zone_defaults_to_utc_and_names_an_unknown_zone() -> None:
    assert budgets.time_zone(None) is UTC
    assert budgets.time_zone("") is UTC
    assert budgets.time_zone("UTC") is UTC
    assert budgets.time_zone("Europe/Berlin") == BERLIN
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus_Mons'"):
        budgets.time_zone("Mars/Olympus_Mons")


def test_parse_time_reads_rfc3339_and_refuses_the_rest() -> None:
    assert budgets.parse_time("2026-11-27T10:00:00Z") == at("2026-11-27T10:00:00Z")
    assert budgets.parse_time("2026-11-27T10:00:00") == at("2026-11-27T10:00:00Z")
    assert budgets.parse_time("yesterday") is None
    assert budgets.parse_time("") is None
    assert budgets.parse_time(None) is None
    assert budgets.parse_time(12) is None


# --- coverage ----------------------------------------------------------------------------------------


def test_a_budget_covers_the_runs_of_the_team_its_scope_names() -> None:
    assert budgets.covers(budget(), namespace=NS, team=team(), environment=None)
    assert not budgets.covers(budget(teams=["payments"]), namespace=NS, team=team(), environment=None)
    assert not budgets.covers(budget(), namespace=NS, team=None, environment=None)


def test_an_environment_budget_ref_without_a_namespace_means_the_runs_namespace() -> None:
    unscoped = budget(teams=None)
    env = environment(refs=[{"name": NAME}])
    assert budgets.covers(unscoped, namespace=NS, team=None, environment=env)
    assert not budgets.covers(unscoped, namespace="billing", team=None, environment=env)
    other = environment(refs=[{"name": "another-budget"}])
    assert not budgets.covers(unscoped, namespace=NS, team=None, environment=other)


def test_an_environment_budget_ref_with_a_namespace_names_that_budget_everywhere() -> None:
    shared = budget(namespace="finance", teams=None)
    env = environment(refs=[{"name": NAME, "namespace": "finance"}])
    assert budgets.covers(shared, namespace=NS, team=None, environment=env)
    assert budgets.covers(shared, namespace="billing", team=None, environment=env)
    elsewhere = environment(refs=[{"name": NAME, "namespace": "audit"}])
    assert not budgets.covers(shared, namespace=NS, team=None, environment=elsewhere)


def test_a_team_budget_ref_covers_when_the_budget_is_in_one_of_its_namespaces() -> None:
    owner = team(namespaces=[NS, "support-tools"], budget_refs=[NAME])
    assert budgets.covers(budget(teams=None), namespace=NS, team=owner, environment=None)
    in_other = budget(namespace="support-tools", teams=None)
    assert budgets.covers(in_other, namespace=NS, team=owner, environment=None)
    outside = budget(namespace="finance", teams=None)
    assert not budgets.covers(outside, namespace=NS, team=owner, environment=None)
    unnamed = team(namespaces=[NS], budget_refs=["another-budget"])
    assert not budgets.covers(budget(teams=None), namespace=NS, team=unnamed, environment=None)


def test_nothing_else_covers() -> None:
    unscoped = budget(teams=None)
    assert not budgets.covers(unscoped, namespace=NS, team=team(), environment=environment())
    assert not budgets.covers(unscoped, namespace=NS, team=None, environment=None)


def store_of(*docs: Mapping[str, Any]) -> Store:
    store = Store()
    for doc in docs:
        model = {"Team": Team, "Budget": Budget, "Environment": Environment, "Agent": Agent}[doc["kind"]]
        store.upsert(parse_entry(model, doc))
    return store


def test_covering_lists_the_keys_of_every_covering_budget_sorted() -> None:
    examples = {d["kind"]: d for d in helpers.example_documents()}
    agent = examples["Agent"]  # labelled env: prod
    assert agent["metadata"]["labels"]["env"] == "prod"
    prod = environment("prod", refs=[{"name": "env-budget"}]).model_dump(by_alias=True, exclude_none=True)
    owner = team(budget_refs=["team-ref-budget"]).model_dump(by_alias=True, exclude_none=True)
    docs = [
        agent,
        prod,
        owner,
        budget("scope-budget").model_dump(by_alias=True, exclude_none=True),
        budget("env-budget", teams=None).model_dump(by_alias=True, exclude_none=True),
        budget("team-ref-budget", teams=None).model_dump(by_alias=True, exclude_none=True),
        budget("unrelated", teams=["payments"]).model_dump(by_alias=True, exclude_none=True),
    ]
    store = store_of(*docs)
    found = budgets.covering(store, OperatorSettings(), NS, agent["metadata"]["name"])
    assert found == [f"{NS}/env-budget", f"{NS}/scope-budget", f"{NS}/team-ref-budget"]
    # an Agent the store does not know has no Environment: only the Team's Budgets
    assert budgets.covering(store, OperatorSettings(), NS, "unknown-agent") == [
        f"{NS}/scope-budget",
        f"{NS}/team-ref-budget",
    ]


# --- charging ----------------------------------------------------------------------------------------


def test_to_charge_skips_running_and_counted_runs_and_marks_those_in_charging() -> None:
    done = a_run("u-done")
    going = a_run("u-going", finished=False)
    counted = a_run("u-counted", charged=frozenset({KEY}))
    counted_elsewhere = a_run("u-other", charged=frozenset({"finance/other"}))
    pending = a_run("u-pending")
    pending_counted = a_run("u-pending-counted", charged=frozenset({KEY}))
    new, mark = budgets.to_charge(
        KEY,
        [done, going, counted, counted_elsewhere, pending, pending_counted],
        ["u-pending", "u-pending-counted", "u-going"],
    )
    assert [r.uid for r in new] == ["u-done", "u-other"]
    assert [r.uid for r in mark] == ["u-pending"]


def test_uncharged_lists_the_covering_budgets_that_have_not_counted_a_run() -> None:
    counted = a_run("u", charged=frozenset({"support/a"}))
    assert budgets.uncharged(counted, ["support/c", "support/a", "support/b"]) == ["support/b", "support/c"]
    assert budgets.uncharged(counted, ["support/a"]) == []


def test_charge_adds_each_run_to_its_day_and_month_once() -> None:
    first = a_run("u1", 1.5, tokens=100, agent="triage")
    second = a_run("u2", 2.0, tokens=50, agent="writer", when=at("2026-11-27T18:00:00Z"))
    earlier = a_run("u3", 3.0, tokens=7, agent="triage", when=at("2026-11-02T09:00:00Z"))
    ledger, charging = budgets.charge({}, [first, second, earlier], UTC, by_agent=True)
    assert ledger == [
        {
            "period": "2026-11",
            "spentUsd": 6.5,
            "tokens": 157,
            "executions": 3,
            "byAgent": {"triage": 4.5, "writer": 2.0},
        },
        {"period": "2026-11-02", "spentUsd": 3.0, "tokens": 7, "executions": 1, "byAgent": {"triage": 3.0}},
        {
            "period": "2026-11-27",
            "spentUsd": 3.5,
            "tokens": 150,
            "executions": 2,
            "byAgent": {"triage": 1.5, "writer": 2.0},
        },
    ]
    assert charging == ["u1", "u2", "u3"]
    BudgetStatus.model_validate({"ledger": ledger, "charging": charging})


def test_charge_without_by_agent_writes_no_split() -> None:
    ledger, _ = budgets.charge({}, [a_run("u1", 1.0)], UTC, by_agent=False)
    assert all("byAgent" not in entry for entry in ledger)


def test_charge_uses_the_budgets_zone_for_the_periods() -> None:
    late = a_run("u1", 1.0, when=at("2026-11-30T23:30:00Z"))  # December 1st in Berlin
    ledger, _ = budgets.charge({}, [late], BERLIN, by_agent=False)
    assert [e["period"] for e in ledger] == ["2026-12", "2026-12-01"]


def test_charge_adds_to_the_existing_entries_and_keeps_the_charging_list_unique() -> None:
    current: dict[str, Any] = {
        "ledger": [
            {
                "period": "2026-11",
                "spentUsd": 10.0,
                "tokens": 5,
                "executions": 4,
                "byAgent": {"triage": 10.0},
            },
            {"period": "2026-11-27", "spentUsd": 1.25, "tokens": 1, "executions": 1},
        ],
        "charging": ["u-old", "u1"],
    }
    ledger, charging = budgets.charge(
        current, [a_run("u1", 0.5, tokens=2, agent="triage")], UTC, by_agent=True
    )
    entries = ledger_of(ledger)
    assert entries["2026-11"] == {
        "period": "2026-11",
        "spentUsd": 10.5,
        "tokens": 7,
        "executions": 5,
        "byAgent": {"triage": 10.5},
    }
    assert entries["2026-11-27"] == {
        "period": "2026-11-27",
        "spentUsd": 1.75,
        "tokens": 3,
        "executions": 2,
        "byAgent": {"triage": 0.5},
    }
    assert charging == ["u-old", "u1"]
    assert current["charging"] == ["u-old", "u1"]  # the input is not changed
    assert current["ledger"][0]["spentUsd"] == 10.0


def test_charging_the_same_runs_twice_counts_twice_but_lists_each_uid_once() -> None:
    """Not charging a run twice is the caller's job (to_charge): charge itself only keeps ``charging``
    free of duplicates."""
    runs = [a_run("u1", 1.0), a_run("u2", 2.0)]
    ledger, charging = budgets.charge({}, runs, UTC, by_agent=False)
    again, charging_again = budgets.charge(
        {"ledger": ledger, "charging": charging}, runs, UTC, by_agent=False
    )
    assert charging_again == ["u1", "u2"]
    assert ledger_of(again)["2026-11-27"]["executions"] == 4
    # and to_charge, given the charging list, offers neither again
    assert budgets.to_charge(KEY, runs, charging)[0] == []


def test_the_ledger_keeps_the_last_62_days_and_24_months() -> None:
    first_day = datetime.date(2026, 9, 1)
    days = [(first_day + datetime.timedelta(days=i)).isoformat() for i in range(70)]
    months = [f"{year}-{month:02d}" for year in (2024, 2025, 2026) for month in range(1, 13)][:30]
    current = {
        "ledger": [{"period": p, "spentUsd": 1.0, "tokens": 0, "executions": 1} for p in [*days, *months]]
    }
    ledger, _ = budgets.charge(current, [a_run("u1", 1.0, when=NOW)], UTC, by_agent=False)
    kept_days = [e["period"] for e in ledger if len(e["period"]) == 10]
    kept_months = [e["period"] for e in ledger if len(e["period"]) == 7]
    assert len(kept_days) == budgets.KEEP_DAYS == 62
    assert len(kept_months) == budgets.KEEP_MONTHS == 24
    assert kept_days == sorted({*days, "2026-11-27"})[-62:]
    assert kept_days[-1] == "2026-11-27"
    assert "2026-09-01" not in kept_days
    assert kept_months == sorted({*months, "2026-11"})[-24:]
    assert kept_months[0] == "2024-08"
    assert ledger_of(ledger)["2026-11"]["executions"] == 1  # 2026-11 was not in the 30 months (ends 2026-06)
    assert [e["period"] for e in ledger] == [*kept_months, *kept_days]


def test_settle_drops_the_marked_and_the_gone_uids() -> None:
    assert budgets.settle(["a", "b", "c", "d"], ["b"], ["d", "zz"]) == ["a", "c"]
    assert budgets.settle(["a", "b"], []) == ["a", "b"]
    assert budgets.settle([], ["a"], ["b"]) == []


# --- the status --------------------------------------------------------------------------------------


def test_nothing_spent_is_pending_with_the_windows_in_utc() -> None:
    status = budgets.budget_status(budget(), current={}, now=NOW)
    assert status["phase"] == "Pending"
    assert status["daySpentUsd"] == 0
    assert status["monthSpentUsd"] == 0
    assert status["windows"] == {
        "daily": {
            "used": 0,
            "reserved": 0,
            "tokens": 0,
            "windowStart": "2026-11-27T00:00:00Z",
            "resetAt": "2026-11-28T00:00:00Z",
            "hard": 10,
            "soft": 8.0,
        },
        "monthly": {
            "used": 0,
            "reserved": 0,
            "tokens": 0,
            "windowStart": "2026-11-01T00:00:00Z",
            "resetAt": "2026-12-01T00:00:00Z",
            "hard": 100,
            "soft": 80.0,
        },
    }
    assert status["ledger"] == []
    assert status["charging"] == []
    assert status["observedGeneration"] == 4
    assert "byAgent" not in status
    found = conditions(status)
    assert {t: (c["status"], c["reason"]) for t, c in found.items()} == {
        "Ready": ("True", "Accounted"),
        "HardLimitReached": ("False", "WithinLimit"),
        "SoftLimitReached": ("False", "WithinLimit"),
    }
    assert found["Ready"]["message"] == "today 0 USD, this month 0 USD"
    assert all(c["lastTransitionTime"] == "2026-11-27T12:00:00Z" for c in found.values())
    assert all(c["observedGeneration"] == 4 for c in found.values())


def test_the_windows_of_a_berlin_budget_are_written_in_utc() -> None:
    status = budgets.budget_status(budget(time_zone="Europe/Berlin"), current={}, now=NOW)
    daily, monthly = status["windows"]["daily"], status["windows"]["monthly"]
    assert (daily["windowStart"], daily["resetAt"]) == ("2026-11-26T23:00:00Z", "2026-11-27T23:00:00Z")
    assert (monthly["windowStart"], monthly["resetAt"]) == ("2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z")


def test_used_is_the_ledger_plus_the_running_runs_of_the_window() -> None:
    finished = [a_run("u1", 3.0, tokens=30), a_run("u2", 1.0, tokens=10, when=at("2026-11-03T10:00:00Z"))]
    running = [
        a_run("r-today", 0.5, tokens=5, finished=False),
        a_run("r-this-month", 0.25, tokens=2, finished=False, when=at("2026-11-10T10:00:00Z")),
        a_run("r-last-month", 7.0, tokens=70, finished=False, when=at("2026-10-31T23:00:00Z")),
    ]
    status = status_with(budget(), finished, running=running)
    assert status["phase"] == "WithinBudget"
    assert status["daySpentUsd"] == 3.5
    assert status["monthSpentUsd"] == 4.75
    assert status["windows"]["daily"]["used"] == 3.5
    assert status["windows"]["daily"]["tokens"] == 35
    assert status["windows"]["monthly"]["used"] == 4.75
    assert status["windows"]["monthly"]["tokens"] == 47
    # the running runs are not in the ledger, the finished ones are in charging
    assert ledger_of(status["ledger"])["2026-11"]["spentUsd"] == 4.0
    assert status["charging"] == ["u1", "u2"]
    assert conditions(status)["Ready"]["message"] == "today 3.5 USD, this month 4.75 USD"


def test_running_runs_alone_are_spending() -> None:
    status = budgets.budget_status(budget(), current={}, running=[a_run("r", 0.5, finished=False)], now=NOW)
    assert status["phase"] == "WithinBudget"
    assert status["daySpentUsd"] == 0.5
    assert status["ledger"] == []


def test_reserved_is_reported_per_window() -> None:
    status = budgets.budget_status(budget(), current={}, reserved=(1.5, 4.0), now=NOW)
    assert status["windows"]["daily"]["reserved"] == 1.5
    assert status["windows"]["monthly"]["reserved"] == 4.0
    assert status["daySpentUsd"] == 0


def test_the_soft_limit_follows_soft_limit_pct() -> None:
    target = budget(enforcement={"softLimitPct": 0.5})
    status = status_with(target, [a_run("u1", 5.0)])
    assert status["windows"]["daily"]["soft"] == 5.0
    assert status["windows"]["monthly"]["soft"] == 50.0
    assert status["phase"] == "OverSoftLimit"
    below = status_with(target, [a_run("u1", 4.99)])
    assert below["phase"] == "WithinBudget"


def test_over_the_soft_limit_names_the_window_the_spend_and_the_limit() -> None:
    status = status_with(budget(), [a_run("u1", 8.5)])
    assert status["phase"] == "OverSoftLimit"
    found = conditions(status)
    soft = found["SoftLimitReached"]
    assert (soft["status"], soft["reason"]) == ("True", "SoftLimitReached")
    assert soft["message"] == (
        "daily window 2026-11-27T00:00:00Z..2026-11-28T00:00:00Z: used 8.5 of 10 USD (soft limit 8)"
    )
    assert (found["HardLimitReached"]["status"], found["HardLimitReached"]["reason"]) == (
        "False",
        "WithinLimit",
    )
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("True", "Accounted")


def test_at_the_hard_limit_runs_are_denied() -> None:
    status = status_with(budget(), [a_run("u1", 6.0), a_run("u2", 4.0)])
    assert status["daySpentUsd"] == 10
    assert status["phase"] == "OverHardLimit"
    found = conditions(status)
    hard = found["HardLimitReached"]
    assert (hard["status"], hard["reason"]) == ("True", "HardLimitReached")
    assert "daily window 2026-11-27T00:00:00Z..2026-11-28T00:00:00Z: used 10 of 10 USD" in hard["message"]
    assert hard["message"].endswith("(new runs and calls are denied)")
    assert "alert only" not in hard["message"]
    assert found["SoftLimitReached"]["status"] == "True"
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("True", "HardLimitReached")


def test_a_hard_limit_that_only_alerts_says_so() -> None:
    status = status_with(budget(enforcement={"onHardLimit": "alert"}), [a_run("u1", 12.0)])
    assert status["phase"] == "OverHardLimit"
    message = conditions(status)["HardLimitReached"]["message"]
    assert message.endswith("(alert only)")
    assert "denied" not in message


def test_the_monthly_limit_is_reached_by_earlier_days() -> None:
    earlier = [a_run(f"u{i}", 9.0, when=at(f"2026-11-{i + 1:02d}T10:00:00Z")) for i in range(12)]
    status = status_with(budget(), earlier)
    assert status["daySpentUsd"] == 0
    assert status["monthSpentUsd"] == 108
    assert status["phase"] == "OverHardLimit"
    message = conditions(status)["HardLimitReached"]["message"]
    assert "monthly window 2026-11-01T00:00:00Z..2026-12-01T00:00:00Z: used 108 of 100 USD" in message
    assert "daily" not in message


def test_the_daily_token_limit_reached_is_the_hard_limit() -> None:
    target = budget(limits={"dailyUsd": 10, "monthlyUsd": 100, "tokenLimitDaily": 1000})
    status = status_with(
        target, [a_run("u1", 0.1, tokens=600)], running=[a_run("r", 0.1, tokens=400, finished=False)]
    )
    assert status["phase"] == "OverHardLimit"
    hard = conditions(status)["HardLimitReached"]
    assert hard["status"] == "True"
    assert "daily tokens: used 1000 of 1000" in hard["message"]
    assert status_with(target, [a_run("u1", 0.1, tokens=999)])["phase"] == "WithinBudget"


def test_a_budget_without_limits_is_never_over() -> None:
    status = status_with(budget(limits={}), [a_run("u1", 1000.0)])
    assert status["phase"] == "WithinBudget"
    assert "hard" not in status["windows"]["daily"]
    assert "soft" not in status["windows"]["monthly"]
    assert status["daySpentUsd"] == 1000


def test_a_closed_month_stays_in_the_ledger_and_does_not_count() -> None:
    last_month = a_run("u-oct", 95.0, when=at("2026-10-31T20:00:00Z"))
    ledger, charging = budgets.charge({}, [last_month], UTC, by_agent=False)
    status = budgets.budget_status(
        budget(), current={"ledger": ledger, "charging": []}, ledger=ledger, charging=[], now=NOW
    )
    assert status["monthSpentUsd"] == 0
    assert status["daySpentUsd"] == 0
    assert ledger_of(status["ledger"])["2026-10"]["spentUsd"] == 95.0
    assert ledger_of(status["ledger"])["2026-10-31"]["spentUsd"] == 95.0
    assert status["phase"] == "WithinBudget"
    assert charging == ["u-oct"]
    # a run of this month adds to the same ledger, the closed month untouched
    after = status_with(budget(), [a_run("u-nov", 2.0)], current=status)
    assert after["monthSpentUsd"] == 2.0
    assert ledger_of(after["ledger"])["2026-10"]["spentUsd"] == 95.0


def test_by_agent_splits_the_spend_and_carries_the_shares() -> None:
    target = budget(shares={"triage": 0.6, "writer": 0.4})
    status = status_with(
        target,
        [a_run("u1", 3.0, agent="triage"), a_run("u2", 2.0, agent="writer", when=at("2026-11-02T10:00:00Z"))],
        running=[a_run("r1", 1.0, agent="helper", finished=False)],
    )
    assert status["byAgent"] == {
        "helper": {"daySpentUsd": 1.0, "monthSpentUsd": 1.0},
        "triage": {"daySpentUsd": 3.0, "monthSpentUsd": 3.0, "share": 0.6},
        "writer": {"daySpentUsd": 0.0, "monthSpentUsd": 2.0, "share": 0.4},
    }
    assert ledger_of(status["ledger"])["2026-11"]["byAgent"] == {"triage": 3.0, "writer": 2.0}


def test_a_status_recomputed_from_itself_is_equal() -> None:
    target = budget(shares={"triage": 1.0})
    first = status_with(
        target, [a_run("u1", 8.5, agent="triage")], running=[a_run("r", 0.25, finished=False)]
    )
    assert first["phase"] == "OverSoftLimit"
    again = budgets.budget_status(target, current=first, running=[a_run("r", 0.25, finished=False)], now=NOW)
    assert again == first
    later = budgets.budget_status(
        target,
        current=first,
        running=[a_run("r", 0.25, finished=False)],
        now=NOW + datetime.timedelta(hours=1),
    )
    assert later == first  # the transition times stay while nothing changes


def test_conditions_of_other_writers_are_kept() -> None:
    theirs = {"type": "Audited", "status": "True", "reason": "Done", "message": "", "lastTransitionTime": "x"}
    status = budgets.budget_status(budget(), current={"conditions": [theirs]}, now=NOW)
    assert status["conditions"][-1] == theirs
    assert [c["type"] for c in status["conditions"]][:3] == ["Ready", "HardLimitReached", "SoftLimitReached"]


def test_a_budget_without_a_generation_has_no_observed_generation() -> None:
    status = budgets.budget_status(budget(generation=None), current={}, now=NOW)
    assert "observedGeneration" not in status


# --- run_of --------------------------------------------------------------------------------------------


def execution_entry(
    *, status: Mapping[str, Any], created: str | None = "2026-11-26T08:00:00Z", agent: str | None = "triage"
) -> Entry:
    metadata: dict[str, Any] = {"name": "run-1", "namespace": NS, "uid": "uid-1", "resourceVersion": "7"}
    if created is not None:
        metadata["creationTimestamp"] = created
    spec: dict[str, Any] = {"input": {"content": [{"kind": "text", "text": "hi"}]}}
    if agent is not None:
        spec["agentRef"] = {"name": agent}
    body = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": metadata,
        "spec": spec,
        "status": dict(status),
    }
    return parse_entry(Execution, body)


def test_run_of_reads_the_cost_tokens_start_and_budgets_charged() -> None:
    entry = execution_entry(
        status={
            "phase": "Succeeded",
            "costUsd": 1.5,
            "tokens": 120,
            "startedAt": "2026-11-27T10:00:00Z",
            "budgetsCharged": ["support/a", "finance/b"],
        }
    )
    assert budgets.run_of(entry) == Run(
        uid="uid-1",
        namespace=NS,
        name="run-1",
        agent="triage",
        cost_usd=1.5,
        tokens=120,
        at=at("2026-11-27T10:00:00Z"),
        finished=True,
        charged=frozenset({"support/a", "finance/b"}),
    )


def test_run_of_falls_back_to_the_creation_time_and_knows_a_running_run() -> None:
    found = budgets.run_of(execution_entry(status={"phase": "Running", "costUsd": 0.25}))
    assert found is not None
    assert found.at == at("2026-11-26T08:00:00Z")
    assert not found.finished
    assert found.tokens == 0
    assert found.cost_usd == 0.25
    assert found.charged == frozenset()


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Cancelled", "TimedOut"])
def test_every_terminal_phase_is_finished(phase: str) -> None:
    found = budgets.run_of(execution_entry(status={"phase": phase}))
    assert found is not None
    assert found.finished
    assert found.cost_usd == 0


def test_run_of_an_execution_naming_no_agent_is_none() -> None:
    assert budgets.run_of(execution_entry(status={"phase": "Succeeded"}, agent=None)) is None
