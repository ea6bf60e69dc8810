"""Argo CD Lua health checks and Flux healthCheckExprs of charts/joch, on kstatus status shapes.

The real status objects from the test cluster are checked in tests/integration/test_helm_gitops.py; these
cases pin every branch of argocd/health.lua, and Flux's CEL agrees with it on each.

| case                               | Argo CD     | Flux       |
|------------------------------------|-------------|------------|
| no status yet                      | Progressing | InProgress |
| observedGeneration behind          | Progressing | InProgress |
| Reconciling=True (missing ref)     | Progressing | InProgress |
| Ready=True, current generation     | Healthy     | Current    |
| Stalled=True (capability mismatch) | Degraded    | Failed     |
| Ready=False, phase Failed          | Degraded    | Failed     |
| Ready=False, phase Pending         | Progressing | InProgress |
| Ready's own observedGeneration old | Progressing | (n/a)      |
| MCPServer phase Suspended          | Suspended   | (n/a)      |
| kind not reconciled, no status     | Healthy     | (none)     |
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.api import v1alpha1
from tests import helpers
from tests.unit.chart import gitops


def _condition(
    type_: str, status: str, reason: str = "Reason", message: str = "", generation: int = 2
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def _obj(kind: str = "Agent", *, generation: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    model = v1alpha1.kind_named(kind)
    body: dict[str, Any] = {
        "apiVersion": model.crd.api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = status
    return body


COMPILED = {
    "phase": "Ready",
    "observedGeneration": 2,
    "conditions": [
        _condition("Ready", "True", "Compiled", "compiled manifest x-g2"),
        _condition("Reconciling", "False", "Reconciled"),
        _condition("Stalled", "False", "Reconciled"),
    ],
}
WAITING = {
    "phase": "Pending",
    "observedGeneration": 2,
    "conditions": [
        _condition("Ready", "False", "MissingReference", "Tool ns/t not found"),
        _condition("Reconciling", "True", "WaitingForReferences", "waiting for Tool ns/t"),
        _condition("Stalled", "False", "Reconciled"),
    ],
}
STALLED = {
    "phase": "Failed",
    "observedGeneration": 2,
    "conditions": [
        _condition("Ready", "False", "CapabilityMismatch", "adapter lacks streaming"),
        _condition("Reconciling", "False", "Reconciled"),
        _condition("Stalled", "True", "CapabilityMismatch", "adapter lacks streaming"),
    ],
}

CASES = [
    pytest.param(_obj(), "Progressing", "InProgress", "report status", id="no status yet"),
    pytest.param(
        _obj(generation=3, status=COMPILED),
        "Progressing",
        "InProgress",
        "generation 3",
        id="generation behind",
    ),
    pytest.param(_obj(status=WAITING), "Progressing", "InProgress", "WaitingForReferences", id="reconciling"),
    pytest.param(_obj(status=COMPILED), "Healthy", "Current", "Compiled: compiled manifest", id="ready"),
    pytest.param(_obj(status=STALLED), "Degraded", "Failed", "CapabilityMismatch: adapter", id="stalled"),
    pytest.param(
        _obj(
            "Policy",
            status={
                "phase": "Failed",
                "observedGeneration": 2,
                "conditions": [_condition("Ready", "False", "InvalidPolicy", "rule 1")],
            },
        ),
        "Degraded",
        "Failed",
        "InvalidPolicy: rule 1",
        id="referenced kind failed",
    ),
    pytest.param(
        _obj(
            "ModelRoute",
            status={
                "phase": "Pending",
                "observedGeneration": 2,
                "conditions": [_condition("Ready", "False", "MissingReference", "model")],
            },
        ),
        "Progressing",
        "InProgress",
        "MissingReference",
        id="referenced kind pending",
    ),
    pytest.param(
        _obj(
            "Model",
            status={
                "phase": "Ready",
                "observedGeneration": 2,
                "conditions": [_condition("Ready", "True", "Accepted")],
            },
        ),
        "Healthy",
        "Current",
        "Accepted",
        id="referenced kind ready",
    ),
]


@pytest.mark.parametrize(("obj", "argocd", "flux", "message"), CASES)
def test_health(obj: dict[str, Any], argocd: str, flux: str, message: str) -> None:
    status, text = gitops.argocd_health(obj)
    assert (status, flux) == (argocd, gitops.flux_health(obj))
    assert message in text
    assert gitops.ARGO_TO_FLUX[status] == flux


def test_ready_condition_of_an_older_generation_is_progressing() -> None:
    status = {**COMPILED, "conditions": [_condition("Ready", "True", generation=1)]}
    assert gitops.argocd_health(_obj(status=status))[0] == "Progressing"


def test_suspended_mcp_server() -> None:
    status = {
        "phase": "Suspended",
        "observedGeneration": 2,
        "conditions": [_condition("Ready", "False", "Quarantined")],
    }
    assert gitops.argocd_health(_obj("MCPServer", status=status)) == ("Suspended", "Quarantined")


def test_kinds_the_operator_does_not_reconcile_are_healthy_without_status() -> None:
    assert gitops.argocd_health(_obj("Budget")) == ("Healthy", "joch does not report on this kind")
    assert gitops.flux_health(_obj("Budget")) is None  # Flux's kstatus default: Current
    # ...and once something reports kstatus conditions, they count.
    assert gitops.argocd_health(_obj("Budget", status=STALLED))[0] == "Degraded"


@pytest.mark.parametrize("kind", [m.crd.kind for m in v1alpha1.KINDS])
def test_every_kind_has_a_health_check(kind: str) -> None:
    assert gitops.lua_for(_obj(kind))


def test_docs_show_the_generated_flux_expressions() -> None:
    from joch.manifests import chart

    text = (helpers.ROOT / "docs" / "gitops.md").read_text()
    for expression in (chart.FLUX_IN_PROGRESS, chart.FLUX_FAILED, chart.FLUX_CURRENT):
        assert expression in text
