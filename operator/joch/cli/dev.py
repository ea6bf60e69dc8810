"""`joch dev run`: the main job on the embedded local control plane (what `make run` runs).

It starts a real etcd + kube-apiserver, installs the CRDs, applies examples/, shows what is stored, and
keeps the control plane up until interrupted.
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import subprocess
import sys
import threading
from types import FrameType
from typing import Any

from joch.devcluster import cluster


def register(commands: Any) -> None:
    dev: argparse.ArgumentParser = commands.add_parser(
        "dev", help="local development control plane", description="Local development control plane."
    )
    sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND", required=True)
    run_parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="start a local control plane, install CRDs, apply examples and show them",
        description="Start etcd and kube-apiserver on loopback, install the CRDs from --crds, apply every "
        "file in --examples with kubectl and print `kubectl get joch -A`. Runs until Ctrl-C, then stops "
        "everything it started.",
    )
    run_parser.add_argument(
        "--state-dir", type=pathlib.Path, default=pathlib.Path(".dev"), help="state folder"
    )
    run_parser.add_argument("--crds", type=pathlib.Path, default=pathlib.Path("crds"), help="CRD folder")
    run_parser.add_argument(
        "--examples", type=pathlib.Path, default=pathlib.Path("examples"), help="examples"
    )
    run_parser.add_argument(
        "--exit", action="store_true", help="stop after showing the examples instead of waiting for Ctrl-C"
    )
    run_parser.set_defaults(handler=run)


class _Kubectl:
    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.binary = str(cluster.find_binary("kubectl"))
        self.kubeconfig = str(kubeconfig)

    def __call__(self, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, "--kubeconfig", self.kubeconfig, *args]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if show:
            sys.stdout.write(done.stdout)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"joch: kubectl {' '.join(args)} failed (exit {done.returncode})")
        return done


def run(args: argparse.Namespace) -> int:
    state_dir: pathlib.Path = args.state_dir / "run"
    print(f"==> starting etcd + kube-apiserver (state in {state_dir})", flush=True)
    stop = threading.Event()

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    try:
        with cluster.ControlPlane(state_dir) as plane:
            print(f"    ready in {plane.startup_seconds:.1f}s at {plane.server}", flush=True)
            kubectl = _Kubectl(plane.kubeconfig)
            print(f"==> installing CRDs from {args.crds}/", flush=True)
            kubectl("apply", "--server-side", "-f", str(args.crds), show=False)
            kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd",
                "-l",
                "app.kubernetes.io/part-of=joch",
                show=False,
            )
            print(f"==> applying {args.examples}/", flush=True)
            kubectl("apply", "-f", str(args.examples))
            print("==> kubectl get joch -A", flush=True)
            kubectl("get", "joch", "-A")
            if args.exit:
                return 0
            print(
                f"\nThe control plane stays up until Ctrl-C. In another shell:\n"
                f"  export KUBECONFIG={plane.kubeconfig} PATH={cluster.find_binary('kubectl').parent}:$PATH\n"
                f"  kubectl get joch -A\n",
                flush=True,
            )
            signal.signal(signal.SIGTERM, _interrupt)
            signal.signal(signal.SIGINT, _interrupt)
            while not stop.wait(1.0):
                plane.check_alive()
            print("==> stopping", flush=True)
    except cluster.ControlPlaneError as exc:
        print(f"joch: {exc}", file=sys.stderr)
        return 1
    return 0
