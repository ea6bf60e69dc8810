"""Eval (ops.joch.dev/v1alpha1): a scored evaluation of an Agent, usable as a promotion gate.

docs/catalog.md section 2.18 and section 8 #19: a threshold is a number (a minimum) or a comparison string
such as "<=0.0" (a maximum). Unions are not structural in a CRD, so threshold values are free-form JSON in the
schema and checked here (and by the validating webhook, which uses these models).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, WithJsonSchema

from joch.api import cron
from joch.api.v1alpha1 import meta

MetricName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
"""A metric name such as accuracy or pii_leakage."""

Threshold = Annotated[
    Any,
    WithJsonSchema(
        {
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "A number (the minimum score) or a comparison such as '<=0.05' or '>0.9'.",
        }
    ),
]

_COMPARISON = re.compile(r"^(<=|>=|<|>|==)\s*-?[0-9]+(\.[0-9]+)?$")


class EvalTarget(meta.Schema):
    """What is evaluated."""

    kind: Literal["Agent"] = Field(default="Agent", description="Kind of the target; only Agent today.")
    name: meta.Name = Field(description="Name of the target, in the Eval's namespace.")


class EvalDataset(meta.Schema):
    """The test cases."""

    type: Literal["file", "http", "s3", "gcs", "artifact"] = Field(
        description="Where the dataset lives: file (path in the agent's source), http, s3, gcs or artifact."
    )
    uri: str = Field(
        min_length=1, max_length=2048, description="Location of the dataset, e.g. ./evals/cases.jsonl."
    )


class EvalMetric(meta.Schema):
    """One score computed over the dataset."""

    name: MetricName = Field(description="Metric name; thresholds and status.scores use it.")
    type: Literal["llm_judge", "deterministic", "numeric"] = Field(
        description="llm_judge: a model grades each answer. deterministic: exact checks (match, schema). "
        "numeric: a measured number such as latency or cost."
    )
    judge_model_ref: meta.Ref | None = Field(
        default=None, description="For llm_judge: the Model that grades, in the Eval's namespace by default."
    )


class EvalSchedule(meta.Schema):
    """When the eval runs on its own. It can always be run by hand: ``joch eval run NAME``."""

    on_deployment: bool | None = Field(
        default=None,
        description="Run for every new generation of the target Agent that a Deployment deploys (a "
        "Deployment whose spec.promotion.requiresEval names this Eval triggers such a run whatever this "
        "says).",
    )
    nightly: bool | None = Field(
        default=None, description="Run once a night: shorthand for cron '0 0 * * *' in timeZone."
    )
    cron: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A five-field cron expression (minute hour day-of-month month day-of-week), e.g. "
        "'30 2 * * 1-5'. One run per tick, even across operator restarts; missed ticks run once.",
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone the cron expression (or nightly) is read in; default UTC.",
    )

    @pydantic.field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            cron.parse(value)  # raises ValueError naming the cron field at fault
        return value

    @pydantic.field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str | None) -> str | None:
        if value is not None:
            cron.check_time_zone(value)
        return value

    @pydantic.model_validator(mode="after")
    def _one_schedule(self) -> EvalSchedule:
        if self.cron is not None and self.nightly:
            raise ValueError("cron: set either cron or nightly, not both")
        return self


class EvalReleaseGate(meta.Schema):
    """Use the eval as a promotion gate."""

    enabled: bool | None = Field(default=None, description="Block promotion when a threshold is not met.")
    blocks_promotion_to: meta.Name | None = Field(
        default=None, description="Environment name whose promotions this eval gates, e.g. prod."
    )


class EvalSpec(meta.Schema):
    """Desired state of an Eval."""

    target: EvalTarget = Field(description="The Agent being evaluated.")
    dataset: EvalDataset = Field(description="The test cases.")
    metrics: list[EvalMetric] = Field(
        min_length=1,
        max_length=64,
        json_schema_extra=meta.list_map("name"),
        description="Scores to compute; names are unique.",
    )
    schedule: EvalSchedule | None = Field(default=None, description="Automatic runs.")
    thresholds: dict[str, Threshold] | None = Field(
        default=None,
        max_length=64,
        description="Metric name -> pass condition. A bare number is a minimum (accuracy: 0.9); a comparison "
        "string sets the direction (pii_leakage: '<=0.0', latency_ms: '<2000').",
    )
    release_gate: EvalReleaseGate | None = Field(default=None, description="Promotion gate settings.")

    @pydantic.field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for metric, threshold in (value or {}).items():
            if isinstance(threshold, bool) or not isinstance(threshold, int | float | str):
                raise ValueError(f"thresholds.{metric}: must be a number or a comparison such as '<=0.05'")
            if isinstance(threshold, str) and not _COMPARISON.match(threshold):
                raise ValueError(f"thresholds.{metric}: {threshold!r} is not a comparison such as '<=0.05'")
        return value


class EvalFailure(meta.Schema):
    """A threshold a run did not meet."""

    metric: str = Field(max_length=128, description="The metric.")
    threshold: str = Field(max_length=64, description="The threshold as written, e.g. >=0.9.")
    value: float | None = Field(
        default=None, description="The measured score; absent when none was reported."
    )


EvalPhase = Literal["Pending", "Running", "Passed", "Failed", "Inconclusive"]


class EvalRun(meta.Schema):
    """One run of the eval, as recorded in its history."""

    execution: meta.Name = Field(description="The Execution that ran it.")
    trigger: Literal["manual", "schedule", "promotion", "deployment"] = Field(
        description="What started it: manual (joch eval run), schedule (cron or nightly), promotion (a "
        "Deployment's requiresEval) or deployment (schedule.onDeployment)."
    )
    phase: EvalPhase = Field(
        description="Running, Passed (every threshold met), Failed (a threshold missed) or Inconclusive (the "
        "run did not succeed, or a metric has no score); an Inconclusive run never passes a gate by "
        "itself."
    )
    agent_generation: int | None = Field(
        default=None, ge=0, description="The Agent's metadata.generation the run ran against."
    )
    abom_generation: int | None = Field(
        default=None, ge=0, description="The AgBOM generation live when the run started."
    )
    created_at: str | None = Field(default=None, max_length=64, description="When its Execution was created.")
    started_at: str | None = Field(default=None, max_length=64, description="When the run started.")
    completed_at: str | None = Field(default=None, max_length=64, description="When the run ended.")
    scores: dict[str, float] | None = Field(
        default=None, max_length=64, description="Metric name -> score, as the worker reported it."
    )
    failures: list[EvalFailure] | None = Field(
        default=None, max_length=64, description="Thresholds missed, with the measured value."
    )
    message: str | None = Field(default=None, max_length=1024, description="Why it ended as it did.")
    approval: meta.Name | None = Field(
        default=None,
        description="For an Inconclusive run of an Eval with releaseGate: the Approval asking a human "
        "whether it counts as passed (approved: Passed; rejected or expired: Failed).",
    )


class EvalStatus(meta.Status):
    """Observed state of an Eval."""

    phase: EvalPhase | None = Field(
        default=None,
        description="Pending: never run. Running: a run is in progress and none has ended yet for the "
        "Agent's current generation. Otherwise the result of the newest ended run: Passed, Failed or "
        "Inconclusive.",
    )
    last_run_at: str | None = Field(
        default=None, max_length=64, description="When the newest ended run ended (RFC 3339)."
    )
    last_execution_ref: meta.Ref | None = Field(default=None, description="The Execution of the newest run.")
    scores: dict[str, float] | None = Field(
        default=None, max_length=64, description="Metric name -> score of the newest ended run."
    )
    failures: list[EvalFailure] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra=meta.list_map("metric"),
        description="Thresholds the newest ended run missed, with the measured value.",
    )
    agent_generation: int | None = Field(
        default=None, ge=0, description="The Agent generation the newest ended run ran against."
    )
    abom_generation: int | None = Field(
        default=None, ge=0, description="The AgBOM generation the newest ended run ran against."
    )
    target_generation: int | None = Field(
        default=None, ge=0, description="The target Agent's current metadata.generation."
    )
    passed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The Agent generation whose newest ended run passed, if the newest run of the current "
        "generation did; what the promotion gate admits.",
    )
    last_schedule_time: str | None = Field(
        default=None,
        max_length=64,
        description="The newest cron (or nightly) tick a run was created for (RFC 3339): kept so that an "
        "operator restart never runs a tick twice.",
    )
    next_schedule_time: str | None = Field(
        default=None, max_length=64, description="The next cron (or nightly) tick."
    )
    runs: list[EvalRun] | None = Field(
        default=None,
        max_length=20,
        description="The newest runs, newest first (at most 20).",
    )


class Eval(meta.Resource):
    """An evaluation of an Agent against a dataset, with thresholds that can gate promotion."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Eval",
        plural="evals",
        scope="Namespaced",
        short_names=("ev",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Target", ".spec.target.name", description="Agent evaluated."),
            meta.PrinterColumn("Phase", ".status.phase", description="Result of the last run."),
            meta.PrinterColumn(
                "Generation", ".status.agentGeneration", "integer", description="Agent generation last run."
            ),
            meta.PrinterColumn(
                "Last Run", ".status.lastRunAt", "date", description="When the last run ended."
            ),
            meta.PrinterColumn("Gates", ".spec.releaseGate.blocksPromotionTo", priority=1),
            meta.PrinterColumn("Next", ".status.nextScheduleTime", "date", priority=1),
        ),
        description="An evaluation of an Agent over a dataset: metrics, thresholds and an optional release "
        "gate that blocks promotion until the thresholds are met.",
    )

    spec: EvalSpec = Field(description="Desired state of the Eval.")
    status: EvalStatus | None = Field(default=None, description="Observed state, written by the operator.")
