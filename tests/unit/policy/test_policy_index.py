"""Selecting the policies that govern an agent through the PolicySet index.

Case matrix:
- hand-written cases: selector labels, matchExpressions, namespaces, environments, shared namespaces,
  a policy with no appliesTo, a non-shared policy listing another namespace
- property: for generated policy sets and agents, the indexed ``select`` equals the brute-force
  ``scan`` (the reference definition ``applies``), cached or not
- explicit bindings come first and are not duplicated; decide() reads the agent from the context
- updates return new sets; duplicate keys are refused; the set is sorted by (namespace, name)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joch.domain import policy

Make = Callable[..., policy.CompiledPolicy]


def _policy(make: Make, name: str, namespace: str = "team-a", **applies_to: Any) -> policy.CompiledPolicy:
    spec: dict[str, Any] = {"rules": [{"action": {"deny": True, "reason": name}}]}
    if applies_to:
        spec["appliesTo"] = applies_to
    return make(spec, name=name, namespace=namespace)


@pytest.fixture
def catalog(make: Make) -> policy.PolicySet:
    selector = {"selector": {"matchLabels": {"team": "support"}}}
    return policy.PolicySet(
        [
            _policy(make, "everyone"),
            _policy(make, "support", agents=selector),
            _policy(make, "support-prod", agents=selector, environments=["prod"]),
            _policy(
                make,
                "not-beta",
                agents={
                    "selector": {
                        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["beta"]}]
                    }
                },
            ),
            _policy(
                make,
                "has-owner",
                agents={"selector": {"matchExpressions": [{"key": "owner", "operator": "Exists"}]}},
            ),
            _policy(make, "global", namespace="joch-system"),
            _policy(make, "global-team-b", namespace="joch-system", namespaces=["team-b"]),
            _policy(make, "elsewhere", namespace="team-b"),
            _policy(make, "cannot-reach-out", namespaces=["team-b"]),
            _policy(make, "support-in-b", namespace="team-b", agents=selector),
        ],
        shared_namespaces=["joch-system"],
    )


@pytest.mark.parametrize(
    ("namespace", "labels", "environment", "expected"),
    [
        pytest.param(
            "team-a",
            {"team": "support", "tier": "beta"},
            "dev",
            ["everyone", "support", "global"],
            id="support agent in dev, beta tier",
        ),
        pytest.param(
            "team-a",
            {"team": "support", "owner": "kim"},
            "prod",
            ["everyone", "has-owner", "not-beta", "support", "support-prod", "global"],
            id="support agent in prod with an owner",
        ),
        pytest.param("team-a", {}, None, ["everyone", "not-beta", "global"], id="no labels, no environment"),
        pytest.param(
            "team-b",
            {"team": "support"},
            "prod",
            ["global", "global-team-b", "elsewhere", "support-in-b"],
            id="the other namespace",
        ),
        pytest.param("team-c", {"team": "support"}, "prod", ["global"], id="a namespace with no policies"),
        pytest.param(None, {"team": "support"}, "prod", ["global"], id="no namespace: shared policies only"),
    ],
)
def test_selection(
    catalog: policy.PolicySet,
    namespace: str | None,
    labels: dict[str, str],
    environment: str | None,
    expected: list[str],
) -> None:
    selected = catalog.select(namespace=namespace, labels=labels, environment=environment)
    assert sorted(p.name for p in selected) == sorted(expected)
    assert selected == catalog.scan(namespace=namespace, labels=labels, environment=environment)
    assert catalog.select(namespace=namespace, labels=labels, environment=environment) == selected  # cached


def test_selection_is_in_namespace_name_order(catalog: policy.PolicySet) -> None:
    keys = [p.key for p in catalog.select(namespace="team-a", labels={"team": "support"}, environment="prod")]
    assert keys == sorted(keys)
    assert [p.key for p in catalog] == sorted(p.key for p in catalog)


def test_unhashable_label_values_are_not_cached_but_still_selected(catalog: policy.PolicySet) -> None:
    labels: dict[str, Any] = {"team": "support", "odd": ["x"]}
    selected = catalog.select(namespace="team-a", labels=labels, environment="dev")
    assert selected == catalog.scan(namespace="team-a", labels=labels, environment="dev")


def test_effective_puts_explicit_bindings_first_without_duplicates(catalog: policy.PolicySet) -> None:
    effective = catalog.effective(
        namespace="team-a",
        labels={"team": "support"},
        environment="dev",
        explicit=[("team-b", "elsewhere"), ("team-a", "support"), ("team-a", "missing")],
    )
    assert [p.name for p in effective] == ["elsewhere", "support", "global", "everyone", "not-beta"]


def test_decide_reads_the_agent_from_the_context(catalog: policy.PolicySet) -> None:
    context = {
        "agent": {"name": "triage", "namespace": "team-b", "labels": {"team": "support"}},
        "environment": {"name": "prod"},
    }
    assert catalog.decide(context).reason == "global"  # joch-system/global sorts first
    assert catalog.decide(context, explicit=[("team-a", "support")]).reason == "support"
    assert catalog.decide({"agent": "weird", "environment": 3}).reason == "global"
    assert catalog.decide([]).decision == "deny"  # type: ignore[arg-type]


def test_updates_return_new_sets(make: Make, catalog: policy.PolicySet) -> None:
    replaced = _policy(make, "everyone", agents={"selector": {"matchLabels": {"team": "x"}}})
    updated = catalog.with_policy(replaced)
    assert len(updated) == len(catalog)
    assert updated.get("team-a", "everyone") is replaced
    assert catalog.get("team-a", "everyone") is not replaced
    assert "everyone" not in [p.name for p in updated.select(namespace="team-a", labels={}, environment=None)]
    removed = catalog.without("team-a", "everyone")
    assert len(removed) == len(catalog) - 1
    assert removed.get("team-a", "everyone") is None
    added = catalog.with_policy(_policy(make, "new"))
    assert added.get("team-a", "new") is not None


def test_duplicate_keys_are_refused(make: Make) -> None:
    with pytest.raises(ValueError, match="team-a/twice is given twice"):
        policy.PolicySet([_policy(make, "twice"), _policy(make, "twice")])


def test_custom_shared_namespaces(make: Make) -> None:
    policies = policy.PolicySet([_policy(make, "org", namespace="platform")], shared_namespaces=["platform"])
    assert [p.name for p in policies.select(namespace="any", labels={}, environment=None)] == ["org"]


# --- property: index == scan ---------------------------------------------------------------------------

NAMESPACES = ["a", "b", "joch-system"]
KEYS = ["team", "env", "tier"]
VALUES = ["x", "y", "z"]

label_maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
expressions = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(KEYS),
                "operator": st.sampled_from(["In", "NotIn"]),
                "values": st.lists(st.sampled_from(VALUES), min_size=1, max_size=2),
            }
        ),
        st.fixed_dictionaries(
            {"key": st.sampled_from(KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}
        ),
    ),
    max_size=2,
)
applies_to = st.fixed_dictionaries(
    {},
    optional={
        "agents": st.fixed_dictionaries(
            {
                "selector": st.fixed_dictionaries(
                    {}, optional={"matchLabels": label_maps, "matchExpressions": expressions}
                )
            }
        ),
        "namespaces": st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=2),
        "environments": st.lists(st.sampled_from(["dev", "prod"]), min_size=1, max_size=2),
    },
)
policy_sets = st.lists(st.tuples(st.sampled_from(NAMESPACES), applies_to), max_size=25)
agents = st.tuples(
    st.sampled_from([*NAMESPACES, "c", None]), label_maps, st.sampled_from(["dev", "prod", "stage", None])
)


@settings(max_examples=150, deadline=None)
@given(policy_sets, st.lists(agents, min_size=1, max_size=5))
def test_index_selects_exactly_what_a_scan_selects(
    generated: list[tuple[str, dict[str, Any]]],
    agent_list: list[tuple[str | None, dict[str, str], str | None]],
) -> None:
    compiled = [
        policy.compile_policy(
            name=f"p{index}",
            namespace=namespace,
            generation=1,
            spec={"appliesTo": target, "rules": [{"action": "deny"}]},
        )
        for index, (namespace, target) in enumerate(generated)
    ]
    policies = policy.PolicySet(compiled)
    for namespace, labels, environment in agent_list:
        expected = tuple(
            p
            for p in sorted(compiled, key=lambda p: p.key)
            if policy.applies(p, namespace=namespace, labels=labels, environment=environment)
        )
        assert policies.scan(namespace=namespace, labels=labels, environment=environment) == expected
        assert policies.select(namespace=namespace, labels=labels, environment=environment) == expected
        assert policies.select(namespace=namespace, labels=labels, environment=environment) == expected
        assert (
            policies.select(namespace=namespace, labels=labels, environment=environment, use_cache=False)
            == expected
        )
