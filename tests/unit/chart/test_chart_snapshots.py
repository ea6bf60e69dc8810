"""`helm template charts/joch` snapshots, one per install shape (style.md habit 17).

| case                   | values                                                                     |
|------------------------|----------------------------------------------------------------------------|
| cluster                | the defaults: ClusterRole, operator-managed TLS, 2 replicas, PDB            |
| namespace              | rbac.scope=namespace over two namespaces: Roles only, helm-generated TLS    |
| namespace-clusterreader| namespace scope plus the read-only ClusterRole of rbac.clusterReader       |
| certmanager-monitoring | cert-manager TLS, ServiceMonitor, image digest, extra args and env         |

A snapshot differs -> the test fails with the diff. After a deliberate chart change, regenerate with
``JOCH_UPDATE_SNAPSHOTS=1 pytest tests/unit/chart`` and review the diff like code. Generated certificate
material (helm mode) is masked so the snapshots are deterministic.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

import pytest

from tests.unit.chart import helm

SNAPSHOTS = helm.CHART.parent.parent / "tests" / "unit" / "chart" / "snapshots"
UPDATE = os.environ.get("JOCH_UPDATE_SNAPSHOTS") == "1"

_B64 = re.compile(r"^(\s*(?:ca\.crt|tls\.crt|tls\.key|caBundle)): [A-Za-z0-9+/=]{40,}$", re.MULTILINE)

CASES: dict[str, dict[str, Any]] = {
    "cluster": {},
    "namespace": {
        "rbac": {"scope": "namespace", "namespaces": ["team-a", "team-b"]},
        "operator": {"sharedNamespaces": ["joch-system"]},
    },
    "namespace-clusterreader": {
        "rbac": {"scope": "namespace", "namespaces": ["team-a"], "clusterReader": True},
        "operator": {"sharedNamespaces": ["team-a"]},
        "webhook": {"tls": {"mode": "certManager"}},
    },
    "certmanager-monitoring": {
        "image": {"repository": "registry.example/joch", "digest": "sha256:" + "0" * 64},
        "webhook": {"tls": {"mode": "certManager"}},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "operator": {"extraArgs": ["--event-rate=5"], "env": [{"name": "JOCH_KEEP_MANIFESTS", "value": "5"}]},
        "podAnnotations": {"example.com/team": "platform"},
    },
}


def _masked(text: str) -> str:
    return _B64.sub(r"\1: <generated>", text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_template_matches_snapshot(case: str) -> None:
    rendered = _masked(helm.template_text(CASES[case], release="joch", namespace="joch-operator"))
    path = SNAPSHOTS / f"{case}.yaml"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no snapshot {path.name}: run with JOCH_UPDATE_SNAPSHOTS=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
        return
    expected = path.read_text()
    if rendered != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                rendered.splitlines(keepends=True),
                fromfile=f"snapshots/{path.name}",
                tofile="helm template",
                n=2,
            )
        )
        pytest.fail(
            f"helm template differs from snapshots/{path.name} "
            f"(JOCH_UPDATE_SNAPSHOTS=1 regenerates it):\n{diff[:6000]}"
        )


def test_masking_hides_only_certificate_material() -> None:
    rendered = helm.template_text(CASES["namespace"])
    bundles = sum(1 for line in rendered.splitlines() if line.strip().startswith("caBundle: "))
    masked = _masked(rendered)
    assert bundles > 0
    assert masked.count("<generated>") == 3 + bundles  # ca.crt, tls.crt, tls.key + every caBundle
    assert "LS0tLS1CRUdJTi" not in masked  # base64 of "-----BEGIN"
    assert len(masked.splitlines()) == len(rendered.splitlines())
