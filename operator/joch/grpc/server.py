"""The gRPC server of the operator: PolicyService, Envoy ext_authz, health and reflection (grpc.aio).

::

    joch.v1.PolicyService/Decide               unary: DecideRequest -> DecideResponse
    joch.v1.PolicyService/DecideStream         bidirectional: one DecideResponse per request, in order
    envoy.service.auth.v3.Authorization/Check  Envoy ext_authz (joch.grpc.ext_authz)
    grpc.health.v1.Health                      SERVING once the decision service is primed (no auth)
    grpc.reflection.v1alpha.ServerReflection   the services above

The handlers take and return raw bytes and parse the messages themselves, so that a message that does
not parse is an INVALID_ARGUMENT (rather than grpcio's INTERNAL), like unknown fields, wrong wire
types, nesting deeper than 64 and every shape problem of the context (joch.grpc.convert). A message
over ``max_message_bytes`` is refused by gRPC itself (RESOURCE_EXHAUSTED). Each request is decided by
the same :class:`~joch.decision_service.DecisionService` as ``POST /v1/policy/evaluate``, then (in
``joch operator``) checked against the Budgets by the same budget step.

Errors. A unary call that fails answers a gRPC status; the catalog's error code (InvalidRequest,
NotReady, InternalError, Unauthorized, Forbidden, DeadlineExceeded) is in the trailing metadata
``joch-error-code`` and in the standard status details (``grpc-status-details-bin``: a google.rpc.Status
with a google.rpc.ErrorInfo whose reason is the code, domain ``joch.dev``, and for InvalidRequest a
google.rpc.BadRequest listing every field). On a stream, a request that fails is answered by a
response with ``error`` set, and the stream goes on.

Limits. ``deadline_seconds`` bounds each call (each stream message) besides the client's own deadline;
authentication (joch.grpc.auth) runs before any handler. Metrics: joch_grpc_requests_total{method,code}
and joch_grpc_request_duration_seconds{method} (joch.metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeAlias

import grpc
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf import message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from joch import metrics
from joch.decision_service import requests
from joch.decision_service.endpoint import BudgetStep
from joch.decision_service.service import DecisionService
from joch.domain.policy.decision import Decision
from joch.grpc import auth, convert, ext_authz
from joch.grpc.gen.v1 import policy_service_pb2

__all__ = [
    "AUTHORIZATION_SERVICE",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_PORT",
    "LISTENING",
    "POLICY_SERVICE",
    "GrpcServer",
    "GrpcSettings",
]

logger = logging.getLogger("joch.grpc")

POLICY_SERVICE: Final = "joch.v1.PolicyService"
AUTHORIZATION_SERVICE: Final = "envoy.service.auth.v3.Authorization"
DECIDE: Final = f"/{POLICY_SERVICE}/Decide"
DECIDE_STREAM: Final = f"/{POLICY_SERVICE}/DecideStream"
CHECK: Final = f"/{AUTHORIZATION_SERVICE}/Check"
HEALTH_PREFIX: Final = "/grpc.health.v1.Health/"
LISTENING: Final = "grpc listening on"
DEFAULT_PORT: Final = 9090
DEFAULT_MAX_MESSAGE: Final = 1024 * 1024
"""Largest message accepted, in bytes (1 MiB, as the HTTP body)."""

Clock = Callable[[], datetime.datetime]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class GrpcSettings:
    """The server's address and limits."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_message_bytes: int = DEFAULT_MAX_MESSAGE
    deadline_seconds: float = 5.0
    """Longest time one call (one stream message) may take, whatever the client's deadline."""
    ext_authz: ext_authz.ExtAuthzSettings = dataclasses.field(default_factory=ext_authz.ExtAuthzSettings)


