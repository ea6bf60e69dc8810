"""Evals against the real API server with kube-controller-manager, kube-scheduler and KWOK: eval runs are
Executions the operator runs as Jobs on fake nodes, the test plays the worker by writing their scores into
their status, and the evals service judges them and gates promotions.

One story: a gated Deployment is refused and its refusal starts the run of the Agent's generation
(promotion trigger); that run scores under its threshold, so the Eval is Failed naming metric, threshold
and value, and the Deployment stays refused; ``joch eval run`` starts a run on demand that passes, and the
Deployment is admitted; a new Agent generation starts its own run and blocks a new promotion until that
run passes. Beside it, a cron Eval (every minute) runs once for its tick, and an operator restart does not
run that tick again.
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
AGENT = "support-triage"


def eval_doc(namespace: str, name: str, **schedule: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "target": {"kind": "Agent", "name": AGENT},
        "dataset": {"type": "file", "uri": "./evals/cases.jsonl"},
        "metrics": [{"name": "accuracy", "type": "deterministic"}],
        "thresholds": {"accuracy": 0.9},
    }
    if schedule:
        spec["schedule"] = schedule
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Eval",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def gated(namespace: str, name: str, evaluation: str) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"agentRef": {"name": AGENT}, "replicas": 1, "promotion": {"requiresEval": evaluation}},
    }


def score(kubectl: Kubectl, namespace: str, execution: str, accuracy: float) -> None:
    """The worker's report: the run's scores."""
    out = kubectl(
        "patch",
        "executions.runtime.joch.dev",
        execution,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"scores": {"accuracy": accuracy}}}),
    )
    assert out.returncode == 0, out.stderr


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


def _record(cluster: Cluster, namespace: str, evaluation: str, execution: str) -> dict[str, Any]:
    status = cluster.status("Eval", namespace, evaluation)
    found = [r for r in status.get("runs") or () if r["execution"] == execution]
    assert found, (execution, status)
    return dict(found[0])


def _judged(cluster: Cluster, namespace: str, evaluation: str, execution: str, phase: str) -> dict[str, Any]:
    def check() -> dict[str, Any]:
        record = _record(cluster, namespace, evaluation, execution)
        assert record["phase"] == phase, record
        return record

    return eventually(check, timeout=90)


def _refused(kubectl: Kubectl, doc: dict[str, Any]) -> str:
    out = kubectl("apply", "-f", "-", input=json.dumps(doc))
    assert out.returncode != 0, f"admitted: {out.stdout}"
    return str(out.stderr)


def test_evals_gate_promotions_per_agent_generation(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    try:
        _story(namespace, kubectl, kubeconfig, cluster, start_operator, tmp_path)
    finally:
        remove_webhook_configurations(kubectl)


def _story(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    example = support_triage(namespace)
    quality = f"quality-{uuid.uuid4().hex[:4]}"
    apply(
        kubectl,
        [*example.docs, eval_doc(namespace, quality), eval_doc(namespace, "every-minute", cron="* * * * *")],
    )
    args = _webhook_args(tmp_path)
    operator = start_operator(namespace, args=args)
    operator.wait_for_log("applied ValidatingWebhookConfiguration")
    eventually(lambda: ready(cluster, namespace, AGENT), timeout=90)
    assert cluster.status("Eval", namespace, quality).get("phase") == "Pending"

    # 1. A gated Deployment is refused; the refusal starts the run of generation 1 (trigger promotion).
    #    Until the budgets service has accounted the example's Budget, admission refuses the run itself
    #    (an unaccounted Budget fails closed), so the refusal is retried until it could start the run.
    def refused_with_run() -> str:
        message = _refused(kubectl, gated(namespace, "triage", quality))
        assert "eval run Execution" in message, message
        return message

    message = eventually(refused_with_run, timeout=60)
    assert f"Eval {namespace}/{quality} has not run yet" in message, message
    first = f"{quality}-g1"
    assert f"started eval run Execution {namespace}/{first} for Agent {AGENT} generation 1" in message, (
        message
    )
    run = cluster.get("Execution", namespace, first)
    assert run["spec"]["trigger"] == {"type": "eval", "sourceRef": {"name": quality}}
    assert run["metadata"]["labels"]["joch.dev/eval-trigger"] == "promotion"
    data = run["spec"]["input"]["content"][0]["data"]
    assert (data["eval"], data["thresholds"]) == (quality, {"accuracy": 0.9})

    # 2. It scores under the threshold: Failed, naming metric, threshold and value; still refused.
    score(kubectl, namespace, first, 0.5)
    record = _judged(cluster, namespace, quality, first, "Failed")
    assert record["agentGeneration"] == 1
    assert record["failures"] == [{"metric": "accuracy", "threshold": ">=0.9", "value": 0.5}]
    assert "metric accuracy scored 0.5, which misses its threshold >=0.9" in record["message"]
    eventually(lambda: _assert_phase(cluster, namespace, quality, "Failed"), timeout=30)
    message = _refused(kubectl, gated(namespace, "triage", quality))
    assert f"(Execution {first}) is Failed" in message, message
    assert "metric accuracy scored 0.5 in run" in message, message

    # 3. joch eval run: a run on demand, which passes; the Deployment is admitted.
    out = joch_cli(kubeconfig, "eval", "run", quality, "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Execution {namespace}/{quality}-m"), out.stdout
    manual = out.stdout.split()[1].split("/")[1]
    score(kubectl, namespace, manual, 0.95)
    record = _judged(cluster, namespace, quality, manual, "Passed")
    assert (record["trigger"], record["agentGeneration"]) == ("manual", 1)
    assert record["scores"] == {"accuracy": 0.95}
    status = eventually(lambda: _assert_phase(cluster, namespace, quality, "Passed"), timeout=30)
    assert status["passedGeneration"] == 1
    assert status["lastExecutionRef"]["name"] == manual
    admitted = kubectl("apply", "-f", "-", input=json.dumps(gated(namespace, "triage", quality)))
    assert admitted.returncode == 0, admitted.stderr
    reasons = {e.reason for e in cluster.events(namespace, quality, kind="Eval")}
    assert {"Failed", "Passed"} <= reasons, reasons

    # 4. A new Agent generation: the admitted Deployment's promotion starts the run of generation 2, and a
    #    new promotion is refused until that run passes.
    patched = kubectl(
        "patch",
        "agents.joch.dev",
        AGENT,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"description": "generation two"}}),
    )
    assert patched.returncode == 0, patched.stderr
    second = f"{quality}-g2"

    def second_run() -> None:
        assert cluster.try_get("Execution", namespace, second) is not None, f"no run {second} yet"

    eventually(second_run, timeout=60)
    message = _refused(kubectl, gated(namespace, "triage-two", quality))
    assert f"for Agent {AGENT} generation 2" in message, message
    score(kubectl, namespace, second, 0.97)
    record = _judged(cluster, namespace, quality, second, "Passed")
    assert record["agentGeneration"] == 2
    admitted = kubectl("apply", "-f", "-", input=json.dumps(gated(namespace, "triage-two", quality)))
    assert admitted.returncode == 0, admitted.stderr

    # 5. The cron Eval ran once for its tick (it has had a minute), and a restart does not run it again.
    def ticked() -> list[str]:
        status = cluster.status("Eval", namespace, "every-minute")
        assert status.get("lastScheduleTime"), status
        runs = [r["execution"] for r in status.get("runs") or ()]
        assert runs, status
        return runs

    eventually(ticked, timeout=90)
    tick = cluster.status("Eval", namespace, "every-minute")["lastScheduleTime"]
    before = _cron_runs(cluster, namespace)
    assert before
    assert all(stamp <= _minute(tick) for stamp in before.values()), (before, tick)
    assert len(set(before.values())) == len(before), before  # one run per tick
    operator.stop()
    restarted = start_operator(namespace, args=args)
    restarted.wait_synced()
    # Its start-up pass (done once synced) reconciled every Eval; the tick's run is not made again.
    after = _cron_runs(cluster, namespace)
    new = {name: stamp for name, stamp in after.items() if name not in before}
    assert all(stamp > _minute(tick) for stamp in new.values()), (new, tick)
    assert len(set(after.values())) == len(after), after


def _minute(stamp: str) -> str:
    """An RFC 3339 time as the YYYYMMDDHHMM a cron run's name carries."""
    return stamp[:16].replace("-", "").replace("T", "").replace(":", "")


def _cron_runs(cluster: Cluster, namespace: str) -> dict[str, str]:
    """The cron Eval's runs: Execution name -> the tick (YYYYMMDDHHMM) it ran for."""
    prefix = "every-minute-s"
    return {
        item["metadata"]["name"]: item["metadata"]["name"].removeprefix(prefix)
        for item in cluster.list("Execution", namespace)
        if item["metadata"]["name"].startswith(prefix)
    }


def _assert_phase(cluster: Cluster, namespace: str, name: str, phase: str) -> dict[str, Any]:
    status = cluster.status("Eval", namespace, name)
    assert status.get("phase") == phase, status
    return status
