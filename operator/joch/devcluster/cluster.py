"""A real kube-apiserver on a resource store (etcd, or kine over SQLite or PostgreSQL: see
joch.devcluster.stores) on loopback ports, started the way controller-runtime's envtest does.

    ControlPlane(state_dir, store="sqlite")   # "etcd" | "sqlite" | "postgres"; default: the one the
                                              # state directory was created with, else etcd

By default kube-controller-manager, kube-scheduler and kwok with three fake Nodes run beside it
(joch.devcluster.workloads): Jobs run to completion on the fake Nodes, garbage collection deletes owned
objects, namespaces finish terminating and every namespace gets its default ServiceAccount.
``workloads=False`` starts the store and kube-apiserver alone (an object store with nothing acting on
it), which is cheaper where a test needs only the API. See docs/architecture.md, "The local control plane".

Sign-in: besides client certificates and service-account tokens, kube-apiserver accepts tokens from a
local OIDC issuer (joch.devcluster.oidc, a child process started before kube-apiserver; ``joch dev
token`` mints them) through ``--authentication-config``, and writes an audit log of the requests to the
joch API groups (``kube-apiserver-audit.log``, policy charts/joch/files/audit-policy.yaml). See
docs/identity.md.

    with ControlPlane(tmp_path) as cp:
        client = kubernetes.config.new_client_from_config(str(cp.kubeconfig))

Every process runs in its own process group (session). ``stop()`` runs on ``__exit__`` (so on
exceptions and KeyboardInterrupt too), when ``start()`` fails half-way, and at interpreter exit
(``atexit``). On Linux the children are also signalled when the starting thread dies without cleaning
up (``die_with_parent``: the store gets SIGTERM, the Kubernetes components SIGKILL), e.g. when the
test runner is killed with SIGKILL. Start it from a thread that outlives it (normally the main
thread), or pass ``die_with_parent=False``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

from joch.devcluster import oidc, stores, workloads
from joch.devcluster.certs import ADMIN_COMMON_NAME, COMPONENT_IDENTITIES, ControlPlaneCerts, ensure_certs

__all__ = [
    "CLUSTER_NAME",
    "STATE_FILE",
    "BinaryNotFoundError",
    "ControlPlane",
    "ControlPlaneError",
    "ControlPlaneState",
    "find_binary",
    "pinned_versions",
    "probe_readyz",
    "read_state",
    "repo_root",
    "tail",
]

CLUSTER_NAME = "joch-dev"
STATE_FILE = "control-plane.json"
LOOPBACK = "127.0.0.1"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
_VERSIONS_ENV = Path("hack") / "tools" / "versions.env"
_PR_SET_PDEATHSIG = 1
AUDIT_POLICY_SOURCE = Path("charts") / "joch" / "files" / "audit-policy.yaml"
"""The generated audit policy (joch.manifests.audit, `make manifests`), relative to the checkout."""
AUDIT_POLICY = "audit-policy.yaml"
AUDIT_LOG = "kube-apiserver-audit.log"
OIDC_PROCESS = "oidc"
"""The name (and log, oidc.log) of the OIDC issuer process."""


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (or a process of it died)."""


class BinaryNotFoundError(ControlPlaneError):
    """etcd / kube-apiserver / kubectl is not built yet."""


# --------------------------------------------------------------------------------------------- lookup


