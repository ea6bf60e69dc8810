"""The approvals service (joch.controllers.approvals) over the in-memory API server.

Cases: a new Approval gets one status write, Pending with its expiresAt, and a Requested Event; a
thousand Pending Approvals share one timer armed for the earliest deadline; with the clock past the
deadline an Approval is expired in exactly one write and reconciling it again writes nothing (a restart
finds the Approvals that came due while it was down and expires them at once; the one timer fires on
its own when a deadline comes); a decided tool_call Approval patches its ToolCall's spec.approval once;
an Overridden Approval records one Warning Event Overridden and a second reconcile records none.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import random
from collections.abc import Callable
from typing import Any

from joch import audit
from joch.controllers.approvals import ApprovalService, approval_key
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.domain.admission.approvals import TIMEOUT_USER
from joch.domain.reconcile.approvals import ApprovalSettings
from joch.kube import errors, events
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, NS, obj, run, settle

GROUP = "runtime.joch.dev"
CREATED = "2026-11-27T12:00:00Z"  # NOW
DEADLINE = "2026-11-27T12:30:00Z"
T5 = "2026-11-27T12:05:00Z"


def stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """The host's clock, moved by the test."""

    def __init__(self, moment: datetime.datetime = NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime.datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += datetime.timedelta(**delta)


def approval_doc(
    name: str,
    *,
    minutes: int = 30,
    on_timeout: str | None = None,
    created: str = CREATED,
    status: dict[str, Any] | None = None,
    tool_call: str | None = None,
) -> dict[str, Any]:
    routing: dict[str, Any] = {"approvers": ["user:alice"], "timeoutMinutes": minutes}
    if on_timeout is not None:
        routing["onTimeout"] = on_timeout
    action: dict[str, Any] = {"type": "promotion"}
    if tool_call is not None:
        action = {"type": "tool_call", "toolCallRef": {"name": tool_call}, "tool": "zendesk.search"}
    doc: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
        "spec": {"requestedBy": {"user": "bob"}, "action": action, "routing": routing},
    }
    if status is not None:
        doc["status"] = status
    return doc


def tool_call_doc(name: str, approval: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "executionRef": {"name": "run-1"},
        "agentRef": {"name": "support-triage"},
        "toolRef": {"name": "zendesk.search"},
    }
    if approval is not None:
        spec["approval"] = approval
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ToolCall",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def world(*docs: dict[str, Any]) -> FakeKube:
    kube = FakeKube()
    for doc in docs:
        kube.put(GROUP, "approvals" if doc["kind"] == "Approval" else "toolcalls", doc)
    return kube


async def started(
    kube: FakeKube, clock: Callable[[], datetime.datetime], settings: ApprovalSettings | None = None
) -> Controller:
    controller = Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0, approvals=settings or ApprovalSettings()),
        clock=clock,
        services=(ApprovalService,),
    )
    await controller.start()
    await settle(controller)
    return controller


def service(controller: Controller) -> ApprovalService:
    (found,) = controller.services
    assert isinstance(found, ApprovalService)
    return found


def status_writes(kube: FakeKube, name: str) -> list[dict[str, Any]]:
    """The status patches of Approval ``name`` that landed, in order."""
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{NS}/approvals/{name}/status"
    return [body["status"] for method, p, body in kube.landed if method == "PATCH" and p == path]


def tool_call_patches(kube: FakeKube, name: str) -> list[Any]:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/{NS}/toolcalls/{name}"
    return [body for method, p, body in kube.landed if method == "PATCH" and p == path]


def spy_events(controller: Controller) -> list[tuple[str, str, str, str]]:
    """Every Event the services ask the recorder for: (object name, type, reason, message)."""
    said: list[tuple[str, str, str, str]] = []
    record = controller.recorder.record

    def spy(involved: events.InvolvedObject, type_: Any, reason: str, message: str) -> bool:
        said.append((involved.name, type_, reason, message))
        return record(involved, type_, reason, message)

    controller.recorder.record = spy  # type: ignore[method-assign]
    return said


async def reconcile_again(controller: Controller, name: str) -> None:
    controller.queue.add(approval_key(NS, name))
    await settle(controller)


