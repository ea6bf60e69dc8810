"""Deployment promotion gates through the real API server, with joch's webhooks registered.

The webhook server runs in-process (admission_fixtures); its store stand-in lists Evals and Approvals
with their status, as the operator's store does. Statuses are written the only way they can be: through
the status subresource (``kubectl patch --subresource=status``).

| case | client | expected |
|---|---|---|
| Eval not run, no Approval | kubectl apply | denied, both gates named; nothing stored |
| Eval Passed (status patched) with good scores, Approval Approved | kubectl apply | the same apply admitted |
| scores below a threshold | kubectl apply | denied naming metric, threshold and measured value |
| the Eval regresses, the admitted Deployment is scaled | kubectl patch / apply | admitted (gates not due) |
| the admitted Deployment is moved to another Agent | kubectl apply | denied |
| joch apply of the gated Deployment, before and after the gates pass | joch apply | exit 1, then 0 |
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
from typing import Any

import pytest

from joch.cli import apply
from tests.integration.admission_fixtures import (
    Harness,
    harness_fixture,
    webhooks_fixture,
    write_docs,
)
from tests.unit.admission import factories as f

pytestmark = pytest.mark.integration

webhooks = pytest.fixture(scope="module")(webhooks_fixture)
harness = pytest.fixture(harness_fixture)

GATES = {"requiresEval": "triage-quality", "requiresApproval": "release-manager"}
GOOD_SCORES = {"accuracy": 0.93, "pii_leakage": 0.0}


def _fleet(h: Harness) -> list[dict[str, Any]]:
    """The Agent and what it needs, with this test's own FrameworkAdapter and Environment."""
    adapter = f"py-sdk-{h.suffix}"
    docs = [d for d in f.fleet() if d["kind"] not in ("FrameworkAdapter", "Environment")]
    agent = f.agent(labels={"env": f"dev-{h.suffix}"}, framework={"adapterRef": {"name": adapter}})
    other = f.agent(
        "other-agent", labels={"env": f"dev-{h.suffix}"}, framework={"adapterRef": {"name": adapter}}
    )
    return [*docs, f.adapter(adapter), f.environment(f"dev-{h.suffix}"), agent, other]


def _unstatused(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "status"}


APPROVER = ("--as=alice", "--as-group=system:masters", "--as-group=release-manager")
"""A release manager (the group the gate's bare role names) who may write statuses."""


