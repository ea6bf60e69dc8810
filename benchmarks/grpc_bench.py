"""gRPC benchmark: decision latency over gRPC (unary and a bidirectional stream) against HTTP JSON.

Run: ``python benchmarks/grpc_bench.py [--samples 2400] [--rounds 3] [--policies 100]`` (under two
minutes; the first run also builds the compiled client, below, which needs ``go`` and, once, the Go
module proxy). Each figure is printed next to the HTTP JSON baseline measured in the same run by the
same kind of client, with the ratio figure / baseline (lower is better).

The servers run in a process of their own (``--serve``, one event loop), so the clients' loop does not
share a core or the GIL with the server's: one ``DecisionService`` loaded with policy_bench.py's fleet
(``--policies`` policies in 10 team namespaces, 3-5 structured rules each, one in ten with a CEL rule),
served both by the HTTP endpoint (joch.decision_service.endpoint.build_app, ``POST /v1/policy/evaluate``)
and by a ``GrpcServer`` (joch.grpc.server: PolicyService, ext_authz) on 127.0.0.1, both behind the same
``CallerGate(None, reviewer)`` whose reviewer is a local function (no kube): every request carries the
same bearer token, so authentication costs both faces one cache hit.

Clients (this process, one event loop; each client has its own connection): aiohttp (keep-alive
session per client, the JSON body pre-encoded, the answer parsed), grpc.aio unary ``Decide`` (typed
messages, one channel per client), grpc.aio ``DecideStream`` (one stream per client, one request in
flight at a time: write, read the answer, so each figure is a round-trip latency, not throughput), and
Envoy's ext_authz ``Check`` (a CheckRequest as Envoy builds it: lower-case headers with the pseudo-
headers, the agent and tool in x-joch-* headers, the rest of the context in the filter metadata an
earlier filter would set). 256 decision contexts from policy_bench.py (mostly allowed read-only calls,
some approvals and denies); every way is checked to give the same decisions before it is timed.

The Python clients cost about as much as the server (a bare grpc.aio stream round trip is ~450 us,
aiohttp's ~590 us on a 2-CPU machine), so the same ways are also timed by a compiled client, as a
gateway (Envoy, agentgateway, a Go proxy) would send them: benchmarks/loadclient, a Go program (net/http
with a Transport of its own per client; grpc-go, a ``grpc.NewClient`` connection per client) that sends
the same 256 contexts, serialized here (JSON bodies, DecideRequests, CheckRequests, written to files of
length-prefixed records), through a pass-through codec, and reads each answer's decision. It is built
once per source into ``~/.cache/joch/bench/loadclient-<sha256 of go.mod, go.sum, main.go>``; without
``go`` on PATH (or if the build fails) its rows are skipped and a line says why. It runs one process
per measurement, in the same rounds as the Python clients (each of its ways right after the Python
client's, in the same rotating order), and its samples are pooled the same way.

At 1 and 16 concurrent clients, ``--rounds`` rounds with the ways in a rotating order (so all see the
same machine load), ``--samples`` timed requests per way and client count in all (after a warm-up):
p50 and p99 of each way against HTTP JSON's, in two tables: "Python clients" (aiohttp, grpc.aio) and
"compiled client (Go)". Rows, per client count: HTTP JSON (``POST /v1/policy/evaluate``, the baseline),
gRPC unary (``Decide``), gRPC stream (``DecideStream``, one per client, one request in flight); then,
p50 only, the floors of the three server stacks with the same clients (an aiohttp handler and grpc.aio
Decide / DecideStream handlers answering a constant Decision, no token check, no decision), to tell the
stack's cost from joch's; then ext_authz ``Check`` at 16 clients, p50 and p99 against HTTP JSON's and
p99 against unary Decide's. Targets: DecideStream p50 <= 0.5x HTTP JSON at each client count, judged
for each client kind ("target met" / "target missed"), and ext_authz Check p99 at 16 clients. The exit
code is 0 whether or not a target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import grpc
from aiohttp import ClientSession, TCPConnector, web
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import json_format
from policy_bench import make_contexts, make_policies

from joch.decision_service import endpoint
from joch.decision_service.callers import CallerGate, Review
from joch.decision_service.service import DecisionService
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2, policy_service_pb2_grpc
from joch.grpc.server import GrpcServer, GrpcSettings

TOKEN = "bench-gateway-token"
USER = "system:serviceaccount:bench:gateway"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
CLIENTS = (1, 16)
WARMUP = 50  # untimed calls per client first (each connection set up, caches warm)
TARGET_STREAM_P50 = 0.5
EFFECTS = {
    decision_pb2.EFFECT_ALLOW: "allow",
    decision_pb2.EFFECT_DENY: "deny",
    decision_pb2.EFFECT_MODIFY: "modify",
}
WAYS = ("HTTP JSON", "gRPC unary", "gRPC stream", "ext_authz Check")
FLOORS = ("HTTP floor", "gRPC unary floor", "gRPC stream floor")
GO = "Go "  # the compiled client's ways: "Go " + a way or floor above
LOADCLIENT = pathlib.Path(__file__).resolve().parent / "loadclient"


def policy_body(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"namespace": namespace, "name": name, "generation": 1, "uid": f"{namespace}/{name}"},
        "spec": spec,
    }


# --- the server process ---------------------------------------------------------------------------------


async def serve(policies: int) -> None:
    specs, keys = make_policies(policies)
    service = DecisionService()
    service.load([policy_body(ns, name, spec) for spec, (ns, name) in zip(specs, keys, strict=True)], [])

    async def review(token: str) -> Review:
        return Review(authenticated=token == TOKEN, username=USER if token == TOKEN else "")

    gate = CallerGate(None, review, ttl=24 * 3600)
    runner = web.AppRunner(endpoint.build_app(service, callers=gate), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = GrpcServer(service, GrpcSettings(host="127.0.0.1", port=0), gate=gate)
    await server.start()
    floor_runner, floor_server = await floors()
    gc.collect()
    gc.freeze()
    ports = {
        "http": runner.addresses[0][1],
        "grpc": server.port,
        "http_floor": floor_runner.addresses[0][1],
        "grpc_floor": floor_server.port,
    }
    print(json.dumps(ports), flush=True)
    try:
        # Until the parent closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await server.stop(0)
        await floor_server.stop(0)
        await runner.cleanup()
        await floor_runner.cleanup()
    print(json.dumps({"reviews": gate.reviews}), flush=True)


class _Floor:
    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self.server, self.port = server, port

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)


async def floors() -> tuple[web.AppRunner, _Floor]:
    """The floors any server on these stacks pays: an aiohttp handler answering a constant Decision's
    JSON, and grpc.aio Decide / DecideStream handlers answering a constant DecideResponse (raw bytes
    both ways, no token check, no decision)."""
    constant = json.dumps({"decision": "allow", "reason": "no rule matched"}).encode()
    answer = policy_service_pb2.DecideResponse(
        request_id="r0",
        decision=decision_pb2.Decision(decision=decision_pb2.EFFECT_ALLOW, reason="no rule matched"),
    ).SerializeToString()

    async def floor(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=constant, content_type="application/json")

    app = web.Application()
    app.router.add_post(endpoint.EVALUATE_PATH, floor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()

    async def unary(raw: bytes, context: Any) -> bytes:
        return answer

    async def stream(messages: Any, context: Any) -> Any:
        async for _ in messages:
            yield answer

    handler = grpc.method_handlers_generic_handler(
        "joch.v1.PolicyService",
        {
            "Decide": grpc.unary_unary_rpc_method_handler(unary),
            "DecideStream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return runner, _Floor(server, port)


# --- the requests ---------------------------------------------------------------------------------------


def typed_context(context: dict[str, Any]) -> decision_pb2.DecisionContext:
    """``context`` (the JSON shape) as the typed message a gateway would build."""
    plain = copy.deepcopy(context)
    allowed = plain.get("environment", {}).pop("allowedProviders", None)
    message = json_format.ParseDict(plain, decision_pb2.DecisionContext())
    if allowed is not None:
        message.environment.allowed_providers.values.extend(allowed)
    return message


def check_request(context: dict[str, Any]) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter sends it for ``context``'s tool call."""
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.id = "4711"
    http.method = "POST"
    http.path = "/mcp"
    http.host = "tools.internal"
    http.scheme = "https"
    http.protocol = "HTTP/1.1"
    http.headers.update(
        {
            ":method": "POST",
            ":path": "/mcp",
            ":authority": "tools.internal",
            ":scheme": "https",
            "content-type": "application/json",
            "user-agent": "agent-runtime/1.4",
            "x-request-id": "9f1c2a7e-0b6d-4e55-8f0a-6c2d1e3b4a59",
            "x-joch-agent": context["agent"]["name"],
            "x-joch-agent-namespace": context["agent"]["namespace"],
            "x-joch-tool": context["tool"]["name"],
        }
    )
    request.attributes.source.address.socket_address.address = "10.0.0.7"
    request.attributes.source.address.socket_address.port_value = 51234
    request.attributes.destination.address.socket_address.address = "10.0.0.9"
    request.attributes.destination.address.socket_address.port_value = 8443
    rest = {k: v for k, v in context.items() if k not in ("agent", "tool", "payload")}
    rest["agent"] = {"labels": context["agent"]["labels"], "version": context["agent"]["version"]}
    rest["tool"] = {k: v for k, v in context["tool"].items() if k != "name"}
    request.attributes.metadata_context.filter_metadata["joch"].update(rest)
    return request


