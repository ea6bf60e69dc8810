"""The /v1 API: the documented REST + watch surface over kube-apiserver, called as the caller.

Every route but ``/openapi.json`` and ``/healthz`` needs ``Authorization: Bearer <token>``; the request
to kube-apiserver carries that token and nothing else (:mod:`joch.apiserver.callers`), so RBAC, the
admission webhooks and kube-apiserver's audit log all see the real user. Errors answer
``{"error": {"code", "message", "details"}}`` with a 4xx status naming the field and the reason; an
unexpected failure is a 500 with a generic message (its trace goes to the log, never to the client).

The routes are listed once, in :data:`ROUTES`, with what the OpenAPI document (:mod:`joch.apiserver.
openapi`) says of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal

import pydantic
from aiohttp import web

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.execution import Execution
from joch.apiserver import bodies, kinds
from joch.apiserver.callers import Callers, token_of
from joch.apiserver.errors import ApiError, body, code_for, from_kube
from joch.apiserver.kinds import collection as _collection
from joch.apiserver.kinds import kind as _kind
from joch.apiserver.kinds import object_path as _object
from joch.apiserver.kinds import segment as _segment
from joch.domain.admission import ALL_KINDS, Admission, Document, DocumentResult, check_batch
from joch.domain.compilation import catalog
from joch.domain.reconcile import agbom as agbom_plan
from joch.domain.reconcile import evals as eval_plan
from joch.domain.reconcile.approvals import decide_body
from joch.domain.reconcile.executions import TERMINAL, execution_body
from joch.domain.settings import OperatorSettings
from joch.kube import agboms, batch, errors, rest
from joch.kube import client as kube_client

__all__ = ["ROUTES", "ApiContext", "Route", "build_app"]

logger = logging.getLogger("joch.apiserver")

MERGE_PATCH: Final = "application/merge-patch+json"
DEFAULT_LIMIT: Final = kinds.DEFAULT_LIMIT
MAX_LIMIT: Final = kinds.MAX_LIMIT
WATCH_TIMEOUT: Final = kinds.WATCH_TIMEOUT
MAX_WATCH_TIMEOUT: Final = kinds.MAX_WATCH_TIMEOUT
MAX_WATCH_LINE: Final = kinds.MAX_WATCH_LINE
FIELD_MANAGER: Final = "joch-api"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class ApiContext:
    """What the routes use: callers' clients, the operator's cache (the batch is judged against it, as
    the webhooks judge), settings, and the operator's own client for the few reads a caller's RBAC
    cannot reach but the caller's authorization already covered (an AgBOM's document ConfigMap, read
    only after the caller could read the AgBOM)."""

    callers: Callers
    lookup: catalog.Lookup | None
    settings: OperatorSettings
    operator: kube_client.Kube | None = None


_CONTEXT: Final = web.AppKey("joch.api", ApiContext)


# --- plumbing -------------------------------------------------------------------------------------------


def _context(request: web.Request) -> ApiContext:
    return request.app[_CONTEXT]


def _kube(request: web.Request) -> kube_client.Kube:
    return _context(request).callers.kube(token_of(request.headers))


async def _call(
    request: web.Request,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    payload: Any = None,
    content_type: str | None = None,
) -> Any:
    """One kube-apiserver call as the caller; its refusal passed on."""
    kube = _kube(request)
    try:
        return await kube.request(method, path, body=payload, query=query, content_type=content_type)
    except errors.KubeError as exc:
        raise from_kube(exc) from None


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: json.dumps(v, separators=(",", ":")))


async def _body_text(request: web.Request, accepted: frozenset[str]) -> str:
    declared = request.content_length
    if declared is not None and declared > bodies.MAX_BODY_BYTES:
        raise bodies.too_large()
    try:
        raw = await request.content.read(bodies.MAX_BODY_BYTES + 1)
    except (ConnectionError, asyncio.IncompleteReadError, web.HTTPException):
        raise ApiError(400, "BadRequest", "the body could not be read") from None
    return bodies.decode(raw, request.content_type, accepted=accepted)


async def _model(request: web.Request, schema: type[bodies.M]) -> bodies.M:
    text = await _body_text(request, bodies.JSON_TYPES) if request.can_read_body else ""
    return bodies.model(text, schema)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "BadRequest", f"query {name}: {raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "BadRequest", f"query {name}: {value} is outside {low}..{high}")
    return value


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in {"", "0", "false", "no"}:
        return False
    if raw in {"1", "true", "yes"}:
        return True
    raise ApiError(400, "BadRequest", f"query {name}: {raw[:40]!r} is not true or false")


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="joch"'} if exc.status == 401 else None
        return web.json_response(body(exc.code, exc.message, exc.details), status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(body(code_for(exc.status), exc.reason), status=exc.status)
    except Exception:
        logger.exception("%s %s failed", request.method, request.path)
        return web.json_response(
            body("InternalError", "the request failed inside the API server"), status=500
        )


# --- resources: get and list ----------------------------------------------------------------------------


async def list_or_get(request: web.Request) -> web.StreamResponse:
    namespace = _segment(request.match_info["namespace"], "namespace")
    model = _kind(request.match_info["kind"])
    name = request.match_info.get("name")
    if name:  # passed on as kube-apiserver sent it: no decoding and encoding again
        try:
            payload = await _kube(request).request("GET", _object(model, namespace, name), raw=True)
        except errors.KubeError as exc:
            raise from_kube(exc) from None
        return web.Response(body=payload, content_type="application/json")
    return await _list(request, model, namespace)


async def _list(request: web.Request, model: type[meta.Resource], namespace: str) -> web.StreamResponse:
    query = {"limit": str(_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))}
    if request.query.get("continue"):
        query["continue"] = request.query["continue"]
    if request.query.get("selector"):
        query["labelSelector"] = request.query["selector"]
    listed = await _call(request, "GET", _collection(model, namespace), query=query)
    return _json(_page(model, listed))


def _page(model: type[meta.Resource], listed: Mapping[str, Any]) -> dict[str, Any]:
    metadata = listed.get("metadata") or {}
    return {
        "apiVersion": model.crd.api_version,
        "kind": f"{model.crd.kind}List",
        "metadata": {k: metadata[k] for k in ("resourceVersion", "continue") if metadata.get(k)},
        "items": list(listed.get("items") or ()),
    }


# --- resources: apply, validate, diff -------------------------------------------------------------------


Verb = Literal["apply", "validate", "diff"]


async def apply(request: web.Request) -> web.StreamResponse:
    return await _batch(request, "apply")


async def validate(request: web.Request) -> web.StreamResponse:
    return await _batch(request, "validate")


async def diff(request: web.Request) -> web.StreamResponse:
    return await _batch(request, "diff")


async def _batch(request: web.Request, verb: Verb) -> web.StreamResponse:
    """Judge every document against the operator's cache with the batch laid over, server-side dry-run
    each (as the caller), and for ``apply`` write them only when every one passed."""
    context = _context(request)
    token = token_of(request.headers)
    text = await _body_text(request, bodies.JSON_TYPES | bodies.YAML_TYPES)
    parsed = bodies.documents(text, request.content_type)
    write = batch.Write(
        field_manager=request.query.get("fieldManager") or FIELD_MANAGER,
        force=_flag(request, "force"),
        namespace=_segment(request.query.get("namespace") or "default", "namespace"),
    )
    results = check_batch(
        [Document(source, raw) for source, raw in parsed],
        admission=Admission(context.settings),
        base=context.lookup,
        known_kinds=ALL_KINDS,
        default_namespace=write.namespace,
        strict_missing=not _flag(request, "allowPending"),
    )
    cluster = context.callers.cluster(token)
    reports = await _dry_runs(cluster, results, write, context.lookup, verb == "diff")
    rejected = sum(1 for report in reports if not report["ok"])
    if verb != "apply":
        return _json({"valid": rejected == 0, "documents": reports})
    if rejected:
        forbidden = any(report.get("status") == 403 for report in reports)
        raise ApiError(
            403 if forbidden else 422,
            "Forbidden" if forbidden else "Invalid",
            f"{rejected} of {len(reports)} documents rejected; nothing was applied: " + _first_error(reports),
            {"documents": reports},
        )
    outcome = await asyncio.to_thread(batch.apply_all, cluster, results, write)
    applied = [_applied(result, warnings, stored) for result, warnings, stored in outcome.applied]
    if outcome.failed is not None:
        result, error = outcome.failed
        raise ApiError(
            409,
            "Conflict",
            f"stopped after {len(applied)} of {len(results)} documents: {result.label}: {error} (the cluster "
            "changed between the dry run and the apply; apply is idempotent, send the batch again)",
            {"applied": applied},
        )
    return _json({"applied": applied})


def _first_error(reports: Sequence[Mapping[str, Any]]) -> str:
    for report in reports:
        if report["errors"]:
            return f"{report['source']} {report['kind']}/{report['name']}: {report['errors'][0]}"
    return ""


DRY_RUNS_IN_FLIGHT: Final = 8
"""Dry runs of one batch sent at once (each a blocking call in a worker thread)."""


async def _dry_runs(
    cluster: rest.Cluster,
    results: Sequence[DocumentResult],
    write: batch.Write,
    lookup: catalog.Lookup | None,
    with_diff: bool,
) -> list[dict[str, Any]]:
    """One report per document, in order: the local verdict, then (when it passed) the server's dry run,
    :data:`DRY_RUNS_IN_FLIGHT` at a time."""
    created = {r.name for r in results if r.kind == "Namespace" and r.api_version == "v1"}
    has_namespace = getattr(lookup, "has_namespace", None)
    existing = {ns for ns in created if has_namespace is None or has_namespace(ns) is not False}
    slots = asyncio.Semaphore(DRY_RUNS_IN_FLIGHT)

    async def report(result: DocumentResult) -> dict[str, Any]:
        errors_ = [result.verdict.format(e) for e in result.verdict.errors] if result.verdict else []
        warnings = result.verdict.warning_messages(limit=50) if result.verdict else []
        notes: list[str] = []
        changes: list[dict[str, Any]] | None = None
        refused = 0
        if result.body is None and not errors_:
            errors_.append(
                "the document is not a Kubernetes object (it needs apiVersion, kind and metadata.name)"
            )
        elif result.body is not None and not errors_:
            async with slots:
                checked = await asyncio.to_thread(
                    batch.dry_run, cluster, result, write, existing=existing, created=created
                )
                if with_diff and checked.answer is not None:
                    changes = await asyncio.to_thread(_changes, cluster, result, write, checked.answer)
            errors_ += checked.errors
            warnings += checked.warnings
            notes += checked.notes
            refused = checked.status
        found: dict[str, Any] = {
            "source": result.document.source,
            "apiVersion": result.api_version,
            "kind": result.kind,
            "name": result.name,
            "namespace": result.namespace or (write.namespace if result.joch else None),
            "ok": not errors_,
            "errors": errors_,
            "warnings": warnings,
            "notes": notes,
        }
        if refused:
            found["status"] = refused
        if changes is not None:
            found["changes"] = changes
        return found

    return list(await asyncio.gather(*(report(result) for result in results)))


_IGNORED: Final = frozenset({"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"})


def _changes(
    cluster: rest.Cluster, result: DocumentResult, write: batch.Write, after: Any
) -> list[dict[str, Any]]:
    """What applying ``result`` would change in the stored object: JSON-pointer-like paths with the
    value before and after (status and server-set metadata are left out)."""
    found = batch.target(cluster, result, write)
    assert found is not None
    stored = cluster.call("GET", found[0])
    before = stored.body if stored.status == 200 and isinstance(stored.body, Mapping) else {}
    out: list[dict[str, Any]] = []
    _walk(_comparable(before), _comparable(after), "", out)
    return out


def _comparable(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        return {}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _IGNORED}
    return {**{k: v for k, v in obj.items() if k not in {"status", "metadata"}}, "metadata": metadata}


def _walk(before: Any, after: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            where = f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in before:
                out.append({"op": "add", "path": where, "value": after[key]})
            elif key not in after:
                out.append({"op": "remove", "path": where, "from": before[key]})
            else:
                _walk(before[key], after[key], where, out)
        return
    if before != after:
        out.append({"op": "replace", "path": path or "/", "from": before, "value": after})


def _applied(result: DocumentResult, warnings: list[str], stored: Any) -> dict[str, Any]:
    metadata = stored.get("metadata") if isinstance(stored, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return {
        "apiVersion": result.api_version,
        "kind": result.kind,
        "name": result.name,
        "namespace": metadata.get("namespace"),
        "resourceVersion": metadata.get("resourceVersion"),
        "generation": metadata.get("generation"),
        "warnings": warnings,
    }


# --- AgBOM ----------------------------------------------------------------------------------------------


async def agbom(request: web.Request) -> web.StreamResponse:
    """The Agent's AgBOM document (CycloneDX JSON): the newest, or ``?generation=N``. The caller must be
    able to read the Agent's AgBOM object; the document's ConfigMap is then read by the operator."""
    namespace = _segment(request.match_info["namespace"], "namespace")
    agent = _segment(request.match_info["name"], "name")
    wanted = request.query.get("format", "cyclonedx")
    if wanted != "cyclonedx":
        raise ApiError(400, "BadRequest", f"query format: {wanted[:40]!r} is not served; format=cyclonedx is")
    listed = await _call(request, "GET", _collection(v1alpha1.AgBOM, namespace))
    found = [
        item
        for item in listed.get("items") or ()
        if ((item.get("spec") or {}).get("agentRef") or {}).get("name") == agent
    ]
    if not found:
        raise ApiError(
            404, "NotFound", f"Agent {namespace}/{agent} has no AgBOM (is the AgBOM service running?)"
        )
    status = found[0].get("status") or {}
    newest = status.get("generation")
    generation = _int(request, "generation", int(newest or 0), 1, 2**31)
    if not newest:
        raise ApiError(404, "NotFound", f"the AgBOM of Agent {namespace}/{agent} has no document yet")
    context = _context(request)
    if context.operator is None:
        raise ApiError(503, "Unavailable", "AgBOM documents are served by the API inside the operator")
    name = agbom_plan.configmap_name(agent, generation)
    try:
        text = await agboms.read_document(context.operator, namespace, name)
    except errors.NotFound as exc:
        raise ApiError(
            404, "NotFound", f"AgBOM generation {generation} of Agent {namespace}/{agent} is not kept: {exc}"
        ) from None
    except errors.KubeError as exc:
        raise from_kube(exc) from None
    return web.Response(
        text=text,
        content_type="application/vnd.cyclonedx+json",
        headers={"X-Joch-AgBOM-Generation": str(generation)},
    )


# --- executions -----------------------------------------------------------------------------------------


class RunRequest(pydantic.BaseModel):
    """A new run: an Execution resource, or the short form (agentRef, input, timeoutSeconds)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    api_version: str | None = pydantic.Field(default=None, alias="apiVersion")
    kind: str | None = None
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None
    agent_ref: dict[str, str] | None = pydantic.Field(default=None, alias="agentRef")
    input: dict[str, Any] | None = None
    timeout_seconds: int | None = pydantic.Field(default=None, alias="timeoutSeconds", ge=1, le=7 * 24 * 3600)
    name: str | None = pydantic.Field(default=None, max_length=63)


