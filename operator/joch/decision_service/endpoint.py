"""The HTTP face of the decision service (aiohttp): ``build_app(service) -> web.Application``.

| method, path | answer |
|---|---|
| ``POST /v1/policy/evaluate`` | 200 and the Decision (docs/policy-language.md); a deny is a 200 too |
| ``GET /v1/policies`` | 200 ``{"policies": [{namespace, name, version, valid, problems?}]}`` |
| ``GET /healthz`` | 200 ``{"status": "ok"}`` while the process serves |
| ``GET /readyz`` | 200 once the initial listing is loaded, else 503 |

Every error has the catalog's shape (docs/catalog.md section 6)::

    {"error": {"code": "InvalidRequest", "message": "...", "details": {...}}}

| status | code | when |
|---|---|---|
| 400 | InvalidJSON | the body is not JSON (or not UTF-8, or uses NaN/Infinity) |
| 400 | InvalidRequest | wrong shape: ``details.errors`` lists every ``{field, message}`` |
| 400 | ImpersonationRefused | with ``callers``: an ``Impersonate-*`` header was sent |
| 401 | Unauthorized | with ``callers``: no or malformed bearer token, or the API server does not accept it |
| 403 | Forbidden | with ``callers``: the token's user is not in ``decision_callers`` (``details.user``) |
| 404 | NotFound | no such path |
| 405 | MethodNotAllowed | e.g. GET on the evaluate path |
| 413 | RequestTooLarge | the body is over ``max_body`` bytes (``details.limitBytes``) |
| 415 | UnsupportedMediaType | a Content-Type other than JSON |
| 503 | NotReady | the policies are not loaded yet (with Retry-After) |
| 503 | Unavailable | with ``callers``: the TokenReview failed (fail closed; with Retry-After) |
| 500 | InternalError | a bug; never for anything a client sends |

Decisions are computed on the event loop, inline: they take microseconds, far less than a thread hop.

With a ``budgets`` step (``joch operator`` passes joch.controllers.reservations.BudgetGate), a decision
that is not a deny is then checked against the Budgets covering the call and its cost reserved; the
step may turn it into a ``BudgetExceeded`` deny, and adds ``reservation`` (or, on a deny, ``budget``) to
the response. ``joch policy serve`` has no such step: it holds no cache of Budgets.

With a ``callers`` gate (joch.decision_service.callers.CallerGate, when ``decision_callers`` is set) every
evaluate request (and ``GET /v1/policies``) is authenticated first, before its body is read: bearer
token, TokenReview, user in the list; the probes stay open. Without one anyone who reaches the port may
ask (local mode listens on 127.0.0.1 only).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from joch.api.errors import error_body
from joch.decision_service import callers as caller_checks
from joch.decision_service import requests
from joch.decision_service.deciding import BudgetStep, Clock, Decider, NotReady, utcnow
from joch.decision_service.service import DecisionService

__all__ = ["DEFAULT_MAX_BODY", "EVALUATE_PATH", "SERVICE_KEY", "BudgetStep", "build_app", "error_body"]

logger = logging.getLogger("joch.decision_service")

EVALUATE_PATH: Final = "/v1/policy/evaluate"
DEFAULT_MAX_BODY: Final = 1024 * 1024
"""Largest request body accepted, in bytes (1 MiB)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Config:
    max_body: int
    decide: Decider
    callers: caller_checks.CallerGate | None = None


SERVICE_KEY: Final = web.AppKey("joch.decision_service.service", DecisionService)
_CONFIG_KEY: Final = web.AppKey("joch.decision_service.config", _Config)


