"""The local OIDC issuer (joch.devcluster.oidc) and the audit policy (joch.manifests.audit): token shape,
signatures checked with the published keys, the key kept across calls, the documents served, the rules.
tests/integration/test_oidc.py has kube-apiserver check the same tokens."""

from __future__ import annotations

import base64
import json
import ssl
import stat
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from joch import pki
from joch.api import v1alpha1
from joch.devcluster import cluster, ensure_certs, oidc
from joch.manifests import audit, files

ISSUER = "https://127.0.0.1:4443"


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, payload, signature = token.split(".")
    return (
        json.loads(_b64decode(header)),
        json.loads(_b64decode(payload)),
        _b64decode(signature),
        f"{header}.{payload}".encode("ascii"),
    )


def _public_key(jwk: dict[str, str]) -> rsa.RSAPublicKey:
    n = int.from_bytes(_b64decode(jwk["n"]), "big")
    e = int.from_bytes(_b64decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def test_a_token_has_the_rs256_header_and_the_claims(tmp_path: Path) -> None:
    token = oidc.mint(
        tmp_path, "alice", ["team-a", "team-b"], issuer=ISSUER, now=1_700_000_000, ttl_seconds=600
    )
    header, payload, _, _ = _parts(token)
    key = oidc.ensure_signing_key(tmp_path)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": oidc.key_id(key.public_key())}
    assert payload == {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "joch",
        "groups": ["team-a", "team-b"],
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "exp": 1_700_000_600,
    }


def test_the_signature_verifies_with_the_published_key(tmp_path: Path) -> None:
    token = oidc.mint(tmp_path, "alice", ["team-a"], issuer=ISSUER, audience="other")
    header, payload, signature, signed = _parts(token)
    (jwk,) = oidc.jwks(tmp_path)["keys"]
    assert jwk["kid"] == header["kid"]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    public = _public_key(jwk)
    assert public.key_size == 2048
    public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())  # raises if it does not verify
    assert payload["aud"] == "other"


def test_a_token_signed_by_another_key_does_not_verify_with_the_published_key(tmp_path: Path) -> None:
    from cryptography.exceptions import InvalidSignature

    other = pki.new_rsa_key(2048)
    token = oidc.mint(tmp_path, "mallory", [], issuer=ISSUER, key=other)
    header, _, signature, signed = _parts(token)
    (jwk,) = oidc.jwks(tmp_path)["keys"]
    assert header["kid"] != jwk["kid"]
    with pytest.raises(InvalidSignature):
        _public_key(jwk).verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())


def test_the_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = oidc.ensure_signing_key(tmp_path)
    path = oidc.signing_key_path(tmp_path)
    assert path == tmp_path / "pki" / "oidc-signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    kids = {_parts(oidc.mint(tmp_path, "u", [], issuer=ISSUER))[0]["kid"] for _ in range(3)}
    assert kids == {oidc.key_id(first.public_key())}
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["oidc-signing.key"]  # no temporary file left


def test_minting_needs_a_recorded_issuer(tmp_path: Path) -> None:
    with pytest.raises(oidc.OIDCError, match="no OIDC issuer"):
        oidc.mint(tmp_path, "alice", [])
    oidc.write_issuer(tmp_path, ISSUER)
    assert oidc.issuer_url(tmp_path) == ISSUER
    assert _parts(oidc.mint(tmp_path, "alice", []))[1]["iss"] == ISSUER


def test_the_discovery_document_names_the_issuer_keys_and_algorithm() -> None:
    doc = oidc.discovery_document(ISSUER)
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == ISSUER + oidc.JWKS_PATH
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["response_types_supported"]
    assert doc["subject_types_supported"] == ["public"]


def test_the_authentication_configuration_maps_sub_and_groups_without_prefix() -> None:
    config = oidc.authentication_config(ISSUER, "PEM")
    assert (config["apiVersion"], config["kind"]) == (
        "apiserver.config.k8s.io/v1",
        "AuthenticationConfiguration",
    )
    (jwt,) = config["jwt"]
    assert jwt["issuer"] == {"url": ISSUER, "certificateAuthority": "PEM", "audiences": ["joch"]}
    assert jwt["claimMappings"] == {
        "username": {"claim": "sub", "prefix": ""},
        "groups": {"claim": "groups", "prefix": ""},
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    certs = ensure_certs(tmp_path / "pki")
    server = oidc.make_server(tmp_path, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{server.server_address[1]}",
            ssl.create_default_context(cafile=str(certs.ca_cert)),
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_issuer_serves_discovery_and_keys_over_https_trusted_by_the_ca(
    tmp_path: Path, served: tuple[str, ssl.SSLContext]
) -> None:
    issuer, context = served
    with urllib.request.urlopen(issuer + oidc.DISCOVERY_PATH, context=context, timeout=5) as answer:
        doc = json.load(answer)
    assert doc == oidc.discovery_document(issuer)
    with urllib.request.urlopen(doc["jwks_uri"], context=context, timeout=5) as answer:
        assert json.load(answer) == oidc.jwks(tmp_path)
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(issuer + "/nope", context=context, timeout=5)
    missing.value.close()
    assert missing.value.code == 404


# ------------------------------------------------------------------------------------------ audit policy


def _rule_for(policy: dict[str, Any], group: str, resource: str) -> str:
    """The level of the first rule matching a request to ``group``/``resource`` (resource rules only)."""
    for rule in policy["rules"]:
        selectors = rule.get("resources")
        if selectors is None:
            return str(rule["level"])
        for selector in selectors:
            if selector["group"] == group and (
                not selector.get("resources") or resource in selector["resources"]
            ):
                return str(rule["level"])
    raise AssertionError("no rule matched")


def test_the_audit_policy_logs_bodies_of_approvals_deployments_and_policies_with_their_status() -> None:
    policy = audit.render()
    assert (policy["apiVersion"], policy["kind"]) == ("audit.k8s.io/v1", "Policy")
    assert policy["omitStages"] == ["RequestReceived"]
    full = policy["rules"][0]
    assert full["level"] == "RequestResponse"
    assert full["resources"] == [
        {"group": "joch.dev", "resources": ["policies", "policies/status"]},
        {"group": "ops.joch.dev", "resources": ["deployments", "deployments/status"]},
        {"group": "runtime.joch.dev", "resources": ["approvals", "approvals/status"]},
    ]
    assert _rule_for(policy, "runtime.joch.dev", "approvals/status") == "RequestResponse"
    assert _rule_for(policy, "runtime.joch.dev", "executions") == "Metadata"
    assert _rule_for(policy, "ops.joch.dev", "deployments/status") == "RequestResponse"
    assert _rule_for(policy, "joch.dev", "agents/status") == "Metadata"
    assert _rule_for(policy, "", "secrets") == "None"
    assert _rule_for(policy, "apps", "deployments") == "None"
    assert policy["rules"][-1] == {"level": "None"}


def test_the_audit_policy_covers_every_joch_api_group() -> None:
    metadata = audit.render()["rules"][1]
    assert metadata["level"] == "Metadata"
    assert [selector["group"] for selector in metadata["resources"]] == sorted(
        {kind.crd.group for kind in v1alpha1.KINDS}
    )
    assert {"joch.dev", "ops.joch.dev", "runtime.joch.dev"} <= set(audit.groups())


def test_the_chart_ships_the_rendered_policy_and_the_control_plane_uses_it() -> None:
    root = cluster.repo_root()
    assert root is not None
    path = root / cluster.AUDIT_POLICY_SOURCE
    assert path.read_text() == files.dump_yaml(audit.render())
    assert yaml.safe_load(path.read_text()) == audit.render()
