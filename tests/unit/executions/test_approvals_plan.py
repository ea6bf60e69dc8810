"""The approvals plan (joch.domain.reconcile.approvals): what the operator writes on an Approval. Pure.

Cases: the deadline (creationTimestamp + timeoutMinutes minutes of ``minute_seconds`` each, 30 by
default, None for a creation time that does not parse); the operator's part of the status (a new
request becomes Pending with expiresAt and Ready False WaitingForDecision; a decided one Ready True with
the phase as reason; an Overridden one an OverrideReview condition True until review.required is False)
and nothing to write once it is written (each output fed back as the stored status); the expiry (None
before the deadline or when not Pending; onTimeout deny rejects, approve approves; decided by
system:joch:timeout at now; written once); the held ToolCall's spec.approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from joch.domain.admission.approvals import TIMEOUT_USER
from joch.domain.reconcile import approvals as plan
from joch.domain.reconcile.status import conditions_by_type

CREATED = "2026-11-27T12:00:00Z"
DEADLINE = "2026-11-27T12:30:00Z"
T5 = "2026-11-27T12:05:00Z"
T10 = "2026-11-27T12:10:00Z"
LATE = "2026-11-27T12:31:00Z"
SETTINGS = plan.ApprovalSettings()
NAME = "call-1-approval"


def spec(minutes: int | None = 30, on_timeout: str | None = None, **extra: Any) -> dict[str, Any]:
    routing: dict[str, Any] = {"approvers": ["user:alice"]}
    if minutes is not None:
        routing["timeoutMinutes"] = minutes
    if on_timeout is not None:
        routing["onTimeout"] = on_timeout
    return {"action": {"type": "promotion"}, "routing": routing, **extra}


def desired(
    current: Mapping[str, Any],
    *,
    now: str = T5,
    generation: int | None = 1,
    the_spec: Mapping[str, Any] | None = None,
    created: str = CREATED,
    settings: plan.ApprovalSettings = SETTINGS,
) -> dict[str, Any] | None:
    return plan.desired_status(
        current,
        created=created,
        spec=the_spec if the_spec is not None else spec(),
        generation=generation,
        settings=settings,
        now=now,
    )


def written(current: Mapping[str, Any], out: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stored status after the operator's write of ``out`` (top-level fields replaced)."""
    return {**current, **(out or {})}


