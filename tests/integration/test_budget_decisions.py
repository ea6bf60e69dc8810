"""Budgets enforced by the decision service, against the real API server with two real ``joch operator``
processes (leader election on: one reconciles, both serve decisions from their own cache).

Cases, on one Budget (dailyUsd 10, onHardLimit deny) covering the agent through its Team:
- 20 concurrent decision requests of cost.runUsd 2 to one operator: exactly 5 allowed, each with a
  reservation; 15 denied BudgetExceeded naming the Budget; the Budget's status holds 5 reservations and
  windows.daily.reserved 10;
- the reservations expire (--budget-reservation-ttl) and reserved returns to 0;
- across replicas: 10 requests to each operator at once still allow exactly 5 in total (the follower
  serves decisions too; the two write the same Budget status under resourceVersion preconditions);
- a covering Budget whose state is unknown (a time zone that does not exist: the operator reports it
  Stalled and writes no windows) denies, saying so;
- hostile input: cost.runUsd negative, a string, NaN or 1e999 -> 400 naming context.cost.runUsd.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    apply,
    cluster_fixture,
    eventually,
    start_operator_fixture,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
TTL = 12


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes | Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/policy/evaluate", data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def ready(url: str) -> None:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            assert response.status == 200
    except (urllib.error.URLError, ConnectionError) as exc:
        raise AssertionError(f"{url} not ready: {exc}") from None


def call(namespace: str, cost: Any = 2) -> dict[str, Any]:
    return {
        "context": {
            "hook": "toolCallRequest",
            "agent": {"namespace": namespace, "name": "support-triage"},
            "cost": {"runUsd": cost},
        }
    }


def burst(urls: list[str], namespace: str) -> list[dict[str, Any]]:
    """One request per url in ``urls``, all at once; the decisions."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(urls)) as pool:
        answers = list(pool.map(lambda url: post(url, call(namespace)), urls))
    assert all(status == 200 for status, _ in answers), answers
    return [body for _, body in answers]


def docs(namespace: str, team: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": team},
            "spec": {"namespaces": [namespace]},
        },
        budget(namespace, "daily", team),
    ]


def budget(namespace: str, name: str, team: str, time_zone: str = "UTC") -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scope": {"teams": [team]},
            "timeZone": time_zone,
            "limits": {"dailyUsd": 10, "monthlyUsd": 100},
            "enforcement": {"onHardLimit": "deny"},
        },
    }


def test_concurrent_calls_reserve_exactly_the_budget_across_two_replicas(
    namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    team = f"t-{uuid.uuid4().hex[:6]}"
    apply(kubectl, docs(namespace, team))
    urls = []
    for _ in range(2):
        port = _free_port()
        start_operator(
            namespace,
            args=(
                f"--decision-port={port}",
                f"--budget-reservation-ttl={TTL}",
                "--leader-election",
                f"--leader-election-namespace={namespace}",
                "--lease-duration=6",
                "--renew-deadline=4",
                "--retry-period=1",
            ),
            wait=False,
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        eventually(lambda url=url: ready(url), timeout=90)  # type: ignore[misc]

    def accounted() -> dict[str, Any]:
        status = cluster.status("Budget", namespace, "daily")
        assert status.get("windows"), status
        return status

    eventually(accounted, timeout=90)

    def seen(url: str) -> None:
        """The operator's cache holds the accounted Budget: a call too big for it is refused for its
        window, not for an unknown state (and reserves nothing)."""
        code, body = post(url, call(namespace, 1000))
        assert code == 200, body
        assert "daily window" in body.get("reason", ""), body

    for url in urls:
        eventually(lambda url=url: seen(url), timeout=30)  # type: ignore[misc]
    key = f"{namespace}/daily"
    try:
        _reserve(namespace, kubectl, cluster, urls, key, team)
    finally:
        kubectl("delete", "team", team, "--ignore-not-found")


def _reserve(
    namespace: str, kubectl: Kubectl, cluster: Cluster, urls: list[str], key: str, team: str
) -> None:
    # 1. Twenty concurrent calls of 2 USD to one operator: exactly five fit in 10 USD.
    answers = burst([urls[0]] * 20, namespace)
    allowed = [a for a in answers if a["decision"] == "allow"]
    denied = [a for a in answers if a["decision"] == "deny"]
    assert len(allowed) == 5, answers
    assert len(denied) == 15, answers
    assert all(a["reason"].startswith(f"BudgetExceeded: Budget {key}: daily window") for a in denied), denied
    assert all(a["budget"] == {"namespace": namespace, "name": "daily"} for a in denied)
    assert all(a["reservation"]["budgets"] == [key] for a in allowed)
    assert all(a["reservation"]["amountUsd"] == 2 for a in allowed)
    ids = {a["reservation"]["id"] for a in allowed}
    assert len(ids) == 5
    status = cluster.status("Budget", namespace, "daily")
    assert {r["id"] for r in status["reservations"]} == ids
    assert status["windows"]["daily"]["reserved"] == 10
    assert status["windows"]["monthly"]["reserved"] == 10

    # 2. They expire; the budgets service (on the leader) lets them go.
    def released() -> None:
        status = cluster.status("Budget", namespace, "daily")
        assert not status.get("reservations"), status.get("reservations")
        assert status["windows"]["daily"]["reserved"] == 0, status["windows"]

    eventually(released, timeout=TTL + 60, interval=0.5)

    # 3. Two replicas, ten calls each, at once: still five in total.
    answers = burst([urls[0]] * 10 + [urls[1]] * 10, namespace)
    by_replica = [sum(1 for a in answers[i * 10 : (i + 1) * 10] if a["decision"] == "allow") for i in (0, 1)]
    assert sum(by_replica) == 5, (by_replica, answers)
    status = cluster.status("Budget", namespace, "daily")
    assert len(status["reservations"]) == 5
    assert status["windows"]["daily"]["reserved"] == 10
    print(f"allowed per replica: {by_replica}")

    # 4. A covering Budget whose state is unknown denies (fail closed).
    apply(kubectl, [budget(namespace, "stalled", team, time_zone="Mars/Olympus")])

    def stalled() -> Any:
        stalled = cluster.condition(namespace, "stalled", "Stalled", kind="Budget")
        assert stalled["status"] == "True", stalled
        assert "Mars/Olympus" in stalled["message"], stalled
        code, body = post(urls[1], call(namespace, 0.01))
        assert code == 200, body
        assert body["decision"] == "deny", body
        assert body["reason"].startswith(
            f"BudgetExceeded: Budget {namespace}/stalled: its state is unknown"
        ), body
        return body

    eventually(stalled, timeout=60)

    # 5. Hostile input: a 400 naming the field.
    for cost in (-1, "2", True):
        code, body = post(urls[0], call(namespace, cost))
        assert code == 400, body
        assert body["error"]["code"] == "InvalidRequest"
        assert [e["field"] for e in body["error"]["details"]["errors"]] == ["context.cost.runUsd"], body
    for literal in (b"NaN", b"1e999", b"-Infinity"):
        raw = json.dumps(call(namespace, 0)).encode().replace(b'"runUsd": 0', b'"runUsd": ' + literal)
        code, body = post(urls[0], raw)
        assert code == 400, body
        assert "context.cost.runUsd" in body["error"]["message"], body
