"""The operator's gRPC server (``joch operator --grpc-port``) against the real API server, as grpcio sees it.

One operator process for the module, managing this module's namespace, with its gRPC server on a free
port (plaintext on 127.0.0.1, as outside a cluster). Callers are a real ServiceAccount (``gateway``)
with a token from the TokenRequest API (``kubectl create token``), checked by the operator with a real
TokenReview; Policies are applied and edited with the real kubectl (``kubectl edit`` with a scripted
editor: the live edit an operator of the cluster makes).

Cases:
- PolicyService.Decide allows and denies as an applied Policy says; after ``kubectl edit`` changes the
  denied tool, the answers follow (v2; the old tool allowed again);
- DecideStream: 1,000 requests with request ids on one stream (plus one malformed message in the
  middle, answered with an error and the stream goes on): answered in order, each effect as the Policy
  says;
- ResourceService: Get and List (the list's resource_version) as the ServiceAccount (RBAC: it may read
  Agents in the watch namespace only, PERMISSION_DENIED elsewhere); Watch from the list's version sees
  3 created Agents; the stream is cancelled after 2 events (a reconnect), more changes are made while
  disconnected (a modify, two creates, a delete), and a Watch from the last seen resource_version
  delivers the rest: the union has every change exactly once, in order, with the versions kubectl saw;
- ext_authz Check: a CheckRequest as Envoy builds it (lower-case headers with the pseudo-headers, the
  peer address) is allowed with ``x-joch-decision: allow``; after a ``kubectl edit`` of the Policy the
  same request is denied: 403, the reason in the JSON body, the policy headers;
- ext_authz approvals: a call a Policy holds for a human is refused with the Approval to create named
  in a header and templated in the body; created but undecided it is still held (another request id
  names another Approval); once its status says Approved the same call is allowed (the operator's
  cache of Approvals);
- no token and a garbage token: UNAUTHENTICATED (code Unauthorized in the trailers) for Decide,
  DecideStream, Check and ResourceService; health SERVING; reflection lists the services.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kubernetes import client
from kubernetes.client.rest import ApiException

from joch.devcluster.cluster import find_binary
from joch.grpc.gen.v1 import (
    decision_pb2,
    policy_service_pb2,
    policy_service_pb2_grpc,
    resource_service_pb2,
    resource_service_pb2_grpc,
)
from tests import factories
from tests.integration.operator_fixtures import OperatorProcess, apply, eventually

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
LISTENING = "gRPC listening on"
DENY = decision_pb2.EFFECT_DENY
ALLOW = decision_pb2.EFFECT_ALLOW


@dataclasses.dataclass
class Server:
    namespace: str
    """Managed by the operator: the Policies, the decision contexts' agents."""
    watched: str
    """Not managed (so nothing but this module writes there): the Agents the watch follows."""
    token: str
    """The gateway ServiceAccount's token (TokenRequest)."""
    user: str
    channel: grpc.Channel
    kubeconfig: str
    operator: OperatorProcess

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _create_namespace(core: client.CoreV1Api, stem: str) -> str:
    name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"joch.dev/test": "true"}))
    )
    return name


