"""The deletion audit (joch.controllers.audit) against the real API server.

Cases: with a store holding two Tools of which one no longer exists (deleted behind its back, no event),
an audit LISTs Tools page by page as metadata and reports exactly the missing one, with its uid; an
entry newer than the list (a higher resourceVersion) is kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest

from joch.api import v1alpha1
from joch.controllers.audit import DeletionAudit
from joch.controllers.reconciler import RESOURCE_TYPES
from joch.domain.reconcile.cache import Store, parse_entry
from joch.kube import client, paths
from tests import factories

pytestmark = pytest.mark.integration

TOOLS = paths.ResourceType.of(v1alpha1.Tool)


def tool(namespace: str, name: str) -> dict[str, Any]:
    return factories.tool(name, namespace=namespace)


@pytest.mark.usefixtures("crds_installed")
def test_an_audit_reports_exactly_what_the_api_server_no_longer_has(kubeconfig: str, namespace: str) -> None:
    kube = client.Kube(client.new_api_client(client.load_configuration(kubeconfig)))
    reported: list[tuple[str, Mapping[str, Any]]] = []

    async def scenario() -> list[tuple[str | None, str]]:
        try:
            store = Store()
            for name in ("kept", "gone", "late"):
                body = await kube.request(
                    "POST", TOOLS.collection_path(namespace), body=tool(namespace, name)
                )
                store.upsert(parse_entry(v1alpha1.Tool, body))
            for name in ("gone", "late"):
                await kube.request("DELETE", TOOLS.object_path(namespace, name))
            late = store.entry("Tool", namespace, "late")
            assert late is not None
            store.upsert(dataclasses.replace(late, resource_version=str(10**15)))  # as if re-created later
            audit = DeletionAudit(
                kube,
                store,
                RESOURCE_TYPES,
                lambda: (namespace,),
                lambda kind, body: reported.append((kind, body)),
            )
            return await audit.audit("Tool")
        finally:
            await kube.aclose()

    try:
        gone = asyncio.run(scenario())
    finally:
        kube.close()
    assert gone == [(namespace, "gone")]
    [(kind, body)] = reported
    assert kind == "Tool"
    assert body["metadata"]["name"] == "gone"
    assert body["metadata"]["namespace"] == namespace
    assert body["metadata"]["uid"]
