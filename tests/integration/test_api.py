"""The /v1 API against the real API server, signed in with real OIDC tokens from the local issuer.

The operator runs with its webhooks and the API (``--api-port``); users sign in with tokens the local
control plane's issuer mints (joch.devcluster.oidc), which kube-apiserver verifies through its structured
authentication configuration. RBAC comes from Teams: ada is an admin, alice an approver and victor a
viewer of team A (this test's namespace); mallory a viewer of team B (another namespace).

Cases: no token, another issuer's key and impersonation headers are refused; a viewer lists and gets with
paging, and her apply answers 403 naming the permission; mallory lists nothing of team A; ada's apply of
10 documents with one invalid writes nothing, of 10 valid writes them, validate and diff report; alice
decides an Approval and the server stamps her as the decider (and kube-apiserver's audit log names her);
a watch resumes after a reconnect without missing or repeating an event; runs are created, cancelled and
followed, an Eval run and a promotion start; the AgBOM document is served; hostile bodies on every POST
answer 4xx, never 500; /openapi.json and /healthz answer without a token.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from joch.devcluster import oidc
from tests.conftest import ClusterHandle
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    apply,
    cluster_fixture,
    eventually,
    ready,
    remove_webhook_configurations,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
AGENT = "support-triage"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """HTTP calls to the /v1 API as one user (None: no token)."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base, self.token = base, token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as exc:
            text, status = exc.read().decode(), exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def lines(self, path: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The first ``count`` lines of a stream, then the connection is closed."""
        request = urllib.request.Request(self.base + path)
        request.add_header("Authorization", f"Bearer {self.token}")
        found: list[dict[str, Any]] = []
        with urllib.request.urlopen(request, timeout=timeout) as response:
            assert response.status == 200
            while len(found) < count:
                line = response.readline()
                if not line:
                    break
                found.append(json.loads(line))
        return found


def team(name: str, namespace: str, members: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {"members": [{"user": u, "role": r} for u, r in members], "namespaces": [namespace]},
    }


def tool(namespace: str, name: str, description: str = "a tool") -> dict[str, Any]:
    return {
        "apiVersion": "tools.joch.dev/v1alpha1",
        "kind": "Tool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "function", "description": description, "sideEffects": {"level": "read_only"}},
    }


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Any:
    name = f"t-api-other-{uuid.uuid4().hex[:6]}"
    assert kubectl("create", "namespace", name).returncode == 0
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_the_v1_api_as_signed_in_users(
    namespace: str,
    other_namespace: str,
    kubectl: Kubectl,
    control_plane: ClusterHandle,
    cluster: Cluster,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    if control_plane.control_plane is None:
        pytest.skip("needs the test's own control plane (its OIDC issuer)")
    state = control_plane.control_plane.state_dir
    suffix = uuid.uuid4().hex[:6]
    teams = [
        team(f"t-api-a-{suffix}", namespace, [("ada", "admin"), ("alice", "approver"), ("victor", "viewer")]),
        team(f"t-api-b-{suffix}", other_namespace, [("mallory", "viewer")]),
    ]
    example = support_triage(namespace)
    apply(kubectl, [*example.docs, *teams])
    port = _free_port()
    args = (
        f"--webhook-port={_free_port()}",
        f"--webhook-cert-dir={tmp_path / 'webhook-certs'}",
        f"--api-port={port}",
        f"--audit-log={tmp_path / 'governance.log'}",
        "--audit-hash-chain",
    )
    try:
        operator = start_operator(namespace, other_namespace, args=args)
        operator.wait_for_log("API listening on")
        operator.wait_for_log("applied ValidatingWebhookConfiguration")
        eventually(lambda: ready(cluster, namespace, AGENT), timeout=90)
        base = f"http://127.0.0.1:{port}"

        def as_(user: str) -> Api:
            return Api(base, oidc.mint(state, user, ["joch-users"]))

        _anonymous(base, state)
        _viewer(as_("victor"), namespace)
        _other_team(as_("mallory"), namespace, other_namespace)
        _admin_batches(as_("ada"), kubectl, namespace)
        approval = _decide(as_("ada"), as_("alice"), namespace, teams[0]["metadata"]["name"], state)
        _governance(tmp_path / "governance.log", approval, "victor")
        _watch_resumes(as_("ada"), namespace)
        _runs(as_("ada"), namespace)
        _agbom(as_("victor"), namespace)
        _protected(as_("ada"), kubectl, namespace, suffix)
        _hostile(as_("ada"), namespace)
    finally:
        remove_webhook_configurations(kubectl)
        for doc in teams:
            kubectl(
                "delete", "teams.ops.joch.dev", doc["metadata"]["name"], "--ignore-not-found", "--wait=false"
            )


def _anonymous(base: str, state: Path) -> None:
    status, answer = Api(base, None).call("GET", "/v1/namespaces/default/agents")
    assert status == 401, answer
    assert answer["error"]["code"] == "Unauthorized"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = oidc.mint(state, "ada", [], key=other_key)
    status, answer = Api(base, forged).call("GET", "/v1/namespaces/default/agents")
    assert status == 401, answer
    elsewhere = oidc.mint(state, "ada", [], issuer="https://127.0.0.1:9/another-issuer")
    assert Api(base, elsewhere).call("GET", "/v1/namespaces/default/agents")[0] == 401
    expired = oidc.mint(state, "ada", [], now=1_000_000_000)
    assert Api(base, expired).call("GET", "/v1/namespaces/default/agents")[0] == 401
    status, answer = Api(base, oidc.mint(state, "ada", [])).call(
        "GET", "/v1/namespaces/default/agents", headers={"Impersonate-User": "system:admin"}
    )
    assert status == 400, answer
    assert answer["error"]["code"] == "ImpersonationRefused"
    status, document = Api(base, None).call("GET", "/openapi.json")
    assert status == 200
    assert document["openapi"] == "3.1.0"
    assert Api(base, None).call("GET", "/healthz") == (200, {"status": "ok"})


def _viewer(victor: Api, namespace: str) -> None:
    def lists() -> dict[str, Any]:
        status, answer = victor.call("GET", f"/v1/namespaces/{namespace}/agents")
        assert status == 200, answer  # the Team's RoleBinding may take a moment
        return dict(answer)

    listed = eventually(lists, timeout=60)
    assert [item["metadata"]["name"] for item in listed["items"]] == [AGENT]
    assert listed["kind"] == "AgentList"
    status, agent = victor.call("GET", f"/v1/namespaces/{namespace}/agents/{AGENT}")
    assert status == 200
    assert agent["metadata"]["name"] == AGENT
    status, page = victor.call("GET", f"/v1/namespaces/{namespace}/tools?limit=1")
    assert status == 200
    assert len(page["items"]) == 1
    token = page["metadata"]["continue"]
    status, rest = victor.call("GET", f"/v1/namespaces/{namespace}/tools?limit=100&continue={token}")
    assert status == 200
    names = {i["metadata"]["name"] for i in page["items"]} | {i["metadata"]["name"] for i in rest["items"]}
    assert len(names) == 1 + len(rest["items"]) >= 2
    status, answer = victor.call("GET", f"/v1/namespaces/{namespace}/nonsense")
    assert status == 404, answer
    status, answer = victor.call(
        "POST", f"/v1/resources/apply?namespace={namespace}", [tool(namespace, "victors-tool")]
    )
    assert status == 403, answer
    assert answer["error"]["code"] == "Forbidden"
    assert 'User "victor" cannot patch resource "tools"' in answer["error"]["message"], answer


def _other_team(mallory: Api, namespace: str, other: str) -> None:
    def own() -> None:
        status, answer = mallory.call("GET", f"/v1/namespaces/{other}/agents")
        assert (status, answer["items"]) == (200, []), answer

    eventually(own, timeout=60)
    status, answer = mallory.call("GET", f"/v1/namespaces/{namespace}/agents")
    assert status == 403, answer
    assert 'User "mallory" cannot list resource "agents"' in answer["error"]["message"]


def _yaml(docs: list[dict[str, Any]]) -> bytes:
    return "\n---\n".join(json.dumps(doc) for doc in docs).encode()  # JSON is YAML


def _admin_batches(ada: Api, kubectl: Kubectl, namespace: str) -> None:
    def admin() -> None:
        status, answer = ada.call(
            "POST", f"/v1/resources/validate?namespace={namespace}", [tool(namespace, "probe")]
        )
        assert status == 200, answer
        assert answer["valid"] is True, answer

    eventually(admin, timeout=60)
    names = [f"batch-{i}" for i in range(10)]
    docs = [tool(namespace, name) for name in names]
    bad = dict(docs[6], spec={"type": "teleport", "sideEffects": {"level": "read_only"}})
    status, answer = ada.call(
        "POST", "/v1/resources/apply", raw=_yaml([*docs[:6], bad, *docs[7:]]), content_type="application/yaml"
    )
    assert status == 422, answer
    assert "1 of 10 documents rejected; nothing was applied" in answer["error"]["message"]
    assert "body#7" in answer["error"]["message"], answer
    rejected = [d for d in answer["error"]["details"]["documents"] if not d["ok"]]
    assert [d["name"] for d in rejected] == ["batch-6"]
    listed = kubectl("get", "tools.tools.joch.dev", "-n", namespace, "-o", "name")
    assert not any(name in listed.stdout for name in names), listed.stdout

    status, answer = ada.call("POST", "/v1/resources/apply", raw=_yaml(docs), content_type="application/yaml")
    assert status == 200, answer
    assert sorted(a["name"] for a in answer["applied"]) == sorted(names)
    assert all(a["resourceVersion"] for a in answer["applied"])

    changed = tool(namespace, "batch-0", description="a changed tool")
    status, answer = ada.call("POST", "/v1/resources/diff", [changed])
    assert status == 200, answer
    changes = answer["documents"][0]["changes"]
    assert {
        "op": "replace",
        "path": "/spec/description",
        "from": "a tool",
        "value": "a changed tool",
    } in changes
    got = kubectl(
        "get", "tools.tools.joch.dev", "batch-0", "-n", namespace, "-o", "jsonpath={.spec.description}"
    )
    assert got.stdout == "a tool"  # diff writes nothing


def _decide(ada: Api, alice: Api, namespace: str, team_name: str, state: Path) -> str:
    name = f"api-approval-{uuid.uuid4().hex[:4]}"
    doc = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "action": {"type": "promotion", "inputSummary": "api test"},
            "risk": {"level": "financial"},
            "routing": {"approvers": [f"team:{team_name}"], "timeoutMinutes": 600},
        },
    }
    status, answer = ada.call("POST", "/v1/resources/apply", [doc])
    assert status == 200, answer
    path = f"/v1/namespaces/{namespace}/approvals/{name}"
    status, answer = alice.call("POST", f"{path}/decide", {"decision": "reject"})
    assert status == 422, answer
    assert answer["error"]["message"].startswith("rationale: required to reject")
    status, answer = alice.call("POST", f"{path}/decide", {"decision": "maybe"})
    assert status == 422, answer
    assert answer["error"]["details"]["fields"][0]["field"] == "decision"

    def decided() -> dict[str, Any]:
        status, answer = alice.call("POST", f"{path}/decide", {"decision": "approve", "rationale": "fine"})
        assert status == 200, answer
        return dict(answer)

    approved = eventually(decided, timeout=60)
    assert approved["status"]["phase"] == "Approved"
    assert approved["status"]["decidedBy"] == "alice"
    status, listed = alice.call("GET", f"/v1/namespaces/{namespace}/approvals")
    assert status == 200
    assert name in [item["metadata"]["name"] for item in listed["items"]]
    status, answer = alice.call("POST", f"{path}/override", {"reason": "break glass"})
    assert status == 422, answer  # the schema: a decided Approval stays decided
    assert "a decided Approval cannot change phase" in answer["error"]["message"]
    pending = dict(doc, metadata={"name": f"{name}-2", "namespace": namespace})
    assert ada.call("POST", "/v1/resources/apply", [pending])[0] == 200
    status, answer = alice.call("POST", f"{path}-2/override", {"reason": "break glass"})
    assert status == 403, answer  # an approver holds no override verb
    assert "alice" in answer["error"]["message"], answer

    def audited() -> None:
        log = state / "kube-apiserver-audit.log"
        records = [json.loads(line) for line in log.read_text().splitlines() if name in line]
        assert any(
            r["user"]["username"] == "alice" and r["objectRef"].get("subresource") == "status"
            for r in records
        ), records[-3:]

    eventually(audited, timeout=30)
    return name


def _governance(log: Path, approval: str, viewer: str) -> None:
    """The operator's governance stream names the real users (alice decided through the API; victor's
    refused apply is not a denial of admission: RBAC refused it first), and its hash chain verifies until
    a record is changed."""

    def recorded() -> list[dict[str, Any]]:
        records = [json.loads(line) for line in log.read_text().splitlines()]
        decisions = [r for r in records if r["class_name"] == "Approval Decision"]
        assert any(
            r["actor"]["user"]["name"] == "alice" and r["joch"]["resource"]["name"] == approval
            for r in decisions
        ), decisions
        return records

    records = eventually(recorded, timeout=30)
    assert not any(r["actor"]["user"]["name"] == viewer for r in records), records
    intact = subprocess.run(
        [sys.executable, "-m", "joch.cli.main", "audit", "verify", str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "hash chain intact" in intact.stdout
    lines = log.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"alice"' in line)
    lines[index] = lines[index].replace('"alice"', '"mallory"')
    tampered = log.with_name("tampered.log")
    tampered.write_text("\n".join(lines) + "\n")
    failed = subprocess.run(
        [sys.executable, "-m", "joch.cli.main", "audit", "verify", str(tampered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"line {index + 1}" in failed.stdout + failed.stderr


def _watch_resumes(ada: Api, namespace: str) -> None:
    status, listed = ada.call("GET", f"/v1/namespaces/{namespace}/tools?limit=500")
    assert status == 200
    position = listed["metadata"]["resourceVersion"]
    query = f"/v1/resources?kind=tools&namespace={namespace}&timeoutSeconds=20"
    assert ada.call("POST", "/v1/resources/apply", [tool(namespace, "w-1")])[0] == 200
    first = ada.lines(f"{query}&resourceVersion={position}", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [("ADDED", "w-1")]
    seen = first[0]["object"]["metadata"]["resourceVersion"]
    # disconnected: two more changes
    assert ada.call("POST", "/v1/resources/apply", [tool(namespace, "w-2")])[0] == 200
    assert ada.call("POST", "/v1/resources/apply", [tool(namespace, "w-3")])[0] == 200
    resumed = ada.lines(f"{query}&resourceVersion={seen}", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == [
        ("ADDED", "w-2"),
        ("ADDED", "w-3"),
    ]
    status, answer = ada.call("GET", "/v1/resources?kind=nonsense")
    assert status == 404, answer


def _runs(ada: Api, namespace: str) -> None:
    base = f"/v1/namespaces/{namespace}/executions"
    status, created = ada.call(
        "POST", base, {"agentRef": {"name": AGENT}, "input": {"content": [{"kind": "text", "text": "hi"}]}}
    )
    assert status == 201, created
    name = created["metadata"]["name"]
    assert created["spec"]["trigger"] == {"type": "manual"}
    status, answer = ada.call("POST", base, {"input": {}})
    assert status == 422, answer
    assert answer["error"]["message"].startswith("agentRef.name")
    status, listed = ada.call("GET", base)
    assert status == 200
    assert name in [item["metadata"]["name"] for item in listed["items"]]
    status, cancelled = ada.call("POST", f"{base}/{name}/cancel")
    assert status in {200, 202}, cancelled
    events = ada.lines(f"{base}/{name}/events?timeoutSeconds=60", 50, timeout=90)
    assert events[0]["type"] == "SNAPSHOT"
    assert events[-1]["object"]["status"]["phase"] == "Cancelled", events[-1]

    evaluation = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Eval",
        "metadata": {"name": "api-quality", "namespace": namespace},
        "spec": {
            "target": {"kind": "Agent", "name": AGENT},
            "dataset": {"type": "file", "uri": "./evals/cases.jsonl"},
            "metrics": [{"name": "accuracy", "type": "deterministic"}],
            "thresholds": {"accuracy": 0.9},
        },
    }
    assert ada.call("POST", "/v1/resources/apply", [evaluation])[0] == 200
    status, run = ada.call("POST", f"/v1/eval/api-quality/run?namespace={namespace}")
    assert status == 201, run
    assert run["execution"].startswith("api-quality-m")
    assert run["object"]["spec"]["trigger"]["type"] == "eval"

    status, promoted = ada.call(
        "POST",
        "/v1/promote",
        {"namespace": namespace, "deployment": "api-triage", "agent": AGENT, "replicas": 1},
    )
    assert status == 200, promoted
    assert promoted["spec"]["agentRef"] == {"name": AGENT}
    status, answer = ada.call("POST", "/v1/promote", {"namespace": namespace, "agent": AGENT})
    assert status == 422, answer
    assert answer["error"]["message"].startswith("deployment: ")


def _protected(ada: Api, kubectl: Kubectl, namespace: str, suffix: str) -> None:
    """Promoting into a protected Environment needs the promote verb on it: ada, a team admin, is refused
    until a RoleBinding in her namespace grants it (a SubjectAccessReview as her, by admission)."""
    environment = f"t-api-prod-{suffix}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"t-api-promote-{suffix}"},
        "rules": [
            {
                "apiGroups": ["ops.joch.dev"],
                "resources": ["environments"],
                "resourceNames": [environment],
                "verbs": ["promote"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "ada-promotes", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "User", "name": "ada", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    protected = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": environment},
        "spec": {"protected": True},
    }
    apply(kubectl, [protected, role])
    try:
        body = {"namespace": namespace, "deployment": "to-prod", "agent": AGENT, "environment": environment}

        def refused() -> dict[str, Any]:
            status, answer = ada.call("POST", "/v1/promote", body)
            assert status == 403, answer  # once the webhook's cache holds the new Environment
            return dict(answer)

        answer = eventually(refused, timeout=30)
        assert answer["error"]["code"] == "PromotionFailed", answer
        assert f"Environment {environment} is protected" in answer["error"]["message"]
        apply(kubectl, [binding])

        def admitted() -> None:
            status, answer = ada.call("POST", "/v1/promote", body)
            assert status == 200, answer

        eventually(admitted, timeout=30)
    finally:
        kubectl("delete", "environments.ops.joch.dev", environment, "--ignore-not-found", "--wait=false")
        kubectl("delete", "clusterrole", role["metadata"]["name"], "--ignore-not-found")


def _agbom(victor: Api, namespace: str) -> None:
    def served() -> dict[str, Any]:
        status, document = victor.call(
            "GET", f"/v1/namespaces/{namespace}/agents/{AGENT}/agbom?format=cyclonedx"
        )
        assert status == 200, document
        return dict(document)

    document = eventually(served, timeout=90)
    assert document["bomFormat"] == "CycloneDX"
    status, answer = victor.call("GET", f"/v1/namespaces/{namespace}/agents/{AGENT}/agbom?format=spdx")
    assert status == 400, answer
    status, answer = victor.call("GET", f"/v1/namespaces/{namespace}/agents/{AGENT}/agbom?generation=9999")
    assert status == 404, answer


def _hostile(ada: Api, namespace: str) -> None:
    posts = [
        "/v1/resources/apply",
        "/v1/resources/validate",
        "/v1/resources/diff",
        f"/v1/namespaces/{namespace}/executions",
        f"/v1/namespaces/{namespace}/approvals/x/decide",
        f"/v1/namespaces/{namespace}/approvals/x/override",
        "/v1/promote",
        f"/v1/eval/x/run?namespace={namespace}",
    ]
    bodies = {
        "oversized": (b"[" + b"0," * (3 * 1024 * 1024) + b"0]", "application/json"),
        "deep": (b"[" * 100 + b"]" * 100, "application/json"),
        "utf8": (b'{"a": "\xff\xfe"}', "application/json"),
        "type": (b"<xml/>", "text/xml"),
        "many": (
            b"\n---\n".join(b"kind: Tool\nmetadata: {name: t%d}" % i for i in range(10_000)),
            "application/yaml",
        ),
    }
    for path in posts:
        for what, (raw, content_type) in bodies.items():
            status, answer = ada.call("POST", path, raw=raw, content_type=content_type)
            assert 400 <= status < 500, (path, what, status, answer)
            assert answer["error"]["code"], (path, what, answer)


def test_the_api_runs_on_its_own(
    namespace: str, kubectl: Kubectl, control_plane: ClusterHandle, start_operator: StartOperator
) -> None:
    """A large install runs the API in a process of its own: ``--services none`` keeps the cache and the
    servers, and no service writes anything (the Agent is not compiled here)."""
    if control_plane.control_plane is None:
        pytest.skip("needs the test's own control plane (its OIDC issuer)")
    reader = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "agent-reader", "namespace": namespace},
            "rules": [{"apiGroups": ["joch.dev"], "resources": ["agents"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "olga-reads", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agent-reader"},
            "subjects": [{"kind": "User", "name": "olga", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ]
    apply(kubectl, [*support_triage(namespace).docs, *reader])
    port = _free_port()
    operator = start_operator(
        namespace, args=("--services", "none", "--no-webhooks", f"--api-port={port}", "--decision-port=0")
    )
    operator.wait_for_log("API listening on")
    olga = Api(f"http://127.0.0.1:{port}", oidc.mint(control_plane.control_plane.state_dir, "olga", []))
    status, agent = olga.call("GET", f"/v1/namespaces/{namespace}/agents/{AGENT}")
    assert status == 200, agent
    assert agent["metadata"]["name"] == AGENT
    status, answer = olga.call("GET", f"/v1/namespaces/{namespace}/tools")
    assert status == 403, answer  # her Role grants Agents only
    assert not (agent.get("status") or {}).get("conditions"), agent  # no compile service ran
    assert "compiled Agent" not in operator.log()
