"""The HTTPS server in-process (no API server), its certificates, and the rendered configurations.

| case | expected |
|---|---|
| TLS: the client trusts only the generated CA and checks IP 127.0.0.1 | handshake succeeds |
| POST /validate/... a review | 200 AdmissionReview |
| a 3 MiB object (plus oldObject) | answered (200) |
| a body over the limit | 413 JSON error, server stays up |
| garbage, invalid UTF-8 | 400, server stays up |
| GET /healthz | ok |
| unknown path / method | 404 / 405 |
| certificates reused, reissued when names change, keys 0600 | |
| certificates at day 200 / day 250 (joch.pki.needs_renewal) | kept / reissued by the same CA |
| rendered configurations: every kind validated, defaulted kinds mutated, Fail, None, 5 s, v1, selector | |
"""

from __future__ import annotations

import datetime
import json
import pathlib
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509

from joch.api import v1alpha1
from joch.domain.admission import DEFAULTED_KINDS, Admission
from joch.manifests import webhooks as rendering
from joch.webhooks import AdmissionEndpoint, AdmissionServer, WebhookOptions, certs
from joch.webhooks.background import BackgroundServer
from joch.webhooks.server import MAX_BODY
from tests.unit.admission import factories as f


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    endpoint = AdmissionEndpoint(Admission(f.SETTINGS), f.world(f.prod_scenario()).base)
    options = WebhookOptions(cert_dir=tmp_path_factory.mktemp("certs"), port=0, manage_configurations=False)
    with BackgroundServer(AdmissionServer(endpoint, options)) as server:
        yield server


def _post(server: BackgroundServer, path: str, body: bytes, method: str = "POST") -> tuple[int, Any]:
    assert server.server.certificates is not None
    context = ssl.create_default_context(cadata=server.server.certificates.ca_pem.decode())
    request = urllib.request.Request(
        server.url + path, data=body if method == "POST" else None, method=method
    )
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            text = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read(), exc.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text.decode()


def test_review_over_tls(running: BackgroundServer) -> None:
    status, body = _post(
        running, "/validate/joch.dev/agents", f.review_bytes(f.agent(labels={"env": "prod"}))
    )
    assert status == 200
    assert body["response"]["allowed"] is False
    assert "spec.modelRoute.routeRef" in body["response"]["status"]["message"]


def test_three_mib_object_with_old_object(running: BackgroundServer) -> None:
    big = f.agent(description="x" * (3 * 1024 * 1024 - 1000))
    body = f.review_bytes(big, operation="UPDATE", old=f.agent(description="y" * (1024 * 1024)))
    assert len(body) > 4 * 1024 * 1024
    status, payload = _post(running, "/validate/joch.dev/agents", body)
    assert status == 200
    assert "response" in payload


def test_body_over_the_limit(running: BackgroundServer) -> None:
    status, payload = _post(running, "/validate/joch.dev/agents", b"x" * (MAX_BODY + 1))
    assert status == 413
    assert "larger than" in payload["error"]
    assert _post(running, "/healthz", b"", method="GET") == (200, "ok")


@pytest.mark.parametrize("body", [b"garbage", b'{"kind": "AdmissionReview"}', b"\xff\xfe\x00"])
def test_garbage(running: BackgroundServer, body: bytes) -> None:
    status, payload = _post(running, "/mutate/ops.joch.dev/traces", body)
    assert status == 400
    assert payload["error"]


def test_routes(running: BackgroundServer) -> None:
    assert _post(running, "/nope", b"{}")[0] == 404
    assert _post(running, "/validate/x", b"", method="GET")[0] == 405


# --- certificates -------------------------------------------------------------------------------------------


