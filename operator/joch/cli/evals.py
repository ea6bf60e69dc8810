"""``joch eval run NAME``: run an Eval now, on demand.

Creates the run (an Execution of the Eval's target Agent, trigger ``eval``, the dataset, metrics and
thresholds as its input; joch.domain.reconcile.evals.run_execution, the same run the operator makes on a
schedule or a promotion), prints the Execution's name and returns. ``--wait`` follows the run to its
end, then waits for the evals service to judge it and prints the result: the phase, each score, and for
a missed threshold the metric, the threshold and the measured value.

Exit codes: 0 created (``--wait``: Passed); 1 the Eval is missing or invalid, the API server refused the
run, or (``--wait``) the run Failed or was Inconclusive; 3 ``--wait-timeout`` elapsed (the run goes
on); 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from typing import Any, Final, TextIO
from urllib.parse import quote

import pydantic

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.eval import Eval
from joch.api.v1alpha1.execution import Execution
from joch.cli import flags
from joch.domain.reconcile import evals as plan
from joch.kube import errors
from joch.kube.rest import Cluster, ClusterError

__all__ = ["POLL_INTERVAL", "register", "run_eval"]

POLL_INTERVAL: float = 0.5
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_WAIT_TIMEOUT: Final = 3
_ENDED: Final = frozenset({"Passed", "Failed", "Inconclusive"})


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="Evals: run one now",
        description="Run Evals on demand (they also run on their schedule and when a gated Deployment "
        "promotes a new Agent generation).",
    )
    actions = parser.add_subparsers(dest="eval_command", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run an Eval now: create its Execution and print its name",
        description="Create a run of the Eval (an Execution of its target Agent, trigger eval) and print "
        "the Execution's name. --wait follows it to its end and prints the result (phase, scores, missed "
        "thresholds). Exit 0 created (--wait: Passed), 1 missing Eval, refused, or (--wait) Failed or "
        "Inconclusive, 3 still running at --wait-timeout, 2 usage or connection errors.",
    )
    run.add_argument("name", metavar="NAME", help="the Eval")
    run.add_argument("-n", "--namespace", default="default", help="its namespace (default: default)")
    run.add_argument("--wait", action="store_true", help="follow the run to its end and print the result")
    run.add_argument(
        "--wait-timeout",
        type=flags.positive_float,
        metavar="SECONDS",
        help="with --wait: stop waiting after this long and exit 3; the run goes on (default: no limit)",
    )
    flags.add_kube_flags(run)
    run.set_defaults(handler=run_eval)


class _Stop(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _path(resource: type[meta.Resource], namespace: str, name: str | None = None) -> str:
    crd = resource.crd
    base = f"/apis/{crd.group}/{meta.VERSION}/namespaces/{quote(namespace, safe='')}/{crd.plural}"
    return base if name is None else f"{base}/{quote(name, safe='')}"


def run_eval(args: argparse.Namespace, *, out: TextIO | None = None, cluster: Any = None) -> int:
    out = out or sys.stdout
    try:
        if cluster is None:
            try:
                cluster = Cluster.connect(
                    args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None)
                )
            except errors.ConfigError as exc:
                raise ClusterError(str(exc)) from None
        return _run(args, cluster, out)
    except ClusterError as exc:
        sys.stderr.write(f"joch eval run: error: {exc}\n")
        return EXIT_USAGE
    except _Stop as stop:
        sys.stderr.write(f"joch eval run: error: {stop.message}\n")
        return stop.code


def _get(cluster: Any, path: str, where: str) -> dict[str, Any]:
    answer = cluster.call("GET", path)
    if answer.status == 404:
        raise _Stop(EXIT_FAILED, f"{where} not found")
    if answer.error is not None or not isinstance(answer.body, dict):
        raise _Stop(EXIT_FAILED, f"{where}: {answer.error or 'the API server answered without an object'}")
    body: dict[str, Any] = answer.body
    return body


def _run(args: argparse.Namespace, cluster: Any, out: TextIO) -> int:
    namespace, name = args.namespace, args.name
    where = f"Eval {namespace}/{name}"
    stored = _get(cluster, _path(Eval, namespace, name), where)
    try:
        evaluation = Eval.model_validate(stored)
    except pydantic.ValidationError as exc:
        raise _Stop(EXIT_FAILED, f"{where} is not valid: {exc.errors()[0]['msg']}") from None
    run = plan.run_name(name, "m" + secrets.token_hex(3))
    body = plan.run_execution(
        evaluation, name=run, trigger="manual", uid=str((stored.get("metadata") or {}).get("uid") or "")
    )
    answer = cluster.call("POST", _path(Execution, namespace), body=body)
    for warning in answer.warnings:
        sys.stderr.write(f"Warning: {warning}\n")
    if answer.error is not None:
        raise _Stop(EXIT_FAILED, f"the API server refused the run of {where}: {answer.error}")
    out.write(f"Execution {namespace}/{run} created (Eval {name}, Agent {evaluation.spec.target.name})\n")
    out.flush()
    if not args.wait:
        return EXIT_OK
    return _wait(cluster, args, name, run, out)


def _wait(cluster: Any, args: argparse.Namespace, name: str, run: str, out: TextIO) -> int:
    """Poll the Eval until the service has judged ``run``; print the result."""
    namespace = args.namespace
    deadline = time.monotonic() + args.wait_timeout if args.wait_timeout else None
    where = f"Eval {namespace}/{name}"
    shown = None
    while True:
        stored = _get(cluster, _path(Eval, namespace, name), where)
        records = ((stored.get("status") or {}).get("runs")) or []
        record = next((r for r in records if isinstance(r, dict) and r.get("execution") == run), None)
        phase = record.get("phase") if record is not None else "Pending"
        if phase != shown:
            out.write(f"run {run}: {phase}\n")
            out.flush()
            shown = phase
        if record is not None and phase in _ENDED:
            for metric, score in sorted((record.get("scores") or {}).items()):
                out.write(f"  {metric}: {score:g}\n")
            if record.get("message"):
                out.write(f"  {record['message']}\n")
            return EXIT_OK if phase == "Passed" else EXIT_FAILED
        if deadline is not None and time.monotonic() >= deadline:
            raise _Stop(
                EXIT_WAIT_TIMEOUT,
                f"run {run} of {where} is still {phase} after --wait-timeout {args.wait_timeout:g}s; it "
                "goes on",
            )
        time.sleep(POLL_INTERVAL)
