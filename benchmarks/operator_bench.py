"""Operator benchmark: the real operator (``joch operator`` subprocess) against a real API server.

Run: ``python benchmarks/operator_bench.py [--agents 1000] [--big 10000|0]`` (a few minutes). It starts
its own control plane (etcd + kube-apiserver, joch.devcluster) in a temporary directory, installs the
CRDs, and measures, each figure next to a baseline measured in the same run (ratio = figure / baseline,
lower is better, target <= 2x):

(a) apply N Agents until all are Ready. The Agents share one FrameworkAdapter, ModelRoute, Models,
    Tools, MCP server, Memory, Policies, Environment and Team (examples/, in namespace bench-apply).
    a1 "apply": the operator runs; the clock starts with the first create and stops when every
       Agent is Ready at its generation. Baseline: the same N Agent creates plus the essential writes
       (N ConfigMap creates + N status patches) done by a bare kubernetes client.
    a2 "catch-up": the N Agents exist (namespace bench-catchup), the operator is started; the clock
       runs from its process start (Python start-up, LIST, compile, writes) until every Agent is Ready.
       Baseline: the essential writes alone, N ConfigMap creates + N status patches, bare client.
(b) fan-out: one Model used by all N Agents changes. b: the clock stops when every manifest ConfigMap
    holds a new manifest (what workers run from); baseline: N ConfigMap updates, bare client. b': the
    clock stops when every Agent's status also reports the new sha; baseline: N ConfigMap updates plus
    N status patches (the operator writes statuses after the manifests, docs/operator.md).
(c) the operator's resident memory (VmRSS, and peak VmHWM) managing N Agents, and managing BIG
    Agents: those are created in the API server for real (creates by the bare client, then the
    operator compiles and writes them all), unless ``--big 0``.

The operator runs with its defaults except ``--write-rate 1000`` (OPERATOR_ARGS; at the default 200
writes/s, 2 x 1,000 writes take at least 10 s by design, which would measure the throttle rather than
the operator); its Events (one per manifest written, at most 20/s) are part of its work. The bare client
uses the same concurrency the operator is given (16 requests in flight) and sends plain JSON bodies, as
the operator does. Nothing else runs during a baseline. Progress is watched with a watch stream, not by
polling. The operator's CPU seconds during each phase are printed too.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config

from joch.devcluster import ControlPlane, find_binary

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"
CONCURRENCY = 16
OPERATOR_ARGS = ("--write-rate", "1000")
"""The operator's defaults except its write budget: at the default 200 writes/s, 2 x 1,000 writes take
at least 10 s by design, which would measure the throttle, not the operator."""
AGENT_PATH = "/apis/joch.dev/v1alpha1/namespaces/{ns}/agents"
CM_PATH = "/api/v1/namespaces/{ns}/configmaps"


# --- a bare client -----------------------------------------------------------------------------------------


class Bare:
    """The kubernetes client with plain JSON bodies, N threads: the baseline's (and setup's) writer."""

    def __init__(self, kubeconfig: Path, concurrency: int = CONCURRENCY) -> None:
        configuration = client.Configuration()
        config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = concurrency
        self.api = client.ApiClient(configuration)
        self.pool = concurrent.futures.ThreadPoolExecutor(concurrency)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        response = self.api.call_api(
            path,
            method,
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=60,
        )
        return json.loads(response.data) if response.data else None

    def many(self, calls: Iterable[Callable[[], Any]]) -> list[Any]:
        return list(self.pool.map(lambda fn: fn(), list(calls)))

    def close(self) -> None:
        self.pool.shutdown()
        self.api.close()


def namespace(bare: Bare, name: str) -> None:
    bare.call(
        "POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": {"joch.dev/environment": "prod"}}}
    )


# --- the workload -------------------------------------------------------------------------------------------


def _rewrite(doc: dict[str, Any], ns: str) -> None:
    """Move one example document into ``ns`` (see :func:`examples_in`)."""
    env = f"prod-{ns}"
    kind, metadata, spec = doc["kind"], doc["metadata"], doc.get("spec") or {}
    if "namespace" in metadata:
        metadata["namespace"] = ns
    if kind in ("FrameworkAdapter", "Team"):
        metadata["name"] = f"{metadata['name']}-{ns}"
    if kind == "Environment":
        metadata["name"] = env
        for ref in spec.get("policies", []) + spec.get("budgetRefs", []):
            ref["namespace"] = ns
    elif kind == "Team":
        spec["namespaces"] = [ns]
    elif kind == "Agent":
        spec["framework"]["adapterRef"]["name"] += f"-{ns}"
        metadata["labels"]["env"] = env
    elif kind == "Policy":
        selector = ((spec.get("appliesTo") or {}).get("agents") or {}).get("selector") or {}
        if (selector.get("matchLabels") or {}).get("env") == "prod":
            selector["matchLabels"]["env"] = env
    elif kind == "Budget":
        spec["scope"]["teams"] = [f"{t}-{ns}" for t in spec["scope"]["teams"]]
    elif kind == "Deployment":
        spec["environmentRef"]["name"] = env


def examples_in(ns: str) -> list[dict[str, Any]]:
    """examples/ moved into ``ns``; cluster-scoped objects get ``ns`` as a suffix (so two namespaces'
    copies do not overwrite each other) and every reference to them follows."""
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for original in yaml.safe_load_all(path.read_text()):
            if original and original["kind"] != "Namespace":
                doc = copy.deepcopy(original)
                _rewrite(doc, ns)
                docs.append(doc)
    return docs


def agent_bodies(ns: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` copies of the example Agent, agent-<i>."""
    template = next(d for d in examples_in(ns) if d["kind"] == "Agent")
    # zendesk.create-ticket admits only support-triage (its safety floor); the copies leave it out.
    template["spec"]["tools"] = [t for t in template["spec"]["tools"] if t["name"] != "zendesk.create-ticket"]
    bodies = []
    for i in range(start, start + count):
        body = copy.deepcopy(template)
        body["metadata"]["name"] = f"agent-{i:05d}"
        bodies.append(body)
    return bodies


