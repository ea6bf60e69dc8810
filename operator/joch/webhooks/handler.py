"""One admission call, transport-free: request body bytes in, (HTTP status, JSON body) out.

:class:`AdmissionEndpoint` is what the aiohttp server (server.py), the unit tests and the property tests
call. It never raises: a body that is not an AdmissionReview gets HTTP 400 with a JSON error; a
well-formed review always gets HTTP 200 with an AdmissionReview, allowed or not. An unexpected exception
inside the checks denies the request (fail closed) with a message saying so, and is logged with its
traceback: a bug must never admit an object nor take the webhook down.

The World each call judges against is built from the operator's ``Lookup`` (the controller's store),
read synchronously on the event loop, so one call sees one consistent snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from joch import audit, metrics
from joch.api import v1alpha1
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.domain.admission import (
    WATCHED_KIND_NAMES,
    Admission,
    AgentIndex,
    Request,
    UserInfo,
    World,
    promotion,
)
from joch.domain.admission import approvals as approval_checks
from joch.domain.admission.verdict import Verdict
from joch.domain.compilation import Lookup
from joch.webhooks import governance, reviews
from joch.webhooks.reviews import ReviewRequest

__all__ = ["Action", "AdmissionEndpoint", "StoreAgents", "agent_index_of"]

logger = logging.getLogger("joch.webhooks")

Action = Literal["validate", "mutate"]
JSON: Final = "application/json"


class StoreAgents:
    """:class:`AgentIndex` over a store that lists Agents by name (``agent_names`` / ``agent``)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def agents(self, namespace: str | None = None) -> Sequence[Agent]:
        namespaces = [namespace] if namespace is not None else self.store.namespaces_with_agents()
        out: list[Agent] = []
        for ns in namespaces:
            for name in self.store.agent_names(ns):
                agent = self.store.get(Agent, ns, name)
                if agent is not None:
                    out.append(agent)
        return out


def agent_index_of(lookup: Any) -> AgentIndex | None:
    """How to list Agents from ``lookup``: its own ``agents()``, or the controller store's methods."""
    if callable(getattr(lookup, "agents", None)):
        return lookup  # type: ignore[no-any-return]
    if all(callable(getattr(lookup, m, None)) for m in ("agent_names", "namespaces_with_agents", "get")):
        return StoreAgents(lookup)
    return None


