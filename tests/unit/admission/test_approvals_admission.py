"""Admission of Approvals (joch.domain.admission.approvals): the server's witness stamped on a decision,
and the refusals of status writes nobody may make.

Every status write goes the way the API server sends it: the client's merge patch applied to the stored
Approval, then the mutating webhook's JSON patch (``stamp_status``) applied to that, then the validating
webhook (``check_status_write``) on the result against the stored object. The last cases run the same
writes through the public pipeline ``Admission(settings).mutate / .validate(Request(...), World)``.

Cases: the creator stamped as ``spec.requestedBy.user`` (the operator's creates left alone); decidedBy /
decidedAt from the request's user and clock whatever the client wrote, the phase derived from the
decision; who is an approver (user:, email:, team: members with role approver, group: / role: groups);
the requester never decides; a rejection needs a rationale; an answer among the options, a phase that
follows from it, before the deadline, once; Pending, expiresAt, the expiry and the conditions are the
operator's (an expiry by system:joch:timeout, never early); a break-glass override (stamped by / at /
review.required, phase Overridden) needs the override grant, a person who is not the requester, a
reason, and a Pending, Rejected or Expired request; an acknowledgement needs the acknowledge grant,
someone other than the overrider, and happens once; an Approval's spec never changes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from joch.api.v1alpha1.team import Team
from joch.domain.admission import Admission, Findings, Request, UserInfo, Verdict, World
from joch.domain.admission.approvals import (
    TIMEOUT_USER,
    Actor,
    check_status_write,
    is_approver,
    stamp_create,
    stamp_status,
)
from joch.domain.settings import OperatorSettings
from tests.factories import team
from tests.unit.admission.factories import world

NS = "support"
NAME = "promote-triage"
OPERATOR = "system:serviceaccount:joch:joch"
REQUESTER = "bob"
CREATED = "2026-11-27T12:00:00Z"
DEADLINE = "2026-11-27T12:30:00Z"
NOW = "2026-11-27T12:10:00Z"
LATE = "2026-11-27T12:31:00Z"
EARLIER = "2026-11-27T12:05:00Z"
APPROVERS = (
    "user:alice",
    "email:erin@example.com",
    "team:release",
    "group:sre",
    "role:oncall",
    f"user:{REQUESTER}",  # the requester is named too: the requester check must win anyway
)
OVERRIDE = frozenset({"override"})
ACKNOWLEDGE = frozenset({"acknowledge"})

TEAMS: World = world(
    [
        team(
            "release",
            members=[
                {"user": "dana", "role": "approver"},
                {"user": "vic", "role": "viewer"},
                {"user": "adele", "role": "admin"},
            ],
        )
    ]
)


def teams(name: str) -> Team | None:
    return TEAMS.get(Team, None, name)


READY_WAITING = {
    "type": "Ready",
    "status": "False",
    "reason": "WaitingForDecision",
    "message": f"waiting for a decision until {DEADLINE}",
    "lastTransitionTime": CREATED,
    "observedGeneration": 1,
}
PENDING: dict[str, Any] = {
    "phase": "Pending",
    "expiresAt": DEADLINE,
    "conditions": [READY_WAITING],
    "observedGeneration": 1,
}
APPROVED: dict[str, Any] = {
    **PENDING,
    "phase": "Approved",
    "decision": "approve",
    "decidedBy": "alice",
    "decidedAt": EARLIER,
}
REJECTED: dict[str, Any] = {
    **PENDING,
    "phase": "Rejected",
    "decision": "reject",
    "decidedBy": "alice",
    "decidedAt": EARLIER,
    "rationale": "not during the freeze",
}
EXPIRED: dict[str, Any] = {
    **PENDING,
    "phase": "Expired",
    "decision": "reject",
    "decidedBy": TIMEOUT_USER,
    "decidedAt": DEADLINE,
    "rationale": "no decision within 30 minutes; onTimeout deny",
}
OVERRIDDEN: dict[str, Any] = {
    **REJECTED,
    "phase": "Overridden",
    "override": {"reason": "the outage needs this fix now", "by": "carol", "at": NOW},
    "review": {"required": True},
}


def approval(
    status: Mapping[str, Any] | None = None,
    *,
    approvers: Sequence[str] = APPROVERS,
    options: Sequence[str] | None = None,
    requester: str | None = REQUESTER,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "action": {"type": "promotion"},
        "routing": {"approvers": list(approvers), "timeoutMinutes": 30},
    }
    if requester is not None:
        spec["requestedBy"] = {"user": requester}
    if options is not None:
        spec["options"] = list(options)
    doc: dict[str, Any] = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "uid-1",
            "resourceVersion": "7",
            "generation": 1,
            "creationTimestamp": CREATED,
        },
        "spec": spec,
    }
    if status is not None:
        doc["status"] = copy.deepcopy(dict(status))
    return doc


def merged(current: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7386) applied, as the API server applies a client's patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(current)) if isinstance(current, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def _token(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: Mapping[str, Any], ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A JSON patch (RFC 6902) of ``add`` operations applied, as the API server applies a mutating
    webhook's answer (an ``add`` of an existing member replaces it)."""
    out = copy.deepcopy(dict(doc))
    for op in ops:
        assert op["op"] == "add", op
        parts = [_token(p) for p in op["path"].split("/")[1:]]
        node: Any = out
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        last = parts[-1]
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), copy.deepcopy(op["value"]))
        else:
            assert isinstance(node, dict), (op, node)
            node[last] = copy.deepcopy(op["value"])
    return out


