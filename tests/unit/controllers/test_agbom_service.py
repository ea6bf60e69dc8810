"""The AgBOM service (joch.controllers.agbom) over the in-memory API server.

Cases: the first pass creates the AgBOM object (owned by the Agent), its generation-1 document
ConfigMap (valid CycloneDX naming the agent's models, owned by the AgBOM) and both statuses; a restart
over that writes nothing; a Model change makes exactly its dependants' generation 2 and leaves an
unrelated Agent alone; an event that changes nothing writes nothing; an unpinned MCP server shows up in
highRiskComponents with a Warning Event; retention keeps the newest five; a user-written AgBOM's
component switches are honoured and one naming another Agent says so; a ConfigMap written before a
crash (no status followed) is adopted, not duplicated.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import io
import json
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from joch import audit
from joch.controllers.agbom import AgBOMService, agbom_key
from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.services import SERVICES
from joch.domain.reconcile import agbom as plan
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, NS, agent_copy, bump, example_world, obj, run, settle, started

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def documents(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {
        body["metadata"]["name"]: body
        for body in kube.of("configmaps")
        if body["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agbom"
    }


def bom_of(body: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(body["data"][plan.DOCUMENT_KEY])
    return parsed


def test_first_pass_creates_the_agbom_its_document_and_both_statuses() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, services=SERVICES)
        agent = obj(kube, "agents", "support-triage")
        bom = obj(kube, "agboms", "support-triage")
        owner = bom["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Agent",
            "support-triage",
            agent["metadata"]["uid"],
        )
        assert bom["spec"] == {"agentRef": {"name": "support-triage"}}

        (name,) = documents(kube)
        assert name == "support-triage-agbom-v1"
        stored = documents(kube)[name]
        text = stored["data"]["bom.cdx.json"]
        assert VALIDATOR.validate_str(text) is None
        document = json.loads(text)
        assert document["version"] == 1
        assert document["metadata"]["component"]["bom-ref"] == agent["metadata"]["uid"]
        names = {c["name"] for c in document["components"]}
        assert {"openai:gpt-5-thinking", "anthropic:claude-sonnet"} <= names
        sha = hashlib.sha256(text.encode()).hexdigest()
        cm_owner = stored["metadata"]["ownerReferences"][0]
        assert (cm_owner["kind"], cm_owner["uid"]) == ("AgBOM", bom["metadata"]["uid"])
        assert stored["metadata"]["labels"]["joch.dev/agbom-generation"] == "1"

        status = bom["status"]
        assert status["generation"] == 1
        assert status["artifacts"]["cyclonedx"] == {
            "configMap": name,
            "key": "bom.cdx.json",
            "sha256": sha,
        }
        assert status["phase"] == "Ready"
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True", "Complete": "True"}
        assert status["highRiskCount"] == len(status["highRiskComponents"])
        assert agent["status"]["agbom"] == {"name": "support-triage", "generation": 1, "sha256": sha}
        await controller.recorder.flush()
        assert "Generated" in [e["reason"] for e in kube.of("events")]
        await controller.stop()

        writes = len(kube.writes())
        again = await started(kube, services=SERVICES)
        assert kube.writes()[writes:] == [], "a restart over a converged fleet writes nothing"
        await again.stop()

    run(scenario)


def test_a_model_change_moves_exactly_its_dependants_and_a_repeat_event_writes_nothing() -> None:
    async def scenario() -> None:
        other_model = {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"name": "local-llm", "namespace": NS, "generation": 1},
            "spec": {"provider": "ollama", "model": "llama3", "endpoint": {"type": "local"}, "auth": {}},
        }
        route = {
            "apiVersion": "model.joch.dev/v1alpha1",
            "kind": "ModelRoute",
            "metadata": {"name": "local", "namespace": NS, "generation": 1},
            "spec": {"strategy": {"primary": "ollama:local-llm"}},
        }
        lone = agent_copy("lone", modelRoute={"routeRef": {"name": "local"}})
        kube = example_world(other_model, route, lone)
        controller = await started(kube, services=SERVICES)
        assert set(documents(kube)) == {"support-triage-agbom-v1", "lone-agbom-v1"}

        body = bump(kube, "models", "gpt-5-thinking", model="gpt-5.1-thinking")
        controller.observe("Model", "MODIFIED", body)
        await settle(controller)
        assert set(documents(kube)) == {"support-triage-agbom-v1", "support-triage-agbom-v2", "lone-agbom-v1"}
        assert obj(kube, "agboms", "support-triage")["status"]["generation"] == 2
        assert obj(kube, "agboms", "lone")["status"]["generation"] == 1
        newest = bom_of(documents(kube)["support-triage-agbom-v2"])
        versions = {c["name"]: c.get("version") for c in newest["components"]}
        assert versions["openai:gpt-5-thinking"] == "gpt-5.1-thinking"
        assert obj(kube, "agents", "support-triage")["status"]["agbom"]["generation"] == 2

        writes = len(kube.writes())
        controller.observe("Model", "MODIFIED", copy.deepcopy(body))  # the same object again
        tool = obj(kube, "tools", "zendesk.search")
        tool["metadata"]["resourceVersion"] = kube._next()  # metadata-only change: same generation
        controller.observe("Tool", "MODIFIED", copy.deepcopy(tool))
        await settle(controller)
        assert kube.writes()[writes:] == []
        await controller.stop()

    run(scenario)


def test_an_unpinned_mcp_server_is_high_risk_with_a_warning() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, services=SERVICES)
        assert not any(
            r["kind"] == "MCPServer"
            for r in obj(kube, "agboms", "support-triage")["status"]["highRiskComponents"]
        )
        trail = io.StringIO()
        controller.governance = audit.GovernanceLog(trail)
        server = obj(kube, "mcpservers", "github")
        server["spec"]["security"].pop("pinnedVersion")
        server["metadata"]["generation"] += 1
        server["metadata"]["resourceVersion"] = kube._next()
        controller.observe("MCPServer", "MODIFIED", copy.deepcopy(server))
        await settle(controller)
        status = obj(kube, "agboms", "support-triage")["status"]
        assert status["generation"] == 2
        risky = {(r["kind"], r["name"]): r["reason"] for r in status["highRiskComponents"]}
        assert risky[("MCPServer", f"{NS}/github")] == "no pinned version"
        assert status["highRiskCount"] == len(risky)
        await controller.recorder.flush()
        warnings = [e for e in kube.of("events") if e["reason"] == "HighRiskComponent"]
        assert len(warnings) == 1
        assert "MCPServer support/github: no pinned version" in warnings[0]["message"]
        findings = [json.loads(line) for line in trail.getvalue().splitlines()]
        assert [r["message"] for r in findings] == ["MCPServer support/github: no pinned version"]
        assert (findings[0]["class_name"], findings[0]["severity"]) == ("AgBOM High-Risk Finding", "High")
        assert findings[0]["joch"]["resource"]["kind"] == "AgBOM"
        await controller.stop()

    run(scenario)


def test_retention_keeps_the_newest_five_generations() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, services=SERVICES)
        for index in range(7):
            body = bump(kube, "models", "gpt-5-thinking", model=f"gpt-5.{index}")
            controller.observe("Model", "MODIFIED", body)
            await settle(controller)
        assert obj(kube, "agboms", "support-triage")["status"]["generation"] == 8
        assert set(documents(kube)) == {f"support-triage-agbom-v{n}" for n in range(4, 9)}
        await controller.stop()

    run(scenario)


def test_a_user_written_agbom_switches_components_and_one_naming_another_agent_fails() -> None:
    async def scenario() -> None:
        mine = {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "AgBOM",
            "metadata": {"name": "support-triage", "namespace": NS, "generation": 1},
            "spec": {"agentRef": {"name": "support-triage"}, "components": {"models": False}},
        }
        wrong: dict[str, Any] = {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "AgBOM",
            "metadata": {"name": "ghost", "namespace": NS, "generation": 1},
            "spec": {"agentRef": {"name": "support-triage"}},
        }
        lost = copy.deepcopy(wrong)
        lost["metadata"]["name"] = lost["spec"]["agentRef"]["name"] = "lost"
        kube = example_world(mine, wrong, lost)
        controller = await started(kube, services=SERVICES)
        document = bom_of(documents(kube)["support-triage-agbom-v1"])
        assert not [c for c in document["components"] if c["type"] == "machine-learning-model"]
        ghost = obj(kube, "agboms", "ghost")["status"]
        ready = next(c for c in ghost["conditions"] if c["type"] == "Ready")
        assert (ghost["phase"], ready["status"], ready["reason"]) == ("Failed", "False", "AgentRefMismatch")
        assert ready["message"].startswith("spec.agentRef.name: 'support-triage' is not this AgBOM's own")
        lost_status = obj(kube, "agboms", "lost")["status"]
        ready = next(c for c in lost_status["conditions"] if c["type"] == "Ready")
        assert (lost_status["phase"], ready["reason"]) == ("Pending", "AgentNotFound")
        assert ready["message"] == "Agent support/lost not found"
        await controller.stop()

    run(scenario)


def test_a_document_written_before_a_crash_is_adopted() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, services=SERVICES)
        await controller.stop()
        bom = obj(kube, "agboms", "support-triage")
        bom["status"] = {}  # the status write never happened
        agent = obj(kube, "agents", "support-triage")
        agent["status"].pop("agbom")
        again = await started(kube, services=SERVICES)
        assert set(documents(kube)) == {"support-triage-agbom-v1"}
        assert obj(kube, "agboms", "support-triage")["status"]["generation"] == 1
        assert obj(kube, "agents", "support-triage")["status"]["agbom"]["generation"] == 1
        await again.stop()

    run(scenario)


def test_refresh_on_change_false_waits_for_the_schedule() -> None:
    async def scenario() -> None:
        mine = {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "AgBOM",
            "metadata": {"name": "support-triage", "namespace": NS, "generation": 1},
            "spec": {
                "agentRef": {"name": "support-triage"},
                "refresh": {"onChange": False, "schedule": "0 3 * * *"},
            },
        }
        kube = example_world(mine)
        now = [NOW]  # 2026-11-27 12:00 UTC
        controller = Controller(
            kube,  # type: ignore[arg-type]
            ControllerConfig(status_delay=0),
            clock=lambda: now[0],
            services=SERVICES,
        )
        await controller.start()
        await settle(controller)
        (service,) = [s for s in controller.services if isinstance(s, AgBOMService)]
        key = agbom_key(NS, "support-triage")
        assert service.due[key] == datetime.datetime(2026, 11, 28, 3, 0, tzinfo=datetime.UTC)
        assert obj(kube, "agboms", "support-triage")["status"]["generation"] == 1

        body = bump(kube, "models", "gpt-5-thinking", model="gpt-5.1-thinking")
        controller.observe("Model", "MODIFIED", body)
        await settle(controller)
        status = obj(kube, "agboms", "support-triage")["status"]
        assert status["generation"] == 1, "onChange false: a change alone does not regenerate"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "refresh.onChange is false: regenerated on schedule only" in ready["message"]

        now[0] = datetime.datetime(2026, 11, 28, 3, 0, 5, tzinfo=datetime.UTC)
        controller.queue.add(key)  # what the timer queued for 03:00 does
        await settle(controller)
        assert obj(kube, "agboms", "support-triage")["status"]["generation"] == 2
        assert service.due[key] == datetime.datetime(2026, 11, 29, 3, 0, tzinfo=datetime.UTC)
        await controller.stop()

    run(scenario)


def test_a_bad_schedule_is_reported_and_ignored() -> None:
    async def scenario() -> None:
        mine = {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "AgBOM",
            "metadata": {"name": "support-triage", "namespace": NS, "generation": 1},
            "spec": {"agentRef": {"name": "support-triage"}, "refresh": {"schedule": "0 25 * * *"}},
        }
        kube = example_world(mine)
        controller = await started(kube, services=SERVICES)
        status = obj(kube, "agboms", "support-triage")["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert "spec.refresh.schedule: hour: '25' is outside 0-23; ignored" in ready["message"]
        assert status["generation"] == 1
        await controller.stop()

    run(scenario)


def test_an_agbom_deleted_by_hand_is_recreated_with_a_document_of_its_own() -> None:
    async def scenario() -> None:
        kube = example_world()
        controller = await started(kube, services=SERVICES)
        old = obj(kube, "agboms", "support-triage")
        key = next(k for k, body in kube.objects.items() if body is old)
        del kube.objects[key]
        controller.observe("AgBOM", "DELETED", copy.deepcopy(old))
        await settle(controller)
        new = obj(kube, "agboms", "support-triage")
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        assert new["status"]["generation"] == 1
        document = documents(kube)["support-triage-agbom-v1"]
        owner = document["metadata"]["ownerReferences"][0]
        assert owner["uid"] == new["metadata"]["uid"], "the document now belongs to the new AgBOM"
        await controller.stop()

    run(scenario)
