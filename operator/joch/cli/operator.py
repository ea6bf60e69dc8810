"""`joch operator`: run the controller-manager (each Agent compiled into a manifest ConfigMap, kept current).

    joch operator [--kubeconfig PATH] [--context NAME] [-n NS ...|-A] [--workers N]
                  [--shared-namespaces NS,NS] [--default-environment ENV]
                  [--concurrency N] [--write-rate N] [--write-burst N] [--event-rate N] [--resync-period S]
                  [-v|--debug|-q] [--webhook-port N] [--no-webhooks] [--webhook-cert-dir DIR]
                  [--webhook-tls-secret NS/NAME --webhook-service SVC.NS.svc --webhook-configuration NAME
                   --webhook-cert-validity-days N | --webhook-tls-dir DIR]
                  [--decision-port N] [--decision-host HOST] [--metrics-port N] [--health-port N]
                  [--leader-election [--leader-election-id NAME] [--leader-election-namespace NS]
                   [--lease-duration S] [--renew-deadline S] [--retry-period S]]

One process: the controllers, the admission webhooks (joch.webhooks), the decision service
(joch.decision_service, POST /v1/policy/evaluate), /metrics + /healthz + /readyz (joch.metrics) and, with
``--leader-election``, a Lease (joch.kube.leader) gating the controllers' workers only.

Without ``--kubeconfig`` it runs in-cluster when in a pod, else with $KUBECONFIG / ~/.kube/config.
Without ``--namespace`` it manages every namespace (cluster-wide). Operator settings not given as flags
come from the JOCH_* environment variables (joch.domain.settings). SIGINT or SIGTERM stops it cleanly.
Also runnable as ``python -m joch.cli.operator``. docs/operator.md explains what it does.

Ports (joch.cli.ports): every server's port is bound once before anything starts; one that cannot be
bound stops the operator at once (exit 1, naming the address and the flag). Outside a cluster (no
$KUBERNETES_SERVICE_HOST) the decision service, metrics and health listen on 127.0.0.1, and a default
port that is taken is replaced by a free one; the ports used are printed at start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import kopf

from joch import decision_service, metrics, webhooks
from joch.cli import ports
from joch.controllers import operator as controller_operator
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.domain.settings import OperatorSettings, SettingsError
from joch.kube import client, errors, leader, webhook_tls

__all__ = ["Serving", "build_parser", "extension", "main", "options_from", "register", "run", "serving_from"]

logger = logging.getLogger("joch.operator")

LOOPBACK: Final = "127.0.0.1"
ANY_ADDRESS: Final = "0.0.0.0"  # noqa: S104 - in a Pod, Services and probes come from outside it


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def _seconds(text: str) -> float:
    """A number of seconds >= 0 (0: disabled)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: in-cluster or $KUBECONFIG)"
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="manage Agents in this namespace only (repeatable; shared namespaces are watched too)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="manage every namespace (the default)"
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=16, help="keys reconciled at once (default 16)"
    )
    parser.add_argument(
        "--shared-namespaces",
        metavar="NS,NS",
        help="namespaces any Agent may reference (default: $JOCH_SHARED_NAMESPACES or joch-system)",
    )
    parser.add_argument(
        "--default-environment",
        metavar="ENV",
        help="environment of Agents no label places (default: $JOCH_DEFAULT_ENVIRONMENT or dev)",
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=16, help="API requests in flight at once (default 16)"
    )
    parser.add_argument(
        "--write-rate",
        type=_positive_float,
        default=200.0,
        help="sustained API writes per second (default 200)",
    )
    parser.add_argument("--write-burst", type=_positive_int, default=50, help="write burst size (default 50)")
    parser.add_argument(
        "--event-rate", type=_positive_float, default=20.0, help="Kubernetes Events per second (default 20)"
    )
    parser.add_argument(
        "--resync-period",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="seconds between safety resyncs that re-derive every status from the cache and repair what "
        "differs (default 600; 0 disables)",
    )
    _add_serving_arguments(parser)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log every reconcile")
    verbosity.add_argument("--debug", action="store_true", help="log everything, kopf included")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    hooks = parser.add_argument_group("admission webhooks")
    hooks.add_argument(
        "--webhook-port", type=_port, default=None, help="port of the webhook HTTPS server (default 9443)"
    )
    hooks.add_argument("--no-webhooks", action="store_true", help="do not serve the admission webhooks")
    hooks.add_argument(
        "--webhook-cert-dir",
        metavar="DIR",
        default=".dev/webhook-certs",
        help="local mode: where the generated CA and serving certificate live (default .dev/webhook-certs)",
    )
    tls = hooks.add_mutually_exclusive_group()
    tls.add_argument(
        "--webhook-tls-secret",
        metavar="NS/NAME",
        help="in-cluster: keep the serving certificate in this Secret (issued and rotated by the operator)",
    )
    tls.add_argument(
        "--webhook-tls-dir",
        metavar="DIR",
        help="in-cluster: serve tls.crt/tls.key from this mounted directory (reloaded when they change)",
    )
    hooks.add_argument(
        "--webhook-service",
        metavar="SVC.NS.svc",
        help="the webhook Service (names on the certificate; with --webhook-tls-secret or --webhook-tls-dir)",
    )
    hooks.add_argument(
        "--webhook-configuration",
        metavar="NAME",
        help="the Validating/Mutating webhook configurations whose caBundle the operator keeps current",
    )
    hooks.add_argument(
        "--webhook-cert-validity-days",
        type=_positive_int,
        default=365,
        help="lifetime of an issued serving certificate (default 365)",
    )
    serving = parser.add_argument_group("decision service, metrics and health")
    serving.add_argument(
        "--decision-port",
        type=_port,
        default=None,
        help="port of POST /v1/policy/evaluate (default 8082; 0 disables)",
    )
    serving.add_argument(
        "--decision-host",
        default=None,
        help="address the decision service listens on (default 127.0.0.1 outside a cluster, 0.0.0.0 in a "
        "Pod; metrics and health listen on the same default)",
    )
    serving.add_argument(
        "--metrics-port", type=_port, default=None, help="port of /metrics (default 8080; 0 disables)"
    )
    serving.add_argument(
        "--health-port",
        type=_port,
        default=None,
        help="port of /healthz and /readyz (default 8081; 0 disables)",
    )
    election = parser.add_argument_group("leader election")
    election.add_argument(
        "--leader-election",
        action="store_true",
        help="reconcile only while holding a Lease (webhooks, decisions and watches run on every replica)",
    )
    election.add_argument(
        "--leader-election-id", metavar="NAME", default="joch-leader", help="the Lease (default joch-leader)"
    )
    election.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE)",
    )
    election.add_argument("--lease-duration", type=_positive_float, default=15.0, help="seconds (default 15)")
    election.add_argument("--renew-deadline", type=_positive_float, default=10.0, help="seconds (default 10)")
    election.add_argument("--retry-period", type=_positive_float, default=2.0, help="seconds (default 2)")


