"""``joch cost by-team | by-agent``: what teams and agents spent, read back from the Budgets' ledgers.

The budgets service keeps, in each Budget's ``status.ledger``, the spend of finished runs per day (the
last 62) and per month (the last 24), closed periods included (docs/budgets.md). This command lists the
Budgets (``-n NS`` or ``-A``) and sums their ledgers from ``--since`` (a month ``YYYY-MM``, default this
month in UTC; or a day ``YYYY-MM-DD``), one row per team and Budget (``by-team``: the teams of
``spec.scope.teams``) or per agent and Budget (``by-agent``), highest spend first. A run several Budgets
cover appears under each of them.

Exit codes: 0 listed (even nothing), 1 refused by the API server, 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from typing import Any, Final, TextIO
from urllib.parse import quote

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.budget import Budget
from joch.cli import flags, paging
from joch.cli.executions import ApiCaller
from joch.domain.reconcile import budgets
from joch.kube import errors
from joch.kube.rest import Cluster, ClusterError

__all__ = ["register", "run"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
PAGE: Final = 500
_CRD: Final = Budget.crd
_BASE: Final = f"/apis/{_CRD.group}/{meta.VERSION}"
_PERIOD: Final = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")


def _since(text: str) -> str:
    if not _PERIOD.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a month YYYY-MM or a day YYYY-MM-DD")
    return text


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "cost",
        help="what teams and agents spent, from the Budgets' ledgers",
        description="Sum the spend the budgets service recorded in the Budgets' ledgers (finished runs, "
        "per day and per month), per team or per agent and Budget, highest first.",
        epilog="examples:\n"
        "  joch cost by-team -A                      # this month, every namespace\n"
        "  joch cost by-agent -n support --since 2026-11\n"
        "  joch cost by-team -n support --since 2026-12-01 -o json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    views = parser.add_subparsers(dest="cost_view", metavar="VIEW", required=True)
    for view, text in (("by-team", "per team and Budget"), ("by-agent", "per agent and Budget")):
        sub = views.add_parser(view, help=f"spend {text}", description=f"Spend {text}, highest first.")
        scope = sub.add_mutually_exclusive_group()
        scope.add_argument(
            "-n", "--namespace", default="default", help="namespace of the Budgets (default: default)"
        )
        scope.add_argument(
            "-A", "--all-namespaces", action="store_true", help="the Budgets of every namespace"
        )
        sub.add_argument(
            "--since",
            type=_since,
            metavar="PERIOD",
            help="from this month (YYYY-MM, default: this month, UTC) or day (YYYY-MM-DD, the last 62 days)",
        )
        sub.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
        flags.add_kube_flags(sub)
        sub.set_defaults(handler=run, cost_by=view.removeprefix("by-"))


def _list(cluster: ApiCaller, path: str) -> list[dict[str, Any]]:
    try:
        return paging.list_all(cluster, path, kind="Budgets", api_version=_CRD.api_version, page=PAGE)
    except paging.Unserved as exc:
        raise ClusterError(str(exc)) from None
    except paging.Refused as exc:
        raise PermissionError(str(exc)) from None


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    cluster: ApiCaller | None = None,
    now: datetime.datetime | None = None,
) -> int:
    out = out or sys.stdout
    since = args.since or (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m")
    if args.all_namespaces:
        path = f"{_BASE}/{_CRD.plural}"
    else:
        path = f"{_BASE}/namespaces/{quote(args.namespace, safe='')}/{_CRD.plural}"
    try:
        if cluster is None:
            try:
                cluster = Cluster.connect(args.kubeconfig, args.context, impersonate=args.as_user)
            except errors.ConfigError as exc:
                raise ClusterError(str(exc)) from None
        items = _list(cluster, path)
    except ClusterError as exc:
        sys.stderr.write(f"joch cost: error: {exc}\n")
        return EXIT_USAGE
    except PermissionError as exc:
        sys.stderr.write(f"joch cost: error: {exc}\n")
        return EXIT_FAILED
    rows = budgets.spend(items, by=args.cost_by, since=since)
    if args.output == "json":
        document = [
            {
                "who": r.who,
                "budget": r.budget,
                "spentUsd": r.spent_usd,
                "executions": r.executions,
                "since": since,
            }
            for r in rows
        ]
        out.write(json.dumps(document, indent=2) + "\n")
        return EXIT_OK
    if not rows:
        where = "any namespace" if args.all_namespaces else f"namespace {args.namespace}"
        out.write(f"No spend recorded since {since} in {where}.\n")
        return EXIT_OK
    head = ("TEAM" if args.cost_by == "team" else "AGENT", "BUDGET", "SPENT (USD)", "RUNS")
    table = [head] + [
        (r.who, r.budget, f"{r.spent_usd:.2f}", "-" if r.executions is None else str(r.executions))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        out.write(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    out.write(f"since {since}\n")
    return EXIT_OK
