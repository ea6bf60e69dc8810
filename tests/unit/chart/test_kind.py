"""kind-config.yaml and hack/kind.mk (they need Docker, so they are checked without running: the kind
config parses as a kind Cluster with workers for both replicas, and `make -n kind-deploy` prints the
documented steps)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests import helpers


def test_kind_config() -> None:
    config = yaml.safe_load((helpers.ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1
    assert roles.count("worker") >= 2


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_kind_deploy_dry_run() -> None:
    done = subprocess.run(
        ["make", "-n", "-f", "Makefile", "-f", "hack/kind.mk", "kind-deploy"],
        cwd=helpers.ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    steps = done.stdout
    for expected in (
        "kind create cluster --config kind-config.yaml --name joch",
        "docker build -t ghcr.io/joch-dev/joch:dev .",
        "kind load docker-image ghcr.io/joch-dev/joch:dev --name joch",
        "helm upgrade --install joch charts/joch --kube-context kind-joch",
        "--namespace joch-operator --create-namespace",
        "kubectl --context kind-joch wait --for=condition=Ready agent/support-triage -n support",
    ):
        assert expected in steps, expected
    assert (
        steps.index("docker build")
        < steps.index("helm upgrade")
        < steps.index("kubectl --context kind-joch apply")
    )
