"""The admission pipeline for one request: :class:`Admission` ``.mutate()`` and ``.validate()``.

Validation, in order (every stage runs, so one answer names every problem):

1. DELETE and CONNECT pass. An UPDATE that changes neither the spec nor the labels passes at once:
   that is kopf's own annotation and finalizer patches, a controller's metadata change, or a no-op
   re-apply; nothing admission judges has changed, so the answer cannot change (idempotency).
2. Parse into the kind's model (semantic.py can only judge a well-formed object): schema and
   validator errors, each with its field path.
3. Semantic checks of the kind (semantic.py).
4. References (refs.py): D2 errors, D10 warnings for missing targets (decisions: docs/decisions.md).
5. Policy preflight (D9) and compile-time checks (agents.py): Agent (its own environment), Deployment
   (the Agent in the Deployment's environmentRef), ModelRoute (an unlabelled Agent of its namespace).
   A Deployment's promotion gates (promotion.py), on CREATE and on an UPDATE changing its agentRef,
   environmentRef or promotion (the old object is parsed for that).
6. Impact (impact.py), only when there is no error so far: a Policy, Environment, ModelRoute or Team
   change that would newly put existing Agents in violation is admitted with a warning listing them.

Everything is pure: the World is given, nothing is written, so ``dryRun`` requests are handled exactly
like real ones (the webhooks declare sideEffects None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.toolcall import ToolCall
from joch.domain.admission import (
    agents,
    approvals,
    defaulting,
    executions,
    impact,
    parsing,
    promotion,
    refs,
    semantic,
)
from joch.domain.admission.preflight import CompiledPolicies
from joch.domain.admission.verdict import Findings, Verdict
from joch.domain.admission.world import SelectorIndex, World
from joch.domain.policy import CompileOptions
from joch.domain.settings import OperatorSettings

__all__ = ["JUDGED_OPERATIONS", "Admission", "Request", "UserInfo"]

JUDGED_OPERATIONS: Final = frozenset({"CREATE", "UPDATE"})


@dataclasses.dataclass(frozen=True, slots=True)
class UserInfo:
    """Who sent the request, as the API server authenticated them (never what the client claims)."""

    username: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def first(self, key: str) -> str | None:
        values = self.extra.get(key) or ()
        return values[0] if values else None


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One admission request, as the domain sees it (the webhooks build it from an AdmissionReview)."""

    operation: str
    kind: str
    name: str | None = None
    namespace: str | None = None
    object: Any = None
    old_object: Any = None
    dry_run: bool = False
    sub_resource: str = ""
    user: UserInfo = dataclasses.field(default_factory=UserInfo)
    grants: frozenset[str] = frozenset()
    """Verbs the API server said the user holds on this object (asked by the webhook layer when a check
    needs them: the override and acknowledge verbs on Approvals)."""
    now: str = ""
    """The server's clock (RFC 3339) when the request arrived; stamped into decisions."""


def _labels(obj: Any) -> Any:
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    return metadata.get("labels") if isinstance(metadata, Mapping) else None


def unchanged(request: Request) -> bool:
    """An UPDATE that leaves the spec and the labels as they were."""
    new, old = request.object, request.old_object
    if request.operation != "UPDATE" or not isinstance(new, Mapping) or not isinstance(old, Mapping):
        return False
    return bool(new.get("spec") == old.get("spec") and (_labels(new) or {}) == (_labels(old) or {}))


def _name_of(request: Request) -> str:
    obj = request.object
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if isinstance(name, str) and name:
        return name[:253]
    return (request.name or "")[:253]


class Admission:
    """The admission checks with their long-lived state: settings and a compiled-policy cache.

    One instance serves every request of a process (not thread-safe: the operator calls it from its
    event loop, the CLI from one thread).
    """

    def __init__(
        self,
        settings: OperatorSettings,
        *,
        policies: CompiledPolicies | None = None,
        analyse_impact: bool = True,
        execution_gates: tuple[executions.ExecutionGate, ...] = (),
    ) -> None:
        self.settings = settings
        self.execution_gates = execution_gates
        """Further checks of a new Execution (budgets)."""
        if policies is None:
            policies = CompiledPolicies(CompileOptions(cel_backend=settings.cel_backend))
        self.policies = policies
        self.analyse_impact = analyse_impact
        self.index = SelectorIndex(settings.shared_namespaces)
        self.operator_users: frozenset[str] = frozenset()
        """The operator's own user names (learned at start-up): the writers trusted with Approval
        bookkeeping (Pending, expiresAt, expiry)."""

    def actor(self, request: Request) -> approvals.Actor:
        user = request.user
        return approvals.Actor(
            username=user.username,
            groups=user.groups,
            grants=request.grants,
            is_operator=bool(user.username) and user.username in self.operator_users,
        )

    # --- mutating ------------------------------------------------------------------------------------

    def mutate(self, request: Request, world: World) -> defaulting.Mutation:
        """The dynamic defaults to add (defaulting.py); empty for kinds without any. Approvals get the
        server's witness stamped (approvals.py)."""
        if request.kind == "Approval":
            if request.sub_resource == "status" and request.operation == "UPDATE":
                stamped = approvals.stamp_status(
                    request.object, request.old_object, self.actor(request), request.now
                )
                return defaulting.Mutation(tuple(stamped))
            if request.operation == "CREATE" and not request.sub_resource:
                return defaulting.Mutation(tuple(approvals.stamp_create(request.object, self.actor(request))))
        return defaulting.defaults_for(
            request.kind,
            request.object,
            namespace=request.namespace,
            world=world,
            settings=self.settings,
            old=request.old_object,
            operation=request.operation,
        )

    # --- validating ----------------------------------------------------------------------------------

    def validate(self, request: Request, world: World) -> Verdict:
        """The verdict on one request (see the module docstring)."""
        name = _name_of(request)
        if request.sub_resource == "status" and request.kind in ("Execution", "Approval"):
            judge = self._execution_status if request.kind == "Execution" else self._approval_status
            return judge(request, world, name)
        if request.operation not in JUDGED_OPERATIONS or unchanged(request):
            return Verdict(request.kind, name)
        immutable = _immutable_fields(request)
        if immutable.errors:
            return immutable.verdict(request.kind, name)
        parsed = parsing.parse_object(request.object)
        kind = parsed.kind.crd.kind if parsed.kind is not None else request.kind
        if parsed.obj is None:
            return parsed.findings.verdict(kind, name)
        obj = parsed.obj
        findings = Findings()
        if type(obj).crd.scope == "Namespaced" and not obj.metadata.namespace:
            if not request.namespace:
                findings.error("metadata.namespace", f"a {kind} is namespaced: a namespace is required")
                return findings.verdict(kind, name)
            obj = obj.model_copy(
                update={"metadata": obj.metadata.model_copy(update={"namespace": request.namespace})}
            )
        old = None
        if request.operation == "UPDATE" and isinstance(obj, Deployment | Execution | ToolCall):
            old = parsing.parse_object(request.old_object).obj
        return self.judge(obj, world, old=old, grants=request.grants).verdict(kind, name)

    def _approval_status(self, request: Request, world: World, name: str) -> Verdict:
        """A write of an Approval's status: a decision, an expiry, an override, an acknowledgement."""
        if request.operation != "UPDATE":
            return Verdict(request.kind, name)
        return approvals.check_status_write(
            request.object,
            request.old_object,
            self.actor(request),
            now=request.now,
            teams=lambda team: world.get(Team, None, team),
            name=name,
        ).verdict(request.kind, name)

    def _execution_status(self, request: Request, world: World, name: str) -> Verdict:
        """A write of an Execution's status: a worker may report only into its own run (the rest of the
        callers are left to RBAC)."""
        user = request.user
        new, old = request.object, request.old_object
        if not executions.is_worker(user.username, request.namespace):
            return Verdict(request.kind, name)
        if not isinstance(new, Mapping) or not isinstance(old, Mapping):
            findings = Findings()
            findings.error("status", "the request carries no object to judge", "BadRequest")
            return findings.verdict(request.kind, name)
        token_pod = user.first(executions.POD_NAME_EXTRA)
        return executions.check_worker_status(new, old, token_pod=token_pod).verdict(request.kind, name)

    def judge(
        self,
        obj: meta.Resource,
        world: World,
        *,
        strict_missing: bool = False,
        old: meta.Resource | None = None,
        grants: frozenset[str] | None = None,
    ) -> Findings:
        """Stages 3-6 for a parsed object (``joch validate`` / ``joch apply`` call this directly).

        ``old`` is the stored version on an UPDATE (None on CREATE, or when it does not parse); only
        Deployments look at it, to tell whether the promotion gates are due. ``grants``: the verbs the
        API server said the user holds (admission asks when a check needs them); None offline, where
        the protected-environment gate is left to the server."""
        findings = semantic.check_object(obj, self.settings)
        is_agent = isinstance(obj, Agent)
        findings.extend(refs.check_references(obj, world, self.settings, missing=not is_agent))
        if isinstance(obj, Agent):
            report = agents.evaluate_agent(obj, world, self.settings, self.policies, index=self.index)
            findings.extend(agents.report_findings(report))
            findings.extend(agents.duplicate_tool_names(report))
        elif isinstance(obj, ModelRoute):
            findings.extend(agents.route_report(obj, world, self.settings, self.policies, index=self.index))
        elif isinstance(obj, Deployment):
            findings.extend(self._deployment(obj, world))
            previous = old if isinstance(old, Deployment) else None
            if promotion.gates_due(obj, previous):
                findings.extend(promotion.check_gates(obj, world))
            if grants is not None and promotion.promotes(obj, previous):
                findings.extend(promotion.check_protected(obj, world, self.settings, grants))
        elif isinstance(obj, Execution) and old is None:  # created (an update may only cancel it)
            findings = _without_missing_agent(findings)
            findings.extend(
                executions.check_execution(
                    obj, world, self.settings, self.policies, index=self.index, gates=self.execution_gates
                )
            )
        elif isinstance(obj, ToolCall) and old is None:
            findings.extend(executions.check_tool_call(obj, world))
        if strict_missing:
            findings = _strict(findings)
        if self.analyse_impact and not findings.errors and isinstance(obj, impact.IMPACT_KINDS):
            findings.extend(
                impact.impact_findings(obj, world, self.settings, self.policies, index=self.index)
            )
        return findings

    def _deployment(self, deployment: Deployment, world: World) -> Findings:
        findings = Findings()
        namespace = deployment.metadata.namespace or ""
        ref = deployment.spec.agent_ref
        target = ref.namespace or namespace
        if target != namespace and not self.settings.is_shared(target):
            return findings  # refs.py reports the forbidden reference
        agent = world.get(Agent, target, ref.name)
        if agent is None:
            return findings  # refs.py warns that it is missing
        override = deployment.spec.environment_ref
        probe = agents.agent_in_environment(agent, override.name) if override is not None else agent
        report = agents.evaluate_agent(
            probe, world, self.settings, self.policies, with_checks=False, index=self.index
        )
        field = "spec.environmentRef" if override is not None else "spec.agentRef"
        for denial in report.denials:
            path, message = agents.locate(denial, report.gathered)
            findings.error(
                field,
                f"Agent {target}/{ref.name} in environment {report.gathered.environment_name}: "
                f"{path}: {message}",
                "PolicyDenied",
            )
        return findings