def _patch_status(
    h: Harness, resource: str, name: str, status: dict[str, Any], *, as_user: tuple[str, ...] = ()
) -> None:
    done = h.kubectl_run(
        *as_user,
        "patch",
        resource,
        name,
        "-n",
        h.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert done.returncode == 0, done.stderr
    h.webhooks.lookup.refresh()


def _run_status(phase: str, scores: dict[str, float]) -> dict[str, Any]:
    """An Eval status recording one ended run of the fleet's Agent (generation 1: created once)."""
    run = {
        "execution": "triage-quality-run",
        "trigger": "manual",
        "phase": phase,
        "agentGeneration": 1,
        "completedAt": "2025-01-01T00:00:00Z",
        "scores": scores,
    }
    return {"phase": phase, "lastRunAt": "2025-01-01T00:00:00Z", "scores": scores, "runs": [run]}


def _pass_the_gates(h: Harness, scores: dict[str, float] = GOOD_SCORES) -> None:
    _patch_status(
        h,
        "evals.ops.joch.dev",
        "triage-quality",
        _run_status("Passed", scores),
    )
    h.setup([_unstatused(f.approval(approvers=("role:release-manager",)))])
    # A decision by a routed approver; the server stamps decidedBy and decidedAt.
    _patch_status(
        h, "approvals.runtime.joch.dev", "promote-triage", {"decision": "approve"}, as_user=APPROVER
    )


def test_a_deployment_is_admitted_only_once_its_gates_pass(harness: Harness) -> None:
    harness.setup([*_fleet(harness), _unstatused(f.eval_())])
    deployment = f.deployment(promotion=GATES)

    denied = harness.kubectl_apply(deployment)
    assert not denied.ok
    assert 'admission webhook "validate.deployments.ops.joch.dev" denied the request' in denied.message
    assert "Deployment/triage: spec.promotion.requiresEval: Eval " in denied.message
    assert f"Eval {harness.namespace}/triage-quality has not run yet; it must have passed" in denied.message
    assert (
        "spec.promotion.requiresApproval: an approved promotion Approval for release-manager is required"
        in (denied.message)
    )
    assert "Forbidden" in denied.message
    assert harness.get("Deployment", "triage") is None

    _pass_the_gates(harness)
    admitted = harness.kubectl_apply(deployment)
    assert admitted.ok, admitted.message
    assert admitted.warnings == ()
    assert harness.get("Deployment", "triage") is not None


def test_a_missed_threshold_names_metric_threshold_and_value(harness: Harness) -> None:
    harness.setup([*_fleet(harness), _unstatused(f.eval_())])
    _pass_the_gates(harness, scores={"accuracy": 0.82, "pii_leakage": 0.0})
    denied = harness.kubectl_apply(f.deployment(promotion=GATES))
    assert not denied.ok
    assert (
        f"spec.promotion.requiresEval: Eval {harness.namespace}/triage-quality: metric accuracy scored 0.82 "
        "in run triage-quality-run, which misses its threshold >=0.9"
    ) in denied.message
    assert "requiresApproval" not in denied.message, "the Approval gate passed"


def test_scaling_an_admitted_deployment_ignores_a_regressed_eval(harness: Harness) -> None:
    harness.setup([*_fleet(harness), _unstatused(f.eval_())])
    _pass_the_gates(harness)
    deployment = f.deployment(promotion=GATES)
    assert harness.kubectl_apply(deployment).ok

    _patch_status(harness, "evals.ops.joch.dev", "triage-quality", _run_status("Failed", GOOD_SCORES))
    scaled = harness.kubectl(
        "patch", "jdeploy", "triage", "-n", harness.namespace, "--type=merge", "-p", '{"spec":{"replicas":5}}'
    )
    assert scaled.ok, scaled.message
    reapplied = harness.kubectl_apply(f.merge(deployment, {"spec": {"replicas": 3}}))
    assert reapplied.ok, reapplied.message
    stored = harness.get("Deployment", "triage")
    assert stored is not None
    assert stored["spec"]["replicas"] == 3

    moved = harness.kubectl_apply(f.merge(deployment, {"spec": {"agentRef": {"name": "other-agent"}}}))
    assert not moved.ok
    assert (
        f"Eval {harness.namespace}/triage-quality: its newest run for Agent other-agent generation 1 "
        "(Execution triage-quality-run) is Failed"
    ) in moved.message
    assert (
        f"evaluates Agent {harness.namespace}/support-triage, not the Deployment's Agent "
        f"{harness.namespace}/other-agent"
    ) in moved.message


def _joch_apply(*argv: str, kubeconfig: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    apply.register(parser.add_subparsers())
    args = parser.parse_args(["apply", "--kubeconfig", kubeconfig, *argv])
    out = io.StringIO()
    return apply.run(args, out=out), out.getvalue()


def test_joch_apply_applies_the_same_gates(harness: Harness, kubeconfig: str, tmp_path: pathlib.Path) -> None:
    harness.setup(_fleet(harness))
    docs = [harness.place(d) for d in (_unstatused(f.eval_()), f.deployment(promotion=GATES))]
    write_docs(tmp_path, docs)
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 1, out
    assert "FAIL  Deployment/triage" in out
    assert "error: Deployment/triage: spec.promotion.requiresEval: " in out
    assert "has not run yet" in out
    assert "nothing was applied" in out
    assert harness.get("Eval", "triage-quality") is None

    harness.setup([docs[0]])
    _pass_the_gates(harness)
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 0, out
    assert harness.get("Deployment", "triage") is not None