def check_effect(response: external_auth_pb2.CheckResponse) -> str:
    """``x-joch-decision`` of the answer: allow, modify, deny or approval-required."""
    answer = response.ok_response if response.status.code == 0 else response.denied_response
    headers = {h.header.key: h.header.value for h in answer.headers}
    return headers.get("x-joch-decision", "?")


def as_check(effect: str) -> str:
    """What ext_authz answers for a decision ``effect`` (an approval waits: approval-required)."""
    return "approval-required" if effect.endswith("+approval") else effect


# --- the clients ----------------------------------------------------------------------------------------

Call = Callable[[int], Awaitable[str]]
Client = contextlib.AbstractAsyncContextManager[Call]


@contextlib.asynccontextmanager
async def http_client(url: str, bodies: list[bytes]):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    async with ClientSession(connector=TCPConnector(limit=1)) as session:

        async def call(i: int) -> str:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as response:
                answer = json.loads(await response.read())
                assert response.status == 200, (response.status, answer)
            return str(answer["decision"]) + (
                "+approval" if (answer.get("requires") or {}).get("approval") else ""
            )

        yield call


def channel(port: int) -> grpc.aio.Channel:
    # A connection of its own per client, like the HTTP clients' keep-alive connections.
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])


def effect_of(answer: policy_service_pb2.DecideResponse) -> str:
    assert answer.WhichOneof("result") == "decision", answer
    decision = answer.decision
    return EFFECTS[decision.decision] + ("+approval" if decision.requires.HasField("approval") else "")