class Write:
    """One status write: the client's patch on the stored Approval, stamped, and judged."""

    def __init__(
        self,
        stored: Mapping[str, Any] | None,
        patch: Mapping[str, Any],
        actor: Actor,
        *,
        now: str = NOW,
        **spec: Any,
    ) -> None:
        self.old = approval(stored, **spec)
        self.new = merged(self.old, {"status": patch})
        self.ops = stamp_status(self.new, self.old, actor, now)
        self.stamped = apply_patch(self.new, self.ops)
        self.findings: Findings = check_status_write(
            self.stamped, self.old, actor, now=now, teams=teams, name=NAME
        )

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.stamped["status"]
        return status

    @property
    def allowed(self) -> bool:
        return not self.findings.errors

    @property
    def refusal(self) -> tuple[str, str, str]:
        """(path, message, reason) of the one error."""
        assert len(self.findings.errors) == 1, self.findings.errors
        (error,) = self.findings.errors
        return error.path, error.message, error.reason


def actor(username: str, *groups: str, grants: frozenset[str] = frozenset()) -> Actor:
    return Actor(username, groups=tuple(groups), grants=grants)


ALICE = actor("alice")
OPERATOR_ACTOR = Actor(OPERATOR, is_operator=True)


# --- CREATE: the requester ----------------------------------------------------------------------------


def test_the_creator_is_stamped_as_the_requester_whatever_the_client_wrote() -> None:
    claimed = approval(requester="mallory")
    claimed["spec"]["requestedBy"]["executionRef"] = {"name": "run-1"}
    ops = stamp_create(claimed, ALICE)
    assert ops == [{"op": "add", "path": "/spec/requestedBy/user", "value": "alice"}]
    assert apply_patch(claimed, ops)["spec"]["requestedBy"] == {
        "user": "alice",
        "executionRef": {"name": "run-1"},
    }

    anonymous = approval(requester=None)
    ops = stamp_create(anonymous, ALICE)
    assert ops == [{"op": "add", "path": "/spec/requestedBy", "value": {"user": "alice"}}]
    assert apply_patch(anonymous, ops)["spec"]["requestedBy"] == {"user": "alice"}

    assert stamp_create(approval(requester="alice"), ALICE) == []  # already right: nothing to add


def test_the_operators_own_creates_keep_the_user_they_name() -> None:
    assert stamp_create(approval(requester="bob"), OPERATOR_ACTOR) == []
    assert stamp_create(approval(requester=None), OPERATOR_ACTOR) == []


# --- decisions: the server's witness ------------------------------------------------------------------


def test_decided_by_and_at_are_stamped_from_the_user_and_the_clock_whatever_the_client_wrote() -> None:
    write = Write(
        PENDING,
        {"decision": "approve", "decidedBy": "mallory", "decidedAt": "1999-01-01T00:00:00Z"},
        ALICE,
    )
    assert write.status["decidedBy"] == "alice"
    assert write.status["decidedAt"] == NOW
    assert write.status["phase"] == "Approved"  # derived from the decision (the client left Pending)
    assert write.allowed, write.findings.errors


@pytest.mark.parametrize(
    ("patch", "phase"),
    [
        ({"decision": "approve"}, "Approved"),
        ({"decision": "edit"}, "Approved"),
        ({"decision": "reject", "rationale": "not during the freeze"}, "Rejected"),
        ({"decision": "approve", "phase": "Pending"}, "Approved"),
        ({"decision": "approve", "phase": ""}, "Approved"),
    ],
)
def test_the_phase_follows_from_the_decision_when_the_client_left_it_out(
    patch: dict[str, Any], phase: str
) -> None:
    write = Write(PENDING, patch, ALICE)
    assert {"op": "add", "path": "/status/phase", "value": phase} in write.ops
    assert write.status["phase"] == phase
    assert write.allowed, write.findings.errors


