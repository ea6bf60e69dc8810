"""Budgets against the real API server with kube-controller-manager, kube-scheduler and KWOK: the
operator runs the Executions as Jobs on fake nodes, the test plays the worker by writing their cost into
their status, and the budgets service counts each finished run into the Budgets covering it.

Cases: the spend of three runs sums into the team Budget's daily and monthly windows and its ledger,
each run marked as counted by every covering Budget; crossing the soft limit then the hard limit sets
the phase and conditions and records one Warning Event each; then a new Execution is refused at
admission (BudgetExceeded, naming the Budget, the window, the amount used and the limit); an operator
restart counts nothing twice; ``joch cost by-team`` and ``by-agent`` read the ledger back; the printer
columns show it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    apply,
    cluster_fixture,
    eventually,
    ready,
    remove_webhook_configurations,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
COSTS = {"b1": 1.5, "b2": 2.0, "b3": 3.0}


def execution(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "agentRef": {"name": "support-triage"},
            "trigger": {"type": "manual"},
            "input": {"content": [{"kind": "text", "text": f"task {name}"}]},
        },
    }


def budget(namespace: str, name: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scope": {"teams": [team]},
            "timeZone": "Europe/Berlin",
            "limits": {"dailyUsd": 10, "monthlyUsd": 100},
            "enforcement": {"softLimitPct": 0.5, "onHardLimit": "deny"},
            "allocation": {"byAgent": {"support-triage": 1}},
        },
    }


def report(kubectl: Kubectl, namespace: str, name: str, cost: float) -> None:
    """The worker's report: what the run cost so far."""
    out = kubectl(
        "patch",
        "executions.runtime.joch.dev",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"costUsd": cost, "tokens": int(cost * 1000)}}),
    )
    assert out.returncode == 0, out.stderr


def run(kubectl: Kubectl, namespace: str, name: str, cost: float) -> None:
    created = kubectl("create", "-f", "-", input=json.dumps(execution(namespace, name)))
    assert created.returncode == 0, created.stderr
    report(kubectl, namespace, name, cost)


