"""Deployment (ops.joch.dev/v1alpha1): runs an Agent in an Environment with replicas and a rollout strategy.

docs/catalog.md section 2.17; docs/decisions.md D4 (short names jdeploy, jd: the kind clashes with apps/v1
Deployment) and D5 (environmentRef overrides the Agent's environment for this Deployment's checks).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pydantic
from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.environment import RuntimeAdapter

LabelValue = Annotated[str, Field(max_length=63)]
"""A Kubernetes label value."""


class AutoscalingMetric(meta.Schema):
    """One autoscaling signal: queue depth (target) or p95 latency (targetMs)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "self.type == 'queueDepth' ? has(self.target) : has(self.targetMs)",
                "queueDepth needs target; latencyP95 needs targetMs",
            ),
        )
    )

    type: Literal["queueDepth", "latencyP95"] = Field(
        description="Signal to scale on: queueDepth (pending executions per replica) or latencyP95."
    )
    target: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="For queueDepth: pending executions per replica to aim for.",
    )
    target_ms: int | None = Field(
        default=None,
        ge=1,
        le=3_600_000,
        description="For latencyP95: p95 latency to aim for, in milliseconds.",
    )

    @pydantic.model_validator(mode="after")
    def _check_target(self) -> AutoscalingMetric:
        if self.type == "queueDepth" and self.target is None:
            raise ValueError("queueDepth needs target")
        if self.type == "latencyP95" and self.target_ms is None:
            raise ValueError("latencyP95 needs targetMs")
        return self


class DeploymentAutoscaling(meta.Schema):
    """Scale replicas between minReplicas and maxReplicas on the given metrics."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
                "minReplicas must not exceed maxReplicas",
                ".minReplicas",
            ),
        )
    )

    enabled: bool = Field(default=False, description="Turn autoscaling on; when off, spec.replicas is used.")
    min_replicas: int | None = Field(default=None, ge=0, le=1000, description="Fewest replicas to run.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas to run.")
    metrics: list[AutoscalingMetric] | None = Field(
        default=None,
        max_length=8,
        json_schema_extra=meta.list_map("type"),
        description="Signals to scale on, at most one per type.",
    )

    @pydantic.model_validator(mode="after")
    def _check_bounds(self) -> DeploymentAutoscaling:
        if self.min_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        return self


class DeploymentCanary(meta.Schema):
    """Canary settings: send a share of traffic to the new version for a while before completing."""

    enabled: bool | None = Field(default=None, description="Run a canary phase before the full rollout.")
    percentage: int | None = Field(
        default=None, ge=0, le=100, description="Share of traffic, 0 to 100 percent, sent to the new version."
    )
    duration: meta.Duration | None = Field(
        default=None, description="How long the canary runs before the rollout completes, e.g. 30m."
    )


class DeploymentRollout(meta.Schema):
    """How a new agent version replaces the running one."""

    strategy: Literal["rolling", "recreate", "canary", "shadow"] = Field(
        default="rolling",
        description="rolling (default): replace replicas a few at a time. recreate: stop all, then start. "
        "canary: send a share of traffic first (see canary). shadow: run the new version on copied traffic "
        "without serving its answers.",
    )
    max_surge: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Extra replicas allowed above the desired count during a rollout.",
    )
    max_unavailable: int | None = Field(
        default=None, ge=0, le=1000, description="Replicas that may be unavailable during a rollout."
    )
    canary: DeploymentCanary | None = Field(default=None, description="Canary settings for strategy canary.")


class DeploymentRuntime(meta.Schema):
    """The runtime adapter that runs the agent's workers."""

    adapter: RuntimeAdapter | None = Field(
        default=None,
        description="Runtime adapter: local, docker, kubernetes (reconciled into an apps/v1 Deployment), "
        "nomad or serverless.",
    )
    worker_image: str | None = Field(
        default=None,
        max_length=1024,
        description="OCI image of the worker; the operator's default when unset.",
    )


class DeploymentScheduling(meta.Schema):
    """Where the replicas are placed."""

    region: str | None = Field(default=None, max_length=64, description="Region to run in.")
    node_selector: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Node labels the worker pods must match (Kubernetes runtime).",
    )


class ReadinessCheck(meta.Schema):
    """Readiness: a replica is ready when it answers a synthetic prompt."""

    type: Literal["synthetic_prompt"] = Field(
        default="synthetic_prompt", description="Check type; synthetic_prompt is the only one."
    )
    prompt: str | None = Field(default=None, max_length=4096, description="Prompt sent to the agent.")


