"""The safety resync: every managed object queued again, its status re-derived from the cache.

Cases: over a converged fleet it compiles every Agent and writes nothing; an Agent status changed by
someone else (an event that queues nothing, the same generation) is repaired; the periodic loop runs
on its own with a short period; period 0 starts no loop.
"""

from __future__ import annotations

import asyncio
import copy

from tests.unit.controllers.support import conditions, example_world, obj, run, settle, started


def test_a_resync_over_a_converged_fleet_writes_nothing() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, resync_period=0)
        kube.requests.clear()
        compiles = controller.counts["compiles"]
        queued = controller.resync()
        await settle(controller)
        assert queued >= 10, "every Agent and referenced object is queued"
        assert controller.counts["compiles"] == compiles + 1, "the example's one Agent compiled again"
        assert kube.writes() == [], "nothing written over a converged fleet"
        await controller.stop()

    run(scenario)


def test_a_resync_repairs_a_status_that_no_event_queues() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, resync_period=0)
        stored = obj(kube, "agents", "support-triage")
        for condition in stored["status"]["conditions"]:
            if condition["type"] == "ResolvedRefs":
                condition.update(status="False", reason="MissingReference", message="tampered")
        stored["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Agent", "MODIFIED", copy.deepcopy(stored))
        await settle(controller)
        assert conditions(obj(kube, "agents", "support-triage"))["ResolvedRefs"]["message"] == "tampered"

        controller.resync()
        await settle(controller)
        repaired = conditions(obj(kube, "agents", "support-triage"))["ResolvedRefs"]
        assert (repaired["status"], repaired["reason"]) == ("True", "ReferencesResolved")
        await controller.stop()

    run(scenario)


def test_the_resync_loop_runs_by_itself() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, resync_period=0.2)
        stored = obj(kube, "agents", "support-triage")
        stored["status"]["phase"] = "Failed"
        stored["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Agent", "MODIFIED", copy.deepcopy(stored))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if obj(kube, "agents", "support-triage")["status"]["phase"] == "Ready":
                break
        assert obj(kube, "agents", "support-triage")["status"]["phase"] == "Ready"
        assert controller.counts["resyncs"] >= 1
        await controller.stop()

    run(scenario)


def test_period_zero_starts_no_resync() -> None:
    async def scenario() -> None:
        controller = await started(example_world(), resync_period=0)
        await asyncio.sleep(0.3)
        assert controller.counts["resyncs"] == 0
        assert not any(t.get_name() == "joch resync" for t in asyncio.all_tasks())
        await controller.stop()

    run(scenario)
