"""Evals (pure): the runs an Eval makes, how each is judged, when the next one is due, the Eval's status.

**A run** is an Execution of the Eval's target Agent (:func:`run_execution`): ``spec.trigger`` is
``{type: eval, sourceRef: <the Eval>}``, its input one data part carrying the dataset, the metrics and
the thresholds, its labels :data:`EVAL_LABEL` and :data:`TRIGGER_LABEL`, and it is owned by the Eval (so
it goes with it). It is therefore scheduled, capped, budgeted and recorded like any run. The operator
records the Agent generation and the AgBOM generation it started from (``status.agentGeneration``,
``status.abomSnapshotRef``); the worker reports ``status.scores``.

**Judging** (:func:`judge`): a run still going is Running; a run that ended other than Succeeded, or
that has no score for one of the Eval's metrics or thresholds, is Inconclusive; a score that misses its
threshold makes it Failed (each failure names the metric, the threshold and the measured value);
otherwise Passed. An Inconclusive run never passes by itself: with ``spec.releaseGate.enabled`` the
service asks a human through an Approval (:func:`review_approval`), and the run becomes Passed when it
is approved, Failed when it is rejected or expires.

**Triggers.** ``schedule.cron`` (or ``nightly``, midnight of ``schedule.timeZone``): one run per tick,
named after the tick (:func:`run_name`) so that two operators, or one restarted between creating the run
and recording the tick in ``status.lastScheduleTime``, create it once; only the newest missed tick runs
(:func:`schedule_due`). On promotion: a run per Agent generation, named after it, when a Deployment
gated by the Eval (``spec.promotion.requiresEval``), or with ``schedule.onDeployment`` any Deployment of
the target, deploys a generation with no run yet (:func:`promotion_due`). On demand: ``joch eval run``.

**The gate** (joch.domain.admission.promotion) reads ``status.runs``: the newest ended run for the
Agent's current generation must have Passed.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api import cron
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.eval import Eval, EvalStatus
from joch.domain.admission.promotion import parse_threshold
from joch.domain.reconcile import executions
from joch.domain.reconcile.approvals import parse_time
from joch.domain.reconcile.cache import Entry
from joch.domain.reconcile.status import condition, merge_conditions
from joch.domain.reconcile.times import format_time

__all__ = [
    "EVAL_LABEL",
    "HISTORY",
    "OWNED_CONDITIONS",
    "RUN_LABEL",
    "TRIGGER_LABEL",
    "Judgement",
    "Review",
    "RunView",
    "created_at",
    "eval_status",
    "judge",
    "newest_for_generation",
    "promotion_due",
    "review_approval",
    "review_of",
    "run_execution",
    "run_name",
    "run_of",
    "schedule_due",
    "schedule_of",
    "source_of",
]

EVAL_LABEL: Final = "joch.dev/eval"
"""On each run (and review Approval): the Eval's name."""
TRIGGER_LABEL: Final = "joch.dev/eval-trigger"
"""On each run: manual, schedule, promotion or deployment."""
RUN_LABEL: Final = "joch.dev/eval-run"
"""On a review Approval: the Execution whose inconclusive result it decides."""
GENERATION_LABEL: Final = "joch.dev/agent-generation"
"""On a promotion or deployment run: the Agent generation it was created for."""
HISTORY: Final = 20
OWNED_CONDITIONS: Final = ("Ready", "Reconciling")
_ENDED: Final = frozenset({"Passed", "Failed", "Inconclusive"})
_NAME_MAX: Final = 63
"""An Execution's name is its Job's name, which a label (job-name) carries: at most 63 characters."""


# --- naming -----------------------------------------------------------------------------------------


def run_name(eval_name: str, suffix: str) -> str:
    """``<eval>-<suffix>``, shortened with a hash of the Eval's name to fit 63 characters."""
    name = f"{eval_name}-{suffix}"
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(eval_name.encode()).hexdigest()[:8]
    keep = _NAME_MAX - len(suffix) - len(digest) - 2
    return f"{eval_name[:keep].rstrip('-.')}-{digest}-{suffix}"


def _label_value(value: str) -> str | None:
    return value if len(value) <= _NAME_MAX else None


