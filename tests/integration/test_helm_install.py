"""charts/joch installed with the real helm into the real API server (the Deployment's Pods land on kwok's
fake Nodes, where no container runs: the tests check that every object is accepted and what the chart's
ServiceAccount may do, not what the operator's Pods do).

Cases:
- cluster scope install: every rendered object exists; the release is deployed.
- ServiceAccount credentials (TokenRequest token): reads the catalog everywhere; 403 on core Secrets
  (list, get, other namespaces); its own TLS Secret and Lease work: fills the Secret, patches caBundle.
- namespace scope: Roles, and one ClusterRole for TokenReviews only (gRPC authenticates its callers);
  allowed in the managed namespace, 403 elsewhere and on cluster kinds.
- helm upgrade to a changed values file: succeeds; changes applied; the operator-written TLS data and
  caBundle survive it.
- Pod Security restricted: the Deployment's Pod template is admitted in an enforce=restricted namespace.
- optional objects: cert-manager Issuer/Certificate and ServiceMonitor accepted (stand-in CRDs).

Every release intercepts only objects labelled ``joch.dev/helm-test=<its namespace>`` (webhook
objectSelector), so its webhooks (whose Service has no real server behind it) never touch other tests'
objects.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from joch.kube import client as kube_client
from joch.kube import leader, webhook_tls
from tests.unit.chart import helm

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


def release_values(namespace: str, **overrides: Any) -> dict[str, Any]:
    """Values for a release in ``namespace``: its webhooks intercept only objects labelled for it; the
    shared namespace is itself in namespace scope (Roles need an existing namespace), else joch-system
    (the release namespace, exempt from admission, may not be shared)."""
    namespaced = (overrides.get("rbac") or {}).get("scope") == "namespace"
    values: dict[str, Any] = {
        "webhook": {"objectSelector": {"matchLabels": {"joch.dev/helm-test": namespace}}},
        "operator": {"sharedNamespaces": [namespace] if namespaced else ["joch-system"]},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


@pytest.fixture
def release(
    namespace: str, kubeconfig: str, crds_installed: list[str], tmp_path: Path
) -> Iterator[helm.Release]:
    installed = helm.Release(name="joch", namespace=namespace, kubeconfig=kubeconfig, workdir=tmp_path)
    yield installed
    installed.uninstall()


def sa_api(path: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=path, persist_config=False)


def sa_kubeconfig(kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path) -> str:
    return helm.service_account_kubeconfig(
        kubectl=kubectl,
        admin_kubeconfig=kubeconfig,
        namespace=namespace,
        service_account="joch",
        path=tmp_path / "sa.kubeconfig",
    )


def status_of(call: Callable[[], Any]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def _exists(kubectl: Kubectl, doc: dict[str, Any]) -> bool:
    kind = doc["kind"]
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    resource = f"{kind.lower()}.{group}" if group else kind.lower()
    args = ["get", resource, doc["metadata"]["name"], "-o", "name"]
    if doc["metadata"].get("namespace"):
        args += ["-n", doc["metadata"]["namespace"]]
    return kubectl(*args).returncode == 0


# --- install -------------------------------------------------------------------------------------------


def test_install_cluster_scope_every_object_accepted(
    release: helm.Release, namespace: str, kubectl: Kubectl
) -> None:
    release.install(release_values(namespace))
    docs = release.manifest()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        }
    )
    missing = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if not _exists(kubectl, d)]
    assert not missing
    assert release.status()["info"]["status"] == "deployed"
    crds = kubectl("get", "crd", "-l", "!nothing", "-o", "name")
    assert crds.stdout.count("joch.dev") == len(list((helm.CHART / "crds").glob("*.yaml")))


def test_service_account_credentials_are_least_privilege(
    release: helm.Release,
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace))
    other = f"t-helm-other-{uuid.uuid4().hex[:8]}"
    core_admin = client.CoreV1Api(kube_api)
    core_admin.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other, labels={"joch.dev/test": "true"}))
    )
    try:
        core_admin.create_namespaced_secret(
            other,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="provider-keys"), string_data={"openai": "sk-x"}
            ),
        )
        path = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
        api = sa_api(path)
        try:
            core = client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            # The catalog and the objects it writes: allowed, in every namespace.
            assert (
                status_of(lambda: custom.list_cluster_custom_object("joch.dev", "v1alpha1", "agents")) == 200
            )
            assert (
                status_of(
                    lambda: custom.list_cluster_custom_object("joch.dev", "v1alpha1", "frameworkadapters")
                )
                == 200
            )
            assert status_of(lambda: core.list_namespaced_config_map(other)) == 200
            assert status_of(core.list_namespace) == 200
            # Core Secrets: forbidden, everywhere, by list or by name (decision D12, docs/decisions.md).
            assert status_of(core.list_secret_for_all_namespaces) == 403
            assert status_of(lambda: core.list_namespaced_secret(other)) == 403
            assert status_of(lambda: core.read_namespaced_secret("provider-keys", other)) == 403
            assert status_of(lambda: core.list_namespaced_secret(namespace)) == 403
            # ...except its own webhook serving Secret, by name.
            assert status_of(lambda: core.read_namespaced_secret("joch-webhook-tls", namespace)) == 200
            # No writes to the catalog's specs, no RBAC changes, no Pod writes (Pods are read only:
            # an Execution's status follows the Pod of its Job, docs/executions.md).
            assert (
                status_of(
                    lambda: custom.delete_namespaced_custom_object(
                        "joch.dev", "v1alpha1", other, "agents", "x"
                    )
                )
                == 403
            )
            assert status_of(lambda: client.RbacAuthorizationV1Api(api).list_cluster_role()) == 403
            assert status_of(lambda: core.list_namespaced_pod(other)) == 200
            for verb, resource in (
                ("create", "secrets"),
                ("list", "secrets"),
                ("create", "pods"),
                ("delete", "pods"),
                ("patch", "pods"),
                ("create", "pods/exec"),
                ("escalate", "clusterroles"),
            ):
                can = kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--kubeconfig={path}")
                assert can.stdout.strip() == "no", (verb, resource)
            # Teams: it binds the Team roles' ClusterRoles (by name) without holding what they grant, and
            # never joch-break-glass or any other ClusterRole (docs/teams.md).
            for verb, resource, answer in (
                ("bind", "clusterroles/joch-admin", "yes"),
                ("bind", "clusterroles/joch-approver", "yes"),
                ("bind", "clusterroles/joch-break-glass", "no"),
                ("bind", "clusterroles/cluster-admin", "no"),
                ("bind", "clusterroles", "no"),
                ("create", "rolebindings", "yes"),
                ("create", "clusterrolebindings", "no"),
                ("override", "approvals.runtime.joch.dev", "no"),
            ):
                can = kubectl("auth", "can-i", verb, resource, "-n", other, f"--kubeconfig={path}")
                assert can.stdout.strip() == answer, (verb, resource, can.stdout, can.stderr)
        finally:
            api.close()

        # The operator's own I/O with these credentials: the TLS Secret + caBundle, and the Lease.
        bundle, holder = asyncio.run(_tls_and_lease(path, namespace))
        secret = core_admin.read_namespaced_secret("joch-webhook-tls", namespace)
        assert webhook_tls.Bundle.from_data(secret.data) == bundle
        encoded = base64.b64encode(bundle.ca).decode()
        admission = client.AdmissionregistrationV1Api(kube_api)
        for configuration in (
            admission.read_validating_webhook_configuration(f"joch-{namespace}"),
            admission.read_mutating_webhook_configuration(f"joch-{namespace}"),
        ):
            assert configuration.webhooks
            assert {w.client_config.ca_bundle for w in configuration.webhooks} == {encoded}
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease("joch-leader", namespace)
        assert lease.spec.holder_identity == holder
    finally:
        core_admin.delete_namespace(other)


async def _tls_and_lease(kubeconfig: str, namespace: str) -> tuple[webhook_tls.Bundle, str]:
    kube = kube_client.Kube(kube_client.new_api_client(kube_client.load_configuration(kubeconfig)))
    try:
        tls = webhook_tls.SecretTLS(
            kube,
            secret_namespace=namespace,
            secret_name="joch-webhook-tls",
            config=webhook_tls.ServingConfig.for_service(f"joch-webhook.{namespace}.svc"),
            configuration=f"joch-{namespace}",
        )
        bundle = await tls.sync()
        elector = leader.LeaderElector(
            kube,
            leader.LeaseConfig(name="joch-leader", namespace=namespace, identity=leader.default_identity()),
        )
        assert await elector.try_acquire_or_renew()
        return bundle, elector.config.identity
    finally:
        await kube.aclose()
        kube.close()


def test_namespace_scope_uses_roles_and_a_token_review_grant_only(
    release: helm.Release,
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    values = release_values(namespace, rbac={"scope": "namespace", "namespaces": [namespace]})
    release.install(values)
    docs = release.manifest()
    # gRPC (served by default) checks its callers' tokens with TokenReviews, a cluster-scoped kind: the
    # only cluster-scoped RBAC is a ClusterRole of that one rule and its binding (grpc.enabled=false
    # leaves Roles alone; tests/unit/chart renders that).
    cluster = [d for d in docs if d["kind"].startswith("Cluster")]
    assert sorted(d["kind"] for d in cluster) == ["ClusterRole", "ClusterRoleBinding"]
    (reviewer,) = [d for d in cluster if d["kind"] == "ClusterRole"]
    assert reviewer["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    assert {d["kind"] for d in docs if d["kind"] in ("Role", "RoleBinding")} == {"Role", "RoleBinding"}
    assert not [f"{d['kind']}/{d['metadata']['name']}" for d in docs if not _exists(kubectl, d)]
    validating = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    assert all(r["scope"] == "Namespaced" for w in validating["webhooks"] for r in w["rules"])
    assert all(w["clientConfig"]["caBundle"] for w in validating["webhooks"])  # helm-generated TLS
    path = sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path)
    api = sa_api(path)
    try:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        assert (
            status_of(
                lambda: custom.list_namespaced_custom_object("joch.dev", "v1alpha1", namespace, "agents")
            )
            == 200
        )
        assert status_of(lambda: core.list_namespaced_config_map(namespace)) == 200
        assert (
            status_of(
                lambda: custom.list_namespaced_custom_object("joch.dev", "v1alpha1", "default", "agents")
            )
            == 403
        )
        assert status_of(lambda: custom.list_cluster_custom_object("joch.dev", "v1alpha1", "agents")) == 403
        assert (
            status_of(lambda: custom.list_cluster_custom_object("joch.dev", "v1alpha1", "frameworkadapters"))
            == 403
        )
        assert status_of(core.list_namespace) == 403
        assert status_of(lambda: core.list_namespaced_secret(namespace)) == 403
        assert (
            status_of(lambda: core.read_namespaced_secret("joch-webhook-tls", namespace)) == 403
        )  # mounted, not read
    finally:
        api.close()


# --- upgrade -------------------------------------------------------------------------------------------


def test_upgrade_to_a_changed_values_file_keeps_operator_managed_tls(
    release: helm.Release,
    namespace: str,
    kubectl: Kubectl,
    kubeconfig: str,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    release.install(release_values(namespace))
    bundle, _ = asyncio.run(
        _tls_and_lease(sa_kubeconfig(kubectl, kubeconfig, namespace, tmp_path), namespace)
    )
    changed = release_values(
        namespace,
        replicaCount=3,
        operator={"logLevel": "verbose", "workers": 16},
        podDisruptionBudget={"minAvailable": 2},
        webhook={"timeoutSeconds": 3, "objectSelector": {"matchLabels": {"joch.dev/helm-test": namespace}}},
        resources={"requests": {"cpu": "200m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
    )
    release.upgrade(changed)
    assert release.status()["version"] == 2
    apps = client.AppsV1Api(kube_api)
    deployment = apps.read_namespaced_deployment("joch", namespace)
    assert deployment.spec.replicas == 3
    args = deployment.spec.template.spec.containers[0].args
    assert "--verbose" in args
    assert "--workers=16" in args
    assert (
        client.PolicyV1Api(kube_api)
        .read_namespaced_pod_disruption_budget("joch", namespace)
        .spec.min_available
        == 2
    )
    # What the operator wrote is not reverted by the upgrade (the chart never sets it).
    secret = client.CoreV1Api(kube_api).read_namespaced_secret("joch-webhook-tls", namespace)
    assert webhook_tls.Bundle.from_data(secret.data) == bundle
    configuration = client.AdmissionregistrationV1Api(kube_api).read_validating_webhook_configuration(
        f"joch-{namespace}"
    )
    encoded = base64.b64encode(bundle.ca).decode()
    assert {w.client_config.ca_bundle for w in configuration.webhooks} == {encoded}
    assert {w.timeout_seconds for w in configuration.webhooks} == {3}


# --- Pod Security -------------------------------------------------------------------------------------


def test_pod_template_is_admitted_under_pod_security_restricted(
    namespace: str, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    for values in ({}, release_values(namespace, rbac={"scope": "namespace", "namespaces": [namespace]})):
        rendered = helm.template(values, namespace=namespace)
        deployment = helm.one(rendered, "Deployment")
        template = deployment["spec"]["template"]
        # As in the release, the Pod's ServiceAccount exists first (the admission plugin requires it).
        account = helm.one(rendered, "ServiceAccount")
        assert account["metadata"]["name"] == template["spec"]["serviceAccountName"]
        try:
            core.create_namespaced_service_account(namespace, {"metadata": account["metadata"]})
        except ApiException as exc:
            if exc.status != 409:
                raise
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "joch-", **template["metadata"]},
            "spec": template["spec"],
        }
        created = core.create_namespaced_pod(namespace, pod)
        assert created.metadata.name
    # The namespace really enforces: a privileged variant is refused.
    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, bad)
    assert refused.value.status == 403
    assert "restricted" in str(refused.value.body)


# --- optional objects -----------------------------------------------------------------------------------

_OPTIONAL_CRDS = (
    ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors", "Namespaced"),
    ("cert-manager.io", "Certificate", "certificates", "Namespaced"),
    ("cert-manager.io", "Issuer", "issuers", "Namespaced"),
)


def _minimal_crd(group: str, kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


def test_optional_objects_are_accepted(release: helm.Release, namespace: str, kubectl: Kubectl) -> None:
    """cert-manager TLS and the ServiceMonitor, against stand-in CRDs (the real operators are not here)."""
    crds = [_minimal_crd(*spec) for spec in _OPTIONAL_CRDS]
    applied = kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(crds))
    assert applied.returncode == 0, applied.stderr
    names = [f"crd/{c['metadata']['name']}" for c in crds]
    assert kubectl("wait", "--for=condition=Established", "--timeout=60s", *names).returncode == 0
    release.install(
        release_values(
            namespace,
            webhook={
                "tls": {"mode": "certManager"},
                "objectSelector": {"matchLabels": {"joch.dev/helm-test": namespace}},
            },
            metrics={"serviceMonitor": {"enabled": True}},
        )
    )
    docs = release.manifest()
    assert {"Certificate", "Issuer", "ServiceMonitor"} <= {d["kind"] for d in docs}
    assert not [f"{d['kind']}/{d['metadata']['name']}" for d in docs if not _exists(kubectl, d)]
