"""Webhook serving TLS (joch.kube.webhook_tls): the rotation plan, the Secret + caBundle sync against the
in-memory API server (tests/fake_kube.py), and hot reload of the SSLContext over real TLS handshakes on
loopback.

| plan case                        | expected                                             |
|----------------------------------|------------------------------------------------------|
| empty / garbage Secret           | new CA + certificate                                 |
| fresh and covering               | None (no write)                                      |
| certificate in its last third    | new certificate, same CA                             |
| CA in its last third             | new CA first in the bundle, the old one kept         |
| a host name missing              | new certificate                                      |
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from typing import Any

import pytest
from cryptography import x509

from joch.kube import errors, webhook_tls
from tests.fake_kube import FakeKube

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
CONFIG = webhook_tls.ServingConfig.for_service("joch-webhook.joch-system.svc", ip_addresses=("127.0.0.1",))


def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def test_plan_issues_from_nothing_and_keeps_a_good_bundle() -> None:
    bundle = webhook_tls.plan(None, config=CONFIG, now=NOW)
    assert bundle is not None
    cert = x509.load_pem_x509_certificate(bundle.cert)
    cert.verify_directly_issued_by(_certs(bundle.ca)[0])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(CONFIG.dns_names) <= set(names.get_values_for_type(x509.DNSName))
    assert webhook_tls.plan(bundle, config=CONFIG, now=NOW) is None
    assert webhook_tls.Bundle.from_data(bundle.to_data()) == bundle


def test_plan_rotates_the_certificate_in_its_last_third() -> None:
    bundle = webhook_tls.plan(None, config=CONFIG, now=NOW)
    assert bundle is not None
    assert webhook_tls.plan(bundle, config=CONFIG, now=NOW + datetime.timedelta(days=200)) is None
    renewed = webhook_tls.plan(bundle, config=CONFIG, now=NOW + datetime.timedelta(days=250))
    assert renewed is not None
    assert renewed.ca == bundle.ca
    assert renewed.cert != bundle.cert


def test_plan_rotates_the_ca_and_keeps_the_old_one_trusted() -> None:
    bundle = webhook_tls.plan(None, config=CONFIG, now=NOW)
    assert bundle is not None
    later = NOW + datetime.timedelta(days=2500)
    renewed = webhook_tls.plan(bundle, config=CONFIG, now=later)
    assert renewed is not None
    cas = _certs(renewed.ca)
    assert len(cas) == 2
    assert cas[1] == _certs(bundle.ca)[0]
    x509.load_pem_x509_certificate(renewed.cert).verify_directly_issued_by(cas[0])


def test_plan_reissues_when_a_name_is_missing_or_data_is_garbage() -> None:
    bundle = webhook_tls.plan(None, config=CONFIG, now=NOW)
    assert bundle is not None
    wider = webhook_tls.ServingConfig(
        dns_names=(*CONFIG.dns_names, "joch.example"), ip_addresses=("127.0.0.1",)
    )
    reissued = webhook_tls.plan(bundle, config=wider, now=NOW)
    assert reissued is not None
    assert reissued.ca == bundle.ca
    garbage = webhook_tls.Bundle(cert=b"x", key=b"y", ca=b"z", ca_key=b"w")
    assert webhook_tls.plan(garbage, config=CONFIG, now=NOW) is not None
    assert webhook_tls.Bundle.from_data({"tls.crt": ""}) is None


def test_the_certificate_also_names_the_api_service() -> None:
    """--api-service: the /v1 API is served with the same certificate, so its Service's names are on it;
    a Secret issued before (webhook names only) is reissued under the same CA."""
    both = webhook_tls.ServingConfig.for_service(
        "joch-webhook.joch-system.svc", also=("joch-api.joch-system.svc",), ip_addresses=("127.0.0.1",)
    )
    assert both.dns_names == (
        *CONFIG.dns_names,
        "joch-api",
        "joch-api.joch-system",
        "joch-api.joch-system.svc",
        "joch-api.joch-system.svc.cluster.local",
    )
    old = webhook_tls.plan(None, config=CONFIG, now=NOW)
    assert old is not None
    reissued = webhook_tls.plan(old, config=both, now=NOW)
    assert reissued is not None
    assert reissued.ca == old.ca
    cert = x509.load_pem_x509_certificate(reissued.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "joch-api.joch-system.svc" in names.get_values_for_type(x509.DNSName)
    assert webhook_tls.plan(reissued, config=both, now=NOW) is None


SECRET = "/api/v1/namespaces/joch-system/secrets/joch-webhook-tls"
CONFIGURATIONS = tuple(
    f"/apis/admissionregistration.k8s.io/v1/{plural}/joch"
    for plural in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")
)


def cluster(*, secret_exists: bool = True) -> FakeKube:
    """The in-memory API server with what the chart installs: the (empty) Secret, the two webhook
    configurations; the operator may not create Secrets."""
    kube = FakeKube()
    if secret_exists:
        kube.put("", "secrets", {"metadata": {"name": "joch-webhook-tls", "namespace": "joch-system"}})
    hooks = [{"name": "validate.agents.joch.dev", "clientConfig": {"service": {}}}]
    for plural in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        kube.put("admissionregistration.k8s.io", plural, {"metadata": {"name": "joch"}, "webhooks": hooks})
    kube.forbidden.add("POST /api/v1/namespaces/joch-system/secrets")
    return kube


def _manager(kube: FakeKube) -> webhook_tls.SecretTLS:
    return webhook_tls.SecretTLS(
        kube,  # type: ignore[arg-type]
        secret_namespace="joch-system",
        secret_name="joch-webhook-tls",
        config=CONFIG,
        configuration="joch",
        clock=lambda: NOW,
    )


def test_secret_sync_fills_the_secret_and_patches_both_configurations_once() -> None:
    kube = cluster()
    manager = _manager(kube)
    bundle = asyncio.run(manager.sync())
    secret = kube.at(SECRET)
    assert webhook_tls.Bundle.from_data(secret["data"]) == bundle
    assert len(kube.patches) == 2
    assert all(ct == webhook_tls.STRATEGIC_MERGE_PATCH for _, _, ct in kube.patches)
    encoded = base64.b64encode(bundle.ca).decode()
    for path in CONFIGURATIONS:
        hook = kube.at(path)["webhooks"][0]
        assert hook["clientConfig"]["caBundle"] == encoded
        assert hook["name"] == "validate.agents.joch.dev"
    # A second replica (or the next round) finds everything current: no writes.
    writes = len(kube.writes())
    again = asyncio.run(_manager(kube).sync())
    assert again == bundle
    assert len(kube.writes()) == writes
    assert len(kube.patches) == 2
    assert manager.ready


def test_missing_secret_without_create_permission_says_what_to_do() -> None:
    with pytest.raises(errors.Forbidden, match="install the Helm chart"):
        asyncio.run(_manager(cluster(secret_exists=False)).sync())


def _handshake(port: int, ca: bytes) -> bytes:
    import socket

    client = ssl.create_default_context(cadata=ca.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def test_context_reloads_in_place_for_new_connections() -> None:
    now = datetime.datetime.now(datetime.UTC)
    first = webhook_tls.plan(None, config=CONFIG, now=now)
    assert first is not None
    wider = webhook_tls.ServingConfig(
        dns_names=(*CONFIG.dns_names, "joch.example"), ip_addresses=("127.0.0.1",)
    )
    second = webhook_tls.plan(first, config=wider, now=now)  # a re-issue under the same CA
    assert second is not None
    assert second.ca == first.ca
    serving = webhook_tls.DirectoryTLS("/nonexistent")
    serving.load(first.cert, first.key)

    async def scenario() -> tuple[bytes, bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=serving.context)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        try:
            before = await loop.run_in_executor(None, _handshake, port, first.ca)
            assert serving.load(second.cert, second.key)
            after = await loop.run_in_executor(None, _handshake, port, first.ca)
        finally:
            server.close()
            await server.wait_closed()
        return before, after

    before, after = asyncio.run(scenario())
    assert x509.load_der_x509_certificate(before).public_bytes(serialization_pem()) == first.cert
    assert x509.load_der_x509_certificate(after).public_bytes(serialization_pem()) == second.cert


def serialization_pem() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM
