"""Who may call the gRPC server: a bearer token, reviewed by the API server, of an allowed subject.

Every call (except the health service, which kubelet probes call without credentials) carries
``authorization: Bearer <token>`` metadata. :class:`Authenticator` asks the API server who the token
belongs to (a TokenReview, joch.kube.tokens) and caches the answer briefly (``ttl`` seconds for an
accepted token, ``negative_ttl`` for a refused one; concurrent calls with the same token share one
review). Then the subject must be allowed:

- ``allowed`` empty: any authenticated identity;
- otherwise an entry must name the caller: its user name (a service account is
  ``system:serviceaccount:NAMESPACE:NAME``), or ``group:GROUP`` for one of its groups (every service
  account of a namespace: ``group:system:serviceaccounts:NAMESPACE``).

No token, a malformed header or a token the API server refuses -> :class:`Rejected` UNAUTHENTICATED; an
identity that is not allowed -> PERMISSION_DENIED; the review failing -> UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import grpc

from joch.kube import errors
from joch.kube.tokens import Identity

__all__ = ["Authenticator", "Rejected", "Review"]

logger = logging.getLogger("joch.grpc")

Review = Callable[[str], Awaitable[Identity | None]]
"""token -> the identity, or None when the API server refuses it (joch.kube.tokens.review)."""

MAX_TOKEN: Final = 16 * 1024
"""Longest token accepted (a service-account JWT is about 1 KiB)."""


class Rejected(Exception):
    """The call may not proceed: the gRPC status and a sentence."""

    def __init__(self, code: grpc.StatusCode, message: str, catalog: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.catalog = catalog


class Authenticator:
    """Bearer token -> identity (cached TokenReviews) -> allowed or not (module docstring)."""

    def __init__(
        self,
        review: Review,
        *,
        allowed: Sequence[str] = (),
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.review = review
        self.users = frozenset(a for a in allowed if not a.startswith("group:"))
        self.groups = frozenset(a.removeprefix("group:") for a in allowed if a.startswith("group:"))
        self.anyone = not allowed
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.clock = clock
        self._cache: collections.OrderedDict[str, tuple[float, Identity | None]] = collections.OrderedDict()
        self._pending: dict[str, asyncio.Future[Identity | None]] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        """reviews sent, cache hits."""

    @staticmethod
    def token_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The bearer token of the call's metadata; raises Rejected (UNAUTHENTICATED) without one."""
        for key, value in metadata or ():
            if key.lower() != "authorization":
                continue
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Rejected(
                    grpc.StatusCode.UNAUTHENTICATED, "authorization must be 'Bearer <token>'", "Unauthorized"
                )
            if len(token) > MAX_TOKEN:
                raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "the token is too long", "Unauthorized")
            return token
        raise Rejected(
            grpc.StatusCode.UNAUTHENTICATED,
            "no credentials: send 'authorization: Bearer <token>' metadata",
            "Unauthorized",
        )

    async def check(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The caller's identity if it may call; raises Rejected otherwise."""
        identity = await self.identify(self.token_of(metadata))
        if identity is None:
            raise Rejected(grpc.StatusCode.UNAUTHENTICATED, "the token is not valid", "Unauthorized")
        if not self.allows(identity):
            raise Rejected(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity.username} may not call this server (see --grpc-allowed-subject)",
                "Forbidden",
            )
        return identity

    def allows(self, identity: Identity) -> bool:
        return (
            self.anyone
            or identity.username in self.users
            or any(group in self.groups for group in identity.groups)
        )

    async def identify(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self.counts["hits"] += 1
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            self.counts["hits"] += 1
            return await asyncio.shield(pending)
        future: asyncio.Future[Identity | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.counts["reviews"] += 1
            identity = await self.review(token)
        except errors.KubeError as exc:
            logger.warning("TokenReview failed: %s", exc)
            rejected = Rejected(grpc.StatusCode.UNAVAILABLE, f"cannot review the token: {exc}", "Unavailable")
            future.set_exception(rejected)
            future.exception()  # marked as retrieved: the waiters re-raise it
            raise rejected from None
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(identity)
            self._cache[key] = (now + (self.ttl if identity is not None else self.negative_ttl), identity)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return identity
        finally:
            self._pending.pop(key, None)
