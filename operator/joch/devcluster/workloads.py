"""The controllers that make the local control plane behave like a cluster that runs things.

kube-apiserver on its own stores objects and nothing more: no Pod is ever scheduled, no Job finishes,
owned objects outlive their owners, a deleted namespace stays Terminating forever and no namespace gets
its ``default`` ServiceAccount. By default :class:`joch.devcluster.ControlPlane` therefore also starts

- **kube-controller-manager** (same Kubernetes version as kube-apiserver; its default controllers,
  among them job, garbage collector, namespace, serviceaccount, ttl-after-finished and pod GC), with no
  serving port and no leader election, every controller with the controller-manager's own
  credentials (a development cluster: no per-controller service accounts, so it starts in about a
  second);
- **kube-scheduler**, no serving port, no leader election;
- **kwok** (sigs.k8s.io/kwok), which plays the kubelet for a few fake Nodes: it keeps them Ready with
  node leases, takes a scheduled Pod to Running and a Job's Pod to Succeeded, and finishes the deletion
  of Pods. Nothing runs; no container image is pulled.

The fake Nodes' addresses come from 192.0.2.0/24 and the Pods' from 198.51.100.0/24 (TEST-NET-1 and
TEST-NET-2, RFC 5737: reserved for documentation, routed nowhere). Nothing in the project connects to
them: there is no kubelet, so ``kubectl logs``/``exec`` on a fake Pod fail (the API server would dial a
documentation address) and must not be used.

Two annotations on a Pod (or a Job's Pod template) steer what its fake run does:

- ``devcluster.joch.dev/run-for: "30s"``: stay Running that long before completing (default: at once);
- ``devcluster.joch.dev/exit-code: "3"``: end with that exit code, phase Failed unless it is 0.

The stages are this module's own (:func:`kwok_stages`), written to ``<state>/kwok.yaml`` at start.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = [
    "COMPONENTS",
    "EXIT_CODE_ANNOTATION",
    "FAKE_NODE_ANNOTATION",
    "NODE_CIDR",
    "POD_CIDR",
    "RUN_FOR_ANNOTATION",
    "controller_manager_args",
    "fake_node",
    "fake_node_names",
    "kwok_args",
    "kwok_config",
    "kwok_stages",
    "scheduler_args",
]

COMPONENTS: tuple[str, ...] = ("kube-controller-manager", "kube-scheduler", "kwok")
"""The processes started after kube-apiserver, in start order."""

NODE_CIDR = "192.0.2.0/24"
"""TEST-NET-1 (RFC 5737): the fake Nodes' InternalIPs; reserved for documentation, routed nowhere."""
POD_CIDR = "198.51.100.0/24"
"""TEST-NET-2 (RFC 5737): the fake Pods' IPs."""

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
"""Nodes annotated ``kwok.x-k8s.io/node: fake`` are the ones kwok plays the kubelet for."""
RUN_FOR_ANNOTATION = "devcluster.joch.dev/run-for"
EXIT_CODE_ANNOTATION = "devcluster.joch.dev/exit-code"

_NODE_PREFIX = "kwok-node-"
_CAPACITY = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "200Gi"}


def fake_node_names(count: int) -> list[str]:
    return [f"{_NODE_PREFIX}{index}" for index in range(count)]


def _node_ip(index: int) -> str:
    network = ipaddress.ip_network(NODE_CIDR)
    return str(network.network_address + 10 + index)


def fake_node(index: int, kube_version: str) -> dict[str, Any]:
    """The Node object of fake node ``index`` (kwok fills in its conditions and keeps it Ready)."""
    name = f"{_NODE_PREFIX}{index}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": _node_ip(index)},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": dict(_CAPACITY),
            "capacity": dict(_CAPACITY),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": kube_version,
                "kubeProxyVersion": kube_version,
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "osImage": "kwok",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


# ------------------------------------------------------------------------------------------ kwok stages

_NODE_CONDITIONS = """\
{{ $now := Now }}
conditions:
- type: Ready
  status: "True"
  reason: KubeletReady
  message: kwok plays the kubelet of this fake node
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ or .metadata.creationTimestamp $now | Quote }}
{{ range list "MemoryPressure" "DiskPressure" "PIDPressure" "NetworkUnavailable" }}
- type: {{ . }}
  status: "False"
  reason: KubeletHasNo{{ . }}
  message: fake node
  lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
"""

_NODE_READY = (
    _NODE_CONDITIONS
    + """\
addresses:
{{ YAML .status.addresses 1 }}
allocatable:
{{ YAML .status.allocatable 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
{{ YAML .status.nodeInfo 1 }}
phase: Running
"""
)

