"""Fixtures and helpers for the operator's integration tests (tests/integration/test_operator*.py).

Test modules import the fixture functions (``cluster_fixture``, ``start_operator_fixture``); pytest
registers them under their names ``cluster`` and ``start_operator``.

- :func:`support_triage` rewrites examples/ into one test's namespace: namespaced objects move there,
  cluster-scoped objects (FrameworkAdapter, Environment, Team) get a unique suffix and every reference to
  them follows, so tests never share objects.
- :class:`OperatorProcess` runs ``python -m joch.cli.operator`` as a process of its own (the real
  command, so SIGKILL and restarts are real; forked from :mod:`tests.integration.forkserver`, which has
  done the ~5 s of imports once), logging to a file; the ``start_operator`` fixture starts one and stops
  every one it started at teardown, printing the log tail (shown by pytest when a test fails).
- :class:`Cluster` (fixture ``cluster``) wraps the kubernetes client calls the tests need;
  :func:`eventually` polls an assertion until it holds or a timeout passes (no fixed sleeps).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from joch.api import v1alpha1
from joch.cli import compile as compile_cli
from joch.manifests import webhooks as rendering
from tests import helpers
from tests.integration import forkserver

T = TypeVar("T")

SYNCED = "initial sync complete"


# --- polling --------------------------------------------------------------------------------------------


def eventually(check: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.2) -> T:
    """Call ``check`` until it returns without raising AssertionError (or KeyError); its result.

    At the timeout the last failure is raised, so the assertion message says what never held.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


# --- the example, rewritten per test ---------------------------------------------------------------------