def kubectl_apply(kubeconfig: Path, docs: list[dict[str, Any]]) -> None:
    out = subprocess.run(
        [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}", "apply", "--server-side", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)


# --- watching progress --------------------------------------------------------------------------------------


class Progress:
    """Watches the Agents (or other objects, ``path``) of a namespace in a thread;
    ``wait(predicate, count)`` blocks until ``count`` objects satisfy ``predicate`` (latest state)."""

    def __init__(
        self,
        bare: Bare,
        ns: str,
        path: str = AGENT_PATH,
        selector: str | None = None,
        metadata_only: bool = False,
    ) -> None:
        self.bare = bare
        self.ns = ns
        self.path = path.format(ns=ns)
        self.selector = [("labelSelector", selector)] if selector else []
        self.accept = "application/json"
        list_accept = "application/json"
        if metadata_only:  # the observer costs the API server and this process less (no data)
            self.accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
            list_accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
        self.state: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._predicate: Callable[[dict[str, Any]], bool] | None = None
        self._satisfied: set[str] = set()
        self._target = 0
        self._reached: float | None = None
        query = f"?labelSelector={selector}" if selector else ""
        listing = bare.call("GET", self.path + query, accept=list_accept)
        for item in listing["items"]:
            self.state[item["metadata"]["name"]] = item
        self._rv = listing["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.bare.api.call_api(
                    self.path,
                    "GET",
                    query_params=[
                        *self.selector,
                        ("watch", "true"),
                        ("resourceVersion", self._rv),
                        ("allowWatchBookmarks", "true"),
                    ],
                    header_params={"Accept": self.accept},
                    auth_settings=["BearerToken"],
                    _preload_content=False,
                    _request_timeout=(10, 30),
                )
                buffer = b""
                for chunk in response.stream(None):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._event(json.loads(line))
                    if self._stop.is_set():
                        return
            except (urllib3.exceptions.HTTPError, OSError, client.ApiException):
                time.sleep(0.1)

    def _event(self, event: dict[str, Any]) -> None:
        obj = event["object"]
        self._rv = obj["metadata"].get("resourceVersion", self._rv)
        if event["type"] in ("ADDED", "MODIFIED"):
            name = obj["metadata"]["name"]
            with self.changed:
                self.state[name] = obj
                if self._predicate is None:
                    return
                # Counted incrementally: re-testing every object on every event would make the
                # observer's own CPU grow with N^2 on the machine being measured.
                if self._predicate(obj):
                    self._satisfied.add(name)
                else:
                    self._satisfied.discard(name)
                if self._reached is None and len(self._satisfied) >= self._target:
                    self._reached = time.monotonic()
                    self.changed.notify_all()

    def wait(self, predicate: Callable[[dict[str, Any]], bool], count: int, timeout: float = 600) -> float:
        """Block until ``count`` objects satisfy ``predicate``; the moment the last one's event arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            self._predicate, self._target, self._reached = predicate, count, None
            self._satisfied = {name for name, obj in self.state.items() if predicate(obj)}
            if len(self._satisfied) >= count:
                self._reached = time.monotonic()
            try:
                while self._reached is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        done = len(self._satisfied)
                        raise TimeoutError(f"{self.ns}: {done}/{count} after {timeout}s")
                    self.changed.wait(min(left, 1.0))
                return self._reached
            finally:
                self._predicate = None

    def stop(self) -> None:
        self._stop.set()


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or ())


# --- the operator -------------------------------------------------------------------------------------------


STARTED: list[Operator] = []


class Operator:
    def __init__(self, kubeconfig: Path, ns: str, log: Path, extra: Sequence[str] = ()) -> None:
        STARTED.append(self)
        self.log = log
        argv = [sys.executable, "-m", "joch.cli.operator", "--kubeconfig", str(kubeconfig), "--namespace", ns]
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*argv, *extra],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_synced(self, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if "initial sync complete" in line:
                    return line
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError("operator did not sync")

    def cpu(self) -> float:
        """CPU seconds (user + system) the operator used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the measurements ---------------------------------------------------------------------------------------


def baseline_writes(
    bare: Bare,
    ns: str,
    names: list[str],
    *,
    cm_template: dict[str, Any],
    status: dict[str, Any],
    generation: int = 1,
) -> None:
    """One ConfigMap create and one status patch per Agent, as the operator does, N threads."""

    def one(name: str) -> None:
        cm = copy.deepcopy(cm_template)
        cm_name = f"{name}-g{generation}"
        cm["metadata"] = {**cm["metadata"], "name": cm_name, "namespace": ns}
        cm["metadata"]["labels"] = {**cm["metadata"]["labels"], "joch.dev/agent": name}
        cm["metadata"].pop("ownerReferences", None)
        bare.call("POST", CM_PATH.format(ns=ns), cm)
        patch = {"status": {**status, "compiledManifest": {**status["compiledManifest"], "name": cm_name}}}
        bare.call(
            "PATCH",
            f"{AGENT_PATH.format(ns=ns)}/{name}/status",
            patch,
            content_type="application/merge-patch+json",
        )

    bare.many([lambda n=name: one(n) for name in names])


def create_agents(bare: Bare, ns: str, bodies: list[dict[str, Any]]) -> None:
    bare.many([lambda b=body: bare.call("POST", AGENT_PATH.format(ns=ns), b) for body in bodies])


def row(label: str, seconds: float, baseline: float | None, unit: str = "s") -> str:
    ratio = f"{seconds / baseline:5.2f}x" if baseline else "     "
    return f"  {label:<76} {seconds:7.2f} {unit}  {ratio}"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    finally:
        for operator in STARTED:  # only the operators this benchmark started
            operator.stop()


def install_crds(kubeconfig: Path) -> None:
    kubectl = [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}"]
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(CRDS)], capture_output=True, check=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
        capture_output=True,
        check=True,
    )


