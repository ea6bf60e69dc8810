"""Execution benchmark: Executions turned into Jobs by the operator, against bare Job creates.

Run: ``python benchmarks/execution_bench.py [--executions 1000] [--samples-slow 20] [--samples-fast 200]``
(about 5 minutes). It starts its own control plane (joch.devcluster: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok with 3 fake Nodes) in a temporary directory, reusing
benchmarks/operator_bench.py's bare client, watch-based progress and operator process. The operator is
``joch operator --write-rate 1000`` (OPERATOR_ARGS) with webhooks, the decision service, metrics and
probes off, ``--execution-concurrency`` at least the number of Executions (nothing queues) and
``--execution-pod-annotation-prefix devcluster.joch.dev/`` (the fake Pods run for an hour: only Job
creation is measured; Pods beyond the fake Nodes' 330 slots stay Pending). Each figure is printed next
to a baseline measured in the same run (ratio = figure / baseline, lower is better):

1. throughput: one Agent (a copy of the example Agent, no Deployment, Ready) gets N Executions, created
   by the bare client as fast as it can (32 requests in flight); the clock runs from the first create
   until every Job of the Agent exists (a watch on Jobs labelled ``joch.dev/agent``) and every create
   returned. Baseline: N bare batch/v1 Job creates (the operator's own Job, renamed, in another
   namespace), same client, same 32 in flight, no operator running, until every create returned and
   every Job was seen by the same kind of watch. Target: <= 1.5x.
2. latency: Executions created at 1 per second (``--samples-slow``) and at 50 per second
   (``--samples-fast``); each one's latency runs from the moment its create request is sent until its
   Job's ADDED event arrives on a watch. Baseline: the same for bare Job creates at the same rates
   (one create and one watch propagation: the floor an Execution adds a second create and the
   operator's reaction to). p50 and p99 (nearest rank: with 20 samples p99 is the maximum) are
   printed; the same latencies measured from the create's return follow on one line.

The benchmark namespaces are deleted after each phase (and waited for), so one phase's Jobs and Pods do
not load the next. Besides the figures it prints the operator's CPU seconds during the throughput phase
and the API server's write requests during each side (apiserver_request_total by resource and verb,
every client together: the operator's writes are the difference between the two sides).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import copy
import datetime
import math
import os
import pathlib
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import operator_bench as ob
from kubernetes import client

from joch.devcluster import ControlPlane

CONCURRENCY = 32
ISOLATED = ("--no-webhooks", "--decision-port=0", "--metrics-port=0", "--health-port=0", "--api-port=0")
POD_ANNOTATIONS = "devcluster.joch.dev/"
RUN_FOR = "devcluster.joch.dev/run-for"
EXECUTIONS_PATH = "/apis/runtime.joch.dev/v1alpha1/namespaces/{ns}/executions"
JOBS_PATH = "/apis/batch/v1/namespaces/{ns}/jobs"
AGENT = "agent-00000"
NS_RUN, NS_RUN_BASE = "bench-exec", "bench-exec-base"
NS_LAT, NS_LAT_BASE = "bench-exec-lat", "bench-exec-lat-base"
SLOW_RATE, FAST_RATE = 1.0, 50.0


# --- the workload -------------------------------------------------------------------------------------------


def execution_body(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": ns, "annotations": {RUN_FOR: "1h"}},
        "spec": {
            "agentRef": {"name": AGENT},
            "trigger": {"type": "manual"},
            "input": {"content": [{"kind": "text", "text": f"task {name}"}]},
        },
    }


def job_template(job: dict[str, Any]) -> dict[str, Any]:
    """The operator's Job as a bare create: no owner, no server-set fields, no generated selector."""
    metadata = job["metadata"]
    spec = copy.deepcopy(job["spec"])
    spec.pop("selector", None)
    labels = spec["template"]["metadata"].get("labels") or {}
    spec["template"]["metadata"]["labels"] = {
        k: v for k, v in labels.items() if "controller-uid" not in k and "job-name" not in k
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "labels": dict(metadata.get("labels") or {}),
            "annotations": dict(metadata.get("annotations") or {}),
        },
        "spec": spec,
    }


