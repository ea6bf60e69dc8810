"""The Controller over an in-memory API server (FakeKube): what it writes, and what it queues.

Cases:
- first pass: ConfigMap support-triage-g1 with exactly the compiler's bytes, labels, owner, sha; Agent
  status Ready; referenced statuses (counts, version); a Compiled Event;
- no write storms: reconciling again, echoing our own status back, and restarting over the same
  cluster write nothing;
- fan-out precision: a Model change queues only its dependants, a selector Policy queues the Agents it
  selects (added and removed), a Namespace label queues only Agents without their own env label, a
  Team queues the Agents of its namespaces, an Agent's label change queues only itself;
- references: a deleted Tool gives ResolvedRefs False naming it, keeps the last good ConfigMap and
  raises a MissingReference Event; re-created, it compiles again;
- ConfigMaps: newest 3 generations kept; orphans of Agents deleted while down are removed at start;
  an externally deleted one is rewritten; deleting the Agent deletes them;
- an Agent the model rejects is reported (InvalidSpec);
- managed namespaces: Agents elsewhere are neither queued nor written.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from joch.domain.compilation.keys import ObjectKey
from joch.kube.configmaps import ManifestConfigMap
from tests.unit.controllers.support import (
    NS,
    agent_copy,
    bump,
    conditions,
    example_world,
    expected_manifest,
    obj,
    run,
    settle,
    started,
)


def agent(name: str, namespace: str = NS) -> ObjectKey:
    return ObjectKey("Agent", namespace, name)


def cm(kube: Any, name: str, namespace: str = NS) -> dict[str, Any]:
    return obj(kube, "configmaps", name, namespace)


def configmap_names(kube: Any, namespace: str = NS) -> set[str]:
    return {
        body["metadata"]["name"]
        for (_, plural, ns, _), body in kube.objects.items()
        if plural == "configmaps" and ns == namespace
    }


def agents_queued(controller: Any) -> list[ObjectKey]:
    """The Agent keys queued (referenced objects' status keys left out), sorted."""
    return sorted((k for k in controller.queue.queued() if k.kind == "Agent"), key=str)


def non_event_writes(kube: Any) -> list[tuple[str, str]]:
    return [w for w in kube.writes() if "/events" not in w[1]]


def test_first_pass_writes_the_manifest_the_status_and_referenced_statuses() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        body = cm(kube, "support-triage-g1")
        assert body["data"]["manifest.yaml"] == expected_manifest(kube, "support-triage")
        labels = body["metadata"]["labels"]
        assert labels["joch.dev/agent"] == "support-triage"
        assert labels["joch.dev/generation"] == "1"
        owner = body["metadata"]["ownerReferences"][0]
        triage = obj(kube, "agents", "support-triage")
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Agent",
            "support-triage",
            triage["metadata"]["uid"],
        )

        status = triage["status"]
        assert status["phase"] == "Ready"
        assert status["observedGeneration"] == 1
        assert (
            status["compiledManifest"]["sha256"]
            == body["metadata"]["annotations"]["joch.dev/manifest-sha256"]
        )
        assert {t: c["status"] for t, c in conditions(triage).items()} == {
            "Ready": "True",
            "Reconciling": "False",
            "Stalled": "False",
            "ResolvedRefs": "True",
            "Compiled": "True",
            "PolicyCompliant": "True",
        }
        assert all(c["lastTransitionTime"] == "2026-11-27T12:00:00Z" for c in conditions(triage).values())

        policy = obj(kube, "policies", "external-send-requires-approval")["status"]
        assert (policy["agentsSelected"], policy["version"], policy["phase"]) == (1, "v1", "Ready")
        assert obj(kube, "frameworkadapters", "openai-agents-sdk", None)["status"]["agentsBound"] == 1
        assert obj(kube, "environments", "prod", None)["status"]["agentCount"] == 1
        # A Team's status is the teams service's (test_team_service.py), not this one's.
        assert "status" not in obj(kube, "teams", "support-platform", None)
        assert obj(kube, "modelroutes", "research-default")["status"]["phase"] == "Ready"
        await controller.recorder.flush()
        reasons = [o["reason"] for o in kube.of("events")]
        assert reasons == ["Compiled"]
        await controller.stop()

    run(scenario)


def test_nothing_is_written_twice() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        before = len(non_event_writes(kube))

        controller.queue.add(agent("support-triage"))
        await settle(controller)
        # The watch echo of our own status write changes nothing either.
        controller.observe("Agent", "MODIFIED", copy.deepcopy(obj(kube, "agents", "support-triage")))
        controller.observe(
            "Policy", "MODIFIED", copy.deepcopy(obj(kube, "policies", "external-send-requires-approval"))
        )
        assert agents_queued(controller) == []
        await settle(controller)
        assert len(non_event_writes(kube)) == before
        await controller.stop()

        restarted = await started(kube)
        assert len(non_event_writes(kube)) == before, "a restart over a converged cluster writes nothing"
        assert restarted.counts["compiles"] == 1
        await restarted.stop()

    run(scenario)


