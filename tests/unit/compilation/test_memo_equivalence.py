"""The compiler's memos (compilation.memo, PolicyCompiler.compile_object) never change a result, and
forget what changed.

- random fleets (seeded): every Agent compiled from empty memos and a fresh PolicyCompiler (nothing
  remembered from another Agent), then twice through shared warm memos and one PolicyCompiler, gives
  byte-identical manifest.yaml, the same sha256 and source hash, the same problems (reason, path,
  message) and the same dependencies; so does the fleet under other settings. Fleets mix selector,
  environment, team and explicit Policies (structured, not-allowlisted and CEL rules, denies,
  approvals, invalid specs), missing and forbidden references, Tool safety floors, MCP trust scores
  and Namespace labels;
- a new generation of a referenced Tool, a changed Policy, an Agent label change (selectors and the
  D5 environment), a Namespace label change and an in-place metadata edit each reach the result;
- the memos are LRU-bounded.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.mcpserver import MCPServer, MCPServerStatus
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.domain import compilation
from joch.domain import policy as engine
from joch.domain.compilation import memo
from joch.domain.settings import OperatorSettings

SETTINGS = OperatorSettings(shared_namespaces=("shared",))
LEVELS = ["read_only", "external_write", "communication", "financial", "privileged"]
CAPS = {"text": True, "toolCalling": True, "structuredOutput": True, "streaming": True}
RULES: list[list[dict[str, Any]]] = [
    [{"when": {"tool.sideEffect": ["external_write", "financial"]}, "require": {"approval": "human"}}],
    [{"when": {"tool.sideEffect": "privileged"}, "action": {"deny": True, "reason": "no root"}}],
    [{"when": {"model.provider": "not-allowlisted"}, "action": "deny"}],
    [{"when": {"cel": "agent.labels.tier == 't1' && tool.sideEffect == 'financial'"}, "action": "deny"}],
    [{"when": {"mcpServer.trustScore": "<0.5"}, "action": {"deny": True, "reason": "untrusted"}}],
    [
        {"when": {"cost.runUsd": ">5"}, "action": "deny"},
        {"when": {"agent.name": "agent-3"}, "action": "deny"},
    ],
    [{"when": {"tool.requiresApproval": True}, "action": "allow"}],
]


@pytest.fixture(autouse=True)
def fresh_memos() -> Iterator[None]:
    memo.clear_all()
    yield
    memo.clear_all()


def doc(
    kind: type[meta.Resource], name: str, namespace: str | None, spec: dict[str, Any], **extra: Any
) -> Any:
    metadata: dict[str, Any] = {"name": name, "generation": extra.pop("generation", 1)}
    metadata["uid"] = f"uid-{kind.crd.kind}-{namespace}-{name}-{metadata['generation']}"
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata.update(extra)
    body = {"apiVersion": kind.crd.api_version, "kind": kind.crd.kind, "metadata": metadata, "spec": spec}
    return kind.model_validate(body)


def fleet(seed: int, agents: int = 60) -> tuple[list[meta.Resource], dict[str, dict[str, str]]]:
    """A random but consistent-enough world: some references are missing or forbidden on purpose."""
    rng = random.Random(seed)
    objects: list[meta.Resource] = [
        doc(
            FrameworkAdapter,
            "py",
            None,
            {"framework": "custom-python", "capabilities": {"toolBinding": True}},
        ),
        doc(Environment, "prod", None, {"allowedProviders": ["openai"], "policies": [{"name": "env-p"}]}),
        doc(Environment, "dev", None, {}),
        doc(Model, "m0", "shared", {"provider": "openai", "model": "m0", "capabilities": CAPS}),
        doc(Policy, "fleet", "shared", {"appliesTo": {"environments": ["prod"]}, "rules": RULES[2]}),
    ]
    labels: dict[str, dict[str, str]] = {}
    for n in range(3):
        ns = f"ns-{n}"
        labels[ns] = {"joch.dev/environment": rng.choice(["prod", "dev"])} if rng.random() < 0.7 else {}
        for i in range(8):
            spec: dict[str, Any] = {"type": "function", "sideEffects": {"level": rng.choice(LEVELS)}}
            if rng.random() < 0.3:
                spec["inputSchema"] = {"type": "object", "properties": {f"a{i}": {"type": "string"}}}
            if rng.random() < 0.2:
                spec["safety"] = {"allowedAgents": [f"agent-{j}" for j in range(0, 10, 2)]}
            if rng.random() < 0.2:
                spec["sideEffects"]["requiresApproval"] = rng.random() < 0.5
            objects.append(doc(Tool, f"tool-{i}", ns, spec))
        for i in range(3):
            server = doc(
                MCPServer,
                f"mcp-{i}",
                ns,
                {"transport": "streamable_http", "endpoint": {"url": "https://mcp.example.com"}},
            )
            server.status = MCPServerStatus(trust_score=rng.choice([0.2, 0.6, 0.9]))
            objects.append(server)
            objects.append(doc(Memory, f"mem-{i}", ns, {"type": "working", "backend": {"type": "redis"}}))
        objects.append(doc(RAG, "rag-0", ns, {"sources": [{"name": "kb"}]}))
        objects.append(doc(Model, "m1", ns, {"provider": "anthropic", "model": "m1", "capabilities": CAPS}))
        objects.append(
            doc(ModelRoute, "route", ns, {"strategy": {"primary": "openai:m0", "fallback": ["anthropic:m1"]}})
        )
        objects.append(doc(ModelRoute, "broken", ns, {"strategy": {"primary": "openai:nowhere"}}))
        for i, rules in enumerate(RULES):
            selector = {"matchLabels": {"tier": f"t{i % 3}"}} if i % 2 else {}
            objects.append(
                doc(Policy, f"p{i}", ns, {"appliesTo": {"agents": {"selector": selector}}, "rules": rules})
            )
        objects.append(doc(Policy, "env-p", ns, {"appliesTo": {"namespaces": ["none"]}, "rules": RULES[0]}))
        objects.append(
            doc(Policy, "invalid", ns, {"appliesTo": {"namespaces": ["none"]}, "rules": [{"when": {}}]})
        )
        objects.append(
            doc(Team, f"team-{n}", None, {"namespaces": [ns], "defaultPolicies": ["p1", "missing"]})
        )
        for a in range(agents // 3):
            tools = [{"name": f"tool-{t}"} for t in rng.sample(range(10), rng.randint(0, 5))]  # 8, 9 missing
            agent_spec: dict[str, Any] = {
                "framework": {"adapterRef": {"name": "py"}, "image": f"img-{a}"},
                "tools": tools,
                "mcpServers": [{"name": f"mcp-{m}"} for m in rng.sample(range(3), rng.randint(0, 2))],
                "memories": {"working": {"name": f"mem-{rng.randrange(4)}"}},
                "policies": [{"name": rng.choice(["p0", "p3", "invalid", "gone"])}],
            }
            if rng.random() < 0.8:
                agent_spec["modelRoute"] = {"routeRef": {"name": rng.choice(["route", "route", "broken"])}}
            if rng.random() < 0.2:
                agent_spec["ragRefs"] = [{"name": "rag-0", "namespace": rng.choice(["shared", "ns-0"])}]
            agent_labels = {"tier": f"t{rng.randrange(3)}"}
            if rng.random() < 0.5:
                agent_labels["env"] = rng.choice(["prod", "dev", "staging"])
            objects.append(doc(Agent, f"agent-{a}", ns, agent_spec, labels=agent_labels))
    return objects, labels


def catalog(objects: list[meta.Resource], labels: dict[str, dict[str, str]]) -> compilation.Catalog:
    return compilation.Catalog(objects, namespace_labels=labels, shared_namespaces=SETTINGS.shared_namespaces)


def outcome(compiled: compilation.Compiled) -> tuple[Any, ...]:
    problems = tuple((p.reason, p.path, p.message) for p in compiled.problems)
    return (compiled.manifest_yaml, compiled.sha256, compiled.source_hash, problems, compiled.dependencies)


def compile_all(
    cat: compilation.Catalog, programs: engine.PolicyCompiler, settings: OperatorSettings = SETTINGS
) -> list[tuple[Any, ...]]:
    return [
        outcome(
            compilation.compile_agent(compilation.gather(agent, cat, settings), settings, programs=programs)
        )
        for agent in cat.agents()
    ]


def compile_each_alone(
    cat: compilation.Catalog, settings: OperatorSettings = SETTINGS
) -> list[tuple[Any, ...]]:
    """Every Agent compiled with nothing remembered from any other compile."""
    out = []
    for agent in cat.agents():
        memo.clear_all()
        gathered = compilation.gather(agent, cat, settings)
        out.append(outcome(compilation.compile_agent(gathered, settings, programs=engine.PolicyCompiler())))
    memo.clear_all()
    return out


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"seed {seed}") for seed in range(8)])
def test_memos_never_change_a_result(seed: int) -> None:
    cat = catalog(*fleet(seed))
    plain = compile_each_alone(cat)
    programs = engine.PolicyCompiler()
    first, warm = compile_all(cat, programs), compile_all(cat, programs)
    assert first == plain
    assert warm == plain
    reasons = {problem[0] for result in plain for problem in result[3]}
    # the fleet exercises what the memos key on: denies, bad references, invalid policies
    assert {"PolicyDenied", "MissingReference", "InvalidPolicy", "ToolNotAllowed"} <= reasons
    sizes = memo.sizes()
    assert sizes["resolve.selection"] > 0
    assert sizes["scope.policy"] > 0
    assert sizes["preflight.tool"] > 0
    assert len(programs) > 0


@pytest.mark.parametrize(
    "settings",
    [
        OperatorSettings(shared_namespaces=("ns-1",)),
        OperatorSettings(shared_namespaces=("shared", "ns-2"), default_environment="prod"),
        OperatorSettings(shared_namespaces=("shared",), tool_gateway_url="http://gw.other:8080"),
    ],
    ids=["other shared namespace", "two shared namespaces, prod default", "other tool gateway"],
)
def test_a_settings_change_is_not_served_from_the_memo(settings: OperatorSettings) -> None:
    cat = catalog(*fleet(3))
    programs = engine.PolicyCompiler()
    before = compile_all(cat, programs)
    after = compile_all(cat, programs, settings)
    assert after == compile_each_alone(cat, settings)
    assert after != before


def _only(cat: compilation.Catalog, name: str, namespace: str = "ns-0") -> Agent:
    (agent,) = [a for a in cat.agents(namespace) if a.metadata.name == name]
    return agent


PROGRAMS = engine.PolicyCompiler()
"""One compiler shared by the compiles of a test, as the operator keeps one."""


def _compile(cat: Any, agent: Agent) -> compilation.Compiled:
    return compilation.compile_agent(compilation.gather(agent, cat, SETTINGS), SETTINGS, programs=PROGRAMS)


def _plain(cat: Any, agent: Agent) -> compilation.Compiled:
    memo.clear_all()
    gathered = compilation.gather(agent, cat, SETTINGS)
    return compilation.compile_agent(gathered, SETTINGS, programs=engine.PolicyCompiler())


def _world(agent_labels: dict[str, str], ns_labels: dict[str, str] | None = None) -> list[meta.Resource]:
    tool = doc(Tool, "t", "ns-0", {"type": "function", "sideEffects": {"level": "read_only"}})
    agent = doc(
        Agent,
        "a",
        "ns-0",
        {"framework": {"adapterRef": {"name": "py"}}, "tools": [{"name": "t"}]},
        labels=agent_labels,
    )
    deny = {"when": {"tool.sideEffect": "financial"}, "action": {"deny": True, "reason": "money"}}
    return [
        doc(
            FrameworkAdapter,
            "py",
            None,
            {"framework": "custom-python", "capabilities": {"toolBinding": True}},
        ),
        tool,
        agent,
        doc(
            Policy,
            "team-a",
            "ns-0",
            {"appliesTo": {"agents": {"selector": {"matchLabels": {"team": "a"}}}}, "rules": [deny]},
        ),
        doc(
            Policy,
            "prod-only",
            "ns-0",
            {
                "appliesTo": {"environments": ["prod"]},
                "rules": [{"when": {"tool.sideEffect": "read_only"}, "action": "deny"}],
            },
        ),
    ]


def test_a_new_generation_of_a_referenced_tool_reaches_the_manifest() -> None:
    objects = _world({"team": "a"})
    cat = compilation.Catalog(objects, shared_namespaces=SETTINGS.shared_namespaces)
    agent = _only(cat, "a")
    before = _compile(cat, agent)
    assert before.ok
    assert before.manifest["spec"]["tools"][0]["sideEffect"] == "read_only"
    changed = doc(
        Tool, "t", "ns-0", {"type": "function", "sideEffects": {"level": "financial"}}, generation=2
    )
    cat2 = compilation.Catalog([changed if isinstance(o, Tool) else o for o in objects])
    after = _compile(cat2, agent)
    assert after.manifest["spec"]["tools"][0]["sideEffect"] == "financial"
    assert [p.reason for p in after.problems] == ["PolicyDenied"]
    assert outcome(after) == outcome(_plain(cat2, agent))


def test_a_policy_change_reaches_preflight() -> None:
    objects = _world({"team": "a"})
    cat = compilation.Catalog(objects)
    agent = _only(cat, "a")
    assert _compile(cat, agent).ok
    stricter = doc(
        Policy,
        "team-a",
        "ns-0",
        {
            "appliesTo": {"agents": {"selector": {"matchLabels": {"team": "a"}}}},
            "rules": [{"when": {"tool.sideEffect": "read_only"}, "action": {"deny": True, "reason": "v2"}}],
        },
        generation=2,
    )
    cat2 = compilation.Catalog([stricter if o.metadata.name == "team-a" else o for o in objects])
    after = _compile(cat2, agent)
    assert [p.message.endswith("v2") for p in after.problems] == [True]
    assert after.manifest["spec"]["policies"]["resolved"] == ["team-a@v2"]
    assert outcome(after) == outcome(_plain(cat2, agent))


def test_agent_and_namespace_labels_reach_selection_and_environment() -> None:
    objects = _world({"team": "a"})
    cat = compilation.Catalog(objects)
    first = _compile(cat, _only(cat, "a"))
    assert first.manifest["spec"]["policies"]["resolved"] == ["team-a@v1"]
    relabelled = doc(
        Agent,
        "a",
        "ns-0",
        {"framework": {"adapterRef": {"name": "py"}}, "tools": [{"name": "t"}]},
        labels={"team": "b"},
    )
    second = _compile(cat, relabelled)
    assert second.manifest["spec"]["policies"]["resolved"] == []
    assert second.environment == "dev"
    # the Namespace label moves the Agent to prod (D5): the prod-only policy now denies its tool
    cat.set_namespace_labels("ns-0", {"joch.dev/environment": "prod"})
    third = _compile(cat, relabelled)
    assert third.environment == "prod"
    assert third.manifest["spec"]["policies"]["resolved"] == ["prod-only@v1"]
    assert [p.reason for p in third.problems] == ["PolicyDenied"]
    assert outcome(third) == outcome(_plain(cat, relabelled))
    # and the Agent's own env label wins over the Namespace's
    dev = doc(
        Agent,
        "a",
        "ns-0",
        {"framework": {"adapterRef": {"name": "py"}}, "tools": [{"name": "t"}]},
        labels={"team": "b", "env": "dev"},
    )
    assert _compile(cat, dev).ok


def test_an_in_place_generation_bump_is_not_served_from_the_memo() -> None:
    objects = _world({"team": "b"})
    cat = compilation.Catalog(objects)
    agent = _only(cat, "a")
    assert _compile(cat, agent).manifest["spec"]["tools"][0]["sideEffect"] == "read_only"
    (tool,) = [o for o in objects if isinstance(o, Tool)]
    assert tool.spec.side_effects is not None
    tool.spec.side_effects.level = "financial"
    tool.metadata.generation = 2
    after = _compile(cat, agent)
    assert after.manifest["spec"]["tools"][0]["sideEffect"] == "financial"
    assert outcome(after) == outcome(_plain(cat, agent))


def test_memos_are_lru_bounded() -> None:
    small: memo.Memo[int, str] = memo.Memo("test.small", capacity=3)
    for key in range(3):
        small.put(key, str(key))
    assert small.get(0) == "0"  # 0 is now the most recently used
    small.put(3, "3")
    assert len(small) == 3
    assert small.get(1) is None  # the least recently used went
    assert [small.get(key) for key in (0, 2, 3)] == ["0", "2", "3"]


def test_a_fleet_stays_within_the_memo_bounds() -> None:
    cat = catalog(*fleet(99, agents=300))
    compile_all(cat, engine.PolicyCompiler())
    for name, size in memo.sizes().items():
        assert size <= memo.CAPACITY, name


def test_an_object_memo_recomputes_for_a_new_object_or_version() -> None:
    calls: list[str] = []

    def level(tool: Tool) -> str:
        calls.append(tool.metadata.name or "")
        return tool.spec.side_effects.level if tool.spec.side_effects is not None else "unknown"

    levels = memo.ObjectMemo("test.levels", level)
    tool = doc(Tool, "t", "ns", {"type": "function", "sideEffects": {"level": "read_only"}})
    assert (levels(tool), levels(tool)) == ("read_only", "read_only")
    assert calls == ["t"]
    newer = doc(Tool, "t", "ns", {"type": "function", "sideEffects": {"level": "financial"}}, generation=2)
    assert levels(newer) == "financial"
    tool.metadata.resource_version = "7"  # metadata edited in place: a new version of the same object
    assert levels(tool) == "read_only"
    assert calls == ["t", "t", "t"]


def test_policy_compiler_caches_by_object_version() -> None:
    programs = engine.PolicyCompiler(capacity=2)
    rules = [{"when": {"tool.sideEffect": "financial"}, "action": "deny"}]
    first = doc(Policy, "p", "ns", {"rules": rules})
    compiled = programs.compile_object(first)
    assert programs.compile_object(first) is compiled
    assert compiled.generation == 1
    newer = doc(
        Policy,
        "p",
        "ns",
        {"rules": [{"when": {"tool.sideEffect": "read_only"}, "action": "deny"}]},
        generation=2,
    )
    recompiled = programs.compile_object(newer)
    assert recompiled is not compiled
    assert recompiled.generation == 2
    # an invalid spec raises every time it is asked for, naming the problem
    invalid = doc(Policy, "bad", "ns", {"rules": [{"when": {}}]})
    for _ in range(2):
        with pytest.raises(engine.PolicySpecError):
            programs.compile_object(invalid)
    # bounded: the oldest object fell out, and asking again compiles it again (same answer)
    again = programs.compile_object(first)
    assert again.rules[0].rule == compiled.rules[0].rule
    programs.forget(namespace="ns", name="p")
    assert programs.compile_object(newer) is not recompiled


def test_admission_and_compiler_share_one_policy_compiler() -> None:
    from joch.domain.admission import Admission
    from joch.domain.admission.preflight import CompiledPolicies

    programs = engine.PolicyCompiler()
    assert Admission(SETTINGS, policies=programs).policies is programs
    assert CompiledPolicies is engine.PolicyCompiler
