"""Admission of Approval decisions: who may decide, once, with the server as witness.

A decision is a write to an Approval's status (``kubectl patch --subresource=status``, ``joch approvals
decide``). Two webhooks see it, both on ``approvals/status``:

- the mutating one (:func:`stamp_status`) stamps what the server witnessed, whatever the client sent:
  ``decidedBy`` / ``decidedAt`` from the request's authenticated user and the server's clock when a
  decision is first written (and ``phase`` from the decision when the client left it out);
  ``override.by`` / ``override.at`` and ``review.required`` on a break-glass override;
  ``review.acknowledgedBy`` / ``acknowledgedAt`` when an auditor acknowledges one. On CREATE of an
  Approval (:func:`stamp_create`) ``spec.requestedBy.user`` becomes the creating user, unless the
  creator is the operator (which names the user a promotion was blocked for itself).
- the validating one (:func:`check_status_write`) refuses, naming the reason:

  * a decision by anyone the routing does not name: ``user:<name>`` / ``email:<name>`` (that user),
    ``team:<name>`` (a member of that Team with role approver), ``group:<name>`` / ``role:<name>`` (a
    member of that group, as the API server authenticated the user);
  * a decision by the requester (``spec.requestedBy.user``);
  * a rejection without a rationale, an answer not among ``spec.options``, a phase that does not
    follow from the decision, a decision after ``status.expiresAt``;
  * any change to a decided Approval, except a break-glass override of a Pending, Rejected or Expired
    one and an auditor's acknowledgement of that override;
  * an override by a user without the ``override`` verb on approvals (the joch-break-glass
    ClusterRole), by a ServiceAccount (agents and SDKs never break glass), by the requester, or
    without a reason; an acknowledgement without the ``acknowledge`` verb (joch-auditor) or by the
    user who overrode;
  * the operator's own writes are the only ones that may set ``Pending`` and ``expiresAt``, expire a
    request (``Expired``, decidedBy :data:`TIMEOUT_USER`, never before ``expiresAt``) and change
    conditions.

Which verbs the user holds is a fact the webhook layer asks the API server (a LocalSubjectAccessReview) and
hands in as ``grants``; the operator's identity is a fact it learned at start-up (a
SelfSubjectReview). Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from joch.api.v1alpha1.team import Team
from joch.domain.admission.verdict import Findings

__all__ = [
    "ACKNOWLEDGE_VERB",
    "DECIDED_PHASES",
    "OVERRIDE_VERB",
    "TIMEOUT_USER",
    "Actor",
    "Problem",
    "check_spec_unchanged",
    "check_status_write",
    "is_approver",
    "phase_of",
    "stamp_create",
    "stamp_status",
]

TIMEOUT_USER: Final = "system:joch:timeout"
"""``status.decidedBy`` of a request the operator expired."""
OVERRIDE_VERB: Final = "override"
ACKNOWLEDGE_VERB: Final = "acknowledge"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
DECIDED_PHASES: Final = frozenset({"Approved", "Rejected", "Expired", "Overridden"})
OVERRIDABLE: Final = frozenset({"", "Pending", "Rejected", "Expired"})
REASON_FORBIDDEN: Final = "Forbidden"
REASON_INVALID: Final = "Invalid"

TeamLookup = Callable[[str], Team | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who writes, as the API server authenticated them, and what the webhook layer learned about them."""

    username: str
    groups: tuple[str, ...] = ()
    grants: frozenset[str] = frozenset()
    """Verbs on this Approval the API server said the user holds (only those asked: override, acknowledge)."""
    is_operator: bool = False

    @property
    def is_service_account(self) -> bool:
        return self.username.startswith(SERVICE_ACCOUNT_PREFIX)


def phase_of(decision: str) -> str:
    """The phase a decision puts the Approval in."""
    return "Rejected" if decision == "reject" else "Approved"


def _status(obj: Any) -> Mapping[str, Any]:
    status = obj.get("status") if isinstance(obj, Mapping) else None
    return status if isinstance(status, Mapping) else {}


