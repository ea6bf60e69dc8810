"""tests/factories.py: one factory per kind, each building an object its model accepts.

Cases: every factory's default object parses into its kind's model; spec overrides merge and None deletes;
metadata keywords; :func:`preset` fills defaults (positional ones too), merges spec defaults under the
caller's, keeps None deletions, derives uids, returns models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from joch.api import v1alpha1
from tests import factories

KIND_FACTORIES: dict[str, Callable[..., dict[str, Any]]] = {
    "Agent": factories.agent,
    "FrameworkAdapter": factories.adapter,
    "Model": factories.model,
    "ModelRoute": factories.route,
    "Tool": factories.tool,
    "MCPServer": factories.mcp_server,
    "Memory": factories.memory,
    "KnowledgeSource": factories.knowledge_source,
    "RAG": factories.rag,
    "Policy": factories.policy,
    "Environment": factories.environment,
    "Team": factories.team,
    "Secret": factories.secret,
    "Budget": factories.budget,
    "Deployment": factories.deployment,
    "Eval": factories.eval_,
    "Approval": factories.approval,
    "Execution": factories.execution,
    "Trace": factories.trace,
}


@pytest.mark.parametrize("kind", sorted(KIND_FACTORIES))
def test_default_object_parses_into_its_model(kind: str) -> None:
    doc = KIND_FACTORIES[kind]()
    parsed = factories.parse(doc)
    assert type(parsed) is v1alpha1.kind_named(kind)
    assert parsed.metadata.name == doc["metadata"]["name"]
    scope = type(parsed).crd.scope
    assert (parsed.metadata.namespace == factories.NS) == (scope == "Namespaced")


def test_spec_overrides_merge_and_none_deletes() -> None:
    doc = factories.agent(framework={"image": "reg/a:1"}, mcpServers=None, labels={"env": "prod"})
    assert doc["spec"]["framework"] == {
        "adapterRef": {"name": "py-sdk"},
        "entrypoint": "./agent.py",
        "image": "reg/a:1",
    }
    assert "mcpServers" not in doc["spec"]
    assert doc["metadata"]["labels"] == {"env": "prod"}


def test_metadata_keywords() -> None:
    doc = factories.tool("t", "team-b", generation=None, uid="u-1", status={"phase": "Ready"})
    assert doc["metadata"] == {"name": "t", "namespace": "team-b", "uid": "u-1"}
    assert doc["status"] == {"phase": "Ready"}
    assert "namespace" not in factories.environment("prod")["metadata"]


def test_adapter_flags_override_single_capabilities() -> None:
    caps = factories.adapter(mcpBinding=False)["spec"]["capabilities"]
    assert caps == {**factories.ADAPTER_CAPABILITIES, "mcpBinding": False}
    assert factories.adapter(capabilities={})["spec"]["capabilities"] == {}


def test_preset_fills_defaults_and_returns_models() -> None:
    tool = factories.preset(
        factories.tool,
        name="search",
        namespace="team-a",
        uid_prefix="uid-tool",
        inputSchema={"type": "object"},
    )
    default = tool()
    assert isinstance(default, v1alpha1.Tool)
    assert (default.metadata.name, default.metadata.namespace) == ("search", "team-a")
    assert default.metadata.uid == "uid-tool-team-a-search"
    assert default.spec.input_schema == {"type": "object"}
    other = tool("other", inputSchema=None, sideEffects={"level": "financial"})
    assert other.metadata.name == "other"
    assert other.spec.input_schema is None  # None still deletes a spec default
    assert other.spec.side_effects is not None
    assert other.spec.side_effects.level == "financial"
    assert tool(uid="given").metadata.uid == "given"
