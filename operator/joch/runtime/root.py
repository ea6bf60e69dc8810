"""The composition root: one operator process built from one :class:`~joch.runtime.options.Options`.

:func:`run` owns the whole life of the process, in this order:

1. the ports: every server's port is bound once (:mod:`joch.runtime.ports`); one that cannot be bound
   stops the process before anything else starts;
2. the governance audit log (:mod:`joch.audit`, when ``--audit-log`` is given; a path that cannot be
   opened stops the process), then the clients: the kube client of the controllers (its connection
   pool sized by ``limits``), and a small one of its own for the Lease, so renewals never queue behind
   writes;
3. what the credentials may read (:func:`joch.controllers.access.probe`) and the shared cache and
   services (:class:`joch.controllers.reconciler.Controller`, one LIST and one watch per kind, one
   policy compiler) with the kopf registry that feeds them;
4. the admission webhooks (:mod:`joch.webhooks`) reading the same cache, with their serving
   certificate (local CA, a mounted directory, or a Secret the operator rotates);
5. the decision service (:mod:`joch.decision_service`, built once when either its HTTP endpoint or the
   gRPC server is served), fed by the controller's Policy and Environment watches and compiling through
   its policy compiler, with one budget step (:mod:`joch.controllers.reservations`) reading and
   reserving in the controller's cache of Budgets, and one caller gate checking callers' tokens by
   TokenReview through the controller's kube client (:mod:`joch.decision_service.callers`): on the HTTP
   endpoint only with ``decision_callers``, on gRPC always (any authenticated identity without them);
6. the /v1 API (:mod:`joch.apiserver`) on the same cache, calling kube-apiserver as each caller
   (one set of clients per caller's token, shared with gRPC's ResourceService, closed last);
   the gRPC server (:mod:`joch.grpc`, ``--grpc-port``) over the same decision service, budget step and
   caller gate, its ResourceService calling kube-apiserver as each caller, started once the webhook
   serving certificate is loaded (TLS with it in a Pod, following its rotations; plaintext on loopback
   outside a cluster); /metrics, /healthz and /readyz (:mod:`joch.metrics`), and with a Lease the leader
   elector that starts the controllers' workers when it leads and stops the process when it loses the
   lead;
7. ``kopf.run`` until SIGINT or SIGTERM; then the clean-up in reverse: the Lease released, the
   background tasks cancelled, the servers closed, the clients released.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any, cast

import grpc
import kopf

from joch import apiserver, audit, decision_service, metrics, webhooks
from joch.controllers import access
from joch.controllers.reconciler import Controller
from joch.controllers.registry import build_registry, kopf_settings
from joch.controllers.reservations import BudgetGate
from joch.decision_service import callers
from joch.grpc import ext_authz
from joch.grpc.server import GrpcServer
from joch.kube import client, leader, webhook_tls
from joch.runtime import ports
from joch.runtime.options import ANY_ADDRESS, LOOPBACK, Options, Serving

__all__ = ["Announce", "build", "reserve_ports", "run"]

logger = logging.getLogger("joch.operator")

Announce = Callable[[Options], None]
"""Called once the ports are chosen, before the process connects anywhere (the CLI prints them)."""

TLS = webhook_tls.SecretTLS | webhook_tls.DirectoryTLS


def reserve_ports(options: Options) -> Options:
    """``options`` with every listener's port bound once and chosen (raises ports.PortError)."""
    serving = options.serving
    chosen = ports.reserve(serving.listeners(), local=serving.local)
    return dataclasses.replace(options, serving=serving.with_ports(chosen))