async def list_executions(request: web.Request) -> web.StreamResponse:
    return await _list(request, Execution, _segment(request.match_info["namespace"], "namespace"))


async def create_execution(request: web.Request) -> web.StreamResponse:
    namespace = _segment(request.match_info["namespace"], "namespace")
    run = await _model(request, RunRequest)
    document = _execution_document(run, namespace)
    try:
        Execution.model_validate(document)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise ApiError(422, "Invalid", f"{field}: {error['msg']}", {"field": field}) from None
    created = await _call(request, "POST", _collection(Execution, namespace), payload=document)
    return _json(created, status=201)


def _execution_document(run: RunRequest, namespace: str) -> dict[str, Any]:
    crd = Execution.crd
    if run.spec is not None:
        if run.agent_ref is not None or run.input is not None:
            raise ApiError(
                422, "Invalid", "agentRef/input: send either an Execution (spec) or the short form"
            )
        if run.kind not in {None, crd.kind} or run.api_version not in {None, crd.api_version}:
            raise ApiError(422, "Invalid", f"kind: this endpoint creates {crd.api_version} {crd.kind}")
        metadata = dict(run.metadata or {})
        if metadata.get("namespace") not in {None, namespace}:
            raise ApiError(422, "Invalid", f"metadata.namespace: the path names namespace {namespace}")
        if "name" not in metadata and "generateName" not in metadata:
            agent = str((run.spec.get("agentRef") or {}).get("name") or "run")
            metadata["generateName"] = f"{agent}-"
        metadata["namespace"] = namespace
        return {"apiVersion": crd.api_version, "kind": crd.kind, "metadata": metadata, "spec": run.spec}
    if run.agent_ref is None or not run.agent_ref.get("name"):
        raise ApiError(
            422, "Invalid", "agentRef.name: required (the Agent to run)", {"field": "agentRef.name"}
        )
    return execution_body(
        run.agent_ref["name"],
        namespace,
        name=run.name,
        spec_input=run.input,
        timeout_seconds=run.timeout_seconds,
    )


