"""Policy engine benchmark: decision latency, selection, compile cost, and the two CEL backends.

Run: ``python benchmarks/policy_bench.py`` (about 30 s). One thread; every figure is printed next to a
baseline measured in the same run, with the ratio figure / baseline (p95 against p95, or mean
against mean for compile costs). Lower is better.

The workload models a fleet:
- N policies in 10 team namespaces plus a few (2 %) in ``joch-system`` that apply everywhere. Each team
  policy selects ``team=<t>, env=<prod|staging>`` (about 5 policies per team and environment), a few
  are also bound to an environment. Each has 3-5 structured rules drawn from the documented examples
  (approval for external writes, cost caps, provider allow-lists, shell tools, MCP trust, PII
  redaction); one policy in ten adds a CEL rule with its own threshold.
- 256 decision contexts for agents drawn from the same teams: mostly read-only tool calls (so most
  rules are visited and nothing short-circuits), some financial or shell calls that deny.

Baselines:
- decisions: the same engine with selection by brute-force scan (``PolicySet.scan``) instead of the
  index and the selection cache;
- selection: the scan, against the index with its cache off and on;
- one rule: the same check written by hand as a Python lambda;
- compile: parsing to the normal form only (no closures, no CEL);
- CEL: the same three-clause expression as a hand-written Python closure.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cel as rust_cel  # the raw libraries, for the figures without the engine around them
import celpy
import celpy.adapter

from joch.domain import policy
from joch.domain.policy import cel

SEED = 20261127
SIZES = (10, 100, 1000)
TARGET_P95_US_AT_100 = 50.0
NAMESPACES = [f"team-ns-{i}" for i in range(10)]
ENVS = ["prod", "staging"]
SIDE_EFFECTS = {
    "web.search": "read_only",
    "kb.lookup": "read_only",
    "crm.read": "read_only",
    "mail.send": "external_write",
    "payments.refund": "financial",
    "shell.exec": "external_write",
}
TOOLS = list(SIDE_EFFECTS)
PROVIDERS = ["openai", "anthropic", "mistral"]
ARCH_EXPRESSION = "tool.sideEffect == 'financial' && cost.runUsd > 1.0 && agent.labels.env == 'prod'"


@dataclasses.dataclass
class Stats:
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples_ns: Sequence[int]) -> Stats:
        ordered = sorted(samples_ns)
        n = len(ordered)

        def pick(q: float) -> float:
            return ordered[min(n - 1, int(q * n))] / 1000

        return cls(pick(0.50), pick(0.95), pick(0.99), statistics.fmean(ordered) / 1000)


def measure(fn: Callable[[int], object], *, samples: int, warmup: int = 500) -> Stats:
    """Time ``fn(i)`` per call, ``samples`` times, after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    gc.collect()
    timer = time.perf_counter_ns
    out = []
    for i in range(samples):
        start = timer()
        fn(i)
        out.append(timer() - start)
    return Stats.of(out)


# --- the workload -------------------------------------------------------------------------------------


def team_of(index: int, n: int) -> str:
    return f"team-{index % max(2, n // 10)}"


def make_spec(index: int, n: int, rng: random.Random) -> dict[str, Any]:
    templates: list[dict[str, Any]] = [
        {
            "when": {"tool.sideEffect": ["external_write", "financial"]},
            "require": {
                "approval": "human",
                "approvalRouting": {"approvers": [f"team:{team_of(index, n)}-leads"], "timeoutMinutes": 30},
            },
        },
        {
            "when": {"cost.runUsd": f">{rng.randint(3, 20)}"},
            "action": {"deny": True, "reason": "run over budget"},
        },
        {"when": {"model.provider": "not-allowlisted"}, "action": "deny"},
        {"when": {"tool.name": ["shell.exec", "fs.delete"]}, "action": {"deny": True, "reason": "no shell"}},
        {"when": {"mcpServer.trustScore": "<0.75"}, "action": "deny"},
        {"when": {"data.contains": "pii"}, "action": {"redact": True, "redactionRules": ["emails"]}},
        {"when": {"tool.name": "web.search", "model.tier": "premium"}, "action": "deny"},
    ]
    rules = rng.sample(templates, rng.randint(3, 5))
    if index % 10 == 3:
        threshold = rng.randint(1, 9)
        rules.append(
            {
                "when": {"cel": f"tool.sideEffect == 'financial' && cost.runUsd > {threshold}.0"},
                "action": {"deny": True, "reason": "financial spend"},
            }
        )
    spec: dict[str, Any] = {"description": f"policy {index}", "rules": rules}
    if index % 50 != 7:  # 2 % are fleet-wide policies without a selector
        spec["appliesTo"] = {
            "agents": {"selector": {"matchLabels": {"team": team_of(index, n), "env": ENVS[index % 2]}}}
        }
        if index % 20 == 5:
            spec["appliesTo"]["environments"] = [ENVS[index % 2]]
    return spec


