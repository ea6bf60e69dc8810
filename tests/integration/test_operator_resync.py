"""Status consistency against the real API server: the report race forced, and the safety resync.

Cases:
- the GitOps-burst race (an Agent's deferred status report of an older compile landing after its newest
  compile's status): a Controller in this process over the real API server, its client holding the
  report's PATCH back until the newer compile has written (or waits for the report); the Agent ends
  Ready with every condition True, as stored by the API server;
- ``joch operator --resync-period=2``: resyncs of a converged fleet change nothing; an Agent's
  conditions patched by hand through the status subresource (an event that queues nothing: the spec
  did not change) are repaired by the next resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from joch.controllers.reconciler import Controller, ControllerConfig
from joch.kube import client
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    Example,
    StartOperator,
    apply,
    cluster_fixture,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
TOOL_PATH = "/apis/tools.joch.dev/v1alpha1/namespaces/{ns}/tools/{name}"


class HoldingKube:
    """The real client, except that the first request ``hold`` accepts waits until ``release``."""

    def __init__(self, inner: client.Kube) -> None:
        self.inner = inner
        self.hold: Callable[[str, str], bool] | None = None
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()
        self.landed: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def request(self, method: str, path: str, **options: Any) -> Any:
        if self.hold is not None and self.hold(method, path):
            self.hold = None
            self.reached.set()
            await self.opened.wait()
        answer = await self.inner.request(method, path, **options)
        self.landed.append((method, path))
        return answer


def _states(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions") or ()}


async def _settle(controller: Controller) -> None:
    for _ in range(500):
        await controller.queue.wait_idle()
        await asyncio.sleep(0.02)
        if controller.synced and controller.queue.is_idle():
            return
    raise AssertionError("the controller did not settle")


def test_a_report_held_behind_a_newer_compile_leaves_consistent_conditions(
    namespace: str, kubeconfig: str, kubectl: Kubectl, crds_installed: list[str], cluster: Cluster
) -> None:
    example = support_triage(namespace)
    tools = {name: example.find("Tool", name) for name in ("zendesk.search", "slack.send")}
    apply(kubectl, [d for d in example.docs if d not in tools.values()])
    agent_status = f"/apis/joch.dev/v1alpha1/namespaces/{namespace}/agents/support-triage/status"

    async def scenario() -> None:
        real = client.Kube(client.new_api_client(client.load_configuration(kubeconfig)))
        kube = HoldingKube(real)
        controller = Controller(
            kube,  # type: ignore[arg-type]
            ControllerConfig(namespaces=(namespace,), status_delay=0, resync_period=0),
        )
        try:
            await controller.start()
            await _settle(controller)
            assert cluster.status("Agent", namespace, "support-triage")["phase"] == "Pending"

            async def arrive(name: str) -> None:
                apply(kubectl, [tools[name]])
                body = await real.request("GET", TOOL_PATH.format(ns=namespace, name=name))
                controller.observe("Tool", "ADDED", body)

            kube.hold = lambda method, path: method == "PATCH" and path == agent_status
            await arrive("zendesk.search")  # still missing slack.send: only the message moves (report)
            await asyncio.wait_for(kube.reached.wait(), 30)
            compiles, landed = controller.counts["compiles"], len(kube.landed)
            await arrive("slack.send")  # the newest compile: Ready
            for _ in range(500):
                await asyncio.sleep(0.01)
                if controller.counts["compiles"] > compiles:
                    break
            assert controller.counts["compiles"] == compiles + 1
            with contextlib.suppress(TimeoutError):  # its status lands first, unless it must wait
                for _ in range(100):
                    if ("PATCH", agent_status) in kube.landed[landed:]:
                        break
                    await asyncio.sleep(0.01)
            kube.opened.set()
            await _settle(controller)
        finally:
            await controller.stop()
            await real.aclose()
            real.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
    status = cluster.status("Agent", namespace, "support-triage")
    assert status["phase"] == "Ready", status
    assert _states(status) == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "ResolvedRefs": "True",
        "Compiled": "True",
        "PolicyCompliant": "True",
    }, status


def test_a_resync_repairs_conditions_patched_by_hand(
    namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    example: Example = support_triage(namespace)
    operator = start_operator(namespace, args=("--resync-period=2",))
    apply(kubectl, example.docs)
    good = eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
    operator.wait_for_log("resync: 0 objects differed", timeout=30)

    tampered = copy.deepcopy(good["conditions"])
    for condition in tampered:
        if condition["type"] in ("Ready", "ResolvedRefs"):
            condition.update(status="False", reason="MissingReference", message="tampered by hand")
    done = kubectl(
        "patch",
        "agents.joch.dev",
        "support-triage",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": tampered}}),
    )
    assert done.returncode == 0, done.stderr

    def outcomes(conditions: list[dict[str, Any]]) -> list[tuple[str, ...]]:
        return [(c["type"], c["status"], c["reason"], c["message"]) for c in conditions]

    def repaired() -> dict[str, Any]:
        status = cluster.status("Agent", namespace, "support-triage")
        assert outcomes(status["conditions"]) == outcomes(good["conditions"]), status["conditions"]
        return status

    status = eventually(repaired, timeout=30)
    assert status["phase"] == "Ready"
    assert "resync: 1 objects differed" in operator.current_log()
