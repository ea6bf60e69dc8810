"""joch.webhooks: the admission webhooks (AdmissionReview <-> joch.domain.admission), served in the operator.

The operator wires them in with one call, before ``kopf.run``::

    webhooks.configure(
        settings,                                # the kopf.OperatorSettings given to kopf.run
        registry=registry,
        lookup=controller.store,                 # the controller's store (a compilation.Lookup)
        joch_settings=controller.settings,
        kube=controller.kube,                    # used to apply the webhook configurations
        listen_host="127.0.0.1", port=9443, cert_dir=".dev/webhook-certs",
    )

It sets ``settings.admission.server`` to a :class:`AdmissionServer`: kopf starts it once its start-up
handlers have run (the store is primed by then) and stops it on exit. On start it makes sure the
certificates exist (certs.py), listens (server.py), and applies the Validating/Mutating webhook
configurations (rendered by joch.manifests.webhooks) with the current CA bundle, in ``url`` mode
(``https://<advertise_host>:<port>/...``: a local control plane) or ``service`` mode (in-cluster).
No kopf admission handlers are registered and ``settings.admission.managed`` stays unset: kopf's
own configuration management would use timeoutSeconds 30 and no namespaceSelector.

Modules: reviews (the AdmissionReview wire shape), handler (one call, transport-free), server (aiohttp),
certs (CA and serving certificate), configurations (server-side apply of the configurations).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import ipaddress
import logging
import pathlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import kopf

from joch import audit
from joch.api.v1alpha1.execution import Execution
from joch.domain.admission import WATCHED_KIND_NAMES, Admission, executions
from joch.domain.admission.verdict import Findings
from joch.domain.admission.world import World
from joch.domain.compilation import Lookup
from joch.domain.policy import PolicyCompiler
from joch.domain.reconcile import budgets
from joch.domain.reconcile.cache import Store
from joch.domain.settings import OperatorSettings
from joch.kube import client
from joch.manifests import webhooks as rendering
from joch.webhooks import approvals, certs, configurations, handler, reviews, server
from joch.webhooks.handler import AdmissionEndpoint
from joch.webhooks.server import WebhookServer

__all__ = [
    "AdmissionEndpoint",
    "AdmissionServer",
    "WebhookOptions",
    "WebhookServer",
    "certs",
    "configurations",
    "configure",
    "handler",
    "reviews",
    "server",
]

logger = logging.getLogger("joch.webhooks")

Mode = Literal["url", "service"]


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Where the webhook server listens and how the API server reaches it."""

    cert_dir: pathlib.Path
    listen_host: str = "127.0.0.1"
    port: int = 9443
    mode: Mode = "url"
    advertise_host: str | None = None
    """url mode: the host in the URL (default: listen_host, or 127.0.0.1 when listening on 0.0.0.0)."""
    operator_namespace: str = rendering.DEFAULT_OPERATOR_NAMESPACE
    service_name: str = "joch-webhook"
    service_port: int = 443
    manage_configurations: bool = True
    remove_on_exit: bool = False
    """Delete the configurations when the server stops (dev and tests; production keeps them)."""
    approvals: bool = False
    """Ask the API server what Approval decisions need (the operator's identity, users' verbs) and create
    the Approvals blocked promotions wait for (joch.webhooks.approvals)."""

    @property
    def url_host(self) -> str:
        host = self.advertise_host or self.listen_host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - mapping, not binding

    def render(self, port: int, ca_pem: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """The two configurations for a server on ``port`` presenting a certificate of ``ca_pem``."""
        if self.mode == "service":
            target = rendering.ServiceTarget(self.operator_namespace, self.service_name, self.service_port)
            return rendering.render(
                service=target, ca_bundle=ca_pem, operator_namespace=self.operator_namespace
            )
        host = f"[{self.url_host}]" if ":" in self.url_host else self.url_host
        return rendering.render(
            url=f"https://{host}:{port}", ca_bundle=ca_pem, operator_namespace=self.operator_namespace
        )


class AdmissionServer:
    """kopf's ``settings.admission.server``: serves joch's webhooks for the operator's lifetime.

    Also usable on its own (tests, benchmarks): ``await start()`` / ``await stop()``.
    """

    def __init__(
        self,
        endpoint: AdmissionEndpoint,
        options: WebhookOptions,
        *,
        kube: client.Kube | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: bytes | None = None,
    ) -> None:
        if ssl_context is not None and options.manage_configurations and ca_bundle is None:
            raise ValueError("an external ssl_context needs ca_bundle to manage the configurations")
        self.endpoint = endpoint
        self.options = options
        self.kube = kube
        self.ssl_context = ssl_context
        """An SSLContext someone else keeps current (joch.kube.webhook_tls); None: certs.py in cert_dir."""
        self.ca_bundle = ca_bundle
        self.certificates: certs.Certificates | None = None
        self.server: WebhookServer | None = None
        self._own_kube = False

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://{self.options.url_host}:{self.server.port}"

    def _certificates(self) -> certs.Certificates:
        options = self.options
        dns = ["localhost", *certs.service_dns_names(options.service_name, options.operator_namespace)]
        ips = ["127.0.0.1"]
        if options.mode == "url" and options.url_host not in ("localhost", *ips):
            (ips if _is_ip(options.url_host) else dns).append(options.url_host)
        return certs.ensure_certificates(options.cert_dir, dns_names=dns, ip_addresses=ips)

    @property
    def ca_pem(self) -> bytes:
        """The CA bundle clients must trust (generated here, or given with an external context)."""
        if self.certificates is not None:
            return self.certificates.ca_pem
        if self.ca_bundle is None:
            raise RuntimeError("no CA bundle: the server is not started, or its TLS is managed elsewhere")
        return self.ca_bundle

    def configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.server is not None
        return self.options.render(self.server.port, self.ca_pem)

    async def start(self) -> None:
        """Certificates, listening socket, then the live configurations (when managed)."""
        context = self.ssl_context
        if context is None:
            self.certificates = await asyncio.to_thread(self._certificates)
            context = self.certificates.server_context()
        self.server = WebhookServer(
            self.endpoint, host=self.options.listen_host, port=self.options.port, ssl_context=context
        )
        await self.server.start()
        if self.kube is None and (self.options.manage_configurations or self.options.approvals):
            configuration = await asyncio.to_thread(client.load_configuration)
            self.kube = client.Kube(client.new_api_client(configuration, pool_size=2))
            self._own_kube = True
        if self.kube is not None and self.options.approvals:
            # Approval decisions: who the operator is, what a user may do, the Approvals promotions wait for.
            await approvals.learn_identity(self.kube, self.endpoint.admission)
            self.endpoint.authorizer = approvals.authorizer(self.kube)
            self.endpoint.on_denied = approvals.promotion_requester(self.kube)
        if self.options.manage_configurations:
            assert self.kube is not None
            await configurations.apply_configurations(self.kube, self.configurations())

    async def stop(self) -> None:
        try:
            if self.options.remove_on_exit and self.kube is not None and self.server is not None:
                await configurations.delete_configurations(self.kube, self.configurations())
        finally:
            if self.server is not None:
                await self.server.stop()
            if self.kube is not None:
                await self.kube.aclose()  # the connections this loop opened
            if self._own_kube and self.kube is not None:
                self.kube.close()
                self.kube = None

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        """kopf's webhook-server protocol; kopf's own ``fn`` is not used (no kopf admission handlers)."""
        await self.start()
        try:
            config = kopf.WebhookClientConfig(url=self.url)
            if self.certificates is not None or self.ca_bundle is not None:
                config["caBundle"] = base64.b64encode(self.ca_pem).decode("ascii")
            yield config
            await asyncio.Event().wait()
        finally:
            await self.stop()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def budget_gate(store: Store, settings: OperatorSettings) -> executions.ExecutionGate:
    """The gate refusing a new Execution whose Agent a Budget with ``onHardLimit: deny`` covers at its
    hard limit (joch.domain.reconcile.budgets.exceeded over the operator's cache, now)."""

    def gate(execution: Execution, world: World) -> Findings:
        del world  # the Budgets' accounted state is the operator's cache, not the request's batch
        findings = Findings()
        namespace, agent = execution.metadata.namespace or "", execution.spec.agent_ref.name
        now = datetime.datetime.now(datetime.UTC)
        for message in budgets.exceeded(store, settings, namespace, agent, now):
            findings.error("spec.agentRef", f"BudgetExceeded: {message}", "BudgetExceeded")
        return findings

    return gate


def configure(
    settings: kopf.OperatorSettings,
    *,
    registry: kopf.OperatorRegistry | None = None,
    lookup: Lookup,
    joch_settings: OperatorSettings,
    cert_dir: pathlib.Path | str,
    listen_host: str = "127.0.0.1",
    port: int = 9443,
    mode: Mode = "url",
    advertise_host: str | None = None,
    operator_namespace: str = rendering.DEFAULT_OPERATOR_NAMESPACE,
    service_name: str = "joch-webhook",
    service_port: int = 443,
    kube: client.Kube | None = None,
    manage_configurations: bool = True,
    remove_on_exit: bool = False,
    is_ready: Callable[[], bool] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    ca_bundle: bytes | None = None,
    policies: PolicyCompiler | None = None,
    governance: audit.AuditLog = audit.NULL,
) -> AdmissionServer:
    """Serve joch's admission webhooks inside a kopf operator (see the module docstring).

    ``registry`` is accepted for symmetry with kopf; nothing is registered on it. ``is_ready`` (optional)
    makes the webhooks deny with "starting" until it returns True. ``policies`` is the process's one
    policy compiler (the operator passes the controllers'); None gives the webhooks one of their own.
    ``governance`` is the process's governance audit log (joch.webhooks.governance says what it records).

    In a cluster the chart owns the configurations and ``joch.kube.webhook_tls`` the certificate: pass its
    reloading ``ssl_context`` with ``manage_configurations=False`` (it patches the CA bundle itself).
    Without ``ssl_context``, certificates are generated into ``cert_dir`` (certs.py) and, when
    ``manage_configurations``, both configurations are applied with that CA (local control planes).
    """
    del registry
    options = WebhookOptions(
        cert_dir=pathlib.Path(cert_dir),
        listen_host=listen_host,
        port=port,
        mode=mode,
        advertise_host=advertise_host,
        operator_namespace=operator_namespace,
        service_name=service_name,
        service_port=service_port,
        manage_configurations=manage_configurations,
        remove_on_exit=remove_on_exit,
        approvals=kube is not None,
    )
    gates: tuple[executions.ExecutionGate, ...] = ()
    if isinstance(lookup, Store):  # the operator's shared cache: Budgets' accounted state
        gates = (budget_gate(lookup, joch_settings),)
    endpoint = AdmissionEndpoint(
        Admission(joch_settings, policies=policies, execution_gates=gates),
        lookup,
        known_kinds=WATCHED_KIND_NAMES,
        is_ready=is_ready,
        governance_log=governance,
    )
    admission_server = AdmissionServer(
        endpoint, options, kube=kube, ssl_context=ssl_context, ca_bundle=ca_bundle
    )
    settings.admission.server = admission_server
    settings.admission.managed = None
    return admission_server
