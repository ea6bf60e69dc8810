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

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

from joch import metrics
from joch.api import v1alpha1
from joch.api.v1alpha1.agent import Agent
from joch.domain.admission import WATCHED_KIND_NAMES, Admission, AgentIndex, World
from joch.domain.compilation import Lookup
from joch.webhooks import reviews

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
    ) -> None:
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