@contextlib.asynccontextmanager
async def unary_client(port: int, messages: list[policy_service_pb2.DecideRequest]):  # type: ignore[no-untyped-def]
    async with channel(port) as ch:
        stub = policy_service_pb2_grpc.PolicyServiceStub(ch)

        async def call(i: int) -> str:
            return effect_of(await stub.Decide(messages[i % len(messages)], metadata=AUTH))

        yield call


@contextlib.asynccontextmanager
async def stream_client(port: int, messages: list[policy_service_pb2.DecideRequest]):  # type: ignore[no-untyped-def]
    async with channel(port) as ch:
        stub = policy_service_pb2_grpc.PolicyServiceStub(ch)
        stream = stub.DecideStream(metadata=AUTH)

        async def call(i: int) -> str:
            await stream.write(messages[i % len(messages)])
            return effect_of(await stream.read())

        try:
            yield call
        finally:
            await stream.done_writing()
            assert await stream.read() is grpc.aio.EOF
            assert await stream.code() == grpc.StatusCode.OK


@contextlib.asynccontextmanager
async def check_client(port: int, checks: list[external_auth_pb2.CheckRequest]):  # type: ignore[no-untyped-def]
    async with channel(port) as ch:
        stub = external_auth_pb2_grpc.AuthorizationStub(ch)

        async def call(i: int) -> str:
            return check_effect(await stub.Check(checks[i % len(checks)], metadata=AUTH))

        yield call


