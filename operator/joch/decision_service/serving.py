"""Run the decision service inside a kopf operator: :func:`register`, or on its own: :func:`run_standalone`.

``register(registry, host=, port=, kube=...)`` adds to an existing ``kopf.OperatorRegistry``:

- ``@kopf.on.event`` for Policies (joch.dev) and Environments (ops.joch.dev) feeding a
  :class:`~joch.decision_service.service.DecisionService` (event handlers only: kopf writes nothing to the
  watched objects);
- ``@kopf.on.startup``: LIST the Policies and Environments through ``kube`` (so the first decision
  already sees every policy), then start the aiohttp server on ``host:port`` (port 0: any free port;
  the address is logged as ``decision service listening on http://HOST:PORT``);
- ``@kopf.on.cleanup``: stop the server.

A port that cannot be bound stops the operator (``kopf.PermanentError``) rather than leaving it
running without its decision endpoint. A failed LIST is retried by kopf (a temporary error).

``joch policy serve`` calls :func:`run_standalone`: the same registration in a registry of its own,
with a login handler built from the kubeconfig, under ``kopf.run``. Both authenticate callers by
TokenReview when ``settings.decision_callers`` is set (joch.decision_service.callers).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from aiohttp import web

from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.policy import Policy
from joch.decision_service import callers as caller_checks
from joch.decision_service import endpoint
from joch.decision_service.service import DecisionService
from joch.domain.settings import OperatorSettings
from joch.kube import client, errors, listing, login, paths

__all__ = [
    "ENVIRONMENTS",
    "POLICIES",
    "DecisionServer",
    "Registration",
    "kopf_settings",
    "prime",
    "register",
    "run_standalone",
]

logger = logging.getLogger("joch.decision_service")

POLICIES = paths.ResourceType.of(Policy)
ENVIRONMENTS = paths.ResourceType.of(Environment)
LISTENING = "decision service listening on"


class DecisionServer:
    """The aiohttp server of one DecisionService, started and stopped on the running event loop."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise kopf.PermanentError(f"the decision service cannot listen on {self.url}: {exc}") from exc
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        logger.info("%s %s", LISTENING, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


async def prime(service: DecisionService, kube: client.Kube, namespaces: Sequence[str] = ()) -> None:
    """One LIST of the Policies (of ``namespaces``, or all) and the Environments into ``service``."""

    async def load(resource: paths.ResourceType, namespace: str | None) -> list[dict[str, Any]]:
        try:
            return await listing.list_objects(kube, resource, namespace=namespace)
        except errors.NotFound:
            logger.warning("%s is not served (is its CRD installed?); treating it as empty", resource.kind)
            return []

    policies: list[dict[str, Any]] = []
    for namespace in namespaces or (None,):
        policies.extend(await load(POLICIES, namespace))
    environments = await load(ENVIRONMENTS, None)
    service.load(policies, environments)
    logger.info("decision service primed: %d policies, %d environments", len(policies), len(environments))


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """What :func:`register` set up: the service (its state) and its server (its address once started)."""

    service: DecisionService
    server: DecisionServer


def register(
    registry: kopf.OperatorRegistry,
    *,
    host: str,
    port: int,
    kube: client.Kube | None = None,
    settings: OperatorSettings | None = None,
    namespaces: Sequence[str] = (),
    max_body: int = endpoint.DEFAULT_MAX_BODY,
    service: DecisionService | None = None,
    watch: bool = True,
    budgets: endpoint.BudgetStep | None = None,
    callers: caller_checks.CallerGate | None = None,
) -> Registration:
    """Add the decision service's handlers to ``registry`` (see the module docstring).

    ``namespaces``: the namespaces the operator watches (() = all), listed at start-up. Without
    ``kube`` nothing is listed and the service is ready at once (decisions before kopf's first
    listing arrives then see no policies: pass ``kube`` in production). ``watch=False``: the service
    lists and watches nothing itself; whoever does feeds it (``joch operator``: the controller, through
    ``DecisionService.primed`` and ``DecisionService.observe``), and it answers 503 until primed.
    ``budgets``: the budget step after each decision (``joch operator``; joch.decision_service.endpoint).
    ``callers``: who may ask (joch.decision_service.callers; None: anyone reaching the port).
    """
    service = service or DecisionService(settings=settings)
    server = DecisionServer(
        endpoint.build_app(service, max_body=max_body, budgets=budgets, callers=callers),
        host=host,
        port=port,
    )
    if not watch:

        @kopf.on.startup(registry=registry, id="joch-decision-service-startup")
        async def serve(**_: Any) -> None:
            await server.start()

        @kopf.on.cleanup(registry=registry, id="joch-decision-service-cleanup")
        async def stop(**_: Any) -> None:
            await server.stop()

        return Registration(service, server)

    @kopf.on.event(
        POLICIES.group,
        POLICIES.version,
        POLICIES.plural,
        registry=registry,
        id="joch-decision-service-policies",
    )
    async def policies(event: Mapping[str, Any], **_: Any) -> None:
        service.observe_policy(event.get("type"), event["object"])

    @kopf.on.event(
        ENVIRONMENTS.group,
        ENVIRONMENTS.version,
        ENVIRONMENTS.plural,
        registry=registry,
        id="joch-decision-service-environments",
    )
    async def environments(event: Mapping[str, Any], **_: Any) -> None:
        service.observe_environment(event.get("type"), event["object"])

    @kopf.on.startup(registry=registry, id="joch-decision-service-startup")
    async def startup(**_: Any) -> None:
        if kube is not None:
            await prime(service, kube, namespaces)
        else:
            service.ready = True
        await server.start()

    @kopf.on.cleanup(registry=registry, id="joch-decision-service-cleanup")
    async def cleanup(**_: Any) -> None:
        await server.stop()

    return Registration(service, server)


# --- standalone: `joch policy serve` ---------------------------------------------------------------------


def kopf_settings() -> kopf.OperatorSettings:
    """Settings for a kopf that only observes: no Events posted, no peering, bounded watch timeouts."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.peering.standalone = True
    settings.networking.request_timeout = 60
    settings.watching.connect_timeout = 10
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    return settings


@dataclasses.dataclass(frozen=True, slots=True)
class StandaloneOptions:
    kubeconfig: str | None = None
    context: str | None = None
    host: str = "127.0.0.1"
    port: int = 8082
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (the shared namespaces are added); () = every namespace."""
    settings: OperatorSettings = dataclasses.field(default_factory=OperatorSettings)
    max_body: int = endpoint.DEFAULT_MAX_BODY


def run_standalone(options: StandaloneOptions) -> None:
    """Run kopf with only the decision service's handlers until SIGINT or SIGTERM."""
    configuration = client.load_configuration(options.kubeconfig, context=options.context)
    kube = client.Kube(client.new_api_client(configuration, pool_size=4), client.Limits(concurrency=4))
    namespaces: tuple[str, ...] = ()
    if options.namespaces:
        namespaces = tuple(dict.fromkeys((*options.namespaces, *options.settings.shared_namespaces)))
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="joch-decision-service-login")
    def credentials(**_: Any) -> kopf.ConnectionInfo:
        return login.connection_info(kube)

    @kopf.on.cleanup(registry=registry, id="joch-decision-service-connections")
    async def close_connections(**_: Any) -> None:
        await kube.aclose()

    gate = None
    if options.settings.decision_callers:
        gate = caller_checks.CallerGate(options.settings.decision_callers, caller_checks.token_reviewer(kube))
    register(
        registry,
        host=options.host,
        port=options.port,
        kube=kube,
        settings=options.settings,
        namespaces=namespaces,
        max_body=options.max_body,
        callers=gate,
    )
    try:
        kopf.run(
            registry=registry,
            settings=kopf_settings(),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
        )
    finally:
        kube.close(wait=False)