class Authorizer(Protocol):
    """Which of ``verbs`` the API server says ``user`` holds on ``resource``/``name`` of ``group`` in
    ``namespace`` (default: Approvals)."""

    def __call__(
        self,
        user: UserInfo,
        namespace: str,
        name: str,
        verbs: tuple[str, ...],
        *,
        group: str = ...,
        resource: str = ...,
    ) -> Awaitable[frozenset[str]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Needed:
    """Verbs a check needs to know the user holds, on which object."""

    verbs: tuple[str, ...]
    name: str
    group: str = ""
    resource: str = ""


"""(user, namespace, name, verbs) -> the verbs the API server says the user holds on that Approval."""
DenialHook = Callable[[Request, World], Awaitable[str | None]]
"""Called after a (non dry-run) denial; a sentence to add to the message, or None."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def approval_verbs_needed(request: Request) -> tuple[str, ...]:
    """The verbs the checks of ``request`` need to know the user holds: on a write of an Approval's status
    that overrides it, ``override``; that acknowledges an override, ``acknowledge``."""
    if request.kind != "Approval" or request.sub_resource != "status" or request.operation != "UPDATE":
        return ()
    new = request.object.get("status") if isinstance(request.object, Mapping) else None
    old = request.old_object.get("status") if isinstance(request.old_object, Mapping) else None
    new = new if isinstance(new, Mapping) else {}
    old = old if isinstance(old, Mapping) else {}
    if new.get("override") is not None and old.get("override") is None:
        return (approval_checks.OVERRIDE_VERB,)
    if new.get("review") != old.get("review") and old.get("override") is not None:
        return (approval_checks.ACKNOWLEDGE_VERB,)
    return ()


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": message}


class AdmissionEndpoint:
    """Serves ``validate`` and ``mutate`` calls for every joch kind."""

    def __init__(
        self,
        admission: Admission,
        lookup: Lookup | None,
        *,
        known_kinds: frozenset[str] = WATCHED_KIND_NAMES,
        agent_index: AgentIndex | None = None,
        is_ready: Callable[[], bool] | None = None,
        authorizer: Authorizer | None = None,
        on_denied: DenialHook | None = None,
        clock: Callable[[], str] = _now,
        governance_log: audit.AuditLog = audit.NULL,
    ) -> None:
        self.governance = governance_log
        """The governance audit log: denials, Approval decisions and overrides, promotions (governance.py)."""
        self.authorizer = authorizer
        self.on_denied = on_denied
        self.clock = clock
        self.admission = admission
        self.lookup = lookup
        self.known_kinds = known_kinds
        self.agent_index = agent_index if agent_index is not None else agent_index_of(lookup)
        self.is_ready = is_ready
        self.counts: dict[str, int] = {}

    def world(self) -> World:
        return World(self.lookup, known_kinds=self.known_kinds, agent_index=self.agent_index)

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def handle(self, action: Action, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one call; see the module docstring. Never raises."""
        parsed = self._parse(body)
        if isinstance(parsed, tuple):
            return parsed
        return self._respond(action, parsed)

    async def handle_async(self, action: Action, body: bytes) -> tuple[int, dict[str, Any]]:
        """:meth:`handle`, first asking the API server what a check needs to know about the user (the
        :attr:`authorizer`: may they override or acknowledge this Approval?), then doing what a denial
        asks for (the :attr:`on_denied` hook: the Approval a blocked promotion waits for). Never raises."""
        parsed = self._parse(body)
        if not isinstance(parsed, tuple) and self.authorizer is not None:
            request = parsed["request"]
            needed = self._needed(request) if action == "validate" else None
            if needed is not None:
                kind = {"group": needed.group, "resource": needed.resource} if needed.resource else {}
                try:
                    grants = await self.authorizer(
                        request.user, request.namespace or "", needed.name, needed.verbs, **kind
                    )
                except Exception:  # fail closed: no grant is assumed
                    logger.exception("access review for %s failed", request.user.username)
                    grants = frozenset()
                parsed = ReviewRequest(**{**parsed, "request": dataclasses.replace(request, grants=grants)})
        if isinstance(parsed, tuple):
            return parsed
        status, payload = self._respond(action, parsed)
        request = parsed["request"]
        response = payload.get("response")
        if (
            self.on_denied is not None
            and action == "validate"
            and not request.dry_run
            and isinstance(response, dict)
            and response.get("allowed") is False
        ):
            try:
                note = await self.on_denied(request, self.world())
            except Exception:
                logger.exception("follow-up of the denial of %s/%s failed", request.kind, request.name)
                note = None
            if note:
                result = response.get("status") or {}
                message = str(result.get("message") or "")
                response["status"] = {**result, "message": f"{message}; {note}"}
        return status, payload

    def _needed(self, request: Request) -> Needed | None:
        """What the checks of ``request`` need to know the user may do: the override or acknowledge
        verb on an Approval, or the promote verb on the protected Environment a Deployment promotes to."""
        verbs = approval_verbs_needed(request)
        if verbs:
            return Needed(verbs, request.name or "")
        if (
            request.kind != "Deployment"
            or request.sub_resource
            or request.operation not in {"CREATE", "UPDATE"}
        ):
            return None
        new, old = promotion.written(request.object, request.old_object, request.namespace, request.operation)
        if new is None:
            return None
        if not promotion.promotes(new, old):
            return None
        protected = promotion.protected_environment(new, self.world(), self.admission.settings)
        if protected is None:
            return None
        crd = Environment.crd
        return Needed((promotion.PROMOTE_VERB,), protected, crd.group, crd.plural)

    def _parse(self, body: bytes) -> ReviewRequest | tuple[int, dict[str, Any]]:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            self._count("bad_request")
            return _error(400, f"the body is not JSON: {type(exc).__name__}: {str(exc)[:200]}")
        try:
            review = reviews.parse_review(data)
        except reviews.BadReview as exc:
            self._count("bad_request")
            return _error(400, f"not an AdmissionReview: {exc}")
        request = dataclasses.replace(review["request"], now=self.clock())
        return ReviewRequest(**{**review, "request": request})

    def _respond(self, action: Action, review: ReviewRequest) -> tuple[int, dict[str, Any]]:
        start = time.perf_counter()
        try:
            return 200, dict(self._answer(action, review, start))
        except Exception as exc:  # fail closed, keep serving
            self._count("internal_error")
            request = review["request"]
            logger.exception("admission %s of %s/%s failed", action, request.kind, request.name)
            return 200, dict(
                reviews.denied(
                    review["uid"],
                    message=f"{request.kind}/{request.name or '(unnamed)'}: (object): joch admission failed "
                    f"internally ({type(exc).__name__}); the request is rejected (failurePolicy Fail)",
                    code=500,
                    reason="InternalError",
                )
            )

    def _govern(self, review: reviews.ReviewRequest, verdict: Verdict) -> None:
        """Tell the governance log; a failure there never changes the answer."""
        try:
            governance.record(
                self.governance, review["request"], verdict, group=review["group"], version=review["version"]
            )
        except Exception:
            logger.exception("governance record of %s failed", verdict.subject)

    def _answer(self, action: Action, review: reviews.ReviewRequest, start: float) -> reviews.Response:
        uid = review["uid"]
        request = review["request"]
        webhook = "mutating" if action == "mutate" else "validating"

        def record(allowed: bool, reason: str | None = None) -> None:
            metrics.record_admission(
                webhook=webhook,
                kind=request.kind,
                operation=request.operation,
                seconds=time.perf_counter() - start,
                allowed=allowed,
                reason=reason,
            )

        model = v1alpha1.kind_named(request.kind)
        if model is None or model.crd.group != review["group"]:
            self._count("unknown_kind")
            what = f"{review['group']}/{review['version']} {request.kind}"
            return reviews.denied(
                uid, message=f"joch does not serve {what}"[:512], code=400, reason="BadRequest"
            )
        if self.is_ready is not None and not self.is_ready():
            self._count("not_ready")
            return reviews.denied(
                uid,
                message=f"{request.kind}/{request.name or '(unnamed)'}: joch admission is starting (the "
                "operator has not loaded the cluster state yet); retry in a few seconds",
                code=503,
                reason="ServiceUnavailable",
            )
        world = self.world()
        if action == "mutate":
            mutation = self.admission.mutate(request, world)
            self._count("mutated" if mutation else "unmutated")
            record(True)
            return reviews.allowed(uid, patch=list(mutation.patch))
        verdict = self.admission.validate(request, world)
        self._govern(review, verdict)
        warnings = verdict.warning_messages()
        reasons = {finding.reason for finding in verdict.errors}
        if request.kind == "Agent":
            outcome = "deny" if "PolicyDenied" in reasons else "allow"
            metrics.record_policy_decision(outcome, source="preflight")
        if verdict.allowed:
            self._count("allowed")
            record(True)
            return reviews.allowed(uid, warnings=warnings)
        self._count("denied")
        record(False, verdict.errors[0].reason if verdict.errors else verdict.status_reason)
        message = verdict.message()
        logger.info(
            "denied %s%s: %s", "(dry run) " if request.dry_run else "", verdict.subject, message[:512]
        )
        return reviews.denied(
            uid, message=message, code=verdict.code, reason=verdict.status_reason, warnings=warnings
        )


def describe(counts: Mapping[str, int]) -> str:
    """``allowed=3, denied=1`` for logs."""
    return ", ".join(f"{key}={value}" for key, value in sorted(counts.items()))
