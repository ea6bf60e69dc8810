"""kopf's credentials taken from a joch kube client: kopf watches as the same identity joch writes with."""

from __future__ import annotations

import kopf

from joch.kube import client

__all__ = ["connection_info"]


def connection_info(kube: client.Kube) -> kopf.ConnectionInfo:
    """kopf's ConnectionInfo for the server and credentials of ``kube`` (token, client cert or basic)."""
    configuration = kube.configuration
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None)
    if len(parts) == 1:
        token = parts[0]
    elif len(parts) == 2:
        scheme, token = parts
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )
