"""joch.v1.ResourceService: Get, List and Watch the joch kinds, as the caller (the /v1 API's reads).

Every call takes the caller's bearer token from the metadata (joch.grpc.auth.token) and asks
kube-apiserver with it and nothing else (joch.apiserver.Callers), on the paths and with the queries the
REST API uses (joch.apiserver.kinds): RBAC decides, and kube-apiserver's refusals come back mapped
(joch.apiserver.errors.from_kube, then joch.grpc.errors.from_http): 401 UNAUTHENTICATED, 403
PERMISSION_DENIED, 404 NOT_FOUND, 410 OUT_OF_RANGE (code Expired), an unreachable or failing
kube-apiserver UNAVAILABLE.

- ``Get``: one object; ``json`` is the bytes kube-apiserver sent.
- ``List``: a page (``limit`` 1..1000, default 100, as the REST API's; ``continue_token`` from the
  previous page); an empty namespace lists across the namespaces (RBAC decides which the caller sees).
- ``Watch``: kube-apiserver's watch relayed event by event (bookmarks asked for), from
  ``resource_version`` when given: a client that reconnects with the last event's version gets every
  later change exactly once, since no listing is mixed in. An ERROR event (before or after the first
  change) ends the call with its status: an expired position is OUT_OF_RANGE, code Expired (List again
  and watch from the list's resource_version). The stream ends after ``timeout_seconds`` (1..3600,
  default 300, as the REST API's).

Bad input is INVALID_ARGUMENT (code InvalidRequest) naming the field (``kind``, ``namespace``,
``name``, ``limit``, ``timeout_seconds``); an unknown kind is NOT_FOUND naming ``kind``, as the REST
API answers 404. A namespace given for a cluster-scoped kind is ignored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import grpc

from joch import apiserver
from joch.api.v1alpha1 import meta
from joch.apiserver import kinds
from joch.apiserver.errors import ApiError, code_for, from_kube
from joch.grpc import auth, calls, errors
from joch.grpc.gen.v1 import resource_service_pb2 as pb
from joch.kube import errors as kube_errors
from joch.kube import paths

__all__ = ["DEFAULT_LIMIT", "SERVICE", "WATCH_TIMEOUT", "ResourceService"]

SERVICE: Final = "joch.v1.ResourceService"
DEFAULT_LIMIT: Final = kinds.DEFAULT_LIMIT
"""List's page size when ``limit`` is unset (as the REST API's; proto/joch/v1/resource_service.proto)."""
WATCH_TIMEOUT: Final = kinds.WATCH_TIMEOUT
"""Watch's length in seconds when ``timeout_seconds`` is unset (as the REST watch's; the proto's default)."""
WATCH_EVENTS: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})

Context = grpc.aio.ServicerContext[Any, Any]


