"""Capability checks against the FrameworkAdapter, route requirements per model, tool safety floors.

Cases: each Agent feature without its adapter capability (tools, MCP servers, route, handoffs, route
streaming and structuredOutput requirements), an adapter without any capabilities block, features not
used need nothing; every (model, requirement) shortfall for primary and fallback models, one problem each,
and the message names the model and the requirement; allowedAgents / deniedNamespaces of a Tool.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.compilation import factories as f


@pytest.mark.parametrize(
    ("missing", "path"),
    [
        pytest.param("toolBinding", "spec.tools", id="tools need toolBinding"),
        pytest.param("mcpBinding", "spec.mcpServers", id="mcp servers need mcpBinding"),
        pytest.param("modelRouterBinding", "spec.modelRoute", id="a route needs modelRouterBinding"),
        pytest.param("a2a", "spec.handoffs.allowedAgents", id="handoffs need a2a"),
        pytest.param("streaming", "spec.modelRoute.routeRef", id="route requiring streaming"),
        pytest.param("structuredOutput", "spec.modelRoute.routeRef", id="route requiring structured output"),
    ],
)
def test_capability_mismatch(missing: str, path: str) -> None:
    capabilities = {**f.ALL_CAPABILITIES, missing: False}
    objects = f.replace(
        f.world(),
        f.adapter(capabilities=capabilities),
        f.agent(handoffs={"allowedAgents": ["escalation"]}),
        f.route(requirements={"streaming": True, "structuredOutput": True}),
    )
    compiled = f.compile_one(objects)
    assert f.problems(compiled) == [("CapabilityMismatch", path)]
    assert compiled.problems[0].message.startswith(
        f"FrameworkAdapter py-sdk lacks capability {missing}, needed because"
    )


def test_adapter_without_capabilities_lacks_everything_the_agent_uses() -> None:
    adapter = f.adapter()
    adapter.spec.capabilities = None
    compiled = f.compile_one(f.replace(f.world(), adapter))
    assert [p.path for p in compiled.problems] == ["spec.tools", "spec.mcpServers", "spec.modelRoute"]


def test_unused_features_need_no_capability() -> None:
    agent = f.agent(tools=None, mcpServers=None, modelRoute=None)
    compiled = f.compile_one(f.replace(f.world(), agent, f.adapter(capabilities={})))
    assert compiled.ok, compiled.problems
    assert "modelRoute" not in compiled.manifest["spec"]
    assert "modelRouterUrl" not in compiled.manifest["spec"]


@pytest.mark.parametrize(
    ("requirements", "model_changes", "expected"),
    [
        pytest.param(
            {"toolCalling": True}, {"capabilities": {"text": True}}, ["toolCalling"], id="toolCalling"
        ),
        pytest.param(
            {"structuredOutput": True},
            {"capabilities": {"toolCalling": True}},
            ["structuredOutput"],
            id="structured",
        ),
        pytest.param({"streaming": True}, {"capabilities": {}}, ["streaming"], id="streaming"),
        pytest.param({"contextWindowMin": 300_000}, {}, ["contextWindowMin"], id="context window too small"),
        pytest.param(
            {"contextWindowMin": 1000}, {"context_window": None}, ["contextWindowMin"], id="window unknown"
        ),
        pytest.param({"contextWindowMin": 200_000}, {}, [], id="window exactly enough"),
        pytest.param(
            {"toolCalling": True, "streaming": True, "contextWindowMin": 300_000},
            {"capabilities": {}},
            ["toolCalling", "streaming", "contextWindowMin"],
            id="several shortfalls, one problem each",
        ),
    ],
)
def test_fallback_model_requirements(
    requirements: dict[str, Any], model_changes: dict[str, Any], expected: list[str]
) -> None:
    primary = f.model("big", "openai", context_window=1_000_000)
    objects = f.replace(
        f.world(),
        primary,
        f.route(requirements=requirements),
        f.model("backup", "anthropic", **model_changes),
    )
    compiled = f.compile_one(objects)
    assert [p.reason for p in compiled.problems] == ["RequirementUnmet"] * len(expected)
    for problem, requirement in zip(compiled.problems, expected, strict=True):
        assert problem.path == "ModelRoute/team-a/default: spec.strategy.fallback[0]"
        assert (
            f"fallback model anthropic:backup (Model team-a/backup) does not meet requirement {requirement}"
            in (problem.message)
        )


def test_every_model_of_the_route_is_checked() -> None:
    objects = f.replace(
        f.world(),
        f.route(fallback=["anthropic:backup", "openai:small"], requirements={"toolCalling": True}),
        f.model("big", "openai", capabilities={}),
        f.model("small", "openai", capabilities={}),
    )
    compiled = f.compile_one(objects)
    assert f.problems(compiled) == [
        ("RequirementUnmet", "ModelRoute/team-a/default: spec.strategy.primary"),
        ("RequirementUnmet", "ModelRoute/team-a/default: spec.strategy.fallback[1]"),
    ]
    assert "primary model openai:big" in compiled.problems[0].message
    assert "capabilities.toolCalling is not true" in compiled.problems[0].message


@pytest.mark.parametrize(
    ("safety", "expected"),
    [
        pytest.param({"allowedAgents": ["triage"]}, [], id="allowed"),
        pytest.param(
            {"allowedAgents": ["someone-else"]}, [("ToolNotAllowed", "spec.tools[0]")], id="not allowed"
        ),
        pytest.param(
            {"deniedNamespaces": [f.NS]}, [("ToolNotAllowed", "spec.tools[0]")], id="namespace denied"
        ),
        pytest.param({"deniedNamespaces": ["other"]}, [], id="other namespace denied"),
    ],
)
def test_tool_safety_floor(safety: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    compiled = f.compile_one(f.replace(f.world(), f.tool("search", safety=safety)))
    assert f.problems(compiled) == expected


def test_missing_model_is_a_missing_reference_not_a_requirement_problem() -> None:
    objects = f.without(f.replace(f.world(), f.route(requirements={"toolCalling": True})), "Model", "backup")
    compiled = f.compile_one(objects)
    assert f.problems(compiled) == [
        ("MissingReference", "ModelRoute/team-a/default: spec.strategy.fallback[0]")
    ]
