"""The budgets service: every Budget's spend, counted from Execution status into calendar windows and a
ledger, each finished run exactly once (joch.domain.reconcile.budgets).

Keys: ``ObjectKey("Budget", namespace, name)``. A change of an Execution (its cost reported by the
worker; its end, told by the executions service through ``Host.touch``) queues the Budgets that cover
it, after the status delay so a burst makes one write; a change of a
Budget, Team, Environment or Agent queues every Budget (coverage may have moved). For one Budget the
service

1. gathers the covered runs from the shared cache;
2. adds the finished runs no one counted to the ledger, with their uids in ``status.charging``, in one
   status write conditioned on the stored resourceVersion (decided again on a conflict);
3. writes the Budget's key into each such run's ``status.budgetsCharged``;
4. drops those uids from ``charging`` and writes the windows, phase and conditions;
5. records a Warning Event when the soft or the hard limit is newly reached, and comes back when the
   day window resets (the next local midnight of the Budget's time zone).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.execution import Execution
from joch.controllers.service import Change, Service
from joch.domain import audit as governance
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import budgets as plan
from joch.domain.reconcile import reservations as holds
from joch.domain.reconcile.cache import Entry
from joch.domain.reconcile.status import conditions_by_type
from joch.kube import errors, events, paths
from joch.kube import status as kube_status

__all__ = ["BudgetService"]

logger = logging.getLogger("joch.controllers.budgets")

EXECUTIONS: Final = paths.ResourceType.of(Execution)
BUDGETS: Final = paths.ResourceType.of(Budget)
MARK_ATTEMPTS: Final = 5
_COVERAGE_KINDS: Final = frozenset({"Budget", "Team", "Environment", "Agent", "Namespace"})


class BudgetService(Service):
    name = "budgets"
    watches = frozenset({"Execution", *_COVERAGE_KINDS})
    resync_kinds = ("Budget",)

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind == "Budget"

    def _budget_keys(self) -> list[ObjectKey]:
        return [
            entry.key for entry in self.host.store.entries("Budget") if self.host.manages(entry.namespace)
        ]

    def observe(self, change: Change) -> None:
        host = self.host
        if change.kind in _COVERAGE_KINDS:
            if change.kind == "Budget" or change.changed:
                for key in self._budget_keys():
                    host.queue.add_after(key, host.status_delay)
            return
        current = change.current
        if current is None or not change.status_changed:
            return
        run = plan.run_of(current)
        if run is None:
            return
        for covering in plan.covering(host.store, host.settings, run.namespace, run.agent):
            namespace, _, name = covering.partition("/")
            if host.manages(namespace):
                host.queue.add_after(ObjectKey("Budget", namespace, name), host.status_delay)

    def touched(self, key: Hashable) -> None:
        """A covered run ended (the executions service wrote that status into the cache itself)."""
        if self.owns(key) and isinstance(key, ObjectKey) and self.host.manages(key.namespace):
            self.host.queue.add_after(key, self.host.status_delay)

    def start_keys(self) -> Iterable[Hashable]:
        return self._budget_keys()

    # --- reconcile --------------------------------------------------------------------------------

    def _covered(self, entry: Entry) -> list[plan.Run]:
        """The runs the Budget covers (coverage worked out once per namespace and Agent)."""
        host = self.host
        key = plan.budget_key(entry.namespace or "", entry.name)
        decided: dict[tuple[str, str], bool] = {}
        found = []
        for execution in host.store.entries("Execution"):
            run = plan.run_of(execution)
            if run is None:
                continue
            where = (run.namespace, run.agent)
            if where not in decided:
                decided[where] = key in plan.covering(host.store, host.settings, run.namespace, run.agent)
            if decided[where]:
                found.append(run)
        return found

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ObjectKey)
        host = self.host
        entry = host.store.entry("Budget", key.namespace, key.name)
        if entry is None:
            return
        if not isinstance(entry.obj, Budget):
            await self._write(entry, self._invalid)
            return
        budget = entry.obj
        try:
            tz = plan.time_zone(budget.spec.time_zone)
        except ValueError as exc:
            error = f"spec.timeZone: {exc}"
            await self._write(entry, lambda stored: self._invalid(stored, error))
            return
        name = plan.budget_key(entry.namespace or "", entry.name)
        covered = self._covered(entry)
        running = [run for run in covered if not run.finished]
        before = entry.status
        now = self._now()
        costs = {(run.namespace, run.name): holds.RunCost(run.cost_usd, run.finished) for run in covered}

        def kept(stored: Entry) -> list[dict[str, Any]]:
            """The reservations to keep, decided from the stored status (the decision service adds
            reservations concurrently; a 409 makes this run again on what it wrote)."""
            return holds.release(stored.status, costs, now, namespace=entry.namespace or "")

        # 1. the finished runs no one counted: into the ledger, their uids into charging.
        def charged(stored: Entry) -> Mapping[str, Any] | None:
            new, _ = plan.to_charge(name, covered, stored.status.get("charging") or ())
            ledger, charging = plan.charge(stored.status, new, tz, by_agent=True)
            return plan.budget_status(
                budget,
                current=stored.status,
                ledger=ledger,
                charging=charging,
                running=running,
                reservations=kept(stored),
                now=now,
            )

        await self._write(entry, charged)
        stored = host.store.entry("Budget", key.namespace, key.name)
        if stored is None:
            return
        # 2. each counted run says so; 3. its uid leaves charging.
        _, mark = plan.to_charge(name, covered, stored.status.get("charging") or ())
        marked, gone = [], []
        for run in mark:
            done = await self._mark(run, name)
            if done is True:
                marked.append(run.uid)
            elif done is False:
                gone.append(run.uid)
        known = {run.uid for run in covered}
        gone += [uid for uid in stored.status.get("charging") or () if uid not in known]

        def settled(current: Entry) -> Mapping[str, Any] | None:
            charging = plan.settle(current.status.get("charging") or (), marked, gone)
            return plan.budget_status(
                budget,
                current=current.status,
                charging=charging,
                running=running,
                reservations=kept(current),
                now=now,
            )

        await self._write(entry, settled)
        if mark or gone:
            logger.info(
                "counted Budget/%s/%s: %d runs marked, %d gone; %d runs covered",
                entry.namespace,
                entry.name,
                len(marked),
                len(gone),
                len(covered),
            )
        self._come_back(key, before, [run for run in covered if run.uid not in {*marked, *gone}], now, tz)

    def _come_back(
        self,
        key: ObjectKey,
        before: Mapping[str, Any],
        uncounted: Sequence[plan.Run],
        now: datetime.datetime,
        tz: datetime.tzinfo,
    ) -> None:
        """Announce what the pass changed and queue the Budget again: at once when ``uncounted`` (the
        covered runs this pass did not settle) still holds new runs that did not fit into charging, else
        at the day window's reset or the next reservation expiry."""
        host = self.host
        after = host.store.entry("Budget", key.namespace, key.name)
        if after is not None:
            self._announce(after, before, after.status)
            left, _ = plan.to_charge(
                plan.budget_key(key.namespace or "", key.name), uncounted, after.status.get("charging") or ()
            )
            if left:  # more uncounted runs than charging holds: the next batch now
                host.queue.add(key)
                return
        reset = plan.day_window(now, tz).reset
        expiry = holds.next_expiry(after.status) if after is not None else None
        if expiry is not None:
            reset = min(reset, expiry)  # an expired reservation is let go and the windows' reserved drop
        host.queue.add_after(key, max(1.0, (reset - now).total_seconds() + 1.0))

    def _now(self) -> datetime.datetime:
        return self.host.clock()

    def _invalid(self, stored: Entry, error: str | None = None) -> Mapping[str, Any] | None:
        message = error or stored.error
        if message is None:
            return None
        return plan.invalid_status(
            message, generation=stored.generation, current=stored.status, now=self.host.now()
        )

    async def _write(self, entry: Entry, desire: Any) -> None:
        host = self.host
        async with host.status_lock(entry.key):
            try:
                await host.write_status(entry.key, entry.uid, desire, owned=plan.OWNED_CONDITIONS)
            except errors.Forbidden as exc:
                logger.warning("Budget %s/%s: status write refused: %s", entry.namespace, entry.name, exc)

    async def _mark(self, run: plan.Run, name: str) -> bool | None:
        """Add the Budget to the run's ``budgetsCharged``: True when it says so, False when the Execution
        is gone, None when it kept changing (the uid stays in ``charging``; the next reconcile tries again).

        The list is written with the stored resourceVersion as a precondition (two Budgets marking one run
        at once must not overwrite each other's key), and the stored result goes into the cache at once
        (a reconcile before the watch echo must see the mark)."""
        host = self.host
        stored = host.store.entry("Execution", run.namespace, run.name)
        if stored is None:
            return False
        status, version, uid = stored.status, stored.resource_version, stored.uid
        try:
            for _ in range(MARK_ATTEMPTS):
                if uid != run.uid:
                    return False  # another Execution of that name: this run is gone
                current = status.get("budgetsCharged")
                if isinstance(current, list) and name in current:
                    return True
                charged = sorted({*(current if isinstance(current, list) else ()), name})
                try:
                    written = await kube_status.patch_status(
                        host.kube,
                        EXECUTIONS,
                        run.namespace,
                        run.name,
                        {"budgetsCharged": charged},
                        resource_version=version or None,
                    )
                except errors.Conflict:
                    fresh = await kube_status.read(host.kube, EXECUTIONS, run.namespace, run.name)
                    metadata = fresh.get("metadata") or {}
                    status = fresh.get("status") or {}
                    version, uid = str(metadata.get("resourceVersion") or ""), str(metadata.get("uid") or "")
                    continue
                host.store.set_status("Execution", run.namespace, run.name, written)
                host.counts["executions_charged"] += 1
                return True
        except errors.NotFound:
            return False
        return None

    def _announce(self, entry: Entry, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        old, new = conditions_by_type(before), conditions_by_type(after)
        involved = events.InvolvedObject(
            BUDGETS.api_version, "Budget", entry.namespace, entry.name, entry.uid
        )
        for type_ in ("HardLimitReached", "SoftLimitReached"):
            now_true = (new.get(type_) or {}).get("status") == "True"
            was_true = (old.get(type_) or {}).get("status") == "True"
            if now_true and not was_true:
                self.host.recorder.record(involved, "Warning", type_, str(new[type_].get("message") or ""))
                self.host.governance.record(
                    "budget_breach",
                    actor=governance.OPERATOR,
                    resource=governance.Resource.of(entry),
                    decision="breach",
                    reason=str(new[type_].get("message") or type_),
                    severity="High" if type_ == "HardLimitReached" else "Medium",
                    policy=governance.Policy(f"{entry.namespace}/{entry.name}", str(entry.generation or "")),
                    details={"condition": type_},
                    time=self.host.clock(),
                )
                if type_ == "HardLimitReached":
                    break  # the soft limit went with it: one Event says both

    def drifted(self, entry: Entry) -> Hashable | None:
        """The resync's check: a finished run not counted, or windows that moved (a reset)."""
        if not isinstance(entry.obj, Budget):
            return None
        status = entry.status
        name = plan.budget_key(entry.namespace or "", entry.name)
        covered = self._covered(entry)
        new, mark = plan.to_charge(name, covered, status.get("charging") or ())
        if new or mark:
            return entry.key
        reset = plan.parse_time(((status.get("windows") or {}).get("daily") or {}).get("resetAt"))
        expiry = holds.next_expiry(status)
        now = self._now()
        if expiry is not None and expiry <= now:
            return entry.key
        return entry.key if reset is None or reset <= now else None
