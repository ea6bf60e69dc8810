"""API client benchmark: what one ConfigMap replace costs the operator's process, by transport.

Run: ``python benchmarks/client_bench.py [--writes 1000] [--rounds 3]`` (under a minute). It starts its
own control plane (joch.devcluster), creates N manifest-sized ConfigMaps (about 3 KB of data), then
replaces all N, 16 in flight, several ways, each round in turn:

- baseline: the official kubernetes client (``call_api``, plain JSON bodies) in 16 threads, the way the
  operator sent its requests before 2026-11-27 and the way operator_bench.py's bare client does;
- ``joch.kube.client.Kube.request`` (aiohttp on the event loop, connection pool of 16);
- the same, the API server answering with metadata only (``Accept: ...;as=PartialObjectMetadata``), as
  the operator's ConfigMap writes do.

Reported per write: CPU of this process (user + system, all threads), wall time, and kube-apiserver CPU;
each as a ratio to the baseline of the same round. Medians over the rounds. Lower is better; nothing
else should run meanwhile (the machine's cores are shared with kube-apiserver and etcd).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config

from joch.devcluster import ControlPlane
from joch.kube import client

CONCURRENCY = 16
NAMESPACE = "bench-client"
CM_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
MANIFEST = "spec:\n" + "".join(f"  key{i}: value number {i}\n" for i in range(120))


def configmap(name: str, data: str, resource_version: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/component": "compiled-agent-manifest", "joch.dev/agent": name},
        "annotations": {"joch.dev/manifest-sha256": str(hash(data))},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"manifest.yaml": data}}


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Threads:
    """The baseline: the official client's call_api with plain JSON, in CONCURRENCY threads."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = k8s.Configuration()
        config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = CONCURRENCY
        self.api = k8s.ApiClient(configuration)
        self.pool = concurrent.futures.ThreadPoolExecutor(CONCURRENCY)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.api.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=60,
        )
        return json.loads(response.data) if response.data else None

    def replace_all(self, bodies: Sequence[dict[str, Any]]) -> None:
        calls = [
            lambda body=body: self.call("PUT", f"{CM_PATH}/{body['metadata']['name']}", body)
            for body in bodies
        ]
        list(self.pool.map(lambda fn: fn(), calls))

    def close(self) -> None:
        self.pool.shutdown()
        self.api.close()


def on_loop(kubeconfig: Path, accept: str) -> Callable[[Sequence[dict[str, Any]]], None]:
    """Kube.request on a fresh event loop, answers as ``accept``."""

    def replace_all(bodies: Sequence[dict[str, Any]]) -> None:
        async def main() -> None:
            kube = client.Kube(
                client.new_api_client(client.load_configuration(str(kubeconfig))),
                client.Limits(concurrency=CONCURRENCY, writes_per_second=1e9, write_burst=10**9),
            )
            try:
                await asyncio.gather(
                    *(
                        kube.request("PUT", f"{CM_PATH}/{body['metadata']['name']}", body=body, accept=accept)
                        for body in bodies
                    )
                )
            finally:
                await kube.aclose()
                kube.close()

        asyncio.run(main())

    return replace_all


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    names = [f"agent-{i:05d}-g1" for i in range(args.writes)]
    state = Path(tempfile.mkdtemp(prefix="joch-client-bench-"))
    with ControlPlane(state / "control-plane") as cp:
        threads = Threads(cp.kubeconfig)
        threads.call("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        list(threads.pool.map(lambda name: threads.call("POST", CM_PATH, configmap(name, MANIFEST)), names))
        ways: list[tuple[str, Callable[[Sequence[dict[str, Any]]], None]]] = [
            ("official client, 16 threads (baseline)", threads.replace_all),
            ("joch Kube.request, aiohttp on the loop", on_loop(cp.kubeconfig, "application/json")),
            ("  the same, answered with metadata only", on_loop(cp.kubeconfig, client.METADATA_ACCEPT)),
        ]
        samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in ways}
        ratios: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _ in ways}
        apiserver = cp.pids["kube-apiserver"]
        step = 0
        for _ in range(args.rounds):
            baseline: tuple[float, float, float] | None = None
            for label, replace_all in ways:
                step += 1
                listed = threads.call("GET", CM_PATH)["items"]
                versions = {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in listed}
                data = MANIFEST + f"# {step}\n"
                bodies = [configmap(name, data, versions[name]) for name in names]
                cpu0, api0, wall0 = time.process_time(), cpu_of(apiserver), time.monotonic()
                replace_all(bodies)
                figures = (
                    (time.process_time() - cpu0) * 1e3 / len(names),
                    (time.monotonic() - wall0) * 1e3 / len(names),
                    (cpu_of(apiserver) - api0) * 1e3 / len(names),
                )
                samples[label].append(figures)
                baseline = baseline or figures
                ratios[label].append(tuple(f / b for f, b in zip(figures, baseline, strict=True)))  # type: ignore[arg-type]
        threads.close()

    rounds = f"medians of {args.rounds} rounds"
    print(f"joch client benchmark: {args.writes} ConfigMap replaces, {CONCURRENCY} in flight, {rounds}")
    print(f"  {'way':42s} {'own CPU ms/write':>18s} {'wall ms/write':>15s} {'apiserver CPU ms':>18s}")
    for label, _ in ways:
        med = [statistics.median(sample[i] for sample in samples[label]) for i in range(3)]
        rat = [statistics.median(ratio[i] for ratio in ratios[label]) for i in range(3)]
        cells = [f"{m:8.3f} ({r:4.2f}x)" for m, r in zip(med, rat, strict=True)]
        print(f"  {label:42s} {cells[0]} {cells[1]:>15s} {cells[2]:>18s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
