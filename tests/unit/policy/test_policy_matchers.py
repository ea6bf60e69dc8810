"""Every matcher against the context values it must and must not match.

Case matrix (one `when` clause, the rule denies when it matches):
- equality: str / int / float / bool, type strictness (true is not 1, "5" is not 5), int == float
- list-valued context: membership (data.contains: pii), any element for comparisons
- any-of lists: strings, mixed with comparisons, with not-allowlisted
- comparisons: each operator at, below and above the bound; strings and bools never compare
- not-allowlisted: provider in / not in the list, list absent, provider absent, odd list shapes
- absence: missing root, missing field, null value, non-object on the way down
- paths: three segments, bracketed keys with dots, non-dict mappings
- CEL clauses: under a path (path absent -> no match), whole-context
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

from joch.domain import policy

Decide = Callable[..., policy.Decision]


def _matches(decide: Decide, when: dict[str, Any], context: Any) -> bool:
    result = decide(context, {"when": when, "action": "deny"})
    assert not result.reason.startswith("PolicyError"), result.reason
    return result.decision == "deny"


@pytest.mark.parametrize(
    ("when", "context", "expected"),
    [
        pytest.param({"tool.name": "web.search"}, {"tool": {"name": "web.search"}}, True, id="str equal"),
        pytest.param({"tool.name": "web.search"}, {"tool": {"name": "web.fetch"}}, False, id="str different"),
        pytest.param({"tool.name": "5"}, {"tool": {"name": 5}}, False, id="str matcher vs number value"),
        pytest.param(
            {"cost.runUsd": 5}, {"cost": {"runUsd": 5.0}}, True, id="int matcher equals float value"
        ),
        pytest.param({"cost.runUsd": 5.5}, {"cost": {"runUsd": 5.5}}, True, id="float equal"),
        pytest.param({"cost.runUsd": 5}, {"cost": {"runUsd": "5"}}, False, id="number matcher vs str value"),
        pytest.param({"cost.runUsd": 1}, {"cost": {"runUsd": True}}, False, id="1 is not true"),
        pytest.param(
            {"mcpServer.schemaDrift": True}, {"mcpServer": {"schemaDrift": True}}, True, id="bool equal"
        ),
        pytest.param(
            {"mcpServer.schemaDrift": True}, {"mcpServer": {"schemaDrift": 1}}, False, id="true is not 1"
        ),
        pytest.param(
            {"mcpServer.schemaDrift": False}, {"mcpServer": {"schemaDrift": False}}, True, id="false equal"
        ),
        pytest.param({"mcpServer.schemaDrift": False}, {"mcpServer": {}}, False, id="false vs absent"),
        pytest.param(
            {"data.contains": "pii"}, {"data": {"contains": ["secrets", "pii"]}}, True, id="membership"
        ),
        pytest.param({"data.contains": "pii"}, {"data": {"contains": ["secrets"]}}, False, id="not a member"),
        pytest.param({"data.contains": "pii"}, {"data": {"contains": []}}, False, id="empty list"),
        pytest.param(
            {"data.contains": "pii"}, {"data": {"contains": "pii"}}, True, id="scalar where list expected"
        ),
        pytest.param(
            {"data.contains": ["pii", "phi"]},
            {"data": {"contains": ["phi"]}},
            True,
            id="any-of vs list context",
        ),
        pytest.param(
            {"tool.sideEffect": ["external_write", "financial"]},
            {"tool": {"sideEffect": "financial"}},
            True,
            id="any-of hit",
        ),
        pytest.param(
            {"tool.sideEffect": ["external_write", "financial"]},
            {"tool": {"sideEffect": "read_only"}},
            False,
            id="any-of miss",
        ),
        pytest.param(
            {"cost.runUsd": ["<1", ">10"]}, {"cost": {"runUsd": 11}}, True, id="any-of comparisons hit"
        ),
        pytest.param(
            {"cost.runUsd": ["<1", ">10"]}, {"cost": {"runUsd": 5}}, False, id="any-of comparisons miss"
        ),
        pytest.param({"cost.runUsd": [3, "a"]}, {"cost": {"runUsd": 3}}, True, id="any-of mixed types"),
        pytest.param({"cost.runUsd": ">5"}, {"cost": {"runUsd": 5.01}}, True, id="gt above"),
        pytest.param({"cost.runUsd": ">5"}, {"cost": {"runUsd": 5}}, False, id="gt at bound"),
        pytest.param({"cost.runUsd": ">=5"}, {"cost": {"runUsd": 5}}, True, id="ge at bound"),
        pytest.param({"cost.runUsd": ">=5"}, {"cost": {"runUsd": 4.99}}, False, id="ge below"),
        pytest.param(
            {"mcpServer.trustScore": "<0.75"}, {"mcpServer": {"trustScore": 0.7}}, True, id="lt below"
        ),
        pytest.param(
            {"mcpServer.trustScore": "<0.75"}, {"mcpServer": {"trustScore": 0.75}}, False, id="lt at bound"
        ),
        pytest.param(
            {"mcpServer.trustScore": "<=0.75"}, {"mcpServer": {"trustScore": 0.75}}, True, id="le at bound"
        ),
        pytest.param(
            {"mcpServer.trustScore": "<=0.75"}, {"mcpServer": {"trustScore": 0.8}}, False, id="le above"
        ),
        pytest.param({"cost.runUsd": ">5"}, {"cost": {"runUsd": "6"}}, False, id="a string never compares"),
        pytest.param({"cost.runUsd": ">0"}, {"cost": {"runUsd": True}}, False, id="a bool never compares"),
        pytest.param({"cost.runUsd": ">5"}, {"cost": {"runUsd": [1, 7]}}, True, id="comparison any element"),
        pytest.param(
            {"cost.runUsd": ">5"}, {"cost": {"runUsd": float("nan")}}, False, id="nan compares false"
        ),
        pytest.param({"tool.name": "x"}, {}, False, id="root absent"),
        pytest.param({"tool.name": "x"}, {"tool": {}}, False, id="field absent"),
        pytest.param({"tool.name": "x"}, {"tool": {"name": None}}, False, id="null value"),
        pytest.param({"tool.name": "x"}, {"tool": None}, False, id="null root"),
        pytest.param({"tool.name": "x"}, {"tool": "x"}, False, id="root is not an object"),
        pytest.param({"tool.name": "x"}, {"tool": ["x"]}, False, id="root is a list"),
        pytest.param({"cost.runUsd": "<100"}, {"cost": None}, False, id="comparison on absent"),
        pytest.param({"hook": "toolCallRequest"}, {"hook": "toolCallRequest"}, True, id="one-segment path"),
        pytest.param({"hook": "toolCallRequest"}, {"hook": None}, False, id="one-segment null"),
        pytest.param(
            {"mcpResult.injectionScan.hit": True},
            {"mcpResult": {"injectionScan": {"hit": True}}},
            True,
            id="three segments",
        ),
        pytest.param(
            {"mcpResult.injectionScan.hit": True},
            {"mcpResult": {"injectionScan": None}},
            False,
            id="three, null",
        ),
        pytest.param(
            {'agent.labels["app.kubernetes.io/name"]': "triage"},
            {"agent": {"labels": {"app.kubernetes.io/name": "triage"}}},
            True,
            id="bracketed key with dots",
        ),
        pytest.param(
            {"payload.inputs.to": "a@b.c"},
            {"payload": {"inputs": {"to": "a@b.c"}}},
            True,
            id="open payload path",
        ),
        pytest.param(
            {"tool.name": "x"},
            types.MappingProxyType({"tool": types.MappingProxyType({"name": "x"})}),
            True,
            id="non-dict mappings",
        ),
        pytest.param(
            {"tool.name": "x", "tool.sideEffect": "financial"},
            {"tool": {"name": "x", "sideEffect": "financial"}},
            True,
            id="two clauses both match",
        ),
        pytest.param(
            {"tool.name": "x", "tool.sideEffect": "financial"},
            {"tool": {"name": "x", "sideEffect": "read_only"}},
            False,
            id="two clauses are ANDed",
        ),
        pytest.param(
            {"tool.name": "x", "tool.type": "http", "tool.sideEffect": "financial"},
            {"tool": {"name": "x", "type": "http", "sideEffect": "financial"}},
            True,
            id="three clauses",
        ),
    ],
)
def test_structured_matchers(decide: Decide, when: dict[str, Any], context: Any, expected: bool) -> None:
    assert _matches(decide, when, context) is expected


def _provider_context(provider: Any, allowed: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"model": {"provider": provider}, "environment": {"name": "prod"}}
    if allowed is not None:
        context["environment"]["allowedProviders"] = allowed
    return context


@pytest.mark.parametrize(
    ("provider", "allowed", "expected"),
    [
        pytest.param("openai", ["openai", "anthropic"], False, id="allowlisted"),
        pytest.param("mistral", ["openai", "anthropic"], True, id="not allowlisted"),
        pytest.param("mistral", None, False, id="no allowlist allows everything"),
        pytest.param("mistral", [], True, id="empty allowlist allows nothing"),
        pytest.param(None, ["openai"], False, id="no provider in the context"),
        pytest.param(5, ["openai"], False, id="provider not a string"),
        pytest.param("openai", "openai", False, id="allowlist given as one string"),
        pytest.param("mistral", "openai", True, id="one string, other provider"),
        pytest.param("openai", {"openai": True}, True, id="malformed allowlist fails closed"),
    ],
)
def test_not_allowlisted(decide: Decide, provider: Any, allowed: Any, expected: bool) -> None:
    context = _provider_context(provider, allowed)
    assert _matches(decide, {"model.provider": "not-allowlisted"}, context) is expected
    # the same inside an any-of list, next to a plain value
    assert _matches(decide, {"model.provider": ["not-allowlisted", "unknown"]}, context) is expected
    unknown = _provider_context("unknown", allowed if allowed is not None else ["x"])
    assert _matches(decide, {"model.provider": ["not-allowlisted", "unknown"]}, unknown) is True


@pytest.mark.parametrize(
    ("when", "context", "expected"),
    [
        pytest.param(
            {"cost.runUsd": {"cel": "cost.runUsd > 1.5"}},
            {"cost": {"runUsd": 2.0}},
            True,
            id="cel under a path",
        ),
        pytest.param(
            {"cost.runUsd": {"cel": "tool.name == 'x'"}},
            {"tool": {"name": "x"}},
            False,
            id="cel under an absent path does not run",
        ),
        pytest.param(
            {"cel": "tool.name == 'x' && agent.labels.env == 'prod'"},
            {"tool": {"name": "x"}, "agent": {"labels": {"env": "prod"}}},
            True,
            id="whole-context cel",
        ),
        pytest.param({"cel": "tool.name == 'x'"}, {}, False, id="cel on an absent root does not match"),
        pytest.param(
            {"cel": "tool.name == 'x'"}, {"tool": {}}, False, id="cel on an absent field does not match"
        ),
        pytest.param(
            {"cel": "data.contains.exists(c, c == 'pii')"},
            {"data": {"contains": ["pii"]}},
            True,
            id="cel macro",
        ),
        pytest.param(
            {"tool.name": "x", "cel": "cost.runUsd > 1.0"},
            {"tool": {"name": "y"}, "cost": {"runUsd": 2.0}},
            False,
            id="structured clause and cel are ANDed",
        ),
    ],
)
def test_cel_clauses(decide: Decide, when: dict[str, Any], context: Any, expected: bool) -> None:
    assert _matches(decide, when, context) is expected