async def cancel_execution(request: web.Request) -> web.StreamResponse:
    namespace = _segment(request.match_info["namespace"], "namespace")
    path = _object(Execution, namespace, request.match_info["name"])
    current = await _call(request, "GET", path)
    phase = (current.get("status") or {}).get("phase")
    if phase in TERMINAL:
        return _json({"cancelled": False, "phase": phase, "message": f"the run already ended ({phase})"})
    patched = await _call(
        request, "PATCH", path, payload={"spec": {"cancel": True}}, content_type=MERGE_PATCH
    )
    return _json(
        {"cancelled": True, "phase": (patched.get("status") or {}).get("phase"), "object": patched}, 202
    )


async def execution_events(request: web.Request) -> web.StreamResponse:
    """The run's changes as a stream (one JSON object a line), from its current state to its end."""
    namespace = _segment(request.match_info["namespace"], "namespace")
    name = _segment(request.match_info["name"], "name")
    current = await _call(request, "GET", _object(Execution, namespace, name))
    response = await _start_stream(request)
    await _line(response, {"type": "SNAPSHOT", "object": current})
    if (current.get("status") or {}).get("phase") in TERMINAL:
        await response.write_eof()
        return response
    query = {
        "watch": "1",
        "fieldSelector": f"metadata.name={name}",
        "resourceVersion": str((current.get("metadata") or {}).get("resourceVersion") or ""),
        "timeoutSeconds": str(_int(request, "timeoutSeconds", WATCH_TIMEOUT, 1, MAX_WATCH_TIMEOUT)),
    }

    def ended(event: Mapping[str, Any]) -> bool:
        obj = event.get("object") or {}
        return event.get("type") == "DELETED" or (obj.get("status") or {}).get("phase") in TERMINAL

    return await _relay(request, _collection(Execution, namespace), query, until=ended, response=response)


