"""The operator process: its options (:mod:`.options`), its ports (:mod:`.ports`) and the composition
root that builds and runs it (:mod:`.root`).

    options = Options(controller=ControllerConfig(...), serving=Serving(...))
    run(options)        # until SIGINT or SIGTERM

``joch operator`` (joch.cli.operator) only turns its flags into an :class:`Options`.
"""

from __future__ import annotations

from joch.runtime.options import Options, Serving
from joch.runtime.ports import Listener, PortError
from joch.runtime.root import build, reserve_ports, run

__all__ = ["Listener", "Options", "PortError", "Serving", "build", "reserve_ports", "run"]
