"""Generated small fleets: every document is valid CycloneDX 1.6, and complete iff nothing is missing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joch.domain import agbom, compilation
from joch.domain.settings import OperatorSettings
from tests.unit.agbom import fleet

LEVELS = ("read_only", "local_write", "external_write", "financial", "communication", "code_execution")

tool_specs = st.lists(
    st.tuples(st.sampled_from(LEVELS), st.sampled_from((None, True, False))), min_size=0, max_size=3
)


@st.composite
def fleets(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "tools": draw(tool_specs),
        "server": draw(st.sampled_from(("none", "pinned", "unpinned", "missing"))),
        "primary": draw(st.booleans()),
        "fallback": draw(st.sampled_from(("none", "present", "missing"))),
        "allowed": draw(st.sampled_from((None, (), ("openai",), ("anthropic",), ("openai", "anthropic")))),
        "environment": draw(st.booleans()),
        "source": draw(st.sampled_from(("none", "present", "missing"))),
        "secrets": draw(st.booleans()),
    }


def _objects(spec: dict[str, Any]) -> tuple[list[Any], set[str]]:
    """The fleet, and what the document must report missing."""
    missing: set[str] = set()
    objects: list[Any] = [fleet.adapter(), fleet.team()]
    fallback = () if spec["fallback"] == "none" else ("anthropic:backup",)
    objects.append(fleet.route("openai:big", *fallback))
    if spec["primary"]:
        objects.append(fleet.model("big", "openai"))
    else:
        missing.add("Model team-a/big")
    if spec["fallback"] == "present":
        objects.append(fleet.model("backup", "anthropic"))
    elif spec["fallback"] == "missing":
        missing.add("Model team-a/backup")
    names = [f"t{i}" for i in range(len(spec["tools"]))]
    objects.extend(
        fleet.tool(name, level, approval=approval)
        for name, (level, approval) in zip(names, spec["tools"], strict=True)
    )
    servers: list[str] = []
    if spec["server"] != "none":
        servers.append("github")
        if spec["server"] == "missing":
            missing.add("MCPServer team-a/github")
        else:
            pinned = "1.0.0" if spec["server"] == "pinned" else None
            objects.append(fleet.mcp_server("github", pinned=pinned, discovered=["gh-a"]))
    rags: list[str] = []
    if spec["source"] != "none":
        rags.append("docs")
        objects.append(fleet.rag("docs", "handbook"))
        if spec["source"] == "present":
            objects.append(fleet.knowledge_source("handbook"))
        else:
            missing.add("KnowledgeSource team-a/handbook")
    if spec["environment"]:
        objects.append(fleet.environment("prod", spec["allowed"]))
    objects.append(fleet.agent(tools=names, mcp_servers=servers, rags=rags))
    return objects, missing


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_every_generated_document_is_valid_and_honest(spec: dict[str, Any]) -> None:
    objects, missing = _objects(spec)
    catalog = fleet.catalog(objects)
    op_settings = OperatorSettings()
    gathered = compilation.gather(catalog.agents()[0], catalog, op_settings)
    compiled = compilation.compile_agent(gathered, op_settings)
    content = agbom.describe(
        gathered,
        compiled,
        agent_uid=fleet.UID,
        options=agbom.Options(secrets=spec["secrets"]),
        lookup=catalog,
        tool_version=fleet.TOOL_VERSION,
    )
    text = agbom.render(content, generation=3, timestamp=fleet.TIMESTAMP)
    fleet.assert_valid(text)

    assert set(content.missing) == missing
    assert content.complete == (not missing)
    doc = fleet.document(content, generation=3)
    assert doc["compositions"][0]["aggregate"] == ("complete" if not missing else "incomplete")

    expected: set[tuple[str, str]] = set()
    for entry in compiled.manifest["spec"]["tools"]:
        if entry["sideEffect"] in agbom.RISKY_SIDE_EFFECTS and not entry["requiresApproval"]:
            expected.add(("Tool", f"team-a/{entry['name']}"))
    if spec["server"] == "unpinned":
        expected.add(("MCPServer", "team-a/github"))
    if spec["environment"] and spec["allowed"] is not None:
        providers = {"openai"} | ({"anthropic"} if spec["fallback"] != "none" else set())
        expected.update(
            ("Model", f"{p}:{'big' if p == 'openai' else 'backup'}") for p in providers - set(spec["allowed"])
        )
    assert {(r.kind, r.name) for r in content.high_risk} == expected
    assert list(content.high_risk) == sorted(content.high_risk, key=lambda r: (r.kind, r.name))

    if not spec["secrets"]:
        assert "-key" not in text
        assert "github-token" not in text
