"""The webhook serving certificate: issued, rotated and served without restarts.

Two sources, one interface (``.context``, an :class:`ssl.SSLContext` that is reloaded in place, so a
rotation needs no restart of the HTTPS server, and ``.key_pair``, the same key and certificate as PEM for
the gRPC server, which asks for it on each new connection; ``await .sync()`` once, then ``await .run()``
forever):

:class:`SecretTLS` (``webhook.tls.mode=operator``, the default): the certificate lives in one Secret in the
operator's namespace (``tls.crt``, ``tls.key``, ``ca.crt``, ``ca.key``; the chart creates it empty). Every
replica runs it: it reads the Secret, and when the Secret is empty, unparsable, names the wrong hosts or
nears expiry (:func:`plan`), writes a new one with ``resourceVersion`` (of two replicas racing, one wins,
the other reads the winner's next round). It then patches the CA bundle into the webhook configurations
(strategic merge, by webhook name) where it differs. CA rotation keeps the old CA in ``ca.crt`` until it
expires, so replicas still serving the old certificate stay trusted. RBAC: get/update/patch of that Secret
and of the two configurations, by name (joch.manifests.rbac).

:class:`DirectoryTLS` (modes helm and certManager): ``tls.crt`` and ``tls.key`` in a mounted directory;
reloaded when they change. Someone else keeps the CA bundle current.

The certificate logic (:func:`new_ca`, :func:`issue`, :func:`plan`) is pure: the clock is an argument.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import ipaddress
import logging
import os
import pathlib
import ssl
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Final

from cryptography import exceptions, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from joch import metrics, pki
from joch.kube import client, errors

__all__ = [
    "Bundle",
    "DirectoryTLS",
    "SecretTLS",
    "ServingConfig",
    "issue",
    "new_ca",
    "plan",
]

logger = logging.getLogger("joch.webhook_tls")

STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
_ADMISSION: Final = "/apis/admissionregistration.k8s.io/v1"
_CONFIGURATION_KINDS: Final = ("validatingwebhookconfigurations", "mutatingwebhookconfigurations")
_KEYS: Final = ("tls.crt", "tls.key", "ca.crt", "ca.key")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class ServingConfig:
    """What the certificate must cover and how long it lives."""

    dns_names: tuple[str, ...]
    """Host names of the webhook Service (``<svc>``, ``<svc>.<ns>``, ``<svc>.<ns>.svc``...)."""
    ip_addresses: tuple[str, ...] = ()
    validity: datetime.timedelta = datetime.timedelta(days=365)
    ca_validity: datetime.timedelta = datetime.timedelta(days=3650)
    renew_fraction: float = pki.RENEW_FRACTION
    """Renew when less than this fraction of a certificate's lifetime remains (joch.pki.needs_renewal)."""

    @classmethod
    def for_service(cls, service: str, *, also: Sequence[str] = (), **kwargs: Any) -> ServingConfig:
        """The names of a Service given as ``<name>.<namespace>.svc`` (or ``<name>.<namespace>``), then
        those of the Services in ``also`` (e.g. the /v1 API's, served with the same certificate)."""
        names: list[str] = []
        for each in (service, *also):
            name, namespace = each.split(".")[:2]
            names += [
                name,
                f"{name}.{namespace}",
                f"{name}.{namespace}.svc",
                f"{name}.{namespace}.svc.cluster.local",
            ]
        return cls(dns_names=tuple(dict.fromkeys(names)), **kwargs)


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    """The PEM contents of the serving Secret."""

    cert: bytes
    key: bytes
    ca: bytes
    """The CA bundle: the current CA first, then older CAs still valid."""
    ca_key: bytes

    def to_data(self) -> dict[str, str]:
        values = (self.cert, self.key, self.ca, self.ca_key)
        return {k: base64.b64encode(v).decode() for k, v in zip(_KEYS, values, strict=True)}

    @classmethod
    def from_data(cls, data: dict[str, str] | None) -> Bundle | None:
        """The bundle in a Secret's ``data``; None when a key is missing or empty."""
        if not data or not all(data.get(k) for k in _KEYS):
            return None
        try:
            cert, key, ca, ca_key = (base64.b64decode(data[k]) for k in _KEYS)
        except ValueError:
            return None
        return cls(cert=cert, key=key, ca=ca, ca_key=ca_key)

    def not_after(self) -> datetime.datetime:
        return x509.load_pem_x509_certificate(self.cert).not_valid_after_utc


# --- issuing (pure) -----------------------------------------------------------------------------------


