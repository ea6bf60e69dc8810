"""How the gRPC server's methods are built: raw bytes in, checked messages, one error path, metrics.

Every method of the server is registered through :func:`unary_unary`, :func:`unary_stream` or
:func:`stream_stream`. They take the method's bytes unparsed (``request_deserializer`` None), so a
message that does not parse is the handler's to refuse (INVALID_ARGUMENT with the catalog's code), not
grpcio's; and they wrap the behaviour so that:

- a :class:`joch.grpc.errors.GrpcError` ends the call with its status, code and details;
- a unary call that runs longer than ``deadline`` seconds (the server's limit, whatever the client's
  deadline) ends with DEADLINE_EXCEEDED; the client's own deadline is grpcio's to enforce;
- any other exception is logged and answers INTERNAL (never a crashed server);
- every call is counted once, with its status code, in ``joch_grpc_requests_total{method,code}`` and
  timed in ``joch_grpc_request_duration_seconds{method}`` (joch.metrics).

:func:`parse` decodes one message and refuses garbage, wrong wire types and unknown fields (a field
this server does not know was meant for some other version: deciding without it could fail open).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import grpc
from google.protobuf import message as pb_message
from google.protobuf import unknown_fields

from joch import metrics
from joch.grpc import errors

__all__ = [
    "BidiStream",
    "ServerStream",
    "Unary",
    "parse",
    "service",
    "stream_stream",
    "unary_stream",
    "unary_unary",
]

logger = logging.getLogger("joch.grpc")

M = TypeVar("M", bound=pb_message.Message)
Context = grpc.aio.ServicerContext[Any, Any]
Unary = Callable[[bytes, Context], Awaitable[bytes]]
ServerStream = Callable[[bytes, Context], AsyncIterator[bytes]]
BidiStream = Callable[[AsyncIterator[bytes], Context], AsyncIterator[bytes]]

_OK: Final = "OK"
_MAX_UNKNOWN_CHECK_DEPTH: Final = 64


def parse(message_type: type[M], raw: bytes, *, what: str = "the request", allow_unknown: bool = False) -> M:
    """``raw`` decoded as ``message_type``; raises GrpcError (INVALID_ARGUMENT) naming the problem.
    ``allow_unknown``: keep fields this server does not know (another project's protos, e.g. Envoy's)."""
    try:
        parsed = message_type.FromString(raw)
    except (pb_message.DecodeError, RuntimeError, ValueError) as exc:
        raise errors.invalid(
            f"{what} is not a {message_type.DESCRIPTOR.full_name} message: {exc}",
            [("(message)", "does not parse as protocol buffers")],
        ) from None
    if allow_unknown:
        return parsed
    # Fast path (every ordinary message): with its unknown fields dropped, the message re-encodes to
    # as many bytes as it came in. Only when it does not (unknown fields, or a valid but unusual
    # encoding such as a repeated field unpacked) is the message walked, to name what is unknown.
    parsed.DiscardUnknownFields()
    if parsed.ByteSize() == len(raw):
        return parsed
    unknown = _unknown(message_type.FromString(raw), "", 0)
    if unknown:
        raise errors.invalid(
            f"{what} has fields this server does not know: {', '.join(unknown[:5])}",
            [(field, "unknown field") for field in unknown[:20]],
        )
    return parsed


def _unknown(message: pb_message.Message, prefix: str, depth: int) -> list[str]:
    """The field paths of unknown fields in ``message`` and the messages it holds (``#N`` numbers)."""
    found_set = unknown_fields.UnknownFieldSet(message)
    found = [f"{prefix}#{found_set[index].field_number}" for index in range(len(found_set))]
    if depth >= _MAX_UNKNOWN_CHECK_DEPTH:
        return found
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.message_type.GetOptions().map_entry:
            continue
        if descriptor.message_type.full_name.startswith("google.protobuf."):
            continue  # Struct, Value, Timestamp: their JSON-like contents are checked elsewhere
        name = f"{prefix}{descriptor.json_name}"
        repeated = descriptor.is_repeated
        items = value if repeated else [value]
        for index, item in enumerate(items):
            where = f"{name}[{index}]." if repeated else f"{name}."
            found.extend(_unknown(item, where, depth + 1))
    return found


def service(name: str, methods: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> grpc.GenericRpcHandler:
    """The generic handler of service ``name`` (e.g. ``joch.v1.PolicyService``) with ``methods``."""
    return grpc.method_handlers_generic_handler(name, dict(methods))


def _code_name(code: grpc.StatusCode) -> str:
    return str(code.name)


def _record(method: str, started: float, code: str) -> None:
    metrics.record_grpc(method, code, time.perf_counter() - started)


async def _fail(context: Context, method: str, exc: BaseException) -> str:
    """End the call for ``exc``; the status code recorded."""
    if isinstance(exc, errors.GrpcError):
        await _abort_quietly(context, exc)
        return _code_name(exc.status)
    if isinstance(exc, TimeoutError):
        error = errors.GrpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED, "Timeout", "the call took longer than the server allows"
        )
        await _abort_quietly(context, error)
        return _code_name(error.status)
    logger.error("%s failed", method, exc_info=exc)
    await _abort_quietly(
        context, errors.GrpcError(grpc.StatusCode.INTERNAL, "InternalError", "the call failed; see the log")
    )
    return _code_name(grpc.StatusCode.INTERNAL)


async def _abort_quietly(context: Context, error: errors.GrpcError) -> None:
    """:func:`errors.abort` without its exception: the wrapper returns and grpcio sends the status."""
    context.set_trailing_metadata(errors.trailers(error))
    context.set_code(error.status)
    context.set_details(error.message)


def unary_unary(method: str, behaviour: Unary, *, deadline: float | None) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary method (``method``: its full name, ``/pkg.Service/Method``) answered by ``behaviour``."""

    async def handle(raw: bytes, context: Context) -> bytes:
        started = time.perf_counter()
        try:
            if deadline is None:
                answer = await behaviour(raw, context)
            else:
                async with asyncio.timeout(deadline):
                    answer = await behaviour(raw, context)
        except asyncio.CancelledError:
            _record(method, started, _code_name(grpc.StatusCode.CANCELLED))
            raise
        except Exception as exc:
            _record(method, started, await _fail(context, method, exc))
            return b""
        _record(method, started, _OK)
        return answer

    return grpc.unary_unary_rpc_method_handler(handle)


async def _relayed(method: str, answers: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    """A streaming method's answers passed on, its end recorded (and an error turned into its status)."""
    started = time.perf_counter()
    try:
        async for answer in answers:
            yield answer
    except asyncio.CancelledError:
        _record(method, started, _code_name(grpc.StatusCode.CANCELLED))
        raise
    except Exception as exc:
        _record(method, started, await _fail(context, method, exc))
        return
    _record(method, started, _OK)


def unary_stream(method: str, behaviour: ServerStream) -> grpc.RpcMethodHandler[Any, Any]:
    """A server-streaming method answered by ``behaviour``'s messages."""

    async def handle(raw: bytes, context: Context) -> AsyncIterator[bytes]:
        async for answer in _relayed(method, behaviour(raw, context), context):
            yield answer

    return grpc.unary_stream_rpc_method_handler(handle)


def stream_stream(method: str, behaviour: BidiStream) -> grpc.RpcMethodHandler[Any, Any]:
    """A bidirectional method: ``behaviour`` reads the client's messages and yields its answers."""

    async def handle(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        async for answer in _relayed(method, behaviour(requests, context), context):
            yield answer

    return grpc.stream_stream_rpc_method_handler(handle)