def settled(current: Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``current`` with what desired_status asks for written; asserts a second call asks for nothing."""
    out = desired(current, **kwargs)
    after = written(current, out)
    assert desired(after, **kwargs) is None, "desired_status wants a second write of what it just wrote"
    return after


def ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return conditions_by_type(status)["Ready"]


# --- the deadline -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("the_spec", "settings", "expected"),
    [
        (spec(30), SETTINGS, DEADLINE),
        (spec(45), SETTINGS, "2026-11-27T12:45:00Z"),
        (spec(1), SETTINGS, "2026-11-27T12:01:00Z"),
        (spec(43200), SETTINGS, "2026-12-27T12:00:00Z"),
        (spec(None), SETTINGS, DEADLINE),  # the default: 30 minutes
        ({"action": {"type": "promotion"}}, SETTINGS, DEADLINE),
        (spec(0), SETTINGS, DEADLINE),  # not a timeout: the default
        (spec(45), plan.ApprovalSettings(minute_seconds=1.0), "2026-11-27T12:00:45Z"),
        (spec(90), plan.ApprovalSettings(minute_seconds=2.0), "2026-11-27T12:03:00Z"),
    ],
)
def test_the_deadline_is_the_creation_plus_the_timeout(
    the_spec: dict[str, Any], settings: plan.ApprovalSettings, expected: str
) -> None:
    assert plan.deadline_of(CREATED, the_spec, settings) == expected


def test_the_deadline_is_in_utc_and_none_without_a_creation_time() -> None:
    assert plan.deadline_of("2026-11-27T14:00:00+02:00", spec(30), SETTINGS) == DEADLINE
    assert plan.deadline_of("", spec(30), SETTINGS) is None
    assert plan.deadline_of("yesterday", spec(30), SETTINGS) is None


# --- the operator's part of the status ----------------------------------------------------------------


def test_a_new_request_becomes_pending_with_its_deadline_and_waits() -> None:
    out = desired({}, now=T5, generation=3)
    assert out is not None
    assert out["phase"] == "Pending"
    assert out["expiresAt"] == DEADLINE
    assert out["observedGeneration"] == 3
    assert out["conditions"] == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "WaitingForDecision",
            "message": f"waiting for a decision until {DEADLINE}",
            "observedGeneration": 3,
            "lastTransitionTime": T5,
        }
    ]
    after = written({}, out)
    assert desired(after, now=T10, generation=3) is None  # written: nothing more, later too


def test_the_deadline_comes_from_the_settings_minute() -> None:
    out = desired({}, settings=plan.ApprovalSettings(minute_seconds=1.0), the_spec=spec(45))
    assert out is not None
    assert out["expiresAt"] == "2026-11-27T12:00:45Z"


def test_a_request_without_a_creation_time_waits_without_a_deadline() -> None:
    out = desired({}, created="")
    assert out is not None
    assert out["phase"] == "Pending"
    assert "expiresAt" not in out
    assert ready(out)["message"] == "waiting for a decision until its deadline"


def test_a_pending_request_keeps_its_deadline() -> None:
    stored = {"phase": "Pending", "expiresAt": "2026-11-27T13:00:00Z"}
    out = desired(stored)
    assert out is not None
    assert "expiresAt" not in out
    assert "phase" not in out
    assert ready(out)["message"] == "waiting for a decision until 2026-11-27T13:00:00Z"


@pytest.mark.parametrize(
    ("decided", "message"),
    [
        ({"phase": "Approved", "decision": "approve", "decidedBy": "alice"}, "Approved by alice"),
        ({"phase": "Rejected", "decision": "reject", "decidedBy": "alice"}, "Rejected by alice"),
        ({"phase": "Expired", "decision": "reject", "decidedBy": TIMEOUT_USER}, f"Expired by {TIMEOUT_USER}"),
    ],
)
def test_a_decided_request_is_ready_with_its_phase_as_reason(decided: dict[str, Any], message: str) -> None:
    pending = settled({}, now=T5)
    stored = {**pending, **decided, "decidedAt": T10}
    out = desired(stored, now=T10)
    assert out is not None
    assert set(out) == {"conditions"}  # the phase, the decision, the deadline are left alone
    condition = ready(out)
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        decided["phase"],
        message,
    )
    assert condition["lastTransitionTime"] == T10
    assert "OverrideReview" not in conditions_by_type(out)
    assert desired(written(stored, out), now=LATE) is None


def test_the_transition_time_stays_while_the_condition_status_does_not_change() -> None:
    stored = settled({}, now=T5)
    assert ready(stored)["lastTransitionTime"] == T5
    moved = {**stored, "expiresAt": "2026-11-27T13:00:00Z"}  # the message changes, not the status
    out = desired(moved, now=T10)
    assert out is not None
    assert ready(out)["lastTransitionTime"] == T5
    assert ready(out)["message"] == "waiting for a decision until 2026-11-27T13:00:00Z"


def test_an_override_is_under_review_until_an_auditor_acknowledges_it() -> None:
    pending = settled({}, now=T5)
    overridden = {
        **pending,
        "phase": "Overridden",
        "override": {"reason": "outage", "by": "carol", "at": T10},
        "review": {"required": True},
    }
    out = desired(overridden, now=T10)
    assert out is not None
    by_type = conditions_by_type(out)
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("True", "Overridden")
    assert by_type["Ready"]["message"] == "Overridden by carol"
    review = by_type["OverrideReview"]
    assert (review["status"], review["reason"]) == ("True", "AwaitingAcknowledgement")
    assert review["lastTransitionTime"] == T10
    stored = written(overridden, out)
    assert desired(stored, now=LATE) is None

    acknowledged = {
        **stored,
        "review": {"required": False, "acknowledgedBy": "dave", "acknowledgedAt": LATE},
    }
    out = desired(acknowledged, now=LATE)
    assert out is not None
    review = conditions_by_type(out)["OverrideReview"]
    assert (review["status"], review["reason"], review["message"]) == (
        "False",
        "Acknowledged",
        "acknowledged by dave",
    )
    assert review["lastTransitionTime"] == LATE
    assert conditions_by_type(out)["Ready"]["lastTransitionTime"] == T10
    assert desired(written(acknowledged, out), now="2026-11-28T00:00:00Z") is None


def test_the_ready_condition_of_an_overridden_rejection_names_the_overrider() -> None:
    rejected = {"phase": "Rejected", "decision": "reject", "decidedBy": "alice", "decidedAt": T5}
    overridden = {
        **rejected,
        "phase": "Overridden",
        "override": {"reason": "outage", "by": "carol", "at": T10},
        "review": {"required": True},
    }
    out = desired(overridden, now=T10)
    assert out is not None
    assert ready(out)["message"] == "Overridden by carol"


def test_other_writers_conditions_are_kept_and_a_new_generation_is_observed() -> None:
    theirs = {"type": "Notified", "status": "True", "reason": "Slack", "message": "sent"}
    stored = settled({}, now=T5)
    stored["conditions"] = [*stored["conditions"], theirs]
    assert desired(stored, now=T10) is None
    out = desired(stored, now=T10, generation=2)
    assert out is not None
    assert out["observedGeneration"] == 2
    assert out["conditions"][-1] == theirs
    assert ready(out)["observedGeneration"] == 2
    assert ready(out)["lastTransitionTime"] == T5


# --- the expiry ---------------------------------------------------------------------------------------


def pending() -> dict[str, Any]:
    return settled({}, now=T5)


def test_nothing_expires_before_its_deadline() -> None:
    assert plan.expired_status(pending(), spec(), generation=1, now=T10) is None
    assert plan.expired_status(pending(), spec(), generation=1, now="2026-11-27T12:29:59Z") is None


@pytest.mark.parametrize(
    "stored",
    [
        {},
        {"phase": "Pending"},  # no deadline
        {"phase": "Approved", "decision": "approve", "expiresAt": DEADLINE},
        {"phase": "Rejected", "decision": "reject", "expiresAt": DEADLINE},
        {"phase": "Overridden", "override": {"reason": "x"}, "expiresAt": DEADLINE},
        {"phase": "Expired", "decision": "reject", "expiresAt": DEADLINE, "decidedBy": TIMEOUT_USER},
    ],
)
def test_only_a_pending_request_expires(stored: dict[str, Any]) -> None:
    assert plan.expired_status(stored, spec(), generation=1, now="2027-01-01T00:00:00Z") is None


@pytest.mark.parametrize(
    ("on_timeout", "decision", "said"),
    [(None, "reject", "deny"), ("deny", "reject", "deny"), ("approve", "approve", "approve")],
)
@pytest.mark.parametrize("now", [DEADLINE, LATE])
def test_a_pending_request_past_its_deadline_expires_in_one_write(
    on_timeout: str | None, decision: str, said: str, now: str
) -> None:
    stored = pending()
    the_spec = spec(30, on_timeout)
    out = plan.expired_status(stored, the_spec, generation=1, now=now)
    assert out is not None
    assert out["phase"] == "Expired"
    assert out["decision"] == decision
    assert out["decidedBy"] == TIMEOUT_USER
    assert out["decidedAt"] == now
    assert out["rationale"] == f"no decision within 30 minutes; onTimeout {said}"
    condition = ready(out)
    assert (condition["status"], condition["reason"]) == ("True", "Expired")
    assert condition["message"] == f"Expired by {TIMEOUT_USER}"
    assert condition["lastTransitionTime"] == now
    after = written(stored, out)
    assert after["expiresAt"] == DEADLINE
    assert plan.expired_status(after, the_spec, generation=1, now=now) is None
    assert desired(after, now=now, the_spec=the_spec) is None  # nothing left for the status either


def test_the_rationale_counts_one_minute_in_the_singular() -> None:
    stored = settled({}, now=CREATED, the_spec=spec(1))
    out = plan.expired_status(stored, spec(1), generation=1, now="2026-11-27T12:01:00Z")
    assert out is not None
    assert out["rationale"] == "no decision within 1 minute; onTimeout deny"


def test_is_due_only_for_a_pending_request_at_or_past_its_deadline() -> None:
    assert not plan.is_due({"phase": "Pending", "expiresAt": DEADLINE}, T10)
    assert plan.is_due({"phase": "Pending", "expiresAt": DEADLINE}, DEADLINE)
    assert not plan.is_due({"phase": "Pending", "expiresAt": "soon"}, LATE)
    assert not plan.is_due({"phase": "Approved", "expiresAt": DEADLINE}, LATE)


# --- the held ToolCall --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, {"status": "pending"}),
        ({"phase": "Pending", "expiresAt": DEADLINE}, {"status": "pending"}),
        (
            {"phase": "Approved", "decision": "approve", "decidedBy": "alice", "decidedAt": T10},
            {"status": "approved", "approvedBy": "alice", "approvedAt": T10},
        ),
        (
            {"phase": "Approved", "decision": "edit", "decidedBy": "alice", "decidedAt": T10},
            {"status": "approved", "approvedBy": "alice", "approvedAt": T10},
        ),
        (
            {"phase": "Rejected", "decision": "reject", "decidedBy": "alice", "decidedAt": T10},
            {"status": "rejected", "approvedBy": "alice", "approvedAt": T10},
        ),
        (
            {"phase": "Expired", "decision": "reject", "decidedBy": TIMEOUT_USER, "decidedAt": LATE},
            {"status": "expired", "approvedBy": TIMEOUT_USER, "approvedAt": LATE},
        ),
        (
            {"phase": "Expired", "decision": "approve", "decidedBy": TIMEOUT_USER, "decidedAt": LATE},
            {"status": "approved", "approvedBy": TIMEOUT_USER, "approvedAt": LATE},
        ),
        (
            {"phase": "Overridden", "override": {"reason": "outage", "by": "carol", "at": T10}},
            {"status": "overridden", "approvedBy": "carol", "approvedAt": T10},
        ),
    ],
    ids=["new", "pending", "approved", "edited", "rejected", "expired-deny", "expired-approve", "overridden"],
)
def test_the_tool_call_hears_the_outcome(status: dict[str, Any], expected: dict[str, Any]) -> None:
    assert plan.tool_call_approval(NAME, status) == {
        "required": True,
        "approvalRef": {"name": NAME},
        **expected,
    }


@pytest.mark.parametrize(
    "before",
    [
        {"phase": "Rejected", "decision": "reject", "decidedBy": "alice", "decidedAt": T5, "rationale": "no"},
        {"phase": "Expired", "decision": "reject", "decidedBy": TIMEOUT_USER, "decidedAt": DEADLINE},
    ],
    ids=["rejected", "expired"],
)
def test_the_tool_call_of_an_overridden_request_names_the_overrider(before: dict[str, Any]) -> None:
    """The call goes ahead because carol broke glass: she is who decided, then, not who refused."""
    status = {
        **before,
        "phase": "Overridden",
        "override": {"reason": "outage", "by": "carol", "at": LATE},
        "review": {"required": True},
    }
    approval = plan.tool_call_approval(NAME, status)
    assert approval["status"] == "overridden"
    assert (approval.get("approvedBy"), approval.get("approvedAt")) == ("carol", LATE)
