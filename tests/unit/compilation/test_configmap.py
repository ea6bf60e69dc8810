"""The CAM ConfigMap (decision D7) and retention of the newest generations.

Cases: the desired ConfigMap (name, namespace, labels, annotations, ownerReference, data byte-identical
to manifest_yaml); long agent names give a valid, stable label value; the manifest selector;
generation_from_labels; stale_manifests keeps the newest 3 (or keep) generations, deletes the rest
oldest first, copes with gaps, duplicates and fewer than keep.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import re

import pytest

from joch.domain import compilation
from tests.unit.compilation import factories as f


def test_desired_configmap() -> None:
    compiled = f.compile_one(f.replace(f.world(), f.agent(generation=7)))
    body = compilation.desired_configmap(compiled, "agent-uid-1")
    assert body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "triage-g7",
            "namespace": f.NS,
            "labels": {
                "app.kubernetes.io/managed-by": "joch",
                "app.kubernetes.io/component": "compiled-agent-manifest",
                "joch.dev/agent": "triage",
                "joch.dev/generation": "7",
            },
            "annotations": {
                "joch.dev/manifest-sha256": compiled.sha256,
                "joch.dev/source-hash": compiled.source_hash,
            },
            "ownerReferences": [
                {
                    "apiVersion": "joch.dev/v1alpha1",
                    "kind": "Agent",
                    "name": "triage",
                    "uid": "agent-uid-1",
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {"manifest.yaml": compiled.manifest_yaml},
    }
    assert body["data"]["manifest.yaml"] is compiled.manifest_yaml


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("triage", id="short"),
        pytest.param("a" * 63, id="63 characters"),
        pytest.param("a" * 64, id="64 characters"),
        pytest.param(".".join(["b" * 50] * 5), id="long with dots"),
        pytest.param("x" * 51 + "-" + "y" * 40, id="cut at a dash"),
    ],
)
def test_agent_label_value_is_a_valid_stable_label(name: str) -> None:
    value = compilation.agent_label_value(name)
    assert len(value) <= 63
    assert LABEL_VALUE.match(value)
    assert value == compilation.agent_label_value(name)
    assert (value == name) is (len(name) <= 63)


def test_long_names_that_share_a_prefix_get_different_labels() -> None:
    assert compilation.agent_label_value("a" * 70 + "x") != compilation.agent_label_value("a" * 70 + "y")


def test_manifest_selector() -> None:
    assert compilation.manifest_selector("triage") == (
        "app.kubernetes.io/component=compiled-agent-manifest,joch.dev/agent=triage"
    )


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({"joch.dev/generation": "12"}, 12, id="present"),
        pytest.param({"joch.dev/generation": "x1"}, None, id="malformed"),
        pytest.param({}, None, id="absent"),
        pytest.param(None, None, id="no labels"),
    ],
)
def test_generation_from_labels(labels: dict[str, str] | None, expected: int | None) -> None:
    assert compilation.generation_from_labels(labels) == expected


@pytest.mark.parametrize(
    ("existing", "keep", "expected"),
    [
        pytest.param([], 3, [], id="nothing"),
        pytest.param([("a-g1", 1), ("a-g2", 2)], 3, [], id="fewer than keep"),
        pytest.param([("a-g1", 1), ("a-g2", 2), ("a-g3", 3)], 3, [], id="exactly keep"),
        pytest.param(
            [("a-g5", 5), ("a-g1", 1), ("a-g4", 4), ("a-g2", 2), ("a-g3", 3)],
            3,
            ["a-g1", "a-g2"],
            id="newest 3 kept, oldest first",
        ),
        pytest.param([("a-g2", 2), ("a-g9", 9), ("a-g30", 30), ("a-g31", 31)], 3, ["a-g2"], id="gaps"),
        pytest.param([("a-g1", 1), ("a-g2", 2), ("a-g3", 3)], 1, ["a-g1", "a-g2"], id="keep 1"),
        pytest.param(
            [("x", 1), ("y", 1), ("z", 2), ("w", 3), ("v", 4)],
            3,
            ["x", "y"],
            id="same generation deleted together",
        ),
    ],
)
def test_stale_manifests(existing: list[tuple[str, int]], keep: int, expected: list[str]) -> None:
    assert compilation.stale_manifests(existing, keep=keep) == expected


def test_stale_manifests_default_keeps_three_and_rejects_keep_zero() -> None:
    assert compilation.stale_manifests([(f"a-g{i}", i) for i in range(1, 6)]) == ["a-g1", "a-g2"]
    with pytest.raises(ValueError, match="keep must be at least 1"):
        compilation.stale_manifests([], keep=0)
