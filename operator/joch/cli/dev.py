"""`joch dev run`: the main job on the embedded local control plane (what `make run` runs).

It starts a real kube-apiserver on the embedded default store (kine over SQLite, state kept under
``<state dir>/run``; ``--store postgres|etcd`` chooses another for a new state directory), installs
the CRDs, starts the operator (controllers, admission webhooks, decision service), applies examples/,
waits until every Agent is Ready, shows the statuses and compiled manifests, and keeps everything up
until interrupted. Run again on the same state directory, it finds the fleet as it was: the store
keeps its data across runs (``make dev-clean`` removes it).

`joch dev token --user U [--group G ...]`: a token of the local control plane's OIDC issuer
(joch.devcluster.oidc) for U in the groups G, for ``kubectl --token`` (docs/identity.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from joch.devcluster import cluster, oidc, stores

DEFAULT_STORE = "sqlite"
"""The store of a new `joch dev run` state directory (the embedded default)."""


def register(commands: Any) -> None:
    dev: argparse.ArgumentParser = commands.add_parser(
        "dev", help="local development control plane", description="Local development control plane."
    )
    sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND", required=True)
    run_parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="start a local control plane, install CRDs, apply examples and show them",
        description="Start kube-apiserver on a local store (default: SQLite through kine) on loopback, "
        "install the CRDs from --crds, start the "
        "operator, apply every file in --examples with kubectl, wait until every Agent is Ready and print "
        "their statuses and compiled manifests. Runs until Ctrl-C, then stops everything it started.",
    )
    run_parser.add_argument(
        "--state-dir", type=pathlib.Path, default=pathlib.Path(".dev"), help="state folder"
    )
    run_parser.add_argument(
        "--store",
        choices=stores.STORES,
        help="the resource store (default: the one the state folder was created with, else "
        f"{DEFAULT_STORE}); naming another than the recorded one is refused",
    )
    run_parser.add_argument("--crds", type=pathlib.Path, default=pathlib.Path("crds"), help="CRD folder")
    run_parser.add_argument(
        "--examples", type=pathlib.Path, default=pathlib.Path("examples"), help="examples"
    )
    run_parser.add_argument(
        "--exit", action="store_true", help="stop after showing the examples instead of waiting for Ctrl-C"
    )
    run_parser.add_argument(
        "--ready-timeout", type=int, default=180, help="seconds to wait for every Agent to be Ready"
    )
    run_parser.set_defaults(handler=run)

    token_parser: argparse.ArgumentParser = sub.add_parser(
        "token",
        help="print a token of the local control plane's OIDC issuer for a user and groups",
        description="Mint a JWT signed by the local control plane's OIDC issuer (`make run` or `make "
        "dev-up`) for --user in the --group groups and print it on one line, for `kubectl --token`. "
        "kube-apiserver maps the token's sub claim to the username and its groups claim to the groups.",
    )
    token_parser.add_argument("--user", required=True, help="the username (the token's sub claim)")
    token_parser.add_argument(
        "--group", action="append", default=[], dest="groups", help="a group (repeatable)"
    )
    token_parser.add_argument(
        "--ttl", type=duration, default=3600.0, help="lifetime, e.g. 90s, 30m, 1h, 2d (default 1h)"
    )
    token_parser.add_argument("--audience", default=oidc.AUDIENCE, help="the aud claim (default joch)")
    token_parser.add_argument(
        "--state-dir",
        type=pathlib.Path,
        default=pathlib.Path(".dev"),
        help="the state folder of `joch dev run` (its control plane is in <folder>/run) or of a control "
        "plane (`make dev-up`); default .dev",
    )
    token_parser.set_defaults(handler=token)


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


@contextlib.contextmanager
def _operator(kubeconfig: pathlib.Path, log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    """`joch operator` against the local control plane, logging to ``log``; stopped on exit."""
    argv = [
        sys.executable,
        "-m",
        "joch.cli.main",
        "operator",
        "--kubeconfig",
        str(kubeconfig),
        *OPERATOR_FLAGS,
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(log: pathlib.Path, name: str) -> str | None:
    """Where the operator's server ``name`` listens (HOST:PORT), from its start-up line
    (``joch operator: ..., api on HOST:PORT, grpc on HOST:PORT``); None when it does not serve it."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("joch operator: ") and f" {name} on " in line:
            return line.split(f" {name} on ", 1)[1].split(",", 1)[0].strip()
    return None


def _api_url(log: pathlib.Path) -> str | None:
    """The /v1 API's URL (local mode: plain HTTP); None when the operator does not serve it."""
    address = _listening(log, "api")
    return f"http://{address}" if address else None


def _grpc_address(log: pathlib.Path) -> str | None:
    """The gRPC server's HOST:PORT (local mode: plaintext); None when the operator does not serve it."""
    return _listening(log, "grpc")


OPERATOR_FLAGS: tuple[str, ...] = ("--execution-pod-annotation-prefix", "devcluster.joch.dev/")
"""Extra `joch operator` flags for the local run: Execution annotations under devcluster.joch.dev/ reach
the fake Pods (joch.devcluster.workloads: how long a fake run takes, its exit code)."""


