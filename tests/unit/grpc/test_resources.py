"""joch.v1.ResourceService (joch.grpc.resources) over a real grpc.aio server, against a fake kube-apiserver
(aiohttp.web on 127.0.0.1, no Kubernetes).

Cases:
- Get: the caller's token, and nothing else of the operator's credentials, reaches kube-apiserver on the
  REST API's object path; the message's fields come from the object and ``json`` is the bytes sent;
- List: paging with limit and continue (the continue token passed back), the selector passed on, an
  empty namespace lists across namespaces, a namespace for a cluster-scoped kind is ignored;
- Watch: kube-apiserver's events in order (ADDED, MODIFIED, DELETED, then a BOOKMARK with only its
  version), watch=1 with bookmarks asked for; a client resuming from the last event's resource_version
  passes it upstream and gets every later event exactly once;
- an expired position (an ERROR event with code 410) ends the call OUT_OF_RANGE with trailer
  joch-error-code Expired, before or after the first event;
- no token: UNAUTHENTICATED, nothing sent upstream; a token kube-apiserver does not know: UNAUTHENTICATED;
  one RBAC refuses: PERMISSION_DENIED; a missing object: NOT_FOUND;
- bad input is INVALID_ARGUMENT naming the field (garbage bytes, limit and timeout_seconds out of
  range, a missing name or namespace, an invalid name); an unknown kind is NOT_FOUND naming ``kind``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import kubernetes
import pytest
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2

from joch import apiserver
from joch.grpc import errors, resources
from joch.grpc.gen.v1 import resource_service_pb2 as pb

AGENTS = "/apis/joch.dev/v1alpha1/namespaces/support/agents"
GOOD = (("authorization", "Bearer good"),)
TRIAGE_BYTES = (
    b'{"apiVersion": "joch.dev/v1alpha1", "kind": "Agent",\n "metadata": {"name": "triage", '
    b'"namespace": "support", "uid": "u-1", "resourceVersion": "42", "generation": 3}, '
    b'"spec": {"model": "m\\u00e9"}}'
)


def agent(name: str, version: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": name,
            "namespace": "support",
            "uid": f"uid-{name}",
            "resourceVersion": str(version),
            "generation": 1,
        },
        "spec": spec,
    }


# The changes kube-apiserver keeps (resourceVersion > 10); older positions are compacted away.
HISTORY: tuple[dict[str, Any], ...] = (
    {"type": "ADDED", "object": agent("a", 11)},
    {"type": "MODIFIED", "object": agent("a", 12, replicas=2)},
    {"type": "ADDED", "object": agent("b", 13)},
    {"type": "DELETED", "object": agent("a", 14, replicas=2)},
)
BOOKMARK = {
    "type": "BOOKMARK",
    "object": {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"resourceVersion": "15", "annotations": {"k8s.io/initial-events-end": "true"}},
    },
}
EXPIRED = {
    "type": "ERROR",
    "object": {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": "too old resource version: 5 (11)",
        "reason": "Expired",
        "code": 410,
    },
}


@dataclasses.dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )


class FakeKube:
    """kube-apiserver for the tokens good (may read), forbidden (RBAC refuses); any other: 401."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.path, dict(request.query), dict(request.headers)))
        authorization = request.headers.get("Authorization")
        if authorization == "Bearer forbidden":
            return status(403, "Forbidden", f'User "mallory" cannot get resource at {request.path}')
        if authorization != "Bearer good":
            return status(401, "Unauthorized", "Unauthorized")
        if request.query.get("watch") == "1":
            return await self.watch(request)
        return self.read(request)

    def read(self, request: web.Request) -> web.Response:
        if request.path == f"{AGENTS}/triage":
            return web.Response(body=TRIAGE_BYTES, content_type="application/json")
        if request.path in {AGENTS, "/apis/joch.dev/v1alpha1/agents"}:
            return self.page(request)
        if request.path == "/apis/ops.joch.dev/v1alpha1/teams":
            return web.json_response({"kind": "TeamList", "metadata": {"resourceVersion": "9"}, "items": []})
        return status(404, "NotFound", f"the server could not find {request.path}")

    def page(self, request: web.Request) -> web.Response:
        items = [agent(f"agent-{i}", 20 + i) for i in range(3)]
        limit = int(request.query["limit"])
        start = int(request.query.get("continue") or 0)
        metadata: dict[str, str] = {"resourceVersion": "30"}
        if start + limit < len(items):
            metadata["continue"] = str(start + limit)
        # Items of a list come without apiVersion and kind (as for built-in kinds).
        page = [{k: v for k, v in item.items() if k not in {"apiVersion", "kind"}} for item in items]
        body = {"apiVersion": "joch.dev/v1alpha1", "kind": "AgentList", "metadata": metadata}
        return web.json_response({**body, "items": page[start : start + limit]})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        version = request.query.get("resourceVersion") or "10"
        if int(version) < 10:
            lines: Sequence[dict[str, Any]] = [EXPIRED]
        else:
            lines = [
                event
                for event in HISTORY
                if int(event["object"]["metadata"]["resourceVersion"]) > int(version)
            ]
            lines = [*lines, BOOKMARK]
        if request.query.get("labelSelector") == "expires=soon":
            lines = [HISTORY[0], EXPIRED]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\n")
            await asyncio.sleep(0)
        await response.write_eof()
        return response


