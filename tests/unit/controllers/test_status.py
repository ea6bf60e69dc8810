"""Desired statuses (pure): kstatus conditions per outcome, transition times, minimal patches.

Cases: compiled / missing reference / capability mismatch / policy denied outcomes map to the
documented phase and conditions; lastTransitionTime is kept while a condition's status is unchanged and
reset when it flips; conditions owned by other writers survive; status_patch returns None when nothing
differs, only the differing keys otherwise, and nulls owned keys that disappeared; every referenced
kind's status validates against its model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from joch.api import v1alpha1
from joch.domain import compilation
from joch.domain.compilation.problems import Problem
from joch.domain.reconcile import status
from joch.domain.settings import OperatorSettings
from tests import helpers

T0 = "2026-11-27T10:00:00Z"
T1 = "2026-11-27T11:00:00Z"


def compiled_example() -> compilation.Compiled:
    catalog = compilation.Catalog()
    for doc in helpers.example_documents():
        if doc["kind"] == "Namespace":
            catalog.set_namespace_labels(doc["metadata"]["name"], doc["metadata"]["labels"])
            continue
        kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
        if kind in compilation.COMPILE_KINDS:
            catalog.add(kind.model_validate(doc))
    agent = catalog.agents()[0]
    settings = OperatorSettings()
    return compilation.compile_agent(compilation.gather(agent, catalog, settings), settings)


def with_problems(*problems: Problem) -> compilation.Compiled:
    return dataclasses.replace(compiled_example(), problems=problems)


def by_type(desired: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in desired["conditions"]}


MISSING = Problem("MissingReference", "spec.tools[2]", "Tool support/slack.send not found")
MISMATCH = Problem("CapabilityMismatch", "spec.mcpServers", "adapter lacks mcpBinding")
DENIED = Problem("PolicyDenied", "spec.tools[0]", "Policy support/p (v1) rule 0 denies tool x: no")


@pytest.mark.parametrize(
    ("problems", "phase", "expected"),
    [
        pytest.param(
            (),
            "Ready",
            {
                "Ready": ("True", "Compiled"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("False", "Reconciled"),
                "ResolvedRefs": ("True", "ReferencesResolved"),
                "Compiled": ("True", "Compiled"),
                "PolicyCompliant": ("True", "PolicyCompliant"),
            },
            id="compiled",
        ),
        pytest.param(
            (MISSING,),
            "Pending",
            {
                "Ready": ("False", "MissingReference"),
                "Reconciling": ("True", "WaitingForReferences"),
                "Stalled": ("False", "Reconciled"),
                "ResolvedRefs": ("False", "MissingReference"),
                "Compiled": ("False", "ReferencesUnresolved"),
                "PolicyCompliant": ("True", "PolicyCompliant"),
            },
            id="missing reference",
        ),
        pytest.param(
            (MISMATCH,),
            "Failed",
            {
                "Ready": ("False", "CapabilityMismatch"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "CapabilityMismatch"),
                "ResolvedRefs": ("True", "ReferencesResolved"),
                "Compiled": ("False", "CapabilityMismatch"),
                "PolicyCompliant": ("True", "PolicyCompliant"),
            },
            id="capability mismatch",
        ),
        pytest.param(
            (DENIED,),
            "Failed",
            {
                "Ready": ("False", "PolicyDenied"),
                "Reconciling": ("False", "Reconciled"),
                "Stalled": ("True", "PolicyDenied"),
                "ResolvedRefs": ("True", "ReferencesResolved"),
                "Compiled": ("False", "PolicyDenied"),
                "PolicyCompliant": ("False", "PolicyDenied"),
            },
            id="policy denied",
        ),
    ],
)
def test_outcomes_map_to_phase_and_conditions(
    problems: tuple[Problem, ...], phase: str, expected: dict[str, tuple[str, str]]
) -> None:
    desired = status.agent_status(with_problems(*problems), current={}, now=T0)
    assert desired["phase"] == phase
    assert by_type(desired) == expected
    assert [c["type"] for c in desired["conditions"]] == list(status.CONDITION_ORDER)
    assert desired["observedGeneration"] == 1


def test_missing_refs_keep_the_last_good_manifest_and_name_every_ref() -> None:
    good = status.agent_status(compiled_example(), current={}, now=T0)
    other = Problem("MissingReference", "spec.mcpServers[0]", "MCPServer support/github not found")
    pending = status.agent_status(with_problems(MISSING, other), current=good, now=T1)
    assert pending["compiledManifest"] == good["compiledManifest"]
    resolved = next(c for c in pending["conditions"] if c["type"] == "ResolvedRefs")
    assert resolved["message"] == (
        "spec.tools[2]: Tool support/slack.send not found; "
        "spec.mcpServers[0]: MCPServer support/github not found"
    )


def test_transition_times_change_only_with_the_status() -> None:
    first = status.agent_status(compiled_example(), current={}, now=T0)
    again = status.agent_status(compiled_example(), current=first, now=T1)
    assert again == first
    assert status.status_patch(again, first, owned=status.AGENT_FIELDS) is None

    flipped = status.agent_status(with_problems(MISSING), current=first, now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times["Ready"] == T1
    assert times["ResolvedRefs"] == T1
    assert times["Stalled"] == T0, "Stalled stayed False"
    assert times["PolicyCompliant"] == T0


def test_foreign_conditions_survive_and_patches_are_minimal() -> None:
    foreign = {"type": "Deployed", "status": "True", "reason": "X", "lastTransitionTime": T0}
    current = status.agent_status(compiled_example(), current={}, now=T0)
    current = {**current, "conditions": [*current["conditions"], foreign], "activeExecutions": 2}
    desired = status.agent_status(compiled_example(), current=current, now=T1)
    assert desired["conditions"][-1] == foreign
    assert status.status_patch(desired, current, owned=status.AGENT_FIELDS) is None

    no_route = dataclasses.replace(compiled_example(), model_route=None)
    desired = status.agent_status(no_route, current=current, now=T1)
    assert status.status_patch(desired, current, owned=status.AGENT_FIELDS) == {"modelRoute": None}


EXTRA = {  # kinds examples/ does not use
    "RAG": {
        "apiVersion": "memory.joch.dev/v1alpha1",
        "kind": "RAG",
        "metadata": {"name": "docs", "namespace": "support"},
        "spec": {"sources": [{"name": "handbook"}]},
    }
}


@pytest.mark.parametrize("kind", sorted(status.REFERENCED_KINDS))
def test_referenced_statuses_validate_for_every_kind(kind: str) -> None:
    model = v1alpha1.kind_named(kind)
    assert model is not None
    docs = [d for d in helpers.example_documents() if d["kind"] == kind] or [EXTRA[kind]]
    catalog = compilation.Catalog()
    objects = [model.model_validate({**d, "metadata": {**d["metadata"], "generation": 3}}) for d in docs]
    desired = status.referenced_status(
        objects[0],
        current={},
        lookup=catalog,
        settings=OperatorSettings(),
        agents=7,
        policy_error=None,
        now=T0,
    )
    assert desired["observedGeneration"] == 3
    assert desired["conditions"][0]["type"] == "Ready"
    if kind == "ModelRoute":  # the empty catalog has none of its models
        assert (desired["phase"], desired["conditions"][0]["reason"]) == ("Pending", "MissingReference")
    else:
        assert desired["phase"] == "Ready"
    if kind == "Policy":
        assert (desired["version"], desired["agentsSelected"]) == ("v3", 7)
    if kind == "FrameworkAdapter":
        assert desired["agentsBound"] == 7


def test_an_invalid_policy_fails() -> None:
    doc = next(d for d in helpers.example_documents() if d["kind"] == "Policy")
    policy = v1alpha1.Policy.model_validate(doc)
    desired = status.referenced_status(
        policy,
        current={"phase": "Ready"},
        lookup=compilation.Catalog(),
        settings=OperatorSettings(),
        agents=0,
        policy_error="spec.rules[0].when: bad",
        now=T0,
    )
    assert desired["phase"] == "Failed"
    assert desired["conditions"][0]["reason"] == "InvalidPolicy"


def test_only_a_moved_manifest_is_a_report_that_can_wait() -> None:
    """only_manifest_moved: a new sha alone (a referenced object changed) may wait behind compiles;
    a first status, a new generation or a condition outcome that changes may not."""
    compiled = compiled_example()
    first = status.agent_status(compiled, current={}, now=T0)
    assert not status.only_manifest_moved({}, first), "the first status is urgent"

    moved = dataclasses.replace(compiled, sha256="f" * 64)
    after_fanout = status.agent_status(moved, current=first, now=T1)
    assert after_fanout["compiledManifest"] != first["compiledManifest"]
    assert after_fanout["conditions"] != first["conditions"], "the Compiled message quotes the sha"
    assert status.only_manifest_moved(first, after_fanout)

    regenerated = status.agent_status(dataclasses.replace(moved, generation=2), current=first, now=T1)
    assert not status.only_manifest_moved(first, regenerated), "observedGeneration moved"

    denied = status.agent_status(with_problems(DENIED), current=first, now=T1)
    assert not status.only_manifest_moved(first, denied), "Ready and PolicyCompliant flipped"

    missing = status.agent_status(with_problems(MISSING), current=first, now=T1)
    other = Problem("MissingReference", "spec.mcpServers[0]", "MCPServer support/github not found")
    still_missing = status.agent_status(with_problems(MISSING, other), current=missing, now=T1)
    assert status.only_manifest_moved(missing, still_missing), "same outcomes, another message"


def test_every_kind_reports_an_object_the_model_rejects_the_same_way() -> None:
    for kind in sorted({*status.REFERENCED_KINDS, "Agent"}):
        desired = status.invalid_status(
            kind, "spec.x: Field required", generation=3, current={}, now="2026-12-03T00:00:00Z"
        )
        by_type = {c["type"]: c for c in desired["conditions"]}
        assert desired["phase"] == "Failed", kind
        assert desired["observedGeneration"] == 3
        assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "InvalidSpec")
        assert (by_type["Stalled"]["status"], by_type["Stalled"]["reason"]) == ("True", "InvalidSpec")
        assert by_type["Ready"]["message"] == f"the {kind} does not parse: spec.x: Field required"
