"""The fork server behind tests/integration/forkserver.py (run as ``python _zygote.py SOCKET MODULE``).

It imports MODULE once (with everything MODULE imports), then for each request on SOCKET forks a child
that runs MODULE as ``__main__`` exactly as ``python -m MODULE ARGS`` would: its own argv, environment,
working directory, stdin/stdout/stderr (passed as file descriptors), optionally a new session; its exit
status is the interpreter's (SystemExit codes, 1 and a traceback for an uncaught exception, -N for a
signal). Only the ~5 s of imports are shared. The server is single-threaded (no locks held across fork)
and exits when its stdin (a pipe from the test process) closes.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import runpy
import selectors
import socket
import sys
import threading
import traceback
from typing import Any

_CWD = os.getcwd()
sys.path[0] = _CWD  # as for ``python -m``: the working directory first, not this file's folder


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(request: dict[str, Any], fds: list[int]) -> None:
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
    if request.get("setsid"):
        os.setsid()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]
    if os.environ.get("PYTHONUNBUFFERED"):
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(  # type: ignore[misc]
            io.FileIO(1, "w", closefd=False),
            encoding=sys.stdout.encoding,
            errors=sys.stdout.errors,
            write_through=True,
        )
    module = request["module"]
    sys.modules.pop(module, None)  # a fresh interpreter has not imported it before running it as __main__
    sys.argv = [module, *request["args"]]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter joins non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> None:
    path, module = sys.argv[1], sys.argv[2]
    __import__(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")
    waiting: dict[int, socket.socket] = {}
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(timeout=0.02):
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 1024):
                    return
                continue
            conn, _ = listener.accept()
            conn.settimeout(30)
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    selector.close()
                    listener.close()
                    conn.close()
                    _child(request, fds)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            waiting[pid] = conn
        while waiting:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            finished = waiting.pop(pid, None)
            if finished is not None:
                reply = {"returncode": os.waitstatus_to_exitcode(status)}
                with contextlib.suppress(OSError):  # the test process stopped listening
                    finished.sendall(json.dumps(reply).encode() + b"\n")
                finished.close()


if __name__ == "__main__":
    main()
