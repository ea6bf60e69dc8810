"""Run the controller-manager: kube client + :class:`Controller` + its kopf registry, under ``kopf.run``.

``joch operator`` calls :func:`run`; it returns when the operator stops (SIGINT or SIGTERM: kopf stops
watching, the cleanup handler stops the workers, then the client's threads are released).
"""

from __future__ import annotations

import dataclasses

import kopf

from joch.controllers import access
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.registry import build_registry, kopf_settings
from joch.kube import client

__all__ = ["OperatorOptions", "run"]


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorOptions:
    kubeconfig: str | None = None
    context: str | None = None
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    limits: client.Limits = dataclasses.field(default_factory=client.Limits)
    liveness_endpoint: str | None = None


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
    return controller, build_registry(controller)


def run(options: OperatorOptions) -> None:
    """Run until stopped by a signal."""
    controller, registry = build(options)
    namespaces = controller.watch_namespaces()
    try:
        kopf.run(
            registry=registry,
            settings=kopf_settings(controller.access),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=options.liveness_endpoint,
        )
    finally:
        controller.kube.close(wait=False)
