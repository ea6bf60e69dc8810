"""``joch cost by-team | by-agent`` over a fake API (the real-cluster story is in
tests/integration/test_budgets.py): the sums from ``--since`` (months, or days), per team and per agent,
highest first, the table and JSON forms, "no spend", a bad ``--since``, and a refusal's exit code.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest

from joch.cli import cost
from joch.domain.reconcile import budgets
from joch.kube.rest import Answer

PATH = "/apis/ops.joch.dev/v1alpha1/namespaces/support/budgets"


def budget(name: str, teams: list[str] | None, ledger: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"limits": {"monthlyUsd": 100}}
    if teams is not None:
        spec["scope"] = {"teams": teams}
    return {"metadata": {"name": name, "namespace": "support"}, "spec": spec, "status": {"ledger": ledger}}


def entry(period: str, usd: float, runs: int, agents: Mapping[str, float]) -> dict[str, Any]:
    return {"period": period, "spentUsd": usd, "executions": runs, "byAgent": dict(agents)}


BUDGETS = [
    budget(
        "platform",
        ["support-platform", "billing"],
        [
            entry("2026-10", 50.0, 9, {"triage": 50.0}),
            entry("2026-11", 12.5, 3, {"triage": 10.0, "writer": 2.5}),
            entry("2026-11-26", 2.5, 1, {"writer": 2.5}),
            entry("2026-11-27", 10.0, 2, {"triage": 10.0}),
        ],
    ),
    budget("unscoped", None, [entry("2026-11", 1.0, 1, {"triage": 1.0})]),
]


class Fake:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def call(self, method: str, path: str, **_: Any) -> Answer:
        assert (method, path) == ("GET", PATH)
        return self.answer


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="joch")
    cost.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def listed(items: list[dict[str, Any]]) -> Fake:
    return Fake(Answer(200, {"items": items, "metadata": {}}, ()))


def test_spend_per_team_sums_the_months_from_since() -> None:
    rows = budgets.spend(BUDGETS, by="team", since="2026-10")
    assert [(r.who, r.budget, r.spent_usd, r.executions) for r in rows] == [
        ("billing", "support/platform", 62.5, 12),
        ("support-platform", "support/platform", 62.5, 12),
        ("-", "support/unscoped", 1.0, 1),
    ]
    november = budgets.spend(BUDGETS, by="team", since="2026-11")
    assert november[0].spent_usd == 12.5


def test_spend_from_a_day_sums_the_day_entries() -> None:
    rows = budgets.spend(BUDGETS, by="agent", since="2026-11-27")
    assert [(r.who, r.budget, r.spent_usd, r.executions) for r in rows] == [
        ("triage", "support/platform", 10.0, None)
    ]


def test_by_team_prints_a_table_highest_first() -> None:
    out = io.StringIO()
    code = cost.run(
        parse("cost", "by-team", "-n", "support", "--since", "2026-11"), out=out, cluster=listed(BUDGETS)
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["TEAM", "BUDGET", "SPENT", "(USD)", "RUNS"]
    assert lines[1].split() == ["billing", "support/platform", "12.50", "3"]
    assert lines[3].split() == ["-", "support/unscoped", "1.00", "1"]
    assert lines[-1] == "since 2026-11"


def test_by_agent_as_json_defaults_to_this_month() -> None:
    import datetime

    out = io.StringIO()
    now = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
    code = cost.run(
        parse("cost", "by-agent", "-n", "support", "-o", "json"), out=out, cluster=listed(BUDGETS), now=now
    )
    assert code == 0
    rows = {(r["who"], r["budget"]): r["spentUsd"] for r in json.loads(out.getvalue())}
    assert rows == {
        ("triage", "support/platform"): 10.0,
        ("writer", "support/platform"): 2.5,
        ("triage", "support/unscoped"): 1.0,
    }


def test_no_spend_says_so() -> None:
    out = io.StringIO()
    assert cost.run(parse("cost", "by-team", "-n", "support"), out=out, cluster=listed([])) == 0
    assert out.getvalue().startswith("No spend recorded since ")


def test_a_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("cost", "by-team", "--since", "2026-13")
    assert exited.value.code == 2
    assert "expected a month YYYY-MM or a day YYYY-MM-DD" in capsys.readouterr().err


def test_a_refused_list_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    refused = Fake(Answer(403, None, (), error="budgets is forbidden: User bo cannot list"))
    assert cost.run(parse("cost", "by-team", "-n", "support"), out=io.StringIO(), cluster=refused) == 1
    assert "cannot list Budgets: budgets is forbidden" in capsys.readouterr().err
