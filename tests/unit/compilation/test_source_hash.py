"""spec.sourceHash (decision D7): it moves with every resolved input and with nothing else.

Cases, changes: the generation of each kind of referenced object (adapter, route, primary and fallback
model, tool, MCP server, memory, RAG, explicit / selector / environment / team policy, Environment,
Team); a uid change (delete and re-create); a missing reference appearing; the Agent spec; an MCP
server's trustScore (the manifest snapshots it).
No change: an unreferenced object's generation; a non-selecting Policy; a Model in a namespace the
route does not search; status-only and label-only changes; Agent labels that select nothing new;
operator settings (those change sha256 only).

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.model import ModelStatus
from tests.unit.compilation import factories as f


def base_world() -> list[meta.Resource]:
    return [
        *f.world(),
        f.policy("selected", applies_to={"agents": {"selector": {"matchLabels": {"team": "a"}}}}),
        f.policy("not-selected", applies_to={"agents": {"selector": {"matchLabels": {"team": "zzz"}}}}),
        f.policy("env-p"),
        f.policy("team-p"),
        f.environment("dev", policies=[{"name": "env-p"}]),
        f.team(default_policies=["team-p"]),
        f.tool("unused"),
        f.model("big", "openai", "elsewhere"),
    ]


def find(objects: list[meta.Resource], kind: str, name: str, namespace: str | None = f.NS) -> meta.Resource:
    for obj in objects:
        crd = type(obj).crd
        ns = obj.metadata.namespace if crd.scope == "Namespaced" else None
        if crd.kind == kind and obj.metadata.name == name and (crd.scope == "Cluster" or ns == namespace):
            return obj
    raise AssertionError(f"no {kind} {name}")


def changed(
    obj: meta.Resource, *, metadata: dict[str, Any] | None = None, status: Any = None
) -> meta.Resource:
    copy = obj.model_copy(deep=True)
    for key, value in (metadata or {}).items():
        setattr(copy.metadata, key, value)
    if status is not None:
        copy.status = status  # type: ignore[attr-defined]
    return copy


def bumped(obj: meta.Resource) -> meta.Resource:
    return changed(obj, metadata={"generation": (obj.metadata.generation or 1) + 1})


REFERENCED = [
    pytest.param("FrameworkAdapter", "py-sdk", id="adapter"),
    pytest.param("ModelRoute", "default", id="route"),
    pytest.param("Model", "big", id="primary model"),
    pytest.param("Model", "backup", id="fallback model"),
    pytest.param("Tool", "create-ticket", id="tool"),
    pytest.param("MCPServer", "github", id="mcp server"),
    pytest.param("Memory", "scratch", id="memory"),
    pytest.param("RAG", "docs", id="rag"),
    pytest.param("Policy", "explicit", id="explicit policy"),
    pytest.param("Policy", "selected", id="selector policy"),
    pytest.param("Policy", "env-p", id="environment policy"),
    pytest.param("Policy", "team-p", id="team policy"),
    pytest.param("Environment", "dev", id="environment"),
    pytest.param("Team", "team-a", id="team"),
]


@pytest.mark.parametrize(("kind", "name"), REFERENCED)
def test_generation_of_a_referenced_object_changes_the_source_hash(kind: str, name: str) -> None:
    objects = base_world()
    before = f.compile_one(objects)
    after = f.compile_one(f.replace(objects, bumped(find(objects, kind, name))))
    assert before.ok
    assert after.ok
    assert after.source_hash != before.source_hash
    assert after.name == before.name  # same ConfigMap, rewritten (D7)


@pytest.mark.parametrize(
    ("kind", "name", "namespace"),
    [
        pytest.param("Tool", "unused", f.NS, id="unreferenced tool"),
        pytest.param("Policy", "not-selected", f.NS, id="policy whose selector does not match"),
        pytest.param("Model", "big", "elsewhere", id="same-named model in a non-shared namespace"),
    ],
)
def test_generation_of_an_unrelated_object_does_not(kind: str, name: str, namespace: str) -> None:
    objects = base_world()
    before = f.compile_one(objects)
    after = f.compile_one(f.replace(objects, bumped(find(objects, kind, name, namespace))))
    assert after.source_hash == before.source_hash
    assert after.manifest_yaml == before.manifest_yaml


def test_recreated_object_with_a_new_uid_changes_it() -> None:
    objects = base_world()
    before = f.compile_one(objects)
    after = f.compile_one(
        f.replace(objects, changed(find(objects, "Tool", "search"), metadata={"uid": "new"}))
    )
    assert after.source_hash != before.source_hash


def test_status_and_label_only_changes_do_not_change_it() -> None:
    objects = base_world()
    before = f.compile_one(objects)
    new_model = changed(
        find(objects, "Model", "big"), status=ModelStatus(health="Degraded", latency_p50_ms=9)
    )
    new_tool = changed(find(objects, "Tool", "search"), metadata={"labels": {"owner": "someone"}})
    after = f.compile_one(f.replace(objects, new_model, new_tool))
    assert after.source_hash == before.source_hash
    assert after.sha256 == before.sha256


def test_mcp_trust_score_is_an_input_because_the_manifest_snapshots_it() -> None:
    objects = base_world()
    before = f.compile_one(objects)
    after = f.compile_one(f.replace(objects, f.mcp_server(trust_score=0.5)))
    assert after.source_hash != before.source_hash
    assert after.manifest["spec"]["mcpServers"][0]["trustScore"] == 0.5


def test_a_missing_reference_appearing_changes_it() -> None:
    objects = f.without(base_world(), "RAG", "docs")
    before = f.compile_one(objects)
    after = f.compile_one([*objects, f.rag()])
    assert not before.ok
    assert after.ok
    assert after.source_hash != before.source_hash


def test_agent_spec_changes_it_and_unrelated_agent_labels_do_not() -> None:
    objects = base_world()
    before = f.compile_one(objects)
    spec_change = f.compile_one(f.replace(objects, f.agent(budgets={"tokenLimitPerRun": 5})))
    labels_change = f.compile_one(f.replace(objects, f.agent(labels={"team": "a", "owner": "x"})))
    assert spec_change.source_hash != before.source_hash
    assert labels_change.source_hash == before.source_hash


def test_settings_change_the_manifest_but_not_the_source_hash() -> None:
    objects = base_world()
    before = f.compile_one(objects)
    after = f.compile_one(objects, settings=f.with_settings(trace_url="http://elsewhere"))
    assert after.source_hash == before.source_hash
    assert after.sha256 != before.sha256
    assert after.manifest["spec"]["sourceHash"] == after.source_hash
