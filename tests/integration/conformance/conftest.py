"""The store-conformance tier: the same tests on every store (etcd, sqlite, postgres).

Each store's control plane starts once for the whole tier (fixture ``store_plane``, parametrised,
package-scoped: pytest runs every test of one store before it starts the next) and the usual
fixtures (``kubeconfig``, ``kube_api``, ``kubectl``, ``crds_installed``, then ``namespace``,
``cluster``, ``start_operator``) point at it; the rest of the suite stays on the session's etcd.

The planes compact every 5 s (``--etcd-compaction-interval``; kine keeps no minimum of revisions) and
serve ConfigMap watches and lists from the store itself (no watch cache for ConfigMaps), so that a
watch from an old resourceVersion really expires (410 Gone) on every store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from joch.devcluster import ControlPlane, ControlPlaneError
from tests import helpers

STORES = ("etcd", "sqlite", "postgres")
COMPACTION_SECONDS = 5
APISERVER_ARGS = (f"--etcd-compaction-interval={COMPACTION_SECONDS}s", "--watch-cache-sizes=configmaps#0")
KINE_ARGS = ("--compact-min-retain=0",)

Kubectl = helpers.Kubectl


def conformance_plane(state_dir: Path, store: str) -> ControlPlane:
    """A control plane on ``store`` configured as the tier's (fast compaction, no ConfigMap cache)."""
    return ControlPlane(
        state_dir,
        store=store,
        extra_apiserver_args=APISERVER_ARGS,
        extra_store_args=() if store == "etcd" else KINE_ARGS,
    )


STARTUP: dict[str, float] = {}
"""Start-up seconds of each store's shared plane (printed in the summary of a failing test)."""


@pytest.fixture(scope="package", params=STORES)
def store_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    store: str = request.param
    plane = conformance_plane(tmp_path_factory.mktemp(f"store-{store}"), store)
    started = time.monotonic()
    try:
        plane.start()
    except ControlPlaneError as exc:
        pytest.fail(f"cannot start the {store} control plane: {exc}", pytrace=False)
    STARTUP[store] = time.monotonic() - started
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="package")
def store(store_plane: ControlPlane) -> str:
    assert store_plane.store is not None
    return store_plane.store


@pytest.fixture(scope="package")
def kubeconfig(store_plane: ControlPlane) -> str:
    return str(store_plane.kubeconfig)


@pytest.fixture(scope="package")
def kube_api(kubeconfig: str) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=kubeconfig, persist_config=False)
    try:
        yield api
    finally:
        api.close()
        api.rest_client.pool_manager.clear()


@pytest.fixture(scope="package")
def kubectl(kubeconfig: str) -> Kubectl:
    return helpers.make_kubectl(kubeconfig)


@pytest.fixture(scope="package")
def crds_installed(kubectl: Kubectl) -> list[str]:
    return helpers.install_crds(kubectl)


def kubectl_json(kubectl: Kubectl, *args: str) -> Any:
    out = kubectl(*args, "-o", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