# --- the compiled client (benchmarks/loadclient, Go) -----------------------------------------------------


def build_loadclient() -> tuple[pathlib.Path | None, str]:
    """The compiled client, built once per source (go.mod, go.sum, main.go), or None and why not."""
    go = shutil.which("go")
    if go is None:
        return None, "go is not on PATH"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((LOADCLIENT / name).read_bytes())
    binary = pathlib.Path.home() / ".cache" / "joch" / "bench" / f"loadclient-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary, f"{binary} (cached)"
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    built = subprocess.run(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(partial), "."],
        cwd=LOADCLIENT,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = (built.stderr or built.stdout).strip().splitlines() or ["no output"]
        return None, f"go build failed ({built.returncode}): {lines[-1]}"
    partial.replace(binary)
    return binary, f"{binary} (built)"


def write_records(path: pathlib.Path, records: list[bytes]) -> pathlib.Path:
    """loadclient's -input: each record as a 4-byte big-endian length and the bytes."""
    path.write_bytes(b"".join(len(r).to_bytes(4, "big") + r for r in records))
    return path


class GoClient:
    """Runs the compiled client: one process per measurement, its own connections, its own timer."""

    def __init__(self, binary: pathlib.Path, workdir: pathlib.Path) -> None:
        self.binary, self.raw = binary, workdir / "samples.bin"

    def run(self, mode: str, target: str, records: pathlib.Path, *extra: str) -> dict[str, Any]:
        command = [str(self.binary), "-mode", mode, "-target", target, "-input", str(records)]
        command += ["-token", TOKEN, *extra]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"loadclient {mode} failed ({done.returncode}): {done.stderr.strip()}")
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        assert result.get("errors", 0) == 0, result
        return result

    def answers(self, mode: str, target: str, records: pathlib.Path) -> list[str]:
        return list(self.run(mode, target, records, "-verify")["answers"])

    async def timed(
        self, mode: str, target: str, records: pathlib.Path, clients: int, samples: int
    ) -> list[int]:
        """``samples`` timed requests in all from ``clients`` clients (after WARMUP each), in ns."""
        extra = ("-clients", str(clients), "-samples", str(samples), "-warmup", str(WARMUP))
        await asyncio.to_thread(self.run, mode, target, records, *extra, "-raw", str(self.raw))
        data = self.raw.read_bytes()
        return [int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)]


async def run_clients(make: Callable[[], Client], clients: int, per_client: int) -> list[int]:
    """``clients`` clients, each ``WARMUP`` untimed calls then ``per_client`` timed ones, one at a time."""
    timer = time.perf_counter_ns
    start = asyncio.Event()
    ready = 0

    async def one(offset: int) -> list[int]:
        nonlocal ready
        out: list[int] = []
        async with make() as call:
            for i in range(WARMUP):
                await call(offset + i)
            ready += 1
            if ready == clients:
                start.set()
            await start.wait()
            for i in range(per_client):
                began = timer()
                await call(offset + WARMUP + i)
                out.append(timer() - began)
        return out

    results = await asyncio.gather(*(one(37 * c) for c in range(clients)))
    return [sample for result in results for sample in result]


def pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def row(label: str, value: float, baseline: float | None, unit: str = "us") -> str:
    ratio = f"{value / baseline:6.2f}x" if baseline else ""
    base = f"HTTP JSON {baseline:9.1f} {unit}" if baseline else ""
    return f"  {label:<44} {value:9.1f} {unit}   {base:<24} {ratio}"