@dataclasses.dataclass(frozen=True, slots=True)
class Serving:
    """What ``joch operator`` adds to the controllers (from the flags and the chart's environment)."""

    kubeconfig: str | None = None
    context: str | None = None
    webhooks: bool = True
    webhook_port: int = 9443
    webhook_cert_dir: str = ".dev/webhook-certs"
    webhook_tls_secret: str | None = None
    webhook_tls_dir: str | None = None
    webhook_service: str | None = None
    webhook_configuration: str | None = None
    webhook_cert_validity_days: int = 365
    decision_host: str = LOOPBACK
    decision_port: int = 8082
    metrics_port: int = 8080
    health_port: int = 8081
    lease: leader.LeaseConfig | None = None
    pod_namespace: str | None = None
    local: bool = True
    """Outside a cluster (no $KUBERNETES_SERVICE_HOST): servers listen on loopback, and a default port
    that is taken is replaced by a free one (joch.cli.ports)."""
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
        """This, with the ports :func:`joch.cli.ports.reserve` chose."""
        return dataclasses.replace(
            self,
            webhook_port=chosen.get("webhooks", self.webhook_port),
            decision_port=chosen.get("decisions", self.decision_port),
            metrics_port=chosen.get("metrics", self.metrics_port),
            health_port=chosen.get("health", self.health_port),
        )


