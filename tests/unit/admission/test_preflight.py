"""Policy preflight at admission (D9) and the compile-time checks an Agent must pass.

| case | expected |
|---|---|
| prod allows anthropic only, Agent env=prod, primary openai (documented) | 403 naming policy, rule, model |
| same Agent with env=dev | admitted |
| environment from the Namespace label (D5) | denied like the label |
| a fallback model denied | denied at spec.modelRoute.routeRef, naming the fallback |
| a tool denied by side effect | denied at spec.tools[i] naming the tool |
| an MCP server denied by trust score | denied at spec.mcpServers[i] |
| runtime-only rules (cost.runUsd) | skipped |
| a selector policy (appliesTo) | applied only to the Agents it selects |
| Team default policies | applied |
| an effective policy that does not compile | warning, not a denial |
| capability missing on the adapter | 422 CapabilityMismatch |
| Tool safety floor excludes the Agent | 403 ToolNotAllowed |
| two Tools with the same callable toolName | Duplicate |
| Deployment environmentRef prod for a dev Agent | denied at spec.environmentRef |
| ModelRoute whose model the namespace's environment denies | denied at spec.strategy.primary |
| ModelRoute model missing a route requirement | RequirementUnmet |
| a CEL rule only cel-python fails (int vs double) | admitted with Rust, denied with cel-python (settings) |

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import pytest

from joch.domain.admission import Admission
from joch.domain.settings import OperatorSettings
from tests.unit.admission import factories as f


def test_documented_scenario_prod_is_denied_naming_policy_and_model() -> None:
    verdict = f.admit(f.agent(labels={"env": "prod"}), f.prod_scenario())
    assert not verdict.allowed
    assert verdict.code == 403
    message = verdict.message()
    assert message.startswith("Agent/support-triage: spec.modelRoute.routeRef: ")
    assert "Policy support/allowlisted-providers-only (v1) rule 0" in message
    assert "model openai:gpt-5-thinking" in message
    assert "environment prod" in message


def test_documented_scenario_dev_is_admitted() -> None:
    verdict = f.admit(f.agent(labels={"env": "dev"}), f.prod_scenario())
    assert verdict.allowed, verdict.message()
    assert verdict.warnings == ()


def test_environment_from_namespace_label() -> None:
    verdict = f.admit(
        f.agent(labels={}), f.prod_scenario(), namespace_labels={f.NS: {"joch.dev/environment": "prod"}}
    )
    assert not verdict.allowed
    assert "allowlisted-providers-only" in verdict.message()


def test_policy_version_is_the_generation() -> None:
    docs = f.prod_scenario()
    for doc in docs:
        if doc["kind"] == "Policy":
            doc["metadata"]["generation"] = 7
    assert "(v7) rule 0" in f.admit(f.agent(labels={"env": "prod"}), docs).message()


def test_a_denied_fallback_is_named() -> None:
    docs = [d for d in f.prod_scenario() if d["kind"] != "ModelRoute"]
    docs.append(f.route(primary="anthropic:claude-sonnet", fallback=["openai:gpt-5-thinking"]))
    verdict = f.admit(f.agent(labels={"env": "prod"}), docs)
    assert not verdict.allowed
    assert "spec.strategy.fallback[0]" in verdict.message()
    assert "model openai:gpt-5-thinking" in verdict.message()


def test_a_tool_denied_by_side_effect() -> None:
    rules = [{"when": {"tool.sideEffect": "external_write"}, "action": "deny"}]
    docs = [*f.fleet(), f.policy("no-writes", rules)]
    verdict = f.admit(f.agent(tools=[{"name": "zendesk.search"}, {"name": "zendesk.create-ticket"}]), docs)
    assert not verdict.allowed
    assert verdict.errors[0].path == "spec.tools[1]"
    assert "Policy support/no-writes (v1) rule 0 denies tool zendesk.create-ticket" in verdict.message()


def test_an_mcp_server_denied_by_trust_score() -> None:
    rules = [{"when": {"mcpServer.trustScore": "<0.75"}, "action": {"deny": True, "reason": "untrusted"}}]
    server = f.mcp_server()
    server["status"] = {"trustScore": 0.5}
    docs = [d for d in f.fleet() if d["kind"] != "MCPServer"] + [server, f.policy("trusted-mcp", rules)]
    verdict = f.admit(f.agent(), docs)
    assert not verdict.allowed
    assert verdict.errors[0].path == "spec.mcpServers[0]"
    assert "MCP server github: untrusted" in verdict.message()


def test_runtime_only_rules_are_skipped() -> None:
    rules = [
        {"when": {"cost.runUsd": ">0"}, "action": "deny"},
        {"when": {"data.contains": "pii"}, "action": "deny"},
    ]
    verdict = f.admit(f.agent(), [*f.fleet(), f.policy("runtime", rules)])
    assert verdict.allowed, verdict.message()


@pytest.mark.parametrize(
    ("labels", "denied"),
    [
        pytest.param({"team": "support"}, True, id="selected by matchLabels"),
        pytest.param({"team": "research"}, False, id="not selected"),
    ],
)
def test_selector_policies(labels: dict[str, str], denied: bool) -> None:
    rules = [{"when": {"model.provider": "openai"}, "action": "deny"}]
    applies = {"agents": {"selector": {"matchLabels": {"team": "support"}}}}
    verdict = f.admit(f.agent(labels=labels), [*f.fleet(), f.policy("no-openai", rules, applies_to=applies)])
    assert verdict.allowed is not denied


def test_team_default_policies_apply() -> None:
    rules = [{"when": {"model.provider": "openai"}, "action": "deny"}]
    team = f.obj("Team", "support", {"namespaces": [f.NS], "defaultPolicies": ["no-openai"]}, namespace=None)
    applies = {"agents": {"selector": {"matchLabels": {"nobody": "x"}}}}
    verdict = f.admit(f.agent(), [*f.fleet(), team, f.policy("no-openai", rules, applies_to=applies)])
    assert not verdict.allowed
    assert "Policy support/no-openai" in verdict.message()


def test_an_effective_policy_that_does_not_compile_is_a_warning() -> None:
    broken = f.policy("broken", [{"when": {"tool.nope": 1}, "action": "deny"}])
    verdict = f.admit(f.agent(policies=[{"name": "broken"}]), [*f.fleet(), broken])
    assert verdict.allowed
    assert any("Policy support/broken is invalid" in w for w in verdict.warning_messages())


def test_missing_capability_is_invalid() -> None:
    docs = [d for d in f.fleet() if d["kind"] != "FrameworkAdapter"] + [f.adapter(mcpBinding=False)]
    verdict = f.admit(f.agent(), docs)
    assert verdict.code == 422
    assert verdict.errors[0].path == "spec.mcpServers"
    assert "lacks capability mcpBinding" in verdict.message()


def test_tool_safety_floor() -> None:
    docs = [d for d in f.fleet() if d["metadata"]["name"] != "zendesk.search"]
    docs.append(f.tool(safety={"allowedAgents": ["someone-else"]}))
    verdict = f.admit(f.agent(), docs)
    assert verdict.code == 403
    assert verdict.errors[0].reason == "ToolNotAllowed"


def test_two_tools_with_the_same_callable_name() -> None:
    docs = [*f.fleet(), f.tool("zendesk.search-v2", toolName="zendesk.search")]
    verdict = f.admit(f.agent(tools=[{"name": "zendesk.search"}, {"name": "zendesk.search-v2"}]), docs)
    assert not verdict.allowed
    assert verdict.errors[0].path == "spec.tools[1]"
    assert "'zendesk.search'" in verdict.message()


def test_deployment_environment_ref_overrides_the_agents_environment() -> None:
    deployment = f.obj(
        "Deployment",
        "triage-prod",
        {"agentRef": {"name": "support-triage"}, "environmentRef": {"name": "prod"}},
    )
    docs = [*f.prod_scenario(), f.agent(labels={"env": "dev"})]
    verdict = f.admit(deployment, docs)
    assert not verdict.allowed
    assert verdict.errors[0].path == "spec.environmentRef"
    assert "Agent support/support-triage in environment prod" in verdict.message()
    assert "allowlisted-providers-only" in verdict.message()
    dev = f.obj(
        "Deployment",
        "triage-dev",
        {"agentRef": {"name": "support-triage"}, "environmentRef": {"name": "dev"}},
    )
    assert f.admit(dev, docs).allowed


def test_deployment_of_a_missing_agent_is_admitted_with_a_warning() -> None:
    deployment = f.obj("Deployment", "ghost", {"agentRef": {"name": "ghost"}})
    verdict = f.admit(deployment, f.fleet())
    assert verdict.allowed
    assert "Agent support/ghost does not exist (yet)" in verdict.warning_messages()[0]


def test_route_denied_for_the_namespace_environment() -> None:
    docs = [d for d in f.prod_scenario() if d["kind"] != "ModelRoute"]
    verdict = f.admit(f.route(), docs, namespace_labels={f.NS: {"joch.dev/environment": "prod"}})
    assert not verdict.allowed
    assert verdict.errors[0].path == "spec.strategy.primary"
    assert "allowlisted-providers-only" in verdict.message()
    assert f.admit(f.route(), docs).allowed  # namespace in dev (the default environment)


def test_route_requirements() -> None:
    docs = [d for d in f.fleet() if d["kind"] != "ModelRoute"]
    verdict = f.admit(f.route(requirements={"contextWindowMin": 500000}), docs)
    assert not verdict.allowed
    assert verdict.errors[0].reason == "RequirementUnmet"
    assert "contextWindowMin" in verdict.message()


def test_the_settings_choose_the_cel_backend() -> None:
    # size() is an int: the Rust backend compares it with 1.0 (false: no match), cel-python refuses to
    # (an evaluation error, which denies: fail closed). So the verdict shows which backend compiled it.
    docs = [d for d in f.fleet() if d["kind"] != "Environment"]
    docs.append(f.environment("dev"))
    docs.append(f.environment("prod", policies=[{"name": "named"}]))
    docs.append(f.policy("named", [{"when": {"cel": "size(agent.name) < 1.0"}, "action": "deny"}]))
    agent = f.agent(labels={"env": "prod"})
    verdicts = {
        backend: Admission(OperatorSettings(cel_backend=backend)).validate(f.request(agent), f.world(docs))
        for backend in ("common-expression-language", "cel-python")
    }
    assert verdicts["common-expression-language"].allowed
    assert not verdicts["cel-python"].allowed
    assert "Policy support/named (v1) rule 0" in verdicts["cel-python"].message()