def wait_for_events(bare: Bare, ns: str, count: int, timeout: float = 300) -> None:
    """Wait until ``count`` Compiled Events exist in ``ns`` (the operator sends them in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = bare.call("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=reason%3DCompiled")
        if len(listing["items"]) >= count:
            return
        time.sleep(1)


def cm_sha(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get("joch.dev/manifest-sha256")


def sha_of(obj: dict[str, Any]) -> str | None:
    manifest: dict[str, Any] = (obj.get("status") or {}).get("compiledManifest") or {}
    return manifest.get("sha256")


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10000, help="agents for the memory figure (0: skip)")
    parser.add_argument("--rounds", type=int, default=5, help="fan-outs measured (medians reported)")
    parser.add_argument("--state-dir", type=Path, help="keep the control plane's files here")
    parser.add_argument(
        "--operator-arg",
        action="append",
        help=f"a `joch operator` argument (repeatable; default: {' '.join(OPERATOR_ARGS)})",
    )
    args = parser.parse_args(argv)
    n = args.agents
    extra = args.operator_arg if args.operator_arg is not None else list(OPERATOR_ARGS)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="joch-operator-bench-"))
    began = time.monotonic()

    with ControlPlane(state / "control-plane") as cp:
        install_crds(cp.kubeconfig)
        bare = Bare(cp.kubeconfig)
        for ns in ("bench-apply", "bench-catchup", "bench-base"):
            namespace(bare, ns)
        kubectl_apply(cp.kubeconfig, examples_in("bench-apply") + examples_in("bench-catchup"))
        print(
            f"joch operator benchmark: {n} agents; operator `joch operator {' '.join(extra)}`, "
            f"bare client {CONCURRENCY} threads; logs in {state}",
            flush=True,
        )

        # (a1) apply N Agents until all are Ready, the operator running. support-triage (from examples/)
        # is one of the N.
        operator = Operator(cp.kubeconfig, "bench-apply", state / "operator.log", extra)
        operator.wait_synced()
        progress = Progress(bare, "bench-apply")
        t0, cpu0 = time.monotonic(), operator.cpu()
        create_agents(bare, "bench-apply", agent_bodies("bench-apply", n - 1))
        a1 = progress.wait(is_ready, n) - t0
        cpu_a1 = operator.cpu() - cpu0
        rss_n = operator.memory()
        print(f"  a1 {a1:.2f}s", flush=True)
        wait_for_events(bare, "bench-apply", n)

        # (b) fan-out: the Model every Agent uses changes, ROUNDS times (medians reported). Clocks: every
        # ConfigMap holds the new manifest (what workers run from), and every Agent's status reports it.
        manifests = Progress(bare, "bench-apply", CM_PATH, selector="joch.dev/agent", metadata_only=True)
        fanouts_cm: list[float] = []
        fanouts: list[float] = []
        cpu0 = operator.cpu()
        for round_ in range(args.rounds):
            before = {name: sha_of(obj) for name, obj in progress.state.items()}
            cm_before = {name: cm_sha(obj) for name, obj in manifests.state.items()}

            def recompiled(obj: dict[str, Any], before: dict[str, Any] = before) -> bool:
                sha = sha_of(obj)
                return sha is not None and sha != before.get(obj["metadata"]["name"])

            def rewritten(obj: dict[str, Any], cm_before: dict[str, Any] = cm_before) -> bool:
                sha = cm_sha(obj)
                return sha is not None and sha != cm_before.get(obj["metadata"]["name"])

            t0 = time.monotonic()
            bare.call(
                "PATCH",
                "/apis/model.joch.dev/v1alpha1/namespaces/bench-apply/models/gpt-5-thinking",
                {"spec": {"pricing": {"inputPerMillionTokens": 1.5 + round_}}},
                content_type="application/merge-patch+json",
            )
            fanouts_cm.append(manifests.wait(rewritten, n) - t0)
            fanouts.append(progress.wait(recompiled, n) - t0)
            print(f"  b  {fanouts_cm[-1]:.2f}s (manifests), {fanouts[-1]:.2f}s (statuses)", flush=True)
            time.sleep(2)
        cpu_b = (operator.cpu() - cpu0) / args.rounds
        fanout_cm, fanout = statistics.median(fanouts_cm), statistics.median(fanouts)
        manifests.stop()
        progress.stop()
        rss_after_fanout = operator.memory()
        operator.stop()

        # Baselines, with no operator running. Templates: what the operator wrote.
        sample = bare.call("GET", f"{AGENT_PATH.format(ns='bench-apply')}/agent-00000")
        cm_template = bare.call("GET", f"{CM_PATH.format(ns='bench-apply')}/agent-00000-g1")
        keep = ("labels", "annotations", "ownerReferences")
        cm_template["metadata"] = {k: v for k, v in cm_template["metadata"].items() if k in keep}
        status = {k: v for k, v in sample["status"].items() if k != "activeExecutions"}
        base_bodies = agent_bodies("bench-base", n)
        names = [b["metadata"]["name"] for b in base_bodies]

        t0 = time.monotonic()
        create_agents(bare, "bench-base", base_bodies)
        baseline_writes(bare, "bench-base", names, cm_template=cm_template, status=status)
        base_a1 = time.monotonic() - t0

        base_bs: list[float] = []
        base_statuses: list[float] = []
        for round_ in range(args.rounds):
            changed = {"data": {"manifest.yaml": cm_template["data"]["manifest.yaml"] + f"# {round_}\n"}}
            t0 = time.monotonic()
            bare.many(
                [
                    lambda nm=name, body=changed: bare.call(
                        "PATCH",
                        f"{CM_PATH.format(ns='bench-base')}/{nm}-g1",
                        body,
                        "application/merge-patch+json",
                    )
                    for name in names
                ]
            )
            base_bs.append(time.monotonic() - t0)
            t0 = time.monotonic()
            new_ref = {**status["compiledManifest"], "sha256": f"{round_}" * 64}
            bare.many(
                [
                    lambda nm=name, ref=new_ref: bare.call(
                        "PATCH",
                        f"{AGENT_PATH.format(ns='bench-base')}/{nm}/status",
                        {"status": {"compiledManifest": {**ref, "name": f"{nm}-g1"}}},
                        "application/merge-patch+json",
                    )
                    for name in names
                ]
            )
            base_statuses.append(time.monotonic() - t0)
        base_b, base_b_status = statistics.median(base_bs), statistics.median(base_statuses)

        # ConfigMap names must be fresh for creates: the -g2 manifests of the same Agents.
        t0 = time.monotonic()
        baseline_writes(bare, "bench-base", names, cm_template=cm_template, status=status, generation=2)
        base_a2 = time.monotonic() - t0

        # (a2) catch-up: the N Agents exist, then the operator starts.
        create_agents(bare, "bench-catchup", agent_bodies("bench-catchup", n - 1))
        progress = Progress(bare, "bench-catchup")
        catchup = Operator(cp.kubeconfig, "bench-catchup", state / "operator-catchup.log", extra)
        a2 = progress.wait(is_ready, n) - catchup.started
        cpu_a2 = catchup.cpu()
        progress.stop()
        catchup_sync = catchup.wait_synced()
        catchup.stop()
        print(f"  a2 {a2:.2f}s", flush=True)

        # (c) memory at BIG Agents, all real: created in the API server, compiled and written.
        rss_big: tuple[float, float] | None = None
        big_seconds = 0.0
        if args.big > n:
            operator = Operator(cp.kubeconfig, "bench-apply", state / "operator-big.log", extra)
            operator.wait_synced()
            progress = Progress(bare, "bench-apply")
            t0 = time.monotonic()
            create_agents(bare, "bench-apply", agent_bodies("bench-apply", args.big - n, start=n - 1))
            progress.wait(is_ready, args.big, timeout=1200)
            big_seconds = time.monotonic() - t0
            progress.stop()
            rss_big = operator.memory()
            operator.stop()
        bare.close()

    print()
    print(f"  {'figure (each baseline: bare client, same concurrency, same run)':<76} {'time':>9}  ratio")
    print(row(f"a1 apply {n} agents until all Ready (operator running)", a1, base_a1))
    print(row(f"   baseline: {n} Agent creates + {n} ConfigMap creates + {n} status patches", base_a1, None))
    print(row(f"a2 operator start over {n} existing agents until all Ready", a2, base_a2))
    print(row(f"   baseline: {n} ConfigMap creates + {n} status patches", base_a2, None))
    print(row(f"b  one Model used by {n} agents changes, until every manifest rewritten", fanout_cm, base_b))
    print(row(f"   baseline: {n} ConfigMap updates", base_b, None))
    print(row("b' the same change, until every Agent status reports it", fanout, base_b + base_b_status))
    print(row(f"   baseline: {n} ConfigMap updates + {n} status patches", base_b + base_b_status, None))
    print(f"     b' against ConfigMap updates alone: {fanout / base_b:.2f}x")

    def listed(values: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in values)

    print(f"     medians of {args.rounds} rounds: b {listed(fanouts_cm)} s; b' {listed(fanouts)} s;")
    print(f"     ConfigMap updates {listed(base_bs)} s; status patches {listed(base_statuses)} s")
    cores = os.cpu_count()
    print(
        f"     operator CPU during a1 {cpu_a1:.1f}s, a2 {cpu_a2:.1f}s, b {cpu_b:.1f}s per round "
        f"({cores} cores in all)"
    )
    print()
    after_apply, after_b = rss_n[0], rss_after_fanout[0]
    print(f"  c  operator RSS with {n} agents: {after_apply:.0f} MB after a1, {after_b:.0f} MB after b")
    if rss_big is not None:
        rss, peak = rss_big
        print(
            f"     operator RSS with {args.big} agents: {rss:.0f} MB (peak {peak:.0f} MB), target <= 250 MB;"
        )
        print(
            f"     all {args.big} created in the API server, compiled and written "
            f"(the {args.big - n} beyond the first {n} took {big_seconds:.0f}s)"
        )
    print(f"\n  catch-up operator: {catchup_sync.split('] ')[-1].strip()}")
    print(f"  total benchmark time {time.monotonic() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
