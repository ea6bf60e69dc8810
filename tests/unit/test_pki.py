"""The shared certificate helpers (joch.pki): pure, the clock injected.

| case                               | expected                                                   |
|------------------------------------|------------------------------------------------------------|
| new CA                             | self-signed, CA:TRUE pathLen 0, keyCertSign, EC P-256, SKI |
| leaf                               | signed by the CA, AKI = CA's SKI, DNS + IP SANs            |
| server / client / both / neither   | serverAuth / clientAuth / both / ValueError                |
| validity                           | now - 5 min .. now + validity, capped at the CA's end      |
| options                            | KeyUsage, uncapped end, no empty SAN, AKI from the SKI     |
| PEM                                | PKCS#8 keys (EC and RSA), SubjectPublicKeyInfo             |
| renewal rule at its edges          | not yet valid, exactly a third left, a second less, expired |
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from joch import pki

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)
YEAR = datetime.timedelta(days=365)
T = TypeVar("T", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> pki.Authority:
    return pki.new_ca("test-ca", now=NOW, validity=10 * YEAR)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def test_new_ca_is_a_self_signed_p256_ca_valid_from_the_injected_clock(ca: pki.Authority) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test-ca"
    cert.verify_directly_issued_by(cert)
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert usage.value.digital_signature
    assert _ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        ca.key.public_key()
    )
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.not_valid_before_utc == NOW - datetime.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + 10 * YEAR
    assert x509.load_pem_x509_certificate(ca.cert_pem) == cert


def test_issue_signs_a_leaf_with_dns_and_ip_sans(ca: pki.Authority) -> None:
    cert_pem, key_pem = pki.issue(
        ca,
        common_name="svc",
        dns_names=("svc", "svc.ns.svc"),
        ip_addresses=("127.0.0.1", "::1"),
        now=NOW,
        validity=YEAR,
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.issuer == ca.certificate.subject
    assert cert.subject.rfc4514_string() == "CN=svc"
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    sans = _ext(cert, x509.SubjectAlternativeName)
    assert not sans.critical
    assert sans.value.get_values_for_type(x509.DNSName) == ["svc", "svc.ns.svc"]
    assert sans.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.KeyUsage)


@pytest.mark.parametrize(
    ("server", "client", "usages"),
    [
        (True, False, [ExtendedKeyUsageOID.SERVER_AUTH]),
        (False, True, [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (True, True, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_client_and_server_usage(
    ca: pki.Authority, server: bool, client: bool, usages: list[x509.ObjectIdentifier]
) -> None:
    cert, _ = pki.new_leaf(ca, common_name="x", server=server, client=client, now=NOW, validity=YEAR)
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == usages


def test_a_leaf_needs_a_usage(ca: pki.Authority) -> None:
    with pytest.raises(ValueError, match="server=True, client=True or both"):
        pki.issue(ca, common_name="x", server=False, client=False, now=NOW, validity=YEAR)


def test_validity_comes_from_the_injected_clock_and_ends_with_the_ca(ca: pki.Authority) -> None:
    later = NOW + datetime.timedelta(days=100)
    cert, _ = pki.new_leaf(ca, common_name="x", now=later, validity=YEAR)
    assert cert.not_valid_before_utc == later - pki.CLOCK_SKEW
    assert cert.not_valid_after_utc == later + YEAR
    near_end = NOW + 10 * YEAR - datetime.timedelta(days=30)
    capped, _ = pki.new_leaf(ca, common_name="x", now=near_end, validity=YEAR)
    assert capped.not_valid_after_utc == ca.certificate.not_valid_after_utc
    uncapped, _ = pki.new_leaf(ca, common_name="x", now=near_end, validity=YEAR, within_ca=False)
    assert uncapped.not_valid_after_utc == near_end + YEAR


def test_options_for_a_client_certificate(ca: pki.Authority) -> None:
    cert, _ = pki.new_leaf(
        ca,
        common_name="admin",
        organizations=("system:masters",),
        server=False,
        client=True,
        now=NOW,
        validity=YEAR,
        key_usage=True,
        empty_san=False,
        authority_key_id_from_ski=True,
    )
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    kept, _ = pki.new_leaf(ca, common_name="x", now=NOW, validity=YEAR)
    assert list(_ext(kept, x509.SubjectAlternativeName).value) == []


def test_pem_encodings() -> None:
    ec_key = pki.new_key()
    loaded = serialization.load_pem_private_key(pki.key_pem(ec_key), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert pki.key_pem(ec_key).startswith(b"-----BEGIN PRIVATE KEY-----")
    rsa_key = pki.new_rsa_key()
    assert rsa_key.key_size == 2048
    assert rsa_key.public_key().public_numbers().e == 65537
    assert isinstance(
        serialization.load_pem_private_key(pki.key_pem(rsa_key), password=None), rsa.RSAPrivateKey
    )
    assert serialization.load_pem_public_key(pki.public_key_pem(rsa_key)) == rsa_key.public_key()


def test_the_renewal_rule_at_its_edges(ca: pki.Authority) -> None:
    # A 1-year leaf is valid from NOW - 5 min to NOW + 1 year: renew once less than a third remains.
    cert, _ = pki.new_leaf(ca, common_name="leaf", dns_names=["a"], now=NOW, validity=YEAR)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    third = (end - start) / 3
    second = datetime.timedelta(seconds=1)
    assert pki.needs_renewal(cert, start - second)  # not valid yet
    assert not pki.needs_renewal(cert, start)
    assert not pki.needs_renewal(cert, NOW + datetime.timedelta(days=200))
    assert not pki.needs_renewal(cert, end - third)  # exactly a third left: still fine
    assert pki.needs_renewal(cert, end - third + second)
    assert pki.needs_renewal(cert, NOW + datetime.timedelta(days=250))
    assert pki.needs_renewal(cert, end + second)  # expired
    assert not pki.needs_renewal(cert, end - third + second, fraction=0.1)
    assert pki.needs_renewal(ca.certificate, NOW + datetime.timedelta(days=2500))  # the 10-year CA too
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            pki.needs_renewal(cert, NOW, fraction=bad)
