"""Keys and X.509 certificates for joch's private CAs, made with ``cryptography``: pure, no file I/O.

Shared by the dev control plane (:mod:`joch.devcluster.certs`) and the two webhook TLS sources
(:mod:`joch.webhooks.certs`, :mod:`joch.kube.webhook_tls`). The clock is an argument (``now``, an aware
UTC datetime); every certificate starts :data:`CLOCK_SKEW` before ``now``.

- :func:`new_key` (EC P-256, the key of every CA and leaf), :func:`new_rsa_key`;
- :func:`new_ca`: a self-signed CA (``pathLen=0``; keyCertSign, cRLSign, digitalSignature; SKI);
- :func:`new_leaf` / :func:`issue`: a leaf signed by a CA, with serverAuth and/or clientAuth, DNS and IP
  subject alternative names; as objects or as ``(cert PEM, key PEM)``;
- :func:`key_pem`, :func:`public_key_pem`, :func:`cert_pem`: PEM encoding (PKCS#8, unencrypted);
- :func:`needs_renewal`: the one renewal rule, used by both webhook TLS sources: replace a certificate
  once less than :data:`RENEW_FRACTION` (a third) of its validity remains, or while it is not valid yet.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CLOCK_SKEW",
    "RENEW_FRACTION",
    "Authority",
    "PrivateKey",
    "cert_pem",
    "issue",
    "key_pem",
    "needs_renewal",
    "new_ca",
    "new_key",
    "new_leaf",
    "new_rsa_key",
    "public_key_pem",
]

CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
"""Certificates are valid from this long before ``now``, for clocks slightly behind ours."""

RENEW_FRACTION: Final = 1 / 3
"""Renew a certificate once less than this fraction of its validity remains (a 1-year certificate after
about 243 days, a 10-year CA after about 6.7 years): early enough that a failing renewal is noticed and
retried for months, as cert-manager does by default."""

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def needs_renewal(
    certificate: x509.Certificate, now: datetime.datetime, *, fraction: float = RENEW_FRACTION
) -> bool:
    """Whether ``certificate`` must be replaced at ``now``: it is not valid yet (``now`` before its
    notBefore), or less than ``fraction`` of its validity (notBefore to notAfter) remains. Exactly a
    ``fraction`` left is still fine. Raises ValueError unless 0 < ``fraction`` < 1."""
    if not 0 < fraction < 1:
        raise ValueError(f"the renewal fraction must be between 0 and 1, not {fraction}")
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        return True
    return end - now < (end - start) * fraction


@dataclasses.dataclass(frozen=True)
class Authority:
    """A CA certificate with its private key, able to sign leaf certificates."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.certificate)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def new_rsa_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def key_pem(key: PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: PrivateKey) -> bytes:
    """The public half of ``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(common_name: str, *, now: datetime.datetime, validity: datetime.timedelta) -> Authority:
    """A self-signed CA (ECDSA P-256, SHA-256) valid from ``now - CLOCK_SKEW`` to ``now + validity``."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(certificate=certificate, key=key)


def new_leaf(
    ca: Authority,
    *,
    common_name: str,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    client: bool = False,
    server: bool = True,
    now: datetime.datetime,
    validity: datetime.timedelta,
    key_usage: bool = False,
    within_ca: bool = True,
    empty_san: bool = True,
    authority_key_id_from_ski: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate (ECDSA P-256, SHA-256) signed by ``ca``, with its new private key.

    Subject: an O attribute per ``organizations``, then CN ``common_name``. ``server`` adds the serverAuth
    extended key usage, ``client`` clientAuth (at least one is required). The subject alternative names are
    ``dns_names`` then ``ip_addresses``. Valid from ``now - CLOCK_SKEW`` to ``now + validity``.

    The options keep each caller's certificates as they were: ``key_usage`` adds a critical KeyUsage
    (digitalSignature); ``within_ca`` ends the validity no later than the CA's; ``empty_san`` writes the
    SubjectAlternativeName extension even when there are no names (else it is left out);
    ``authority_key_id_from_ski`` takes the AuthorityKeyIdentifier from the CA's SubjectKeyIdentifier
    extension (which must exist) instead of hashing the CA's public key.
    """
    if not (server or client):
        raise ValueError("a leaf certificate needs server=True, client=True or both")
    key = new_key()
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses)
    not_after = now + validity
    if within_ca:
        not_after = min(not_after, ca.certificate.not_valid_after_utc)
    if authority_key_id_from_ski:
        ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    else:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if key_usage:
        builder = builder.add_extension(_key_usage(ca=False), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans or empty_san:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(authority_key_id, critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def issue(
    ca: Authority,
    *,
    common_name: str,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    client: bool = False,
    server: bool = True,
    now: datetime.datetime,
    validity: datetime.timedelta,
    key_usage: bool = False,
    within_ca: bool = True,
    empty_san: bool = True,
    authority_key_id_from_ski: bool = False,
) -> tuple[bytes, bytes]:
    """:func:`new_leaf` as PEM: (certificate PEM, private key PEM)."""
    certificate, key = new_leaf(
        ca,
        common_name=common_name,
        organizations=organizations,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        client=client,
        server=server,
        now=now,
        validity=validity,
        key_usage=key_usage,
        within_ca=within_ca,
        empty_san=empty_san,
        authority_key_id_from_ski=authority_key_id_from_ski,
    )
    return cert_pem(certificate), key_pem(key)
