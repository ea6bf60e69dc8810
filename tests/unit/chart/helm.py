"""Running the real helm binary on charts/joch (chart unit tests and tests/integration/test_helm*).

- :func:`helm` runs ``bin/helm`` (the pinned build of hack/tools.sh) and returns the CompletedProcess.
- :func:`template` renders the chart with values (a dict, written to a values file) into parsed documents.
- :data:`KUBE_VERSION` is the version the test control plane reports (hack/tools/versions.env), passed
  to ``helm template`` so the chart's kubeVersion check sees a real cluster version.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
from typing import Any

import pytest
import yaml

from joch.devcluster import BinaryNotFoundError, find_binary
from tests import helpers

CHART = helpers.ROOT / "charts" / "joch"
VERSIONS = helpers.ROOT / "hack" / "tools" / "versions.env"


def _version(name: str) -> str:
    for line in VERSIONS.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise KeyError(name)


KUBE_VERSION = _version("KUBE_VERSION")


def in_ci() -> bool:
    """Whether this runs in CI ($CI set to true, as GitHub Actions, GitLab and most CI systems do)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def binary(name: str = "helm") -> str:
    """bin/<name> (``helm``: the pinned Helm 3; ``helm4``: Helm 4; both built by ``make tools``).

    A missing binary skips the calling test on a developer's machine, but FAILS it in CI (:func:`in_ci`):
    there a skip would silently drop every chart test."""
    try:
        return str(find_binary(name))
    except BinaryNotFoundError as exc:
        message = f"bin/{name} is not built ({exc}); `make tools` builds it"
        if in_ci():
            reason = "CI is set: the chart tests must run in CI, so a missing binary fails them"
            pytest.fail(f"{message}. {reason}", pytrace=False)
        pytest.skip(message)


def helm(
    *args: str, kubeconfig: str | None = None, timeout: float = 120, name: str = "helm"
) -> subprocess.CompletedProcess[str]:
    """``helm ARGS`` (text, captured, not checked); a private HELM cache/config so runs never share state."""
    home = pathlib.Path(tempfile.gettempdir()) / f"joch-helm-{os.getuid()}"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return subprocess.run(
        [binary(name), *args], capture_output=True, text=True, check=False, timeout=timeout, env=env
    )


def values_file(values: dict[str, Any], directory: pathlib.Path) -> str:
    path = directory / f"values-{abs(hash(yaml.safe_dump(values, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return str(path)


def template_text(
    values: dict[str, Any] | None = None,
    *,
    release: str = "joch",
    namespace: str = "joch-operator",
    extra: tuple[str, ...] = (),
    name: str = "helm",
) -> str:
    """``helm template`` output (asserting it succeeded)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        if values:
            args += ["--values", values_file(values, pathlib.Path(tmp))]
        done = helm(*args, *extra, name=name)
    assert done.returncode == 0, done.stderr
    return done.stdout


def template(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """The rendered documents, parsed."""
    return [d for d in yaml.safe_load_all(template_text(values, **kwargs)) if d]


def template_error(values: dict[str, Any], **kwargs: Any) -> str:
    """The error of a ``helm template`` that must fail (asserting it does)."""
    with tempfile.TemporaryDirectory() as tmp:
        args = ["template", "joch", str(CHART), "--namespace", kwargs.get("namespace", "joch-operator")]
        args += ["--kube-version", KUBE_VERSION, "--values", values_file(values, pathlib.Path(tmp))]
        done = helm(*args)
    assert done.returncode != 0, f"helm template accepted {values}"
    return done.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# --- against a cluster (tests/integration/test_helm*.py) ------------------------------------------------


class Release:
    """One ``helm install`` of charts/joch into a test cluster, with its values."""

    def __init__(self, *, name: str, namespace: str, kubeconfig: str, workdir: pathlib.Path) -> None:
        self.name = name
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.installed = False

    def _run(self, verb: str, values: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        args = [verb, self.name, str(CHART), "--namespace", self.namespace, "--timeout", "120s"]
        args += ["--values", values_file(values, self.workdir), *extra]
        return helm(*args, kubeconfig=self.kubeconfig, timeout=180)

    def install(self, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        done = self._run("install", values)
        assert done.returncode == 0, done.stderr + done.stdout
        self.installed = True
        return done

    def upgrade(self, values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        done = self._run("upgrade", values)
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    def manifest(self) -> list[dict[str, Any]]:
        done = helm("get", "manifest", self.name, "--namespace", self.namespace, kubeconfig=self.kubeconfig)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    def status(self) -> dict[str, Any]:
        done = helm("status", self.name, "-n", self.namespace, "-o", "json", kubeconfig=self.kubeconfig)
        assert done.returncode == 0, done.stderr
        loaded: dict[str, Any] = yaml.safe_load(done.stdout)
        return loaded

    def uninstall(self) -> None:
        if self.installed:
            helm("uninstall", self.name, "--namespace", self.namespace, kubeconfig=self.kubeconfig)
            self.installed = False


def service_account_kubeconfig(
    *, kubectl: Any, admin_kubeconfig: str, namespace: str, service_account: str, path: pathlib.Path
) -> str:
    """A kubeconfig authenticating as ``namespace/service_account`` with a TokenRequest token
    (``kubectl create token``): the chart's credentials, not admin."""
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=2h")
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(pathlib.Path(admin_kubeconfig).read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token.stdout.strip()}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": cluster["name"], "user": user, "namespace": namespace}}
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return str(path)
