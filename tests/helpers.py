"""Shared test helpers: loading the examples and the generated CRDs, running the real kubectl."""

from __future__ import annotations

import os
import pathlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes.client.rest import ApiException

from joch.devcluster import find_binary

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]
"""``kubectl("get", "ns", input=None, timeout=60)`` -> CompletedProcess (text, captured, no check)."""


def make_kubectl(kubeconfig: str) -> Kubectl:
    """The real kubectl (bin/), run against ``kubeconfig``."""
    binary = str(find_binary("kubectl"))

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    return run


def install_crds(kubectl: Kubectl) -> list[str]:
    """Apply crds/ with real kubectl and wait until every CRD is Established; the CRD names."""
    applied = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    assert applied.returncode == 0, applied.stderr
    names = [d["metadata"]["name"] for d in load_documents(CRDS)]
    waited = kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    assert waited.returncode == 0, waited.stderr
    return names


def load_documents(*paths: pathlib.Path) -> list[dict[str, Any]]:
    """Every YAML document in the given files (or directories, sorted), skipping empty ones."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            docs.extend(d for d in yaml.safe_load_all(file.read_text()) if d)
    return docs


def example_documents() -> list[dict[str, Any]]:
    return load_documents(EXAMPLES)


def joch_examples() -> list[dict[str, Any]]:
    """The example documents that are joch kinds (not core objects such as the Namespace)."""
    return [
        d
        for d in example_documents()
        if ".joch.dev/" in d["apiVersion"] or d["apiVersion"].startswith("joch.dev/")
    ]


def doc_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def processes_mentioning(path: pathlib.Path) -> list[tuple[int, str]]:
    """Live (non-zombie) processes other than this one whose command line mentions ``path``."""
    found = []
    needle = str(path)
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def wait_no_processes(path: pathlib.Path, timeout: float = 20) -> list[tuple[int, str]]:
    """Wait up to ``timeout`` seconds until no process mentions ``path``; those left."""
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def fake_job(
    name: str, *, annotations: dict[str, str] | None = None, ttl: int | None = None
) -> dict[str, Any]:
    """A batch/v1 Job of one Pod for the local cluster's fake Nodes (no image is ever pulled);
    ``annotations`` go on the Pod template (see joch.devcluster.workloads: run-for, exit-code)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": ttl,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "agent", "image": "registry.invalid/agent:1", "args": ["run"]}],
                },
            },
        },
    }


def gone(read: Callable[[], object]) -> Callable[[], None]:
    """A check for ``eventually`` (tests/integration/operator_fixtures): ``read()`` answers 404."""

    def check() -> None:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        raise AssertionError("still there")

    return check


def present(read: Callable[[], Any]) -> Callable[[], Any]:
    """A check for ``eventually``: ``read()``'s answer, an AssertionError while it answers 404."""

    def check() -> Any:
        try:
            return read()
        except ApiException as exc:
            if exc.status == 404:
                raise AssertionError("not there yet") from exc
            raise

    return check
