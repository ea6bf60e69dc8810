"""The operator run as a local process with the Helm chart's ServiceAccount credentials (a TokenRequest
token, not admin), against the real API server.

Cases:
- cluster scope, chart credentials: compiles the examples (`kubectl wait --for=condition=Ready
  agent/support-triage`), decides over gRPC for a ServiceAccount's token (the chart's TokenReview
  grant; a bad token UNAUTHENTICATED), no 403 in its log, still 403 on Secrets;
- namespace scope, Roles only: runs; namespaced kinds Ready; the Agent waits for the cluster-scoped
  adapter it cannot see;
- namespace scope + rbac.clusterReader: compiles the examples;
- Lease failover (two elector processes): after SIGKILL of the leader the follower leads once the lease
  expires; after SIGTERM at once;
- operator failover (--leader-election): two operators, one reconciles; kill it, the other takes over;
- metrics after real traffic: /metrics counts move (reconciles, compile duration).

The operator is ``python -m joch.cli.main operator`` (what the image runs).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from joch.grpc.gen.v1 import policy_service_pb2, policy_service_pb2_grpc
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    OperatorProcess,
    apply,
    cluster_fixture,
    eventually,
    isolated_args,
    ready,
    support_triage,
)
from tests.integration.test_helm_install import release, release_values, sa_kubeconfig, status_of  # noqa: F401
from tests.unit.chart import helm

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


class MainOperator(OperatorProcess):
    """``python -m joch.cli.main operator`` (the image's entrypoint) instead of joch.cli.operator."""

    def start(self) -> MainOperator:
        argv = [sys.executable, "-m", "joch.cli.main", "operator", "--kubeconfig", self.kubeconfig, "-v"]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        argv += isolated_args(self.args)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {' '.join(argv[1:])}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        return self


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[Callable[..., MainOperator]]:
    started: list[MainOperator] = []

    def start(kubeconfig: str, *namespaces: str, args: tuple[str, ...] = ()) -> MainOperator:
        process = MainOperator(kubeconfig, namespaces, tmp_path / f"operator-{len(started)}.log", args)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
        print(f"----- {process.log_path} (tail)\n{process.tail(60)}")


def _wait_ready(kubectl: Kubectl, namespace: str, timeout: int = 120) -> None:
    """The documented way: kubectl wait --for=condition=Ready agent/support-triage."""
    waited = kubectl(
        "wait",
        "--for=condition=Ready",
        "agent/support-triage",
        "-n",
        namespace,
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )
    assert waited.returncode == 0, waited.stderr + waited.stdout


def _forbidden_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "403" in line or "Forbidden" in line or "forbidden" in line]


# --- compiling with the chart's credentials -------------------------------------------------------------


