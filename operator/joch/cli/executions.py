"""``joch run AGENT`` and ``joch executions ls | get | cancel``: start, follow, list and stop Executions.

``joch run`` creates an Execution (runtime.joch.dev/v1alpha1, trigger ``manual``) of an Agent with the
input given by ``--input JSON`` or ``-f INPUT.yaml``, then follows it until it ends: on a terminal one live
status line, otherwise one line per phase. At the end it prints a summary (phase, the Ready condition's
reason when the run did not succeed, duration, cost, tokens, model and tool calls, the compiled manifest
and the AgBOM snapshot it ran from) or, with ``-o json|yaml``, the whole object (progress then goes to
stderr). Ctrl-C stops following, never the run: ``joch executions cancel`` stops it.

``joch executions ls`` lists Executions oldest first (``--agent`` filters on ``spec.agentRef.name``,
client side: the ``joch.dev/agent`` label is not reliable on Executions), ``get`` shows one, and
``cancel`` asks the operator to stop one (a merge patch of ``spec.cancel: true``).

Exit codes. ``run``: 0 Succeeded; 1 Failed, Cancelled or TimedOut, or the API server refused the
Execution; 3 still running when ``--wait-timeout`` elapsed; 130 interrupted; 2 usage or connection errors.
``executions``: 0 ok, 1 not found or refused, 2 usage or connection errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO
from urllib.parse import quote

import yaml

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.execution import Execution
from joch.cli import flags, paging
from joch.domain.reconcile.executions import execution_body
from joch.kube import errors
from joch.kube.rest import Answer, Cluster, ClusterError

__all__ = [
    "MERGE_PATCH",
    "POLL_INTERVAL",
    "TERMINAL_PHASES",
    "ApiCaller",
    "InputError",
    "execution_body",
    "format_age",
    "format_duration",
    "input_from",
    "register",
    "run_cancel",
    "run_get",
    "run_ls",
    "run_run",
]

POLL_INTERVAL: float = 0.5
"""Seconds between two GETs while ``joch run`` follows an Execution (tests set it to 0)."""

TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed", "Cancelled", "TimedOut"})
MERGE_PATCH: Final = "application/merge-patch+json"
MAX_TIMEOUT_SECONDS: Final = 604800
PAGE: Final = 500
OUTPUTS: Final = ("table", "json", "yaml")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_WAIT_TIMEOUT: Final = 3
EXIT_INTERRUPTED: Final = 130

_CRD: Final = Execution.crd
_BASE: Final = f"/apis/{_CRD.group}/{meta.VERSION}"
_COLUMNS: Final = ("NAME", "AGENT", "PHASE", "COST", "DURATION", "AGE")


ApiCaller = paging.ApiCaller


class InputError(ValueError):
    """Unusable ``--input`` or ``-f``: the message names the flag."""


class _Stop(Exception):
    """End the command with this exit code and error message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- the command line -----------------------------------------------------------------------------------


