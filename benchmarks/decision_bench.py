"""Decision service benchmark: what the service adds on top of the policy engine, in process and over HTTP.

Run: ``python benchmarks/decision_bench.py`` (about 20 s). One thread; each figure is printed next to
a baseline measured in the same run, with the ratio figure / baseline (p95 against p95, mean against
mean for the one-off costs). Lower is better.

Workload: policy_bench.py's fleet (N policies in 10 team namespaces, selectors on team/env, 3-5
structured rules, one in ten with a CEL rule) and its 256 decision contexts, fed to a
``DecisionService`` as watch events would be.

Figures and baselines:
- ``service.decide`` (request already parsed) against ``PolicySet.decide`` on the same set: the
  service's own work (bound policies, invalid policies, the Environment lookup);
- ``parse_request`` + ``decide`` against ``decide``: the cost of checking the request's shape;
- ``POST /v1/policy/evaluate`` over loopback HTTP (aiohttp client and server, keep-alive, one request
  at a time) against a POST to a handler that returns a constant JSON body on the same stack: the
  floor any aiohttp endpoint pays;
- one Policy event with a new generation, then the first decision (compile + index rebuild), against
  a decision alone.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import sys
import time
from typing import Any

from aiohttp import ClientSession, web
from policy_bench import Stats, make_contexts, make_policies, measure, print_table

from joch.decision_service import endpoint, requests
from joch.decision_service.service import DecisionService

NOW = datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC)
SIZES = (100, 1000)


def policy_body(namespace: str, name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "generation": generation,
            "uid": f"{namespace}/{name}",
        },
        "spec": spec,
    }


def loaded_service(n: int) -> tuple[DecisionService, list[dict[str, Any]], list[dict[str, Any]]]:
    specs, keys = make_policies(n)
    bodies = [policy_body(ns, name, spec) for spec, (ns, name) in zip(specs, keys, strict=True)]
    service = DecisionService()
    service.load(bodies, [])
    return service, bodies, make_contexts(n)


def bench_in_process(n: int) -> list[tuple[str, Stats, str, Stats, str]]:
    service, bodies, contexts = loaded_service(n)
    count = len(contexts)
    parsed = [requests.parse_request({"context": c}) for c in contexts]
    requests_json = [{"context": c} for c in contexts]
    policies = service.policy_set()
    engine = measure(lambda i: policies.decide(contexts[i % count], now=NOW), samples=20_000, warmup=2_000)
    decided = measure(lambda i: service.decide(parsed[i % count], now=NOW), samples=20_000, warmup=2_000)
    checked = measure(
        lambda i: service.decide(requests.parse_request(requests_json[i % count]), now=NOW), samples=20_000
    )

    generation = iter(range(2, 10**9))
    target = bodies[len(bodies) // 2]

    def change_then_decide(i: int) -> object:
        body = {**target, "metadata": {**target["metadata"], "generation": next(generation)}}
        service.observe_policy("MODIFIED", body)
        return service.decide(parsed[i % count], now=NOW)

    changed = measure(change_then_decide, samples=300 if n >= 1000 else 1_000, warmup=20)
    return [
        (f"service.decide, {n} policies", decided, "PolicySet.decide", engine, "p95"),
        (f"parse_request + service.decide, {n} policies", checked, "PolicySet.decide", engine, "p95"),
        (f"Policy event (new generation) + decide, {n}", changed, "PolicySet.decide", engine, "mean"),
    ]


async def http_series(url: str, bodies: list[bytes], samples: int, warmup: int) -> Stats:
    headers = {"Content-Type": "application/json"}
    timer = time.perf_counter_ns
    out: list[int] = []
    async with ClientSession() as session:
        for i in range(warmup + samples):
            body = bodies[i % len(bodies)]
            start = timer()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            if i >= warmup:
                out.append(timer() - start)
    return Stats.of(out)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def bench_http(n: int) -> tuple[str, Stats, str, Stats, str]:
    service, _, contexts = loaded_service(n)
    bodies = [json.dumps({"context": c}).encode() for c in contexts]
    constant = json.dumps({"decision": "allow", "reason": "no rule matched"}).encode()

    async def floor(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=constant, content_type="application/json")

    trivial = web.Application()
    trivial.router.add_post("/", floor)
    runners = []
    try:
        runner, service_url = await serve(endpoint.build_app(service))
        runners.append(runner)
        runner, floor_url = await serve(trivial)
        runners.append(runner)
        gc.collect()
        figure = await http_series(service_url + endpoint.EVALUATE_PATH, bodies, samples=3_000, warmup=300)
        baseline = await http_series(floor_url + "/", bodies, samples=3_000, warmup=300)
    finally:
        for runner in runners:
            await runner.cleanup()
    return (f"POST /v1/policy/evaluate, {n} policies", figure, "aiohttp constant JSON", baseline, "p95")


def main() -> int:
    print("Decision service benchmark (one thread; times in microseconds)")
    for n in SIZES:
        print_table(f"{n} policies, in process", bench_in_process(n))
    print_table("loopback HTTP, sequential requests, keep-alive", [asyncio.run(bench_http(100))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
