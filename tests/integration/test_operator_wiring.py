"""``joch operator`` in local mode runs everything in one process: controllers, admission webhooks (url
mode, its own CA, configurations applied and removed on exit), the decision service and /metrics.

One operator (``python -m joch.cli.main operator``, the image's entrypoint) against the test control plane:
an Agent compiles (Ready), a bad Tool is denied through kubectl with the field named, POST
/v1/policy/evaluate answers, and /metrics shows the joch reconcile and admission counters above zero.

Promotion gates against the operator's own store: a Deployment whose Eval has not run is denied; once
the Eval's status (written through the status subresource) says Passed and an Approval is Approved, the
watches bring both into the store and the same apply is admitted.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from joch.manifests import webhooks as rendering
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    apply,
    cluster_fixture,
    eventually,
    ready,
    remove_webhook_configurations,
    support_triage,
    to_yaml,
)
from tests.unit.admission import factories as f

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _grpc_health(port: int, service: str) -> str:
    """grpc.health.v1 Check of ``service`` on 127.0.0.1:``port`` (plaintext), as its status name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    assert name == "SERVING", name
    return name


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()
    except OSError as exc:
        raise AssertionError(f"{url}: {exc}") from exc


def _samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            values[key] = sample.value
    return values


def _total(samples: dict[str, float], prefix: str) -> float:
    return sum(value for key, value in samples.items() if key.startswith(prefix + "{"))


