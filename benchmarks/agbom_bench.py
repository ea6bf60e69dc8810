"""AgBOM benchmark: document generation per agent over the compiler benchmark's fleet of 1,000 Agents.

Run: ``python benchmarks/agbom_bench.py [--agents N]`` (about a minute). One thread, no I/O. Each
figure is printed next to the baseline measured in the same run, the compile of the same agent
(``gather`` + ``compile_agent``, warm caches), as a ratio (p50 / p95 / total). Lower is better.

Figures, per agent:
- ``describe``: the AgBOM content and its hash (what the service computes on every change, to decide
  whether a new generation is due);
- ``describe + render``: the whole CycloneDX 1.6 JSON document (what a new generation costs), rendered
  through cyclonedx-python-lib, starting with an empty component memo (each distinct component or
  service is serialised once, as in a fan-out);
- reference: the strict JSON-schema validation of the document (tests do it; the service does not).

The fleet is benchmarks/compile_bench.py's (seeded; 10 namespaces, 40 Tools, 4 MCP servers, 6 Models,
memories, RAGs and policies per namespace), so the figures compare with that benchmark's.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys
from collections.abc import Sequence

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import compile_bench as fleet_bench

from joch import __version__
from joch.domain import agbom, compilation
from joch.domain import policy as policy_engine
from joch.domain.agbom.render import FRAGMENTS
from joch.domain.settings import OperatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    args = parser.parse_args(argv)
    objects, fleet = fleet_bench.build_fleet(args.agents, random.Random(fleet_bench.SEED))
    settings = OperatorSettings()
    catalog = compilation.Catalog(objects, shared_namespaces=settings.shared_namespaces)
    programs = policy_engine.PolicyCompiler()
    options = agbom.Options()

    def compile_one(i: int) -> tuple[compilation.Gathered, compilation.Compiled]:
        gathered = compilation.gather(fleet[i], catalog, settings)
        return gathered, compilation.compile_agent(gathered, settings, programs=programs)

    compiled = [compile_one(i) for i in range(len(fleet))]  # warm caches, as in the operator

    def describe(i: int) -> agbom.Content:
        gathered, result = compiled[i]
        return agbom.describe(
            gathered, result, agent_uid=f"uid-{i}", options=options, lookup=catalog, tool_version=__version__
        )

    contents = [describe(i) for i in range(len(fleet))]
    texts = [agbom.render(c, generation=1, timestamp="2026-12-03T00:00:00Z") for c in contents]
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    invalid = [i for i, text in enumerate(texts[:50]) if validator.validate_str(text) is not None]
    if invalid:
        print(f"error: documents {invalid[:5]} do not validate")
        return 1

    baseline = fleet_bench.measure(compile_one, len(fleet))
    described = fleet_bench.measure(describe, len(fleet))
    FRAGMENTS.clear()  # as after a change: each distinct component is serialised once
    whole = fleet_bench.measure(
        lambda i: agbom.render(describe(i), generation=2, timestamp="2026-12-03T00:00:00Z"), len(fleet)
    )
    validate = fleet_bench.measure(lambda i: validator.validate_str(texts[i]), min(len(fleet), 200))

    def row(name: str, stats: fleet_bench.Stats, base: fleet_bench.Stats | None) -> str:
        cells = f"  {name:<40} {stats.p50:9.1f} {stats.p95:9.1f} {stats.total_ms:10.1f}"
        if base is None:
            return cells
        ratios = (stats.p50 / base.p50, stats.p95 / base.p95, stats.total_ms / base.total_ms)
        return f"{cells}   x{ratios[0]:.1f} / x{ratios[1]:.1f} / x{ratios[2]:.1f}"

    sizes = sorted(len(text) for text in texts)
    components = sorted(len(c.body["components"]) + len(c.body["services"]) for c in contents)
    print(f"joch AgBOM benchmark (Python {sys.version.split()[0]}, one thread, seed {fleet_bench.SEED})")
    print(
        f"fleet: {len(fleet)} agents; document {sizes[len(sizes) // 2]} bytes and "
        f"{components[len(components) // 2]} components (median)"
    )
    header = f"{'per agent':<40} {'p50 us':>9} {'p95 us':>9} {'total ms':>10}"
    print(f"\n  {header}   ratio to baseline (p50 / p95 / total)")
    print(row("describe (content + hash)", described, baseline))
    print(row("describe + render (CycloneDX JSON)", whole, baseline))
    print(row("baseline: gather + compile_agent", baseline, None))
    print(row("reference: strict schema validation", validate, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