def test_a_model_change_queues_exactly_its_dependants() -> None:
    async def scenario() -> None:
        route = {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "ModelRoute",
            "metadata": {"name": "claude-only", "namespace": NS},
            "spec": {"strategy": {"primary": "anthropic:claude-sonnet"}},
        }
        other = agent_copy("other", modelRoute={"routeRef": {"name": "claude-only"}})
        kube = example_world(route, other)
        controller = await started(kube)
        other_cm = copy.deepcopy(cm(kube, "other-g1"))
        old_sha = cm(kube, "support-triage-g1")["metadata"]["annotations"]["joch.dev/manifest-sha256"]

        body = bump(
            kube, "models", "gpt-5-thinking", pricing={"currency": "USD", "inputPerMillionTokens": 3.0}
        )
        controller.observe("Model", "MODIFIED", body)
        assert agents_queued(controller) == [agent("support-triage")]
        await settle(controller)
        assert cm(kube, "support-triage-g1")["metadata"]["annotations"]["joch.dev/manifest-sha256"] != old_sha
        assert cm(kube, "other-g1") == other_cm

        body = bump(
            kube, "models", "claude-sonnet", pricing={"currency": "USD", "inputPerMillionTokens": 4.0}
        )
        controller.observe("Model", "MODIFIED", body)
        assert agents_queued(controller) == [agent("other"), agent("support-triage")]
        await controller.stop()

    run(scenario)


def test_a_selector_policy_queues_the_agents_it_selects() -> None:
    async def scenario() -> None:
        plain = agent_copy("plain")
        plain["metadata"]["labels"] = {"env": "prod"}
        kube = example_world(plain)
        controller = await started(kube)
        policy = {
            "apiVersion": "joch.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": "owners", "namespace": NS},
            "spec": {
                "appliesTo": {"agents": {"selector": {"matchLabels": {"owner": "ana"}}}},
                "rules": [{"when": {"tool.sideEffect": "financial"}, "action": "deny"}],
            },
        }
        stored = kube.put("joch.dev", "policies", policy)
        controller.observe("Policy", "ADDED", copy.deepcopy(stored))
        assert agents_queued(controller) == [agent("support-triage")]
        await settle(controller)
        manifest = cm(kube, "support-triage-g1")["data"]["manifest.yaml"]
        assert "owners@v1" in manifest
        assert obj(kube, "policies", "owners")["status"]["agentsSelected"] == 1

        # The selector changes to match nobody: the Agent that used it is queued.
        stored = bump(
            kube, "policies", "owners", appliesTo={"agents": {"selector": {"matchLabels": {"owner": "x"}}}}
        )
        controller.observe("Policy", "MODIFIED", stored)
        assert agents_queued(controller) == [agent("support-triage")]
        await settle(controller)
        assert "owners@" not in cm(kube, "support-triage-g1")["data"]["manifest.yaml"]
        assert obj(kube, "policies", "owners")["status"]["agentsSelected"] == 0
        await controller.stop()

    run(scenario)


def test_labels_and_teams_fan_out_precisely() -> None:
    async def scenario() -> None:
        unlabelled = agent_copy("unlabelled")
        del unlabelled["metadata"]["labels"]["env"]
        kube = example_world(unlabelled)
        controller = await started(kube)
        assert (
            obj(kube, "agents", "unlabelled")["status"]["environment"] == "prod"
        )  # from the namespace label

        namespace = copy.deepcopy(obj(kube, "namespaces", "support", None))
        namespace["metadata"]["labels"]["joch.dev/environment"] = "staging"
        controller.observe_namespace("MODIFIED", namespace)
        assert agents_queued(controller) == [agent("unlabelled")]
        await settle(controller)
        assert obj(kube, "agents", "unlabelled")["status"]["environment"] == "staging"

        team = bump(kube, "teams", "support-platform", None, namespaces=["support", "elsewhere"])
        controller.observe("Team", "MODIFIED", team)
        assert agents_queued(controller) == [agent("support-triage"), agent("unlabelled")]
        await settle(controller)

        triage = copy.deepcopy(obj(kube, "agents", "support-triage"))
        triage["metadata"]["labels"]["owner"] = "bo"
        triage["metadata"]["resourceVersion"] = kube._next()
        controller.observe("Agent", "MODIFIED", triage)
        assert agents_queued(controller) == [agent("support-triage")]
        await controller.stop()

    run(scenario)


