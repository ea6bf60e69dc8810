"""Changes that put existing Agents in violation (admitted with a warning) and the mutating defaults.

Impact:
| change | expected |
|---|---|
| new Policy denying the Agent's model | admitted; warning names the Agent and the denial |
| Policy that denies nothing | no warning |
| Agent already denied before the change | not listed again |
| Environment narrowing allowedProviders | warning for the Agents in that environment only |
| ModelRoute switching to a denied model | warning for the Agents using the route |
| Team binding a denying default policy | warning |
| a world that cannot list Agents | no impact analysis |

Defaults (decision D14, docs/decisions.md):
| kind | field | expected |
|---|---|---|
| Tool | spec.toolName | metadata.name; kept when set |
| Trace | spec.sampling.mode | full in dev/staging, tail in prod (label, namespace label, default) |
| Trace | spec.retention.days | the Environment's traceRetentionDays, else 30 |
| Agent | spec.modelRoute | the Environment's defaults.modelRouteRef when absent |
| any | kopf annotation/finalizer UPDATE | no patch |
| any | malformed spec, metadata or labels | exactly the defaults that still apply, as clean JSON Patch adds |
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from joch.domain.admission import Admission, World, apply_patch, defaults_for
from joch.domain.compilation import Catalog
from tests.unit.admission import factories as f

DENY_OPENAI = [{"when": {"model.provider": "openai"}, "action": {"deny": True, "reason": "no openai"}}]


def _existing() -> list[dict[str, Any]]:
    return [*f.fleet(), f.agent(labels={"env": "prod"}), f.agent("other-agent", labels={"env": "dev"})]


def test_new_policy_putting_agents_in_violation_warns() -> None:
    verdict = f.admit(f.policy("no-openai", DENY_OPENAI), _existing())
    assert verdict.allowed
    [warning] = verdict.warning_messages()
    assert warning.startswith("Policy/no-openai: spec: this change puts 2 existing Agent(s) in violation")
    assert (
        "support/support-triage (spec.modelRoute.routeRef" in warning or "support/support-triage (" in warning
    )
    assert "PolicyCompliant=False" in warning
    assert "no openai" in warning


def test_harmless_policy_does_not_warn() -> None:
    rules = [{"when": {"model.provider": "ollama"}, "action": "deny"}]
    assert f.admit(f.policy("no-ollama", rules), _existing()).warnings == ()


def test_agents_already_in_violation_are_not_listed_again() -> None:
    docs = [*_existing(), f.policy("no-openai", DENY_OPENAI)]
    verdict = f.admit(f.policy("no-openai-either", DENY_OPENAI), docs)
    assert verdict.warnings == ()


def test_environment_change_lists_its_agents_only() -> None:
    verdict = f.admit(
        f.environment("prod", allowed=["anthropic"], policies=[{"name": "allowlisted-providers-only"}]),
        [*_existing(), f.policy("allowlisted-providers-only", f.DENY_UNLISTED)],
    )
    assert verdict.allowed
    [warning] = verdict.warning_messages()
    assert "1 existing Agent(s)" in warning
    assert "support/support-triage" in warning
    assert "other-agent" not in warning


def test_route_change_lists_the_agents_using_it() -> None:
    rules = [{"when": {"model.provider": "anthropic"}, "action": "deny"}]
    docs = [*_existing(), f.policy("no-anthropic", rules)]
    verdict = f.admit(f.route(primary="anthropic:claude-sonnet"), docs)
    assert not verdict.allowed  # the route itself is denied for the namespace (no labels needed)
    rules = [{"when": {"model.provider": "anthropic"}, "action": "deny"}]
    selective = f.policy(
        "no-anthropic", rules, applies_to={"agents": {"selector": {"matchLabels": {"env": "prod"}}}}
    )
    verdict = f.admit(f.route(primary="anthropic:claude-sonnet"), [*_existing(), selective])
    assert verdict.allowed
    [warning] = verdict.warning_messages()
    assert "ModelRoute/research-default: spec: this change puts 1 existing Agent(s)" in warning
    assert "support/support-triage" in warning


def test_team_binding_a_denying_policy_warns() -> None:
    team = f.obj("Team", "support", {"namespaces": [f.NS], "defaultPolicies": ["no-openai"]}, namespace=None)
    selective = f.policy(
        "no-openai", DENY_OPENAI, applies_to={"agents": {"selector": {"matchLabels": {"x": "y"}}}}
    )
    verdict = f.admit(team, [*_existing(), selective])
    assert verdict.allowed
    assert "2 existing Agent(s)" in verdict.warning_messages()[0]


def test_no_impact_without_an_agent_index() -> None:
    class Bare:
        def __init__(self, catalog: Catalog) -> None:
            self.catalog = catalog

        def get(self, kind: Any, namespace: Any, name: str) -> Any:
            return self.catalog.get(kind, namespace, name)

        def policies_in(self, namespace: str) -> Any:
            return self.catalog.policies_in(namespace)

        def team_for_namespace(self, namespace: str) -> Any:
            return self.catalog.team_for_namespace(namespace)

        def namespace_labels(self, namespace: str) -> Any:
            return self.catalog.namespace_labels(namespace)

    catalog = Catalog([f.parse(d) for d in _existing()])
    world = World(Bare(catalog))
    verdict = Admission(f.SETTINGS).validate(f.request(f.policy("no-openai", DENY_OPENAI)), world)
    assert verdict.allowed
    assert verdict.warnings == ()


# --- defaults ---------------------------------------------------------------------------------------------


def _defaults(doc: dict[str, Any], docs: list[dict[str, Any]] | None = None, **kwargs: Any) -> dict[str, Any]:
    labels = kwargs.pop("namespace_labels", None)
    world = f.world(docs or [], namespace_labels=labels)
    mutation = defaults_for(
        doc["kind"],
        doc,
        namespace=doc["metadata"].get("namespace"),
        world=world,
        settings=f.SETTINGS,
        **kwargs,
    )
    return apply_patch(doc, mutation.patch)


def _trace(**labels: str) -> dict[str, Any]:
    return f.obj("Trace", "t", {"executionRef": {"name": "run-1"}}, labels=labels or None)


def test_tool_name_defaults_to_metadata_name() -> None:
    assert _defaults(f.tool())["spec"]["toolName"] == "zendesk.search"
    assert _defaults(f.tool(toolName="zendesk_search"))["spec"]["toolName"] == "zendesk_search"


@pytest.mark.parametrize(
    ("labels", "namespace_labels", "mode"),
    [
        pytest.param({}, None, "full", id="default environment dev"),
        pytest.param({"env": "staging"}, None, "full", id="staging"),
        pytest.param({"env": "prod"}, None, "tail", id="prod label"),
        pytest.param({}, {f.NS: {"joch.dev/environment": "prod"}}, "tail", id="prod namespace"),
    ],
)
def test_trace_sampling_by_environment(
    labels: dict[str, str], namespace_labels: dict[str, dict[str, str]] | None, mode: str
) -> None:
    assert _defaults(_trace(**labels), namespace_labels=namespace_labels)["spec"]["sampling"] == {
        "mode": mode
    }


def test_trace_sampling_follows_the_execution_agent() -> None:
    execution = f.obj("Execution", "run-1", {"agentRef": {"name": "support-triage"}})
    docs = [execution, f.agent(labels={"env": "prod"})]
    assert _defaults(_trace(), docs)["spec"]["sampling"]["mode"] == "tail"


def test_trace_sampling_kept_when_set() -> None:
    doc = _trace(env="prod")
    doc["spec"]["sampling"] = {"mode": "head"}
    assert _defaults(doc)["spec"]["sampling"] == {"mode": "head"}


def test_trace_retention_from_the_environment() -> None:
    env = f.environment("prod", defaults={"traceRetentionDays": 90})
    assert _defaults(_trace(env="prod"), [env])["spec"]["retention"] == {"days": 90}
    assert _defaults(_trace(env="dev"), [env])["spec"]["retention"] == {"days": 30}


def test_agent_model_route_from_the_environment() -> None:
    env = f.environment("prod", defaults={"modelRouteRef": {"name": "prod-route"}})
    doc = f.agent(labels={"env": "prod"}, modelRoute=None)
    assert _defaults(doc, [env])["spec"]["modelRoute"] == {"routeRef": {"name": "prod-route"}}
    assert "modelRoute" not in _defaults(f.agent(labels={"env": "dev"}, modelRoute=None), [env])["spec"]
    kept = _defaults(f.agent(labels={"env": "prod"}), [env])["spec"]["modelRoute"]
    assert kept == {"routeRef": {"name": "research-default"}}


def test_agent_model_route_into_a_shared_namespace_only() -> None:
    env = f.environment("prod", defaults={"modelRouteRef": {"name": "r", "namespace": "joch-system"}})
    doc = f.agent(labels={"env": "prod"}, modelRoute=None)
    assert _defaults(doc, [env])["spec"]["modelRoute"] == {
        "routeRef": {"name": "r", "namespace": "joch-system"}
    }
    env = f.environment("prod", defaults={"modelRouteRef": {"name": "r", "namespace": "private"}})
    assert "modelRoute" not in _defaults(doc, [env])["spec"]


def test_metadata_only_update_gets_no_patch() -> None:
    old = f.tool()
    new = f.merge(old, {"metadata": {"annotations": {"kopf": "x"}, "finalizers": ["joch.dev/finalizer"]}})
    mutation = defaults_for(
        "Tool", new, namespace=f.NS, world=f.world(), settings=f.SETTINGS, old=old, operation="UPDATE"
    )
    assert not mutation


def test_defaulting_is_idempotent() -> None:
    once = _defaults(_trace(env="prod"))
    again = defaults_for("Trace", once, namespace=f.NS, world=f.world(), settings=f.SETTINGS)
    assert not again


def _applies_cleanly(doc: dict[str, Any], patch: tuple[dict[str, Any], ...]) -> None:
    """Every operation is a JSON Patch ``add`` whose parent exists and is an object and whose target is
    absent: the API server can apply it, and it never overwrites what the client sent."""
    current = copy.deepcopy(doc)
    for op in patch:
        assert op["op"] == "add", op
        *parents, leaf = op["path"].split("/")[1:]
        node: Any = current
        for key in parents:
            assert isinstance(node, dict), f"{op['path']}: parent {key!r} is not an object"
            assert key in node, f"{op['path']}: parent {key!r} does not exist"
            node = node[key]
        assert isinstance(node, dict), f"{op['path']}: the parent is not an object"
        assert leaf not in node, f"{op['path']}: would overwrite {node[leaf]!r}"
        node[leaf] = op["value"]


@pytest.mark.parametrize(
    ("doc", "expected_patch"),
    [
        pytest.param(
            {"kind": "Trace", "metadata": {"name": "t"}, "spec": "not an object"},
            [],
            id="spec a string: nothing to add to",
        ),
        pytest.param(
            {"kind": "Trace", "metadata": [], "spec": {"sampling": 3}},
            [{"op": "add", "path": "/spec/retention", "value": {"days": 30}}],
            id="sampling a number: left for validation, retention still defaulted",
        ),
        pytest.param(
            {"kind": "Agent", "metadata": {"labels": {"env": 5}}, "spec": {}},
            [],
            id="odd labels: no environment, no route",
        ),
        pytest.param(
            {"kind": "Tool", "metadata": {"name": None}, "spec": {}},
            [],
            id="no name: no toolName to copy",
        ),
    ],
)
def test_defaulting_odd_shapes_adds_nothing_or_stays_well_formed(
    doc: dict[str, Any], expected_patch: list[dict[str, Any]]
) -> None:
    sent = copy.deepcopy(doc)
    mutation = defaults_for(doc["kind"], doc, namespace=f.NS, world=f.world(), settings=f.SETTINGS)
    assert list(mutation.patch) == expected_patch
    assert doc == sent, "defaulting must not change the request object in place"
    _applies_cleanly(doc, mutation.patch)
    result = apply_patch(doc, mutation.patch)
    # Only additions: every field the client sent is still there, unchanged.
    assert {k: result[k] for k in doc if k != "spec"} == {k: doc[k] for k in doc if k != "spec"}
    if isinstance(doc["spec"], dict):
        assert {k: result["spec"][k] for k in doc["spec"]} == doc["spec"]
    else:
        assert result["spec"] == doc["spec"]