def live_timers(service: ApprovalService) -> list[asyncio.TimerHandle]:
    """The loop's scheduled, uncancelled calls of the service's timer callback."""
    loop = asyncio.get_running_loop()
    scheduled = getattr(loop, "_scheduled", None)
    assert isinstance(scheduled, list), "the event loop does not expose its timers"
    return [
        handle
        for handle in scheduled
        if not handle.cancelled() and getattr(handle._callback, "__self__", None) is service
    ]


def test_a_new_approval_gets_one_status_write_with_pending_and_its_deadline() -> None:
    async def scenario() -> None:
        kube = world(approval_doc("promote-1"))
        controller = await started(kube, Clock())
        said = spy_events(controller)
        (written,) = status_writes(kube, "promote-1")
        assert written["phase"] == "Pending"
        assert written["expiresAt"] == DEADLINE
        status = obj(kube, "approvals", "promote-1")["status"]
        assert status["phase"] == "Pending"
        assert status["expiresAt"] == DEADLINE
        (ready,) = status["conditions"]
        assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "WaitingForDecision")
        await controller.recorder.flush()
        requested = [e for e in kube.of("events") if e["involvedObject"]["name"] == "promote-1"]
        assert [(e["type"], e["reason"]) for e in requested] == [("Normal", "Requested")]
        assert service(controller).pending_deadlines == 1

        await reconcile_again(controller, "promote-1")
        assert len(status_writes(kube, "promote-1")) == 1
        assert said == []
        await controller.stop()

    run(scenario)


def test_one_timer_for_a_thousand_pending_approvals() -> None:
    minutes = list(range(1, 1001))
    random.Random(7).shuffle(minutes)  # the earliest deadline arrives somewhere in the middle

    async def scenario() -> None:
        kube = world(*(approval_doc(f"a-{i:04d}", minutes=m) for i, m in enumerate(minutes)))
        controller = await started(kube, Clock())
        approvals = service(controller)
        assert approvals.pending_deadlines == 1000
        expires = {body["status"]["expiresAt"] for body in kube.of("approvals")}
        assert len(expires) == 1000
        assert all(body["status"]["phase"] == "Pending" for body in kube.of("approvals"))
        timer = approvals._timer
        assert isinstance(timer, asyncio.TimerHandle)
        assert live_timers(approvals) == [timer]
        assert approvals._armed_for == NOW + datetime.timedelta(minutes=1)
        remaining = timer.when() - asyncio.get_running_loop().time()
        assert 50 < remaining <= 60
        await controller.stop()
        assert timer.cancelled()
        assert live_timers(approvals) == []

    run(scenario, timeout=120)


def test_an_approval_past_its_deadline_is_expired_in_one_write_and_never_again() -> None:
    async def scenario() -> None:
        kube = world(approval_doc("promote-1"))
        clock = Clock()
        controller = await started(kube, clock)
        approvals = service(controller)
        said = spy_events(controller)
        trail = io.StringIO()
        controller.governance = audit.GovernanceLog(trail, hash_chain=True)
        assert len(status_writes(kube, "promote-1")) == 1

        clock.advance(minutes=29, seconds=59)  # not yet: the timer fires, nothing is due
        approvals._fire()
        await settle(controller)
        assert len(status_writes(kube, "promote-1")) == 1
        assert approvals.pending_deadlines == 1
        assert approvals._timer is not None

        clock.advance(seconds=61)
        approvals._fire()  # what the loop calls once the deadline has come
        await settle(controller)
        pending, expiry = status_writes(kube, "promote-1")
        assert pending["phase"] == "Pending"
        assert expiry["phase"] == "Expired"
        status = obj(kube, "approvals", "promote-1")["status"]
        assert status["phase"] == "Expired"
        assert status["decision"] == "reject"
        assert status["decidedBy"] == TIMEOUT_USER
        assert status["decidedAt"] == stamp(clock.moment)
        assert status["expiresAt"] == DEADLINE
        assert status["rationale"] == "no decision within 30 minutes; onTimeout deny"
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "Expired")
        assert approvals.pending_deadlines == 0
        assert approvals.expired == 1
        assert [(name, reason) for name, _, reason, _ in said] == [("promote-1", "Expired")]
        (record,) = (json.loads(line) for line in trail.getvalue().splitlines())
        assert (record["class_name"], record["activity_name"]) == ("Approval Expiry", "Expire")
        assert record["actor"]["user"]["name"] == "system:joch:operator"
        assert record["joch"]["resource"]["name"] == "promote-1"
        assert record["time_dt"] == stamp(clock.moment).replace("Z", ".000Z")

        writes = len(kube.landed)
        await reconcile_again(controller, "promote-1")
        clock.advance(hours=1)
        await approvals.reconcile(approval_key(NS, "promote-1"))
        approvals._fire()
        await settle(controller)
        assert kube.landed[writes:] == []
        assert len(said) == 1
        assert len(trail.getvalue().splitlines()) == 1
        await controller.stop()

    run(scenario)


