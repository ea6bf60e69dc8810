"""The executions plan (joch.domain.reconcile.executions): pure functions, no cluster.

Cases: the Job of an Execution (name, owner, labels, annotations, image, environment, the manifest
ConfigMap and the input mounted through the Downward API, copied Pod annotations, a restricted security
context, backoffLimit 0, the deadline and the TTL); the trimmed views of a Job and a Pod; the status
derived from a Job and its Pods (Running, Starting, Succeeded, TimedOut, Failed with the exit code,
PodDeleted, nothing once terminal, the pinned manifestRef / abomSnapshotRef / startedAt); waiting and
ended statuses; which queued Executions start; what a worker may report; the conditions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest

from joch.api.v1alpha1.execution import Execution
from joch.domain.reconcile import executions as plan
from joch.domain.reconcile.status import conditions_by_type

NS = "support"
UID = "11111111-2222-3333-4444-555555555555"
SHA = "a" * 64
T0 = "2026-11-27T12:00:00Z"
T5 = "2026-11-27T12:00:05Z"
T9 = "2026-11-27T12:00:09Z"
TEXT_INPUT: dict[str, Any] = {"content": [{"kind": "text", "text": "Summarise ticket 42, please."}]}


def execution(
    name: str = "run-1",
    *,
    agent: str = "support-triage",
    annotations: Mapping[str, str] | None = None,
    timeout: int | None = None,
    input_: Mapping[str, Any] | None = TEXT_INPUT,
) -> Execution:
    metadata: dict[str, Any] = {"name": name, "namespace": NS}
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {"agentRef": {"name": agent}}
    if input_ is not None:
        spec["input"] = copy.deepcopy(dict(input_))
    if timeout is not None:
        spec["timeoutSeconds"] = timeout
    return Execution.model_validate(
        {"apiVersion": "runtime.joch.dev/v1alpha1", "kind": "Execution", "metadata": metadata, "spec": spec}
    )


def launch(*, agbom: tuple[str, int] | None = ("support-triage", 7)) -> plan.Launch:
    return plan.Launch(
        manifest_name="support-triage-g3",
        manifest_sha256=SHA,
        image="ghcr.io/example/adapter:1.2.3",
        gateway_url="http://gateway.joch-system:8080",
        router_url="http://router.joch-system:8080",
        trace_url="http://trace.joch-system:4318",
        agbom=agbom,
    )


def job_view(
    *,
    annotations: Mapping[str, str] | None = None,
    finished: tuple[str, str, str, str] | None = None,
    start_time: str | None = T0,
    completion_time: str | None = None,
) -> plan.JobView:
    return plan.JobView(
        name="run-1",
        uid="job-uid",
        created=T0,
        annotations=dict(
            annotations
            if annotations is not None
            else {
                plan.ANNOTATION_MANIFEST: "support-triage-g3",
                plan.ANNOTATION_MANIFEST_SHA256: SHA,
                plan.ANNOTATION_AGBOM: "support-triage",
                plan.ANNOTATION_AGBOM_GENERATION: "7",
            }
        ),
        start_time=start_time,
        completion_time=completion_time,
        finished=finished,
    )


def pod(
    name: str = "run-1-abcde",
    phase: str = "Running",
    *,
    created: str = T0,
    exit_code: int | None = None,
    reason: str = "",
    message: str = "",
    deleting: bool = False,
) -> plan.PodView:
    return plan.PodView(
        name=name,
        uid=f"uid-{name}",
        phase=phase,
        created=created,
        reason=reason,
        message=message,
        exit_code=exit_code,
        deleting=deleting,
    )


def run(
    current: Mapping[str, Any],
    job: plan.JobView,
    pods: list[plan.PodView],
    *,
    deleted_pods: tuple[str, ...] = (),
    now: str = T9,
) -> dict[str, Any]:
    status = plan.run_status(current, job, pods, deleted_pods=deleted_pods, generation=1, now=now)
    assert status is not None
    return status


def by_type(status: Mapping[str, Any]) -> dict[Any, Mapping[str, Any]]:
    return conditions_by_type(status)


# --- the Job ------------------------------------------------------------------------------------------


def _env(job: Mapping[str, Any]) -> dict[str, str]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_job_is_named_and_owned_like_its_execution() -> None:
    job = plan.desired_job(execution(), UID, launch(), plan.ExecutionSettings())
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    metadata = job["metadata"]
    assert metadata["name"] == "run-1"
    assert metadata["namespace"] == NS
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "runtime.joch.dev/v1alpha1",
            "kind": "Execution",
            "name": "run-1",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = {"joch.dev/agent": "support-triage", "joch.dev/execution": "run-1"}
    assert metadata["labels"] == labels
    assert job["spec"]["template"]["metadata"]["labels"] == labels, "the Pods carry the same labels"


def test_the_job_records_what_the_run_starts_from() -> None:
    job = plan.desired_job(execution(), UID, launch(), plan.ExecutionSettings())
    assert job["metadata"]["annotations"] == {
        "joch.dev/manifest": "support-triage-g3",
        "joch.dev/manifest-sha256": SHA,
        "joch.dev/agbom": "support-triage",
        "joch.dev/agbom-generation": "7",
    }
    without = plan.desired_job(execution(), UID, launch(agbom=None), plan.ExecutionSettings())
    assert without["metadata"]["annotations"] == {
        "joch.dev/manifest": "support-triage-g3",
        "joch.dev/manifest-sha256": SHA,
    }, "no AgBOM, no AgBOM annotations"


def test_the_worker_container_image_environment_and_mounts() -> None:
    job = plan.desired_job(execution(), UID, launch(), plan.ExecutionSettings())
    pod_spec = job["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    assert container["image"] == "ghcr.io/example/adapter:1.2.3"
    env = _env(job)
    assert env["JOCH_EXECUTION_ID"] == UID
    assert env["JOCH_GATEWAY_URL"] == "http://gateway.joch-system:8080"
    assert env["JOCH_ROUTER_URL"] == "http://router.joch-system:8080"
    assert env["JOCH_TRACE_URL"] == "http://trace.joch-system:4318"
    assert env["JOCH_EXECUTION_NAME"] == "run-1"
    assert env["JOCH_NAMESPACE"] == NS

    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert set(volumes) == set(mounts) == {"manifest", "input"}
    assert all(mount["readOnly"] is True for mount in mounts.values())
    config_map = volumes["manifest"]["configMap"]
    assert config_map["name"] == "support-triage-g3", "the manifest ConfigMap of the launch is mounted"
    [item] = config_map["items"]
    assert env["JOCH_MANIFEST"] == f"{mounts['manifest']['mountPath']}/{item['path']}"

    [field] = volumes["input"]["downwardAPI"]["items"]
    assert field["fieldRef"]["fieldPath"] == "metadata.annotations['joch.dev/input']"
    assert env["JOCH_INPUT"] == f"{mounts['input']['mountPath']}/{field['path']}"


def test_the_input_travels_as_a_compact_json_pod_annotation() -> None:
    rich = {
        "content": [
            {"kind": "text", "text": "Look at this:"},
            {"kind": "data", "data": {"ticket": 42, "tags": ["vip", None], "nested": {"b": 1, "a": 2}}},
            {"kind": "file", "uri": "s3://bucket/report.pdf", "mimeType": "application/pdf"},
        ]
    }
    job = plan.desired_job(execution(input_=rich), UID, launch(), plan.ExecutionSettings())
    annotation = job["spec"]["template"]["metadata"]["annotations"]["joch.dev/input"]
    assert json.loads(annotation) == rich, "the worker reads spec.input exactly as written"
    assert annotation == json.dumps(rich, sort_keys=True, separators=(",", ":")), "compact, sorted keys"
    assert " " not in annotation.replace("Look at this:", "")
    assert annotation == plan.input_json(execution(input_=rich))

    empty = plan.desired_job(execution(input_=None), UID, launch(), plan.ExecutionSettings())
    assert empty["spec"]["template"]["metadata"]["annotations"]["joch.dev/input"] == "{}"


def test_pod_annotations_are_copied_only_under_a_configured_prefix() -> None:
    annotations = {
        "devcluster.joch.dev/outcome": "fail",
        "devcluster.joch.dev/exit-code": "3",
        "devcluster.joch.dev.example.com/other": "no",
        "example.com/devcluster.joch.dev/x": "no",
        "team": "support",
    }
    source = execution(annotations=annotations)
    plain = plan.desired_job(source, UID, launch(), plan.ExecutionSettings())
    assert set(plain["spec"]["template"]["metadata"]["annotations"]) == {"joch.dev/input"}, (
        "no prefix configured, nothing copied"
    )

    settings = plan.ExecutionSettings(pod_annotation_prefixes=("devcluster.joch.dev/",))
    copied = plan.desired_job(source, UID, launch(), settings)
    assert copied["spec"]["template"]["metadata"]["annotations"] == {
        "joch.dev/input": plan.input_json(source),
        "devcluster.joch.dev/outcome": "fail",
        "devcluster.joch.dev/exit-code": "3",
    }
    assert "devcluster.joch.dev/outcome" not in copied["metadata"]["annotations"], "onto the Pod only"


def test_the_pod_runs_restricted() -> None:
    settings = plan.ExecutionSettings(run_as_user=12345, service_account="joch-worker")
    pod_spec = plan.desired_job(execution(), UID, launch(), settings)["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "joch-worker"
    assert pod_spec["restartPolicy"] == "Never"
    pod_context = pod_spec["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] == 12345
    assert pod_context["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod_spec["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 12345
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_one_attempt_with_the_executions_deadline() -> None:
    settings = plan.ExecutionSettings(timeout_seconds=900)
    own = plan.desired_job(execution(timeout=120), UID, launch(), settings)["spec"]
    assert own["backoffLimit"] == 0
    assert own["activeDeadlineSeconds"] == 120, "spec.timeoutSeconds wins"
    default = plan.desired_job(execution(), UID, launch(), settings)["spec"]
    assert default["backoffLimit"] == 0
    assert default["activeDeadlineSeconds"] == 900, "else the operator's setting"


@pytest.mark.parametrize(("retention", "ttl"), [(86400, 86400), (60, 60), (0, None)])
def test_the_job_is_kept_for_the_retention(retention: int, ttl: int | None) -> None:
    settings = plan.ExecutionSettings(retention_seconds=retention)
    spec = plan.desired_job(execution(), UID, launch(), settings)["spec"]
    if ttl is None:
        assert "ttlSecondsAfterFinished" not in spec, "retention 0 keeps the Job forever"
    else:
        assert spec["ttlSecondsAfterFinished"] == ttl


# --- the views ---------------------------------------------------------------------------------------


def test_job_view_reads_the_finishing_condition() -> None:
    body: dict[str, Any] = {
        "metadata": {
            "name": "run-1",
            "uid": "job-uid",
            "creationTimestamp": T0,
            "annotations": {plan.ANNOTATION_MANIFEST: "m"},
        },
        "status": {
            "active": 1,
            "startTime": T0,
            "conditions": [
                {"type": "Suspended", "status": "True", "reason": "x"},
                {"type": "Failed", "status": "False", "reason": "not-yet"},
            ],
        },
    }
    running = plan.JobView.from_body(body)
    assert running.name == "run-1"
    assert running.uid == "job-uid"
    assert running.created == T0
    assert running.annotations == {plan.ANNOTATION_MANIFEST: "m"}
    assert running.active == 1
    assert running.start_time == T0
    assert running.finished is None
    assert not running.done
    assert not running.deleting

    complete = copy.deepcopy(body)
    complete["status"] = {
        "startTime": T0,
        "completionTime": T5,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": T5},
            {"type": "Complete", "status": "True", "reason": "", "lastTransitionTime": T5},
        ],
    }
    view = plan.JobView.from_body(complete)
    assert view.finished == ("Complete", "", "", T5)
    assert view.done
    assert view.completion_time == T5

    failed = copy.deepcopy(body)
    failed["metadata"]["deletionTimestamp"] = T9
    failed["status"] = {
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
                "lastTransitionTime": T9,
            }
        ]
    }
    view = plan.JobView.from_body(failed)
    assert view.finished == (
        "Failed",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
        T9,
    )
    assert view.deleting

    bare = plan.JobView.from_body({})
    assert bare == plan.JobView(name="", uid="", created="", annotations={})


def test_pod_view_reads_the_terminated_exit_code() -> None:
    failed = plan.PodView.from_body(
        {
            "metadata": {"name": "run-1-x", "uid": "p1", "creationTimestamp": T0},
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "worker",
                        "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "boom"}},
                    }
                ],
            },
        }
    )
    assert failed == plan.PodView(
        name="run-1-x", uid="p1", phase="Failed", created=T0, reason="Error", message="boom", exit_code=3
    )

    evicted = plan.PodView.from_body(
        {
            "metadata": {"name": "run-1-y", "deletionTimestamp": T9},
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "low on memory",
                "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
            },
        }
    )
    assert evicted.reason == "Evicted", "the Pod's own reason comes first"
    assert evicted.message == "low on memory"
    assert evicted.exit_code == 137
    assert evicted.deleting

    succeeded = plan.PodView.from_body(
        {
            "metadata": {"name": "z"},
            "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]},
        }
    )
    assert succeeded.exit_code == 0

    running = plan.PodView.from_body(
        {
            "metadata": {"name": "r"},
            "status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]},
        }
    )
    assert running.phase == "Running"
    assert running.exit_code is None
    assert plan.PodView.from_body({}).phase == "Pending"


# --- the status of a run -------------------------------------------------------------------------------


def test_a_running_pod_makes_the_run_running() -> None:
    status = run({"phase": "Queued"}, job_view(), [pod(phase="Running")])
    assert status["phase"] == "Running"
    ready = by_type(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Running")
    reconciling = by_type(status)["Reconciling"]
    assert (reconciling["status"], reconciling["reason"]) == ("True", "Running")
    assert "Stalled" not in by_type(status)
    assert status["podName"] == "run-1-abcde"
    assert status["observedGeneration"] == 1
    assert "completedAt" not in status
    assert "durationMs" not in status


def test_a_job_without_a_running_pod_is_starting() -> None:
    nothing = run({}, job_view(), [])
    assert nothing["phase"] == "Running"
    assert by_type(nothing)["Ready"]["reason"] == "Starting"
    assert "run-1" in by_type(nothing)["Ready"]["message"]
    assert "podName" not in nothing

    pending = run({}, job_view(), [pod(phase="Pending")])
    assert pending["phase"] == "Running"
    assert by_type(pending)["Ready"]["reason"] == "Starting"
    assert pending["podName"] == "run-1-abcde"

    remembered = run({"podName": "run-1-old"}, job_view(), [])
    assert remembered["podName"] == "run-1-old", "the Pod recorded before is not forgotten"


def test_the_newest_live_pod_is_the_one_named() -> None:
    pods = [
        pod("run-1-a", "Failed", created=T0),
        pod("run-1-c", "Running", created=T9, deleting=True),
        pod("run-1-b", "Running", created=T5),
    ]
    assert run({}, job_view(), pods)["podName"] == "run-1-b"


def test_a_complete_job_succeeds_with_its_duration() -> None:
    job = job_view(finished=("Complete", "", "", T5), start_time=T0, completion_time=T5)
    status = run(
        {"phase": "Running", "startedAt": T0, "podName": "run-1-abcde"}, job, [pod(phase="Succeeded")]
    )
    assert status["phase"] == "Succeeded"
    assert status["completedAt"] == T5
    assert status["durationMs"] == 5000
    assert status["startedAt"] == T0
    ready = by_type(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert "Reconciling" not in by_type(status)
    assert "Stalled" not in by_type(status)


def test_a_job_past_its_deadline_times_out() -> None:
    job = job_view(
        finished=("Failed", "DeadlineExceeded", "Job was active longer than specified deadline", T9)
    )
    status = run({"phase": "Running", "startedAt": T0}, job, [])
    assert status["phase"] == "TimedOut"
    assert status["completedAt"] == T9
    assert status["durationMs"] == 9000
    ready = by_type(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DeadlineExceeded")
    stalled = by_type(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "DeadlineExceeded")

    silent = run({"phase": "Running"}, job_view(finished=("Failed", "DeadlineExceeded", "", T9)), [])
    assert silent["phase"] == "TimedOut"
    assert by_type(silent)["Ready"]["message"], "a message even when the Job gives none"


def test_a_failed_pod_names_its_exit_code() -> None:
    job = job_view(
        finished=("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", T9)
    )
    failed = pod(phase="Failed", exit_code=3, reason="Error", message="adapter crashed")
    status = run({"phase": "Running", "startedAt": T0}, job, [failed])
    assert status["phase"] == "Failed"
    ready = by_type(status)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "BackoffLimitExceeded"
    assert "exit code 3" in ready["message"]
    assert "run-1-abcde" in ready["message"]
    assert "adapter crashed" in ready["message"]
    stalled = by_type(status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "BackoffLimitExceeded")
    assert status["durationMs"] == 9000

    no_reason = run({}, job_view(finished=("Failed", "", "", T9)), [pod(phase="Failed", exit_code=3)])
    assert by_type(no_reason)["Ready"]["reason"] == "Failed"
    assert "exit code 3" in by_type(no_reason)["Ready"]["message"]


def test_a_deleted_pod_fails_the_run_as_pod_deleted() -> None:
    job = job_view(
        finished=("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", T9)
    )
    status = run({"phase": "Running"}, job, [], deleted_pods=("run-1-abcde",))
    assert status["phase"] == "Failed"
    ready = by_type(status)["Ready"]
    assert ready["reason"] == "PodDeleted"
    assert "run-1-abcde" in ready["message"]
    assert by_type(status)["Stalled"]["reason"] == "PodDeleted"

    failed_too = run(
        {"phase": "Running"}, job, [pod(phase="Failed", exit_code=3)], deleted_pods=("run-1-old",)
    )
    assert by_type(failed_too)["Ready"]["reason"] == "BackoffLimitExceeded", "a failed Pod explains more"


@pytest.mark.parametrize("phase", sorted(plan.TERMINAL))
def test_a_terminal_run_says_nothing_more(phase: str) -> None:
    job = job_view(finished=("Complete", "", "", T5))
    assert plan.run_status({"phase": phase}, job, [pod()], generation=1, now=T9) is None
    assert plan.run_status({"phase": phase}, job_view(), [pod()], generation=1, now=T9) is None
    assert plan.is_terminal({"phase": phase})


def test_what_a_run_started_from_is_taken_from_the_job_when_the_status_has_none() -> None:
    status = run({"phase": "Queued"}, job_view(start_time=T5), [pod()])
    assert status["manifestRef"] == {"name": "support-triage-g3", "sha256": SHA}
    assert status["abomSnapshotRef"] == {"name": "support-triage", "generation": 7}
    assert status["startedAt"] == T5

    unstarted = run({}, job_view(start_time=None, annotations={plan.ANNOTATION_MANIFEST: "m"}), [])
    assert unstarted["startedAt"] == T0, "the Job's creation when it has no startTime yet"
    assert "abomSnapshotRef" not in unstarted, "no AgBOM annotation, no abomSnapshotRef"


def test_what_a_run_started_from_never_changes_once_recorded() -> None:
    recorded = {
        "phase": "Running",
        "manifestRef": {"name": "support-triage-g1", "sha256": "b" * 64},
        "abomSnapshotRef": {"name": "support-triage", "generation": 2},
        "startedAt": "2026-11-27T11:00:00Z",
    }
    other_job = job_view(
        annotations={
            plan.ANNOTATION_MANIFEST: "support-triage-g9",
            plan.ANNOTATION_MANIFEST_SHA256: "c" * 64,
            plan.ANNOTATION_AGBOM: "support-triage-other",
            plan.ANNOTATION_AGBOM_GENERATION: "99",
        },
        start_time=T5,
    )
    running = run(recorded, other_job, [pod()])
    finished = run(
        recorded,
        job_view(
            annotations=other_job.annotations,
            finished=("Complete", "", "", T9),
            start_time=T5,
            completion_time=T9,
        ),
        [pod(phase="Succeeded")],
    )
    for status in (running, finished):
        assert status["manifestRef"] == recorded["manifestRef"]
        assert status["abomSnapshotRef"] == recorded["abomSnapshotRef"]
        assert status["startedAt"] == recorded["startedAt"]
    assert finished["durationMs"] == 3600_000 + 9000, "measured from the recorded start"


# --- waiting and ended ---------------------------------------------------------------------------------


def test_waiting_status_until_the_run_starts() -> None:
    queued = plan.waiting_status(
        {"phase": "Pending"}, "Queued", "WaitingForSlot", "2 of 2 running", generation=3, now=T0
    )
    assert queued is not None
    assert queued["phase"] == "Queued"
    assert queued["observedGeneration"] == 3
    ready = by_type(queued)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "WaitingForSlot",
        "2 of 2 running",
    )
    assert by_type(queued)["Reconciling"]["status"] == "True"
    assert plan.waiting_status({}, "Pending", "AgentNotCompiled", "m", generation=None, now=T0) is not None

    started: list[dict[str, Any]] = [
        {"phase": "Running"},
        {"phase": "Queued", "manifestRef": {"name": "m", "sha256": SHA}},
        *({"phase": phase} for phase in sorted(plan.TERMINAL)),
    ]
    for current in started:
        assert plan.waiting_status(current, "Queued", "WaitingForSlot", "m", generation=1, now=T0) is None


def test_ended_status_without_a_finished_job() -> None:
    cancelled = plan.ended_status(
        {"phase": "Running", "startedAt": T0}, "Cancelled", "Cancelled", "spec.cancel", generation=2, now=T9
    )
    assert cancelled is not None
    assert cancelled["phase"] == "Cancelled"
    assert cancelled["completedAt"] == T9
    assert cancelled["durationMs"] == 9000
    assert by_type(cancelled)["Stalled"]["status"] == "True"
    assert by_type(cancelled)["Ready"]["status"] == "False"
    assert "Reconciling" not in by_type(cancelled)

    never_started = plan.ended_status(
        {"phase": "Queued"}, "Cancelled", "Cancelled", "m", generation=2, now=T9
    )
    assert never_started is not None
    assert "durationMs" not in never_started
    assert never_started["completedAt"] == T9

    for phase in sorted(plan.TERMINAL):
        assert (
            plan.ended_status({"phase": phase}, "Failed", "AgentDeleted", "m", generation=2, now=T9) is None
        )


# --- scheduling ---------------------------------------------------------------------------------------


def test_pick_starts_the_oldest_first_up_to_the_free_slots() -> None:
    waiting = [
        plan.Waiting(T9, "a-late"),
        plan.Waiting(T0, "z-early"),
        plan.Waiting(T5, "b-middle"),
        plan.Waiting(T0, "c-early"),
    ]
    assert plan.pick(waiting, running=1, capacity=3) == (["c-early", "z-early"], ["b-middle", "a-late"])
    assert plan.pick(waiting, running=0, capacity=10) == (["c-early", "z-early", "b-middle", "a-late"], [])
    assert plan.pick(waiting, running=3, capacity=3) == ([], ["c-early", "z-early", "b-middle", "a-late"])
    assert plan.pick(waiting, running=5, capacity=2) == ([], ["c-early", "z-early", "b-middle", "a-late"]), (
        "more running than the capacity starts nothing (never a negative slice)"
    )
    assert plan.pick([], running=0, capacity=4) == ([], [])


# --- what a worker may report -------------------------------------------------------------------------


def test_a_worker_needs_its_pods_token() -> None:
    old = {"phase": "Running", "podName": "pod-a"}
    problem = plan.worker_report_problem(old, {**old, "costUsd": 1.0}, execution="run-1", token_pod=None)
    assert problem is not None
    assert problem[0] == "status"
    assert "token" in problem[1]
    assert (
        plan.worker_report_problem(old, {**old, "costUsd": 1.0}, execution="run-1", token_pod="") is not None
    )


def test_a_worker_reports_only_into_its_own_execution() -> None:
    old = {"phase": "Running", "podName": "pod-a"}
    problem = plan.worker_report_problem(old, {**old, "costUsd": 1.0}, execution="run-1", token_pod="pod-b")
    assert problem is not None
    path, message = problem
    assert path == "status"
    assert "pod-b" in message
    assert "pod-a" in message
    assert "reports only into its own Execution" in message

    unset = plan.worker_report_problem(
        {"phase": "Queued"}, {"phase": "Queued", "costUsd": 1.0}, execution="run-1", token_pod="pod-a"
    )
    assert unset is not None
    assert unset[0] == "status"
    assert "no Pod yet" in unset[1]
    assert (
        plan.worker_report_problem(None, {"costUsd": 1.0}, execution="run-1", token_pod="pod-a") is not None
    )


def test_a_worker_changes_only_the_reported_fields() -> None:
    old: dict[str, Any] = {
        "phase": "Running",
        "podName": "pod-a",
        "costUsd": 0.1,
        "tokens": 10,
        "conditions": [{"type": "Ready", "status": "False"}],
    }
    reported = {**old, "costUsd": 0.75, "tokens": 1200, "modelCalls": 3, "toolCalls": 2}
    assert plan.worker_report_problem(old, reported, execution="run-1", token_pod="pod-a") is None
    assert plan.worker_report_problem(old, copy.deepcopy(old), execution="run-1", token_pod="pod-a") is None
    dropped = {k: v for k, v in old.items() if k != "tokens"}
    assert plan.worker_report_problem(old, dropped, execution="run-1", token_pod="pod-a") is None

    phase = plan.worker_report_problem(
        old, {**reported, "phase": "Succeeded"}, execution="run-1", token_pod="pod-a"
    )
    assert phase is not None
    assert phase[0] == "status.phase"
    assert all(field in phase[1] for field in plan.REPORTED_FIELDS)
    for key, value in (
        ("podName", "pod-b"),
        ("conditions", []),
        ("manifestRef", {"name": "m", "sha256": SHA}),
        ("completedAt", T9),
    ):
        problem = plan.worker_report_problem(old, {**old, key: value}, execution="run-1", token_pod="pod-a")
        assert problem is not None, key
        assert problem[0] == f"status.{key}"


# --- conditions ---------------------------------------------------------------------------------------


def test_last_transition_time_is_kept_while_the_status_does_not_change() -> None:
    first = run({"phase": "Queued"}, job_view(), [], now=T0)
    assert by_type(first)["Ready"]["lastTransitionTime"] == T0
    second = run(first, job_view(), [pod(phase="Running")], now=T5)
    assert by_type(second)["Ready"]["reason"] == "Running"
    assert by_type(second)["Ready"]["lastTransitionTime"] == T0, "Ready stayed False"
    assert by_type(second)["Reconciling"]["lastTransitionTime"] == T0, "Reconciling stayed True"

    done = run(
        second,
        job_view(finished=("Complete", "", "", T9), completion_time=T9),
        [pod(phase="Succeeded")],
        now=T9,
    )
    assert by_type(done)["Ready"]["status"] == "True"
    assert by_type(done)["Ready"]["lastTransitionTime"] == T9, "Ready turned True"


def test_foreign_conditions_are_kept() -> None:
    current = {
        "phase": "Running",
        "conditions": [{"type": "BudgetOK", "status": "True", "lastTransitionTime": T0}],
    }
    status = run(current, job_view(), [pod()], now=T5)
    assert by_type(status)["BudgetOK"] == {"type": "BudgetOK", "status": "True", "lastTransitionTime": T0}
