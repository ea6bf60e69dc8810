"""Helm 4 renders charts/joch exactly as Helm 3 does (apiVersion v2, no function Helm 4 dropped).

Needs bin/helm4 (Helm 4, built by ``make tools`` next to the pinned Helm 3). Without it the module skips
on a developer's machine and fails in CI (tests/unit/chart/helm.py, ``binary``).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.chart import helm

CASES = {
    "cluster": {},
    "namespace": {
        "rbac": {"scope": "namespace", "namespaces": ["team-a"]},
        "webhook": {"tls": {"mode": "certManager"}},
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True}},
        "webhook": {"tls": {"mode": "certManager"}},
    },
}


@pytest.fixture(scope="module", autouse=True)
def helm4() -> str:
    return helm.binary("helm4")


def test_helm4_lint_strict() -> None:
    done = helm.helm("lint", "--strict", str(helm.CHART), "--kube-version", helm.KUBE_VERSION, name="helm4")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm4_renders_what_helm3_renders(case: str) -> None:
    def docs(name: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The documents by (kind, namespace, name): the two versions order the output differently."""
        rendered = [d for d in yaml.safe_load_all(helm.template_text(CASES[case], name=name)) if d]
        keyed = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in rendered}
        assert len(keyed) == len(rendered)
        return keyed

    helm3, helm4 = docs("helm"), docs("helm4")
    assert sorted(helm4) == sorted(helm3)
    for key, document in helm3.items():
        assert helm4[key] == document, key
