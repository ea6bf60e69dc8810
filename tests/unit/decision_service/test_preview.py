"""Preview of a Policy change over a cluster snapshot (joch.decision_service.preview), on examples/.

Cases: a Policy denying OpenAI models in the example namespace newly denies support-triage's primary
model (policy, rule, item, path, reason); a harmless policy, or one in another namespace, denies
nobody; replacing a stored Policy bumps its version only when the spec changes and lists the items it
newly denies; a change that lifts a current denial is reported as no longer denied; an invalid stored
Policy is left out as preflight leaves it out; the namespaces filter; and the contexts match
admission preflight's exactly (recorded from joch.domain.compilation.preflight), so that preview
and the operator never disagree.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.decision_service import preview
from joch.domain import compilation
from joch.domain import policy as engine
from joch.domain.settings import OperatorSettings
from tests import factories, helpers
from tests.unit.decision_service import factories as f

SETTINGS = OperatorSettings()
DENY_OPENAI = {"when": {"model.provider": "openai"}, "action": {"deny": True, "reason": "no OpenAI here"}}


def policy(
    name: str, namespace: str = "support", rules: list[dict[str, Any]] | None = None, **spec: Any
) -> Policy:
    """The parsed Policy (tests.factories.policy) that denies OpenAI unless ``rules`` say otherwise."""
    doc = factories.policy(name, rules or [DENY_OPENAI], namespace=namespace, generation=None, **spec)
    parsed = factories.parse(doc)
    assert isinstance(parsed, Policy)
    return parsed


def test_denying_openai_names_support_triage() -> None:
    result = preview.preview(f.snapshot(), [policy("deny-openai")], SETTINGS)
    assert result.policies == ("support/deny-openai@v1",)
    assert result.agents == 1
    assert result.denied_agents == [("support", "support-triage")]
    (denial,) = result.newly_denied
    assert denial.to_dict() == {
        "agent": {"namespace": "support", "name": "support-triage"},
        "item": {
            "kind": "model",
            "name": "openai:gpt-5-thinking",
            "path": "ModelRoute/support/research-default: spec.strategy.primary",
        },
        "policyId": "deny-openai",
        "policyNamespace": "support",
        "policyVersion": "v1",
        "rule": 0,
        "reason": "no OpenAI here",
    }
    assert denial.item.label == "model openai:gpt-5-thinking"
    assert result.no_longer_denied == ()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            policy("harmless", rules=[{"when": {"tool.name": "shell.exec"}, "action": "deny"}]), id="harmless"
        ),
        pytest.param(policy("deny-openai", namespace="elsewhere"), id="another namespace"),
        pytest.param(
            policy("runtime-only", rules=[{"when": {"cost.runUsd": ">0"}, "action": "deny"}]), id="runtime"
        ),
        pytest.param(
            policy("other-team", appliesTo={"agents": {"selector": {"matchLabels": {"team": "x"}}}}),
            id="selects nobody",
        ),
    ],
)
def test_changes_that_deny_nobody(change: Policy) -> None:
    result = preview.preview(f.snapshot(), [change], SETTINGS)
    assert (result.newly_denied, result.to_dict()["newlyDenied"]) == ((), [])


def test_replacing_a_stored_policy_bumps_its_version_and_lists_new_denials() -> None:
    base = f.snapshot()
    stored = next(
        o
        for o in base.objects
        if isinstance(o, Policy) and o.metadata.name == "external-send-requires-approval"
    )
    same = Policy.model_validate(stored.wire())
    _, (placed,) = preview.with_policies(base, [same])
    assert placed.metadata.generation == 1
    changed = policy(
        "external-send-requires-approval",
        rules=[{"when": {"tool.sideEffect": ["external_write", "communication"]}, "action": "deny"}],
    )
    result = preview.preview(base, [changed], SETTINGS)
    assert result.policies == ("support/external-send-requires-approval@v2",)
    denied = sorted((d.item.kind, d.item.name, d.item.path) for d in result.newly_denied)
    assert denied == [
        ("tool", "slack.send", "spec.tools[2]"),
        ("tool", "zendesk.create_ticket", "spec.tools[1]"),
    ]
    assert {d.decision.policy_version for d in result.newly_denied} == {"v2"}


def test_a_lifted_denial_is_reported_as_no_longer_denied() -> None:
    docs = copy.deepcopy(helpers.example_documents())
    for doc in docs:
        if doc["kind"] == "Environment":
            doc["spec"]["allowedProviders"] = ["anthropic"]
    base = f.snapshot(docs)
    stored = next(
        o
        for o in base.objects
        if isinstance(o, Policy) and o.metadata.name == "no-customer-data-exfiltration"
    )
    relaxed = Policy.model_validate(stored.wire())
    relaxed.spec.rules = [
        rule for rule in relaxed.spec.rules if "model.provider" not in (rule.get("when") or {})
    ]
    result = preview.preview(base, [relaxed], SETTINGS)
    assert result.newly_denied == ()
    (lifted,) = result.no_longer_denied
    assert (lifted.item.name, lifted.decision.policy_id, lifted.decision.rule) == (
        "openai:gpt-5-thinking",
        "no-customer-data-exfiltration",
        1,
    )
    assert (
        result.to_dict()["noLongerDenied"][0]["reason"]
        == "The model's provider is not allow-listed in this environment."
    )


def test_an_invalid_stored_policy_is_left_out() -> None:
    base = f.snapshot()
    broken = policy("broken", rules=[{"when": {"cost.runUSD": ">1"}, "action": "deny"}])
    with_broken = preview.Snapshot((*base.objects, broken), base.namespace_labels)
    result = preview.preview(with_broken, [policy("deny-openai")], SETTINGS)
    assert result.denied_agents == [("support", "support-triage")]


def test_the_namespaces_filter() -> None:
    result = preview.preview(f.snapshot(), [policy("deny-openai")], SETTINGS, namespaces=["other"])
    assert (result.agents, result.newly_denied) == (0, ())


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([DENY_OPENAI], id="openai"),
        pytest.param(
            [{"when": {"tool.sideEffect": "communication"}, "action": "deny"}], id="communication tools"
        ),
        pytest.param([{"when": {"mcpServer.name": "github"}, "action": "deny"}], id="MCP server"),
        pytest.param(
            [{"when": {"cel": "agent.labels.owner == 'ana'"}, "action": "deny"}], id="CEL, everything"
        ),
    ],
)
def test_contexts_and_denials_match_admission_preflight(
    rules: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    changed, _ = preview.with_policies(f.snapshot(), [policy("probe", rules=rules)])
    catalog = changed.catalog(SETTINGS)
    (agent,) = catalog.agents()
    gathered = compilation.gather(agent, catalog, SETTINGS)

    recorded: list[Any] = []
    real = engine.evaluate

    def record(policies: Any, context: Any, **kwargs: Any) -> Any:
        recorded.append(context)
        return real(policies, context, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(engine, "evaluate", record)  # what preflight calls: joch.domain.policy.evaluate
        compiled = compilation.compile_agent(gathered, SETTINGS)
    assert recorded == [item.context for item in preview.preflight_items(gathered)]

    denied_by_preflight = sorted(p.path for p in compiled.problems if p.reason == "PolicyDenied")
    decisions = preview.decisions(agent, catalog, SETTINGS, engine.PolicyCompiler())
    denied_by_preview = sorted(item.path for item, decision in decisions.values() if decision.denied)
    assert denied_by_preview == denied_by_preflight
    assert denied_by_preview


def test_agents_are_read_from_the_snapshot() -> None:
    base = f.snapshot()
    assert [a.metadata.name for a in base.catalog(SETTINGS).agents()] == ["support-triage"]
    assert isinstance(base.catalog(SETTINGS).agents()[0], Agent)