def test_an_expiry_refused_once_is_tried_again() -> None:
    """The webhook answering the expiry may run on a replica whose clock is a second behind: it refuses
    ("not before", 403). The request must still expire, not wait for an event that never comes."""

    async def scenario() -> None:
        kube = world(approval_doc("promote-1"))
        clock = Clock()
        controller = await started(kube, clock)
        approvals = service(controller)
        clock.advance(minutes=30)
        kube.fail.append(errors.Forbidden(f"the request expires at {DEADLINE}, not before", status=403))
        approvals._fire()
        await settle(controller)
        assert obj(kube, "approvals", "promote-1")["status"]["phase"] == "Pending"  # refused

        clock.advance(seconds=5)
        for _ in range(50):  # the timer, a retry or the resync: whichever the service relies on
            approvals._fire()
            await controller.resync()
            await settle(controller)
            if obj(kube, "approvals", "promote-1")["status"]["phase"] != "Pending":
                break
            await asyncio.sleep(0.1)
        assert obj(kube, "approvals", "promote-1")["status"]["phase"] == "Expired"
        await controller.stop()

    run(scenario)


def test_on_timeout_approve_expires_with_an_approval() -> None:
    async def scenario() -> None:
        kube = world(approval_doc("promote-1", on_timeout="approve"))
        clock = Clock()
        controller = await started(kube, clock)
        clock.advance(minutes=31)
        service(controller)._fire()
        await settle(controller)
        status = obj(kube, "approvals", "promote-1")["status"]
        assert (status["phase"], status["decision"], status["decidedBy"]) == (
            "Expired",
            "approve",
            TIMEOUT_USER,
        )
        assert len(status_writes(kube, "promote-1")) == 2
        await controller.stop()

    run(scenario)


def test_a_restart_expires_at_once_what_came_due_while_it_was_down() -> None:
    def waiting(deadline: str) -> dict[str, Any]:
        return {
            "phase": "Pending",
            "expiresAt": deadline,
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "WaitingForDecision",
                    "message": f"waiting for a decision until {deadline}",
                    "observedGeneration": 1,
                    "lastTransitionTime": CREATED,
                }
            ],
        }

    async def scenario() -> None:
        kube = world(
            approval_doc("due", status=waiting(DEADLINE)),
            approval_doc("not-due", minutes=120, status=waiting("2026-11-27T14:00:00Z")),
        )
        clock = Clock(NOW + datetime.timedelta(minutes=45))
        controller = await started(kube, clock)
        (expiry,) = status_writes(kube, "due")
        assert expiry["phase"] == "Expired"
        assert expiry["decidedAt"] == stamp(clock.moment)
        assert status_writes(kube, "not-due") == []
        assert service(controller).pending_deadlines == 1
        assert service(controller)._armed_for == datetime.datetime(2026, 11, 27, 14, 0, tzinfo=datetime.UTC)
        await controller.stop()

    run(scenario)


def test_the_timer_fires_on_its_own_at_the_deadline() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()

        def clock() -> datetime.datetime:  # real time, from half a second past NOW
            return NOW + datetime.timedelta(seconds=0.5 + loop.time() - began)

        kube = world(approval_doc("quick", minutes=1))
        controller = await started(kube, clock, ApprovalSettings(minute_seconds=1.0))
        (pending,) = status_writes(kube, "quick")
        assert pending["expiresAt"] == "2026-11-27T12:00:01Z"
        for _ in range(80):
            await asyncio.sleep(0.05)
            if len(status_writes(kube, "quick")) > 1:
                break
        await settle(controller)
        _, expiry = status_writes(kube, "quick")
        assert expiry["phase"] == "Expired"
        assert expiry["decidedBy"] == TIMEOUT_USER
        assert service(controller).pending_deadlines == 0
        await controller.stop()

    run(scenario)