def test_a_phase_the_client_wrote_is_not_restamped() -> None:
    write = Write(PENDING, {"decision": "approve", "phase": "Approved"}, ALICE)
    assert [op["path"] for op in write.ops] == ["/status/decidedBy", "/status/decidedAt"]
    assert write.allowed


def test_a_decision_on_a_request_the_operator_has_not_seen_yet_is_judged_like_any_other() -> None:
    write = Write(None, {"decision": "approve"}, ALICE)
    assert write.status == {
        "decision": "approve",
        "decidedBy": "alice",
        "decidedAt": NOW,
        "phase": "Approved",
    }
    assert write.allowed, write.findings.errors


def test_nothing_is_stamped_on_a_write_without_a_status_or_on_a_decided_request() -> None:
    old = approval(PENDING)
    without = {key: value for key, value in old.items() if key != "status"}
    assert stamp_status(without, old, ALICE, NOW) == []
    again = Write(APPROVED, {"decision": "approve", "rationale": "still yes"}, actor("erin@example.com"))
    assert again.ops == []
    assert again.status["decidedBy"] == "alice"
    assert again.status["decidedAt"] == EARLIER


# --- who decides --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "who",
    [
        actor("alice"),  # user:alice
        actor("erin@example.com"),  # email:erin@example.com
        actor("dana"),  # team:release, role approver
        actor("gus", "system:authenticated", "sre"),  # group:sre
        actor("olive", "oncall"),  # role:oncall
    ],
    ids=["user", "email", "team-approver", "group", "role"],
)
def test_an_approver_named_by_the_routing_decides(who: Actor) -> None:
    assert is_approver(approval()["spec"], who, teams)
    write = Write(PENDING, {"decision": "approve"}, who)
    assert write.allowed, write.findings.errors
    assert write.status["decidedBy"] == who.username


@pytest.mark.parametrize(
    "who",
    [
        actor("vic"),  # a member of team release, but a viewer
        actor("adele"),  # a member of team release, but an admin
        actor("mallory"),
        actor("gus", "developers"),  # in a group the routing does not name
        actor("sre"),  # a user named like the group is not in it
        actor("release"),  # nor one named like the team
        actor("alice@example.com"),  # user:alice is alice exactly
    ],
    ids=[
        "team-viewer",
        "team-admin",
        "stranger",
        "other-group",
        "user-named-like-group",
        "named-like-team",
        "alias",
    ],
)
def test_anyone_else_is_not_an_approver(who: Actor) -> None:
    assert not is_approver(approval()["spec"], who, teams)
    path, message, reason = Write(PENDING, {"decision": "approve"}, who).refusal
    assert path == "status.decision"
    assert reason == "Forbidden"
    assert message.startswith(f"{who.username} is not an approver of this request (spec.routing.approvers: ")
    assert ", ".join(APPROVERS) in message
    assert "a team: approver is a member of that Team with role approver" in message


def test_a_team_that_does_not_exist_approves_nobody_and_no_routing_names_nobody() -> None:
    spec = approval(approvers=["team:ghost"])["spec"]
    assert not is_approver(spec, actor("dana"), teams)
    path, message, _ = Write(PENDING, {"decision": "approve"}, actor("dana"), approvers=[]).refusal
    assert path == "status.decision"
    assert "spec.routing.approvers: none" in message


def test_the_requester_cannot_decide_even_when_named_an_approver() -> None:
    assert is_approver(approval()["spec"], actor(REQUESTER), teams)
    path, message, reason = Write(PENDING, {"decision": "approve"}, actor(REQUESTER)).refusal
    assert (path, reason) == ("status.decision", "Forbidden")
    assert message == f"{REQUESTER} requested this approval and cannot decide it"


# --- what a decision must be --------------------------------------------------------------------------


@pytest.mark.parametrize("rationale", [None, "", "   "])
def test_a_rejection_needs_a_rationale(rationale: str | None) -> None:
    patch: dict[str, Any] = {"decision": "reject"}
    if rationale is not None:
        patch["rationale"] = rationale
    assert Write(PENDING, patch, ALICE).refusal == (
        "status.rationale",
        "a rejection needs a rationale",
        "Invalid",
    )


