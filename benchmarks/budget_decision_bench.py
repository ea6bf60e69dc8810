"""Decision latency with budget checks: ``POST /v1/policy/evaluate`` of ``joch operator`` for a call its
agent's Budget must check and reserve, against the same decision for an agent no Budget covers.

Run: ``python benchmarks/budget_decision_bench.py [--samples 400]`` (about a minute). It starts its own
control plane (joch.devcluster: etcd and kube-apiserver) in a temporary directory and one
``joch operator --no-webhooks --decision-port PORT`` managing two namespaces: bench-budget (a Team owns it
and a Budget with ``onHardLimit: deny`` and a daily cap no sample reaches covers it) and bench-free (no
Team, no Budget). One client, keep-alive, one request at a time, the same body shape (hook
toolCallRequest, agent, ``cost.runUsd`` 0.01) except the namespace. Figures: p50 and p95 of the budgeted
decision (a policy decision, then the reservation: one status write to the API server conditioned on the
resourceVersion); baseline: the unbudgeted decision, measured interleaved with it (one of each in turn)
so load changes hit both. Ratio = figure / baseline. The run also checks that every budgeted sample was
allowed with a reservation and every free one without.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from operator_bench import Operator, install_crds, kubectl_apply

from joch.devcluster import ControlPlane


def _docs() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in ("bench-budget", "bench-free")
    ] + [
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": "bench-team"},
            "spec": {"namespaces": ["bench-budget"]},
        },
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "daily", "namespace": "bench-budget"},
            "spec": {
                "scope": {"teams": ["bench-team"]},
                "limits": {"dailyUsd": 1000000},
                "enforcement": {"onHardLimit": "deny"},
            },
        },
    ]


def _body(namespace: str) -> bytes:
    return json.dumps(
        {
            "context": {
                "hook": "toolCallRequest",
                "agent": {"namespace": namespace, "name": "support-triage"},
                "cost": {"runUsd": 0.01},
            }
        }
    ).encode()


def _decide(conn: http.client.HTTPConnection, body: bytes) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    conn.request("POST", "/v1/policy/evaluate", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"decision answered {response.status}: {answer}")
    return elapsed, answer


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=400, help="decisions of each kind (at most 900)")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="joch-budget-decision-bench-"))
    failures: list[str] = []
    with ControlPlane(state / "control-plane") as cp:
        install_crds(cp.kubeconfig)
        kubectl_apply(cp.kubeconfig, _docs())
        operator = Operator(
            cp.kubeconfig,
            "bench-budget",
            state / "operator.log",
            [
                "--namespace",
                "bench-free",
                "--no-webhooks",
                "--decision-port=0",
                "--metrics-port=0",
                "--health-port=0",
            ],
        )
        try:
            operator.wait_synced()
            port = _port(operator.log)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            budgeted: list[float] = []
            free: list[float] = []
            _wait_accounted(conn)
            for _ in range(20):  # warm-up
                _decide(conn, _body("bench-free"))
            for _ in range(args.samples):
                seconds, answer = _decide(conn, _body("bench-budget"))
                if answer.get("decision") != "allow" or not answer.get("reservation"):
                    failures.append(f"budgeted decision without a reservation: {answer}")
                budgeted.append(seconds)
                seconds, answer = _decide(conn, _body("bench-free"))
                if answer.get("decision") != "allow" or answer.get("reservation"):
                    failures.append(f"free decision: {answer}")
                free.append(seconds)
        finally:
            operator.stop()
    print(f"decision latency, {args.samples} samples each, one client (logs in {state})")
    for label, q in (("p50", 0.5), ("p95", 0.95)):
        figure, base = _pct(budgeted, q) * 1000, _pct(free, q) * 1000
        print(
            f"  {label}: with a budget check {figure:7.2f} ms   without {base:7.2f} ms   "
            f"{figure / base:5.2f}x"
        )
    print(f"  mean: {statistics.fmean(budgeted) * 1000:.2f} ms vs {statistics.fmean(free) * 1000:.2f} ms")
    for failure in failures[:5]:
        print(f"FAIL {failure}")
    return 1 if failures else 0


def _port(log: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "decision service listening on" in line:
                return int(line.rsplit(":", 1)[1].strip().rstrip("/"))
        time.sleep(0.1)
    raise TimeoutError("the decision service did not say where it listens")


def _wait_accounted(conn: http.client.HTTPConnection) -> None:
    """Until the budgets service has accounted the Budget (before that, budgeted calls are denied)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, answer = _decide(conn, _body("bench-budget"))
        if answer.get("decision") == "allow":
            return
        time.sleep(0.2)
    raise TimeoutError("the Budget was never accounted")


if __name__ == "__main__":
    sys.exit(main())