def _reader_rbac(namespace: str, user: str) -> list[dict[str, Any]]:
    """``user`` may read and watch Agents in ``namespace`` (nothing else, nowhere else)."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "agent-reader", "namespace": namespace},
            "rules": [
                {"apiGroups": ["joch.dev"], "resources": ["agents"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "agent-reader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "agent-reader"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    ]


@pytest.fixture(scope="module")
def server(
    kube_api: client.ApiClient,
    kubeconfig: str,
    kubectl: Kubectl,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    core = client.CoreV1Api(kube_api)
    namespace = _create_namespace(core, "grpc")
    watched = _create_namespace(core, "grpc-watch")
    operator: OperatorProcess | None = None
    channel: grpc.Channel | None = None
    try:
        created = kubectl("create", "serviceaccount", "gateway", "-n", namespace)
        assert created.returncode == 0, created.stderr
        minted = kubectl("create", "token", "gateway", "-n", namespace, "--duration=10m")
        assert minted.returncode == 0, minted.stderr
        user = f"system:serviceaccount:{namespace}:gateway"
        apply(kubectl, _reader_rbac(watched, user))
        port = _free_port()
        logs = tmp_path_factory.mktemp("grpc-operator")
        operator = OperatorProcess(kubeconfig, (namespace,), logs / "operator.log", (f"--grpc-port={port}",))
        operator.start()
        operator.wait_synced()
        operator.wait_for_log(f"{LISTENING} 127.0.0.1:{port}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield Server(namespace, watched, minted.stdout.strip(), user, channel, kubeconfig, operator)
    finally:
        if channel is not None:
            channel.close()
        if operator is not None:
            code = operator.stop()
            print(f"----- {operator.log_path} (exit {code}, tail)\n{operator.tail(80)}")
            assert "Traceback" not in operator.log(), operator.tail(200)
        for name in (namespace, watched):
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


# --- helpers ----------------------------------------------------------------------------------------------


def policy(namespace: str, name: str, tool: str, reason: str, *, team: str | None = None) -> dict[str, Any]:
    """A Policy denying ``tool`` to the agents labelled team=``team`` (None: every agent of its namespace)."""
    spec: dict[str, Any] = {
        "rules": [{"when": {"tool.name": tool}, "action": {"deny": True, "reason": reason}}],
    }
    if team is not None:
        spec["appliesTo"] = {"agents": {"selector": {"matchLabels": {"team": team}}}}
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def kubectl_edit(kubeconfig: str, namespace: str, resource: str, old: str, new: str, tmp: Path) -> None:
    """``kubectl edit`` with an editor that replaces ``old`` by ``new`` in the object's YAML."""
    editor = tmp / f"editor-{uuid.uuid4().hex[:6]}.py"
    editor.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[-1])\n"
        f"text = path.read_text()\nassert {old!r} in text, text\n"
        f"path.write_text(text.replace({old!r}, {new!r}))\n"
    )
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "KUBE_EDITOR": f"{sys.executable} {editor}"}
    done = subprocess.run(
        [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}", "edit", resource, "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "edited" in done.stdout, done.stdout


def context(
    namespace: str, tool: str, *, agent: str = "triage", team: str = "decide"
) -> decision_pb2.DecisionContext:
    ctx = decision_pb2.DecisionContext(hook="toolCallRequest")
    ctx.agent.name = agent
    ctx.agent.namespace = namespace
    ctx.agent.labels["team"] = team
    ctx.tool.name = tool
    return ctx


def decide(server: Server, tool: str, *, team: str = "decide") -> decision_pb2.Decision:
    stub = policy_service_pb2_grpc.PolicyServiceStub(server.channel)
    request = policy_service_pb2.DecideRequest(
        context=context(server.namespace, tool, team=team), request_id="q"
    )
    answer = stub.Decide(request, metadata=server.auth, timeout=10)
    assert answer.request_id == "q"
    assert answer.WhichOneof("result") == "decision", answer
    return answer.decision


def error_code(error: grpc.RpcError) -> str:
    return str(dict(error.trailing_metadata() or ()).get("joch-error-code"))


def check_request(namespace: str, tool: str) -> external_auth_pb2.CheckRequest:
    """A CheckRequest as Envoy's ext_authz filter sends it for a tool call through the gateway."""
    request = external_auth_pb2.CheckRequest()
    attributes = request.attributes
    attributes.source.address.socket_address.address = "10.244.0.17"
    attributes.source.address.socket_address.port_value = 43512
    attributes.destination.address.socket_address.address = "10.96.0.40"
    attributes.destination.address.socket_address.port_value = 8080
    http = attributes.request.http
    http.id = "11484514396427364541"
    http.method = "POST"
    http.path = "/mcp/tools/call"
    http.host = "tools.internal:8080"
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    http.headers.update(
        {
            ":method": "POST",
            ":path": "/mcp/tools/call",
            ":authority": "tools.internal:8080",
            ":scheme": "http",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "user-agent": "python-httpx/0.27.0",
            "x-forwarded-proto": "http",
            "x-request-id": f"{uuid.uuid4()}",
            "x-envoy-expected-rq-timeout-ms": "15000",
            "x-joch-agent": "triage",
            "x-joch-agent-namespace": namespace,
            "x-joch-tool": tool,
            # A client trying to forge the answer's headers: overwritten on OK.
            "x-joch-decision": "forged",
        }
    )
    return request


# --- the cases --------------------------------------------------------------------------------------------


def test_decide_follows_a_policy_edited_with_kubectl(
    server: Server, kubectl: Kubectl, tmp_path: Path
) -> None:
    assert decide(server, "shell.exec").decision == ALLOW
    apply(kubectl, [policy(server.namespace, "guard-decide", "shell.exec", "no shell", team="decide")])

    def denies_shell() -> decision_pb2.Decision:
        decision = decide(server, "shell.exec")
        assert (decision.decision, decision.policy_version) == (DENY, "v1"), decision
        return decision

    denied = eventually(denies_shell, timeout=30, interval=0.05)
    assert (denied.reason, denied.policy_id, denied.policy_namespace, denied.rule) == (
        "no shell",
        "guard-decide",
        server.namespace,
        0,
    )
    assert decide(server, "rm.rf").decision == ALLOW
    assert decide(server, "shell.exec", team="other").decision == ALLOW  # not selected

    kubectl_edit(
        server.kubeconfig, server.namespace, "policy.joch.dev/guard-decide", "shell.exec", "rm.rf", tmp_path
    )

    def follows_the_edit() -> None:
        decision = decide(server, "rm.rf")
        assert (decision.decision, decision.policy_version, decision.reason) == (DENY, "v2", "no shell"), (
            decision
        )

    eventually(follows_the_edit, timeout=30, interval=0.05)
    assert decide(server, "shell.exec").decision == ALLOW


def test_decide_stream_answers_1000_requests_in_order(server: Server, kubectl: Kubectl) -> None:
    apply(kubectl, [policy(server.namespace, "guard-stream", "payments.refund", "no refunds", team="stream")])

    def denies_refunds() -> None:
        assert decide(server, "payments.refund", team="stream").decision == DENY

    eventually(denies_refunds, timeout=30, interval=0.05)
    tools = ["kb.search", "payments.refund", "crm.read", "web.search"]
    messages: list[policy_service_pb2.DecideRequest] = []
    for i in range(1000):
        message = policy_service_pb2.DecideRequest(request_id=f"req-{i}")
        tool = tools[i % len(tools)]
        if i % 10 == 3:  # some as context_json, the JSON shape
            message.context_json.update(
                {
                    "hook": "toolCallRequest",
                    "agent": {"name": f"a-{i}", "namespace": server.namespace, "labels": {"team": "stream"}},
                    "tool": {"name": tool},
                }
            )
        else:
            message.context.CopyFrom(context(server.namespace, tool, agent=f"a-{i}", team="stream"))
        messages.append(message)
    # A malformed message in the middle: its answer is an error, the stream goes on.
    bad = policy_service_pb2.DecideRequest(request_id="bad")
    bad.context_json.update({"hook": "toolCallRequest", "cost": {"runUsd": "lots"}})
    sent = [*messages[:500], bad, *messages[500:]]
    stub = policy_service_pb2_grpc.PolicyServiceStub(server.channel)
    started = time.monotonic()
    answers = list(stub.DecideStream(iter(sent), metadata=server.auth, timeout=60))
    elapsed = time.monotonic() - started
    print(f"1,001 messages on one stream in {elapsed:.2f} s")
    assert [a.request_id for a in answers] == [m.request_id for m in sent]
    error = answers[500]
    assert error.WhichOneof("result") == "error", error
    assert error.error.code == "InvalidRequest"
    assert "context.cost.runUsd" in [f.field for f in error.error.errors], error
    decided = answers[:500] + answers[501:]
    assert all(a.WhichOneof("result") == "decision" for a in decided)
    for i, answer in enumerate(decided):
        if tools[i % len(tools)] == "payments.refund":
            assert (answer.decision.decision, answer.decision.reason) == (DENY, "no refunds"), (i, answer)
            assert (answer.decision.policy_id, answer.decision.policy_version) == ("guard-stream", "v1")
        else:
            assert answer.decision.decision == ALLOW, (i, answer)
    assert sum(a.decision.decision == DENY for a in decided) == 250


def _agent_doc(namespace: str, name: str) -> dict[str, Any]:
    return factories.agent(name, namespace, generation=None, labels={"team": "watch"})


def _kubectl_json(kubectl: Kubectl, *args: str, input: str | None = None) -> dict[str, Any]:
    done = kubectl(*args, "-o", "json", input=input)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _events(stream: Any, count: int) -> list[tuple[str, str, str]]:
    """The next ``count`` changes of a Watch (type, name, resourceVersion), bookmarks left out."""
    found: list[tuple[str, str, str]] = []
    for event in stream:
        if event.type == "BOOKMARK":
            continue
        assert event.object.name, event
        assert event.object.resource_version, event
        assert json.loads(event.object.json)["metadata"]["resourceVersion"] == event.object.resource_version
        found.append((event.type, event.object.name, event.object.resource_version))
        if len(found) == count:
            break
    return found


def test_watch_resumes_without_a_missed_or_repeated_event(server: Server, kubectl: Kubectl) -> None:
    stub = resource_service_pb2_grpc.ResourceServiceStub(server.channel)
    ns = server.watched
    listed = stub.List(
        resource_service_pb2.ListRequest(kind="agents", namespace=ns), metadata=server.auth, timeout=10
    )
    assert list(listed.items) == []
    assert listed.resource_version
    with pytest.raises(grpc.RpcError) as caught:
        stub.List(
            resource_service_pb2.ListRequest(kind="agents", namespace=server.namespace), metadata=server.auth
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED  # RBAC: the caller's own rights

    def watch(since: str) -> Any:
        request = resource_service_pb2.WatchRequest(
            kind="agents", namespace=ns, resource_version=since, timeout_seconds=60
        )
        return stub.Watch(request, metadata=server.auth, timeout=60)

    expected: list[tuple[str, str, str]] = []

    def create(name: str) -> None:
        created = _kubectl_json(kubectl, "create", "-f", "-", input=json.dumps(_agent_doc(ns, name)))
        expected.append(("ADDED", name, created["metadata"]["resourceVersion"]))

    first = watch(listed.resource_version)
    for name in ("w-1", "w-2", "w-3"):
        create(name)
    seen = _events(first, 2)
    first.cancel()  # the client goes away after 2 of the 3 changes
    with pytest.raises(grpc.RpcError) as caught:
        next(first)
    assert caught.value.code() == grpc.StatusCode.CANCELLED

    # Disconnected: a modify, two creates, a delete.
    patched = _kubectl_json(
        kubectl,
        "patch",
        "agent.joch.dev/w-1",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"metadata":{"labels":{"stage":"two"}}}',
    )
    expected.append(("MODIFIED", "w-1", patched["metadata"]["resourceVersion"]))
    create("w-4")
    create("w-5")
    deleted = kubectl("delete", "agent.joch.dev/w-2", "-n", ns, "--wait=true")
    assert deleted.returncode == 0, deleted.stderr
    expected.append(("DELETED", "w-2", ""))  # its version: the deletion's, only the watch knows it
    create("w-6")  # the last change: everything before it has been delivered once it arrives

    second = watch(seen[-1][2])
    rest = _events(second, len(expected) - len(seen))
    second.cancel()
    union = seen + rest
    assert [(t, n) for t, n, _ in union] == [(t, n) for t, n, _ in expected], union
    for (kind, name, version), (_, _, wanted) in zip(union, expected, strict=True):
        if wanted:
            assert version == wanted, (kind, name, version, wanted)
    versions = [int(v) for _, _, v in union]
    assert versions == sorted(set(versions)), union  # in order, none twice
    assert len({(n, v) for _, n, v in union}) == len(union)

    got = stub.Get(
        resource_service_pb2.GetRequest(kind="Agent", namespace=ns, name="w-1"), metadata=server.auth
    )
    assert (got.kind, got.name, got.namespace, got.resource_version) == ("Agent", "w-1", ns, union[3][2])
    assert json.loads(got.json)["metadata"]["labels"] == {"team": "watch", "stage": "two"}


def test_ext_authz_check_follows_a_policy_edited_with_kubectl(
    server: Server, kubectl: Kubectl, tmp_path: Path
) -> None:
    stub = external_auth_pb2_grpc.AuthorizationStub(server.channel)
    apply(kubectl, [policy(server.namespace, "guard-ext", "never.called", "no exports")])

    def allows() -> external_auth_pb2.CheckResponse:
        answer = stub.Check(check_request(server.namespace, "crm.export"), metadata=server.auth, timeout=10)
        assert answer.status.code == 0, answer
        return answer

    allowed = eventually(allows, timeout=30, interval=0.05)
    headers = {h.header.key: h.header.value for h in allowed.ok_response.headers}
    assert headers["x-joch-decision"] == "allow"  # the forged value overwritten
    assert "x-joch-policy-id" in allowed.ok_response.headers_to_remove

    kubectl_edit(
        server.kubeconfig,
        server.namespace,
        "policy.joch.dev/guard-ext",
        "never.called",
        "crm.export",
        tmp_path,
    )

    def denies() -> external_auth_pb2.CheckResponse:
        answer = stub.Check(check_request(server.namespace, "crm.export"), metadata=server.auth, timeout=10)
        assert answer.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0], answer
        return answer

    denied = eventually(denies, timeout=30, interval=0.05)
    assert denied.denied_response.status.code == 403
    headers = {h.header.key: h.header.value for h in denied.denied_response.headers}
    assert headers["x-joch-decision"] == "deny"
    assert headers["x-joch-policy-id"] == "guard-ext"
    assert headers["x-joch-policy-namespace"] == server.namespace
    assert headers["x-joch-policy-version"] == "v2"
    body = json.loads(denied.denied_response.body)
    assert (body["decision"], body["reason"], body["policyId"]) == ("deny", "no exports", "guard-ext")
    assert denied.status.message == "no exports"
    # Another tool of the same agent is still allowed.
    assert stub.Check(check_request(server.namespace, "crm.read"), metadata=server.auth).status.code == 0


