"""The approvals service: every Approval gets its deadline, expires on time, and its decision reaches the
ToolCall it holds.

Keys: ``ObjectKey("Approval", namespace, name)``. For each one the service

- writes the operator's part of the status (joch.domain.reconcile.approvals.desired_status): Pending
  with ``expiresAt`` for a new request, the Ready condition, the OverrideReview condition;
- expires a Pending request whose deadline has passed, in one status write conditioned on the stored
  resourceVersion (a second operator, or a restart, that tries again finds it Expired and writes
  nothing);
- copies the decision into the held ToolCall's ``spec.approval`` (tool_call requests);
- records Events: Requested, Approved, Rejected, Expired (Normal) and Overridden (Warning), once each,
  when the phase in the Ready condition it wrote last differs from the phase now.

Timeouts use one timer for the whole process, not a task or a poll per object: a heap of (deadline,
key) and a single loop call armed for the earliest deadline; when it fires, every due key is queued and
the timer is armed for the next. Deadlines are read from ``status.expiresAt``, so an operator that
restarts loads them from its start-up LIST and expires at once what came due while it was down.
"""

from __future__ import annotations

import asyncio
import datetime
import heapq
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final, Literal

from joch import metrics
from joch.controllers.service import Change, Host, Service
from joch.domain import audit as governance
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import approvals as plan
from joch.domain.reconcile.cache import Entry
from joch.domain.reconcile.status import conditions_by_type
from joch.kube import errors, events
from joch.kube.access import APPROVALS

__all__ = ["ApprovalService"]

logger = logging.getLogger("joch.controllers.approvals")

RETRY_SECONDS: Final = 2.0
"""When a status write of an Approval is refused, the wait before it is tried again."""
TOOL_CALLS: Final = "/apis/runtime.joch.dev/v1alpha1/namespaces/{ns}/toolcalls/{name}"
_EVENTS: Final[dict[str, tuple[Literal["Normal", "Warning"], str]]] = {
    "Pending": ("Normal", "Requested"),
    "Approved": ("Normal", "Approved"),
    "Rejected": ("Normal", "Rejected"),
    "Expired": ("Normal", "Expired"),
    "Overridden": ("Warning", "Overridden"),
}


def approval_key(namespace: str, name: str) -> ObjectKey:
    return ObjectKey("Approval", namespace, name)


