"""Fixtures for the admission integration tests: joch's webhooks registered with the real API server.

Test modules import the fixture functions (``webhooks_fixture``, ``harness_fixture``); pytest registers
them as ``webhooks`` (module scope) and ``harness`` (per test).

- ``webhooks``: the webhook server in-process (joch.webhooks.background), listening on 127.0.0.1 with a
  generated certificate, and the Validating/Mutating configurations applied in url mode with their CA
  bundle (exactly what the operator does at start-up). They are deleted at teardown, so other test
  modules never meet a webhook whose server is gone.
- :class:`LiveLookup` stands in for the operator's store: a Catalog of every object the operator watches
  (the kinds the compiler reads, plus Evals and Approvals with their status for the promotion gates),
  re-listed from the cluster after each write a test makes (the operator's watches do the same job).
- :class:`Harness` (fixture ``harness``): the test's namespace, unique names for cluster-scoped objects,
  and the two clients every check is exercised through: real kubectl and the Python client.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.team import Team
from joch.domain.admission import WATCHED_KIND_NAMES, Admission, promotion
from joch.domain.compilation import COMPILE_KINDS, Catalog
from joch.domain.settings import OperatorSettings
from joch.kube import client as kube_client
from joch.webhooks import AdmissionEndpoint, AdmissionServer, WebhookOptions
from joch.webhooks.background import BackgroundServer

SETTINGS = OperatorSettings()
OPERATOR_NAMESPACE = "joch-operator-test"
Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


class LiveLookup:
    """A ``Lookup`` + ``agents()`` over the cluster's current objects, refreshed on demand."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.current = Catalog(shared_namespaces=SETTINGS.shared_namespaces)

    def refresh(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        core = client.CoreV1Api(self.api)
        labels = {ns.metadata.name: dict(ns.metadata.labels or {}) for ns in core.list_namespace().items}
        catalog = Catalog(namespace_labels=labels, shared_namespaces=SETTINGS.shared_namespaces)
        for model in (*COMPILE_KINDS, *promotion.GATE_KINDS):
            crd = model.crd
            keep_status = issubclass(model, promotion.GATE_KINDS)
            listed = custom.list_cluster_custom_object(crd.group, meta.VERSION, crd.plural)
            for item in listed.get("items", []):
                body = item if keep_status else {k: v for k, v in item.items() if k != "status"}
                try:
                    catalog.add(model.model_validate(body))
                except ValueError:
                    continue
        self.current = catalog

    def get(self, kind: Any, namespace: str | None, name: str) -> Any:
        return self.current.get(kind, namespace, name)

    def policies_in(self, namespace: str) -> Sequence[Policy]:
        return self.current.policies_in(namespace)

    def team_for_namespace(self, namespace: str) -> Team | None:
        return self.current.team_for_namespace(namespace)

    def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        return self.current.namespace_labels(namespace)

    def agents(self, namespace: str | None = None) -> list[Agent]:
        return self.current.agents(namespace)

    def labelled(self, kind: Any, namespace: str, labels: Mapping[str, str]) -> list[Any]:
        return self.current.labelled(kind, namespace, labels)


@dataclasses.dataclass
class Webhooks:
    server: BackgroundServer
    lookup: LiveLookup
    endpoint: AdmissionEndpoint
    ca_pem: bytes

    @property
    def url(self) -> str:
        return self.server.url


def _wait_until_enforced(kubectl: Kubectl, namespace: str) -> None:
    """The API server picks configurations up asynchronously: wait until a bad Policy is denied."""
    probe = {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "webhook-probe", "namespace": namespace},
        "spec": {"rules": [{"when": {"tool.nme": "x"}, "action": "deny"}]},
    }
    deadline = time.monotonic() + 30
    while True:
        done = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe))
        if done.returncode != 0 and "tool.nme" in done.stderr:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the webhooks never took effect: {done.stdout}{done.stderr}")
        time.sleep(0.3)


