"""Budget benchmark: what budget enforcement adds to a decision, and the cost of budget aggregation.

Run: ``python benchmarks/budget_bench.py [--samples 400] [--ttl 5] [--executions 100000] [--budgets
100]`` (about a minute). Each figure is printed next to a baseline measured in the same run, with the
ratio figure / baseline (lower is better).

1. Decision latency, over loopback HTTP (aiohttp client, keep-alive, one request at a time), on a
   control plane of its own (joch.devcluster, etcd and kube-apiserver only). In this process: a
   ``Controller`` primed from the API server (its shared cache), a ``DecisionService`` with no
   Policies, and two aiohttp apps on the same service: one with the budget step
   (joch.controllers.reservations.BudgetGate: one covering Budget, dailyUsd 1e9, onHardLimit deny, so
   every call fits and each allowed call writes one reservation into the Budget's status, a merge patch
   conditioned on its resourceVersion), one without. The requests alternate between the two, so both
   see the same machine load. Figure: p50 and p95 with budgets; baseline: the same decision without.
   Also printed: a bare status PATCH of another object by the same client (the floor of the write the
   budget step adds) and the number of live reservations the Budget held (``--ttl`` seconds each).
2. Budget aggregation, pure (joch.domain.reconcile.budgets over a synthetic ``Store``): ``--executions``
   Executions (half finished, 10 agents per namespace) in ``--budgets`` namespaces, each owned by a
   Team that a Budget scopes. One pass: every Execution read once (``run_of``), ``covering`` for every
   (namespace, agent), then per Budget ``to_charge``, ``charge`` and ``budget_status`` over its covered
   runs (finished runs charged 4,000 at a time: ``status.charging`` holds at most 4,096 uids, so one
   write of them all would be refused). Baseline: the same pass with one Budget whose Team owns every
   namespace (the same runs, the same number of ``covering`` calls), and a plain sum of every
   Execution's ``status.costUsd``. Memory: the process's RSS (VmRSS) growth over building the Store,
   and over the pass. Also: what one Budget's reconcile gathers today (``run_of`` over every Execution
   plus the covering memo, as joch.controllers.budgets does per Budget).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import operator_bench as ob
from aiohttp import ClientSession, web

from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.team import Team
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.reservations import BudgetGate
from joch.decision_service import endpoint
from joch.decision_service.service import DecisionService
from joch.devcluster import ControlPlane
from joch.domain.reconcile import budgets as plan
from joch.domain.reconcile.cache import Store, parse_entry
from joch.domain.settings import OperatorSettings
from joch.kube import client, paths
from joch.kube import status as kube_status

NS = "bench-budgets"
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
CHUNK = 4000


def rss_mb() -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, value: float, unit: str, baseline: float | None = None) -> None:
    ratio = f"{value / baseline:7.2f}x" if baseline else ""
    print(f"  {name:<66} {value:10.2f} {unit:<3} {ratio}")


# --- 1. decision latency -------------------------------------------------------------------------------


def cluster_docs(team: str) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": team},
            "spec": {"namespaces": [NS]},
        },
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "daily", "namespace": NS},
            "spec": {
                "scope": {"teams": [team]},
                "limits": {"dailyUsd": 1e9, "monthlyUsd": 1e9},
                "enforcement": {"onHardLimit": "deny"},
            },
        },
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "floor", "namespace": NS},
            "spec": {"limits": {"dailyUsd": 1}, "enforcement": {"onHardLimit": "alert"}},
        },
    ]


async def latency(kubeconfig: pathlib.Path, samples: int, ttl: float) -> None:
    configuration = client.load_configuration(str(kubeconfig))
    limits = client.Limits(concurrency=8, writes_per_second=10000, write_burst=1000)
    kube = client.Kube(client.new_api_client(configuration, pool_size=8), limits)
    budgets_type = paths.ResourceType.of(Budget)
    stored = await kube.request("GET", budgets_type.object_path(NS, "daily"))
    budget = Budget.model_validate(stored)
    # Accounted, as the budgets service would have written it.
    await kube_status.patch_status(
        kube,
        budgets_type,
        NS,
        "daily",
        plan.budget_status(budget, current={}, now=datetime.datetime.now(datetime.UTC)),
    )
    controller = Controller(kube, ControllerConfig(namespaces=(NS,)), services=())
    await controller.prime()
    service = DecisionService(settings=controller.settings)
    service.load([], [])
    gate = BudgetGate(controller, ttl_seconds=ttl)
    apps = {"budgets": endpoint.build_app(service, budgets=gate), "plain": endpoint.build_app(service)}
    runners, urls = [], {}
    for name, app in apps.items():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        urls[name] = f"http://127.0.0.1:{port}{endpoint.EVALUATE_PATH}"
        runners.append(runner)
    body = json.dumps(
        {
            "context": {
                "hook": "toolCallRequest",
                "agent": {"namespace": NS, "name": "triage"},
                "cost": {"runUsd": 0.01},
            }
        }
    )
    times: dict[str, list[float]] = {"budgets": [], "plain": [], "patch": []}
    held: list[int] = []
    phases = ["WithinBudget", "Pending"]
    try:
        async with ClientSession(headers={"Content-Type": "application/json"}) as session:
            for i in range(samples + 20):
                for name in ("budgets", "plain"):
                    start = time.perf_counter()
                    async with session.post(urls[name], data=body) as response:
                        answer = await response.json()
                    elapsed = (time.perf_counter() - start) * 1000
                    if name == "budgets":
                        assert "reservation" in answer, answer
                    if i >= 20:
                        times[name].append(elapsed)
                start = time.perf_counter()
                await kube_status.patch_status(kube, budgets_type, NS, "floor", {"phase": phases[i % 2]})
                if i >= 20:
                    times["patch"].append((time.perf_counter() - start) * 1000)
                entry = controller.store.entry("Budget", NS, "daily")
                held.append(len((entry.status if entry else {}).get("reservations") or ()))
    finally:
        for runner in runners:
            await runner.cleanup()
        await kube.aclose()
        kube.close(wait=False)
    b, p, f = times["budgets"], times["plain"], times["patch"]
    print(
        f"\n1. decision latency, {samples} requests each, alternating "
        "(baseline: the same decision without budgets)"
    )
    row(
        "POST /v1/policy/evaluate with budgets (1 Budget, 1 reservation write): p50",
        pct(b, 0.5),
        "ms",
        pct(p, 0.5),
    )
    row(
        "                                                                       p95",
        pct(b, 0.95),
        "ms",
        pct(p, 0.95),
    )
    row("baseline: the same decision without budgets: p50", pct(p, 0.5), "ms")
    row("                                             p95", pct(p, 0.95), "ms")
    row("floor: a bare Budget status PATCH, same client: p50", pct(f, 0.5), "ms")
    row("                                                p95", pct(f, 0.95), "ms")
    ratio = pct(b, 0.95) / pct(p, 0.95)
    print(f"     target p95 <= 1.50x: {ratio:.2f}x, {'met' if ratio <= 1.5 else 'MISSED'}")
    print(f"     live reservations held by the Budget: {min(held)}..{max(held)} (ttl {ttl:g} s)")
    print(f"     budget step beyond the plain decision: p50 {pct(b, 0.5) - pct(p, 0.5):.2f} ms")


# --- 2. aggregation (pure) -----------------------------------------------------------------------------


def synthetic(executions: int, budgets: int, *, one_budget: bool) -> Store:
    store = Store()
    per = executions // budgets
    namespaces = [f"ns-{i:03d}" for i in range(budgets)]
    if one_budget:
        store.upsert(
            parse_entry(
                Team, {"kind": "Team", "metadata": {"name": "all"}, "spec": {"namespaces": namespaces}}
            )
        )
        budget_docs = [("ns-000", "b-all", "all")]
    else:
        for i, ns in enumerate(namespaces):
            store.upsert(
                parse_entry(
                    Team,
                    {"kind": "Team", "metadata": {"name": f"team-{i:03d}"}, "spec": {"namespaces": [ns]}},
                )
            )
        budget_docs = [(ns, f"b-{i:03d}", f"team-{i:03d}") for i, ns in enumerate(namespaces)]
    for ns, name, team in budget_docs:
        doc = {
            "kind": "Budget",
            "metadata": {"name": name, "namespace": ns, "uid": f"u-{name}"},
            "spec": {"scope": {"teams": [team]}, "limits": {"dailyUsd": 1e6, "monthlyUsd": 1e7}},
        }
        store.upsert(parse_entry(Budget, doc))
    for i, ns in enumerate(namespaces):
        for j in range(per):
            finished = j % 2 == 0
            doc = {
                "kind": "Execution",
                "metadata": {
                    "name": f"run-{j}",
                    "namespace": ns,
                    "uid": f"{i}-{j}",
                    "creationTimestamp": "2026-12-07T08:00:00Z",
                },
                "spec": {
                    "agentRef": {"name": f"agent-{j % 10}"},
                    "input": {"content": [{"kind": "text", "text": "x"}]},
                },
                "status": {
                    "phase": "Succeeded" if finished else "Running",
                    "costUsd": 0.01 * (j % 7),
                    "tokens": 10 * (j % 7),
                    "startedAt": "2026-12-07T09:00:00Z",
                    **({"completedAt": "2026-12-07T09:05:00Z"} if finished else {}),
                },
            }
            store.upsert(parse_entry(Execution, doc))
    return store


def aggregate(store: Store, settings: OperatorSettings) -> int:
    """One pass (module docstring); the number of runs charged."""
    runs = [run for run in (plan.run_of(e) for e in store.entries("Execution")) if run is not None]
    memo: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        where = (run.namespace, run.agent)
        if where not in memo:
            memo[where] = plan.covering(store, settings, *where)
    by_budget: dict[str, list[plan.Run]] = {}
    for run in runs:
        for key in memo[(run.namespace, run.agent)]:
            by_budget.setdefault(key, []).append(run)
    charged = 0
    for entry in store.entries("Budget"):
        budget = entry.obj
        assert isinstance(budget, Budget)
        key = plan.budget_key(entry.namespace or "", entry.name)
        covered = by_budget.get(key, [])
        new, _ = plan.to_charge(key, covered, ())
        tz = plan.time_zone(budget.spec.time_zone)
        status: dict[str, Any] = {}
        for start in range(0, len(new), CHUNK):  # status.charging holds at most 4,096 uids per write
            ledger, _charging = plan.charge(status, new[start : start + CHUNK], tz, by_agent=True)
            status = {"ledger": ledger, "charging": []}  # as after the runs say they were counted
        running = [run for run in covered if not run.finished]
        plan.budget_status(budget, current=status, running=running, reservations=[], now=NOW)
        charged += len(new)
    return charged


def gather_one(store: Store, settings: OperatorSettings, key: str) -> int:
    """What one Budget's reconcile gathers (joch.controllers.budgets.BudgetService._covered)."""
    decided: dict[tuple[str, str], bool] = {}
    found = 0
    for execution in store.entries("Execution"):
        run = plan.run_of(execution)
        if run is None:
            continue
        where = (run.namespace, run.agent)
        if where not in decided:
            decided[where] = key in plan.covering(store, settings, *where)
        found += decided[where]
    return found


def timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def aggregation(executions: int, budgets: int) -> None:
    settings = OperatorSettings()
    before = rss_mb()
    build, many = timed(lambda: synthetic(executions, budgets, one_budget=False))
    built = rss_mb()
    rss_before_pass = rss_mb()
    seconds, charged = timed(lambda: aggregate(many, settings))
    pass_growth = rss_mb() - rss_before_pass
    assert charged == executions // 2, charged
    one = synthetic(executions, budgets, one_budget=True)
    base, charged_one = timed(lambda: aggregate(one, settings))
    assert charged_one == executions // 2
    plain, total = timed(lambda: sum(float(e.status.get("costUsd") or 0) for e in many.entries("Execution")))
    gather, found = timed(lambda: gather_one(many, settings, "ns-000/b-000"))
    assert found == executions // budgets
    print(f"\n2. budget aggregation (pure), {executions} Executions, {budgets} Budgets (baseline: same run)")
    row(
        f"one pass over {budgets} Budgets (run_of, covering, to_charge, charge, budget_status)",
        seconds * 1000,
        "ms",
        base * 1000,
    )
    row("baseline: the same pass, 1 Budget covering every Execution", base * 1000, "ms")
    row(
        f"   ratio against a plain sum of costUsd over {executions} entries",
        seconds * 1000,
        "ms",
        plain * 1000,
    )
    row(f"baseline: plain sum of status.costUsd ({total:.2f} USD)", plain * 1000, "ms")
    row(
        "one Budget's reconcile gather today (run_of x all + covering memo)",
        gather * 1000,
        "ms",
        plain * 1000,
    )
    row("RSS: the synthetic Store", built - before, "MB")
    row("RSS: growth over the pass", pass_growth, "MB")
    print(f"     building the Store took {build:.1f} s (not measured above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--ttl", type=float, default=5.0, help="seconds each reservation lives")
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--budgets", type=int, default=100)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    began = time.monotonic()
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    print(f"budget_bench: load {load} at the start")
    if not args.skip_latency:
        state = pathlib.Path(tempfile.mkdtemp(prefix="joch-budget-bench-"))
        with ControlPlane(state / "control-plane", workloads=False) as cp:
            ob.install_crds(cp.kubeconfig)
            ob.kubectl_apply(cp.kubeconfig, cluster_docs("bench-team"))
            asyncio.run(latency(cp.kubeconfig, args.samples, args.ttl))
    aggregation(args.executions, args.budgets)
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    print(f"\nload {load} at the end; {time.monotonic() - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
