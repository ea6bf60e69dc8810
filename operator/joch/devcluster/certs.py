"""Certificates and keys for the dev/test control plane.

Everything is generated locally with ``cryptography``: a throw-away CA, a serving certificate for
kube-apiserver, an admin client certificate (group ``system:masters``), client certificates for the
cluster components (kube-scheduler under its bootstrap RBAC identity; kube-controller-manager and kwok
in ``system:masters``) and the service-account RSA key pair. The files are written as PEM into a
state directory; private keys are created mode 0600.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from joch import pki

__all__ = [
    "ADMIN_COMMON_NAME",
    "ADMIN_GROUP",
    "COMPONENT_IDENTITIES",
    "SERVING_DNS_NAMES",
    "SERVING_IP_ADDRESSES",
    "CertificateAuthority",
    "ControlPlaneCerts",
    "ensure_certs",
    "generate_certs",
    "issue_certificate",
    "new_ca",
]

ADMIN_COMMON_NAME = "joch-admin"
ADMIN_GROUP = "system:masters"
SERVING_DNS_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
)
SERVING_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1",)
COMPONENT_IDENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    # component: (user, groups). The controller-manager runs every controller with its own credentials
    # (no per-controller service accounts, whose tokens it would fetch one by one: a 9 s start instead
    # of 3 s), so it needs every right; the scheduler's user is bound by the bootstrap RBAC policy.
    "kube-controller-manager": ("system:kube-controller-manager", (ADMIN_GROUP,)),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kwok": ("joch-dev:kwok", (ADMIN_GROUP,)),
}

_VALIDITY = datetime.timedelta(days=365)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertificateAuthority(pki.Authority):
    """A CA certificate with its private key, able to sign leaf certificates."""


@dataclass(frozen=True)
class ControlPlaneCerts:
    """Paths of the PEM files in a control plane's state directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    def component_cert(self, component: str) -> Path:
        return self.directory / f"{component}.crt"

    def component_key(self, component: str) -> Path:
        return self.directory / f"{component}.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def all_paths(self) -> tuple[Path, ...]:
        return (
            self.ca_cert,
            self.ca_key,
            self.serving_cert,
            self.serving_key,
            self.admin_cert,
            self.admin_key,
            self.service_account_key,
            self.service_account_pub,
            *(self.component_cert(name) for name in COMPONENT_IDENTITIES),
            *(self.component_key(name) for name in COMPONENT_IDENTITIES),
        )

    def exist(self) -> bool:
        return all(path.is_file() for path in self.all_paths())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_ca(common_name: str = "joch-dev-ca", *, now: datetime.datetime | None = None) -> CertificateAuthority:
    """Create a self-signed CA (ECDSA P-256) valid for one year."""
    authority = pki.new_ca(common_name, now=now or _now(), validity=_VALIDITY)
    return CertificateAuthority(certificate=authority.certificate, key=authority.key)


def issue_certificate(
    ca: CertificateAuthority,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
    now: datetime.datetime | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Issue a leaf certificate (ECDSA P-256) signed by ``ca``.

    ``server`` adds the serverAuth extended key usage, ``client`` adds clientAuth. The subject
    alternative names are ``dns_names`` and ``ip_addresses``.
    """
    return pki.new_leaf(
        ca,
        common_name=common_name,
        organizations=organizations,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        server=server,
        client=client,
        now=now or _now(),
        validity=_VALIDITY,
        key_usage=True,
        within_ca=False,
        empty_san=False,
        authority_key_id_from_ski=True,
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def generate_certs(directory: Path) -> ControlPlaneCerts:
    """Generate a fresh set of control plane certificates and keys into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = ControlPlaneCerts(directory)
    ca = new_ca()
    serving_cert, serving_key = issue_certificate(
        ca,
        "kube-apiserver",
        dns_names=SERVING_DNS_NAMES,
        ip_addresses=SERVING_IP_ADDRESSES,
        server=True,
    )
    admin_cert, admin_key = issue_certificate(
        ca, ADMIN_COMMON_NAME, organizations=(ADMIN_GROUP,), client=True
    )
    sa_key = pki.new_rsa_key(2048)
    sa_pub = pki.public_key_pem(sa_key)

    _write(paths.ca_key, pki.key_pem(ca.key), private=True)
    _write(paths.ca_cert, ca.cert_pem)
    _write(paths.serving_key, pki.key_pem(serving_key), private=True)
    _write(paths.serving_cert, pki.cert_pem(serving_cert))
    _write(paths.admin_key, pki.key_pem(admin_key), private=True)
    _write(paths.admin_cert, pki.cert_pem(admin_cert))
    _write(paths.service_account_key, pki.key_pem(sa_key), private=True)
    _write(paths.service_account_pub, sa_pub)
    for component, (user, groups) in COMPONENT_IDENTITIES.items():
        cert, key = issue_certificate(ca, user, organizations=groups, client=True)
        _write(paths.component_key(component), pki.key_pem(key), private=True)
        _write(paths.component_cert(component), pki.cert_pem(cert))
    return paths


def ensure_certs(
    directory: Path, *, min_remaining: datetime.timedelta = datetime.timedelta(days=1)
) -> ControlPlaneCerts:
    """Reuse the certificates in ``directory`` if complete and not about to expire, else regenerate."""
    paths = ControlPlaneCerts(directory)
    if paths.exist():
        try:
            certs = [
                x509.load_pem_x509_certificate(path.read_bytes())
                for path in (
                    paths.ca_cert,
                    paths.serving_cert,
                    paths.admin_cert,
                    *(paths.component_cert(name) for name in COMPONENT_IDENTITIES),
                )
            ]
        except ValueError:
            return generate_certs(directory)
        if all(cert.not_valid_after_utc - _now() > min_remaining for cert in certs):
            return paths
    return generate_certs(directory)