def _immutable_fields(request: Request) -> Findings:
    """What an UPDATE may not change: an Execution's spec (but cancel), an Approval's spec."""
    new, old = request.object, request.old_object
    if request.operation != "UPDATE" or not isinstance(new, Mapping) or not isinstance(old, Mapping):
        return Findings()
    if request.kind == "Execution":
        return executions.check_execution_update(new, old)
    if request.kind == "Approval":
        return approvals.check_spec_unchanged(new, old)
    return Findings()


def _without_missing_agent(findings: Findings) -> Findings:
    """An Execution's missing Agent is an error of its own (executions.py); the generic warning would
    only repeat it."""
    kept = Findings()
    for finding in findings.errors:
        kept.error(finding.path, finding.message, finding.reason)
    for finding in findings.warnings:
        if not finding.path.startswith("spec.agentRef"):
            kept.warn(finding.path, finding.message, finding.reason)
    return kept


def _strict(findings: Findings) -> Findings:
    """Missing references become errors (``joch apply`` without ``--allow-pending``)."""
    strict = Findings(errors=list(findings.errors))
    for warning in findings.warnings:
        if warning.reason == "MissingReference":
            strict.error(warning.path, warning.message.split("; admitted")[0], "MissingReference")
        else:
            strict.warnings.append(warning)
    return strict
