"""The kube-apiserver audit policy for joch's API groups (``charts/joch/files/audit-policy.yaml``).

Pure: :func:`render` returns an ``audit.k8s.io/v1`` Policy. kube-apiserver applies the first rule that
matches a request:

1. ``RequestResponse`` (the request and response bodies) for the objects that grant or change what
   agents may do: Approvals (runtime.joch.dev), Deployments (ops.joch.dev) and Policies (joch.dev), each
   with its ``status`` subresource named explicitly (a rule naming a resource alone does not match its
   subresources);
2. ``Metadata`` (who, what, when, the answer; no bodies) for every other request to a joch API group;
3. ``None`` for everything else.

No stage is recorded at RequestReceived: each request is logged once it is answered (ResponseComplete,
or Panic). The local control plane runs kube-apiserver with this file (docs/identity.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta

__all__ = ["FULL_BODY_KINDS", "groups", "render"]

FULL_BODY_KINDS: Final = ("Approval", "Deployment", "Policy")
"""The kinds whose requests are logged with their bodies (RequestResponse)."""


def groups(kinds: Sequence[type[meta.Resource]] = v1alpha1.KINDS) -> list[str]:
    """The API groups of ``kinds``, sorted."""
    return sorted({kind.crd.group for kind in kinds})


def render(kinds: Sequence[type[meta.Resource]] = v1alpha1.KINDS) -> dict[str, Any]:
    """The audit Policy for ``kinds`` (default: every joch kind)."""
    by_kind = {kind.crd.kind: kind.crd for kind in kinds}
    full: dict[str, list[str]] = {}
    for name in FULL_BODY_KINDS:
        crd = by_kind.get(name)
        if crd is not None:
            full.setdefault(crd.group, []).extend([crd.plural, f"{crd.plural}/status"])
    rules: list[dict[str, Any]] = [
        {
            "level": "RequestResponse",
            "resources": [
                {"group": group, "resources": resources} for group, resources in sorted(full.items())
            ],
        },
        {"level": "Metadata", "resources": [{"group": group} for group in groups(kinds)]},
        {"level": "None"},
    ]
    if not full:
        rules.pop(0)
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }
