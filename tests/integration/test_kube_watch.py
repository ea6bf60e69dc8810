"""MetadataWatch (joch.kube.watch) against the real API server.

Cases: the start LIST reports an existing labelled ConfigMap as ADDED, metadata only (no data); a
create, an update and a delete arrive as ADDED, MODIFIED, DELETED with their resourceVersions rising;
an unlabelled ConfigMap is never reported (server-side label selection); stop() ends the thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client as k8s

from joch.kube import client, paths
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
