"""Admission and compilation agree: the shortcuts admission takes never change an answer.

Properties, over generated fleets (policies with random selectors, scopes, environments and rules;
Agents with random labels, tools and environments):

- gather through ``World.selecting`` (the selector index) finds exactly the effective policies, in the
  same order, that ``compilation.gather`` finds on the plain catalog;
- admission's preflight (compiled policies cached by object) reports exactly the problems of the
  compiler's ``run_preflight`` (PolicyCompiler);
- an Agent is denied at admission if and only if ``compile_agent`` reports a PolicyDenied problem.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from joch.domain import policy as engine
from joch.domain.admission import Admission, World
from joch.domain.admission import agents as admission_agents
from joch.domain.admission.preflight import CompiledPolicies, run_preflight
from joch.domain.admission.world import SelectorIndex
from joch.domain.compilation import compile_agent, preflight, resolve
from tests.unit.admission import factories as f

RULES = [
    {"when": {"model.provider": "openai"}, "action": "deny"},
    {"when": {"model.provider": "not-allowlisted"}, "action": {"deny": True, "reason": "unlisted"}},
    {"when": {"tool.sideEffect": ["external_write", "financial"]}, "action": "deny"},
    {"when": {"tool.sideEffect": "external_write"}, "require": {"approval": "human"}},
    {"when": {"cost.runUsd": ">1"}, "action": "deny"},
    {"when": {"agent.labels.tier": "gold"}, "action": "deny"},
    {"when": {"mcpServer.name": "github"}, "action": "deny"},
    {"when": {"cel": "environment.name == 'prod' && model.provider == 'anthropic'"}, "action": "deny"},
    {"when": {"tool.name": "zendesk.search"}, "action": "allow"},
]
LABELS = st.dictionaries(
    st.sampled_from(["team", "env", "tier"]), st.sampled_from(["support", "prod", "dev", "gold"]), max_size=3
)
SELECTORS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"agents": st.fixed_dictionaries({"selector": st.fixed_dictionaries({"matchLabels": LABELS})})}
    ),
    st.fixed_dictionaries(
        {"environments": st.lists(st.sampled_from(["prod", "dev"]), min_size=1, max_size=2, unique=True)}
    ),
    st.fixed_dictionaries(
        {"namespaces": st.lists(st.sampled_from(["support", "other"]), min_size=1, max_size=2, unique=True)}
    ),
    st.fixed_dictionaries(
        {
            "agents": st.fixed_dictionaries(
                {
                    "selector": st.fixed_dictionaries(
                        {
                            "matchExpressions": st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "key": st.sampled_from(["team", "tier"]),
                                        "operator": st.sampled_from(["Exists", "DoesNotExist"]),
                                    }
                                ),
                                max_size=2,
                            )
                        }
                    )
                }
            )
        }
    ),
)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, dict[str, str]]]:
    docs = [d for d in f.fleet() if d["kind"] != "Environment"]
    docs.append(f.environment("prod", allowed=draw(st.sampled_from([None, ["anthropic"], ["openai"]]))))
    docs.append(f.environment("dev"))
    for index in range(draw(st.integers(min_value=0, max_value=12))):
        rules = draw(st.lists(st.sampled_from(RULES), min_size=1, max_size=3))
        namespace = draw(st.sampled_from(["support", "support", "joch-system", "other"]))
        docs.append(f.policy(f"p{index}", rules, applies_to=draw(SELECTORS), namespace=namespace))
    labels = draw(LABELS)
    tools = draw(
        st.lists(
            st.sampled_from(["zendesk.search", "zendesk.create-ticket", "missing"]), unique=True, max_size=3
        )
    )
    fallback = draw(st.sampled_from([[], ["anthropic:claude-sonnet"]]))
    docs = [d for d in docs if d["kind"] != "ModelRoute"] + [f.route(fallback=fallback)]
    agent = f.agent(labels=labels, tools=[{"name": t} for t in tools])
    namespace_labels = {"support": draw(st.sampled_from([{}, {"joch.dev/environment": "prod"}]))}
    return docs, agent, namespace_labels


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@SETTINGS
@given(fleets())
def test_admission_agrees_with_compilation(
    case: tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]],
) -> None:
    docs, agent_doc, namespace_labels = case
    world = f.world(docs, namespace_labels=namespace_labels)
    agent = f.parse(agent_doc)
    assert world.base is not None
    plain = resolve.gather(agent, world.base, f.SETTINGS)  # type: ignore[arg-type]
    index = SelectorIndex(f.SETTINGS.shared_namespaces)
    environment = admission_agents.environment_of(agent, world, f.SETTINGS)  # type: ignore[arg-type]
    narrowed_world = World(world.base).selecting(
        index, namespace="support", labels=agent.metadata.labels or {}, environment=environment
    )
    narrowed = resolve.gather(agent, narrowed_world, f.SETTINGS)  # type: ignore[arg-type]
    assert [(p.source, p.namespace, p.name) for p in narrowed.policies] == [
        (p.source, p.namespace, p.name) for p in plain.policies
    ]
    assert narrowed.dependencies == plain.dependencies

    tools = [t for item in plain.tools if (t := preflight.tool_facts(item)) is not None]
    theirs = preflight.run_preflight(plain, tools, engine.PolicyCompiler()).problems
    ours = run_preflight(plain, tools, CompiledPolicies())
    assert list(theirs) == ours

    compiled = compile_agent(plain, f.SETTINGS, programs=engine.PolicyCompiler())
    denied_by_compiler = any(p.reason == "PolicyDenied" for p in compiled.problems)
    verdict = Admission(f.SETTINGS).validate(
        f.request(agent_doc), f.world(docs, namespace_labels=namespace_labels)
    )
    denied_by_admission = any(e.reason == "PolicyDenied" for e in verdict.errors)
    event(f"denied={denied_by_compiler}, effective policies={min(len(plain.policies), 3)}+")
    assert denied_by_admission == denied_by_compiler
