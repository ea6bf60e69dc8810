"""The decision service fed by the operator's controller: one LIST and one watch per kind in the process.

Cases:
- the controller's start-up LIST primes the service (ready, every listed Policy and Environment) and
  sends no LIST of its own for it; the service compiles through the controller's policy compiler;
- watch events the controller gets reach the service (a Policy deleted is forgotten, one re-added is
  back); an Environment event replaces its facts;
- a controller started after priming (leader election) does not LIST again.
"""

from __future__ import annotations

import copy
from typing import Any

from joch.api.v1alpha1.policy import Policy
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.decision_service import DecisionService
from tests.unit.controllers.support import NOW, example_world, obj, run, settle, started


def _lists(kube: Any, plural: str) -> list[tuple[str, str]]:
    return [r for r in kube.requests if r[0] == "GET" and r[1].endswith(f"/{plural}")]


def test_the_controller_primes_and_feeds_the_decision_service() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = Controller(kube, ControllerConfig(status_delay=0), clock=lambda: NOW)  # type: ignore[arg-type]
        service = DecisionService(settings=controller.settings, compiler=controller.programs)
        controller.feeds.append(service)
        assert service.ready is False
        await controller.start()
        await settle(controller)

        assert service.ready is True
        assert service.compiler is controller.programs
        listed = {(p.metadata.namespace, p.metadata.name) for p in _example_policies(kube)}
        assert {(d["namespace"], d["name"]) for d in service.describe()} == listed
        assert len(_lists(kube, "policies")) == 1, "one LIST of Policies in the whole process"
        environment = obj(kube, "environments", next(iter(_names(kube, "environments"))), None)
        assert service.environment(environment["metadata"]["name"]) is not None

        name = next(iter(sorted(listed)))[1]
        body = copy.deepcopy(obj(kube, "policies", name))
        controller.observe("Policy", "DELETED", body)
        assert name not in {d["name"] for d in service.describe()}
        controller.observe("Policy", "ADDED", body)
        assert name in {d["name"] for d in service.describe()}

        changed = copy.deepcopy(environment)
        changed["spec"]["allowedProviders"] = ["nobody"]
        controller.observe("Environment", "MODIFIED", changed)
        facts = service.environment(environment["metadata"]["name"])
        assert facts is not None
        assert facts.allowed_providers == ("nobody",)
        await controller.stop()

    run(scenario)


def test_a_controller_started_after_priming_lists_nothing_again() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        lists = [r for r in kube.requests if r[0] == "GET"]
        await controller.stop()
        assert controller.primed
        await controller.start()
        await settle(controller)
        assert [r for r in kube.requests if r[0] == "GET"] == lists
        await controller.stop()

    run(scenario)


def _names(kube: Any, plural: str) -> list[str]:
    return [b["metadata"]["name"] for b in kube.of(plural)]


def _example_policies(kube: Any) -> list[Policy]:
    return [Policy.model_validate(b) for b in kube.of("policies")]
