"""`joch operator`: run the controller-manager (each Agent compiled into a manifest ConfigMap, kept current).

    joch operator [--kubeconfig PATH] [--context NAME] [-n NS ...|-A] [--workers N]
                  [--shared-namespaces NS,NS] [--default-environment ENV]
                  [--concurrency N] [--write-rate N] [--write-burst N] [--event-rate N] [--resync-period S]
                  [-v|--debug|-q] [--webhook-port N] [--no-webhooks] [--webhook-cert-dir DIR]
                  [--webhook-tls-secret NS/NAME --webhook-service SVC.NS.svc --webhook-configuration NAME
                   --webhook-cert-validity-days N | --webhook-tls-dir DIR]
                  [--decision-port N] [--decision-host HOST] [--decision-callers USER,USER]
                  [--api-port N] [--api-service SVC.NS.svc] [--metrics-port N] [--health-port N]
                  [--grpc-port N] [--grpc-service SVC.NS.svc] [--grpc-max-message-bytes N] [--grpc-deadline S]
                  [--ext-authz-header FIELD=HEADER ...] [--ext-authz-approval-status N]
                  [--ext-authz-approval-header NAME] [--ext-authz-metadata-namespace NS]
                  [--leader-election [--leader-election-id NAME] [--leader-election-namespace NS]
                   [--lease-duration S] [--renew-deadline S] [--retry-period S]]

One process: the controllers, the admission webhooks (joch.webhooks), the decision service
(joch.decision_service, POST /v1/policy/evaluate), the /v1 API (joch.apiserver), the gRPC server
(joch.grpc: PolicyService, ResourceService, Envoy ext_authz; docs/grpc.md), /metrics + /healthz + /readyz
(joch.metrics) and, with ``--leader-election``, a Lease (joch.kube.leader) gating the controllers' workers
only.

Without ``--kubeconfig`` it runs in-cluster when in a pod, else with $KUBECONFIG / ~/.kube/config.
Without ``--namespace`` it manages every namespace (cluster-wide). Operator settings not given as flags
come from the JOCH_* environment variables (joch.domain.settings). SIGINT or SIGTERM stops it cleanly.
Also runnable as ``python -m joch.cli.operator``. docs/operator.md explains what it does.

The process itself is built by the composition root, joch.runtime; this module only turns flags into
its options. Ports (joch.runtime.ports): every server's port is bound once before anything starts; one
that cannot be bound stops the operator at once (exit 1, naming the address and the flag). Outside a
cluster (no $KUBERNETES_SERVICE_HOST) the decision service, metrics and health listen on 127.0.0.1, and
a default port that is taken is replaced by a free one; the ports used are printed at start.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from joch import audit, runtime
from joch.cli import flags
from joch.controllers.reconciler import ControllerConfig
from joch.controllers.services import SERVICES
from joch.domain.reconcile.approvals import ApprovalSettings
from joch.domain.reconcile.executions import ExecutionSettings
from joch.domain.settings import SettingsError
from joch.grpc import ext_authz
from joch.grpc.server import GrpcSettings
from joch.kube import client, errors, leader
from joch.runtime.options import ANY_ADDRESS, DEFAULT_PORTS, LOOPBACK

__all__ = ["add_arguments", "build_parser", "main", "options_from", "register", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_kube_flags(parser)
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
        "--workers", type=flags.positive_int, default=16, help="keys reconciled at once (default 16)"
    )
    flags.add_settings_flags(parser)
    parser.add_argument(
        "--concurrency",
        type=flags.positive_int,
        default=16,
        help="API requests in flight at once (default 16)",
    )
    parser.add_argument(
        "--write-rate",
        type=flags.positive_float,
        default=200.0,
        help="sustained API writes per second (default 200)",
    )
    parser.add_argument(
        "--write-burst", type=flags.positive_int, default=50, help="write burst size (default 50)"
    )
    parser.add_argument(
        "--event-rate",
        type=flags.positive_float,
        default=20.0,
        help="Kubernetes Events per second (default 20)",
    )
    parser.add_argument(
        "--resync-period",
        type=flags.seconds,
        default=600.0,
        metavar="SECONDS",
        help="seconds between safety resyncs that re-derive every status from the cache and repair what "
        "differs (default 600; 0 disables)",
    )
    parser.add_argument(
        "--services",
        type=_service_names,
        default=(),
        metavar="NAMES",
        help="comma-separated services this process runs, of "
        f"{', '.join(service_names())} (default: all), or none (only the cache and the servers, e.g. the "
        "/v1 API on its own); large installs run them in separate processes",
    )
    executions = parser.add_argument_group("executions (each Execution runs as a Job)")
    executions.add_argument(
        "--execution-concurrency",
        type=flags.positive_int,
        default=4,
        metavar="N",
        help="running Executions per Agent that has no Deployment (a Deployment's replicas win; default 4)",
    )
    executions.add_argument(
        "--execution-timeout",
        type=flags.positive_int,
        default=3600,
        metavar="SECONDS",
        help="timeout of an Execution without spec.timeoutSeconds (default 3600)",
    )
    executions.add_argument(
        "--execution-retention",
        type=flags.seconds,
        default=86400.0,
        metavar="SECONDS",
        help="how long a finished Execution and its Job are kept (default 86400; 0 keeps them)",
    )
    executions.add_argument(
        "--execution-pod-annotation-prefix",
        action="append",
        default=[],
        metavar="PREFIX",
        help="copy an Execution's annotations with this prefix onto its Pod (repeatable; the local "
        "cluster uses devcluster.joch.dev/ to steer fake runs)",
    )
    budgets = parser.add_argument_group("budgets (the decision service reserves each allowed call's cost)")
    budgets.add_argument(
        "--budget-reservation-ttl",
        type=flags.positive_float,
        default=300.0,
        metavar="SECONDS",
        help="how long a Budget reservation lives unless the call's cost is reported or its run ends first "
        "(default 300)",
    )
    approvals = parser.add_argument_group("approvals (human decisions, with deadlines)")
    approvals.add_argument(
        "--approval-minute-seconds",
        type=flags.seconds,
        default=60.0,
        metavar="SECONDS",
        help="length of one spec.routing.timeoutMinutes minute (default 60; tests and demos shorten it)",
    )
    governance = parser.add_argument_group("governance audit log (docs/audit.md)")
    governance.add_argument(
        "--audit-log",
        metavar="PATH",
        default=None,
        help="append one JSON line per governance decision (denials, Approval decisions, overrides and "
        "expiries, promotions, budget breaches, high-risk AgBOM findings) to PATH; - for stdout "
        "(default: none, disabled)",
    )
    governance.add_argument(
        "--audit-hash-chain",
        action="store_true",
        help="chain the records by SHA-256 (metadata.sequence, prev_hash, hash); check with "
        "joch audit verify PATH",
    )
    _add_serving_arguments(parser)
    flags.add_verbosity_flags(parser, verbose="log every reconcile")


def service_names() -> list[str]:
    return [factory.name for factory in SERVICES]


NO_SERVICES: Final = "none"
"""``--services none``: the cache and the servers (webhooks, decisions, the /v1 API) without a service,
e.g. an API-only process of a large install."""


def _service_names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if names == (NO_SERVICES,):
        return names  # matches no service
    unknown = [name for name in names if name not in service_names()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: not a service (known: {', '.join(service_names())})"
        )
    return names


def _add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    hooks = parser.add_argument_group("admission webhooks")
    hooks.add_argument(
        "--webhook-port",
        type=flags.port,
        default=None,
        help="port of the webhook HTTPS server (default 9443)",
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
        type=flags.positive_int,
        default=365,
        help="lifetime of an issued serving certificate (default 365)",
    )
    serving = parser.add_argument_group("decision service, metrics and health")
    serving.add_argument(
        "--decision-port",
        type=flags.port,
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
        "--decision-callers",
        metavar="USER,USER",
        default=None,
        help="Kubernetes users that may call POST /v1/policy/evaluate (e.g. "
        "system:serviceaccount:gateways:envoy): each call then needs a bearer token, checked with a "
        "TokenReview (default: $JOCH_DECISION_CALLERS, else none: anyone reaching the port may ask)",
    )
    serving.add_argument(
        "--api-port",
        type=flags.port,
        default=None,
        help="port of the /v1 API (default 8090; 0 disables): plain HTTP on 127.0.0.1 outside a cluster, "
        "HTTPS with the webhooks' serving certificate in a Pod; every call runs as the caller's bearer token",
    )
    serving.add_argument(
        "--api-service",
        metavar="SVC.NS.svc",
        help="the /v1 API's Service: its names go on the serving certificate the operator issues (with "
        "--webhook-tls-secret)",
    )
    serving.add_argument(
        "--metrics-port", type=flags.port, default=None, help="port of /metrics (default 8080; 0 disables)"
    )
    serving.add_argument(
        "--health-port",
        type=flags.port,
        default=None,
        help="port of /healthz and /readyz (default 8081; 0 disables)",
    )
    _add_grpc_arguments(parser)
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
    election.add_argument(
        "--lease-duration", type=flags.positive_float, default=15.0, help="seconds (default 15)"
    )
    election.add_argument(
        "--renew-deadline", type=flags.positive_float, default=10.0, help="seconds (default 10)"
    )
    election.add_argument(
        "--retry-period", type=flags.positive_float, default=2.0, help="seconds (default 2)"
    )


def _add_grpc_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GrpcSettings()
    authz = defaults.ext_authz
    group = parser.add_argument_group(
        "gRPC",
        "joch.v1.PolicyService and ResourceService, Envoy's ext_authz (envoy.service.auth.v3), health and "
        "reflection on one port (docs/grpc.md). Every PolicyService and ext_authz call needs a bearer token "
        "the API server authenticates (TokenReview; also in --decision-callers when that is set); "
        "ResourceService calls run as the caller's token. Plaintext on 127.0.0.1 outside a cluster, TLS "
        "with the webhooks' serving certificate in a Pod.",
    )
    group.add_argument(
        "--grpc-port",
        type=flags.port,
        default=None,
        metavar="N",
        help=f"port of the gRPC server (default {DEFAULT_PORTS['grpc']}; 0 disables)",
    )
    group.add_argument(
        "--grpc-service",
        metavar="SVC.NS.svc",
        help="the gRPC server's Service: its names go on the serving certificate the operator issues (with "
        "--webhook-tls-secret)",
    )
    group.add_argument(
        "--grpc-max-message-bytes",
        type=flags.positive_int,
        default=defaults.max_message_bytes,
        metavar="N",
        help=f"largest request message; larger ones answer RESOURCE_EXHAUSTED (default "
        f"{defaults.max_message_bytes}, 1 MiB; at least 1024)",
    )
    group.add_argument(
        "--grpc-deadline",
        type=flags.positive_float,
        default=defaults.deadline_seconds,
        metavar="SECONDS",
        help="longest a unary call, or one message of a stream, may take on the server; then "
        f"DEADLINE_EXCEEDED (default {defaults.deadline_seconds:g})",
    )
    group.add_argument(
        "--ext-authz-header",
        action="append",
        default=[],
        metavar="FIELD=HEADER",
        help="read the ext_authz context FIELD from the request header HEADER (repeatable; an empty HEADER: "
        f"not from a header). FIELD is one of {', '.join(ext_authz.FIELDS)}; default x-joch-FIELD",
    )
    group.add_argument(
        "--ext-authz-approval-status",
        type=int,
        default=authz.approval_status,
        metavar="N",
        help="HTTP status ext_authz sends for a call that waits for an Approval (100-599; default "
        f"{authz.approval_status})",
    )
    group.add_argument(
        "--ext-authz-approval-header",
        default=authz.approval_header,
        metavar="NAME",
        help=f"response header naming that Approval (default {authz.approval_header})",
    )
    group.add_argument(
        "--ext-authz-metadata-namespace",
        default=authz.metadata_namespace,
        metavar="NS",
        help="the filter_metadata namespace ext_authz reads a context from (set by an earlier filter; "
        f"default {authz.metadata_namespace})",
    )


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token)."""