def job_body(template: dict[str, Any], ns: str, name: str) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["metadata"] = {**body["metadata"], "name": name, "namespace": ns}
    body["metadata"]["labels"] = {**body["metadata"]["labels"], "joch.dev/execution": name}
    return body


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


# --- the cluster --------------------------------------------------------------------------------------------


def create_namespace(bare: ob.Bare, ns: str, *, examples: bool, kubeconfig: pathlib.Path) -> None:
    ob.namespace(bare, ns)
    if examples:  # the example fleet and one more Agent without a Deployment (whose replicas would cap it)
        ob.kubectl_apply(kubeconfig, ob.examples_in(ns) + ob.agent_bodies(ns, 1))
    else:  # the operator's Jobs run as joch-worker; the bare ones too
        bare.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "joch-worker"}})


def delete_namespace(bare: ob.Bare, ns: str, timeout: float = 300) -> float:
    """Delete ``ns`` and wait until it is gone; the seconds it took."""
    t0 = time.monotonic()
    bare.call("DELETE", f"/api/v1/namespaces/{ns}")
    while time.monotonic() - t0 < timeout:
        try:
            bare.call("GET", f"/api/v1/namespaces/{ns}")
        except client.ApiException as exc:
            if exc.status == 404:
                return time.monotonic() - t0
            raise
        time.sleep(0.5)
    print(f"  warning: namespace {ns} still terminating after {timeout:.0f}s", flush=True)
    return time.monotonic() - t0