@dataclasses.dataclass
class Example:
    namespace: str
    suffix: str
    docs: list[dict[str, Any]]

    @property
    def adapter(self) -> str:
        return f"openai-agents-sdk-{self.suffix}"

    @property
    def environment(self) -> str:
        return f"prod-{self.suffix}"

    @property
    def team(self) -> str:
        return f"support-platform-{self.suffix}"

    def find(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
        raise KeyError(f"{kind}/{name}")

    def yaml(self, docs: list[dict[str, Any]] | None = None) -> str:
        return to_yaml(self.docs if docs is None else docs)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def support_triage(namespace: str, suffix: str | None = None) -> Example:
    """examples/ moved into ``namespace`` with uniquely named cluster-scoped objects."""
    suffix = suffix or uuid.uuid4().hex[:6]
    adapter = f"openai-agents-sdk-{suffix}"
    environment = f"prod-{suffix}"
    team = f"support-platform-{suffix}"
    docs = []
    for original in helpers.example_documents():
        doc = copy.deepcopy(original)
        kind, metadata, spec = doc["kind"], doc["metadata"], doc.get("spec") or {}
        if kind == "Namespace":
            metadata["name"] = namespace
            metadata["labels"] = {**metadata.get("labels", {}), "joch.dev/environment": environment}
            metadata["labels"]["joch.dev/test"] = "true"
        elif "namespace" in metadata:
            metadata["namespace"] = namespace
        if kind == "FrameworkAdapter":
            metadata["name"] = adapter
        elif kind == "Environment":
            metadata["name"] = environment
            for ref in spec.get("policies", []) + spec.get("budgetRefs", []):
                ref["namespace"] = namespace
        elif kind == "Team":
            metadata["name"] = team
            spec["namespaces"] = [namespace]
        elif kind == "Agent":
            spec["framework"]["adapterRef"]["name"] = adapter
            metadata["labels"]["env"] = environment
        elif kind == "Policy":
            labels = (((spec.get("appliesTo") or {}).get("agents") or {}).get("selector") or {}).get(
                "matchLabels"
            )
            if labels and labels.get("env") == "prod":
                labels["env"] = environment
        elif kind == "Budget":
            spec["scope"]["teams"] = [team]
        elif kind == "Deployment":
            spec["environmentRef"]["name"] = environment
        docs.append(doc)
    return Example(namespace=namespace, suffix=suffix, docs=docs)


def agent_doc(example: Example, name: str, **spec_overrides: Any) -> dict[str, Any]:
    """A copy of the example Agent called ``name`` (spec keys replaced by ``spec_overrides``; None
    removes one). The copy leaves out zendesk.create-ticket, whose safety floor allows only
    support-triage."""
    doc = copy.deepcopy(example.find("Agent", "support-triage"))
    doc["metadata"]["name"] = name
    doc["spec"]["tools"] = [t for t in doc["spec"]["tools"] if t["name"] != "zendesk.create-ticket"]
    for key, value in spec_overrides.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


# --- the operator as a subprocess -----------------------------------------------------------------------


# ``joch operator`` also serves webhooks (9443, applying cluster-wide configurations in local mode), the
# decision service (8082), /metrics (8080), probes (8081), the /v1 API (8090) and gRPC (9090). Tests about
# the controllers turn those off so that several operators (failover, restarts) can run at once and a
# SIGKILLed one leaves no webhook configuration behind; a test's own ``args`` come later and win
# (tests/integration/test_operator_wiring.py runs everything).
ISOLATED = (
    "--no-webhooks",
    "--decision-port=0",
    "--metrics-port=0",
    "--health-port=0",
    "--api-port=0",
    "--grpc-port=0",
)


def isolated_args(args: tuple[str, ...]) -> list[str]:
    """:data:`ISOLATED` minus what ``args`` sets, then ``args``."""
    given = {arg.split("=", 1)[0] for arg in args}
    if "--webhook-port" in given:  # a test that serves the webhooks
        given.add("--no-webhooks")
    return [flag for flag in ISOLATED if flag.split("=", 1)[0] not in given] + list(args)


class OperatorProcess:
    """``python -m joch.cli.operator`` against the test cluster, logging to ``log_path``."""

    def __init__(self, kubeconfig: str, namespaces: tuple[str, ...], log_path: Path, args: tuple[str, ...]):
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.args = args
        self.process: forkserver.Process | subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        argv = [sys.executable, "-m", "joch.cli.operator", "--kubeconfig", self.kubeconfig, "-v"]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        argv += isolated_args(self.args)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {' '.join(argv[1:])}\n".encode())
            log.flush()
            # ``python -m joch.cli.operator ...`` forked from a server that has imported it already.
            self.process = forkserver.popen(
                "joch.cli.operator",
                argv[3:],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def current_log(self) -> str:
        """The log of the current run only."""
        return self.log().rsplit("\n===== start ", 1)[-1]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for_log(self, text: str, *, timeout: float = 60.0) -> str:
        """Wait until the current run's log contains ``text``; the log."""

        def check() -> str:
            log = self.current_log()
            assert self.running() or text in log, f"operator exited:\n{self.tail()}"
            assert text in log, f"{text!r} not logged yet:\n{self.tail(20)}"
            return log

        return eventually(check, timeout=timeout, interval=0.1)

    def wait_synced(self, *, timeout: float = 90.0) -> str:
        """Wait for the start-up pass to finish; the "initial sync complete" line."""
        log = self.wait_for_log(SYNCED, timeout=timeout)
        return next(line for line in log.splitlines() if SYNCED in line)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            return None


StartOperator = Callable[..., OperatorProcess]

forkserver.prestart("joch.cli.operator")


@pytest.fixture(name="start_operator")
def start_operator_fixture(
    kubeconfig: str, crds_installed: list[str], tmp_path: Path
) -> Iterator[StartOperator]:
    """``start_operator(ns, ..., args=(), wait=True)``: a running operator managing those namespaces."""
    started: list[OperatorProcess] = []

    def start(*namespaces: str, args: tuple[str, ...] = (), wait: bool = True) -> OperatorProcess:
        operator = OperatorProcess(kubeconfig, namespaces, tmp_path / f"operator-{len(started)}.log", args)
        started.append(operator)
        operator.start()
        if wait:
            operator.wait_synced()
        return operator

    yield start
    for operator in started:
        operator.stop()
        print(f"----- {operator.log_path} (tail)\n{operator.tail(80)}")


# --- cluster access ---------------------------------------------------------------------------------------


def _plural(kind: str) -> tuple[str, str, str, bool]:
    model = v1alpha1.kind_named(kind)
    assert model is not None, kind
    crd = model.crd
    return crd.group, v1alpha1.meta.VERSION, crd.plural, crd.scope == "Namespaced"


class Cluster:
    """The few API calls the tests make, as plain dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        group, version, plural, _ = _plural(kind)
        found = self.custom.list_namespaced_custom_object(group, version, namespace, plural)
        return list(found["items"])

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        group, version, plural, namespaced = _plural(kind)
        if namespaced:
            return self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)  # type: ignore[no-any-return]
        return self.custom.get_cluster_custom_object(group, version, plural, name)  # type: ignore[no-any-return]

    def try_get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.get(kind, namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, kind: str, namespace: str | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
        group, version, plural, namespaced = _plural(kind)
        if namespaced:
            return self.custom.patch_namespaced_custom_object(group, version, namespace, plural, name, body)  # type: ignore[no-any-return]
        return self.custom.patch_cluster_custom_object(group, version, plural, name, body)  # type: ignore[no-any-return]

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        group, version, plural, namespaced = _plural(kind)
        if namespaced:
            self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
        else:
            self.custom.delete_cluster_custom_object(group, version, plural, name)

    def agent(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get("Agent", namespace, name)

    def status(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return self.get(kind, namespace, name).get("status") or {}

    def condition(self, namespace: str, name: str, type_: str, kind: str = "Agent") -> dict[str, Any]:
        for cond in self.status(kind, namespace, name).get("conditions") or ():
            if cond["type"] == type_:
                return cond  # type: ignore[no-any-return]
        raise AssertionError(f"{kind} {namespace}/{name} has no {type_} condition yet")

    def manifests(self, namespace: str) -> dict[str, client.V1ConfigMap]:
        """CAM ConfigMaps of the namespace by name."""
        items = self.core.list_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/component=compiled-agent-manifest"
        ).items
        return {cm.metadata.name: cm for cm in items}

    def events(self, namespace: str, name: str, kind: str = "Agent") -> list[client.CoreV1Event]:
        return [
            e
            for e in self.core.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.involved_object.kind == kind
        ]

    def label_namespace(self, namespace: str, labels: dict[str, str | None]) -> None:
        self.core.patch_namespace(namespace, {"metadata": {"labels": labels}})


@pytest.fixture(name="cluster")
def cluster_fixture(kube_api: client.ApiClient) -> Cluster:
    return Cluster(kube_api)


def remove_webhook_configurations(kubectl: Callable[..., Any]) -> None:
    """Leave no cluster-wide webhook configuration pointing at a stopped operator's server. Neither has
    finalizers, so the DELETE itself removes them: kubectl does not wait on a watch for it (under load
    that wait outlived a minute once)."""
    for kind, name in (
        ("validatingwebhookconfiguration", rendering.VALIDATING_NAME),
        ("mutatingwebhookconfiguration", rendering.MUTATING_NAME),
    ):
        out = kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", timeout=120)
        assert out.returncode == 0, out.stderr


def apply(kubectl: Callable[..., Any], docs: list[dict[str, Any]] | str, *, timeout: float = 120) -> None:
    """``kubectl apply -f -`` of the documents, in their order."""
    text = docs if isinstance(docs, str) else to_yaml(docs)
    out = kubectl("apply", "-f", "-", input=text, timeout=timeout)
    assert out.returncode == 0, out.stderr + out.stdout


def ready(cluster: Cluster, namespace: str, name: str, generation: int | None = None) -> dict[str, Any]:
    """Assert the Agent is Ready for its current (or the given) generation; its status."""
    agent = cluster.agent(namespace, name)
    status = agent.get("status") or {}
    want = generation if generation is not None else agent["metadata"]["generation"]
    assert agent["metadata"]["generation"] == want, (
        f"{name} is at generation {agent['metadata']['generation']}"
    )
    assert status.get("observedGeneration") == want, f"{name} observed {status.get('observedGeneration')}"
    conditions = {c["type"]: c for c in status.get("conditions") or ()}
    assert conditions.get("Ready", {}).get("status") == "True", f"{name} not Ready: {conditions.get('Ready')}"
    return status


def compile_from_cluster(kubectl: Callable[..., Any], namespace: str, example: Example) -> dict[str, str]:
    """``joch compile`` over ``kubectl get -o yaml`` of every object: manifest text by name."""
    kinds = "agents,models,modelroutes,tools,mcpservers,memories,rags,policies"
    namespaced = kubectl("get", kinds, "-n", namespace, "-o", "yaml")
    assert namespaced.returncode == 0, namespaced.stderr
    cluster_scoped = kubectl(
        "get",
        f"frameworkadapters/{example.adapter}",
        f"environments/{example.environment}",
        f"teams/{example.team}",
        f"namespace/{namespace}",
        "-o",
        "yaml",
    )
    assert cluster_scoped.returncode == 0, cluster_scoped.stderr
    parser = argparse.ArgumentParser()
    compile_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compile", "-f", "-"])
    out, err = io.StringIO(), io.StringIO()
    code = compile_cli.main(
        args, stdout=out, stderr=err, stdin=io.StringIO(namespaced.stdout + "\n---\n" + cluster_scoped.stdout)
    )
    assert code == 0, err.getvalue()
    manifests = {}
    for text in out.getvalue().split("---\n")[1:]:
        manifests[yaml.safe_load(text)["metadata"]["name"]] = text
    return manifests
