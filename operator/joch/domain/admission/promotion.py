"""Promotion gates of a joch Deployment: ``spec.promotion.requiresEval`` and ``requiresApproval``.

docs/catalog.md section 2.17 ("cannot be applied until the promotion gates pass") and section 5. Pure:
the Evals and Approvals come from the :class:`World` (the operator's store, the cluster listed by
``joch apply``, or the batch of ``joch validate``).

When (:func:`gates_due`): on CREATE, and on an UPDATE that changes what is promoted or how it is gated
(``spec.agentRef``, ``spec.environmentRef`` or ``spec.promotion``). Scaling, rollout tuning and the
like pass without looking at the gates, so a Deployment admitted once is never stuck because its Eval
later regressed.

``requiresEval: <name>`` passes when the Eval ``<namespace>/<name>`` (the Deployment's namespace)

- exists,
- targets the Deployment's Agent (``spec.target.name`` is ``spec.agentRef.name``, and the Agent is in
  the Deployment's namespace: an Eval's target is always in the Eval's own namespace),
- has, among its recorded runs (``status.runs``, newest first), an ended run for the Agent's current
  ``metadata.generation``, and the newest such run Passed (a new Agent generation needs a new passing
  run; a run still going, or one of another generation, does not count),
- and every ``spec.thresholds`` entry is met by that run's scores (a bare number is a minimum, a string
  a comparison such as ``<=0.05``; a metric without a score misses its threshold). The thresholds are
  re-checked because they may have been tightened since the run.

The Eval's own ``spec.releaseGate`` does not change this check: the Deployment asked for the Eval by
name, so it gates whatever environment the Deployment deploys to.

``requiresApproval: <role>`` passes when some Approval in the Deployment's namespace

- is labelled ``joch.dev/deployment: <deployment name>`` (:data:`DEPLOYMENT_LABEL`; the Approval kind
  has no field naming a Deployment),
- has ``spec.action.type`` promotion,
- lists the role among ``spec.routing.approvers`` (:func:`approver_matches`),
- and is decided: ``status.phase`` Approved with ``status.decision`` approve, or Overridden (an audited
  break-glass of a rejection or expiry).

An Environment with ``spec.protected`` needs an explicit role: a promotion into it (the Deployment's
``spec.environmentRef``, else its Agent's environment, D5) is admitted only when the API server says the
requesting user holds :data:`PROMOTE_VERB` on ``environments/<name>`` in the Deployment's namespace (the
webhook asks with a LocalSubjectAccessReview and hands the answer in as ``grants``).

A missing Eval or Approval fails the gate (an error, not a D10 warning; docs/decisions.md): the gate
is a precondition of the write, not a reference the operator can resolve later. Every error is reported at
``spec.promotion.requiresEval`` / ``spec.promotion.requiresApproval`` with reason
:data:`REASON` (403 Forbidden).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Final

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.approval import Approval
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.eval import Eval
from joch.domain.admission import parsing
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import World
from joch.domain.compilation import scope
from joch.domain.policy.model import COMPARISONS
from joch.domain.settings import OperatorSettings

__all__ = [
    "DEPLOYMENT_LABEL",
    "GATE_KINDS",
    "PROMOTE_VERB",
    "REASON",
    "ROLE_PREFIXES",
    "Threshold",
    "approver_matches",
    "check_gates",
    "check_protected",
    "deployment_of",
    "gates_due",
    "parse_threshold",
    "promotes",
    "promotion_request_name",
    "protected_environment",
    "requested_approval",
    "target_environment",
    "written",
]

DEPLOYMENT_LABEL: Final = "joch.dev/deployment"
"""The label linking a promotion Approval to the Deployment (by name, same namespace)."""

GATE_KINDS: Final[tuple[type[Eval] | type[Approval], ...]] = (Eval, Approval)
"""The kinds the gates read, status included (the operator's store watches them for admission)."""

REASON: Final = "PromotionGateFailed"

ROLE_PREFIXES: Final = ("role", "group", "team")
"""Approver address prefixes that name a role or group (``user:``, ``email:``, ``slack:`` do not)."""

EVAL_PATH: Final = "spec.promotion.requiresEval"
APPROVAL_PATH: Final = "spec.promotion.requiresApproval"
ENVIRONMENT_PATH: Final = "spec.environmentRef"
PROMOTE_VERB: Final = "promote"
"""The verb a user needs on environments/<name> (ops.joch.dev) to promote into a protected Environment."""
MAX_LISTED: Final = 5
"""Approvals described one by one in a denial; the rest are counted."""

_COMPARISON: Final = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


# --- when -------------------------------------------------------------------------------------------


def deployment_of(value: object, namespace: str | None) -> Deployment | None:
    """The Deployment an admission request carries (``value``: its object or old object), in the
    request's ``namespace`` when the object names none; None when it is not a valid Deployment."""
    parsed = parsing.parse_object(value).obj
    if not isinstance(parsed, Deployment):
        return None
    if not parsed.metadata.namespace and namespace:
        metadata = parsed.metadata.model_copy(update={"namespace": namespace})
        parsed = parsed.model_copy(update={"metadata": metadata})
    return parsed


def written(
    obj: object, old_obj: object, namespace: str | None, operation: str
) -> tuple[Deployment | None, Deployment | None]:
    """(the Deployment a request writes, the stored one it replaces on an UPDATE), each None when absent
    or not a valid Deployment."""
    old = deployment_of(old_obj, namespace) if operation == "UPDATE" else None
    return deployment_of(obj, namespace), old


def promotes(new: Deployment, old: Deployment | None) -> bool:
    """Whether the write promotes something: CREATE, or an UPDATE changing ``spec.agentRef`` or
    ``spec.environmentRef`` (what the protected-environment gate looks at, with or without gates)."""
    if old is None:
        return True
    return old.spec.agent_ref != new.spec.agent_ref or old.spec.environment_ref != new.spec.environment_ref


def gates_due(new: Deployment, old: Deployment | None) -> bool:
    """Whether the gates are checked: CREATE (``old`` None, or an old object that did not parse), or an
    UPDATE changing ``spec.agentRef``, ``spec.environmentRef`` or ``spec.promotion``."""
    if new.spec.promotion is None:
        return False
    if old is None:
        return True
    before, after = old.spec, new.spec
    return (
        before.agent_ref != after.agent_ref
        or before.environment_ref != after.environment_ref
        or before.promotion != after.promotion
    )


# --- thresholds -------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)


class Threshold:
    """One pass condition of an Eval metric: ``op`` and ``bound`` (a bare number means ``>=``)."""

    __slots__ = ("bound", "op")

    def __init__(self, op: str, bound: float) -> None:
        self.op = op
        self.bound = bound

    def met_by(self, score: float) -> bool:
        return COMPARISONS[self.op](score, self.bound)

    def __str__(self) -> str:
        return f"{self.op}{_number(self.bound)}"


def parse_threshold(value: Any) -> Threshold | None:
    """A threshold as written in ``spec.thresholds`` (a number or a comparison string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Threshold(">=", float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        match = _COMPARISON.match(value)
        if match is not None:
            return Threshold(match.group(1), float(match.group(2)))
    return None


# --- requiresEval -----------------------------------------------------------------------------------


def _eval_problems(deployment: Deployment, name: str, world: World) -> list[str]:
    namespace = deployment.metadata.namespace or ""
    found = world.get(Eval, namespace, name)
    where = f"Eval {namespace}/{name}"
    if found is None:
        return [f"{where} not found; the gate cannot pass until it exists and has passed"]
    problems: list[str] = []
    ref = deployment.spec.agent_ref
    agent_namespace = ref.namespace or namespace
    target = found.spec.target
    if target.name != ref.name or agent_namespace != namespace:
        problems.append(
            f"{where} evaluates {target.kind} {namespace}/{target.name}, not the Deployment's Agent "
            f"{agent_namespace}/{ref.name}"
        )
    agent = world.get(Agent, namespace, ref.name)
    generation = agent.metadata.generation if agent is not None else None
    status = found.status
    records = (
        [run.model_dump(mode="json", by_alias=True, exclude_none=True) for run in (status.runs or ())]
        if (status is not None)
        else []
    )
    of = f" for Agent {ref.name} generation {generation}" if generation is not None else ""
    record = _newest_ended(records, generation)
    if record is None:
        running = next(
            (
                r
                for r in records
                if r.get("phase") == "Running" and r.get("agentGeneration") in (None, generation)
            ),
            None,
        )
        if running is not None:
            problems.append(f"{where}: its run{of} (Execution {running['execution']}) has not ended yet")
        elif records:
            newest = status.agent_generation if status is not None else None
            against = f" (its newest run ran against generation {newest})" if newest is not None else ""
            problems.append(
                f"{where} has no ended run{of}{against}; a new generation needs a new passing run "
                f"(joch eval run {name} -n {namespace})"
            )
        else:
            problems.append(
                f"{where} has not run yet; it must have passed (joch eval run {name} -n {namespace})"
            )
        return problems
    execution = record.get("execution")
    if record.get("phase") != "Passed":
        # A Failed run's misses are listed below, one per threshold; other results say why themselves.
        why = f": {record['message']}" if record.get("message") and record.get("phase") != "Failed" else ""
        problems.append(f"{where}: its newest run{of} (Execution {execution}) is {record.get('phase')}{why}")
    scores = record.get("scores") or {}
    for metric, written in sorted((found.spec.thresholds or {}).items()):
        threshold = parse_threshold(written)
        if threshold is None:
            problems.append(f"{where}: threshold {metric} {written!r} is neither a number nor a comparison")
            continue
        score = scores.get(metric)
        if score is None:
            problems.append(
                f"{where}: metric {metric} has no score in run {execution} (threshold {threshold})"
            )
        elif not threshold.met_by(score):
            problems.append(
                f"{where}: metric {metric} scored {_number(score)} in run {execution}, which misses its "
                f"threshold {threshold}"
            )
    return problems


def _newest_ended(records: list[dict[str, Any]], generation: int | None) -> dict[str, Any] | None:
    """The newest ended run (records newest first) for ``generation`` (None: any)."""
    for record in records:
        if record.get("phase") != "Running" and (
            generation is None or record.get("agentGeneration") == generation
        ):
            return record
    return None


# --- requiresApproval -------------------------------------------------------------------------------


def approver_matches(approver: str, required: str) -> bool:
    """Whether the approver address ``approver`` (``team:release``, ``user:alice``...) stands for the
    required role or group.

    A required value with a prefix (``team:release-managers``) must equal an approver exactly. A bare
    role (``release-manager``) matches ``role:<role>``, ``group:<role>`` and ``team:<role>``; addresses
    of people and channels (``user:``, ``email:``, ``slack:``...) never stand for a role."""
    if ":" in required:
        return approver == required
    prefix, _, rest = approver.partition(":")
    return prefix in ROLE_PREFIXES and rest == required


def _approval_problem(approval: Approval, role: str) -> str | None:
    """Why ``approval`` does not satisfy the gate for ``role``; None when it does."""
    spec = approval.spec
    if spec.action.type != "promotion":
        return f"its spec.action.type is {spec.action.type}, not promotion"
    approvers = list(spec.routing.approvers or ())
    if not any(approver_matches(a, role) for a in approvers):
        listed = ", ".join(approvers) if approvers else "none"
        return f"its spec.routing.approvers ({listed}) do not include {role}"
    status = approval.status
    phase = status.phase if status is not None else None
    decision = status.decision if status is not None else None
    if phase == "Overridden" or (phase == "Approved" and decision == "approve"):
        return None
    if phase is None or phase == "Pending":
        return "it is Pending (not decided yet)"
    if phase == "Approved":
        return f"its status.decision is {decision or 'unset'}, not approve"
    by = f" by {status.decided_by}" if status is not None and status.decided_by else ""
    return f"it is {phase}{by}"


def _approval_problems(deployment: Deployment, role: str, world: World) -> list[str]:
    namespace = deployment.metadata.namespace or ""
    name = deployment.metadata.name or ""
    wanted = f"an approved promotion Approval for {role}"
    candidates = world.labelled(Approval, namespace, {DEPLOYMENT_LABEL: name})
    if not candidates:
        return [
            f"{wanted} is required; there is none (no Approval in namespace {namespace} is labelled "
            f"{DEPLOYMENT_LABEL}={name})"
        ]
    reasons: list[str] = []
    for approval in candidates:
        problem = _approval_problem(approval, role)
        if problem is None:
            return []
        reasons.append(f"Approval {namespace}/{approval.metadata.name}: {problem}")
    more = len(reasons) - MAX_LISTED
    listed = "; ".join(reasons[:MAX_LISTED]) + (f" (and {more} more)" if more > 0 else "")
    return [
        f"{wanted} is required; none of the Approvals labelled {DEPLOYMENT_LABEL}={name} is one: {listed}"
    ]


# --- both -------------------------------------------------------------------------------------------


def target_environment(deployment: Deployment, world: World, settings: OperatorSettings) -> str | None:
    """The Environment the Deployment deploys to: ``spec.environmentRef``, else its Agent's (D5)."""
    if deployment.spec.environment_ref is not None:
        return deployment.spec.environment_ref.name
    namespace = deployment.metadata.namespace or ""
    agent = world.get(Agent, namespace, deployment.spec.agent_ref.name)
    if agent is None:
        return None
    return scope.environment_of(agent, world.namespace_labels(namespace), settings)


def protected_environment(deployment: Deployment, world: World, settings: OperatorSettings) -> str | None:
    """The name of the Deployment's target Environment when it is ``spec.protected``, else None."""
    name = target_environment(deployment, world, settings)
    environment = world.get(Environment, None, name) if name else None
    return name if environment is not None and environment.spec.protected else None


def check_protected(
    deployment: Deployment, world: World, settings: OperatorSettings, grants: frozenset[str]
) -> Findings:
    """An error when the Deployment promotes into a protected Environment and ``grants`` (the verbs the
    API server said the user holds on that Environment) lacks :data:`PROMOTE_VERB`."""
    findings = Findings()
    protected = protected_environment(deployment, world, settings)
    if protected is not None and PROMOTE_VERB not in grants:
        findings.error(
            ENVIRONMENT_PATH,
            f"Environment {protected} is protected: promoting into it needs the {PROMOTE_VERB} verb on "
            f"environments/{protected} (ops.joch.dev) in namespace {deployment.metadata.namespace}; ask "
            "for a RoleBinding to a ClusterRole granting it (docs/teams.md)",
            REASON,
        )
    return findings


def check_gates(deployment: Deployment, world: World) -> Findings:
    """Errors for every gate of ``spec.promotion`` that does not pass (see the module docstring)."""
    findings = Findings()
    promotion = deployment.spec.promotion
    if promotion is None:
        return findings
    if promotion.requires_eval is not None:
        for problem in _eval_problems(deployment, promotion.requires_eval, world):
            findings.error(EVAL_PATH, problem, REASON)
    if promotion.requires_approval is not None:
        for problem in _approval_problems(deployment, promotion.requires_approval, world):
            findings.error(APPROVAL_PATH, problem, REASON)
    return findings


# --- the Approval a blocked promotion asks for -------------------------------------------------------

PROMOTION_TIMEOUT_MINUTES: Final = 1440
"""How long a promotion request waits for a decision (a day), then it expires (denied)."""
MAX_LABEL_VALUE: Final = 63


def promotion_request_name(deployment: Deployment) -> str:
    """``<deployment>-promotion-<hash>``: one request per promoted state (agentRef, environmentRef,
    promotion), so applying the same Deployment again finds the same request."""
    promoted = {
        "agentRef": deployment.spec.agent_ref.model_dump(mode="json", by_alias=True, exclude_none=True),
        "environmentRef": deployment.spec.environment_ref.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        if deployment.spec.environment_ref is not None
        else None,
        "promotion": deployment.spec.promotion.model_dump(mode="json", by_alias=True, exclude_none=True)
        if deployment.spec.promotion is not None
        else None,
    }
    digest = hashlib.sha256(json.dumps(promoted, sort_keys=True).encode()).hexdigest()[:10]
    return f"{(deployment.metadata.name or '')[: 253 - 21]}-promotion-{digest}"


def requested_approval(deployment: Deployment, world: World, requester: str) -> dict[str, Any] | None:
    """The Pending Approval to create for a Deployment whose ``requiresApproval`` gate blocked it, or None
    when it needs none (no such gate, the gate passes, its request exists already, or the Deployment's
    name cannot be a label value)."""
    promotion = deployment.spec.promotion
    if promotion is None or promotion.requires_approval is None:
        return None
    namespace = deployment.metadata.namespace or ""
    name = deployment.metadata.name or ""
    if not name or len(name) > MAX_LABEL_VALUE:
        return None
    role = promotion.requires_approval
    if not _approval_problems(deployment, role, world):
        return None
    request_name = promotion_request_name(deployment)
    if world.get(Approval, namespace, request_name) is not None:
        return None
    approver = role if ":" in role else f"role:{role}"
    environment = (
        deployment.spec.environment_ref.name if deployment.spec.environment_ref else "its environment"
    )
    agent = deployment.spec.agent_ref
    requested_by: dict[str, Any] = {"agentRef": {"name": agent.name}}
    if agent.namespace:
        requested_by["agentRef"]["namespace"] = agent.namespace
    if requester:
        requested_by["user"] = requester[:254]
    return {
        "apiVersion": f"{Approval.crd.group}/v1alpha1",
        "kind": "Approval",
        "metadata": {
            "name": request_name,
            "namespace": namespace,
            "labels": {DEPLOYMENT_LABEL: name, "app.kubernetes.io/managed-by": "joch"},
        },
        "spec": {
            "requestedBy": requested_by,
            "action": {
                "type": "promotion",
                "inputSummary": f"Deployment {name}: Agent {agent.name} to {environment}",
            },
            "risk": {"summary": f"promotion of Agent {agent.name} to {environment} (requiresApproval)"},
            "routing": {
                "approvers": [approver],
                "timeoutMinutes": PROMOTION_TIMEOUT_MINUTES,
                "onTimeout": "deny",
            },
            "options": ["approve", "reject"],
        },
    }