@pytest.fixture
def operator(
    kubeconfig: str, crds_installed: list[str], namespace: str, kubectl: Kubectl, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    ports = {name: _free_port() for name in ("webhook", "decision", "metrics", "health", "api", "grpc")}
    log_path = tmp_path / "operator.log"
    argv = [
        sys.executable,
        "-m",
        "joch.cli.main",
        "operator",
        "--kubeconfig",
        kubeconfig,
        "-v",
        "--namespace",
        namespace,
        f"--webhook-port={ports['webhook']}",
        f"--webhook-cert-dir={tmp_path / 'webhook-certs'}",
        f"--decision-port={ports['decision']}",
        "--decision-host=127.0.0.1",
        f"--metrics-port={ports['metrics']}",
        f"--health-port={ports['health']}",
        f"--api-port={ports['api']}",
        f"--grpc-port={ports['grpc']}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    try:
        yield {"process": process, "ports": ports, "log": log_path}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        # Whatever happened, leave no cluster-wide webhook configuration pointing at a dead server.
        remove_webhook_configurations(kubectl)
        print(f"----- {log_path} (tail)\n" + "\n".join(log_path.read_text().splitlines()[-80:]))


def _webhooks_registered(kubectl: Kubectl, port: int) -> None:
    got = kubectl("get", "validatingwebhookconfiguration", rendering.VALIDATING_NAME, "-o", "json")
    assert got.returncode == 0, got.stderr
    hooks = json.loads(got.stdout)["webhooks"]
    assert hooks
    assert all(f":{port}/" in h["clientConfig"]["url"] for h in hooks), hooks[0]["clientConfig"]
    assert all(h["clientConfig"].get("caBundle") for h in hooks)


def test_one_process_serves_controllers_webhooks_decisions_and_metrics(
    operator: dict[str, Any], namespace: str, kubectl: Kubectl, cluster: Cluster
) -> None:
    ports, process = operator["ports"], operator["process"]

    def alive_and(check: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            assert process.poll() is None, operator["log"].read_text()[-3000:]
            return check()

        return run

    eventually(alive_and(lambda: _webhooks_registered(kubectl, ports["webhook"])), timeout=90)
    eventually(alive_and(lambda: _assert_status(f"http://127.0.0.1:{ports['health']}/healthz")), timeout=30)
    eventually(alive_and(lambda: _assert_status(f"http://127.0.0.1:{ports['health']}/readyz")), timeout=30)

    # Controllers: the example compiles, through the webhooks (every write below is admitted by them).
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    eventually(alive_and(lambda: ready(cluster, namespace, "support-triage")), timeout=120)
    assert "support-triage-g1" in cluster.manifests(namespace)

    # Webhooks: a bad object is denied, naming the field.
    broken = copy.deepcopy(next(d for d in example.docs if d["kind"] == "Tool"))
    broken["metadata"] = {"name": "broken", "namespace": namespace}
    broken["spec"]["inputSchema"] = {"type": "objekt"}
    denied = kubectl("apply", "-f", "-", input=to_yaml([broken]))
    assert denied.returncode != 0, denied.stdout
    assert "denied the request" in denied.stderr, denied.stderr
    assert "spec.inputSchema.type" in denied.stderr, denied.stderr
    assert cluster.try_get("Tool", namespace, "broken") is None

    # Decision service: POST /v1/policy/evaluate answers.
    context = {
        "hook": "toolCallRequest",
        "agent": {"name": "support-triage", "namespace": namespace},
        "tool": {"name": "slack.send"},
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports['decision']}/v1/policy/evaluate",
        data=json.dumps({"context": context}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    def decided() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise AssertionError(f"{exc.code}: {exc.read()!r}") from exc
        except OSError as exc:
            raise AssertionError(str(exc)) from exc
        return body

    decision = eventually(alive_and(decided), timeout=30)
    assert decision["decision"] in ("allow", "deny", "modify"), decision

    # gRPC: the same decision service, on its own port (plaintext on loopback): health says so.
    assert f"grpc on 127.0.0.1:{ports['grpc']}" in operator["log"].read_text()
    status = eventually(alive_and(lambda: _grpc_health(ports["grpc"], "joch.v1.PolicyService")), timeout=30)
    assert status == "SERVING"

    # Metrics: reconciles, admissions (allowed and denied) and decisions were counted.
    def counted() -> dict[str, float]:
        status, text = _get(f"http://127.0.0.1:{ports['metrics']}/metrics")
        assert status == 200, text
        samples = _samples(text)
        assert samples.get("joch_reconciles_total{kind=Agent,result=success}", 0) > 0
        assert samples.get("joch_compile_duration_seconds_count{}", 0) > 0
        assert _total(samples, "joch_admission_requests_total") > 0
        assert samples.get("joch_admission_requests_total{allowed=false,kind=Tool,webhook=validating}", 0) > 0
        assert _total(samples, "joch_admission_denials_total") > 0
        assert _total(samples, "joch_policy_decisions_total") > 0
        assert "joch_fanout_queue_depth{}" in samples
        return samples

    eventually(alive_and(counted), timeout=30)

    # SIGTERM: a clean stop that takes the webhook configurations away with it.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, operator["log"].read_text()[-3000:]
    gone = kubectl("get", "validatingwebhookconfiguration", rendering.VALIDATING_NAME)
    assert gone.returncode != 0, gone.stdout
    assert "NotFound" in gone.stderr, gone.stderr


def _in(namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` moved into ``namespace``, without its status (a write never sets it)."""
    out = {k: copy.deepcopy(v) for k, v in doc.items() if k != "status"}
    out["metadata"]["namespace"] = namespace
    return out


def _patch_status(
    kubectl: Kubectl,
    namespace: str,
    resource: str,
    name: str,
    status: dict[str, Any],
    *,
    as_user: tuple[str, ...] = (),
) -> None:
    done = kubectl(
        *as_user,
        "patch",
        resource,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert done.returncode == 0, done.stderr


def test_promotion_gates_read_the_operators_watches(
    operator: dict[str, Any], namespace: str, kubectl: Kubectl
) -> None:
    ports, process = operator["ports"], operator["process"]
    eventually(lambda: _webhooks_registered(kubectl, ports["webhook"]), timeout=90)
    eventually(lambda: _assert_status(f"http://127.0.0.1:{ports['health']}/readyz"), timeout=30)
    example = support_triage(namespace)
    apply(kubectl, [*example.docs, _in(namespace, f.eval_())])
    gated = copy.deepcopy(example.find("Deployment", "support-triage-prod"))
    gated["metadata"]["name"] = "triage"
    gated["spec"]["promotion"] = {"requiresEval": "triage-quality", "requiresApproval": "release-manager"}

    def denied_until_run() -> str:
        assert process.poll() is None, operator["log"].read_text()[-3000:]
        done = kubectl("apply", "-f", "-", input=to_yaml([gated]))
        assert done.returncode != 0, done.stdout
        assert f"Eval {namespace}/triage-quality has not run yet" in done.stderr, done.stderr
        # the refusal starts the eval run once admission takes it (an unaccounted Budget fails closed)
        assert "eval run Execution" in done.stderr, done.stderr
        return str(done.stderr)

    message = eventually(denied_until_run, timeout=60)
    assert "Deployment/triage: spec.promotion.requiresApproval: " in message

    # The refusal started the eval run of the Agent's generation; the test plays its worker.
    assert f"eval run Execution {namespace}/triage-quality-g1" in message, message
    _patch_status(
        kubectl,
        namespace,
        "executions.runtime.joch.dev",
        "triage-quality-g1",
        {"scores": {"accuracy": 0.95, "pii_leakage": 0}},
    )
    apply(kubectl, [_in(namespace, f.approval(deployment="triage", approvers=("role:release-manager",)))])
    # Decided by a release manager (the group the bare role names); the server stamps who and when.
    eventually(lambda: _pending(kubectl, namespace, "promote-triage"), timeout=30)
    _patch_status(
        kubectl,
        namespace,
        "approvals.runtime.joch.dev",
        "promote-triage",
        {"decision": "approve"},
        as_user=("--as=alice", "--as-group=system:masters", "--as-group=release-manager"),
    )

    def admitted() -> None:
        assert process.poll() is None, operator["log"].read_text()[-3000:]
        done = kubectl("apply", "-f", "-", input=to_yaml([gated]))
        assert done.returncode == 0, done.stderr

    eventually(admitted, timeout=90)


def _pending(kubectl: Kubectl, namespace: str, name: str) -> None:
    got = kubectl(
        "get", "approvals.runtime.joch.dev", name, "-n", namespace, "-o", "jsonpath={.status.phase}"
    )
    assert got.stdout == "Pending", got.stdout + got.stderr


def _assert_status(url: str, expected: int = 200) -> None:
    status, body = _get(url)
    assert status == expected, (url, status, body)
