"""Safety-resync benchmark: the cost of one resync pass over a converged fleet of 1,000 and 10,000 Agents.

Run: ``python benchmarks/resync_bench.py [--agents 1000,10000]`` (about a minute). In-process: the
operator's Controller over an in-memory API server (the unit tests' FakeKube), so that the figure is the
pass itself and nothing else: a resync reads only the cache and, over a converged fleet, sends no
request. For each fleet size the Controller is started and settled (every Agent compiled, ConfigMap and
status written), then measured, each figure next to baselines measured in the same run:

- figure: ``Controller.resync()``, one pass re-deriving every Agent's compile, ConfigMap, dependencies
  and status and every referenced object's status from the cache: CPU seconds, wall seconds, requests
  sent (must be 0) and keys queued (must be 0);
- primary baseline: one pass that only iterates the cache (every stored entry, its status decoded);
- reference: ``gather`` + ``compile_agent`` of every Agent alone (what a resync must at least compute).

The Agents are copies of examples/ support-triage (all sharing one set of referenced objects); the
resync period is 10 minutes by default, so a pass of a few seconds costs well under 1% of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from joch.api.v1alpha1.agent import Agent  # noqa: E402
from joch.controllers.reconciler import Controller, ControllerConfig  # noqa: E402
from joch.domain import compilation  # noqa: E402
from joch.domain.settings import OperatorSettings  # noqa: E402
from tests import helpers  # noqa: E402
from tests.fake_kube import FakeKube  # noqa: E402

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def fleet(count: int) -> FakeKube:
    """examples/ plus ``count`` copies of its Agent in the same namespace."""
    kube = FakeKube()
    docs = helpers.example_documents()
    template = next(d for d in docs if d["kind"] == "Agent")
    for doc in docs:
        if doc["kind"] != "Agent":
            kube.put(*_where(doc), doc)
    for number in range(count):
        agent = copy.deepcopy(template)
        agent["metadata"]["name"] = f"agent-{number:05d}"
        # zendesk.create-ticket's safety floor admits only support-triage (examples/30-tools.yaml).
        agent["spec"]["tools"] = [t for t in agent["spec"]["tools"] if t["name"] != "zendesk.create-ticket"]
        kube.put(*_where(agent), agent)
    return kube


def _where(doc: dict[str, Any]) -> tuple[str, str]:
    from joch.api import v1alpha1

    if doc["apiVersion"] == "v1":
        return "", doc["kind"].lower() + "s"
    kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
    assert kind is not None
    return kind.crd.group, kind.crd.plural


async def settled(kube: FakeKube) -> Controller:
    controller = Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0, resync_period=0, event_rate=1e6, event_burst=10**6),
        clock=lambda: NOW,
    )
    await controller.start()
    for _ in range(10_000):
        await controller.queue.wait_idle()
        await asyncio.sleep(0.01)
        if controller.synced and controller.queue.is_idle():
            break
    await controller.recorder.flush()
    return controller


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of ``work()``."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def iterate_cache(controller: Controller) -> int:
    seen = 0
    for kind in ("Agent", "Model", "ModelRoute", "Tool", "MCPServer", "Memory", "RAG", "FrameworkAdapter"):
        for entry in controller.store.entries(kind):
            seen += len(entry.status)
    for kind in ("Policy", "Environment", "Team"):
        for entry in controller.store.entries(kind):
            seen += len(entry.status)
    return seen


def compile_all(controller: Controller, settings: OperatorSettings) -> int:
    ok = 0
    for entry in controller.store.entries("Agent"):
        agent = entry.load()
        assert isinstance(agent, Agent)
        gathered = compilation.gather(agent, controller.store, settings)
        ok += compilation.compile_agent(gathered, settings, programs=controller.programs).ok
    return ok


def measure(count: int) -> list[str]:
    async def scenario() -> list[str]:
        kube = fleet(count)
        began = time.perf_counter()
        controller = await settled(kube)
        ready = sum(1 for body in kube.of("agents") if (body.get("status") or {}).get("phase") == "Ready")
        assert ready == count, f"only {ready} of {count} Agents are Ready"
        setup = time.perf_counter() - began
        settings = controller.settings

        base_cpu, base_wall, _ = timed(lambda: iterate_cache(controller))
        comp_cpu, comp_wall, compiled = timed(lambda: compile_all(controller, settings))
        assert compiled == count
        sent = len(kube.requests)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        queued = await controller.resync()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        requests = len(kube.requests) - sent
        await controller.stop()
        return [
            f"{count} Agents (converged in {setup:.1f}s):",
            f"  resync pass          cpu {cpu:8.3f}s  wall {wall:8.3f}s  requests {requests}  "
            f"queued {len(queued)}  ({cpu / count * 1e6:.0f} us/Agent)",
            f"  baseline: iterate    cpu {base_cpu:8.3f}s  wall {base_wall:8.3f}s  "
            f"ratio {cpu / max(base_cpu, 1e-9):.0f}x",
            f"  reference: compile   cpu {comp_cpu:8.3f}s  wall {comp_wall:8.3f}s  "
            f"ratio {cpu / max(comp_cpu, 1e-9):.2f}x",
        ]

    return asyncio.run(scenario())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", default="1000,10000", help="comma-separated fleet sizes")
    args = parser.parse_args(argv)
    print("resync_bench: one safety-resync pass over a converged fleet (in-process, in-memory API)")
    failed = False
    for count in (int(part) for part in args.agents.split(",") if part.strip()):
        lines = measure(count)
        print("\n".join(lines), flush=True)
        failed |= " requests 0 " not in lines[1] or " queued 0 " not in lines[1]
    if failed:
        print("FAILED: a resync over a converged fleet sent requests or queued keys", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