def _sans(path: pathlib.Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(sans.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    }


def test_certificates_are_reused_and_reissued(tmp_path: pathlib.Path) -> None:
    first = certs.ensure_certificates(tmp_path, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    cert_bytes = first.cert.read_bytes()
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.ca_key.stat().st_mode) == 0o600
    again = certs.ensure_certificates(tmp_path, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    assert again.ca_pem == first.ca_pem
    assert again.cert.read_bytes() == cert_bytes
    more = certs.ensure_certificates(
        tmp_path,
        dns_names=certs.service_dns_names("joch-webhook", "joch-operator"),
        ip_addresses=["127.0.0.1"],
    )
    assert more.ca_pem == first.ca_pem
    dns, ips = _sans(more.cert)
    assert "joch-webhook.joch-operator.svc" in dns
    assert ips == {"127.0.0.1"}


def test_certificates_follow_the_one_renewal_rule(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    # joch.pki.needs_renewal, as the in-cluster Secret source: the 1-year serving certificate is kept
    # while more than a third of it is left (day 200) and reissued by the same CA after (day 250).
    start = datetime.datetime.now(datetime.UTC)
    first = certs.ensure_certificates(tmp_path)
    cert_bytes = first.cert.read_bytes()
    monkeypatch.setattr(certs, "_now", lambda: start + datetime.timedelta(days=200))
    assert certs.ensure_certificates(tmp_path).cert.read_bytes() == cert_bytes
    monkeypatch.setattr(certs, "_now", lambda: start + datetime.timedelta(days=250))
    renewed = certs.ensure_certificates(tmp_path)
    assert renewed.ca_pem == first.ca_pem
    assert renewed.cert.read_bytes() != cert_bytes
    cert = x509.load_pem_x509_certificate(renewed.cert.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(renewed.ca_pem))


def test_broken_files_are_replaced(tmp_path: pathlib.Path) -> None:
    (tmp_path / "ca.crt").write_text("junk")
    (tmp_path / "ca.key").write_text("junk")
    made = certs.ensure_certificates(tmp_path)
    assert b"BEGIN CERTIFICATE" in made.ca_pem
    made.server_context()


# --- rendered configurations --------------------------------------------------------------------------------


def test_rendered_configurations() -> None:
    validating, mutating = rendering.render(
        url="https://127.0.0.1:9443", ca_bundle=b"PEM", operator_namespace="ops"
    )
    assert validating["kind"] == "ValidatingWebhookConfiguration"
    # one per kind, plus the worker-status webhook of Executions and the decision webhook of Approvals
    assert len(validating["webhooks"]) == len(v1alpha1.KINDS) + 2
    status = next(
        h for h in validating["webhooks"] if h["name"] == "validate-status.executions.runtime.joch.dev"
    )
    assert status["rules"][0]["resources"] == ["executions/status"]
    assert status["rules"][0]["operations"] == ["UPDATE"]
    assert status["clientConfig"]["url"].endswith("/validate/runtime.joch.dev/executions/status")
    assert "joch-worker" in status["matchConditions"][0]["expression"]
    decisions = next(
        h for h in validating["webhooks"] if h["name"] == "validate-status.approvals.runtime.joch.dev"
    )
    assert decisions["rules"][0]["resources"] == ["approvals/status"]
    assert decisions["clientConfig"]["url"].endswith("/validate/runtime.joch.dev/approvals/status")
    stamps = {h["name"]: h for h in mutating["webhooks"] if "approvals" in h["name"]}
    assert set(stamps) == {"stamp.approvals.runtime.joch.dev", "stamp-status.approvals.runtime.joch.dev"}
    assert stamps["stamp.approvals.runtime.joch.dev"]["rules"][0]["operations"] == ["CREATE"]
    assert stamps["stamp-status.approvals.runtime.joch.dev"]["rules"][0]["resources"] == ["approvals/status"]
    assert {h["rules"][0]["resources"][0] for h in mutating["webhooks"]} == {
        k.crd.plural for k in v1alpha1.KINDS if k.crd.kind in DEFAULTED_KINDS
    } | {"approvals", "approvals/status"}
    for hook in validating["webhooks"] + mutating["webhooks"]:
        assert hook["failurePolicy"] == "Fail"
        # A blocked promotion creates its Approval (never on a dry run).
        promoting = hook["name"] == "validate.deployments.ops.joch.dev"
        assert hook["sideEffects"] == ("NoneOnDryRun" if promoting else "None")
        assert hook["timeoutSeconds"] <= 5
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["namespaceSelector"]["matchExpressions"][0] == {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "ops"],
        }
        assert hook["clientConfig"]["caBundle"] == "UEVN"
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:9443/")
    agent = next(h for h in validating["webhooks"] if h["name"] == "validate.agents.joch.dev")
    assert agent["clientConfig"]["url"] == "https://127.0.0.1:9443/validate/joch.dev/agents"
    assert agent["rules"][0]["operations"] == ["CREATE", "UPDATE"]


def test_rendered_files_use_service_mode() -> None:
    files = rendering.render_files()
    assert set(files) == {"validating.yaml", "mutating.yaml"}
    hook = files["validating.yaml"]["webhooks"][0]
    assert hook["clientConfig"]["service"]["namespace"] == rendering.DEFAULT_OPERATOR_NAMESPACE
    assert "caBundle" not in hook["clientConfig"]
    yaml.safe_dump(files["mutating.yaml"])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="neither url nor service"),
        pytest.param({"url": "https://x", "service": rendering.ServiceTarget("a", "b")}, id="both"),
        pytest.param({"url": "https://x", "timeout_seconds": 10}, id="timeout over 5"),
    ],
)
def test_render_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"render|timeout"):
        rendering.render(**kwargs)
