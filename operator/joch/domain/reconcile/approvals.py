"""What the operator writes on Approvals: the Pending request with its deadline, the expiry, the Ready
condition, and the held ToolCall's approval fields. Pure.

- A new Approval (no phase yet) becomes Pending with ``expiresAt`` = its creationTimestamp plus
  ``spec.routing.timeoutMinutes`` (the deadline is a fact of the object, so a restarted operator finds
  the same one and never fires a timeout twice: the expiry is a write conditioned on the status still
  being Pending).
- A Pending Approval past its deadline is expired in one write: phase Expired, decision per
  ``onTimeout`` (deny: reject; approve: approve), decidedBy ``system:joch:timeout``, decidedAt now.
- Ready (kstatus): False with reason WaitingForDecision while Pending, True once decided (reason the
  phase). An override leaves a Warning Event and ``status.review.required`` until an auditor
  acknowledges it (admission stamps both; the operator reports it in the conditions).
- A tool_call Approval's decision is copied into its ToolCall's ``spec.approval`` (status, approvedBy,
  approvedAt, approvalRef), where the tool gateway that holds the call reads it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final

from joch.domain.admission.approvals import DECIDED_PHASES, TIMEOUT_USER
from joch.domain.reconcile.status import condition, merge_conditions
from joch.domain.reconcile.times import format_time, parse_time

__all__ = [
    "DECISION_PHASES",
    "ApprovalSettings",
    "deadline_of",
    "decide_body",
    "desired_status",
    "expired_status",
    "is_due",
    "parse_time",
    "tool_call_approval",
]

WAITING: Final = "WaitingForDecision"
OVERRIDE_REVIEW: Final = "OverrideReview"


@dataclasses.dataclass(frozen=True, slots=True)
class ApprovalSettings:
    minute_seconds: float = 60.0
    """The length of one ``timeoutMinutes`` minute in seconds (60; tests and demos shorten it)."""


_format = format_time


def _timeout_minutes(spec: Mapping[str, Any]) -> int:
    routing = spec.get("routing") if isinstance(spec.get("routing"), Mapping) else {}
    minutes = routing.get("timeoutMinutes") if isinstance(routing, Mapping) else None
    return minutes if isinstance(minutes, int) and minutes > 0 else 30


def deadline_of(created: str, spec: Mapping[str, Any], settings: ApprovalSettings) -> str | None:
    """``expiresAt`` of a request created at ``created`` (RFC 3339); None when it does not parse."""
    start = parse_time(created)
    if start is None:
        return None
    seconds = _timeout_minutes(spec) * settings.minute_seconds
    return _format(start + datetime.timedelta(seconds=seconds))


def is_due(status: Mapping[str, Any], now: str) -> bool:
    """Whether a Pending request's deadline has passed."""
    deadline, current = parse_time(status.get("expiresAt")), parse_time(now)
    return (
        status.get("phase") == "Pending"
        and deadline is not None
        and current is not None
        and current >= deadline
    )


def _override(status: Mapping[str, Any]) -> Mapping[str, Any]:
    override = status.get("override")
    return override if isinstance(override, Mapping) else {}


def _actor(status: Mapping[str, Any]) -> Any:
    """Who settled the request: the overrider of an Overridden one, else who decided."""
    if status.get("phase") == "Overridden" and _override(status).get("by"):
        return _override(status).get("by")
    return status.get("decidedBy")


def _when(status: Mapping[str, Any]) -> Any:
    if status.get("phase") == "Overridden" and _override(status).get("at"):
        return _override(status).get("at")
    return status.get("decidedAt")