DEFAULT_PORTS: Final = {"webhooks": 9443, "decisions": 8082, "metrics": 8080, "health": 8081}
_PORT_ARGS: Final = {
    "webhooks": "webhook_port",
    "decisions": "decision_port",
    "metrics": "metrics_port",
    "health": "health_port",
}


def serving_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Serving:
    """The serving options from parsed arguments (raises SettingsError on unusable combinations)."""
    pod_namespace = environ.get("POD_NAMESPACE") or None
    local = not environ.get("KUBERNETES_SERVICE_HOST")
    listen_host = LOOPBACK if local else ANY_ADDRESS
    given = {name: getattr(args, attribute) for name, attribute in _PORT_ARGS.items()}
    chosen = {name: DEFAULT_PORTS[name] if port is None else port for name, port in given.items()}
    if args.webhook_tls_secret:
        namespace, _, name = args.webhook_tls_secret.partition("/")
        if not namespace or not name or "/" in name:
            raise SettingsError(f"--webhook-tls-secret must be NS/NAME, not {args.webhook_tls_secret!r}")
    if args.webhook_tls_secret and not args.no_webhooks and not args.webhook_service:
        raise SettingsError("--webhook-tls-secret needs --webhook-service SVC.NS.svc")
    if args.webhook_service and len(args.webhook_service.split(".")) < 2:
        raise SettingsError(f"--webhook-service must be SVC.NS.svc, not {args.webhook_service!r}")
    lease = None
    if args.leader_election:
        namespace = args.leader_election_namespace or pod_namespace
        if not namespace:
            raise SettingsError("--leader-election needs --leader-election-namespace (or $POD_NAMESPACE)")
        try:
            lease = leader.LeaseConfig(
                name=args.leader_election_id,
                namespace=namespace,
                identity=leader.default_identity(),
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
    return Serving(
        kubeconfig=args.kubeconfig,
        context=args.context,
        webhooks=not args.no_webhooks,
        webhook_port=chosen["webhooks"],
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_tls_secret=args.webhook_tls_secret,
        webhook_tls_dir=args.webhook_tls_dir,
        webhook_service=args.webhook_service,
        webhook_configuration=args.webhook_configuration,
        webhook_cert_validity_days=args.webhook_cert_validity_days,
        decision_host=args.decision_host or listen_host,
        decision_port=chosen["decisions"],
        metrics_port=chosen["metrics"],
        health_port=chosen["health"],
        lease=lease,
        pod_namespace=pod_namespace,
        local=local,
        listen_host=listen_host,
        explicit_ports=frozenset(name for name, port in given.items() if port is not None),
    )


TLS = webhook_tls.SecretTLS | webhook_tls.DirectoryTLS


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
            config=webhook_tls.ServingConfig.for_service(serving.webhook_service, validity=validity),
            configuration=serving.webhook_configuration,
        )
    return None


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
        "kube": controller.kube,
        "port": serving.webhook_port,
        "cert_dir": serving.webhook_cert_dir,
    }
    if tls is None:
        # Local control plane: own CA in cert_dir, configurations applied (url mode), removed on exit.
        webhooks.configure(settings, listen_host="127.0.0.1", mode="url", remove_on_exit=True, **common)
        return
    service_name, service_namespace = "joch-webhook", serving.pod_namespace
    if serving.webhook_service:
        service_name, service_namespace = serving.webhook_service.split(".")[:2]
    webhooks.configure(
        settings,
        listen_host="0.0.0.0",  # noqa: S104 - the API server reaches the Pod through the Service
        mode="service",
        manage_configurations=False,
        ssl_context=tls.context,
        operator_namespace=serving.pod_namespace or service_namespace or "joch-operator",
        service_name=service_name,
        **common,
    )


