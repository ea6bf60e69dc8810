"""Hostile input, through the real API server and straight to the webhook: a clear 4xx or a denial, the
webhook stays up, and its memory stays bounded.

| input | path | expected |
|---|---|---|
| objects of ~1 MiB, ~2.5 MiB and over 3 MiB | API server | stored, or a clear 4xx (etcd / body limits) |
| 10,000-element lists (schema-free and schema-bound) | API server | stored, or a clear 4xx |
| 100-level nesting | API server | stored, or a clear 4xx |
| invalid UTF-8 in a request body | API server | a clear 4xx, or stored with replacement characters |
| unknown kinds, garbage reviews, invalid UTF-8, deep nesting, 9 MiB | webhook directly | 4xx or a denial |
| 30 reviews of 3 MiB each | webhook directly | RSS grows by less than 200 MiB |

After each case the webhook still answers and the checks never failed internally.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.integration.admission_fixtures import (
    Harness,
    Webhooks,
    harness_fixture,
    webhooks_fixture,
)
from tests.unit.admission import factories as f

pytestmark = pytest.mark.integration

webhooks = pytest.fixture(scope="module")(webhooks_fixture)
harness = pytest.fixture(harness_fixture)

MIB = 1024 * 1024


def _nested(depth: int) -> Any:
    value: Any = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"x": value}}
    return value


def _still_up(harness: Harness) -> None:
    outcome = harness.py_create(f.tool(f"probe-{len(harness.webhooks.endpoint.counts)}-{id(object())}"))
    assert outcome.ok, outcome.message
    assert "internal_error" not in harness.webhooks.endpoint.counts


def _post_raw(harness: Harness, path: str, body: bytes) -> tuple[int, str]:
    """POST raw bytes to the API server (the client's own JSON encoding would refuse them)."""
    configuration = harness.api.configuration
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = configuration.get_api_key_with_prefix("BearerToken")
    if token:
        headers["Authorization"] = token
    response = harness.api.rest_client.pool_manager.request(
        "POST", configuration.host + path, body=body, headers=headers, timeout=30
    )
    return response.status, response.data.decode("utf-8", "replace")[:500]


@pytest.mark.parametrize(
    ("doc", "size"),
    [
        pytest.param(lambda: f.tool("big-1m", inputSchema={"description": "x" * MIB}), "1 MiB", id="1 MiB"),
        pytest.param(
            lambda: f.tool("big-2m", inputSchema={"description": "x" * (5 * MIB // 2)}),
            "2.5 MiB",
            id="2.5 MiB",
        ),
        pytest.param(
            lambda: f.tool("big-3m", inputSchema={"description": "x" * (3 * MIB + 10)}),
            "3 MiB+",
            id="over 3 MiB",
        ),
        pytest.param(
            lambda: f.tool("list-10k", inputSchema={"enum": list(range(10_000))}),
            "10k",
            id="10,000-element free list",
        ),
        pytest.param(
            lambda: f.agent("agent-10k", tools=[{"name": f"t{i}"} for i in range(10_000)]),
            "10k",
            id="10,000 tools",
        ),
        pytest.param(lambda: f.tool("deep", inputSchema=_nested(100)), "100", id="100-level nesting"),
        pytest.param(lambda: {**f.tool("odd"), "spec": "a string"}, "odd", id="spec not an object"),
        pytest.param(
            lambda: {**f.obj("Trace", "odd", {}), "spec": {"sampling": 7}},
            "odd",
            id="trace sampling a number",
        ),
        pytest.param(
            lambda: f.policy(
                "deep-rule",
                [
                    {
                        "when": {"payload.x": {"cel": "true"}},
                        "action": "deny",
                        "description": json.dumps(_nested(100))[:4000],
                    }
                ],
            ),
            "rule",
            id="policy with a long rule",
        ),
    ],
)
def test_large_and_deep_objects_through_the_api_server(harness: Harness, doc: Any, size: str) -> None:
    """The webhooks answer every one of these they are asked about (never "failed calling webhook");
    the schema may reject first; objects over etcd's 2 MiB message limit fail in storage, after
    admission, with a 500 of the API server's own, which the test tells apart."""
    calls = sum(harness.webhooks.endpoint.counts.values())
    outcome = harness.py_create(doc())
    assert "failed calling webhook" not in outcome.message, outcome.message
    if outcome.ok:
        assert sum(harness.webhooks.endpoint.counts.values()) > calls, "admitted without the webhooks"
    else:  # rejected by the schema, by a webhook, or by the storage after admission
        status = int(outcome.message.split(" ", 1)[0])
        storage_limit = status == 500 and "larger than max" in outcome.message
        assert 400 <= status < 500 or storage_limit, outcome.message
    _still_up(harness)


def test_invalid_utf8_through_the_api_server(harness: Harness) -> None:
    body = json.dumps(harness.place(f.tool("utf8"))).encode().replace(b'"read_only"', b'"read_\xff\xfeonly"')
    status, message = _post_raw(
        harness, f"/apis/tools.joch.dev/v1alpha1/namespaces/{harness.namespace}/tools", body
    )
    assert status < 500, message
    _still_up(harness)


def _direct(webhooks: Webhooks, path: str, body: bytes) -> tuple[int, Any]:
    context = ssl.create_default_context(cadata=webhooks.ca_pem.decode())
    request = urllib.request.Request(webhooks.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"", 400, id="empty"),
        pytest.param(b"\x00\xff garbage", 400, id="binary garbage"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": "x"}',
            400,
            id="request a string",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "\xff"}}',
            400,
            id="invalid UTF-8",
        ),
        pytest.param(b"[" * 50_000 + b"]" * 50_000, 400, id="50,000-level nesting"),
        pytest.param(b"x" * (9 * MIB), 413, id="9 MiB"),
        pytest.param(
            f.review_bytes({"apiVersion": "joch.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}}),
            200,
            id="unknown kind",
        ),
        pytest.param(
            f.review_bytes(
                {
                    "apiVersion": "joch.dev/v1alpha1",
                    "kind": "Agent",
                    "metadata": {"name": "g"},
                    "spec": [1] * 10_000,
                }
            ),
            200,
            id="spec a 10,000 list",
        ),
    ],
)
def test_garbage_straight_to_the_webhook(webhooks: Webhooks, body: bytes, status: int) -> None:
    for path in ("/validate/joch.dev/agents", "/mutate/joch.dev/agents"):
        got, payload = _direct(webhooks, path, body)
        assert got == status, payload
        if got == 200 and path.startswith("/mutate") and payload["response"]["allowed"]:
            assert "patch" not in payload["response"]  # nothing to default; validation rejects it
        elif got == 200:
            assert payload["response"]["allowed"] is False
            assert 400 <= payload["response"]["status"]["code"] < 500
        else:
            assert payload["error"]
    assert _direct(webhooks, "/validate/joch.dev/agents", f.review_bytes(f.tool()))[0] == 200
    assert "internal_error" not in webhooks.endpoint.counts


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_memory_stays_bounded(webhooks: Webhooks) -> None:
    reviews = [
        f.review_bytes(
            f.agent(
                f"big-{i}", description="x" * (3 * MIB - 4096), tools=[{"name": f"t{j}"} for j in range(500)]
            )
        )
        for i in range(3)
    ]
    for body in reviews:  # warm up: allocator pools, caches
        assert _direct(webhooks, "/validate/joch.dev/agents", body)[0] == 200
    before = _rss()
    for round_ in range(10):
        for body in reviews:
            assert _direct(webhooks, "/validate/joch.dev/agents", body)[0] == 200
            assert _direct(webhooks, "/mutate/joch.dev/agents", body)[0] == 200, round_
    growth = _rss() - before
    print(f"RSS {before / MIB:.0f} MiB -> {(before + growth) / MIB:.0f} MiB over 60 reviews of 3 MiB")
    assert growth < 200 * MIB, f"RSS grew by {growth / MIB:.0f} MiB over 60 reviews of 3 MiB"