def test_a_decision_must_be_one_of_the_options() -> None:
    write = Write(PENDING, {"decision": "edit"}, ALICE, options=["approve", "reject"])
    assert write.refusal == (
        "status.decision",
        "'edit' is not one of this request's options (approve, reject)",
        "Invalid",
    )
    assert Write(PENDING, {"decision": "approve"}, ALICE, options=["approve", "reject"]).allowed
    path, message, _ = Write(PENDING, {"decision": "maybe"}, ALICE).refusal  # default: approve, reject, edit
    assert (path, message) == (
        "status.decision",
        "'maybe' is not one of this request's options (approve, reject, edit)",
    )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"decision": "approve", "phase": "Rejected"}, "decision approve means phase Approved, not Rejected"),
        ({"decision": "edit", "phase": "Rejected"}, "decision edit means phase Approved, not Rejected"),
        (
            {"decision": "reject", "rationale": "no", "phase": "Approved"},
            "decision reject means phase Rejected, not Approved",
        ),
    ],
)
def test_the_phase_must_follow_from_the_decision(patch: dict[str, Any], message: str) -> None:
    assert Write(PENDING, patch, ALICE).refusal == ("status.phase", message, "Invalid")


@pytest.mark.parametrize("now", [DEADLINE, LATE])
def test_no_decision_at_or_after_the_deadline(now: str) -> None:
    assert Write(PENDING, {"decision": "approve"}, ALICE, now=now).refusal == (
        "status.decision",
        f"the request expired at {DEADLINE}",
        "Forbidden",
    )
    assert Write(PENDING, {"decision": "approve"}, ALICE, now="2026-11-27T12:29:59Z").allowed


@pytest.mark.parametrize(
    ("stored", "phase", "by"),
    [
        (APPROVED, "Approved", f" by alice at {EARLIER}"),
        (REJECTED, "Rejected", f" by alice at {EARLIER}"),
        (EXPIRED, "Expired", f" by {TIMEOUT_USER} at {DEADLINE}"),
    ],
)
def test_a_second_decision_is_refused_naming_who_decided(stored: dict[str, Any], phase: str, by: str) -> None:
    path, message, reason = Write(
        stored, {"decision": "edit", "phase": "Approved"}, actor("erin@example.com")
    ).refusal
    assert reason == "Forbidden"
    assert path.startswith("status.")
    assert message.startswith(f"Approval {NAME} is already {phase}{by}: a decision never changes")
    assert "joch approvals override" in message


def test_a_second_decision_keeping_the_phase_is_refused_too() -> None:
    write = Write(APPROVED, {"decision": "reject", "rationale": "changed my mind"}, ALICE)
    path, message, _ = write.refusal
    assert path == "status.decision"
    assert message.startswith(f"Approval {NAME} is already Approved by alice at {EARLIER}")


def test_only_a_decision_may_be_written_to_a_pending_request() -> None:
    path, message, _ = Write(PENDING, {"rationale": "thinking about it"}, ALICE).refusal
    assert (path, message) == (
        "status.rationale",
        "only a decision (status.decision) may be written to a Pending Approval",
    )


# --- the operator's fields ----------------------------------------------------------------------------


def test_a_user_may_not_write_conditions() -> None:
    conditions = [{**READY_WAITING, "status": "True", "reason": "Approved"}]
    path, message, reason = Write(PENDING, {"conditions": conditions}, ALICE).refusal
    assert (path, reason) == ("status.conditions", "Forbidden")
    assert message == "written by the joch operator only, not by alice"
    # not even with a decision that is otherwise fine
    path, _, _ = Write(PENDING, {"decision": "approve", "conditions": conditions}, ALICE).refusal
    assert path == "status.conditions"


def test_a_user_may_not_set_pending() -> None:
    path, message, _ = Write(None, {"phase": "Pending"}, ALICE).refusal
    assert (path, message) == ("status.phase", "Pending is set by the joch operator, not by alice")
    path, message, _ = Write(REJECTED, {"phase": "Pending"}, ALICE).refusal
    assert (path, message) == ("status.phase", "Pending is set by the joch operator, not by alice")


def test_a_user_may_not_set_or_move_the_deadline() -> None:
    path, message, _ = Write(PENDING, {"expiresAt": "2027-01-01T00:00:00Z"}, ALICE).refusal
    assert (path, message) == ("status.expiresAt", "set once by the joch operator; alice cannot change it")
    path, _, _ = Write({"phase": ""}, {"expiresAt": DEADLINE}, ALICE).refusal
    assert path == "status.expiresAt"
    # the operator sets it once, and never moves it
    path, message, _ = Write(PENDING, {"expiresAt": LATE}, OPERATOR_ACTOR).refusal
    assert (path, message) == (
        "status.expiresAt",
        f"set once by the joch operator; {OPERATOR} cannot change it",
    )