def test_operator_with_chart_credentials_compiles_the_examples(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    operators: Callable[..., MainOperator],
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace, operator={"namespaces": [namespace]}))
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    grpc_port = _free_port()
    operator = operators(sa, namespace, args=(f"--grpc-port={grpc_port}",))
    _wait_ready(kubectl, namespace)
    assert "support-triage-g1" in cluster.manifests(namespace)
    # gRPC decisions: the chart's grant to create TokenReviews is what checks a gateway's token.
    _assert_grpc_decides(kubectl, namespace, grpc_port)
    eventually(lambda: _assert_ready_kind(cluster, "Model", namespace, "gpt-5-thinking"), timeout=60)
    # The example Team's members are bound with the chart's grants (bind on the Team roles by name).
    eventually(lambda: _assert_ready_kind(cluster, "Team", None, example.team), timeout=60)
    bindings = client.RbacAuthorizationV1Api(cluster.core.api_client).list_namespaced_role_binding(
        namespace, label_selector=f"joch.dev/team={example.team}"
    )
    assert sorted(b.role_ref.name for b in bindings.items) == ["joch-admin", "joch-approver", "joch-operator"]
    assert operator.running()
    assert not _forbidden_lines(operator.current_log()), "\n".join(_forbidden_lines(operator.current_log()))
    api = helm_sa_api(sa)
    try:
        assert status_of(lambda: client.CoreV1Api(api).list_namespaced_secret(namespace)) == 403
    finally:
        api.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _assert_grpc_decides(kubectl: Kubectl, namespace: str, port: int) -> None:
    """A ServiceAccount's token is reviewed with the operator's (chart) credentials and decided on."""
    created = kubectl("create", "serviceaccount", "gateway", "-n", namespace)
    assert created.returncode == 0, created.stderr
    minted = kubectl("create", "token", "gateway", "-n", namespace, "--duration=10m")
    assert minted.returncode == 0, minted.stderr
    request = policy_service_pb2.DecideRequest(request_id="chart")
    request.context.hook = "toolCallRequest"
    request.context.agent.name = "support-triage"
    request.context.agent.namespace = namespace
    request.context.tool.name = "zendesk.search"
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
        metadata = (("authorization", f"Bearer {minted.stdout.strip()}"),)

        def decided() -> policy_service_pb2.DecideResponse:
            return stub.Decide(request, metadata=metadata, timeout=10)

        answer = eventually(decided, timeout=60, interval=0.2)
        assert answer.request_id == "chart"
        assert answer.WhichOneof("result") == "decision", answer
        with pytest.raises(grpc.RpcError) as refused:
            stub.Decide(request, metadata=(("authorization", "Bearer not-a-token"),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def helm_sa_api(path: str) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=path, persist_config=False)


def _assert_ready_kind(cluster: Cluster, kind: str, namespace: str | None, name: str) -> None:
    conditions = {c["type"]: c for c in cluster.status(kind, namespace, name).get("conditions") or ()}
    assert conditions.get("Ready", {}).get("status") == "True", (kind, name, conditions)


def test_namespace_scope_with_roles_only(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    operators: Callable[..., MainOperator],
    tmp_path: Path,
) -> None:
    """Roles only: the operator manages its namespace; the cluster-scoped FrameworkAdapter is out of its
    sight, so the Agent waits for it (MissingReference) instead of the operator failing."""
    release.install(release_values(namespace, rbac={"scope": "namespace", "namespaces": [namespace]}))
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    operator = operators(sa, namespace, args=("--shared-namespaces", namespace))
    eventually(lambda: _assert_ready_kind(cluster, "Model", namespace, "gpt-5-thinking"), timeout=90)
    eventually(lambda: _assert_ready_kind(cluster, "Tool", namespace, "slack.send"), timeout=30)

    def waiting() -> None:
        resolved = cluster.condition(namespace, "support-triage", "ResolvedRefs")
        assert resolved["status"] == "False", resolved
        assert example.adapter in resolved["message"], resolved

    eventually(waiting, timeout=60)
    assert operator.running(), operator.tail()


def test_namespace_scope_with_cluster_reader_compiles_the_examples(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    operators: Callable[..., MainOperator],
    tmp_path: Path,
) -> None:
    release.install(
        release_values(
            namespace, rbac={"scope": "namespace", "namespaces": [namespace], "clusterReader": True}
        )
    )
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    operators(sa, namespace, args=("--shared-namespaces", namespace))
    _wait_ready(kubectl, namespace)
    assert "support-triage-g1" in cluster.manifests(namespace)


# --- leader election ----------------------------------------------------------------------------------

_ELECTOR = textwrap.dedent(
    """
    import asyncio, signal, sys
    from joch.kube import client, leader

    async def main(kubeconfig, namespace, identity):
        configuration = client.load_configuration(kubeconfig)
        limits = client.Limits(max_retries=0, request_timeout=2)
        kube = client.Kube(client.new_api_client(configuration), limits)
        config = leader.LeaseConfig(name="joch-leader", namespace=namespace, identity=identity,
                                    lease_duration=4, renew_deadline=3, retry_period=0.5)
        elector = leader.LeaderElector(kube, config)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        async def started():
            print("LEADING", identity, flush=True)

        async def stopped():
            print("STOPPED", identity, flush=True)
            stop.set()

        task = asyncio.create_task(elector.run(on_started=started, on_stopped=stopped))
        await stop.wait()
        await elector.release()
        task.cancel()
        print("EXIT", identity, flush=True)
        await kube.aclose()
        kube.close()

    asyncio.run(main(*sys.argv[1:4]))
    """
)


def _elector(kubeconfig: str, namespace: str, identity: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _ELECTOR, kubeconfig, namespace, identity],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def test_lease_failover_between_processes(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace))
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "c")}
    processes = {"a": _elector(sa, namespace, "a", logs["a"])}
    leases = client.CoordinationV1Api(kube_api)

    def holder() -> str:
        return str(leases.read_namespaced_lease("joch-leader", namespace).spec.holder_identity or "")

    def leads(name: str) -> None:
        assert f"LEADING {name}" in logs[name].read_text(), logs[name].read_text()
        assert holder() == name

    try:
        eventually(lambda: leads("a"), timeout=30)
        processes["b"] = _elector(sa, namespace, "b", logs["b"])
        time.sleep(2)
        assert "LEADING" not in logs["b"].read_text()  # a follower while "a" renews
        processes["a"].send_signal(signal.SIGKILL)  # the leader dies without releasing
        processes["a"].wait(timeout=10)
        killed_at = time.monotonic()
        eventually(lambda: leads("b"), timeout=30)
        assert time.monotonic() - killed_at >= 2  # waited for the lease to expire
        transitions = leases.read_namespaced_lease("joch-leader", namespace).spec.lease_transitions
        assert transitions >= 1
        processes["c"] = _elector(sa, namespace, "c", logs["c"])
        time.sleep(1.5)
        processes["b"].send_signal(signal.SIGTERM)  # graceful: releases the Lease
        released_at = time.monotonic()
        assert processes["b"].wait(timeout=15) == 0
        eventually(lambda: leads("c"), timeout=15)
        assert time.monotonic() - released_at < 4  # no wait for expiry
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def test_operator_failover_only_the_leader_reconciles(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    kube_api: client.ApiClient,
    operators: Callable[..., MainOperator],
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace, operator={"namespaces": [namespace]}))
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    example = support_triage(namespace)
    election = (
        "--leader-election",
        f"--leader-election-namespace={namespace}",
        "--leader-election-id=joch-leader",
        "--lease-duration=4",
        "--renew-deadline=3",
        "--retry-period=0.5",
    )
    first = operators(sa, namespace, args=election)
    eventually(lambda: _holder(kube_api, namespace), timeout=60)
    second = operators(sa, namespace, args=election)
    apply(kubectl, example.docs)
    _wait_ready(kubectl, namespace)
    leader_process, follower = (
        (first, second) if first.running() and "became the leader" in first.current_log() else (second, first)
    )
    assert "became the leader" not in follower.current_log()
    leader_process.kill()
    eventually(lambda: _assert_in("became the leader", follower.current_log()), timeout=60)
    # The new leader reconciles: a spec change is compiled into generation 2.
    cluster.patch("Agent", namespace, "support-triage", {"spec": {"description": "failover"}})
    eventually(lambda: ready(cluster, namespace, "support-triage", generation=2), timeout=60)
    assert "support-triage-g2" in cluster.manifests(namespace)


