"""Store benchmark: the same operator workload on each store, etcd the baseline of the same run.

Run: ``python benchmarks/store_bench.py [--agents 1000] [--fanout 100] [--stores etcd,sqlite,postgres]``
(a few minutes). For each store it starts its own control plane (joch.devcluster, ``store=...``) in a
temporary directory, installs the CRDs and measures:

(1) apply N Agents until all are Ready (the operator running, ``--write-rate 1000`` as in
    operator_bench.py; clock from the first create to the last Agent Ready at its generation);
(2) bare-client ConfigMap creates per second (16 threads, 1,000 creates) and the latency of a single
    create, one at a time (300 creates: median and p99);
(3) fan-out: one Model used by F Agents changes, until every Agent's status reports the new manifest
    (median of 3 rounds). kine answers the API server's watches from its own log as writes pass
    through it; its 1 s poll only serves writes made by another kine, so this is where a polling
    delay would show;
(4) watch delivery: 200 ConfigMaps created one at a time while a watch (from the current
    resourceVersion, no watch cache for ConfigMaps, so it is served by the store's own watch) is open;
    for each, the time from sending the create to its ADDED event (median, p99). This is what the store
    itself adds to every event the operator reacts to, apart from the cost of the writes.

Each figure is printed next to etcd's, measured in the same run, as a ratio (target for (1): sqlite
and postgres <= 1.5x etcd).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from operator_bench import (
    AGENT_PATH,
    CM_PATH,
    OPERATOR_ARGS,
    STARTED,
    Bare,
    Operator,
    Progress,
    agent_bodies,
    create_agents,
    examples_in,
    install_crds,
    is_ready,
    kubectl_apply,
    namespace,
    sha_of,
)

from joch.devcluster import ControlPlane

STORES = ("etcd", "sqlite", "postgres")
ROUNDS = 3
WATCHED = 200
WATCH_ARGS = ("--watch-cache-sizes=configmaps#0",)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def watch_delivery(bare: Bare, ns: str) -> list[float]:
    """Milliseconds from sending each of WATCHED creates to its ADDED event on an open watch."""
    path = CM_PATH.format(ns=ns)
    version = bare.call("GET", path + "?limit=1")["metadata"]["resourceVersion"]
    arrived: dict[str, float] = {}
    seen = threading.Condition()
    response = bare.api.call_api(
        f"{path}?watch=true&resourceVersion={version}&allowWatchBookmarks=false&timeoutSeconds=300",
        "GET",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=310,
    )

    done = threading.Event()

    def read() -> None:
        try:
            consume()
        except Exception:  # the stream closed under the reader at the end: expected then only
            if not done.is_set():
                raise

    def consume() -> None:
        buffer = b""
        for chunk in response.stream(4096, decode_content=True):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ADDED":
                    with seen:
                        arrived[event["object"]["metadata"]["name"]] = time.monotonic()
                        seen.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    delays = []
    for i in range(WATCHED):
        name = f"watched-{i}"
        sent = time.monotonic()
        bare.call("POST", path, {"metadata": {"name": name}, "data": {"i": str(i)}})
        with seen:
            if not seen.wait_for(lambda name=name: name in arrived, timeout=30):
                raise RuntimeError(f"no ADDED event for {name} within 30 s")
            delays.append((arrived[name] - sent) * 1000)
    done.set()
    response.release_conn()
    reader.join(5)
    return delays


def measure(store: str, state: Path, agents: int, fanout: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    # ConfigMap watches served by the store itself (no watch cache), as in the conformance tier.
    with ControlPlane(state / store, store=store, extra_apiserver_args=WATCH_ARGS) as cp:
        figures["startup"] = cp.startup_seconds or 0.0
        install_crds(cp.kubeconfig)
        bare = Bare(cp.kubeconfig)
        for ns in ("bench-apply", "bench-fan", "bench-bare"):
            namespace(bare, ns)
        kubectl_apply(cp.kubeconfig, examples_in("bench-apply") + examples_in("bench-fan"))

        # (2) bare-client creates: throughput with 16 threads, then one at a time.
        cm = {"metadata": {"name": ""}, "data": {"manifest.yaml": "x: 1\n" * 200}}
        path = CM_PATH.format(ns="bench-bare")
        t0 = time.monotonic()
        bare.many(
            [
                lambda i=i: bare.call("POST", path, {**cm, "metadata": {"name": f"many-{i}"}})
                for i in range(1000)
            ]
        )
        figures["creates_per_s"] = 1000 / (time.monotonic() - t0)
        latencies = []
        for i in range(300):
            t0 = time.monotonic()
            bare.call("POST", path, {**cm, "metadata": {"name": f"one-{i}"}})
            latencies.append((time.monotonic() - t0) * 1000)
        figures["create_p50_ms"] = statistics.median(latencies)
        figures["create_p99_ms"] = percentile(latencies, 0.99)

        # (4) watch delivery: create -> ADDED event, one at a time.
        delays = watch_delivery(bare, "bench-bare")
        figures["watch_p50_ms"] = statistics.median(delays)
        figures["watch_p99_ms"] = percentile(delays, 0.99)

        # (3) fan-out: one Model used by F Agents.
        operator = Operator(cp.kubeconfig, "bench-fan", state / f"{store}-operator-fan.log", OPERATOR_ARGS)
        operator.wait_synced()
        progress = Progress(bare, "bench-fan")
        create_agents(bare, "bench-fan", agent_bodies("bench-fan", fanout - 1))
        progress.wait(is_ready, fanout)
        rounds = []
        for round_ in range(ROUNDS):
            before = {name: sha_of(obj) for name, obj in progress.state.items()}

            def recompiled(obj: dict[str, Any], before: dict[str, Any] = before) -> bool:
                sha = sha_of(obj)
                return sha is not None and sha != before.get(obj["metadata"]["name"])

            t0 = time.monotonic()
            bare.call(
                "PATCH",
                "/apis/model.joch.dev/v1alpha1/namespaces/bench-fan/models/gpt-5-thinking",
                {"spec": {"pricing": {"inputPerMillionTokens": 1.5 + round_}}},
                content_type="application/merge-patch+json",
            )
            rounds.append(progress.wait(recompiled, fanout) - t0)
            time.sleep(1)
        figures["fanout_s"] = statistics.median(rounds)
        progress.stop()
        operator.stop()

        # (1) apply N Agents until Ready.
        operator = Operator(
            cp.kubeconfig, "bench-apply", state / f"{store}-operator-apply.log", OPERATOR_ARGS
        )
        operator.wait_synced()
        progress = Progress(bare, "bench-apply")
        t0 = time.monotonic()
        create_agents(bare, "bench-apply", agent_bodies("bench-apply", agents - 1))
        figures["apply_s"] = progress.wait(is_ready, agents) - t0
        progress.stop()
        operator.stop()
        listed = bare.call("GET", AGENT_PATH.format(ns="bench-apply"))
        assert len(listed["items"]) == agents, len(listed["items"])
        bare.close()
    return figures


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--stores", default=",".join(STORES), help="comma-separated; etcd is the baseline")
    parser.add_argument("--state-dir", type=Path, help="keep the control planes' files here")
    args = parser.parse_args(argv)
    chosen = [s for s in args.stores.split(",") if s]
    if "etcd" not in chosen:
        chosen.insert(0, "etcd")
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="joch-store-bench-"))
    print(
        f"joch store benchmark: {args.agents} agents, fan-out over {args.fanout}; stores {', '.join(chosen)};"
        f" logs in {state}",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}
    for store in chosen:
        results[store] = measure(store, state, args.agents, args.fanout)
        print(f"  {store}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[store].items()), flush=True)
    base = results["etcd"]
    rows = [
        ("startup", "control plane start-up (until fake Nodes Ready, default ServiceAccount)", "s", False),
        ("apply_s", f"apply {args.agents} agents until all Ready", "s", False),
        ("creates_per_s", "bare-client ConfigMap creates per second (16 threads)", "/s", True),
        ("create_p50_ms", "single create latency, median", "ms", False),
        ("create_p99_ms", "single create latency, p99", "ms", False),
        ("watch_p50_ms", "watch delivery, create to ADDED event, median", "ms", False),
        ("watch_p99_ms", "watch delivery, create to ADDED event, p99", "ms", False),
        (
            "fanout_s",
            f"one Model used by {args.fanout} agents changes, until all statuses report it",
            "s",
            False,
        ),
    ]
    print(f"\n  {'figure':<72} {'store':<9} {'value':>9}  {'etcd':>9}  ratio")
    for key, label, unit, higher_better in rows:
        for store in chosen:
            value = results[store][key]
            ratio = base[key] / value if higher_better else value / base[key]
            print(f"  {label:<72} {store:<9} {value:8.2f}{unit:<2} {base[key]:8.2f}{unit:<2} {ratio:5.2f}x")
    print("  (ratio: how many times etcd's figure, >1 is slower; for creates/s etcd's rate / the store's)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    finally:
        for operator in STARTED:
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())
