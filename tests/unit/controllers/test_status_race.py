"""Regression: one Agent's status is never written by two workers at once (the Flux-burst bug).

A GitOps sync applies a fleet in one burst, so an Agent's references arrive one after another. The
compile that finds all but one of them changes only condition messages, so its status report waits in
the low-priority lane (``AgentReport``); when the last reference arrives, the next compile writes the
Ready status at once. Both writes are merge patches computed against the same cached status: if the
report's patch reached the API server after the compile's, the server held ``phase: Ready`` and the
current ``compiledManifest`` beside the report's ``ResolvedRefs=False`` conditions, and no event ever
queued the Agent again.

The test forces that ordering: the in-memory API server holds the report's PATCH until the compile's
PATCH has landed (or one second has passed, so serialised writers cannot deadlock), then lets it land.
Whatever order the writes take, the Agent must end consistent: Ready with every condition True.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any

from tests.unit.controllers.support import NS, conditions, example_world, obj, run, settle, started

TOOLS = ("tools.joch.dev", "tools")
HOLD_SECONDS = 1.0


def _agent_status_patch(method: str, path: str, body: Any) -> Mapping[str, Any] | None:
    if method == "PATCH" and path.endswith(f"/namespaces/{NS}/agents/support-triage/status"):
        status = (body or {}).get("status")
        return status if isinstance(status, Mapping) else None
    return None


def _resolved_message(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or ():
        if condition.get("type") == "ResolvedRefs":
            return str(condition.get("message"))
    return ""


def test_a_late_report_never_overwrites_a_newer_compile() -> None:
    async def scenario() -> None:
        kube = example_world()
        search = kube.objects.pop((*TOOLS, NS, "zendesk.search"))
        slack = kube.objects.pop((*TOOLS, NS, "slack.send"))
        controller = await started(kube)
        triage = obj(kube, "agents", "support-triage")
        assert triage["status"]["phase"] == "Pending"
        assert "zendesk.search" in _resolved_message(triage["status"])

        report_held = asyncio.Event()
        ready_landed = asyncio.Event()
        send = kube.request

        async def request(method: str, path: str, **kwargs: Any) -> Any:
            status = _agent_status_patch(method, path, kwargs.get("body"))
            message = _resolved_message(status or {})
            if status is not None and "slack.send" in message and "zendesk.search" not in message:
                # The deferred report (only slack.send missing): hold it until the next compile has
                # written its Ready status, as a slow connection would.
                report_held.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready_landed.wait(), HOLD_SECONDS)
            answer = await send(method, path, **kwargs)
            if status is not None and status.get("phase") == "Ready":
                ready_landed.set()
            return answer

        kube.request = request  # type: ignore[method-assign]

        restored = kube.put(*TOOLS, search)
        controller.observe("Tool", "ADDED", copy.deepcopy(restored))
        await asyncio.wait_for(report_held.wait(), 10)
        restored = kube.put(*TOOLS, slack)
        controller.observe("Tool", "ADDED", copy.deepcopy(restored))
        await asyncio.sleep(HOLD_SECONDS + 0.2)
        await settle(controller)

        triage = obj(kube, "agents", "support-triage")
        found = conditions(triage)
        summary = {kind: (c["status"], c["reason"]) for kind, c in found.items()}
        assert triage["status"]["phase"] == "Ready", summary
        assert found["ResolvedRefs"]["status"] == "True", summary
        assert found["Ready"]["status"] == "True", summary
        assert found["Compiled"]["status"] == "True", summary
        assert found["Reconciling"]["status"] == "False", summary
        await controller.stop()

    run(scenario)


def test_a_status_write_on_a_stale_cache_is_refused_and_recomputed() -> None:
    """Someone else changed the Agent's status and the watch has not told the controller yet: its
    patch, computed against the stale cache, carries the cached resourceVersion, gets 409, and the
    controller reads the object again and writes a status consistent with its compile."""

    async def scenario() -> None:
        kube = example_world()
        slack = kube.objects.pop((*TOOLS, NS, "slack.send"))
        controller = await started(kube)
        assert obj(kube, "agents", "support-triage")["status"]["phase"] == "Pending"

        # An unseen writer: the stored status now claims Ready with the conditions still False.
        stored = obj(kube, "agents", "support-triage")
        stored["status"]["phase"] = "Ready"
        stored["metadata"]["resourceVersion"] = kube._next()
        kube.requests.clear()

        restored = kube.put(*TOOLS, slack)
        controller.observe("Tool", "ADDED", copy.deepcopy(restored))
        await settle(controller)

        agent_path = f"/apis/joch.dev/v1alpha1/namespaces/{NS}/agents/support-triage"
        assert ("GET", agent_path) in kube.requests, "the 409 made the controller read the Agent again"
        triage = obj(kube, "agents", "support-triage")
        found = conditions(triage)
        assert triage["status"]["phase"] == "Ready"
        assert {kind: c["status"] for kind, c in found.items()} == {
            "Ready": "True",
            "Reconciling": "False",
            "Stalled": "False",
            "ResolvedRefs": "True",
            "Compiled": "True",
            "PolicyCompliant": "True",
        }
        await controller.stop()

    run(scenario)
