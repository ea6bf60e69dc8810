"""The CEL seam: source scanning and limits, access plans, the two backends, backend selection.

Case matrix:
- scan: free roots and field chains; names inside strings and comments, bound comprehension
  variables, function names and type names are not roots; unknown names, length, bracket nesting and
  comprehension nesting are rejected
- access_plan / extract: only the fields read are bound; a whole-object read absorbs field reads
- both backends agree on results and on the missing-vs-error classification for the same expressions
- get_backend: canonical names, aliases, unknown names, the default (never $JOCH_CEL_BACKEND)
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.domain import policy
from joch.domain.policy import cel

BACKENDS = [cel.CEL_RUST, cel.CEL_PYTHON]


@pytest.mark.parametrize(
    ("source", "roots", "paths"),
    [
        pytest.param("tool.name == 'x'", {"tool"}, {("tool", "name")}, id="one field"),
        pytest.param(
            "tool.sideEffect == 'financial' && cost.runUsd > 1.0 && agent.labels.env == 'prod'",
            {"tool", "cost", "agent"},
            {("tool", "sideEffect"), ("cost", "runUsd"), ("agent", "labels", "env")},
            id="three roots",
        ),
        pytest.param(
            "tool.name.startsWith('x')", {"tool"}, {("tool", "name")}, id="method call ends the chain"
        ),
        pytest.param(
            "agent.labels['a.b'] == 'x'", {"agent"}, {("agent", "labels")}, id="indexing ends the chain"
        ),
        pytest.param("size(tool) > 1", {"tool"}, {("tool",)}, id="whole root"),
        pytest.param("has(cost.runUsd)", {"cost"}, {("cost", "runUsd")}, id="has macro"),
        pytest.param(
            "data.contains.exists(c, c == 'pii')",
            {"data"},
            {("data", "contains")},
            id="bound variable is not a root",
        ),
        pytest.param(
            "payload.items.all(i, i.size > 1 && payload.limit > 2)",
            {"payload"},
            {("payload", "items"), ("payload", "limit")},
            id="root used inside a macro",
        ),
        pytest.param("'tool.name' == \"cost\"", set(), set(), id="names inside strings"),
        pytest.param("r'\\q' == '''tool\n'''", set(), set(), id="raw and triple-quoted strings"),
        pytest.param("true // tool.name\n&& hook == 'x'", {"hook"}, {("hook",)}, id="comment"),
        pytest.param(
            "type(cost.runUsd) == double && int('1') == 1", {"cost"}, {("cost", "runUsd")}, id="types"
        ),
        pytest.param("0x1F == 31u && 1.5e3 > 2.0", set(), set(), id="number literals"),
    ],
)
def test_scan_finds_roots_and_paths(source: str, roots: set[str], paths: set[tuple[str, ...]]) -> None:
    result = cel.scan(source)
    assert result.roots == roots
    assert result.paths == paths


@pytest.mark.parametrize(
    ("source", "limits", "message"),
    [
        pytest.param("", cel.DEFAULT_LIMITS, "empty", id="empty"),
        pytest.param("   ", cel.DEFAULT_LIMITS, "empty", id="blank"),
        pytest.param("tools.name == 'x'", cel.DEFAULT_LIMITS, "unknown name 'tools'", id="unknown root"),
        pytest.param("x == 1", cel.DEFAULT_LIMITS, "unknown name 'x'", id="unbound variable"),
        pytest.param(
            "hook == '" + "x" * 30 + "'", cel.CelLimits(max_length=20), "characters long", id="too long"
        ),
        pytest.param("((((1))))", cel.CelLimits(max_nesting=3), "deeper than 3 brackets", id="too deep"),
        pytest.param(
            "[[[[1]]]] == []", cel.CelLimits(max_nesting=3), "deeper than 3 brackets", id="too deep, lists"
        ),
        pytest.param(
            "payload.a.all(x, payload.b.all(y, payload.c.all(z, x == y)))",
            cel.DEFAULT_LIMITS,
            "more than 2 comprehension macros",
            id="three nested comprehensions",
        ),
        pytest.param("hook == 'x", cel.DEFAULT_LIMITS, "unterminated", id="unterminated string"),
    ],
)
def test_scan_rejects(source: str, limits: cel.CelLimits, message: str) -> None:
    with pytest.raises(policy.CelCompileError, match=message):
        cel.scan(source, limits)


def test_two_sequential_comprehensions_are_fine() -> None:
    assert cel.scan("payload.a.all(x, x > 1) && payload.b.exists(y, y == 2)").roots == {"payload"}


def test_default_nesting_limit_protects_the_libraries() -> None:
    deep = "(" * 200 + "hook" + ")" * 200 + " == 'x'"
    with pytest.raises(policy.CelCompileError):
        cel.scan(deep)


@pytest.mark.parametrize(
    ("paths", "value", "expected"),
    [
        pytest.param(
            [("tool", "name"), ("cost", "runUsd")],
            {"tool": {"name": "x", "type": "http"}, "cost": {"runUsd": 1}, "payload": {"big": 1}},
            {"tool": {"name": "x"}, "cost": {"runUsd": 1}},
            id="only what is read",
        ),
        pytest.param(
            [("tool", "name"), ("tool",)],
            {"tool": {"name": "x", "type": "http"}},
            {"tool": {"name": "x", "type": "http"}},
            id="whole object absorbs a field",
        ),
        pytest.param(
            [("tool", "name")], {"tool": {"type": "http"}}, {"tool": {}}, id="absent field stays absent"
        ),
        pytest.param([("tool", "name")], {"tool": None}, {}, id="null root is absent"),
        pytest.param([("tool", "name")], {"tool": "text"}, {"tool": "text"}, id="non-object kept whole"),
        pytest.param(
            [("agent", "labels", "env")],
            {"agent": {"name": "a", "labels": {"env": "prod", "team": "t"}}},
            {"agent": {"labels": {"env": "prod"}}},
            id="three levels",
        ),
    ],
)
def test_access_plan_and_extract(
    paths: list[tuple[str, ...]], value: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert cel.extract(value, cel.access_plan(paths)) == expected


CONTEXT = {
    "tool": {"name": "pay", "sideEffect": "financial"},
    "cost": {"runUsd": 7.5},
    "agent": {"labels": {"env": "prod"}},
    "data": {"contains": ["pii"]},
}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("tool.sideEffect == 'financial' && cost.runUsd > 1.0", True, id="true"),
        pytest.param("agent.labels.env == 'dev'", False, id="false"),
        pytest.param("data.contains.exists(c, c == 'pii')", True, id="macro"),
        pytest.param("has(tool.missing)", False, id="has on absent"),
        pytest.param("cost.runUsd > 7", True, id="double vs int literal"),
        pytest.param("tool.missing == 'x'", "missing", id="absent field"),
        pytest.param("mcpServer.trustScore < 0.5", "missing", id="absent root"),
        pytest.param(
            "agent.labels.env == 'dev' && mcpServer.trustScore < 0.5", False, id="false absorbs missing"
        ),
        pytest.param("1 / 0 == 1", "error", id="division by zero"),
        pytest.param("tool.name + 1 == 2", "error", id="bad operands"),
    ],
)
def test_backends_agree(backend_name: str, source: str, expected: Any) -> None:
    backend = policy.get_backend(backend_name)
    program = backend.compile(source)
    activation = backend.prepare(cel.extract(CONTEXT, cel.access_plan(cel.scan(source).paths)))
    if expected == "missing":
        with pytest.raises(policy.CelMissingValue):
            program.evaluate(activation)
    elif expected == "error":
        with pytest.raises(policy.CelEvaluationError) as raised:
            program.evaluate(activation)
        assert not isinstance(raised.value, policy.CelMissingValue)
    else:
        assert program.evaluate(activation) is expected


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_backends_raise_compile_errors(backend_name: str) -> None:
    with pytest.raises(policy.CelCompileError):
        policy.get_backend(backend_name).compile("hook ==")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(None, cel.CEL_RUST, id="default is the faster one"),
        pytest.param("cel-python", cel.CEL_PYTHON, id="canonical name"),
        pytest.param("celpy", cel.CEL_PYTHON, id="alias"),
        pytest.param("rust", cel.CEL_RUST, id="rust alias"),
        pytest.param(" CEL ", cel.CEL_RUST, id="alias, case and spaces"),
    ],
)
def test_get_backend(name: str | None, expected: str) -> None:
    assert policy.get_backend(name).name == expected


def test_the_engine_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The choice arrives through OperatorSettings.cel_backend (read from $JOCH_CEL_BACKEND by joch.cli).
    monkeypatch.setenv("JOCH_CEL_BACKEND", "cel-python")
    assert policy.get_backend().name == cel.CEL_RUST
    assert policy.CompileOptions().resolve_backend().name == cel.CEL_RUST


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown CEL backend 'v8'"):
        policy.get_backend("v8")
    with pytest.raises(ValueError, match="unknown CEL backend 'v8'"):
        policy.CompileOptions(cel_backend="v8")


@pytest.mark.parametrize(
    ("cel_backend", "decision"),
    [
        # cel-python refuses to compare an int with a double (docs/policy-language.md): fail closed.
        pytest.param("cel-python", "deny", id="cel-python"),
        pytest.param("rust", "allow", id="rust"),
    ],
)
def test_backend_choice_is_a_compile_option(cel_backend: str, decision: str) -> None:
    options = policy.CompileOptions(cel_backend=cel_backend)
    compiled = policy.compile_policy(
        name="p",
        namespace="n",
        generation=1,
        spec={"rules": [{"when": {"cel": "cost.runUsd > 1.0"}, "action": "deny"}]},
        options=options,
    )
    assert options.resolve_backend().name == cel.canonical_name(cel_backend)
    assert policy.evaluate([compiled], {"cost": {"runUsd": 0}}).decision == decision


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_prepare_failures_are_evaluation_errors(backend_name: str) -> None:
    with pytest.raises(policy.CelEvaluationError, match="cannot bind the context"):
        policy.get_backend(backend_name).prepare({"payload": object()})