def _holder(kube_api: client.ApiClient, namespace: str) -> str:
    try:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease("joch-leader", namespace)
    except ApiException as exc:
        raise AssertionError(f"no Lease yet ({exc.status})") from exc
    assert lease.spec.holder_identity, "Lease has no holder"
    return str(lease.spec.holder_identity)


def _assert_in(text: str, log: str) -> None:
    assert text in log, log[-2000:]


# --- metrics --------------------------------------------------------------------------------------------


def _scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            values[key] = sample.value
    return values


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_count_real_traffic(
    release: helm.Release,  # noqa: F811
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    operators: Callable[..., MainOperator],
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace, operator={"namespaces": [namespace]}))
    sa = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    metrics_port, health_port = _free_port(), _free_port()
    operators(sa, namespace, args=(f"--metrics-port={metrics_port}", f"--health-port={health_port}"))
    eventually(lambda: _assert_status(f"http://127.0.0.1:{health_port}/healthz", 200), timeout=60)
    before = eventually(lambda: _scrape(metrics_port), timeout=30)
    apply(kubectl, support_triage(namespace).docs)
    _wait_ready(kubectl, namespace)
    cluster.patch("Agent", namespace, "support-triage", {"spec": {"description": "metrics"}})
    eventually(lambda: ready(cluster, namespace, "support-triage", generation=2), timeout=60)

    def moved() -> dict[str, float]:
        after = _scrape(metrics_port)
        key = "joch_reconciles_total{kind=Agent,result=success}"
        assert after.get(key, 0) >= before.get(key, 0) + 2, (key, after.get(key))
        compiles = "joch_compile_duration_seconds_count{}"
        assert after.get(compiles, 0) >= before.get(compiles, 0) + 2
        assert "joch_fanout_queue_depth{}" in after
        return after

    eventually(moved, timeout=30)


def _assert_status(url: str, expected: int) -> None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        raise AssertionError(f"{url}: {exc}") from exc
    assert status == expected, (url, status)
