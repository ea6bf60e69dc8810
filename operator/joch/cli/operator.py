"""`joch operator`: run the controller-manager (each Agent compiled into a manifest ConfigMap, kept current).

    joch operator [--kubeconfig PATH] [--context NAME] [-n NS ...|-A] [--workers N]
                  [--shared-namespaces NS,NS] [--default-environment ENV]
                  [--concurrency N] [--write-rate N] [--write-burst N] [--event-rate N] [-v|--debug|-q]

Without ``--kubeconfig`` it runs in-cluster when in a pod, else with $KUBECONFIG / ~/.kube/config.
Without ``--namespace`` it manages every namespace (cluster-wide). Operator settings not given as flags
come from the JOCH_* environment variables (joch.domain.settings). SIGINT or SIGTERM stops it cleanly.
Also runnable as ``python -m joch.cli.operator``. docs/operator.md explains what it does.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import kopf

from joch.controllers import operator as controller_operator
from joch.controllers.reconciler import ControllerConfig
from joch.domain.settings import OperatorSettings, SettingsError
from joch.kube import client, errors

__all__ = ["build_parser", "main", "options_from", "register", "run"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: in-cluster or $KUBECONFIG)"
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="manage Agents in this namespace only (repeatable; shared namespaces are watched too)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="manage every namespace (the default)"
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=16, help="keys reconciled at once (default 16)"
    )
    parser.add_argument(
        "--shared-namespaces",
        metavar="NS,NS",
        help="namespaces any Agent may reference (default: $JOCH_SHARED_NAMESPACES or joch-system)",
    )
    parser.add_argument(
        "--default-environment",
        metavar="ENV",
        help="environment of Agents no label places (default: $JOCH_DEFAULT_ENVIRONMENT or dev)",
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=16, help="API requests in flight at once (default 16)"
    )
    parser.add_argument(
        "--write-rate",
        type=_positive_float,
        default=200.0,
        help="sustained API writes per second (default 200)",
    )
    parser.add_argument("--write-burst", type=_positive_int, default=50, help="write burst size (default 50)")
    parser.add_argument(
        "--event-rate", type=_positive_float, default=20.0, help="Kubernetes Events per second (default 20)"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log every reconcile")
    verbosity.add_argument("--debug", action="store_true", help="log everything, kopf included")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "operator",
        help="run the operator (controller-manager): compile every Agent and keep it current",
        description="Watch Agents and everything they reference, compile each Agent into a "
        "CompiledAgentManifest ConfigMap <agent>-g<generation>, and keep statuses and manifests current. "
        "Runs until SIGINT or SIGTERM.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def options_from(args: argparse.Namespace) -> controller_operator.OperatorOptions:
    """Operator options from parsed arguments (raises SettingsError on unusable settings)."""
    settings = OperatorSettings.from_environ(os.environ)
    if args.shared_namespaces is not None:
        shared = tuple(ns.strip() for ns in args.shared_namespaces.split(",") if ns.strip())
        settings = dataclasses.replace(settings, shared_namespaces=shared)
    if args.default_environment:
        settings = dataclasses.replace(settings, default_environment=args.default_environment)
    return controller_operator.OperatorOptions(
        kubeconfig=args.kubeconfig,
        context=args.context,
        controller=ControllerConfig(
            settings=settings,
            namespaces=tuple(dict.fromkeys(args.namespaces)),
            workers=args.workers,
            event_rate=args.event_rate,
        ),
        limits=client.Limits(
            concurrency=args.concurrency, writes_per_second=args.write_rate, write_burst=args.write_burst
        ),
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except SettingsError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 2
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet, log_format=kopf.LogFormat.PLAIN)
    if not args.debug:
        # kopf logs every handler invocation at INFO; the operator's own log says what matters.
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        controller_operator.run(options)
    except errors.KubeError as exc:
        sys.stderr.write(f"joch operator: error: {exc}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joch operator", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
