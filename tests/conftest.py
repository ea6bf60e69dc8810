"""Shared fixtures: the real test control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok fake Nodes; see joch.devcluster).

- ``control_plane`` (session): a ControlPlane started in a temporary directory, or the cluster of an
  existing kubeconfig when $JOCH_KUBECONFIG is set (e.g. ``make dev-up`` + JOCH_KUBECONFIG=.dev/kubeconfig).
- ``kubeconfig`` (session): its kubeconfig path as str.
- ``kube_api`` (session): a kubernetes.client.ApiClient for it (admin, system:masters).
- ``namespace`` (function): a fresh, uniquely named namespace; deleted at teardown without waiting
  for the namespace controller to finish.
- ``kubectl``: a callable running the real kubectl against it.

Tests that use these are marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from joch.devcluster import ControlPlane, ControlPlaneError
from tests import helpers


@dataclass(frozen=True)
class ClusterHandle:
    """The cluster the integration tests talk to."""

    kubeconfig: Path
    control_plane: ControlPlane | None  # None when reusing $JOCH_KUBECONFIG


Kubectl = helpers.Kubectl


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    existing = os.environ.get("JOCH_KUBECONFIG")
    if existing:
        path = Path(existing).absolute()
        if not path.is_file():
            pytest.fail(f"JOCH_KUBECONFIG={existing} does not exist", pytrace=False)
        yield ClusterHandle(kubeconfig=path, control_plane=None)
        return
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"cannot start the test control plane: {exc}", pytrace=False)
    try:
        yield ClusterHandle(kubeconfig=cp.kubeconfig, control_plane=cp)
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ClusterHandle) -> str:
    return str(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def kube_api(kubeconfig: str) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
    try:
        yield api
    finally:
        api.close()
        api.rest_client.pool_manager.clear()


@pytest.fixture
def namespace(kube_api: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"joch.dev/test": "true"}))
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    """``kubectl("get", "ns", input=None, timeout=60)`` -> CompletedProcess (text, captured, no check)."""
    return helpers.make_kubectl(kubeconfig)
