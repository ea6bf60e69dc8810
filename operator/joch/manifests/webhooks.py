"""Render the ValidatingWebhookConfiguration and MutatingWebhookConfiguration of joch (pure dicts).

    validating, mutating = render(service=ServiceTarget("joch-operator", "joch-webhook"))   # in-cluster
    validating, mutating = render(url="https://127.0.0.1:9443", ca_bundle=ca_pem)            # local dev

One webhook per kind, so the API server's message names it (``admission webhook
"validate.agents.joch.dev" denied the request: ...``) and each kind has its own path on the server:
``/validate/<group>/<plural>`` and ``/mutate/<group>/<plural>``. Every joch kind is validated; only
the kinds with dynamic defaults (joch.domain.admission.DEFAULTED_KINDS) are mutated.

Settings every webhook carries (docs/admission.md, "Webhook configuration"):

- ``failurePolicy: Fail``: no admission means no write (fail closed);
- ``sideEffects: None``: the checks are pure, so dry-run requests are safe to send;
- ``timeoutSeconds: 5`` (at most 5), ``admissionReviewVersions: [v1]``, ``matchPolicy: Equivalent``;
- a ``namespaceSelector`` exempting kube-system and the operator's own namespace (cluster-scoped kinds
  are always matched: namespace selectors do not apply to them);
- ``matchConditions``: an UPDATE that leaves the spec (and, for validation, the labels) unchanged is
  not sent at all. These are kopf's annotation/finalizer patches and controllers' metadata writes: the
  webhook would admit them unchanged anyway (joch.domain.admission.review), so they skip the round trip.
  The mutating webhook is also skipped when the fields it defaults are all set
  (joch.domain.admission.NEEDS_DEFAULTS).

``ca_bundle`` (PEM) is base64-encoded into every clientConfig; without it the API server's default trust
roots are used, which is how the files under webhooks/ are rendered (the operator patches the bundle in
at start-up; see joch.webhooks.configurations).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from typing import Any, Final

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.domain.admission import DEFAULTED_KINDS, NEEDS_DEFAULTS

__all__ = [
    "DEFAULT_OPERATOR_NAMESPACE",
    "MUTATING_NAME",
    "VALIDATING_NAME",
    "ServiceTarget",
    "mutating_path",
    "render",
    "render_files",
    "validating_path",
]

VALIDATING_NAME: Final = "joch-validating"
MUTATING_NAME: Final = "joch-mutating"
DEFAULT_OPERATOR_NAMESPACE: Final = "joch-operator"
"""The operator's namespace in the rendered files. It is exempt from admission, so it must not be a
shared namespace (default joch-shared), or shared Policies would go unchecked."""
TIMEOUT_SECONDS: Final = 5
ADMISSION: Final = "admissionregistration.k8s.io/v1"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "joch", "app.kubernetes.io/part-of": "joch"}

_CHANGED_SPEC: Final = (
    "request.operation != 'UPDATE' || !has(object.spec) || !has(oldObject.spec) "
    "|| object.spec != oldObject.spec"
)
_CHANGED_LABELS: Final = (
    "request.operation != 'UPDATE' "
    "|| has(object.metadata.labels) != has(oldObject.metadata.labels) "
    "|| (has(object.metadata.labels) && object.metadata.labels != oldObject.metadata.labels)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceTarget:
    """An in-cluster Service in front of the operator's webhook server."""

    namespace: str
    name: str
    port: int = 443


def validating_path(model: type[meta.Resource]) -> str:
    return f"/validate/{model.crd.group}/{model.crd.plural}"


def mutating_path(model: type[meta.Resource]) -> str:
    return f"/mutate/{model.crd.group}/{model.crd.plural}"


def _client(
    path: str, url: str | None, service: ServiceTarget | None, ca_bundle: str | None
) -> dict[str, Any]:
    config: dict[str, Any]
    if url is not None:
        config = {"url": url.rstrip("/") + path}
    elif service is not None:
        config = {
            "service": {
                "namespace": service.namespace,
                "name": service.name,
                "path": path,
                "port": service.port,
            }
        }
    else:
        raise ValueError("render() needs either url or service")
    if ca_bundle is not None:
        config["caBundle"] = ca_bundle
    return config