def make_policies(n: int) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    rng = random.Random(SEED + n)
    specs = [make_spec(i, n, rng) for i in range(n)]
    keys = [
        ("joch-system" if i % 50 == 7 else NAMESPACES[i % len(NAMESPACES)], f"policy-{i}") for i in range(n)
    ]
    return specs, keys


def make_contexts(n: int, count: int = 256) -> list[dict[str, Any]]:
    rng = random.Random(SEED - n)
    contexts = []
    for i in range(count):
        index = rng.randrange(n)
        env = ENVS[index % 2]
        tool = rng.choice(TOOLS[:3]) if rng.random() < 0.8 else rng.choice(TOOLS)
        extra: dict[str, Any] = {}
        if rng.random() < 0.1:
            extra["data"] = {"contains": ["pii"]}
        contexts.append(
            {
                "hook": "toolCallRequest",
                "agent": {
                    "name": f"agent-{i}",
                    "namespace": NAMESPACES[index % len(NAMESPACES)],
                    "labels": {"team": team_of(index, n), "env": env, "app": f"app-{i % 7}"},
                    "version": "1.4.2",
                },
                "environment": {"name": env, "allowedProviders": ["openai", "anthropic"]},
                "tool": {
                    "name": tool,
                    "type": "http",
                    "sideEffect": SIDE_EFFECTS[tool],
                    "requiresApproval": False,
                },
                "model": {"provider": rng.choice(PROVIDERS[:2]), "name": "m", "tier": "standard"},
                "cost": {"runUsd": round(rng.uniform(0, 4), 2)},
                "payload": {"inputs": [{"name": "q", "value": "status of order 1234"}]},
                "turnId": f"t{i}",
                "stepId": f"s{i}",
                **extra,
            }
        )
    return contexts


def compile_all(specs: list[dict[str, Any]], keys: list[tuple[str, str]]) -> list[policy.CompiledPolicy]:
    compiler = policy.PolicyCompiler()
    return [
        compiler.compile(name=name, namespace=namespace, generation=1, spec=spec)
        for spec, (namespace, name) in zip(specs, keys, strict=True)
    ]


# --- the table ------------------------------------------------------------------------------------------

Row = tuple[str, Stats, str, Stats | None, str]


