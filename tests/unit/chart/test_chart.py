"""charts/joch rendered by the real helm: lint, what each install shape contains, values validation, and
the generated chart files being current.

| area            | cases                                                                            |
|-----------------|----------------------------------------------------------------------------------|
| lint            | helm lint --strict: defaults, namespace scope, cert-manager                      |
| Deployment      | restricted Pod Security, probes on the health port, /tmp emptyDir, image, args     |
| HA              | 2 replicas + leader election + PDB; 1 replica: no PDB                            |
| RBAC            | cluster: one ClusterRole = the grant table; namespace: Roles (+ the TokenReview one)|
| decisions       | decisions.callers: --decision-callers, TokenReview grant (both scopes)             |
| API             | api.*: --api-port, container port, Service, certificate names; off                 |
| gRPC            | grpc.*: --grpc-port, container port, Service (appProtocol grpc), certificate names, |
|                 | TokenReview grant (both scopes); off                                              |
| webhooks        | every webhook of joch.manifests.webhooks, TLS wiring per mode, selectors          |
| values          | unknown keys, namespace scope without namespaces, operator TLS in namespace scope |
| generated files | chart.render() == the files on disk; crds/ copies; values.yaml == the model       |
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

import joch
from joch.api import v1alpha1
from joch.domain.compilation import catalog
from joch.manifests import chart, crds, files, rbac, roles, webhooks
from tests import helpers
from tests.unit.chart import helm

NAMESPACED = {"rbac": {"scope": "namespace", "namespaces": ["team-a", "team-b"]}}

# --- lint ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="defaults"),
        pytest.param(NAMESPACED, id="namespace scope"),
        pytest.param({"webhook": {"tls": {"mode": "certManager"}}}, id="cert-manager"),
    ],
)
def test_helm_lint_strict(values: dict[str, Any], tmp_path: Any) -> None:
    args = ["lint", "--strict", str(helm.CHART), "--kube-version", helm.KUBE_VERSION]
    if values:
        args += ["--values", helm.values_file(values, tmp_path)]
    done = helm.helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_chart_metadata() -> None:
    meta = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"  # Helm 3 and 4
    assert meta["appVersion"] == joch.__version__
    assert meta["type"] == "application"


def test_templates_use_no_deprecated_helm_functions() -> None:
    """Functions removed or deprecated across Helm 3 -> 4 (and sprig's deprecated ones)."""
    deprecated = (
        "genSelfSignedCertWithKey",
        "derivePassword",
        "b32dec ",
        " uuidv4 ",
        'semverCompare "<',
        ".Capabilities.KubeVersion.GitVersion",
    )
    for template in (helm.CHART / "templates").iterdir():
        text = template.read_text()
        for name in deprecated:
            assert name not in text, f"{template.name} uses {name.strip()}"


# --- the operator Deployment ----------------------------------------------------------------------------


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = helm.one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_meets_pod_security_restricted() -> None:
    docs = helm.template()
    pod = helm.one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"] == {"sizeLimit": "64Mi"}
    assert not pod.get("hostNetwork")
    assert not pod.get("hostPID")


def test_probes_use_the_health_port() -> None:
    container = _container(helm.template({"health": {"port": 9001}}))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == 9001
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert "--health-port=9001" in container["args"]


def test_image_repository_tag_and_digest() -> None:
    assert _container(helm.template())["image"] == f"ghcr.io/joch-dev/joch:{joch.__version__}"
    tagged = _container(helm.template({"image": {"repository": "r.example/j", "tag": "1.2.3"}}))
    assert tagged["image"] == "r.example/j:1.2.3"
    digest = "sha256:" + "a" * 64
    pinned = _container(helm.template({"image": {"repository": "r.example/j", "tag": "1", "digest": digest}}))
    assert pinned["image"] == f"r.example/j@{digest}"


def test_operator_arguments() -> None:
    args = _container(helm.template({"operator": {"namespaces": ["a", "b"], "logLevel": "verbose"}}))["args"]
    assert args[0] == "operator"
    assert "--namespace=a" in args
    assert "--namespace=b" in args
    assert "--verbose" in args
    assert "--leader-election" in args
    assert "--leader-election-id=joch-leader" in args
    assert "--webhook-tls-secret=joch-operator/joch-webhook-tls" in args
    assert "--webhook-configuration=joch-joch-operator" in args
    assert "--decision-port=8082" in args
    quiet = _container(
        helm.template(
            {"webhook": {"enabled": False}, "metrics": {"enabled": False}, "decisions": {"enabled": False}}
        )
    )["args"]
    assert "--no-webhooks" in quiet
    assert not any(a.startswith(("--metrics-port", "--decision-port")) for a in quiet)
    assert not any(a.startswith("--audit") for a in args)
    audited = _container(helm.template({"audit": {"log": "-", "hashChain": True}}))["args"]
    assert "--audit-log=-" in audited
    assert "--audit-hash-chain" in audited


# --- high availability --------------------------------------------------------------------------------


def test_two_replicas_leader_election_and_pdb_by_default() -> None:
    docs = helm.template()
    assert helm.one(docs, "Deployment")["spec"]["replicas"] == 2
    pdb = helm.one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == helm.one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    role = helm.one(docs, "Role", "joch-self")
    leases = [r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"]]
    assert {"get", "update", "patch"} <= {
        v for r in leases if r.get("resourceNames") == ["joch-leader"] for v in r["verbs"]
    }


def test_single_replica_has_no_pdb() -> None:
    assert not helm.find(helm.template({"replicaCount": 1}), "PodDisruptionBudget")


# --- RBAC ---------------------------------------------------------------------------------------------

NO_GRPC = {"grpc": {"enabled": False}}

NAMES = {
    "joch.leaseName": "joch-leader",
    "joch.webhookSecretName": "joch-webhook-tls",
    "joch.webhookConfigurationName": "joch-joch-operator",
}


def _operator_cluster_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = [d for d in helm.find(docs, "ClusterRole") if d["metadata"]["name"] not in roles.ROLE_NAMES]
    return role


CALLER = "system:serviceaccount:gateways:envoy"
TOKEN_REVIEW = {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}


def test_decision_callers_pass_the_flag_and_grant_token_reviews() -> None:
    """decisions.callers: --decision-callers, and create on tokenreviews (cluster scope: in the operator's
    ClusterRole; namespace scope: a ClusterRole of that rule alone, bound to the operator)."""
    two = [CALLER, "system:serviceaccount:gateways:other"]
    docs = helm.template({"decisions": {"callers": two}})
    assert f"--decision-callers={','.join(two)}" in _container(docs)["args"]
    assert TOKEN_REVIEW in _operator_cluster_role(docs)["rules"]
    assert not any(a.startswith("--decision-callers") for a in _container(helm.template())["args"])
    namespaced = helm.template({**NAMESPACED, "decisions": {"callers": [CALLER]}})
    reviewer = helm.one(namespaced, "ClusterRole")
    assert reviewer["metadata"]["name"] == "joch-joch-operator-token-reviewer"
    assert reviewer["rules"] == [TOKEN_REVIEW]
    binding = helm.one(namespaced, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == reviewer["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "joch", "namespace": "joch-operator"}]
    off = helm.template({**NAMESPACED, **NO_GRPC, "decisions": {"enabled": False, "callers": [CALLER]}})
    assert not helm.find(off, "ClusterRole")
    assert not any(a.startswith("--decision-") for a in _container(off)["args"])


def test_cluster_scope_renders_the_grant_table() -> None:
    """Every grant (the TokenReview grant only with gRPC served or decisions.callers set)."""
    everything = rbac.rules(where=("namespaces", "cluster"), names=NAMES)
    docs = helm.template()  # gRPC is served by default
    assert _operator_cluster_role(docs)["rules"] == everything
    role = _operator_cluster_role(helm.template({**NO_GRPC, "decisions": {"callers": [CALLER]}}))
    assert role["rules"] == everything
    without = [r for r in everything if r != TOKEN_REVIEW]
    assert _operator_cluster_role(helm.template(NO_GRPC))["rules"] == without
    binding = helm.one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "joch", "namespace": "joch-operator"}]
    assert helm.one(docs, "Role", "joch-self")["rules"] == rbac.rules(where=("release",), names=NAMES)


def test_the_team_roles_are_rendered_once_with_the_chart_labels() -> None:
    """rbac.teamRoles (default on, cluster scope): the six ClusterRoles of joch.manifests.roles, their
    rules as generated, with the chart's labels; off, or in namespace scope, none."""
    docs = helm.template()
    operator_role = "joch-joch-operator"  # <release>-<namespace>: the operator's own
    team_roles = {
        d["metadata"]["name"]: d
        for d in helm.find(docs, "ClusterRole")
        if d["metadata"]["name"] != operator_role
    }
    expected = {r["metadata"]["name"]: r for r in roles.cluster_roles()}
    assert set(team_roles) == set(expected) == set(roles.ROLE_NAMES)
    for name, role in team_roles.items():
        assert role["rules"] == expected[name]["rules"], name
        labels = role["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["joch.dev/role"] == expected[name]["metadata"]["labels"]["joch.dev/role"]
    off = helm.template({"rbac": {"teamRoles": False}})
    assert [d["metadata"]["name"] for d in helm.find(off, "ClusterRole")] == [operator_role]
    assert not helm.find(helm.template({**NAMESPACED, **NO_GRPC}), "ClusterRole")


def test_namespace_scope_renders_roles_only() -> None:
    """Roles only (without gRPC; with it, also the ClusterRole of the TokenReview rule alone)."""
    docs = helm.template({**NAMESPACED, **NO_GRPC})
    assert not helm.find(docs, "ClusterRole")
    assert not helm.find(docs, "ClusterRoleBinding")
    with_grpc = helm.template(NAMESPACED)
    assert [r["rules"] for r in helm.find(with_grpc, "ClusterRole")] == [[TOKEN_REVIEW]]
    assert helm.find(with_grpc, "Role") == helm.find(docs, "Role")
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in helm.find(docs, "Role")}
    assert set(roles) == {
        ("team-a", "joch"),
        ("team-b", "joch"),
        ("joch-shared", "joch-shared"),  # the default shared namespace: read-only
        ("joch-operator", "joch-self"),
    }
    assert roles[("team-a", "joch")]["rules"] == rbac.rules(where=("namespaces",), names=NAMES)
    shared = roles[("joch-shared", "joch-shared")]["rules"]
    assert all(set(r["verbs"]) <= set(rbac.READ_VERBS) for r in shared)
    assert len(helm.find(docs, "RoleBinding")) == 4
    args = _container(docs)["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args


def test_namespace_scope_cluster_reader_is_read_only() -> None:
    docs = helm.template({**NAMESPACED, **NO_GRPC, "rbac": {**NAMESPACED["rbac"], "clusterReader": True}})
    reader = helm.one(docs, "ClusterRole")
    assert reader["metadata"]["name"].endswith("-reader")
    assert all(set(r["verbs"]) <= set(rbac.READ_VERBS) for r in reader["rules"])
    resources = {res for r in reader["rules"] for res in r["resources"]}
    assert {"frameworkadapters", "environments", "teams", "namespaces"} <= resources
    assert not any(res.endswith("webhookconfigurations") or res == "secrets" for res in resources)


@pytest.mark.parametrize("values", [pytest.param({}, id="cluster"), pytest.param(NAMESPACED, id="namespace")])
def test_no_secret_access_but_its_own_by_name(values: dict[str, Any]) -> None:
    for doc in helm.find(helm.template(values), "ClusterRole") + helm.find(helm.template(values), "Role"):
        for rule in doc["rules"]:
            if "" in rule["apiGroups"] and "secrets" in rule["resources"]:
                assert rule["resourceNames"] == ["joch-webhook-tls"], doc["metadata"]
                assert "list" not in rule["verbs"]
                assert "watch" not in rule["verbs"]


# --- webhooks ---------------------------------------------------------------------------------------------


def test_webhooks_come_from_the_webhook_renderer() -> None:
    docs = helm.template()
    expected_validating, expected_mutating = webhooks.render(
        service=webhooks.ServiceTarget("joch-operator", "joch-webhook"), operator_namespace="joch-operator"
    )
    for expected in (expected_validating, expected_mutating):
        got = helm.one(docs, expected["kind"])
        assert [h["name"] for h in got["webhooks"]] == [h["name"] for h in expected["webhooks"]]
        for mine, theirs in zip(got["webhooks"], expected["webhooks"], strict=True):
            assert mine["clientConfig"]["service"] == {**theirs["clientConfig"]["service"], "port": 443}
            assert mine["rules"] == theirs["rules"]
            assert mine["matchConditions"] == theirs["matchConditions"]
            assert mine["sideEffects"] == "None"
            assert mine["failurePolicy"] == "Fail"
            assert mine["timeoutSeconds"] <= 5
            assert "caBundle" not in mine["clientConfig"]  # operator mode: patched by the operator
            exempt = mine["namespaceSelector"]["matchExpressions"][0]
            assert exempt == {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "joch-operator"],
            }


def test_namespace_scope_webhooks_cover_only_the_managed_namespaces() -> None:
    docs = helm.template(NAMESPACED)
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in helm.one(docs, kind)["webhooks"]:
            assert {r["scope"] for r in hook["rules"]} == {"Namespaced"}
            assert hook["namespaceSelector"]["matchExpressions"][0] == {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a", "team-b"],
            }
            assert hook["clientConfig"]["caBundle"]  # helm mode: generated at install


def test_helm_tls_mode_secret_and_bundle_agree() -> None:
    import base64

    from cryptography import x509

    docs = helm.template(NAMESPACED)
    secret = helm.one(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "joch-webhook.joch-operator.svc" in names.get_values_for_type(x509.DNSName)
    bundle = helm.one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    assert bundle == secret["data"]["ca.crt"]
    volumes = helm.one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "webhook-tls",
        "secret": {"secretName": "joch-webhook-tls", "defaultMode": 0o440},
    } in volumes


def test_operator_tls_mode_secret_starts_empty() -> None:
    secret = helm.one(helm.template(), "Secret")
    assert secret["type"] == "Opaque"
    assert "data" not in secret
    assert "stringData" not in secret


def test_cert_manager_mode() -> None:
    docs = helm.template({"webhook": {"tls": {"mode": "certManager"}}})
    assert not helm.find(docs, "Secret")
    serving = helm.one(docs, "Certificate", "joch-webhook")
    assert serving["spec"]["secretName"] == "joch-webhook-tls"
    assert "joch-webhook.joch-operator.svc" in serving["spec"]["dnsNames"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = helm.one(docs, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "joch-operator/joch-webhook"
    custom = helm.template(
        {
            "webhook": {
                "tls": {
                    "mode": "certManager",
                    "certManager": {"issuerRef": {"name": "corp", "kind": "ClusterIssuer"}},
                }
            }
        }
    )
    assert not helm.find(custom, "Issuer")
    assert helm.one(custom, "Certificate")["spec"]["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer"}


def test_webhooks_can_be_disabled() -> None:
    docs = helm.template({"webhook": {"enabled": False}})
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Secret"):
        assert not helm.find(docs, kind)
    assert [s["metadata"]["name"] for s in helm.find(docs, "Service")] == ["joch-metrics", "joch-decisions"]


def _dns_names(docs: list[dict[str, Any]]) -> list[str]:
    import base64

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(helm.one(docs, "Secret")["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(names.get_values_for_type(x509.DNSName))


def test_the_api_is_served_in_a_service_with_the_webhook_certificate() -> None:
    """api.enabled (default): --api-port, the container port api, the Service <fullname>-api 443 -> api,
    and the API Service's names on the serving certificate in every TLS mode."""
    docs = helm.template()
    container = _container(docs)
    assert "--api-port=8090" in container["args"]
    assert "--api-service=joch-api.joch-operator.svc" in container["args"]  # operator TLS: on its cert
    assert {"name": "api", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    service = helm.one(docs, "Service", "joch-api")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "api", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == helm.one(docs, "Service", "joch-webhook")["spec"]["selector"]
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "api"

    custom = helm.template({"api": {"port": 9000, "service": {"port": 8443}}})
    assert "--api-port=9000" in _container(custom)["args"]
    assert helm.one(custom, "Service", "joch-api")["spec"]["ports"][0]["port"] == 8443

    helm_mode = helm.template(NAMESPACED)
    assert "joch-api.joch-operator.svc" in _dns_names(helm_mode)
    assert "joch-webhook.joch-operator.svc" in _dns_names(helm_mode)
    assert not any(a.startswith("--api-service") for a in _container(helm_mode)["args"])  # mounted cert
    annotation = helm.one(helm_mode, "Secret")["metadata"]["annotations"]["joch.dev/dns-names"]
    assert "joch-api.joch-operator.svc" in annotation.split(",")
    cert_manager = helm.template({"webhook": {"tls": {"mode": "certManager"}}})
    assert (
        "joch-api.joch-operator.svc"
        in helm.one(cert_manager, "Certificate", "joch-webhook")["spec"]["dnsNames"]
    )


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"api": {"enabled": False}}, id="api off"),
        pytest.param({"webhook": {"enabled": False}}, id="no cert"),
    ],
)
def test_the_api_can_be_turned_off(values: dict[str, Any]) -> None:
    """api.enabled=false, or no webhooks (no certificate to serve it with): --api-port=0, no port, no
    Service, and the certificate names only the webhook Service."""
    docs = helm.template(values)
    container = _container(docs)
    assert "--api-port=0" in container["args"]
    assert not any(a.startswith("--api-service") for a in container["args"])
    assert all(p["name"] != "api" for p in container["ports"])
    assert all(s["metadata"]["name"] != "joch-api" for s in helm.find(docs, "Service"))
    namespaced = helm.template({**NAMESPACED, **values})
    if helm.find(namespaced, "Secret"):
        assert not any(name.startswith("joch-api") for name in _dns_names(namespaced))


def test_grpc_is_served_in_a_service_with_the_webhook_certificate() -> None:
    """grpc.enabled (default): --grpc-port, the container port grpc, the Service <fullname>-grpc 9090 ->
    grpc with appProtocol grpc, the gRPC Service's names on the serving certificate in every TLS mode."""
    docs = helm.template()
    container = _container(docs)
    assert "--grpc-port=9090" in container["args"]
    assert "--grpc-service=joch-grpc.joch-operator.svc" in container["args"]  # operator TLS: on its cert
    assert {"name": "grpc", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    service = helm.one(docs, "Service", "joch-grpc")
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]
    assert service["spec"]["selector"] == helm.one(docs, "Service", "joch-webhook")["spec"]["selector"]
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "grpc"

    custom = helm.template({"grpc": {"port": 9555, "service": {"port": 443}}})
    assert "--grpc-port=9555" in _container(custom)["args"]
    assert {"name": "grpc", "containerPort": 9555, "protocol": "TCP"} in _container(custom)["ports"]
    assert helm.one(custom, "Service", "joch-grpc")["spec"]["ports"][0]["port"] == 443

    helm_mode = helm.template(NAMESPACED)
    assert "joch-grpc.joch-operator.svc" in _dns_names(helm_mode)
    assert "joch-api.joch-operator.svc" in _dns_names(helm_mode)
    assert not any(a.startswith("--grpc-service") for a in _container(helm_mode)["args"])  # mounted cert
    annotation = helm.one(helm_mode, "Secret")["metadata"]["annotations"]["joch.dev/dns-names"]
    assert "joch-grpc.joch-operator.svc" in annotation.split(",")
    cert_manager = helm.template({"webhook": {"tls": {"mode": "certManager"}}})
    assert (
        "joch-grpc.joch-operator.svc.cluster.local"
        in helm.one(cert_manager, "Certificate", "joch-webhook")["spec"]["dnsNames"]
    )


def test_grpc_reviews_its_callers_tokens_in_both_scopes() -> None:
    """gRPC always authenticates (TokenReview, cluster-scoped): cluster scope, the rule in the operator's
    ClusterRole; namespace scope, the ClusterRole of that rule alone, bound to the operator."""
    assert TOKEN_REVIEW in _operator_cluster_role(helm.template())["rules"]
    namespaced = helm.template(NAMESPACED)
    reviewer = helm.one(namespaced, "ClusterRole")
    assert reviewer["metadata"]["name"] == "joch-joch-operator-token-reviewer"
    assert reviewer["rules"] == [TOKEN_REVIEW]
    binding = helm.one(namespaced, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == reviewer["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "joch", "namespace": "joch-operator"}]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(NO_GRPC, id="grpc off"),
        pytest.param({"webhook": {"enabled": False}}, id="no cert"),
    ],
)
def test_grpc_can_be_turned_off(values: dict[str, Any]) -> None:
    """grpc.enabled=false, or no webhooks (no certificate to serve it with): --grpc-port=0, no port, no
    Service, no TokenReview grant (without decisions.callers), the certificate without its names."""
    docs = helm.template(values)
    container = _container(docs)
    assert "--grpc-port=0" in container["args"]
    assert not any(a.startswith("--grpc-service") for a in container["args"])
    assert all(p["name"] != "grpc" for p in container["ports"])
    assert all(s["metadata"]["name"] != "joch-grpc" for s in helm.find(docs, "Service"))
    assert TOKEN_REVIEW not in _operator_cluster_role(docs)["rules"]
    namespaced = helm.template({**NAMESPACED, **values})
    assert not helm.find(namespaced, "ClusterRole")
    if helm.find(namespaced, "Secret"):
        assert not any(name.startswith("joch-grpc") for name in _dns_names(namespaced))


def test_service_monitor_is_optional() -> None:
    assert not helm.find(helm.template(), "ServiceMonitor")
    docs = helm.template({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "p"}}}})
    monitor = helm.one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "p"
    metrics_service = helm.one(docs, "Service", "joch-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= metrics_service["metadata"]["labels"].items()


# --- values validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"rbac": {"scpe": "namespace"}}, "scpe", id="unknown key"),
        pytest.param({"rbac": {"scope": "tenant"}}, "/rbac/scope", id="bad enum"),
        pytest.param({"replicaCount": 0}, "replicaCount", id="zero replicas"),
        pytest.param({"rbac": {"scope": "namespace"}}, "namespaces", id="namespace scope without namespaces"),
        pytest.param(
            {**NAMESPACED, "webhook": {"tls": {"mode": "operator"}}},
            "webhook.tls.mode=operator needs rbac.scope=cluster",
            id="operator TLS in namespace scope",
        ),
        pytest.param(
            {"leaderElection": {"enabled": False}},
            "needs leaderElection.enabled",
            id="2 replicas, no election",
        ),
        pytest.param(
            {"leaderElection": {"renewDeadlineSeconds": 20}}, "renewDeadlineSeconds", id="deadline > duration"
        ),
        pytest.param(
            {"operator": {"sharedNamespaces": ["joch-operator"]}},
            "cannot also be a shared namespace (operator.sharedNamespaces=joch-operator)",
            id="release namespace shared",
        ),
    ],
)
def test_invalid_values_are_rejected(values: dict[str, Any], message: str) -> None:
    assert message in helm.template_error(values)


