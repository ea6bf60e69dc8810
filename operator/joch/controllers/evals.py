"""The evals service: Eval runs as Executions (on schedule, on promotion), their scores judged against
the thresholds, the results in Eval status (joch.domain.reconcile.evals).

Keys: ``ObjectKey("Eval", namespace, name)``. Queued by a change of the Eval, of one of its runs (an
Execution whose ``spec.trigger`` names it), of its target Agent (a new generation), of a Deployment of
that Agent (a promotion to run for), of a review Approval, and by its own timer at the next cron tick.
For one Eval the service

1. gathers its runs, the Agent's generation, the Deployments and the review answers from the cache;
2. creates the run of a due cron tick (named after the tick: created once across restarts and
   replicas) and records the tick in ``status.lastScheduleTime``; creates the run a promoted Agent
   generation needs (named after the generation);
3. writes the status (runs, scores, phase, conditions) and asks for a review Approval for each
   inconclusive run when ``spec.releaseGate.enabled``;
4. records Events (RunCreated, Passed, Failed, Inconclusive) and arms its timer for the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final

from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.eval import Eval
from joch.controllers.service import Change, Service
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import evals as plan
from joch.domain.reconcile.approvals import parse_time
from joch.domain.reconcile.cache import Entry
from joch.domain.reconcile.status import invalid_status
from joch.kube import access, errors, events, jobs, paths

__all__ = ["EvalService"]

logger = logging.getLogger("joch.controllers.evals")

EVALS: Final = paths.ResourceType.of(Eval)
_RESULTS: Final = frozenset({"Passed", "Failed", "Inconclusive"})


class EvalService(Service):
    name = "evals"
    watches = frozenset({"Eval", "Execution", "Agent", "Deployment", "Approval"})
    resync_kinds = ("Eval",)

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind == "Eval"

    def _evals_of(self, namespace: str | None, agent: str | None = None) -> list[ObjectKey]:
        return [
            entry.key
            for entry in self.host.store.entries("Eval")
            if entry.namespace == namespace
            and isinstance(entry.obj, Eval)
            and (agent is None or entry.obj.spec.target.name == agent)
        ]

    def observe(self, change: Change) -> None:
        host = self.host
        current = change.current
        if current is None or not host.manages(current.namespace):
            return
        keys: list[ObjectKey] = []
        if change.kind == "Eval":
            keys = [current.key]
        elif change.kind == "Execution":
            source = plan.source_of(current)
            if source is not None and change.status_changed:
                keys = [ObjectKey("Eval", current.namespace, source)]
        elif change.kind == "Agent":
            if change.changed:
                keys = self._evals_of(current.namespace, current.name)
        elif change.kind == "Deployment":
            if change.changed and isinstance(current.obj, Deployment):
                keys = self._evals_of(current.namespace, current.obj.spec.agent_ref.name)
        elif change.kind == "Approval":
            name = current.labels.get(plan.EVAL_LABEL)
            if name and plan.RUN_LABEL in current.labels:
                keys = [ObjectKey("Eval", current.namespace, name)]
        for key in keys:
            host.queue.add_after(key, host.status_delay)

    def touched(self, key: Hashable) -> None:
        """One of the Eval's runs ended (the executions service wrote that status into the cache itself)."""
        if self.owns(key) and isinstance(key, ObjectKey) and self.host.manages(key.namespace):
            self.host.queue.add_after(key, self.host.status_delay)

    def start_keys(self) -> Iterable[Hashable]:
        return [entry.key for entry in self.host.store.entries("Eval") if self.host.manages(entry.namespace)]

    # --- gathering --------------------------------------------------------------------------------

    def _runs(self, namespace: str, name: str) -> list[plan.RunView]:
        runs = []
        for entry in self.host.store.entries("Execution"):
            if entry.namespace != namespace:
                continue
            run = plan.run_of(entry, name)
            if run is not None:
                runs.append(run)
        return runs

    def _reviews(self, namespace: str, name: str) -> dict[str, plan.Review]:
        out = {}
        for entry in self.host.store.entries("Approval"):
            if entry.namespace != namespace or entry.labels.get(plan.EVAL_LABEL) != name:
                continue
            run = entry.labels.get(plan.RUN_LABEL)
            if run:
                out[run] = plan.review_of(entry.document())
        return out

    def _deployments(self, namespace: str) -> list[Deployment]:
        return [
            entry.obj
            for entry in self.host.store.entries("Deployment")
            if entry.namespace == namespace and isinstance(entry.obj, Deployment)
        ]

    def _approvers(self, namespace: str) -> list[str]:
        team = self.host.store.team_for_namespace(namespace)
        return [f"team:{team.metadata.name}"] if team is not None else ["role:approver"]

    # --- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ObjectKey)
        host = self.host
        entry = host.store.entry("Eval", key.namespace, key.name)
        if entry is None:
            return
        evaluation = entry.obj
        if not isinstance(evaluation, Eval):
            await self._write(entry, self._invalid)
            return
        namespace = entry.namespace or ""
        agent = host.store.entry("Agent", namespace, evaluation.spec.target.name)
        generation = agent.generation if agent is not None else None
        runs = self._runs(namespace, entry.name)
        now = host.clock()
        last = parse_time(entry.status.get("lastScheduleTime"))
        due, upcoming = plan.schedule_due(evaluation, last=last, created=plan.created_at(entry), now=now)
        if due is not None and await self._create_run(
            entry, evaluation, plan.run_name(entry.name, "s" + due.strftime("%Y%m%d%H%M")), "schedule"
        ):
            last = due
        trigger = plan.promotion_due(evaluation, self._deployments(namespace), runs, generation)
        if trigger is not None and agent is not None:
            await self._create_run(
                entry, evaluation, plan.run_name(entry.name, f"g{generation}"), trigger, generation=generation
            )
        reviews = self._reviews(namespace, entry.name)
        before = entry.status
        asked: list[tuple[plan.RunView, plan.Judgement]] = []

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            status, to_review = plan.eval_status(
                evaluation,
                runs,
                reviews=reviews,
                generation=generation,
                current=stored.status,
                last_schedule=last,
                next_schedule=upcoming,
                now=host.now(),
            )
            asked[:] = to_review
            return status

        await self._write(entry, desire)
        for run, judgement in asked:
            await self._ask_review(entry, evaluation, run, judgement)
        after = host.store.entry("Eval", key.namespace, key.name)
        if after is not None:
            self._announce(after, before, after.status)
        if upcoming is not None:
            host.queue.add_after(key, max(0.5, (upcoming - now).total_seconds() + 0.5))

    async def _create_run(
        self, entry: Entry, evaluation: Eval, name: str, trigger: str, *, generation: int | None = None
    ) -> bool:
        """Create a run; True when it exists now (created, or made before under that name)."""
        body = plan.run_execution(
            evaluation, name=name, trigger=trigger, uid=entry.uid, generation=generation
        )
        try:
            created = await jobs.create_execution(self.host.kube, body)
        except errors.KubeError as exc:
            logger.warning("Eval %s/%s: cannot create run %s: %s", entry.namespace, entry.name, name, exc)
            self.host.recorder.record(
                _involved(entry), "Warning", "RunNotCreated", f"cannot create Execution {name}: {exc}"
            )
            return False
        if created:
            self.host.counts["eval_runs_created"] += 1
            self.host.recorder.record(
                _involved(entry), "Normal", "RunCreated", f"created Execution {name} ({trigger})"
            )
        return True

    async def _ask_review(
        self, entry: Entry, evaluation: Eval, run: plan.RunView, judgement: plan.Judgement
    ) -> None:
        body = plan.review_approval(
            evaluation, run, judgement, uid=entry.uid, approvers=self._approvers(entry.namespace or "")
        )
        try:
            _, created = await access.create_approval(self.host.kube, body)
        except errors.KubeError as exc:
            logger.warning(
                "Eval %s/%s: cannot ask for a review of %s: %s", entry.namespace, entry.name, run.name, exc
            )
            return
        if created:
            self.host.recorder.record(
                _involved(entry),
                "Normal",
                "ReviewRequested",
                f"run {run.name} was inconclusive; Approval {body['metadata']['name']} asks whether it "
                "counts as passed",
            )

    def _invalid(self, stored: Entry) -> Mapping[str, Any] | None:
        if stored.error is None:
            return None
        return invalid_status(
            "Eval", stored.error, generation=stored.generation, current=stored.status, now=self.host.now()
        )

    async def _write(self, entry: Entry, desire: Any) -> None:
        host = self.host
        async with host.status_lock(entry.key):
            try:
                await host.write_status(entry.key, entry.uid, desire, owned=plan.OWNED_CONDITIONS)
            except errors.Forbidden as exc:
                logger.warning("Eval %s/%s: status write refused: %s", entry.namespace, entry.name, exc)

    def _announce(self, entry: Entry, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """An Event when a run's result is newly known."""
        known = {
            r.get("execution"): r.get("phase") for r in before.get("runs") or () if isinstance(r, Mapping)
        }
        for record in after.get("runs") or ():
            phase = record.get("phase")
            if phase not in _RESULTS or known.get(record.get("execution")) == phase:
                continue
            self.host.recorder.record(
                _involved(entry),
                "Normal" if phase == "Passed" else "Warning",
                str(phase),
                f"run {record.get('execution')}: {record.get('message')}",
            )

    def drifted(self, entry: Entry) -> Hashable | None:
        """The resync's check: a cron tick due and not run."""
        if not isinstance(entry.obj, Eval):
            return None
        due, _ = plan.schedule_due(
            entry.obj,
            last=parse_time(entry.status.get("lastScheduleTime")),
            created=plan.created_at(entry),
            now=self.host.clock(),
        )
        return entry.key if due is not None else None


def _involved(entry: Entry) -> events.InvolvedObject:
    return events.InvolvedObject(EVALS.api_version, "Eval", entry.namespace, entry.name, entry.uid)
