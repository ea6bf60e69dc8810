"""Approvals against the real API server: the operator (``joch operator``, webhooks on) and users who are
real to the API server (``kubectl --as``: impersonation, so the server authenticates and authorizes each
request as that user and the webhooks see its userInfo).

Users (RBAC from this test's own ClusterRoles; the Team from this test):
- bob requests (he creates the Approvals; the server stamps him as requester whatever he writes);
- alice is an approver member of the Team the routing names; victor is a viewer member of it;
- gina holds the override verb (break-glass); audrey the acknowledge verb (auditor);
- the ServiceAccount ``agent`` holds the override verb too (and is refused: agents never break glass).

Cases: a viewer's decision is refused; the requester cannot self-approve; an approver's decision is
accepted and stamped with her name and the server's clock although she wrote others; a second decision is
refused; a rejection needs a rationale; break-glass works for a holder and is refused for everyone else;
an auditor acknowledges; a timeout expires within seconds of its deadline, and a deadline that passes
while the operator is down is expired once after it restarts; a promotion blocked by requiresApproval
creates the Approval, and approving it admits the Deployment.
"""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import forkserver
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

forkserver.prestart("joch.cli.main")

Kubectl = Callable[..., Any]
MINUTE = 2.0
"""Seconds per timeoutMinutes minute in this test's operator (--approval-minute-seconds)."""
RESOURCE = "approvals.runtime.joch.dev"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def approval(namespace: str, name: str, team: str, *, minutes: int = 600, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "requestedBy": {"user": "mallory"},  # a lie the server corrects
            "action": {"type": "promotion", "inputSummary": f"test {name}"},
            "risk": {"level": "financial"},
            "routing": {"approvers": [f"team:{team}", "user:bob"], "timeoutMinutes": minutes},
            **spec,
        },
    }


def rbac(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """ClusterRoles for deciders, break-glass holders and auditors, bound in ``namespace``."""
    base = [
        {
            "apiGroups": ["runtime.joch.dev"],
            "resources": ["approvals"],
            "verbs": ["get", "list", "watch", "create"],
        },
        {
            "apiGroups": ["runtime.joch.dev"],
            "resources": ["approvals/status"],
            "verbs": ["get", "patch", "update"],
        },
        {
            "apiGroups": ["ops.joch.dev"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "create", "patch"],
        },
    ]
    roles = {
        "decider": base,
        "breakglass": [
            *base,
            {"apiGroups": ["runtime.joch.dev"], "resources": ["approvals"], "verbs": ["override"]},
        ],
        "auditor": [
            *base,
            {"apiGroups": ["runtime.joch.dev"], "resources": ["approvals"], "verbs": ["acknowledge"]},
        ],
    }
    members = {
        "decider": [("User", "alice"), ("User", "bob"), ("User", "victor")],
        "breakglass": [("User", "gina"), ("User", "bob"), ("ServiceAccount", "agent")],
        "auditor": [("User", "audrey"), ("User", "gina")],
    }
    docs: list[dict[str, Any]] = []
    for role, rules in roles.items():
        name = f"t-approvals-{role}-{suffix}"
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": {"joch.dev/test": "true"}},
                "rules": rules,
            }
        )
        subjects = [
            {"kind": kind, "name": who, "namespace": namespace}
            if kind == "ServiceAccount"
            else {"kind": kind, "name": who, "apiGroup": "rbac.authorization.k8s.io"}
            for kind, who in members[role]
        ]
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            }
        )
    return docs


