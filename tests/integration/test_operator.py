"""The operator (``joch operator`` as a subprocess) against the real API server.

Cases:
- apply order: examples/ applied forward, reversed and shuffled (three namespaces) converge to the same
  manifests, each byte-identical to ``joch compile`` of the objects read back from the cluster;
- ``kubectl wait --for=condition=Ready`` works; referenced kinds get Ready, observedGeneration, counters;
- fan-out: a Model update rewrites exactly its dependants (the other Agent is neither rewritten nor
  reconciled); a selector Policy added and removed changes the resolved list; a Namespace label moves
  an Agent to another environment (D5);
- references: deleting one flips ResolvedRefs to False naming it (last good ConfigMap kept, Event
  MissingReference), re-creating it flips back; a capability mismatch stalls the Agent;
- ConfigMaps: newest 3 generations kept after 5 spec updates; one deleted behind the operator's back is
  rewritten; deleting the Agent deletes them;
- restarts: a restart over a converged fleet writes nothing.

The crash test (SIGKILL mid-burst) lives in test_operator_crash.py.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    Example,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    compile_from_cluster,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


@pytest.fixture
def example(namespace: str) -> Example:
    return support_triage(namespace)


def manifest_of(cluster: Cluster, namespace: str, name: str) -> str:
    cm = cluster.manifests(namespace)[name]
    return str(cm.data["manifest.yaml"])


def normalised(text: str, example: Example) -> str:
    """A manifest with what differs between test namespaces replaced (namespace, suffix, uids)."""
    text = text.replace(example.namespace, "<ns>").replace(example.suffix, "<sfx>")
    return re.sub(r"sourceHash: [0-9a-f]{64}", "sourceHash: <hash>", text)


# --- apply order -------------------------------------------------------------------------------------------


def test_apply_order_never_matters(
    namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    # Forward in the fixture's namespace; reversed and shuffled in two more fresh ones.
    namespaces = [namespace]
    core = cluster.core
    for suffix in ("rev", "shf"):
        name = f"{namespace[:50]}-{suffix}"
        core.create_namespace({"metadata": {"name": name, "labels": {"joch.dev/test": "true"}}})
        namespaces.append(name)
    try:
        examples = [support_triage(ns) for ns in namespaces]
        operator = start_operator(*namespaces)
        orders = {
            namespaces[0]: examples[0].docs,
            namespaces[1]: list(reversed(examples[1].docs)),
            namespaces[2]: random.Random(4).sample(examples[2].docs, len(examples[2].docs)),
        }
        for example in examples:
            apply(kubectl, orders[example.namespace])
        for example in examples:
            eventually(lambda ex=example: ready(cluster, ex.namespace, "support-triage"), timeout=90)

        texts = []
        for example in examples:
            stored = manifest_of(cluster, example.namespace, "support-triage-g1")
            compiled = compile_from_cluster(kubectl, example.namespace, example)
            assert compiled["support-triage-g1"] == stored, "ConfigMap data differs from `joch compile`"
            texts.append(normalised(stored, example))
            status = cluster.status("Agent", example.namespace, "support-triage")
            sha = cluster.manifests(example.namespace)["support-triage-g1"].metadata.annotations
            assert status["compiledManifest"]["sha256"] == sha["joch.dev/manifest-sha256"]
            assert set(cluster.manifests(example.namespace)) == {"support-triage-g1"}
        assert texts[0] == texts[1] == texts[2]
        assert "Exception" not in operator.log(), operator.tail()
    finally:
        for name in namespaces[1:]:
            core.delete_namespace(name)


# --- readiness and referenced kinds -----------------------------------------------------------------------


def test_kubectl_wait_and_referenced_statuses(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    start_operator(example.namespace)
    apply(kubectl, example.docs)
    out = kubectl(
        "wait", "--for=condition=Ready", "agent/support-triage", "-n", example.namespace, "--timeout=90s"
    )
    assert out.returncode == 0, out.stderr
    status = ready(cluster, example.namespace, "support-triage")
    assert status["phase"] == "Ready"
    assert status["framework"] == example.adapter
    assert status["modelRoute"] == "research-default"
    assert status["environment"] == example.environment
    assert status["compiledManifest"]["name"] == "support-triage-g1"
    assert status["compiledManifest"]["generation"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {k: c["status"] for k, c in conditions.items()} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "ResolvedRefs": "True",
        "Compiled": "True",
        "PolicyCompliant": "True",
    }
    events = cluster.events(example.namespace, "support-triage")
    assert any(e.reason == "Compiled" for e in events)

    ns = example.namespace

    def referenced() -> None:
        adapter = cluster.status("FrameworkAdapter", None, example.adapter)
        assert adapter.get("agentsBound") == 1, adapter
        policy = cluster.status("Policy", ns, "external-send-requires-approval")
        assert policy.get("agentsSelected") == 1, policy
        assert policy.get("version") == "v1"
        assert cluster.status("Environment", None, example.environment).get("agentCount") == 1
        assert cluster.status("Team", None, example.team).get("memberCount") == 3
        tool = cluster.status("Tool", ns, "zendesk.create-ticket")
        assert tool.get("toolName") == "zendesk.create_ticket"
        assert cluster.status("Model", ns, "gpt-5-thinking").get("address") == "openai:gpt-5-thinking"
        for kind, where, name in [
            ("FrameworkAdapter", None, example.adapter),
            ("ModelRoute", ns, "research-default"),
            ("Model", ns, "claude-sonnet"),
            ("Tool", ns, "slack.send"),
            ("MCPServer", ns, "github"),
            ("Memory", ns, "support-triage-working"),
            ("Policy", ns, "no-customer-data-exfiltration"),
            ("Environment", None, example.environment),
            ("Team", None, example.team),
        ]:
            obj = cluster.get(kind, where, name)
            st = obj.get("status") or {}
            assert st.get("observedGeneration") == obj["metadata"]["generation"], (kind, name, st)
            assert st.get("phase") == "Ready", (kind, name, st)
            assert cluster.condition(where or "", name, "Ready", kind=kind)["status"] == "True"

    eventually(referenced, timeout=30)


# --- fan-out ------------------------------------------------------------------------------------------------


def reconciled(log: str, namespace: str, name: str) -> int:
    return log.count(f"compiled Agent/{namespace}/{name} ")


def test_model_update_rewrites_exactly_its_dependants(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    route = {
        "apiVersion": "model.joch.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "claude-only", "namespace": ns},
        "spec": {"strategy": {"primary": "anthropic:claude-sonnet"}},
    }
    other = agent_doc(
        example,
        "other-agent",
        modelRoute={"routeRef": {"name": "claude-only"}},
        tools=[{"name": "zendesk.search"}],
        mcpServers=None,
        memories=None,
    )
    barrier = agent_doc(
        example, "barrier-agent", modelRoute={"routeRef": {"name": "claude-only"}}, tools=None
    )
    barrier["spec"].pop("mcpServers", None)
    operator = start_operator(ns)
    apply(kubectl, [*example.docs, route, other, barrier])
    for name in ("support-triage", "other-agent", "barrier-agent"):
        eventually(lambda n=name: ready(cluster, ns, n), timeout=90)

    before = {name: cluster.agent(ns, name) for name in ("support-triage", "other-agent")}
    cms_before = cluster.manifests(ns)
    log_before = operator.current_log()

    cluster.patch("Model", ns, "gpt-5-thinking", {"spec": {"pricing": {"inputPerMillionTokens": 2.5}}})

    def triage_rewritten() -> str:
        sha = cluster.status("Agent", ns, "support-triage")["compiledManifest"]["sha256"]
        assert sha != before["support-triage"]["status"]["compiledManifest"]["sha256"]
        return str(sha)

    new_sha = eventually(triage_rewritten, timeout=60)
    cm = cluster.manifests(ns)["support-triage-g1"]
    assert cm.metadata.annotations["joch.dev/manifest-sha256"] == new_sha

    # Barrier: a later change the operator must process after the Model's fan-out was queued.
    cluster.patch("Agent", ns, "barrier-agent", {"spec": {"description": "barrier"}})
    eventually(lambda: ready(cluster, ns, "barrier-agent", generation=2), timeout=60)

    after_other = cluster.agent(ns, "other-agent")
    assert after_other["metadata"]["resourceVersion"] == before["other-agent"]["metadata"]["resourceVersion"]
    assert (
        cluster.manifests(ns)["other-agent-g1"].metadata.resource_version
        == cms_before["other-agent-g1"].metadata.resource_version
    )
    log_after = operator.current_log()[len(log_before) :]
    assert reconciled(log_after, ns, "other-agent") == 0, "an Agent not using the Model was reconciled"
    assert reconciled(log_after, ns, "support-triage") >= 1


def test_selector_policy_added_and_removed(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, ns, "support-triage"), timeout=90)

    def resolved() -> list[str]:
        manifest = yaml.safe_load(cluster.manifests(ns)["support-triage-g1"].data["manifest.yaml"])
        return list(manifest["spec"]["policies"]["resolved"])

    initial = resolved()
    assert initial == ["external-send-requires-approval@v1", "no-customer-data-exfiltration@v1"]
    policy = {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "zz-selected", "namespace": ns},
        "spec": {
            "appliesTo": {"agents": {"selector": {"matchLabels": {"owner": "ana"}}}},
            "rules": [{"when": {"tool.sideEffect": "financial"}, "action": "deny"}],
        },
    }
    apply(kubectl, [policy])

    def added() -> None:
        assert resolved() == [*initial, "zz-selected@v1"]
        assert cluster.status("Policy", ns, "zz-selected").get("agentsSelected") == 1

    eventually(added, timeout=60)
    cluster.delete("Policy", ns, "zz-selected")
    eventually(lambda: _equal(resolved(), initial), timeout=60)
    ready(cluster, ns, "support-triage")


def _equal(left: Any, right: Any) -> None:
    assert left == right


def test_namespace_label_moves_agents_without_an_env_label(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    unlabelled = agent_doc(example, "unlabelled")
    del unlabelled["metadata"]["labels"]["env"]
    apply(kubectl, [*example.docs, unlabelled])
    eventually(lambda: ready(cluster, ns, "unlabelled"), timeout=90)
    assert cluster.status("Agent", ns, "unlabelled")["environment"] == example.environment

    def described() -> None:  # the AgBOM service's write of the Agent's status has landed too
        assert cluster.status("Agent", ns, "support-triage").get("agbom"), "no status.agbom yet"

    eventually(described, timeout=60)
    labelled_rv = cluster.agent(ns, "support-triage")["metadata"]["resourceVersion"]

    cluster.label_namespace(ns, {"joch.dev/environment": f"staging-{example.suffix}"})

    def moved() -> None:
        status = cluster.status("Agent", ns, "unlabelled")
        assert status["environment"] == f"staging-{example.suffix}", status.get("environment")

    eventually(moved, timeout=60)
    manifest = yaml.safe_load(manifest_of(cluster, ns, "unlabelled-g1"))
    assert manifest["spec"]["environment"] == f"staging-{example.suffix}"
    # The Agent whose own label decides its environment is untouched.
    assert cluster.agent(ns, "support-triage")["metadata"]["resourceVersion"] == labelled_rv


# --- references --------------------------------------------------------------------------------------------


def test_deleting_a_reference_flips_resolved_refs_and_back(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    apply(kubectl, example.docs)
    good = eventually(lambda: ready(cluster, ns, "support-triage"), timeout=90)
    good_cm = cluster.manifests(ns)["support-triage-g1"]

    cluster.delete("Tool", ns, "slack.send")

    def missing() -> dict[str, Any]:
        cond = cluster.condition(ns, "support-triage", "ResolvedRefs")
        assert cond["status"] == "False", cond
        return cond

    cond = eventually(missing, timeout=60)
    assert cond["reason"] == "MissingReference"
    assert f"Tool {ns}/slack.send not found" in cond["message"]
    assert "spec.tools[2]" in cond["message"]
    status = cluster.status("Agent", ns, "support-triage")
    assert status["phase"] == "Pending"
    assert cluster.condition(ns, "support-triage", "Ready")["status"] == "False"
    assert cluster.condition(ns, "support-triage", "Reconciling")["status"] == "True"
    assert status["compiledManifest"] == good["compiledManifest"], "the last good manifest stays referenced"
    kept = cluster.manifests(ns)["support-triage-g1"]
    assert kept.metadata.resource_version == good_cm.metadata.resource_version
    eventually(
        lambda: _equal(
            any(
                e.reason == "MissingReference" and "slack.send" in e.message
                for e in cluster.events(ns, "support-triage")
            ),
            True,
        ),
        timeout=30,
    )

    apply(kubectl, [example.find("Tool", "slack.send")])
    back = eventually(lambda: ready(cluster, ns, "support-triage"), timeout=60)
    assert cluster.condition(ns, "support-triage", "ResolvedRefs")["status"] == "True"
    # Re-created: a new uid, so a new source hash, rewritten into the same ConfigMap.
    assert back["compiledManifest"]["sourceHash"] != good["compiledManifest"]["sourceHash"]
    assert set(cluster.manifests(ns)) == {"support-triage-g1"}


def test_capability_mismatch_stalls_the_agent(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, ns, "support-triage"), timeout=90)

    cluster.patch(
        "FrameworkAdapter", None, example.adapter, {"spec": {"capabilities": {"mcpBinding": False}}}
    )

    def stalled() -> None:
        cond = cluster.condition(ns, "support-triage", "Compiled")
        assert cond["status"] == "False", cond
        assert cond["reason"] == "CapabilityMismatch"
        assert cluster.condition(ns, "support-triage", "Stalled")["status"] == "True"
        assert cluster.status("Agent", ns, "support-triage")["phase"] == "Failed"

    eventually(stalled, timeout=60)
    eventually(
        lambda: _equal(
            any(e.reason == "CapabilityMismatch" for e in cluster.events(ns, "support-triage")), True
        ),
        timeout=30,
    )
    cluster.patch("FrameworkAdapter", None, example.adapter, {"spec": {"capabilities": {"mcpBinding": True}}})
    eventually(lambda: ready(cluster, ns, "support-triage"), timeout=60)


# --- ConfigMaps --------------------------------------------------------------------------------------------


def test_newest_three_generations_are_kept(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, ns, "support-triage"), timeout=90)
    for update in range(1, 6):
        cluster.patch("Agent", ns, "support-triage", {"spec": {"description": f"update {update}"}})
        eventually(lambda g=update + 1: ready(cluster, ns, "support-triage", generation=g), timeout=60)

    def retained() -> None:
        assert set(cluster.manifests(ns)) == {"support-triage-g4", "support-triage-g5", "support-triage-g6"}

    eventually(retained, timeout=30)
    status = cluster.status("Agent", ns, "support-triage")
    assert status["compiledManifest"]["name"] == "support-triage-g6"
    cm = cluster.manifests(ns)["support-triage-g6"]
    assert cm.metadata.labels["joch.dev/generation"] == "6"
    assert cm.metadata.labels["joch.dev/agent"] == "support-triage"
    owner = cm.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == (
        "Agent",
        "support-triage",
        cluster.agent(ns, "support-triage")["metadata"]["uid"],
    )
    assert yaml.safe_load(cm.data["manifest.yaml"])["spec"]["agent"]["generation"] == 6


def test_configmaps_follow_the_agent(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    start_operator(ns)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, ns, "support-triage"), timeout=90)
    data = manifest_of(cluster, ns, "support-triage-g1")

    # Deleted behind the operator's back: written again, same bytes.
    cluster.core.delete_namespaced_config_map("support-triage-g1", ns)
    eventually(lambda: _equal(manifest_of(cluster, ns, "support-triage-g1"), data), timeout=60)

    cluster.delete("Agent", ns, "support-triage")
    eventually(lambda: _equal(cluster.manifests(ns), {}), timeout=60)


# --- restarts ----------------------------------------------------------------------------------------------


def test_restart_over_a_converged_fleet_writes_nothing(
    example: Example, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    ns = example.namespace
    first = start_operator(ns)
    apply(kubectl, [*example.docs, agent_doc(example, "second")])
    for name in ("support-triage", "second"):
        eventually(lambda n=name: ready(cluster, ns, n), timeout=90)

    def versions() -> dict[str, str]:
        """resourceVersion of every object the operator writes (its namespace's, and the cluster-scoped
        Environments and Teams, whose statuses count Agents too)."""
        found: dict[str, str] = {}
        for kinds, where in (
            (
                "agents,models,modelroutes,tools,mcpservers,memories,policies,frameworkadapters,configmaps",
                ("-n", ns),
            ),
            ("environments,teams", ("-A",)),
        ):
            out = kubectl("get", kinds, *where, "-o", "json")
            assert out.returncode == 0, out.stderr
            for i in json.loads(out.stdout)["items"]:
                found[f"{i['kind']}/{i['metadata']['name']}"] = i["metadata"]["resourceVersion"]
        return found

    def settled() -> None:  # referenced statuses are written after a short delay, each on its own
        assert cluster.status("Policy", ns, "external-send-requires-approval").get("agentsSelected") == 2
        quiet_since = time.monotonic()
        seen = versions()
        while time.monotonic() - quiet_since < 2.0:  # 4x the operator's status delay without a write
            time.sleep(0.25)
            now = versions()
            if now != seen:
                seen, quiet_since = now, time.monotonic()

    eventually(settled, timeout=60)
    assert first.stop() == 0, "SIGTERM should stop the operator cleanly"

    before = versions()
    second = start_operator(ns)
    line = second.wait_synced()
    after = versions()
    changed = sorted(key for key in after.keys() | before.keys() if after.get(key) != before.get(key))
    assert "configmaps_written=0" in line, (line, changed)
    assert "status_patches=0" in line, (line, changed)
    assert changed == []
