"""The reconciler framework (joch.controllers.service): a service is one class plus one registration.

Cases, with a third service registered beside the two built-in ones over the in-memory API server:
- it hears every change of the kinds it watches (and only those), with old/new entries, and the keys
  it queues are dispatched to it (not to the compile or status service), once per key however often
  queued before a worker takes it;
- the built-in services still do their work next to it (the Agent compiles, the Tool reports Ready);
- a key no service owns fails loudly; ``touch`` reaches the owner only;
- the safety resync asks every service about its ``resync_kinds`` and queues what it says drifted;
- its start keys are queued at start, its synced keys after the first pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterable
from typing import Any, ClassVar

import pytest

from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.service import Change, Host, Service
from joch.controllers.services import SERVICES
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile.cache import Entry
from tests.unit.controllers.support import NS, bump, conditions, example_world, obj, run, settle, started


@dataclasses.dataclass(frozen=True, slots=True)
class ToolAudit:
    """The third service's own key type."""

    tool: str
    kind: ClassVar[str] = "ToolAudit"
    namespace: ClassVar[str | None] = NS


class AuditService(Service):
    name = "audit"
    watches = frozenset({"Tool"})
    resync_kinds = ("Tool",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.changes: list[Change] = []
        self.reconciled: list[ToolAudit] = []
        self.touches: list[Hashable] = []
        self.drift: set[str] = set()

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ToolAudit)

    def observe(self, change: Change) -> None:
        self.changes.append(change)
        self.host.queue.add(ToolAudit(change.name))

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ToolAudit)
        self.reconciled.append(key)

    def start_keys(self) -> Iterable[Hashable]:
        return [ToolAudit("at-start")]

    def synced_keys(self) -> Iterable[Hashable]:
        return [ToolAudit("after-sync")]

    def touched(self, key: Hashable) -> None:
        self.touches.append(key)

    def drifted(self, entry: Entry) -> Hashable | None:
        return ToolAudit(entry.name) if entry.name in self.drift else None


async def _started(kube: Any) -> tuple[Controller, AuditService]:
    controller = await started(kube, services=(*SERVICES, AuditService))
    (audit,) = [s for s in controller.services if isinstance(s, AuditService)]
    return controller, audit


def _tool(kube: Any) -> dict[str, Any]:
    return obj(kube, "tools", "zendesk.search", NS)


def test_a_registered_service_hears_its_kinds_and_gets_its_keys() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller, audit = await _started(kube)
        try:
            # Start and synced keys went to it; the built-in services did their work beside it.
            assert [k.tool for k in audit.reconciled] == ["at-start", "after-sync"]
            agent = obj(kube, "agents", "support-triage", NS)
            assert conditions(agent)["Ready"]["status"] == "True"
            tool = _tool(kube)
            assert conditions(tool)["Ready"]["status"] == "True"
            name = tool["metadata"]["name"]
            assert audit.changes == []  # the start-up LIST is no change

            # A Tool change reaches it (old and new entries), a Model change does not.
            controller.observe("Tool", "MODIFIED", bump(kube, "tools", name, description="changed"))
            model = next(n for (_, plural, ns, n) in kube.objects if plural == "models")
            pricing = {"currency": "USD", "inputPerMillionTokens": 3.0}
            controller.observe("Model", "MODIFIED", bump(kube, "models", model, pricing=pricing))
            await settle(controller)
            assert [(c.kind, c.name) for c in audit.changes] == [("Tool", name)]
            (change,) = audit.changes
            assert change.old is not None
            assert change.new is not None
            assert change.changed
            assert [k.tool for k in audit.reconciled] == ["at-start", "after-sync", name]
        finally:
            await controller.stop()

    run(scenario)


def test_keys_are_deduplicated_and_dispatched_by_owner() -> None:
    async def scenario() -> None:
        controller = Controller(
            example_world(),  # type: ignore[arg-type]
            ControllerConfig(status_delay=0),
            services=(*SERVICES, AuditService),
        )  # not started: no workers take keys
        (audit,) = [s for s in controller.services if isinstance(s, AuditService)]
        for _ in range(3):
            controller.queue.add(ToolAudit("same"))
        assert [k for k in controller.queue.queued() if isinstance(k, ToolAudit)] == [ToolAudit("same")]
        assert isinstance(controller.service_for(ToolAudit("x")), AuditService)
        assert controller.service_for(ObjectKey("Agent", NS, "a")).name == "compile"
        assert controller.service_for(ObjectKey("Tool", NS, "t")).name == "status"
        with pytest.raises(LookupError, match="no service owns"):
            controller.service_for(ObjectKey("Namespace", None, "x"))
        await controller.reconcile(ToolAudit("direct"))
        assert audit.reconciled == [ToolAudit("direct")]

        controller.touch(ToolAudit("touched"))
        controller.touch(ObjectKey("Agent", NS, "support-triage"))  # the compile service's
        assert audit.touches == [ToolAudit("touched")]

    run(scenario)


def test_the_resync_asks_every_service() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller, audit = await _started(kube)
        try:
            assert await controller.resync() == []  # a converged fleet: nothing differs anywhere
            name = _tool(kube)["metadata"]["name"]
            audit.drift = {name}
            queued = await controller.resync()
            assert queued == [ToolAudit(name)]
            await settle(controller)
            assert audit.reconciled[-1] == ToolAudit(name)
        finally:
            await controller.stop()

    run(scenario)
