"""``joch approvals ls | get | decide | override | acknowledge``: list, show and answer Approvals.

An Approval (runtime.joch.dev/v1alpha1) is a request for a human decision that a Policy (a held tool
call) or a promotion gate asked for. ``ls`` lists them oldest first (``--pending``: only those still
waiting), ``get`` describes one. The other three write its status subresource with a merge patch:

- ``decide`` sends ``status.decision``, ``status.phase`` (Approved for approve and edit, Rejected for
  reject) and ``status.rationale``; a rejection needs a rationale (checked here, and by the server);
- ``override`` sends ``status.phase: Overridden`` and ``status.override.reason`` (break-glass, of a
  Pending, Rejected or Expired one);
- ``acknowledge`` sends ``status.review.required: false`` and the auditor's ``status.review.note``.

Who decided, overrode or acknowledged, and when, is never sent: the server stamps ``decidedBy`` /
``decidedAt``, ``override.by`` / ``override.at`` and ``review.acknowledgedBy`` / ``acknowledgedAt`` from
the authenticated user and its own clock, and the success line names the user it recorded.

Exit codes: 0 ok, 1 not found or refused by the API server (its message is printed), 2 usage or
connection errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TextIO
from urllib.parse import quote

import yaml

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.approval import Approval
from joch.cli import flags, paging
from joch.cli.executions import MERGE_PATCH, ApiCaller, format_age
from joch.domain.admission.promotion import DEPLOYMENT_LABEL
from joch.domain.reconcile.approvals import DECISION_PHASES, decide_body
from joch.kube import errors
from joch.kube.rest import Answer, Cluster, ClusterError

__all__ = [
    "DECISION_PHASES",
    "PENDING",
    "decide_body",
    "format_expires",
    "register",
    "run_acknowledge",
    "run_decide",
    "run_get",
    "run_ls",
    "run_override",
]

PENDING: Final = "Pending"

PAGE: Final = 500
OUTPUTS: Final = ("table", "json", "yaml")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

_CRD: Final = Approval.crd
_BASE: Final = f"/apis/{_CRD.group}/{meta.VERSION}"
_COLUMNS: Final = ("NAME", "ACTION", "AGENT", "TOOL", "RISK", "PHASE", "DECIDED BY", "AGE", "EXPIRES")
_DECIDED: Final = {"approve": "approved", "edit": "approved (edit)", "reject": "rejected"}


class _Stop(Exception):
    """End the command with this exit code and error message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps text with line breaks (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# --- the command line -----------------------------------------------------------------------------------


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "approvals",
        aliases=["appr"],
        help="Approvals: list them, show one, decide, override or acknowledge one",
        description="List and show Approvals (requests for a human decision about a held tool call, a "
        "promotion or an override) and answer them. Who decided and when is stamped by the server from "
        "the authenticated user, never sent by joch.",
        epilog="examples:\n"
        "  joch approvals ls --pending -n support\n"
        "  joch approvals get refund-4711-x2k9 -n support\n"
        "  joch approvals decide refund-4711-x2k9 -n support --decision approve\n"
        "  joch approvals decide refund-4711-x2k9 -n support --decision reject --rationale 'over the limit'\n"
        "  joch approvals override refund-4711-x2k9 -n support --reason 'INC-802: customer refund ordered'\n"
        "  joch approvals acknowledge refund-4711-x2k9 -n support --note 'reviewed with finance'\n",
        formatter_class=_HelpFormatter,
    )
    actions = parser.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "ls",
        aliases=["list"],
        help="list Approvals, oldest first",
        description="List Approvals, oldest first: name, action, the agent waiting (else its Execution, "
        "else the Deployment of a promotion), tool, risk, phase, who decided, age, and when a pending "
        "one expires. Exit 0 listed (even none), 1 refused by the API server, 2 usage or connection "
        "errors.",
        epilog="examples:\n"
        "  joch approvals ls --pending            # what is waiting for a decision in namespace default\n"
        "  joch approvals ls -A -o yaml           # every Approval, as a List\n",
        formatter_class=_HelpFormatter,
    )
    scope = listing.add_mutually_exclusive_group()
    _add_namespace(scope, "namespace to list (default: default)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list every namespace (adds a NAMESPACE column)"
    )
    listing.add_argument(
        "--pending", action="store_true", help="only those waiting for a decision (phase Pending or none yet)"
    )
    _add_output(listing)
    flags.add_kube_flags(listing)
    listing.set_defaults(handler=run_ls)

    get = actions.add_parser(
        "get",
        help="describe one Approval",
        description="Describe one Approval: the action and its input summary, who asked, the approvers "
        "and timeout, the Policy and the risk, then the decision (phase, decision, who decided, when, "
        "why), and the override and its review if any. Exit 0 shown, 1 not found or refused, 2 usage or "
        "connection errors.",
        epilog="examples:\n"
        "  joch approvals get refund-4711-x2k9 -n support\n"
        "  joch approvals get refund-4711-x2k9 -n support -o json\n",
        formatter_class=_HelpFormatter,
    )
    get.add_argument("name", metavar="ID", help="the Approval")
    _add_namespace(get, "its namespace (default: default)")
    _add_output(get)
    flags.add_kube_flags(get)
    get.set_defaults(handler=run_get)

    decide = actions.add_parser(
        "decide",
        help="approve, reject or edit a pending Approval",
        description="Answer a pending Approval: a merge patch of its status subresource with the "
        "decision, the phase it leads to (approve and edit: Approved; reject: Rejected) and the "
        "rationale. decidedBy and decidedAt are never sent: the server stamps them from the "
        "authenticated user and its clock. It refuses a decision by anyone the routing does not name or "
        "by the requester, one after the Approval expired, and any change once it is decided (decisions "
        "are immutable). Exit 0 decided, "
        "1 not found or refused (the server's message is printed), 2 usage (reject without --rationale) "
        "or connection errors.",
        epilog="examples:\n"
        "  joch approvals decide refund-4711-x2k9 -n support --decision approve --rationale 'known'\n"
        "  joch approvals decide refund-4711-x2k9 -n support --decision reject --rationale 'too much'\n",
        formatter_class=_HelpFormatter,
    )
    decide.add_argument("name", metavar="ID", help="the Approval")
    decide.add_argument(
        "--decision",
        required=True,
        choices=tuple(DECISION_PHASES),
        help="approve; reject; edit (approve with an edited input)",
    )
    decide.add_argument(
        "--rationale", metavar="TEXT", help="why (status.rationale; required to reject, kept for the audit)"
    )
    _add_namespace(decide, "its namespace (default: default)")
    flags.add_kube_flags(decide)
    decide.set_defaults(handler=run_decide)

    override = actions.add_parser(
        "override",
        help="break-glass: override a pending, rejected or expired Approval",
        description="Break-glass: override a Pending, Rejected or Expired Approval (phase Overridden), "
        "with a reason. Needs the joch-break-glass role; refused for the requester of the Approval and for "
        "service accounts. The server stamps override.by and override.at, leaves a Warning Event on the "
        "Approval and opens a review that an auditor must acknowledge (joch approvals acknowledge). Exit "
        "0 overridden, 1 not found or refused (the server's message is printed), 2 usage or connection "
        "errors.",
        epilog="examples:\n"
        "  joch approvals override refund-4711-x2k9 -n support --reason 'INC-802: refund ordered by legal'\n",
        formatter_class=_HelpFormatter,
    )
    override.add_argument("name", metavar="ID", help="the Approval")
    override.add_argument(
        "--reason", required=True, metavar="TEXT", help="why the override is needed (status.override.reason)"
    )
    _add_namespace(override, "its namespace (default: default)")
    flags.add_kube_flags(override)
    override.set_defaults(handler=run_override)

    acknowledge = actions.add_parser(
        "acknowledge",
        aliases=["ack"],
        help="auditor: acknowledge the review of an override",
        description="Acknowledge the review an override opened (status.review.required becomes false), "
        "with an optional note. Needs the joch-auditor role; refused for the user who overrode. The "
        "server stamps review.acknowledgedBy and review.acknowledgedAt. Exit 0 acknowledged, 1 not found "
        "or refused (the server's message is printed), 2 usage or connection errors.",
        epilog="examples:\n"
        "  joch approvals acknowledge refund-4711-x2k9 -n support --note 'reviewed with finance, INC-802'\n",
        formatter_class=_HelpFormatter,
    )
    acknowledge.add_argument("name", metavar="ID", help="the Approval")
    acknowledge.add_argument("--note", metavar="TEXT", help="the auditor's note (status.review.note)")
    _add_namespace(acknowledge, "its namespace (default: default)")
    flags.add_kube_flags(acknowledge)
    acknowledge.set_defaults(handler=run_acknowledge)


