"""Admission of runtime objects: Executions (strict: people and tools create them, not GitOps), what a
worker may write into an Execution's status, and ToolCalls.

- An Execution is admitted only when its Agent exists in its namespace, is compiled (its
  status.compiledManifest is set) and PolicyCompliant; a ``modelRouteOverride`` must name a ModelRoute
  that exists and that the Agent's policies allow (the same preflight as the Agent's own route). Its
  input must fit in :data:`~joch.domain.reconcile.executions.MAX_INPUT_BYTES`. Further gates are
  :data:`ExecutionGate` functions given to :class:`~joch.domain.admission.Admission`: the operator's
  webhooks give one refusing runs over a hard limit (BudgetExceeded, joch.domain.reconcile.budgets).
- After creation only ``spec.cancel`` may change, and only from unset/false to true.
- A worker (the ServiceAccount ``joch-worker``) may write only the status of the Execution its own Pod
  runs, and only the fields it reports (joch.domain.reconcile.executions.worker_report_problem).
- A ToolCall must name an Execution that exists, the same Agent as that Execution, and a Tool the
  Agent's manifest grants (one of its spec.tools).

Agent statuses come from the World's base (the operator's store); a base that holds no statuses (``joch
validate`` on files) skips the compiled/PolicyCompliant checks rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.agent import Agent, AgentModelRoute
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.toolcall import ToolCall
from joch.domain.admission import agents
from joch.domain.admission.preflight import CompiledPolicies
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import SelectorIndex, World
from joch.domain.reconcile import executions as plan
from joch.domain.reconcile.status import conditions_by_type
from joch.domain.settings import OperatorSettings

__all__ = [
    "WORKER_ACCOUNT",
    "ExecutionGate",
    "check_execution",
    "check_execution_update",
    "check_tool_call",
    "check_worker_status",
    "is_worker",
]

ExecutionGate = Callable[[Execution, World], Findings]
"""A further check of a new Execution (the budgets service adds one that rejects runs over a hard cap)."""


WORKER_ACCOUNT: Final = "joch-worker"
POD_NAME_EXTRA: Final = "authentication.kubernetes.io/pod-name"
"""The user extra a bound service-account token carries: the Pod it was issued to."""


def check_execution(
    execution: Execution,
    world: World,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    *,
    index: SelectorIndex | None = None,
    gates: Sequence[ExecutionGate] = (),
) -> Findings:
    """The checks of a new Execution (see the module docstring)."""
    findings = Findings()
    namespace = execution.metadata.namespace or ""
    ref = execution.spec.agent_ref
    if ref.namespace and ref.namespace != namespace:
        findings.error(
            "spec.agentRef.namespace",
            f"an Execution runs an Agent of its own namespace ({namespace}), not of {ref.namespace}",
            "ForbiddenReference",
        )
        return findings
    own_name = execution.metadata.name or ""
    if len(own_name) > plan.MAX_LABEL_VALUE:
        findings.error(
            "metadata.name",
            f"an Execution's name is at most {plan.MAX_LABEL_VALUE} characters (it names its Job and labels "
            f"its Pod); this one has {len(own_name)}",
            "TooLong",
        )
    if len(ref.name) > plan.MAX_LABEL_VALUE:
        findings.error(
            "spec.agentRef.name",
            f"an Agent whose name is longer than {plan.MAX_LABEL_VALUE} characters cannot run (its name "
            "labels the Job and Pod)",
            "TooLong",
        )
    size = len(plan.input_json(execution).encode())
    if size > plan.MAX_INPUT_BYTES:
        findings.error(
            "spec.input",
            f"the input is {size} bytes as JSON; at most {plan.MAX_INPUT_BYTES} are allowed (pass large "
            "inputs by reference: a part of kind file with a uri)",
            "TooLarge",
        )
    agent = world.get(Agent, namespace, ref.name)
    if agent is None:
        findings.error("spec.agentRef", f"Agent {namespace}/{ref.name} not found", "AgentNotFound")
        return findings
    status = world.status_of("Agent", namespace, ref.name)
    if status is not None:
        _check_agent_status(findings, ref.name, status)
    override = execution.spec.model_route_override
    if override is not None:
        findings.extend(
            _check_override(
                agent, override.route_ref, world, settings=settings, policies=policies, index=index
            )
        )
    for gate in gates:
        findings.extend(gate(execution, world))
    return findings


def _check_agent_status(findings: Findings, name: str, status: Mapping[str, Any]) -> None:
    conditions = conditions_by_type(status)
    if status.get("phase") == "Suspended":
        findings.error("spec.agentRef", f"Agent {name} is Suspended", "AgentSuspended")
        return
    if not status.get("compiledManifest"):
        ready = conditions.get("Ready") or {}
        why = f": {ready['message']}" if ready.get("message") else ""
        findings.error(
            "spec.agentRef",
            f"Agent {name} is not compiled (no status.compiledManifest){why}",
            "AgentNotCompiled",
        )
        return
    compliant = conditions.get("PolicyCompliant")
    if compliant is not None and compliant.get("status") != "True":
        findings.error(
            "spec.agentRef",
            f"Agent {name} is not PolicyCompliant: {compliant.get('message') or compliant.get('reason')}",
            "AgentNotCompliant",
        )


def _check_override(
    agent: Agent,
    route_ref: Any,
    world: World,
    *,
    settings: OperatorSettings,
    policies: CompiledPolicies,
    index: SelectorIndex | None,
) -> Findings:
    findings = Findings()
    namespace = agent.metadata.namespace or ""
    field = "spec.modelRouteOverride.routeRef"
    target = route_ref.namespace or namespace
    if target != namespace and not settings.is_shared(target):
        findings.error(
            f"{field}.namespace", f"namespace {target} is not shared (sharedNamespaces)", "ForbiddenReference"
        )
        return findings
    if world.get(ModelRoute, target, route_ref.name) is None:
        findings.error(field, f"ModelRoute {target}/{route_ref.name} not found", "MissingReference")
        return findings
    probe = agent.model_copy(
        update={"spec": agent.spec.model_copy(update={"model_route": AgentModelRoute(route_ref=route_ref)})}
    )
    report = agents.evaluate_agent(probe, world, settings, policies, with_checks=False, index=index)
    for problem in report.problems:
        if problem.reason == "PolicyDenied" or problem.path.startswith("spec.modelRoute"):
            path, message = agents.locate(problem, report.gathered)
            findings.error(field, f"route {route_ref.name}: {path}: {message}", problem.reason)
    return findings


_SPEC_FIELDS: Final = (
    "agentRef",
    "trigger",
    "input",
    "conversationRef",
    "modelRouteOverride",
    "budgets",
    "observability",
    "timeoutSeconds",
)


def check_execution_update(new: Mapping[str, Any], old: Mapping[str, Any]) -> Findings:
    """Only spec.cancel may change, and only to true."""
    findings = Findings()
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for key in sorted(set(new_spec) | set(old_spec)):
        if key == "cancel" or new_spec.get(key) == old_spec.get(key):
            continue
        findings.error(
            f"spec.{key}",
            "an Execution's spec cannot change after it is created (only spec.cancel may be set); create "
            "another Execution",
            "Immutable",
        )
    if old_spec.get("cancel") is True and new_spec.get("cancel") is not True:
        findings.error("spec.cancel", "a cancelled Execution cannot be resumed", "Immutable")
    return findings


def is_worker(username: str, namespace: str | None) -> bool:
    """Whether the requester is the workers' ServiceAccount of ``namespace``."""
    return bool(namespace) and username == f"system:serviceaccount:{namespace}:{WORKER_ACCOUNT}"