# --- approvals ------------------------------------------------------------------------------------------


class DecideRequest(pydantic.BaseModel):
    """A decision on an Approval: approve, reject (with a rationale) or edit."""

    model_config = pydantic.ConfigDict(extra="forbid")

    decision: Literal["approve", "reject", "edit"]
    rationale: str | None = pydantic.Field(default=None, max_length=4096)


class OverrideRequest(pydantic.BaseModel):
    """A break-glass override: the Approval is Overridden, with why."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = pydantic.Field(min_length=1, max_length=4096)
    decision: Literal["approve"] = "approve"
    grant_by: str | None = pydantic.Field(default=None, alias="grantBy", max_length=253)


async def decide(request: web.Request) -> web.StreamResponse:
    decision = await _model(request, DecideRequest)
    rationale = decision.rationale.strip() if decision.rationale and decision.rationale.strip() else None
    if decision.decision == "reject" and rationale is None:
        raise ApiError(
            422,
            "Invalid",
            "rationale: required to reject: say why, for the requester and the audit trail",
            {"field": "rationale"},
        )
    return _json(await _approval_status(request, decide_body(decision.decision, rationale)))


async def override(request: web.Request) -> web.StreamResponse:
    given = await _model(request, OverrideRequest)
    if not given.reason.strip():
        raise ApiError(422, "Invalid", "reason: must say why the override is needed", {"field": "reason"})
    return _json(
        await _approval_status(
            request, {"status": {"phase": "Overridden", "override": {"reason": given.reason}}}
        )
    )


async def _approval_status(request: web.Request, patch: Mapping[str, Any]) -> Any:
    namespace = _segment(request.match_info["namespace"], "namespace")
    path = _object(v1alpha1.Approval, namespace, request.match_info["name"], "status")
    return await _call(request, "PATCH", path, payload=patch, content_type=MERGE_PATCH)


# --- evals and promotions -------------------------------------------------------------------------------


async def run_eval(request: web.Request) -> web.StreamResponse:
    """A run of the Eval on demand (trigger manual), as ``joch eval run`` starts it."""
    name = _segment(request.match_info["name"], "name")
    namespace = _segment(request.query.get("namespace") or "", "query namespace")
    stored = await _call(request, "GET", _object(Eval, namespace, name))
    try:
        evaluation = Eval.model_validate(stored)
    except pydantic.ValidationError as exc:
        raise ApiError(
            422, "Invalid", f"Eval {namespace}/{name} is not valid: {exc.errors()[0]['msg']}"
        ) from None
    run = eval_plan.run_name(name, "m" + secrets.token_hex(3))
    document = eval_plan.run_execution(
        evaluation, name=run, trigger="manual", uid=str((stored.get("metadata") or {}).get("uid") or "")
    )
    created = await _call(request, "POST", _collection(Execution, namespace), payload=document)
    return _json(
        {"execution": run, "namespace": namespace, "agent": evaluation.spec.target.name, "object": created},
        201,
    )


class PromoteRequest(pydantic.BaseModel):
    """Promote an Agent: create or update its Deployment; admission's promotion gates decide."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str = pydantic.Field(min_length=1, max_length=63)
    deployment: str = pydantic.Field(min_length=1, max_length=253)
    agent: str = pydantic.Field(min_length=1, max_length=253)
    environment: str | None = pydantic.Field(default=None, max_length=253)
    replicas: int | None = pydantic.Field(default=None, ge=0, le=10000)
    requires_eval: str | None = pydantic.Field(default=None, alias="requiresEval", max_length=253)
    requires_approval: bool | None = pydantic.Field(default=None, alias="requiresApproval")


