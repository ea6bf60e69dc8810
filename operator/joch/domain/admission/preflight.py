"""Policy preflight (D9) for admission: the compiler's preflight, with compiled policies cached by object.

Preflight is decision D9 of docs/decisions.md. Semantics are exactly those of
:func:`joch.domain.compilation.preflight.run_preflight` (the same contexts, the same ``PolicyDenied`` and
``InvalidPolicy`` problems, word for word; a unit test holds the two together). What differs is the cache: the
compiler's ``PolicyCompiler`` is keyed by (namespace, name) and re-serialises each Policy spec
(``spec.wire()``) to compare it on every call, which costs more than the evaluation itself on an admission hot
path with dozens of effective policies. Here compiled policies are keyed by the identity of the Policy object
(the operator's store replaces the object when the Policy changes), holding a strong reference so an identity
is never reused while cached.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Final

from joch.api.v1alpha1.policy import Policy
from joch.domain import policy as engine
from joch.domain.compilation import preflight, resolve
from joch.domain.compilation.problems import Problem

__all__ = ["CompiledPolicies", "run_preflight"]

CAPACITY: Final = 4096


class CompiledPolicies:
    """Compiled Policies by Policy object (LRU, :data:`CAPACITY` entries). Not thread-safe."""

    def __init__(self, options: engine.CompileOptions | None = None, *, capacity: int = CAPACITY) -> None:
        self.options = options or engine.CompileOptions()
        self.capacity = capacity
        self._programs: dict[str, engine.Program] = {}
        self._cache: collections.OrderedDict[
            int, tuple[Policy, engine.CompiledPolicy | engine.PolicySpecError]
        ] = collections.OrderedDict()

    def get(self, policy: Policy) -> engine.CompiledPolicy:
        """The compiled policy; raises ``PolicySpecError`` (also cached) when it does not compile."""
        key = id(policy)
        found = self._cache.get(key)
        if found is None or found[0] is not policy:
            try:
                outcome: engine.CompiledPolicy | engine.PolicySpecError = engine.compile_policy(
                    name=policy.metadata.name or "",
                    namespace=policy.metadata.namespace or "",
                    generation=resolve.generation_of(policy),
                    spec=policy.spec.wire(),
                    options=self.options,
                    programs=self._programs,
                )
            except engine.PolicySpecError as exc:
                outcome = exc
            found = (policy, outcome)
            self._cache[key] = found
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        if isinstance(found[1], engine.PolicySpecError):
            raise found[1]
        return found[1]

    def __len__(self) -> int:
        return len(self._cache)


def run_preflight(
    gathered: resolve.Gathered, tools: Sequence[preflight.ToolFacts], policies: CompiledPolicies
) -> list[Problem]:
    """Evaluate the effective policies against every model, tool and MCP server (as the compiler does)."""
    outcome = preflight.evaluate_preflight(gathered, tools, lambda entry: policies.get(entry.policy))
    return list(outcome.problems)
