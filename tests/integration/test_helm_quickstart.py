"""The quick start, exactly as docs/install.md writes it: ``helm install joch charts/joch -n joch-system
--create-namespace``, with the chart's default values, by the real helm against the real API server.

Cases (one test, in order, because the release is cluster-wide):
- the command succeeds and the release is deployed;
- the operator's Deployment, ServiceAccount and RBAC objects (ClusterRole, ClusterRoleBinding, Role,
  RoleBinding) and both webhook configurations exist in the cluster;
- the operator is configured with the default shared namespace joch-shared, not its own namespace;
- admission through the chart's own webhook configurations (their namespaceSelector, rules and
  matchConditions, with only the clientConfig pointed at a joch webhook server running in this process,
  because the chart's Pods run on fake Nodes here, where no container runs): an Agent with a
  forbidden cross-namespace reference is rejected in a user namespace and in the shared namespace,
  naming the field; only the release namespace is exempt.

The chart's default webhooks intercept every namespace, so the teardown removes the release (and, should
``helm uninstall`` fail, the webhook configurations by name) before any other test runs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from joch.domain.admission import WATCHED_KIND_NAMES, Admission
from joch.domain.settings import OperatorSettings
from joch.webhooks import AdmissionEndpoint, AdmissionServer, WebhookOptions
from joch.webhooks.background import BackgroundServer
from tests.integration.admission_fixtures import LiveLookup
from tests.unit.admission import factories as f
from tests.unit.chart import helm

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]

RELEASE_NAMESPACE = "joch-system"
SHARED_NAMESPACE = "joch-shared"
CONFIGURATION = f"joch-{RELEASE_NAMESPACE}"  # joch.clusterName: <fullname>-<release namespace>
ROLE = "joch-self"  # the Role in the release namespace (Lease, webhook Secret)


@pytest.fixture
def quickstart(crds_installed: list[str], kubeconfig: str, kubectl: Kubectl) -> Iterator[str]:
    """Run the quick-start command; yield its output; uninstall and clean up whatever happens."""
    try:
        done = helm.helm(
            "install", "joch", str(helm.CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
            kubeconfig=kubeconfig,
        )  # fmt: skip
        assert done.returncode == 0, f"the quick-start install failed:\n{done.stderr}{done.stdout}"
        yield done.stdout
    finally:
        helm.helm("uninstall", "joch", "-n", RELEASE_NAMESPACE, kubeconfig=kubeconfig)
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            kubectl("delete", kind, CONFIGURATION, "--ignore-not-found", "--wait=false")
        namespaces = (RELEASE_NAMESPACE, SHARED_NAMESPACE)
        kubectl("delete", "namespace", *namespaces, "--ignore-not-found", "--wait=false")


def _exists(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None) -> bool:
    args = ["get", kind, name, "-o", "name"]
    if namespace:
        args += ["-n", namespace]
    return bool(kubectl(*args).returncode == 0)


def _container_env(kubectl: Kubectl) -> dict[str, str]:
    done = kubectl("get", "deployment", "joch", "-n", RELEASE_NAMESPACE, "-o", "json")
    assert done.returncode == 0, done.stderr
    (container,) = json.loads(done.stdout)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _point_at(kubectl: Kubectl, url: str, ca_pem: bytes) -> None:
    """Keep the chart's webhook configurations as they are, except where the API server sends requests."""
    bundle = base64.b64encode(ca_pem).decode()
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        done = kubectl("get", kind, CONFIGURATION, "-o", "json")
        assert done.returncode == 0, done.stderr
        config = json.loads(done.stdout)
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url.rstrip("/") + path, "caBundle": bundle}
        replaced = kubectl("replace", "-f", "-", input=json.dumps(config))
        assert replaced.returncode == 0, replaced.stderr


def _forbidden_ref_agent(namespace: str) -> dict[str, Any]:
    """An Agent referencing an MCP server in a namespace that is not shared: admission rejects it
    (decision D2, docs/decisions.md)."""
    doc = f.agent(mcpServers=[{"name": "github", "namespace": "not-shared"}])
    doc["metadata"]["namespace"] = namespace
    doc["metadata"].pop("generation", None)
    return doc