def new_ca(
    *, now: datetime.datetime, validity: datetime.timedelta, name: str = "joch-webhook-ca"
) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    authority = pki.new_ca(name, now=now, validity=validity)
    return authority.cert_pem, pki.key_pem(authority.key)


def issue(
    *,
    ca_cert: bytes,
    ca_key: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> tuple[bytes, bytes]:
    """A serving certificate signed by the CA: (certificate PEM, key PEM)."""
    authority = x509.load_pem_x509_certificate(ca_cert)
    authority_key = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(authority_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    common = dns_names[0] if dns_names else (ip_addresses[0] if ip_addresses else "joch-webhook")
    return pki.issue(
        pki.Authority(certificate=authority, key=authority_key),
        common_name=common[:64],
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        now=now,
        validity=validity,
    )


def _covers(cert: x509.Certificate, config: ServingConfig) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(config.dns_names) <= dns and {str(ipaddress.ip_address(i)) for i in config.ip_addresses} <= ips


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, exceptions.InvalidSignature):
        return False
    return True


def plan(current: Bundle | None, *, config: ServingConfig, now: datetime.datetime) -> Bundle | None:
    """The bundle the Secret should hold; None when ``current`` is fine as it is.

    New CA + certificate when there is nothing usable; a new CA (old one kept in the bundle while valid)
    when the CA nears expiry; a new certificate when it nears expiry, misses a host name, or is not
    signed by the current CA.
    """
    try:
        cas = x509.load_pem_x509_certificates(current.ca) if current else []
        cert = x509.load_pem_x509_certificate(current.cert) if current else None
        if current:
            serialization.load_pem_private_key(current.key, password=None)
            serialization.load_pem_private_key(current.ca_key, password=None)
    except ValueError:
        current, cas, cert = None, [], None
    if current is None or not cas or cert is None:
        ca_cert, ca_key = new_ca(now=now, validity=config.ca_validity)
        return _with_cert(ca_cert, ca_key, ca_cert, config, now)
    authority = cas[0]
    still_valid = [c for c in cas if c.not_valid_after_utc > now]
    if pki.needs_renewal(authority, now, fraction=config.renew_fraction):
        ca_cert, ca_key = new_ca(now=now, validity=config.ca_validity)
        old = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in still_valid)
        return _with_cert(ca_cert, ca_key, ca_cert + old, config, now)
    if (
        pki.needs_renewal(cert, now, fraction=config.renew_fraction)
        or not _covers(cert, config)
        or not _signed_by(cert, authority)
        or len(still_valid) != len(cas)
    ):
        bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in still_valid)
        ca_cert = authority.public_bytes(serialization.Encoding.PEM)
        return _with_cert(ca_cert, current.ca_key, bundle, config, now)
    return None


def _with_cert(
    ca_cert: bytes, ca_key: bytes, bundle: bytes, config: ServingConfig, now: datetime.datetime
) -> Bundle:
    cert, key = issue(
        ca_cert=ca_cert,
        ca_key=ca_key,
        dns_names=config.dns_names,
        ip_addresses=config.ip_addresses,
        now=now,
        validity=config.validity,
    )
    return Bundle(cert=cert, key=key, ca=bundle, ca_key=ca_key)


# --- serving ------------------------------------------------------------------------------------------


