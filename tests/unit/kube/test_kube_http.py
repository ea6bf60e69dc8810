"""joch.kube.client's transport against a local HTTP server (aiohttp.web on 127.0.0.1, no Kubernetes).

Cases: a request sends JSON with the configuration's credentials, User-Agent and Accept, and decodes
the answer; error statuses are translated (AlreadyExists, 429 with Retry-After retried); a refused
connection is Unavailable; at most ``Limits.concurrency`` requests are in flight; a stream yields each
non-empty line however the body is chunked, fails a line over ``max_line`` and translates an error
status; after ``aclose`` a request still works (on a connection of its own) and nothing is left open;
``close`` from another thread closes the pools of a running loop; requests go through the
configuration's proxy with its proxy headers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from joch.kube import client, errors

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def configuration(port: int) -> kubernetes.client.Configuration:
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.api_key = {"BearerToken": "sekret"}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    return config


async def serve(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def run(handler: Handler, scenario: Callable[[client.Kube], Awaitable[Any]], limits: client.Limits) -> Any:
    async def main() -> Any:
        runner, port = await serve(handler)
        kube = client.Kube(client.new_api_client(configuration(port)), limits)
        try:
            return await scenario(kube)
        finally:
            await kube.aclose()
            kube.close()
            await runner.cleanup()

    result = asyncio.run(main())
    gc.collect()  # an unclosed session or connector would warn now (warnings are errors here)
    return result


def test_a_request_carries_credentials_and_json_both_ways() -> None:
    seen: list[tuple[str, str, dict[str, str], Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen.append((request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"kind": "ConfigMap", "metadata": {"resourceVersion": "7"}})

    async def scenario(kube: client.Kube) -> Any:
        return await kube.request(
            "PUT", "/api/v1/namespaces/ns/configmaps/x", body={"data": {"k": "v"}}, query={"dryRun": "All"}
        )

    answer = run(handler, scenario, client.Limits())
    assert answer == {"kind": "ConfigMap", "metadata": {"resourceVersion": "7"}}
    [(method, path, headers, body)] = seen
    assert (method, path, body) == (
        "PUT",
        "/api/v1/namespaces/ns/configmaps/x?dryRun=All",
        {"data": {"k": "v"}},
    )
    assert headers["Authorization"] == "Bearer sekret"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("joch-operator/")


def test_statuses_are_translated_and_429_is_retried_after_its_delay() -> None:
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if request.path == "/exists":
            return web.json_response(
                {"kind": "Status", "reason": "AlreadyExists", "message": "x"}, status=409
            )
        if len(calls) == 2:
            return web.json_response({"kind": "Status", "reason": "TooManyRequests"}, status=429,
                                     headers={"Retry-After": "0"})  # fmt: skip
        return web.json_response({"ok": True})

    async def scenario(kube: client.Kube) -> Any:
        with pytest.raises(errors.AlreadyExists, match="POST /exists"):
            await kube.request("POST", "/exists", body={})
        answer = await kube.request("GET", "/slow")
        return answer, dict(kube.counts)

    answer, counts = run(handler, scenario, client.Limits(max_retry_after=0.01))
    assert answer == {"ok": True}
    assert calls == ["/exists", "/slow", "/slow"]
    assert counts["throttled"] == 1
    assert counts["retried"] == 1


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        async def scenario() -> None:
            kube = client.Kube(client.new_api_client(configuration(port)), client.Limits(max_retries=0))
            try:
                with pytest.raises(errors.Unavailable, match="GET /x"):
                    await kube.request("GET", "/x")
            finally:
                await kube.aclose()
                kube.close()

        asyncio.run(scenario())


def test_at_most_concurrency_requests_are_in_flight() -> None:
    in_flight = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({})

    async def scenario(kube: client.Kube) -> None:
        await asyncio.gather(*(kube.request("GET", f"/x/{i}") for i in range(30)))

    run(handler, scenario, client.Limits(concurrency=3))
    assert peak == 3


async def chunked_body(request: web.Request) -> web.StreamResponse:
    if request.query.get("fail"):
        return web.json_response({"kind": "Status", "code": 410, "reason": "Expired"}, status=410)
    response = web.StreamResponse()
    await response.prepare(request)
    lines = [json.dumps({"n": n}) for n in range(5)]
    body = ("\n\n".join(lines) + "\n" + ("x" * 300 if request.query.get("long") else "")).encode()
    for start in range(0, len(body), 7):  # odd chunks: lines split across reads
        await response.write(body[start : start + 7])
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def read_lines(kube: client.Kube, **query: str) -> list[bytes]:
    async with kube.stream(
        "/watch", query=query, accept="application/json", read_timeout=5, max_line=100
    ) as lines:
        return [line async for line in lines]


def test_a_stream_yields_each_line_whatever_the_chunks() -> None:
    async def scenario(kube: client.Kube) -> list[bytes]:
        return await read_lines(kube)

    lines = run(chunked_body, scenario, client.Limits())
    assert [json.loads(line) for line in lines] == [{"n": n} for n in range(5)]


def test_a_stream_fails_an_overlong_line_and_translates_statuses() -> None:
    async def scenario(kube: client.Kube) -> None:
        with pytest.raises(errors.ServerError, match="a line longer than 100 bytes"):
            await read_lines(kube, long="1")
        with pytest.raises(errors.KubeError, match="WATCH /watch") as gone:
            await read_lines(kube, fail="1")
        assert gone.value.status == 410

    run(chunked_body, scenario, client.Limits())


def test_after_aclose_requests_still_work_on_a_connection_of_their_own() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    async def scenario(kube: client.Kube) -> Any:
        await kube.request("GET", "/before")
        await kube.aclose()
        return await kube.request("GET", "/after"), len(kube._sessions)

    answer, pools = run(handler, scenario, client.Limits())
    assert answer == {"path": "/after"}
    assert pools == 0, "the one-off session was not pooled"


def test_close_from_another_thread_closes_a_running_loops_pools() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        runner, port = asyncio.run_coroutine_threadsafe(serve(handler), loop).result(5)
        kube = client.Kube(client.new_api_client(configuration(port)))
        asyncio.run_coroutine_threadsafe(kube.request("GET", "/x"), loop).result(5)
        [session] = kube._sessions.values()
        kube.close()
        assert session.closed
        assert not kube._sessions
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    gc.collect()


def test_tls_files_that_cannot_be_read_are_a_config_error(tmp_path: Any) -> None:
    config = configuration(1)
    config.host = "https://127.0.0.1:1"
    config.ssl_ca_cert = str(tmp_path / "missing-ca.crt")

    async def scenario() -> None:
        kube = client.Kube(client.new_api_client(config), client.Limits(max_retries=0))
        try:
            with pytest.raises(errors.ConfigError, match="cannot load the client's TLS files"):
                await kube.request("GET", "/x")
        finally:
            await kube.aclose()
            kube.close()

    asyncio.run(scenario())


def test_the_configurations_proxy_and_its_headers_are_used() -> None:
    seen: list[tuple[str, str | None]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((request.raw_path, request.headers.get("Proxy-Authorization")))
        return web.json_response({"via": "proxy"})

    async def main() -> Any:
        runner, port = await serve(proxy)
        config = configuration(9)  # the API server's own address is never dialled: the proxy answers
        config.proxy = f"http://127.0.0.1:{port}"
        config.proxy_headers = {"Proxy-Authorization": "Basic dXNlcjpwdw=="}
        kube = client.Kube(client.new_api_client(config), client.Limits(max_retries=0))
        try:
            return await kube.request("GET", "/api/v1/namespaces")
        finally:
            await kube.aclose()
            kube.close()
            await runner.cleanup()

    assert asyncio.run(main()) == {"via": "proxy"}
    assert seen == [("http://127.0.0.1:9/api/v1/namespaces", "Basic dXNlcjpwdw==")]