class ApprovalService(Service):
    name = "approvals"
    watches = frozenset({"Approval"})
    resync_kinds = ("Approval",)

    def __init__(self, host: Host, settings: plan.ApprovalSettings | None = None) -> None:
        super().__init__(host)
        self.settings = settings or getattr(host, "approval_settings", None) or plan.ApprovalSettings()
        self._heap: list[tuple[datetime.datetime, str, str]] = []
        self._deadlines: dict[tuple[str, str], datetime.datetime] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: datetime.datetime | None = None
        self.expired = 0

    # --- what is dirty ----------------------------------------------------------------------------

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind == "Approval"

    def observe(self, change: Change) -> None:
        namespace = change.namespace or ""
        if not self.host.manages(namespace):
            return
        if change.new is None:
            self._deadlines.pop((namespace, change.name), None)
        self.host.queue.add(approval_key(namespace, change.name))

    def start_keys(self) -> Iterable[Hashable]:
        for entry in self.host.store.entries("Approval"):
            if self.host.manages(entry.namespace or ""):
                yield approval_key(entry.namespace or "", entry.name)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the timer --------------------------------------------------------------------------------

    @property
    def pending_deadlines(self) -> int:
        return len(self._deadlines)

    def _schedule(self, namespace: str, name: str, deadline: datetime.datetime) -> None:
        if self._deadlines.get((namespace, name)) == deadline:
            return
        self._deadlines[(namespace, name)] = deadline
        heapq.heappush(self._heap, (deadline, namespace, name))
        self._arm()

    def _arm(self) -> None:
        # Entries whose deadline changed or was dropped are skipped lazily.
        while self._heap and self._deadlines.get((self._heap[0][1], self._heap[0][2])) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap:
            return
        earliest = self._heap[0][0]
        if self._timer is not None and self._armed_for is not None and self._armed_for <= earliest:
            return
        if self._timer is not None:
            self._timer.cancel()
        now = self.host.clock()
        delay = max(0.0, (earliest - now).total_seconds())
        self._armed_for = earliest
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_for = None, None
        now = self.host.clock()
        while self._heap and self._heap[0][0] <= now:
            deadline, namespace, name = heapq.heappop(self._heap)
            if self._deadlines.get((namespace, name)) == deadline:
                self.host.queue.add(approval_key(namespace, name))
        self._arm()

    # --- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ObjectKey)
        namespace, name = key.namespace or "", key.name
        host = self.host
        entry = host.store.entry("Approval", namespace, name)
        if entry is None:
            self._deadlines.pop((namespace, name), None)
            return
        source = entry.document()
        spec = source.get("spec") if isinstance(source.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        created = str((source.get("metadata") or {}).get("creationTimestamp") or host.now())
        before = entry.status

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            status = stored.status
            expired = plan.expired_status(status, spec, generation=stored.generation, now=host.now())
            if expired is not None:
                return expired
            return plan.desired_status(
                status,
                created=created,
                spec=spec,
                generation=stored.generation,
                settings=self.settings,
                now=host.now(),
            )

        # A due request leaves the timer now; whatever happens to the write, the status read afterwards
        # puts a still-Pending one back (and a refused write is tried again shortly).
        if plan.is_due(before, host.now()):
            self._deadlines.pop((namespace, name), None)
        async with host.status_lock(entry.key):
            try:
                await host.write_status(entry.key, entry.uid, desire, owned=("Ready", plan.OVERRIDE_REVIEW))
            except errors.Forbidden as exc:
                # e.g. a webhook replica whose clock is behind says "not before": try again soon.
                logger.warning("Approval %s/%s: status write refused, retrying: %s", namespace, name, exc)
                host.queue.add_after(entry.key, RETRY_SECONDS)
                return
        current = host.store.entry("Approval", namespace, name)
        if current is None:
            return
        status = current.status
        self._announce(current, before, status)
        phase = status.get("phase")
        deadline = plan.parse_time(status.get("expiresAt"))
        if phase == "Pending" and deadline is not None:
            self._schedule(namespace, name, deadline)
        else:
            self._deadlines.pop((namespace, name), None)
        action = spec.get("action") if isinstance(spec.get("action"), dict) else {}
        assert isinstance(action, dict)
        ref = action.get("toolCallRef")
        if action.get("type") == "tool_call" and isinstance(ref, dict) and ref.get("name"):
            await self._tell_tool_call(str(ref.get("namespace") or namespace), str(ref["name"]), name, status)

    def drifted(self, entry: Entry) -> Hashable | None:
        """The resync's check: a request past its deadline still Pending, or one without a phase."""
        status = entry.status
        if not status.get("phase") or plan.is_due(status, self.host.now()):
            return entry.key
        return None

    def _announce(self, entry: Entry, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """One Event per phase reached (the phase the Ready condition reported before is the memory)."""
        phase = str(after.get("phase") or "")
        ready_before = conditions_by_type(before).get("Ready") or {}
        said = ready_before.get("reason")
        said_phase = "Pending" if said == plan.WAITING else said
        if not phase or said_phase == phase or phase not in _EVENTS:
            return
        kind, reason = _EVENTS[phase]
        if phase == "Pending":
            message = f"waiting for a decision until {after.get('expiresAt')}"
        elif phase == "Overridden":
            override = after.get("override") or {}
            message = (
                f"break-glass override by {override.get('by')}: {override.get('reason')}; an auditor must "
                "acknowledge it (joch approvals acknowledge)"
            )
        else:
            message = f"{phase} by {after.get('decidedBy')}" + (
                f": {after.get('rationale')}" if after.get("rationale") else ""
            )
        delay = None
        if phase == "Expired":
            self.expired += 1
            deadline, decided = (
                plan.parse_time(after.get("expiresAt")),
                plan.parse_time(after.get("decidedAt")),
            )
            if deadline is not None and decided is not None:
                delay = (decided - deadline).total_seconds()
            self.host.governance.record(
                "approval_expiry",
                actor=governance.OPERATOR,
                resource=governance.Resource.of(entry),
                decision="expire",
                reason=f"no decision by {after.get('expiresAt')}: expired",
                severity="Low",
                details={"expiresAt": after.get("expiresAt"), "decidedBy": after.get("decidedBy")},
                time=self.host.clock(),
            )
        metrics.record_approval(phase, delay)
        involved = events.InvolvedObject(
            APPROVALS.api_version, "Approval", entry.namespace, entry.name, entry.uid
        )
        self.host.recorder.record(involved, kind, reason, message)

    async def _tell_tool_call(
        self, namespace: str, tool_call: str, name: str, status: Mapping[str, Any]
    ) -> None:
        """The held ToolCall's spec.approval, patched when it differs."""
        entry = self.host.store.entry("ToolCall", namespace, tool_call)
        wanted = plan.tool_call_approval(name, status)
        if entry is not None and entry.source is not None:
            current = (entry.document().get("spec") or {}).get("approval")
            if current == wanted:
                return
        try:
            await self.host.kube.request(
                "PATCH",
                TOOL_CALLS.format(ns=namespace, name=tool_call),
                body={"spec": {"approval": wanted}},
                content_type="application/merge-patch+json",
            )
        except errors.NotFound:
            logger.info("Approval %s/%s: its ToolCall %s is gone", namespace, name, tool_call)