def wait_ready(bare: ob.Bare, ns: str, agent: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = bare.call("GET", f"{ob.AGENT_PATH.format(ns=ns)}/{agent}")
        if ob.is_ready(obj):
            return
        time.sleep(0.2)
    raise TimeoutError(f"Agent {ns}/{agent} not Ready after {timeout}s: {obj.get('status')}")


_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITES = {"POST": "create", "PUT": "update", "PATCH": "patch", "APPLY": "apply", "DELETE": "delete"}


def api_writes(bare: ob.Bare) -> collections.Counter[str]:
    """kube-apiserver's write requests so far (every client), by resource[/subresource] and verb."""
    response = bare.api.call_api(
        "/metrics",
        "GET",
        header_params={"Accept": "text/plain"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=60,
    )
    counts: collections.Counter[str] = collections.Counter()
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        if labels.get("verb") not in WRITES:
            continue
        resource = labels.get("resource", "?")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{resource} {WRITES[labels['verb']]}"] += int(float(value))
    return counts


def describe_writes(before: collections.Counter[str], after: collections.Counter[str]) -> str:
    diff = {key: after[key] - before[key] for key in after if after[key] - before[key] > 0}
    total = sum(diff.values())
    parts = [f"{key} {count}" for key, count in sorted(diff.items(), key=lambda kv: -kv[1])]
    return f"{total} in all: " + ", ".join(parts)


# --- watching Jobs appear -----------------------------------------------------------------------------------


class Arrivals(ob.Progress):
    """ob.Progress that also remembers when each object's first event arrived (time.monotonic())."""

    def __init__(self, bare: ob.Bare, ns: str, path: str, selector: str | None = None) -> None:
        self.first: dict[str, float] = {}
        # Whole objects: ob.Progress's metadata-only LIST of an empty collection has "items": null.
        super().__init__(bare, ns, path, selector=selector)
        for name in self.state:  # listed before the watch: not measured
            self.first.setdefault(name, 0.0)

    def _event(self, event: dict[str, Any]) -> None:
        if event["type"] in ("ADDED", "MODIFIED"):
            self.first.setdefault(event["object"]["metadata"]["name"], time.monotonic())
        super()._event(event)


# --- the measurements ---------------------------------------------------------------------------------------


def burst(
    bare: ob.Bare, watch: Arrivals, path: str, bodies: list[dict[str, Any]], timeout: float = 900
) -> tuple[float, float]:
    """Create ``bodies`` as fast as the client goes; (seconds until every create returned and every
    watched Job arrived, seconds until every create returned)."""
    wanted = {body["metadata"]["name"] for body in bodies}
    t0 = time.monotonic()
    bare.many([lambda b=body: bare.call("POST", path, b) for body in bodies])
    returned = time.monotonic()
    seen = watch.wait(lambda obj: obj["metadata"]["name"] in wanted, len(wanted), timeout=timeout)
    return max(seen, returned) - t0, returned - t0


def paced(
    bare: ob.Bare, watch: Arrivals, path: str, bodies: list[dict[str, Any]], rate: float
) -> tuple[list[float], list[float]]:
    """Create ``bodies`` at ``rate`` per second (each create in the pool, so a slow one does not hold
    the next); each one's latency until its Job arrived on the watch, in ms, (from the send, from the
    return)."""
    sent: dict[str, float] = {}
    returned: dict[str, float] = {}
    lock = threading.Lock()

    def create(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        start = time.monotonic()
        bare.call("POST", path, body)
        end = time.monotonic()
        with lock:
            sent[name], returned[name] = start, end

    futures: list[concurrent.futures.Future[None]] = []
    t0 = time.monotonic()
    for i, body in enumerate(bodies):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(bare.pool.submit(create, body))
    for future in futures:
        future.result()
    wanted = {body["metadata"]["name"] for body in bodies}
    watch.wait(lambda obj: obj["metadata"]["name"] in wanted, len(wanted), timeout=300)
    from_send = [(watch.first[n] - sent[n]) * 1000 for n in wanted]
    from_return = [(watch.first[n] - returned[n]) * 1000 for n in wanted]
    return from_send, from_return


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def loadavg() -> str:
    try:
        return pathlib.Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def start_operator(
    kubeconfig: pathlib.Path, ns: str, log: pathlib.Path, extra: Sequence[str], bare: ob.Bare
) -> ob.Operator:
    operator = ob.Operator(kubeconfig, ns, log, extra)
    operator.wait_synced()
    wait_ready(bare, ns, AGENT)
    return operator


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--executions", type=int, default=1000, help="Executions of the throughput phase")
    parser.add_argument("--samples-slow", type=int, default=20, help="Executions created at 1/s (latency)")
    parser.add_argument("--samples-fast", type=int, default=200, help="Executions created at 50/s (latency)")
    parser.add_argument("--state-dir", type=pathlib.Path, help="the control plane's files and logs go here")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="at the end, keep the control plane running (and the last phase's namespace) until Ctrl-C",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        help=f"a `joch operator` argument (repeatable; default: {' '.join(ob.OPERATOR_ARGS)})",
    )
    args = parser.parse_args(argv)
    n, slow, fast = args.executions, args.samples_slow, args.samples_fast
    cap = max(1000, n, slow + fast + 1)
    base_args = args.operator_arg if args.operator_arg is not None else list(ob.OPERATOR_ARGS)
    extra = [
        *ISOLATED,
        *base_args,
        f"--execution-concurrency={cap}",
        f"--execution-pod-annotation-prefix={POD_ANNOTATIONS}",
    ]
    state = args.state_dir or pathlib.Path(tempfile.mkdtemp(prefix="joch-execution-bench-"))
    began = time.monotonic()
    load_start = loadavg()
    taken = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cp = ControlPlane(state / "control-plane")
    cp.start()
    try:
        kubeconfig = cp.kubeconfig
        ob.install_crds(kubeconfig)
        bare = ob.Bare(kubeconfig, CONCURRENCY)
        watcher = ob.Bare(kubeconfig, 4)  # the watches' own connections
        for ns, examples in ((NS_RUN, True), (NS_RUN_BASE, False), (NS_LAT, True), (NS_LAT_BASE, False)):
            create_namespace(bare, ns, examples=examples, kubeconfig=kubeconfig)
        print(
            f"joch execution benchmark: {n} Executions, latency {slow} at 1/s and {fast} at 50/s; "
            f"operator `joch operator {' '.join(extra)}`, client {CONCURRENCY} in flight; "
            f"logs in {state}",
            flush=True,
        )

        # --- 1. throughput: N Executions until every Job exists ---------------------------------------------
        operator = start_operator(kubeconfig, NS_RUN, state / "operator-throughput.log", extra, bare)
        jobs = Arrivals(watcher, NS_RUN, JOBS_PATH, selector=f"joch.dev/agent={AGENT}")
        writes0, cpu0 = api_writes(bare), operator.cpu()
        run_total, run_returned = burst(
            bare,
            jobs,
            EXECUTIONS_PATH.format(ns=NS_RUN),
            [execution_body(NS_RUN, x) for x in names("run", n)],
        )
        cpu_run = operator.cpu() - cpu0
        writes_run = describe_writes(writes0, api_writes(bare))
        jobs.stop()
        print(f"  1  {n} Executions -> Jobs {run_total:.2f}s (creates returned after {run_returned:.2f}s)")
        template = job_template(bare.call("GET", f"{JOBS_PATH.format(ns=NS_RUN)}/run-00000"))
        time.sleep(2)  # its status writes after the last Job
        operator.stop()
        gone = delete_namespace(bare, NS_RUN)
        print(f"     {NS_RUN} deleted in {gone:.0f}s", flush=True)

        base_jobs = Arrivals(watcher, NS_RUN_BASE, JOBS_PATH, selector=f"joch.dev/agent={AGENT}")
        writes0 = api_writes(bare)
        base_total, base_returned = burst(
            bare,
            base_jobs,
            JOBS_PATH.format(ns=NS_RUN_BASE),
            [job_body(template, NS_RUN_BASE, x) for x in names("run", n)],
        )
        writes_base = describe_writes(writes0, api_writes(bare))
        base_jobs.stop()
        print(f"     baseline {n} Job creates {base_total:.2f}s (returned after {base_returned:.2f}s)")
        gone = delete_namespace(bare, NS_RUN_BASE)
        print(f"     {NS_RUN_BASE} deleted in {gone:.0f}s", flush=True)

        # --- 2. latency: Execution create -> its Job, at 1/s and 50/s; bare Job creates first ---------------
        lat_base: dict[float, tuple[list[float], list[float]]] = {}
        lat: dict[float, tuple[list[float], list[float]]] = {}
        watch = Arrivals(watcher, NS_LAT_BASE, JOBS_PATH)
        path = JOBS_PATH.format(ns=NS_LAT_BASE)
        paced(bare, watch, path, [job_body(template, NS_LAT_BASE, "warm-up")], 1)
        for rate, prefix, count in ((SLOW_RATE, "slow", slow), (FAST_RATE, "fast", fast)):
            bodies = [job_body(template, NS_LAT_BASE, x) for x in names(prefix, count)]
            lat_base[rate] = paced(bare, watch, path, bodies, rate)
            print(f"  2  baseline at {rate:g}/s: p50 {p50(lat_base[rate][0]):.1f} ms", flush=True)
            time.sleep(1)
        watch.stop()
        gone = delete_namespace(bare, NS_LAT_BASE)
        print(f"     {NS_LAT_BASE} deleted in {gone:.0f}s", flush=True)

        operator = start_operator(kubeconfig, NS_LAT, state / "operator-latency.log", extra, bare)
        watch = Arrivals(watcher, NS_LAT, JOBS_PATH, selector=f"joch.dev/agent={AGENT}")
        path = EXECUTIONS_PATH.format(ns=NS_LAT)
        # The first Job of a namespace also creates the workers' identity (ServiceAccount, Role, binding).
        paced(bare, watch, path, [execution_body(NS_LAT, "warm-up")], 1)
        time.sleep(1)
        cpu0 = operator.cpu()
        for rate, prefix, count in ((SLOW_RATE, "slow", slow), (FAST_RATE, "fast", fast)):
            lat[rate] = paced(
                bare, watch, path, [execution_body(NS_LAT, x) for x in names(prefix, count)], rate
            )
            print(f"  2  operator at {rate:g}/s: p50 {p50(lat[rate][0]):.1f} ms", flush=True)
            time.sleep(2)
        cpu_lat = operator.cpu() - cpu0
        watch.stop()
        operator.stop()
        if not args.keep:
            delete_namespace(bare, NS_LAT)
        bare.close()
        watcher.close()
    finally:
        for started in ob.STARTED:
            started.stop()
        if not args.keep:
            cp.stop()
    load_end = loadavg()

    lines: list[str] = []
    out = lines.append
    ratio = run_total / base_total
    out(f"  {'figure (baseline: bare client, 32 in flight, same run)':<76} {'time':>9}  ratio")
    out(ob.row(f"1  {n} Executions created until every Job exists (operator running)", run_total, base_total))
    out(ob.row(f"   baseline: {n} bare Job creates until every Job is listed", base_total, None))
    verdict = "met" if ratio <= 1.5 else "MISSED"
    out(f"     target <= 1.50x: {ratio:.2f}x, {verdict}")
    out(f"     creates returned after {run_returned:.2f}s (Executions), {base_returned:.2f}s (Jobs)")
    out(f"     operator CPU during phase 1: {cpu_run:.1f}s ({os.cpu_count()} cores in all)")
    for rate, count in ((SLOW_RATE, slow), (FAST_RATE, fast)):
        send, ret = lat[rate]
        base_send, base_ret = lat_base[rate]
        label = f"2  Execution create -> its Job's watch event, {rate:g}/s, {count} samples"
        out(ob.row(f"{label}: p50", p50(send), p50(base_send), "ms"))
        out(ob.row(f"{' ' * len(label)}  p99", p99(send), p99(base_send), "ms"))
        out(
            f"     baseline: bare Job create -> its watch event, p50 {p50(base_send):.1f} ms, "
            f"p99 {p99(base_send):.1f} ms"
        )
        out(
            f"     from the create's return: p50 {p50(ret):.1f} / p99 {p99(ret):.1f} ms; "
            f"baseline {p50(base_ret):.1f} / {p99(base_ret):.1f} ms"
        )
    out(f"     operator CPU during phase 2: {cpu_lat:.1f}s")
    out(f"  API writes during phase 1, operator side (every client): {writes_run}")
    out(f"  API writes during phase 1, baseline side (every client): {writes_base}")

    print()
    print("\n".join(lines))
    total = time.monotonic() - began
    print(f"  total benchmark time {total:.0f}s; load {load_start} at the start, {load_end} at the end")
    print()
    print("--- markdown for BENCHMARKS.md ---")
    print("## Executions")
    print()
    print(
        f"`benchmarks/execution_bench.py`: {n} Executions of one Ready Agent turned into Jobs by the "
        f"operator, against {n} bare Job creates (the operator's Job, renamed) by the same client with "
        f"the same concurrency ({CONCURRENCY} in flight), same run; and the latency from an "
        f"Execution's create to its Job's watch event at 1/s and 50/s, against a bare Job create to its "
        f"watch event. Target <= 1.5x: **{verdict}** ({ratio:.2f}x)."
    )
    print()
    print(
        f"Command: `.venv/bin/python benchmarks/execution_bench.py` (taken {taken}, load {load_start} "
        f"at the start and {load_end} at the end, {total:.0f}s in all):"
    )
    print()
    print("```text")
    print("\n".join(line for line in lines if not line.startswith("  API writes")))
    print("```")
    print("--- end ---")

    if args.keep:
        print(f"\nkept: KUBECONFIG={cp.kubeconfig} (namespace {NS_LAT}); Ctrl-C stops the control plane")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            cp.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    finally:
        for operator in ob.STARTED:  # only the operators this benchmark started
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())