def _add_namespace(parser: argparse.ArgumentParser | argparse._ArgumentGroup, text: str) -> None:
    parser.add_argument("-n", "--namespace", default="default", help=text)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="table", help="output format (default: table)"
    )


# --- joch approvals ls | get ----------------------------------------------------------------------------


def run_ls(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    cluster: ApiCaller | None = None,
    now: datetime.datetime | None = None,
) -> int:
    out = out or sys.stdout
    everywhere = bool(args.all_namespaces)
    path = f"{_BASE}/{_CRD.plural}" if everywhere else _collection(args.namespace)
    try:
        cluster = cluster or _connect(args)
        items = _list(cluster, path)
    except ClusterError as exc:
        return _fail("approvals ls", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("approvals ls", stop.code, stop.message)
    if args.pending:
        items = [item for item in items if _phase(item) == PENDING]
    items.sort(key=_creation_order)
    if args.output != "table":
        _dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output, out)
        return EXIT_OK
    if not items:
        which = " pending" if args.pending else ""
        scope = "" if everywhere else f" in namespace {args.namespace}"
        sys.stderr.write(f"No{which} Approvals found{scope}.\n")
        return EXIT_OK
    moment = now or _utcnow()
    header = ("NAMESPACE", *_COLUMNS) if everywhere else _COLUMNS
    rows = [_row(item, moment, with_namespace=everywhere) for item in items]
    out.write(_table([header, *rows]))
    return EXIT_OK


