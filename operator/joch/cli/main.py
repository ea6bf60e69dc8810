"""The `joch` command line: one sub-command per module in joch.cli."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from joch import __version__
from joch.cli import (
    agbom,
    apply,
    approvals,
    audit,
    cost,
    dev,
    evals,
    executions,
    manifests,
    mcp,
    operator,
    policy,
    validate,
)
from joch.cli import compile as compile_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joch",
        description="Joch: the control plane for AI agent fleets.",
    )
    parser.add_argument("--version", action="version", version=f"joch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (operator, manifests, compile_cmd, validate, apply, policy, dev, agbom, mcp, executions):
        module.register(commands)
    approvals.register(commands)
    cost.register(commands)
    evals.register(commands)
    audit.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
