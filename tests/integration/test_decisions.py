"""The decision service (``joch policy serve`` as a subprocess, and ``joch operator`` authenticating its
callers) and ``joch policy preview``, against the real API server.

Cases:
- a Policy applied with kubectl decides the next request (v1); the Policy edited live (kubectl apply
  of a changed rule) is reflected in the next decisions (v2, the old rule gone); deleting it brings
  back allow;
- an Environment's allowedProviders is watched: the same context flips as the Environment changes;
- client mistakes against the real server: malformed JSON, unknown fields, an oversized body -> 4xx in
  the catalog's error shape; /readyz is ready;
- ``joch policy preview`` with examples/ applied: a Policy denying OpenAI models in the example's
  namespace names support-triage (model, policy, rule, reason; exit 3), -o json says the same, and a
  harmless Policy denies nobody (exit 0);
- ``joch operator --decision-callers system:serviceaccount:NS:gateway``: a real token of that
  ServiceAccount (``kubectl create token``) gets its decision (200), checked by a real TokenReview;
  another ServiceAccount's token 403 naming it, no token 401, a garbage token 401.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from joch.cli import policy as policy_cli
from tests.integration.operator_fixtures import (  # noqa: F401
    StartOperator,
    apply,
    eventually,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
LISTENING = re.compile(r"decision service listening on (http://\S+)")


class DecisionProcess:
    """``python -m joch.cli.policy serve`` against the test cluster, logging to a file."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path) -> None:
        self.log_path = log_path
        argv = [sys.executable, "-m", "joch.cli.policy", "serve", "--kubeconfig", kubeconfig]
        argv += ["--port", "0", "--namespace", namespace, "--max-body", "65536", "-v"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_url(self, timeout: float = 60.0) -> str:
        def check() -> str:
            assert self.process.poll() is None, f"joch policy serve exited:\n{self.log()}"
            found = LISTENING.search(self.log())
            assert found, "not listening yet"
            return found.group(1)

        return eventually(check, timeout=timeout, interval=0.1)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                return None
        return self.process.returncode


@pytest.fixture
def decision_url(kubeconfig: str, crds_installed: list[str], namespace: str, tmp_path: Path) -> Iterator[str]:
    process = DecisionProcess(kubeconfig, namespace, tmp_path / "serve.log")
    try:
        yield process.wait_url()
    finally:
        code = process.stop()
        print(f"----- joch policy serve (exit {code})\n{process.log()[-6000:]}")
        assert code == 0, "joch policy serve did not stop cleanly on SIGTERM"
        assert "Traceback" not in process.log()


def post(
    url: str,
    body: bytes | Any,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/policy/evaluate",
        data=data,
        headers={"Content-Type": content_type, **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def decide(url: str, context: dict[str, Any]) -> dict[str, Any]:
    status, body = post(url, {"context": context})
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def policy_doc(namespace: str, rules: list[dict[str, Any]], name: str = "guard") -> dict[str, Any]:
    return {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"appliesTo": {"agents": {"selector": {"matchLabels": {"team": "t"}}}}, "rules": rules},
    }


def tool_context(namespace: str, tool: str) -> dict[str, Any]:
    return {
        "hook": "toolCallRequest",
        "agent": {"name": "a", "namespace": namespace, "labels": {"team": "t"}},
        "tool": {"name": tool},
    }


def test_a_policy_edited_live_is_reflected_in_the_next_decision(
    decision_url: str, kubectl: Kubectl, namespace: str
) -> None:
    shell, rm = tool_context(namespace, "shell.exec"), tool_context(namespace, "rm.rf")
    assert decide(decision_url, shell) == {"decision": "allow", "reason": "no rule matched"}

    started = time.monotonic()
    apply(kubectl, [policy_doc(namespace, [{"when": {"tool.name": "shell.exec"}, "action": "deny"}])])

    def denies_shell() -> None:
        decision = decide(decision_url, shell)
        assert (decision["decision"], decision.get("policyVersion")) == ("deny", "v1"), decision

    eventually(denies_shell, timeout=30, interval=0.05)
    print(f"policy v1 effective after {time.monotonic() - started:.2f}s")
    assert decide(decision_url, rm)["decision"] == "allow"

    started = time.monotonic()
    changed = [{"when": {"tool.name": "rm.rf"}, "action": {"deny": True, "reason": "never rm"}}]
    apply(kubectl, [policy_doc(namespace, changed)])

    def follows_the_edit() -> None:
        decision = decide(decision_url, rm)
        assert decision == {
            "decision": "deny",
            "reason": "never rm",
            "policyId": "guard",
            "policyNamespace": namespace,
            "policyVersion": "v2",
            "rule": 0,
        }

    eventually(follows_the_edit, timeout=30, interval=0.05)
    print(f"policy v2 effective after {time.monotonic() - started:.2f}s")
    assert decide(decision_url, shell)["decision"] == "allow"
    other_team = {**rm, "agent": {**rm["agent"], "labels": {"team": "other"}}}
    assert decide(decision_url, other_team)["decision"] == "allow"

    deleted = kubectl("delete", "policy.joch.dev/guard", "-n", namespace, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr

    def allows_again() -> None:
        assert decide(decision_url, rm) == {"decision": "allow", "reason": "no rule matched"}

    eventually(allows_again, timeout=30, interval=0.05)


def test_the_environment_allow_list_is_watched(decision_url: str, kubectl: Kubectl, namespace: str) -> None:
    environment = f"env-{uuid.uuid4().hex[:8]}"
    env_doc = {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": environment},
        "spec": {"allowedProviders": ["anthropic"]},
    }
    allow_list = [{"when": {"model.provider": "not-allowlisted"}, "action": "deny"}]
    try:
        apply(kubectl, [env_doc, policy_doc(namespace, allow_list, name="providers")])
        context = {
            "agent": {"name": "a", "namespace": namespace, "labels": {"team": "t"}},
            "environment": {"name": environment, "allowedProviders": ["openai"]},  # the cluster wins
            "model": {"provider": "openai", "name": "gpt"},
        }

        def decides(expected: str) -> Callable[[], None]:
            def check() -> None:
                assert decide(decision_url, context)["decision"] == expected

            return check

        eventually(decides("deny"), timeout=30, interval=0.05)
        env_doc["spec"]["allowedProviders"] = ["anthropic", "openai"]
        apply(kubectl, [env_doc])
        eventually(decides("allow"), timeout=30, interval=0.05)
    finally:
        kubectl("delete", f"environment.ops.joch.dev/{environment}", "--wait=false")


def test_client_mistakes_are_4xx_in_the_catalog_shape(decision_url: str) -> None:
    with urllib.request.urlopen(decision_url + "/readyz", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ready"}
    cases = [
        (b'{"context": {', 400, "InvalidJSON"),
        ({"context": {}, "extra": 1}, 400, "InvalidRequest"),
        ({"context": {"tool": {"name": ["x"]}}}, 400, "InvalidRequest"),
        ({"context": {"payload": "x" * 70_000}}, 413, "RequestTooLarge"),
    ]
    for body, status, code in cases:
        got, answer = post(decision_url, body)
        assert got == status, answer
        assert set(answer) == {"error"}
        assert set(answer["error"]) == {"code", "message", "details"}
        assert answer["error"]["code"] == code
    got, answer = post(decision_url, b"x=1", content_type="application/x-www-form-urlencoded")
    assert (got, answer["error"]["code"]) == (415, "UnsupportedMediaType")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _token(kubectl: Kubectl, namespace: str, service_account: str) -> str:
    created = kubectl("create", "serviceaccount", service_account, "-n", namespace)
    assert created.returncode == 0, created.stderr
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=10m")
    assert token.returncode == 0, token.stderr
    return str(token.stdout).strip()


def test_only_the_listed_callers_get_decisions(
    kubectl: Kubectl, namespace: str, start_operator: StartOperator
) -> None:
    gateway, other = _token(kubectl, namespace, "gateway"), _token(kubectl, namespace, "intruder")
    port = _free_port()
    user = f"system:serviceaccount:{namespace}:gateway"
    start_operator(namespace, args=(f"--decision-port={port}", f"--decision-callers={user}"), wait=False)
    url = f"http://127.0.0.1:{port}"

    def ready() -> None:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                assert response.status == 200
        except (urllib.error.URLError, ConnectionError) as exc:
            raise AssertionError(f"{url} not ready: {exc}") from None

    eventually(ready, timeout=90)
    body = {"context": tool_context(namespace, "shell.exec")}

    status, answer = post(url, body, headers={"Authorization": f"Bearer {gateway}"})
    assert status == 200, answer
    assert answer == {"decision": "allow", "reason": "no rule matched"}

    status, answer = post(url, body, headers={"Authorization": f"Bearer {other}"})
    assert status == 403, answer
    assert answer["error"]["code"] == "Forbidden"
    assert answer["error"]["details"] == {
        "user": f"system:serviceaccount:{namespace}:intruder",
        "setting": "decision_callers",
    }

    status, answer = post(url, body)
    assert (status, answer["error"]["code"]) == (401, "Unauthorized"), answer
    status, answer = post(url, body, headers={"Authorization": "Bearer not-a-real-token"})
    assert (status, answer["error"]["code"]) == (401, "Unauthorized"), answer
    status, answer = post(url, body, headers={"Authorization": f"Bearer {gateway}", "Impersonate-User": "x"})
    assert (status, answer["error"]["code"]) == (400, "ImpersonationRefused"), answer
    # The cached verdict still answers, and the same token keeps working.
    status, answer = post(url, body, headers={"Authorization": f"Bearer {gateway}"})
    assert status == 200, answer


def run_preview(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="joch")
    policy_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["policy", "preview", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = policy_cli.preview_main(args, stdout=out, stderr=err)
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_preview_names_support_triage(
    kubeconfig: str, crds_installed: list[str], kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    example = support_triage(namespace)
    try:
        apply(kubectl, example.docs)
        deny_openai = tmp_path / "deny-openai.yaml"
        rule = {
            "when": {"model.provider": "openai"},
            "action": {"deny": True, "reason": "OpenAI is not allowed"},
        }
        deny_openai.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "joch.dev/v1alpha1",
                    "kind": "Policy",
                    "metadata": {"name": "deny-openai", "namespace": namespace},
                    "spec": {"rules": [rule]},
                }
            )
        )
        code, out, _ = run_preview("-f", str(deny_openai), "--kubeconfig", kubeconfig)
        assert code == 3, out
        rows = [line for line in out.splitlines() if line.startswith(f"{namespace}/")]
        assert len(rows) == 1, out
        assert rows[0].split()[:6] == [
            f"{namespace}/support-triage",
            "model",
            "openai:gpt-5-thinking",
            f"{namespace}/deny-openai",
            "(v1)",
            "0",
        ]
        assert rows[0].endswith("OpenAI is not allowed")

        code, out, _ = run_preview("-f", str(deny_openai), "--kubeconfig", kubeconfig, "-o", "json")
        mine = [d for d in json.loads(out)["newlyDenied"] if d["agent"]["namespace"] == namespace]
        assert code == 3
        assert [(d["agent"]["name"], d["item"]["name"], d["rule"]) for d in mine] == [
            ("support-triage", "openai:gpt-5-thinking", 0)
        ]

        harmless = tmp_path / "harmless.yaml"
        harmless.write_text(deny_openai.read_text().replace("provider: openai", "provider: nobody"))
        code, out, _ = run_preview("-f", str(harmless), "--kubeconfig", kubeconfig)
        assert (code, out.startswith(policy_cli.NO_DENIAL)) == (0, True), out
    finally:
        for kind, name in (
            ("frameworkadapter", example.adapter),
            ("environment", example.environment),
            ("team", example.team),
        ):
            kubectl("delete", f"{kind}/{name}", "--wait=false", "--ignore-not-found")