def test_calls_without_a_valid_token_are_unauthenticated(server: Server) -> None:
    policies = policy_service_pb2_grpc.PolicyServiceStub(server.channel)
    checks = external_auth_pb2_grpc.AuthorizationStub(server.channel)
    resources = resource_service_pb2_grpc.ResourceServiceStub(server.channel)
    request = policy_service_pb2.DecideRequest(context=context(server.namespace, "kb.search"))
    calls: dict[str, Callable[[Any], Any]] = {
        "Decide": lambda metadata: policies.Decide(request, metadata=metadata, timeout=10),
        "DecideStream": lambda metadata: list(
            policies.DecideStream(iter([request]), metadata=metadata, timeout=10)
        ),
        "Check": lambda metadata: checks.Check(
            check_request(server.namespace, "kb.search"), metadata=metadata, timeout=10
        ),
        "List": lambda metadata: resources.List(
            resource_service_pb2.ListRequest(kind="agents", namespace=server.watched),
            metadata=metadata,
            timeout=10,
        ),
        "Watch": lambda metadata: list(
            resources.Watch(
                resource_service_pb2.WatchRequest(kind="agents", namespace=server.watched, timeout_seconds=5),
                metadata=metadata,
                timeout=10,
            )
        ),
    }
    for name, call in calls.items():
        for metadata in (
            (),
            (("authorization", "Bearer not-a-real-token"),),
            (("authorization", "Basic eDp5"),),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(metadata)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, metadata, caught.value)
            assert error_code(caught.value) == "Unauthorized", (name, metadata)
    # The same calls with the real token answer.
    assert policies.Decide(request, metadata=server.auth).decision.decision == ALLOW
    assert checks.Check(check_request(server.namespace, "kb.search"), metadata=server.auth).status.code == 0
    assert resources.List(
        resource_service_pb2.ListRequest(kind="agents", namespace=server.watched), metadata=server.auth
    ).resource_version