class _Rejected(Exception):
    """Raised inside a handler with the error response to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.reason)
        self.response = response


_CODES: Final = {
    400: "InvalidRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestTooLarge",
    415: "UnsupportedMediaType",
    503: "NotReady",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(error_body(code, message, details), status=status, headers=headers)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")


def _nested_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit``.

    Checked before parsing so the answer does not depend on the interpreter's recursion limit (which
    other libraries raise). Bodies with few brackets, every ordinary request, skip the scan.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _JSON_STRING.sub(b'""', raw):
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


def build_app(
    service: DecisionService,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    clock: Clock = utcnow,
    budgets: BudgetStep | None = None,
    callers: caller_checks.CallerGate | None = None,
) -> web.Application:
    """The aiohttp application serving ``service``; ``clock`` gives ``now`` for each decision;
    ``budgets``: the budget step run after each decision; ``callers``: who may ask (module docstring)."""
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1 byte, not {max_body}")
    app = web.Application(middlewares=[_errors], client_max_size=max_body)
    app[SERVICE_KEY] = service
    decide = Decider(service, source="endpoint", budgets=budgets, clock=clock)
    app[_CONFIG_KEY] = _Config(max_body=max_body, decide=decide, callers=callers)
    app.router.add_post(EVALUATE_PATH, _evaluate)
    app.router.add_get("/v1/policies", _policies)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413...) and any bug, in the error shape of docs/catalog.md 6."""
    try:
        return await handler(request)
    except _Rejected as exc:
        return exc.response
    except caller_checks.Refused as exc:
        return _error(exc.status, exc.code, exc.message, exc.details, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status, "InvalidRequest" if exc.status < 500 else "InternalError")
        return _error(exc.status, code, exc.reason)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return _error(500, "InternalError", "the decision service failed; see its log")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Constant:
    """NaN, Infinity or -Infinity found while locating them (:func:`_constant_fields`)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _constant_fields(text: str) -> list[dict[str, str]]:
    """Where the body uses NaN or Infinity, as ``{field, message}`` (parsed again, on the error path)."""
    try:
        loaded = json.loads(text, parse_constant=_Constant)
    except (ValueError, RecursionError):
        return []
    found: list[dict[str, str]] = []
    stack: list[tuple[str, Any]] = [("", loaded)]
    while stack and len(found) < 20:
        where, value = stack.pop()
        if isinstance(value, _Constant):
            found.append({"field": where or "(body)", "message": f"{value.name} is not valid JSON"})
        elif isinstance(value, dict):
            stack.extend((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
    return sorted(found, key=lambda item: item["field"])


async def _evaluate(request: web.Request) -> web.Response:
    config = request.app[_CONFIG_KEY]
    if config.callers is not None:
        await config.callers(request.headers)
    body = await _json_body(request, config.max_body)
    try:
        parsed = requests.parse_request(body)
    except requests.RequestError as exc:
        problems = [problem.to_dict() for problem in exc.problems]
        return _error(400, "InvalidRequest", f"invalid decision request: {exc}", {"errors": problems})
    try:
        decision, extra = await config.decide(parsed)
    except NotReady:
        return _not_ready()
    answer = decision.to_dict()
    if extra:
        answer.update(extra)
    return web.json_response(answer)


async def _json_body(request: web.Request, limit: int) -> Any:
    """The decoded JSON body; raises _Rejected (415, 413, 400) when there is none to use."""
    if request.headers.get("Content-Type") is not None and not _is_json(request.content_type):
        raise _Rejected(
            _error(
                415,
                "UnsupportedMediaType",
                f"send the request as application/json, not {request.content_type}",
            )
        )
    if request.content_length is not None and request.content_length > limit:
        raise _Rejected(_too_large(limit))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _Rejected(_too_large(limit)) from None
    if _nested_deeper_than(raw, requests.MAX_DEPTH):
        raise _Rejected(
            _error(400, "InvalidJSON", f"the body is nested more than {requests.MAX_DEPTH} levels deep")
        )
    details: dict[str, Any] | None = None
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        message = f"the body is not UTF-8: {exc.reason} at byte {exc.start}"
    except RecursionError:
        message = f"the body is nested more than {requests.MAX_DEPTH} levels deep"
    except ValueError as exc:
        message = f"the body is not valid JSON: {exc}"
        fields = _constant_fields(text) if "is not valid JSON" in str(exc) else []
        if fields:
            shown = "; ".join(f"{item['field']}: {item['message']}" for item in fields[:5])
            message = f"the body is not valid JSON: {shown}"
            details = {"errors": fields}
    raise _Rejected(_error(400, "InvalidJSON", message, details))


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _too_large(limit: int) -> web.Response:
    return _error(
        413,
        "RequestTooLarge",
        f"the request body is larger than {limit} bytes",
        {"limitBytes": limit},
        headers={"Connection": "close"},
    )


def _not_ready() -> web.Response:
    return _error(
        503, "NotReady", "the policies are not loaded yet; retry shortly", headers={"Retry-After": "1"}
    )


async def _policies(request: web.Request) -> web.Response:
    callers = request.app[_CONFIG_KEY].callers
    if callers is not None:
        await callers(request.headers)
    return web.json_response({"policies": request.app[SERVICE_KEY].describe()})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if not request.app[SERVICE_KEY].ready:
        return _not_ready()
    return web.json_response({"status": "ready"})
