"""The local cluster runs things (joch.devcluster.workloads on the session control plane).

kube-controller-manager, kube-scheduler and kwok's fake Nodes: a Job runs to completion (or fails with
the exit code its Pod template asks for), a finished Job with ttlSecondsAfterFinished disappears, the
garbage collector deletes an owned object with its owner and a Job's Pods with the Job, a namespace
deletion finishes, every namespace gets its default ServiceAccount, and nothing ever connects to the
fake Nodes' and Pods' documentation addresses.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from joch.devcluster import workloads
from tests.helpers import fake_job as job
from tests.helpers import gone, present
from tests.integration.operator_fixtures import eventually

pytestmark = pytest.mark.integration


def condition(obj: Any, kind: str) -> str | None:
    for cond in (obj.status.conditions or []) if obj.status else []:
        if cond.type == kind:
            return str(cond.status)
    return None


def finished(batch: client.BatchV1Api, namespace: str, name: str, kind: str) -> Callable[[], Any]:
    """A check for ``eventually``: the Job has condition ``kind`` (Complete or Failed) True."""

    def check() -> Any:
        found = batch.read_namespaced_job(name, namespace)
        assert condition(found, kind) == "True", found.status
        return found

    return check


def in_network(address: str, cidr: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(cidr)


def test_fake_nodes_are_ready_on_documentation_addresses(kube_api: client.ApiClient) -> None:
    nodes = [
        node
        for node in client.CoreV1Api(kube_api).list_node().items
        if (node.metadata.annotations or {}).get(workloads.FAKE_NODE_ANNOTATION) == "fake"
    ]
    assert len(nodes) == 3
    for node in nodes:
        assert condition(node, "Ready") == "True", node.metadata.name
        internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        assert internal, node.metadata.name
        assert all(in_network(a, workloads.NODE_CIDR) for a in internal), internal


def test_a_job_runs_to_completion_on_a_fake_node(kube_api: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("succeeds"))

    done = eventually(finished(batch, namespace, "succeeds", "Complete"))
    assert done.status.succeeded == 1
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=succeeds").items
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name in workloads.fake_node_names(3)
    assert pod.spec.service_account_name == "default"
    assert in_network(pod.status.pod_ip, workloads.POD_CIDR)
    assert in_network(pod.status.host_ip, workloads.NODE_CIDR)
    (state,) = pod.status.container_statuses
    assert state.state.terminated.exit_code == 0
    assert state.state.terminated.reason == "Completed"


def test_a_job_fails_with_the_exit_code_its_pod_asks_for(kube_api: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("fails", annotations={workloads.EXIT_CODE_ANNOTATION: "3"}))

    failed = eventually(finished(batch, namespace, "fails", "Failed"))
    assert failed.status.failed == 1
    assert not failed.status.succeeded
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=fails").items
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_deleting_a_running_job_deletes_its_pod(kube_api: client.ApiClient, namespace: str) -> None:
    """run-for keeps the Pod Running; the Job's deletion cascades to it and kwok finishes the Pod's
    deletion (there is no kubelet to do it)."""
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("long", annotations={workloads.RUN_FOR_ANNOTATION: "1h"}))

    def running_pod() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=long").items
        assert len(pods) == 1, pods
        assert pods[0].status.phase == "Running", pods[0].status.phase
        return pods[0]

    pod = eventually(running_pod)
    assert condition(batch.read_namespaced_job("long", namespace), "Complete") is None

    batch.delete_namespaced_job("long", namespace, propagation_policy="Background")
    eventually(gone(lambda: core.read_namespaced_pod(pod.metadata.name, namespace)))


def test_a_finished_job_with_a_ttl_is_deleted(kube_api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("short-lived", ttl=0))
    eventually(gone(lambda: batch.read_namespaced_job("short-lived", namespace)))


def test_the_garbage_collector_deletes_what_an_owner_owned(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[reference])),
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )

    core.delete_namespaced_config_map("owner", namespace)
    eventually(gone(lambda: core.read_namespaced_config_map("owned", namespace)))
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_every_namespace_gets_a_default_service_account(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    eventually(present(lambda: core.read_namespaced_service_account("default", namespace)))
    # The root CA publisher gives every namespace the cluster's CA, as in any cluster.
    published = eventually(present(lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace)))
    assert "BEGIN CERTIFICATE" in published.data["ca.crt"]


def test_a_namespace_deletion_finishes(kube_api: client.ApiClient) -> None:
    core, batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
    name = f"t-deleted-{time.monotonic_ns() % 10**8}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content")))
    batch.create_namespaced_job(name, job("inside", annotations={workloads.RUN_FOR_ANNOTATION: "1h"}))

    core.delete_namespace(name)
    eventually(gone(lambda: core.read_namespace(name)), timeout=90)


def _remote_addresses() -> set[str]:
    """The remote IPv4 addresses of this machine's TCP sockets (any state, SYN_SENT included)."""
    found: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote = line.split()[2].split(":")[0]
        found.add(str(ipaddress.IPv4Address(int(remote, 16).to_bytes(4, "little"))))
    return found


def test_nothing_connects_to_fake_addresses(kube_api: client.ApiClient) -> None:
    """After the runs above (this test runs last in the module), no socket on the machine points at a
    fake Node's or Pod's address."""
    leaked = {
        address
        for address in _remote_addresses()
        if in_network(address, workloads.NODE_CIDR) or in_network(address, workloads.POD_CIDR)
    }
    assert not leaked