def joch(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m joch.cli.main ARGS --kubeconfig KUBECONFIG`` (forked: see tests.integration.forkserver)."""
    return forkserver.run("joch.cli.main", [*args, "--kubeconfig", kubeconfig], timeout=120)


class Users:
    def __init__(self, kubectl: Kubectl, kubeconfig: str, namespace: str) -> None:
        self.kubectl, self.kubeconfig, self.namespace = kubectl, kubeconfig, namespace

    def as_(self, user: str) -> tuple[str, ...]:
        if user == "agent":
            return (f"--as=system:serviceaccount:{self.namespace}:agent",)
        return (f"--as={user}",)

    def patch(self, user: str, name: str, status: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = self.kubectl(
            *self.as_(user),
            "patch",
            RESOURCE,
            name,
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        return result

    def create(self, user: str, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = self.kubectl(
            *self.as_(user), "create", "-f", "-", input=yaml.safe_dump_all(list(docs))
        )
        return result

    def joch(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        return joch(self.kubeconfig, *args, "-n", self.namespace, f"--as={user}")


@pytest.fixture
def team(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    name = f"t-payments-{uuid.uuid4().hex[:6]}"
    doc = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [{"user": "alice", "role": "approver"}, {"user": "victor", "role": "viewer"}],
            "namespaces": [namespace],
        },
    }
    apply(kubectl, [doc])
    yield name
    kubectl("delete", "teams.ops.joch.dev", name, "--ignore-not-found", "--wait=false")


def test_decisions_are_made_once_by_the_right_people(
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    cluster: Cluster,
    start_operator: StartOperator,
    team: str,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    users = Users(kubectl, kubeconfig, namespace)
    args = (
        f"--webhook-port={_free_port()}",
        f"--webhook-cert-dir={tmp_path / 'webhook-certs'}",
        f"--approval-minute-seconds={MINUTE}",
    )
    roles = rbac(namespace, suffix)
    try:
        apply(kubectl, roles)
        operator = start_operator(namespace, args=args)
        eventually(lambda: _webhooks_enforced(users), timeout=60)
        _decide(users, cluster, namespace, team)
        _break_glass(users, cluster, namespace, team)
        _timeouts(users, cluster, namespace, team, operator, start_operator, args)
        _promotion(users, kubectl, cluster, namespace, team)
    finally:
        remove_webhook_configurations(kubectl)
        for doc in roles:
            if doc["kind"] == "ClusterRole":
                kubectl("delete", "clusterrole", doc["metadata"]["name"], "--ignore-not-found")


def _webhooks_enforced(users: Users) -> None:
    """The stamp webhook is live: bob's claim to be mallory is corrected."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    done = users.create("bob", approval(users.namespace, name, "nobody"))
    assert done.returncode == 0, done.stderr
    got = users.kubectl(
        "get", RESOURCE, name, "-n", users.namespace, "-o", "jsonpath={.spec.requestedBy.user}"
    )
    users.kubectl("delete", RESOURCE, name, "-n", users.namespace, "--wait=false")
    assert got.stdout == "bob", got.stdout


def _pending(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any]:
        status = cluster.status("Approval", namespace, name)
        assert status.get("phase") == "Pending", status
        assert status.get("expiresAt"), status
        return status

    result: dict[str, Any] = eventually(check, timeout=30)
    return result


def _events(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [e.reason for e in cluster.events(namespace, name, kind="Approval")]


def _decide(users: Users, cluster: Cluster, namespace: str, team: str) -> None:
    done = users.create("bob", approval(namespace, "refund-1", team), approval(namespace, "refund-2", team))
    assert done.returncode == 0, done.stderr
    stored = cluster.get("Approval", namespace, "refund-1")
    assert stored["spec"]["requestedBy"]["user"] == "bob"  # stamped from the authenticated user
    status = _pending(cluster, namespace, "refund-1")
    created = _time(stored["metadata"]["creationTimestamp"])
    assert _time(status["expiresAt"]) - created == datetime.timedelta(seconds=600 * MINUTE)

    refused = users.patch("victor", "refund-1", {"decision": "approve"})
    assert refused.returncode != 0
    assert "victor is not an approver of this request" in refused.stderr, refused.stderr
    refused = users.patch("bob", "refund-1", {"decision": "approve"})
    assert refused.returncode != 0
    assert "bob requested this approval and cannot decide it" in refused.stderr, refused.stderr
    refused = users.patch("alice", "refund-1", {"phase": "Expired", "decision": "reject"})
    assert refused.returncode != 0, "only the operator expires"
    forged = {
        "decision": "approve",
        "phase": "Approved",
        "decidedBy": "mallory",
        "decidedAt": "2000-01-01T00:00:00Z",
    }
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
    accepted = users.patch("alice", "refund-1", forged)
    assert accepted.returncode == 0, accepted.stderr
    decided = cluster.status("Approval", namespace, "refund-1")
    assert decided["phase"] == "Approved"
    assert decided["decidedBy"] == "alice"
    assert _time(decided["decidedAt"]) >= before.replace(microsecond=0)
    again = users.patch("alice", "refund-1", {"decision": "reject", "phase": "Rejected", "rationale": "no"})
    assert again.returncode != 0
    # The CRD's transition rules refuse it before joch's webhook is asked (schema validation comes first).
    assert "status.decision is immutable once set" in again.stderr, again.stderr
    eventually(lambda: _ready_reason(cluster, namespace, "refund-1", "True", "Approved"), timeout=30)
    eventually(lambda: _has(_events(cluster, namespace, "refund-1"), "Approved"), timeout=30)

    _pending(cluster, namespace, "refund-2")
    refused = users.patch("alice", "refund-2", {"decision": "reject"})
    assert refused.returncode != 0
    assert "status.rationale: a rejection needs a rationale" in refused.stderr, refused.stderr
    rejected = users.joch(
        "alice", "approvals", "decide", "refund-2", "--decision", "reject", "--rationale", "too much"
    )
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert cluster.status("Approval", namespace, "refund-2")["decidedBy"] == "alice"

    listed = users.joch("alice", "approvals", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "refund-1" in listed.stdout, listed.stdout
    assert "Approved" in listed.stdout, listed.stdout
    columns = users.kubectl("get", RESOURCE, "refund-1", "-n", namespace)
    header = columns.stdout.splitlines()[0].split()
    assert header[:6] == ["NAME", "READY", "ACTION", "PHASE", "DECISION", "DECIDED"], header


def _ready_reason(cluster: Cluster, namespace: str, name: str, status: str, reason: str) -> None:
    conditions = {c["type"]: c for c in cluster.status("Approval", namespace, name).get("conditions") or []}
    ready_condition = conditions.get("Ready") or {}
    assert (ready_condition.get("status"), ready_condition.get("reason")) == (status, reason), conditions


def _has(values: list[str], wanted: str) -> None:
    assert wanted in values, values


def _break_glass(users: Users, cluster: Cluster, namespace: str, team: str) -> None:
    # refund-2 was rejected by alice.
    for user, reason in (
        ("alice", "alice may not override approvals here"),
        ("bob", "bob requested this approval and cannot override it"),
        ("agent", "is a ServiceAccount: agents and SDKs never break glass"),
    ):
        refused = users.patch(user, "refund-2", {"phase": "Overridden", "override": {"reason": "urgent"}})
        assert refused.returncode != 0, user
        assert reason in refused.stderr, (user, refused.stderr)
    done = users.joch("gina", "approvals", "override", "refund-2", "--reason", "customer escalation")
    assert done.returncode == 0, done.stdout + done.stderr
    status = cluster.status("Approval", namespace, "refund-2")
    assert status["phase"] == "Overridden"
    assert status["override"]["by"] == "gina"
    assert status["override"]["reason"] == "customer escalation"
    assert status["review"] == {"required": True}
    assert status["decidedBy"] == "alice"  # the rejection stays on record
    eventually(lambda: _has(_events(cluster, namespace, "refund-2"), "Overridden"), timeout=30)
    warnings = [e for e in cluster.events(namespace, "refund-2", kind="Approval") if e.reason == "Overridden"]
    assert warnings[0].type == "Warning", warnings

    refused = users.joch("gina", "approvals", "acknowledge", "refund-2")
    assert refused.returncode != 0
    assert "cannot acknowledge their own override" in refused.stderr, refused.stderr
    done = users.joch("audrey", "approvals", "acknowledge", "refund-2", "--note", "reviewed")
    assert done.returncode == 0, done.stdout + done.stderr
    review = cluster.status("Approval", namespace, "refund-2")["review"]
    assert review["acknowledgedBy"] == "audrey", review
    assert review["required"] is False, review
    refused = users.patch("audrey", "refund-2", {"review": {"note": "changed my mind"}})
    assert refused.returncode != 0, "an acknowledgement never changes"


def _timeouts(
    users: Users,
    cluster: Cluster,
    namespace: str,
    team: str,
    operator: Any,
    start_operator: StartOperator,
    args: tuple[str, ...],
) -> None:
    done = users.create("bob", approval(namespace, "quick", team, minutes=2))
    assert done.returncode == 0, done.stderr
    status = _pending(cluster, namespace, "quick")
    deadline = _time(status["expiresAt"])

    def expired(name: str) -> dict[str, Any]:
        current = cluster.status("Approval", namespace, name)
        assert current.get("phase") == "Expired", current
        return current

    ended = eventually(lambda: expired("quick"), timeout=30)
    assert ended["decision"] == "reject", ended
    assert ended["decidedBy"] == "system:joch:timeout", ended
    lateness = (_time(ended["decidedAt"]) - deadline).total_seconds()
    assert 0 <= lateness <= 3, lateness

    # A deadline that passes while the operator is down: expired once, at its restart.
    done = users.create("bob", approval(namespace, "across-restart", team, minutes=3))
    assert done.returncode == 0, done.stderr
    status = _pending(cluster, namespace, "across-restart")
    operator.stop()
    wait = (_time(status["expiresAt"]) - datetime.datetime.now(datetime.UTC)).total_seconds() + 1
    time.sleep(max(0.0, wait))
    assert cluster.status("Approval", namespace, "across-restart")["phase"] == "Pending"
    start_operator(namespace, args=args)
    ended = eventually(lambda: expired("across-restart"), timeout=60)
    assert ended["decidedBy"] == "system:joch:timeout"
    eventually(lambda: _has(_events(cluster, namespace, "across-restart"), "Expired"), timeout=30)
    time.sleep(2)
    assert _events(cluster, namespace, "across-restart").count("Expired") == 1


def _promotion(users: Users, kubectl: Kubectl, cluster: Cluster, namespace: str, team: str) -> None:
    example = support_triage(namespace)
    apply(kubectl, example.docs)
    eventually(lambda: ready(cluster, namespace, "support-triage"), timeout=90)
    gated = json.loads(json.dumps(example.find("Deployment", "support-triage-prod")))
    gated["metadata"]["name"] = "gated"
    gated["spec"]["promotion"] = {"requiresApproval": f"team:{team}"}
    denied = users.create("bob", gated)
    assert denied.returncode != 0
    assert "spec.promotion.requiresApproval" in denied.stderr, denied.stderr
    assert "created Approval" in denied.stderr, denied.stderr
    requests = [
        a
        for a in cluster.list("Approval", namespace)
        if a["metadata"].get("labels", {}).get("joch.dev/deployment") == "gated"
    ]
    assert len(requests) == 1, requests
    request = requests[0]
    name = request["metadata"]["name"]
    assert request["spec"]["requestedBy"]["user"] == "bob"
    assert request["spec"]["routing"]["approvers"] == [f"team:{team}"]
    _pending(cluster, namespace, name)
    listed = users.joch("alice", "approvals", "ls", "--pending")
    assert name in listed.stdout, listed.stdout
    refused = users.joch("bob", "approvals", "decide", name, "--decision", "approve")
    assert refused.returncode != 0, "bob cannot approve his own promotion"
    done = users.joch("alice", "approvals", "decide", name, "--decision", "approve", "--rationale", "ship it")
    assert done.returncode == 0, done.stdout + done.stderr

    def admitted() -> None:
        created = users.create("bob", gated)
        assert created.returncode == 0, created.stderr

    eventually(admitted, timeout=30)
