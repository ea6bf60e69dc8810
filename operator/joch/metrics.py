"""Prometheus metrics of the operator, and the HTTP server for /metrics, /healthz and /readyz.

Every metric lives in :data:`REGISTRY` (not prometheus_client's global one, so tests and several operators
in one process stay apart). The controllers, webhooks and policy endpoint record through the functions
below; nothing else touches the metric objects::

    joch_reconciles_total{kind,result}                 record_reconcile(kind, "success" | "error")
    joch_reconcile_duration_seconds{kind}              record_reconcile(..., seconds=...)
    joch_compile_duration_seconds                      observe_compile(seconds) / with compile_timer():
    joch_admission_duration_seconds{webhook,kind,operation}
    joch_admission_requests_total{webhook,kind,allowed}
    joch_admission_denials_total{webhook,kind,reason}  record_admission(webhook=..., kind=..., ...)
    joch_policy_decisions_total{outcome,source}        record_policy_decision(outcome, source=...)
    joch_grpc_requests_total{method,code}              record_grpc(method, code, seconds)
    joch_grpc_request_duration_seconds{method}         (observed by record_grpc)
    joch_fanout_queue_depth                            set_queue_depth(n) / track_queue_depth(callable)
    joch_leader                                        set_leader(True | False)
    joch_leader_transitions_total                      (counted by set_leader)
    joch_webhook_certificate_expiry_timestamp_seconds  set_certificate_expiry(unix_seconds)
    joch_build_info{version}                           (always 1)

plus the process and Python collectors (process_*, python_*).

:func:`serve` starts an aiohttp server (or two, when the ports differ) for ``/metrics`` and for
``/healthz`` (liveness: every liveness check passes) and ``/readyz`` (readiness: every readiness check
passes), with checks registered on a :class:`Health`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import prometheus_client
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from joch import __version__

__all__ = [
    "REGISTRY",
    "Health",
    "Servers",
    "compile_timer",
    "observe_compile",
    "record_admission",
    "record_grpc",
    "record_policy_decision",
    "record_reconcile",
    "render",
    "serve",
    "set_certificate_expiry",
    "set_leader",
    "set_queue_depth",
    "track_queue_depth",
]

logger = logging.getLogger("joch.metrics")

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_FAST: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RECONCILES: Final = Counter(
    "joch_reconciles",
    "Reconciles by kind and result (success, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION: Final = Histogram(
    "joch_reconcile_duration_seconds",
    "Time to reconcile one object.",
    ["kind"],
    buckets=_SLOW,
    registry=REGISTRY,
)
COMPILE_DURATION: Final = Histogram(
    "joch_compile_duration_seconds",
    "Time to compile one Agent into its CompiledAgentManifest (pure compile, no I/O).",
    buckets=_FAST,
    registry=REGISTRY,
)
ADMISSION_DURATION: Final = Histogram(
    "joch_admission_duration_seconds",
    "Time to answer one AdmissionReview.",
    ["webhook", "kind", "operation"],
    buckets=_FAST,
    registry=REGISTRY,
)
ADMISSION_REQUESTS: Final = Counter(
    "joch_admission_requests",
    "AdmissionReviews answered, by webhook (validating, mutating), kind and verdict.",
    ["webhook", "kind", "allowed"],
    registry=REGISTRY,
)
ADMISSION_DENIALS: Final = Counter(
    "joch_admission_denials",
    "AdmissionReviews denied, by machine reason (e.g. PolicyDenied, InvalidReference).",
    ["webhook", "kind", "reason"],
    registry=REGISTRY,
)
POLICY_DECISIONS: Final = Counter(
    "joch_policy_decisions",
    "Policy decisions by outcome (allow, deny, modify) and source (preflight, compile, endpoint).",
    ["outcome", "source"],
    registry=REGISTRY,
)
QUEUE_DEPTH: Final = Gauge(
    "joch_fanout_queue_depth", "Keys waiting in the reconcile (fan-out) queue.", registry=REGISTRY
)
LEADER: Final = Gauge("joch_leader", "1 while this replica holds the leader Lease.", registry=REGISTRY)
LEADER_TRANSITIONS: Final = Counter(
    "joch_leader_transitions", "Times this replica became or stopped being the leader.", registry=REGISTRY
)
CERTIFICATE_EXPIRY: Final = Gauge(
    "joch_webhook_certificate_expiry_timestamp_seconds",
    "When the webhook serving certificate in use expires (Unix time).",
    registry=REGISTRY,
)
EXECUTIONS_STARTED: Final = Counter(
    "joch_executions_started", "Jobs created for Executions (one per Execution).", registry=REGISTRY
)
EXECUTIONS_FINISHED: Final = Counter(
    "joch_executions_finished",
    "Executions that ended, by phase (Succeeded, Failed, Cancelled, TimedOut).",
    ["phase"],
    registry=REGISTRY,
)
APPROVALS_SETTLED: Final = Counter(
    "joch_approvals",
    "Approvals that reached a phase (Pending: requested; Approved, Rejected, Expired, Overridden).",
    ["phase"],
    registry=REGISTRY,
)
APPROVAL_EXPIRY_DELAY: Final = Histogram(
    "joch_approval_expiry_delay_seconds",
    "Seconds between an Approval's expiresAt and the operator's Expired write.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
TEAM_ROLEBINDINGS: Final = Counter(
    "joch_team_rolebindings",
    "RoleBinding writes of the teams service, by outcome (written, deleted, failed).",
    ["outcome"],
    registry=REGISTRY,
)
EXECUTION_START_DELAY: Final = Histogram(
    "joch_execution_start_delay_seconds",
    "From an Execution's creation to its Job's creation (queueing included).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
    registry=REGISTRY,
)
GRPC_REQUESTS: Final = Counter(
    "joch_grpc_requests",
    "gRPC calls answered, by full method name and status code (a stream counts once, when it ends).",
    ["method", "code"],
    registry=REGISTRY,
)
GRPC_DURATION: Final = Histogram(
    "joch_grpc_request_duration_seconds",
    "Seconds from a gRPC call's start to its status (a stream: its whole life).",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300),
    registry=REGISTRY,
)
BUILD_INFO: Final = Gauge("joch_build_info", "The running joch version.", ["version"], registry=REGISTRY)
BUILD_INFO.labels(version=__version__).set(1)


# --- recording --------------------------------------------------------------------------------------


def record_reconcile(kind: str, result: str, *, seconds: float | None = None) -> None:
    """One reconcile of a ``kind`` object finished with ``result`` (``success`` or ``error``)."""
    RECONCILES.labels(kind=kind, result=result).inc()
    if seconds is not None:
        RECONCILE_DURATION.labels(kind=kind).observe(seconds)


def observe_compile(seconds: float) -> None:
    """One Agent compile took ``seconds``."""
    COMPILE_DURATION.observe(seconds)


@contextlib.contextmanager
def compile_timer() -> Iterator[None]:
    """``with compile_timer(): compiled = compile_agent(...)``: observes the compile duration."""
    start = time.perf_counter()
    try:
        yield
    finally:
        COMPILE_DURATION.observe(time.perf_counter() - start)


def record_admission(
    *,
    webhook: str,
    kind: str,
    operation: str,
    seconds: float,
    allowed: bool,
    reason: str | None = None,
) -> None:
    """One AdmissionReview answered: ``webhook`` validating or mutating, the object's ``kind``, the
    ``operation`` (CREATE, UPDATE...), the time taken, the verdict and, for a denial, its machine reason."""
    ADMISSION_DURATION.labels(webhook=webhook, kind=kind, operation=operation).observe(seconds)
    ADMISSION_REQUESTS.labels(webhook=webhook, kind=kind, allowed="true" if allowed else "false").inc()
    if not allowed:
        ADMISSION_DENIALS.labels(webhook=webhook, kind=kind, reason=reason or "Denied").inc()


def record_policy_decision(outcome: str, *, source: str) -> None:
    """One policy decision: ``outcome`` allow, deny or modify; ``source`` preflight, compile or endpoint."""
    POLICY_DECISIONS.labels(outcome=outcome, source=source).inc()


def record_grpc(method: str, code: str, seconds: float) -> None:
    """One gRPC call ended: its full ``method`` name, status ``code`` (OK, INVALID_ARGUMENT...) and length."""
    GRPC_REQUESTS.labels(method=method, code=code).inc()
    GRPC_DURATION.labels(method=method).observe(seconds)


def record_execution_started(delay_seconds: float | None) -> None:
    """A Job was created for an Execution created ``delay_seconds`` ago (None: unknown)."""
    EXECUTIONS_STARTED.inc()
    if delay_seconds is not None:
        EXECUTION_START_DELAY.observe(max(0.0, delay_seconds))


def record_approval(phase: str, expiry_delay_seconds: float | None = None) -> None:
    """An Approval reached ``phase``; for Expired, how late after its deadline."""
    APPROVALS_SETTLED.labels(phase=phase).inc()
    if expiry_delay_seconds is not None:
        APPROVAL_EXPIRY_DELAY.observe(max(0.0, expiry_delay_seconds))


def record_team_bindings(*, written: int, deleted: int, failed: int) -> None:
    """The teams service wrote (created, patched, replaced) ``written`` RoleBindings, deleted
    ``deleted``, and ``failed`` of those writes were refused."""
    for outcome, count in (("written", written - failed), ("deleted", deleted), ("failed", failed)):
        if count > 0:
            TEAM_ROLEBINDINGS.labels(outcome=outcome).inc(count)


def record_execution_finished(phase: str) -> None:
    """An Execution ended in ``phase``."""
    EXECUTIONS_FINISHED.labels(phase=phase).inc()


def set_queue_depth(depth: int) -> None:
    """The reconcile queue now holds ``depth`` keys (replacing a :func:`track_queue_depth` callable)."""
    QUEUE_DEPTH.__dict__.pop("_child_samples", None)  # undo set_function: the last call wins
    QUEUE_DEPTH.set(depth)


def track_queue_depth(depth: Callable[[], float]) -> None:
    """Read the queue depth from ``depth()`` at every scrape (instead of :func:`set_queue_depth`)."""
    QUEUE_DEPTH.set_function(depth)


def set_leader(leading: bool) -> None:
    """This replica became (True) or stopped being (False) the leader."""
    if bool(LEADER._value.get()) != leading:  # the gauge's own value
        LEADER_TRANSITIONS.inc()
    LEADER.set(1 if leading else 0)


def set_certificate_expiry(unix_seconds: float) -> None:
    """The webhook serving certificate now in use expires at ``unix_seconds``."""
    CERTIFICATE_EXPIRY.set(unix_seconds)


def render() -> bytes:
    """The current metrics in the Prometheus text format."""
    data: bytes = prometheus_client.generate_latest(REGISTRY)
    return data


# --- HTTP -------------------------------------------------------------------------------------------


Check = Callable[[], bool]


class Health:
    """Named liveness and readiness checks; a check is a callable returning True when healthy."""

    def __init__(self) -> None:
        self._live: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}

    def add_liveness(self, name: str, check: Check) -> None:
        self._live[name] = check

    def add_readiness(self, name: str, check: Check) -> None:
        self._ready[name] = check

    @staticmethod
    def _failing(checks: dict[str, Check]) -> list[str]:
        failing = []
        for name, check in checks.items():
            try:
                ok = check()
            except Exception:
                logger.exception("health check %s raised", name)
                ok = False
            if not ok:
                failing.append(name)
        return failing

    def live(self) -> list[str]:
        """The names of the failing liveness checks (empty: alive)."""
        return self._failing(self._live)

    def ready(self) -> list[str]:
        """The names of the failing readiness checks (empty: ready)."""
        return self._failing(self._ready)


def _probe(failing: Callable[[], list[str]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.Response:
        names = failing()
        if names:
            return web.Response(status=503, text="failing: " + ", ".join(names) + "\n")
        return web.Response(text="ok\n")

    return handler


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=render(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


@dataclasses.dataclass
class Servers:
    """The running HTTP servers; ``await servers.close()`` stops them."""

    runners: list[web.AppRunner]
    ports: dict[str, int]
    """Bound port per endpoint group (``metrics``, ``health``): useful when asked for port 0."""

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def serve(
    *,
    host: str = "0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the Pod
    metrics_port: int | None,
    health_port: int | None,
    health: Health | None = None,
) -> Servers:
    """Start serving ``/metrics`` on ``metrics_port`` and ``/healthz`` + ``/readyz`` on ``health_port``
    (one server when they are equal; None leaves that group out; 0 picks a free port)."""
    checks = health or Health()
    groups: list[tuple[int, tuple[str, ...]]] = []
    if metrics_port is not None and metrics_port == health_port and metrics_port != 0:
        groups.append((metrics_port, ("metrics", "health")))
    else:
        if metrics_port is not None:
            groups.append((metrics_port, ("metrics",)))
        if health_port is not None:
            groups.append((health_port, ("health",)))
    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    for port, names in groups:
        app = web.Application()
        if "metrics" in names:
            app.router.add_get("/metrics", _metrics)
        if "health" in names:
            app.router.add_get("/healthz", _probe(checks.live))
            app.router.add_get("/readyz", _probe(checks.ready))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        runners.append(runner)
        bound = _bound_port(site)
        for name in names:
            ports[name] = bound
    return Servers(runners=runners, ports=ports)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp has no public accessor for the bound socket
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        port: int = sock.getsockname()[1]
        return port
    return 0