def run_get(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    cluster: ApiCaller | None = None,
    now: datetime.datetime | None = None,
) -> int:
    out = out or sys.stdout
    where = _where(args)
    try:
        cluster = cluster or _connect(args)
        approval = _get(cluster, _object_path(args.namespace, args.name), where)
    except ClusterError as exc:
        return _fail("approvals get", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("approvals get", stop.code, stop.message)
    if args.output != "table":
        _dump(approval, args.output, out)
        return EXIT_OK
    _write_fields(_description(approval, now or _utcnow()), out)
    return EXIT_OK


# --- joch approvals decide | override | acknowledge -----------------------------------------------------


def run_decide(
    args: argparse.Namespace, *, out: TextIO | None = None, cluster: ApiCaller | None = None
) -> int:
    rationale = args.rationale if args.rationale and args.rationale.strip() else None
    if args.decision == "reject" and rationale is None:
        return _fail(
            "approvals decide",
            EXIT_USAGE,
            "--rationale is required to reject: say why, for the requester and the audit trail",
        )
    return _patch_status(
        "approvals decide",
        args,
        decide_body(args.decision, rationale),
        lambda status: _by(_DECIDED[args.decision], status.get("decidedBy")),
        out=out,
        cluster=cluster,
    )


def run_override(
    args: argparse.Namespace, *, out: TextIO | None = None, cluster: ApiCaller | None = None
) -> int:
    if not args.reason.strip():
        return _fail("approvals override", EXIT_USAGE, "--reason must say why the override is needed")
    body = {"status": {"phase": "Overridden", "override": {"reason": args.reason}}}
    return _patch_status(
        "approvals override",
        args,
        body,
        lambda status: _by("overridden", _mapping(status.get("override")).get("by")),
        out=out,
        cluster=cluster,
    )


def run_acknowledge(
    args: argparse.Namespace, *, out: TextIO | None = None, cluster: ApiCaller | None = None
) -> int:
    review: dict[str, Any] = {"required": False}
    if args.note is not None:
        review["note"] = args.note
    return _patch_status(
        "approvals acknowledge",
        args,
        {"status": {"review": review}},
        lambda status: _by("review acknowledged", _mapping(status.get("review")).get("acknowledgedBy")),
        out=out,
        cluster=cluster,
    )


def _patch_status(
    command: str,
    args: argparse.Namespace,
    body: dict[str, Any],
    done: Callable[[dict[str, Any]], str],
    *,
    out: TextIO | None,
    cluster: ApiCaller | None,
) -> int:
    """Merge-patch the status subresource with ``body``; print ``approval/ID <done(status)>``."""
    out = out or sys.stdout
    where = _where(args)
    path = f"{_object_path(args.namespace, args.name)}/status"
    try:
        cluster = cluster or _connect(args)
        answer = cluster.call("PATCH", path, body=body, content_type=MERGE_PATCH)
    except ClusterError as exc:
        return _fail(command, EXIT_USAGE, str(exc))
    _warn(answer)
    if answer.status == 404:
        return _fail(command, EXIT_FAILED, f"{where} not found")
    if answer.error is not None:
        return _fail(command, EXIT_FAILED, f"{where}: the API server refused: {answer.error}")
    patched = answer.body if isinstance(answer.body, dict) else {}
    out.write(f"approval/{args.name} {done(_status(patched))}\n")
    return EXIT_OK


def _by(what: str, who: Any) -> str:
    return f"{what} by {who}" if who else what


# --- API helpers ----------------------------------------------------------------------------------------


def _connect(args: argparse.Namespace) -> Cluster:
    """The cluster of ``--kubeconfig`` / ``--context``; an unusable kubeconfig raises ClusterError."""
    try:
        return Cluster.connect(args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None))
    except errors.ConfigError as exc:
        raise ClusterError(str(exc)) from None


def _where(args: argparse.Namespace) -> str:
    return f"Approval {args.namespace}/{args.name}"


def _collection(namespace: str) -> str:
    return f"{_BASE}/namespaces/{quote(namespace, safe='')}/{_CRD.plural}"


def _object_path(namespace: str, name: str) -> str:
    return f"{_collection(namespace)}/{quote(name, safe='')}"


def _get(cluster: ApiCaller, path: str, where: str) -> dict[str, Any]:
    answer = cluster.call("GET", path)
    if answer.status == 404:
        raise _Stop(EXIT_FAILED, f"{where} not found")
    if answer.error is not None:
        raise _Stop(EXIT_FAILED, f"{where}: {answer.error}")
    if not isinstance(answer.body, dict):
        raise _Stop(EXIT_FAILED, f"{where}: the API server answered without an object")
    return answer.body


def _list(cluster: ApiCaller, path: str) -> list[dict[str, Any]]:
    try:
        return paging.list_all(cluster, path, kind="Approvals", api_version=_CRD.api_version, page=PAGE)
    except paging.ListFailed as exc:
        raise _Stop(EXIT_FAILED, str(exc)) from None


def _warn(answer: Answer) -> None:
    for warning in answer.warnings:
        sys.stderr.write(f"Warning: {warning}\n")


def _fail(command: str, code: int, message: str) -> int:
    sys.stderr.write(f"joch {command}: error: {message}\n")
    return code


# --- reading an Approval --------------------------------------------------------------------------------


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _status(approval: Mapping[str, Any]) -> dict[str, Any]:
    return _mapping(approval.get("status"))


def _spec(approval: Mapping[str, Any]) -> dict[str, Any]:
    return _mapping(approval.get("spec"))


def _phase(approval: Mapping[str, Any]) -> str:
    """status.phase; an Approval the operator has not seen yet is Pending."""
    return str(_status(approval).get("phase") or PENDING)


def _agent(approval: Mapping[str, Any]) -> str:
    """The Agent waiting; else its Execution; else, for a promotion, the Deployment label; else ``-``."""
    spec = _spec(approval)
    requested = _mapping(spec.get("requestedBy"))
    for key in ("agentRef", "executionRef"):
        name = _mapping(requested.get(key)).get("name")
        if name:
            return str(name)
    if _mapping(spec.get("action")).get("type") == "promotion":
        labels = _mapping(_mapping(approval.get("metadata")).get("labels"))
        if labels.get(DEPLOYMENT_LABEL):
            return str(labels[DEPLOYMENT_LABEL])
    return "-"


def _parse_time(text: Any) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_expires(approval: Mapping[str, Any], now: datetime.datetime) -> str:
    """When a pending Approval times out, relative to ``now`` (``in 4m``, ``2m ago`` when overdue);
    ``-`` once decided or when the operator has not set status.expiresAt yet."""
    if _phase(approval) != PENDING:
        return "-"
    expires = _parse_time(_status(approval).get("expiresAt"))
    if expires is None:
        return "-"
    seconds = (expires - now).total_seconds()
    return f"in {format_age(seconds)}" if seconds >= 0 else f"{format_age(-seconds)} ago"


def _creation_order(approval: Mapping[str, Any]) -> tuple[datetime.datetime, str, str]:
    metadata = _mapping(approval.get("metadata"))
    created = _parse_time(metadata.get("creationTimestamp")) or datetime.datetime.max.replace(
        tzinfo=datetime.UTC
    )
    return created, str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _row(approval: Mapping[str, Any], now: datetime.datetime, *, with_namespace: bool) -> tuple[str, ...]:
    metadata = _mapping(approval.get("metadata"))
    spec = _spec(approval)
    action = _mapping(spec.get("action"))
    created = _parse_time(metadata.get("creationTimestamp"))
    row = (
        str(metadata.get("name") or ""),
        str(action.get("type") or "-"),
        _agent(approval),
        str(action.get("tool") or "-"),
        str(_mapping(spec.get("risk")).get("level") or "-"),
        _phase(approval),
        str(_status(approval).get("decidedBy") or "-"),
        format_age((now - created).total_seconds()) if created else "-",
        format_expires(approval, now),
    )
    return (str(metadata.get("namespace") or ""), *row) if with_namespace else row


