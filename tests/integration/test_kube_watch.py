"""joch.kube's aiohttp transport against the real API server: MetadataWatch, and the manifest
ConfigMap writes.

Cases: the start LIST reports an existing labelled ConfigMap as ADDED, metadata only (no data); a
create, an update and a delete arrive as ADDED, MODIFIED, DELETED with their resourceVersions rising;
an unlabelled ConfigMap is never reported (server-side label selection); stop() ends the task.
apply_configmap creates, replaces and skips an unchanged ConfigMap, the API server answering its writes
with metadata only, and what it remembers (resourceVersion, sha, owner) is what the server holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client as k8s

from joch.kube import client, configmaps, paths
from joch.kube.watch import MetadataWatch

pytestmark = pytest.mark.integration

SELECTOR = "joch.dev/test-watch=yes"


def body(name: str, data: str, labelled: bool = True) -> k8s.V1ConfigMap:
    labels = {"joch.dev/test-watch": "yes"} if labelled else {}
    return k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=labels), data={"manifest.yaml": data})


def test_metadata_watch_reports_labelled_configmaps_metadata_only(kubeconfig: str, namespace: str) -> None:
    kube = client.Kube(client.new_api_client(client.load_configuration(kubeconfig)))
    core = k8s.CoreV1Api(client.new_api_client(client.load_configuration(kubeconfig)))
    core.create_namespaced_config_map(namespace, body("before", "x: 1\n"))

    async def scenario() -> list[tuple[str, Mapping[str, Any]]]:
        events: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue()
        seen: list[tuple[str, Mapping[str, Any]]] = []

        async def next_event() -> None:
            seen.append(await asyncio.wait_for(events.get(), timeout=20))

        def call(fn: Any, *args: Any) -> Any:
            return asyncio.to_thread(fn, *args)

        watch = MetadataWatch(
            kube, paths.CONFIGMAPS, lambda t, o: events.put_nowait((t, o)), namespace=namespace,
            label_selector=SELECTOR,
        )  # fmt: skip
        watch.start()
        try:
            await next_event()
            await call(core.create_namespaced_config_map, namespace, body("unlabelled", "z", labelled=False))
            await call(core.create_namespaced_config_map, namespace, body("after", "y: 2\n"))
            await next_event()
            await call(core.patch_namespaced_config_map, "after", namespace, {"data": {"manifest.yaml": "3"}})
            await next_event()
            await call(core.delete_namespaced_config_map, "after", namespace)
            await next_event()
        finally:
            await watch.stop()
            await kube.aclose()
        assert events.empty(), "nothing else (the unlabelled ConfigMap was never reported)"
        assert watch.lists == 1
        return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        kube.close()
    assert [(kind, obj["metadata"]["name"]) for kind, obj in seen] == [
        ("ADDED", "before"),
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "after"),
    ]
    for _, obj in seen:
        assert "data" not in obj, "metadata only"
        assert obj["metadata"]["labels"] == {"joch.dev/test-watch": "yes"}
    versions = [int(obj["metadata"]["resourceVersion"]) for _, obj in seen[1:]]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


def manifest_cm(namespace: str, sha: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "writer-g1",
            "namespace": namespace,
            "labels": {"joch.dev/agent": "writer", "joch.dev/generation": "1"},
            "annotations": {"joch.dev/manifest-sha256": sha},
        },
        "data": {"manifest.yaml": f"sha: {sha}\n" + "x" * 2000},
    }


def test_manifest_writes_are_answered_with_metadata_only(kubeconfig: str, namespace: str) -> None:
    kube = client.Kube(client.new_api_client(client.load_configuration(kubeconfig)))
    answers: list[Any] = []
    attempt = kube.attempt

    async def recording(method: str, path: str, **kwargs: Any) -> Any:
        answer = await attempt(method, path, **kwargs)
        answers.append((method, answer))
        return answer

    kube.attempt = recording  # type: ignore[method-assign]

    async def scenario() -> list[configmaps.Outcome]:
        try:
            created, first = await configmaps.apply_configmap(
                kube, manifest_cm(namespace, "s1"), current=None
            )
            replaced, second = await configmaps.apply_configmap(
                kube, manifest_cm(namespace, "s2"), current=first
            )
            same, third = await configmaps.apply_configmap(kube, manifest_cm(namespace, "s2"), current=second)
            assert third is second
            assert (second.sha256, second.agent, second.generation) == ("s2", "writer", 1)
            stored = await kube.request("GET", paths.CONFIGMAPS.object_path(namespace, "writer-g1"))
            assert stored["metadata"]["resourceVersion"] == second.resource_version
            assert stored["data"]["manifest.yaml"].startswith("sha: s2")
            return [created, replaced, same]
        finally:
            await kube.aclose()

    try:
        outcomes = asyncio.run(scenario())
    finally:
        kube.close()
    assert outcomes == ["created", "replaced", "unchanged"]
    writes = [answer for method, answer in answers if method in ("POST", "PUT")]
    assert len(writes) == 2
    assert all(answer["kind"] == "PartialObjectMetadata" and "data" not in answer for answer in writes)
