"""The kopf side: one explicit ``kopf.OperatorRegistry`` with the controller's handlers, and kopf settings.

Handlers (all ``@kopf.on.event``, so kopf itself never patches the watched objects: no finalizers,
no progress annotations, no status writes of its own):

- one per kind the compiler reads (Agent, FrameworkAdapter, ModelRoute, Model, Tool, MCPServer,
  Memory, RAG, Policy, Environment, Team) and per kind admission's promotion gates read (Eval,
  Approval; stored only, for the webhooks) -> ``Controller.observe``;
- core Namespaces (their labels decide Agents' environments, decision D5 of docs/decisions.md) ->
  ``Controller.observe_namespace``;
  (kinds and Namespaces the operator may not list, ``Controller.access``, are not watched);
- ``on.startup``: prime and start the controller (kopf starts watching only after it returns);
  ``on.cleanup``: stop it and close its connections; ``on.login``: the credentials of the operator's
  own kube client.

CAM ConfigMaps are not watched through kopf: a metadata-only informer (joch.kube.watch.MetadataWatch,
selected server-side by label, one task per watched namespace) feeds ``Controller.observe_configmap``. The
operator only has to recognise its own ConfigMaps (sha annotation, owner, generation label), so it
receives their metadata, not the manifests, and skips kopf's per-event handler machinery: in a fan-out
every rewritten manifest echoes back through this watch. It starts after the controller (from the
startup handler) and stops first at cleanup.

Settings (:func:`kopf_settings`): kopf's progress and diff-base storage under the ``joch.dev`` prefix in
annotations (never ``status.kopf``, which the CRD schemas would prune; the diff base builds no essence,
see :class:`EventsOnlyDiffBaseStorage`), its finalizer named ``joch.dev/finalizer`` (unused: no handler
needs one), posting of its log Events off, peering off, per-object workers idle out after 1 s.
``joch operator`` and the integration tests run exactly this registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from joch.controllers.access import Access
from joch.controllers.reconciler import RESOURCE_TYPES, Controller
from joch.kube import configmaps, login, paths
from joch.kube.watch import MetadataWatch

__all__ = ["build_registry", "kopf_settings"]

PREFIX = "joch.dev"


class EventsOnlyDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base storage (``joch.dev/last-handled-configuration``) that builds an empty
    essence. kopf builds the essence of every object on every event (a deep copy of the whole body,
    managedFields included) to diff it for change handlers; this registry has only event handlers,
    which never see diffs, so the copy is pure cost (about half of kopf's time per event). Registering a
    change handler (on.create/update/field) requires switching back to the stock storage."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}


def kopf_settings(access: Access | None = None) -> kopf.OperatorSettings:
    """kopf's settings; with restricted ``access`` (no CRD or Namespace listing), kopf's scanning is off
    (it would only warn that it cannot watch them)."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = EventsOnlyDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.enabled = False
    settings.peering.standalone = True
    # kopf keeps a worker (holding the object's latest raw event) per object until it idles this long;
    # short, so a burst over thousands of objects does not pin thousands of bodies in memory.
    settings.queueing.idle_timeout = 1.0
    settings.networking.request_timeout = 60
    settings.watching.connect_timeout = 10
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    if access is not None and (not access.crds or (access.namespaces and not access.namespace_labels)):
        settings.scanning.disabled = True
    return settings


def build_registry(controller: Controller, *, start_workers: bool = True) -> kopf.OperatorRegistry:
    """A fresh registry whose handlers feed ``controller``.

    ``start_workers=False`` (leader election): the start-up handler only primes the store (it stays warm
    for the webhooks and a quick take-over); whoever wins the Lease calls ``controller.start()``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="joch-login")
    def credentials(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(controller.kube)

    watches = [
        MetadataWatch(
            controller.kube,
            paths.CONFIGMAPS,
            controller.observe_configmap,
            namespace=namespace,
            label_selector=configmaps.MANIFEST_SELECTOR,
        )
        for namespace in controller.watch_namespaces() or (None,)
    ]

    @kopf.on.startup(registry=registry, id="joch-startup")
    async def startup(**_: Any) -> None:
        if start_workers:
            await controller.start()
        else:
            await controller.prime()
        for watch in watches:
            watch.start(controller.manifest_lists.pop(watch.namespace, None))

    @kopf.on.cleanup(registry=registry, id="joch-cleanup")
    async def cleanup(**_: Any) -> None:
        await asyncio.gather(*(watch.stop() for watch in watches))
        await controller.stop()
        await controller.kube.aclose()

    for kind in RESOURCE_TYPES:
        if kind in controller.access.kinds:
            _watch_kind(registry, controller, kind)

    if controller.access.namespace_labels:

        @kopf.on.event("", "v1", "namespaces", registry=registry, id="joch-namespaces")
        async def namespaces(event: Mapping[str, Any], **_: Any) -> None:
            controller.observe_namespace(event.get("type"), event["object"])

    return registry


def _watch_kind(registry: kopf.OperatorRegistry, controller: Controller, kind: str) -> None:
    resource = RESOURCE_TYPES[kind]

    @kopf.on.event(
        resource.group, resource.version, resource.plural, registry=registry, id=f"joch-{resource.plural}"
    )
    async def observe(event: Mapping[str, Any], **_: Any) -> None:
        controller.observe(kind, event.get("type"), event["object"])