async def bench(
    ports: dict[str, int],
    samples: int,
    rounds: int,
    policies: int,
    *,
    go: GoClient | None,
    workdir: pathlib.Path,
) -> None:
    contexts = make_contexts(policies)
    bodies = [json.dumps({"context": c}).encode() for c in contexts]
    messages = [
        policy_service_pb2.DecideRequest(context=typed_context(c), request_id=f"r{i}")
        for i, c in enumerate(contexts)
    ]
    checks = [check_request(c) for c in contexts]
    url = f"http://127.0.0.1:{ports['http']}{endpoint.EVALUATE_PATH}"
    makers: dict[str, Callable[[], Client]] = {
        "HTTP JSON": lambda: http_client(url, bodies),
        "gRPC unary": lambda: unary_client(ports["grpc"], messages),
        "gRPC stream": lambda: stream_client(ports["grpc"], messages),
        "ext_authz Check": lambda: check_client(ports["grpc"], checks),
        "HTTP floor": lambda: http_client(
            f"http://127.0.0.1:{ports['http_floor']}{endpoint.EVALUATE_PATH}", bodies
        ),
        "gRPC unary floor": lambda: unary_client(ports["grpc_floor"], messages),
        "gRPC stream floor": lambda: stream_client(ports["grpc_floor"], messages),
    }
    # The compiled client's ways: its mode, target and input (the same bodies and messages, serialized).
    http_in = write_records(workdir / "http.bin", bodies)
    decide_in = write_records(workdir / "decide.bin", [m.SerializeToString() for m in messages])
    check_in = write_records(workdir / "check.bin", [c.SerializeToString() for c in checks])
    grpc_at, floor_at = f"127.0.0.1:{ports['grpc']}", f"127.0.0.1:{ports['grpc_floor']}"
    floor_url = f"http://127.0.0.1:{ports['http_floor']}{endpoint.EVALUATE_PATH}"
    go_ways: dict[str, tuple[str, str, pathlib.Path]] = {
        GO + "HTTP JSON": ("http", url, http_in),
        GO + "gRPC unary": ("unary", grpc_at, decide_in),
        GO + "gRPC stream": ("stream", grpc_at, decide_in),
        GO + "ext_authz Check": ("check", grpc_at, check_in),
        GO + "HTTP floor": ("http", floor_url, http_in),
        GO + "gRPC unary floor": ("unary", floor_at, decide_in),
        GO + "gRPC stream floor": ("stream", floor_at, decide_in),
    }

    # The same decisions every way (ext_authz: allow or deny, approvals are a deny there).
    effects: dict[str, list[str]] = {}
    for way in WAYS:
        async with makers[way]() as call:
            effects[way] = [await call(i) for i in range(len(contexts))]
    http = effects["HTTP JSON"]
    assert effects["gRPC unary"] == http, "unary Decide disagrees with HTTP"
    assert effects["gRPC stream"] == http, "DecideStream disagrees with HTTP"
    counts = {e: http.count(e) for e in sorted(set(http))}
    print(f"  {len(contexts)} contexts, same decisions over HTTP, unary and stream: {counts}")
    answered = effects["ext_authz Check"]
    mismatched = sum(1 for h, c in zip(http, answered, strict=True) if as_check(h) != c)
    checked = {e: answered.count(e) for e in sorted(set(answered))}
    print(
        f"  ext_authz answers {checked}; {mismatched} differ from HTTP's decision (payload: method/path/host)"
    )
    if go is not None:
        for way in WAYS:
            mode, target, records = go_ways[GO + way]
            expected = answered if way == "ext_authz Check" else http
            assert go.answers(mode, target, records) == expected, f"the Go client's {way} disagrees"
        print("  the compiled client (Go) gets the same answers, every way")

    timings: dict[tuple[str, int], list[int]] = {}
    # Each Python way next to the compiled client's, the order rotated by a share of it each round.
    ways = WAYS + FLOORS
    if go is not None:
        ways = tuple(w for way in ways for w in (way, GO + way))
    for r in range(rounds):
        for clients in CLIENTS:
            shift = r * len(ways) // rounds
            order = ways[shift:] + ways[:shift]
            for way in order:
                if way.endswith("ext_authz Check") and clients != 16:
                    continue
                per_client = max(1, samples // rounds // clients)
                gc.collect()
                if way in go_ways:
                    assert go is not None
                    got = await go.timed(*go_ways[way], clients, per_client * clients)
                else:
                    got = await run_clients(makers[way], clients, per_client)
                timings.setdefault((way, clients), []).extend(got)

    print("\nPython clients (aiohttp, grpc.aio)")
    verdicts = {"Python clients": report(timings, "")}
    if go is not None:
        print("\ncompiled client (Go, benchmarks/loadclient: net/http, grpc-go, pre-serialized messages)")
        verdicts["compiled client (Go)"] = report(timings, GO)
    print()
    for kind, met in verdicts.items():
        print(
            f"  stream p50 <= {TARGET_STREAM_P50}x HTTP, {kind}: {'target met' if met else 'target missed'}"
        )


def report(timings: dict[tuple[str, int], list[int]], prefix: str) -> bool:
    """The table of one client kind (``prefix``: its ways' prefix); whether stream p50 <= 0.5x HTTP at
    each client count."""

    def of(way: str, clients: int) -> list[int]:
        return timings[(prefix + way, clients)]

    verdicts = []
    for clients in CLIENTS:
        base = of("HTTP JSON", clients)
        print(
            f"{clients} client{'s' if clients > 1 else ''}, {len(base)} timed requests per way "
            "(one at a time each)"
        )
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            print(row(f"HTTP JSON POST /v1/policy/evaluate {name}", pct(base, q), None))
            for way in ("gRPC unary", "gRPC stream"):
                print(row(f"{way} {name}", pct(of(way, clients), q), pct(base, q)))
        floor = {way: pct(of(way, clients), 0.5) for way in FLOORS}
        print(
            "     floors p50 (same clients, constant answers, no token check): "
            + ", ".join(f"{way} {value:.1f} us" for way, value in floor.items())
        )
        ratio = pct(of("gRPC stream", clients), 0.5) / pct(base, 0.5)
        met = ratio <= TARGET_STREAM_P50
        verdicts.append(met)
        print(
            f"     target stream p50 <= {TARGET_STREAM_P50}x HTTP at {clients}: {ratio:.2f}x, "
            f"{'target met' if met else 'target missed'}"
        )
    checks_16 = of("ext_authz Check", 16)
    print(f"ext_authz Check, 16 clients, {len(checks_16)} timed requests")
    print(row("ext_authz Check p50", pct(checks_16, 0.5), pct(of("HTTP JSON", 16), 0.5)))
    print(row("ext_authz Check p99", pct(checks_16, 0.99), pct(of("HTTP JSON", 16), 0.99)))
    unary = pct(of("gRPC unary", 16), 0.99)
    print(f"     against gRPC unary Decide p99 {unary:.1f} us: {pct(checks_16, 0.99) / unary:.2f}x")
    return all(verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2400, help="timed requests per way and client count")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.policies))
        return 0
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    began = time.monotonic()
    print(f"grpc_bench: load {load} at the start; {args.policies} policies; times in microseconds")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--policies", str(args.policies)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"the server process exited ({server.wait()})")
        ports = json.loads(line)
        binary, why = build_loadclient()
        if binary is None:
            print(f"  compiled-client (Go) rows skipped: {why}")
        else:
            print(f"  compiled client: {why}")
        with tempfile.TemporaryDirectory(prefix="grpc_bench-") as workdir:
            go = GoClient(binary, pathlib.Path(workdir)) if binary is not None else None
            asyncio.run(
                bench(ports, args.samples, args.rounds, args.policies, go=go, workdir=pathlib.Path(workdir))
            )
    finally:
        server.stdin.close()
        tail = server.stdout.read()
        server.wait(timeout=10)
    reviews = json.loads(tail.splitlines()[-1])["reviews"] if tail.strip() else "?"
    load = pathlib.Path("/proc/loadavg").read_text().split()[0]
    print(f"\n  TokenReviews the shared gate sent: {reviews}")
    print(f"load {load} at the end; {time.monotonic() - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