def register(commands: Any) -> None:
    run: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run an Agent once: create an Execution and follow it to its end",
        description="Create an Execution (trigger manual) of AGENT with the given input and follow it: a "
        "live status line on a terminal, one line per phase otherwise, then a summary of the run "
        "(-o json|yaml: the whole Execution; progress goes to stderr). Ctrl-C stops following, not the "
        "run. Exit 0 Succeeded, 1 Failed, Cancelled or TimedOut or refused by the API server, 3 still "
        "running at --wait-timeout, 130 interrupted, 2 usage or connection errors.",
    )
    run.add_argument("agent", metavar="AGENT", help="the Agent to run")
    _add_namespace(run, "namespace of the Agent and of the Execution (default: default)")
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "-f",
        "--filename",
        dest="file",
        metavar="INPUT.yaml",
        help="the input as YAML (- reads stdin): a mapping with a content list is spec.input as is; any "
        "other mapping is sent as one data part, a string as one text part",
    )
    source.add_argument(
        "--input",
        metavar="JSON",
        help="the input as JSON: an object is sent as one data part, a string as one text part",
    )
    run.add_argument("--name", help="name of the Execution (default: generated, AGENT-xxxxx)")
    run.add_argument(
        "--timeout",
        type=_timeout_seconds,
        metavar="SECONDS",
        help=f"longest the run may take (spec.timeoutSeconds, 1-{MAX_TIMEOUT_SECONDS}; default: the "
        "operator's setting)",
    )
    run.add_argument(
        "--no-follow", action="store_true", help="create the Execution, print its name and return (exit 0)"
    )
    run.add_argument(
        "--wait-timeout",
        type=flags.positive_float,
        metavar="SECONDS",
        help="stop following after this long and exit 3; the run goes on (default: no limit)",
    )
    _add_output(run)
    flags.add_kube_flags(run)
    run.set_defaults(handler=run_run)

    parser: argparse.ArgumentParser = commands.add_parser(
        "executions",
        help="Executions: list them, show one, cancel one",
        description="List, show and cancel Executions (runs of Agents; joch run starts one).",
    )
    actions = parser.add_subparsers(dest="executions_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "ls",
        aliases=["list"],
        help="list Executions, oldest first",
        description="List Executions, oldest first: name, agent, phase, cost (USD), duration and age. "
        "Exit 0 listed (even none), 1 refused by the API server, 2 usage or connection errors.",
    )
    scope = listing.add_mutually_exclusive_group()
    _add_namespace(scope, "namespace to list (default: default)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list every namespace (adds a NAMESPACE column)"
    )
    listing.add_argument("--agent", metavar="AGENT", help="only the runs of this Agent (spec.agentRef.name)")
    _add_output(listing)
    flags.add_kube_flags(listing)
    listing.set_defaults(handler=run_ls)

    get = actions.add_parser(
        "get",
        help="show one Execution",
        description="Show one Execution: its row of joch executions ls, then the reason it did not "
        "succeed, tokens, model and tool calls, manifest, AgBOM snapshot and Pod. Exit 0 shown, 1 not "
        "found or refused, 2 usage or connection errors.",
    )
    get.add_argument("name", metavar="NAME", help="the Execution")
    _add_namespace(get, "its namespace (default: default)")
    _add_output(get)
    flags.add_kube_flags(get)
    get.set_defaults(handler=run_get)

    cancel = actions.add_parser(
        "cancel",
        help="stop a run (sets spec.cancel)",
        description="Ask the operator to stop an Execution: sets spec.cancel to true (a merge patch); its "
        "Job is deleted and it ends Cancelled (a queued one never starts). One that already ended is "
        "left alone. Exit 0 requested or already ended, 1 not found or refused, 2 usage or connection "
        "errors.",
    )
    cancel.add_argument("name", metavar="NAME", help="the Execution")
    _add_namespace(cancel, "its namespace (default: default)")
    flags.add_kube_flags(cancel)
    cancel.set_defaults(handler=run_cancel)


def _add_namespace(parser: argparse.ArgumentParser | argparse._ArgumentGroup, text: str) -> None:
    parser.add_argument("-n", "--namespace", default="default", help=text)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="table", help="output format (default: table)"
    )


def _timeout_seconds(text: str) -> int:
    value = flags.positive_int(text)
    if value > MAX_TIMEOUT_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TIMEOUT_SECONDS} (7 days), not {value}")
    return value


# --- the Execution to create ----------------------------------------------------------------------------


def input_from(
    *, input_json: str | None = None, file: str | None = None, stdin: TextIO | None = None
) -> dict[str, Any] | None:
    """``spec.input`` from ``--input JSON`` or ``-f FILE`` (``-``: ``stdin``); None when neither is given.

    Raises :class:`InputError` naming the flag when the text does not parse or is not an object or a
    string.
    """
    if input_json is not None:
        try:
            value = json.loads(input_json)
        except json.JSONDecodeError as exc:
            raise InputError(f"--input is not valid JSON: {exc}") from None
        return _wrap(value, "--input")
    if file is None:
        return None
    flag = "-f -" if file == "-" else f"-f {file}"
    try:
        text = (stdin or sys.stdin).read() if file == "-" else pathlib.Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{flag}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{flag}: not UTF-8 text: {exc}") from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise InputError(f"{flag} is not valid YAML{where}: {problem}") from None
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        spec_input: dict[str, Any] = _jsonable(value, flag)
        return spec_input
    return _wrap(value, flag)


