"""Shared helpers for the policy engine tests: compile a spec in one call, build contexts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joch.domain import policy


def compile_spec(
    spec: dict[str, Any],
    *,
    name: str = "p",
    namespace: str = "default",
    generation: int = 1,
    options: policy.CompileOptions | None = None,
) -> policy.CompiledPolicy:
    return policy.compile_policy(
        name=name,
        namespace=namespace,
        generation=generation,
        spec=spec,
        options=options or policy.CompileOptions(),
    )


def rules(*items: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A spec with these rules."""
    return {"rules": list(items), **spec}


@pytest.fixture
def make() -> Callable[..., policy.CompiledPolicy]:
    return compile_spec


@pytest.fixture
def decide() -> Callable[..., policy.Decision]:
    """decide(context, *rule_dicts, **evaluate_kwargs): one policy made of these rules."""

    def run(context: dict[str, Any], *items: dict[str, Any], **kwargs: Any) -> policy.Decision:
        return policy.evaluate([compile_spec(rules(*items))], context, **kwargs)

    return run
