"""Desired status of Agents and of the kinds they reference, as plain wire-form dicts (pure).

kstatus (decision D11): every status carries ``observedGeneration`` and the conditions ``Ready``,
``Reconciling`` and ``Stalled``; Agents add ``ResolvedRefs``, ``Compiled`` and ``PolicyCompliant``.

Agent outcomes (phase; then the status and reason of Ready, Reconciling, Stalled, ResolvedRefs, Compiled):

- compiled: ``Ready``; Ready True Compiled, Reconciling False Reconciled, Stalled False Reconciled,
  ResolvedRefs True ReferencesResolved, Compiled True Compiled.
- a reference is missing or forbidden: ``Pending``; Ready False MissingReference (or
  ForbiddenReference), Reconciling True WaitingForReferences, Stalled False, ResolvedRefs False with
  the same reason and a message naming every such reference, Compiled False ReferencesUnresolved.
- a compile problem (CapabilityMismatch, RequirementUnmet, PolicyDenied, InvalidPolicy,
  ToolNotAllowed, InvalidName): ``Failed``; Ready False <first reason>, Reconciling False, Stalled True
  <first reason>, Compiled False <first reason> with every problem in the message.
- the object does not parse: ``Failed``; Ready False InvalidSpec, Reconciling False, Stalled True
  InvalidSpec.

``PolicyCompliant`` is False (reason PolicyDenied or InvalidPolicy) when preflight reports a policy
problem, True (reason PolicyCompliant) otherwise. Reference problems and compile problems can occur
together; Ready then carries the reference reason (the compile problems may be consequences).

``lastTransitionTime`` changes only when a condition's status changes (:func:`merge_conditions`);
messages are deterministic (no times, sorted where order is not meaningful), so recomputing the status
of an unchanged Agent yields an equal dict and :func:`status_patch` returns None: no write.
``compiledManifest`` keeps pointing at the last good manifest while an Agent cannot be compiled.

Referenced kinds (:func:`referenced_status`): Ready + observedGeneration + phase for Model, ModelRoute,
Tool, MCPServer, Memory, RAG, FrameworkAdapter, Policy, Environment and Team, plus each kind's
counters: FrameworkAdapter.agentsBound, Policy.agentsSelected and version ``v<generation>``,
Environment.agentCount, Team.memberCount, Tool.toolName, Model.address. A ModelRoute whose models do
not all resolve is Pending (Ready False, MissingReference); a Policy that does not compile is Failed
(Ready False, InvalidPolicy); everything else the operator accepts as is (Ready True, Accepted): no
probing or conformance runs yet. An MCPServer that is Suspended (quarantine) keeps that phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import AgentStatus
from joch.api.v1alpha1.environment import Environment, EnvironmentStatus
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter, FrameworkAdapterStatus
from joch.api.v1alpha1.mcpserver import MCPServer, MCPServerStatus
from joch.api.v1alpha1.memory import MemoryStatus
from joch.api.v1alpha1.model import Model, ModelStatus
from joch.api.v1alpha1.modelroute import ModelRoute, ModelRouteStatus
from joch.api.v1alpha1.policy import Policy, PolicyStatus
from joch.api.v1alpha1.rag import RAGStatus
from joch.api.v1alpha1.team import Team, TeamStatus
from joch.api.v1alpha1.tool import Tool, ToolStatus
from joch.domain.compilation import catalog
from joch.domain.compilation.compiler import Compiled
from joch.domain.compilation.problems import Problem
from joch.domain.settings import OperatorSettings

__all__ = [
    "AGENT_FIELDS",
    "CONDITION_ORDER",
    "REFERENCED_KINDS",
    "agent_status",
    "condition",
    "conditions_by_type",
    "drift_warning",
    "invalid_agent_status",
    "merge_conditions",
    "only_manifest_moved",
    "referenced_status",
    "status_patch",
]

MAX_MESSAGE: Final = 8192
POLICY_REASONS: Final = frozenset({"PolicyDenied", "InvalidPolicy"})
CONDITION_ORDER: Final = ("Ready", "Reconciling", "Stalled", "ResolvedRefs", "Compiled", "PolicyCompliant")
AGENT_FIELDS: Final = (
    "phase",
    "observedGeneration",
    "conditions",
    "compiledManifest",
    "framework",
    "modelRoute",
    "environment",
)
"""Agent status fields the controller owns (others, e.g. activeExecutions, belong to other writers)."""

_STATUS_MODELS: Final[Mapping[str, type[meta.Status]]] = {
    "Agent": AgentStatus,
    "Model": ModelStatus,
    "ModelRoute": ModelRouteStatus,
    "Tool": ToolStatus,
    "MCPServer": MCPServerStatus,
    "Memory": MemoryStatus,
    "RAG": RAGStatus,
    "FrameworkAdapter": FrameworkAdapterStatus,
    "Policy": PolicyStatus,
    "Environment": EnvironmentStatus,
    "Team": TeamStatus,
}
REFERENCED_KINDS: Final = frozenset(_STATUS_MODELS) - {"Agent"}
COUNTED_KINDS: Final = frozenset({"FrameworkAdapter", "Policy", "Environment"})
REFERENCED_CONDITIONS: Final = ("Ready", "Stalled", "Drifted")
"""The conditions the operator owns on a referenced object (Stalled only while it does not parse)."""
"""Kinds whose status counts the Agents depending on them."""


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def condition(type_: str, status: str, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    """One condition in wire form, without lastTransitionTime (see :func:`merge_conditions`)."""
    out: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": _clip(message)}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def conditions_by_type(status: Mapping[str, Any]) -> dict[Any, Mapping[str, Any]]:
    """A status's conditions by type (entries that are not objects left out)."""
    return {c.get("type"): c for c in status.get("conditions") or () if isinstance(c, Mapping)}


def drift_warning(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """The message of the Warning ``SchemaDrift`` Event an MCPServer's status change calls for: when its
    Drifted condition turned True or now says something else; None otherwise."""
    old = conditions_by_type(before).get("Drifted") or {}
    new = conditions_by_type(after).get("Drifted") or {}
    if new.get("status") != "True" or (old.get("status"), old.get("message")) == ("True", new.get("message")):
        return None
    return str(new.get("message") or "")


def merge_conditions(
    desired: Sequence[Mapping[str, Any]],
    current: Sequence[Mapping[str, Any]] | None,
    now: str,
    *,
    owned: frozenset[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """``desired`` with lastTransitionTime: the current one when the status did not change, else ``now``.

    Current conditions of other types are kept after them (other writers own those), except the types
    in ``owned`` that ``desired`` leaves out: they are dropped.
    """
    current = [c for c in current or () if isinstance(c, Mapping)]
    previous = {c.get("type"): c for c in current}
    mine = {c["type"] for c in desired} | set(owned)
    out = []
    for cond in desired:
        merged = dict(cond)
        before = previous.get(cond["type"])
        if before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            merged["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            merged["lastTransitionTime"] = now
        out.append(merged)
    out.extend(dict(c) for c in current if c.get("type") not in mine)
    return out


def _listing(problems: Sequence[Problem]) -> str:
    return "; ".join(str(p) for p in problems)


def _agent_conditions(compiled: Compiled) -> tuple[str, list[dict[str, Any]]]:
    """(phase, conditions in CONDITION_ORDER) for one compile result, without transition times."""
    generation = compiled.generation
    refs = compiled.reference_problems
    others = compiled.compile_problems
    policy = tuple(p for p in others if p.reason in POLICY_REASONS)

    if refs:
        resolved = condition("ResolvedRefs", "False", refs[0].reason, _listing(refs), generation)
    else:
        resolved = condition(
            "ResolvedRefs", "True", "ReferencesResolved", "every reference resolved", generation
        )
    if others:
        built = condition("Compiled", "False", others[0].reason, _listing(others), generation)
    elif refs:
        built = condition(
            "Compiled",
            "False",
            "ReferencesUnresolved",
            "waiting for references (see ResolvedRefs)",
            generation,
        )
    else:
        built = condition(
            "Compiled",
            "True",
            "Compiled",
            f"manifest {compiled.name} (sha256 {compiled.sha256[:12]})",
            generation,
        )
    if policy:
        compliant = condition("PolicyCompliant", "False", policy[0].reason, _listing(policy), generation)
    else:
        count = len(compiled.manifest.get("spec", {}).get("policies", {}).get("resolved", []))
        message = f"preflight passed for {count} effective policies"
        compliant = condition("PolicyCompliant", "True", "PolicyCompliant", message, generation)

    if compiled.ok:
        phase = "Ready"
        ready = condition("Ready", "True", "Compiled", f"manifest {compiled.name} is current", generation)
        reconciling = condition("Reconciling", "False", "Reconciled", "up to date", generation)
        stalled = condition("Stalled", "False", "Reconciled", "up to date", generation)
    elif refs:
        phase = "Pending"
        ready = condition("Ready", "False", refs[0].reason, _listing(refs), generation)
        waiting = "compiles as soon as every reference exists"
        reconciling = condition("Reconciling", "True", "WaitingForReferences", waiting, generation)
        stalled = condition("Stalled", "False", "Reconciled", "waiting, not stalled", generation)
    else:
        phase = "Failed"
        ready = condition("Ready", "False", others[0].reason, _listing(others), generation)
        needs = "needs a change to the Agent or its references"
        reconciling = condition("Reconciling", "False", "Reconciled", needs, generation)
        stalled = condition("Stalled", "True", others[0].reason, _listing(others), generation)
    return phase, [ready, reconciling, stalled, resolved, built, compliant]


def agent_status(compiled: Compiled, *, current: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The Agent status fields the controller owns (AGENT_FIELDS), for one compile result."""
    phase, conditions = _agent_conditions(compiled)
    desired: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": compiled.generation,
        "conditions": merge_conditions(conditions, current.get("conditions"), now, owned=CONDITION_ORDER),
        "framework": compiled.framework,
        "environment": compiled.environment,
    }
    if compiled.model_route is not None:
        desired["modelRoute"] = compiled.model_route
    if compiled.ok:
        desired["compiledManifest"] = compiled.status_ref()
    elif current.get("compiledManifest") is not None:
        desired["compiledManifest"] = current["compiledManifest"]
    return _validated("Agent", desired)


def invalid_status(
    kind: str, error: str, *, generation: int | None, current: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """Status of a stored object the model rejects, the same for every kind: phase Failed, Ready False
    and Stalled True with reason InvalidSpec and a message naming the fields and why. (Readers treat
    such an object as absent: the cache keeps it without a parsed model.)"""
    message = f"the {kind} does not parse: {error}"
    conditions = [condition("Ready", "False", "InvalidSpec", message, generation)]
    if kind == "Agent":
        conditions.append(
            condition("Reconciling", "False", "Reconciled", "needs a change to the Agent", generation)
        )
    conditions.append(condition("Stalled", "True", "InvalidSpec", message, generation))
    owned = CONDITION_ORDER if kind == "Agent" else REFERENCED_CONDITIONS
    desired: dict[str, Any] = {
        "phase": "Failed",
        "conditions": merge_conditions(conditions, current.get("conditions"), now, owned=owned),
    }
    if generation is not None:
        desired["observedGeneration"] = generation
    return _validated(kind, desired)


def invalid_agent_status(
    error: str, *, generation: int | None, current: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """Status of an Agent the model rejects (:func:`invalid_status` of kind Agent)."""
    return invalid_status("Agent", error, generation=generation, current=current, now=now)


def only_manifest_moved(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether an Agent's ``desired`` status differs from ``current`` at most in ``compiledManifest`` and
    condition messages (the sha they quote): same phase, generation, framework, route, environment, and
    every condition with the same status and reason. Such a report can wait behind compiles."""
    for key in AGENT_FIELDS:
        if key not in ("compiledManifest", "conditions") and current.get(key) != desired.get(key):
            return False

    def outcomes(conditions: Any) -> set[tuple[Any, ...]]:
        return {
            (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
            for c in conditions or ()
            if isinstance(c, Mapping) and c.get("type") in CONDITION_ORDER
        }

    return bool(current) and outcomes(current.get("conditions")) == outcomes(desired.get("conditions"))


def status_patch(
    desired: Mapping[str, Any], current: Mapping[str, Any], *, owned: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The merge patch turning ``current`` into ``desired``, or None when nothing differs.

    Only differing keys are sent; keys in ``owned`` that ``desired`` leaves out are removed (null).
    """
    patch: dict[str, Any] = {key: value for key, value in desired.items() if current.get(key) != value}
    patch.update({key: None for key in owned if key not in desired and current.get(key) is not None})
    return patch or None


def _validated(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    """``status`` checked against the kind's status model (so the CRD schema will accept it)."""
    _STATUS_MODELS[kind].model_validate(status)
    return status


def _route_missing(route: ModelRoute, lookup: catalog.Lookup, settings: OperatorSettings) -> list[str]:
    namespace = route.metadata.namespace or ""
    missing = []
    strategy = route.spec.strategy
    for address in (strategy.primary, *(strategy.fallback or ())):
        provider, _, name = address.partition(":")
        if catalog.find_model(lookup, provider, name, namespace, settings.shared_namespaces) is None:
            missing.append(address)
    return missing


def _readiness(
    obj: meta.Resource,
    *,
    lookup: catalog.Lookup,
    settings: OperatorSettings,
    agents: int,
    policy_error: str | None,
) -> tuple[str, str, str, str]:
    """(phase, Ready status, reason, message) of a referenced object."""
    if isinstance(obj, ModelRoute):
        missing = _route_missing(obj, lookup, settings)
        if missing:
            return "Pending", "False", "MissingReference", "models not found: " + ", ".join(missing)
        return "Ready", "True", "ReferencesResolved", "every model of the route resolves"
    if isinstance(obj, Policy):
        if policy_error is not None:
            return "Failed", "False", "InvalidPolicy", policy_error
        return "Ready", "True", "Compiled", f"policy compiles; applies to {agents} agents"
    return "Ready", "True", "Accepted", f"{type(obj).crd.kind} accepted by the operator"


def _counters(obj: meta.Resource, agents: int) -> dict[str, Any]:
    """Kind-specific status fields of a referenced object."""
    generation = obj.metadata.generation
    out: dict[str, Any] = {}
    if isinstance(obj, Model):
        out["address"] = f"{obj.spec.provider}:{obj.metadata.name}"
    elif isinstance(obj, Tool):
        out["toolName"] = obj.spec.tool_name or obj.metadata.name
    elif isinstance(obj, Team):
        out["memberCount"] = len(obj.spec.members or ())
    elif isinstance(obj, Policy):
        out["version"] = f"v{generation if generation is not None else 1}"
        out["agentsSelected"] = agents
    elif isinstance(obj, FrameworkAdapter):
        out["agentsBound"] = agents
    elif isinstance(obj, Environment):
        out["agentCount"] = agents
    return out


def referenced_status(
    obj: meta.Resource,
    *,
    current: Mapping[str, Any],
    lookup: catalog.Lookup,
    settings: OperatorSettings,
    agents: int,
    policy_error: str | None,
    now: str,
    drift: Sequence[str] = (),
) -> dict[str, Any]:
    """The status fields the controller owns for a referenced object (see the module docstring).

    ``agents`` is how many Agents depend on it (used by the counted kinds); ``policy_error`` says why
    a Policy does not compile (None when it does); ``drift`` is an MCPServer's drift from its pins
    (joch.domain.compilation.drift: the ``Drifted`` condition and ``schemaDrift``).
    """
    kind = type(obj).crd.kind
    generation = obj.metadata.generation
    phase, ready, reason, message = _readiness(
        obj, lookup=lookup, settings=settings, agents=agents, policy_error=policy_error
    )
    if kind == "MCPServer" and current.get("phase") == "Suspended":
        phase = "Suspended"
    conditions = [condition("Ready", ready, reason, message, generation)]
    extra: dict[str, Any] = {}
    if kind == "MCPServer":
        if drift:
            found = "; ".join(drift)
            conditions.append(condition("Drifted", "True", "SchemaDrift", found, generation))
        elif isinstance(obj, MCPServer) and obj.status is not None and obj.status.discovered is not None:
            conditions.append(
                condition("Drifted", "False", "Pinned", "discovery matches the pins", generation)
            )
        else:
            conditions.append(
                condition("Drifted", "False", "NotDiscovered", "nothing discovered yet", generation)
            )
        extra["schemaDrift"] = bool(drift)
    desired: dict[str, Any] = {
        "phase": phase,
        "conditions": merge_conditions(
            conditions, current.get("conditions"), now, owned=REFERENCED_CONDITIONS
        ),
        **_counters(obj, agents),
        **extra,
    }
    if generation is not None:
        desired["observedGeneration"] = generation
    return _validated(kind, desired)
