"""The operator's services, in the order they hear about each change (see joch.controllers.service).

Adding a service: write its module (a :class:`~joch.controllers.service.Service` subclass) and add it
here.
"""

from __future__ import annotations

from collections.abc import Callable

from joch.controllers.agbom import AgBOMService
from joch.controllers.compile import CompileService
from joch.controllers.referenced import ReferencedStatusService
from joch.controllers.service import Host, Service

__all__ = ["SERVICES", "ServiceFactory"]

ServiceFactory = Callable[[Host], Service]

SERVICES: tuple[ServiceFactory, ...] = (
    CompileService,
    ReferencedStatusService,
    AgBOMService,
)
