"""Executions against the real API server with kube-controller-manager, kube-scheduler and KWOK: the
operator (``joch operator``, webhooks on) turns each Execution into one Job whose fake Pod runs.

Cases (one operator, one namespace enforcing the restricted Pod Security level):
- admission: an Execution of a missing Agent, or with a ModelRoute override that does not exist, is
  refused with a message naming the field; spec cannot change after creation except cancel;
- the example agent's Execution runs to Succeeded: its Job (same name, owned, labels, the adapter image,
  the manifest ConfigMap of status.manifestRef mounted, the environment, the restricted security
  context, backoffLimit 0, activeDeadlineSeconds, ttlSecondsAfterFinished, serviceAccountName
  joch-worker) and its Pod admitted under "restricted"; status pins manifestRef and abomSnapshotRef;
  printer columns; Events;
- a Pod that exits 3 (KWOK's failure stage) gives Failed with the reason; a timeout gives TimedOut;
  cancel (``joch executions cancel``) stops the Job; a Job deleted by someone else gives Failed;
- a cap of 2 queues the third Execution and starts it when a slot frees;
- a worker's bound token may report costUsd into its own Execution, not into another's, and not the
  phase.

And the operator SIGKILLed in the middle of a burst of 50 Executions: after a restart, exactly 50 Jobs.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    Example,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    eventually,
    ready,
    remove_webhook_configurations,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
RUN_FOR = "devcluster.joch.dev/run-for"
EXIT_CODE = "devcluster.joch.dev/exit-code"
FLAGS = ("--execution-pod-annotation-prefix=devcluster.joch.dev/",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def execution(namespace: str, name: str, agent: str, **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", None)
    doc: dict[str, Any] = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "agentRef": {"name": agent},
            "trigger": {"type": "manual"},
            "input": {"content": [{"kind": "text", "text": f"task {name}"}]},
            **extra,
        },
    }
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def create(kubectl: Kubectl, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    text = yaml.safe_dump_all(list(docs))
    result: subprocess.CompletedProcess[str] = kubectl("create", "-f", "-", input=text)
    return result


def phase(cluster: Cluster, namespace: str, name: str, *wanted: str) -> dict[str, Any]:
    status = cluster.status("Execution", namespace, name)
    assert status.get("phase") in wanted, f"{name}: {status.get('phase')} not in {wanted}: {status}"
    return status


def token_kubeconfig(kubeconfig: str, token: str, path: Path) -> str:
    """A kubeconfig for the same server that authenticates with ``token`` only (no client cert)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    context = config["contexts"][0]["context"]
    config["users"] = [{"name": "worker", "user": {"token": token}}]
    context["user"] = "worker"
    config["contexts"][0]["context"] = context
    path.write_text(yaml.safe_dump(config))
    return str(path)


