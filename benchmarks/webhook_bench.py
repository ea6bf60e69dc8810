"""Admission webhook overhead: latency of creating Agents with joch's webhooks registered, minus without.

Run: ``python benchmarks/webhook_bench.py`` (about 2 minutes; starts its own etcd + kube-apiserver, or
uses $JOCH_KUBECONFIG). Every figure is printed next to its baseline measured in the same run, with the
difference and the ratio. Lower is better. Target: p99 overhead <= 5 ms at 16 concurrent clients.

Setup: CRDs installed; namespace ``bench`` holds the support-triage fleet (adapter, two models, a route,
tools, an MCP server) and 100 Policies of 3-4 rules each (structured matchers, one in ten with a CEL
rule), a quarter of which select the benchmark's Agents (label team=support) and none of which deny them.

Phases, alternated (baseline, webhooks, baseline, webhooks) so drift hits both sides alike:

- baseline: no webhook configuration registered; the API server only runs its CRD schema validation;
- webhooks: the webhook server runs as its own process (as in the operator: its own interpreter and
  event loop), with its store primed from the cluster, and the Validating and Mutating configurations
  are registered in url mode. Every Agent create calls the validating webhook (parse, semantic checks,
  references, compile checks, policy preflight over the effective policies); the mutating one is
  skipped by its matchConditions, as the benchmark's Agents name their ModelRoute (nothing to default).

Clients: one asyncio process, N concurrent connections issuing ``POST .../agents`` back to back with
unique names; the latency of each create is recorded (after a warm-up). The webhook process also
reports its own service time per call (the time inside the handler, without HTTP and TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from joch.api import v1alpha1  # noqa: E402
from joch.api.v1alpha1 import meta  # noqa: E402
from joch.kube import client as kube_client  # noqa: E402

NAMESPACE = "bench"
POLICIES = 100
CONCURRENCY = (1, 16)
REQUESTS = {1: 150, 16: 800}
WARMUP = 20
ROUNDS = 2
TARGET_P99_MS_AT_16 = 5.0
FAILURES: list[str] = []


# --- workload -------------------------------------------------------------------------------------------


def _obj(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    model = v1alpha1.kind_named(kind)
    assert model is not None
    meta_: dict[str, Any] = {"name": name, **metadata}
    if model.crd.scope == "Namespaced":
        meta_["namespace"] = NAMESPACE
    return {"apiVersion": model.crd.api_version, "kind": kind, "metadata": meta_, "spec": spec}


def fleet() -> list[dict[str, Any]]:
    caps = {"text": True, "toolCalling": True, "structuredOutput": True, "streaming": True}
    docs = [
        _obj(
            "FrameworkAdapter",
            "bench-sdk",
            {
                "framework": "custom-python",
                "capabilities": {"toolBinding": True, "mcpBinding": True, "modelRouterBinding": True},
            },
        ),
        _obj("Model", "gpt-5-thinking", {"provider": "openai", "model": "gpt-5", "capabilities": caps}),
        _obj("Model", "claude-sonnet", {"provider": "anthropic", "model": "claude", "capabilities": caps}),
        _obj(
            "ModelRoute",
            "research-default",
            {"strategy": {"primary": "openai:gpt-5-thinking", "fallback": ["anthropic:claude-sonnet"]}},
        ),
        _obj(
            "Tool",
            "zendesk.search",
            {"type": "function", "toolName": "zendesk.search", "sideEffects": {"level": "read_only"}},
        ),
        _obj(
            "Tool",
            "zendesk.create-ticket",
            {
                "type": "function",
                "toolName": "zendesk.create_ticket",
                "sideEffects": {"level": "external_write"},
            },
        ),
        _obj(
            "MCPServer",
            "github",
            {"transport": "streamable_http", "endpoint": {"url": "https://mcp.example"}},
        ),
    ]
    for index in range(POLICIES):
        rules: list[dict[str, Any]] = [
            {"when": {"tool.sideEffect": ["financial", "privileged"]}, "require": {"approval": "human"}},
            {
                "when": {"model.provider": ["mistral", "ollama"]},
                "action": {"deny": True, "reason": "provider"},
            },
            {"when": {"cost.runUsd": f">{index % 7 + 1}"}, "action": "deny"},
        ]
        if index % 10 == 0:
            rules.append(
                {
                    "when": {"cel": f"tool.name == 'shell-{index}' && agent.labels.team == 'support'"},
                    "action": "deny",
                }
            )
        team = "support" if index % 4 == 0 else f"team-{index % 9}"
        applies = {"agents": {"selector": {"matchLabels": {"team": team}}}}
        docs.append(_obj("Policy", f"policy-{index:03}", {"appliesTo": applies, "rules": rules}))
    return docs


def agent(name: str) -> dict[str, Any]:
    return _obj(
        "Agent",
        name,
        {
            "framework": {"adapterRef": {"name": "bench-sdk"}, "entrypoint": "./agent.py"},
            "modelRoute": {"routeRef": {"name": "research-default"}},
            "tools": [{"name": "zendesk.search"}, {"name": "zendesk.create-ticket"}],
            "mcpServers": [{"name": "github"}],
        },
        labels={"team": "support", "env": "dev"},
    )


# --- the webhook process ----------------------------------------------------------------------------------


def serve(kubeconfig: str, cert_dir: str) -> int:
    """Child process: prime a store from the cluster, serve the webhooks, register the configurations."""
    from joch.domain.admission import COMPILE_KIND_NAMES, Admission
    from joch.domain.compilation import COMPILE_KINDS, Catalog
    from joch.domain.settings import OperatorSettings
    from joch.webhooks import AdmissionEndpoint, AdmissionServer, WebhookOptions
    from joch.webhooks.background import BackgroundServer

    settings = OperatorSettings()
    api = kube_client.new_api_client(kube_client.load_configuration(kubeconfig))
    kube = kube_client.Kube(api)
    catalog = Catalog(shared_namespaces=settings.shared_namespaces)
    for model in COMPILE_KINDS:
        crd = model.crd
        listed = kube.send("GET", f"/apis/{crd.group}/{meta.VERSION}/{crd.plural}")
        for item in listed.get("items") or ():
            item.setdefault("apiVersion", crd.api_version)
            item.setdefault("kind", crd.kind)
            catalog.add(model.model_validate({k: v for k, v in item.items() if k != "status"}))
    endpoint = AdmissionEndpoint(Admission(settings), catalog, known_kinds=COMPILE_KIND_NAMES)
    timings: dict[str, list[float]] = {"validate": [], "mutate": []}
    handle = endpoint.handle

    def timed(action: Any, body: bytes) -> Any:
        start = time.perf_counter()
        try:
            return handle(action, body)
        finally:
            timings[action].append(time.perf_counter() - start)

    endpoint.handle = timed  # type: ignore[method-assign]
    options = WebhookOptions(cert_dir=pathlib.Path(cert_dir), port=0, remove_on_exit=True)
    with BackgroundServer(AdmissionServer(endpoint, options, kube=kube)) as running:
        print(json.dumps({"url": running.url, "policies": len(catalog.policies_in(NAMESPACE))}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    counts = {action: len(values) for action, values in timings.items()}
    stats = {
        action: {"p50": percentile(values, 50) * 1e3, "p99": percentile(values, 99) * 1e3}
        for action, values in timings.items()
        if values
    }
    print(json.dumps({"counts": counts, "service_ms": stats, "outcomes": endpoint.counts}), flush=True)
    kube.close()
    return 0


@contextlib.contextmanager
def webhook_process(kubeconfig: str, cert_dir: str, report: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--kubeconfig", kubeconfig, "--cert-dir", cert_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}"},
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the webhook process did not start")
        yield json.loads(line)
    finally:
        child.stdin.close()
        tail = child.stdout.read()
        child.wait(60)
        for text in tail.splitlines():
            if text.startswith("{"):
                report.append(json.loads(text))


# --- the clients -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ssl_context(configuration: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


async def load(
    host: str, context: ssl.SSLContext, concurrency: int, total: int, tag: str
) -> tuple[list[float], int]:
    """``total`` creates from ``concurrency`` workers; (latencies after warm-up, failures)."""
    url = f"{host}/apis/joch.dev/{meta.VERSION}/namespaces/{NAMESPACE}/agents"
    latencies: list[float] = []
    failures = 0
    counter = iter(range(total + WARMUP * concurrency))
    connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for number in counter:
                body = json.dumps(agent(f"a-{tag}-{number}")).encode()
                start = time.perf_counter()
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    text = await response.read()
                    ok = response.status == 201
                    if not ok and len(FAILURES) < 5:
                        FAILURES.append(f"{response.status}: {text[:300].decode('utf-8', 'replace')}")
                elapsed = time.perf_counter() - start
                if number >= WARMUP * concurrency:
                    latencies.append(elapsed)
                    failures += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failures


def wait_for(kubectl: list[str], enforced: bool) -> None:
    """Wait until the API server does (or no longer does) call the webhooks."""
    probe = json.dumps(_obj("Policy", "probe", {"rules": [{"when": {"tool.nme": "x"}, "action": "deny"}]}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*kubectl, "create", "--dry-run=server", "-f", "-"],
            input=probe,
            capture_output=True,
            text=True,
            check=False,
        )
        if (done.returncode != 0 and "tool.nme" in done.stderr) == enforced:
            return
        time.sleep(0.2)
    raise SystemExit(f"the webhooks were never {'enforced' if enforced else 'removed'}")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(kubectl: list[str]) -> None:
    """CRDs installed and Established, namespace and fleet created (webhooks not registered yet)."""
    crds = str(ROOT / "crds")
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", crds], check=True, capture_output=True
    )
    names = [
        d["metadata"]["name"]
        for f in sorted((ROOT / "crds").glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    wait = [*kubectl, "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]]
    subprocess.run(wait, check=True, capture_output=True)
    subprocess.run([*kubectl, "create", "namespace", NAMESPACE], check=False, capture_output=True)
    manifest = yaml.safe_dump_all(fleet())
    subprocess.run([*kubectl, "apply", "-f", "-"], input=manifest, text=True, check=True, capture_output=True)


@dataclasses.dataclass
class Measured:
    latencies: list[float] = dataclasses.field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0


def measure(
    kubeconfig: str, kubectl: list[str], workdir: pathlib.Path, report: list[dict[str, Any]]
) -> dict[tuple[str, int], Measured]:
    configuration = kube_client.load_configuration(kubeconfig)
    context = ssl_context(configuration)
    host = str(configuration.host)
    results: dict[tuple[str, int], Measured] = {}
    run = uuid.uuid4().hex[:4]
    for round_ in range(ROUNDS):
        for phase in ("baseline", "webhooks"):
            with contextlib.ExitStack() as stack:
                if phase == "webhooks":
                    stack.enter_context(webhook_process(kubeconfig, str(workdir / "certs"), report))
                wait_for(kubectl, enforced=phase == "webhooks")
                for concurrency in CONCURRENCY:
                    tag = f"{run}-{phase[0]}{round_}-{concurrency}"
                    start = time.perf_counter()
                    latencies, failed = asyncio.run(
                        load(host, context, concurrency, REQUESTS[concurrency], tag)
                    )
                    entry = results.setdefault((phase, concurrency), Measured())
                    entry.seconds += time.perf_counter() - start
                    entry.latencies.extend(latencies)
                    entry.failures += failed
    delete = [*kubectl, "delete", "agents", "--all", "-n", NAMESPACE, "--wait=false"]
    subprocess.run(delete, capture_output=True, check=False)
    return results


def print_table(results: dict[tuple[str, int], Measured], report: list[dict[str, Any]]) -> None:
    print()
    print(
        f"  {'clients':>7}  {'creates':>7}  {'baseline p50/p99 ms':>20}  {'webhooks p50/p99 ms':>20}  "
        f"{'overhead p50/p99 ms':>20}  {'ratio p50/p99':>14}  {'creates/s base/hooks':>20}"
    )
    verdict = ""
    for concurrency in CONCURRENCY:
        base, hook = results[("baseline", concurrency)], results[("webhooks", concurrency)]
        b50, b99 = percentile(base.latencies, 50) * 1e3, percentile(base.latencies, 99) * 1e3
        h50, h99 = percentile(hook.latencies, 50) * 1e3, percentile(hook.latencies, 99) * 1e3
        rate_b = (len(base.latencies) + WARMUP * concurrency * ROUNDS) / base.seconds
        rate_h = (len(hook.latencies) + WARMUP * concurrency * ROUNDS) / hook.seconds
        print(
            f"  {concurrency:>7}  {len(hook.latencies):>7}  {b50:>9.2f} / {b99:>7.2f}  "
            f"{h50:>9.2f} / {h99:>7.2f}  {h50 - b50:>+9.2f} / {h99 - b99:>+7.2f}  "
            f"{h50 / b50:>6.2f} / {h99 / b99:>5.2f}  {rate_b:>9.0f} / {rate_h:>6.0f}"
        )
        if concurrency == 16:
            met = h99 - b99 <= TARGET_P99_MS_AT_16
            verdict = (
                f"target: p99 overhead <= {TARGET_P99_MS_AT_16:.1f} ms at 16 clients: "
                f"{'met' if met else 'NOT met'} ({h99 - b99:+.2f} ms)"
            )
    print(f"\n  {verdict}")
    failed = {f"{p}/{c}": m.failures for (p, c), m in results.items() if m.failures}
    if failed:
        print(f"  failed creates: {failed}; first: {FAILURES[:2]}")
    for entry in report:
        if "service_ms" in entry:
            service = ", ".join(
                f"{action} p50 {values['p50']:.2f} / p99 {values['p99']:.2f} ms"
                for action, values in entry["service_ms"].items()
            )
            print(f"  webhook time inside the handler per call: {service}; outcomes {entry['outcomes']}")
    print("\n  reference: Kyverno's published p99 admission latency is 100-450 ms at 10-500 virtual users")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help="use this cluster (default: $JOCH_KUBECONFIG or a new one)")
    parser.add_argument("--cert-dir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.kubeconfig, args.cert_dir)
    if args.quick:
        REQUESTS.update({1: 40, 16: 160})

    from joch.devcluster import ControlPlane, find_binary

    with contextlib.ExitStack() as stack:
        kubeconfig = args.kubeconfig or os.environ.get("JOCH_KUBECONFIG")
        workdir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="joch-bench-")))
        if kubeconfig is None:
            kubeconfig = str(stack.enter_context(ControlPlane(workdir / "control-plane")).kubeconfig)
        kubectl = [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}"]
        prepare(kubectl)
        version = subprocess.run(
            [*kubectl, "version", "-o", "json"], capture_output=True, text=True, check=False
        )
        server_version = json.loads(version.stdout or "{}").get("serverVersion", {}).get("gitVersion", "?")
        print("joch webhook benchmark: create Agent latency with the webhooks registered vs not (same run)")
        print(
            f"kube-apiserver {server_version}, {cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), "
            f"{POLICIES} Policies in namespace {NAMESPACE} ({POLICIES // 4} select the Agents), "
            f"{ROUNDS} alternating rounds"
        )
        report: list[dict[str, Any]] = []
        results = measure(kubeconfig, kubectl, workdir, report)
        print_table(results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
