"""The executions plan (pure): an Execution's Job, its phase from what the Job and its Pod say, which
queued Executions start, and what a worker may report.

The service (joch.controllers.executions) gathers the Execution, its Job and Pods (trimmed views,
:class:`JobView` and :class:`PodView`) and the Agent's compiled manifest from the cache, calls these
functions, and applies what they return.

Phases: ``Pending`` (admitted; waiting for its Agent to have a current compiled manifest) -> ``Queued``
(waiting for a free slot of its Agent) -> ``Running`` (its Job exists) -> ``Succeeded`` | ``Failed`` |
``Cancelled`` | ``TimedOut``. A terminal phase never changes again. What a run started from (the
manifest ConfigMap and its sha256, the AgBOM generation) is written on the Job as annotations when it
is created, so the status can always be re-derived from the Job, even after a crash between the Job's
create and the status write.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.execution import Execution
from joch.domain.reconcile.status import condition, merge_conditions
from joch.domain.reconcile.times import parse_time

__all__ = [
    "ANNOTATION_AGBOM",
    "ANNOTATION_AGBOM_GENERATION",
    "ANNOTATION_AGENT_GENERATION",
    "ANNOTATION_INPUT",
    "ANNOTATION_MANIFEST",
    "ANNOTATION_MANIFEST_SHA256",
    "EXECUTION_LABEL",
    "MAX_INPUT_BYTES",
    "MAX_LABEL_VALUE",
    "REPORTED_FIELDS",
    "TERMINAL",
    "ExecutionSettings",
    "JobView",
    "Launch",
    "PodView",
    "Waiting",
    "desired_job",
    "duration_ms",
    "ended_status",
    "execution_body",
    "input_json",
    "is_terminal",
    "parse_time",
    "pick",
    "run_status",
    "waiting_status",
    "worker_report_problem",
]

AGENT_LABEL: Final = "joch.dev/agent"
EXECUTION_LABEL: Final = "joch.dev/execution"
ANNOTATION_MANIFEST: Final = "joch.dev/manifest"
ANNOTATION_MANIFEST_SHA256: Final = "joch.dev/manifest-sha256"
ANNOTATION_AGBOM: Final = "joch.dev/agbom"
ANNOTATION_AGBOM_GENERATION: Final = "joch.dev/agbom-generation"
ANNOTATION_INPUT: Final = "joch.dev/input"
ANNOTATION_AGENT_GENERATION: Final = "joch.dev/agent-generation"
"""The Pod annotation holding the input (JSON); the Downward API mounts it as a file."""
MAX_LABEL_VALUE: Final = 63
"""An Execution's and its Agent's names are label values of the Job and Pod (and a Job's name is its
Pods' ``job-name`` label): at most this long."""
MAX_INPUT_BYTES: Final = 128 * 1024
"""Largest input (compact JSON) an Execution may carry: it travels as a Pod annotation (the API server
allows 256 KiB of annotations per object)."""

TERMINAL: Final = frozenset({"Succeeded", "Failed", "Cancelled", "TimedOut"})
REPORTED_FIELDS: Final = ("costUsd", "tokens", "modelCalls", "toolCalls", "scores")
"""The status fields a worker reports (and the only ones its token may change)."""
OWNED_CONDITIONS: Final = ("Ready", "Reconciling", "Stalled")

MANIFEST_DIR: Final = "/etc/joch/manifest"
INPUT_DIR: Final = "/etc/joch/input"
MANIFEST_KEY: Final = "manifest.yaml"


@dataclasses.dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How executions are scheduled (``joch operator`` flags)."""

    concurrency: int = 4
    """Running Executions per Agent when it has no Deployment (a Deployment's replicas win)."""
    timeout_seconds: int = 3600
    """An Execution's timeout when spec.timeoutSeconds is unset."""
    retention_seconds: int = 86400
    """How long a finished Execution (and its Job) is kept; 0 keeps them forever."""
    service_account: str = "joch-worker"
    pod_annotation_prefixes: tuple[str, ...] = ()
    """Execution annotations with one of these prefixes are copied onto its Pod (the local cluster passes
    ``devcluster.joch.dev/`` so tests can steer a fake run)."""
    run_as_user: int = 65532


def is_terminal(status: Mapping[str, Any]) -> bool:
    return status.get("phase") in TERMINAL


# --- views of what the cluster holds ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class JobView:
    """What the service keeps of one Job it created (the rest of the object is dropped)."""

    name: str
    uid: str
    created: str
    annotations: Mapping[str, str]
    active: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    finished: tuple[str, str, str, str] | None = None
    """(type Complete|Failed, reason, message, lastTransitionTime) of the condition that ended it."""
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> JobView:
        metadata = body.get("metadata") or {}
        status = body.get("status") or {}
        finished = None
        for cond in status.get("conditions") or ():
            if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
                finished = (
                    str(cond["type"]),
                    str(cond.get("reason") or ""),
                    str(cond.get("message") or ""),
                    str(cond.get("lastTransitionTime") or ""),
                )
                break
        return cls(
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            created=str(metadata.get("creationTimestamp") or ""),
            annotations=dict(metadata.get("annotations") or {}),
            active=int(status.get("active") or 0),
            start_time=status.get("startTime"),
            completion_time=status.get("completionTime"),
            finished=finished,
            deleting=bool(metadata.get("deletionTimestamp")),
        )

    @property
    def done(self) -> bool:
        return self.finished is not None


@dataclasses.dataclass(frozen=True, slots=True)
class PodView:
    """What the service keeps of one Pod of a Job."""

    name: str
    uid: str
    phase: str
    created: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        metadata = body.get("metadata") or {}
        status = body.get("status") or {}
        reason, message, code = str(status.get("reason") or ""), str(status.get("message") or ""), None
        for container in status.get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                code = terminated.get("exitCode")
                reason = reason or str(terminated.get("reason") or "")
                message = message or str(terminated.get("message") or "")
                break
        return cls(
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            phase=str(status.get("phase") or "Pending"),
            created=str(metadata.get("creationTimestamp") or ""),
            reason=reason,
            message=message,
            exit_code=int(code) if isinstance(code, int) else None,
            deleting=bool(metadata.get("deletionTimestamp")),
        )


# --- the Job ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Launch:
    """What a run starts from, decided when it starts."""

    manifest_name: str
    manifest_sha256: str
    image: str
    gateway_url: str
    router_url: str
    trace_url: str
    agbom: tuple[str, int] | None = None
    agent_generation: int | None = None
    """The Agent's metadata.generation the manifest was compiled from (recorded as status.agentGeneration)."""


def input_json(execution: Execution) -> str:
    """The input as the worker reads it (compact JSON, ``{}`` when there is none)."""
    value = execution.spec.input.wire() if execution.spec.input is not None else {}
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _timeout(execution: Execution, settings: ExecutionSettings) -> int:
    return execution.spec.timeout_seconds or settings.timeout_seconds


def desired_job(
    execution: Execution, uid: str, launch: Launch, settings: ExecutionSettings
) -> dict[str, Any]:
    """The Job of an Execution: same name, owned by it, the adapter image of the manifest, the
    manifest ConfigMap mounted read-only, the input as a file, a restricted security context."""
    namespace = execution.metadata.namespace or ""
    name = execution.metadata.name
    agent = execution.spec.agent_ref.name
    labels = {AGENT_LABEL: agent, EXECUTION_LABEL: name}
    annotations = {
        ANNOTATION_MANIFEST: launch.manifest_name,
        ANNOTATION_MANIFEST_SHA256: launch.manifest_sha256,
    }
    if launch.agbom is not None:
        annotations[ANNOTATION_AGBOM] = launch.agbom[0]
        annotations[ANNOTATION_AGBOM_GENERATION] = str(launch.agbom[1])
    if launch.agent_generation is not None:
        annotations[ANNOTATION_AGENT_GENERATION] = str(launch.agent_generation)
    pod_annotations = {
        key: str(value)
        for key, value in (execution.metadata.annotations or {}).items()
        if any(key.startswith(prefix) for prefix in settings.pod_annotation_prefixes)
    }
    pod_annotations[ANNOTATION_INPUT] = input_json(execution)  # never one of the copied annotations
    env = [
        {"name": "JOCH_EXECUTION_ID", "value": uid},
        {"name": "JOCH_EXECUTION_NAME", "value": name},
        {"name": "JOCH_NAMESPACE", "value": namespace},
        {"name": "JOCH_GATEWAY_URL", "value": launch.gateway_url},
        {"name": "JOCH_ROUTER_URL", "value": launch.router_url},
        {"name": "JOCH_TRACE_URL", "value": launch.trace_url},
        {"name": "JOCH_MANIFEST", "value": f"{MANIFEST_DIR}/{MANIFEST_KEY}"},
        {"name": "JOCH_INPUT", "value": f"{INPUT_DIR}/input.json"},
    ]
    container = {
        "name": "worker",
        "image": launch.image,
        "env": env,
        "volumeMounts": [
            {"name": "manifest", "mountPath": MANIFEST_DIR, "readOnly": True},
            {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec = {
        "serviceAccountName": settings.service_account,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "manifest",
                "configMap": {
                    "name": launch.manifest_name,
                    "items": [{"key": MANIFEST_KEY, "path": MANIFEST_KEY}],
                },
            },
            {
                "name": "input",
                "downwardAPI": {
                    "items": [
                        {
                            "path": "input.json",
                            "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_INPUT}']"},
                        }
                    ]
                },
            },
        ],
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": _timeout(execution, settings),
        "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if settings.retention_seconds > 0:
        job_spec["ttlSecondsAfterFinished"] = settings.retention_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "runtime.joch.dev/v1alpha1",
                    "kind": "Execution",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


# --- status ---------------------------------------------------------------------------------------


def duration_ms(start: str | None, end: str | None) -> int | None:
    first, last = parse_time(start), parse_time(end)
    if first is None or last is None:
        return None
    return max(0, int((last - first).total_seconds() * 1000))


def _conditions(
    phase: str, reason: str, message: str, *, generation: int | None, current: Mapping[str, Any], now: str
) -> list[dict[str, Any]]:
    if phase == "Succeeded":
        wanted = [condition("Ready", "True", "Succeeded", message, generation)]
    elif phase in TERMINAL:
        wanted = [
            condition("Ready", "False", reason, message, generation),
            condition("Stalled", "True", reason, message, generation),
        ]
    else:
        wanted = [
            condition("Ready", "False", reason, message, generation),
            condition("Reconciling", "True", reason, message, generation),
        ]
    return merge_conditions(wanted, current.get("conditions"), now, owned=OWNED_CONDITIONS)


def _with(
    current: Mapping[str, Any],
    phase: str,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
    **fields: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": phase, **{k: v for k, v in fields.items() if v is not None}}
    out["conditions"] = _conditions(phase, reason, message, generation=generation, current=current, now=now)
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def waiting_status(
    current: Mapping[str, Any], phase: str, reason: str, message: str, *, generation: int | None, now: str
) -> dict[str, Any] | None:
    """Pending or Queued (None: the Execution already started or ended, so waiting says nothing)."""
    if current.get("phase") in TERMINAL or current.get("manifestRef") or current.get("phase") == "Running":
        return None
    return _with(current, phase, reason, message, generation=generation, now=now)


def ended_status(
    current: Mapping[str, Any], phase: str, reason: str, message: str, *, generation: int | None, now: str
) -> dict[str, Any] | None:
    """A terminal phase decided without a finished Job (cancelled, its Job or Agent gone); None when
    already terminal."""
    if current.get("phase") in TERMINAL:
        return None
    started = current.get("startedAt")
    return _with(
        current,
        phase,
        reason,
        message,
        generation=generation,
        now=now,
        completedAt=now,
        durationMs=duration_ms(started, now) if started else None,
    )


def _pinned(job: JobView, current: Mapping[str, Any]) -> dict[str, Any]:
    """manifestRef, abomSnapshotRef and startedAt: as first recorded, else from the Job."""
    out: dict[str, Any] = {}
    annotations = job.annotations
    out["manifestRef"] = current.get("manifestRef") or {
        "name": annotations.get(ANNOTATION_MANIFEST, ""),
        "sha256": annotations.get(ANNOTATION_MANIFEST_SHA256, ""),
    }
    if current.get("abomSnapshotRef"):
        out["abomSnapshotRef"] = current["abomSnapshotRef"]
    elif ANNOTATION_AGBOM in annotations:
        generation = annotations.get(ANNOTATION_AGBOM_GENERATION, "0")
        out["abomSnapshotRef"] = {
            "name": annotations[ANNOTATION_AGBOM],
            "generation": int(generation) if generation.isdigit() else 0,
        }
    if isinstance(current.get("agentGeneration"), int):
        out["agentGeneration"] = current["agentGeneration"]
    elif annotations.get(ANNOTATION_AGENT_GENERATION, "").isdigit():
        out["agentGeneration"] = int(annotations[ANNOTATION_AGENT_GENERATION])
    out["startedAt"] = current.get("startedAt") or job.start_time or job.created
    return out


def _running_pod(pods: Sequence[PodView]) -> PodView | None:
    alive = [pod for pod in pods if not pod.deleting]
    return max(alive or pods, key=lambda pod: (pod.created, pod.name)) if (alive or pods) else None


def run_status(
    current: Mapping[str, Any],
    job: JobView,
    pods: Sequence[PodView],
    *,
    deleted_pods: Sequence[str] = (),
    generation: int | None,
    now: str,
) -> dict[str, Any] | None:
    """The status of an Execution whose Job exists (None: already terminal, nothing to say)."""
    if current.get("phase") in TERMINAL:
        return None
    pinned = _pinned(job, current)
    pod = _running_pod(pods)
    pod_name = pod.name if pod is not None else current.get("podName")
    if job.finished is None:
        running = pod is not None and pod.phase == "Running"
        reason = "Running" if running else "Starting"
        message = f"Pod {pod.name} is {pod.phase}" if pod is not None else f"Job {job.name} created"
        return _with(
            current, "Running", reason, message, generation=generation, now=now, podName=pod_name, **pinned
        )
    kind, reason, message, at = job.finished
    completed = job.completion_time or at or now
    if kind == "Complete":
        phase, reason, message = "Succeeded", "Succeeded", f"Job {job.name} completed"
    elif reason == "DeadlineExceeded":
        phase, message = "TimedOut", message or "the run exceeded its timeout"
    else:
        phase = "Failed"
        failed = next((p for p in pods if p.phase == "Failed"), None)
        if deleted_pods and failed is None:
            reason, message = (
                "PodDeleted",
                f"Pod {deleted_pods[-1]} was deleted before the run ended ({message})",
            )
        elif failed is not None:
            detail = failed.reason or "Error"
            code = f" with exit code {failed.exit_code}" if failed.exit_code is not None else ""
            extra = f": {failed.message}" if failed.message else ""
            message = (
                f"Pod {failed.name} failed{code} ({detail}){extra}; Job: {reason or 'Failed'}: {message}"
            )
            reason = reason or "Failed"
        else:
            reason = reason or "Failed"
    return _with(
        current,
        phase,
        reason,
        message,
        generation=generation,
        now=now,
        podName=pod_name,
        completedAt=completed,
        durationMs=duration_ms(pinned["startedAt"], completed),
        **pinned,
    )


# --- scheduling -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Waiting:
    """An Execution that has not started, in first-come-first-served order."""

    created: str
    name: str


def pick(waiting: Iterable[Waiting], *, running: int, capacity: int) -> tuple[list[str], list[str]]:
    """(the names to start now, the names that stay queued), oldest first."""
    ordered = sorted(waiting)
    free = max(0, capacity - running)
    return [w.name for w in ordered[:free]], [w.name for w in ordered[free:]]


# --- what a worker may report -------------------------------------------------------------------------


def worker_report_problem(
    old_status: Mapping[str, Any] | None,
    new_status: Mapping[str, Any] | None,
    *,
    execution: str,
    token_pod: str | None,
) -> tuple[str, str] | None:
    """Why a worker's status write is refused, as (field path, reason); None when it may write.

    A worker may write only the status of the Execution its Pod runs (``status.podName``, recorded by the
    operator), proven by its bound service-account token (which names its Pod), and only the fields in
    :data:`REPORTED_FIELDS`."""
    old, new = dict(old_status or {}), dict(new_status or {})
    if not token_pod:
        return "status", "a worker must use its Pod's bound service-account token (it names the Pod)"
    running = old.get("podName")
    if running != token_pod:
        held = f"Pod {running}" if running else "no Pod yet"
        return (
            "status",
            f"the token belongs to Pod {token_pod}, but Execution {execution} is run by {held}: a worker "
            "reports only into its own Execution",
        )
    for key in sorted(set(old) | set(new)):
        if key in REPORTED_FIELDS or old.get(key) == new.get(key):
            continue
        allowed = ", ".join(REPORTED_FIELDS)
        return f"status.{key}", f"a worker may report only {allowed}"
    return None


def execution_body(
    agent: str,
    namespace: str,
    *,
    name: str | None = None,
    spec_input: Mapping[str, Any] | None = None,
    timeout_seconds: int | None = None,
) -> dict[str, Any]:
    """The Execution of a manual run of ``agent`` (``joch run``, ``POST /v1/namespaces/{ns}/executions``);
    its name is generated unless given."""
    metadata: dict[str, Any] = {"name": name} if name else {"generateName": f"{agent}-"}
    metadata["namespace"] = namespace
    spec: dict[str, Any] = {"agentRef": {"name": agent}, "trigger": {"type": "manual"}}
    if spec_input is not None:
        spec["input"] = dict(spec_input)
    if timeout_seconds is not None:
        spec["timeoutSeconds"] = timeout_seconds
    return {
        "apiVersion": Execution.crd.api_version,
        "kind": Execution.crd.kind,
        "metadata": metadata,
        "spec": spec,
    }