# --- generated files ------------------------------------------------------------------------------------


def _rendered() -> dict[str, str]:
    crd_files = {name: files.dump_yaml(crd) for name, crd in crds.render_all(v1alpha1.KINDS).items()}
    return chart.render(
        crds=crd_files,
        kinds=v1alpha1.KINDS,
        reconciled=catalog.COMPILE_KINDS,
        health_lua=(helm.CHART / "argocd" / "health.lua").read_text(),
    )


def test_generated_chart_files_are_current() -> None:
    stale = [
        path
        for path, text in _rendered().items()
        if not (helm.CHART / path).is_file() or (helm.CHART / path).read_text() != text
    ]
    assert not stale, f"run `make manifests`: stale chart files {stale}"


def test_chart_crds_are_the_repository_crds() -> None:
    ours = {p.name: p.read_text() for p in (helm.CHART / "crds").glob("*.yaml")}
    theirs = {p.name: p.read_text() for p in helpers.CRDS.glob("*.yaml")}
    assert ours == theirs


def test_values_yaml_is_the_model_defaults() -> None:
    loaded = yaml.safe_load((helm.CHART / "values.yaml").read_text())
    assert loaded == chart.Values().model_dump(by_alias=True)


def test_schema_accepts_the_defaults_and_documents_every_value() -> None:
    import jsonschema

    schema = json.loads((helm.CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((helm.CHART / "values.yaml").read_text()), schema)
    readme = (helm.CHART / "README.md").read_text()

    def keys(node: dict[str, Any], prefix: str = "") -> list[str]:
        out = []
        for name, sub in node.get("properties", {}).items():
            if sub.get("type") == "object" and "properties" in sub:
                out += keys(sub, f"{prefix}{name}.")
            else:
                out.append(prefix + name)
                assert sub.get("description"), f"{prefix}{name} has no description"
        return out

    for key in keys(schema):
        assert f"| `{key}` |" in readme, f"README.md lacks {key}"
