"""API benchmark: what the /v1 API adds over calling kube-apiserver directly.

Run: ``python benchmarks/api_bench.py [--samples 400] [--rounds 3] [--documents 100]`` (about a minute).
Each figure is printed next to a baseline measured in the same run, with the ratio figure / baseline.

On a control plane of its own (joch.devcluster: kube-apiserver on etcd, its OIDC issuer), one user
signs in with a token of the local issuer (bound to cluster-admin, so RBAC is not what is measured).
In this process the API application (joch.apiserver) runs on loopback HTTP, as ``joch operator
--api-port`` serves it outside a cluster (its catalog lookup empty: the documents are Tools, which
reference nothing).

1. GET of one Agent: through ``GET /v1/namespaces/{ns}/agents/{name}`` against the same GET straight
   from kube-apiserver with the same token (aiohttp client, keep-alive, one request at a time, the two
   alternating so both see the same load). p50 and p95; target p50 ratio <= 1.3x.
2. Apply of ``--documents`` Tool documents: ``POST /v1/resources/apply`` (judge, dry-run each, then
   write each, as the caller) against ``kubectl apply --server-side`` of the same documents (new names
   each round for both), ``--rounds`` rounds, the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import operator_bench as ob
import yaml
from aiohttp import ClientSession, web

from joch.apiserver import ApiContext, Callers, build_app
from joch.devcluster import ControlPlane, oidc
from joch.devcluster.cluster import find_binary
from joch.domain.settings import OperatorSettings
from joch.kube import client

NS = "bench-api"
USER = "bench-admin"


def tool(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "tools.joch.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"type": "function", "description": "bench", "sideEffects": {"level": "read_only"}},
    }


def cluster_docs() -> list[dict[str, Any]]:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "bench-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": USER, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, binding]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, figure: float, baseline: float, unit: str) -> str:
    return f"  {label:<58} {figure:9.2f} {unit}   baseline {baseline:9.2f} {unit}   {figure / baseline:5.2f}x"


async def bench(cp: ControlPlane, samples: int, rounds: int, documents: int) -> None:
    configuration = client.load_configuration(str(cp.kubeconfig))
    callers = Callers(configuration)
    app = build_app(ApiContext(callers=callers, lookup=None, settings=OperatorSettings()))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token = oidc.mint(cp.state_dir, USER, [])
    headers = {"Authorization": f"Bearer {token}"}
    agent = ob.examples_in(NS)
    name = next(d["metadata"]["name"] for d in agent if d["kind"] == "Agent")
    direct = f"{cp.server}/apis/joch.dev/v1alpha1/namespaces/{NS}/agents/{name}"
    through = f"http://127.0.0.1:{port}/v1/namespaces/{NS}/agents/{name}"
    ssl_context = client.ssl_context(configuration)
    try:
        async with ClientSession() as session:
            timings: dict[str, list[float]] = {"api": [], "direct": []}
            for i in range(samples + 20):
                for which, url in (
                    (("api", through), ("direct", direct))
                    if i % 2
                    else (
                        ("direct", direct),
                        ("api", through),
                    )
                ):
                    began = time.perf_counter()
                    async with session.get(url, headers=headers, ssl=ssl_context) as response:
                        await response.read()
                        assert response.status == 200, (which, response.status)
                    if i >= 20:  # warm-up
                        timings[which].append((time.perf_counter() - began) * 1000)
            api, base = timings["api"], timings["direct"]
            print(f"\n1. GET of one Agent, {samples} each, alternating")
            print(
                row(
                    "p50 through /v1 vs straight from kube-apiserver",
                    percentile(api, 0.5),
                    percentile(base, 0.5),
                    "ms",
                )
            )
            print(
                row(
                    "p95 through /v1 vs straight from kube-apiserver",
                    percentile(api, 0.95),
                    percentile(base, 0.95),
                    "ms",
                )
            )

            kubectl = [str(find_binary("kubectl")), f"--kubeconfig={cp.kubeconfig}", f"--token={token}"]
            through_times, kubectl_times = [], []
            for r in range(rounds):
                docs = [tool(f"api-{r}-{i}") for i in range(documents)]
                text = "\n---\n".join(json.dumps(d) for d in docs)
                began = time.perf_counter()
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/resources/apply",
                    data=text.encode(),
                    headers={**headers, "Content-Type": "application/yaml"},
                ) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                    assert len(answer["applied"]) == documents
                through_times.append(time.perf_counter() - began)
                plain = yaml.safe_dump_all([tool(f"kc-{r}-{i}") for i in range(documents)])
                began = time.perf_counter()
                done = await asyncio.to_thread(
                    subprocess.run,
                    [*kubectl, "apply", "--server-side", "-f", "-"],
                    input=plain,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                kubectl_times.append(time.perf_counter() - began)
                assert done.returncode == 0, done.stderr
            print(f"\n2. Apply of {documents} Tool documents, median of {rounds} rounds")
            print(
                row(
                    "POST /v1/resources/apply vs kubectl apply --server-side",
                    statistics.median(through_times),
                    statistics.median(kubectl_times),
                    "s",
                )
            )
    finally:
        await runner.cleanup()
        await callers.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--documents", type=int, default=100)
    args = parser.parse_args(argv)
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    print(f"api_bench: load {load} at the start")
    state = pathlib.Path(tempfile.mkdtemp(prefix="joch-api-bench-"))
    with ControlPlane(state / "control-plane", workloads=False) as cp:
        ob.install_crds(cp.kubeconfig)
        ob.kubectl_apply(cp.kubeconfig, [*cluster_docs(), *ob.examples_in(NS)])
        asyncio.run(bench(cp, args.samples, args.rounds, args.documents))
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    print(f"\nload {load} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
