"""Batch-B kinds: ops.joch.dev (Deployment .. Artifact) and runtime.joch.dev (Execution .. StateCheckpoint).

Case matrix, per kind:

- a minimal valid object parses and round-trips to the same wire form;
- static defaults (docs/catalog.md section 5, decision D14) appear after parse and in the CRD schema;
- an unknown enum value is rejected by pydantic, and the error names the field;
- the CRD renders structurally: no ``$ref``, every property described, group/scope/shortNames/categories
  as decided (D1, D2, D4), every CEL rule carries a message and compiles, every list/string/map is bounded
  (CEL cost), and the printer columns start with Ready.

Then the cross-field rules that pydantic mirrors (autoscaling bounds, metric targets, Secret rotation,
Approval tool_call refs, Eval thresholds) and a few kind-specific points (Trace sampling has no schema
default, Approval status carries oldSelf transition rules, StateCheckpoint's ``from`` alias).
CEL semantics are exercised against a real API server by the integration tests.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import pydantic
import pytest

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agbom import AgBOM
from joch.api.v1alpha1.approval import Approval
from joch.api.v1alpha1.artifact import Artifact
from joch.api.v1alpha1.budget import Budget
from joch.api.v1alpha1.conversation import Conversation
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.execution import Execution
from joch.api.v1alpha1.handoff import Handoff
from joch.api.v1alpha1.secret import Secret
from joch.api.v1alpha1.statecheckpoint import StateCheckpoint
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.toolcall import ToolCall
from joch.api.v1alpha1.trace import Trace
from joch.manifests import crds

KINDS_B = (
    v1alpha1.Deployment,
    v1alpha1.Environment,
    v1alpha1.Team,
    v1alpha1.Budget,
    v1alpha1.Eval,
    v1alpha1.AgBOM,
    v1alpha1.Secret,
    v1alpha1.Trace,
    v1alpha1.Artifact,
    v1alpha1.Execution,
    v1alpha1.ToolCall,
    v1alpha1.Handoff,
    v1alpha1.Approval,
    v1alpha1.Conversation,
    v1alpha1.StateCheckpoint,
)


REF = {"name": "x"}

MINIMAL_SPECS: dict[type[meta.Resource], dict[str, Any]] = {
    Deployment: {"agentRef": {"name": "support-triage"}},
    Environment: {},
    Team: {},
    Budget: {"limits": {"monthlyUsd": 100}},
    Eval: {
        "target": {"name": "support-triage"},
        "dataset": {"type": "file", "uri": "./evals/cases.jsonl"},
        "metrics": [{"name": "accuracy", "type": "deterministic"}],
    },
    AgBOM: {"agentRef": {"name": "support-triage"}},
    Secret: {"source": {"type": "kubernetes", "name": "openai", "key": "api-key"}},
    Trace: {"executionRef": REF},
    Artifact: {"type": "report"},
    Execution: {"agentRef": {"name": "support-triage"}},
    ToolCall: {"executionRef": REF, "agentRef": REF, "toolRef": {"name": "zendesk.create-ticket"}},
    Handoff: {"executionRef": REF, "fromAgent": "triage", "toAgent": "billing"},
    Approval: {"action": {"type": "promotion"}},
    Conversation: {"agentRef": REF},
    StateCheckpoint: {"conversationRef": REF},
}

EXPECTED: dict[type[meta.Resource], tuple[str, str, tuple[str, ...]]] = {
    Deployment: ("ops.joch.dev", "Namespaced", ("jdeploy", "jd")),
    Environment: ("ops.joch.dev", "Cluster", ("env",)),
    Team: ("ops.joch.dev", "Cluster", ("team",)),
    Budget: ("ops.joch.dev", "Namespaced", ("bud",)),
    Eval: ("ops.joch.dev", "Namespaced", ("ev",)),
    AgBOM: ("ops.joch.dev", "Namespaced", ("agbom",)),
    Secret: ("ops.joch.dev", "Namespaced", ("jsecret", "jsec")),
    Trace: ("ops.joch.dev", "Namespaced", ("tr",)),
    Artifact: ("ops.joch.dev", "Namespaced", ("art",)),
    Execution: ("runtime.joch.dev", "Namespaced", ("exec", "jexec")),
    ToolCall: ("runtime.joch.dev", "Namespaced", ("tc",)),
    Handoff: ("runtime.joch.dev", "Namespaced", ("ho",)),
    Approval: ("runtime.joch.dev", "Namespaced", ("appr",)),
    Conversation: ("runtime.joch.dev", "Namespaced", ("conv",)),
    StateCheckpoint: ("runtime.joch.dev", "Namespaced", ("chk",)),
}

# kind -> (wire path of a static default, value). Empty for kinds without static defaults.
DEFAULTS: dict[type[meta.Resource], list[tuple[str, Any]]] = {
    Deployment: [("rollout.strategy", "rolling"), ("replicas", 1)],
    Budget: [
        ("enforcement.softLimitPct", 0.8),
        ("enforcement.onSoftLimit", "alert"),
        ("enforcement.onHardLimit", "deny"),
    ],
    AgBOM: [("formats", ["cyclonedx"]), ("refresh.onChange", True)],
    Trace: [("retention.days", 30)],
    Approval: [("routing.timeoutMinutes", 30), ("routing.onTimeout", "deny")],
}

# (kind, spec overrides, wire path of the bad enum value)
BAD_ENUMS: list[tuple[type[meta.Resource], dict[str, Any], str]] = [
    (Deployment, {"rollout": {"strategy": "bluegreen"}}, "rollout.strategy"),
    (Environment, {"runtime": {"orchestrator": "mesos"}}, "runtime.orchestrator"),
    (Team, {"members": [{"user": "a@example.com", "role": "owner"}]}, "members.0.role"),
    (Budget, {"limits": {}, "enforcement": {"onHardLimit": "panic"}}, "enforcement.onHardLimit"),
    (Eval, {"dataset": {"type": "ftp", "uri": "x"}}, "dataset.type"),
    (AgBOM, {"formats": ["xml"]}, "formats"),
    (Secret, {"source": {"type": "keychain", "name": "x"}}, "source.type"),
    (Trace, {"sampling": {"mode": "random"}}, "sampling.mode"),
    (Artifact, {"storage": {"backend": "ftp"}}, "storage.backend"),
    (Execution, {"trigger": {"type": "cron"}}, "trigger.type"),
    (ToolCall, {"sideEffects": {"level": "dangerous"}}, "sideEffects.level"),
    (Handoff, {}, ""),  # Handoff's only enum is in status; covered below
    (Approval, {"action": {"type": "delete"}}, "action.type"),
    (Conversation, {"stateStore": {"type": "mysql"}}, "stateStore.type"),
    (StateCheckpoint, {}, ""),  # enum only in status; covered below
]

BAD_STATUS_ENUMS: list[tuple[type[meta.Resource], dict[str, Any], str]] = [
    (kind, {"phase": "Exploded"}, "phase") for kind in KINDS_B
]


def document(
    kind: type[meta.Resource], spec: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": kind.crd.api_version,
        "kind": kind.crd.kind,
        "metadata": {"name": "example"},
        "spec": spec,
    }
    if status is not None:
        doc["status"] = status
    return doc


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[part]
    return data


def schema_of(kind: type[meta.Resource]) -> dict[str, Any]:
    crd = crds.render(kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def test_kinds_b_lists_every_kind_once() -> None:
    assert len(set(KINDS_B)) == 15
    assert set(KINDS_B) == set(MINIMAL_SPECS) == set(EXPECTED)


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_minimal_object_parses_and_round_trips(kind: type[meta.Resource]) -> None:
    obj = kind.model_validate(document(kind, MINIMAL_SPECS[kind]))
    again = kind.model_validate(obj.wire())
    assert again.wire() == obj.wire()


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_static_defaults_present_after_parse_and_in_schema(kind: type[meta.Resource]) -> None:
    wire = kind.model_validate(document(kind, MINIMAL_SPECS[kind])).wire()["spec"]
    spec_schema = schema_of(kind)["properties"]["spec"]
    for path, value in DEFAULTS.get(kind, []):
        assert lookup(wire, path) == value
        node = spec_schema
        for part in path.split("."):
            node = node["properties"][part]
        assert node["default"] == value, path


@pytest.mark.parametrize(
    ("kind", "overrides", "path"),
    [pytest.param(k, o, p, id=k.crd.kind) for k, o, p in BAD_ENUMS if p],
)
def test_unknown_enum_value_is_rejected_naming_the_field(
    kind: type[meta.Resource], overrides: dict[str, Any], path: str
) -> None:
    spec = {**MINIMAL_SPECS[kind], **overrides}
    with pytest.raises(pydantic.ValidationError) as caught:
        kind.model_validate(document(kind, spec))
    locs = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    assert any(path in loc for loc in locs), locs


@pytest.mark.parametrize(
    ("kind", "status", "field"), [pytest.param(k, s, f, id=k.crd.kind) for k, s, f in BAD_STATUS_ENUMS]
)
def test_unknown_phase_is_rejected(kind: type[meta.Resource], status: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        kind.model_validate(document(kind, MINIMAL_SPECS[kind], status))


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_crd_names_group_scope_and_columns(kind: type[meta.Resource]) -> None:
    crd = crds.render(kind)
    group, scope, shorts = EXPECTED[kind]
    assert crd["spec"]["group"] == group
    assert crd["spec"]["scope"] == scope
    assert crd["spec"]["names"]["shortNames"] == list(shorts)
    assert crd["spec"]["names"]["categories"] == ["joch"]
    assert crd["metadata"]["name"] == f"{kind.crd.plural}.{group}"
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[0]["name"] == "Ready"
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"]


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_crd_schema_is_structural_and_described(kind: type[meta.Resource]) -> None:
    crd = crds.render(kind)
    assert "$ref" not in repr(crd)
    undescribed = []
    for path, node in walk(schema_of(kind)):
        for name, sub in node.get("properties", {}).items():
            if path.startswith(".metadata") or (path == "" and name in {"metadata"}):
                continue
            if not sub.get("description"):
                undescribed.append(f"{path}.{name}")
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
    assert not undescribed


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_cel_rules_have_messages_and_compile(kind: type[meta.Resource]) -> None:
    env = celpy.Environment()
    for path, node in walk(schema_of(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message"), path
            env.compile(rule["rule"])


@pytest.mark.parametrize("kind", KINDS_B, ids=lambda k: k.crd.kind)
def test_lists_strings_and_maps_are_bounded(kind: type[meta.Resource]) -> None:
    unbounded = []
    for path, node in walk(schema_of(kind)):
        if ".conditions" in path or path.startswith(".metadata") or path in {".apiVersion", ".kind"}:
            continue  # envelope and meta.Condition are not ours
        kind_of = node.get("type")
        if kind_of == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append(path)
        if kind_of == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind_of == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
    assert not unbounded


# --- Cross-field rules mirrored in pydantic ---------------------------------------------------------


def _rejects(kind: type[meta.Resource], spec: dict[str, Any], text: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=text):
        kind.model_validate(document(kind, spec))


def test_autoscaling_min_must_not_exceed_max() -> None:
    def spec(low: int) -> dict[str, Any]:
        return {"agentRef": REF, "autoscaling": {"enabled": True, "minReplicas": low, "maxReplicas": 2}}

    _rejects(Deployment, spec(5), "minReplicas must not exceed maxReplicas")
    Deployment.model_validate(document(Deployment, spec(2)))


@pytest.mark.parametrize(
    ("metric", "ok"),
    [
        pytest.param({"type": "queueDepth", "target": 10}, True, id="queueDepth with target"),
        pytest.param({"type": "latencyP95", "targetMs": 800}, True, id="latencyP95 with targetMs"),
        pytest.param({"type": "queueDepth", "targetMs": 800}, False, id="queueDepth without target"),
        pytest.param({"type": "latencyP95", "target": 10}, False, id="latencyP95 without targetMs"),
    ],
)
def test_autoscaling_metric_needs_its_target(metric: dict[str, Any], ok: bool) -> None:
    spec = {"agentRef": REF, "autoscaling": {"maxReplicas": 3, "metrics": [metric]}}
    if ok:
        Deployment.model_validate(document(Deployment, spec))
    else:
        _rejects(Deployment, spec, "needs")


@pytest.mark.parametrize("percentage", [-1, 101])
def test_canary_percentage_is_0_to_100(percentage: int) -> None:
    _rejects(Deployment, {"agentRef": REF, "rollout": {"canary": {"percentage": percentage}}}, "percentage")


@pytest.mark.parametrize(("pct", "ok"), [(0, False), (0.5, True), (1, True), (1.01, False)])
def test_budget_soft_limit_pct_is_in_0_exclusive_to_1(pct: float, ok: bool) -> None:
    spec = {"limits": {}, "enforcement": {"softLimitPct": pct}}
    if ok:
        Budget.model_validate(document(Budget, spec))
    else:
        _rejects(Budget, spec, "softLimitPct")


def test_budget_allocation_fractions_are_0_to_1() -> None:
    Budget.model_validate(document(Budget, {"limits": {}, "allocation": {"byAgent": {"a": 0.25, "b": 1}}}))
    _rejects(Budget, {"limits": {}, "allocation": {"byAgent": {"a": 1.5}}}, "byAgent")


@pytest.mark.parametrize(
    ("threshold", "ok"),
    [
        pytest.param(0.9, True, id="bare number is a minimum"),
        pytest.param(1, True, id="integer"),
        pytest.param("<=0.0", True, id="comparison maximum"),
        pytest.param("> 5", True, id="comparison with space"),
        pytest.param("high", False, id="word"),
        pytest.param(True, False, id="boolean"),
        pytest.param({"min": 1}, False, id="object"),
    ],
)
def test_eval_thresholds_are_numbers_or_comparisons(threshold: Any, ok: bool) -> None:
    spec = {**MINIMAL_SPECS[Eval], "thresholds": {"accuracy": threshold}}
    if ok:
        assert Eval.model_validate(document(Eval, spec)).wire()["spec"]["thresholds"] == {
            "accuracy": threshold
        }
    else:
        _rejects(Eval, spec, "thresholds.accuracy")


def test_eval_threshold_values_are_free_form_in_the_schema() -> None:
    node = schema_of(Eval)["properties"]["spec"]["properties"]["thresholds"]
    assert node["additionalProperties"]["x-kubernetes-preserve-unknown-fields"] is True


def test_secret_scheduled_rotation_needs_interval() -> None:
    source = MINIMAL_SPECS[Secret]["source"]
    _rejects(Secret, {"source": source, "rotation": {"policy": "scheduled"}}, "intervalDays")
    Secret.model_validate(
        document(Secret, {"source": source, "rotation": {"policy": "scheduled", "intervalDays": 90}})
    )


def test_secret_has_no_value_field() -> None:
    source = {**MINIMAL_SPECS[Secret]["source"], "value": "sk-123"}
    _rejects(Secret, {"source": source}, "value")


def test_approval_tool_call_needs_tool_call_ref() -> None:
    _rejects(Approval, {"action": {"type": "tool_call"}}, "toolCallRef")
    Approval.model_validate(document(Approval, {"action": {"type": "tool_call", "toolCallRef": REF}}))


def test_approval_status_decisions_are_immutable_by_transition_rules() -> None:
    rules = schema_of(Approval)["properties"]["status"]["x-kubernetes-validations"]
    assert len(rules) == 6
    assert all("oldSelf" in rule["rule"] for rule in rules)
    messages = {rule["message"] for rule in rules}
    assert "status.override is immutable once set" in messages
    assert "status.expiresAt is immutable once set" in messages


def test_trace_sampling_mode_has_no_schema_default() -> None:
    sampling = schema_of(Trace)["properties"]["spec"]["properties"]["sampling"]
    assert "default" not in sampling["properties"]["mode"]
    assert "sampling" not in Trace.model_validate(document(Trace, MINIMAL_SPECS[Trace])).wire()["spec"]


def test_environment_allowed_providers_absent_by_default() -> None:
    spec = Environment.model_validate(document(Environment, {})).wire()["spec"]
    assert "allowedProviders" not in spec
    node = schema_of(Environment)["properties"]["spec"]["properties"]["allowedProviders"]
    assert node["x-kubernetes-list-type"] == "set"


def test_state_checkpoint_provider_state_from_alias() -> None:
    spec = {
        **MINIMAL_SPECS[StateCheckpoint],
        "providerState": {"from": {"provider": "openai"}, "portable": True},
    }
    wire = StateCheckpoint.model_validate(document(StateCheckpoint, spec)).wire()
    assert wire["spec"]["providerState"]["from"] == {"provider": "openai"}
    props = schema_of(StateCheckpoint)["properties"]["spec"]["properties"]["providerState"]["properties"]
    assert "from" in props


def test_team_members_are_a_map_keyed_by_user() -> None:
    node = schema_of(Team)["properties"]["spec"]["properties"]["members"]
    assert node["x-kubernetes-list-type"] == "map"
    assert node["x-kubernetes-list-map-keys"] == ["user"]