def test_a_decided_tool_call_approval_patches_its_tool_call_once() -> None:
    async def scenario() -> None:
        held = {"required": True, "status": "pending", "approvalRef": {"name": "call-1-approval"}}
        kube = world(approval_doc("call-1-approval", tool_call="call-1"), tool_call_doc("call-1", held))
        clock = Clock()
        controller = await started(kube, clock)
        assert tool_call_patches(kube, "call-1") == []  # it already says pending
        assert service(controller).pending_deadlines == 1

        # alice decides (as admission stamps it); the watch delivers the change
        clock.advance(minutes=5)
        stored = obj(kube, "approvals", "call-1-approval")
        stored["status"].update(phase="Approved", decision="approve", decidedBy="alice", decidedAt=T5)
        stored["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Approval", "MODIFIED", obj(kube, "approvals", "call-1-approval"))
        await settle(controller)
        wanted = {
            "required": True,
            "status": "approved",
            "approvalRef": {"name": "call-1-approval"},
            "approvedBy": "alice",
            "approvedAt": T5,
        }
        assert tool_call_patches(kube, "call-1") == [{"spec": {"approval": wanted}}]
        assert obj(kube, "toolcalls", "call-1")["spec"]["approval"] == wanted
        assert obj(kube, "toolcalls", "call-1")["spec"]["toolRef"] == {"name": "zendesk.search"}
        assert service(controller).pending_deadlines == 0  # decided: no timeout any more

        controller.observe("ToolCall", "MODIFIED", obj(kube, "toolcalls", "call-1"))  # its watch event
        await reconcile_again(controller, "call-1-approval")
        await reconcile_again(controller, "call-1-approval")
        assert len(tool_call_patches(kube, "call-1")) == 1
        await controller.stop()

    run(scenario)


def test_an_overridden_approval_records_one_warning_event() -> None:
    async def scenario() -> None:
        rejected_ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Rejected",
            "message": "Rejected by alice",
            "observedGeneration": 1,
            "lastTransitionTime": T5,
        }
        overridden = {
            "phase": "Overridden",
            "expiresAt": DEADLINE,
            "decision": "reject",
            "decidedBy": "alice",
            "decidedAt": T5,
            "rationale": "not during the freeze",
            "override": {"reason": "the outage needs this fix", "by": "carol", "at": "2026-11-27T12:10:00Z"},
            "review": {"required": True},
            "observedGeneration": 1,
            "conditions": [rejected_ready],
        }
        kube = world(approval_doc("promote-1", status=overridden))
        controller = Controller(
            kube,  # type: ignore[arg-type]
            ControllerConfig(status_delay=0),
            clock=Clock(NOW + datetime.timedelta(minutes=11)),
            services=(ApprovalService,),
        )
        said = spy_events(controller)
        await controller.start()
        await settle(controller)
        assert [(name, type_, reason) for name, type_, reason, _ in said] == [
            ("promote-1", "Warning", "Overridden")
        ]
        message = said[0][3]
        assert "break-glass override by carol: the outage needs this fix" in message
        assert "joch approvals acknowledge" in message
        status = obj(kube, "approvals", "promote-1")["status"]
        by_type = {c["type"]: c for c in status["conditions"]}
        assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("True", "Overridden")
        assert (by_type["OverrideReview"]["status"], by_type["OverrideReview"]["reason"]) == (
            "True",
            "AwaitingAcknowledgement",
        )
        assert service(controller).pending_deadlines == 0
        await controller.recorder.flush()
        warnings = [e for e in kube.of("events") if e["reason"] == "Overridden"]
        assert [e["type"] for e in warnings] == ["Warning"]

        writes = len(status_writes(kube, "promote-1"))
        await reconcile_again(controller, "promote-1")
        await reconcile_again(controller, "promote-1")
        assert len(said) == 1
        assert len(status_writes(kube, "promote-1")) == writes
        await controller.stop()

    run(scenario)
