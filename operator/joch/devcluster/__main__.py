"""``python -m joch.devcluster``: run the dev control plane (a store + kube-apiserver) on this machine.

python -m joch.devcluster up --state-dir .dev            # background; returns once /readyz is ok
python -m joch.devcluster up --state-dir .dev --store sqlite   # etcd | sqlite | postgres
python -m joch.devcluster up --state-dir .dev --foreground
python -m joch.devcluster status --state-dir .dev
python -m joch.devcluster down --state-dir .dev          # idempotent; keeps the data
python -m joch.devcluster clean --state-dir .dev         # down, then remove the state directory
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import joch
from joch.devcluster import stores
from joch.devcluster.certs import ControlPlaneCerts
from joch.devcluster.cluster import (
    ControlPlane,
    ControlPlaneError,
    ControlPlaneState,
    admin_ssl_context,
    probe_readyz,
    read_state,
    tail,
)

PID_FILE = "devcluster.pid"
SUPERVISOR_LOG = "devcluster.log"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3


# ----------------------------------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _belongs_to(pid: int, state_dir: Path) -> bool:
    """True if ``pid`` is alive and its command line mentions ``state_dir`` (guards against pid reuse)."""
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid file
    return str(state_dir) in cmdline


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _read_pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid(state_dir: Path, pid: int) -> None:
    (state_dir / PID_FILE).write_text(f"{pid}\n")


def _remove_pid_file(state_dir: Path, pid: int) -> None:
    if _read_pid(state_dir) == pid:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / PID_FILE).unlink()


def _running_supervisor(state_dir: Path) -> int | None:
    pid = _read_pid(state_dir)
    if pid is not None and pid != os.getpid() and _belongs_to(pid, state_dir):
        return pid
    return None


def _store_processes(state: ControlPlaneState) -> dict[str, int]:
    """The store's processes by name in start order (etcd; kine; postgres, kine)."""
    return dict(state.store_pids) or {"etcd": state.etcd_pid}


def _stop_order(state: ControlPlaneState) -> dict[int, str]:
    """Every recorded process by pid, in the order to stop them: the cluster controllers, then
    kube-apiserver, then the store (last started first)."""
    names = {pid: name for name, pid in reversed(state.component_pids.items())}
    names[state.apiserver_pid] = "kube-apiserver"
    names.update({pid: name for name, pid in reversed(_store_processes(state).items())})
    return names


def _describe(state: ControlPlaneState) -> str:
    processes = ", ".join(f"{name} pid {pid}" for name, pid in _store_processes(state).items())
    components = "".join(f", {name} pid {pid}" for name, pid in state.component_pids.items())
    return (
        f"control plane ready in {state.startup_seconds:.1f}s on the {state.store} store: {state.server} "
        f"({processes}, kube-apiserver pid {state.apiserver_pid}{components}, "
        f"supervisor pid {state.supervisor_pid})\n"
        f"  export KUBECONFIG={state.kubeconfig}"
    )


# ------------------------------------------------------------------------------------------------ up


def _raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
    raise SystemExit(128 + signum)


def up_foreground(
    state_dir: Path,
    kubeconfig: Path,
    timeout: float,
    *,
    store: str | None = None,
    store_port: int | None = None,
    workloads: bool = True,
) -> int:
    """Run the control plane in this process until SIGINT/SIGTERM or until etcd/apiserver exits."""
    state_dir.mkdir(parents=True, exist_ok=True)
    other = _running_supervisor(state_dir)
    if other is not None:
        print(f"a control plane for {state_dir} already runs (pid {other})", file=sys.stderr)
        return EXIT_FAILED
    pid = os.getpid()
    _write_pid(state_dir, pid)
    signal.signal(signal.SIGTERM, _raise_system_exit)
    signal.signal(signal.SIGHUP, _raise_system_exit)
    try:
        with ControlPlane(
            state_dir,
            kubeconfig=kubeconfig,
            ready_timeout=timeout,
            store=store,
            store_port=store_port,
            workloads=workloads,
        ) as control_plane:
            state = read_state(state_dir)
            if state is not None:
                print(_describe(state), flush=True)
            while True:
                control_plane.check_alive()
                time.sleep(1.0)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: control plane stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        _remove_pid_file(state_dir, pid)


