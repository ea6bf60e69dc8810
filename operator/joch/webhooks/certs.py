"""The webhook server's TLS: a private CA and a serving certificate, generated with ``cryptography``.

The API server calls webhooks over HTTPS only and verifies the certificate against the ``caBundle`` of
the webhook configuration. So the operator keeps its own small CA:

- ``ca.crt`` / ``ca.key``: a self-signed CA (EC P-256, 10 years), the ``caBundle``;
- ``tls.crt`` / ``tls.key``: the serving certificate it signs (EC P-256, 1 year), with every name the
  API server may use: IP 127.0.0.1 (url mode against the local control plane) and the Service's DNS
  names ``<service>.<namespace>.svc`` and ``...svc.cluster.local`` (service mode in a cluster).

:func:`ensure_certificates` reuses what is in the directory while neither the CA nor the serving
certificate needs renewal (:func:`joch.pki.needs_renewal`: valid already, and more than a third of its
validity left) and the serving certificate covers every requested name; otherwise it issues a new
serving certificate (and a new CA when the CA itself is unusable). Private keys are written with mode
0600. kopf's self-signed mode is not used: its oscrypto dependency fails on current OpenSSL.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib
import ssl
from collections.abc import Iterable
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from joch import pki

__all__ = ["Certificates", "ensure_certificates", "service_dns_names"]

CA_VALIDITY: Final = datetime.timedelta(days=3650)
SERVING_VALIDITY: Final = datetime.timedelta(days=365)
CLOCK_SKEW: Final = pki.CLOCK_SKEW
COMMON_NAME: Final = "joch-webhook"


@dataclasses.dataclass(frozen=True, slots=True)
class Certificates:
    """Where the PEM files are, and the CA bundle to put into the webhook configurations."""

    directory: pathlib.Path
    ca_pem: bytes

    @property
    def ca_cert(self) -> pathlib.Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> pathlib.Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> pathlib.Path:
        return self.directory / "tls.crt"

    @property
    def key(self) -> pathlib.Path:
        return self.directory / "tls.key"

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context serving the certificate (TLS 1.2+)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The DNS names the API server uses for a Service-backed webhook."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: pathlib.Path, data: bytes, *, private: bool) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _load(
    directory: pathlib.Path, cert: str, key: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        certificate = x509.load_pem_x509_certificate((directory / cert).read_bytes())
        private = serialization.load_pem_private_key((directory / key).read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        return None
    return certificate, private


def _fresh(certificate: x509.Certificate, now: datetime.datetime) -> bool:
    return not pki.needs_renewal(certificate, now)


def _covers(certificate: x509.Certificate, dns: set[str], ips: set[str]) -> bool:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_dns = set(sans.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return dns <= have_dns and ips <= have_ips


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    authority = pki.new_ca(f"{COMMON_NAME}-ca", now=now, validity=CA_VALIDITY)
    return authority.certificate, authority.key


def _new_serving(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns: list[str],
    ips: list[str],
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki.new_leaf(
        pki.Authority(certificate=ca, key=ca_key),
        common_name=COMMON_NAME,
        dns_names=dns,
        ip_addresses=ips,
        now=now,
        validity=SERVING_VALIDITY,
    )


def ensure_certificates(
    directory: pathlib.Path | str,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1",),
) -> Certificates:
    """Reuse or (re)issue the CA and serving certificate in ``directory``; see the module docstring."""
    folder = pathlib.Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    dns = sorted(set(dns_names))
    ips = sorted({str(ipaddress.ip_address(ip)) for ip in ip_addresses})
    now = _now()
    ca_pair = _load(folder, "ca.crt", "ca.key")
    if ca_pair is None or not _fresh(ca_pair[0], now):
        ca_pair = _new_ca(now)
        _write(folder / "ca.key", pki.key_pem(ca_pair[1]), private=True)
        _write(folder / "ca.crt", pki.cert_pem(ca_pair[0]), private=False)
        serving = None
    else:
        serving = _load(folder, "tls.crt", "tls.key")
    ca, ca_key = ca_pair
    if (
        serving is None
        or not _fresh(serving[0], now)
        or not _covers(serving[0], set(dns), set(ips))
        or not _issued_by(serving[0], ca)
    ):
        certificate, key = _new_serving(ca, ca_key, dns, ips, now)
        _write(folder / "tls.key", pki.key_pem(key), private=True)
        _write(folder / "tls.crt", pki.cert_pem(certificate), private=False)
    return Certificates(folder, pki.cert_pem(ca))
