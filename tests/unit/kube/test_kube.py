"""joch.kube without a server: error translation, paths, the token bucket, retries, idempotent apply.

Cases: HTTP statuses map onto the error tree (AlreadyExists vs Conflict by reason, Retry-After read,
payloads truncated); REST paths for namespaced, cluster-scoped and core kinds; the token bucket
reserves future slots at its rate; Kube.request retries a 429 after Retry-After and a 503 with backoff,
then gives up; apply_configmap creates, skips an unchanged one, replaces a changed one, recovers from a
stale belief (AlreadyExists, Conflict) and never duplicates.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest

from joch.api import v1alpha1
from joch.kube import client, configmaps, errors, events, paths
from tests.fake_kube import FakeKube


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (404, "NotFound", errors.NotFound),
        (409, "AlreadyExists", errors.AlreadyExists),
        (409, "Conflict", errors.Conflict),
        (403, "Forbidden", errors.Forbidden),
        (401, "Unauthorized", errors.Forbidden),
        (422, "Invalid", errors.Invalid),
        (429, "TooManyRequests", errors.TooManyRequests),
        (500, "InternalError", errors.ServerError),
        (503, "ServiceUnavailable", errors.ServerError),
        (418, "", errors.KubeError),
    ],
)
def test_statuses_map_onto_the_error_tree(status: int, reason: str, expected: type[errors.KubeError]) -> None:
    body = json.dumps({"kind": "Status", "message": "m" * 1000, "reason": reason})
    error = errors.from_status(status, body=body, headers={"Retry-After": "7"}, what="GET /x")
    assert type(error) is expected
    assert error.status == status
    assert error.message.startswith("GET /x: mmm")
    assert len(error.message) < 300
    if isinstance(error, errors.TooManyRequests):
        assert error.retry_after == 7.0


def test_retry_after_defaults_and_transience() -> None:
    error = errors.from_status(429, body="not json", headers={})
    assert isinstance(error, errors.TooManyRequests)
    assert error.retry_after == 1.0
    assert error.transient
    assert not errors.from_status(404).transient
    assert not errors.from_status(409, body=json.dumps({"reason": "AlreadyExists"})).transient


def test_paths() -> None:
    agent = paths.ResourceType.of(v1alpha1.Agent)
    assert agent.object_path("ns", "a", "status") == "/apis/joch.dev/v1alpha1/namespaces/ns/agents/a/status"
    assert agent.collection_path() == "/apis/joch.dev/v1alpha1/agents"
    env = paths.ResourceType.of(v1alpha1.Environment)
    assert env.object_path(None, "prod") == "/apis/ops.joch.dev/v1alpha1/environments/prod"
    assert paths.CONFIGMAPS.collection_path("ns") == "/api/v1/namespaces/ns/configmaps"
    assert paths.NAMESPACES.object_path(None, "x") == "/api/v1/namespaces/x"
    with pytest.raises(ValueError, match="namespaced"):
        agent.object_path(None, "a")


def test_token_bucket_reserves_future_slots() -> None:
    now = [0.0]
    bucket = client.TokenBucket(rate=10, burst=2, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2])
    now[0] = 1.0
    assert bucket.reserve() == 0.0


class FlakyKube(client.Kube):
    """A Kube whose ``attempt`` fails with the queued errors first."""

    def __init__(self, failures: list[errors.KubeError], limits: client.Limits) -> None:
        super().__init__(client.new_api_client(kubernetes.client.Configuration()), limits)
        self.failures = failures
        self.calls = 0

    async def attempt(self, method: str, path: str, **_: Any) -> Any:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"ok": True}


def test_request_honours_retry_after_then_gives_up() -> None:
    async def scenario() -> None:
        limits = client.Limits(max_retries=2, max_retry_after=0.05)
        kube = FlakyKube(
            [errors.TooManyRequests("slow down", retry_after=0.01), errors.ServerError("boom", status=503)],
            limits,
        )
        assert await kube.request("PATCH", "/x", body={}) == {"ok": True}
        assert kube.calls == 3
        assert kube.counts["throttled"] == 1
        assert kube.counts["retried"] == 2
        too_many = [errors.TooManyRequests("slow down", retry_after=100) for _ in range(3)]
        failing = FlakyKube(too_many, limits)
        with pytest.raises(errors.TooManyRequests):
            await asyncio.wait_for(failing.request("GET", "/x"), timeout=2)
        assert failing.calls == 3
        for kube_ in (kube, failing):
            kube_.close()

    asyncio.run(scenario())


def desired_cm(sha: str, data: str = "x", uid: str = "u1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "a-g1",
            "namespace": "ns",
            "labels": {"joch.dev/agent": "a", "joch.dev/generation": "1"},
            "annotations": {"joch.dev/manifest-sha256": sha},
            "ownerReferences": [
                {"apiVersion": "joch.dev/v1alpha1", "kind": "Agent", "name": "a", "uid": uid}
            ],
        },
        "data": {"manifest.yaml": data},
    }


def test_apply_configmap_is_idempotent_and_recovers_from_stale_beliefs() -> None:
    async def scenario() -> None:
        kube: Any = FakeKube()
        outcome, first = await configmaps.apply_configmap(kube, desired_cm("s1"), current=None)
        assert outcome == "created"
        assert (first.agent, first.owner_uid, first.generation, first.sha256) == ("a", "u1", 1, "s1")
        outcome, same = await configmaps.apply_configmap(kube, desired_cm("s1"), current=first)
        assert (outcome, same) == ("unchanged", first)
        writes = len(kube.writes())
        # Believing it absent (after a crash): AlreadyExists, read, and nothing else when equal.
        outcome, _ = await configmaps.apply_configmap(kube, desired_cm("s1"), current=None)
        assert outcome == "unchanged"
        assert len(kube.writes()) == writes + 1  # the refused create only
        outcome, _ = await configmaps.apply_configmap(kube, desired_cm("s2", "y"), current=first)
        assert outcome == "replaced"
        # A stale resourceVersion: Conflict, read, replace.
        outcome, third = await configmaps.apply_configmap(kube, desired_cm("s3", "z"), current=first)
        assert outcome == "replaced"
        assert third.sha256 == "s3"
        assert len(kube.of("configmaps")) == 1
        assert kube.of("configmaps")[0]["data"] == {"manifest.yaml": "z"}
        assert await configmaps.delete_configmaps(kube, "ns", ["a-g1", "missing"]) == ["a-g1"]

    asyncio.run(scenario())


def test_event_body() -> None:
    import datetime

    involved = events.InvolvedObject("joch.dev/v1alpha1", "Agent", "ns", "a", "u1")
    body = events.event_body(
        involved,
        "Warning",
        "MissingReference",
        "x" * 5000,
        now=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
    )
    assert body["metadata"] == {"generateName": "a.", "namespace": "ns"}
    assert body["involvedObject"] == {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Agent",
        "name": "a",
        "namespace": "ns",
        "uid": "u1",
    }
    assert len(body["message"]) == 1024
    assert body["firstTimestamp"] == "2026-01-02T00:00:00Z"
    cluster_scoped = events.InvolvedObject("joch.dev/v1alpha1", "FrameworkAdapter", None, "f")
    assert (
        events.event_body(cluster_scoped, "Normal", "R", "m", now=datetime.datetime.now(datetime.UTC))[
            "metadata"
        ]["namespace"]
        == "default"
    )