def report(kubectl: Kubectl, config: str, namespace: str, name: str, status: dict[str, Any]) -> Any:
    return kubectl(
        "--kubeconfig",
        config,
        "patch",
        "executions.runtime.joch.dev",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def test_executions_run_as_jobs(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    example: Example = support_triage(namespace)
    for doc in example.docs:
        if doc["kind"] == "Namespace":
            doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "restricted"
    port = _free_port()
    args = (
        f"--webhook-port={port}",
        f"--webhook-cert-dir={tmp_path / 'webhook-certs'}",
        "--execution-concurrency=2",
        *FLAGS,
    )
    try:
        start_operator(namespace, args=args)
        lone = agent_doc(example, "lone")
        apply(kubectl, [*example.docs, lone])
        eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
        eventually(lambda: ready(cluster, namespace, "lone"), timeout=90)
        _admission(kubectl, namespace)
        _succeeds(kubectl, kubeconfig, cluster, namespace)
        _tool_calls(kubectl, cluster, namespace)
        _ends_badly(kubectl, kubeconfig, cluster, namespace)
        _queues(kubectl, cluster, namespace)
        _worker_tokens(kubectl, kubeconfig, cluster, namespace, tmp_path)
    finally:
        remove_webhook_configurations(kubectl)


def _admission(kubectl: Kubectl, namespace: str) -> None:
    refused = create(kubectl, execution(namespace, "ghost-run", "ghost"))
    assert refused.returncode != 0
    assert "spec.agentRef: Agent" in refused.stderr, refused.stderr
    assert "ghost not found" in refused.stderr, refused.stderr
    override = {"modelRouteOverride": {"routeRef": {"name": "nowhere"}}}
    refused = create(kubectl, execution(namespace, "bad-route", "support-triage", **override))
    assert refused.returncode != 0
    assert "spec.modelRouteOverride.routeRef" in refused.stderr, refused.stderr
    assert "nowhere not found" in refused.stderr, refused.stderr
    big = {"input": {"content": [{"kind": "text", "text": "x" * 60000}] * 3}}
    refused = create(kubectl, execution(namespace, "too-big", "support-triage", **big))
    assert refused.returncode != 0
    assert "spec.input" in refused.stderr, refused.stderr


def joch(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "joch.cli.main", *args, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _succeeds(kubectl: Kubectl, kubeconfig: str, cluster: Cluster, namespace: str) -> None:
    ran = joch(
        kubeconfig, "run", "support-triage", "-n", namespace, "--name", "first", "--input", '"task first"'
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Succeeded" in ran.stdout, ran.stdout
    status = phase(cluster, namespace, "first", "Succeeded")
    agent = cluster.agent(namespace, "support-triage")
    manifest = agent["status"]["compiledManifest"]
    assert status["manifestRef"] == {"name": manifest["name"], "sha256": manifest["sha256"]}
    assert status["abomSnapshotRef"]["name"] == "support-triage"
    assert status["abomSnapshotRef"]["generation"] >= 1
    assert status["startedAt"] <= status["completedAt"]
    assert status["durationMs"] >= 0
    ready_condition = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready_condition["status"], ready_condition["reason"]) == ("True", "Succeeded")

    batch = cluster.batch.read_namespaced_job("first", namespace)
    owner = batch.metadata.owner_references[0]
    run = cluster.get("Execution", namespace, "first")
    assert (owner.kind, owner.uid, owner.controller) == ("Execution", run["metadata"]["uid"], True)
    assert batch.metadata.labels == {"joch.dev/agent": "support-triage", "joch.dev/execution": "first"}
    spec = batch.spec
    assert (spec.backoff_limit, spec.active_deadline_seconds, spec.ttl_seconds_after_finished) == (
        0,
        3600,
        86400,
    )
    pod_spec = spec.template.spec
    assert pod_spec.service_account_name == "joch-worker"
    container = pod_spec.containers[0]
    assert container.image == "ghcr.io/peasantsai/joch-adapter-openai-agents:1.0.0"
    env = {item.name: item.value for item in container.env}
    assert env["JOCH_EXECUTION_ID"] == run["metadata"]["uid"]
    assert env["JOCH_MANIFEST"] == "/etc/joch/manifest/manifest.yaml"
    assert {"JOCH_GATEWAY_URL", "JOCH_ROUTER_URL", "JOCH_TRACE_URL"} <= set(env)
    volumes = {volume.name: volume for volume in pod_spec.volumes}
    assert volumes["manifest"].config_map.name == manifest["name"]
    assert all(mount.read_only for mount in container.volume_mounts)
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    # The namespace enforces "restricted": the Pod exists, so the API server admitted it.
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="joch.dev/execution=first").items
    assert [pod.status.phase for pod in pods] == ["Succeeded"]
    annotation = json.loads(pods[0].metadata.annotations["joch.dev/input"])
    assert annotation == {"content": [{"kind": "text", "text": "task first"}]}
    assert cluster.core.read_namespaced_service_account("joch-worker", namespace) is not None
    reasons = {event.reason for event in cluster.events(namespace, "first", "Execution")}
    assert {"Started", "Succeeded"} <= reasons
    printed = kubectl("get", "executions.runtime.joch.dev", "-n", namespace)
    assert printed.stdout.split("\n")[0].split() == [
        "NAME",
        "READY",
        "AGENT",
        "PHASE",
        "COST",
        "DURATION",
        "AGE",
    ]

    # Only spec.cancel may change after creation.
    changed = kubectl(
        "patch",
        "executions.runtime.joch.dev",
        "first",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"agentRef": {"name": "lone"}}}),
    )
    assert changed.returncode != 0
    assert "spec.agentRef" in changed.stderr, changed.stderr