def ratio(figure: float, baseline: float) -> str:
    return f"{figure / baseline:8.3f}" if baseline > 0 else "       -"


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = (
        f"  {'measurement':<48} {'p50 us':>8} {'p95 us':>8} {'p99 us':>8}  "
        f"{'baseline':<26} {'p50 us':>8} {'p95 us':>8}  {'ratio':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, stats, baseline_name, baseline, basis in rows:
        if baseline is None:
            base = f"{'':<26} {'':>8} {'':>8}  {'':>8}"
        else:
            figure, reference = (stats.mean, baseline.mean) if basis == "mean" else (stats.p95, baseline.p95)
            base = f"{baseline_name:<26} {baseline.p50:8.2f} {baseline.p95:8.2f}  {ratio(figure, reference)}"
        print(f"  {name:<48} {stats.p50:8.2f} {stats.p95:8.2f} {stats.p99:8.2f}  {base}")


# --- the measurements -----------------------------------------------------------------------------------


NOTES: list[str] = []


def outcome(decision: policy.Decision) -> str:
    return decision.decision + ("+approval" if decision.requires_approval else "")


def agent_key(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": c["agent"]["namespace"],
        "labels": c["agent"]["labels"],
        "environment": c["environment"]["name"],
    }


def bench_size(n: int) -> tuple[Row, list[Row], Stats]:
    """Decision and selection figures for one fleet size."""
    specs, keys = make_policies(n)
    policies = policy.PolicySet(compile_all(specs, keys))
    contexts = make_contexts(n)
    agents = [agent_key(c) for c in contexts]
    count = len(contexts)
    applying = statistics.fmean(len(policies.select(**agent)) for agent in agents)
    outcomes = collections.Counter(outcome(policies.decide(c)) for c in contexts)
    NOTES.append(f"workload, {n} policies: outcomes over {count} contexts: {dict(sorted(outcomes.items()))}")

    def indexed(i: int) -> object:
        return policies.decide(contexts[i % count])

    def scanned(i: int) -> object:
        return policy.evaluate(policies.scan(**agents[i % count]), contexts[i % count])

    samples = 20_000 if n < 1000 else 10_000
    fast = measure(indexed, samples=samples, warmup=2_000)
    slow = measure(scanned, samples=max(2_000, samples // (1 + n // 100)))
    decision_row: Row = (
        f"decide, {n} policies (~{applying:.1f} apply)",
        fast,
        "scan + evaluate",
        slow,
        "p95",
    )

    scan_stats = measure(
        lambda i: policies.scan(**agents[i % count]), samples=max(2_000, 20_000 // (1 + n // 100))
    )
    uncached = measure(lambda i: policies.select(**agents[i % count], use_cache=False), samples=20_000)
    cached = measure(lambda i: policies.select(**agents[i % count]), samples=20_000)
    selection_rows: list[Row] = [
        (f"select, index, {n} policies", uncached, "scan", scan_stats, "p95"),
        (f"select, index + cache, {n} policies", cached, "scan", scan_stats, "p95"),
    ]
    return decision_row, selection_rows, fast


def bench_rule() -> list[Row]:
    compiled = policy.compile_policy(
        name="one",
        namespace="n",
        generation=1,
        spec={
            "rules": [
                {
                    "when": {"tool.sideEffect": ["external_write", "financial"], "cost.runUsd": ">5"},
                    "action": "deny",
                }
            ]
        },
    )
    rule = compiled.rules[0]
    contexts = make_contexts(100)
    count = len(contexts)
    options = frozenset({"external_write", "financial"})

    def hand(c: dict[str, Any]) -> bool:
        return c["tool"]["sideEffect"] in options and c["cost"]["runUsd"] > 5

    engine = measure(lambda i: rule.test(contexts[i % count]), samples=50_000)
    baseline = measure(lambda i: hand(contexts[i % count]), samples=50_000)
    return [("one structured rule (2 clauses), closure", engine, "hand-written Python", baseline, "p95")]


def compile_row(label: str, group: list[dict[str, Any]]) -> Row:
    options = policy.CompileOptions()
    programs: dict[str, policy.Program] = {}  # cold: every CEL source is new to it

    def compile_one(i: int) -> object:
        spec = group[i % len(group)]
        return policy.compile_policy(
            name=f"p{i}", namespace="n", generation=1, spec=spec, options=options, programs=programs
        )

    compiled = measure(compile_one, samples=len(group), warmup=0)
    parsed = measure(lambda i: policy.parse_policy_spec(group[i % len(group)]), samples=len(group))
    return (f"compile, {label}", compiled, "parse to normal form only", parsed, "mean")


def bench_compile() -> list[Row]:
    specs, _ = make_policies(1000)
    structured = [s for s in specs if not any("cel" in r.get("when", {}) for r in s["rules"])][:300]
    with_cel = [s for s in specs if any("cel" in r.get("when", {}) for r in s["rules"])][:100]
    rows = [compile_row("structured only", structured), compile_row("with one CEL rule", with_cel)]
    compiler = policy.PolicyCompiler()
    for i, spec in enumerate(structured):
        compiler.compile(name=f"p{i}", namespace="n", generation=1, spec=spec)
    hit = measure(
        lambda i: compiler.compile(
            name=f"p{i % len(structured)}", namespace="n", generation=1, spec=structured[i % len(structured)]
        ),
        samples=5_000,
    )
    parsed = measure(lambda i: policy.parse_policy_spec(structured[i % len(structured)]), samples=2_000)
    rows.append(
        ("PolicyCompiler, unchanged generation (hit)", hit, "parse to normal form only", parsed, "mean")
    )
    return rows


def bench_backend(name: str, context: dict[str, Any], plan: cel.AccessPlan) -> tuple[Stats, Stats, Stats]:
    """(engine path, evaluation on a bound context, compile) for one backend."""
    backend = policy.get_backend(name)
    program = backend.compile(ARCH_EXPRESSION)
    activation = backend.prepare(cel.extract(context, plan))
    samples = 10_000 if name == cel.CEL_RUST else 3_000

    def engine_path(i: int) -> object:
        return program.evaluate(backend.prepare(cel.extract(context, plan)))

    def bound(i: int) -> object:
        return program.evaluate(activation)

    def compile_one(i: int) -> object:
        return backend.compile(f"{ARCH_EXPRESSION} && cost.runUsd < {i}.5")

    return (
        measure(engine_path, samples=samples),
        measure(bound, samples=samples),
        measure(compile_one, samples=300),
    )


def bench_cel() -> tuple[list[Row], list[Row], dict[str, Stats]]:
    """(rows against a Python closure, rows common-expression-language against cel-python, engine path)."""
    context: dict[str, Any] = {
        "tool": {
            "name": "payments.refund",
            "type": "http",
            "sideEffect": "financial",
            "requiresApproval": False,
        },
        "cost": {"runUsd": 5.2},
        "agent": {"name": "a", "namespace": "n", "version": "1", "labels": {"env": "prod", "team": "t1"}},
    }

    def closure(c: dict[str, Any]) -> bool:
        return bool(
            c["tool"]["sideEffect"] == "financial"
            and c["cost"]["runUsd"] > 1.0
            and c["agent"]["labels"]["env"] == "prod"
        )

    python = measure(lambda i: closure(context), samples=20_000)
    raw_rust_program = rust_cel.compile(ARCH_EXPRESSION)
    environment = celpy.Environment()
    raw_celpy_program = environment.program(environment.compile(ARCH_EXPRESSION))
    raw = {
        cel.CEL_RUST: measure(lambda i: raw_rust_program.execute(context), samples=10_000),
        cel.CEL_PYTHON: measure(
            lambda i: raw_celpy_program.evaluate(
                {k: celpy.adapter.json_to_cel(v) for k, v in context.items()}
            ),
            samples=3_000,
        ),
    }
    plan = cel.access_plan(cel.scan(ARCH_EXPRESSION).paths)
    engine: dict[str, Stats] = {}
    prepared: dict[str, Stats] = {}
    compiled: dict[str, Stats] = {}
    for name in (cel.CEL_RUST, cel.CEL_PYTHON):
        engine[name], prepared[name], compiled[name] = bench_backend(name, context, plan)
    short = {cel.CEL_RUST: "cel (Rust)", cel.CEL_PYTHON: "cel-python"}
    against_python: list[Row] = []
    for name in (cel.CEL_RUST, cel.CEL_PYTHON):
        against_python += [
            (f"{short[name]}: library call, whole context", raw[name], "Python closure", python, "p95"),
            (
                f"{short[name]}: engine (bind read fields + eval)",
                engine[name],
                "Python closure",
                python,
                "p95",
            ),
            (
                f"{short[name]}: eval on an already bound context",
                prepared[name],
                "Python closure",
                python,
                "p95",
            ),
        ]
    rust, py = cel.CEL_RUST, cel.CEL_PYTHON
    head_to_head: list[Row] = [
        ("cel (Rust): library call, whole context", raw[rust], "cel-python, same", raw[py], "p95"),
        ("cel (Rust): engine path", engine[rust], "cel-python, same", engine[py], "p95"),
        ("cel (Rust): eval on a bound context", prepared[rust], "cel-python, same", prepared[py], "p95"),
        ("cel (Rust): compile one expression", compiled[rust], "cel-python, same", compiled[py], "mean"),
    ]
    return against_python, head_to_head, engine


def warm_up(seconds: float = 1.0) -> None:
    """Spin before measuring: the first series in a fresh process otherwise reads slow (clock ramp-up)."""
    specs, keys = make_policies(100)
    policies = policy.PolicySet(compile_all(specs, keys))
    contexts = make_contexts(100)
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        policies.decide(contexts[i % len(contexts)])
        i += 1


def main() -> int:
    started = time.perf_counter()
    print(f"joch policy engine benchmark (Python {sys.version.split()[0]}, one thread, seed {SEED})")
    print(f"default CEL backend: {policy.get_backend().name}")
    warm_up()
    decision_rows: list[Row] = []
    selection_rows: list[Row] = []
    results: dict[int, Stats] = {}
    for n in SIZES:
        decision_row, rows, results[n] = bench_size(n)
        decision_rows.append(decision_row)
        selection_rows.extend(rows)
    print_table(
        "Decision latency (PolicySet.decide: select + evaluate), ratio = p95 / baseline p95", decision_rows
    )
    print_table("Selection only, ratio = p95 / baseline p95", selection_rows)
    print_table("One rule, ratio = p95 / baseline p95", bench_rule())
    print_table("Compile cost per policy, ratio = mean / baseline mean", bench_compile())
    against_python, head_to_head, engine = bench_cel()
    print_table(f"CEL {ARCH_EXPRESSION!r}, ratio = p95 / baseline p95", against_python)
    print_table(
        "CEL backends head to head, ratio = cel (Rust) / cel-python (below 1: Rust is faster)", head_to_head
    )
    faster = min(engine, key=lambda name: engine[name].p95)
    print(
        f"\nfaster CEL backend on the engine path: {faster} "
        f"({engine[cel.CEL_PYTHON].p95 / engine[cel.CEL_RUST].p95:.1f}x at p95); "
        f"default: {cel.DEFAULT_BACKEND} -> {'OK' if faster == cel.DEFAULT_BACKEND else 'MISMATCH'}"
    )
    for note in NOTES:
        print(note)
    p95 = results[100].p95
    verdict = "PASS" if p95 <= TARGET_P95_US_AT_100 else "FAIL"
    print(f"target p95 <= {TARGET_P95_US_AT_100:.0f} us at 100 policies: {p95:.2f} us -> {verdict}")
    print(f"total benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