def _spec(obj: Any) -> Mapping[str, Any]:
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def requester_of(obj: Any) -> str:
    by = _map(_spec(obj).get("requestedBy"))
    user = by.get("user")
    return user if isinstance(user, str) else ""


def _parse(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


# --- mutation -------------------------------------------------------------------------------------------


def stamp_create(obj: Any, actor: Actor) -> list[dict[str, Any]]:
    """JSON patch for a new Approval: ``spec.requestedBy.user`` is the creating user (the operator names
    the user itself, for the promotions it requests on someone's behalf)."""
    if actor.is_operator or not isinstance(obj, Mapping):
        return []
    spec = _spec(obj)
    if not spec:
        return []
    by = spec.get("requestedBy")
    if not isinstance(by, Mapping):
        return [{"op": "add", "path": "/spec/requestedBy", "value": {"user": actor.username}}]
    if by.get("user") == actor.username:
        return []
    return [{"op": "add", "path": "/spec/requestedBy/user", "value": actor.username}]


def stamp_status(new: Any, old: Any, actor: Actor, now: str) -> list[dict[str, Any]]:
    """JSON patch stamping the server's witness on a status write (see the module docstring)."""
    if not isinstance(new, Mapping) or not isinstance(new.get("status"), Mapping):
        return []
    status, before = _status(new), _status(old)
    patch: list[dict[str, Any]] = []

    def put(path: str, value: Any) -> None:
        patch.append({"op": "add", "path": "/status/" + path, "value": value})

    decision = status.get("decision")
    if isinstance(decision, str) and not before.get("decision"):
        expiring = actor.is_operator and status.get("phase") == "Expired"
        if not expiring:
            put("decidedBy", actor.username)
        put("decidedAt", now)
        if status.get("phase") in (None, "", "Pending"):
            put("phase", phase_of(decision))
    override = status.get("override")
    if isinstance(override, Mapping) and not isinstance(before.get("override"), Mapping):
        put("override", {**override, "by": actor.username, "at": now})
        put("review", {"required": True})
        if status.get("phase") in (None, "", "Pending", "Rejected", "Expired"):
            put("phase", "Overridden")
    else:
        review, old_review = _map(status.get("review")), _map(before.get("review"))
        if (
            old_review.get("required") is True
            and not old_review.get("acknowledgedBy")
            and review
            and review != old_review
        ):
            stamped = {**review, "required": False, "acknowledgedBy": actor.username, "acknowledgedAt": now}
            put("review", stamped)
    return patch


# --- validation -----------------------------------------------------------------------------------------


def check_spec_unchanged(new: Any, old: Any) -> Findings:
    """An Approval's request never changes after creation (a decision is about what was asked)."""
    findings = Findings()
    if isinstance(new, Mapping) and isinstance(old, Mapping) and new.get("spec") != old.get("spec"):
        findings.error(
            "spec",
            "an Approval's request is immutable once created (a decision is about what was asked); create "
            "a new Approval instead",
            REASON_FORBIDDEN,
        )
    return findings


def is_approver(spec: Mapping[str, Any], actor: Actor, teams: TeamLookup) -> bool:
    """Whether ``spec.routing.approvers`` names the actor (see the module docstring)."""
    approvers = _map(spec.get("routing")).get("approvers") or []
    for address in approvers:
        if not isinstance(address, str):
            continue
        prefix, _, rest = address.partition(":")
        if prefix in ("user", "email") and rest == actor.username:
            return True
        if prefix in ("group", "role") and rest in actor.groups:
            return True
        if prefix == "team":
            team = teams(rest)
            members = (team.spec.members or []) if team is not None else []
            if any(m.user == actor.username and m.role == "approver" for m in members):
                return True
    return False


_OPERATOR_FIELDS: Final = frozenset({"conditions", "observedGeneration"})


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    reason: str = REASON_FORBIDDEN


@dataclasses.dataclass(frozen=True, slots=True)
class _Write:
    """One status write under judgement."""

    new: Mapping[str, Any]
    status: Mapping[str, Any]
    before: Mapping[str, Any]
    changed: frozenset[str]
    actor: Actor
    now: str
    name: str

    @property
    def who(self) -> str:
        return self.actor.username or "(anonymous)"

    @property
    def old_phase(self) -> str:
        return str(self.before.get("phase") or "")

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "")