def _ends_badly(kubectl: Kubectl, kubeconfig: str, cluster: Cluster, namespace: str) -> None:
    runs = [
        execution(namespace, "crash", "support-triage", annotations={EXIT_CODE: "3"}),
        execution(namespace, "slow", "support-triage", timeoutSeconds=2, annotations={RUN_FOR: "60s"}),
        execution(namespace, "stopped", "lone", annotations={RUN_FOR: "120s"}),
        execution(namespace, "orphan", "lone", annotations={RUN_FOR: "120s"}),
    ]
    created = create(kubectl, *runs)
    assert created.returncode == 0, created.stderr
    crash = eventually(lambda: phase(cluster, namespace, "crash", "Failed"), timeout=60)
    message = next(c for c in crash["conditions"] if c["type"] == "Ready")["message"]
    assert "exit code 3" in message, crash

    eventually(lambda: phase(cluster, namespace, "stopped", "Running"), timeout=60)
    eventually(lambda: phase(cluster, namespace, "orphan", "Running"), timeout=60)
    cancel = joch(kubeconfig, "executions", "cancel", "stopped", "-n", namespace)
    assert cancel.returncode == 0, cancel.stderr
    eventually(lambda: phase(cluster, namespace, "stopped", "Cancelled"), timeout=60)
    eventually(lambda: _gone(cluster, namespace, "stopped"), timeout=60)

    deleted = kubectl("delete", "job", "orphan", "-n", namespace, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    orphan = eventually(lambda: phase(cluster, namespace, "orphan", "Failed"), timeout=60)
    reason = next(c for c in orphan["conditions"] if c["type"] == "Ready")["reason"]
    assert reason in ("JobDeleted", "PodDeleted"), orphan

    timed_out = eventually(lambda: phase(cluster, namespace, "slow", "TimedOut"), timeout=60)
    assert timed_out["completedAt"] >= timed_out["startedAt"]


def tool_call(namespace: str, name: str, run: str, agent: str, tool: str) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "ToolCall",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "executionRef": {"name": run},
            "agentRef": {"name": agent},
            "toolRef": {"name": tool},
            "input": {"query": "refund"},
        },
    }


def _tool_calls(kubectl: Kubectl, cluster: Cluster, namespace: str) -> None:
    """The gateway's ToolCalls: one the manifest grants is linked to its run and counted; one naming
    a tool the Agent is not granted, or another Agent, is refused."""
    created = create(kubectl, tool_call(namespace, "call-1", "first", "support-triage", "zendesk.search"))
    assert created.returncode == 0, created.stderr
    refused = create(kubectl, tool_call(namespace, "call-2", "first", "support-triage", "shell.exec"))
    assert refused.returncode != 0
    assert "spec.toolRef" in refused.stderr, refused.stderr
    refused = create(kubectl, tool_call(namespace, "call-3", "first", "lone", "zendesk.search"))
    assert refused.returncode != 0
    assert "spec.agentRef" in refused.stderr, refused.stderr
    run = cluster.get("Execution", namespace, "first")

    def linked() -> None:
        call = cluster.get("ToolCall", namespace, "call-1")
        owners = [(o["kind"], o["uid"]) for o in call["metadata"].get("ownerReferences") or ()]
        assert owners == [("Execution", run["metadata"]["uid"])], owners
        assert cluster.status("Execution", namespace, "first").get("recordedToolCalls") == 1

    eventually(linked, timeout=60)

    # The gateway holds call-1 for a human: an Approval requested by the run. Its decision reaches the
    # ToolCall's spec.approval, and the run counts it.
    held = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": "hold-call-1", "namespace": namespace},
        "spec": {
            "requestedBy": {"executionRef": {"name": "first"}},
            "action": {"type": "tool_call", "toolCallRef": {"name": "call-1"}, "tool": "zendesk.search"},
            "routing": {"approvers": ["user:alice"]},
        },
    }
    created = create(kubectl, held)
    assert created.returncode == 0, created.stderr

    def counted(pending: int, state: str) -> None:
        status = cluster.status("Execution", namespace, "first")
        assert (status.get("approvals"), status.get("pendingApprovals")) == (1, pending), status
        approval = cluster.get("ToolCall", namespace, "call-1")["spec"].get("approval") or {}
        assert approval.get("status") == state, approval
        assert approval.get("approvalRef") == {"name": "hold-call-1"}, approval

    eventually(lambda: counted(1, "pending"), timeout=60)
    decided = kubectl(
        "--as=alice",
        "--as-group=system:masters",
        "patch",
        "approvals.runtime.joch.dev",
        "hold-call-1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"decision": "approve"}}),
    )
    assert decided.returncode == 0, decided.stderr
    eventually(lambda: counted(0, "approved"), timeout=60)
    approval = cluster.get("ToolCall", namespace, "call-1")["spec"]["approval"]
    assert approval["approvedBy"] == "alice", approval


