"""Problems found while gathering or compiling: a CamelCase reason, a field path and a sentence.

Reasons (each becomes an Event reason and a condition reason in the controller):

| reason | meaning | condition the controller sets False |
|---|---|---|
| MissingReference | a referenced object does not exist (yet); D10: recompile when it appears | ResolvedRefs |
| ForbiddenReference | a reference into a namespace that is not shared (D2) | ResolvedRefs |
| InvalidPolicy | an effective Policy does not parse or compile | Compiled |
| CapabilityMismatch | the FrameworkAdapter lacks a capability the Agent needs | Compiled |
| RequirementUnmet | a model of the route does not meet the route's requirements | Compiled |
| PolicyDenied | policy preflight (D9) denies a model, tool or MCP server of the Agent | Compiled |
| ToolNotAllowed | a Tool's safety floor excludes this Agent (allowedAgents, deniedNamespaces) | Compiled |
| InvalidName | the manifest name would not be a valid object name | Compiled |

Paths are Kubernetes-style field paths into the Agent (``spec.tools[1]``). A problem found in another
object the Agent depends on is prefixed with that object: ``ModelRoute/support/research-default:
spec.strategy.fallback[0]`` or ``Environment/prod: spec.policies[0]``.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

__all__ = ["REFERENCE_REASONS", "Problem", "Reason"]

Reason = Literal[
    "MissingReference",
    "ForbiddenReference",
    "InvalidPolicy",
    "CapabilityMismatch",
    "RequirementUnmet",
    "PolicyDenied",
    "ToolNotAllowed",
    "InvalidName",
]

REFERENCE_REASONS: Final[frozenset[str]] = frozenset({"MissingReference", "ForbiddenReference"})
"""Reasons that concern references (the ResolvedRefs condition); every other reason concerns compiling."""


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One reason the Agent cannot be compiled as it stands."""

    reason: Reason
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"
