"""Status writes that race: the interleaving behind the GitOps-burst bug, forced, and its safety nets.

The bug (a Flux burst: Tools and Models applied within a second of the Agents): an Agent's compile and
its deferred status report were different work-queue keys, so both could write the Agent's status at
once, each a merge patch of only the fields it changed against the same cached status. The report of
an older compile (ResolvedRefs False, phase unchanged so not in its patch) landing after the newest
compile's patch (phase Ready, conditions True) left phase Ready with conditions False, and the cache
then matched the server: nothing ever re-queued the Agent.

Cases:
- the exact interleaving, forced with a gate on the fake API server: the report's PATCH is held until
  the newer compile's PATCH has landed (or, when the controller serialises them, until the compile has
  run and waits for the report); the Agent ends Ready with every condition consistent;
- a status changed behind the cache's back makes the write fail its resourceVersion precondition
  (409); the controller reads the object again, recomputes, and writes a consistent status;
- a resync over a converged fleet writes nothing; one over a tampered status repairs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

from joch.domain.compilation.keys import ObjectKey
from tests.fake_kube import FakeKube, Gate
from tests.unit.controllers.support import NS, conditions, example_world, obj, run, settle, started

TOOLS = ("tools.joch.dev", "tools")
AGENT_STATUS = f"/apis/joch.dev/v1alpha1/namespaces/{NS}/agents/support-triage/status"


def _consistent(body: dict[str, Any]) -> None:
    """The invariant the bug broke: phase and conditions tell one story."""
    status = body["status"]
    ready = conditions(body)["Ready"]["status"]
    resolved = conditions(body)["ResolvedRefs"]["status"]
    assert (status["phase"] == "Ready") == (ready == "True"), status
    if status["phase"] == "Ready":
        assert resolved == "True", status


def _is_agent_status_patch(method: str, path: str, _body: Any) -> bool:
    return method == "PATCH" and path == AGENT_STATUS


def test_a_report_held_behind_a_newer_compile_cannot_leave_conditions_stale() -> None:
    async def scenario() -> None:
        kube = example_world()
        search = kube.objects.pop((*TOOLS, NS, "zendesk.search"))
        slack = kube.objects.pop((*TOOLS, NS, "slack.send"))
        controller = await started(kube)
        triage = obj(kube, "agents", "support-triage")
        assert triage["status"]["phase"] == "Pending"
        assert "zendesk.search" in conditions(triage)["ResolvedRefs"]["message"]
        assert "slack.send" in conditions(triage)["ResolvedRefs"]["message"]

        # One Tool arrives: the compile still misses the other, same outcomes, only the message differs,
        # so its status goes to the low-priority report lane. Hold the report's PATCH on the wire.
        held = Gate(_is_agent_status_patch)
        kube.gates.append(held)
        controller.observe("Tool", "ADDED", copy.deepcopy(kube.put(*TOOLS, search)))
        await asyncio.wait_for(held.reached.wait(), 5)
        assert held.body["status"]["conditions"][3]["status"] == "False"  # ResolvedRefs, as reported

        # The last Tool arrives while the report is on the wire: the newest compile is Ready.
        compile_landed = asyncio.Event()
        kube.on_landed = lambda method, path, body: (
            compile_landed.set() if _is_agent_status_patch(method, path, body) else None
        )
        compiles = controller.counts["compiles"]
        controller.observe("Tool", "ADDED", copy.deepcopy(kube.put(*TOOLS, slack)))
        for _ in range(200):  # the compile runs (no await between gather and compile) ...
            await asyncio.sleep(0.005)
            if controller.counts["compiles"] > compiles:
                break
        assert controller.counts["compiles"] == compiles + 1
        # ... and its status PATCH lands first, unless the controller makes it wait for the report.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(compile_landed.wait(), 0.5)
        held.release()
        await settle(controller)

        triage = obj(kube, "agents", "support-triage")
        _consistent(triage)
        assert triage["status"]["phase"] == "Ready"
        assert {c["type"]: c["status"] for c in triage["status"]["conditions"]} == {
            "Ready": "True",
            "Reconciling": "False",
            "Stalled": "False",
            "ResolvedRefs": "True",
            "Compiled": "True",
            "PolicyCompliant": "True",
        }
        assert controller.store.entry("Agent", NS, "support-triage").status == triage["status"]
        await controller.stop()

    run(scenario)


def test_a_status_changed_behind_the_cache_is_reread_and_recomputed() -> None:
    async def scenario() -> None:
        kube = example_world()
        slack = kube.objects.pop((*TOOLS, NS, "slack.send"))
        controller = await started(kube)
        # Someone else writes the Agent's status; the operator's cache has not seen it (no event).
        stored = obj(kube, "agents", "support-triage")
        stored["status"]["conditions"][0] = {**stored["status"]["conditions"][0], "message": "tampered"}
        stored["status"]["activeExecutions"] = 2
        stored["metadata"]["resourceVersion"] = kube._next()
        before = len(kube.requests)
        controller.observe("Tool", "ADDED", copy.deepcopy(kube.put(*TOOLS, slack)))
        await settle(controller)

        patches = [r for r in kube.requests[before:] if r == ("PATCH", AGENT_STATUS)]
        assert len(patches) == 2, "the first write failed its resourceVersion precondition, then a retry"
        assert ("GET", AGENT_STATUS.removesuffix("/status")) in kube.requests[before:]
        triage = obj(kube, "agents", "support-triage")
        _consistent(triage)
        assert triage["status"]["phase"] == "Ready"
        assert triage["status"]["activeExecutions"] == 2, "a field another writer owns is kept"
        assert conditions(triage)["Ready"]["message"] != "tampered"
        assert controller.store.entry("Agent", NS, "support-triage").status == triage["status"]
        await controller.stop()

    run(scenario)


def _non_event_writes(kube: FakeKube) -> list[tuple[str, str]]:
    return [w for w in kube.writes() if "/events" not in w[1]]


def test_a_resync_of_a_converged_fleet_writes_nothing_and_repairs_a_tampered_status() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        before = len(kube.requests)
        queued = await controller.resync()
        await settle(controller)
        assert queued == [], "nothing differs from what the cache implies"
        assert kube.requests[before:] == [], "a resync over a converged fleet sends no request at all"

        # Tamper with the Agent's and a Tool's status on the server, and let the cache see it without
        # acting on it: the Agent's watch event queues nothing (its spec did not change), the Tool's
        # event is "lost" (the cache is updated directly, as if the reaction had been dropped).
        triage = obj(kube, "agents", "support-triage")
        good = copy.deepcopy(triage["status"])
        resolved = triage["status"]["conditions"][3]
        triage["status"]["conditions"][3] = {**resolved, "status": "False", "reason": "MissingReference"}
        triage["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Agent", "MODIFIED", copy.deepcopy(triage))
        tool = obj(kube, "tools", "slack.send")
        tool_status = copy.deepcopy(tool["status"])
        tool["status"]["phase"] = "Failed"
        tool["metadata"]["resourceVersion"] = kube._next()
        controller.store.set_status("Tool", NS, "slack.send", copy.deepcopy(tool))
        await settle(controller)
        assert obj(kube, "agents", "support-triage")["status"] != good, "no event repaired it"

        queued = await controller.resync()
        assert sorted(map(str, queued)) == sorted(
            map(str, [ObjectKey("Agent", NS, "support-triage"), ObjectKey("Tool", NS, "slack.send")])
        )
        await settle(controller)
        assert obj(kube, "agents", "support-triage")["status"] == good
        assert obj(kube, "tools", "slack.send")["status"] == tool_status
        assert [w[0] for w in _non_event_writes(kube)[-2:]] == ["PATCH", "PATCH"]
        await controller.stop()

    run(scenario)


def test_the_resync_loop_runs_every_period_and_zero_disables_it() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, resync_period=0.05)
        triage = obj(kube, "agents", "support-triage")
        good = copy.deepcopy(triage["status"])
        triage["status"]["phase"] = "Failed"
        triage["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Agent", "MODIFIED", copy.deepcopy(triage))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if obj(kube, "agents", "support-triage")["status"] == good:
                break
        assert obj(kube, "agents", "support-triage")["status"] == good
        assert controller.counts["resyncs"] >= 1
        await controller.stop()

        kube = example_world()
        controller = await started(kube, resync_period=0)
        await asyncio.sleep(0.1)
        assert controller.counts["resyncs"] == 0
        await controller.stop()

    run(scenario)
