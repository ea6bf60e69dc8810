"""A ModelRoute is preflighted through a stand-in Agent; hostile metadata must not break that.

Regression: a review posted straight to the webhook with a ModelRoute whose namespace was not a
Kubernetes name made the stand-in Agent fail validation, and the webhook answered with an internal error.
"""

from __future__ import annotations

import pytest

from joch.api.v1alpha1 import ModelRoute
from joch.domain.admission import agents


def _route(name: str, namespace: str) -> ModelRoute:
    return ModelRoute.model_validate(
        {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "ModelRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"strategy": {"primary": "openai:gpt-5-thinking"}},
        }
    )


def test_probe_agent_uses_the_route_and_its_namespace() -> None:
    probe = agents.agent_for_route(_route("research-default", "support"))
    assert probe is not None
    assert probe.metadata.namespace == "support"
    assert probe.spec.model_route is not None
    assert probe.spec.model_route.route_ref.name == "research-default"


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        pytest.param("research-default", "model.joch.dev/v1alpha1", id="namespace with a slash"),
        pytest.param("Research_Default", "support", id="name not DNS-1123"),
        pytest.param("", "support", id="empty name"),
    ],
)
def test_no_probe_for_names_the_api_server_would_reject(name: str, namespace: str) -> None:
    assert agents.agent_for_route(_route(name, namespace)) is None
