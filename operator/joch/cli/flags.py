"""Flags every ``joch`` command spells and parses the same way.

- values: :func:`port`, :func:`positive_int`, :func:`positive_float`, :func:`seconds` (argparse
  ``type=`` callables whose errors name the value and the rule);
- the cluster: :func:`add_kube_flags` (``--kubeconfig``, ``--context``);
- operator settings: :func:`add_settings_flags` and :func:`settings_from` (flags over
  ``$JOCH_*`` over the defaults), :func:`add_cel_backend_flag` alone where only policies compile
  (``joch policy eval``). The CLI is the only layer that reads ``$JOCH_*``: joch.domain is handed an
  OperatorSettings;
- logging: :func:`add_verbosity_flags` and :func:`configure_logging`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from collections.abc import Mapping

import kopf

from joch.domain.policy import cel
from joch.domain.settings import OperatorSettings

__all__ = [
    "add_cel_backend_flag",
    "add_kube_flags",
    "add_settings_flags",
    "add_verbosity_flags",
    "cel_backend",
    "configure_logging",
    "port",
    "positive_float",
    "positive_int",
    "seconds",
    "settings_from",
]


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: none, or a free one, as the flag's help says)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text!r}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds >= 0 (0: disabled)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0")
    return value


def cel_backend(text: str) -> str:
    """A CEL backend name or alias, as its canonical name."""
    try:
        return cel.canonical_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_kube_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--kubeconfig PATH``, ``--context NAME`` and ``--as USER`` (attributes ``kubeconfig``, ``context``,
    ``as_user``)."""
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: in-cluster, or $KUBECONFIG)"
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="act as USER (impersonation, like kubectl --as; needs the impersonate verb)",
    )


def add_cel_backend_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--cel-backend NAME``, read by :func:`settings_from`."""
    parser.add_argument(
        "--cel-backend",
        type=cel_backend,
        metavar="NAME",
        help=f"CEL library that policies compile and run with: {cel.CEL_RUST} (Rust) or {cel.CEL_PYTHON} "
        f"(pure Python) (default: $JOCH_CEL_BACKEND or {cel.DEFAULT_BACKEND})",
    )


def add_settings_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--shared-namespaces``, ``--default-environment`` and ``--cel-backend``, read by
    :func:`settings_from`."""
    defaults = OperatorSettings()
    parser.add_argument(
        "--shared-namespaces",
        metavar="NS,NS",
        help="namespaces whose objects (Policies, Models, Tools...) every namespace may use "
        f"(default: $JOCH_SHARED_NAMESPACES or {','.join(defaults.shared_namespaces)})",
    )
    parser.add_argument(
        "--default-environment",
        metavar="ENV",
        help="environment of Agents no label places (default: $JOCH_DEFAULT_ENVIRONMENT or "
        f"{defaults.default_environment})",
    )
    add_cel_backend_flag(parser)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> OperatorSettings:
    """The operator settings: flags over ``$JOCH_*`` over the defaults (raises SettingsError)."""
    settings = OperatorSettings.from_environ(environ)
    shared = getattr(args, "shared_namespaces", None)
    if shared is not None:
        names = tuple(ns.strip() for ns in shared.split(",") if ns.strip())
        settings = dataclasses.replace(settings, shared_namespaces=names)
    environment = getattr(args, "default_environment", None)
    if environment:
        settings = dataclasses.replace(settings, default_environment=environment)
    backend = getattr(args, "cel_backend", None)
    if backend:
        settings = dataclasses.replace(settings, cel_backend=backend)
    callers = getattr(args, "decision_callers", None)
    if callers is not None:
        users = tuple(user.strip() for user in callers.split(",") if user.strip())
        settings = dataclasses.replace(settings, decision_callers=users)
    return settings


def add_verbosity_flags(parser: argparse.ArgumentParser, *, verbose: str) -> None:
    """``-v/--verbose`` (``verbose`` says what it adds), ``--debug``, ``-q/--quiet``; exclusive."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help=verbose)
    group.add_argument("--debug", action="store_true", help="log everything, kopf included")
    group.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def configure_logging(args: argparse.Namespace) -> None:
    """Plain-text logs at the level the verbosity flags chose. kopf logs every handler call at INFO,
    so below --debug it and urllib3 say only warnings; joch's own loggers follow the chosen level;
    py-serializable (the AgBOM serialiser) says only warnings, always."""
    kopf.configure(debug=args.debug, verbose=args.verbose, quiet=args.quiet, log_format=kopf.LogFormat.PLAIN)
    # cyclonedx-python-lib's serialiser logs every object it dumps (AgBOM documents) at debug: never
    # worth a line, even with --debug.
    logging.getLogger("py_serializable").setLevel(logging.WARNING)
    if not args.debug:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)