def configuration(port: int) -> kubernetes.client.Configuration:
    """The operator's configuration, with credentials of its own that must never be sent for a caller."""
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    config.api_key = {"BearerToken": "operator-secret"}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.username = "operator"
    config.password = "operator-password"
    return config


Scenario = Callable[[grpc.aio.Channel, FakeKube], Awaitable[None]]


def run(scenario: Scenario) -> FakeKube:
    fake = FakeKube()

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        callers = apiserver.Callers(configuration(runner.addresses[0][1]))
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((resources.ResourceService(callers).handler(deadline=5),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await scenario(channel, fake)
        finally:
            await server.stop(None)
            await callers.aclose()
            await runner.cleanup()

    asyncio.run(main())
    gc.collect()  # an unclosed session or connector would warn now (warnings are errors here)
    return fake


def get(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{resources.SERVICE}/Get",
        request_serializer=pb.GetRequest.SerializeToString,
        response_deserializer=pb.Resource.FromString,
    )


def list_(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{resources.SERVICE}/List",
        request_serializer=pb.ListRequest.SerializeToString,
        response_deserializer=pb.ListResponse.FromString,
    )


def watch(channel: grpc.aio.Channel) -> Any:
    return channel.unary_stream(
        f"/{resources.SERVICE}/Watch",
        request_serializer=pb.WatchRequest.SerializeToString,
        response_deserializer=pb.WatchEvent.FromString,
    )


def raw_get(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{resources.SERVICE}/Get", request_serializer=None, response_deserializer=None
    )


def trailer(exc: grpc.aio.AioRpcError, key: str) -> Any:
    return dict(exc.trailing_metadata() or ()).get(key)


def violations(exc: grpc.aio.AioRpcError) -> list[str]:
    """The fields the error's BadRequest details name."""
    details = status_pb2.Status.FromString(trailer(exc, errors.DETAILS_TRAILER))
    fields: list[str] = []
    for packed in details.details:
        bad = error_details_pb2.BadRequest()
        if packed.Unpack(bad):
            fields.extend(violation.field for violation in bad.field_violations)
    return fields


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def events(call: Any, into: list[pb.WatchEvent] | None = None) -> list[pb.WatchEvent]:
    """The stream's events (also appended to ``into``, to see those read before an error)."""
    got = [] if into is None else into
    async for event in call:
        got.append(event)
    return got


def test_get_sends_only_the_callers_token_and_answers_the_objects_bytes() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        found = await get(channel)(
            pb.GetRequest(kind="agents", namespace="support", name="triage"), metadata=GOOD
        )
        assert (found.api_version, found.kind, found.namespace, found.name) == (
            "joch.dev/v1alpha1",
            "Agent",
            "support",
            "triage",
        )
        assert (found.uid, found.resource_version, found.generation) == ("u-1", "42", 3)
        assert found.json == TRIAGE_BYTES  # as kube-apiserver sent it, not decoded and encoded again
        again = await get(channel)(
            pb.GetRequest(kind="Agent", namespace="support", name="triage"), metadata=GOOD
        )
        assert again.json == TRIAGE_BYTES

    fake = run(scenario)
    assert [seen.path for seen in fake.seen] == [f"{AGENTS}/triage"] * 2
    for seen in fake.seen:
        assert seen.headers["Authorization"] == "Bearer good"
        credentials = [k for k in seen.headers if k.lower() in {"authorization", "proxy-authorization"}]
        assert credentials == ["Authorization"]
        assert not [k for k in seen.headers if k.lower().startswith("impersonate-")]
        assert "operator-secret" not in json.dumps(seen.headers)
        assert "Basic" not in json.dumps(seen.headers)


def test_list_pages_with_limit_and_continue() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        call = list_(channel)
        first = await call(
            pb.ListRequest(kind="ag", namespace="support", limit=2, label_selector="team=support"),
            metadata=GOOD,
        )
        assert [item.name for item in first.items] == ["agent-0", "agent-1"]
        assert first.continue_token == "2"
        assert first.resource_version == "30"
        item = first.items[0]
        assert (item.api_version, item.kind, item.namespace, item.uid, item.resource_version) == (
            "joch.dev/v1alpha1",
            "Agent",
            "support",
            "uid-agent-0",
            "20",
        )
        assert json.loads(item.json)["metadata"]["name"] == "agent-0"
        assert b" " not in item.json  # compact JSON
        second = await call(
            pb.ListRequest(kind="agents", namespace="support", limit=2, continue_token=first.continue_token),
            metadata=GOOD,
        )
        assert [item.name for item in second.items] == ["agent-2"]
        assert second.continue_token == ""
        everywhere = await call(pb.ListRequest(kind="agents"), metadata=GOOD)
        assert len(everywhere.items) == 3
        teams = await call(pb.ListRequest(kind="teams", namespace="Not A Namespace!"), metadata=GOOD)
        assert (list(teams.items), teams.resource_version) == ([], "9")

    fake = run(scenario)
    assert [(seen.path, seen.query) for seen in fake.seen] == [
        (AGENTS, {"limit": "2", "labelSelector": "team=support"}),
        (AGENTS, {"limit": "2", "continue": "2"}),
        ("/apis/joch.dev/v1alpha1/agents", {"limit": str(resources.DEFAULT_LIMIT)}),
        ("/apis/ops.joch.dev/v1alpha1/teams", {"limit": str(resources.DEFAULT_LIMIT)}),
    ]


def test_watch_relays_the_events_in_order_with_a_bookmark() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        got = await events(
            watch(channel)(
                pb.WatchRequest(
                    kind="agents", namespace="support", resource_version="10", timeout_seconds=60
                ),
                metadata=GOOD,
            )
        )
        assert [(e.type, e.object.name, e.object.resource_version) for e in got] == [
            ("ADDED", "a", "11"),
            ("MODIFIED", "a", "12"),
            ("ADDED", "b", "13"),
            ("DELETED", "a", "14"),
            ("BOOKMARK", "", "15"),
        ]
        assert json.loads(got[1].object.json) == HISTORY[1]["object"]
        assert (got[0].object.uid, got[0].object.namespace, got[0].object.generation) == (
            "uid-a",
            "support",
            1,
        )
        bookmark = got[-1].object
        assert (bookmark.api_version, bookmark.kind) == ("joch.dev/v1alpha1", "Agent")
        assert (bookmark.name, bookmark.namespace, bookmark.uid, bookmark.json) == ("", "", "", b"")

    fake = run(scenario)
    [seen] = fake.seen
    assert seen.path == AGENTS
    assert seen.query == {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "resourceVersion": "10",
        "timeoutSeconds": "60",
    }
    assert seen.headers["Authorization"] == "Bearer good"


def test_a_resumed_watch_passes_the_last_version_upstream_and_gets_each_event_once() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        seen: list[tuple[str, str]] = []
        call = watch(channel)(
            pb.WatchRequest(kind="agents", namespace="support", resource_version="10"), metadata=GOOD
        )
        async for event in call:
            seen.append((event.type, event.object.resource_version))
            if len(seen) == 2:
                break
        call.cancel()  # the client goes away after two events, and comes back
        last = seen[-1][1]
        resumed = watch(channel)(
            pb.WatchRequest(kind="agents", namespace="support", resource_version=last), metadata=GOOD
        )
        seen += [(e.type, e.object.resource_version) async for e in resumed]
        assert seen == [
            ("ADDED", "11"),
            ("MODIFIED", "12"),
            ("ADDED", "13"),
            ("DELETED", "14"),
            ("BOOKMARK", "15"),
        ]

    fake = run(scenario)
    assert [seen.query.get("resourceVersion") for seen in fake.seen] == ["10", "12"]
    assert all(seen.query["timeoutSeconds"] == str(resources.WATCH_TIMEOUT) for seen in fake.seen)


def test_an_expired_position_is_out_of_range_with_code_expired() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        before = await refused(
            events(watch(channel)(pb.WatchRequest(kind="agents", resource_version="5"), metadata=GOOD))
        )
        assert before.code() == grpc.StatusCode.OUT_OF_RANGE
        assert trailer(before, errors.CODE_TRAILER) == "Expired"
        assert "too old resource version" in (before.details() or "")
        assert "list again" in (before.details() or "")

        got: list[pb.WatchEvent] = []
        call = watch(channel)(pb.WatchRequest(kind="agents", label_selector="expires=soon"), metadata=GOOD)
        after = await refused(events(call, got))
        assert [e.type for e in got] == ["ADDED"]
        assert after.code() == grpc.StatusCode.OUT_OF_RANGE
        assert trailer(after, errors.CODE_TRAILER) == "Expired"

    fake = run(scenario)
    assert fake.seen[0].query["resourceVersion"] == "5"
    assert fake.seen[1].query["labelSelector"] == "expires=soon"


def test_kube_apiservers_refusals_are_mapped() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        request = pb.GetRequest(kind="agents", namespace="support", name="triage")
        forbidden = await refused(get(channel)(request, metadata=(("authorization", "Bearer forbidden"),)))
        assert forbidden.code() == grpc.StatusCode.PERMISSION_DENIED
        assert trailer(forbidden, errors.CODE_TRAILER) == "Forbidden"
        assert "mallory" in (forbidden.details() or "")
        unknown = await refused(get(channel)(request, metadata=(("authorization", "Bearer stranger"),)))
        assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED
        missing = pb.GetRequest(kind="agents", namespace="support", name="gone")
        absent = await refused(get(channel)(missing, metadata=GOOD))
        assert absent.code() == grpc.StatusCode.NOT_FOUND
        assert trailer(absent, errors.CODE_TRAILER) == "NotFound"
        listing = await refused(
            list_(channel)(pb.ListRequest(kind="agents"), metadata=(("authorization", "Bearer forbidden"),))
        )
        assert listing.code() == grpc.StatusCode.PERMISSION_DENIED
        watching = await refused(
            events(
                watch(channel)(
                    pb.WatchRequest(kind="agents"), metadata=(("authorization", "Bearer forbidden"),)
                )
            )
        )
        assert watching.code() == grpc.StatusCode.PERMISSION_DENIED

    fake = run(scenario)
    assert [seen.headers["Authorization"] for seen in fake.seen] == [
        "Bearer forbidden",
        "Bearer stranger",
        "Bearer good",
        "Bearer forbidden",
        "Bearer forbidden",
    ]


def test_no_token_is_unauthenticated_and_nothing_is_sent_upstream() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        request = pb.GetRequest(kind="agents", namespace="support", name="triage")
        for metadata in [(), (("authorization", "Basic dXNlcjpwdw=="),)]:
            exc = await refused(get(channel)(request, metadata=metadata))
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert trailer(exc, errors.CODE_TRAILER) == "Unauthorized"
        exc = await refused(events(watch(channel)(pb.WatchRequest(kind="agents"))))
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        exc = await refused(list_(channel)(pb.ListRequest(kind="agents")))
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        impersonating = (*GOOD, ("impersonate-user", "admin"))
        exc = await refused(get(channel)(request, metadata=impersonating))
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert trailer(exc, errors.CODE_TRAILER) == "ImpersonationRefused"

    assert run(scenario).seen == []


def test_garbage_bytes_are_invalid_argument() -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        exc = await refused(raw_get(channel)(b"\xff\xff\xff\xff", metadata=GOOD))
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert trailer(exc, errors.CODE_TRAILER) == "InvalidRequest"
        unknown_field = pb.GetRequest(kind="agents", namespace="support", name="triage").SerializeToString()
        exc = await refused(raw_get(channel)(unknown_field + b"\xc8\x01\x01", metadata=GOOD))  # field 25
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "#25" in violations(exc)

    assert run(scenario).seen == []


@pytest.mark.parametrize(
    ("method", "message", "status", "field"),
    [
        ("List", pb.ListRequest(kind="agents", limit=1001), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        ("List", pb.ListRequest(kind="agents", limit=-1), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        (
            "List",
            pb.ListRequest(kind="agents", namespace="Bad_NS"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "namespace",
        ),
        ("List", pb.ListRequest(), grpc.StatusCode.INVALID_ARGUMENT, "kind"),
        ("List", pb.ListRequest(kind="widgets"), grpc.StatusCode.NOT_FOUND, "kind"),
        ("Get", pb.GetRequest(kind="agents", namespace="support"), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ("Get", pb.GetRequest(kind="agents", name="triage"), grpc.StatusCode.INVALID_ARGUMENT, "namespace"),
        (
            "Get",
            pb.GetRequest(kind="agents", namespace="support", name="../../secrets"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name",
        ),
        (
            "Watch",
            pb.WatchRequest(kind="agents", timeout_seconds=3601),
            grpc.StatusCode.INVALID_ARGUMENT,
            "timeout_seconds",
        ),
        (
            "Watch",
            pb.WatchRequest(kind="agents", timeout_seconds=-5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "timeout_seconds",
        ),
        ("Watch", pb.WatchRequest(kind="nope"), grpc.StatusCode.NOT_FOUND, "kind"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    method: str, message: Any, status: grpc.StatusCode, field: str
) -> None:
    async def scenario(channel: grpc.aio.Channel, fake: FakeKube) -> None:
        if method == "Watch":
            exc = await refused(events(watch(channel)(message, metadata=GOOD)))
        else:
            exc = await refused((get if method == "Get" else list_)(channel)(message, metadata=GOOD))
        assert exc.code() == status
        assert violations(exc) == [field]
        assert field in (exc.details() or "")

    assert run(scenario).seen == []