def joch_cli(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "joch.cli.main", *args, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _webhook_args(tmp_path: Path) -> tuple[str, ...]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return (f"--webhook-port={port}", f"--webhook-cert-dir={tmp_path / 'webhook-certs'}")


def test_spend_is_counted_once_into_calendar_windows(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    try:
        _spend(namespace, kubectl, kubeconfig, cluster, start_operator, tmp_path)
    finally:
        remove_webhook_configurations(kubectl)


def _spend(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    example = support_triage(namespace)
    name = f"team-{uuid.uuid4().hex[:6]}"
    apply(kubectl, [*example.docs, budget(namespace, name, example.team)])
    # The runs and their costs exist before the operator starts, so each cost is in before the run ends.
    for run_name, cost in COSTS.items():
        run(kubectl, namespace, run_name, cost)
    operator = start_operator(namespace, args=_webhook_args(tmp_path))
    eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
    # The example's own Budget (support-platform-monthly) covers the team too.
    keys = sorted([f"{namespace}/{name}", f"{namespace}/support-platform-monthly"])

    def counted() -> dict[str, Any]:
        for run_name in COSTS:
            status = cluster.status("Execution", namespace, run_name)
            assert status.get("phase") == "Succeeded", (run_name, status)
            assert sorted(status.get("budgetsCharged") or ()) == keys, (run_name, status)
        status = cluster.status("Budget", namespace, name)
        assert status.get("daySpentUsd") == 6.5, status
        assert not status.get("charging"), status
        return status

    status = eventually(counted, timeout=120)
    daily, monthly = status["windows"]["daily"], status["windows"]["monthly"]
    assert (daily["used"], daily["hard"], daily["soft"], daily["tokens"]) == (6.5, 10, 5, 6500)
    assert (monthly["used"], monthly["hard"]) == (6.5, 100)
    assert daily["resetAt"] > daily["windowStart"]
    # Berlin midnight is 23:00 or 22:00 UTC.
    assert daily["windowStart"][11:] in ("23:00:00Z", "22:00:00Z"), daily
    periods = {entry["period"]: entry for entry in status["ledger"]}
    assert len(periods) == 2, periods  # today and this month, in Berlin
    assert all((e["spentUsd"], e["executions"]) == (6.5, 3) for e in periods.values()), periods
    assert status["byAgent"]["support-triage"]["daySpentUsd"] == 6.5
    assert status["phase"] == "OverSoftLimit"
    soft = cluster.condition(namespace, name, "SoftLimitReached", kind="Budget")
    assert soft["status"] == "True"
    assert "used 6.5 of 10 USD" in soft["message"], soft
    assert cluster.condition(namespace, name, "HardLimitReached", kind="Budget")["status"] == "False"
    assert cluster.status("Budget", namespace, "support-platform-monthly")["monthSpentUsd"] == 6.5

    # A fourth run passes the hard limit.
    run(kubectl, namespace, "b4", 4.0)

    def over() -> None:
        status = cluster.status("Budget", namespace, name)
        assert status.get("phase") == "OverHardLimit", status
        assert status["daySpentUsd"] == 10.5
        # b4 finished and counted (not only its running cost)
        assert [e["executions"] for e in status["ledger"]] == [4, 4], status["ledger"]
        assert not status.get("charging"), status

    eventually(over, timeout=90)
    hard = cluster.condition(namespace, name, "HardLimitReached", kind="Budget")
    assert "used 10.5 of 10 USD" in hard["message"]
    assert "denied" in hard["message"]
    reasons = [e.reason for e in cluster.events(namespace, name, kind="Budget") if e.type == "Warning"]
    assert sorted(reasons) == ["HardLimitReached", "SoftLimitReached"], reasons

    # Over the hard limit (onHardLimit: deny), a new run is refused at admission.
    def refused() -> str:
        out = kubectl("create", "-f", "-", input=json.dumps(execution(namespace, "b5")))
        assert out.returncode != 0, "admitted over the hard limit"
        return str(out.stderr)

    message = eventually(refused, timeout=30)
    assert "forbidden" in message.lower(), message  # 403: a denial, not a malformed object
    assert "BudgetExceeded" in message, message
    assert f"Budget {namespace}/{name}: daily window" in message, message
    assert "used 10.5 of 10 USD" in message, message
    assert cluster.try_get("Execution", namespace, "b5") is None

    # A restart recounts nothing.
    before = cluster.get("Budget", namespace, name)
    assert operator.stop() == 0
    start_operator(namespace, args=_webhook_args(tmp_path))
    after = cluster.get("Budget", namespace, name)
    assert after["status"]["ledger"] == before["status"]["ledger"]
    assert after["status"]["daySpentUsd"] == 10.5

    # joch cost reads the ledgers back.
    by_team = joch_cli(kubeconfig, "cost", "by-team", "-n", namespace)
    assert by_team.returncode == 0, by_team.stderr
    lines = {line.split()[1]: line.split() for line in by_team.stdout.splitlines()[1:-1]}
    assert lines[f"{namespace}/{name}"] == [example.team, f"{namespace}/{name}", "10.50", "4"], by_team.stdout
    by_agent = joch_cli(kubeconfig, "cost", "by-agent", "-n", namespace, "-o", "json")
    assert by_agent.returncode == 0, by_agent.stderr
    rows = {(r["who"], r["budget"]): r["spentUsd"] for r in json.loads(by_agent.stdout)}
    assert rows[("support-triage", f"{namespace}/{name}")] == 10.5, rows

    columns = kubectl("get", "budgets.ops.joch.dev", name, "-n", namespace)
    assert columns.returncode == 0, columns.stderr
    header, row = columns.stdout.splitlines()[:2]
    assert header.split()[:7] == ["NAME", "READY", "SCOPE", "DAILY", "MONTHLY", "USED", "PHASE"], header
    assert "OverHardLimit" in row
    assert "10.5" in row
