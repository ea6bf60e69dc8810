"""Identical inputs give byte-identical manifests, whatever order the inputs arrive in.

Cases: catalog built in shuffled orders (several seeds); a Lookup whose policies_in returns policies in
reverse order; compiling twice; sha256 is the digest of the canonical JSON; the YAML text parses back to
the manifest and re-serialises to the same bytes (keys sorted, no anchors).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import yaml

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.policy import Policy
from joch.domain import compilation
from tests.unit.compilation import factories as f


def rich_world() -> list[meta.Resource]:
    """The default world plus selector, environment and team policies, so every order matters."""
    return [
        *f.world(),
        f.policy("sel-b", applies_to={"agents": {"selector": {"matchLabels": {"team": "a"}}}}),
        f.policy("sel-a", applies_to={"agents": {"selector": {}}}),
        f.policy("env-p"),
        f.policy("team-p"),
        f.environment("dev", policies=[{"name": "env-p"}]),
        f.team(default_policies=["team-p"]),
    ]


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed {seed}") for seed in range(6)])
def test_shuffled_catalog_order_gives_identical_bytes(seed: int) -> None:
    reference = f.compile_one(rich_world())
    compiled = f.compile_one(f.shuffled(rich_world(), seed))
    assert compiled.manifest_yaml == reference.manifest_yaml
    assert compiled.sha256 == reference.sha256
    assert compiled.source_hash == reference.source_hash
    assert compiled.dependencies == reference.dependencies


class ReversedPolicies:
    """A Lookup that answers policies_in in reverse order (the protocol allows any order)."""

    def __init__(self, inner: compilation.Catalog) -> None:
        self.inner = inner
        self.get = inner.get
        self.team_for_namespace = inner.team_for_namespace
        self.namespace_labels = inner.namespace_labels

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        return list(reversed(self.inner.policies_in(namespace)))


def test_policy_listing_order_of_the_lookup_does_not_matter() -> None:
    cat = f.catalog(rich_world())
    agent = cat.agents()[0]
    plain = compilation.compile_agent(compilation.gather(agent, cat, f.SETTINGS), f.SETTINGS)
    lookup = ReversedPolicies(cat)
    other = compilation.compile_agent(compilation.gather(agent, lookup, f.SETTINGS), f.SETTINGS)
    assert other.manifest_yaml == plain.manifest_yaml
    assert plain.manifest["spec"]["policies"]["resolved"][1:3] == ["sel-a@v1", "sel-b@v1"]


def test_compiling_twice_gives_identical_results() -> None:
    first, second = f.compile_one(rich_world()), f.compile_one(rich_world())
    assert first == second


def test_sha256_is_the_digest_of_the_canonical_json() -> None:
    compiled = f.compile_one(rich_world())
    assert compiled.sha256 == compilation.sha256_hex(compilation.canonical_json(compiled.manifest))
    assert len(compiled.sha256) == 64


def test_yaml_round_trips_to_the_same_bytes() -> None:
    compiled = f.compile_one(rich_world())
    parsed = yaml.safe_load(compiled.manifest_yaml)
    assert parsed == compiled.manifest
    assert compilation.canonical_yaml(parsed) == compiled.manifest_yaml
    assert "&" not in compiled.manifest_yaml
    assert "*" not in compiled.manifest_yaml


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            {"b": 1, "a": [2, {"d": 3, "c": 4}]}, "a:\n- 2\n- c: 4\n  d: 3\nb: 1\n", id="sorted keys"
        ),
        pytest.param({"s": "x" * 300}, "s: " + "x" * 300 + "\n", id="no line folding"),
        pytest.param({"u": "grüße"}, "u: grüße\n", id="unicode kept"),
    ],
)
def test_canonical_yaml(value: object, expected: str) -> None:
    assert compilation.canonical_yaml(value) == expected


def test_canonical_json_is_compact_and_sorted() -> None:
    assert (
        compilation.canonical_json({"b": [1, 2], "a": {"y": 1, "x": None}})
        == '{"a":{"x":null,"y":1},"b":[1,2]}'
    )
