"""``python -m MODULE ARGS`` without paying MODULE's imports each time.

Importing ``joch.cli.operator`` or ``joch.cli.main`` takes ~5 s (kopf, jsonschema's format checkers,
the kubernetes client), and the integration tests start the operator and the CLI dozens of times. A
fork server per module (``_zygote.py``: a fresh interpreter that imported the module once) forks each
run instead: still a process of its own, with the given argv, environment, working directory, stdio,
session and exit status (SIGKILL, SIGTERM and restarts are real), running the module as ``__main__``.

- :func:`popen` returns a :class:`Process` (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``,
  ``returncode``: the parts of :class:`subprocess.Popen` the tests use).
- :func:`run` is ``subprocess.run(capture_output=True, text=True, check=False)``.

A server starts on first use (or :func:`prestart`) and exits with the test process.
``JOCH_TEST_NO_FORKSERVER=1`` runs plain ``subprocess`` instead (to compare, or to rule this out).
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

_ZYGOTE = Path(__file__).with_name("_zygote.py")
_DISABLED = os.environ.get("JOCH_TEST_NO_FORKSERVER", "") not in ("", "0")
_lock = threading.Lock()
_servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}


def _server(module: str) -> str:
    """The socket path of ``module``'s fork server (started when needed), once it is ready."""
    with _lock:
        entry = _servers.get(module)
        if entry is None or entry[0].poll() is not None:
            path = os.path.join(tempfile.mkdtemp(prefix="joch-zygote-"), "sock")
            process = subprocess.Popen(
                [sys.executable, str(_ZYGOTE), path, module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=os.getcwd(),
            )
            entry = _servers[module] = (process, path)
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line == b"ready\n", f"fork server for {module} did not start: {line!r}"
        return entry[1]


@atexit.register
def _stop_servers() -> None:
    for process, path in _servers.values():
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()  # the server's signal to exit
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def prestart(*modules: str) -> None:
    """Start the servers of ``modules`` in the background (their imports overlap other work)."""
    for module in () if _DISABLED else modules:
        threading.Thread(target=_server, args=(module,), daemon=True).start()


class Process:
    """A forked ``python -m MODULE ARGS``; the server reports its exit status over ``conn``."""

    def __init__(self, conn: socket.socket, pid: int, args: list[str]) -> None:
        self._conn = conn
        self._buffer = b""
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self._conn.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self._conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                return
            if not chunk:
                raise RuntimeError(f"fork server lost process {self.pid}")
            self._buffer += chunk
        self.returncode = int(json.loads(self._buffer.split(b"\n", 1)[0])["returncode"])
        self._conn.close()

    def __del__(self) -> None:
        self._conn.close()

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._read(left)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _fd(stream: IO[Any] | int | None, default: int) -> int:
    if stream is None:
        return default
    if isinstance(stream, int):
        return stream
    return stream.fileno()


def popen(
    module: str,
    args: list[str],
    *,
    stdin: IO[Any] | int | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    start_new_session: bool = False,
) -> Process | subprocess.Popen[bytes]:
    """``subprocess.Popen([sys.executable, "-m", module, *args], ...)`` from ``module``'s fork server.

    ``stderr=subprocess.STDOUT`` sends stderr to ``stdout``; None inherits the test process's stream.
    """
    if _DISABLED:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            start_new_session=start_new_session,
        )
    path = _server(module)
    out = _fd(stdout, 1)
    err = out if stderr == subprocess.STDOUT else _fd(stderr, 2)
    request = {
        "module": module,
        "args": list(args),
        "env": dict(os.environ if env is None else env),
        "cwd": cwd or os.getcwd(),
        "setsid": start_new_session,
    }
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    socket.send_fds(conn, [json.dumps(request).encode()], [_fd(stdin, 0), out, err])
    buffer = b""
    conn.settimeout(60)
    while b"\n" not in buffer:
        chunk = conn.recv(4096)
        if not chunk:
            raise RuntimeError(f"fork server for {module} refused {args}")
        buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    process = Process(conn, int(json.loads(line)["pid"]), [sys.executable, "-m", module, *args])
    process._buffer = rest
    return process


def run(
    module: str, args: list[str], *, timeout: float | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
    timeout=timeout, check=False)``, forked; stdin is the test process's, as there."""
    if _DISABLED:
        argv = [sys.executable, "-m", module, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = popen(module, args, stdout=out, stderr=err, env=env)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        encoding = locale.getpreferredencoding(False)

        def decode(data: bytes) -> str:  # subprocess's text mode
            return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")

        return subprocess.CompletedProcess(
            process.args, process.wait(), decode(out.read()), decode(err.read())
        )
