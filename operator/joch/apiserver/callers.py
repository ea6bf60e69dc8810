"""Who calls, and a client that calls kube-apiserver as them.

Every /v1 request carries the caller's own bearer token (an OIDC ID token or a service-account token).
:func:`token_of` takes it from the ``Authorization`` header; :class:`Callers` hands out clients that send
that token and no other credential (no client certificate, no operator token), cached per token so a
caller's connections are reused. kube-apiserver then authenticates the caller, RBAC from the team roles
authorizes them, its audit log names them, and the admission webhooks see them as the requesting user.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import threading
from collections.abc import Mapping

from kubernetes import client as k8s

from joch.apiserver.errors import ApiError
from joch.kube import bearer, client
from joch.kube.rest import Cluster

__all__ = ["Callers", "token_of"]


def token_of(headers: Mapping[str, str]) -> str:
    """The caller's bearer token (joch.kube.bearer): impersonation headers answer 400, a missing or
    malformed ``Authorization`` header 401."""
    try:
        return bearer.bearer_token(headers)
    except bearer.BearerRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.details) from None


class Callers:
    """Clients for callers' tokens, from the operator's configuration with its credentials removed.

    At most ``capacity`` tokens keep clients; the least recently used is closed first."""

    def __init__(
        self, base: k8s.Configuration, *, capacity: int = 256, limits: client.Limits | None = None
    ) -> None:
        self.base = base
        self.capacity = capacity
        self.limits = limits or client.Limits(concurrency=8, max_retries=1)
        self._clients: collections.OrderedDict[str, tuple[client.Kube, Cluster]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def configuration(self, token: str) -> k8s.Configuration:
        """The operator's server and trust, the caller's token, nothing else."""
        configuration = copy.deepcopy(self.base)
        configuration.cert_file = None
        configuration.key_file = None
        configuration.username = None
        configuration.password = None
        configuration.refresh_api_key_hook = None
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.api_key_prefix = {}
        return configuration

    def _pair(self, token: str) -> tuple[client.Kube, Cluster]:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
        configuration = self.configuration(token)
        pair = (
            client.Kube(client.new_api_client(configuration, pool_size=4), self.limits),
            Cluster(client.new_api_client(configuration, pool_size=8)),  # a batch's dry runs, 8 at once
        )
        evicted: list[tuple[client.Kube, Cluster]] = []
        with self._lock:
            self._clients[key] = pair
            while len(self._clients) > self.capacity:
                evicted.append(self._clients.popitem(last=False)[1])
        for kube, cluster in evicted:
            kube.close(wait=False)
            cluster.api.close()
        return pair

    def kube(self, token: str) -> client.Kube:
        """The async client of ``token`` (for reads, writes and watches)."""
        return self._pair(token)[0]

    def cluster(self, token: str) -> Cluster:
        """The synchronous client of ``token`` (for the all-or-nothing batch, in a thread)."""
        return self._pair(token)[1]

    async def aclose(self) -> None:
        """Close every cached client's pools on the running loop."""
        with self._lock:
            pairs = list(self._clients.values())
            self._clients.clear()
        for kube, cluster in pairs:
            await kube.aclose()
            kube.close(wait=False)
            cluster.api.close()
