"""The decision endpoint over real HTTP (aiohttp TestServer on 127.0.0.1, joch.decision_service.endpoint).

Cases: a good request gets the Decision (200, also for a deny); malformed JSON, non-UTF-8, NaN and
over-deep JSON -> 400 InvalidJSON; wrong types and unknown fields (top level and in the context) ->
400 InvalidRequest with every field in details.errors; an oversized body -> 413 whether announced by
Content-Length or streamed chunked; a non-JSON Content-Type -> 415; unknown path -> 404, wrong
method -> 405; before the initial listing -> 503 NotReady with Retry-After (readyz too); a bug in the
service -> 500 InternalError in the same shape; GET /v1/policies, /healthz, /readyz. Every error body
has exactly the catalog's shape {"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import test_utils

from joch.decision_service import endpoint, requests
from joch.decision_service.service import DecisionService
from tests.unit.decision_service import factories as f

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
LIMIT = 4096

Scenario = Callable[[test_utils.TestClient[Any, Any]], Awaitable[None]]


def ready_service() -> DecisionService:
    service = DecisionService()
    service.load([f.policy()], [])
    return service


def serve(scenario: Scenario, service: DecisionService | None = None) -> None:
    async def main() -> None:
        app = endpoint.build_app(service or ready_service(), max_body=LIMIT, clock=lambda: NOW)
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            await scenario(client)

    asyncio.run(main())


def assert_error(body: Any, code: str) -> dict[str, Any]:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]  # type: ignore[no-any-return]


async def post(
    client: test_utils.TestClient[Any, Any],
    data: Any,
    *,
    raw: bool = False,
    content_type: str | None = "application/json",
) -> tuple[int, Any]:
    """POST ``data`` (encoded as JSON unless ``raw``) with ``content_type`` (None: no such header)."""
    body = data if raw else json.dumps(data)
    headers = {"Content-Type": content_type} if content_type is not None else {}
    skip = ["Content-Type"] if content_type is None else []
    response = await client.post(endpoint.EVALUATE_PATH, data=body, headers=headers, skip_auto_headers=skip)
    return response.status, await response.json()


def test_a_good_request_gets_the_decision() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, {"context": f.context(tool={"name": "shell.exec"})})
        assert status == 200
        assert body == {
            "decision": "deny",
            "reason": "no shell",
            "policyId": "caps",
            "policyNamespace": "support",
            "policyVersion": "v1",
            "rule": 0,
        }
        status, body = await post(client, {"context": f.context(tool={"name": "ls"}), "preflight": True})
        assert (status, body) == (200, {"decision": "allow", "reason": "no rule matched"})
        status, body = await post(client, {"context": {}}, content_type=None)
        assert status == 200
        status, body = await post(
            client, {"context": {}}, content_type="application/vnd.joch+json; charset=utf-8"
        )
        assert status == 200

    serve(scenario)


def test_nan_or_infinity_is_400_naming_the_field() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        data = '{"context": {"cost": {"runUsd": NaN}, "payload": [1, -Infinity]}}'
        status, body = await post(client, data, raw=True)
        assert status == 400
        error = assert_error(body, "InvalidJSON")
        assert "context.cost.runUsd: NaN is not valid JSON" in error["message"]
        assert error["details"]["errors"] == [
            {"field": "context.cost.runUsd", "message": "NaN is not valid JSON"},
            {"field": "context.payload[1]", "message": "-Infinity is not valid JSON"},
        ]
        status, body = await post(client, {"context": {"cost": {"runUsd": -1}}})
        assert status == 400
        error = assert_error(body, "InvalidRequest")
        assert error["details"]["errors"][0]["field"] == "context.cost.runUsd"

    serve(scenario)


def test_the_budget_step_runs_after_the_decision_and_its_extra_is_in_the_answer() -> None:
    seen: list[tuple[str, Any]] = []

    async def budgets(context: Any, decision: Any, now: datetime.datetime) -> tuple[Any, Any]:
        seen.append((decision.decision, context.get("cost")))
        return decision, {"reservation": {"id": "r1"}}

    async def main() -> None:
        app = endpoint.build_app(ready_service(), max_body=LIMIT, clock=lambda: NOW, budgets=budgets)
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            status, body = await post(client, {"context": f.context(tool={"name": "ls"}, cost={"runUsd": 1})})
            assert status == 200
            assert body["reservation"] == {"id": "r1"}
            status, body = await post(client, {"context": f.context(tool={"name": "ls"}), "preflight": True})
            assert "reservation" not in body  # preflight reserves nothing

    asyncio.run(main())
    assert seen == [("allow", {"runUsd": 1})]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param("{", "not valid JSON", id="truncated"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param('{"context": NaN}', "NaN is not valid JSON", id="NaN"),
        pytest.param(b"\xff\xfe{}", "not UTF-8", id="not UTF-8"),
        pytest.param("[" * 2000 + "]" * 2000, "nested", id="deeper than the parser goes"),
    ],
)
def test_malformed_json_is_400_invalid_json(data: str | bytes, fragment: str) -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, data, raw=True)
        assert status == 400
        assert fragment in assert_error(body, "InvalidJSON")["message"]

    serve(scenario)


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        pytest.param([], ["(body)"], id="a list"),
        pytest.param({"context": {}, "verbose": True}, ["verbose"], id="unknown top-level field"),
        pytest.param({"context": {"tool": {"nam": "x"}}}, ["context.tool.nam"], id="unknown context field"),
        pytest.param({"context": "x"}, ["context"], id="context a string"),
        pytest.param(
            {"context": {"agent": {"labels": {"a": 1}}}, "preflight": "no"},
            ["context.agent.labels.a", "preflight"],
            id="wrong types",
        ),
    ],
)
def test_wrong_shapes_are_400_with_every_field(data: Any, fields: list[str]) -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, data)
        assert status == 400
        error = assert_error(body, "InvalidRequest")
        assert [item["field"] for item in error["details"]["errors"]] == fields
        assert all(item["message"] for item in error["details"]["errors"])

    serve(scenario)


def test_oversized_bodies_are_413() -> None:
    big = json.dumps({"context": {"payload": "x" * LIMIT}})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 512):
            yield big[start : start + 512].encode()

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, big, raw=True)
        assert status == 413
        assert assert_error(body, "RequestTooLarge")["details"] == {"limitBytes": LIMIT}
        status, body = await post(client, chunks(), raw=True)
        assert status == 413
        assert_error(body, "RequestTooLarge")
        fits = json.dumps({"context": {"payload": "x" * (LIMIT - 100)}})
        status, _ = await post(client, fits, raw=True)
        assert status == 200

    serve(scenario)


def test_not_json_content_type_is_415() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, "context=1", raw=True, content_type="text/plain")
        assert status == 415
        assert "text/plain" in assert_error(body, "UnsupportedMediaType")["message"]

    serve(scenario)


def test_unknown_paths_and_methods_answer_in_the_error_shape() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        response = await client.get("/v1/policy/nothing")
        assert response.status == 404
        assert_error(await response.json(), "NotFound")
        response = await client.get(endpoint.EVALUATE_PATH)
        assert response.status == 405
        assert_error(await response.json(), "MethodNotAllowed")

    serve(scenario)


def test_not_ready_is_503_with_retry_after() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        response = await client.post(endpoint.EVALUATE_PATH, json={"context": {}})
        assert (response.status, response.headers["Retry-After"]) == (503, "1")
        assert_error(await response.json(), "NotReady")
        response = await client.get("/readyz")
        assert response.status == 503
        response = await client.post(endpoint.EVALUATE_PATH, json={"context": []})
        assert response.status == 400  # a bad request is bad whether or not the service is ready
        response = await client.get("/healthz")
        assert (response.status, await response.json()) == (200, {"status": "ok"})

    serve(scenario, DecisionService())


def test_a_bug_is_500_internal_error_in_the_same_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    service = ready_service()

    def explode(request: requests.EvaluateRequest, *, now: datetime.datetime) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(service, "decide", explode)

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body = await post(client, {"context": {}})
        assert status == 500
        assert "bug" not in assert_error(body, "InternalError")["message"]

    serve(scenario, service)


def test_policies_healthz_readyz() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        response = await client.get("/v1/policies")
        assert await response.json() == {
            "policies": [{"namespace": "support", "name": "caps", "version": "v1", "valid": True}]
        }
        response = await client.get("/readyz")
        assert (response.status, await response.json()) == (200, {"status": "ready"})

    serve(scenario)


def test_max_body_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1 byte"):
        endpoint.build_app(DecisionService(), max_body=0)


def test_error_body_shape() -> None:
    assert endpoint.error_body("PolicyDenied", "no") == {
        "error": {"code": "PolicyDenied", "message": "no", "details": {}}
    }


@pytest.mark.parametrize(
    ("raw", "deeper"),
    [
        pytest.param(b"[" * 65 + b"]" * 65, True, id="65 arrays"),
        pytest.param(b"[" * 64 + b"]" * 64, False, id="64 arrays"),
        pytest.param(b'{"a": "' + b"[" * 200 + b'"}', False, id="brackets inside a string"),
        pytest.param(b'["\\"' + b"[" * 200 + b'"]', False, id="escaped quote then brackets in a string"),
        pytest.param(b'["\\\\"' + b"[" * 65 + b"]" * 65 + b"]", True, id="escaped backslash ends the string"),
    ],
)
def test_nesting_is_measured_outside_strings(raw: bytes, deeper: bool) -> None:
    assert endpoint._nested_deeper_than(raw, 64) is deeper
