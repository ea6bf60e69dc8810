"""The helm binaries `make tools` builds know the Kubernetes version they were built against.

A plain `go install` of Helm 3 leaves its assumed Kubernetes version at v1.20, so `helm template`
of a chart requiring a newer Kubernetes (ours: >=1.30) fails with "incompatible with Kubernetes
v1.20.0". hack/tools.sh sets the version the way Helm's release build does; this runs exactly the
command a new user tries, with no --kube-version.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests import helpers
from tests.unit.chart import helm as helm_support


@pytest.mark.parametrize("name", ["helm", "helm4"])
def test_helm_template_renders_the_chart_without_a_kube_version(name: str) -> None:
    binary = helm_support.binary(name)
    done = subprocess.run(
        [binary, "template", "joch", str(helpers.ROOT / "charts" / "joch")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "incompatible with Kubernetes" not in done.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(done.stdout) if doc}
    assert {"Deployment", "ServiceAccount", "ClusterRole"} <= kinds
