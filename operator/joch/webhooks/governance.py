"""What the validating webhook tells the governance audit log (joch.audit, docs/audit.md).

After a verdict on a request that is not a dry run, :func:`record` writes:

- a denial of any joch kind: ``admission_denial`` (deny), the verdict's message as the reason;
- an allowed write of an Approval's status that decides it (``status.decision`` first set):
  ``approval_decision`` (approve or reject); that overrides it (``status.override`` first set):
  ``approval_override`` (override). The operator's own expiries are recorded by the approvals service;
- an allowed CREATE or UPDATE of a Deployment whose promotion gates are due (it has ``spec.promotion``
  and is new, or changes its Agent, Environment or promotion): ``promotion`` (allow).

The actor is always the user of the AdmissionReview's userInfo (what the API server authenticated, and
what the mutating webhook stamped as decidedBy / override.by), never a field of the object. An allowed
request is recorded as admitted: another webhook or a conflict may still stop it from being stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from joch.audit import AuditLog
from joch.domain import audit as records
from joch.domain.admission import Request, promotion
from joch.domain.admission.verdict import FORBIDDEN_REASONS, Verdict

__all__ = ["record"]

MAX_REASON: Final = 2048
JUDGED: Final = frozenset({"CREATE", "UPDATE"})


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _resource(request: Request, group: str, version: str) -> records.Resource:
    body = _map(request.object) or _map(request.old_object)
    metadata = _map(body.get("metadata"))
    api_version = body.get("apiVersion") if isinstance(body.get("apiVersion"), str) else None
    return records.Resource(
        api_version=api_version or (f"{group}/{version}" if group else version),
        kind=request.kind,
        name=request.name or str(metadata.get("name") or ""),
        namespace=request.namespace or metadata.get("namespace") or None,
        uid=str(metadata.get("uid") or "") or None,
    )


def _actor(request: Request) -> records.Actor:
    return records.Actor(request.user.username, tuple(request.user.groups))


def record(log: AuditLog, request: Request, verdict: Verdict, *, group: str, version: str) -> None:
    """Write what ``verdict`` on ``request`` means for governance (see the module docstring)."""
    if request.dry_run or not log.enabled:
        return
    resource = _resource(request, group, version)
    actor = _actor(request)
    details: dict[str, Any] = {"operation": request.operation}
    if request.sub_resource:
        details["subResource"] = request.sub_resource
    if not verdict.allowed:
        reasons = sorted({finding.reason for finding in verdict.errors})
        forbidden = any(reason in FORBIDDEN_REASONS for reason in reasons)
        log.record(
            "admission_denial",
            actor=actor,
            resource=resource,
            decision="deny",
            reason=verdict.message()[:MAX_REASON],
            severity="Medium" if forbidden else "Low",
            details={**details, "reasons": reasons, "code": verdict.code},
        )
        return
    if request.kind == "Approval" and request.sub_resource == "status" and request.operation == "UPDATE":
        _approval(log, request, actor, resource, details)
    elif request.kind == "Deployment" and request.operation in JUDGED and not request.sub_resource:
        _promotion(log, request, actor, resource, details)


def _approval(
    log: AuditLog,
    request: Request,
    actor: records.Actor,
    resource: records.Resource,
    details: dict[str, Any],
) -> None:
    status = _map(_map(request.object).get("status"))
    before = _map(_map(request.old_object).get("status"))
    override = status.get("override")
    if isinstance(override, Mapping) and not isinstance(before.get("override"), Mapping):
        log.record(
            "approval_override",
            actor=actor,
            resource=resource,
            decision="override",
            reason=str(override.get("reason") or "break-glass override"),
            severity="High",
            details={**details, "phase": status.get("phase"), "previousPhase": before.get("phase")},
        )
        return
    decision = status.get("decision")
    if not isinstance(decision, str) or before.get("decision") or status.get("phase") == "Expired":
        return  # not a decision (an expiry is the operator's: joch.controllers.approvals records it)
    verb = "reject" if decision == "reject" else "approve"
    rationale = status.get("rationale")
    phase = status.get("phase") or ("Rejected" if verb == "reject" else "Approved")
    log.record(
        "approval_decision",
        actor=actor,
        resource=resource,
        decision=verb,
        reason=str(rationale) if rationale else f"{phase} by {actor.name}",
        severity="Low" if verb == "reject" else "Informational",
        details={**details, "answer": decision, "phase": phase},
    )


def _promotion(
    log: AuditLog,
    request: Request,
    actor: records.Actor,
    resource: records.Resource,
    details: dict[str, Any],
) -> None:
    deployment, old = promotion.written(
        request.object, request.old_object, request.namespace, request.operation
    )
    if deployment is None:
        return
    if not promotion.gates_due(deployment, old):
        return
    spec = deployment.spec
    gates = spec.promotion.model_dump(mode="json", by_alias=True, exclude_none=True) if spec.promotion else {}
    environment = spec.environment_ref.name if spec.environment_ref is not None else None
    where = f" into Environment {environment}" if environment else ""
    log.record(
        "promotion",
        actor=actor,
        resource=resource,
        decision="allow",
        reason=f"Deployment {resource.namespace}/{resource.name} admitted: Agent {spec.agent_ref.name}"
        f"{where}, its promotion gates passed",
        severity="Informational",
        details={**details, "agent": spec.agent_ref.name, "environment": environment, "promotion": gates},
    )