def check_worker_status(new: Mapping[str, Any], old: Mapping[str, Any], *, token_pod: str | None) -> Findings:
    """A worker's write of an Execution's status (see the module docstring)."""
    findings = Findings()
    name = str((old.get("metadata") or {}).get("name") or "")
    problem = plan.worker_report_problem(
        old.get("status") if isinstance(old.get("status"), Mapping) else None,
        new.get("status") if isinstance(new.get("status"), Mapping) else None,
        execution=name,
        token_pod=token_pod,
    )
    if problem is not None:
        findings.error(problem[0], problem[1], "Forbidden")
    return findings


def check_tool_call(call: ToolCall, world: World) -> Findings:
    """A new ToolCall must belong to an Execution of its Agent and name a Tool the Agent is granted."""
    findings = Findings()
    namespace = call.metadata.namespace or ""
    execution = world.stored(Execution, namespace, call.spec.execution_ref.name)
    if execution is None:
        if world.base_holds("Execution"):
            findings.error(
                "spec.executionRef",
                f"Execution {namespace}/{call.spec.execution_ref.name} not found",
                "MissingReference",
            )
        return findings
    if execution.spec.agent_ref.name != call.spec.agent_ref.name:
        findings.error(
            "spec.agentRef",
            f"Execution {execution.metadata.name} runs Agent {execution.spec.agent_ref.name}, not "
            f"{call.spec.agent_ref.name}",
            "Mismatch",
        )
        return findings
    agent = world.get(Agent, namespace, call.spec.agent_ref.name)
    granted = {tool.name for tool in (agent.spec.tools or ())} if agent is not None else set()
    if call.spec.tool_ref.name not in granted:
        findings.error(
            "spec.toolRef",
            f"Tool {call.spec.tool_ref.name} is not granted to Agent {call.spec.agent_ref.name} (its "
            f"manifest grants: {', '.join(sorted(granted)) or 'no tools'})",
            "NotGranted",
        )
    return findings