def _ready(status: Mapping[str, Any], generation: int | None) -> list[dict[str, Any]]:
    phase = str(status.get("phase") or "Pending")
    review = status.get("review") if isinstance(status.get("review"), Mapping) else {}
    assert isinstance(review, Mapping)
    if phase == "Pending":
        expires = status.get("expiresAt") or "its deadline"
        out = [condition("Ready", "False", WAITING, f"waiting for a decision until {expires}", generation)]
    else:
        by = _actor(status) or "?"
        out = [condition("Ready", "True", phase, f"{phase} by {by}", generation)]
    if phase == "Overridden":
        if review.get("required") is True:
            out.append(
                condition(
                    OVERRIDE_REVIEW,
                    "True",
                    "AwaitingAcknowledgement",
                    "an auditor must acknowledge",
                    generation,
                )
            )
        else:
            who = review.get("acknowledgedBy") or "?"
            out.append(
                condition(OVERRIDE_REVIEW, "False", "Acknowledged", f"acknowledged by {who}", generation)
            )
    return out


def desired_status(
    current: Mapping[str, Any],
    *,
    created: str,
    spec: Mapping[str, Any],
    generation: int | None,
    settings: ApprovalSettings,
    now: str,
) -> dict[str, Any] | None:
    """The operator's part of the status (None: nothing to write): Pending and expiresAt for a new request,
    the conditions for every phase."""
    out: dict[str, Any] = {}
    view = dict(current)
    if not current.get("phase"):
        deadline = deadline_of(created, spec, settings)
        out["phase"] = "Pending"
        if deadline is not None and not current.get("expiresAt"):
            out["expiresAt"] = deadline
        view.update(out)
    wanted = _ready(view, generation)
    merged = merge_conditions(wanted, current.get("conditions"), now, owned=("Ready", OVERRIDE_REVIEW))
    if merged != list(current.get("conditions") or []):
        out["conditions"] = merged
    if generation is not None and current.get("observedGeneration") != generation:
        out["observedGeneration"] = generation
    return out or None


def expired_status(
    current: Mapping[str, Any], spec: Mapping[str, Any], *, generation: int | None, now: str
) -> dict[str, Any] | None:
    """The one write that expires a Pending request past its deadline (None: not Pending, or not due)."""
    if not is_due(current, now):
        return None
    routing = spec.get("routing") if isinstance(spec.get("routing"), Mapping) else {}
    on_timeout = routing.get("onTimeout") if isinstance(routing, Mapping) else None
    decision = "approve" if on_timeout == "approve" else "reject"
    minutes = _timeout_minutes(spec)
    out: dict[str, Any] = {
        "phase": "Expired",
        "decision": decision,
        "decidedBy": TIMEOUT_USER,
        "decidedAt": now,
        "rationale": f"no decision within {minutes} minute{'s' if minutes != 1 else ''}; onTimeout "
        f"{on_timeout or 'deny'}",
    }
    view = {**current, **out}
    out["conditions"] = merge_conditions(
        _ready(view, generation), current.get("conditions"), now, owned=("Ready", OVERRIDE_REVIEW)
    )
    return out


_TOOL_CALL_STATUS: Final = {
    "Pending": "pending",
    "Approved": "approved",
    "Rejected": "rejected",
    "Expired": "expired",
    "Overridden": "overridden",
}


def tool_call_approval(name: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """The held ToolCall's ``spec.approval`` for Approval ``name`` in ``status``. An Expired request
    with onTimeout approve reports approved (the call may go ahead); with deny, expired."""
    phase = str(status.get("phase") or "Pending")
    state = _TOOL_CALL_STATUS.get(phase, "pending")
    if phase == "Expired" and status.get("decision") == "approve":
        state = "approved"
    out: dict[str, Any] = {"required": True, "status": state, "approvalRef": {"name": name}}
    if phase in DECIDED_PHASES:
        by, at = _actor(status), _when(status)
        if by:
            out["approvedBy"] = by
        if at:
            out["approvedAt"] = at
    return out


DECISION_PHASES: Final = {"approve": "Approved", "reject": "Rejected", "edit": "Approved"}
"""The phase each decision sets (edit: approved with an edited input)."""


def decide_body(decision: str, rationale: str | None) -> dict[str, Any]:
    """The merge patch of an Approval's status subresource that records ``decision`` (never who or when:
    the admission webhook stamps the decider from the request's authenticated user)."""
    status: dict[str, Any] = {"decision": decision, "phase": DECISION_PHASES[decision]}
    if rationale:
        status["rationale"] = rationale
    return {"status": status}