def _create(kubectl: Kubectl, doc: dict[str, Any]) -> Any:
    return kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(doc))


def _until_enforced(kubectl: Kubectl, namespace: str) -> Any:
    """The API server picks up changed configurations asynchronously: wait until the webhook answers."""
    deadline = time.monotonic() + 30
    while True:
        done = _create(kubectl, _forbidden_ref_agent(namespace))
        if done.returncode != 0 and "spec.mcpServers[0]" in done.stderr:
            return done
        if time.monotonic() > deadline:
            raise AssertionError(f"the chart's webhooks never reached the server: {done.stdout}{done.stderr}")
        time.sleep(0.3)


def test_quick_start_installs_into_joch_system_and_admission_checks_user_namespaces(
    quickstart: str,
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    assert "STATUS: deployed" in quickstart
    assert f"Shared namespaces (their objects may be referenced from any namespace): {SHARED_NAMESPACE}" in (
        quickstart
    )

    # The operator's own objects.
    assert _exists(kubectl, "deployment", "joch", RELEASE_NAMESPACE)
    assert _exists(kubectl, "serviceaccount", "joch", RELEASE_NAMESPACE)
    assert _exists(kubectl, "clusterrole", CONFIGURATION)
    assert _exists(kubectl, "clusterrolebinding", CONFIGURATION)
    assert _exists(kubectl, "role", ROLE, RELEASE_NAMESPACE)
    assert _exists(kubectl, "rolebinding", ROLE, RELEASE_NAMESPACE)
    assert _exists(kubectl, "validatingwebhookconfiguration", CONFIGURATION)
    assert _exists(kubectl, "mutatingwebhookconfiguration", CONFIGURATION)
    crb = json.loads(kubectl("get", "clusterrolebinding", CONFIGURATION, "-o", "json").stdout)
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "joch", "namespace": RELEASE_NAMESPACE}]

    # Configured with a shared namespace of its own, not the (exempt) release namespace.
    env = _container_env(kubectl)
    assert env["JOCH_SHARED_NAMESPACES"] == SHARED_NAMESPACE

    # Admission through the chart's configurations, served by joch's webhook server with the operator's
    # settings as the chart passes them.
    settings = OperatorSettings(shared_namespaces=tuple(env["JOCH_SHARED_NAMESPACES"].split(",")))
    lookup = LiveLookup(kube_api)  # never refreshed: empty, so missing targets only warn
    endpoint = AdmissionEndpoint(Admission(settings), lookup, known_kinds=WATCHED_KIND_NAMES)
    options = WebhookOptions(
        cert_dir=tmp_path / "certs", listen_host="127.0.0.1", port=0, manage_configurations=False
    )
    server = AdmissionServer(endpoint, options)
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=SHARED_NAMESPACE)))
    with BackgroundServer(server) as running:
        assert server.certificates is not None
        _point_at(kubectl, running.url, server.certificates.ca_pem)

        # A user namespace is checked: the reference is rejected, naming the field and the shared namespace.
        denied = _until_enforced(kubectl, namespace)
        assert 'admission webhook "validate.agents.joch.dev" denied the request' in denied.stderr
        assert f"({SHARED_NAMESPACE}) may be referenced" in denied.stderr

        # So is the shared namespace (its objects are what every namespace may use).
        in_shared = _create(kubectl, _forbidden_ref_agent(SHARED_NAMESPACE))
        assert in_shared.returncode != 0
        assert "validate.agents.joch.dev" in in_shared.stderr
        assert "spec.mcpServers[0]" in in_shared.stderr

        # Only the release namespace is exempt (the chart's namespaceSelector).
        in_release = _create(kubectl, _forbidden_ref_agent(RELEASE_NAMESPACE))
        assert in_release.returncode == 0, in_release.stderr
