"""The decision request and the decision-context shape check (joch.decision_service.requests).

Cases: accepted shapes (context only; explicit policies as strings and objects; preflight; null parts
of the context mean absent; open parts take anything); every rejected shape names its field: a body
that is not an object, unknown top-level fields, a missing or non-object context, unknown context
fields at both levels, objects where scalars belong and the reverse, label values that are not
strings, allowedProviders items, preflight not a boolean, malformed policy references, too many
policies, a bare policy name without context.agent.namespace, nesting deeper than MAX_DEPTH; several
problems are all reported at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.decision_service import requests

AGENT = {"name": "triage", "namespace": "support", "labels": {"team": "support-platform"}}


def fields(body: Any) -> list[str]:
    with pytest.raises(requests.RequestError) as caught:
        requests.parse_request(body)
    return [problem.field for problem in caught.value.problems]


def test_a_context_alone_is_a_request() -> None:
    parsed = requests.parse_request({"context": {"agent": AGENT, "tool": {"name": "shell.exec"}}})
    assert parsed.context["tool"] == {"name": "shell.exec"}
    assert (parsed.policies, parsed.preflight) == ((), False)


def test_explicit_policies_as_names_and_objects() -> None:
    parsed = requests.parse_request(
        {
            "context": {"agent": AGENT},
            "policies": ["caps", "joch-system/fleet", {"name": "x"}, {"name": "y", "namespace": "other"}],
            "preflight": True,
        }
    )
    assert [str(ref) for ref in parsed.policies] == ["caps", "joch-system/fleet", "x", "other/y"]
    assert [ref.resolve("support") for ref in parsed.policies] == [
        ("support", "caps"),
        ("joch-system", "fleet"),
        ("support", "x"),
        ("other", "y"),
    ]
    assert parsed.preflight is True


def test_null_means_absent_and_open_parts_take_anything() -> None:
    context = {
        "agent": {"name": None, "labels": None},
        "tool": None,
        "payload": {"deep": [{"any": {"thing": [1, 2.5, None, True]}}]},
        "framework": {"name": "openai-agents-sdk", "extra": [1]},
        "tenant": "acme",
        "cost": {"runUsd": 3.5},
        "data": {"contains": ["pii", "secrets"]},
        "mcpResult": {"injectionScan": {"hit": False}},
    }
    assert requests.check_context(context) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param([], ["(body)"], id="body is a list"),
        pytest.param("x", ["(body)"], id="body is a string"),
        pytest.param({"context": {}, "contxt": {}}, ["contxt"], id="unknown top-level field"),
        pytest.param({}, ["context"], id="context missing"),
        pytest.param({"context": None}, ["context"], id="context null"),
        pytest.param({"context": [1]}, ["context"], id="context not an object"),
        pytest.param({"context": {"tools": {}}}, ["context.tools"], id="unknown context root"),
        pytest.param({"context": {"tool": {"nme": "x"}}}, ["context.tool.nme"], id="unknown nested field"),
        pytest.param({"context": {"tool": "shell"}}, ["context.tool"], id="scalar where an object belongs"),
        pytest.param({"context": {"tool": {"name": {"a": 1}}}}, ["context.tool.name"], id="object as value"),
        pytest.param({"context": {"data": {"contains": "pii"}}}, ["context.data.contains"], id="not a list"),
        pytest.param(
            {"context": {"data": {"contains": [{"a": 1}]}}},
            ["context.data.contains[0]"],
            id="list of objects",
        ),
        pytest.param(
            {"context": {"agent": {"labels": {"team": 5}}}}, ["context.agent.labels.team"], id="label value"
        ),
        pytest.param({"context": {"agent": {"labels": ["a"]}}}, ["context.agent.labels"], id="labels list"),
        pytest.param({"context": {"agent": {"namespace": 3}}}, ["context.agent.namespace"], id="namespace"),
        pytest.param({"context": {"environment": {"name": True}}}, ["context.environment.name"], id="env"),
        pytest.param(
            {"context": {"environment": {"allowedProviders": ["openai", 1]}}},
            ["context.environment.allowedProviders[1]"],
            id="allowedProviders item",
        ),
        pytest.param({"context": {"cost": {"runUsd": -1}}}, ["context.cost.runUsd"], id="negative cost"),
        pytest.param({"context": {"cost": {"runUsd": "2"}}}, ["context.cost.runUsd"], id="cost as string"),
        pytest.param({"context": {"cost": {"runUsd": True}}}, ["context.cost.runUsd"], id="cost boolean"),
        pytest.param(
            {"context": {"cost": {"runUsd": float("inf")}}}, ["context.cost.runUsd"], id="cost 1e999"
        ),
        pytest.param({"context": {"cost": {"runUsd": float("nan")}}}, ["context.cost.runUsd"], id="cost NaN"),
        pytest.param({"context": {"execution": {"name": 3}}}, ["context.execution.name"], id="run number"),
        pytest.param(
            {"context": {"execution": {"name": "Run_1"}}}, ["context.execution.name"], id="run not a name"
        ),
        pytest.param(
            {"context": {"execution": {"name": "a\n"}}}, ["context.execution.name"], id="run newline"
        ),
        pytest.param({"context": {"execution": {"uid": "x"}}}, ["context.execution.uid"], id="run field"),
        pytest.param({"context": {"execution": "run-1"}}, ["context.execution"], id="run not an object"),
        pytest.param({"context": {}, "preflight": "yes"}, ["preflight"], id="preflight not a boolean"),
        pytest.param({"context": {}, "policies": "caps"}, ["policies"], id="policies not a list"),
        pytest.param({"context": {"agent": AGENT}, "policies": [1]}, ["policies[0]"], id="policy number"),
        pytest.param({"context": {"agent": AGENT}, "policies": ["a/b/c"]}, ["policies[0]"], id="a/b/c"),
        pytest.param(
            {"context": {"agent": AGENT}, "policies": ["/x"]}, ["policies[0]"], id="empty namespace"
        ),
        pytest.param({"context": {"agent": AGENT}, "policies": [""]}, ["policies[0]"], id="empty name"),
        pytest.param(
            {"context": {"agent": AGENT}, "policies": [{"name": "x", "ns": "y"}]},
            ["policies[0].ns"],
            id="unknown policy field",
        ),
        pytest.param(
            {"context": {"agent": AGENT}, "policies": [{"namespace": "y"}]},
            ["policies[0].name"],
            id="policy without name",
        ),
        pytest.param(
            {"context": {"agent": AGENT}, "policies": [{"name": "x", "namespace": ""}]},
            ["policies[0].namespace"],
            id="empty policy namespace",
        ),
        pytest.param({"context": {}, "policies": ["caps"]}, ["policies"], id="bare name needs a namespace"),
        pytest.param(
            {"context": {"agent": AGENT}, "policies": ["p"] * (requests.MAX_POLICIES + 1)},
            ["policies"],
            id="too many policies",
        ),
    ],
)
def test_rejected_requests_name_the_field(body: Any, expected: list[str]) -> None:
    assert fields(body) == expected


def test_a_call_with_its_cost_and_execution_is_accepted() -> None:
    context = {"agent": AGENT, "cost": {"runUsd": 0}, "execution": {"name": "run-1.a"}}
    assert requests.check_context(context) == []
    assert requests.check_context({"cost": {"runUsd": 2.5}, "execution": None}) == []


def test_a_bad_cost_names_the_field_and_the_value() -> None:
    (problem,) = requests.check_context({"cost": {"runUsd": -2}})
    assert str(problem) == "context.cost.runUsd: must be a finite number of USD, at least 0, not -2"
    (problem,) = requests.check_context({"cost": {"runUsd": "2"}})
    assert problem.message.endswith("not a string")


def test_every_problem_is_reported_at_once() -> None:
    body = {"context": {"tools": 1, "agent": {"labels": {"a": 1}}}, "preflight": 1, "policies": [2]}
    assert sorted(fields(body)) == ["context.agent.labels.a", "context.tools", "policies[0]", "preflight"]


def test_deep_nesting_is_refused_without_recursing() -> None:
    payload: Any = "leaf"
    for _ in range(requests.MAX_DEPTH + 5):
        payload = {"x": payload}
    assert fields({"context": {"payload": payload}}) == ["context.payload"]
    assert [p.field for p in requests.check_context({"tenant": [payload]})] == ["context.tenant"]
    shallow: Any = "leaf"
    for _ in range(requests.MAX_DEPTH - 1):
        shallow = {"x": shallow}
    assert requests.check_context({"payload": shallow}) == []


def test_request_error_message_lists_problems() -> None:
    with pytest.raises(requests.RequestError, match=r"context\.tools: unknown field \(known: agent, "):
        requests.parse_request({"context": {"tools": {}}})
    with pytest.raises(ValueError, match="at least one"):
        requests.RequestError([])
