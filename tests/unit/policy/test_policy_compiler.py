"""Compiling once: the PolicyCompiler cache, the CEL program cache, compiled-rule facts.

Case matrix: same (namespace, name, generation, spec) -> the same object; a new generation or a
changed spec -> recompiled; forget; CEL sources compiled once across policies; a failing compile does
not poison the cache; runtime_only and version facts; parse_policy is compile_policy.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from joch.domain import policy
from joch.domain.policy import cel

SPEC: dict[str, Any] = {
    "rules": [
        {"when": {"cel": "tool.name == 'x'"}, "action": "deny"},
        {"when": {"cost.runUsd": ">5"}, "action": "deny"},
        {"when": {"tool.name": "y"}, "action": "deny"},
    ]
}


class CountingBackend:
    def __init__(self) -> None:
        self.inner = policy.get_backend()
        self.compiled: list[str] = []

    @property
    def name(self) -> str:
        return "counting"

    def compile(self, source: str) -> policy.Program:
        self.compiled.append(source)
        return self.inner.compile(source)

    def prepare(self, activation: Any) -> Any:
        return self.inner.prepare(activation)


def test_compiles_once_per_generation_and_spec() -> None:
    backend = CountingBackend()
    compiler = policy.PolicyCompiler(policy.CompileOptions(backend=backend))
    first = compiler.compile(name="p", namespace="n", generation=1, spec=SPEC)
    assert compiler.compile(name="p", namespace="n", generation=1, spec=copy.deepcopy(SPEC)) is first
    second = compiler.compile(name="p", namespace="n", generation=2, spec=SPEC)
    assert second is not first
    assert second.version == "v2"
    changed = copy.deepcopy(SPEC)
    changed["rules"][2]["when"]["tool.name"] = "z"
    third = compiler.compile(name="p", namespace="n", generation=2, spec=changed)
    assert third is not second
    assert backend.compiled == ["tool.name == 'x'"]  # one CEL source, compiled once for all of them
    compiler.compile(name="q", namespace="n", generation=1, spec=SPEC)
    assert backend.compiled == ["tool.name == 'x'"]
    assert len(compiler) == 2
    compiler.forget(namespace="n", name="q")
    assert len(compiler) == 1


def test_the_cache_holds_a_snapshot_of_the_spec() -> None:
    compiler = policy.PolicyCompiler()
    spec = copy.deepcopy(SPEC)
    first = compiler.compile(name="p", namespace="n", generation=1, spec=spec)
    spec["rules"].append({"action": "allow"})  # mutated in place by the caller
    again = compiler.compile(name="p", namespace="n", generation=1, spec=spec)
    assert again is not first
    assert len(again.rules) == 4


def test_a_failing_compile_keeps_the_previous_version() -> None:
    compiler = policy.PolicyCompiler()
    good = compiler.compile(name="p", namespace="n", generation=1, spec=SPEC)
    with pytest.raises(policy.PolicySpecError):
        compiler.compile(name="p", namespace="n", generation=2, spec={"rules": [{"action": "nope"}]})
    assert compiler.compile(name="p", namespace="n", generation=1, spec=SPEC) is good


def test_program_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from joch.domain.policy import compiling

    monkeypatch.setattr(compiling, "MAX_CACHED_PROGRAMS", 2)
    cache: dict[str, policy.Program] = {}
    for index in range(5):
        spec = {"rules": [{"when": {"cel": f"cost.runUsd > {index}.0"}, "action": "deny"}]}
        policy.compile_policy(name="p", namespace="n", generation=1, spec=spec, programs=cache)
        assert len(cache) <= 2


def test_compiled_rule_facts() -> None:
    compiled = policy.parse_policy(name="p", namespace="n", generation=4, spec=SPEC)
    assert (compiled.policy_id, compiled.version, compiled.key, compiled.qualified_name) == (
        "p",
        "v4",
        ("n", "p"),
        "n/p",
    )
    assert [rule.runtime_only for rule in compiled.rules] == [False, True, False]
    assert [bool(rule.cel_tests) for rule in compiled.rules] == [True, False, False]
    assert compiled.rules[0].matches({"tool": {"name": "x"}})
    assert not compiled.rules[2].matches({"tool": {"name": "x"}})
    assert compiled.applies_to == policy.parse_policy_spec(SPEC).applies_to


def test_no_cel_means_no_backend_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_backend(name: str | None = None) -> policy.CelBackend:
        raise AssertionError(f"a CEL backend ({name}) was resolved for a policy without CEL")

    monkeypatch.setattr(cel, "get_backend", no_backend)
    compiled = policy.compile_policy(
        name="p", namespace="n", generation=1, spec={"rules": [{"action": "deny"}]}
    )
    assert policy.evaluate([compiled], {}).decision == "deny"
    assert policy.validate_policy_spec({"rules": [{"action": "deny"}]}) == []
    with pytest.raises(AssertionError, match="was resolved"):  # the stand-in is the one consulted
        policy.validate_policy_spec({"rules": [{"when": {"cel": "hook == 'x'"}, "action": "deny"}]})
