"""gRPC errors in the catalog's shape: a status code, the catalog's error code, the fields at fault.

Every refusal of the gRPC server is a :class:`GrpcError`, raised by a method's behaviour; the wrapper
of joch.grpc.calls ends the call with it:

- the gRPC status code and a message naming the field and the reason;
- trailer ``joch-error-code``: the catalog's code (``InvalidRequest``, ``Unauthorized``, ``NotReady``...);
- trailer ``grpc-status-details-bin``: a ``google.rpc.Status`` whose details are an ``ErrorInfo``
  (reason = the catalog's code, domain ``joch.dev``) and, when fields are at fault, a ``BadRequest``
  listing them (``field_violations``), so clients with the richer error model read them typed.

:func:`from_http` maps the HTTP status of the project's other refusals (joch.decision_service.callers,
joch.apiserver.errors, kube-apiserver's answers) onto gRPC codes the way the gRPC-HTTP mapping does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "CODE_TRAILER",
    "DETAILS_TRAILER",
    "DOMAIN",
    "GrpcError",
    "from_http",
    "invalid",
    "status_details",
    "trailers",
]

CODE_TRAILER: Final = "joch-error-code"
DETAILS_TRAILER: Final = "grpc-status-details-bin"
DOMAIN: Final = "joch.dev"

_FROM_HTTP: Final[Mapping[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    410: grpc.StatusCode.OUT_OF_RANGE,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class GrpcError(Exception):
    """A refusal: the gRPC ``status``, the catalog's ``code``, a ``message``, the fields at fault
    (``(field, message)`` pairs) and extra ``metadata`` for the ErrorInfo."""

    def __init__(
        self,
        status: grpc.StatusCode,
        code: str,
        message: str,
        fields: tuple[tuple[str, str], ...] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.metadata: Mapping[str, str] = dict(metadata or {})


def invalid(message: str, fields: Iterable[tuple[str, str]] = ()) -> GrpcError:
    """INVALID_ARGUMENT with code InvalidRequest."""
    return GrpcError(grpc.StatusCode.INVALID_ARGUMENT, "InvalidRequest", message, tuple(fields))


def from_http(
    status: int, code: str, message: str, fields: Sequence[tuple[str, str]] = (), **metadata: str
) -> GrpcError:
    """The gRPC error for an HTTP refusal (``status``: 400, 401, 403, 404, 410, 503...)."""
    grpc_status = _FROM_HTTP.get(status)
    if grpc_status is None:
        grpc_status = grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL
    return GrpcError(grpc_status, code, message, tuple(fields), dict(metadata))


def status_details(error: GrpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of ``error``: ErrorInfo, then BadRequest when fields are at fault."""
    info = error_details_pb2.ErrorInfo(reason=error.code, domain=DOMAIN, metadata=dict(error.metadata))
    details = [_packed(info)]
    if error.fields:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=text)
            for field, text in error.fields
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
    return status_pb2.Status(code=_code_number(error.status), message=error.message, details=details)


def trailers(error: GrpcError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata of ``error``: its catalog code and its ``google.rpc.Status``."""
    return (
        (CODE_TRAILER, error.code),
        (DETAILS_TRAILER, status_details(error).SerializeToString()),
    )


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _code_number(status: grpc.StatusCode) -> int:
    number = status.value[0]
    return int(number) if isinstance(number, int) else code_pb2.UNKNOWN