def _changed(new: Mapping[str, Any], old: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key in set(new) | set(old) if new.get(key) != old.get(key))


def check_status_write(
    new: Any, old: Any, actor: Actor, *, now: str, teams: TeamLookup, name: str = ""
) -> Findings:
    """Errors for one write of an Approval's status (after :func:`stamp_status`); see the module
    docstring."""
    findings = Findings()
    if not isinstance(new, Mapping) or not isinstance(old, Mapping):
        findings.error("status", "the request carries no object to judge", "BadRequest")
        return findings
    status, before = _status(new), _status(old)
    write = _Write(new, status, before, _changed(status, before), actor, now, name)
    problem = next(iter(_problems(write, teams)), None)
    if problem is not None:
        findings.error(problem.path, problem.message, problem.reason)
    return findings


def _problems(write: _Write, teams: TeamLookup) -> Iterator[Problem]:
    changed, actor, who = write.changed, write.actor, write.who
    if not changed or (actor.is_operator and changed <= _OPERATOR_FIELDS):
        return
    if not actor.is_operator and changed & _OPERATOR_FIELDS:
        field = sorted(changed & _OPERATOR_FIELDS)[0]
        yield Problem(f"status.{field}", f"written by the joch operator only, not by {who}")
    elif "expiresAt" in changed and not (actor.is_operator and not write.before.get("expiresAt")):
        yield Problem("status.expiresAt", f"set once by the joch operator; {who} cannot change it")
    elif write.phase == "Pending" and write.old_phase != "Pending":
        if not actor.is_operator:
            yield Problem("status.phase", f"Pending is set by the joch operator, not by {who}")
    elif write.phase == "Overridden" and write.old_phase != "Overridden":
        yield from _override_problems(write)
    elif write.old_phase == "Overridden" and changed <= {"review"}:
        yield from _acknowledge_problems(write)
    elif write.old_phase in DECIDED_PHASES or write.before.get("decision"):
        yield _decided(write)
    elif "decision" not in changed:
        field = sorted(changed)[0]
        yield Problem(
            f"status.{field}", "only a decision (status.decision) may be written to a Pending Approval"
        )
    elif write.phase == "Expired":
        yield from _expiry_problems(write)
    else:
        yield from _decision_problems(write, teams)


def _decided(write: _Write) -> Problem:
    before = write.before
    override = _map(before.get("override"))
    overridden = write.old_phase == "Overridden" and override.get("by")
    by = override.get("by") if overridden else before.get("decidedBy")
    at = override.get("at") if overridden else before.get("decidedAt")
    detail = (f" by {by}" if by else "") + (f" at {at}" if at else "")
    return Problem(
        f"status.{sorted(write.changed)[0]}",
        f"Approval {write.name} is already {write.old_phase or 'decided'}{detail}: a decision never changes "
        "(a Rejected or Expired one can only be overridden, by joch-break-glass: joch approvals override)",
    )


def _expiry_problems(write: _Write) -> Iterator[Problem]:
    if not write.actor.is_operator:
        yield Problem("status.phase", f"only the joch operator expires a request, not {write.who}")
    elif write.status.get("decidedBy") != TIMEOUT_USER:
        yield Problem("status.decidedBy", f"an expiry is decided by {TIMEOUT_USER}")
    else:
        deadline, current = _parse(write.before.get("expiresAt")), _parse(write.now)
        if deadline is not None and current is not None and current < deadline:
            yield Problem(
                "status.phase", f"the request expires at {write.before.get('expiresAt')}, not before"
            )


