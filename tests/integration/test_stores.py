"""The dev control plane's stores (joch.devcluster.stores): choosing one, keeping data, failing clearly.

Cases: a state directory records its store and refuses another (unit and `up --store`, exit 1 with a
message naming both); the data survives a SIGKILL of every process on sqlite and postgres; a store that
cannot start fails `up` within seconds with a message naming the store and the reason, leaving no
process behind: the store's port taken, an unusable state directory (sqlite: its directory is a file,
its database is not one; postgres: the data directory's permissions), a Postgres that refuses the
connection (pg_hba.conf rejects it); `clean` removes the data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from joch.devcluster import ControlPlane, ControlPlaneError, find_binary, stores, workloads
from tests import helpers


def _devcluster(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "joch.devcluster", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# ---------------------------------------------------------------------------------------------- unit


def test_choose_store_keeps_the_recorded_one(tmp_path: Path) -> None:
    assert stores.choose_store(tmp_path, None) == "etcd"
    assert stores.choose_store(tmp_path, None, default="sqlite") == "sqlite"
    assert stores.choose_store(tmp_path, "postgres") == "postgres"
    stores.record_store(tmp_path, "sqlite")
    assert stores.choose_store(tmp_path, None) == "sqlite"
    assert stores.choose_store(tmp_path, "sqlite") == "sqlite"
    with pytest.raises(stores.StoreMismatchError, match="created with the sqlite store, not postgres"):
        stores.choose_store(tmp_path, "postgres")
    with pytest.raises(stores.StoreError, match="unknown store 'mysql'"):
        stores.choose_store(tmp_path, "mysql")


# ------------------------------------------------------------------------------------- integration


@pytest.mark.integration
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_data_survives_sigkill_of_every_process(tmp_path: Path, store: str) -> None:
    state_dir = tmp_path / "cp"
    plane = ControlPlane(state_dir, store=store)
    plane.start()
    try:
        components = stores.make_store(store, state_dir).components
        assert set(plane.pids) == {"oidc", *components, "kube-apiserver", *workloads.COMPONENTS}
        made = _kubectl(
            plane.kubeconfig, "create", "configmap", "kept", "-n", "default", "--from-literal=a=b"
        )
        assert made.returncode == 0, made.stderr
        for pid in plane.pids.values():
            os.killpg(pid, signal.SIGKILL)
    finally:
        plane.stop()
    assert (state_dir / "store").read_text().strip() == store
    again = ControlPlane(state_dir)  # no store named: the recorded one
    with again:
        assert again.store == store
        got = _kubectl(
            again.kubeconfig, "get", "configmap", "kept", "-n", "default", "-o", "jsonpath={.data.a}"
        )
        assert (got.returncode, got.stdout) == (0, "b"), got.stderr


@pytest.mark.integration
def test_up_refuses_another_store_and_clean_removes_the_data(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    try:
        up = _devcluster("up", f"--state-dir={state_dir}", "--store=sqlite")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "on the sqlite store" in up.stdout
        status = _devcluster("status", f"--state-dir={state_dir}")
        assert "store:      sqlite" in status.stdout
        assert "kine:" in status.stdout
    finally:
        down = _devcluster("down", f"--state-dir={state_dir}")
    assert down.returncode == 0, down.stderr
    assert helpers.wait_no_processes(state_dir) == []
    assert (state_dir / "kine" / "state.db").is_file(), "down keeps the data"

    refused = _devcluster("up", f"--state-dir={state_dir}", "--store=postgres", timeout=30)
    assert refused.returncode == 1
    assert "created with the sqlite store, not postgres" in refused.stderr
    assert helpers.processes_mentioning(state_dir) == []

    cleaned = _devcluster("clean", f"--state-dir={state_dir}")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not state_dir.exists()


def _fails_fast(state_dir: Path, *args: str, expect: str) -> str:
    started = time.monotonic()
    up = _devcluster("up", f"--state-dir={state_dir}", *args, timeout=60)
    elapsed = time.monotonic() - started
    assert up.returncode == 1, up.stdout + up.stderr
    assert expect in up.stderr, up.stderr
    assert elapsed < 20, f"took {elapsed:.1f}s"
    assert helpers.wait_no_processes(state_dir) == []
    assert _devcluster("status", f"--state-dir={state_dir}").returncode == 3
    return up.stderr


@pytest.mark.integration
@pytest.mark.parametrize("store", ["etcd", "sqlite", "postgres"])
def test_a_taken_port_fails_up_naming_the_store(tmp_path: Path, store: str) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        _fails_fast(
            tmp_path / "dev",
            f"--store={store}",
            f"--store-port={port}",
            expect=f"{store} store: port {port} on 127.0.0.1 is taken by another process",
        )
    finally:
        holder.close()


@pytest.mark.integration
def test_an_unusable_sqlite_state_directory_fails_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    state_dir.mkdir()
    (state_dir / "kine").write_text("not a directory")
    _fails_fast(state_dir, "--store=sqlite", expect="sqlite store: cannot use the state directory")

    other = tmp_path / "other"
    (other / "kine").mkdir(parents=True)
    (other / "kine" / "state.db").write_bytes(b"this is no database at all")
    _fails_fast(other, "--store=sqlite", expect="is not a SQLite database")


@pytest.mark.integration
def test_postgres_faults_fail_up_with_the_reason(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    plane = ControlPlane(state_dir, store="postgres")
    with plane:
        pass
    data = state_dir / "postgres" / "data"
    hba = data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all all 127.0.0.1/32 reject\n")
    stderr = _fails_fast(state_dir, expect="postgres store: the server refuses the connection")
    assert "pg_hba.conf rejects connection" in stderr

    hba.write_text(original)
    mode = data.stat().st_mode
    data.chmod(0o777)
    try:
        stderr = _fails_fast(state_dir, expect="postgres store:")
        assert "invalid permissions" in stderr
    finally:
        data.chmod(mode)
    with ControlPlane(state_dir) as again:  # repaired: it starts, on its recorded store
        assert again.store == "postgres"


@pytest.mark.integration
def test_a_state_directory_that_cannot_be_created_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ControlPlaneError, match=r"cannot use the state directory .*: Not a directory"):
        ControlPlane(blocker / "dev", store="sqlite").start()