def _show_agents(kubectl: _Kubectl) -> None:
    agents = json.loads(kubectl("get", "agents", "-A", "-o", "json", show=False).stdout)["items"]
    for agent in agents:
        meta, status = agent["metadata"], agent.get("status", {})
        print(f"\n==> Agent {meta['namespace']}/{meta['name']}: phase {status.get('phase')}", flush=True)
        for condition in status.get("conditions", []):
            reason, message = condition.get("reason", ""), condition.get("message", "")
            print(f"    {condition['type']:<16} {condition['status']:<6} {reason}: {message}")
        manifest = status.get("compiledManifest")
        if manifest:
            print(f"==> CompiledAgentManifest {manifest['name']} (sha256 {manifest['sha256'][:12]}...)")
            data = kubectl(
                "get", "configmap", manifest["name"], "-n", meta["namespace"], "-o", "json", show=False
            )
            sys.stdout.write(json.loads(data.stdout)["data"]["manifest.yaml"])


def run(args: argparse.Namespace) -> int:
    state_dir: pathlib.Path = (args.state_dir / "run").absolute()
    try:
        store = stores.choose_store(state_dir, args.store, default=DEFAULT_STORE)
    except stores.StoreError as exc:
        print(f"joch: {exc}", file=sys.stderr)
        return 1
    print(f"==> starting kube-apiserver on the {store} store (state in {state_dir})", flush=True)
    stop = threading.Event()

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    try:
        with cluster.ControlPlane(state_dir, store=store) as plane:
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
            log = state_dir / "operator.log"
            print(f"==> starting the operator (log: {log})", flush=True)
            with _operator(plane.kubeconfig, log) as operator:
                print(f"==> applying {args.examples}/", flush=True)
                kubectl("apply", "-f", str(args.examples))
                print("==> waiting until every Agent is Ready", flush=True)
                kubectl(
                    "wait",
                    "--for=condition=Ready",
                    f"--timeout={args.ready_timeout}s",
                    "agents",
                    "--all",
                    "-A",
                )
                print("==> kubectl get joch -A", flush=True)
                kubectl("get", "joch", "-A")
                _show_agents(kubectl)
                if args.exit:
                    return 0
                bin_dir = cluster.find_binary("kubectl").parent
                # Handlers first: a Ctrl-C right after the message below must stop cleanly too.
                signal.signal(signal.SIGTERM, _interrupt)
                signal.signal(signal.SIGINT, _interrupt)
                print(
                    f"\nThe control plane and the operator stay up until Ctrl-C. In another shell:\n"
                    f"  export KUBECONFIG={plane.kubeconfig} PATH={bin_dir}:$PATH\n"
                    f"  kubectl get joch -A\n",
                    flush=True,
                )
                api = _api_url(log)
                if api:
                    print(
                        f"The /v1 API (docs/api.md) listens on {api}; sign in with a local issuer's token:\n"
                        f"  TOKEN=$(joch dev token --user you --group team)\n"
                        f'  curl -H "Authorization: Bearer $TOKEN" {api}/v1/namespaces/default/agents\n',
                        flush=True,
                    )
                grpc_address = _grpc_address(log)
                if grpc_address:
                    print(
                        f"The gRPC server (docs/grpc.md) listens on {grpc_address} (plaintext); with the "
                        f"same token:\n"
                        f"  grpcurl -plaintext {grpc_address} list\n"
                        f'  grpcurl -plaintext -H "authorization: Bearer $TOKEN" '
                        f'-d \'{{"kind": "Agent", "namespace": "default"}}\' {grpc_address} '
                        f"joch.v1.ResourceService/List\n",
                        flush=True,
                    )
                while not stop.wait(1.0):
                    plane.check_alive()
                    if operator.poll() is not None:
                        print(
                            f"joch: the operator exited ({operator.returncode}); see {log}", file=sys.stderr
                        )
                        return 1
                print("==> stopping", flush=True)
    except cluster.ControlPlaneError as exc:
        print(f"joch: {exc}", file=sys.stderr)
        return 1
    return 0


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """A positive duration: a number of seconds or a number with a unit s, m, h or d (``1h``)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration above 0 such as 90s, 30m, 1h or 2d")
    return float(match[1]) * _UNITS[match[2]]


def _token_state_dir(folder: pathlib.Path) -> pathlib.Path | None:
    """The control plane state directory for ``folder``: ``folder/run`` (`joch dev run`) or ``folder``
    itself (`python -m joch.devcluster up`), whichever has a running control plane's OIDC issuer."""
    for candidate in (folder / "run", folder):
        if cluster.read_state(candidate) is not None and oidc.issuer_url(candidate) is not None:
            return candidate.absolute()
    return None


def token(args: argparse.Namespace) -> int:
    state_dir = _token_state_dir(args.state_dir)
    if state_dir is None:
        print(
            f"joch: no running local control plane with an OIDC issuer in {args.state_dir}/run or "
            f"{args.state_dir} (start one with `make run` or `make dev-up`, or pass --state-dir)",
            file=sys.stderr,
        )
        return 1
    state = cluster.read_state(state_dir)
    issuer = (state.oidc_issuer if state is not None else "") or oidc.issuer_url(state_dir)
    try:
        minted = oidc.mint(
            state_dir, args.user, args.groups, audience=args.audience, ttl_seconds=args.ttl, issuer=issuer
        )
    except (oidc.OIDCError, OSError, ValueError) as exc:
        print(f"joch: {exc}", file=sys.stderr)
        return 1
    print(minted)
    return 0
