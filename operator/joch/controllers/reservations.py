"""The budget step of a decision (``joch operator`` only): a call the policies allow is checked against
the Budgets covering its agent, and its estimated cost is reserved in each of them.

:class:`BudgetGate` is called by the decision endpoint after ``DecisionService.decide``. For a request
whose context has ``agent.namespace``, ``agent.name`` and ``cost.runUsd`` (not preflight, not denied
by a policy) it

1. finds the covering Budgets with ``onHardLimit: deny`` in the controller's shared cache
   (joch.domain.reconcile.budgets.covering) and asks each whether the call fits
   (joch.domain.reconcile.reservations.assess); any refusal denies (``BudgetExceeded``, the Budget with
   the least headroom named) and nothing is reserved;
2. adds one reservation (a UUID, the amount, its expiry after the TTL, the agent, the Execution and its
   cost so far) to ``status.reservations`` of each such Budget, one after the other, each write a status
   merge patch carrying the resourceVersion the decision was made against. A 409 (another replica, or
   the budget service, wrote first) reads the Budget again and decides again on the fresh status, so
   replicas never overbook; a Budget that refuses on the fresh status undoes the reservations already
   made (best effort: they also expire). Each written status goes into the cache at once;
3. answers the allow with the reservation (id, budgets, amountUsd, expiresAt).

Within one process the writes to one Budget are serialised under its status lock (the same the budget
service writes under), so concurrent decisions queue instead of conflicting. Failing closed: a cache
not primed, a Budget not accounted yet, a write refused or conflicting more than :data:`ATTEMPTS` times
denies.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from joch.api.v1alpha1.budget import Budget
from joch.controllers.reconciler import Controller
from joch.domain.compilation.keys import ObjectKey
from joch.domain.policy.decision import Decision
from joch.domain.reconcile import budgets as plan
from joch.domain.reconcile import reservations as holds
from joch.domain.reconcile.cache import Entry
from joch.kube import errors, paths
from joch.kube import status as kube_status

__all__ = ["ATTEMPTS", "BudgetGate"]

logger = logging.getLogger("joch.controllers.reservations")

BUDGETS: Final = paths.ResourceType.of(Budget)
ATTEMPTS: Final = 16
"""Status writes of one Budget for one call before it is denied (each 409 costs a GET and one more)."""

Extra = Mapping[str, Any] | None
"""What the decision response carries besides the Decision: ``reservation`` (allow) or ``budget``
(a BudgetExceeded deny)."""


def _deny(verdict: holds.Verdict) -> tuple[Decision, Extra]:
    namespace, _, name = verdict.budget.partition("/")
    return Decision("deny", verdict.reason), {"budget": {"namespace": namespace, "name": name}}


@dataclasses.dataclass
class BudgetGate:
    """The budget step (module docstring) over ``controller``'s cache and kube client."""

    controller: Controller
    ttl_seconds: float = holds.DEFAULT_TTL_SECONDS
    new_id: Callable[[], str] = dataclasses.field(default=lambda: str(uuid.uuid4()))

    async def __call__(
        self, context: Mapping[str, Any], decision: Decision, now: datetime.datetime
    ) -> tuple[Decision, Extra]:
        call = None if decision.denied else holds.call_of(context)  # a policy deny stays a deny
        if call is None:
            return decision, None
        return await self._hold(call, decision, now)

    async def _hold(
        self, call: holds.Call, decision: Decision, now: datetime.datetime
    ) -> tuple[Decision, Extra]:
        host = self.controller
        if not host.primed:
            return Decision(
                "deny", f"{holds.REASON}: the Budgets' state is unknown (the operator's cache is not loaded)"
            ), None
        targets = self._targets(call)
        if not targets:
            return decision, None
        run = self._run(call)
        verdicts = [
            holds.assess(key, budget, entry.status, call, run=run, now=now) for key, budget, entry in targets
        ]
        worst = holds.most_restrictive(verdicts)
        if not worst.fits:
            host.counts["budget_denials"] += 1
            return _deny(worst)
        reservation = holds.new_reservation(
            self.new_id(), call, run=run, now=now, ttl_seconds=self.ttl_seconds
        )
        made: list[tuple[str, Budget]] = []
        for key, budget, _ in targets:
            refused = await self._reserve(key, call=call, run=run, reservation=reservation, now=now)
            if refused is not None:
                await self._undo(made, str(reservation["id"]), now)
                host.counts["budget_denials"] += 1
                return _deny(refused)
            made.append((key, budget))
        host.counts["budget_reservations"] += 1
        return decision, {
            "reservation": {
                "id": reservation["id"],
                "budgets": [key for key, _ in made],
                "amountUsd": reservation["amountUsd"],
                "expiresAt": reservation["expiresAt"],
            }
        }

    # --- gathering ----------------------------------------------------------------------------------

    def _targets(self, call: holds.Call) -> list[tuple[str, Budget, Entry]]:
        """The covering Budgets with onHardLimit deny (key, parsed spec, cache entry), sorted by key."""
        host = self.controller
        found = []
        for key in plan.covering(host.store, host.settings, call.namespace, call.agent):
            namespace, _, name = key.partition("/")
            entry = host.store.entry("Budget", namespace, name)
            budget = entry.obj if entry is not None else None
            if (
                entry is not None
                and isinstance(budget, Budget)
                and budget.spec.enforcement.on_hard_limit == "deny"
            ):
                found.append((key, budget, entry))
        return found

    def _run(self, call: holds.Call) -> holds.RunCost | None:
        if call.execution is None:
            return None
        entry = self.controller.store.entry("Execution", call.namespace, call.execution)
        if entry is None:
            return None
        run = plan.run_of(entry)
        return holds.RunCost(run.cost_usd, run.finished) if run is not None else None

    # --- writing ------------------------------------------------------------------------------------

    async def _reserve(
        self,
        key: str,
        *,
        call: holds.Call,
        run: holds.RunCost | None,
        reservation: Mapping[str, Any],
        now: datetime.datetime,
    ) -> holds.Verdict | None:
        """Hold ``reservation`` in Budget ``key``; None when written, else the refusal."""
        host = self.controller
        namespace, _, name = key.partition("/")
        async with host.status_lock(ObjectKey("Budget", namespace, name)):
            for _ in range(ATTEMPTS):
                entry = host.store.entry("Budget", namespace, name)
                if entry is None or not isinstance(entry.obj, Budget):
                    return holds.Verdict(key, False, float("-inf"), f"{holds.REASON}: Budget {key} is gone")
                budget = entry.obj
                verdict = holds.assess(key, budget, entry.status, call, run=run, now=now)
                if not verdict.fits:
                    return verdict
                patch = holds.add(budget, entry.status, reservation, now)
                try:
                    written = await kube_status.patch_status(
                        host.kube,
                        BUDGETS,
                        namespace,
                        name,
                        patch,
                        resource_version=entry.resource_version or None,
                    )
                except errors.Conflict:
                    host.counts["budget_reservation_conflicts"] += 1
                    if not await self._reread(namespace, name):
                        return holds.Verdict(
                            key, False, float("-inf"), f"{holds.REASON}: Budget {key} is gone"
                        )
                    continue
                except errors.KubeError as exc:
                    logger.warning("Budget %s: reservation not written: %s", key, exc)
                    return holds.Verdict(
                        key,
                        False,
                        float("-inf"),
                        f"{holds.REASON}: Budget {key}: the reservation could not be written ({exc}); "
                        "its state is unknown",
                    )
                host.store.set_status("Budget", namespace, name, written)
                return None
        return holds.Verdict(
            key,
            False,
            float("-inf"),
            f"{holds.REASON}: Budget {key} kept changing while the call was reserved; try again",
        )

    async def _reread(self, namespace: str, name: str) -> bool:
        """The Budget as stored now, into the cache; False when it is gone."""
        try:
            fresh = await kube_status.read(self.controller.kube, BUDGETS, namespace, name)
        except errors.NotFound:
            return False
        self.controller.observe("Budget", "MODIFIED", fresh)
        return True

    async def _undo(
        self, made: list[tuple[str, Budget]], reservation_id: str, now: datetime.datetime
    ) -> None:
        """Take the reservation back from the Budgets it was written to (best effort: it also expires)."""
        host = self.controller
        for key, _ in made:
            namespace, _, name = key.partition("/")
            try:
                async with host.status_lock(ObjectKey("Budget", namespace, name)):
                    for _ in range(ATTEMPTS):
                        entry = host.store.entry("Budget", namespace, name)
                        if entry is None or not isinstance(entry.obj, Budget):
                            break
                        patch = holds.remove(entry.obj, entry.status, reservation_id, now)
                        if patch is None:
                            break
                        try:
                            written = await kube_status.patch_status(
                                host.kube,
                                BUDGETS,
                                namespace,
                                name,
                                patch,
                                resource_version=entry.resource_version or None,
                            )
                        except errors.Conflict:
                            if not await self._reread(namespace, name):
                                break
                            continue
                        host.store.set_status("Budget", namespace, name, written)
                        break
            except errors.KubeError as exc:
                logger.warning(
                    "Budget %s: reservation %s not taken back (it expires): %s", key, reservation_id, exc
                )