def _ref(ref: Any, namespace: str) -> str:
    ref = _mapping(ref)
    if not ref.get("name"):
        return ""
    return f"{ref.get('namespace') or namespace}/{ref['name']}"


def _description(approval: Mapping[str, Any], now: datetime.datetime) -> list[tuple[str, str]]:
    """What ``joch approvals get`` prints: the request, then the decision, override and review if set."""
    return [*_request_rows(approval), *_decision_rows(approval, now)]


def _request_rows(approval: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request: action, requester, routing, Policy, risk and input summary."""
    metadata = _mapping(approval.get("metadata"))
    namespace = str(metadata.get("namespace") or "")
    spec = _spec(approval)
    action = _mapping(spec.get("action"))
    routing = _mapping(spec.get("routing"))
    risk = _mapping(spec.get("risk"))
    level, summary = risk.get("level") or "-", risk.get("summary")
    optional = [
        ("Tool", str(action.get("tool") or "")),
        ("ToolCall", _ref(action.get("toolCallRef"), namespace)),
    ]
    rows: list[tuple[str, str]] = [
        ("Approval", f"{namespace}/{metadata.get('name') or ''}"),
        ("Action", str(action.get("type") or "-")),
        *((label, value) for label, value in optional if value),
        ("Requested by", _requesters(approval, namespace)),
        ("Approvers", ", ".join(str(item) for item in routing.get("approvers") or ()) or "-"),
    ]
    optional = [
        ("Channels", ", ".join(str(item) for item in spec.get("channels") or ())),
        ("Options", ", ".join(str(item) for item in spec.get("options") or ())),
        ("Timeout", f"{routing.get('timeoutMinutes') or 30}m, then {routing.get('onTimeout') or 'deny'}"),
        ("Policy", _ref(spec.get("policyRef"), namespace)),
        ("Risk", (f"{level}: {summary}" if summary else str(level)) if risk.get("level") or summary else ""),
        ("Input", str(action.get("inputSummary") or "")),
    ]
    rows.extend((label, value) for label, value in optional if value)
    return rows


def _requesters(approval: Mapping[str, Any], namespace: str) -> str:
    requested = _mapping(_spec(approval).get("requestedBy"))
    requesters = [
        f"{label} {_ref(requested.get(key), namespace)}"
        for label, key in (("Agent", "agentRef"), ("Execution", "executionRef"))
        if _ref(requested.get(key), namespace)
    ]
    if requested.get("user"):
        requesters.append(f"user {requested['user']}")
    if not requesters and _agent(approval) != "-":
        requesters.append(f"Deployment {namespace}/{_agent(approval)}")
    return ", ".join(requesters) or "-"


def _decision_rows(approval: Mapping[str, Any], now: datetime.datetime) -> list[tuple[str, str]]:
    """The decision (phase, expiry, who, when, why), then the override and its review, those set."""
    status = _status(approval)
    rows: list[tuple[str, str]] = [("Phase", _phase(approval))]
    if status.get("expiresAt"):
        relative = format_expires(approval, now)
        expires = str(status["expiresAt"])
        rows.append(("Expires", f"{expires} ({relative})" if relative != "-" else expires))
    override = _mapping(status.get("override"))
    review = _mapping(status.get("review"))
    fields = [
        ("Decision", status.get("decision")),
        ("Decided by", status.get("decidedBy")),
        ("Decided at", status.get("decidedAt")),
        ("Rationale", status.get("rationale")),
        ("Overridden by", override.get("by")),
        ("Overridden at", override.get("at")),
        ("Override reason", override.get("reason")),
        ("Review", _review(review)),
        ("Review note", review.get("note")),
    ]
    rows.extend((label, str(value)) for label, value in fields if value)
    return rows


def _review(review: Mapping[str, Any]) -> str:
    if review.get("acknowledgedBy"):
        at = f" at {review['acknowledgedAt']}" if review.get("acknowledgedAt") else ""
        return f"acknowledged by {review['acknowledgedBy']}{at}"
    if review.get("required"):
        return "required: an auditor must acknowledge it (joch approvals acknowledge)"
    return ""


# --- printing -------------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = ("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


def _write_fields(rows: Sequence[tuple[str, str]], out: TextIO) -> None:
    """``Label:  value`` lines, aligned; the further lines of a multi-line value are indented."""
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        first, *more = value.splitlines() or [""]
        out.write(f"{label + ':':<{width}}{first}\n")
        for line in more:
            out.write((" " * width + line).rstrip() + "\n")


def _dump(document: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(yaml.safe_dump(document, sort_keys=False))
