"""The executions service (joch.controllers.executions) over the in-memory API server.

Cases: a new Execution gets exactly one Job (built from the Agent's current manifest) and a restart
creates no second one; a Job created before a crash, whose status never followed, is adopted: the
status is derived from the Job's annotations and no Job is created again; the Job completing makes the
Execution Succeeded with an Event; a cap of one queues the second Execution and the first one's end
starts it; an Agent that is not compiled keeps its Execution Pending, a deleted Agent fails it; a
finished Execution past its retention is deleted, one within it is not.
"""

from __future__ import annotations

import datetime
from typing import Any

from joch import metrics
from joch.api.v1alpha1.execution import Execution
from joch.controllers.compile import CompileService
from joch.controllers.executions import ExecutionService
from joch.controllers.reconciler import Controller
from joch.domain.reconcile import executions as plan
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, NS, example_world, obj, run, settle, started

SERVICES = (CompileService, ExecutionService)


def execution_doc(name: str, agent: str = "support-triage", **status: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"agentRef": {"name": agent}, "input": {"content": [{"kind": "text", "text": "hi"}]}},
    }
    if status:
        doc["status"] = status
    return doc


def job_posts(kube: FakeKube) -> list[str]:
    return [path for method, path, _ in kube.landed if method == "POST" and path.endswith("/jobs")]


def service(controller: Controller) -> ExecutionService:
    found = next(s for s in controller.services if isinstance(s, ExecutionService))
    assert isinstance(found, ExecutionService)
    return found


def finish(
    controller: Controller, kube: FakeKube, name: str, kind: str = "Complete", reason: str = ""
) -> None:
    """The job controller's part: mark the Job finished and tell the service (its watch would)."""
    job = obj(kube, "jobs", name)
    stamp = "2026-11-27T12:00:05Z"
    job["status"] = {
        "startTime": "2026-11-27T12:00:00Z",
        "conditions": [{"type": kind, "status": "True", "reason": reason, "lastTransitionTime": stamp}],
    }
    if kind == "Complete":
        job["status"]["completionTime"] = stamp
    service(controller).observe_job("MODIFIED", job)


def feed(controller: Controller, kube: FakeKube, plural: str, name: str) -> None:
    """Deliver the current object as a watch event."""
    kind = {"executions": "Execution", "agents": "Agent"}[plural]
    controller.observe(kind, "MODIFIED", obj(kube, plural, name))


def test_one_job_per_execution_from_the_current_manifest_and_none_again_after_a_restart() -> None:
    async def scenario() -> None:
        kube = example_world(execution_doc("run-1"))
        started_before = metrics.EXECUTIONS_STARTED._value.get()
        controller = await started(kube, services=SERVICES)
        # The compile service wrote the Agent's status after the first pass looked: the Agent change
        # queues the waiting Execution's slots.
        feed(controller, kube, "agents", "support-triage")
        await settle(controller)
        assert job_posts(kube) == [f"/apis/batch/v1/namespaces/{NS}/jobs"]
        assert metrics.EXECUTIONS_STARTED._value.get() == started_before + 1
        job = obj(kube, "jobs", "run-1")
        manifest = obj(kube, "agents", "support-triage")["status"]["compiledManifest"]
        assert job["metadata"]["annotations"][plan.ANNOTATION_MANIFEST] == manifest["name"]
        assert job["metadata"]["annotations"][plan.ANNOTATION_MANIFEST_SHA256] == manifest["sha256"]
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["manifest"]["configMap"]["name"] == manifest["name"]
        run_1 = obj(kube, "executions", "run-1")
        assert job["metadata"]["ownerReferences"][0]["uid"] == run_1["metadata"]["uid"]
        assert run_1["status"]["phase"] == "Running"
        assert run_1["status"]["manifestRef"] == {"name": manifest["name"], "sha256": manifest["sha256"]}
        assert obj(kube, "serviceaccounts", "joch-worker")["metadata"]["name"] == "joch-worker"
        assert obj(kube, "rolebindings", "joch-worker")["roleRef"]["name"] == "joch-worker"
        await controller.stop()

        before = len(kube.landed)
        again = await started(kube, services=SERVICES)
        assert job_posts(kube) == [f"/apis/batch/v1/namespaces/{NS}/jobs"]
        assert [(m, b) for m, p, b in kube.landed[before:] if "/executions/" in p] == []
        await again.stop()

    run(scenario)


