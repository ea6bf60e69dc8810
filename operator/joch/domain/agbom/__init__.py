"""AgBOM: one compiled Agent as a CycloneDX 1.6 AI bill of materials (pure).

The service's two steps::

    content = describe(gathered, compiled, agent_uid=uid, options=Options.from_spec(spec),
                       lookup=lookup, tool_version=__version__)       # content.py: cheap, plain data
    if content.content_hash != stored_hash:
        text = render(content, generation=n + 1, timestamp=now)     # render.py: the CycloneDX JSON

``diff(old, new)`` (diff.py) compares two parsed documents component by component.
"""

from __future__ import annotations

from joch.domain.agbom.content import (
    NAMESPACE,
    RISKY_SIDE_EFFECTS,
    Content,
    HighRisk,
    Options,
    agent_uid_for,
    describe,
    serial_number,
)
from joch.domain.agbom.diff import ComponentChange, diff
from joch.domain.agbom.render import render

__all__ = [
    "NAMESPACE",
    "RISKY_SIDE_EFFECTS",
    "ComponentChange",
    "Content",
    "HighRisk",
    "Options",
    "agent_uid_for",
    "describe",
    "diff",
    "render",
    "serial_number",
]
