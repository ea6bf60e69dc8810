"""Synchronous API calls for one-shot commands (``joch apply``), through the official client.

What the operator's asynchronous client (:mod:`joch.kube.client`) does not expose, a one-shot command
needs: every response's Warning headers (admission warnings), untruncated Status messages, server-side
apply with ``dryRun``, and discovery of kinds that are not joch's. :class:`Cluster` answers every call
with an :class:`Answer` (status, body, warnings, error message) instead of raising for HTTP errors;
only an unreachable cluster or an unusable kubeconfig raises :class:`ClusterError`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.kube import client as kube_client
from joch.kube import errors as kube_errors

__all__ = ["APPLY_PATCH", "Answer", "Cluster", "ClusterError", "RestMapping"]

APPLY_PATCH: Final = "application/apply-patch+yaml"
PAGE: Final = 500
_WARNING = re.compile(r'^\s*\d{3}\s+\S+\s+"(?P<text>(?:[^"\\]|\\.)*)"')


class ClusterError(Exception):
    """The cluster cannot be reached or answers in a way that stops the whole apply."""


@dataclasses.dataclass(frozen=True, slots=True)
class RestMapping:
    """Where a kind is served: its collection path and whether it is namespaced."""

    base: str
    plural: str
    namespaced: bool

    def object_path(self, namespace: str | None, name: str) -> str:
        where = f"/namespaces/{quote(namespace, safe='')}" if self.namespaced and namespace else ""
        return f"{self.base}{where}/{self.plural}/{quote(name, safe='')}"


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One API answer: the decoded body (or None), the Warning headers, and an error message if any."""

    status: int
    body: Any
    warnings: tuple[str, ...]
    error: str | None = None


def _warnings(headers: Any) -> tuple[str, ...]:
    if headers is None:
        return ()
    values: list[str] = []
    getlist = getattr(headers, "getlist", None)
    raw = (
        getlist("Warning")
        if callable(getlist)
        else [headers.get("Warning")]
        if headers.get("Warning")
        else []
    )
    for value in raw:
        match = _WARNING.match(value)
        text = match.group("text") if match else value
        values.append(text.replace('\\"', '"').replace("\\\\", "\\"))
    return tuple(values)


def _status_message(status: int, body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if isinstance(body, str) and body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping) and parsed.get("message"):
        return str(parsed["message"])
    text = body if isinstance(body, str) else ""
    return text[:1000] or f"HTTP {status}"


class Cluster:
    """The few API calls ``joch apply`` makes, synchronously, through the official client."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self._discovered: dict[str, dict[str, RestMapping]] = {}

    @classmethod
    def connect(
        cls, kubeconfig: str | None, context: str | None, *, impersonate: str | None = None
    ) -> Cluster:
        """A client from the kubeconfig; ``impersonate``: act as that user (kubectl's ``--as``; the
        kubeconfig's user needs the impersonate verb, and the API server authorizes as that user)."""
        try:
            configuration = kube_client.load_configuration(kubeconfig, context=context)
        except (ConfigException, kube_errors.ConfigError, OSError, TypeError, ValueError) as exc:
            raise ClusterError(f"cannot load the kubeconfig: {exc}") from None
        api = kube_client.new_api_client(configuration, pool_size=4)
        if impersonate:
            api.set_default_header("Impersonate-User", impersonate)
        return cls(api)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Answer:
        """One request; a body is sent as ``content_type`` (default: server-side apply for PATCH, JSON
        otherwise)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or (
                APPLY_PATCH if method == "PATCH" else "application/json"
            )
        try:
            response = self.api.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=60,
            )
        except ApiException as exc:
            if not exc.status:
                raise ClusterError(f"{self.server}: {exc.reason}") from None
            return Answer(exc.status, None, _warnings(exc.headers), _status_message(exc.status, exc.body))
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"cannot reach {self.server}: {exc}") from None
        data = response.data
        return Answer(response.status, json.loads(data) if data else None, _warnings(response.headers))

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """Every item of a collection (following ``continue``); [] when the type is not served."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = {"limit": str(PAGE), **({"continue": token} if token else {})}
            answer = self.call("GET", path, query=query)
            if answer.status == 404:
                return []
            if answer.error is not None:
                raise ClusterError(f"GET {path}: {answer.error}")
            items.extend(answer.body.get("items") or ())
            token = (answer.body.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def mapping(self, api_version: str, kind: str) -> RestMapping | None:
        """The REST mapping of a kind (joch kinds from their CRD info, others from discovery)."""
        model = v1alpha1.kind_for(api_version, kind)
        if model is not None:
            crd = model.crd
            return RestMapping(f"/apis/{crd.group}/{meta.VERSION}", crd.plural, crd.scope == "Namespaced")
        if api_version not in self._discovered:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            answer = self.call("GET", base)
            found: dict[str, RestMapping] = {}
            if answer.error is None and isinstance(answer.body, Mapping):
                for resource in answer.body.get("resources") or ():
                    name = str(resource.get("name") or "")
                    if "/" not in name and resource.get("kind"):
                        found[str(resource["kind"])] = RestMapping(
                            base, name, bool(resource.get("namespaced"))
                        )
            self._discovered[api_version] = found
        return self._discovered[api_version].get(kind)
