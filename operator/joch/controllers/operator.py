"""Run the controller-manager: kube client + :class:`Controller` + its kopf registry, under ``kopf.run``.

``joch operator`` calls :func:`run`; it returns when the operator stops (SIGINT or SIGTERM: kopf stops
watching, the cleanup handler stops the workers, then the client's threads are released).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import kopf

from joch.controllers import access
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.registry import build_registry, kopf_settings
from joch.kube import client

__all__ = ["Extend", "OperatorOptions", "build", "run"]

Extend = Callable[[kopf.OperatorSettings, kopf.OperatorRegistry, Controller], None]
"""Adds to the operator before ``kopf.run`` (webhooks, decision service, metrics, leader election)."""


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorOptions:
    kubeconfig: str | None = None
    context: str | None = None
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    limits: client.Limits = dataclasses.field(default_factory=client.Limits)
    liveness_endpoint: str | None = None
    start_workers: bool = True
    """False: the start-up handler only primes the store; the workers start when something (a leader
    elector, added by ``extend``) calls ``controller.start()``."""


def build(options: OperatorOptions) -> tuple[Controller, kopf.OperatorRegistry]:
    """The controller (with its kube client and what it may read) and the registry feeding it."""
    configuration = client.load_configuration(options.kubeconfig, context=options.context)
    api = client.new_api_client(configuration, pool_size=options.limits.concurrency)
    kube = client.Kube(api, options.limits)
    try:
        granted = access.probe(kube, namespaces=options.controller.watch_namespaces())
    except BaseException:
        kube.close()
        raise
    controller = Controller(kube, options.controller, access=granted)
    return controller, build_registry(controller, start_workers=options.start_workers)


def run(options: OperatorOptions, *, extend: Extend | None = None) -> None:
    """Run until stopped by a signal; ``extend(settings, registry, controller)`` is called after
    :func:`build` and before ``kopf.run`` (the CLI composes webhooks, decisions and metrics there)."""
    controller, registry = build(options)
    namespaces = controller.watch_namespaces()
    try:
        settings = kopf_settings(controller.access)
        if extend is not None:
            extend(settings, registry, controller)
        kopf.run(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=options.liveness_endpoint,
        )
    finally:
        controller.kube.close(wait=False)
