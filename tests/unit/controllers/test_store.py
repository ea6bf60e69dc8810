"""Store: parsing raw objects, stale events, indexes behind the Lookup protocol, fingerprints.

Cases: managedFields and last-applied annotations are dropped; Agents are kept as JSON and parsed on
demand; a referenced object the model rejects is kept with its error and counts as absent; an older
resourceVersion never replaces a newer one; policies_in, team_for_namespace (first by name) and Agents
by namespace follow upserts and removals; fingerprints change with generation and uid (and Agent
labels, MCPServer trust score), not with status or rv.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from joch.api import v1alpha1
from joch.controllers.store import Store, parse_entry
from tests import helpers


def example(kind: str, name: str | None = None) -> dict[str, Any]:
    doc = next(
        d for d in helpers.example_documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])
    )
    doc = copy.deepcopy(doc)
    doc["metadata"].update(
        {"uid": f"uid-{doc['metadata']['name']}", "generation": 1, "resourceVersion": "10"}
    )
    return doc


def test_parsing_drops_bulky_metadata_and_keeps_errors() -> None:
    doc = example("Agent")
    doc["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    doc["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "keep": "me",
    }
    doc["status"] = {"phase": "Ready", "somethingNew": 1}
    entry = parse_entry(v1alpha1.Agent, doc)
    assert entry.obj is None, "Agents are kept as JSON and parsed when compiled"
    agent = entry.load()
    assert agent.metadata.annotations == {"keep": "me"}
    assert "managedFields" not in (agent.metadata.model_extra or {})
    assert entry.status == {"phase": "Ready", "somethingNew": 1}, "status is kept raw, whatever it holds"

    broken = example("Agent")
    broken["spec"]["framework"] = {}
    bad = parse_entry(v1alpha1.Agent, broken)
    with pytest.raises(pydantic.ValidationError, match="adapterRef"):
        bad.load()
    store = Store()
    store.upsert(bad)
    assert store.get(v1alpha1.Agent, "support", "support-triage") is None

    broken_model = example("Model", "gpt-5-thinking")
    broken_model["spec"]["provider"] = 42
    rejected = parse_entry(v1alpha1.Model, broken_model)
    assert rejected.obj is None
    assert "spec.provider" in (rejected.error or "")


def test_stale_events_are_ignored() -> None:
    store = Store()
    newer = example("Model", "gpt-5-thinking")
    newer["metadata"]["resourceVersion"] = "20"
    store.upsert(parse_entry(v1alpha1.Model, newer))
    older = parse_entry(v1alpha1.Model, example("Model", "gpt-5-thinking"))
    kept = store.upsert(older)
    assert kept is not None
    assert kept.resource_version == "20"
    assert store.entry("Model", "support", "gpt-5-thinking") is kept


def test_lookup_indexes_follow_changes() -> None:
    store = Store()
    for kind, model in (("Policy", v1alpha1.Policy), ("Team", v1alpha1.Team), ("Agent", v1alpha1.Agent)):
        for doc in helpers.example_documents():
            if doc["kind"] == kind:
                body = copy.deepcopy(doc)
                body["metadata"].update({"uid": "u-" + body["metadata"]["name"], "resourceVersion": "1"})
                store.upsert(parse_entry(model, body))
    assert sorted(p.metadata.name or "" for p in store.policies_in("support")) == [
        "external-send-requires-approval",
        "no-customer-data-exfiltration",
    ]
    team = store.team_for_namespace("support")
    assert team is not None
    assert team.metadata.name == "support-platform"
    earlier = example("Team")
    earlier["metadata"]["name"] = "a-team"
    store.upsert(parse_entry(v1alpha1.Team, earlier))
    first = store.team_for_namespace("support")
    assert first is not None
    assert first.metadata.name == "a-team", "the first by name wins"
    store.remove("Team", None, "a-team")
    store.remove("Policy", "support", "no-customer-data-exfiltration")
    assert [p.metadata.name for p in store.policies_in("support")] == ["external-send-requires-approval"]
    assert store.agent_names("support") == ["support-triage"]
    store.remove("Agent", "support", "support-triage")
    assert store.agent_names("support") == []


def test_fingerprints() -> None:
    base = parse_entry(v1alpha1.Agent, example("Agent"))
    status_only = example("Agent")
    status_only["status"] = {"phase": "Ready"}
    status_only["metadata"]["resourceVersion"] = "11"
    assert parse_entry(v1alpha1.Agent, status_only).fingerprint() == base.fingerprint()
    relabelled = example("Agent")
    relabelled["metadata"]["labels"]["owner"] = "bo"
    assert parse_entry(v1alpha1.Agent, relabelled).fingerprint() != base.fingerprint()

    server = example("MCPServer")
    trusted = copy.deepcopy(server)
    trusted["status"] = {"trustScore": 0.9}
    assert (
        parse_entry(v1alpha1.MCPServer, trusted).fingerprint()
        != parse_entry(v1alpha1.MCPServer, server).fingerprint()
    )
    model = example("Model", "gpt-5-thinking")
    relabelled_model = copy.deepcopy(model)
    relabelled_model["metadata"]["labels"] = {"x": "y"}
    assert (
        parse_entry(v1alpha1.Model, relabelled_model).fingerprint()
        == parse_entry(v1alpha1.Model, model).fingerprint()
    )