def test_a_user_may_not_expire_a_request() -> None:
    patch = {"phase": "Expired", "decision": "reject", "rationale": "too slow", "decidedBy": TIMEOUT_USER}
    write = Write(PENDING, patch, ALICE, now=LATE)
    assert write.status["decidedBy"] == "alice"  # stamped: a user cannot pose as the timeout
    assert write.refusal == (
        "status.phase",
        "only the joch operator expires a request, not alice",
        "Forbidden",
    )


def test_the_operators_first_write_sets_pending_the_deadline_and_the_conditions() -> None:
    patch = {
        "phase": "Pending",
        "expiresAt": DEADLINE,
        "conditions": [READY_WAITING],
        "observedGeneration": 1,
    }
    write = Write(None, patch, OPERATOR_ACTOR)
    assert write.ops == []
    assert write.allowed, write.findings.errors
    conditions = [{**READY_WAITING, "status": "True", "reason": "Approved", "message": "Approved by alice"}]
    assert Write(APPROVED, {"conditions": conditions, "observedGeneration": 2}, OPERATOR_ACTOR).allowed


def expiry(decided_by: str = TIMEOUT_USER, decision: str = "reject") -> dict[str, Any]:
    return {
        "phase": "Expired",
        "decision": decision,
        "decidedBy": decided_by,
        "decidedAt": "2000-01-01T00:00:00Z",
        "rationale": "no decision within 30 minutes; onTimeout deny",
        "conditions": [
            {**READY_WAITING, "status": "True", "reason": "Expired", "message": f"Expired by {decided_by}"}
        ],
    }


@pytest.mark.parametrize("now", [DEADLINE, LATE])
@pytest.mark.parametrize("decision", ["reject", "approve"])
def test_the_operator_expires_a_request_at_or_after_its_deadline(now: str, decision: str) -> None:
    write = Write(PENDING, expiry(decision=decision), OPERATOR_ACTOR, now=now)
    assert write.allowed, write.findings.errors
    assert write.status["decidedBy"] == TIMEOUT_USER  # not restamped with the operator's name
    assert write.status["decidedAt"] == now
    assert write.status["phase"] == "Expired"


def test_the_operator_does_not_expire_a_request_before_its_deadline() -> None:
    assert Write(PENDING, expiry(), OPERATOR_ACTOR, now=NOW).refusal == (
        "status.phase",
        f"the request expires at {DEADLINE}, not before",
        "Forbidden",
    )


def test_an_expiry_is_decided_by_the_timeout_user() -> None:
    for decided_by in (OPERATOR, "alice"):
        assert Write(PENDING, expiry(decided_by), OPERATOR_ACTOR, now=LATE).refusal == (
            "status.decidedBy",
            f"an expiry is decided by {TIMEOUT_USER}",
            "Forbidden",
        )


def test_the_operator_is_no_approver() -> None:
    path, message, _ = Write(PENDING, {"decision": "approve"}, OPERATOR_ACTOR).refusal
    assert path == "status.decision"
    assert message.startswith(f"{OPERATOR} is not an approver")


# --- break-glass overrides ----------------------------------------------------------------------------

BREAKER = actor("carol", grants=OVERRIDE)


@pytest.mark.parametrize("stored", [PENDING, REJECTED, EXPIRED], ids=["Pending", "Rejected", "Expired"])
def test_an_override_is_stamped_and_put_under_review(stored: dict[str, Any]) -> None:
    write = Write(
        stored,
        {
            "override": {
                "reason": "the outage needs this fix now",
                "by": "mallory",
                "at": "1999-01-01T00:00:00Z",
            }
        },
        BREAKER,
    )
    assert write.status["override"] == {"reason": "the outage needs this fix now", "by": "carol", "at": NOW}
    assert write.status["review"] == {"required": True}
    assert write.status["phase"] == "Overridden"
    for field in ("decision", "decidedBy", "decidedAt", "rationale", "expiresAt"):
        assert write.status.get(field) == stored.get(field), field
    assert write.allowed, write.findings.errors


def test_an_override_cannot_waive_its_own_review() -> None:
    patch = {"override": {"reason": "urgent"}, "phase": "Overridden", "review": {"required": False}}
    write = Write(REJECTED, patch, BREAKER)
    assert write.status["review"] == {"required": True}
    assert write.allowed, write.findings.errors


