"""The test control plane itself (joch.devcluster): certificates, start-up, RBAC, clean shutdown.

Cases: certificate SANs / usages / admin group (unit); missing binary names `make tools` (unit);
/version reports the pinned KUBE_VERSION; namespace + ConfigMap round trip via the Python client;
`kubectl get ns`; RBAC denies a user without grants; stop() leaves no process and no state behind; a
process dying during start-up raises with its log tail; nothing is left running after an uncaught
exception (atexit), Ctrl-C or SIGKILL of the owner; `python -m joch.devcluster up/status/down`.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client, config

from joch.devcluster import (
    CLUSTER_NAME,
    BinaryNotFoundError,
    ControlPlane,
    ControlPlaneError,
    find_binary,
    generate_certs,
    pinned_versions,
    workloads,
)
from joch.devcluster import cluster as cluster_module
from tests import helpers

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]


def _state(pid: int) -> str:
    """A process's state letter (R, S, D: uninterruptible, Z...) and wait channel, for diagnostics."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except (OSError, IndexError):
        return "gone"
    return f"{state} {wchan}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------- unit


def test_certs_have_the_sans_usages_and_admin_group(tmp_path: Path) -> None:
    certs = generate_certs(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(certs.serving_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(certs.admin_cert.read_bytes())

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    serving.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)

    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
    }
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert list(serving.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]

    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["joch-admin"]
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "system:masters"
    ]
    assert list(admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]

    sa_key = serialization.load_pem_private_key(certs.service_account_key.read_bytes(), password=None)
    sa_pub = serialization.load_pem_public_key(certs.service_account_pub.read_bytes())
    assert isinstance(sa_key, rsa.RSAPrivateKey)
    assert isinstance(sa_pub, rsa.RSAPublicKey)
    assert sa_key.public_key().public_numbers() == sa_pub.public_numbers()

    for key in (certs.ca_key, certs.serving_key, certs.admin_key, certs.service_account_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key

    # The scheduler signs in as the user Kubernetes' bootstrap RBAC policy binds; the controller-manager
    # (every controller on its credentials) and kwok need every right.
    identities = {}
    for component in workloads.COMPONENTS:
        cert = x509.load_pem_x509_certificate(certs.component_cert(component).read_bytes())
        cert.verify_directly_issued_by(ca)
        identities[component] = (
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)],
        )
        assert stat.S_IMODE(certs.component_key(component).stat().st_mode) == 0o600
    assert identities == {
        "kube-controller-manager": ("system:kube-controller-manager", ["system:masters"]),
        "kube-scheduler": ("system:kube-scheduler", []),
        "kwok": ("joch-dev:kwok", ["system:masters"]),
    }


def test_missing_binary_names_make_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "repo_root", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("JOCH_BIN_DIR", str(tmp_path))
    with pytest.raises(BinaryNotFoundError, match=r"kube-apiserver not found .*`make tools`"):
        find_binary("kube-apiserver")


# ------------------------------------------------------------------------------- the shared cluster


@pytest.mark.integration
def test_version_is_the_pinned_kube_version(kube_api: client.ApiClient) -> None:
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == pinned_versions()["KUBE_VERSION"]


@pytest.mark.integration
def test_namespace_and_configmap_round_trip(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    assert core.read_namespace(namespace).status.phase == "Active"
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="round-trip"), data={"answer": "42"}),
    )
    read = core.read_namespaced_config_map("round-trip", namespace)
    assert read.data == {"answer": "42"}
    core.patch_namespaced_config_map("round-trip", namespace, {"data": {"answer": "43"}})
    assert core.read_namespaced_config_map("round-trip", namespace).data == {"answer": "43"}
    core.delete_namespaced_config_map("round-trip", namespace)
    # What is left is the cluster's own: the root CA every namespace gets from the controller-manager.
    left = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
    assert left <= {"kube-root-ca.crt"}


@pytest.mark.integration
def test_kubectl_get_ns(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("get", "ns", "-o", "name")
    assert out.returncode == 0, out.stderr
    names = out.stdout.split()
    assert f"namespace/{namespace}" in names
    assert "namespace/default" in names


@pytest.mark.integration
def test_rbac_is_enforced(kubectl: Kubectl, kube_api: client.ApiClient) -> None:
    denied = kubectl("auth", "can-i", "--as=someone", "get", "secrets", "-n", "default")
    assert (denied.returncode, denied.stdout.strip()) == (1, "no"), denied.stderr
    allowed = kubectl("auth", "can-i", "get", "secrets", "-n", "default")
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes"), allowed.stderr

    review = client.AuthorizationV1Api(kube_api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user="someone",
                groups=["system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    verb="list", resource="configmaps", namespace="default"
                ),
            )
        )
    )
    assert review.status.allowed is False


# ------------------------------------------------------------------------------- own control planes


