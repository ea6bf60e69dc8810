"""The operator's gRPC server: PolicyService, ResourceService, Envoy's ext_authz, health, reflection.

One ``grpc.aio`` server on the operator's event loop (``joch operator --grpc-port``; loopback outside a
cluster, TLS with the serving certificate in one), serving:

- ``joch.v1.PolicyService`` (Decide, DecideStream) and ``envoy.service.auth.v3.Authorization`` (Check):
  callers with a bearer token the API server authenticates (TokenReview), and in ``decision_callers``
  when that is set (a gateway sends its service-account token as ``initial_metadata``);
- ``joch.v1.ResourceService`` (Get, List, Watch): anyone kube-apiserver lets read, as themselves (the
  caller's token is passed on);
- ``grpc.health.v1.Health``: open; ``""`` is SERVING while the process serves, the two decision
  services turn SERVING once the policies are loaded;
- ``grpc.reflection.v1alpha.ServerReflection``: open (the protos are public).

Limits: messages over ``max_message_bytes`` answer RESOURCE_EXHAUSTED (grpcio's own check, before any
parsing); a unary call runs at most ``deadline_seconds`` (DEADLINE_EXCEEDED), a stream's message too;
at most ``max_concurrent_streams`` calls per connection. Every method counts in
``joch_grpc_requests_total{method,code}`` (joch.grpc.calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Final

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from joch import apiserver
from joch.decision_service import callers
from joch.decision_service.deciding import BudgetStep, Clock, utcnow
from joch.decision_service.service import DecisionService
from joch.grpc import auth, calls, ext_authz, policy, resources

__all__ = ["AUTHORIZATION_SERVICE", "LISTENING", "GrpcServer", "GrpcSettings"]

logger = logging.getLogger("joch.grpc")

AUTHORIZATION_SERVICE: Final = "envoy.service.auth.v3.Authorization"
LISTENING: Final = "gRPC listening on"
_READY_POLL: Final = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcSettings:
    """Where the gRPC server listens and its limits (``joch operator --grpc-*``)."""

    host: str = "127.0.0.1"
    port: int = 9090
    """0: any free port (the chosen one is :attr:`GrpcServer.port` once started)."""
    max_message_bytes: int = 1024 * 1024
    """Largest request message accepted (RESOURCE_EXHAUSTED above)."""
    deadline_seconds: float = 5.0
    """Longest a unary call, or one message of DecideStream, may take on the server."""
    max_concurrent_streams: int = 256
    """Calls in flight on one connection."""
    ext_authz: ext_authz.ExtAuthzSettings = dataclasses.field(default_factory=ext_authz.ExtAuthzSettings)

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, not {self.max_message_bytes}")
        if self.deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be more than 0, not {self.deadline_seconds}")
        if self.max_concurrent_streams < 1:
            raise ValueError(f"max_concurrent_streams must be at least 1, not {self.max_concurrent_streams}")


class GrpcServer:
    """The server over ``service`` (decisions) and ``api_callers`` (resource reads as the caller).

    ``gate`` authenticates PolicyService and ext_authz callers (TokenReview); ``budgets`` is the budget
    step after each decision; ``approvals`` finds an Approval by (namespace, name), so ext_authz lets a
    call through once the Approval it named is approved; ``credentials`` serve TLS (None: plaintext,
    for loopback)."""

    def __init__(
        self,
        service: DecisionService,
        settings: GrpcSettings,
        *,
        gate: callers.CallerGate,
        api_callers: apiserver.Callers | None = None,
        budgets: BudgetStep | None = None,
        approvals: ext_authz.Approvals | None = None,
        credentials: grpc.ServerCredentials | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.service = service
        self.settings = settings
        self.gate = gate
        self.api_callers = api_callers
        self.credentials = credentials
        self.approvals = approvals
        self.decider = policy.Decider(service, budgets=budgets, clock=clock)
        self.port = settings.port
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def _handlers(self) -> list[grpc.GenericRpcHandler]:
        deadline = self.settings.deadline_seconds
        handlers = [
            policy.PolicyService(self.decider, self.gate, deadline=deadline).handler(),
            calls.service(
                AUTHORIZATION_SERVICE,
                {
                    "Check": calls.unary_unary(
                        f"/{AUTHORIZATION_SERVICE}/Check", self._check, deadline=deadline
                    )
                },
            ),
        ]
        if self.api_callers is not None:
            handlers.append(resources.ResourceService(self.api_callers).handler(deadline=deadline))
        return handlers

    def services(self) -> list[str]:
        """The full names of the services served (what reflection lists)."""
        names = [policy.SERVICE, AUTHORIZATION_SERVICE]
        if self.api_callers is not None:
            names.append(resources.SERVICE)
        return [*names, health.SERVICE_NAME, reflection.SERVICE_NAME]

    async def _check(self, raw: bytes, context: calls.Context) -> bytes:
        await auth.caller(self.gate, context)
        # Envoy may be newer than these protos: fields it adds are not ours to refuse.
        request = calls.parse(external_auth_pb2.CheckRequest, raw, allow_unknown=True)
        response: external_auth_pb2.CheckResponse = await ext_authz.check(
            request, self.decider, self.settings.ext_authz, approvals=self.approvals
        )
        answer: bytes = response.SerializeToString()
        return answer

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 16 * 1024 * 1024)),
                ("grpc.max_concurrent_streams", self.settings.max_concurrent_streams),
                ("grpc.so_reuseport", 0),  # a port another process holds is an error, not shared
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        server.add_generic_rpc_handlers(self._handlers())
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(self.services(), server)
        target = f"{self.settings.host}:{self.settings.port}"
        try:
            if self.credentials is not None:
                bound = server.add_secure_port(target, self.credentials)
            else:
                bound = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {target}: {exc}") from None
        if not bound:
            raise OSError(f"cannot listen on {target}")
        self.port = bound
        await server.start()
        self._server = server
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._set_decisions(serving=self.service.ready)
        self._watcher = asyncio.create_task(self._watch_ready(), name="joch grpc readiness")
        logger.info("%s %s (%s)", LISTENING, self.address, "TLS" if self.credentials else "plaintext")

    async def _set_decisions(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (policy.SERVICE, AUTHORIZATION_SERVICE):
            await self.health.set(name, status)

    async def _watch_ready(self) -> None:
        """Follow the decision service's readiness in the health service."""
        serving = self.service.ready
        while True:
            await asyncio.sleep(_READY_POLL)
            if self.service.ready != serving:
                serving = self.service.ready
                await self._set_decisions(serving=serving)

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving: health NOT_SERVING, then calls get ``grace`` seconds to finish."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