def webhooks_fixture(
    crds_installed: list[str],
    kube_api: client.ApiClient,
    kubeconfig: str,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Webhooks]:
    lookup = LiveLookup(kube_api)
    lookup.refresh()
    endpoint = AdmissionEndpoint(Admission(SETTINGS), lookup, known_kinds=WATCHED_KIND_NAMES)
    options = WebhookOptions(
        cert_dir=tmp_path_factory.mktemp("webhook-certs"),
        listen_host="127.0.0.1",
        port=0,
        operator_namespace=OPERATOR_NAMESPACE,
        remove_on_exit=True,
    )
    kube = kube_client.Kube(
        kube_client.new_api_client(kube_client.load_configuration(kubeconfig), pool_size=2)
    )
    server = AdmissionServer(endpoint, options, kube=kube)
    core = client.CoreV1Api(kube_api)
    probe_ns = f"t-webhook-probe-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe_ns)))
    try:
        with BackgroundServer(server) as running:
            _wait_until_enforced(kubectl, probe_ns)
            assert server.certificates is not None
            yield Webhooks(running, lookup, endpoint, server.certificates.ca_pem)
    finally:
        kube.close()
        core.delete_namespace(probe_ns)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a client saw: success, the error message, the warnings."""

    ok: bool
    message: str
    warnings: tuple[str, ...]


class Harness:
    """One test's view: namespace, suffix for cluster-scoped names, kubectl and the Python client."""

    def __init__(
        self, webhooks: Webhooks, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
    ) -> None:
        self.webhooks = webhooks
        self.api = kube_api
        self.kubectl_run = kubectl
        self.namespace = namespace
        self.suffix = uuid.uuid4().hex[:6]
        self.custom = client.CustomObjectsApi(kube_api)

    # --- documents -------------------------------------------------------------------------------------

    def place(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` moved into this test's namespace (namespaced kinds)."""
        out = json.loads(json.dumps(doc))
        model = v1alpha1.kind_named(out["kind"])
        if model is not None and model.crd.scope == "Namespaced":
            out["metadata"]["namespace"] = self.namespace
        out["metadata"].pop("generation", None)
        return out

    def setup(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Create supporting objects (they must be admitted), then refresh the store stand-in."""
        for doc in docs:
            outcome = self.kubectl_apply(doc)
            assert outcome.ok, outcome.message
        self.webhooks.lookup.refresh()

    def label_namespace(self, labels: Mapping[str, str]) -> None:
        client.CoreV1Api(self.api).patch_namespace(self.namespace, {"metadata": {"labels": dict(labels)}})
        self.webhooks.lookup.refresh()

    # --- kubectl ---------------------------------------------------------------------------------------

    def kubectl(self, *args: str, doc: Mapping[str, Any] | None = None) -> Outcome:
        text = yaml.safe_dump(self.place(doc)) if doc is not None else None
        done = self.kubectl_run(*args, input=text)
        warnings = tuple(
            line.removeprefix("Warning: ")
            for line in done.stderr.splitlines()
            if line.startswith("Warning: ")
        )
        errors = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("Warning: "))
        if done.returncode == 0:
            self.webhooks.lookup.refresh()
        return Outcome(done.returncode == 0, errors, warnings)

    def kubectl_apply(self, doc: Mapping[str, Any], *extra: str) -> Outcome:
        return self.kubectl("apply", "-f", "-", *extra, doc=doc)

    # --- the Python client -----------------------------------------------------------------------------

    def py_create(self, doc: Mapping[str, Any], *, dry_run: bool = False) -> Outcome:
        """Create through kubernetes.client (CustomObjectsApi); warnings come from the raw response."""
        placed = self.place(doc)
        model = v1alpha1.kind_named(placed["kind"])
        assert model is not None
        crd = model.crd
        kwargs: dict[str, Any] = {"_preload_content": False}
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            if crd.scope == "Namespaced":
                response = self.custom.create_namespaced_custom_object(
                    crd.group, meta.VERSION, self.namespace, crd.plural, placed, **kwargs
                )
            else:
                response = self.custom.create_cluster_custom_object(
                    crd.group, meta.VERSION, crd.plural, placed, **kwargs
                )
        except ApiException as exc:
            body = json.loads(exc.body) if exc.body else {}
            return Outcome(False, f"{exc.status} {body.get('reason', '')}: {body.get('message', '')}", ())
        warnings = tuple(response.headers.getlist("Warning")) if hasattr(response.headers, "getlist") else ()
        if not dry_run:
            self.webhooks.lookup.refresh()
        return Outcome(True, "", warnings)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        model = v1alpha1.kind_named(kind)
        assert model is not None
        crd = model.crd
        try:
            if crd.scope == "Namespaced":
                found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                    crd.group, meta.VERSION, self.namespace, crd.plural, name
                )
            else:
                found = self.custom.get_cluster_custom_object(crd.group, meta.VERSION, crd.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def cleanup_cluster_scoped(self, docs: Sequence[Mapping[str, Any]]) -> None:
        for doc in docs:
            model = v1alpha1.kind_named(doc["kind"])
            if model is not None and model.crd.scope == "Cluster":
                try:
                    self.custom.delete_cluster_custom_object(
                        model.crd.group, meta.VERSION, model.crd.plural, doc["metadata"]["name"]
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise


def harness_fixture(
    webhooks: Webhooks, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> Iterator[Harness]:
    harness = Harness(webhooks, kube_api, kubectl, namespace)
    created: list[Mapping[str, Any]] = []
    original_setup = harness.setup

    def tracking_setup(docs: Sequence[Mapping[str, Any]]) -> None:
        created.extend(docs)
        original_setup(docs)

    harness.setup = tracking_setup  # type: ignore[method-assign]
    yield harness
    harness.cleanup_cluster_scoped(created)


def write_docs(directory: pathlib.Path, docs: Sequence[Mapping[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for index, doc in enumerate(docs):
        (directory / f"{index:02}-{doc['kind'].lower()}.yaml").write_text(yaml.safe_dump(dict(doc)))
