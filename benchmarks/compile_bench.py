"""Agent compiler benchmark: pure compile time per agent over a generated fleet of 1,000 Agents.

Run: ``python benchmarks/compile_bench.py [--agents N]`` (a few seconds). One thread, no I/O. Each
figure is printed next to a baseline measured in the same run, with the ratio figure / baseline (p50
against p50, p95 against p95, total against total). Lower is better.

Figure: ``gather(agent, catalog, settings)`` + ``compile_agent(gathered, settings)`` for every Agent,
with a warm policy cache (the operator keeps one ``PolicyCompiler`` for its lifetime) and warm compile
memos (``joch.domain.compilation.memo``: Tool facts, Policy scopes and selections by object version,
bounded, kept for the process's lifetime too). The first, cold pass (which also compiles every Policy
once and fills the memos) is reported as a total.

Baselines, on the very same manifests:
- primary: canonical serialisation and hashing alone, i.e. ``canonical_yaml(manifest)`` plus
  ``sha256(canonical_json(manifest))``: the floor any compiler that emits this manifest must pay;
- reference: pydantic-parsing the Agent alone (``Agent.model_validate`` of its wire form), i.e. what it
  costs just to read the object a watch event delivers.

Fleet (seeded): 10 namespaces of 100 Agents. Per namespace 40 Tools, 4 MCP servers, 4 Memories, 2 RAGs,
3 ModelRoutes (primary + 1-2 fallbacks over 6 Models, half of them in joch-system), 12 Policies with
label selectors plus 2 fleet-wide ones in joch-system, a Team with default policies; Environments prod
and staging with bound policies. Each Agent uses 3-8 tools, 0-2 MCP servers, 1-2 memories, 0-1 RAG,
1-2 explicit policies, and has labels team/env/tier.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

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
from joch.domain import policy as policy_engine
from joch.domain.compilation import memo as compile_memo
from joch.domain.settings import OperatorSettings

SEED = 20261127
NAMESPACES = 10
SHARED = "joch-system"
LEVELS = ["read_only", "read_only", "read_only", "external_write", "communication", "financial"]
CAPS = {"text": True, "toolCalling": True, "structuredOutput": True, "streaming": True}


@dataclasses.dataclass
class Stats:
    p50: float
    p95: float
    mean: float
    total_ms: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        ordered = sorted(samples_ns)
        n = len(ordered)
        return cls(
            p50=ordered[n // 2] / 1000,
            p95=ordered[min(n - 1, int(0.95 * n))] / 1000,
            mean=statistics.fmean(ordered) / 1000,
            total_ms=sum(ordered) / 1e6,
        )


def _doc(
    kind: type[meta.Resource], name: str, namespace: str | None, spec: dict[str, Any], **meta_: Any
) -> Any:
    metadata: dict[str, Any] = {
        "name": name,
        "generation": 1,
        "uid": f"uid-{kind.crd.kind}-{namespace}-{name}",
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata.update(meta_)
    return kind.model_validate(
        {"apiVersion": kind.crd.api_version, "kind": kind.crd.kind, "metadata": metadata, "spec": spec}
    )


def build_fleet(agents: int, rng: random.Random) -> tuple[list[meta.Resource], list[Agent]]:
    """Every object of the fleet (Agents included) and the Agents."""
    spec: dict[str, Any]
    objects: list[meta.Resource] = [
        _doc(
            FrameworkAdapter,
            "py",
            None,
            {
                "framework": "custom-python",
                "adapterImage": "reg/adapter:1",
                "capabilities": {
                    "toolBinding": True,
                    "mcpBinding": True,
                    "modelRouterBinding": True,
                    "streaming": True,
                    "a2a": True,
                    "structuredOutput": True,
                },
            },
        )
    ]
    for i in range(3):
        spec = {
            "provider": "openai",
            "model": f"shared-{i}",
            "capabilities": CAPS,
            "limits": {"contextWindowTokens": 400_000},
        }
        objects.append(_doc(Model, f"shared-{i}", SHARED, spec))
    rules_tool = [
        {"when": {"tool.sideEffect": ["external_write", "financial"]}, "require": {"approval": "human"}},
        {"when": {"cost.runUsd": ">5"}, "action": {"deny": True, "reason": "too expensive"}},
    ]
    rules_model = [
        {"when": {"model.provider": "not-allowlisted"}, "action": {"deny": True, "reason": "provider"}},
        {"when": {"data.contains": "pii"}, "action": {"redact": True, "redactionRules": ["emails"]}},
    ]
    for i in range(2):
        objects.append(
            _doc(
                Policy, f"fleet-{i}", SHARED, {"appliesTo": {"environments": ["prod"]}, "rules": rules_model}
            )
        )
    for env in ("prod", "staging"):
        objects.append(
            _doc(
                Environment,
                env,
                None,
                {"allowedProviders": ["openai", "anthropic"], "policies": [{"name": "env-bound"}]},
            )
        )
    fleet: list[Agent] = []
    per_namespace = max(1, agents // NAMESPACES)
    for n in range(NAMESPACES):
        ns = f"team-{n}"
        for i in range(40):
            spec = {
                "type": "function",
                "toolName": f"tool_{i}",
                "inputSchema": {"type": "object", "properties": {f"arg{i}": {"type": "string"}}},
                "sideEffects": {"level": LEVELS[i % len(LEVELS)]},
            }
            objects.append(_doc(Tool, f"tool-{i}", ns, spec))
        for i in range(4):
            spec = {
                "transport": "streamable_http",
                "endpoint": {"url": f"https://mcp{i}.example.com"},
                "security": {"pinnedVersion": f"1.{i}"},
            }
            server = _doc(MCPServer, f"mcp-{i}", ns, spec)
            server.status = MCPServerStatus(trust_score=0.9)
            objects.append(server)
            objects.append(_doc(Memory, f"mem-{i}", ns, {"type": "working", "backend": {"type": "redis"}}))
        for i in range(2):
            objects.append(_doc(RAG, f"rag-{i}", ns, {"sources": [{"name": "kb"}]}))
        for i in range(3):
            spec = {
                "provider": "anthropic",
                "model": f"local-{i}",
                "capabilities": CAPS,
                "limits": {"contextWindowTokens": 200_000},
            }
            objects.append(_doc(Model, f"local-{i}", ns, spec))
        for i in range(3):
            fallback = [f"anthropic:local-{i}"] + ([f"openai:shared-{(i + 1) % 3}"] if i % 2 else [])
            route = {
                "requirements": {"toolCalling": True, "contextWindowMin": 128_000, "streaming": True},
                "strategy": {"primary": f"openai:shared-{i}", "fallback": fallback},
            }
            objects.append(_doc(ModelRoute, f"route-{i}", ns, route))
        for i in range(12):
            applies = {
                "agents": {
                    "selector": {"matchLabels": {"tier": f"t{i % 4}", "env": ["prod", "staging"][i % 2]}}
                }
            }
            objects.append(_doc(Policy, f"policy-{i}", ns, {"appliesTo": applies, "rules": rules_tool}))
        objects.append(
            _doc(Policy, "env-bound", ns, {"appliesTo": {"namespaces": ["nowhere"]}, "rules": rules_tool})
        )
        objects.append(
            _doc(Team, f"team-{n}", None, {"namespaces": [ns], "defaultPolicies": ["policy-0", "policy-1"]})
        )
        for a in range(per_namespace):
            tools = rng.sample(range(40), rng.randint(3, 8))
            spec = {
                "framework": {
                    "adapterRef": {"name": "py"},
                    "image": f"reg/agent-{a}:1",
                    "entrypoint": "./agent.py",
                },
                "modelRoute": {"routeRef": {"name": f"route-{rng.randrange(3)}"}},
                "tools": [{"name": f"tool-{t}"} for t in tools],
                "mcpServers": [{"name": f"mcp-{m}"} for m in rng.sample(range(4), rng.randint(0, 2))],
                "memories": {
                    slot: {"name": f"mem-{rng.randrange(4)}"}
                    for slot in ["working", "longTerm"][: rng.randint(1, 2)]
                },
                "ragRefs": [{"name": f"rag-{rng.randrange(2)}"}] if rng.random() < 0.5 else [],
                "policies": [{"name": f"policy-{p}"} for p in rng.sample(range(12), rng.randint(1, 2))],
                "budgets": {"tokenLimitPerRun": 100_000, "costLimitUsdPerDay": 20.0},
            }
            labels = {
                "team": f"team-{n}",
                "env": rng.choice(["prod", "staging"]),
                "tier": f"t{rng.randrange(4)}",
            }
            agent = _doc(Agent, f"agent-{a}", ns, spec, labels=labels)
            objects.append(agent)
            fleet.append(agent)
    return objects, fleet


def measure(fn: Callable[[int], object], count: int) -> Stats:
    gc.collect()
    timer = time.perf_counter_ns
    samples = []
    for i in range(count):
        start = timer()
        fn(i)
        samples.append(timer() - start)
    return Stats.of(samples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args(argv)
    rng = random.Random(SEED)
    objects, fleet = build_fleet(args.agents, rng)
    settings = OperatorSettings()
    catalog = compilation.Catalog(objects, shared_namespaces=settings.shared_namespaces)
    programs = policy_engine.PolicyCompiler()
    compile_memo.clear_all()

    def compile_one(i: int) -> compilation.Compiled:
        agent = fleet[i]
        return compilation.compile_agent(
            compilation.gather(agent, catalog, settings), settings, programs=programs
        )

    print(f"joch compiler benchmark (Python {sys.version.split()[0]}, one thread, seed {SEED})")
    print(f"fleet: {len(fleet)} agents, {len(objects)} objects in the catalog")
    start = time.perf_counter_ns()
    results = [compile_one(i) for i in range(len(fleet))]
    cold_ms = (time.perf_counter_ns() - start) / 1e6
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        print(f"error: {len(failed)} agents did not compile, e.g. {first.agent_name}: {first.problems[:2]}")
        return 1

    figure = measure(compile_one, len(fleet))
    manifests = [r.manifest for r in results]
    serialise = measure(
        lambda i: (
            compilation.canonical_yaml(manifests[i]),
            compilation.sha256_hex(compilation.canonical_json(manifests[i])),
        ),
        len(fleet),
    )
    wires = [agent.wire() for agent in fleet]
    parse = measure(lambda i: Agent.model_validate(wires[i]), len(fleet))

    def row(name: str, stats: Stats, base: Stats | None) -> str:
        cells = f"  {name:<44} {stats.p50:9.1f} {stats.p95:9.1f} {stats.total_ms:10.1f}"
        if base is None:
            return cells
        p50, p95, total = stats.p50 / base.p50, stats.p95 / base.p95, stats.total_ms / base.total_ms
        return f"{cells}   x{p50:.1f} / x{p95:.1f} / x{total:.1f}"

    header = f"{'per agent':<44} {'p50 us':>9} {'p95 us':>9} {'total ms':>10}"
    print(f"\n  {header}   ratio to baseline (p50 / p95 / total)")
    print(row("gather + compile_agent (warm policy cache)", figure, serialise))
    print(row("baseline: canonical YAML + sha256 of the CAM", serialise, None))
    print(row("reference: pydantic-parse the Agent alone", parse, None))
    vs_parse = f"x{figure.p50 / parse.p50:.1f} (p50), x{figure.p95 / parse.p95:.1f} (p95)"
    print(f"\n  compile vs pydantic-parse of the Agent: {vs_parse}")
    print(f"  first (cold) pass over {len(fleet)} agents, compiling every Policy once: {cold_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
