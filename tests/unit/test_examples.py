"""The worked example parses into the models and survives a YAML -> model -> YAML round trip.

Cases: every joch document in examples/ (parametrised by Kind/name); the set of kinds the issue asks for.
"""

from __future__ import annotations

from typing import Any

import pytest

from joch.api import v1alpha1
from tests import helpers

DOCS = helpers.joch_examples()


def _subset(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences where ``expected`` has a value that ``actual`` lacks or changes."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        return [d for k, v in expected.items() for d in _subset(v, actual.get(k), f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in _subset(e, a, f"{path}[{i}]")
        ]
    return [] if expected == actual else [f"{path}: expected {expected!r}, got {actual!r}"]


@pytest.mark.parametrize("doc", DOCS, ids=helpers.doc_id)
def test_example_round_trips_through_its_model(doc: dict[str, Any]) -> None:
    kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
    assert kind is not None, f"no model for {doc['apiVersion']} {doc['kind']}"
    obj = kind.model_validate(doc)
    wire = obj.wire()
    assert _subset(doc["spec"], wire["spec"]) == []
    # Parsing the dumped form gives the same object: the round trip is stable.
    assert kind.model_validate(wire) == obj


def test_examples_cover_the_documented_project() -> None:
    names = {helpers.doc_id(d) for d in DOCS}
    assert {
        "FrameworkAdapter/openai-agents-sdk",
        "Model/gpt-5-thinking",
        "Model/claude-sonnet",
        "ModelRoute/research-default",
        "Tool/zendesk.search",
        "Tool/zendesk.create-ticket",
        "Tool/slack.send",
        "MCPServer/github",
        "Memory/support-triage-working",
        "Policy/external-send-requires-approval",
        "Policy/no-customer-data-exfiltration",
        "Environment/prod",
        "Team/support-platform",
        "Budget/support-platform-monthly",
        "Deployment/support-triage-prod",
        "Agent/support-triage",
    } <= names


def test_tool_name_keeps_the_underscore_form() -> None:
    ticket = next(d for d in DOCS if helpers.doc_id(d) == "Tool/zendesk.create-ticket")
    assert ticket["spec"]["toolName"] == "zendesk.create_ticket"


def test_namespaced_examples_carry_a_namespace_and_cluster_ones_do_not() -> None:
    for doc in DOCS:
        kind = v1alpha1.kind_for(doc["apiVersion"], doc["kind"])
        assert kind is not None
        has_ns = "namespace" in doc["metadata"]
        assert has_ns == (kind.crd.scope == "Namespaced"), helpers.doc_id(doc)