_POD_RUNNING = """\
{{ $now := Now }}
conditions:
{{ range list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
- type: {{ . }}
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $host := or .spec.hostNetwork false }}
{{ $uid := or .metadata.uid "" }}
{{ with PodIPsWith .spec.nodeName $host $uid (or .metadata.name "") (or .metadata.namespace "") }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""

_POD_FINISHED = """\
{{ $now := Now }}
{{ $code := "0" }}
{{ with .metadata.annotations }}{{ with index . "EXIT_CODE" }}{{ $code = . }}{{ end }}{{ end }}
conditions:
{{ range list "ContainersReady" "Ready" }}
- type: {{ . }}
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: {{ $code }}
      reason: {{ if eq $code "0" }}Completed{{ else }}Error{{ end }}
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: {{ if eq $code "0" }}Succeeded{{ else }}Failed{{ end }}
""".replace("EXIT_CODE", EXIT_CODE_ANNOTATION)


def _stage(
    name: str, kind: str, selector: list[dict[str, Any]], nxt: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": selector},
            **extra,
            "next": nxt,
        },
    }


def _ready(status: str) -> dict[str, Any]:
    return {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "In" if status == "True" else "NotIn",
        "values": ["True"],
    }


_ALIVE = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}


def _phase(*phases: str) -> dict[str, Any]:
    return {"key": ".status.phase", "operator": "In", "values": list(phases)}


def kwok_stages() -> list[dict[str, Any]]:
    """The lifecycle kwok plays: node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete,
    pod-delete."""
    return [
        _stage("node-initialize", "Node", [_ready("False")], {"statusTemplate": _NODE_READY}),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [_phase("Running"), _ready("True")],
            {"statusTemplate": _NODE_READY},
            # The lease is the heartbeat the node lifecycle controller reads; the status is refreshed
            # rarely, as a kubelet with node leases does.
            delay={"durationMilliseconds": 300_000, "jitterDurationMilliseconds": 310_000},
        ),
        _stage(
            "pod-ready", "Pod", [_ALIVE, _phase("Pending"), _ready("False")], {"statusTemplate": _POD_RUNNING}
        ),
        _stage(
            "pod-complete",
            "Pod",
            [
                _ALIVE,
                _phase("Running"),
                _ready("True"),
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ],
            {"statusTemplate": _POD_FINISHED},
            delay={
                "durationMilliseconds": 0,
                "durationFrom": {"expressionFrom": f'.metadata.annotations["{RUN_FOR_ANNOTATION}"]'},
            },
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
    ]


def kwok_config() -> list[dict[str, Any]]:
    """The documents of ``<state>/kwok.yaml``: kwok's options and the stages."""
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        "options": {
            "cidr": POD_CIDR,
            "nodeIP": str(ipaddress.ip_network(NODE_CIDR).network_address + 1),
            "manageNodesWithAnnotationSelector": f"{FAKE_NODE_ANNOTATION}=fake",
            "nodeLeaseDurationSeconds": 40,
            "nodeLeaseParallelism": 4,
            "podPlayStageParallelism": 4,
            "nodePlayStageParallelism": 4,
            "podsOnNodeSyncParallelism": 1,
            "enablePodsOnNodeSyncListPager": True,
            "enablePodsOnNodeSyncStreamWatch": False,
            # No kubelet-like server: no logs, exec or profiling endpoints, no listening port.
            "serverAddress": "",
            "enableDebuggingHandlers": False,
            "enableProfilingHandler": False,
            "enableContentionProfiling": False,
        },
    }
    return [options, *kwok_stages()]


# ------------------------------------------------------------------------------------------ arguments


def controller_manager_args(
    *,
    kubeconfig: str,
    root_ca: str,
    service_account_key: str,
    signing_cert: str,
    signing_key: str,
    service_cluster_ip_range: str,
    cluster_name: str,
) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        "--secure-port=0",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        f"--root-ca-file={root_ca}",
        f"--service-account-private-key-file={service_account_key}",
        f"--cluster-signing-cert-file={signing_cert}",
        f"--cluster-signing-key-file={signing_key}",
        f"--service-cluster-ip-range={service_cluster_ip_range}",
        f"--cluster-name={cluster_name}",
        "--controllers=*",
        # Fake nodes have no routes or cloud: nothing to allocate or configure.
        "--allocate-node-cidrs=false",
        "--configure-cloud-routes=false",
        "--v=1",
    ]


def scheduler_args(*, kubeconfig: str) -> list[str]:
    return [f"--kubeconfig={kubeconfig}", "--secure-port=0", "--leader-elect=false", "--v=1"]


def kwok_args(*, kubeconfig: str, config: str) -> list[str]:
    return [f"--kubeconfig={kubeconfig}", f"--config={config}", "--v=WARN"]
