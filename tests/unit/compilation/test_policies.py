"""The effective policy set, its order and pins, appliesTo selection, and policy preflight (D9).

Cases: order explicit -> selector (by namespace, name) -> environment -> team, de-duplicated with the
first occurrence kept; versions pinned as v<generation>; policies outside the Agent's namespace written
namespace/name@vN; missing policies reported per source; the appliesTo selection table; a require.approval
rule forcing requiresApproval (by side effect, by tool name, not by runtime-only rules); preflight denies
for a model (including not-allowlisted providers), a tool and an MCP server; an invalid policy.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain import compilation
from joch.domain import policy as policy_engine
from tests.unit.compilation import factories as f

EVERY_AGENT: dict[str, Any] = {"agents": {"selector": {}}}


def resolved(compiled: compilation.Compiled) -> list[str]:
    return list(compiled.manifest["spec"]["policies"]["resolved"])


def test_order_is_explicit_selector_environment_team_with_first_occurrence_kept() -> None:
    objects = [
        f.policy("sel-z", applies_to=EVERY_AGENT),
        f.policy("sel-a", applies_to=EVERY_AGENT),
        f.policy("env-1"),
        f.policy("env-2"),
        f.policy("team-1"),
        f.environment("dev", policies=[{"name": "env-2"}, {"name": "explicit"}, {"name": "env-1"}]),
        f.team(default_policies=["sel-a", "team-1", "env-1"]),
        f.agent(policies=[{"name": "explicit"}, {"name": "sel-z"}]),
    ]
    compiled = f.compile_one(f.replace(f.world(), *objects))
    assert compiled.ok, compiled.problems
    assert resolved(compiled) == [
        "explicit@v1",
        "sel-z@v1",  # explicit, so not repeated as a selector match
        "sel-a@v1",
        "env-2@v1",
        "env-1@v1",
        "team-1@v1",
    ]


def test_versions_are_pinned_from_metadata_generation() -> None:
    compiled = f.compile_one(f.replace(f.world(), f.policy("explicit", generation=7)))
    assert resolved(compiled) == ["explicit@v7"]


def test_policy_in_a_shared_namespace_is_written_with_its_namespace() -> None:
    objects = [
        *f.world(),
        f.policy("guard", namespace="joch-system"),
        f.environment("dev", policies=[{"name": "guard", "namespace": "joch-system"}]),
    ]
    compiled = f.compile_one(objects)
    assert compiled.ok, compiled.problems
    assert resolved(compiled) == ["explicit@v1", "joch-system/guard@v1"]
    assert compilation.ObjectKey("Policy", "joch-system", "guard") in compiled.dependencies


@pytest.mark.parametrize(
    ("environment_refs", "team_names", "expected"),
    [
        pytest.param(
            [{"name": "gone"}], [], [("MissingReference", "Environment/dev: spec.policies[0]")], id="env"
        ),
        pytest.param([], ["gone"], [("MissingReference", "Team/team-a: spec.defaultPolicies[0]")], id="team"),
        pytest.param(
            [{"name": "x", "namespace": "other"}],
            [],
            [("ForbiddenReference", "Environment/dev: spec.policies[0]")],
            id="env policy in a non-shared namespace",
        ),
    ],
)
def test_missing_policies_are_reported_where_they_are_bound(
    environment_refs: list[dict[str, str]], team_names: list[str], expected: list[tuple[str, str]]
) -> None:
    objects = [
        *f.world(),
        f.environment("dev", policies=environment_refs),
        f.team(default_policies=team_names),
    ]
    compiled = f.compile_one(objects)
    assert f.problems(compiled) == expected
    assert resolved(compiled) == ["explicit@v1"]


def test_missing_explicit_policy() -> None:
    compiled = f.compile_one(f.without(f.world(), "Policy", "explicit"))
    assert f.problems(compiled) == [("MissingReference", "spec.policies[0]")]
    assert compiled.problems[0].message == "Policy team-a/explicit not found"
    assert compilation.ObjectKey("Policy", f.NS, "explicit") in compiled.dependencies


LABELS = {"team": "a", "tier": "gold"}


@pytest.mark.parametrize(
    ("namespace", "applies_to", "selected"),
    [
        pytest.param(f.NS, None, True, id="no appliesTo: the whole namespace"),
        pytest.param("other", None, False, id="no appliesTo: not another namespace"),
        pytest.param("joch-system", None, True, id="no appliesTo in a shared namespace: the fleet"),
        pytest.param(f.NS, {"agents": {"selector": {}}}, True, id="empty selector matches every agent"),
        pytest.param(f.NS, {"agents": {"selector": {"matchLabels": {"team": "a"}}}}, True, id="matchLabels"),
        pytest.param(
            f.NS, {"agents": {"selector": {"matchLabels": {"team": "b"}}}}, False, id="matchLabels miss"
        ),
        pytest.param(
            f.NS,
            {
                "agents": {
                    "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}
                }
            },
            True,
            id="In",
        ),
        pytest.param(
            f.NS,
            {
                "agents": {
                    "selector": {
                        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]
                    }
                }
            },
            False,
            id="NotIn",
        ),
        pytest.param(
            f.NS,
            {"agents": {"selector": {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}}},
            True,
            id="DoesNotExist",
        ),
        pytest.param(
            f.NS,
            {"agents": {"selector": {"matchExpressions": [{"key": "x", "operator": "Exists"}]}}},
            False,
            id="Exists miss",
        ),
        pytest.param(f.NS, {"namespaces": [f.NS]}, True, id="namespaces lists the agent's own namespace"),
        pytest.param(f.NS, {"namespaces": ["other"]}, False, id="namespaces can only narrow"),
        pytest.param(
            "joch-system", {"namespaces": [f.NS]}, True, id="shared-namespace policy naming the namespace"
        ),
        pytest.param(
            "other", {"namespaces": [f.NS]}, False, id="non-shared policy cannot reach another namespace"
        ),
        pytest.param(
            "joch-system", {"agents": {"selector": {}}}, True, id="shared policy governs every namespace"
        ),
        pytest.param("joch-system", {"namespaces": ["other"]}, False, id="shared policy narrowed elsewhere"),
        pytest.param(f.NS, {"environments": ["dev"]}, True, id="environments match"),
        pytest.param(f.NS, {"environments": ["prod"]}, False, id="environments miss"),
        pytest.param(
            f.NS,
            {"agents": {"selector": {"matchLabels": {"team": "a"}}}, "environments": ["prod"]},
            False,
            id="all parts must hold",
        ),
    ],
)
def test_applies_to_selection(namespace: str, applies_to: dict[str, Any] | None, selected: bool) -> None:
    candidate = f.policy("candidate", namespace=namespace, applies_to=applies_to)
    compiled_policy = policy_engine.compile_policy(
        name="candidate", namespace=namespace, generation=1, spec=candidate.spec.wire()
    )
    engine = policy_engine.applies(
        compiled_policy,
        namespace=f.NS,
        labels=LABELS,
        environment="dev",
        shared_namespaces=frozenset({"joch-system"}),
    )
    assert engine is selected, "the engine's own answer (the reference definition)"
    assert (
        compilation.policy_selects(
            candidate, agent_namespace=f.NS, agent_labels=LABELS, environment="dev", settings=f.SETTINGS
        )
        is selected
    )
    compiled = f.compile_one(f.replace(f.world(), candidate, f.agent(labels=LABELS)))
    pinned = "candidate@v1" if namespace == f.NS else f"{namespace}/candidate@v1"
    assert (pinned in resolved(compiled)) is selected


def approval_policy(when: dict[str, Any]) -> Any:
    return f.policy(
        "approvals", applies_to=EVERY_AGENT, rules=[{"when": when, "require": {"approval": "human"}}]
    )


def approvals(compiled: compilation.Compiled) -> dict[str, bool]:
    return {tool["name"]: tool["requiresApproval"] for tool in compiled.manifest["spec"]["tools"]}


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param({}, {"search": False, "create-ticket": False}, id="no policy rule: tool defaults"),
        pytest.param(
            {"tool.sideEffect": ["external_write", "financial"]},
            {"search": False, "create-ticket": True},
            id="by side effect",
        ),
        pytest.param(
            {"tool.name": "search"}, {"search": True, "create-ticket": False}, id="by callable name"
        ),
        pytest.param(
            {"tool.name": "tickets.create_ticket", "agent.labels.team": "a"},
            {"search": False, "create-ticket": True},
            id="by toolName and agent label",
        ),
        pytest.param(
            {"cost.runUsd": ">1"}, {"search": False, "create-ticket": False}, id="runtime-only rule skipped"
        ),
    ],
)
def test_require_approval_forces_requires_approval(when: dict[str, Any], expected: dict[str, bool]) -> None:
    objects = f.world() if not when else [*f.world(), approval_policy(when)]
    compiled = f.compile_one(objects)
    assert compiled.ok, compiled.problems
    assert approvals(compiled) == expected


def deny(when: dict[str, Any]) -> Any:
    return f.policy(
        "deny", applies_to=EVERY_AGENT, rules=[{"when": when, "action": {"deny": True, "reason": "no"}}]
    )


@pytest.mark.parametrize(
    ("objects", "expected_path", "message_part"),
    [
        pytest.param(
            [deny({"model.provider": "anthropic"})],
            "ModelRoute/team-a/default: spec.strategy.fallback[0]",
            "denies model anthropic:backup: no",
            id="fallback model",
        ),
        pytest.param(
            [deny({"model.provider": "not-allowlisted"}), f.environment("dev", allowed=["openai"])],
            "ModelRoute/team-a/default: spec.strategy.fallback[0]",
            "denies model anthropic:backup",
            id="provider not allow-listed in the environment",
        ),
        pytest.param(
            [deny({"tool.sideEffect": "external_write"})],
            "spec.tools[1]",
            "denies tool tickets.create_ticket",
            id="tool",
        ),
        pytest.param(
            [deny({"mcpServer.trustScore": "<0.95"})],
            "spec.mcpServers[0]",
            "denies MCP server github",
            id="mcp",
        ),
    ],
)
def test_preflight_denies_are_problems(objects: list[Any], expected_path: str, message_part: str) -> None:
    compiled = f.compile_one([*f.world(), *objects])
    assert f.problems(compiled) == [("PolicyDenied", expected_path)]
    message = compiled.problems[0].message
    assert message.startswith("Policy team-a/deny (v1) rule 0 ")
    assert message_part in message


def test_not_allowlisted_passes_when_the_environment_allows_every_provider() -> None:
    compiled = f.compile_one([*f.world(), deny({"model.provider": "not-allowlisted"}), f.environment("dev")])
    assert compiled.ok, compiled.problems


def test_invalid_policy_is_reported_and_left_out_of_preflight() -> None:
    broken = f.policy("explicit", rules=[{"when": {"tool.colour": "red"}, "action": "deny"}])
    compiled = f.compile_one(f.replace(f.world(), broken))
    assert f.problems(compiled) == [("InvalidPolicy", "spec.policies[0]")]
    assert "Policy team-a/explicit is invalid" in compiled.problems[0].message
