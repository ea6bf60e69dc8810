"""A small OpenID Connect issuer for the local control plane, and the tokens it signs.

kube-apiserver accepts a JWT when it can fetch the issuer's discovery document and signing keys over
HTTPS and the token's signature, issuer, audience and lifetime check out (docs/identity.md). This module
is that issuer for the dev/test control plane:

- the signing key: RSA 2048 in ``<state dir>/pki/oidc-signing.key`` (mode 0600), created once and reused;
  its ``kid`` is the base64url SHA-256 of the public key (SubjectPublicKeyInfo DER);
- :func:`serve` (``python -m joch.devcluster.oidc serve --state-dir DIR --port N``, started by
  ControlPlane before kube-apiserver): HTTPS on 127.0.0.1:N with a serving certificate from the control
  plane CA, answering ``GET /.well-known/openid-configuration`` and ``GET /openid/v1/jwks``;
- :func:`mint`: an RS256 JWT for a user and groups, signed with that key (JWS compact serialisation,
  written here with ``cryptography``);
- :func:`authentication_config`: the AuthenticationConfiguration kube-apiserver reads
  (``--authentication-config``): this issuer, audience ``joch``, ``sub`` -> username, ``groups`` -> groups.

The issuer URL (``https://127.0.0.1:<port>``) is recorded in ``<state dir>/oidc-issuer`` so that a token
minter (``joch dev token``) finds it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import ssl
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from joch import pki
from joch.devcluster.certs import CertificateAuthority, ControlPlaneCerts, issue_certificate

__all__ = [
    "API_VERSION",
    "AUDIENCE",
    "AUTHENTICATION_CONFIG",
    "DISCOVERY_PATH",
    "ISSUER_FILE",
    "JWKS_PATH",
    "OIDCError",
    "authentication_config",
    "discovery_document",
    "ensure_signing_key",
    "issuer_url",
    "jwks",
    "key_id",
    "mint",
    "serve",
    "sign",
    "signing_key_path",
    "write_issuer",
]

API_VERSION: Final = "apiserver.config.k8s.io/v1"
"""The AuthenticationConfiguration version kube-apiserver v1.37 serves (structured authentication
configuration is GA since v1.34)."""
AUDIENCE: Final = "joch"
AUTHENTICATION_CONFIG: Final = "authentication-config.yaml"
ISSUER_FILE: Final = "oidc-issuer"
DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
JWKS_PATH: Final = "/openid/v1/jwks"
LOOPBACK: Final = "127.0.0.1"
_SIGNING_KEY: Final = "oidc-signing.key"
_SERVING_CERT: Final = "oidc-serving.crt"
_SERVING_KEY: Final = "oidc-serving.key"


class OIDCError(RuntimeError):
    """No issuer (or signing key) in a state directory."""


# ------------------------------------------------------------------------------------------------ keys


def signing_key_path(state_dir: Path) -> Path:
    return Path(state_dir) / "pki" / _SIGNING_KEY


def ensure_signing_key(state_dir: Path) -> rsa.RSAPrivateKey:
    """The issuer's RSA key from ``<state dir>/pki/oidc-signing.key``, created (RSA 2048, mode 0600) when
    missing. Safe against a concurrent creator: the key is written to a private temporary file and linked
    into place, and whoever loses the race reads the winner's key."""
    path = signing_key_path(state_dir)
    with contextlib.suppress(FileNotFoundError):
        return _load_rsa(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pki.key_pem(pki.new_rsa_key(2048)))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _load_rsa(path)


def _load_rsa(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise OIDCError(f"{path} is not an RSA private key")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The ``kid`` of a key: base64url (no padding) of the SHA-256 of its SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The public key as a JSON Web Key (RFC 7517)."""
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": key_id(public_key),
        "n": _uint(numbers.n),
        "e": _uint(numbers.e),
    }


def jwks(state_dir: Path) -> dict[str, Any]:
    """The JWKS document: the one signing key of ``state_dir``."""
    return {"keys": [jwk(ensure_signing_key(state_dir).public_key())]}


def discovery_document(issuer: str) -> dict[str, Any]:
    """The OpenID provider metadata, served at ``<issuer>/.well-known/openid-configuration``."""
    return {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "groups"],
    }


# ------------------------------------------------------------------------------------------------ tokens


def sign(claims: Mapping[str, Any], key: rsa.RSAPrivateKey) -> str:
    """``claims`` as an RS256 JWS in compact serialisation (header.payload.signature, base64url)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": key_id(key.public_key())}
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":"), sort_keys=True).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def issuer_url(state_dir: Path) -> str | None:
    """The issuer URL recorded in ``<state dir>/oidc-issuer``, or None."""
    try:
        text = (Path(state_dir) / ISSUER_FILE).read_text().strip()
    except OSError:
        return None
    return text or None


def write_issuer(state_dir: Path, issuer: str) -> None:
    path = Path(state_dir) / ISSUER_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(issuer + "\n")
    tmp.replace(path)


def mint(
    state_dir: Path | str,
    user: str,
    groups: Sequence[str] = (),
    *,
    audience: str = AUDIENCE,
    ttl_seconds: float = 3600,
    issuer: str | None = None,
    now: float | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> str:
    """A JWT for ``user`` (``sub``) in ``groups``, for ``audience``, valid ``ttl_seconds`` from ``now``
    (Unix seconds; default: the current time), signed by the issuer key of ``state_dir`` (created when
    missing) or by ``key``.

    ``issuer`` defaults to the URL recorded in ``<state dir>/oidc-issuer``; OIDCError when there is none.
    """
    state_dir = Path(state_dir)
    if issuer is None:
        issuer = issuer_url(state_dir)
        if issuer is None:
            raise OIDCError(f"no OIDC issuer recorded in {state_dir / ISSUER_FILE}: is the control plane up?")
    if key is None:
        key = ensure_signing_key(state_dir)
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "sub": user,
        "aud": audience,
        "groups": list(groups),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl_seconds),
    }
    return sign(claims, key)


# ------------------------------------------------------------------------------------- kube-apiserver


def authentication_config(
    issuer: str, ca_pem: str, *, audiences: Sequence[str] = (AUDIENCE,)
) -> dict[str, Any]:
    """The AuthenticationConfiguration for kube-apiserver's ``--authentication-config``: one JWT
    authenticator for ``issuer`` (its TLS certificate verified against ``ca_pem``), ``sub`` as the
    username and ``groups`` as the groups, both without a prefix."""
    return {
        "apiVersion": API_VERSION,
        "kind": "AuthenticationConfiguration",
        "jwt": [
            {
                "issuer": {"url": issuer, "certificateAuthority": ca_pem, "audiences": list(audiences)},
                "claimMappings": {
                    "username": {"claim": "sub", "prefix": ""},
                    "groups": {"claim": "groups", "prefix": ""},
                },
            }
        ],
    }


# ------------------------------------------------------------------------------------------------ serve


def _serving_certificate(state_dir: Path) -> tuple[Path, Path]:
    """Issue the issuer's serving certificate (IP SAN 127.0.0.1) from the control plane CA in pki/."""
    certs = ControlPlaneCerts(state_dir / "pki")
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise OIDCError(f"{certs.ca_key} is not an EC private key")
    ca = CertificateAuthority(
        certificate=x509.load_pem_x509_certificate(certs.ca_cert.read_bytes()), key=ca_key
    )
    cert, key = issue_certificate(
        ca,
        "joch-dev-oidc-issuer",
        ip_addresses=(LOOPBACK,),
        server=True,
        now=datetime.datetime.now(datetime.UTC),
    )
    cert_path, key_path = certs.directory / _SERVING_CERT, certs.directory / _SERVING_KEY
    for path, data, mode in ((key_path, pki.key_pem(key), 0o600), (cert_path, pki.cert_pem(cert), 0o644)):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        tmp.replace(path)
    return cert_path, key_path


def _handler(documents: Mapping[str, bytes]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = documents.get(self.path.split("?", 1)[0])
            status = 200 if body is not None else 404
            if body is None:
                body = b'{"error":"not found"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def make_server(state_dir: Path, port: int) -> http.server.ThreadingHTTPServer:
    """The issuer's HTTPS server on 127.0.0.1:``port`` (0: any free port), not started yet."""
    state_dir = Path(state_dir).absolute()
    key = ensure_signing_key(state_dir)
    cert_path, key_path = _serving_certificate(state_dir)
    server = http.server.ThreadingHTTPServer((LOOPBACK, port), _handler({}))
    issuer = f"https://{LOOPBACK}:{server.server_address[1]}"
    documents = {
        DISCOVERY_PATH: json.dumps(discovery_document(issuer)).encode(),
        JWKS_PATH: json.dumps({"keys": [jwk(key.public_key())]}).encode(),
    }
    server.RequestHandlerClass = _handler(documents)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    return server


def serve(state_dir: Path, port: int) -> None:
    """Serve the discovery document and the JWKS on https://127.0.0.1:``port`` until killed."""
    server = make_server(state_dir, port)
    print(f"joch dev OIDC issuer serving on https://{LOOPBACK}:{server.server_address[1]}", flush=True)
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m joch.devcluster.oidc", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve the discovery document and the JWKS over HTTPS")
    serve_parser.add_argument("--state-dir", type=Path, required=True)
    serve_parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.state_dir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