class ResourceService:
    """The service's behaviour over ``callers`` (clients that send the caller's token only)."""

    def __init__(self, callers: apiserver.Callers) -> None:
        self.callers = callers

    async def get(self, raw: bytes, context: Context) -> bytes:
        token = auth.token(context)
        request = calls.parse(pb.GetRequest, raw)
        model = _model(request.kind)
        resource = paths.ResourceType.of(model)
        if not request.name:
            raise errors.invalid("name: required (the object's metadata.name)", [("name", "required")])
        namespace = _namespace(resource, request.namespace, required=True)
        path = kinds.object_path(model, namespace, _segment(request.name, "name"))
        try:
            payload = await self.callers.kube(token).request("GET", path, raw=True)
        except kube_errors.KubeError as exc:
            raise _refused(exc) from None
        body = bytes(payload)
        return _resource(model, json.loads(body), body).SerializeToString()

    async def list(self, raw: bytes, context: Context) -> bytes:
        token = auth.token(context)
        request = calls.parse(pb.ListRequest, raw)
        model = _model(request.kind)
        resource = paths.ResourceType.of(model)
        namespace = _namespace(resource, request.namespace, required=False)
        query = {"limit": str(_bounded(request.limit, "limit", DEFAULT_LIMIT, 1, kinds.MAX_LIMIT))}
        if request.continue_token:
            query["continue"] = request.continue_token
        if request.label_selector:
            query["labelSelector"] = request.label_selector
        try:
            listed = await self.callers.kube(token).request(
                "GET", kinds.collection(model, namespace), query=query
            )
        except kube_errors.KubeError as exc:
            raise _refused(exc) from None
        listed = listed if isinstance(listed, Mapping) else {}
        metadata = listed.get("metadata") or {}
        items = [item for item in listed.get("items") or () if isinstance(item, Mapping)]
        return pb.ListResponse(
            items=[_resource(model, item, _compact(item)) for item in items],
            resource_version=str(metadata.get("resourceVersion") or ""),
            continue_token=str(metadata.get("continue") or ""),
        ).SerializeToString()

    async def watch(self, raw: bytes, context: Context) -> AsyncIterator[bytes]:
        token = auth.token(context)
        request = calls.parse(pb.WatchRequest, raw)
        model = _model(request.kind)
        resource = paths.ResourceType.of(model)
        namespace = _namespace(resource, request.namespace, required=False)
        timeout = _bounded(
            request.timeout_seconds, "timeout_seconds", WATCH_TIMEOUT, 1, kinds.MAX_WATCH_TIMEOUT
        )
        query = {"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
        if request.resource_version:
            query["resourceVersion"] = request.resource_version
        if request.label_selector:
            query["labelSelector"] = request.label_selector
        try:
            async with self.callers.kube(token).stream(
                kinds.collection(model, namespace),
                query=query,
                accept="application/json",
                read_timeout=kinds.MAX_WATCH_TIMEOUT + 30,
                max_line=kinds.MAX_WATCH_LINE,
            ) as lines:
                async for event in kinds.watch_events(lines):
                    kind = event.get("type")
                    if kind == "ERROR":
                        raise _watch_error(event)
                    obj = event.get("object")
                    if kind not in WATCH_EVENTS or not isinstance(obj, Mapping):
                        continue
                    yield pb.WatchEvent(
                        type=str(kind), object=_changed(model, str(kind), obj)
                    ).SerializeToString()
        except kube_errors.KubeError as exc:
            raise _refused(exc) from None

    def handler(self, *, deadline: float | None) -> grpc.GenericRpcHandler:
        """The service's generic handler; ``deadline``: the server's limit on Get and List."""
        return calls.service(
            SERVICE,
            {
                "Get": calls.unary_unary(f"/{SERVICE}/Get", self.get, deadline=deadline),
                "List": calls.unary_unary(f"/{SERVICE}/List", self.list, deadline=deadline),
                "Watch": calls.unary_stream(f"/{SERVICE}/Watch", self.watch),
            },
        )


# --- requests -------------------------------------------------------------------------------------------


def _model(name: str) -> type[meta.Resource]:
    if not name:
        raise errors.invalid(
            "kind: required (a plural such as agents, a kind name or a short name)", [("kind", "required")]
        )
    try:
        return kinds.kind(name)
    except ApiError as exc:
        raise errors.from_http(
            exc.status, exc.code, f"kind: {exc.message}", [("kind", "no such kind")]
        ) from None


def _segment(value: str, field: str) -> str:
    try:
        return kinds.segment(value, field)
    except ApiError as exc:
        raise errors.invalid(exc.message, [(field, "not a valid Kubernetes name")]) from None


def _namespace(resource: paths.ResourceType, namespace: str, *, required: bool) -> str | None:
    """The namespace to ask in (None: a cluster-scoped kind, or every namespace)."""
    if not resource.namespaced:
        return None
    if not namespace:
        if required:
            raise errors.invalid(
                f"namespace: required ({resource.kind} is namespaced)", [("namespace", "required")]
            )
        return None
    return _segment(namespace, "namespace")


def _bounded(value: int, field: str, default: int, low: int, high: int) -> int:
    """``value`` (0, unset: ``default``) when within ``low..high``; INVALID_ARGUMENT naming ``field``."""
    if value == 0:
        return default
    if not low <= value <= high:
        raise errors.invalid(
            f"{field}: {value} is outside {low}..{high}", [(field, f"outside {low}..{high}")]
        )
    return value


# --- answers --------------------------------------------------------------------------------------------


def _refused(exc: kube_errors.KubeError) -> errors.GrpcError:
    failed = from_kube(exc)
    message = failed.message
    if failed.status == 410:
        message = f"{message}: list again and watch from the list's resourceVersion"
    return _http(failed.status, failed.code, message, str(failed.details.get("reason") or ""))


def _watch_error(event: Mapping[str, Any]) -> errors.GrpcError:
    """The error a watch's ERROR event ends the call with (read as the REST watch reads it; its code
    the one of the status answered, so a failing kube-apiserver is Unavailable)."""
    failed = kinds.watch_error(event)
    return _http(
        failed.status, code_for(failed.status), failed.message, str(failed.details.get("reason") or "")
    )


def _http(status: int, code: str, message: str, reason: str) -> errors.GrpcError:
    """The gRPC error of an HTTP refusal; kube-apiserver's ``reason`` in the ErrorInfo when given."""
    if reason:
        return errors.from_http(status, code, message, reason=reason)
    return errors.from_http(status, code, message)


def _changed(model: type[meta.Resource], kind: str, obj: Mapping[str, Any]) -> pb.Resource:
    if kind == "BOOKMARK":
        metadata = obj.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        return pb.Resource(
            api_version=str(obj.get("apiVersion") or model.crd.api_version),
            kind=str(obj.get("kind") or model.crd.kind),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )
    return _resource(model, obj, _compact(obj))


def _resource(model: type[meta.Resource], obj: Any, body: bytes) -> pb.Resource:
    """The message of ``obj`` (``body``: its JSON); apiVersion and kind default to the model's (a list's
    items may leave them out)."""
    obj = obj if isinstance(obj, Mapping) else {}
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    generation = metadata.get("generation")
    return pb.Resource(
        api_version=str(obj.get("apiVersion") or model.crd.api_version),
        kind=str(obj.get("kind") or model.crd.kind),
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        generation=generation if isinstance(generation, int) and not isinstance(generation, bool) else 0,
        json=body,
    )


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