def test_an_approved_request_cannot_be_overridden() -> None:
    explicit = Write(APPROVED, {"override": {"reason": "urgent"}, "phase": "Overridden"}, BREAKER)
    assert explicit.refusal == (
        "status.phase",
        "an Approved Approval cannot be overridden (only Pending, Rejected or Expired)",
        "Forbidden",
    )
    implicit = Write(APPROVED, {"override": {"reason": "urgent"}}, BREAKER)
    assert implicit.status["phase"] == "Approved"  # the stamp does not move an Approved one
    path, message, _ = implicit.refusal
    assert path == "status.override"
    assert message.startswith(f"Approval {NAME} is already Approved by alice at {EARLIER}")


def test_an_override_needs_the_override_grant() -> None:
    for grants in (frozenset(), ACKNOWLEDGE):
        assert Write(REJECTED, {"override": {"reason": "urgent"}}, actor("carol", grants=grants)).refusal == (
            "status.override",
            "carol may not override approvals here (the override verb of the joch-break-glass ClusterRole)",
            "Forbidden",
        )


def test_a_service_account_never_breaks_glass() -> None:
    robot = actor("system:serviceaccount:support:triage-agent", "system:serviceaccounts", grants=OVERRIDE)
    assert Write(REJECTED, {"override": {"reason": "urgent"}}, robot).refusal == (
        "status.override",
        "system:serviceaccount:support:triage-agent is a ServiceAccount: agents and SDKs never break glass",
        "Forbidden",
    )


def test_the_requester_cannot_override() -> None:
    assert Write(REJECTED, {"override": {"reason": "urgent"}}, actor(REQUESTER, grants=OVERRIDE)).refusal == (
        "status.override",
        f"{REQUESTER} requested this approval and cannot override it",
        "Forbidden",
    )


@pytest.mark.parametrize("override", [{}, {"reason": ""}, {"reason": "   "}])
def test_an_override_needs_a_reason(override: dict[str, Any]) -> None:
    assert Write(REJECTED, {"override": override}, BREAKER).refusal == (
        "status.override.reason",
        "an override needs a reason",
        "Invalid",
    )


def test_an_override_writes_nothing_else() -> None:
    write = Write(REJECTED, {"override": {"reason": "urgent"}, "rationale": "rewritten"}, BREAKER)
    assert write.refusal == (
        "status.rationale",
        "an override writes only phase, override and review",
        "Forbidden",
    )


def test_an_override_is_not_overridden_again() -> None:
    write = Write(OVERRIDDEN, {"override": {"reason": "a better reason"}}, actor("frank", grants=OVERRIDE))
    assert write.ops == []
    path, message, _ = write.refusal
    assert path == "status.override"
    assert message.startswith(f"Approval {NAME} is already Overridden")


# --- acknowledging an override ------------------------------------------------------------------------

AUDITOR = actor("dave", grants=ACKNOWLEDGE)


def test_an_acknowledgement_is_stamped_and_ends_the_review() -> None:
    write = Write(
        OVERRIDDEN,
        {"review": {"note": "checked the incident", "acknowledgedBy": "mallory", "required": True}},
        AUDITOR,
    )
    assert write.status["review"] == {
        "required": False,
        "acknowledgedBy": "dave",
        "acknowledgedAt": NOW,
        "note": "checked the incident",
    }
    assert write.status["phase"] == "Overridden"
    assert write.status["override"] == OVERRIDDEN["override"]
    assert write.allowed, write.findings.errors


def test_an_acknowledgement_needs_the_acknowledge_grant() -> None:
    for grants in (frozenset(), OVERRIDE):
        assert Write(OVERRIDDEN, {"review": {"note": "ok"}}, actor("dave", grants=grants)).refusal == (
            "status.review",
            "dave may not acknowledge overrides here (the acknowledge verb of joch-auditor)",
            "Forbidden",
        )


def test_the_overrider_cannot_acknowledge_their_own_override() -> None:
    both = actor("carol", grants=OVERRIDE | ACKNOWLEDGE)
    assert Write(OVERRIDDEN, {"review": {"note": "fine by me"}}, both).refusal == (
        "status.review",
        "carol overrode this request and cannot acknowledge their own override",
        "Forbidden",
    )


