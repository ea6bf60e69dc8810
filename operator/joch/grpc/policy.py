"""joch.v1.PolicyService: ``Decide`` (unary) and ``DecideStream`` (bidirectional), over the decision service.

One :class:`Decider` is the step both PolicyService and ext_authz (joch.grpc.ext_authz) call: readiness,
the decision of the operator's decision service (the same policies, compiled once, that admission and
``POST /v1/policy/evaluate`` use), then the budget step (reservations against the covering Budgets)
unless the request is a preflight. A request is checked exactly as the HTTP endpoint checks it
(joch.grpc.convert.request_of).

Unary errors are gRPC statuses (INVALID_ARGUMENT + InvalidRequest with every field at fault,
UNAVAILABLE + NotReady before the policies are loaded). On a stream an error belongs to one message:
its response carries ``error`` (and the message's request_id, when it could be read) and the stream
goes on; only the caller's identity ends a stream (its token is checked again for every message, from
the gate's cache, so a revoked token stops working within the cache's life).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

import grpc

from joch.decision_service import callers, deciding, requests
from joch.decision_service.deciding import BudgetStep, Clock, utcnow
from joch.decision_service.service import DecisionService
from joch.domain.policy.decision import Decision
from joch.grpc import auth, calls, convert, errors
from joch.grpc.gen.v1 import decision_pb2, policy_service_pb2

__all__ = ["SERVICE", "Decider", "PolicyService"]

SERVICE: Final = "joch.v1.PolicyService"

Decide = Callable[[requests.EvaluateRequest], Awaitable[tuple[Decision, Mapping[str, Any] | None]]]


class Decider:
    """``await decider(request)``: the decision service's one decision step
    (joch.decision_service.deciding), with NotReady as UNAVAILABLE (code NotReady)."""

    def __init__(
        self,
        service: DecisionService,
        *,
        budgets: BudgetStep | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.step = deciding.Decider(service, source="grpc", budgets=budgets, clock=clock)

    async def __call__(self, request: requests.EvaluateRequest) -> tuple[Decision, Mapping[str, Any] | None]:
        try:
            return await self.step(request)
        except deciding.NotReady as exc:
            raise errors.GrpcError(grpc.StatusCode.UNAVAILABLE, "NotReady", str(exc)) from None


def parsed(message: policy_service_pb2.DecideRequest) -> requests.EvaluateRequest:
    """The checked request of ``message``; raises GrpcError (INVALID_ARGUMENT) naming every field."""
    if message.WhichOneof("context_kind") is None:
        raise errors.invalid(
            "invalid decision request: context: required (context or context_json)",
            [("context", "required: the decision context")],
        )
    try:
        return convert.request_of(message)
    except requests.RequestError as exc:
        raise errors.invalid(
            f"invalid decision request: {exc}", [(p.field, p.message) for p in exc.problems]
        ) from None


class PolicyService:
    """The two methods; :meth:`handler` registers them (joch.grpc.calls)."""

    def __init__(self, decide: Decide, gate: callers.CallerGate, *, deadline: float | None) -> None:
        self.decide = decide
        self.gate = gate
        self.deadline = deadline

    def handler(self) -> grpc.GenericRpcHandler:
        return calls.service(
            SERVICE,
            {
                "Decide": calls.unary_unary(f"/{SERVICE}/Decide", self.unary, deadline=self.deadline),
                "DecideStream": calls.stream_stream(f"/{SERVICE}/DecideStream", self.stream),
            },
        )

    async def unary(self, raw: bytes, context: calls.Context) -> bytes:
        await auth.caller(self.gate, context)
        message = calls.parse(policy_service_pb2.DecideRequest, raw)
        decision, extra = await self.decide(parsed(message))
        return convert.decision_message(decision, extra, message.request_id).SerializeToString()

    async def stream(self, messages: AsyncIterator[bytes], context: calls.Context) -> AsyncIterator[bytes]:
        await auth.caller(self.gate, context)
        async for raw in messages:
            await auth.caller(self.gate, context)
            yield (await self._one(raw)).SerializeToString()

    async def _one(self, raw: bytes) -> policy_service_pb2.DecideResponse:
        request_id = ""
        try:
            message = calls.parse(policy_service_pb2.DecideRequest, raw, what="the message")
            request_id = message.request_id
            if self.deadline is None:
                decision, extra = await self.decide(parsed(message))
            else:
                async with asyncio.timeout(self.deadline):
                    decision, extra = await self.decide(parsed(message))
        except errors.GrpcError as exc:
            return _error_response(request_id, exc.code, exc.message, exc.fields)
        except TimeoutError:
            return _error_response(request_id, "Timeout", "the decision took longer than the server allows")
        return convert.decision_message(decision, extra, request_id)


def _error_response(
    request_id: str, code: str, message: str, fields: tuple[tuple[str, str], ...] = ()
) -> policy_service_pb2.DecideResponse:
    error = decision_pb2.Error(
        code=code,
        message=message,
        errors=[decision_pb2.FieldError(field=field, message=text) for field, text in fields],
    )
    return policy_service_pb2.DecideResponse(request_id=request_id, error=error)