@pytest.mark.integration
def test_stop_leaves_no_processes(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path / "cp", kubeconfig=tmp_path / "out" / "kubeconfig")
    with cp:
        pids = cp.pids
        assert set(pids) == {"oidc", "etcd", "kube-apiserver", *workloads.COMPONENTS}
        assert all(_pid_alive(pid) for pid in pids.values())
        cp.check_alive()
        assert cp.startup_seconds is not None
        assert cp.startup_seconds < 90
        doc: dict[str, Any] = yaml.safe_load(cp.kubeconfig.read_text())
        assert doc["current-context"] == CLUSTER_NAME
        assert doc["clusters"][0]["cluster"]["server"] == cp.server
        assert stat.S_IMODE(cp.kubeconfig.stat().st_mode) == 0o600
        assert (cp.state_dir / "control-plane.json").is_file()
        assert (cp.state_dir / "kube-apiserver.log").is_file()
    assert not any(_pid_alive(pid) for pid in pids.values())
    assert helpers.processes_mentioning(tmp_path) == []
    assert not (cp.state_dir / "control-plane.json").exists()
    assert cp.pids == {}
    assert not cp.running
    cp.stop()  # idempotent


@pytest.mark.integration
def test_without_workloads_only_the_store_and_the_api_server_run(tmp_path: Path) -> None:
    with ControlPlane(tmp_path / "cp", workloads=False) as cp:
        assert set(cp.pids) == {"oidc", "etcd", "kube-apiserver"}
        api = config.new_client_from_config(str(cp.kubeconfig), persist_config=False)
        try:
            assert client.CoreV1Api(api).list_node().items == []
        finally:
            api.close()
            api.rest_client.pool_manager.clear()
    assert helpers.processes_mentioning(tmp_path) == []


@pytest.mark.integration
def test_a_process_dying_during_start_up_raises_with_its_log(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited") as failure:
        cp.start()
    assert "unknown flag: --no-such-flag" in str(failure.value)
    assert cp.pids == {}
    assert helpers.processes_mentioning(tmp_path) == []


# The owner restores Python's Ctrl-C handler: a suite started without job control in the background
# (``bash .ci/run &``) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
_OWNER_SCRIPT = """
import signal, sys, time
from joch.devcluster import ControlPlane
signal.signal(signal.SIGINT, signal.default_int_handler)
mode, state_dir = sys.argv[1], sys.argv[2]
if mode == "atexit":
    cp = ControlPlane(state_dir)
    cp.start()
    print("READY", flush=True)
    raise RuntimeError("a test failed without stopping the control plane")
with ControlPlane(state_dir):
    print("READY", flush=True)
    time.sleep(300)
"""


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["atexit", "sigint", "sigkill"])
def test_nothing_survives_its_owner(tmp_path: Path, mode: str) -> None:
    state_dir = tmp_path / "cp"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, mode, str(state_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "READY"
        assert len(helpers.processes_mentioning(state_dir)) >= 2  # etcd and kube-apiserver (+ the owner)
        if mode == "sigint":
            owner.send_signal(signal.SIGINT)
        elif mode == "sigkill":
            owner.kill()
        try:
            _, stderr = owner.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            left = [(pid, _state(pid), cmd[:80]) for pid, cmd in helpers.processes_mentioning(state_dir)]
            pytest.fail(f"the owner ({mode}) did not exit within 60 s; still running: {left}")
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate()
    if mode == "atexit":
        assert "a test failed without stopping" in stderr
    if mode == "sigint":
        assert "KeyboardInterrupt" in stderr
    assert helpers.wait_no_processes(state_dir) == []


def _devcluster(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "joch.devcluster", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@pytest.mark.integration
def test_cli_up_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    kubeconfig = tmp_path / "kubeconfig"
    try:
        up = _devcluster("up", f"--state-dir={state_dir}", f"--kubeconfig={kubeconfig}")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "control plane ready" in up.stdout
        assert kubeconfig.is_file()
        assert (state_dir / "devcluster.pid").is_file()

        again = _devcluster("up", f"--state-dir={state_dir}", f"--kubeconfig={kubeconfig}")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout

        status = _devcluster("status", f"--state-dir={state_dir}")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "HTTP 200: ok" in status.stdout
        for component in workloads.COMPONENTS:
            assert re.search(rf"^{component}: +pid \d+ running$", status.stdout, re.MULTILINE), status.stdout

        kubectl = subprocess.run(
            [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}", "get", "ns", "default"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert kubectl.returncode == 0, kubectl.stderr
    finally:
        down = _devcluster("down", f"--state-dir={state_dir}")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped supervisor" in down.stdout
    assert helpers.wait_no_processes(state_dir) == []
    assert not (state_dir / "devcluster.pid").exists()

    status = _devcluster("status", f"--state-dir={state_dir}")
    assert status.returncode == 3, status.stdout + status.stderr
    down_again = _devcluster("down", f"--state-dir={state_dir}")
    assert down_again.returncode == 0, down_again.stdout + down_again.stderr
    assert "no control plane running" in down_again.stdout


def test_cli_help() -> None:
    out = _devcluster("--help", timeout=30)
    assert out.returncode == 0
    for command in ("up", "down", "status"):
        assert command in out.stdout
    up_help = _devcluster("up", "--help", timeout=30)
    assert "--foreground" in up_help.stdout
    assert "--state-dir" in up_help.stdout
