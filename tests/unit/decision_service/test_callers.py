"""Who may ask for decisions (joch.decision_service.callers.CallerGate) in front of the real endpoint.

Cases, over real HTTP (aiohttp TestServer) with a fake TokenReview answerer:
- an allowed service account's token: 200 with the decision; the review is cached (one review for many
  requests), expires after the TTL and never outlives a JWT's exp; concurrent first requests share one
  review;
- no Authorization header, another scheme, a malformed or over-long token -> 401 Unauthorized with
  WWW-Authenticate, no review sent; a token the API server does not authenticate -> 401;
- an authenticated user not in the list -> 403 Forbidden naming the user and the setting;
- the TokenReview failing -> 503 Unavailable with Retry-After, not cached (the next request reviews
  again); a bug in the reviewer -> 500;
- Impersonate-* headers -> 400 ImpersonationRefused;
- authentication comes before the body: an unauthenticated bad body is 401, not 400;
- GET /v1/policies is gated too; /healthz and /readyz are not;
- without a gate, nothing changes (no token needed);
- token_reviewer: the TokenReview body sent through Kube, and its answers read;
- the setting from $JOCH_DECISION_CALLERS and --decision-callers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import test_utils

from joch.cli import flags
from joch.decision_service import callers, endpoint
from joch.decision_service.service import DecisionService
from joch.domain.settings import OperatorSettings, SettingsError
from joch.kube import errors
from tests.unit.decision_service import factories as f
from tests.unit.decision_service.test_endpoint import assert_error

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
GATEWAY = "system:serviceaccount:gateways:envoy"
OTHER = "system:serviceaccount:team-a:worker"
TOKENS = {"good-token": GATEWAY, "other-token": OTHER}

Scenario = Callable[[test_utils.TestClient[Any, Any]], Awaitable[None]]


class FakeReviewer:
    """Answers TokenReviews from TOKENS; ``fail`` raises what the kube client raises."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.fail: Exception | None = None
        self.delay = 0.0

    async def __call__(self, token: str) -> callers.Review:
        self.tokens.append(token)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        user = TOKENS.get(token)
        return callers.Review(authenticated=user is not None, username=user or "")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ready_service() -> DecisionService:
    service = DecisionService()
    service.load([f.policy()], [])
    return service


def serve(scenario: Scenario, gate: callers.CallerGate | None) -> None:
    async def main() -> None:
        app = endpoint.build_app(ready_service(), clock=lambda: NOW, callers=gate)
        async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1")) as client:
            await scenario(client)

    asyncio.run(main())


def gate_with(reviewer: FakeReviewer, clock: Clock | None = None, ttl: float = 60.0) -> callers.CallerGate:
    return callers.CallerGate([GATEWAY], reviewer, ttl=ttl, clock=clock or Clock())


async def ask(
    client: test_utils.TestClient[Any, Any],
    token: str | None = "good-token",
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any, Any]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = json.dumps({"context": f.context(tool={"name": "shell.exec"})} if body is None else body)
    response = await client.post(
        endpoint.EVALUATE_PATH, data=data, headers={"Content-Type": "application/json", **sent}
    )
    return response.status, await response.json(), response.headers


def jwt(exp: float) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': 'x', 'exp': int(exp)})}.c2lnbmF0dXJl"


def test_an_allowed_caller_gets_the_decision_and_the_review_is_cached() -> None:
    reviewer, clock = FakeReviewer(), Clock()

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        for _ in range(5):
            status, body, _ = await ask(client)
            assert status == 200, body
            assert body["decision"] == "deny"
        assert reviewer.tokens == ["good-token"]
        clock.now += 59
        assert (await ask(client))[0] == 200
        assert len(reviewer.tokens) == 1
        clock.now += 2  # past the 60 s TTL: reviewed again
        assert (await ask(client))[0] == 200
        assert len(reviewer.tokens) == 2

    serve(scenario, gate_with(reviewer, clock))


def test_the_cache_never_outlives_the_tokens_exp() -> None:
    reviewer, clock = FakeReviewer(), Clock()
    token = jwt(clock.now + 10)
    TOKENS[token] = GATEWAY
    try:

        async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
            assert (await ask(client, token))[0] == 200
            clock.now += 9
            assert (await ask(client, token))[0] == 200
            assert len(reviewer.tokens) == 1
            clock.now += 2  # past exp, well within the TTL
            TOKENS.pop(token)  # the API server no longer accepts it
            status, body, _ = await ask(client, token)
            assert status == 401, body
            assert len(reviewer.tokens) == 2

        serve(scenario, gate_with(reviewer, clock))
    finally:
        TOKENS.pop(token, None)


def test_concurrent_first_requests_share_one_review() -> None:
    reviewer = FakeReviewer()
    reviewer.delay = 0.05

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        answers = await asyncio.gather(*(ask(client) for _ in range(10)))
        assert [status for status, _, _ in answers] == [200] * 10
        assert reviewer.tokens == ["good-token"]

    serve(scenario, gate_with(reviewer))


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        pytest.param(None, "header is required", id="none"),
        pytest.param("Basic dXNlcjpwYXNz", "header is required", id="basic"),
        pytest.param("Bearer ", "header is required", id="empty"),
        pytest.param("Bearer a b", "malformed", id="space"),
    ],
)
def test_no_or_malformed_token_is_401_without_a_review(authorization: str | None, fragment: str) -> None:
    reviewer = FakeReviewer()

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        headers = {"Authorization": authorization} if authorization is not None else {}
        status, body, answer_headers = await ask(client, None, headers=headers)
        assert status == 401
        assert fragment in assert_error(body, "Unauthorized")["message"]
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
        assert reviewer.tokens == []

    serve(scenario, gate_with(reviewer))


def test_a_token_too_long_is_401_without_a_review() -> None:
    """Longer than aiohttp's header limit, so called directly (a server with a larger limit sees this)."""
    reviewer = FakeReviewer()
    headers = {"Authorization": "Bearer " + "x" * (callers.MAX_TOKEN_BYTES + 1)}
    with pytest.raises(callers.Refused) as refused:
        asyncio.run(gate_with(reviewer)(headers))
    assert (refused.value.status, refused.value.code) == (401, "Unauthorized")
    assert reviewer.tokens == []


def test_a_token_the_api_server_rejects_is_401_and_before_the_body() -> None:
    reviewer = FakeReviewer()

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body, _ = await ask(client, "garbage")
        assert status == 401
        assert "does not accept" in assert_error(body, "Unauthorized")["message"]
        status, body, _ = await ask(client, "garbage", body={"nonsense": True})
        assert status == 401, body  # not 400: who asks is checked first
        assert reviewer.tokens == ["garbage"]  # the negative verdict is cached too

    serve(scenario, gate_with(reviewer))


def test_another_user_is_403_naming_the_user_and_the_setting() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body, _ = await ask(client, "other-token")
        assert status == 403
        error = assert_error(body, "Forbidden")
        assert OTHER in error["message"]
        assert "--decision-callers" in error["message"]
        assert error["details"] == {"user": OTHER, "setting": "decision_callers"}

    serve(scenario, gate_with(FakeReviewer()))


def test_a_failing_token_review_is_503_and_not_cached() -> None:
    reviewer = FakeReviewer()
    reviewer.fail = errors.Unavailable("POST tokenreviews: connection refused")

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body, headers = await ask(client)
        assert status == 503
        assert_error(body, "Unavailable")
        assert headers["Retry-After"] == "1"
        reviewer.fail = None
        assert (await ask(client))[0] == 200
        assert len(reviewer.tokens) == 2

    serve(scenario, gate_with(reviewer))


def test_concurrent_requests_waiting_on_a_failing_review_all_get_503() -> None:
    reviewer = FakeReviewer()
    reviewer.delay = 0.05
    reviewer.fail = errors.Forbidden("tokenreviews is forbidden")

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        answers = await asyncio.gather(*(ask(client) for _ in range(5)))
        assert [status for status, _, _ in answers] == [503] * 5
        assert len(reviewer.tokens) == 1

    serve(scenario, gate_with(reviewer))


def test_a_bug_in_the_reviewer_is_500() -> None:
    reviewer = FakeReviewer()
    reviewer.fail = RuntimeError("bug")

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body, _ = await ask(client)
        assert status == 500
        assert_error(body, "InternalError")

    serve(scenario, gate_with(reviewer))


def test_impersonation_headers_are_400() -> None:
    reviewer = FakeReviewer()

    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        for header in ("Impersonate-User", "impersonate-group", "Impersonate-Extra-scopes"):
            status, body, _ = await ask(client, headers={header: "system:admin"})
            assert status == 400
            assert assert_error(body, "ImpersonationRefused")["details"] == {"header": header}
        assert reviewer.tokens == []

    serve(scenario, gate_with(reviewer))


def test_the_policy_listing_is_gated_too_and_the_probes_are_not() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        response = await client.get("/v1/policies")
        assert response.status == 401
        assert_error(await response.json(), "Unauthorized")
        response = await client.get("/v1/policies", headers={"Authorization": "Bearer good-token"})
        assert response.status == 200
        assert (await response.json())["policies"]
        for probe in ("/healthz", "/readyz"):
            assert (await client.get(probe)).status == 200

    serve(scenario, gate_with(FakeReviewer()))


def test_without_a_gate_no_token_is_needed() -> None:
    async def scenario(client: test_utils.TestClient[Any, Any]) -> None:
        status, body, _ = await ask(client, None)
        assert status == 200, body

    serve(scenario, None)


def test_a_gate_needs_allowed_users() -> None:
    with pytest.raises(ValueError, match="at least one"):
        callers.CallerGate([], FakeReviewer())


class FakeKube:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Any]] = []

    async def attempt(self, method: str, path: str, *, body: Any = None) -> Any:
        self.sent.append((method, path, body))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            {"status": {"authenticated": True, "user": {"username": GATEWAY, "groups": ["g"]}}},
            callers.Review(True, GATEWAY),
            id="authenticated",
        ),
        pytest.param(
            {"status": {"authenticated": False, "error": "invalid bearer token"}},
            callers.Review(False),
            id="rejected",
        ),
        pytest.param({"status": {"authenticated": True}}, callers.Review(False), id="no user"),
        pytest.param({"status": {}}, callers.Review(False), id="empty status"),
    ],
)
def test_token_reviewer_sends_a_token_review(answer: Any, expected: callers.Review) -> None:
    kube = FakeKube(answer)
    review = asyncio.run(callers.token_reviewer(kube)("the-token"))  # type: ignore[arg-type]
    assert review == expected
    assert kube.sent == [
        (
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "the-token"}},
        )
    ]


def test_token_reviewer_without_a_status_or_failing_raises_kube_errors() -> None:
    with pytest.raises(errors.KubeError):
        asyncio.run(callers.token_reviewer(FakeKube({}))("t"))  # type: ignore[arg-type]
    with pytest.raises(errors.Forbidden):
        asyncio.run(callers.token_reviewer(FakeKube(errors.Forbidden("no")))("t"))  # type: ignore[arg-type]


def test_the_setting_from_the_environment_and_the_flag() -> None:
    assert OperatorSettings().decision_callers == ()
    environ = {"JOCH_DECISION_CALLERS": f" {GATEWAY} , {OTHER},{GATEWAY}"}
    assert OperatorSettings.from_environ(environ).decision_callers == (GATEWAY, OTHER)
    args = argparse.Namespace(decision_callers=OTHER)
    assert flags.settings_from(args, environ).decision_callers == (OTHER,)
    assert flags.settings_from(argparse.Namespace(decision_callers=""), environ).decision_callers == ()
    with pytest.raises(SettingsError, match="not a string"):
        OperatorSettings(decision_callers=GATEWAY)  # type: ignore[arg-type]