class LivenessCheck(meta.Schema):
    """Liveness: a replica is alive while it sends heartbeats."""

    type: Literal["heartbeat"] = Field(
        default="heartbeat", description="Check type; heartbeat is the only one."
    )
    interval: meta.Duration | None = Field(default=None, description="Expected heartbeat interval, e.g. 30s.")


class DeploymentHealthChecks(meta.Schema):
    """Readiness and liveness checks of the replicas."""

    readiness: ReadinessCheck | None = Field(default=None, description="When a replica may receive work.")
    liveness: LivenessCheck | None = Field(default=None, description="When a replica is restarted.")


class DeploymentPromotion(meta.Schema):
    """Gates that must pass before this Deployment is admitted (catalog section 5, stage 5). They are
    checked on create and when spec.agentRef, spec.environmentRef or spec.promotion change."""

    requires_eval: meta.Name | None = Field(
        default=None,
        description="Name of an Eval (same namespace) that targets this Deployment's Agent, has phase Passed "
        "and whose scores meet its thresholds.",
    )
    requires_approval: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Role or group whose approval is required, e.g. release-manager (not an Approval name): "
        "an Approval labelled joch.dev/deployment=<this Deployment>, spec.action.type promotion, listing the "
        "role among spec.routing.approvers (role:, group: or team:<role>), must be Approved.",
    )


class DeploymentSpec(meta.Schema):
    """Desired state of a joch Deployment."""

    agent_ref: meta.Ref = Field(description="The Agent to run, in this namespace by default.")
    environment_ref: meta.ClusterRef | None = Field(
        default=None,
        description="The Environment (cluster-scoped) to deploy into. Overrides the Agent's own environment "
        "(its env label, its namespace's label, or the operator default) for this Deployment's checks (D5).",
    )
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Number of worker replicas when autoscaling is off (default 1)."
    )
    autoscaling: DeploymentAutoscaling | None = Field(
        default=None, description="Scale replicas automatically."
    )
    rollout: DeploymentRollout = Field(
        default_factory=DeploymentRollout,
        description="How new versions roll out (strategy rolling by default).",
    )
    runtime: DeploymentRuntime | None = Field(default=None, description="Runtime adapter and worker image.")
    scheduling: DeploymentScheduling | None = Field(default=None, description="Region and node placement.")
    health_checks: DeploymentHealthChecks | None = Field(default=None, description="Readiness and liveness.")
    promotion: DeploymentPromotion | None = Field(
        default=None, description="Eval and approval gates that must pass before the Deployment is admitted."
    )


class DeploymentStatus(meta.Status):
    """Observed state of a joch Deployment."""

    phase: Literal["Pending", "Progressing", "Available", "Degraded", "Failed"] | None = Field(
        default=None,
        description="Pending: waiting for references or gates. Progressing: a rollout is under way. "
        "Available: enough replicas are ready. Degraded: fewer replicas ready than desired. Failed: the "
        "rollout failed.",
    )
    environment: str | None = Field(
        default=None, max_length=253, description="The Environment the Deployment was checked against."
    )
    replicas: int | None = Field(default=None, ge=0, description="Replicas the runtime was asked to run.")
    replicas_ready: int | None = Field(
        default=None, ge=0, description="Replicas that pass their readiness check."
    )
    rollout_status: Literal["stable", "progressing", "canary", "rolledBack"] | None = Field(
        default=None,
        description="stable: one version runs. progressing: a rollout is replacing replicas. canary: the "
        "canary phase runs. rolledBack: the last rollout was reverted.",
    )
    current_agent_version: int | None = Field(
        default=None, ge=0, description="Agent generation the running replicas were compiled from."
    )


class Deployment(meta.Resource):
    """Runs an Agent in an Environment: replicas, autoscaling, rollout strategy and promotion gates."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Deployment",
        plural="deployments",
        scope="Namespaced",
        short_names=("jdeploy", "jd"),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Agent being run."),
            meta.PrinterColumn(
                "Environment", ".status.environment", description="Environment checked against."
            ),
            meta.PrinterColumn("Replicas", ".status.replicasReady", "integer", description="Replicas ready."),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("Strategy", ".spec.rollout.strategy", priority=1),
            meta.PrinterColumn("Version", ".status.currentAgentVersion", "integer", priority=1),
        ),
        description="A joch Deployment (not apps/v1): runs an Agent in an Environment with replicas, "
        "autoscaling, a rollout strategy and promotion gates. Use `jdeploy` or deployments.ops.joch.dev with "
        "kubectl.",
    )

    spec: DeploymentSpec = Field(description="Desired state of the Deployment.")
    status: DeploymentStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