def test_a_deleted_reference_flips_resolved_refs_and_back() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube)
        good = copy.deepcopy(cm(kube, "support-triage-g1"))
        good_ref = obj(kube, "agents", "support-triage")["status"]["compiledManifest"]

        tool = kube.objects.pop(("tools.joch.dev", "tools", NS, "slack.send"))
        controller.observe("Tool", "DELETED", tool)
        assert agents_queued(controller) == [agent("support-triage")]
        await settle(controller)
        triage = obj(kube, "agents", "support-triage")
        resolved = conditions(triage)["ResolvedRefs"]
        assert resolved["status"] == "False"
        assert resolved["reason"] == "MissingReference"
        assert resolved["message"] == "spec.tools[2]: Tool support/slack.send not found"
        assert conditions(triage)["Ready"]["reason"] == "MissingReference"
        assert conditions(triage)["Reconciling"]["status"] == "True"
        assert triage["status"]["phase"] == "Pending"
        assert triage["status"]["compiledManifest"] == good_ref
        assert cm(kube, "support-triage-g1") == good, "the last good manifest is kept"
        await controller.recorder.flush()
        missing = [e for e in kube.of("events") if e["reason"] == "MissingReference"]
        assert [e["type"] for e in missing] == ["Warning"]
        assert "slack.send" in missing[0]["message"]

        restored = kube.put("tools.joch.dev", "tools", tool)
        controller.observe("Tool", "ADDED", copy.deepcopy(restored))
        await settle(controller)
        triage = obj(kube, "agents", "support-triage")
        assert conditions(triage)["ResolvedRefs"]["status"] == "True"
        assert conditions(triage)["ResolvedRefs"]["lastTransitionTime"] == "2026-11-27T12:00:00Z"
        assert cm(kube, "support-triage-g1")["data"]["manifest.yaml"] == expected_manifest(
            kube, "support-triage"
        )
        await controller.stop()

    run(scenario)


def test_configmap_life_cycle() -> None:
    async def scenario() -> None:
        orphan = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "gone-g2",
                "namespace": NS,
                "labels": {
                    "app.kubernetes.io/component": "compiled-agent-manifest",
                    "joch.dev/agent": "gone",
                    "joch.dev/generation": "2",
                },
                "ownerReferences": [
                    {"apiVersion": "joch.dev/v1alpha1", "kind": "Agent", "name": "gone", "uid": "u1"}
                ],
            },
            "data": {"manifest.yaml": "old"},
        }
        kube = example_world(orphan)
        controller = await started(kube)
        assert configmap_names(kube) == {"support-triage-g1"}, "the orphan of a deleted Agent is removed"

        for _ in range(5):
            controller.observe("Agent", "MODIFIED", bump(kube, "agents", "support-triage", description="x"))
            await settle(controller)
        assert configmap_names(kube) == {"support-triage-g4", "support-triage-g5", "support-triage-g6"}
        assert obj(kube, "agents", "support-triage")["status"]["compiledManifest"]["generation"] == 6

        deleted = kube.objects.pop(("", "configmaps", NS, "support-triage-g6"))
        controller.observe_configmap("DELETED", deleted)
        assert agents_queued(controller) == [agent("support-triage")]
        await settle(controller)
        assert cm(kube, "support-triage-g6")["data"] == deleted["data"]

        # Found missing by the informer's re-list after 410: the event names the ConfigMap only.
        deleted = kube.objects.pop(("", "configmaps", NS, "support-triage-g6"))
        identity = {"namespace": NS, "name": "support-triage-g6", "resourceVersion": "1"}
        controller.observe_configmap("DELETED", {"metadata": identity})
        assert agents_queued(controller) == [agent("support-triage")], "its Agent, as the cache knew it"
        await settle(controller)
        assert cm(kube, "support-triage-g6")["data"] == deleted["data"]
        controller.observe_configmap("DELETED", {"metadata": {"namespace": NS, "name": "unknown-g1"}})
        assert agents_queued(controller) == [], "a ConfigMap the cache never knew: nothing to do"

        body = kube.objects.pop(("joch.dev", "agents", NS, "support-triage"))
        controller.observe("Agent", "DELETED", body)
        await settle(controller)
        assert configmap_names(kube) == set()
        await controller.stop()

    run(scenario)


def test_an_agent_the_model_rejects_is_reported() -> None:
    async def scenario() -> None:
        broken = agent_copy("broken")
        broken["spec"]["framework"] = {"entrypoint": "x.py"}  # adapterRef is required
        kube = example_world(broken)
        controller = await started(kube)
        body = obj(kube, "agents", "broken")
        assert body["status"]["phase"] == "Failed"
        assert conditions(body)["Stalled"]["reason"] == "InvalidSpec"
        assert "adapterRef" in conditions(body)["Ready"]["message"]
        assert configmap_names(kube) == {"support-triage-g1"}
        await controller.stop()

    run(scenario)