def run_execution(
    evaluation: Eval, *, name: str, trigger: str, uid: str | None = None, generation: int | None = None
) -> dict[str, Any]:
    """The Execution of one run of ``evaluation`` (module docstring). ``uid``: the Eval's, for the owner
    reference (None: no owner); ``generation``: the Agent generation a promotion run is for."""
    namespace = evaluation.metadata.namespace or ""
    labels = {TRIGGER_LABEL: trigger}
    value = _label_value(evaluation.metadata.name or "")
    if value:
        labels[EVAL_LABEL] = value
    if generation is not None:
        labels[GENERATION_LABEL] = str(generation)
    spec = evaluation.spec
    payload: dict[str, Any] = {
        "eval": evaluation.metadata.name,
        "dataset": spec.dataset.model_dump(mode="json", by_alias=True, exclude_none=True),
        "metrics": [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in spec.metrics],
    }
    if spec.thresholds:
        payload["thresholds"] = dict(spec.thresholds)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": Eval.crd.api_version,
                "kind": "Eval",
                "name": evaluation.metadata.name,
                "uid": uid,
                "blockOwnerDeletion": False,
            }
        ]
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": metadata,
        "spec": {
            "agentRef": {"name": spec.target.name},
            "trigger": {"type": "eval", "sourceRef": {"name": evaluation.metadata.name}},
            "input": {"content": [{"kind": "data", "data": payload}]},
        },
    }


# --- runs -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RunView:
    """What the evals service keeps of one run's Execution."""

    name: str
    trigger: str
    created: str
    phase: str | None
    """The Execution's phase."""
    message: str
    agent_generation: int | None
    """Recorded by the operator at start; before that, the generation a promotion run was made for."""
    started_generation: bool
    """Whether ``agent_generation`` is the recorded one (the run started)."""
    abom_generation: int | None
    started_at: str | None
    completed_at: str | None
    scores: Mapping[str, float]

    @property
    def ended(self) -> bool:
        return self.phase in executions.TERMINAL


def source_of(entry: Entry) -> str | None:
    """The Eval an Execution entry is a run of (its ``spec.trigger``), or None."""
    trigger = (entry.document().get("spec") or {}).get("trigger") or {}
    name = (trigger.get("sourceRef") or {}).get("name") if trigger.get("type") == "eval" else None
    return str(name) if name else None


def run_of(entry: Entry, eval_name: str) -> RunView | None:
    """The run in Execution ``entry`` when it is one of Eval ``eval_name`` (its trigger names it)."""
    if source_of(entry) != eval_name:
        return None
    source = entry.document()
    status = entry.status
    metadata = source.get("metadata") or {}
    recorded = status.get("agentGeneration")
    labelled = entry.labels.get(GENERATION_LABEL, "")
    generation = recorded if isinstance(recorded, int) else (int(labelled) if labelled.isdigit() else None)
    bom = status.get("abomSnapshotRef") or {}
    scores = status.get("scores") if isinstance(status.get("scores"), Mapping) else {}
    ready = next(
        (c for c in status.get("conditions") or () if isinstance(c, Mapping) and c.get("type") == "Ready"), {}
    )
    return RunView(
        name=entry.name,
        trigger=entry.labels.get(TRIGGER_LABEL, "manual"),
        created=str(metadata.get("creationTimestamp") or ""),
        phase=status.get("phase"),
        message=str(ready.get("message") or ""),
        agent_generation=generation,
        started_generation=isinstance(recorded, int),
        abom_generation=bom.get("generation") if isinstance(bom.get("generation"), int) else None,
        started_at=status.get("startedAt"),
        completed_at=status.get("completedAt"),
        scores={
            str(k): float(v)
            for k, v in (scores or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
    )


# --- judging ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Review:
    """A human's answer on an inconclusive run (its review Approval)."""

    approval: str
    decided: bool
    approved: bool
    by: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    phase: str
    failures: tuple[dict[str, Any], ...]
    message: str


def _number(value: float) -> str:
    return f"{value:g}"


def judge(evaluation: Eval, run: RunView, review: Review | None = None) -> Judgement:
    """The result of ``run`` (module docstring)."""
    if not run.ended:
        return Judgement("Running", (), f"Execution {run.name} is {run.phase or 'Pending'}")
    missing: list[str] = []
    failures: list[dict[str, Any]] = []
    thresholds = evaluation.spec.thresholds or {}
    if run.phase != "Succeeded":
        why = f"Execution {run.name} ended {run.phase}" + (f": {run.message}" if run.message else "")
        judged = Judgement("Inconclusive", (), why)
    else:
        wanted = [m.name for m in evaluation.spec.metrics] + [
            m for m in thresholds if m not in {x.name for x in evaluation.spec.metrics}
        ]
        missing = [metric for metric in wanted if metric not in run.scores]
        for metric, written in sorted(thresholds.items()):
            threshold = parse_threshold(written)
            score = run.scores.get(metric)
            if threshold is None or score is None:
                continue
            if not threshold.met_by(score):
                failures.append({"metric": metric, "threshold": str(threshold), "value": score})
        if failures:
            text = "; ".join(
                f"metric {f['metric']} scored {_number(f['value'])}, which misses its threshold "
                f"{f['threshold']}"
                for f in failures
            )
            judged = Judgement("Failed", tuple(failures), text)
        elif missing:
            judged = Judgement(
                "Inconclusive", (), f"no score reported for metric {', '.join(missing)} (run {run.name})"
            )
        else:
            met = ", ".join(f"{m} {_number(run.scores[m])}" for m in sorted(run.scores))
            judged = Judgement("Passed", (), f"every threshold met ({met})")
    if judged.phase == "Inconclusive" and review is not None and review.decided:
        by = f" by {review.by}" if review.by else ""
        if review.approved:
            return Judgement(
                "Passed", (), f"{judged.message}; counted as passed{by} (Approval {review.approval})"
            )
        return Judgement("Failed", (), f"{judged.message}; not accepted{by} (Approval {review.approval})")
    return judged


def review_of(approval: Mapping[str, Any]) -> Review:
    """The answer in a stored review Approval."""
    metadata = approval.get("metadata") or {}
    status = approval.get("status") or {}
    phase, decision = status.get("phase"), status.get("decision")
    approved = phase == "Overridden" or (phase in ("Approved", "Expired") and decision == "approve")
    decided = phase in ("Approved", "Rejected", "Expired", "Overridden")
    return Review(str(metadata.get("name") or ""), decided, approved, status.get("decidedBy"))


def review_approval(
    evaluation: Eval, run: RunView, judgement: Judgement, *, uid: str | None, approvers: Sequence[str]
) -> dict[str, Any]:
    """The Approval asking a human whether an inconclusive run counts as passed."""
    namespace = evaluation.metadata.namespace or ""
    labels = {RUN_LABEL: run.name}
    value = _label_value(evaluation.metadata.name or "")
    if value:
        labels[EVAL_LABEL] = value
    metadata: dict[str, Any] = {"name": f"{run.name}-review"[:253], "namespace": namespace, "labels": labels}
    if uid:
        metadata["ownerReferences"] = [
            {"apiVersion": Eval.crd.api_version, "kind": "Eval", "name": evaluation.metadata.name, "uid": uid}
        ]
    target = evaluation.spec.target.name
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": metadata,
        "spec": {
            "requestedBy": {"executionRef": {"name": run.name}, "agentRef": {"name": target}},
            "action": {
                "type": "eval",
                "inputSummary": f"Eval {namespace}/{evaluation.metadata.name} run {run.name} of Agent "
                f"{target} "
                f"was inconclusive: {judgement.message}. Approve to count it as passed.",
            },
            "risk": {"summary": "an inconclusive eval gates a release"},
            "routing": {"approvers": list(approvers)},
            "options": ["approve", "reject"],
        },
    }


# --- triggers ---------------------------------------------------------------------------------------


def schedule_of(evaluation: Eval) -> tuple[cron.Cron, datetime.tzinfo] | None:
    """The Eval's cron schedule (nightly as midnight) and its time zone; None without one. Raises
    ValueError for a bad expression or zone (the model already checks both)."""
    schedule = evaluation.spec.schedule
    if schedule is None or not (schedule.cron or schedule.nightly):
        return None
    return cron.parse(schedule.cron or cron.NIGHTLY), cron.time_zone(schedule.time_zone)


def schedule_due(
    evaluation: Eval,
    *,
    last: datetime.datetime | None,
    created: datetime.datetime | None,
    now: datetime.datetime,
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """(the tick to run now, the next tick): the newest tick at or before ``now`` when it is after the
    last one run (``last``; before any, the Eval's creation: ticks before it never run); then the first
    tick after ``now``. (None, None) without a schedule."""
    found = schedule_of(evaluation)
    if found is None:
        return None, None
    expression, tz = found
    tick = expression.latest(now, tz)
    since = last or created
    due = tick if tick is not None and (since is None or tick > since) else None
    return due, expression.next(now, tz)


def promotion_due(
    evaluation: Eval, deployments: Iterable[Deployment], runs: Iterable[RunView], generation: int | None
) -> str | None:
    """The trigger (promotion or deployment) of a run the Agent's ``generation`` needs: a Deployment in
    the Eval's namespace gated by it (or, with ``schedule.onDeployment``, any Deployment of its target)
    deploys that generation and no run for it exists yet. None when no run is due."""
    if generation is None:
        return None
    namespace = evaluation.metadata.namespace or ""
    target = evaluation.spec.target.name
    on_deployment = bool(evaluation.spec.schedule and evaluation.spec.schedule.on_deployment)
    trigger = None
    for deployment in deployments:
        ref = deployment.spec.agent_ref
        if ref.name != target or (ref.namespace or namespace) != namespace:
            continue
        promotion = deployment.spec.promotion
        if promotion is not None and promotion.requires_eval == evaluation.metadata.name:
            trigger = "promotion"
            break
        if on_deployment:
            trigger = "deployment"
    if trigger is None or any(run.agent_generation == generation for run in runs):
        return None
    return trigger


# --- status -----------------------------------------------------------------------------------------


def newest_for_generation(
    records: Sequence[Mapping[str, Any]], generation: int | None
) -> Mapping[str, Any] | None:
    """The newest ended run record (``status.runs``, newest first) for ``generation`` (None: any)."""
    for record in records:
        if record.get("phase") == "Running":
            continue
        if generation is None or record.get("agentGeneration") == generation:
            return record
    return None


def _record(run: RunView, judged: Judgement, review: Review | None) -> dict[str, Any]:
    record: dict[str, Any] = {"execution": run.name, "trigger": run.trigger, "phase": judged.phase}
    for key, value in (
        ("createdAt", run.created or None),
        ("agentGeneration", run.agent_generation),
        ("abomGeneration", run.abom_generation),
        ("startedAt", run.started_at),
        ("completedAt", run.completed_at),
    ):
        if value is not None:
            record[key] = value
    if run.scores:
        record["scores"] = dict(run.scores)
    if judged.failures:
        record["failures"] = [dict(f) for f in judged.failures]
    record["message"] = judged.message[:1024]
    if review is not None:
        record["approval"] = review.approval
    return record


def _summary(records: Sequence[Mapping[str, Any]], generation: int | None) -> dict[str, Any]:
    """The fields describing the newest ended run, and the phase (see EvalStatus.phase)."""
    out: dict[str, Any] = {}
    ended = newest_for_generation(records, None)
    current = newest_for_generation(records, generation) if generation is not None else ended
    if ended is not None:
        out["lastRunAt"] = ended.get("completedAt") or ended.get("startedAt")
        out["scores"] = dict(ended.get("scores") or {})
        out["failures"] = list(ended.get("failures") or [])
        out.update({key: ended[key] for key in ("agentGeneration", "abomGeneration") if key in ended})
    if records:
        out["lastExecutionRef"] = {"name": records[0]["execution"]}
    generations = {r.get("agentGeneration") for r in records}
    passed = [
        g
        for g in generations
        if isinstance(g, int) and (newest_for_generation(records, g) or {}).get("phase") == "Passed"
    ]
    if passed:
        out["passedGeneration"] = max(passed)
    if any(r["phase"] == "Running" for r in records) and current is None:
        out["phase"] = "Running"
    elif ended is not None:
        out["phase"] = str((current or ended)["phase"])
    else:
        out["phase"] = "Pending"
    return out


def eval_status(
    evaluation: Eval,
    runs: Sequence[RunView],
    *,
    reviews: Mapping[str, Review],
    generation: int | None,
    current: Mapping[str, Any],
    last_schedule: datetime.datetime | None,
    next_schedule: datetime.datetime | None,
    now: str,
) -> tuple[dict[str, Any], list[tuple[RunView, Judgement]]]:
    """(the Eval's status, the inconclusive runs with releaseGate that need a review Approval).

    ``runs``: the Eval's runs; ``reviews``: review answers by run name; ``generation``: the target Agent's
    current metadata.generation (None when the Agent is missing)."""
    records: list[dict[str, Any]] = []
    to_review: list[tuple[RunView, Judgement]] = []
    gate = evaluation.spec.release_gate
    for run in runs:
        review = reviews.get(run.name)
        judged = judge(evaluation, run, review)
        records.append(_record(run, judged, review))
        if review is None and judged.phase == "Inconclusive" and gate is not None and gate.enabled:
            to_review.append((run, judged))
    # Runs whose Execution is gone (retention) stay in the history as last recorded, once ended.
    live = {run.name for run in runs}
    records += [
        dict(r)
        for r in current.get("runs") or ()
        if isinstance(r, Mapping) and r.get("execution") not in live and r.get("phase") in _ENDED
    ]
    records.sort(key=lambda r: (str(r.get("createdAt") or ""), str(r.get("execution"))), reverse=True)
    records = records[:HISTORY]
    desired: dict[str, Any] = {"runs": records, **_summary(records, generation)}
    if generation is not None:
        desired["targetGeneration"] = generation
    if last_schedule is not None:
        desired["lastScheduleTime"] = _stamp(last_schedule)
    if next_schedule is not None:
        desired["nextScheduleTime"] = _stamp(next_schedule)
    current_ended = newest_for_generation(records, generation)
    running = [r for r in records if r["phase"] == "Running"]
    desired["conditions"] = merge_conditions(
        _conditions(evaluation, desired["phase"], current_ended, running, generation),
        current.get("conditions"),
        now,
        owned=OWNED_CONDITIONS,
    )
    if evaluation.metadata.generation is not None:
        desired["observedGeneration"] = evaluation.metadata.generation
    EvalStatus.model_validate(desired)
    return desired, to_review


def _conditions(
    evaluation: Eval,
    phase: str,
    record: Mapping[str, Any] | None,
    running: Sequence[Mapping[str, Any]],
    generation: int | None,
) -> list[dict[str, Any]]:
    gen = evaluation.metadata.generation
    of = f" for Agent generation {generation}" if generation is not None else ""
    if running:
        reconciling = condition(
            "Reconciling", "True", "Running", f"Execution {running[0]['execution']} is running", gen
        )
    else:
        reconciling = condition("Reconciling", "False", "Idle", "no run in progress", gen)
    if phase == "Passed" and record is not None:
        ready = condition(
            "Ready", "True", "Passed", f"run {record['execution']}{of}: {record['message']}", gen
        )
    elif phase == "Running":
        ready = condition("Ready", "False", "Running", f"no run has ended yet{of}", gen)
    elif record is not None:
        ready = condition("Ready", "False", phase, f"run {record['execution']}{of}: {record['message']}", gen)
    else:
        ready = condition("Ready", "False", "NotRun", "the eval has not run yet (joch eval run)", gen)
    return [ready, reconciling]


_stamp = format_time


def created_at(entry: Entry) -> datetime.datetime | None:
    """An object's metadata.creationTimestamp (from the cached JSON, or the parsed model's metadata)."""
    if entry.source is not None:
        return parse_time((entry.document().get("metadata") or {}).get("creationTimestamp"))
    extra = entry.obj.metadata.model_extra if entry.obj is not None else None
    return parse_time((extra or {}).get("creationTimestamp"))
