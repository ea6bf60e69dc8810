"""The deletion audit after a kopf listing (joch.controllers.audit), through the Controller.

Cases: every watched kind is scheduled for an audit after the start-up LIST, so an object deleted
before kopf's first listing is found even when kopf then finds its kind empty (no listing event at
all); a Tool deleted while kopf's watch was down (no DELETED event ever comes) is found missing once
kopf lists Tools again, and its Agent flips to ResolvedRefs=False exactly as for a watched deletion;
the audit waits until the listing's events stop and runs once for a burst; an object newer than the
audit's LIST, or whose version cannot be compared with it, is kept; a kind with nothing missing reports
nothing; a failed LIST is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from joch.controllers.audit import DeletionAudit
from joch.controllers.reconciler import RESOURCE_TYPES
from joch.kube import errors
from tests.unit.controllers.support import NS, conditions, example_world, obj, run, settle, started

TOOLS = ("tools.joch.dev", "tools")


def listed(kube: Any, group: str, plural: str) -> list[dict[str, Any]]:
    return [body for (g, p, _, _), body in kube.objects.items() if (g, p) == (group, plural)]


async def audited(controller: Any, runs: int) -> None:
    for _ in range(500):
        if controller.audit.runs >= runs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{runs} audit(s) expected, {controller.audit.runs} ran")


def audited_kinds(controller: Any) -> int:
    return sum(1 for kind in RESOURCE_TYPES if kind in controller.access.kinds)


def test_a_deletion_before_kopfs_first_listing_is_found_without_any_listing_event() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, audit_delay=3600)
        # Every MCP server is deleted before kopf's first listing: it finds none and sends no event.
        for key in [key for key in kube.objects if key[:2] == ("tools.joch.dev", "mcpservers")]:
            kube.objects.pop(key)
        assert controller.store.count("MCPServer") == 1
        assert await controller.audit.audit("MCPServer") == [(NS, "github")]
        assert controller.store.count("MCPServer") == 0
        timers = controller.audit._timers
        assert "MCPServer" in timers, "scheduled at start-up for every watched kind, events or not"
        assert set(timers) == {kind for kind in RESOURCE_TYPES if kind in controller.access.kinds}
        await controller.stop()

    run(scenario)


def test_a_deletion_a_listing_cannot_report_is_found_and_fans_out() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, audit_delay=0.05)
        after_start = audited_kinds(controller)
        await audited(controller, after_start)  # every kind once after the start-up LIST: nothing gone
        kube.objects.pop((*TOOLS, NS, "slack.send"))  # deleted while the watch was down
        assert controller.store.entry("Tool", NS, "slack.send") is not None

        for body in listed(kube, *TOOLS):  # kopf lists Tools again: the survivors, type None
            controller.observe("Tool", None, body)
            await asyncio.sleep(0.01)  # a burst: one audit after it, not one per event
        await audited(controller, after_start + 1)
        await settle(controller)
        assert controller.audit.runs == after_start + 1
        assert controller.store.entry("Tool", NS, "slack.send") is None
        resolved = conditions(obj(kube, "agents", "support-triage"))["ResolvedRefs"]
        assert resolved["status"] == "False"
        assert resolved["message"] == "spec.tools[2]: Tool support/slack.send not found"
        assert [(m, p) for m, p in kube.requests if "/tools" in p and m == "GET"][-1:] == [
            ("GET", "/apis/tools.joch.dev/v1alpha1/tools")
        ], "one LIST of the kind (all namespaces: the operator watches all)"
        await controller.stop()

    run(scenario)


def test_an_object_newer_than_the_audits_list_is_kept() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, audit_delay=3600)  # audits run by hand here
        entry = controller.store.entry("Tool", NS, "slack.send")
        assert entry is not None
        kube.objects.pop((*TOOLS, NS, "slack.send"))
        entry.resource_version = str(10**9)  # as if created again after the LIST was taken
        assert await controller.audit.audit("Tool") == []
        entry.resource_version = "opaque"  # cannot be ordered: not declared gone
        assert await controller.audit.audit("Tool") == []
        entry.resource_version = "1"
        assert await controller.audit.audit("Tool") == [(NS, "slack.send")]
        assert await controller.audit.audit("Model") == [], "nothing else is gone"
        await controller.stop()

    run(scenario)


def test_a_failed_list_is_retried() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        kube.objects.pop((*TOOLS, NS, "slack.send"))
        gone: list[tuple[str, Any]] = []
        audit = DeletionAudit(
            kube,  # type: ignore[arg-type]
            controller.store,
            RESOURCE_TYPES,
            lambda: (),
            lambda kind, body: gone.append((kind, body["metadata"])),
            delay=0.01,
            retry=0.01,
        )
        kube.fail = [errors.ServerError("etcd is busy", status=503)]
        audit.listed("Tool")
        for _ in range(500):
            if audit.runs:
                break
            await asyncio.sleep(0.01)
        assert audit.runs == 1, "the failure, then a successful audit"
        assert gone == [("Tool", {"name": "slack.send", "uid": gone[0][1]["uid"], "namespace": NS})]
        await audit.stop()
        await controller.stop()

    run(scenario)