def _gone(cluster: Cluster, namespace: str, job: str) -> None:
    found = cluster.batch.list_namespaced_job(namespace, field_selector=f"metadata.name={job}").items
    assert not found, f"Job {job} still exists"


def _queues(kubectl: Kubectl, cluster: Cluster, namespace: str) -> None:
    names = ["q1", "q2", "q3"]
    runs = [execution(namespace, name, "lone", annotations={RUN_FOR: "4s"}) for name in names]
    created = create(kubectl, *runs)
    assert created.returncode == 0, created.stderr

    def two_running_one_queued() -> None:
        phases = sorted(cluster.status("Execution", namespace, name).get("phase") or "" for name in names)
        assert phases == ["Queued", "Running", "Running"], phases

    eventually(two_running_one_queued, timeout=60, interval=0.1)
    statuses = [
        eventually(lambda n=name: phase(cluster, namespace, n, "Succeeded"), timeout=60) for name in names
    ]
    queued = next(
        s
        for s, n in zip(statuses, names, strict=True)
        if s["startedAt"] >= max(x["startedAt"] for x in statuses)
    )
    first_done = min(s["completedAt"] for s in statuses if s is not queued)
    assert queued["startedAt"] >= first_done


def _worker_tokens(
    kubectl: Kubectl, kubeconfig: str, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    runs = [execution(namespace, name, "lone", annotations={RUN_FOR: "60s"}) for name in ("w1", "w2")]
    created = create(kubectl, *runs)
    assert created.returncode == 0, created.stderr
    first = eventually(lambda: _with_pod(cluster, namespace, "w1"), timeout=60)
    eventually(lambda: _with_pod(cluster, namespace, "w2"), timeout=60)
    pod = cluster.core.read_namespaced_pod(first["podName"], namespace)
    token = kubectl(
        "create",
        "token",
        "joch-worker",
        "-n",
        namespace,
        "--bound-object-kind=Pod",
        f"--bound-object-name={pod.metadata.name}",
        f"--bound-object-uid={pod.metadata.uid}",
    )
    assert token.returncode == 0, token.stderr
    config = token_kubeconfig(kubeconfig, token.stdout.strip(), tmp_path / "worker.kubeconfig")

    own = report(kubectl, config, namespace, "w1", {"costUsd": 0.25, "tokens": 1200, "modelCalls": 3})
    assert own.returncode == 0, own.stderr
    assert cluster.status("Execution", namespace, "w1")["costUsd"] == 0.25
    other = report(kubectl, config, namespace, "w2", {"costUsd": 9.0})
    assert other.returncode != 0
    assert "reports only into its own Execution" in other.stderr, other.stderr
    assert "costUsd" not in cluster.status("Execution", namespace, "w2")
    sneaky = report(kubectl, config, namespace, "w1", {"phase": "Succeeded"})
    assert sneaky.returncode != 0
    assert "status.phase" in sneaky.stderr, sneaky.stderr
    assert cluster.status("Execution", namespace, "w1")["phase"] == "Running"


def _with_pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    status = phase(cluster, namespace, name, "Running")
    assert status.get("podName"), status
    return status


def test_operator_killed_mid_burst_leaves_one_job_per_execution(
    namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    example: Example = support_triage(namespace)
    lone = agent_doc(example, "lone")
    args = ("--execution-concurrency=50", *FLAGS)
    operator = start_operator(namespace, args=args)
    apply(kubectl, [*example.docs, lone])
    eventually(lambda: ready(cluster, namespace, "lone"), timeout=90)
    names = [f"burst-{index:02d}" for index in range(50)]
    created = create(
        kubectl, *(execution(namespace, name, "lone", annotations={RUN_FOR: "2s"}) for name in names)
    )
    assert created.returncode == 0, created.stderr

    def some_jobs() -> int:
        count = len(cluster.batch.list_namespaced_job(namespace, label_selector="joch.dev/agent=lone").items)
        assert count >= 5, count
        return count

    eventually(some_jobs, timeout=60, interval=0.05)
    operator.kill()
    start_operator(namespace, args=args)
    for name in names:
        eventually(lambda n=name: phase(cluster, namespace, n, "Succeeded"), timeout=120)
    jobs = cluster.batch.list_namespaced_job(namespace, label_selector="joch.dev/agent=lone").items
    assert sorted(job.metadata.name for job in jobs) == names
    uids = {run["metadata"]["name"]: run["metadata"]["uid"] for run in cluster.list("Execution", namespace)}
    for job in jobs:
        assert [owner.uid for owner in job.metadata.owner_references] == [uids[job.metadata.name]]
