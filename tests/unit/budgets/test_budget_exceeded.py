"""The admission check over Budgets (joch.domain.reconcile.budgets.exceeded): which covering Budgets
refuse a new run, and the message naming the Budget, the window, what was used and the limit.

Cases: a deny Budget at its daily hard limit refuses; at its monthly limit too; below both, or with
``onHardLimit: alert``, nothing; reserved spend counts towards the limit; a window that has closed since
the status was written does not refuse (the new one is empty); the day's token limit refuses; a Budget
not accounted yet (no status.windows) refuses (unknown state: fail closed); a Budget that does not cover
the run says nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.team import Team
from joch.domain.reconcile import budgets
from joch.domain.reconcile.cache import Store, parse_entry
from joch.domain.settings import OperatorSettings

NS = "support"
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
TODAY = {"windowStart": "2026-11-27T00:00:00Z", "resetAt": "2026-11-28T00:00:00Z"}
MONTH = {"windowStart": "2026-11-01T00:00:00Z", "resetAt": "2026-12-01T00:00:00Z"}


def window(
    used: float,
    hard: float | None,
    *,
    reserved: float = 0,
    tokens: int = 0,
    when: Mapping[str, str] = TODAY,
) -> dict[str, Any]:
    out: dict[str, Any] = {"used": used, "reserved": reserved, "tokens": tokens, **when}
    if hard is not None:
        out["hard"] = hard
    return out


def store_with(
    status: Mapping[str, Any] | None,
    *,
    on_hard_limit: str = "deny",
    teams: tuple[str, ...] = ("support-platform",),
    token_limit: int | None = None,
) -> Store:
    store = Store()
    team = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": "support-platform"},
        "spec": {"namespaces": [NS]},
    }
    limits: dict[str, Any] = {"dailyUsd": 10, "monthlyUsd": 100}
    if token_limit is not None:
        limits["tokenLimitDaily"] = token_limit
    budget: dict[str, Any] = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": "team", "namespace": NS, "uid": "u1", "resourceVersion": "1"},
        "spec": {
            "scope": {"teams": list(teams)},
            "limits": limits,
            "enforcement": {"onHardLimit": on_hard_limit},
        },
    }
    if status is not None:
        budget["status"] = dict(status)
    store.upsert(parse_entry(Team, team))
    store.upsert(parse_entry(Budget, budget))
    return store


def exceeded(store: Store) -> list[str]:
    return budgets.exceeded(store, OperatorSettings(), NS, "support-triage", NOW)


def test_a_deny_budget_at_its_daily_limit_refuses_naming_window_used_and_limit() -> None:
    store = store_with({"windows": {"daily": window(10.5, 10), "monthly": window(40, 100, when=MONTH)}})
    assert exceeded(store) == [
        "Budget support/team: daily window 2026-11-27T00:00:00Z..2026-11-28T00:00:00Z used 10.5 of 10 USD "
        "(onHardLimit: deny)"
    ]


def test_the_monthly_limit_refuses_too() -> None:
    store = store_with({"windows": {"daily": window(1, 10), "monthly": window(100, 100, when=MONTH)}})
    (message,) = exceeded(store)
    assert message.startswith("Budget support/team: monthly window 2026-11-01T00:00:00Z..")
    assert "used 100 of 100 USD" in message


def test_below_the_limits_or_alert_only_admits() -> None:
    below = {"windows": {"daily": window(9.99, 10), "monthly": window(40, 100, when=MONTH)}}
    assert exceeded(store_with(below)) == []
    over = {"windows": {"daily": window(12, 10), "monthly": window(40, 100, when=MONTH)}}
    assert exceeded(store_with(over, on_hard_limit="alert")) == []


def test_reserved_spend_counts_towards_the_limit() -> None:
    store = store_with(
        {"windows": {"daily": window(8, 10, reserved=2), "monthly": window(8, 100, when=MONTH)}}
    )
    assert len(exceeded(store)) == 1


def test_a_window_closed_since_the_status_was_written_does_not_refuse() -> None:
    yesterday = {"windowStart": "2026-11-26T00:00:00Z", "resetAt": "2026-11-27T00:00:00Z"}
    store = store_with(
        {"windows": {"daily": window(50, 10, when=yesterday), "monthly": window(50, 100, when=MONTH)}}
    )
    assert exceeded(store) == []


def test_the_days_token_limit_refuses() -> None:
    store = store_with(
        {"windows": {"daily": window(1, 10, tokens=5000), "monthly": window(1, 100, when=MONTH)}},
        token_limit=5000,
    )
    assert exceeded(store) == ["Budget support/team: daily tokens used 5000 of 5000 (onHardLimit: deny)"]


def test_a_budget_not_accounted_yet_refuses_fail_closed() -> None:
    (message,) = exceeded(store_with(None))
    assert (
        message == "Budget support/team has not been accounted yet (its spend is unknown); try again shortly"
    )


def test_a_budget_that_does_not_cover_the_run_says_nothing() -> None:
    over = {"windows": {"daily": window(50, 10), "monthly": window(50, 100, when=MONTH)}}
    assert exceeded(store_with(over, teams=("payments",))) == []
