"""The in-memory Catalog (the Lookup twin) and the small value types around it.

Cases: objects without name or namespace and duplicates are refused; cluster-scoped lookups ignore a
namespace; iteration is sorted; agents() by namespace; environment(); team_for_namespace picks the
first Team by name; namespace labels replace; ObjectKey string and order; MissingRef and Problem text;
canonical_yaml falls back to PyYAML for values its fast path does not handle; MCP schemaDrift reaches
preflight.
"""

from __future__ import annotations

import pytest

from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.tool import Tool
from joch.domain import compilation
from joch.domain.compilation import canonical
from joch.domain.compilation.resolve import MissingRef
from tests.unit.compilation import factories as f


def test_refuses_objects_without_name_or_namespace_and_duplicates() -> None:
    cat = compilation.Catalog()
    nameless = f.tool()
    nameless.metadata.name = None
    with pytest.raises(compilation.CatalogError, match=r"Tool without metadata\.name"):
        cat.add(nameless)
    homeless = f.tool()
    homeless.metadata.namespace = None
    with pytest.raises(compilation.CatalogError, match=r"Tool/search has no metadata\.namespace"):
        cat.add(homeless)
    cat.add(f.tool())
    with pytest.raises(compilation.CatalogError, match="Tool/team-a/search is defined twice"):
        cat.add(f.tool())


def test_lookups_iteration_and_conveniences() -> None:
    objects = [*f.world(), f.agent("other", "team-b"), f.environment("prod"), f.team("b", namespaces=[f.NS])]
    cat = f.catalog(f.shuffled(objects, 1), namespace_labels={f.NS: {"a": "1"}})
    assert len(cat) == len(objects)
    keys = [compilation.key_of(obj).sort_key() for obj in cat]
    assert keys == sorted(keys)
    assert cat.get(Environment, "ignored", "prod") is not None
    assert cat.get(Tool, f.NS, "nope") is None
    assert cat.get(Environment, None, "search") is None
    assert cat.environment("prod") is not None
    assert [a.metadata.name for a in cat.agents("team-b")] == ["other"]
    assert [a.metadata.name for a in cat.agents()] == ["triage", "other"]
    team = cat.team_for_namespace(f.NS)
    assert team is not None
    assert team.metadata.name == "b"
    assert cat.team_for_namespace("nobody") is None
    cat.set_namespace_labels(f.NS, {"b": "2"})
    assert cat.namespace_labels(f.NS) == {"b": "2"}
    assert cat.namespace_labels("unknown") == {}


def test_object_key_text_and_order() -> None:
    cluster = compilation.ObjectKey("Environment", None, "prod")
    namespaced = compilation.ObjectKey("Tool", "ns", "t")
    assert (str(cluster), str(namespaced)) == ("Environment/prod", "Tool/ns/t")
    assert sorted([namespaced, cluster], key=compilation.ObjectKey.sort_key) == [cluster, namespaced]


def test_missing_ref_and_problem_text() -> None:
    ref = MissingRef("Tool", "ns", "t", "spec.tools[0]")
    assert ref.key == compilation.ObjectKey("Tool", "ns", "t")
    assert ref.message == "Tool ns/t not found"
    assert MissingRef("Team", None, "x", "p", "why").message == "Team x not found (why)"
    assert str(compilation.Problem("MissingReference", "spec.tools[0]", "gone")) == "spec.tools[0]: gone"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"k": (1, 2)}, id="tuple is left to PyYAML (which refuses it)"),
        pytest.param({"k": {1: "a", "b": 2}}, id="keys that do not sort"),
    ],
)
def test_canonical_yaml_fallback(value: object) -> None:
    try:
        expected = canonical.pyyaml_dump(value)
    except Exception as exc:
        with pytest.raises(type(exc)):
            canonical.canonical_yaml(value)
    else:
        assert canonical.canonical_yaml(value) == expected


def test_scalar_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(canonical, "_MAX_CACHED", 2)
    monkeypatch.setattr(canonical, "_scalars", {})
    value = {"a": "x", "b": "y", "c": "z"}
    assert canonical.canonical_yaml(value) == canonical.pyyaml_dump(value)
    assert len(canonical._scalars) <= 2


def test_schema_drift_reaches_preflight() -> None:
    server = f.mcp_server()
    assert server.status is not None
    server.status.schema_drift = True
    drift = f.policy(
        "drift",
        applies_to={"agents": {"selector": {}}},
        rules=[{"when": {"mcpServer.schemaDrift": True}, "action": {"deny": True, "reason": "drifted"}}],
    )
    compiled = f.compile_one([*f.replace(f.world(), server), drift])
    assert f.problems(compiled) == [("PolicyDenied", "spec.mcpServers[0]")]
