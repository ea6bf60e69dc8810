"""The operator's API client: plain JSON over aiohttp on the caller's event loop, with a write rate
limit and 429/5xx retries; the official kubernetes client supplies the configuration (kubeconfig or
in-cluster, TLS, credentials and their refresh).

    configuration = load_configuration("/path/to/kubeconfig")   # or in-cluster, or ~/.kube/config
    kube = Kube(new_api_client(configuration), Limits(concurrency=16, writes_per_second=200))
    body = await kube.request("GET", "/api/v1/namespaces/default/configmaps/x")
    await kube.aclose()          # on each loop that used it; then, from anywhere:
    kube.close()

Requests run on the running event loop, over one keep-alive connection pool per loop holding at most
``Limits.concurrency`` connections (so at most that many requests are in flight; the rest wait for a
connection); streams (watches, :meth:`Kube.stream`) have a pool of their own, so long-lived watches
never hold a request's place. Writes (any verb but GET) first take a token from a token bucket
(``writes_per_second``, ``write_burst``) so a fan-out does not storm the API server. Failures are
translated into :mod:`joch.kube.errors`; a 429 is retried after its Retry-After (capped at
``max_retry_after``), 5xx and connection failures with exponential backoff, at most ``max_retries``
times, then the error is raised.

Why not the kubernetes client's own (synchronous) transport from a thread pool: in a fan-out the
operator's event loop compiles while the writes go out, and every request handed to a thread costs a
thread switch, a wake-up of the loop and a fight for the GIL with the compiler; on the loop, one
write costs about half the CPU. Synchronous callers (before a loop runs) still have :meth:`Kube.send`,
over the kubernetes client's urllib3 pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Literal

import aiohttp
import urllib3
from kubernetes import client, config

from joch import __version__
from joch.kube import errors

__all__ = [
    "JSON_MERGE_PATCH",
    "METADATA_ACCEPT",
    "Kube",
    "Limits",
    "TokenBucket",
    "load_configuration",
    "new_api_client",
    "ssl_context",
]

logger = logging.getLogger(__name__)

JSON_MERGE_PATCH: Final = "application/merge-patch+json"
METADATA_ACCEPT: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
"""Accept header asking the API server for an object's metadata only (reads, writes and watch events)."""
USER_AGENT: Final = f"joch-operator/{__version__}"
_IN_CLUSTER_ENV: Final = "KUBERNETES_SERVICE_HOST"
_Pool = Literal["requests", "streams"]


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """How hard the operator may push the API server."""

    concurrency: int = 16
    """Requests in flight at once: the size of each event loop's HTTP connection pool (streams excluded)."""
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


SHUTDOWN_GRACE: Final = 0.25
"""Seconds :meth:`Kube.aclose` waits after closing its pools, for TLS connections to finish closing."""