class _Failure(Exception):
    """A request that gets no decision: its gRPC status, catalog code, message and problems."""

    def __init__(
        self,
        status: grpc.StatusCode,
        code: str,
        message: str,
        problems: Sequence[requests.Problem] = (),
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = tuple(problems)
        self.request_id = request_id

    def trailers(self) -> tuple[tuple[str, str | bytes], ...]:
        return _trailers(self.status, self.code, self.message, self.problems)

    def response(self) -> policy_service_pb2.DecideResponse:
        out = policy_service_pb2.DecideResponse(request_id=self.request_id)
        out.error.code = self.code
        out.error.message = self.message
        for problem in self.problems:
            out.error.errors.add(field=problem.field, message=problem.message)
        return out


def _trailers(
    status: grpc.StatusCode, code: str, text: str, problems: Sequence[requests.Problem] = ()
) -> tuple[tuple[str, str | bytes], ...]:
    """``joch-error-code`` and ``grpc-status-details-bin`` (google.rpc.Status with ErrorInfo, BadRequest)."""
    numeric: int = status.value[0]
    details = status_pb2.Status(code=numeric, message=text)
    details.details.add().Pack(error_details_pb2.ErrorInfo(reason=code, domain="joch.dev"))
    if problems:
        bad = error_details_pb2.BadRequest()
        for problem in problems[:100]:
            bad.field_violations.add(field=problem.field, description=problem.message)
        details.details.add().Pack(bad)
    return (("joch-error-code", code), ("grpc-status-details-bin", details.SerializeToString()))


class _Authenticating(grpc.aio.ServerInterceptor):
    """Runs the Authenticator before every handler but the health service's."""

    def __init__(self, authenticator: auth.Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        if method.startswith(HEALTH_PREFIX):
            return await continuation(handler_call_details)
        try:
            await self.authenticator.check(handler_call_details.invocation_metadata)
        except auth.Rejected as exc:
            metrics.record_grpc(method, exc.code.name)
            handler = await continuation(handler_call_details)
            return _refusing(handler, exc)
        return await continuation(handler_call_details)


def _refusing(handler: Handler | None, rejected: auth.Rejected) -> Handler:
    """A handler of the same shape as ``handler`` that only aborts with ``rejected``."""
    trailers = _trailers(rejected.code, rejected.catalog, rejected.message)

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(rejected.code, rejected.message, trailing_metadata=trailers)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(rejected.code, rejected.message, trailing_metadata=trailers)

    deserializer = handler.request_deserializer if handler is not None else None
    serializer = handler.response_serializer if handler is not None else None
    requests_stream = handler is not None and handler.request_streaming
    responses_stream = handler is not None and handler.response_streaming
    if requests_stream and responses_stream:
        return grpc.stream_stream_rpc_method_handler(streaming, deserializer, serializer)
    if requests_stream:
        return grpc.stream_unary_rpc_method_handler(unary, deserializer, serializer)
    if responses_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, deserializer, serializer)
    return grpc.unary_unary_rpc_method_handler(unary, deserializer, serializer)


class GrpcServer:
    """One grpc.aio server over one DecisionService, started and stopped on the running event loop."""

    def __init__(
        self,
        service: DecisionService,
        settings: GrpcSettings,
        *,
        authenticator: auth.Authenticator,
        budgets: BudgetStep | None = None,
        credentials: grpc.ServerCredentials | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        if settings.max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be at least 1, not {settings.max_message_bytes}")
        self.service = service
        self.settings = settings
        self.authenticator = authenticator
        self.budgets = budgets
        self.credentials = credentials
        self.clock = clock
        self.port = settings.port
        self.health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._ready_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start, log ``grpc listening on HOST:PORT``; SERVING once the service is primed.

        Raises OSError when the port cannot be bound."""
        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            interceptors=[_Authenticating(self.authenticator)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", max(limit, 4 * 1024 * 1024)),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    POLICY_SERVICE,
                    {
                        "Decide": grpc.unary_unary_rpc_method_handler(self._decide),
                        "DecideStream": grpc.stream_stream_rpc_method_handler(self._decide_stream),
                    },
                ),
                grpc.method_handlers_generic_handler(
                    AUTHORIZATION_SERVICE, {"Check": grpc.unary_unary_rpc_method_handler(self._check)}
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            POLICY_SERVICE,
            AUTHORIZATION_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        for name in ("", POLICY_SERVICE, AUTHORIZATION_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        where = f"{self.address}"
        try:
            if self.credentials is not None:
                bound = server.add_secure_port(where, self.credentials)
            else:
                bound = server.add_insecure_port(where)
        except RuntimeError as exc:
            raise OSError(f"the gRPC server cannot listen on {where}: {exc}") from exc
        if not bound:
            raise OSError(f"the gRPC server cannot listen on {where}")
        self.port = bound
        await server.start()
        self._server = server
        self._ready_task = asyncio.create_task(self._serving_when_ready(), name="joch grpc health")
        logger.info("%s %s%s", LISTENING, self.address, " (TLS)" if self.credentials is not None else "")

    async def _serving_when_ready(self) -> None:
        while not self.service.ready:
            await asyncio.sleep(0.05)
        for name in ("", POLICY_SERVICE, AUTHORIZATION_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 2.0) -> None:
        if self._ready_task is not None:
            self._ready_task.cancel()
            await asyncio.gather(self._ready_task, return_exceptions=True)
            self._ready_task = None
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
            logger.info("grpc server on %s stopped", self.address)

    # --- deciding --------------------------------------------------------------------------------------

    def _deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        remaining = context.time_remaining()
        limit = self.settings.deadline_seconds
        return limit if remaining is None or not math.isfinite(remaining) else max(0.0, min(limit, remaining))

    async def _decided(
        self,
        context: dict[str, Any] | Any,
        parsed: requests.EvaluateRequest,
        timeout: float,
        source: str,
    ) -> tuple[Decision, Any]:
        now = self.clock()
        decision = self.service.decide(parsed, now=now)
        extra = None
        if self.budgets is not None and not parsed.preflight:
            try:
                async with asyncio.timeout(timeout):
                    decision, extra = await self.budgets(parsed.context, decision, now)
            except TimeoutError:
                raise _Failure(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "DeadlineExceeded",
                    f"no decision within {timeout:.3g}s (the budget check did not finish)",
                ) from None
        metrics.record_policy_decision(decision.decision, source=source)
        return decision, extra

    async def _answer(self, raw: bytes, timeout: float) -> policy_service_pb2.DecideResponse:
        try:
            request = policy_service_pb2.DecideRequest.FromString(raw)
        except (message.DecodeError, RecursionError) as exc:
            problem = requests.Problem("(message)", f"not a joch.v1.DecideRequest: {exc}")
            raise _Failure(
                grpc.StatusCode.INVALID_ARGUMENT,
                "InvalidRequest",
                f"invalid decision request: {problem}",
                [problem],
            ) from None
        request_id = request.request_id
        try:
            parsed = requests.parse_request(convert.decide_request_body(request))
        except requests.RequestError as exc:
            raise _Failure(
                grpc.StatusCode.INVALID_ARGUMENT,
                "InvalidRequest",
                f"invalid decision request: {exc}",
                exc.problems,
                request_id,
            ) from None
        if not self.service.ready:
            raise _Failure(
                grpc.StatusCode.UNAVAILABLE,
                "NotReady",
                "the policies are not loaded yet; retry shortly",
                request_id=request_id,
            )
        try:
            decision, extra = await self._decided(parsed.context, parsed, timeout, "grpc")
        except _Failure as failure:
            failure.request_id = request_id
            raise
        return convert.decision_message(decision, extra, request_id=request_id)

    async def _decide(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        started = time.perf_counter()
        code = "OK"
        try:
            return (await self._answer(raw, self._deadline(context))).SerializeToString()
        except _Failure as failure:
            code = failure.status.name
            await context.abort(failure.status, failure.message, trailing_metadata=failure.trailers())
            raise  # pragma: no cover - abort raises
        except Exception:
            code = "INTERNAL"
            logger.exception("%s failed", DECIDE)
            text = "the decision service failed; see its log"
            await context.abort(
                grpc.StatusCode.INTERNAL,
                text,
                trailing_metadata=_trailers(grpc.StatusCode.INTERNAL, "InternalError", text),
            )
            raise  # pragma: no cover
        finally:
            metrics.record_grpc(DECIDE, code, seconds=time.perf_counter() - started)

    async def _decide_stream(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        async for raw in request_iterator:
            started = time.perf_counter()
            code = "OK"
            try:
                response = await self._answer(raw, self.settings.deadline_seconds)
            except _Failure as failure:
                code = failure.status.name
                response = failure.response()
            except Exception:
                code = "INTERNAL"
                logger.exception("%s failed", DECIDE_STREAM)
                response = _Failure(
                    grpc.StatusCode.INTERNAL, "InternalError", "the decision service failed; see its log"
                ).response()
            metrics.record_grpc(DECIDE_STREAM, code, seconds=time.perf_counter() - started)
            yield response.SerializeToString()

    # --- Envoy ext_authz ----------------------------------------------------------------------------------

    async def _check(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        started = time.perf_counter()
        code = "OK"
        try:
            try:
                request = external_auth_pb2.CheckRequest.FromString(raw)
            except (message.DecodeError, RecursionError) as exc:
                code = "INVALID_ARGUMENT"
                text = f"not an envoy.service.auth.v3.CheckRequest: {exc}"
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    text,
                    trailing_metadata=_trailers(grpc.StatusCode.INVALID_ARGUMENT, "InvalidRequest", text),
                )
                raise  # pragma: no cover
            answer: bytes = (await self._check_response(request, self._deadline(context))).SerializeToString()
            return answer
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            code = "INTERNAL"
            logger.exception("%s failed", CHECK)
            failed: bytes = ext_authz.denied(
                "InternalError", "the decision service failed; see its log"
            ).SerializeToString()
            return failed
        finally:
            metrics.record_grpc(CHECK, code, seconds=time.perf_counter() - started)

    async def _check_response(
        self, request: external_auth_pb2.CheckRequest, timeout: float
    ) -> external_auth_pb2.CheckResponse:
        settings = self.settings.ext_authz
        try:
            built = ext_authz.context_of(request, settings)
        except requests.RequestError as exc:
            return ext_authz.denied("InvalidRequest", f"no decision context: {exc}")
        if not self.service.ready:
            return ext_authz.denied("NotReady", "the policies are not loaded yet", http_status=503)
        parsed = requests.EvaluateRequest(context=built)
        try:
            decision, _ = await self._decided(built, parsed, timeout, "ext_authz")
        except _Failure as failure:
            return ext_authz.denied(failure.code, failure.message, http_status=503)
        return ext_authz.check_response(decision, settings)