def repo_root() -> Path | None:
    """The checkout this package lives in (or the current directory is in), if any.

    A directory counts as the repository root when it holds ``hack/tools/versions.env``.
    """
    candidates = [*Path(__file__).resolve().parents, Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if (candidate / _VERSIONS_ENV).is_file():
            return candidate
    return None


def pinned_versions(root: Path | None = None) -> dict[str, str]:
    """The pinned tool versions from ``hack/tools/versions.env`` (e.g. ``KUBE_VERSION``)."""
    root = root or repo_root()
    if root is None:
        raise ControlPlaneError(f"cannot find {_VERSIONS_ENV}: not inside a joch checkout")
    versions: dict[str, str] = {}
    for raw in (root / _VERSIONS_ENV).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip().strip("'\"")
    return versions


def find_binary(name: str, bin_dir: Path | str | None = None) -> Path:
    """Locate ``name``: ``bin_dir`` / $JOCH_BIN_DIR, then ``<repo>/bin``, then $PATH."""
    searched: list[str] = []
    directories: list[Path] = []
    explicit = bin_dir if bin_dir is not None else os.environ.get("JOCH_BIN_DIR")
    if explicit:
        directories.append(Path(explicit))
    root = repo_root()
    if root is not None:
        directories.append(root / "bin")
    for directory in directories:
        candidate = directory / name
        searched.append(str(directory))
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    found = shutil.which(name)
    searched.append("$PATH")
    if found:
        return Path(found).resolve()
    raise BinaryNotFoundError(
        f"{name} not found (looked in {', '.join(searched)}). Build the pinned test control plane "
        f"binaries with `make tools` (runs hack/tools.sh; the first kube-apiserver build takes ~10 "
        f"minutes), or set JOCH_BIN_DIR to a directory that contains {name}."
    )


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a (log) file, or a note that it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``sig`` when the parent thread dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))

    return preexec


# --------------------------------------------------------------------------------------------- probes


def probe_readyz(port: int, context: ssl.SSLContext, *, timeout: float = 2.0) -> tuple[bool, str]:
    """GET https://127.0.0.1:<port>/readyz; returns (ready, answer or error)."""
    conn = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=timeout)
    code, body = stores.http_get(conn, "/readyz")
    if code is None:
        return False, body
    return code == 200, f"HTTP {code}: {body}"


def _probe_issuer(port: int, context: ssl.SSLContext, *, timeout: float = 2.0) -> tuple[bool, str]:
    """GET the OIDC issuer's discovery document on https://127.0.0.1:<port>."""
    conn = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=timeout)
    code, body = stores.http_get(conn, oidc.DISCOVERY_PATH)
    if code is None:
        return False, body
    return code == 200, f"HTTP {code}: {body[:200]}"