def _decision_problems(write: _Write, teams: TeamLookup) -> Iterator[Problem]:
    spec, status, actor, who = _spec(write.new), write.status, write.actor, write.who
    decision = str(status.get("decision"))
    options = spec.get("options") or ["approve", "reject", "edit"]
    requester = requester_of(write.new)
    deadline, current = _parse(write.before.get("expiresAt")), _parse(write.now)
    if decision not in options:
        allowed = ", ".join(str(o) for o in options)
        yield Problem(
            "status.decision",
            f"{decision!r} is not one of this request's options ({allowed})",
            REASON_INVALID,
        )
    elif write.phase != phase_of(decision):
        yield Problem(
            "status.phase",
            f"decision {decision} means phase {phase_of(decision)}, not {write.phase or 'none'}",
            REASON_INVALID,
        )
    elif decision == "reject" and not str(status.get("rationale") or "").strip():
        yield Problem("status.rationale", "a rejection needs a rationale", REASON_INVALID)
    elif requester and requester == actor.username:
        yield Problem("status.decision", f"{who} requested this approval and cannot decide it")
    elif not is_approver(spec, actor, teams):
        approvers = _map(spec.get("routing")).get("approvers") or []
        listed = ", ".join(str(a) for a in approvers) if approvers else "none"
        yield Problem(
            "status.decision",
            f"{who} is not an approver of this request (spec.routing.approvers: {listed}; a team: approver "
            "is a member of that Team with role approver)",
        )
    elif status.get("decidedBy") != actor.username or not status.get("decidedAt"):
        yield Problem(
            "status.decidedBy", "decidedBy and decidedAt are stamped by joch admission; it did not run"
        )
    elif deadline is not None and current is not None and current >= deadline:
        yield Problem("status.decision", f"the request expired at {write.before.get('expiresAt')}")


def _override_problems(write: _Write) -> Iterator[Problem]:
    status, actor, who = write.status, write.actor, write.who
    override = _map(status.get("override"))
    extra = write.changed - {"phase", "override", "review"}
    if write.old_phase not in OVERRIDABLE:
        yield Problem(
            "status.phase",
            f"an {write.old_phase} Approval cannot be overridden (only Pending, Rejected or Expired)",
        )
    elif actor.is_service_account:
        yield Problem("status.override", f"{who} is a ServiceAccount: agents and SDKs never break glass")
    elif OVERRIDE_VERB not in actor.grants:
        yield Problem(
            "status.override",
            f"{who} may not override approvals here (the override verb of the joch-break-glass ClusterRole)",
        )
    elif requester_of(write.new) == actor.username:
        yield Problem("status.override", f"{who} requested this approval and cannot override it")
    elif not str(override.get("reason") or "").strip():
        yield Problem("status.override.reason", "an override needs a reason", REASON_INVALID)
    elif override.get("by") != actor.username or not override.get("at"):
        yield Problem(
            "status.override.by", "override.by and override.at are stamped by joch admission; it did not run"
        )
    elif _map(status.get("review")).get("required") is not True:
        yield Problem(
            "status.review.required", "an override stays under review until an auditor acknowledges it"
        )
    elif extra:
        yield Problem(f"status.{sorted(extra)[0]}", "an override writes only phase, override and review")


def _acknowledge_problems(write: _Write) -> Iterator[Problem]:
    actor, who = write.actor, write.who
    old_review, review = _map(write.before.get("review")), _map(write.status.get("review"))
    if old_review.get("acknowledgedBy"):
        yield Problem(
            "status.review", f"the override was acknowledged by {old_review.get('acknowledgedBy')} already"
        )
    elif ACKNOWLEDGE_VERB not in actor.grants:
        yield Problem(
            "status.review",
            f"{who} may not acknowledge overrides here (the acknowledge verb of joch-auditor)",
        )
    elif _map(write.before.get("override")).get("by") == actor.username:
        yield Problem(
            "status.review", f"{who} overrode this request and cannot acknowledge their own override"
        )
    elif review.get("acknowledgedBy") != actor.username or review.get("required") is not False:
        yield Problem("status.review.acknowledgedBy", "stamped by joch admission; it did not run")
