"""The operator's API client: the official (synchronous) kubernetes client, used from asyncio through a
bounded thread pool, with a write rate limit and 429/5xx retries.

    configuration = load_configuration("/path/to/kubeconfig")   # or in-cluster, or ~/.kube/config
    kube = Kube(new_api_client(configuration), Limits(concurrency=16, writes_per_second=200))
    body = await kube.request("GET", "/api/v1/namespaces/default/configmaps/x")
    kube.close()

Every request runs in one of ``Limits.concurrency`` threads (so at most that many are in flight; the
rest wait their turn in the pool's queue). Writes (any verb but GET) first take a token from a token
bucket (``writes_per_second``, ``write_burst``) so a fan-out does not storm the API server. Failures
are translated into :mod:`joch.kube.errors`; a 429 is retried after its Retry-After (capped at
``max_retry_after``), 5xx and connection failures with exponential backoff, at most ``max_retries``
times, then the error is raised.

Bodies are plain dicts (JSON in, JSON out) sent over the client's own connection pool: the client's
model layer is bypassed (see :meth:`Kube.send`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, Final

import urllib3
from kubernetes import client, config

from joch import __version__
from joch.kube import errors

__all__ = [
    "JSON_MERGE_PATCH",
    "Kube",
    "Limits",
    "TokenBucket",
    "load_configuration",
    "new_api_client",
]

logger = logging.getLogger(__name__)

JSON_MERGE_PATCH: Final = "application/merge-patch+json"
USER_AGENT: Final = f"joch-operator/{__version__}"
_IN_CLUSTER_ENV: Final = "KUBERNETES_SERVICE_HOST"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """How hard the operator may push the API server."""

    concurrency: int = 16
    """Requests in flight at once (the thread pool size and the HTTP connection pool size)."""
    writes_per_second: float = 200.0
    """Sustained rate of writes (create, update, patch, delete) across the whole operator."""
    write_burst: int = 50
    """Writes allowed at once above the sustained rate (the token bucket's size)."""
    max_retries: int = 6
    """Retries of one request after 429, 5xx or a connection failure."""
    max_retry_after: float = 30.0
    """Upper bound on one wait, whatever Retry-After says."""
    request_timeout: float = 30.0
    """Seconds before one request is abandoned (and counted as a connection failure)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.writes_per_second <= 0:
            raise ValueError(f"writes_per_second must be positive, not {self.writes_per_second}")
        if self.write_burst < 1:
            raise ValueError(f"write_burst must be at least 1, not {self.write_burst}")


class TokenBucket:
    """A token bucket with reservations: :meth:`reserve` takes a token now and says how long to wait
    before using it (tokens may go negative, queueing callers fairly in arrival order)."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; the seconds to wait before acting on it (0 when one was available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else float(-self._tokens / self.rate)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


def load_configuration(kubeconfig: str | None = None, *, context: str | None = None) -> client.Configuration:
    """Client configuration from ``kubeconfig``; without one: in-cluster when running in a pod
    ($KUBERNETES_SERVICE_HOST), else $KUBECONFIG / ~/.kube/config. Raises :class:`errors.ConfigError`."""
    configuration = client.Configuration()
    try:
        if kubeconfig is None and os.environ.get(_IN_CLUSTER_ENV):
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (config.ConfigException, OSError) as exc:
        raise errors.ConfigError(
            f"cannot load the client configuration: {errors.truncate(str(exc))}"
        ) from exc
    return configuration


def new_api_client(configuration: client.Configuration, *, pool_size: int = 16) -> client.ApiClient:
    """An ApiClient whose HTTP connection pool holds ``pool_size`` connections."""
    configuration.connection_pool_maxsize = max(pool_size, 1)
    return client.ApiClient(configuration)


class Kube:
    """Async access to the API server: ``await kube.request(method, path, body=..., query=...)``."""

    def __init__(self, api: client.ApiClient, limits: Limits | None = None) -> None:
        self.api = api
        self.limits = limits or Limits()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.limits.concurrency, thread_name_prefix="joch-kube"
        )
        self._bucket = TokenBucket(self.limits.writes_per_second, self.limits.write_burst)
        self.counts: collections.Counter[str] = collections.Counter()
        """Requests sent, by verb, plus ``retried`` and ``throttled`` (429 answers)."""

    @property
    def configuration(self) -> client.Configuration:
        return self.api.configuration

    def close(self, *, wait: bool = True) -> None:
        """Stop the threads (``wait``: for requests in flight to finish) and close the connections."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
        if wait:
            self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Any:
        """Send one request (retrying as the module docstring says); the decoded JSON answer."""
        loop = asyncio.get_running_loop()
        write = method != "GET"
        call = functools.partial(
            self.send, method, path, body=body, query=query, content_type=content_type, accept=accept
        )
        attempt = 0
        while True:
            if write:
                await self._bucket.acquire()
            try:
                return await loop.run_in_executor(self._executor, call)
            except errors.TooManyRequests as exc:
                self.counts["throttled"] += 1
                if attempt >= self.limits.max_retries:
                    raise
                delay = min(exc.retry_after, self.limits.max_retry_after)
                logger.info("API server throttles (429): %s %s again in %.1fs", method, path, delay)
            except (errors.ServerError, errors.Unavailable) as exc:
                if attempt >= self.limits.max_retries:
                    raise
                delay = min(0.2 * 2**attempt, 5.0)
                logger.info("%s; retrying in %.1fs", exc, delay)
            attempt += 1
            self.counts["retried"] += 1
            await asyncio.sleep(delay)

    def headers(self, accept: str = "application/json") -> dict[str, str]:
        """Request headers: Accept, User-Agent and the configuration's current credentials."""
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        for setting in self.api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def _url(self, path: str, query: Mapping[str, str | int] | None) -> str:
        url = str(self.api.configuration.host) + path
        if query:
            url += "?" + urllib.parse.urlencode([(k, str(v)) for k, v in query.items()])
        return url

    def open_stream(
        self, path: str, *, query: Mapping[str, str | int], accept: str, read_timeout: float
    ) -> urllib3.BaseHTTPResponse:
        """A streaming GET (a watch), synchronously: the open response, whose body the caller reads
        line by line and closes. Errors as :meth:`send` raises them."""
        self.counts["WATCH"] += 1
        url = self._url(path, query)
        try:
            response: urllib3.BaseHTTPResponse = self.api.rest_client.pool_manager.request(
                "GET",
                url,
                headers=self.headers(accept),
                timeout=urllib3.Timeout(connect=self.limits.request_timeout, read=read_timeout),
                preload_content=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Unavailable(f"WATCH {path}: {errors.truncate(str(exc))}") from exc
        if not 200 <= response.status <= 299:
            body = response.read()
            response.release_conn()
            what = f"WATCH {path}"
            raise errors.from_status(response.status, body=body, headers=response.headers, what=what)
        return response

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Any:
        """One request, synchronously, no retries (runs in a pool thread); errors translated.

        JSON goes straight over the client's own connection pool (its TLS setup, proxy and auth hooks,
        token refresh included): the client's model layer (``call_api``'s sanitising and parameter
        handling) costs about a quarter of the CPU of a request and is not needed for plain dicts.
        """
        self.counts[method] += 1
        headers = self.headers(accept)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            data = json.dumps(body, separators=(",", ":")).encode()
        url = self._url(path, query)
        what = f"{method} {path}"
        try:
            response = self.api.rest_client.pool_manager.request(
                method,
                url,
                body=data,
                headers=headers,
                timeout=urllib3.Timeout(total=self.limits.request_timeout),
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Unavailable(f"{what}: {errors.truncate(str(exc))}") from exc
        if not 200 <= response.status <= 299:
            raise errors.from_status(response.status, body=response.data, headers=response.headers, what=what)
        return json.loads(response.data) if response.data else None
