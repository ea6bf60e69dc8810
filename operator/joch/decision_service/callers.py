"""Who may ask for decisions: the data-plane identities of ``decision_callers``, checked by TokenReview.

With ``OperatorSettings.decision_callers`` non-empty (``--decision-callers`` / ``$JOCH_DECISION_CALLERS``),
``joch operator`` puts a :class:`CallerGate` in front of ``POST /v1/policy/evaluate``
(joch.decision_service.endpoint). For each request it:

1. refuses client-sent ``Impersonate-*`` headers (400 ``ImpersonationRefused``): a caller is who its token
   says, never someone it names;
2. takes the ``Authorization: Bearer <token>`` header (missing or malformed: 401 ``Unauthorized``);
3. asks the API server who the token is: ``POST /apis/authentication.k8s.io/v1/tokenreviews`` through the
   operator's own kube client (RBAC: ``create`` on ``tokenreviews``, joch.manifests.rbac). Not
   authenticated: 401; the review failing (API server unreachable, throttling, 403 for the operator):
   503 ``Unavailable`` with Retry-After (fail closed: no decision without knowing the caller);
4. checks the user name against the list: not in it, 403 ``Forbidden`` naming the user and the setting
   (a gate built with ``allowed=None``, the gRPC server's without ``decision_callers``, takes any
   identity the API server authenticates).

Verdicts (authenticated or not, and the user name) are cached per SHA-256 of the token, for at most
``ttl`` seconds (60) and never past the token's own ``exp`` when it is a JWT (read without verifying,
only to shorten the cache life), so a revoked ServiceAccount token stops working within a minute.
Concurrent requests with the same uncached token share one review. Failed reviews are not cached.

:func:`token_reviewer` is the review through a :class:`joch.kube.client.Kube`: one attempt, not retried
and outside the client's write budget (a flood of tokens must not slow the controllers' writes); at most
``concurrency`` reviews in flight.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from joch.kube import bearer, client, errors

__all__ = [
    "MAX_TOKEN_BYTES",
    "REVIEW_PATH",
    "CallerGate",
    "Refused",
    "Review",
    "Reviewer",
    "token_reviewer",
]

logger = logging.getLogger("joch.decision_service")

REVIEW_PATH: Final = "/apis/authentication.k8s.io/v1/tokenreviews"
MAX_TOKEN_BYTES: Final = bearer.MAX_TOKEN_BYTES
"""A bearer token longer than this is refused before it is reviewed."""
SETTING: Final = "decision_callers"
_SETTING_NAMES: Final = "decision_callers (--decision-callers, $JOCH_DECISION_CALLERS)"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="joch-decisions"'}


@dataclasses.dataclass(frozen=True, slots=True)
class Review:
    """What the API server said about a token."""

    authenticated: bool
    username: str = ""


Reviewer = Callable[[str], Awaitable[Review]]
"""token -> its Review; raises :class:`joch.kube.errors.KubeError` when the API server cannot say."""


class Refused(Exception):
    """The request may not be answered: the error response's status, code, message, details, headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers


def token_reviewer(kube: client.Kube, *, concurrency: int = 8) -> Reviewer:
    """TokenReviews through ``kube`` (see the module docstring)."""
    gate = asyncio.Semaphore(concurrency)

    async def review(token: str) -> Review:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        async with gate:
            answer: Any = await kube.attempt("POST", REVIEW_PATH, body=body)
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise errors.KubeError("the TokenReview answer has no status")
        user = status.get("user") or {}
        username = user.get("username") if isinstance(user, dict) else None
        if status.get("authenticated") is True and isinstance(username, str) and username:
            return Review(authenticated=True, username=username)
        if status.get("error"):
            logger.debug("TokenReview: not authenticated: %s", status["error"])
        return Review(authenticated=False)

    return review


def _bearer(headers: Mapping[str, str]) -> str:
    try:
        return bearer.bearer_token(headers)
    except bearer.BearerRefused as exc:
        challenge = _CHALLENGE if exc.status == 401 else None
        raise Refused(exc.status, exc.code, exc.message, exc.details or None, headers=challenge) from None


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (unverified: used only to cache a verdict for less long)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class CallerGate:
    """``await gate(headers)``: the caller's user name, or :class:`Refused` (module docstring)."""

    def __init__(
        self,
        allowed: Sequence[str] | None,
        reviewer: Reviewer,
        *,
        ttl: float = 60.0,
        capacity: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if allowed is not None and not allowed:
            raise ValueError("a CallerGate needs at least one allowed user (None: any authenticated one)")
        self.allowed = frozenset(allowed) if allowed is not None else None
        """The users who may ask; None: any identity the API server authenticates (the gRPC server
        without ``decision_callers``)."""
        self.reviewer = reviewer
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._cache: collections.OrderedDict[str, tuple[float, Review]] = collections.OrderedDict()
        self._pending: dict[str, asyncio.Future[Review]] = {}
        self.reviews = 0
        """TokenReviews sent (tests and benchmarks read it)."""

    async def __call__(self, headers: Mapping[str, str]) -> str:
        token = _bearer(headers)
        review = await self._review(token)
        if not review.authenticated:
            raise Refused(
                401, "Unauthorized", "the API server does not accept the bearer token", headers=_CHALLENGE
            )
        if self.allowed is not None and review.username not in self.allowed:
            logger.info("decision request refused: %s is not in %s", review.username, SETTING)
            raise Refused(
                403,
                "Forbidden",
                f"{review.username} may not ask for decisions: it is not in {_SETTING_NAMES}",
                {"user": review.username, "setting": SETTING},
            )
        return review.username

    async def _review(self, token: str) -> Review:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Review] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.reviews += 1
            review = await self.reviewer(token)
        except BaseException as exc:
            refused = Refused(
                503,
                "Unavailable",
                "cannot check the caller's token with the API server; retry shortly",
                headers={"Retry-After": "1"},
            )
            future.set_exception(refused)  # the requests waiting on this review: fail closed
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            if not isinstance(exc, errors.KubeError):
                raise
            logger.warning("TokenReview failed; refusing decision requests meanwhile: %s", exc)
            raise refused from exc
        finally:
            self._pending.pop(key, None)
        future.set_result(review)
        expires = now + self.ttl
        exp = _jwt_expiry(token)
        if exp is not None:
            expires = min(expires, exp)
        if expires > now:
            self._cache[key] = (expires, review)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return review
