"""The AgBOM service against the real API server, with the operator running (``joch operator``).

Cases:
- the example fleet gets its AgBOM: the object (owned by the Agent), ConfigMap support-triage-agbom-v1
  with a CycloneDX 1.6 document the strict validator accepts, the AgBOM status and Agent status.agbom;
- a Model change moves exactly its dependants' generation by one (an Agent on another route stays),
  ``joch agbom diff`` names the change, and re-applying the same files changes nothing;
- an unpinned MCP server and a drift report (the gateway's status.discovered) show up in
  highRiskComponents, the MCPServer's Drifted condition and a SchemaDrift Event; the compiled manifest
  marks the server; ``joch mcp pin`` accepts the discovery and Drifted clears;
- retention keeps the newest five documents; deleting the Agent lets the garbage collector remove the
  AgBOM and its documents.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from joch.cli import main as cli
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    Example,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
SELECTOR = "app.kubernetes.io/component=agbom"
VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def documents(cluster: Cluster, namespace: str) -> dict[str, Any]:
    items = cluster.core.list_namespaced_config_map(namespace, label_selector=SELECTOR).items
    return {cm.metadata.name: cm for cm in items}


def generation(cluster: Cluster, namespace: str, agent: str, want: int) -> dict[str, Any]:
    """Assert the AgBOM of ``agent`` is at generation ``want`` and the Agent says so; its status."""
    bom = cluster.try_get("AgBOM", namespace, agent)
    assert bom is not None, f"AgBOM {agent} not created yet"
    status = bom.get("status") or {}
    assert status.get("generation") == want, f"AgBOM {agent} at {status.get('generation')}, want {want}"
    assert (cluster.status("Agent", namespace, agent).get("agbom") or {}).get("generation") == want
    return status


def local_route(namespace: str) -> list[dict[str, Any]]:
    model = {
        "apiVersion": "model.joch.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "local-llm", "namespace": namespace},
        "spec": {
            "provider": "ollama",
            "model": "llama3",
            "endpoint": {"type": "local", "baseUrl": "http://127.0.0.1:11434"},
            "auth": {},
            "capabilities": {"text": True, "toolCalling": True},
            "limits": {"contextWindowTokens": 131072},
        },
    }
    route = {
        "apiVersion": "model.joch.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "local", "namespace": namespace},
        "spec": {"strategy": {"primary": "ollama:local-llm"}},
    }
    return [model, route]


def test_agboms_follow_their_agents_exactly(
    namespace: str, kubectl: Kubectl, kubeconfig: str, cluster: Cluster, start_operator: StartOperator
) -> None:
    example: Example = support_triage(namespace)
    start_operator(namespace)
    lone = agent_doc(example, "lone", modelRoute={"routeRef": {"name": "local"}})
    apply(kubectl, [*example.docs, *local_route(namespace), lone])
    eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
    first = eventually(lambda: generation(cluster, namespace, "support-triage", 1), timeout=60)
    eventually(lambda: generation(cluster, namespace, "lone", 1), timeout=60)

    agent = cluster.agent(namespace, "support-triage")
    bom = cluster.get("AgBOM", namespace, "support-triage")
    owner = bom["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("Agent", agent["metadata"]["uid"])
    stored = documents(cluster, namespace)["support-triage-agbom-v1"]
    text = stored.data["bom.cdx.json"]
    assert VALIDATOR.validate_str(text) is None
    document = json.loads(text)
    assert document["version"] == 1
    assert document["metadata"]["component"]["bom-ref"] == agent["metadata"]["uid"]
    assert first["artifacts"]["cyclonedx"]["configMap"] == "support-triage-agbom-v1"
    assert agent["status"]["agbom"]["sha256"] == first["artifacts"]["cyclonedx"]["sha256"]
    printed = kubectl("get", "agboms.ops.joch.dev", "-n", namespace)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.split("\n")[0].split() == [
        "NAME",
        "READY",
        "AGENT",
        "GENERATION",
        "HIGH-RISK",
        "AGE",
    ]

    # A Model change: support-triage's AgBOM moves to 2, lone's (another route) stays at 1.
    lone_version = cluster.get("AgBOM", namespace, "lone")["metadata"]["resourceVersion"]
    cluster.patch("Model", namespace, "gpt-5-thinking", {"spec": {"model": "gpt-5.1-thinking"}})
    eventually(lambda: generation(cluster, namespace, "support-triage", 2), timeout=60)
    out = io.StringIO()
    code = _joch(
        ["agbom", "diff", "support-triage", "-n", namespace, "--from", "1", "--to", "2"], kubeconfig, out
    )
    assert code == 0
    assert "~ Model openai:gpt-5-thinking version: gpt-5-thinking -> gpt-5.1-thinking" in out.getvalue()

    # Re-applying the same files changes nothing; a later change to lone proves the events were seen.
    triage_version = cluster.get("AgBOM", namespace, "support-triage")["metadata"]["resourceVersion"]
    models = copy.deepcopy(example.find("Model", "gpt-5-thinking"))
    models["spec"]["model"] = "gpt-5.1-thinking"
    apply(
        kubectl,
        [*[d for d in example.docs if d is not example.find("Model", "gpt-5-thinking")], models, lone],
    )
    assert cluster.get("AgBOM", namespace, "lone")["metadata"]["resourceVersion"] == lone_version
    cluster.patch("Model", namespace, "local-llm", {"spec": {"model": "llama3.1"}})
    eventually(lambda: generation(cluster, namespace, "lone", 2), timeout=60)
    assert cluster.get("AgBOM", namespace, "support-triage")["metadata"]["resourceVersion"] == triage_version
    assert set(documents(cluster, namespace)) == {
        "support-triage-agbom-v1",
        "support-triage-agbom-v2",
        "lone-agbom-v1",
        "lone-agbom-v2",
    }

    # Retention: five more Model changes leave generations 3..7.
    for step in range(3, 8):
        cluster.patch("Model", namespace, "gpt-5-thinking", {"spec": {"model": f"gpt-5.{step}"}})
        eventually(lambda step=step: generation(cluster, namespace, "support-triage", step), timeout=60)  # type: ignore[misc]
    names = {n for n in documents(cluster, namespace) if n.startswith("support-triage-")}
    assert names == {f"support-triage-agbom-v{n}" for n in range(3, 8)}

    # Deleting the Agent: the garbage collector removes its AgBOM and documents.
    cluster.delete("Agent", namespace, "support-triage")

    def gone() -> None:
        assert cluster.try_get("AgBOM", namespace, "support-triage") is None
        assert not [n for n in documents(cluster, namespace) if n.startswith("support-triage-")]

    eventually(gone, timeout=90)


def test_unpinned_and_drifted_mcp_servers_are_high_risk_until_pinned(
    namespace: str, kubectl: Kubectl, kubeconfig: str, cluster: Cluster, start_operator: StartOperator
) -> None:
    example: Example = support_triage(namespace)
    start_operator(namespace)
    apply(kubectl, example.docs)
    eventually(lambda: generation(cluster, namespace, "support-triage", 1), timeout=90)
    assert not [
        r
        for r in cluster.status("AgBOM", namespace, "support-triage")["highRiskComponents"]
        if r["kind"] == "MCPServer"
    ]

    # The gateway reports another version than the pin: drift.
    discovered = {
        "version": "2026.12.0",
        "tools": [{"name": "search_code", "schemaSha": "sha256:" + "a" * 64}],
    }
    patched = kubectl(
        "patch", "mcpservers.tools.joch.dev", "github", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"discovered": discovered}}),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr

    def drifted() -> dict[str, Any]:
        condition = cluster.condition(namespace, "github", "Drifted", kind="MCPServer")
        assert (condition["status"], condition["reason"]) == ("True", "SchemaDrift")
        assert "version: pinned 2026.10.1, discovered 2026.12.0" in condition["message"]
        status = generation(cluster, namespace, "support-triage", 2)
        risky = {(r["kind"], r["name"]): r["reason"] for r in status["highRiskComponents"]}
        assert risky[("MCPServer", f"{namespace}/github")].startswith(
            "schema drift: version: pinned 2026.10.1"
        )
        return status

    eventually(drifted, timeout=60)
    manifest = yaml.safe_load(next(iter(cluster.manifests(namespace).values())).data["manifest.yaml"])
    (server,) = manifest["spec"]["mcpServers"]
    assert server["drifted"] is True

    def warned() -> None:
        events = cluster.core.list_namespaced_event(namespace).items
        kinds = [(e.type, e.reason) for e in events if e.involved_object.kind == "MCPServer"]
        assert ("Warning", "SchemaDrift") in kinds, kinds

    eventually(warned, timeout=30)

    # A human accepts the discovery. kubectl apply owns the pin: refused, naming the owner, with the YAML
    # to commit; taken over with --force-conflicts, the pins follow the discovery and Drifted clears.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert _joch(["mcp", "pin", "github", "-n", namespace], kubeconfig, io.StringIO()) == 1
    assert 'conflict with "kubectl-client-side-apply"' in err.getvalue()
    assert "pinnedVersion: 2026.12.0" in err.getvalue()
    out = io.StringIO()
    pinned_now = _joch(["mcp", "pin", "github", "-n", namespace, "--force-conflicts"], kubeconfig, out)
    assert pinned_now == 0, out.getvalue()
    assert "pinned version 2026.12.0 and 1 tool schema(s)" in out.getvalue()
    security = cluster.get("MCPServer", namespace, "github")["spec"]["security"]
    assert security["pinnedTools"] == discovered["tools"]

    def pinned() -> None:
        condition = cluster.condition(namespace, "github", "Drifted", kind="MCPServer")
        assert (condition["status"], condition["reason"]) == ("False", "Pinned")
        status = cluster.status("AgBOM", namespace, "support-triage")
        assert not [r for r in status["highRiskComponents"] if r["kind"] == "MCPServer"]

    eventually(pinned, timeout=60)

    # No pin at all: high risk again, with its own reason.
    cluster.patch("MCPServer", namespace, "github", {"spec": {"security": {"pinnedVersion": None}}})

    def unpinned() -> None:
        status = cluster.status("AgBOM", namespace, "support-triage")
        risky = {(r["kind"], r["name"]): r["reason"] for r in status["highRiskComponents"]}
        assert risky.get(("MCPServer", f"{namespace}/github")) == "no pinned version"

    eventually(unpinned, timeout=60)


def _joch(argv: list[str], kubeconfig: str, out: io.StringIO) -> int:
    with contextlib.redirect_stdout(out):
        return cli.main([*argv, "--kubeconfig", kubeconfig])
