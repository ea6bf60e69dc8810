"""The resource store under the dev/test kube-apiserver: etcd, or kine over SQLite or PostgreSQL.

kube-apiserver speaks the etcd v3 API; kine (github.com/k3s-io/kine, as k3s uses it) serves that API
over a SQL database. Each store starts the processes it needs and returns the URL for the API server's
``--etcd-servers``:

- ``etcd``: etcd with ``--unsafe-no-fsync`` on free loopback ports, data in ``<state>/etcd``.
- ``sqlite``: kine on a free loopback port over ``<state>/kine/state.db`` (WAL journal, synchronous
  NORMAL: a commit is in the WAL file, i.e. in the OS page cache, before kine acknowledges it, so a
  killed process loses nothing; a power loss may lose the last commits).
- ``postgres``: a PostgreSQL server from Debian's postgresql package (installed with apt-get when
  missing and running as root), ``initdb`` in ``<state>/postgres/data``, run as the ``postgres`` user
  when started as root (PostgreSQL refuses root), listening on 127.0.0.1 and a free port only (no Unix
  socket), password authentication (scram-sha-256, the password in ``<state>/postgres/pgpass``);
  ``fsync=off`` and ``full_page_writes=off`` with ``synchronous_commit=on``: every commit is written to
  the WAL (the page cache) before it is acknowledged, so a SIGKILL of every process loses nothing; a
  machine crash may. kine runs on top, on another free loopback port.

kine is started with ``--compact-interval=0`` (the API server drives compaction, as with etcd) and
``--metrics-bind-address=0`` (no metrics port). All writes pass through that one kine, so its watch
answers at once; its 1 s poll only matters for writes made by another kine on the same database.

The store a state directory was created with is recorded in ``<state>/store``; starting it again
with another store is refused (:class:`StoreMismatchError`).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

__all__ = [
    "DEFAULT_STORE",
    "STORES",
    "STORE_FILE",
    "EtcdStore",
    "KineStore",
    "PostgresStore",
    "Store",
    "StoreError",
    "StoreMismatchError",
    "choose_store",
    "make_store",
    "recorded_store",
]

STORES = ("etcd", "sqlite", "postgres")
DEFAULT_STORE = "etcd"
STORE_FILE = "store"
LOOPBACK = "127.0.0.1"
POSTGRES_USER = "postgres"
"""The operating-system user the PostgreSQL server runs as when started as root."""
DATABASE_USER = "joch"
KINE_DATABASE = "kine"
SQLITE_PARAMS = (
    "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=30000&_txlock=immediate&_stmt_cache_size=20"
    "&cache=shared"
)
"""kine's own defaults for SQLite (it uses them only when given no DSN at all)."""


class StoreError(RuntimeError):
    """The store cannot be started; the message names the store and the reason."""


class StoreMismatchError(StoreError):
    """The state directory holds another store's data."""


Probe = Callable[[], tuple[bool, str]]


class Launcher(Protocol):
    """What a store needs from the control plane: start a supervised process, wait for a probe."""

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        parent_death_signal: signal.Signals,
        env: Mapping[str, str] | None = None,
    ) -> None: ...

    def _wait(self, what: str, probe: Probe, deadline: float) -> None: ...


# ------------------------------------------------------------------------------------ choosing a store


def recorded_store(state_dir: Path) -> str | None:
    """The store ``state_dir`` was created with (None for a new directory).

    A directory from before stores were recorded that holds etcd data counts as etcd.
    """
    try:
        name = (state_dir / STORE_FILE).read_text().strip()
    except FileNotFoundError:
        return "etcd" if (state_dir / "etcd" / "member").is_dir() else None
    except OSError as exc:
        raise StoreError(f"cannot use the state directory {state_dir}: {exc.strerror}") from None
    return name or None


def choose_store(state_dir: Path, requested: str | None, default: str = DEFAULT_STORE) -> str:
    """The store to start in ``state_dir``: the recorded one unless ``requested`` names another (refused).

    A new directory gets ``requested`` or ``default``.
    """
    if requested is not None and requested not in STORES:
        raise StoreError(f"unknown store {requested!r}: choose one of {', '.join(STORES)}")
    recorded = recorded_store(state_dir)
    if recorded is not None and recorded not in STORES:
        raise StoreError(f"{state_dir / STORE_FILE} names an unknown store {recorded!r}")
    if recorded is not None and requested is not None and requested != recorded:
        raise StoreMismatchError(
            f"the state directory {state_dir} was created with the {recorded} store, not {requested}: "
            f"start it without a store (or with {recorded}) to keep its data, or remove it first "
            f"(`make dev-clean`, or `python -m joch.devcluster clean --state-dir {state_dir}`)"
        )
    return recorded or requested or default


