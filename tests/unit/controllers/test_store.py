"""Store: parsing raw objects, stale events, indexes behind the Lookup protocol, fingerprints.

Cases: managedFields and last-applied annotations are dropped; Agents are kept as JSON and parsed on
demand; a referenced object the model rejects is kept with its error and counts as absent; an older
resourceVersion never replaces a newer one; policies_in, team_for_namespace (first by name) and Agents
by namespace follow upserts and removals; fingerprints change with generation and uid (and Agent
labels, MCPServer trust score), not with status or rv. Evals (parsed) and Approvals (JSON, parsed on
demand) keep their status for admission's promotion gates; Approvals are listed by label per namespace,
and a World over the store sees both.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

from joch.api import v1alpha1
from joch.api.v1alpha1.approval import Approval
from joch.api.v1alpha1.eval import Eval
from joch.domain.admission import WATCHED_KIND_NAMES, LabelIndex, World
from joch.domain.reconcile.cache import WATCHED_KINDS, Store, parse_entry
from tests import helpers
from tests.unit.admission import factories as f


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


def _live(doc: dict[str, Any], rv: str = "10") -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out["metadata"].update(uid=f"uid-{out['metadata']['name']}", resourceVersion=rv)
    return out


def test_the_store_holds_what_admission_knows() -> None:
    assert set(WATCHED_KINDS) - WATCHED_KIND_NAMES == {
        "AgBOM",  # the AgBOM service's
        "KnowledgeSource",
        "Execution",  # the executions service's
        "ToolCall",
        "Deployment",
        "Budget",  # the budgets service's
    }
    assert set(WATCHED_KINDS) >= WATCHED_KIND_NAMES
    assert isinstance(Store(), LabelIndex)


def test_evals_and_approvals_keep_their_status() -> None:
    store = Store()
    evaluation = parse_entry(Eval, _live(f.eval_(phase="Failed")))
    assert evaluation.obj is not None, "Evals are parsed"
    store.upsert(evaluation)
    found = store.get(Eval, "support", "triage-quality")
    assert found is not None
    assert found.status is not None
    assert found.status.phase == "Failed"

    approval = parse_entry(Approval, _live(f.approval()))
    assert approval.obj is None, "Approvals are kept as JSON and parsed when read"
    store.upsert(approval)
    decided = store.get(Approval, "support", "promote-triage")
    assert decided is not None
    assert decided.status is not None
    assert decided.status.phase == "Approved"

    passed = parse_entry(Eval, _live(f.eval_(), rv="11"))
    assert passed.fingerprint() == evaluation.fingerprint(), "a status change recompiles nothing"
    store.upsert(passed)
    updated = store.get(Eval, "support", "triage-quality")
    assert updated is not None
    assert updated.status is not None
    assert updated.status.phase == "Passed", "but the store holds the new status"


def test_approvals_are_listed_by_label_within_a_namespace() -> None:
    store = Store()
    elsewhere = f.approval("c")
    elsewhere["metadata"]["namespace"] = "other"
    for doc in (f.approval("b"), f.approval("a"), f.approval("x", deployment="other"), elsewhere):
        store.upsert(parse_entry(Approval, _live(doc)))
    wanted = {"joch.dev/deployment": "triage"}
    assert [a.metadata.name for a in store.labelled(Approval, "support", wanted)] == ["a", "b"]
    assert [a.metadata.name for a in store.labelled(Approval, "other", wanted)] == ["c"]
    assert len(store.labelled(Approval, "support", {})) == 3
    store.remove("Approval", "support", "a")
    assert [a.metadata.name for a in store.labelled(Approval, "support", wanted)] == ["b"]
    relabelled = f.approval("b", deployment="moved")
    store.upsert(parse_entry(Approval, _live(relabelled, rv="12")))
    assert store.labelled(Approval, "support", wanted) == []
    assert [e.metadata.name for e in store.labelled(Eval, "support", {})] == []


def test_a_world_over_the_store_sees_the_gates() -> None:
    store = Store()
    store.upsert(parse_entry(Eval, _live(f.eval_())))
    store.upsert(parse_entry(Approval, _live(f.approval())))
    world = World(store, known_kinds=WATCHED_KIND_NAMES)
    assert world.get(Eval, "support", "triage-quality") is not None
    [approval] = world.labelled(Approval, "support", {"joch.dev/deployment": "triage"})
    assert approval.metadata.name == "promote-triage"
    hidden = world.with_overlay(f.parse(f.approval(deployment="other")))
    assert hidden.labelled(Approval, "support", {"joch.dev/deployment": "triage"}) == [], (
        "an overlaid object replaces the stored one"
    )