def _ext_authz_headers(items: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        field, sep, header = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise SettingsError(f"--ext-authz-header must be FIELD=HEADER, not {item!r}")
        if field not in ext_authz.FIELDS:
            raise SettingsError(
                f"--ext-authz-header {item!r}: unknown field {field!r} (known: {', '.join(ext_authz.FIELDS)})"
            )
        header = header.strip()
        if header and not _HEADER_NAME.fullmatch(header):
            raise SettingsError(f"--ext-authz-header {item!r}: {header!r} is not an HTTP header name")
        headers[field] = header
    return headers


def _grpc(args: argparse.Namespace) -> GrpcSettings:
    """The gRPC server's limits and ext_authz settings (its host and port come from Serving)."""
    headers = _ext_authz_headers(args.ext_authz_header)
    checks: list[tuple[str, dict[str, Any]]] = [
        ("--ext-authz-approval-status", {"approval_status": args.ext_authz_approval_status}),
        ("--ext-authz-approval-header", {"approval_header": args.ext_authz_approval_header}),
        ("--ext-authz-metadata-namespace", {"metadata_namespace": args.ext_authz_metadata_namespace}),
    ]
    for flag, value in checks:  # each alone, so the error names the flag that is wrong
        try:
            ext_authz.ExtAuthzSettings(**value)
        except ValueError as exc:
            raise SettingsError(f"{flag}: {exc}") from exc
    try:
        authz = ext_authz.ExtAuthzSettings(**{k: v for _, value in checks for k, v in value.items()})
        authz = authz.with_headers(headers)
    except ValueError as exc:
        raise SettingsError(f"--ext-authz-header: {exc}") from exc
    size = args.grpc_max_message_bytes
    if size < 1024:
        raise SettingsError(f"--grpc-max-message-bytes must be at least 1024, not {size}")
    return GrpcSettings(max_message_bytes=size, deadline_seconds=args.grpc_deadline, ext_authz=authz)


_PORT_ARGS: Final = {
    "webhooks": "webhook_port",
    "decisions": "decision_port",
    "metrics": "metrics_port",
    "health": "health_port",
    "api": "api_port",
    "grpc": "grpc_port",
}


def _lease(args: argparse.Namespace, pod_namespace: str | None) -> leader.LeaseConfig | None:
    if not args.leader_election:
        return None
    namespace = args.leader_election_namespace or pod_namespace
    if not namespace:
        raise SettingsError("--leader-election needs --leader-election-namespace (or $POD_NAMESPACE)")
    try:
        return leader.LeaseConfig(
            name=args.leader_election_id,
            namespace=namespace,
            identity=leader.default_identity(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def _serving(args: argparse.Namespace, environ: Mapping[str, str]) -> runtime.Serving:
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
    if args.api_service and len(args.api_service.split(".")) < 2:
        raise SettingsError(f"--api-service must be SVC.NS.svc, not {args.api_service!r}")
    if args.grpc_service and len(args.grpc_service.split(".")) < 2:
        raise SettingsError(f"--grpc-service must be SVC.NS.svc, not {args.grpc_service!r}")
    return runtime.Serving(
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
        api_port=chosen["api"],
        api_service=args.api_service,
        grpc_port=chosen["grpc"],
        grpc_service=args.grpc_service,
        grpc=_grpc(args),
        lease=_lease(args, pod_namespace),
        pod_namespace=pod_namespace,
        local=local,
        listen_host=listen_host,
        explicit_ports=frozenset(name for name, port in given.items() if port is not None),
    )


def options_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> runtime.Options:
    """The process options from parsed arguments and the environment (``$JOCH_*`` settings,
    ``$KUBERNETES_SERVICE_HOST``, ``$POD_NAMESPACE``); raises SettingsError on unusable combinations."""
    return runtime.Options(
        kubeconfig=args.kubeconfig,
        context=args.context,
        controller=ControllerConfig(
            settings=flags.settings_from(args, environ),
            namespaces=tuple(dict.fromkeys(args.namespaces)),
            workers=args.workers,
            event_rate=args.event_rate,
            resync_period=args.resync_period,
            services=args.services,
            executions=ExecutionSettings(
                concurrency=args.execution_concurrency,
                timeout_seconds=args.execution_timeout,
                retention_seconds=int(args.execution_retention),
                pod_annotation_prefixes=tuple(args.execution_pod_annotation_prefix),
            ),
            approvals=ApprovalSettings(minute_seconds=args.approval_minute_seconds),
            budget_reservation_ttl=args.budget_reservation_ttl,
        ),
        limits=client.Limits(
            concurrency=args.concurrency, writes_per_second=args.write_rate, write_burst=args.write_burst
        ),
        serving=_serving(args, environ),
        audit_log=args.audit_log,
        audit_hash_chain=args.audit_hash_chain,
    )


def _announce(options: runtime.Options) -> None:
    listening = ", ".join(f"{x.name} on {x.host}:{x.port}" for x in options.serving.listeners())
    sys.stdout.write(f"joch operator: {listening or 'no servers'}\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except SettingsError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 2
    flags.configure_logging(args)
    try:
        runtime.run(options, announce=_announce)
    except (runtime.PortError, errors.KubeError, audit.AuditLogError) as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 1
    return 0


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
