"""The kopf side of the decision service (joch.decision_service.serving), without a cluster.

Cases: register() adds exactly the two event handlers (policies.joch.dev, environments.ops.joch.dev)
and the startup/cleanup pair, under joch-decision-service-* ids, to the registry it is given; the event
handlers feed the service; startup primes the service from a LIST (paginated, in each namespace
given, a missing CRD counted as empty) and then serves real HTTP on the port it bound (port 0 picks
one), cleanup stops it; without a kube client the service is ready at once; a port already taken is a
kopf.PermanentError naming the address; login.connection_info carries the kube client's credentials.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf
import pytest
from kubernetes import client as k8s

from joch.decision_service import endpoint, serving
from joch.decision_service.service import DecisionService
from joch.kube import client, errors, login
from tests.unit.decision_service import factories as f


class FakeKube:
    """Answers LISTs from a table of path -> pages; records the requests."""

    def __init__(self, pages: Mapping[str, list[dict[str, Any]]]) -> None:
        self.pages = pages
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def request(
        self, method: str, path: str, *, query: Mapping[str, Any] | None = None, **_: Any
    ) -> Any:
        assert method == "GET"
        self.requests.append((path, dict(query or {})))
        if path not in self.pages:
            raise errors.NotFound(f"GET {path}: not found", status=404)
        pages = self.pages[path]
        index = int((query or {}).get("continue") or 0)
        token = str(index + 1) if index + 1 < len(pages) else None
        return {**pages[index], "metadata": {"continue": token} if token else {}}


def handlers(registry: kopf.OperatorRegistry) -> dict[str, Any]:
    found = [*registry._activities.get_all_handlers(), *registry._watching.get_all_handlers()]
    return {str(handler.id): handler for handler in found}


def test_register_adds_the_handlers() -> None:
    registry = kopf.OperatorRegistry()
    registration = serving.register(registry, host="127.0.0.1", port=0)
    found = handlers(registry)
    assert sorted(found) == [
        "joch-decision-service-cleanup",
        "joch-decision-service-environments",
        "joch-decision-service-policies",
        "joch-decision-service-startup",
    ]
    policies = found["joch-decision-service-policies"]
    environments = found["joch-decision-service-environments"]
    assert (policies.selector.group, policies.selector.any_name) == ("joch.dev", "policies")
    assert (environments.selector.group, environments.selector.any_name) == ("ops.joch.dev", "environments")
    assert isinstance(registration.service, DecisionService)


def test_event_handlers_feed_the_service() -> None:
    registry = kopf.OperatorRegistry()
    service = serving.register(registry, host="127.0.0.1", port=0).service
    found = handlers(registry)

    async def main() -> None:
        await found["joch-decision-service-policies"].fn(event={"type": "ADDED", "object": f.policy()})
        await found["joch-decision-service-environments"].fn(event={"type": None, "object": f.environment()})

    asyncio.run(main())
    assert [p["name"] for p in service.describe()] == ["caps"]
    assert service.environment("prod") is not None


def test_startup_primes_then_serves_and_cleanup_stops() -> None:
    policies_path = serving.POLICIES.collection_path("support")
    kube = FakeKube(
        {
            policies_path: [{"items": [f.policy("a")]}, {"items": [f.policy("b")]}],
            serving.ENVIRONMENTS.collection_path(): [{"items": [f.environment()]}],
        }
    )
    registry = kopf.OperatorRegistry()
    registration = serving.register(
        registry,
        host="127.0.0.1",
        port=0,
        kube=kube,  # type: ignore[arg-type]
        namespaces=["support", "missing-crd-ns"],
    )
    found = handlers(registry)

    async def main() -> None:
        await found["joch-decision-service-startup"].fn()
        try:
            assert registration.server.port != 0
            context = f.context(tool={"name": "shell.exec"})
            async with aiohttp.ClientSession() as session:
                url = registration.server.url + endpoint.EVALUATE_PATH
                async with session.post(url, json={"context": context}) as response:
                    assert response.status == 200
                    assert (await response.json())["policyId"] == "a"
        finally:
            await found["joch-decision-service-cleanup"].fn()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session, session.get(registration.server.url + "/healthz"):
                pass

    asyncio.run(main())
    assert registration.service.ready
    assert [p["name"] for p in registration.service.describe()] == ["a", "b"]
    assert [path for path, _ in kube.requests] == [
        policies_path,
        policies_path,
        serving.POLICIES.collection_path("missing-crd-ns"),
        serving.ENVIRONMENTS.collection_path(),
    ]


def test_without_a_kube_client_the_service_is_ready_at_once() -> None:
    registry = kopf.OperatorRegistry()
    registration = serving.register(registry, host="127.0.0.1", port=0)
    found = handlers(registry)

    async def main() -> None:
        await found["joch-decision-service-startup"].fn()
        await found["joch-decision-service-cleanup"].fn()

    asyncio.run(main())
    assert registration.service.ready


def test_a_taken_port_is_a_permanent_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serving.DecisionServer(endpoint.build_app(DecisionService()), host="127.0.0.1", port=port)
        with pytest.raises(kopf.PermanentError, match=f"cannot listen on http://127.0.0.1:{port}"):
            asyncio.run(server.start())
    assert (
        serving.DecisionServer(endpoint.build_app(DecisionService()), host="::1", port=1).url
        == "http://[::1]:1"
    )


def test_connection_info_carries_the_credentials() -> None:
    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:6443"
    configuration.api_key = {"BearerToken": "secret"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.ssl_ca_cert = "/tmp/ca.crt"
    kube = client.Kube(client.new_api_client(configuration))
    try:
        info = login.connection_info(kube)
    finally:
        kube.close()
    assert (info.server, info.scheme, info.token, info.ca_path) == (
        "https://127.0.0.1:6443",
        "Bearer",
        "secret",
        "/tmp/ca.crt",
    )
    assert info.insecure is False


def test_kopf_settings_only_observe() -> None:
    settings = serving.kopf_settings()
    assert settings.posting.enabled is False
    assert settings.peering.standalone is True
    assert settings.watching.server_timeout == 600