def test_an_override_is_acknowledged_once() -> None:
    acknowledged = {
        **OVERRIDDEN,
        "review": {"required": False, "acknowledgedBy": "dave", "acknowledgedAt": NOW, "note": "checked"},
    }
    write = Write(acknowledged, {"review": {"note": "checked again"}}, actor("erin", grants=ACKNOWLEDGE))
    assert write.ops == []  # not restamped
    assert write.refusal == ("status.review", "the override was acknowledged by dave already", "Forbidden")


# --- the pipeline: Admission.mutate and .validate ----------------------------------------------------


def status_request(
    stored: Mapping[str, Any] | None,
    patch: Mapping[str, Any],
    username: str,
    *,
    groups: tuple[str, ...] = (),
    grants: frozenset[str] = frozenset(),
    now: str = NOW,
    obj: Mapping[str, Any] | None = None,
) -> Request:
    old = approval(stored)
    return Request(
        operation="UPDATE",
        kind="Approval",
        name=NAME,
        namespace=NS,
        object=copy.deepcopy(dict(obj)) if obj is not None else merged(old, {"status": patch}),
        old_object=old,
        sub_resource="status",
        user=UserInfo(username=username, groups=("system:authenticated", *groups)),
        grants=grants,
        now=now,
    )


def admit(request: Request, admission: Admission | None = None) -> tuple[dict[str, Any], Verdict]:
    """The mutating webhook, its patch applied, then the validating webhook: (object, verdict)."""
    admission = admission if admission is not None else Admission(OperatorSettings())
    mutation = admission.mutate(request, TEAMS)
    stamped = apply_patch(request.object, mutation.patch)
    verdict = admission.validate(
        Request(
            operation=request.operation,
            kind=request.kind,
            name=request.name,
            namespace=request.namespace,
            object=stamped,
            old_object=request.old_object,
            sub_resource=request.sub_resource,
            user=request.user,
            grants=request.grants,
            now=request.now,
        ),
        TEAMS,
    )
    return stamped, verdict


def operator_admission() -> Admission:
    admission = Admission(OperatorSettings())
    admission.operator_users = frozenset({OPERATOR})
    return admission


def messages(verdict: Verdict) -> list[tuple[str, str]]:
    return [(error.path, error.message) for error in verdict.errors]


def test_admission_stamps_the_creator_of_an_approval() -> None:
    created = Request(
        operation="CREATE",
        kind="Approval",
        name=NAME,
        namespace=NS,
        object=approval(requester="mallory"),
        user=UserInfo(username="alice"),
        now=NOW,
    )
    mutation = Admission(OperatorSettings()).mutate(created, TEAMS)
    assert mutation.patch == ({"op": "add", "path": "/spec/requestedBy/user", "value": "alice"},)
    by_operator = Request(
        operation="CREATE",
        kind="Approval",
        name=NAME,
        namespace=NS,
        object=approval(requester="bob"),
        user=UserInfo(username=OPERATOR),
    )
    assert not operator_admission().mutate(by_operator, TEAMS)


def test_admission_stamps_and_admits_a_decision_by_an_approver() -> None:
    stamped, verdict = admit(status_request(PENDING, {"decision": "approve", "decidedBy": "mallory"}, "dana"))
    assert verdict.allowed, verdict.message()
    assert stamped["status"]["decidedBy"] == "dana"  # team:release, role approver
    assert stamped["status"]["decidedAt"] == NOW
    assert stamped["status"]["phase"] == "Approved"

    stamped, verdict = admit(status_request(PENDING, {"decision": "approve"}, "gus", groups=("sre",)))
    assert verdict.allowed, verdict.message()
    assert stamped["status"]["decidedBy"] == "gus"


def test_admission_refuses_a_decision_by_a_team_viewer() -> None:
    _, verdict = admit(status_request(PENDING, {"decision": "approve"}, "vic"))
    assert not verdict.allowed
    assert verdict.code == 403
    ((path, message),) = messages(verdict)
    assert path == "status.decision"
    assert message.startswith("vic is not an approver of this request")


def test_admission_refuses_a_decision_not_stamped_by_its_mutating_webhook() -> None:
    """Should the mutating webhook not run (failurePolicy, a misconfiguration), the claims stay refused."""
    unstamped = merged(approval(PENDING), {"status": {"decision": "approve", "phase": "Approved"}})
    request = status_request(PENDING, {}, "alice", obj=unstamped)
    verdict = Admission(OperatorSettings()).validate(request, TEAMS)
    assert messages(verdict) == [
        ("status.decidedBy", "decidedBy and decidedAt are stamped by joch admission; it did not run")
    ]
    forged = merged(unstamped, {"status": {"decidedBy": "alice", "decidedAt": NOW}})
    forged_by_other = merged(unstamped, {"status": {"decidedBy": "dana", "decidedAt": NOW}})
    assert (
        Admission(OperatorSettings())
        .validate(status_request(PENDING, {}, "alice", obj=forged), TEAMS)
        .allowed
    )
    assert (
        not Admission(OperatorSettings())
        .validate(status_request(PENDING, {}, "alice", obj=forged_by_other), TEAMS)
        .allowed
    )


