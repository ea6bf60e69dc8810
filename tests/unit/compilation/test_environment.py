"""Decision D5: an Agent's environment, and what the Environment object contributes.

Cases: the env label wins; else the Namespace label joch.dev/environment; else the operator default
(settable); the Environment object of that name supplies policies; an absent Environment is not a
problem but a dependency; the manifest records the environment.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import pytest

from joch.domain import compilation
from joch.domain.compilation import ObjectKey
from tests.unit.compilation import factories as f


@pytest.mark.parametrize(
    ("agent_labels", "namespace_labels", "default", "expected"),
    [
        pytest.param(
            {"env": "prod"}, {"joch.dev/environment": "staging"}, "dev", "prod", id="agent label wins"
        ),
        pytest.param({}, {"joch.dev/environment": "staging"}, "dev", "staging", id="namespace label"),
        pytest.param({}, {}, "dev", "dev", id="operator default"),
        pytest.param({}, {"other": "x"}, "sandbox", "sandbox", id="configured default"),
        pytest.param(
            {"env": ""}, {"joch.dev/environment": "staging"}, "dev", "staging", id="empty label ignored"
        ),
    ],
)
def test_environment_of(
    agent_labels: dict[str, str], namespace_labels: dict[str, str], default: str, expected: str
) -> None:
    settings = f.with_settings(default_environment=default)
    agent = f.agent(labels=agent_labels)
    assert compilation.environment_of(agent, namespace_labels, settings) == expected
    compiled = f.compile_one(
        f.replace(f.world(), agent), namespace_labels={f.NS: namespace_labels}, settings=settings
    )
    assert compiled.environment == expected
    assert compiled.manifest["spec"]["environment"] == expected
    assert ObjectKey("Environment", None, expected) in compiled.dependencies


def test_environment_object_supplies_policies() -> None:
    objects = [*f.world(), f.policy("prod-only"), f.environment("prod", policies=[{"name": "prod-only"}])]
    in_prod = f.compile_one(objects, namespace_labels={f.NS: {"joch.dev/environment": "prod"}})
    in_dev = f.compile_one(objects)
    assert in_prod.manifest["spec"]["policies"]["resolved"] == ["explicit@v1", "prod-only@v1"]
    assert in_dev.manifest["spec"]["policies"]["resolved"] == ["explicit@v1"]
    assert in_dev.ok
    assert in_prod.ok
