"""The /v1 API service: REST and watch over kube-apiserver, every call made as the caller.

:func:`joch.apiserver.app.build_app` builds the aiohttp application; :class:`ApiServer` runs it on the
operator's event loop (plain HTTP on loopback outside a cluster, HTTPS with the webhooks' serving
certificate in one). The routes and their OpenAPI document: :mod:`joch.apiserver.app`,
:mod:`joch.apiserver.openapi`.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from joch.apiserver.app import ROUTES, ApiContext, build_app
from joch.apiserver.callers import Callers

__all__ = ["LISTENING", "ROUTES", "ApiContext", "ApiServer", "Callers", "build_app"]

logger = logging.getLogger("joch.apiserver")

LISTENING = "API listening on"


class ApiServer:
    """The API application on ``host:port`` (``ssl_context``: HTTPS), started on the running loop."""

    def __init__(
        self, context: ApiContext, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.context = context
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(build_app(self.context), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True
        )
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logger.info("%s %s", LISTENING, self.url)

    async def stop(self) -> None:
        """Stop serving (the callers' clients are the owner's to close: gRPC may share them)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