def probe_token(port: int, context: ssl.SSLContext, token: str, *, timeout: float = 2.0) -> tuple[bool, str]:
    """POST a SelfSubjectReview with bearer ``token``: (accepted (HTTP 201), answer or error)."""
    conn = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=timeout)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        conn.request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body=json.dumps(review),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        code, body = response.status, response.read().decode("utf-8", errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return code == 201, f"HTTP {code}: {body[:200]}"


def admin_ssl_context(certs: ControlPlaneCerts) -> ssl.SSLContext:
    """A TLS client context that trusts the control plane CA and presents the admin certificate."""
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
    return context


# ---------------------------------------------------------------------------------------------- state


@dataclass(frozen=True)
class ControlPlaneState:
    """What a running control plane records in ``<state dir>/control-plane.json``."""

    supervisor_pid: int
    etcd_pid: int
    apiserver_pid: int
    etcd_url: str
    apiserver_port: int
    server: str
    kubeconfig: str
    startup_seconds: float
    started_at: float
    store: str = "etcd"
    """etcd, sqlite or postgres; etcd_pid/etcd_url are then the process kube-apiserver talks to (kine)."""
    store_pids: dict[str, int] = field(default_factory=dict)
    """Every store process by name (etcd; kine; postgres and kine)."""
    component_pids: dict[str, int] = field(default_factory=dict)
    """kube-controller-manager, kube-scheduler and kwok, when they run."""
    oidc_pid: int = 0
    """The local OIDC issuer (joch.devcluster.oidc)."""
    oidc_issuer: str = ""
    """Its URL, https://127.0.0.1:<port> (also in <state dir>/oidc-issuer)."""

    def write(self, state_dir: Path) -> None:
        path = state_dir / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def read_state(state_dir: Path) -> ControlPlaneState | None:
    """The recorded state of the control plane in ``state_dir``, or None if there is none."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return ControlPlaneState(**data)
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------------------------------- process


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def died(self) -> str | None:
        code = self.popen.poll()
        if code is None:
            return None
        return f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{tail(self.log_path)}"

    def stop(self, grace: float) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap the process."""
        try:
            if self.popen.poll() is None:
                _signal_group(self.popen.pid, signal.SIGTERM)
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(self.popen.pid, signal.SIGKILL)
                    self.popen.wait()
        finally:
            self.log_file.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ------------------------------------------------------------------------------------- control plane


class ControlPlane:
    """kube-apiserver on a store (etcd, sqlite or postgres) on free loopback ports, with a kubeconfig
    for an admin (system:masters).

    ``state_dir`` holds the certificates (pki/), the store's data (etcd/, kine/ or postgres/) and its
    name (store), the logs (etcd.log or kine.log and postgres.log, kube-apiserver.log), the kubeconfig
    (unless ``kubeconfig`` says otherwise) and control-plane.json. ``store_port`` fixes the store's
    client port (default: a free one); ``extra_store_args`` go to etcd or kine.

    ``workloads`` (default on) also starts kube-controller-manager, kube-scheduler and kwok with
    ``fake_nodes`` fake Nodes (see joch.devcluster.workloads); their kubeconfigs are in kubeconfigs/,
    their logs beside the others, kwok's stages in kwok.yaml.

    kube-apiserver also accepts tokens of the local OIDC issuer (joch.devcluster.oidc; process ``oidc``,
    configuration authentication-config.yaml, issuer URL in oidc-issuer) and writes an audit log
    (kube-apiserver-audit.log) with ``audit_policy`` (default: charts/joch/files/audit-policy.yaml of the
    checkout; without one, no audit log), copied to audit-policy.yaml.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        kubeconfig: Path | str | None = None,
        ready_timeout: float = 90.0,
        stop_grace: float = 10.0,
        bin_dir: Path | str | None = None,
        die_with_parent: bool = True,
        extra_apiserver_args: Sequence[str] = (),
        extra_etcd_args: Sequence[str] = (),
        store: str | None = None,
        store_port: int | None = None,
        extra_store_args: Sequence[str] = (),
        workloads: bool = True,
        fake_nodes: int = 3,
        audit_policy: Path | str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.kubeconfig = Path(kubeconfig).absolute() if kubeconfig else self.state_dir / "kubeconfig"
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.bin_dir = bin_dir
        self.die_with_parent = die_with_parent
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.extra_etcd_args = tuple(extra_etcd_args)
        self.requested_store = store
        self.store_port = store_port
        self.extra_store_args = tuple(extra_store_args)
        self.workloads = workloads
        self.fake_nodes = fake_nodes
        if audit_policy is None:
            root = repo_root()
            default = root / AUDIT_POLICY_SOURCE if root is not None else None
            audit_policy = default if default is not None and default.is_file() else None
        self.audit_policy = Path(audit_policy).absolute() if audit_policy is not None else None
        self.store: str | None = None
        """The store started (set by start())."""
        self._store: stores.Store | None = None
        self._store_url: str | None = None
        self.certs = ControlPlaneCerts(self.state_dir / "pki")
        self.startup_seconds: float | None = None
        self._processes: list[_Process] = []
        self._apiserver_port: int | None = None
        self._oidc_issuer: str | None = None
        self._state: ControlPlaneState | None = None

    # -- context manager

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- properties

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(proc.popen.poll() is None for proc in self._processes)

    @property
    def apiserver_port(self) -> int:
        if self._apiserver_port is None:
            raise ControlPlaneError("the control plane is not started")
        return self._apiserver_port

    @property
    def server(self) -> str:
        """The API server URL, https://127.0.0.1:<port>."""
        return f"https://{LOOPBACK}:{self.apiserver_port}"

    @property
    def oidc_issuer(self) -> str:
        """The local OIDC issuer's URL, https://127.0.0.1:<port>."""
        if self._oidc_issuer is None:
            raise ControlPlaneError("the control plane is not started")
        return self._oidc_issuer

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (JSON lines), when ``audit_policy`` is set."""
        return self.state_dir / AUDIT_LOG

    @property
    def etcd_url(self) -> str:
        """The store's etcd API URL (etcd itself or kine)."""
        if self._store_url is None:
            raise ControlPlaneError("the control plane is not started")
        return self._store_url

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by component name (etcd | kine | postgres, kube-apiserver) of the processes started."""
        return {proc.name: proc.popen.pid for proc in self._processes}

    @property
    def log_files(self) -> dict[str, Path]:
        names = self._store.components if self._store is not None else ("etcd",)
        components = workloads.COMPONENTS if self.workloads else ()
        processes = (OIDC_PROCESS, *names, "kube-apiserver", *components)
        return {name: self.state_dir / f"{name}.log" for name in processes}

    # -- lifecycle

    def start(self) -> None:
        """Start etcd and kube-apiserver, wait for /readyz, write the kubeconfig.

        Raises BinaryNotFoundError when a binary is missing and ControlPlaneError when a process dies
        during start-up or /readyz is not ok within ``ready_timeout``. Anything started is stopped
        again before the error propagates.
        """
        if self._processes:
            raise ControlPlaneError("the control plane is already started")
        try:
            name = stores.choose_store(self.state_dir, self.requested_store)
        except stores.StoreError as exc:
            raise ControlPlaneError(str(exc)) from None
        args = self.extra_store_args or (self.extra_etcd_args if name == "etcd" else ())
        store = stores.make_store(
            name, self.state_dir, bin_dir=self.bin_dir, port=self.store_port, extra_args=args
        )
        store.check_binaries()
        apiserver = find_binary("kube-apiserver", self.bin_dir)
        components = (
            {name: find_binary(name, self.bin_dir) for name in workloads.COMPONENTS} if self.workloads else {}
        )
        self.store, self._store = name, store
        started = time.monotonic()
        atexit.register(self.stop)
        try:
            self._start(store, apiserver, deadline=started + self.ready_timeout)
            if components:
                self._start_workloads(components, deadline=started + self.ready_timeout)
        except stores.StoreError as exc:
            self.stop()
            raise ControlPlaneError(str(exc)) from None
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        store_pids = {component: self.pids[component] for component in store.components}
        self._state = ControlPlaneState(
            supervisor_pid=os.getpid(),
            etcd_pid=store_pids[store.components[-1]],
            apiserver_pid=self.pids["kube-apiserver"],
            etcd_url=self.etcd_url,
            apiserver_port=self.apiserver_port,
            server=self.server,
            kubeconfig=str(self.kubeconfig),
            startup_seconds=round(self.startup_seconds, 3),
            started_at=time.time(),
            store=name,
            store_pids=store_pids,
            component_pids={name: self.pids[name] for name in components},
            oidc_pid=self.pids[OIDC_PROCESS],
            oidc_issuer=self.oidc_issuer,
        )
        self._state.write(self.state_dir)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, SIGKILL after ``stop_grace``). Idempotent."""
        while self._processes:
            proc = self._processes[-1]
            proc.stop(self.stop_grace)
            self._processes.pop()
        atexit.unregister(self.stop)
        if self._state is not None:
            recorded = read_state(self.state_dir)
            if recorded is not None and recorded == self._state:
                with contextlib.suppress(FileNotFoundError):
                    (self.state_dir / STATE_FILE).unlink()
            self._state = None

    def check_alive(self) -> None:
        """Raise ControlPlaneError (with the log tail) if etcd or kube-apiserver has exited."""
        for proc in self._processes:
            problem = proc.died()
            if problem:
                raise ControlPlaneError(problem)

    def ssl_context(self) -> ssl.SSLContext:
        return admin_ssl_context(self.certs)

    # -- internals

    def _start(self, store: stores.Store, apiserver: Path, *, deadline: float) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise stores.StoreError(
                f"{store.name} store: cannot use the state directory {self.state_dir}: {exc.strerror}"
            ) from None
        stores.check_directory(store.name, self.state_dir)
        ensure_certs(self.certs.directory)
        apiserver_port, oidc_port = stores.free_ports(2)
        self._apiserver_port = apiserver_port

        # The OIDC issuer first: its interpreter starts while the store does. kube-apiserver fetches its
        # discovery document and keys when it starts, so it must answer before kube-apiserver starts.
        self._spawn(
            OIDC_PROCESS,
            [
                sys.executable,
                "-W",
                "ignore::RuntimeWarning:runpy",
                "-m",
                "joch.devcluster.oidc",
                "serve",
                f"--state-dir={self.state_dir}",
                f"--port={oidc_port}",
            ],
            parent_death_signal=signal.SIGKILL,
        )
        issuer = f"https://{LOOPBACK}:{oidc_port}"
        self._oidc_issuer = issuer

        # If this process dies without stop(): the store shuts down cleanly, kube-apiserver is killed
        # (its graceful shutdown hangs for minutes once the store is gone, and it keeps no state).
        try:
            self._store_url = store.start(self, deadline)
        except ControlPlaneError as exc:
            raise stores.StoreError(f"{store.name} store: {exc}") from None
        stores.record_store(self.state_dir, store.name)

        ca_context = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        self._wait("the OIDC issuer", lambda: _probe_issuer(oidc_port, ca_context), deadline)
        oidc.write_issuer(self.state_dir, issuer)
        authentication = oidc.authentication_config(issuer, self.certs.ca_cert.read_text())
        _write_private(
            self.state_dir / oidc.AUTHENTICATION_CONFIG, yaml.safe_dump(authentication, sort_keys=False)
        )
        if self.audit_policy is not None:
            try:
                policy = self.audit_policy.read_text()
            except OSError as exc:
                raise ControlPlaneError(f"cannot read the audit policy {self.audit_policy}: {exc}") from None
            _write_private(self.state_dir / AUDIT_POLICY, policy)

        self._spawn(
            "kube-apiserver",
            [str(apiserver), *self._apiserver_args(apiserver_port)],
            parent_death_signal=signal.SIGKILL,
        )
        context = self.ssl_context()
        self._wait("kube-apiserver /readyz", lambda: probe_readyz(apiserver_port, context), deadline)
        # The JWT authenticator initialises asynchronously (it fetches the discovery document and keys):
        # ready once a token of the issuer is accepted.
        token = oidc.mint(self.state_dir, "joch-dev:oidc-probe", (), ttl_seconds=600)
        self._wait(
            "kube-apiserver's OIDC authenticator",
            lambda: probe_token(apiserver_port, ca_context, token),
            deadline,
        )
        self._write_kubeconfig()

    def _apiserver_args(self, port: int) -> list[str]:
        certs = self.certs
        return [
            f"--bind-address={LOOPBACK}",
            f"--secure-port={port}",
            f"--advertise-address={LOOPBACK}",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            f"--client-ca-file={certs.ca_cert}",
            f"--tls-cert-file={certs.serving_cert}",
            f"--tls-private-key-file={certs.serving_key}",
            f"--service-account-key-file={certs.service_account_pub}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # Without the serviceaccount controller no namespace has a default ServiceAccount, and
            # the admission plugin would refuse every Pod.
            *(() if self.workloads else ("--disable-admission-plugins=ServiceAccount",)),
            f"--etcd-servers={self.etcd_url}",
            "--allow-privileged=true",
            f"--authentication-config={self.state_dir / oidc.AUTHENTICATION_CONFIG}",
            *self._audit_args(),
            *self.extra_apiserver_args,
        ]

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        return [
            f"--audit-policy-file={self.state_dir / AUDIT_POLICY}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=100",
            "--audit-log-maxbackup=3",
        ]

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        parent_death_signal: signal.Signals,
        env: Mapping[str, str] | None = None,
    ) -> None:
        log_path = self.state_dir / f"{name}.log"
        log_file = log_path.open("wb")
        try:
            popen = subprocess.Popen(  # noqa: S603 - argv is built here from resolved binary paths
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env={**os.environ, **env} if env else None,
                start_new_session=True,
                preexec_fn=_parent_death_signal(parent_death_signal) if self.die_with_parent else None,  # noqa: PLW1509
            )
        except BaseException:
            log_file.close()
            raise
        self._processes.append(_Process(name=name, popen=popen, log_path=log_path, log_file=log_file))

    def _wait(self, what: str, probe: Callable[[], tuple[bool, str]], deadline: float) -> None:
        last = "no answer yet"
        while True:
            for proc in self._processes:
                problem = proc.died()
                if problem:
                    raise ControlPlaneError(f"control plane start-up failed: {problem}")
            ok, last = probe()
            if ok:
                return
            if time.monotonic() >= deadline:
                logs = "\n".join(
                    f"--- last lines of {p.log_path}:\n{tail(p.log_path, 20)}" for p in self._processes
                )
                raise ControlPlaneError(
                    f"{what} not ready within {self.ready_timeout:g}s (last answer: {last})\n{logs}"
                )
            time.sleep(0.1)

    def kubeconfig_dict(self, component: str | None = None) -> dict[str, Any]:
        """The admin kubeconfig (cluster and context ``joch-dev``, certificates embedded), or with
        ``component`` the one of kube-controller-manager, kube-scheduler or kwok."""

        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode("ascii")

        certs = self.certs
        user = ADMIN_COMMON_NAME if component is None else COMPONENT_IDENTITIES[component][0]
        cert = certs.admin_cert if component is None else certs.component_cert(component)
        key = certs.admin_key if component is None else certs.component_key(component)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CLUSTER_NAME,
                    "cluster": {"server": self.server, "certificate-authority-data": b64(certs.ca_cert)},
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}
            ],
            "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
            "current-context": CLUSTER_NAME,
            "preferences": {},
        }

    def _write_kubeconfig(self, component: str | None = None) -> Path:
        path = self.kubeconfig if component is None else self.state_dir / "kubeconfigs" / f"{component}.yaml"
        _write_private(path, yaml.safe_dump(self.kubeconfig_dict(component), sort_keys=False))
        return path

    # -- the cluster controllers

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int | None, Any]:
        """One admin request to kube-apiserver: (HTTP status, decoded JSON or text), (None, error)."""
        conn = http.client.HTTPSConnection(
            LOOPBACK, self.apiserver_port, context=self.ssl_context(), timeout=10
        )
        code, text = stores.http_request(conn, method, path, body)
        if code is None:
            return None, text
        try:
            return code, json.loads(text)
        except ValueError:
            return code, text

    def _start_workloads(self, binaries: Mapping[str, Path], *, deadline: float) -> None:
        """Start kube-controller-manager, kube-scheduler and kwok; register the fake Nodes; wait until
        the Nodes are Ready (kwok acts) and the default ServiceAccount exists (the controllers act)."""
        certs = self.certs
        kubeconfigs = {name: str(self._write_kubeconfig(name)) for name in workloads.COMPONENTS}
        kwok_config = self.state_dir / "kwok.yaml"
        _write_private(kwok_config, yaml.safe_dump_all(workloads.kwok_config(), sort_keys=False))
        argvs = {
            "kube-controller-manager": workloads.controller_manager_args(
                kubeconfig=kubeconfigs["kube-controller-manager"],
                root_ca=str(certs.ca_cert),
                service_account_key=str(certs.service_account_key),
                signing_cert=str(certs.ca_cert),
                signing_key=str(certs.ca_key),
                service_cluster_ip_range=SERVICE_CLUSTER_IP_RANGE,
                cluster_name=CLUSTER_NAME,
            ),
            "kube-scheduler": workloads.scheduler_args(kubeconfig=kubeconfigs["kube-scheduler"]),
            "kwok": workloads.kwok_args(kubeconfig=kubeconfigs["kwok"], config=str(kwok_config)),
        }
        for name in workloads.COMPONENTS:
            self._spawn(name, [str(binaries[name]), *argvs[name]], parent_death_signal=signal.SIGKILL)
        version = pinned_versions().get("KUBE_VERSION", "v0.0.0") if repo_root() else "v0.0.0"
        nodes = workloads.fake_node_names(self.fake_nodes)
        for index in range(self.fake_nodes):
            code, answer = self.api("POST", "/api/v1/nodes", workloads.fake_node(index, version))
            if code not in (201, 409):
                raise ControlPlaneError(f"cannot register fake node {nodes[index]}: HTTP {code}: {answer}")
        self._wait("the fake nodes (kwok)", lambda: self._nodes_ready(nodes), deadline)
        self._wait(
            "the default ServiceAccount (kube-controller-manager)", self._default_service_account, deadline
        )

    def _nodes_ready(self, names: Sequence[str]) -> tuple[bool, str]:
        """Whether every Node in ``names`` is Ready (one LIST per probe)."""
        code, listed = self.api("GET", "/api/v1/nodes")
        ready = set()
        for node in listed.get("items", []) if code == 200 else []:
            conditions = node.get("status", {}).get("conditions", [])
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                ready.add(node["metadata"]["name"])
        waiting = [name for name in names if name not in ready]
        return not waiting, f"not Ready yet: {', '.join(waiting)}" if waiting else "all Ready"

    def _default_service_account(self) -> tuple[bool, str]:
        code, _ = self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return code == 200, f"HTTP {code}"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)