def _wrap(value: Any, flag: str) -> dict[str, Any]:
    if isinstance(value, str):
        return {"content": [{"kind": "text", "text": value}]}
    if isinstance(value, dict):
        return {"content": [{"kind": "data", "data": _jsonable(value, flag)}]}
    raise InputError(
        f"{flag}: expected an object (sent as a data part) or a string (a text part), not {_type_name(value)}"
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null or empty)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _jsonable(value: Any, flag: str) -> Any:
    """``value`` as plain JSON (YAML dates become RFC 3339 strings)."""

    def convert(item: Any) -> Any:
        if isinstance(item, datetime.date):
            return item.isoformat()
        raise TypeError(f"{type(item).__name__} values cannot be sent as JSON")

    try:
        return json.loads(json.dumps(value, default=convert, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{flag}: {exc}") from None


# --- joch run -------------------------------------------------------------------------------------------


def run_run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    cluster: ApiCaller | None = None,
    stdin: TextIO | None = None,
) -> int:
    try:
        return _run(args, out or sys.stdout, cluster, stdin)
    except InputError as exc:
        return _fail("run", EXIT_USAGE, str(exc))
    except ClusterError as exc:
        return _fail("run", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("run", stop.code, stop.message)


def _run(args: argparse.Namespace, out: TextIO, cluster: ApiCaller | None, stdin: TextIO | None) -> int:
    spec_input = input_from(input_json=args.input, file=args.file, stdin=stdin)
    namespace = args.namespace
    body = execution_body(
        args.agent, namespace, name=args.name, spec_input=spec_input, timeout_seconds=args.timeout
    )
    cluster = cluster or _connect(args)
    answer = cluster.call("POST", _collection(namespace), body=body)
    _warn(answer)
    if answer.error is not None:
        refused = f"the API server refused the Execution of Agent {namespace}/{args.agent}: {answer.error}"
        raise _Stop(EXIT_FAILED, refused)
    created: dict[str, Any] = answer.body if isinstance(answer.body, dict) else {}
    name = str((created.get("metadata") or {}).get("name") or args.name or "")
    if not name:
        raise _Stop(EXIT_FAILED, "the API server created an Execution but did not say its name")
    if args.no_follow:
        if args.output == "table":
            out.write(f"Execution {namespace}/{name} created\n")
        else:
            _dump(created, args.output, out)
        return EXIT_OK
    progress = out if args.output == "table" else sys.stderr
    try:
        return _follow(cluster, args, namespace, name, out=out, progress=progress)
    except ClusterError as exc:
        raise _Stop(EXIT_USAGE, f"{exc} (Execution {namespace}/{name} was created and goes on)") from None


def _follow(
    cluster: ApiCaller, args: argparse.Namespace, namespace: str, name: str, *, out: TextIO, progress: TextIO
) -> int:
    """Poll the Execution until it ends (or ``--wait-timeout``, or Ctrl-C); print the result."""
    where = f"Execution {namespace}/{name}"
    path = _object_path(namespace, name)
    live = _isatty(progress)
    start = time.monotonic()
    deadline = start + args.wait_timeout if args.wait_timeout else None
    shown: str | None = None
    width = 0
    try:
        while True:
            execution = _get(cluster, path, where, gone=f"{where} was deleted before it ended")
            phase = _phase(execution)
            now = time.monotonic()
            line = f"execution {name}: {phase} ({now - start:.1f}s)"
            if live:
                progress.write("\r" + line.ljust(width))
                progress.flush()
                width = len(line)
            elif phase != shown:
                progress.write(line + "\n")
                progress.flush()
            shown = phase
            if phase in TERMINAL_PHASES:
                if live:
                    progress.write("\n")
                _print_result(execution, args.output, out)
                return EXIT_OK if phase == "Succeeded" else EXIT_FAILED
            if deadline is not None and now >= deadline:
                if live:
                    progress.write("\n")
                raise _Stop(
                    EXIT_WAIT_TIMEOUT,
                    f"{where} is still {phase} after --wait-timeout {args.wait_timeout:g}s; it goes on "
                    f"(joch executions get {name} -n {namespace})",
                )
            pause = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, max(0.0, deadline - now))
            time.sleep(pause)
    except KeyboardInterrupt:
        if live:
            progress.write("\n")
        sys.stderr.write(
            f"joch run: stopped following {where}; the run goes on. To stop it: "
            f"joch executions cancel {name} -n {namespace}\n"
        )
        return EXIT_INTERRUPTED


def _print_result(execution: dict[str, Any], output: str, out: TextIO) -> None:
    if output != "table":
        _dump(execution, output, out)
        return
    metadata = execution.get("metadata") or {}
    phase = _phase(execution)
    rows = [
        ("Execution", f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"),
        ("Agent", _agent(execution) or "-"),
        ("Phase", phase),
    ]
    reason = _reason(execution) if phase != "Succeeded" else ""
    if reason:
        rows.append(("Reason", reason))
    duration = _duration_ms(execution, _utcnow())
    cost = _cost(execution)
    rows.append(("Duration", format_duration(duration) if duration is not None else "-"))
    rows.append(("Cost", f"{cost} USD" if cost else "-"))
    rows.extend(_details(execution, with_reason=False))
    _write_fields(rows, out)


# --- joch executions ls | get | cancel ------------------------------------------------------------------


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
        return _fail("executions ls", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("executions ls", stop.code, stop.message)
    if args.agent:
        items = [item for item in items if _agent(item) == args.agent]
    items.sort(key=_creation_order)
    if args.output != "table":
        _dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output, out)
        return EXIT_OK
    if not items:
        of = f" of Agent {args.agent}" if args.agent else ""
        scope = "" if everywhere else f" in namespace {args.namespace}"
        sys.stderr.write(f"No Executions{of} found{scope}.\n")
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
    where = f"Execution {args.namespace}/{args.name}"
    try:
        cluster = cluster or _connect(args)
        execution = _get(cluster, _object_path(args.namespace, args.name), where)
    except ClusterError as exc:
        return _fail("executions get", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("executions get", stop.code, stop.message)
    if args.output != "table":
        _dump(execution, args.output, out)
        return EXIT_OK
    out.write(_table([_COLUMNS, _row(execution, now or _utcnow(), with_namespace=False)]))
    details = _details(execution, with_reason=_phase(execution) != "Succeeded")
    if details:
        out.write("\n")
        _write_fields(details, out)
    return EXIT_OK


def run_cancel(
    args: argparse.Namespace, *, out: TextIO | None = None, cluster: ApiCaller | None = None
) -> int:
    out = out or sys.stdout
    where = f"Execution {args.namespace}/{args.name}"
    path = _object_path(args.namespace, args.name)
    try:
        cluster = cluster or _connect(args)
        phase = _phase(_get(cluster, path, where))
        if phase in TERMINAL_PHASES:
            out.write(f"{where} already ended ({phase})\n")
            return EXIT_OK
        answer = cluster.call("PATCH", path, body={"spec": {"cancel": True}}, content_type=MERGE_PATCH)
    except ClusterError as exc:
        return _fail("executions cancel", EXIT_USAGE, str(exc))
    except _Stop as stop:
        return _fail("executions cancel", stop.code, stop.message)
    _warn(answer)
    if answer.status == 404:
        return _fail("executions cancel", EXIT_FAILED, f"{where} not found")
    if answer.error is not None:
        return _fail("executions cancel", EXIT_FAILED, f"{where}: the API server refused: {answer.error}")
    out.write(f"{where}: cancel requested\n")
    return EXIT_OK


# --- API helpers ----------------------------------------------------------------------------------------


def _connect(args: argparse.Namespace) -> Cluster:
    """The cluster of ``--kubeconfig`` / ``--context``; an unusable kubeconfig raises ClusterError."""
    try:
        return Cluster.connect(args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None))
    except errors.ConfigError as exc:
        raise ClusterError(str(exc)) from None


def _collection(namespace: str) -> str:
    return f"{_BASE}/namespaces/{quote(namespace, safe='')}/{_CRD.plural}"


def _object_path(namespace: str, name: str) -> str:
    return f"{_collection(namespace)}/{quote(name, safe='')}"


def _get(cluster: ApiCaller, path: str, where: str, *, gone: str | None = None) -> dict[str, Any]:
    answer = cluster.call("GET", path)
    if answer.status == 404:
        raise _Stop(EXIT_FAILED, gone or f"{where} not found")
    if answer.error is not None:
        raise _Stop(EXIT_FAILED, f"{where}: {answer.error}")
    if not isinstance(answer.body, dict):
        raise _Stop(EXIT_FAILED, f"{where}: the API server answered without an object")
    return answer.body


def _list(cluster: ApiCaller, path: str) -> list[dict[str, Any]]:
    try:
        return paging.list_all(cluster, path, kind="Executions", api_version=_CRD.api_version, page=PAGE)
    except paging.ListFailed as exc:
        raise _Stop(EXIT_FAILED, str(exc)) from None


def _warn(answer: Answer) -> None:
    for warning in answer.warnings:
        sys.stderr.write(f"Warning: {warning}\n")


def _fail(command: str, code: int, message: str) -> int:
    sys.stderr.write(f"joch {command}: error: {message}\n")
    return code


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


# --- reading an Execution -------------------------------------------------------------------------------


def _status(execution: Mapping[str, Any]) -> dict[str, Any]:
    status = execution.get("status")
    return status if isinstance(status, dict) else {}


def _phase(execution: Mapping[str, Any]) -> str:
    """status.phase; an Execution the operator has not seen yet is Pending."""
    return str(_status(execution).get("phase") or "Pending")


def _agent(execution: Mapping[str, Any]) -> str:
    spec = execution.get("spec") or {}
    return str((spec.get("agentRef") or {}).get("name") or "")


def _reason(execution: Mapping[str, Any]) -> str:
    """``reason: message`` of the Ready condition (empty when it has neither)."""
    for condition in _status(execution).get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            parts = [str(condition[key]) for key in ("reason", "message") if condition.get(key)]
            return ": ".join(parts)
    return ""


def _cost(execution: Mapping[str, Any]) -> str:
    cost = _status(execution).get("costUsd")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return f"{cost:.4f}"
    return ""


def _details(execution: Mapping[str, Any], *, with_reason: bool) -> list[tuple[str, str]]:
    """The fields of a run beyond its table row, those it has."""
    status = _status(execution)
    rows: list[tuple[str, str]] = []
    reason = _reason(execution) if with_reason else ""
    if reason:
        rows.append(("Reason", reason))
    if status.get("tokens") is not None:
        rows.append(("Tokens", str(status["tokens"])))
    model_calls, tool_calls = status.get("modelCalls"), status.get("toolCalls")
    if model_calls is not None or tool_calls is not None:
        rows.append(("Calls", f"{_count(model_calls)} model, {_count(tool_calls)} tool"))
    manifest = status.get("manifestRef") or {}
    if manifest.get("name"):
        digest = str(manifest.get("sha256") or "")
        rows.append(
            ("Manifest", f"{manifest['name']} (sha256 {digest[:12]})" if digest else manifest["name"])
        )
    abom = status.get("abomSnapshotRef") or {}
    if abom.get("name"):
        generation = abom.get("generation")
        rows.append(
            ("AgBOM", f"{abom['name']} (generation {generation})" if generation is not None else abom["name"])
        )
    if status.get("podName"):
        rows.append(("Pod", str(status["podName"])))
    return rows


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


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


def _duration_ms(execution: Mapping[str, Any], now: datetime.datetime) -> float | None:
    """status.durationMs, else completedAt - startedAt, else (still running) now - startedAt."""
    status = _status(execution)
    reported = status.get("durationMs")
    if isinstance(reported, int | float) and not isinstance(reported, bool):
        return float(reported)
    started = _parse_time(status.get("startedAt"))
    if started is None:
        return None
    ended = _parse_time(status.get("completedAt"))
    if ended is None:
        if _phase(execution) in TERMINAL_PHASES:
            return None
        ended = now
    return max(0.0, (ended - started).total_seconds() * 1000)


def format_duration(milliseconds: float) -> str:
    """A duration for people: 450ms, 1.2s, 3m4s, 2h5m, 3d4h."""
    if milliseconds < 1000:
        return f"{int(milliseconds)}ms"
    seconds = round(milliseconds / 1000, 1)
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(seconds)
    if total < 3600:
        return f"{total // 60}m{total % 60}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60}m"
    return f"{total // 86400}d{total % 86400 // 3600}h"


def format_age(seconds: float) -> str:
    """An age as kubectl prints it: 45s, 7m, 5h, 3d."""
    total = max(0, int(seconds))
    if total < 120:
        return f"{total}s"
    if total < 7200:
        return f"{total // 60}m"
    if total < 172800:
        return f"{total // 3600}h"
    return f"{total // 86400}d"


def _creation_order(execution: Mapping[str, Any]) -> tuple[datetime.datetime, str, str]:
    metadata = execution.get("metadata") or {}
    created = _parse_time(metadata.get("creationTimestamp")) or datetime.datetime.max.replace(
        tzinfo=datetime.UTC
    )
    return created, str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _row(execution: Mapping[str, Any], now: datetime.datetime, *, with_namespace: bool) -> tuple[str, ...]:
    metadata = execution.get("metadata") or {}
    duration = _duration_ms(execution, now)
    created = _parse_time(metadata.get("creationTimestamp"))
    row = (
        str(metadata.get("name") or ""),
        _agent(execution),
        _phase(execution),
        _cost(execution),
        format_duration(duration) if duration is not None else "",
        format_age((now - created).total_seconds()) if created else "",
    )
    return (str(metadata.get("namespace") or ""), *row) if with_namespace else row


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = ("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


def _write_fields(rows: Sequence[tuple[str, str]], out: TextIO) -> None:
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        out.write(f"{label + ':':<{width}}{value}\n")


def _dump(document: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(yaml.safe_dump(document, sort_keys=False))