def test_health_and_reflection_answer_without_a_token(server: Server) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "joch.v1.PolicyService", "envoy.service.auth.v3.Authorization"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    answers = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {
        "joch.v1.PolicyService",
        "joch.v1.ResourceService",
        "envoy.service.auth.v3.Authorization",
        "grpc.health.v1.Health",
    } <= names, names
    found = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="joch.v1.PolicyService")]),
            timeout=10,
        )
    )
    assert found[0].file_descriptor_response.file_descriptor_proto, found[0]


def test_ext_authz_asks_for_an_approval_and_lets_the_retry_through_once_it_is_approved(
    server: Server, kubectl: Kubectl
) -> None:
    """A call a Policy holds for a human: ext_authz names the Approval to create (header) and gives its
    template (body); the gateway creates it; once it is approved, the same call (same x-request-id) is
    allowed, read from the operator's cache of Approvals."""
    stub = external_auth_pb2_grpc.AuthorizationStub(server.channel)
    hold = {
        "when": {"tool.name": "wire.transfer"},
        "require": {"approval": "human", "approvalRouting": {"approvers": ["user:treasurer"]}},
    }
    apply(
        kubectl,
        [
            {
                "apiVersion": "joch.dev/v1alpha1",
                "kind": "Policy",
                "metadata": {"name": "hold-wires", "namespace": server.namespace},
                "spec": {"rules": [hold]},
            }
        ],
    )
    call = check_request(server.namespace, "wire.transfer")  # one x-request-id: the retry is the same call

    def asks() -> external_auth_pb2.CheckResponse:
        answer = stub.Check(call, metadata=server.auth, timeout=10)
        assert answer.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0], answer
        assert answer.denied_response.status.code == 403, answer  # --ext-authz-approval-status default
        return answer

    asked = eventually(asks, timeout=30, interval=0.05)
    headers = {h.header.key: h.header.value for h in asked.denied_response.headers}
    assert headers["x-joch-decision"] == "approval-required", asked.denied_response.body
    name = headers["x-joch-approval"]
    template = json.loads(asked.denied_response.body)["approval"]
    assert template["kind"] == "Approval"
    assert (template["metadata"]["namespace"], template["metadata"]["name"]) == (server.namespace, name)
    assert template["spec"]["routing"]["approvers"] == ["user:treasurer"]
    apply(kubectl, [template])
    # Created but not decided: still held, the same Approval named again.
    again = stub.Check(call, metadata=server.auth, timeout=10)
    assert again.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert {h.header.key: h.header.value for h in again.denied_response.headers}["x-joch-approval"] == name
    # Another call (another request id) is another Approval.
    other = stub.Check(check_request(server.namespace, "wire.transfer"), metadata=server.auth, timeout=10)
    assert {h.header.key: h.header.value for h in other.denied_response.headers}["x-joch-approval"] != name
    patched = kubectl(
        "patch",
        f"approval.runtime.joch.dev/{name}",
        "-n",
        server.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"decision": "approve", "phase": "Approved", "decidedBy": "treasurer"}}),
    )
    assert patched.returncode == 0, patched.stderr

    def allows() -> external_auth_pb2.CheckResponse:
        answer = stub.Check(call, metadata=server.auth, timeout=10)
        assert answer.status.code == 0, answer
        return answer

    allowed = eventually(allows, timeout=30, interval=0.05)
    assert {h.header.key: h.header.value for h in allowed.ok_response.headers}["x-joch-decision"] == "allow"