def test_admission_trusts_only_the_operators_own_user_with_the_expiry() -> None:
    stamped, verdict = admit(status_request(PENDING, expiry(), OPERATOR, now=LATE), operator_admission())
    assert verdict.allowed, verdict.message()
    assert stamped["status"]["decidedBy"] == TIMEOUT_USER
    assert stamped["status"]["decidedAt"] == LATE

    # the same user name, to an Admission that was not told it is the operator's
    stamped, verdict = admit(status_request(PENDING, expiry(), OPERATOR, now=LATE))
    assert not verdict.allowed
    assert messages(verdict)[0] == (
        "status.conditions",
        f"written by the joch operator only, not by {OPERATOR}",
    )

    _, verdict = admit(status_request(PENDING, expiry(), OPERATOR, now=NOW), operator_admission())
    assert messages(verdict) == [("status.phase", f"the request expires at {DEADLINE}, not before")]


def test_admission_lets_the_operator_write_the_pending_request() -> None:
    patch = {
        "phase": "Pending",
        "expiresAt": DEADLINE,
        "conditions": [READY_WAITING],
        "observedGeneration": 1,
    }
    stamped, verdict = admit(status_request(None, patch, OPERATOR), operator_admission())
    assert verdict.allowed, verdict.message()
    assert stamped["status"] == patch
    _, verdict = admit(status_request(None, patch, "alice"), operator_admission())
    assert not verdict.allowed


def test_admission_overrides_with_the_grant_and_acknowledges_with_the_other() -> None:
    override = {"override": {"reason": "the outage needs this fix now"}}
    _, verdict = admit(status_request(REJECTED, override, "carol"))
    assert messages(verdict) == [
        (
            "status.override",
            "carol may not override approvals here (the override verb of the joch-break-glass ClusterRole)",
        )
    ]
    stamped, verdict = admit(status_request(REJECTED, override, "carol", grants=OVERRIDE))
    assert verdict.allowed, verdict.message()
    assert stamped["status"]["phase"] == "Overridden"
    assert stamped["status"]["override"] == {
        "reason": "the outage needs this fix now",
        "by": "carol",
        "at": NOW,
    }
    assert stamped["status"]["review"] == {"required": True}

    later = "2026-11-27T13:00:00Z"
    request = status_request(
        stamped["status"], {"review": {"note": "ok"}}, "dave", grants=ACKNOWLEDGE, now=later
    )
    acknowledged, verdict = admit(request)
    assert verdict.allowed, verdict.message()
    assert acknowledged["status"]["review"] == {
        "required": False,
        "acknowledgedBy": "dave",
        "acknowledgedAt": later,
        "note": "ok",
    }
    request = status_request(
        stamped["status"], {"review": {"note": "mine"}}, "carol", grants=OVERRIDE | ACKNOWLEDGE
    )
    _, verdict = admit(request)
    assert messages(verdict) == [
        ("status.review", "carol overrode this request and cannot acknowledge their own override")
    ]


def test_admission_refuses_a_change_to_an_approvals_spec() -> None:
    old = approval(PENDING)
    new = merged(old, {"spec": {"routing": {"approvers": ["user:mallory"]}}})
    request = Request(
        operation="UPDATE",
        kind="Approval",
        name=NAME,
        namespace=NS,
        object=new,
        old_object=old,
        user=UserInfo(username="mallory"),
        now=NOW,
    )
    verdict = Admission(OperatorSettings()).validate(request, TEAMS)
    assert not verdict.allowed
    assert verdict.code == 403
    ((path, message),) = messages(verdict)
    assert path == "spec"
    assert "immutable" in message
    # labels may change (a spec left alone is no new request)
    relabelled = merged(old, {"metadata": {"labels": {"team": "support"}}})
    unchanged = Request(
        operation="UPDATE",
        kind="Approval",
        name=NAME,
        namespace=NS,
        object=relabelled,
        old_object=old,
        user=UserInfo(username="alice"),
    )
    assert not [
        e for e in Admission(OperatorSettings()).validate(unchanged, TEAMS).errors if e.path == "spec"
    ]
