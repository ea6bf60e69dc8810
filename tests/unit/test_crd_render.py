"""Rendered CRDs are structural, documented and named as decisions D1, D2 and D4 say.

Cases: for every kind - no $ref, every schema node typed (or preserve-unknown), every property described,
names/categories/scope, printer columns start with Ready and end with Age; across kinds - unique short
names, built-in clashes avoided; the files in crds/ are exactly what render() produces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from joch.api import v1alpha1
from joch.manifests import crds, files
from tests import helpers

KINDS = v1alpha1.KINDS


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


def _schema(kind: type[v1alpha1.meta.Resource]) -> dict[str, Any]:
    crd = crds.render(kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_schema_is_structural_and_documented(kind: type[v1alpha1.meta.Resource]) -> None:
    schema = _schema(kind)
    assert "$ref" not in json.dumps(schema)
    assert "anyOf" not in json.dumps(schema)
    for path, node in _nodes(schema):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        assert node.get("uniqueItems") is not True, f"{path}: uniqueItems is forbidden in CRDs"
    for path, node in _nodes(schema["properties"]["spec"], ".spec"):
        if path != ".spec" and not path.endswith("[]") and not path.endswith(".*"):
            assert node.get("description"), f"{kind.crd.kind}{path} has no description (kubectl explain)"
    for path, node in _nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message"), f"{path}: CEL rule without a message: {rule}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_names_scope_and_columns(kind: type[v1alpha1.meta.Resource]) -> None:
    crd = crds.render(kind)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["names"]["categories"] == ["joch"]
    assert spec["names"]["shortNames"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age"
    assert len(columns) >= 3, columns
    assert version["name"] == "v1alpha1"


def test_groups_and_scopes_follow_the_decisions() -> None:
    info = {k.crd.kind: k.crd for k in KINDS}
    assert len(info) == 25
    cluster = {kind for kind, i in info.items() if i.scope == "Cluster"}
    assert cluster == {"FrameworkAdapter", "Environment", "Team"}
    groups = {kind: i.group for kind, i in info.items()}
    assert {k for k, g in groups.items() if g == "joch.dev"} == {"Agent", "FrameworkAdapter", "Policy"}
    assert {k for k, g in groups.items() if g == "model.joch.dev"} == {"Model", "ModelRoute"}
    assert {k for k, g in groups.items() if g == "tools.joch.dev"} == {"Tool", "MCPServer"}
    assert {k for k, g in groups.items() if g == "memory.joch.dev"} == {"Memory", "RAG", "KnowledgeSource"}
    assert {k for k, g in groups.items() if g == "runtime.joch.dev"} == {
        "Execution",
        "ToolCall",
        "Handoff",
        "Approval",
        "Conversation",
        "StateCheckpoint",
    }


def test_short_names_are_unique_and_avoid_builtin_clashes() -> None:
    seen: dict[str, str] = {}
    for kind in KINDS:
        for short in kind.crd.short_names:
            assert short not in seen, f"{short} used by {seen[short]} and {kind.crd.kind}"
            seen[short] = kind.crd.kind
    assert seen["jdeploy"] == "Deployment"
    assert seen["jsecret"] == "Secret"
    # Short names of built-in kinds that kubectl users type every day.
    assert (
        not {"deploy", "po", "svc", "cm", "ns", "sa", "no", "pv", "pvc", "ing", "ds", "rs", "sts"}
        & seen.keys()
    )


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_committed_crd_matches_the_model(kind: type[v1alpha1.meta.Resource]) -> None:
    path = helpers.CRDS / f"{kind.crd.group}_{kind.crd.plural}.yaml"
    assert path.read_text() == files.dump_yaml(crds.render(kind)), "run `make manifests`"
    assert yaml.safe_load(path.read_text().removeprefix(files.HEADER))["kind"] == "CustomResourceDefinition"


def test_defaults_render_as_schema_defaults() -> None:
    spec = _schema(v1alpha1.Agent)["properties"]["spec"]
    observability = spec["properties"]["observability"]
    assert observability["default"] == {}
    assert observability["properties"]["tracing"]["default"] == "enabled"


def test_union_is_refused() -> None:
    import pydantic

    class Bad(pydantic.BaseModel):
        value: int | str

    with pytest.raises(crds.SchemaError, match="unions are not structural"):
        crds.crd_schema(Bad)