def build(options: Options) -> tuple[Controller, kopf.OperatorRegistry]:
    """The controller (with its kube client and what it may read) and the registry feeding it.

    Without a Lease the start-up handler starts the workers; with one, only the elector does. The
    controller holds the governance audit log (raises audit.AuditLogError when it cannot be opened)."""
    governance = audit.open_log(options.audit_log, hash_chain=options.audit_hash_chain)
    try:
        configuration = client.load_configuration(options.kubeconfig, context=options.context)
        api = client.new_api_client(configuration, pool_size=options.limits.concurrency)
        kube = client.Kube(api, options.limits)
        try:
            granted = access.probe(kube, namespaces=options.controller.watch_namespaces())
        except BaseException:
            kube.close()
            raise
    except BaseException:
        governance.close()
        raise
    controller = Controller(kube, options.controller, access=granted, governance=governance)
    return controller, build_registry(controller, start_workers=options.serving.lease is None)


def run(options: Options, *, announce: Announce | None = None) -> None:
    """Run one operator process until SIGINT or SIGTERM (see the module docstring for the order).

    Raises ports.PortError when a port cannot be bound and errors.KubeError when the cluster cannot
    be reached; nothing is left running in either case."""
    options = reserve_ports(options)
    if announce is not None:
        announce(options)
    controller, registry = build(options)
    namespaces = controller.watch_namespaces()
    try:
        settings = kopf_settings(controller.access)
        _compose(options, settings, registry, controller)
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
        controller.governance.close()


# --------------------------------------------------------------------------------------- composition


def _compose(
    options: Options, settings: kopf.OperatorSettings, registry: kopf.OperatorRegistry, controller: Controller
) -> None:
    """Add the webhooks, the decision service, metrics/health and the elector to the process, with
    their start-up and clean-up handlers."""
    serving = options.serving
    health = metrics.Health()
    tls = _webhook_tls(serving, controller) if serving.webhooks else None
    if serving.webhooks:
        _configure_webhooks(serving, settings, registry, controller, tls)
    if tls is not None:
        context = tls
        health.add_readiness("webhook-tls", lambda: context.ready)
    decisions = _decisions(options, registry, controller)
    # One set of clients per caller's token for the /v1 API and gRPC's ResourceService, closed once.
    api_callers = (
        apiserver.Callers(controller.kube.configuration) if serving.api_port or serving.grpc_port else None
    )
    api = _api_server(serving, controller, tls, api_callers)
    elector = _elector(options)
    tasks: list[asyncio.Task[None]] = []
    servers: list[metrics.Servers] = []
    grpc_servers: list[GrpcServer] = []

    async def lost() -> None:
        logger.warning("lost the leadership: stopping; restart as a follower")
        await controller.stop()
        os.kill(os.getpid(), signal.SIGTERM)

    @kopf.on.startup(registry=registry, id="joch-serving")
    async def startup(**_: Any) -> None:
        if serving.metrics_port or serving.health_port:
            servers.append(
                await metrics.serve(
                    host=serving.listen_host,
                    metrics_port=serving.metrics_port or None,
                    health_port=serving.health_port or None,
                    health=health,
                )
            )
            logger.info("serving %s", ", ".join(f"{k} on :{v}" for k, v in servers[0].ports.items()))
        if tls is not None:
            await tls.sync()
            tasks.append(asyncio.create_task(tls.run(), name="joch webhook tls"))
        if api is not None:
            await api.start()
        if serving.grpc_port and decisions is not None:
            grpc_servers.append(await _start_grpc(serving, controller, decisions, tls, api_callers))
        if elector is not None:
            tasks.append(
                asyncio.create_task(
                    elector.run(on_started=controller.start, on_stopped=lost), name="joch leader election"
                )
            )

    @kopf.on.cleanup(registry=registry, id="joch-serving-cleanup")
    async def cleanup(**_: Any) -> None:
        try:
            if elector is not None:
                await elector.release()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for running in servers:
                await running.close()
            for grpc_server in grpc_servers:
                await grpc_server.stop()
            if api is not None:
                await api.stop()
            if api_callers is not None:
                await api_callers.aclose()
            if elector is not None:
                await elector.kube.aclose()
                elector.kube.close(wait=False)


