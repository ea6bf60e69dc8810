"""Helpers for controller unit tests: the examples loaded into a FakeKube, a running Controller."""

from __future__ import annotations

import asyncio
import copy
import datetime
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from joch.api import v1alpha1
from joch.controllers.compile import CompileService
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.referenced import ReferencedStatusService
from joch.controllers.services import ServiceFactory
from joch.domain import compilation
from joch.domain.settings import OperatorSettings
from tests import helpers
from tests.fake_kube import FakeKube

T = TypeVar("T")
NS = "support"
NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
CATALOG_SERVICES: tuple[ServiceFactory, ...] = (CompileService, ReferencedStatusService)
"""The services these tests are about unless they say otherwise (the AgBOM service has tests of its own,
which pass ``services=SERVICES``)."""


def run(scenario: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=timeout))


def where(doc: dict[str, Any]) -> tuple[str, str]:
    if doc["apiVersion"] == "v1":
        return "", doc["kind"].lower() + "s"
    kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
    assert kind is not None
    return kind.crd.group, kind.crd.plural


def example_world(*extra: dict[str, Any]) -> FakeKube:
    """A FakeKube holding examples/ (and ``extra`` documents)."""
    kube = FakeKube()
    for doc in [*helpers.example_documents(), *extra]:
        group, plural = where(doc)
        kube.put(group, plural, doc)
    return kube


def agent_copy(name: str, **spec: Any) -> dict[str, Any]:
    """The example Agent renamed, without the tool whose safety floor admits only support-triage."""
    doc = copy.deepcopy(next(d for d in helpers.example_documents() if d["kind"] == "Agent"))
    doc["metadata"]["name"] = name
    doc["spec"]["tools"] = [t for t in doc["spec"]["tools"] if t["name"] != "zendesk.create-ticket"]
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


async def started(
    kube: FakeKube, *, services: Sequence[ServiceFactory] = CATALOG_SERVICES, **config: Any
) -> Controller:
    """A Controller over ``kube`` (with ``services``), started and settled (no status delay, fixed
    clock)."""
    settings = config.pop("settings", OperatorSettings())
    controller = Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(settings=settings, status_delay=0, **config),
        clock=lambda: NOW,
        services=services,
    )
    await controller.start()
    await settle(controller)
    return controller


async def settle(controller: Controller) -> None:
    """Wait until the initial sync is done and nothing is queued or in flight."""
    for _ in range(1000):
        await controller.queue.wait_idle()
        await asyncio.sleep(0)
        if controller.synced and controller.queue.is_idle():
            await asyncio.sleep(0.01)
            if controller.queue.is_idle():
                return
    raise AssertionError("the controller did not settle")


def obj(kube: FakeKube, plural: str, name: str, namespace: str | None = NS) -> dict[str, Any]:
    for (_, p, ns, n), body in kube.objects.items():
        if p == plural and n == name and ns == (namespace if plural not in CLUSTER_PLURALS else None):
            return body
    raise KeyError(f"{plural}/{namespace}/{name}")


CLUSTER_PLURALS = frozenset({"frameworkadapters", "environments", "teams", "namespaces"})


def bump(kube: FakeKube, plural: str, name: str, namespace: str | None = NS, **spec: Any) -> dict[str, Any]:
    """Change an object's spec as a client would (generation + 1, new resourceVersion); the body."""
    body = obj(kube, plural, name, namespace)
    body["spec"].update(spec)
    body["metadata"]["generation"] += 1
    body["metadata"]["resourceVersion"] = kube._next()
    return copy.deepcopy(body)


def expected_manifest(kube: FakeKube, agent: str, namespace: str = NS) -> str:
    """What ``joch compile`` makes of the fake cluster's objects for ``agent``."""
    catalog = compilation.Catalog()
    for (group, plural, _, _), body in kube.objects.items():
        if plural == "namespaces":
            catalog.set_namespace_labels(body["metadata"]["name"], body["metadata"].get("labels") or {})
            continue
        kind = next(
            (k for k in compilation.COMPILE_KINDS if (k.crd.group, k.crd.plural) == (group, plural)), None
        )
        if kind is not None:
            catalog.add(kind.model_validate(body))
    target = catalog.get(v1alpha1.Agent, namespace, agent)
    assert target is not None
    settings = OperatorSettings()
    compiled = compilation.compile_agent(compilation.gather(target, catalog, settings), settings)
    return compiled.manifest_yaml


def conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or ()}
