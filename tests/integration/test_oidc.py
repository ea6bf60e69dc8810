"""Sign-in with tokens of the local OIDC issuer (joch.devcluster.oidc), checked by the real kube-apiserver
through its structured authentication configuration, and the audit log it writes for joch requests
(charts/joch/files/audit-policy.yaml). kubectl is the real binary, with a kubeconfig that has the server
and CA but no client certificate."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from joch import pki
from joch.devcluster import ControlPlane, oidc
from tests import helpers
from tests.conftest import ClusterHandle

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plane(control_plane: ClusterHandle) -> ControlPlane:
    if control_plane.control_plane is None:
        pytest.skip("needs the test control plane's OIDC issuer (not $JOCH_KUBECONFIG)")
    return control_plane.control_plane


@pytest.fixture
def token_kubectl(plane: ControlPlane, tmp_path: Path) -> helpers.Kubectl:
    """kubectl with the server and its CA only: every request authenticates with --token."""
    ca = base64.b64encode(plane.certs.ca_cert.read_bytes()).decode("ascii")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "joch-dev", "cluster": {"server": plane.server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "nobody", "user": {}}],
        "contexts": [{"name": "joch-dev", "context": {"cluster": "joch-dev", "user": "nobody"}}],
        "current-context": "joch-dev",
    }
    path = tmp_path / "token-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return helpers.make_kubectl(str(path))


def _whoami(kubectl: helpers.Kubectl, token: str) -> subprocess.CompletedProcess[str]:
    return kubectl(f"--token={token}", "auth", "whoami", "-o", "json")


def _assert_unauthorized(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode != 0, done.stdout
    assert "Unauthorized" in done.stderr, done.stderr


def test_a_minted_token_signs_in_as_its_user_and_groups(
    plane: ControlPlane, token_kubectl: helpers.Kubectl
) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"])
    done = _whoami(token_kubectl, token)
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)["status"]["userInfo"]
    assert user["username"] == "alice"
    assert "team-a" in user["groups"]
    assert "system:authenticated" in user["groups"]


def test_joch_dev_token_prints_a_token_kube_apiserver_accepts(
    plane: ControlPlane, token_kubectl: helpers.Kubectl
) -> None:
    argv = [sys.executable, "-m", "joch.cli.main", "dev", "token", "--state-dir", str(plane.state_dir)]
    minted = subprocess.run(
        [*argv, "--user", "bob", "--group", "team-b", "--group", "reviewers", "--ttl", "10m"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert minted.returncode == 0, minted.stderr
    (token,) = minted.stdout.splitlines()
    done = _whoami(token_kubectl, token)
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)["status"]["userInfo"]
    assert user["username"] == "bob"
    assert {"team-b", "reviewers"} <= set(user["groups"])


def test_joch_dev_token_without_a_control_plane_says_so(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "joch.cli.main",
        "dev",
        "token",
        "--state-dir",
        str(tmp_path),
        "--user",
        "a",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "no running local control plane" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_token_signed_by_another_key_is_unauthorized(
    plane: ControlPlane, token_kubectl: helpers.Kubectl
) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"], key=pki.new_rsa_key(2048))
    _assert_unauthorized(_whoami(token_kubectl, token))


def test_an_expired_token_is_unauthorized(plane: ControlPlane, token_kubectl: helpers.Kubectl) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"], now=time.time() - 7200, ttl_seconds=3600)
    _assert_unauthorized(_whoami(token_kubectl, token))


def test_a_token_for_another_audience_is_unauthorized(
    plane: ControlPlane, token_kubectl: helpers.Kubectl
) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"], audience="not-joch")
    _assert_unauthorized(_whoami(token_kubectl, token))


def test_a_token_from_another_issuer_is_unauthorized(
    plane: ControlPlane, token_kubectl: helpers.Kubectl
) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"], issuer="https://127.0.0.1:1")
    _assert_unauthorized(_whoami(token_kubectl, token))


def _audit_events(path: Path, *, user: str, namespace: str) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written
        ref = event.get("objectRef") or {}
        if event.get("user", {}).get("username") == user and ref.get("namespace") == namespace:
            events.append(event)
    return events


def test_the_audit_log_names_the_signed_in_user_of_a_joch_request(
    plane: ControlPlane, token_kubectl: helpers.Kubectl, namespace: str
) -> None:
    token = oidc.mint(plane.state_dir, "alice", ["team-a"])
    agents = f"/apis/joch.dev/v1alpha1/namespaces/{namespace}/agents"
    status = f"/apis/runtime.joch.dev/v1alpha1/namespaces/{namespace}/approvals/deploy/status"
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    for path in (agents, status, secrets):
        done = token_kubectl(f"--token={token}", "get", "--raw", path)
        assert done.returncode != 0
        assert "Forbidden" in done.stderr, done.stderr  # alice has no RBAC; she is audited all the same
    deadline = time.monotonic() + 30
    while True:
        events = _audit_events(plane.audit_log, user="alice", namespace=namespace)
        resources = {event["objectRef"].get("resource") for event in events}
        if {"agents", "approvals"} <= resources or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    by_resource = {
        (event["objectRef"].get("resource"), event["objectRef"].get("subresource", "")): event
        for event in events
    }
    agent = by_resource[("agents", "")]
    assert agent["level"] == "Metadata"
    assert agent["verb"] == "list"
    assert agent["stage"] == "ResponseComplete"
    assert agent["responseStatus"]["code"] == 403
    assert "team-a" in agent["user"]["groups"]
    assert agent["objectRef"]["apiGroup"] == "joch.dev"
    approval = by_resource[("approvals", "status")]
    assert approval["level"] == "RequestResponse"
    assert approval["objectRef"]["apiGroup"] == "runtime.joch.dev"
    assert all(event["objectRef"].get("resource") != "secrets" for event in events)  # level None
    assert all(event["stage"] != "RequestReceived" for event in events)
