"""AgBOM fan-out benchmark: one Model change regenerates 1,000 AgBOMs, against 1,000 bare ConfigMap writes.

Run: ``python benchmarks/agbom_fanout_bench.py [--agents 1000] [--rounds 3]`` (a few minutes). It starts
its own control plane (joch.devcluster) in a temporary directory, like benchmarks/operator_bench.py
(whose bare client, watch-based progress and operator process it reuses), and measures, next to a
baseline from the same run (ratio = figure / baseline, lower is better, target <= 2x):

- the operator (``joch operator``, every service, ``--write-rate 1000``) manages N Agents sharing one
  Model; the Model changes; the clock stops when every AgBOM's status reports the next generation
  (each one a CycloneDX document rendered, its ConfigMap created, the AgBOM status and the Agent's
  status.agbom patched). The compile service's own fan-out (N manifest ConfigMaps, N Agent statuses)
  runs at the same time, in the same process;
- baseline: N ConfigMap creates of documents of the same size (the operator's documents, renamed), by
  the bare client with the operator's concurrency (16 in flight), no operator running.

Medians of ``--rounds`` rounds; the operator's CPU seconds per round are printed too.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import operator_bench as ob

from joch.devcluster import ControlPlane

AGBOM_PATH = "/apis/ops.joch.dev/v1alpha1/namespaces/{ns}/agboms"
NS = "bench-agbom"
BASE_NS = "bench-agbom-base"


def generation_of(obj: dict[str, Any]) -> int:
    return int((obj.get("status") or {}).get("generation") or 0)


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--operator-arg",
        action="append",
        help=f"a `joch operator` argument (repeatable; default: {' '.join(ob.OPERATOR_ARGS)})",
    )
    args = parser.parse_args(argv)
    extra = args.operator_arg if args.operator_arg is not None else list(ob.OPERATOR_ARGS)
    n = args.agents
    state = pathlib.Path(tempfile.mkdtemp(prefix="joch-agbom-bench-"))
    began = time.monotonic()
    with ControlPlane(state / "control-plane") as cp:
        ob.install_crds(cp.kubeconfig)
        bare = ob.Bare(cp.kubeconfig)
        for ns in (NS, BASE_NS):
            ob.namespace(bare, ns)
        ob.kubectl_apply(cp.kubeconfig, ob.examples_in(NS))
        operator = ob.Operator(cp.kubeconfig, NS, state / "operator.log", extra)
        operator.wait_synced()
        boms = ob.Progress(bare, NS, AGBOM_PATH)
        ob.create_agents(bare, NS, ob.agent_bodies(NS, n - 1))
        t0 = time.monotonic()
        boms.wait(lambda obj: generation_of(obj) >= 1, n, timeout=900)
        print(
            f"joch AgBOM fan-out benchmark: {n} agents; "
            f"first generation of all in {time.monotonic() - t0:.1f}s"
        )

        fanouts: list[float] = []
        cpus: list[float] = []
        for round_ in range(args.rounds):
            before = {name: generation_of(obj) for name, obj in boms.state.items()}

            def moved(obj: dict[str, Any], before: dict[str, int] = before) -> bool:
                return generation_of(obj) > before.get(obj["metadata"]["name"], 0)

            cpu0, t0 = operator.cpu(), time.monotonic()
            bare.call(
                "PATCH",
                f"/apis/model.joch.dev/v1alpha1/namespaces/{NS}/models/gpt-5-thinking",
                {"spec": {"model": f"gpt-5-thinking-r{round_}"}},
                content_type="application/merge-patch+json",
            )
            fanouts.append(boms.wait(moved, n, timeout=900) - t0)
            cpus.append(operator.cpu() - cpu0)
            print(f"  round {round_}: {fanouts[-1]:.2f}s, operator CPU {cpus[-1]:.1f}s", flush=True)
            time.sleep(3)
        boms.stop()
        operator.stop()

        # Baseline: N creates of documents of the same size, bare client, no operator.
        sample_name = next(iter(boms.state))
        sample = bare.call(
            "GET", f"{ob.CM_PATH.format(ns=NS)}?labelSelector=app.kubernetes.io/component%3Dagbom"
        )
        template = next(cm for cm in sample["items"] if cm["metadata"]["name"].startswith(sample_name))
        size = len(template["data"]["bom.cdx.json"])
        bases: list[float] = []
        for round_ in range(args.rounds):

            def create(i: int, round_: int = round_) -> None:
                body = copy.deepcopy(template)
                body["metadata"] = {
                    "name": f"agent-{i:05d}-agbom-v{round_ + 1}",
                    "namespace": BASE_NS,
                    "labels": template["metadata"]["labels"],
                    "annotations": template["metadata"]["annotations"],
                }
                bare.call("POST", ob.CM_PATH.format(ns=BASE_NS), body)

            t0 = time.monotonic()
            bare.many([lambda i=i: create(i) for i in range(n)])
            bases.append(time.monotonic() - t0)
        bare.close()

    fanout, base = statistics.median(fanouts), statistics.median(bases)
    print()
    print(f"  {'figure (baseline: bare client, 16 in flight, same run)':<72} {'time':>9}  ratio")
    print(ob.row(f"one Model used by {n} agents changes, until every AgBOM is regenerated", fanout, base))
    print(ob.row(f"   baseline: {n} ConfigMap creates of {size}-byte documents", base, None))
    print(
        f"     rounds: {', '.join(f'{x:.2f}' for x in fanouts)} s; "
        f"baseline {', '.join(f'{x:.2f}' for x in bases)} s"
    )
    print(
        f"     operator CPU per round (compile and AgBOM services together): {statistics.median(cpus):.1f}s"
    )
    print(f"  total benchmark time {time.monotonic() - began:.0f}s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    finally:
        for operator in ob.STARTED:
            operator.stop()


if __name__ == "__main__":
    sys.exit(main())