def test_a_job_created_before_a_crash_is_adopted_and_its_status_derived_from_it() -> None:
    async def scenario() -> None:
        kube = example_world(execution_doc("run-1"))
        stored = obj(kube, "executions", "run-1")
        execution = Execution.model_validate(stored)
        launch = plan.Launch(
            "support-triage-g1", "a" * 64, "img:1", "http://gw", "http://router", "http://trace"
        )
        desired = plan.desired_job(execution, stored["metadata"]["uid"], launch, plan.ExecutionSettings())
        kube.put("batch", "jobs", desired)
        controller = await started(kube, services=SERVICES)
        assert job_posts(kube) == []  # the Job of the crashed run is the one
        status = obj(kube, "executions", "run-1")["status"]
        assert status["phase"] == "Running"
        assert status["manifestRef"] == {"name": "support-triage-g1", "sha256": "a" * 64}

        finish(controller, kube, "run-1")
        await settle(controller)
        status = obj(kube, "executions", "run-1")["status"]
        assert status["phase"] == "Succeeded"
        assert status["durationMs"] == 5000
        assert status["manifestRef"] == {"name": "support-triage-g1", "sha256": "a" * 64}
        events = [body for body in kube.of("events") if body["involvedObject"]["name"] == "run-1"]
        assert "Succeeded" in {event["reason"] for event in events}
        await controller.stop()

    run(scenario, timeout=30)


def test_a_cap_of_one_queues_the_second_and_the_first_ones_end_starts_it() -> None:
    async def scenario() -> None:
        kube = example_world(execution_doc("a-first"), execution_doc("b-second"))
        # The example's Deployment allows 8 (maxReplicas): without it the setting (1) applies.
        del kube.objects[("ops.joch.dev", "deployments", NS, "support-triage-prod")]
        controller = await started(kube, services=SERVICES, executions=plan.ExecutionSettings(concurrency=1))
        feed(controller, kube, "agents", "support-triage")
        await settle(controller)
        assert [p.rsplit("/", 1)[-1] for p in job_posts(kube)] == ["jobs"]
        assert obj(kube, "executions", "a-first")["status"]["phase"] == "Running"
        queued = obj(kube, "executions", "b-second")["status"]
        assert queued["phase"] == "Queued"
        assert "at most 1 at once" in queued["conditions"][0]["message"]

        finish(controller, kube, "a-first", "Failed", "BackoffLimitExceeded")
        await settle(controller)
        assert obj(kube, "executions", "a-first")["status"]["phase"] == "Failed"
        assert obj(kube, "executions", "b-second")["status"]["phase"] == "Running"
        assert len(job_posts(kube)) == 2
        await controller.stop()

    run(scenario, timeout=30)


def test_an_agent_not_compiled_keeps_it_pending_and_a_missing_agent_fails_it() -> None:
    async def scenario() -> None:
        kube = example_world(execution_doc("run-1"), execution_doc("run-2", agent="ghost"))
        controller = await started(kube, services=(ExecutionService,))  # no compile service: no status
        await settle(controller)
        pending = obj(kube, "executions", "run-1")["status"]
        assert pending["phase"] == "Pending"
        assert pending["conditions"][0]["reason"] == "AgentNotReady"
        failed = obj(kube, "executions", "run-2")["status"]
        assert failed["phase"] == "Failed"
        assert failed["conditions"][0]["reason"] == "AgentNotFound"
        assert job_posts(kube) == []
        await controller.stop()

    run(scenario)


def test_finished_executions_are_deleted_after_their_retention() -> None:
    def ended(hours: int) -> dict[str, Any]:
        stamp = (NOW - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"phase": "Succeeded", "startedAt": stamp, "completedAt": stamp}

    counted = {"budgetsCharged": [f"{NS}/support-platform-monthly"]}  # the example's Budget covers them

    async def scenario() -> None:
        kube = example_world(
            execution_doc("old", **ended(25), **counted),
            execution_doc("uncounted", **ended(25)),
            execution_doc("recent", **ended(1), **counted),
        )
        controller = await started(kube, services=(ExecutionService,))
        deleted = [p for m, p, _ in kube.landed if m == "DELETE"]
        assert deleted == [f"/apis/runtime.joch.dev/v1alpha1/namespaces/{NS}/executions/old"]
        assert obj(kube, "executions", "recent")["status"]["phase"] == "Succeeded"
        # Past its retention but not counted by the Budget covering it yet: kept (docs/budgets.md).
        assert obj(kube, "executions", "uncounted")["status"]["phase"] == "Succeeded"
        await controller.stop()

    run(scenario)