async def promote(request: web.Request) -> web.StreamResponse:
    given = await _model(request, PromoteRequest)
    namespace = _segment(given.namespace, "namespace")
    spec: dict[str, Any] = {"agentRef": {"name": given.agent}}
    if given.environment:
        spec["environmentRef"] = {"name": given.environment}
    if given.replicas is not None:
        spec["replicas"] = given.replicas
    promotion = {
        k: v
        for k, v in (("requiresEval", given.requires_eval), ("requiresApproval", given.requires_approval))
        if v
    }
    if promotion:
        spec["promotion"] = promotion
    crd = Deployment.crd
    document = {
        "apiVersion": crd.api_version,
        "kind": crd.kind,
        "metadata": {"name": _segment(given.deployment, "deployment"), "namespace": namespace},
        "spec": spec,
    }
    try:
        stored = await _call(
            request,
            "PATCH",
            _object(Deployment, namespace, given.deployment),
            query={"fieldManager": FIELD_MANAGER},
            payload=document,
            content_type=rest.APPLY_PATCH,
        )
    except ApiError as exc:
        if exc.status in {400, 403, 422} and "denied the request" in exc.message:
            raise ApiError(exc.status, "PromotionFailed", exc.message, exc.details) from None
        raise
    return _json(stored)


# --- watch ----------------------------------------------------------------------------------------------