def _api_server(
    serving: Serving, controller: Controller, tls: TLS | None, api_callers: apiserver.Callers | None
) -> apiserver.ApiServer | None:
    """The /v1 API on the controller's cache and settings: every call to kube-apiserver made with the
    caller's token (the operator's own client reads only AgBOM documents the caller could see). In a
    Pod it serves HTTPS with the webhooks' certificate; outside a cluster plain HTTP on loopback."""
    if not serving.api_port or api_callers is None:
        return None
    context = apiserver.ApiContext(
        callers=api_callers,
        lookup=controller.store,
        settings=controller.settings,
        operator=controller.kube,
    )
    return apiserver.ApiServer(
        context,
        host=serving.webhook_host,
        port=serving.api_port,
        ssl_context=tls.context if tls is not None else None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Decisions:
    """What the HTTP decision endpoint and the gRPC server share: one service, budget step, caller gate."""

    service: decision_service.DecisionService
    budgets: BudgetGate
    gate: callers.CallerGate


def _decisions(
    options: Options, registry: kopf.OperatorRegistry, controller: Controller
) -> _Decisions | None:
    """The decision service when its HTTP endpoint or the gRPC server is served (the endpoint registered
    here); None when neither is."""
    serving = options.serving
    if not serving.decision_port and not serving.grpc_port:
        return None
    # One cache: the controller lists and watches Policies and Environments once and feeds the decision
    # service (HTTP and gRPC alike), which compiles through the controller's policy compiler.
    service = decision_service.DecisionService(settings=controller.settings, compiler=controller.programs)
    controller.feeds.append(service)
    # Budgets: a call the policies allow is checked against the covering Budgets in the same cache and
    # its cost reserved in their status (joch.controllers.reservations).
    budgets = BudgetGate(controller, ttl_seconds=options.controller.budget_reservation_ttl)
    # Who may ask: each caller's token checked by a TokenReview through the controller's kube client
    # (joch.decision_service.callers), and against decision_callers when that is set; one gate (one
    # cache of verdicts) for both faces.
    allowed = controller.settings.decision_callers
    gate = callers.CallerGate(allowed or None, callers.token_reviewer(controller.kube))
    if serving.decision_port:
        decision_service.register(
            registry,
            host=serving.decision_host,
            port=serving.decision_port,
            service=service,
            watch=False,
            budgets=budgets,
            callers=gate if allowed else None,  # HTTP authenticates only with decision_callers; gRPC always
        )
    return _Decisions(service, budgets, gate)


async def _start_grpc(
    serving: Serving,
    controller: Controller,
    decisions: _Decisions,
    tls: TLS | None,
    api_callers: apiserver.Callers | None,
) -> GrpcServer:
    """The gRPC server over the decision service, listening where the /v1 API does; raises
    kopf.PermanentError naming --grpc-port when it cannot listen."""
    settings = dataclasses.replace(serving.grpc, host=serving.webhook_host, port=serving.grpc_port)
    credentials = _grpc_credentials(tls)
    if credentials is None and settings.host != LOOPBACK:
        logger.warning(
            "gRPC: no serving certificate (webhooks off): serving plaintext on %s:%d; bearer tokens cross "
            "the network unencrypted",
            settings.host,
            settings.port,
        )
    server = GrpcServer(
        decisions.service,
        settings,
        gate=decisions.gate,
        api_callers=api_callers,
        budgets=decisions.budgets,
        approvals=_approval_lookup(controller),
        credentials=credentials,
    )
    try:
        await server.start()
    except OSError as exc:
        raise kopf.PermanentError(f"gRPC server (--grpc-port={settings.port}): {exc}") from exc
    return server


def _approval_lookup(controller: Controller) -> ext_authz.Approvals:
    """ext_authz's reading of an Approval (status included) from the controller's cache, so a retried
    call goes through once the Approval it named is approved."""

    async def approval(namespace: str, name: str) -> Mapping[str, Any] | None:
        entry = controller.store.entry("Approval", namespace, name)
        return entry.document() if entry is not None else None

    return approval


def _grpc_credentials(tls: TLS | None) -> grpc.ServerCredentials | None:
    """TLS with the webhooks' serving certificate (loaded by ``tls.sync()``), following its rotations:
    before each new connection's handshake gRPC asks for the certificate, and gets the one ``tls`` loaded
    last when it changed. None without a certificate (plaintext: loopback outside a cluster)."""
    if tls is None or tls.key_pair is None:
        return None
    source = tls
    current = tls.key_pair

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        nonlocal current
        pair = source.key_pair
        if pair is None or pair is current:
            return None  # unchanged
        current = pair
        return grpc.ssl_server_certificate_configuration([pair])

    # grpc's stubs type the fetcher as always returning a configuration; None (no change) is documented.
    fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", fetch)
    return grpc.dynamic_ssl_server_credentials(grpc.ssl_server_certificate_configuration([current]), fetcher)


def _webhook_tls(serving: Serving, controller: Controller) -> TLS | None:
    if serving.webhook_tls_dir:
        return webhook_tls.DirectoryTLS(serving.webhook_tls_dir)
    if serving.webhook_tls_secret:
        assert serving.webhook_service is not None
        namespace, _, name = serving.webhook_tls_secret.partition("/")
        validity = datetime.timedelta(days=serving.webhook_cert_validity_days)
        return webhook_tls.SecretTLS(
            controller.kube,
            secret_namespace=namespace,
            secret_name=name,
            config=webhook_tls.ServingConfig.for_service(
                serving.webhook_service,
                also=_also_served(serving),
                validity=validity,
            ),
            configuration=serving.webhook_configuration,
        )
    return None


def _also_served(serving: Serving) -> tuple[str, ...]:
    """The Services of the servers that use the webhooks' certificate too (its names go on it)."""
    also = []
    if serving.api_service and serving.api_port:
        also.append(serving.api_service)
    if serving.grpc_service and serving.grpc_port:
        also.append(serving.grpc_service)
    return tuple(also)


def _configure_webhooks(
    serving: Serving,
    settings: kopf.OperatorSettings,
    registry: kopf.OperatorRegistry,
    controller: Controller,
    tls: TLS | None,
) -> None:
    common: dict[str, Any] = {
        "registry": registry,
        "lookup": controller.store,
        "joch_settings": controller.settings,
        "policies": controller.programs,  # one policy compiler for controllers, webhooks and decisions
        "kube": controller.kube,
        "port": serving.webhook_port,
        "cert_dir": serving.webhook_cert_dir,
        "governance": controller.governance,  # one audit log for webhooks and controllers
    }
    if tls is None:
        # Local control plane: own CA in cert_dir, configurations applied (url mode), removed on exit.
        webhooks.configure(settings, listen_host=LOOPBACK, mode="url", remove_on_exit=True, **common)
        return
    service_name, service_namespace = "joch-webhook", serving.pod_namespace
    if serving.webhook_service:
        service_name, service_namespace = serving.webhook_service.split(".")[:2]
    webhooks.configure(
        settings,
        listen_host=ANY_ADDRESS,  # the API server reaches the Pod through the Service
        mode="service",
        manage_configurations=False,
        ssl_context=tls.context,
        operator_namespace=serving.pod_namespace or service_namespace or "joch-operator",
        service_name=service_name,
        **common,
    )


def _elector(options: Options) -> leader.LeaderElector | None:
    """The Lease elector, with a kube client of its own: no retries, one retry period per request, so
    renewals never queue behind the controllers' writes."""
    lease = options.serving.lease
    if lease is None:
        return None
    configuration = client.load_configuration(options.kubeconfig, context=options.context)
    limits = client.Limits(concurrency=2, max_retries=0, request_timeout=lease.retry_period)
    kube = client.Kube(client.new_api_client(configuration, pool_size=2), limits)
    return leader.LeaderElector(kube, lease)
