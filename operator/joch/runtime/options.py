"""Everything one operator process is started with, as one value (:class:`Options`).

``joch operator`` parses its flags (and the chart's environment) into an :class:`Options`; the
composition root (:mod:`joch.runtime.root`) builds the process from it. Nothing here reads flags or the
environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from joch.controllers.reconciler import ControllerConfig
from joch.grpc.server import GrpcSettings
from joch.kube import client, leader
from joch.runtime import ports

__all__ = ["ANY_ADDRESS", "DEFAULT_PORTS", "LOOPBACK", "Options", "Serving"]

LOOPBACK: Final = "127.0.0.1"
ANY_ADDRESS: Final = "0.0.0.0"  # noqa: S104 - in a Pod, Services and probes come from outside it

DEFAULT_PORTS: Final = {
    "webhooks": 9443,
    "decisions": 8082,
    "metrics": 8080,
    "health": 8081,
    "api": 8090,
    "grpc": 9090,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Serving:
    """The servers beside the controllers: admission webhooks, decision service, the /v1 API, the gRPC
    server, metrics and health, and the Lease that gates the controllers' workers."""

    webhooks: bool = True
    webhook_port: int = DEFAULT_PORTS["webhooks"]
    webhook_cert_dir: str = ".dev/webhook-certs"
    webhook_tls_secret: str | None = None
    webhook_tls_dir: str | None = None
    webhook_service: str | None = None
    webhook_configuration: str | None = None
    webhook_cert_validity_days: int = 365
    decision_host: str = LOOPBACK
    decision_port: int = DEFAULT_PORTS["decisions"]
    metrics_port: int = DEFAULT_PORTS["metrics"]
    health_port: int = DEFAULT_PORTS["health"]
    api_port: int = DEFAULT_PORTS["api"]
    """The /v1 API (joch.apiserver); 0: not served."""
    api_service: str | None = None
    """The API's Service (``SVC.NS.svc``): its names go on the serving certificate the operator issues."""
    grpc_port: int = DEFAULT_PORTS["grpc"]
    """The gRPC server (joch.grpc); 0: not served. It listens where the API does (:attr:`webhook_host`)."""
    grpc_service: str | None = None
    """The gRPC Service (``SVC.NS.svc``): its names go on the serving certificate the operator issues."""
    grpc: GrpcSettings = dataclasses.field(default_factory=GrpcSettings)
    """The gRPC server's limits and ext_authz settings; its host and port come from :attr:`webhook_host`
    and :attr:`grpc_port` when the server is built (joch.runtime.root)."""
    lease: leader.LeaseConfig | None = None
    pod_namespace: str | None = None
    local: bool = True
    """Outside a cluster (no $KUBERNETES_SERVICE_HOST): servers listen on loopback, and a default port
    that is taken is replaced by a free one (joch.runtime.ports)."""
    listen_host: str = LOOPBACK
    """Where metrics and health listen (loopback in local mode, every address in a Pod)."""
    explicit_ports: frozenset[str] = frozenset()
    """The ports given on the command line (by listener name), which must be free."""

    def listeners(self) -> list[ports.Listener]:
        """The servers to start, with the ports asked for."""
        wanted = [
            ("webhooks", "--webhook-port", self.webhook_host, self.webhook_port if self.webhooks else 0),
            ("decisions", "--decision-port", self.decision_host, self.decision_port),
            ("metrics", "--metrics-port", self.listen_host, self.metrics_port),
            ("health", "--health-port", self.listen_host, self.health_port),
            ("api", "--api-port", self.webhook_host, self.api_port),
            ("grpc", "--grpc-port", self.webhook_host, self.grpc_port),
        ]
        return [
            ports.Listener(name, flag, host, port, explicit=name in self.explicit_ports)
            for name, flag, host, port in wanted
            if port
        ]

    @property
    def webhook_host(self) -> str:
        """Local webhooks (own CA, url mode) listen on loopback; in a Pod the Service reaches them."""
        in_pod = self.webhook_tls_secret or self.webhook_tls_dir
        return ANY_ADDRESS if in_pod else LOOPBACK

    def with_ports(self, chosen: Mapping[str, int]) -> Serving:
        """This, with the ports :func:`joch.runtime.ports.reserve` chose."""
        return dataclasses.replace(
            self,
            webhook_port=chosen.get("webhooks", self.webhook_port),
            decision_port=chosen.get("decisions", self.decision_port),
            metrics_port=chosen.get("metrics", self.metrics_port),
            health_port=chosen.get("health", self.health_port),
            api_port=chosen.get("api", self.api_port),
            grpc_port=chosen.get("grpc", self.grpc_port),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """One operator process: where the cluster is, what the controllers do, what else it serves."""

    kubeconfig: str | None = None
    context: str | None = None
    controller: ControllerConfig = dataclasses.field(default_factory=ControllerConfig)
    limits: client.Limits = dataclasses.field(default_factory=client.Limits)
    serving: Serving = dataclasses.field(default_factory=Serving)
    liveness_endpoint: str | None = None
    audit_log: str | None = None
    """The governance audit log (joch.audit): a file to append to, ``-`` for stdout, None: disabled."""
    audit_hash_chain: bool = False
    """Hash-chain the audit log's records (``joch audit verify`` checks them)."""
