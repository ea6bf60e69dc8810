"""Keep the live webhook configurations current: server-side apply of both, with the current CA bundle.

The operator calls :func:`apply_configurations` at start-up (and whenever its certificate changes), so
the API server always trusts the certificate the webhook server presents. Server-side apply with one
field manager makes it idempotent: a restart with unchanged settings changes nothing (the API server
answers with the same object). RBAC: ``patch`` (and ``create``, implied by apply) and ``delete`` on
``validatingwebhookconfigurations`` and ``mutatingwebhookconfigurations`` in admissionregistration.k8s.io.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

from joch.kube import client, errors

__all__ = ["FIELD_MANAGER", "apply_configurations", "delete_configurations"]

logger = logging.getLogger("joch.webhooks")

FIELD_MANAGER: Final = "joch-operator"
APPLY_PATCH: Final = "application/apply-patch+yaml"
_BASE: Final = "/apis/admissionregistration.k8s.io/v1"
_PLURALS: Final = {
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
}


def _path(configuration: Mapping[str, Any]) -> str:
    plural = _PLURALS[str(configuration["kind"])]
    return f"{_BASE}/{plural}/{quote(str(configuration['metadata']['name']), safe='')}"


async def apply_configurations(kube: client.Kube, configurations: Iterable[Mapping[str, Any]]) -> None:
    """Create or update each configuration (server-side apply, forced: this operator owns them)."""
    for configuration in configurations:
        await kube.request(
            "PATCH",
            _path(configuration),
            body=dict(configuration),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type=APPLY_PATCH,
        )
        logger.info(
            "applied %s %s (%d webhooks)",
            configuration["kind"],
            configuration["metadata"]["name"],
            len(configuration.get("webhooks") or ()),
        )


async def delete_configurations(kube: client.Kube, configurations: Iterable[Mapping[str, Any]]) -> None:
    """Delete each configuration if it exists (dev and tests: leave nothing behind)."""
    for configuration in configurations:
        try:
            await kube.request("DELETE", _path(configuration))
        except errors.NotFound:
            continue
