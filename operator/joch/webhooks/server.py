"""The HTTPS server the API server calls: aiohttp, joch's own routes, run inside the operator.

Routes: ``POST /validate/<group>/<plural>``, ``POST /mutate/<group>/<plural>`` (any suffix is
accepted; the AdmissionReview says which kind it is), ``GET /healthz``.

Why not kopf's admission handlers and ``kopf.WebhookServer``: they build the aiohttp application with
the default 1 MiB body limit (the API server sends up to 3 MiB objects, twice on UPDATE), answer a
body that is not an object, or not UTF-8, with HTTP 500, run every call through kopf's handler
machinery (memos, diffs of the whole object, per-handler logging) that admission does not need, and
their managed configurations use ``timeoutSeconds: 30`` without a namespaceSelector. Here the body
limit is :data:`MAX_BODY` (an object of 3 MiB plus its oldObject and the review envelope fit), a bad
body is a 400/413, warnings and field-path messages come straight from the domain, and the server still
runs under kopf's lifecycle (as ``settings.admission.server``, see :mod:`joch.webhooks`).

The checks run synchronously on the event loop, which keeps one consistent snapshot of the
operator's store per call (the store is only written on that loop).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from typing import Final

from aiohttp import web

from joch.webhooks.handler import Action, AdmissionEndpoint

__all__ = ["MAX_BODY", "WebhookServer"]

logger = logging.getLogger("joch.webhooks")

MAX_BODY: Final = 8 * 1024 * 1024
"""Largest request body accepted: a 3 MiB object and its 1.5 MiB stored predecessor, with headroom."""


class WebhookServer:
    """Serves an :class:`AdmissionEndpoint` over HTTPS (or plain HTTP when ``ssl_context`` is None)."""

    def __init__(
        self,
        endpoint: AdmissionEndpoint,
        *,
        host: str = "127.0.0.1",
        port: int = 9443,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_body = max_body
        self._runner: web.AppRunner | None = None
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.add_routes(
            [
                web.post("/validate{rest:.*}", self._validate),
                web.post("/mutate{rest:.*}", self._mutate),
                web.get("/healthz", self._healthz),
            ]
        )
        return app

    async def start(self) -> None:
        """Start listening; with ``port`` 0 a free port is chosen and stored in :attr:`port`."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        runner = web.AppRunner(self.application(), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        logger.info("webhook server listening on %s://%s:%d", self.scheme, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and drop every connection at once.

        aiohttp closes kept-alive connections politely, which for TLS means waiting (up to 30 s) for
        the peer's close_notify; the API server keeps its connections open, so they are aborted.
        """
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()
        await asyncio.sleep(0)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    async def _serve(self, action: Action, request: web.Request) -> web.Response:
        if request.transport is not None:
            self._transports.add(request.transport)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"the body is larger than {self.max_body} bytes"}, status=413)
        except (ConnectionError, asyncio.IncompleteReadError):
            return web.json_response({"error": "the body could not be read"}, status=400)
        status, payload = await self.endpoint.handle_async(action, body)
        return web.json_response(payload, status=status)

    async def _validate(self, request: web.Request) -> web.Response:
        return await self._serve("validate", request)

    async def _mutate(self, request: web.Request) -> web.Response:
        return await self._serve("mutate", request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")