def _elector(serving: Serving) -> leader.LeaderElector | None:
    """The Lease elector, with a kube client of its own: no retries, one retry period per request, so
    renewals never queue behind the controllers' writes."""
    if serving.lease is None:
        return None
    configuration = client.load_configuration(serving.kubeconfig, context=serving.context)
    limits = client.Limits(concurrency=2, max_retries=0, request_timeout=serving.lease.retry_period)
    kube = client.Kube(client.new_api_client(configuration, pool_size=2), limits)
    return leader.LeaderElector(kube, serving.lease)


def extension(serving: Serving) -> controller_operator.Extend:
    """The ``extend`` hook of controllers.operator.run: webhooks, decisions, metrics/health, election."""

    def extend(
        settings: kopf.OperatorSettings, registry: kopf.OperatorRegistry, controller: Controller
    ) -> None:
        health = metrics.Health()
        tls = _webhook_tls(serving, controller) if serving.webhooks else None
        if serving.webhooks:
            _configure_webhooks(serving, settings, registry, controller, tls)
        if tls is not None:
            context = tls
            health.add_readiness("webhook-tls", lambda: context.ready)
        if serving.decision_port:
            # One cache: the controller lists and watches Policies and Environments once and feeds the
            # decision service, which compiles through the controller's policy compiler.
            service = decision_service.DecisionService(
                settings=controller.settings, compiler=controller.programs
            )
            controller.feeds.append(service)
            decision_service.register(
                registry,
                host=serving.decision_host,
                port=serving.decision_port,
                service=service,
                watch=False,
            )
        elector = _elector(serving)
        tasks: list[asyncio.Task[None]] = []
        servers: list[metrics.Servers] = []

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
                if elector is not None:
                    await elector.kube.aclose()
                    elector.kube.close(wait=False)

    return extend


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "operator",
        help="run the operator (controller-manager): compile every Agent and keep it current",
        description="Watch Agents and everything they reference, compile each Agent into a "
        "CompiledAgentManifest ConfigMap <agent>-g<generation>, and keep statuses and manifests current. "
        "Runs until SIGINT or SIGTERM.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def options_from(args: argparse.Namespace) -> controller_operator.OperatorOptions:
    """Operator options from parsed arguments (raises SettingsError on unusable settings)."""
    settings = OperatorSettings.from_environ(os.environ)
    if args.shared_namespaces is not None:
        shared = tuple(ns.strip() for ns in args.shared_namespaces.split(",") if ns.strip())
        settings = dataclasses.replace(settings, shared_namespaces=shared)
    if args.default_environment:
        settings = dataclasses.replace(settings, default_environment=args.default_environment)
    return controller_operator.OperatorOptions(
        kubeconfig=args.kubeconfig,
        context=args.context,
        controller=ControllerConfig(
            settings=settings,
            namespaces=tuple(dict.fromkeys(args.namespaces)),
            workers=args.workers,
            event_rate=args.event_rate,
            resync_period=args.resync_period,
        ),
        limits=client.Limits(
            concurrency=args.concurrency, writes_per_second=args.write_rate, write_burst=args.write_burst
        ),
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
        serving = serving_from(args)
    except SettingsError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 2
    try:
        serving = serving.with_ports(ports.reserve(serving.listeners(), local=serving.local))
    except ports.PortError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 1
    listening = ", ".join(f"{x.name} on {x.host}:{x.port}" for x in serving.listeners())
    sys.stdout.write(f"joch operator: {listening or 'no servers'}\n")
    sys.stdout.flush()
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet, log_format=kopf.LogFormat.PLAIN)
    if not args.debug:
        # kopf logs every handler invocation at INFO; the operator's own log says what matters.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        controller_operator.run(
            dataclasses.replace(options, start_workers=serving.lease is None), extend=extension(serving)
        )
    except errors.KubeError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joch operator", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
