"""``joch.webhooks.configure``: the operator's one call, and the server's life under kopf.

| case | expected |
|---|---|
| configure() | kopf's settings.admission.server is joch's server; kopf manages no configurations |
| kopf drives the server (its webhook-server protocol) | it listens, yields url + caBundle, stops on close |
| url mode / service mode | configurations point at 127.0.0.1:<port> / the Service, with the CA bundle |
| an advertised host that is a name | the certificate covers it |
| an external SSLContext (joch.kube.webhook_tls) | served as given, nothing generated |
"""

from __future__ import annotations

import asyncio
import base64
import pathlib
import ssl
import urllib.request

import kopf
import pytest
from cryptography import x509

from joch import webhooks
from joch.domain.admission import Admission
from joch.webhooks import AdmissionServer, WebhookOptions, certs
from joch.webhooks.background import BackgroundServer
from tests.unit.admission import factories as f


def test_configure_sets_kopfs_admission_server(tmp_path: pathlib.Path) -> None:
    settings = kopf.OperatorSettings()
    server = webhooks.configure(
        settings,
        registry=kopf.OperatorRegistry(),
        lookup=f.world(f.fleet()).base,  # type: ignore[arg-type]
        joch_settings=f.SETTINGS,
        cert_dir=tmp_path,
        port=0,
        manage_configurations=False,
    )
    assert settings.admission.server is server
    assert settings.admission.managed is None
    assert server.endpoint.admission.settings is f.SETTINGS


def test_kopf_protocol_serves_until_closed(tmp_path: pathlib.Path) -> None:
    settings = kopf.OperatorSettings()
    server = webhooks.configure(
        settings,
        lookup=f.world(f.fleet()).base,  # type: ignore[arg-type]
        joch_settings=f.SETTINGS,
        cert_dir=tmp_path,
        port=0,
        manage_configurations=False,
    )

    async def drive() -> tuple[dict[str, str], int]:
        configs = server(lambda *a, **k: None)  # type: ignore[arg-type,return-value]
        config = await configs.__anext__()
        assert server.certificates is not None
        context = ssl.create_default_context(cadata=server.certificates.ca_pem.decode())
        url = f"{config['url']}/validate/joch.dev/agents"
        request = urllib.request.Request(url, data=f.review_bytes(f.agent()), method="POST")

        def call() -> int:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return int(response.status)

        status = await asyncio.to_thread(call)
        await configs.aclose()
        return dict(config), status  # type: ignore[arg-type]

    config, status = asyncio.run(drive())
    assert status == 200
    assert config["url"].startswith("https://127.0.0.1:")
    assert base64.b64decode(config["caBundle"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert server.server is not None
    assert server.server._runner is None  # stopped


def test_url_and_service_modes(tmp_path: pathlib.Path) -> None:
    url_mode = WebhookOptions(cert_dir=tmp_path, listen_host="0.0.0.0", port=9443)
    validating, _mutating = url_mode.render(9443, b"PEM")
    hook = validating["webhooks"][0]["clientConfig"]
    assert hook["url"].startswith("https://127.0.0.1:9443/validate/")
    assert base64.b64decode(hook["caBundle"]) == b"PEM"
    service_mode = WebhookOptions(
        cert_dir=tmp_path, mode="service", operator_namespace="ops", service_name="hooks"
    )
    validating, _ = service_mode.render(9443, b"PEM")
    service = validating["webhooks"][0]["clientConfig"]["service"]
    assert service == {"namespace": "ops", "name": "hooks", "path": service["path"], "port": 443}
    assert "ops" in validating["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"]


def test_certificate_covers_an_advertised_name(tmp_path: pathlib.Path) -> None:
    options = WebhookOptions(cert_dir=tmp_path, advertise_host="host.docker.internal", port=0)
    server = AdmissionServer(webhooks.AdmissionEndpoint(Admission(f.SETTINGS), None), options)
    certificates = server._certificates()
    cert = x509.load_pem_x509_certificate(certificates.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "host.docker.internal" in names.get_values_for_type(x509.DNSName)
    assert "joch-webhook.joch-operator.svc" in names.get_values_for_type(x509.DNSName)


def test_an_external_tls_context(tmp_path: pathlib.Path) -> None:
    """In a cluster joch.kube.webhook_tls keeps the certificate: its SSLContext is served as given."""
    external = certs.ensure_certificates(tmp_path / "external")
    settings = kopf.OperatorSettings()
    server = webhooks.configure(
        settings,
        lookup=f.world(f.fleet()).base,  # type: ignore[arg-type]
        joch_settings=f.SETTINGS,
        cert_dir=tmp_path / "unused",
        port=0,
        manage_configurations=False,
        ssl_context=external.server_context(),
    )
    with BackgroundServer(server) as running:
        context = ssl.create_default_context(cadata=external.ca_pem.decode())
        request = urllib.request.Request(
            running.url + "/validate/joch.dev/agents", data=f.review_bytes(f.agent()), method="POST"
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.status == 200
    assert server.certificates is None
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="ca_bundle"):
        webhooks.configure(
            settings,
            lookup=None,  # type: ignore[arg-type]
            joch_settings=f.SETTINGS,
            cert_dir=tmp_path,
            ssl_context=external.server_context(),
        )
