"""Guards: Python pre-checks taken from CEL, which may skip CEL but must never change an outcome.

Case matrix:
- extraction: which conjuncts become guards (==, !=, ordering, in, booleans, negative numbers) and
  which expressions yield none (top-level ||, ?:, parentheses, method calls, hex/uint literals)
- soundness (hypothesis, both backends): whenever the guards say "certainly false", CEL itself
  evaluates the expression to false on that context
- the engine skips CEL when a guard fails (counted)
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joch.domain import policy
from joch.domain.policy import cel, guards
from joch.domain.policy.guards import Guard


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "tool.sideEffect == 'financial'", [Guard(("tool", "sideEffect"), "==", "financial")], id="eq str"
        ),
        pytest.param(
            "tool.sideEffect == 'financial' && cost.runUsd > 1.0 && agent.labels.env == 'prod'",
            [
                Guard(("tool", "sideEffect"), "==", "financial"),
                Guard(("cost", "runUsd"), ">", 1.0),
                Guard(("agent", "labels", "env"), "==", "prod"),
            ],
            id="three conjuncts",
        ),
        pytest.param("cost.runUsd >= -2", [Guard(("cost", "runUsd"), ">=", -2)], id="negative int"),
        pytest.param(
            "mcpServer.schemaDrift == true", [Guard(("mcpServer", "schemaDrift"), "==", True)], id="bool"
        ),
        pytest.param('tool.name != "x"', [Guard(("tool", "name"), "!=", "x")], id="ne, double quotes"),
        pytest.param(
            "tool.name in ['a', 'b'] && size(payload) > 2",
            [Guard(("tool", "name"), "in", frozenset({"a", "b"}))],
            id="in list, other conjunct not guardable",
        ),
        pytest.param("tool.name == 'a' || cost.runUsd > 1.0", [], id="top-level or"),
        pytest.param("tool.name == 'a' ? true : false", [], id="ternary"),
        pytest.param("(tool.name == 'a') && true", [], id="parenthesised conjunct"),
        pytest.param("tool.name.startsWith('a')", [], id="method call"),
        pytest.param("cost.runUsd > 0x10 && cost.runUsd < 3u", [], id="hex and uint"),
        pytest.param("tool.name == 'a\\'b'", [], id="escaped string"),
        pytest.param("tool.name == 'x' + 'y'", [], id="expression on the right"),
        pytest.param("tool.name in ['a', 1]", [], id="mixed list"),
        pytest.param("'x' == tool.name", [], id="literal on the left"),
    ],
)
def test_extract(source: str, expected: list[Guard]) -> None:
    cel.scan(source)
    assert list(guards.extract(source)) == expected


PATH_CHOICES = [
    ("tool", "name"),
    ("cost", "runUsd"),
    ("mcpServer", "schemaDrift"),
    ("agent", "labels", "env"),
]
LITERALS = ["'a'", "'b'", "1", "1.0", "2.5", "-1", "true", "false", "0"]
VALUES = st.one_of(
    st.sampled_from(["a", "b", ""]),
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([1.0, 2.5, -1.0, float("nan"), float("inf"), 2**70]),
    st.booleans(),
    st.none(),
    st.just(["a"]),
    st.just({"x": 1}),
)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = ".".join(draw(st.sampled_from(PATH_CHOICES)))
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in"]))
        if op == "in":
            parts.append(f"{path} in ['a', 'c']")
        else:
            parts.append(f"{path} {op} {draw(st.sampled_from(LITERALS))}")
    return " && ".join(parts)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keys in PATH_CHOICES:
        if draw(st.integers(min_value=0, max_value=3)) > 0:
            node = out
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = draw(VALUES)
    return out


# Built before hypothesis runs: creating a celpy Environment raises the recursion limit, which
# hypothesis reports as a warning (an error here) when it happens inside a test.
BACKENDS = {name: policy.get_backend(name) for name in (cel.CEL_RUST, cel.CEL_PYTHON)}


@pytest.mark.parametrize("backend_name", list(BACKENDS))
@settings(max_examples=150, deadline=None)
@given(source=expressions(), ctx=contexts())
def test_a_failing_guard_means_cel_is_false(backend_name: str, source: str, ctx: dict[str, Any]) -> None:
    scanned = cel.scan(source)
    may_match = guards.compile_guards(guards.extract(source))
    if may_match is None or may_match(ctx):
        return
    backend = BACKENDS[backend_name]
    try:
        activation = backend.prepare(cel.extract(ctx, cel.access_plan(scanned.paths)))
    except policy.CelEvaluationError:
        return  # a context the library cannot bind at all (cel-python and ints beyond 64 bits)
    assert backend.compile(source).evaluate(activation) is False


def test_the_engine_skips_cel_when_a_guard_fails() -> None:
    evaluations = []
    inner = policy.get_backend()

    class Counting:
        name = "counting"

        def compile(self, source: str) -> policy.Program:
            program = inner.compile(source)

            class Counted:
                def evaluate(self, activation: Any) -> Any:
                    evaluations.append(source)
                    return program.evaluate(activation)

            return Counted()

        def prepare(self, activation: Any) -> Any:
            return inner.prepare(activation)

    compiled = policy.compile_policy(
        name="p",
        namespace="n",
        generation=1,
        spec={
            "rules": [
                {"when": {"cel": "tool.sideEffect == 'financial' && cost.runUsd > 1.0"}, "action": "deny"}
            ]
        },
        options=policy.CompileOptions(backend=Counting()),
    )
    read_only = {"tool": {"sideEffect": "read_only"}, "cost": {"runUsd": 9.0}}
    financial = {"tool": {"sideEffect": "financial"}, "cost": {"runUsd": 9.0}}
    assert policy.evaluate([compiled], read_only).decision == "allow"
    assert evaluations == []
    assert policy.evaluate([compiled], financial).decision == "deny"
    assert len(evaluations) == 1
