"""The operator process's listening ports, checked before anything starts.

Each enabled server (admission webhooks, decision service, metrics, health) is bound once here, at start:
a port that cannot be bound stops ``joch operator`` at once with a message naming the address, the flag
and the reason (:class:`PortError`), instead of a start-up activity failing and retrying in the
background while the operator runs half-started. In local mode (outside a cluster) a port left at its
default that is taken (a second ``make run``) is replaced by a free one, and every chosen port is printed,
so two local operators can run side by side; a port given explicitly must be free.

The probe closes its socket before the server binds the port (the servers are started by kopf and
aiohttp, which bind by themselves): a port taken in between is reported by the server as before.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterable
from typing import Final

__all__ = ["Listener", "PortError", "reserve"]

logger = logging.getLogger("joch.operator")


class PortError(Exception):
    """A port the operator needs cannot be bound (the message names it and its flag)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Listener:
    name: str
    """What listens there: "webhooks", "decisions", "metrics", "health"."""
    flag: str
    host: str
    port: int
    """The port asked for (0: any free port)."""
    explicit: bool = True
    """Given on the command line (False: the default, which local mode may replace)."""


def _probe(host: str, port: int) -> int:
    """Bind and listen on (host, port) as the servers will (SO_REUSEADDR, as aiohttp sets it), then close;
    the port bound. Raises OSError when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        probe.listen(1)
        bound: int = probe.getsockname()[1]
        return bound


SHAREABLE: Final = frozenset({"metrics", "health"})
"""The listeners that may share one port: /metrics and the probes are served by one server then."""


def reserve(listeners: Iterable[Listener], *, local: bool) -> dict[str, int]:
    """The port each listener will use, by name; raises :class:`PortError` for one that cannot be bound.

    Metrics and health on the same (host, port) share it (one server); any other two listeners asking
    for one port conflict, as a port another process holds does."""
    chosen: dict[str, int] = {}
    shared: dict[tuple[str, int], tuple[int, Listener]] = {}
    for listener in listeners:
        where = (listener.host, listener.port)
        taken = shared.get(where) if listener.port else None
        if taken is not None and {listener.name, taken[1].name} <= SHAREABLE:
            chosen[listener.name] = taken[0]
            continue
        try:
            if taken is not None:
                raise OSError(f"the {taken[1].name} ({taken[1].flag}) listens there")
            port = _probe(listener.host, listener.port)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if not local or listener.explicit:
                raise PortError(
                    f"cannot listen on {listener.host}:{listener.port} for the {listener.name} "
                    f"({listener.flag}): {reason}"
                ) from None
            port = _probe(listener.host, 0)
            logger.warning(
                "%s: port %d (the default of %s) is taken (%s); using the free port %d",
                listener.name,
                listener.port,
                listener.flag,
                reason,
                port,
            )
        chosen[listener.name] = port
        shared[(listener.host, port)] = (port, listener)
    return chosen