class Kube:
    """Async access to the API server: ``await kube.request(method, path, body=..., query=...)``."""

    def __init__(self, api: client.ApiClient, limits: Limits | None = None) -> None:
        self.api = api
        self.limits = limits or Limits()
        self._bucket = TokenBucket(self.limits.writes_per_second, self.limits.write_burst)
        self._ssl: ssl.SSLContext | bool | None = None
        """Built with the first session (reading the CA and client certificate files then)."""
        self._sessions: dict[tuple[asyncio.AbstractEventLoop, _Pool], aiohttp.ClientSession] = {}
        self._retired: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        """Loops :meth:`aclose` was called on: their requests get one-off sessions."""
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        """Requests sent, by verb, plus ``retried`` and ``throttled`` (429 answers)."""

    @property
    def configuration(self) -> client.Configuration:
        return self.api.configuration

    async def aclose(self) -> None:
        """Close the running loop's connection pools. Call it on every loop that used the client before
        that loop ends; a request on the loop afterwards still works, over a connection of its own."""
        loop = asyncio.get_running_loop()
        with self._lock:
            sessions = [self._sessions.pop((loop, pool), None) for pool in ("requests", "streams")]
            self._retired.add(loop)
        closed = [session for session in sessions if session is not None]
        for session in closed:
            await session.close()
        if closed:
            # A closed TLS connection finishes its shutdown (close_notify) on the loop after close()
            # returns; ending the loop before that leaves the socket to the garbage collector (a
            # ResourceWarning). aiohttp's advice for a graceful shutdown: a short pause first.
            await asyncio.sleep(SHUTDOWN_GRACE)

    def close(self, *, wait: bool = True) -> None:
        """Close the connection pools (of loops still open; ``wait``: until they are closed) and the
        kubernetes client's own pool. Pools of loops that ended without :meth:`aclose` are dropped."""
        with self._lock:
            sessions = list(self._sessions.items())
            self._sessions.clear()
        for (loop, _), session in sessions:
            if loop.is_closed():
                logger.debug("a connection pool outlived its event loop (no aclose() on it)")
                session.detach()
            elif not loop.is_running():
                loop.run_until_complete(session.close())
            else:
                closing = asyncio.run_coroutine_threadsafe(session.close(), loop)
                if wait and not _runs_here(loop):
                    closing.result(self.limits.request_timeout)
        self.api.close()

    def _session(self, pool: _Pool = "requests") -> tuple[aiohttp.ClientSession, bool]:
        """The running loop's pooled session, or (after :meth:`aclose` on it) a one-off one; whether
        the caller must close it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get((loop, pool))
            if session is not None and not session.closed:
                return session, False
            if self._ssl is None:
                self._ssl = ssl_context(self.api.configuration)
            limit = self.limits.concurrency if pool == "requests" else 0
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit, ssl=self._ssl),
                timeout=aiohttp.ClientTimeout(total=self.limits.request_timeout),
                skip_auto_headers=("Accept-Encoding",),
                cookie_jar=aiohttp.DummyCookieJar(),  # the API server sets no cookies worth keeping
            )
            if loop in self._retired:
                return session, True
            self._sessions[(loop, pool)] = session
            return session, False

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """Send one request (retrying as the module docstring says); the decoded JSON answer (``raw``:
        its bytes, undecoded, for a caller that passes them on)."""
        write = method != "GET"
        attempt = 0
        while True:
            if write:
                await self._bucket.acquire()
            try:
                return await self.attempt(
                    method, path, body=body, query=query, content_type=content_type, accept=accept, raw=raw
                )
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

    async def attempt(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
        raw: bool = False,
    ) -> Any:
        """One request on the running loop, no retries; errors translated (``raw``: the 2xx body's bytes)."""
        headers, data = self._prepare(method, body, content_type, accept)
        what = f"{method} {path}"
        configuration = self.api.configuration
        session, one_off = self._session()
        try:
            async with session.request(
                method,
                self._url(path, query),
                data=data,
                headers=headers,
                proxy=configuration.proxy or None,
                proxy_headers=configuration.proxy_headers or None,
                server_hostname=configuration.tls_server_name or None,
            ) as response:
                payload = await response.read()
                status, answer_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unavailable(what, exc) from exc
        finally:
            if one_off:
                await session.close()
        if raw and 200 <= status <= 299:
            return payload
        return _answer(status, payload, answer_headers, what)

    def _prepare(
        self, method: str, body: Any, content_type: str | None, accept: str
    ) -> tuple[dict[str, str], bytes | None]:
        """Count the request; its headers and its body as compact JSON (None without one)."""
        self.counts[method] += 1
        headers = self.headers(accept)
        if body is None:
            return headers, None
        headers["Content-Type"] = content_type or "application/json"
        return headers, json.dumps(body, separators=(",", ":")).encode()

    def headers(self, accept: str = "application/json") -> dict[str, str]:
        """Request headers: Accept, User-Agent and the configuration's current credentials (and, for a
        plain-HTTP server behind the configuration's proxy, its proxy headers: aiohttp sends those only
        in the CONNECT of an HTTPS tunnel)."""
        configuration = self.api.configuration
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        for setting in configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        if (
            configuration.proxy
            and configuration.proxy_headers
            and str(configuration.host).startswith("http:")
        ):
            headers.update(configuration.proxy_headers)
        return headers

    def _url(self, path: str, query: Mapping[str, str | int] | None) -> str:
        url = str(self.api.configuration.host) + path
        if query:
            url += "?" + urllib.parse.urlencode([(k, str(v)) for k, v in query.items()])
        return url

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, query: Mapping[str, str | int], accept: str, read_timeout: float, max_line: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streaming GET (a watch) on the running loop: ``async with kube.stream(...) as lines``, then
        ``async for line in lines`` (each non-empty line of the body as it arrives). A line longer than
        ``max_line`` bytes is a :class:`errors.ServerError`; errors as :meth:`attempt` raises them."""
        self.counts["WATCH"] += 1
        what = f"WATCH {path}"
        configuration = self.api.configuration
        session, one_off = self._session("streams")
        try:
            try:
                response = await session.get(
                    self._url(path, query),
                    headers=self.headers(accept),
                    proxy=configuration.proxy or None,
                    proxy_headers=configuration.proxy_headers or None,
                    server_hostname=configuration.tls_server_name or None,
                    timeout=aiohttp.ClientTimeout(
                        total=None, connect=self.limits.request_timeout, sock_read=read_timeout
                    ),
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise _unavailable(what, exc) from exc
            try:
                if not 200 <= response.status <= 299:
                    payload = await response.read()
                    raise errors.from_status(
                        response.status, body=payload, headers=response.headers, what=what
                    )
                yield _lines(response.content, max_line, what)
            finally:
                response.release()
        finally:
            if one_off:
                await session.close()

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
        """One request, synchronously (off the event loop), no retries; errors translated.

        JSON goes straight over the kubernetes client's own connection pool (its TLS setup, proxy and
        auth hooks): its model layer (``call_api``'s sanitising and parameter handling) is not needed
        for plain dicts.
        """
        headers, data = self._prepare(method, body, content_type, accept)
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
            raise _unavailable(what, exc) from exc
        return _answer(response.status, response.data, response.headers, what)


def ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    """The TLS settings of ``configuration`` for aiohttp: its CA bundle, client certificate and
    hostname check (False: ``verify_ssl`` is off). Raises :class:`errors.ConfigError` when a file
    cannot be read."""
    if not configuration.verify_ssl:
        return False
    try:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise errors.ConfigError(f"cannot load the client's TLS files: {errors.truncate(str(exc))}") from exc
    if configuration.assert_hostname is False:
        context.check_hostname = False
    return context


def _unavailable(what: str, exc: BaseException) -> errors.Unavailable:
    """A connection failure (refused, reset, timed out) as the error retried by :meth:`Kube.request`."""
    return errors.Unavailable(f"{what}: {errors.truncate(str(exc) or type(exc).__name__)}")


def _answer(status: int, payload: bytes, headers: Any, what: str) -> Any:
    """The decoded JSON of a 2xx answer (None when empty); any other status as its error."""
    if not 200 <= status <= 299:
        raise errors.from_status(status, body=payload, headers=headers, what=what)
    return json.loads(payload) if payload else None


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _lines(content: aiohttp.StreamReader, max_line: int, what: str) -> AsyncIterator[bytes]:
    while True:
        try:
            line = await content.readline(max_line_length=max_line)
        except aiohttp.http_exceptions.LineTooLong:
            raise errors.ServerError(f"{what}: a line longer than {max_line} bytes", status=500) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unavailable(what, exc) from exc
        if not line:
            return
        if line.strip():
            yield line