async def watch(request: web.Request) -> web.StreamResponse:
    """A change stream of one kind (``kind``, optionally ``namespace`` and ``selector``) from
    ``resourceVersion`` (empty: the current state first, as ADDED events). An expired position answers
    410 (code Expired): list again and watch from the list's resourceVersion."""
    model = _kind(request.query.get("kind") or "")
    namespace = request.query.get("namespace")
    if namespace:
        namespace = _segment(namespace, "namespace")
    query = {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(_int(request, "timeoutSeconds", WATCH_TIMEOUT, 1, MAX_WATCH_TIMEOUT)),
    }
    if request.query.get("resourceVersion"):
        query["resourceVersion"] = request.query["resourceVersion"]
    if request.query.get("selector"):
        query["labelSelector"] = request.query["selector"]
    # The first event decides the answer's status: an expired position is a 410, not a 200 stream.
    return await _relay(request, _collection(model, namespace), query)


async def _start_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    return response


async def _line(response: web.StreamResponse, value: Any) -> None:
    await response.write(json.dumps(value, separators=(",", ":")).encode() + b"\n")


async def _relay(
    request: web.Request,
    path: str,
    query: Mapping[str, str],
    *,
    until: Callable[[Mapping[str, Any]], bool] = lambda _: False,
    response: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """kube-apiserver's watch of ``path``, as the caller, passed on one JSON object a line until
    ``until(event)`` or the watch ends. Without a ``response`` already started, one is started at the
    first event, so a refusal before it (an expired position: 410) answers with its status; after it, an
    error ends the stream with an ``ERROR`` line."""
    try:
        async with _kube(request).stream(
            path,
            query=query,
            accept="application/json",
            read_timeout=MAX_WATCH_TIMEOUT + 30,
            max_line=MAX_WATCH_LINE,
        ) as lines:
            async for event in kinds.watch_events(lines):
                if event.get("type") == "ERROR":
                    failed = kinds.watch_error(event)
                    if response is None:
                        raise failed
                    await _line(
                        response, {"type": "ERROR", **body(failed.code, failed.message, failed.details)}
                    )
                    break
                response = response or await _start_stream(request)
                await _line(response, event)
                if until(event):
                    break
    except errors.KubeError as exc:
        failed = from_kube(exc)
        if response is None:
            raise failed from None
        await _line(response, {"type": "ERROR", **body(failed.code, failed.message, failed.details)})
    response = response or await _start_stream(request)
    await response.write_eof()
    return response


# --- the rest -------------------------------------------------------------------------------------------


async def openapi_document(request: web.Request) -> web.StreamResponse:
    from joch.apiserver import openapi  # noqa: PLC0415 - the document imports the routes

    return _json(openapi.document())


async def healthz(request: web.Request) -> web.StreamResponse:
    return _json({"status": "ok"})


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """One route, and what the OpenAPI document says of it."""

    method: str
    path: str
    handler: Handler
    summary: str
    request: type[pydantic.BaseModel] | Literal["documents"] | None = None
    response: str = "application/json"
    auth: bool = True
    query: tuple[str, ...] = ()
    statuses: tuple[int, ...] = (200,)


NS: Final = "/v1/namespaces/{namespace}"

ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "POST",
        "/v1/resources/apply",
        apply,
        "Apply documents all-or-nothing (dry run of each, then write)",
        "documents",
        query=("namespace", "allowPending", "fieldManager", "force"),
    ),
    Route(
        "POST",
        "/v1/resources/validate",
        validate,
        "Judge and server-side dry-run documents; write nothing",
        "documents",
        query=("namespace", "allowPending"),
    ),
    Route(
        "POST",
        "/v1/resources/diff",
        diff,
        "What applying documents would change in the stored objects",
        "documents",
        query=("namespace", "allowPending"),
    ),
    Route(
        "GET",
        "/v1/resources",
        watch,
        "Watch one kind: a resumable stream of changes",
        response="application/x-ndjson",
        query=("kind", "namespace", "selector", "resourceVersion", "timeoutSeconds"),
    ),
    Route(
        "GET",
        f"{NS}/agents/{{name}}/agbom",
        agbom,
        "The Agent's AgBOM (CycloneDX JSON)",
        response="application/vnd.cyclonedx+json",
        query=("format", "generation"),
    ),
    Route(
        "GET", f"{NS}/executions", list_executions, "List Executions", query=("limit", "continue", "selector")
    ),
    Route(
        "POST",
        f"{NS}/executions",
        create_execution,
        "Create a run (an Execution, or agentRef + input)",
        RunRequest,
        statuses=(201,),
    ),
    Route(
        "POST", f"{NS}/executions/{{name}}/cancel", cancel_execution, "Ask a run to stop", statuses=(200, 202)
    ),
    Route(
        "GET",
        f"{NS}/executions/{{name}}/events",
        execution_events,
        "The run's changes until it ends",
        response="application/x-ndjson",
        query=("timeoutSeconds",),
    ),
    Route(
        "POST",
        f"{NS}/approvals/{{name}}/decide",
        decide,
        "Decide an Approval (the decider is who calls)",
        DecideRequest,
    ),
    Route(
        "POST",
        f"{NS}/approvals/{{name}}/override",
        override,
        "Break-glass override of an Approval",
        OverrideRequest,
    ),
    Route(
        "GET",
        f"{NS}/{{kind}}",
        list_or_get,
        "List objects of a kind (limit/continue paging)",
        query=("limit", "continue", "selector"),
    ),
    Route("GET", f"{NS}/{{kind}}/{{name}}", list_or_get, "Get one object"),
    Route(
        "POST",
        "/v1/eval/{name}/run",
        run_eval,
        "Run an Eval now (trigger manual)",
        query=("namespace",),
        statuses=(201,),
    ),
    Route(
        "POST",
        "/v1/promote",
        promote,
        "Promote an Agent: create or update its Deployment through the promotion gates",
        PromoteRequest,
    ),
    Route("GET", "/openapi.json", openapi_document, "This API's OpenAPI 3.1 document", auth=False),
    Route("GET", "/healthz", healthz, "Liveness", auth=False),
)


def build_app(context: ApiContext) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=bodies.MAX_BODY_BYTES + 1)
    app[_CONTEXT] = context
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app