def _store_problem(state_dir: Path, store: str | None) -> str | None:
    """Why ``store`` cannot start in ``state_dir`` (another store's data, no usable directory), or None."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        stores.choose_store(state_dir, store)
    except OSError as exc:
        return f"{store or 'the'} store: cannot use the state directory {state_dir}: {exc.strerror}"
    except stores.StoreError as exc:
        return str(exc)
    return None


def up_background(
    state_dir: Path,
    kubeconfig: Path,
    timeout: float,
    *,
    store: str | None = None,
    store_port: int | None = None,
    workloads: bool = True,
) -> int:
    """Start a detached supervisor (``up --foreground``) and return once it reports ready."""
    problem = _store_problem(state_dir, store)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    other = _running_supervisor(state_dir)
    if other is not None:
        state = read_state(state_dir)
        if state is not None and state.supervisor_pid == other:
            print(f"already running\n{_describe(state)}")
            return EXIT_OK
        print(f"a control plane for {state_dir} is starting or stuck (pid {other}); run `down` first")
        return EXIT_FAILED
    _cleanup_stale(state_dir)

    package_root = str(Path(joch.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    argv = [
        sys.executable,
        "-m",
        "joch.devcluster",
        "up",
        "--foreground",
        f"--state-dir={state_dir}",
        f"--kubeconfig={kubeconfig}",
        f"--timeout={timeout:g}",
    ]
    if store is not None:
        argv.append(f"--store={store}")
    if store_port is not None:
        argv.append(f"--store-port={store_port}")
    if not workloads:
        argv.append("--no-workloads")
    log_path = state_dir / SUPERVISOR_LOG
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _write_pid(state_dir, supervisor.pid)
    deadline = time.monotonic() + timeout + 30
    try:
        while True:
            code = supervisor.poll()
            if code is not None:
                print(
                    f"error: the control plane exited during start-up (code {code}); "
                    f"last lines of {log_path}:\n{tail(log_path, lines=200)}",
                    file=sys.stderr,
                )
                _remove_pid_file(state_dir, supervisor.pid)
                return EXIT_FAILED
            state = read_state(state_dir)
            if state is not None and state.supervisor_pid == supervisor.pid and kubeconfig.is_file():
                print(_describe(state))
                print(f"  logs in {state_dir}; stop: python -m joch.devcluster down --state-dir {state_dir}")
                return EXIT_OK
            if time.monotonic() >= deadline:
                print(f"error: no ready control plane after {timeout:g}s; stopping it", file=sys.stderr)
                _stop_supervisor(supervisor, grace=15)
                print(tail(log_path, lines=200), file=sys.stderr)
                return EXIT_FAILED
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop_supervisor(supervisor, grace=15)
        raise


def _stop_supervisor(supervisor: subprocess.Popen[bytes], grace: float) -> None:
    supervisor.terminate()
    try:
        supervisor.wait(grace)
    except subprocess.TimeoutExpired:
        supervisor.kill()
        supervisor.wait()


def _cleanup_stale(state_dir: Path) -> None:
    """Kill leftovers recorded by a supervisor that is gone, then forget them."""
    state = read_state(state_dir)
    if state is not None:
        _kill_groups(list(_stop_order(state)), state_dir, grace=10)
    for name in (PID_FILE, "control-plane.json"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()


def _kill_groups(pids: Sequence[int], state_dir: Path, grace: float) -> list[int]:
    """Stop the process groups led by ``pids`` (ours only) one after the other, in the given order:
    SIGTERM, SIGKILL after ``grace``. Returns the pids that were ours."""
    ours = [pid for pid in pids if _belongs_to(pid, state_dir)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if not _wait_gone([pid], grace):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone([pid], 5)
    return ours


# ---------------------------------------------------------------------------------------- down/status


def down(state_dir: Path, grace: float) -> int:
    """Stop the supervisor and its etcd/kube-apiserver. Fine if nothing runs."""
    stopped: list[str] = []
    supervisor = _running_supervisor(state_dir)
    state = read_state(state_dir)
    if supervisor is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)
        if not _wait_gone([supervisor], 2 * grace + 5):
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGKILL)
            _wait_gone([supervisor], 5)
        stopped.append(f"supervisor {supervisor}")
    if state is not None:
        names = _stop_order(state)
        stopped.extend(f"{names[pid]} {pid}" for pid in _kill_groups(list(names), state_dir, grace))
    for name in (PID_FILE, "control-plane.json"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    print(f"stopped {', '.join(stopped)}" if stopped else f"no control plane running for {state_dir}")
    return EXIT_OK


def status(state_dir: Path) -> int:
    """Print the state; exit 0 if ready, 1 if running but not ready, 3 if not running."""
    supervisor = _running_supervisor(state_dir)
    state = read_state(state_dir)
    if supervisor is None and (state is None or not _belongs_to(state.apiserver_pid, state_dir)):
        print(f"not running ({state_dir})")
        return EXIT_NOT_RUNNING
    if state is None:
        print(f"starting (supervisor pid {supervisor}); see {state_dir / SUPERVISOR_LOG}")
        return EXIT_FAILED
    processes = {
        "supervisor": state.supervisor_pid,
        **_store_processes(state),
        "kube-apiserver": state.apiserver_pid,
        **state.component_pids,
    }
    alive = {name: _belongs_to(pid, state_dir) for name, pid in processes.items()}
    try:
        ready, answer = probe_readyz(
            state.apiserver_port, admin_ssl_context(ControlPlaneCerts(state_dir / "pki"))
        )
    except (OSError, ValueError) as exc:
        ready, answer = False, str(exc)
    print(f"store:      {state.store}")
    print(f"server:     {state.server}")
    print(f"kubeconfig: {state.kubeconfig}")
    for name, pid in processes.items():
        print(f"{name + ':':<24} pid {pid} {'running' if alive[name] else 'GONE'}")
    print(f"/readyz:    {answer.splitlines()[0] if answer else '?'}")
    return EXIT_OK if ready and all(alive.values()) else EXIT_FAILED


def clean(state_dir: Path, grace: float) -> int:
    """``down``, then remove the state directory with the store's data."""
    down(state_dir, grace)
    if state_dir.exists():
        shutil.rmtree(state_dir)
        print(f"removed {state_dir}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m joch.devcluster",
        description=(
            "Run a local Kubernetes control plane (kube-apiserver on etcd, or on kine over SQLite or "
            "PostgreSQL) for development and tests. Binaries come from `make tools` ($JOCH_BIN_DIR, "
            "<repo>/bin or $PATH)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{up,down,clean,status}")

    def add_state_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--state-dir",
            type=Path,
            default=Path(".dev"),
            help="directory for certificates, etcd data, logs, pid file and state (default: .dev)",
        )

    up = commands.add_parser(
        "up",
        help="start the control plane",
        description=(
            "Start the store (etcd, or kine over SQLite or PostgreSQL), kube-apiserver and, unless "
            "--no-workloads, kube-controller-manager, kube-scheduler and kwok with three fake Nodes, on "
            "loopback, and write an admin kubeconfig (context joch-dev). Without --foreground it "
            "detaches and returns once everything is ready; with it, it runs until Ctrl-C/SIGTERM."
        ),
    )
    add_state_dir(up)
    up.add_argument(
        "--kubeconfig", type=Path, help="where to write the kubeconfig (default: STATE_DIR/kubeconfig)"
    )
    up.add_argument("--foreground", action="store_true", help="stay in the foreground until interrupted")
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for /readyz (default: 90)")
    up.add_argument(
        "--store",
        choices=stores.STORES,
        help="the resource store: etcd, sqlite (kine) or postgres (kine); default: the one the state "
        "directory was created with, else etcd. Naming another than the recorded one is refused.",
    )
    up.add_argument(
        "--store-port", type=int, help="the store's client port on 127.0.0.1 (default: a free one)"
    )
    up.add_argument(
        "--no-workloads",
        dest="workloads",
        action="store_false",
        help="start the store and kube-apiserver only: no controller-manager, scheduler or fake Nodes "
        "(Jobs never run, owned objects are not collected, namespaces never finish deleting)",
    )

    down_parser = commands.add_parser(
        "down", help="stop the control plane", description="Stop the control plane; fine if none runs."
    )
    add_state_dir(down_parser)
    down_parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default: 10)"
    )

    clean_parser = commands.add_parser(
        "clean",
        help="stop the control plane and remove its data",
        description="Stop the control plane (as `down`) and remove the state directory with its data.",
    )
    add_state_dir(clean_parser)
    clean_parser.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default: 10)"
    )

    status_parser = commands.add_parser(
        "status",
        help="show whether it runs",
        description="Show the control plane's state. Exit 0: ready, 1: up but not ready, 3: not running.",
    )
    add_state_dir(status_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir: Path = args.state_dir.absolute()
    if args.command == "up":
        kubeconfig: Path = (args.kubeconfig or state_dir / "kubeconfig").absolute()
        up = up_foreground if args.foreground else up_background
        return up(
            state_dir,
            kubeconfig,
            args.timeout,
            store=args.store,
            store_port=args.store_port,
            workloads=args.workloads,
        )
    if args.command == "down":
        return down(state_dir, args.grace)
    if args.command == "clean":
        return clean(state_dir, args.grace)
    return status(state_dir)


if __name__ == "__main__":
    sys.exit(main())