class _Reloading:
    """A server-side SSLContext whose certificate is swapped in place (new connections use the new one)."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.loaded: bytes | None = None
        """The certificate PEM in use (None until the first load)."""
        self.key_pair: tuple[bytes, bytes] | None = None
        """(private key PEM, certificate PEM) in use, replaced as one on each load: the gRPC server's
        TLS reads it on new connections (joch.runtime.root), so a rotated certificate is served there too."""
        self._dir = tempfile.mkdtemp(prefix="joch-webhook-tls-")

    @property
    def ready(self) -> bool:
        return self.loaded is not None

    def load(self, cert: bytes, key: bytes) -> bool:
        """Load ``cert`` and ``key`` unless they are the ones in use; True when something changed."""
        if cert == self.loaded:
            return False
        base = pathlib.Path(self._dir)
        cert_file, key_file = base / "tls.crt", base / "tls.key"
        cert_file.write_bytes(cert)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        self.context.load_cert_chain(cert_file, key_file)
        self.key_pair = (key, cert)
        self.loaded = cert
        expiry = x509.load_pem_x509_certificate(cert).not_valid_after_utc
        metrics.set_certificate_expiry(expiry.timestamp())
        logger.info("webhook serving certificate loaded (expires %s)", expiry.isoformat())
        return True


class SecretTLS(_Reloading):
    """Operator-managed TLS (see the module docstring)."""

    def __init__(
        self,
        kube: client.Kube,
        *,
        secret_namespace: str,
        secret_name: str,
        config: ServingConfig,
        configuration: str | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        super().__init__()
        self.kube = kube
        self.secret_namespace = secret_namespace
        self.secret_name = secret_name
        self.config = config
        self.configuration = configuration
        """Name of the Validating and Mutating webhook configurations whose caBundle to keep current."""
        self._clock = clock
        self.bundle: Bundle | None = None

    def _secret_path(self, name: str | None = None) -> str:
        base = f"/api/v1/namespaces/{self.secret_namespace}/secrets"
        return f"{base}/{name}" if name else base

    async def _read(self) -> dict[str, Any] | None:
        try:
            secret: dict[str, Any] = await self.kube.request("GET", self._secret_path(self.secret_name))
        except errors.NotFound:
            return None
        return secret

    async def _write(self, current: dict[str, Any] | None, bundle: Bundle) -> None:
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self.secret_name, "namespace": self.secret_namespace},
                "type": "Opaque",
                "data": bundle.to_data(),
            }
            try:
                await self.kube.request("POST", self._secret_path(), body=body)
            except errors.Forbidden as exc:
                raise errors.Forbidden(
                    f"Secret {self.secret_namespace}/{self.secret_name} does not exist and the operator may "
                    "not create Secrets: install the Helm chart (it creates the Secret) or create it empty",
                    status=exc.status,
                    reason=exc.reason,
                ) from exc
            return
        updated = {**current, "data": {**(current.get("data") or {}), **bundle.to_data()}}
        await self.kube.request("PUT", self._secret_path(self.secret_name), body=updated)

    async def sync(self) -> Bundle:
        """Make the Secret hold a good bundle, load it, and patch the CA bundle; the bundle in use."""
        for _ in range(3):
            current = await self._read()
            bundle = Bundle.from_data((current or {}).get("data"))
            desired = plan(bundle, config=self.config, now=self._clock())
            if desired is None and bundle is not None:
                break
            assert desired is not None
            try:
                await self._write(current, desired)
            except (errors.Conflict, errors.AlreadyExists):
                continue  # another replica wrote first: use its bundle
            logger.info(
                "wrote webhook serving certificate to Secret %s/%s", self.secret_namespace, self.secret_name
            )
            bundle = desired
            break
        else:
            raise errors.Conflict(f"Secret {self.secret_namespace}/{self.secret_name} keeps changing")
        self.bundle = bundle
        self.load(bundle.cert, bundle.key)
        if self.configuration:
            await self.patch_ca_bundle(bundle.ca)
        return bundle

    async def patch_ca_bundle(self, ca: bytes) -> int:
        """Set every webhook's clientConfig.caBundle in both configurations; the number patched."""
        assert self.configuration is not None
        encoded = base64.b64encode(ca).decode()
        patched = 0
        for plural in _CONFIGURATION_KINDS:
            path = f"{_ADMISSION}/{plural}/{self.configuration}"
            try:
                body = await self.kube.request("GET", path)
            except errors.NotFound:
                continue
            hooks = body.get("webhooks") or []
            stale = [h["name"] for h in hooks if (h.get("clientConfig") or {}).get("caBundle") != encoded]
            if not stale:
                continue
            patch = {"webhooks": [{"name": name, "clientConfig": {"caBundle": encoded}} for name in stale]}
            await self.kube.request("PATCH", path, body=patch, content_type=STRATEGIC_MERGE_PATCH)
            patched += 1
            logger.info("patched the CA bundle into %s %s", plural, self.configuration)
        return patched

    async def run(self, interval: float = 60.0) -> None:
        """Call :meth:`sync` every ``interval`` seconds (errors are logged and retried)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except errors.KubeError as exc:
                logger.warning("webhook TLS: %s", exc)


class DirectoryTLS(_Reloading):
    """Certificates from a mounted directory (tls.crt, tls.key), reloaded when they change."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = pathlib.Path(directory)

    async def sync(self) -> bool:
        """Load the files if they changed; True when they were (re)loaded."""
        cert = (self.directory / "tls.crt").read_bytes()
        key = (self.directory / "tls.key").read_bytes()
        return self.load(cert, key)

    async def run(self, interval: float = 10.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except (OSError, ssl.SSLError) as exc:
                logger.warning("webhook TLS from %s: %s", self.directory, exc)