def _webhook(
    model: type[meta.Resource],
    *,
    verb: str,
    client: dict[str, Any],
    exempt: list[str],
    conditions: list[dict[str, str]],
    timeout_seconds: int,
) -> dict[str, Any]:
    crd = model.crd
    webhook: dict[str, Any] = {
        "name": f"{verb}.{crd.plural}.{crd.group}",
        "clientConfig": client,
        "rules": [
            {
                "apiGroups": [crd.group],
                "apiVersions": [meta.VERSION],
                "resources": [crd.plural],
                "operations": ["CREATE", "UPDATE"],
                "scope": crd.scope,
            }
        ],
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": timeout_seconds,
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exempt}
            ]
        },
        "matchConditions": conditions,
    }
    return webhook


def render(
    kinds: Iterable[type[meta.Resource]] = v1alpha1.KINDS,
    *,
    url: str | None = None,
    service: ServiceTarget | None = None,
    ca_bundle: bytes | str | None = None,
    operator_namespace: str = DEFAULT_OPERATOR_NAMESPACE,
    timeout_seconds: int = TIMEOUT_SECONDS,
    validating_name: str = VALIDATING_NAME,
    mutating_name: str = MUTATING_NAME,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ValidatingWebhookConfiguration, MutatingWebhookConfiguration) for ``kinds``.

    Exactly one of ``url`` (``https://127.0.0.1:9443``: the server's base URL) and ``service`` is given.
    ``ca_bundle`` is PEM bytes/text (base64-encoded here) or None to leave caBundle out.
    """
    if (url is None) == (service is None):
        raise ValueError("render() needs exactly one of url and service")
    if not 1 <= timeout_seconds <= TIMEOUT_SECONDS:
        raise ValueError(f"timeout_seconds must be 1..{TIMEOUT_SECONDS}, not {timeout_seconds}")
    bundle: str | None = None
    if ca_bundle is not None:
        pem = ca_bundle.encode() if isinstance(ca_bundle, str) else ca_bundle
        bundle = base64.b64encode(pem).decode("ascii")
    exempt = sorted({"kube-system", operator_namespace})
    validate_when = [
        {"name": "spec-or-labels-changed", "expression": f"({_CHANGED_SPEC}) || ({_CHANGED_LABELS})"}
    ]
    models = list(kinds)
    validating_hooks = [
        _webhook(
            model,
            verb="validate",
            client=_client(validating_path(model), url, service, bundle),
            exempt=exempt,
            conditions=validate_when,
            timeout_seconds=timeout_seconds,
        )
        for model in models
    ]
    mutating_hooks = [
        {
            **_webhook(
                model,
                verb="default",
                client=_client(mutating_path(model), url, service, bundle),
                exempt=exempt,
                conditions=[
                    {"name": "spec-changed", "expression": _CHANGED_SPEC},
                    {"name": "needs-defaults", "expression": NEEDS_DEFAULTS[model.crd.kind]},
                ],
                timeout_seconds=timeout_seconds,
            ),
            "reinvocationPolicy": "Never",
        }
        for model in models
        if model.crd.kind in DEFAULTED_KINDS
    ]
    for model in models:
        if model.crd.kind == "Deployment":
            # A blocked promotion creates the Approval it waits for (never on a dry run).
            for hook in validating_hooks:
                if hook["name"] == f"validate.{model.crd.plural}.{model.crd.group}":
                    hook["sideEffects"] = "NoneOnDryRun"
        if model.crd.kind == "Approval":
            validating_hooks.append(
                _status_hook(
                    model,
                    verb="validate-status",
                    path=f"{validating_path(model)}/status",
                    url=url,
                    service=service,
                    bundle=bundle,
                    exempt=exempt,
                    timeout_seconds=timeout_seconds,
                )
            )
            mutating_hooks.append(
                {
                    **_status_hook(
                        model,
                        verb="stamp-status",
                        path=f"{mutating_path(model)}/status",
                        url=url,
                        service=service,
                        bundle=bundle,
                        exempt=exempt,
                        timeout_seconds=timeout_seconds,
                    ),
                    "reinvocationPolicy": "Never",
                }
            )
            stamp = _webhook(
                model,
                verb="stamp",
                client=_client(mutating_path(model), url, service, bundle),
                exempt=exempt,
                conditions=[{"name": "created", "expression": "request.operation == 'CREATE'"}],
                timeout_seconds=timeout_seconds,
            )
            stamp["rules"][0]["operations"] = ["CREATE"]
            mutating_hooks.append({**stamp, "reinvocationPolicy": "Never"})
        if model.crd.kind == "Execution":
            validating_hooks.append(
                _worker_status_hook(
                    model,
                    url=url,
                    service=service,
                    bundle=bundle,
                    exempt=exempt,
                    timeout_seconds=timeout_seconds,
                )
            )
    validating = {
        "apiVersion": ADMISSION,
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": validating_name, "labels": dict(MANAGED_BY)},
        "webhooks": validating_hooks,
    }
    mutating = {
        "apiVersion": ADMISSION,
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": mutating_name, "labels": dict(MANAGED_BY)},
        "webhooks": mutating_hooks,
    }
    return validating, mutating


WORKER_USER_CONDITION: Final = (
    "request.userInfo.username.startsWith('system:serviceaccount:') "
    "&& request.userInfo.username.endsWith(':joch-worker')"
)


def _worker_status_hook(
    model: type[meta.Resource],
    *,
    url: str | None,
    service: ServiceTarget | None,
    bundle: str | None,
    exempt: list[str],
    timeout_seconds: int,
) -> dict[str, Any]:
    """Writes of an Execution's status by a worker (the ServiceAccount joch-worker): only into the
    Execution its own Pod runs, only the fields it reports (joch.domain.admission.executions). Every
    other writer (the operator, administrators) is not sent here at all: RBAC decides for them."""
    hook = _webhook(
        model,
        verb="validate-status",
        client=_client(f"{validating_path(model)}/status", url, service, bundle),
        exempt=exempt,
        conditions=[{"name": "worker-writes", "expression": WORKER_USER_CONDITION}],
        timeout_seconds=timeout_seconds,
    )
    hook["rules"][0]["resources"] = [f"{model.crd.plural}/status"]
    hook["rules"][0]["operations"] = ["UPDATE"]
    return hook


STATUS_CHANGED: Final = "!has(object.status) || !has(oldObject.status) || object.status != oldObject.status"


def _status_hook(
    model: type[meta.Resource],
    *,
    verb: str,
    path: str,
    url: str | None,
    service: ServiceTarget | None,
    bundle: str | None,
    exempt: list[str],
    timeout_seconds: int,
) -> dict[str, Any]:
    """Every write of an Approval's status that changes it, by anyone (joch.domain.admission.approvals:
    the server stamps who decided and when; only routed approvers decide, once)."""
    hook = _webhook(
        model,
        verb=verb,
        client=_client(path, url, service, bundle),
        exempt=exempt,
        conditions=[{"name": "status-changed", "expression": STATUS_CHANGED}],
        timeout_seconds=timeout_seconds,
    )
    hook["rules"][0]["resources"] = [f"{model.crd.plural}/status"]
    hook["rules"][0]["operations"] = ["UPDATE"]
    return hook


def render_files(
    kinds: Iterable[type[meta.Resource]] = v1alpha1.KINDS,
    *,
    service: ServiceTarget | None = None,
    operator_namespace: str = DEFAULT_OPERATOR_NAMESPACE,
) -> dict[str, dict[str, Any]]:
    """The files of webhooks/ (service mode, no caBundle): file name -> configuration."""
    target = service or ServiceTarget(operator_namespace, "joch-webhook")
    validating, mutating = render(kinds, service=target, operator_namespace=operator_namespace)
    return {"validating.yaml": validating, "mutating.yaml": mutating}
