"""Policy preflight (D9) for admission: exactly the compiler's preflight, through the process's one cache.

Preflight is decision D9 of docs/decisions.md. Semantics are those of
:func:`joch.domain.compilation.preflight.run_preflight` (the same contexts, the same ``PolicyDenied`` and
``InvalidPolicy`` problems, word for word; a unit test holds the two together). Compiled policies come
from the one ``joch.domain.policy.PolicyCompiler`` of the process (the operator hands the controllers'
instance to the webhooks), whose ``compile_object`` caches them by Policy object version, so an admission
hot path with dozens of effective policies does not re-serialise their specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from joch.domain import policy as engine
from joch.domain.compilation import preflight, resolve
from joch.domain.compilation.problems import Problem

__all__ = ["CompiledPolicies", "run_preflight"]

CompiledPolicies: TypeAlias = engine.PolicyCompiler
"""The compiled-policy cache admission reads: the process's one ``PolicyCompiler``."""


def run_preflight(
    gathered: resolve.Gathered, tools: Sequence[preflight.ToolFacts], policies: engine.PolicyCompiler
) -> list[Problem]:
    """Evaluate the effective policies against every model, tool and MCP server (as the compiler does)."""
    return list(preflight.run_preflight(gathered, tools, policies).problems)
