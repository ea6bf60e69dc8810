"""What a restricted operator watches: access.probe against a FakeKube that forbids some paths.

Cases: everything allowed; Roles only (cluster-scoped kinds, Namespaces and CRDs forbidden): those are
not watched, kopf scanning is off, and the controller still compiles (the Agent waits for the adapter);
an unreadable shared namespace is dropped; no readable namespace at all is an error.
"""

from __future__ import annotations

import pytest

from joch.controllers import access, registry
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.kube import errors
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NS, conditions, example_world, obj, run, settle

CLUSTER_KINDS = {"FrameworkAdapter", "Environment", "Team"}


def test_everything_allowed() -> None:
    granted = access.probe(FakeKube(), namespaces=(NS,))  # type: ignore[arg-type]
    assert granted == access.Access.everything((NS,))
    assert registry.kopf_settings(granted).scanning.disabled is False


ROLES_ONLY = {
    r"/apis/joch\.dev/v1alpha1/frameworkadapters(/.*)?",
    r"/apis/ops\.joch\.dev/v1alpha1/(environments|teams)(/.*)?",
    r"/api/v1/namespaces",
    r"/apis/[^/]+/v1alpha1/namespaces/joch-system/.*",
    r"/apis/apiextensions\.k8s\.io/.*",
}


def test_roles_only() -> None:
    kube = example_world()
    kube.forbidden |= ROLES_ONLY
    granted = access.probe(kube, namespaces=(NS, "joch-system"))  # type: ignore[arg-type]
    assert granted.namespaces == (NS,), "the unreadable shared namespace is dropped"
    assert granted.kinds.isdisjoint(CLUSTER_KINDS)
    assert "Agent" in granted.kinds
    assert granted.crds is False
    assert registry.kopf_settings(granted).scanning.disabled is True

    async def scenario() -> None:
        controller = Controller(kube, ControllerConfig(namespaces=(NS,), status_delay=0), access=granted)  # type: ignore[arg-type]
        reg = registry.build_registry(controller)
        ids = {h.id for h in reg._watching.get_all_handlers()}
        assert "joch-frameworkadapters" not in ids
        assert "joch-models" in ids
        await controller.start()
        await settle(controller)
        triage = obj(kube, "agents", "support-triage")
        assert conditions(triage)["ResolvedRefs"]["reason"] == "MissingReference"
        assert "FrameworkAdapter openai-agents-sdk not found" in conditions(triage)["ResolvedRefs"]["message"]
        assert obj(kube, "models", "gpt-5-thinking")["status"]["phase"] == "Ready"
        assert "status" not in obj(kube, "frameworkadapters", "openai-agents-sdk", None)
        await controller.stop()

    run(scenario)


def test_no_readable_namespace_is_an_error() -> None:
    kube = FakeKube()
    kube.forbidden.add(r"/apis/joch\.dev/v1alpha1/namespaces/.*")
    with pytest.raises(errors.Forbidden, match="any of the namespaces"):
        access.probe(kube, namespaces=(NS,))  # type: ignore[arg-type]