def record_store(state_dir: Path, name: str) -> None:
    path = state_dir / STORE_FILE
    if not path.exists():
        path.write_text(name + "\n")


def make_store(
    name: str,
    state_dir: Path,
    *,
    bin_dir: Path | str | None = None,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> Store:
    """The store called ``name`` for ``state_dir``. ``port``: its client port (default: a free one)."""
    if name == "etcd":
        return EtcdStore(state_dir, bin_dir=bin_dir, port=port, extra_args=extra_args)
    if name == "sqlite":
        return KineStore(state_dir, bin_dir=bin_dir, port=port, extra_args=extra_args)
    if name == "postgres":
        return PostgresStore(state_dir, bin_dir=bin_dir, port=port, extra_args=extra_args)
    raise StoreError(f"unknown store {name!r}: choose one of {', '.join(STORES)}")


# --------------------------------------------------------------------------------------------- helpers


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on the loopback interface."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(*, avoid: int | None = None) -> int:
    """A free TCP port on the loopback interface other than ``avoid`` (a port chosen for something else
    but not listening yet)."""
    return next(port for port in free_ports(2) if port != avoid)


def check_port_free(store: str, port: int) -> None:
    """Raise StoreError if something listens on (or holds) 127.0.0.1:``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
    except OSError as exc:
        reason = "is taken by another process" if exc.errno == errno.EADDRINUSE else f"is unusable: {exc}"
        raise StoreError(f"{store} store: port {port} on {LOOPBACK} {reason}") from None
    finally:
        sock.close()


def check_directory(store: str, path: Path) -> None:
    """Create ``path`` if missing; raise StoreError unless it is a directory we can read and write."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{store} store: cannot use the state directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise StoreError(f"{store} store: the state directory {path} is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StoreError(f"{store} store: the state directory {path} is not readable and writable")
    try:
        list(path.iterdir())
    except OSError as exc:
        raise StoreError(f"{store} store: cannot read the state directory {path}: {exc.strerror}") from None


def probe_tcp(port: int, *, timeout: float = 1.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True, f"{LOOPBACK}:{port} accepts connections"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def http_get(conn: http.client.HTTPConnection, path: str) -> tuple[int | None, str]:
    """GET ``path`` once on ``conn`` (closed afterwards): (HTTP status, body), or (None, the error)."""
    return http_request(conn, "GET", path)


def http_request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Mapping[str, Any] | None = None
) -> tuple[int | None, str]:
    """One request on ``conn`` (closed afterwards), ``body`` sent as JSON: (HTTP status, body), or
    (None, the error)."""
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def probe_etcd(port: int, *, timeout: float = 2.0) -> tuple[bool, str]:
    code, body = http_get(http.client.HTTPConnection(LOOPBACK, port, timeout=timeout), "/health")
    if code is None:
        return False, body
    try:
        healthy = code == 200 and json.loads(body).get("health") == "true"
    except ValueError:
        healthy = False
    return healthy, f"HTTP {code}: {body}"


def _find(name: str, bin_dir: Path | str | None) -> Path:
    from joch.devcluster.cluster import find_binary  # noqa: PLC0415 - cluster imports this module

    return find_binary(name, bin_dir)


# ---------------------------------------------------------------------------------------------- stores


class Store:
    """One resource store: ``start`` launches its processes and returns the URL for --etcd-servers."""

    name: str = ""

    def __init__(
        self,
        state_dir: Path,
        *,
        bin_dir: Path | str | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir
        self.port = port
        self.extra_args = tuple(extra_args)
        self.url = ""

    @property
    def components(self) -> tuple[str, ...]:
        """The names of the processes it starts, in start order."""
        raise NotImplementedError

    def check_binaries(self) -> None:
        """Raise BinaryNotFoundError (a ControlPlaneError) when a binary is missing."""
        raise NotImplementedError

    def start(self, launcher: Launcher, deadline: float) -> str:
        raise NotImplementedError

    def _client_port(self) -> int:
        if self.port is not None:
            check_port_free(self.name, self.port)
            return self.port
        return free_port()


class EtcdStore(Store):
    name = "etcd"

    @property
    def components(self) -> tuple[str, ...]:
        return ("etcd",)

    def check_binaries(self) -> None:
        _find("etcd", self.bin_dir)

    def start(self, launcher: Launcher, deadline: float) -> str:
        data = self.state_dir / "etcd"
        check_directory(self.name, data)
        etcd = _find("etcd", self.bin_dir)
        client_port = self._client_port()
        peer_port = free_port(avoid=client_port)
        client = f"http://{LOOPBACK}:{client_port}"
        peer = f"http://{LOOPBACK}:{peer_port}"
        argv = [
            str(etcd),
            "--name=joch-dev",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=joch-dev={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
            *self.extra_args,
        ]
        # If the owner dies without stop(), etcd shuts down cleanly (SIGTERM).
        launcher._spawn("etcd", argv, parent_death_signal=signal.SIGTERM)
        launcher._wait("etcd", lambda: probe_etcd(client_port), deadline)
        self.url = client
        return client


class KineStore(Store):
    """kine over SQLite (this class) or, through :meth:`endpoint`, over another database."""

    name = "sqlite"

    @property
    def components(self) -> tuple[str, ...]:
        return ("kine",)

    def check_binaries(self) -> None:
        _find("kine", self.bin_dir)

    def endpoint(self) -> tuple[str, dict[str, str]]:
        """kine's --endpoint and environment (subclasses: the database they started)."""
        directory = self.state_dir / "kine"
        check_directory(self.name, directory)
        database = directory / "state.db"
        if database.exists():
            try:
                with database.open("rb") as handle:
                    header = handle.read(16)
            except OSError as exc:
                raise StoreError(f"sqlite store: cannot read {database}: {exc.strerror}") from None
            if header and header != b"SQLite format 3\x00":
                raise StoreError(f"sqlite store: {database} is not a SQLite database")
        return f"sqlite://{database}?{SQLITE_PARAMS}", {}

    def start(self, launcher: Launcher, deadline: float) -> str:
        kine = _find("kine", self.bin_dir)
        self._start_database(launcher, deadline)
        endpoint, env = self.endpoint()
        port = self._client_port()
        argv = [
            str(kine),
            f"--listen-address={LOOPBACK}:{port}",
            f"--endpoint={endpoint}",
            "--metrics-bind-address=0",
            "--compact-interval=0",
            *self.extra_args,
        ]
        launcher._spawn("kine", argv, parent_death_signal=signal.SIGTERM, env=env)
        # kine opens (and migrates) the database before it listens: a connection means it is serving.
        launcher._wait("kine", lambda: probe_tcp(port), deadline)
        self.url = f"http://{LOOPBACK}:{port}"
        return self.url

    def _start_database(self, launcher: Launcher, deadline: float) -> None:
        """Start the database server kine uses (none for SQLite)."""


class PostgresStore(KineStore):
    name = "postgres"

    def __init__(
        self,
        state_dir: Path,
        *,
        bin_dir: Path | str | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(state_dir, bin_dir=bin_dir, port=port, extra_args=extra_args)
        self.directory = state_dir / "postgres"
        self.data = self.directory / "data"
        self.passfile = self.directory / "pgpass"
        self.pg_port: int | None = None

    @property
    def components(self) -> tuple[str, ...]:
        return ("postgres", "kine")

    def check_binaries(self) -> None:
        _find("kine", self.bin_dir)

    # -- the server

    def _start_database(self, launcher: Launcher, deadline: float) -> None:
        check_directory(self.name, self.directory)
        bindir = postgres_bindir(install=True)
        run_as = _postgres_user()
        self._initdb(bindir, run_as)
        pg_port = free_port(avoid=self.port)
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(self.data),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"port={pg_port}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=on",
            "-c",
            "logging_collector=off",
        ]
        # SIGINT is PostgreSQL's fast shutdown: used when the owner dies without stop().
        launcher._spawn("postgres", _as_user(run_as, argv), parent_death_signal=signal.SIGINT)
        self.pg_port = pg_port
        launcher._wait("postgres", lambda: self._probe(bindir), deadline)

    def _initdb(self, bindir: Path, run_as: pwd.struct_passwd | None) -> None:
        if (self.data / "PG_VERSION").is_file():
            if not self.passfile.is_file():
                raise StoreError(f"postgres store: {self.passfile} is missing (the database password)")
            return
        if self.data.exists() and any(self.data.iterdir()):
            raise StoreError(f"postgres store: {self.data} holds files but no database (no PG_VERSION)")
        password = secrets.token_urlsafe(24)
        pwfile = self.directory / "initdb-password"
        self.data.mkdir(mode=0o700, exist_ok=True)
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{LOOPBACK}:*:*:{DATABASE_USER}:{password}\n")
        if run_as is not None:
            os.chown(self.directory, run_as.pw_uid, run_as.pw_gid)
            os.chown(self.data, run_as.pw_uid, run_as.pw_gid)
            os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
        argv = [
            str(bindir / "initdb"),
            "-D",
            str(self.data),
            f"--username={DATABASE_USER}",
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=reject",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        try:
            done = subprocess.run(  # noqa: S603 - argv built here from resolved paths
                _as_user(run_as, argv), capture_output=True, text=True, check=False, timeout=120
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            answer = (done.stderr or done.stdout).strip()
            raise StoreError(f"postgres store: initdb failed (exit {done.returncode}): {answer}")

    def _probe(self, bindir: Path) -> tuple[bool, str]:
        """Connect with psql as kine will: starting up is 'not yet'; any other refusal fails at once."""
        assert self.pg_port is not None
        conninfo = (
            f"host={LOOPBACK} port={self.pg_port} user={DATABASE_USER} dbname=postgres "
            f"passfile={self.passfile} connect_timeout=5 sslmode=disable"
        )
        try:
            done = subprocess.run(  # noqa: S603 - psql of the same installation
                [str(bindir / "psql"), conninfo, "-AtXc", "select 1"],
                capture_output=True,
                text=True,
                check=False,
                timeout=15,
                env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
            )
        except subprocess.TimeoutExpired:
            return False, "psql timed out"
        if done.returncode == 0 and done.stdout.strip() == "1":
            return True, "accepts connections"
        answer = (done.stderr or done.stdout).strip()
        if transient_refusal(answer):
            return False, answer
        raise StoreError(f"postgres store: the server refuses the connection: {answer}")

    def endpoint(self) -> tuple[str, dict[str, str]]:
        assert self.pg_port is not None
        return (
            f"postgres://{DATABASE_USER}@{LOOPBACK}:{self.pg_port}/{KINE_DATABASE}"
            f"?sslmode=disable&passfile={self.passfile}",
            {},
        )


# ---------------------------------------------------------------------------------------- PostgreSQL


TRANSIENT_REFUSALS: Final = (
    "Connection refused",  # not listening yet
    "the database system is starting up",
    "the database system is not yet accepting connections",  # crash recovery after a SIGKILL
    "the database system is in recovery mode",
    "the database system is shutting down",
)
"""What psql says while a PostgreSQL server is on its way up (or down): wait, do not fail."""


def transient_refusal(answer: str) -> bool:
    """Whether psql's refusal ``answer`` means "not yet" (see TRANSIENT_REFUSALS) rather than "never"
    (authentication, pg_hba.conf, a missing database...)."""
    return any(phrase in answer for phrase in TRANSIENT_REFUSALS)


def _postgres_user() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: ``postgres`` when we are root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise StoreError(
            f"postgres store: running as root and there is no {POSTGRES_USER!r} user to run the server as "
            f"(PostgreSQL refuses root); install Debian's postgresql package, which creates it"
        ) from None


def _as_user(user: pwd.struct_passwd | None, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` with setpriv. It keeps CAP_DAC_READ_SEARCH so that it can reach a
    state directory under a private parent (pytest's 0700 temporary directories); writes still need
    the ownership the store gives it."""
    if user is None:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise StoreError("postgres store: setpriv (util-linux) is needed to run PostgreSQL as postgres")
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--",
        *argv,
    ]


def postgres_bindir(*, install: bool = False) -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with a server; apt-get installs it when missing and
    ``install`` is set and we are root."""
    found = _installed_bindir()
    if found is not None:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
            env=env,
        )
        found = _installed_bindir()
        if found is not None:
            return found
        raise StoreError(
            f"postgres store: PostgreSQL is not installed and `apt-get install -y postgresql` failed "
            f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
        )
    raise StoreError(
        "postgres store: PostgreSQL is not installed (no /usr/lib/postgresql/<major>/bin/postgres); "
        "install Debian's postgresql package (`apt-get install -y postgresql`)"
    )


def _installed_bindir() -> Path | None:
    candidates = []
    for directory in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            if (directory / "postgres").is_file() and (directory / "initdb").is_file():
                candidates.append((int(directory.parent.name), directory))
    return max(candidates)[1] if candidates else None