def test_a_referenced_object_the_model_rejects_is_reported_once_and_counts_as_absent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One rule for every invalid stored object: its status says InvalidSpec naming the field, readers
    (the compiler) treat it as absent, the operator logs it once; fixed, it is Ready again."""

    async def scenario() -> None:
        kube = example_world()
        tool = obj(kube, "tools", "zendesk.search")
        tool["spec"]["endpoint"]["method"] = "TELEPORT"  # not an HTTP method the model accepts
        controller = await started(kube)
        try:
            body = obj(kube, "tools", "zendesk.search")
            assert body["status"]["phase"] == "Failed"
            assert conditions(body)["Ready"]["reason"] == "InvalidSpec"
            assert conditions(body)["Stalled"]["status"] == "True"
            assert "spec.endpoint.method" in conditions(body)["Ready"]["message"]
            agent_body = obj(kube, "agents", "support-triage")
            assert conditions(agent_body)["ResolvedRefs"]["status"] == "False"
            assert "zendesk.search" in conditions(agent_body)["ResolvedRefs"]["message"]

            again = copy.deepcopy(obj(kube, "tools", "zendesk.search"))
            again["metadata"]["resourceVersion"] = kube._next()
            controller.observe("Tool", "MODIFIED", again)  # the same problem: not logged again
            await settle(controller)
            logged = [
                r for r in caplog.records if "does not parse" in r.getMessage() and "Tool" in r.getMessage()
            ]
            assert len(logged) == 1, [r.getMessage() for r in logged]

            fixed = bump(kube, "tools", "zendesk.search")
            fixed["spec"]["endpoint"]["method"] = "GET"
            obj(kube, "tools", "zendesk.search")["spec"]["endpoint"]["method"] = "GET"
            controller.observe("Tool", "MODIFIED", fixed)
            await settle(controller)
            body = obj(kube, "tools", "zendesk.search")
            assert conditions(body)["Ready"]["status"] == "True"
            assert "Stalled" not in conditions(body)
            assert conditions(obj(kube, "agents", "support-triage"))["ResolvedRefs"]["status"] == "True"
        finally:
            await controller.stop()

    with caplog.at_level(logging.WARNING, logger="joch.controller"):
        run(scenario)


def test_only_managed_namespaces_are_acted_on() -> None:
    async def scenario() -> None:
        elsewhere = agent_copy("elsewhere")
        elsewhere["metadata"]["namespace"] = "other"
        kube = example_world(elsewhere)
        controller = await started(kube, namespaces=("other",))
        assert controller.watch_namespaces() == ("other", "joch-system")
        assert configmap_names(kube, NS) == set()
        # It compiles (with missing references: they are in another, unshared namespace).
        assert obj(kube, "agents", "elsewhere", "other")["status"]["phase"] == "Pending"
        assert "status" not in obj(kube, "agents", "support-triage")
        await controller.stop()

    run(scenario)


def test_manifest_cache_tells_echoes_from_foreign_changes() -> None:
    from joch.controllers.manifests import ManifestCache

    cache = ManifestCache()
    mine = ManifestConfigMap(NS, "a-g1", "a", "u", 1, "sha1", "10")
    cache.pending(NS, "a-g1", "sha1")
    assert cache.observe(False, mine) is False, "the echo of our own create"
    cache.settled(NS, "a-g1")
    assert cache.observe(False, ManifestConfigMap(NS, "a-g1", "a", "u", 1, "sha1", "11")) is False
    assert cache.observe(False, ManifestConfigMap(NS, "a-g1", "a", "u", 1, "edited", "12")) is True
    assert cache.observe(True, ManifestConfigMap(NS, "a-g1", "a", "u", 1, "edited", "13")) is True
    assert cache.get(NS, "a-g1") is None
    assert cache.observe(True, ManifestConfigMap(NS, "a-g1", "a", "u", 1, "edited", "14")) is False


def test_a_forbidden_status_write_is_not_retried() -> None:
    async def scenario() -> None:
        kube = example_world()
        kube.forbidden.add(r"/apis/joch\.dev/v1alpha1/frameworkadapters/[^/]+/status")
        controller = await started(kube)
        assert obj(kube, "agents", "support-triage")["status"]["phase"] == "Ready"
        assert "status" not in obj(kube, "frameworkadapters", "openai-agents-sdk", None)
        attempts = sum(1 for m, p in kube.requests if m == "PATCH" and "frameworkadapters" in p)
        assert attempts == 1
        assert controller.queue.retry(ObjectKey("FrameworkAdapter", None, "openai-agents-sdk")) == 0.5, (
            "no backoff was accumulated: the failure was not retried"
        )
        await controller.stop()

    run(scenario)
