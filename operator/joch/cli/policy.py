"""`joch policy`: evaluate policies offline, preview a change against the cluster, serve decisions.

    joch policy eval -f POLICIES [-f ...] --input CONTEXT.json [--now RFC3339] [--preflight]
                     [--all-policies] [--disable-rule [NS/]NAME:RULE=UNTIL ...] [-n NS]
    joch policy preview -f POLICY.yaml [-f ...] [--kubeconfig PATH] [--context NAME] [-n NS]
                        [-o table|json] [--shared-namespaces NS,NS] [--default-environment ENV]
    joch policy serve [--kubeconfig PATH] [--context NAME] [--host HOST] [--port PORT]
                      [-n NS ...] [--max-body BYTES] [--shared-namespaces NS,NS] [-v|--debug|-q]

``-f`` takes a YAML file, a directory (its *.yaml and *.yml files, sorted, not recursive) or ``-``
(standard input); ``kind: List`` documents are unpacked. Only Policy documents (joch.dev/v1alpha1) are
read; every other document is ignored. A Policy without metadata.namespace is placed in ``-n``
(default: default). Every problem of every Policy is reported with its field path.

eval: prints the Decision as JSON (docs/policy-language.md). The policies that apply are chosen as the
decision service chooses them, from the context's agent.namespace, agent.labels and environment.name;
``--all-policies`` evaluates every policy read, in the order read, whatever its appliesTo. ``--now``
(default: the current time) is the clock for emergency disables (``--disable-rule``). Exit status:
0 allow or modify, 3 deny, 2 unusable input (a clear message naming the file and field, no traceback).

preview: lists the Agents of the current cluster that the policies would newly deny, with the item
(model, tool, MCP server), policy, rule and reason (joch.decision_service.preview explains how). Exit status:
0 when no agent would be newly denied, 3 when some would, 2 unusable input, 1 when the cluster cannot
be read.

serve: runs the decision service (``POST /v1/policy/evaluate``, joch.decision_service.endpoint) on its own,
kept live from a watch of Policies and Environments, until SIGINT or SIGTERM. ``--port 0`` picks a
free port; the address is logged (``decision service listening on http://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import pydantic

from joch.api.v1alpha1.policy import Policy
from joch.cli import documents, flags
from joch.cli.documents import InputError
from joch.decision_service import cluster, endpoint, preview, requests, serving
from joch.domain import policy as engine
from joch.domain.policy import index as policy_index
from joch.domain.settings import OperatorSettings, SettingsError
from joch.kube import client, errors

__all__ = ["EXIT_DENY", "EXIT_INPUT", "EXIT_OK", "build_parser", "main", "register"]

EXIT_OK = 0
EXIT_CLUSTER = 1
EXIT_INPUT = 2
EXIT_DENY = 3

POLICY_TYPE = (Policy.crd.api_version, Policy.crd.kind)
NO_DENIAL = "no agent would be newly denied"


# --- the parser ---------------------------------------------------------------------------------------


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "policy",
        help="evaluate policies, preview a policy change against the cluster, serve decisions",
        description="Evaluate Policy documents against a decision context (eval), list the Agents a "
        "policy change would newly deny (preview), or run the decision service (serve).",
    )
    add_subcommands(parser)


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)

    evaluate = sub.add_parser(
        "eval",
        help="print the Decision of policies for one decision context (exit 0 allow/modify, 3 deny)",
        description="Evaluate the Policy documents of the files against a decision context (JSON) and "
        "print the Decision as JSON. Exit status: 0 allow or modify, 3 deny, 2 unusable input.",
    )
    _add_files(evaluate)
    evaluate.add_argument(
        "-i",
        "--input",
        dest="context_file",
        required=True,
        metavar="CONTEXT.json",
        help="the decision context, a JSON object (docs/catalog.md section 4.4), or - for stdin",
    )
    evaluate.add_argument("--now", metavar="RFC3339", help="the current time (default: the clock)")
    evaluate.add_argument(
        "--preflight",
        action="store_true",
        help="skip rules that read runtime-only facts (decision D9, docs/decisions.md)",
    )
    evaluate.add_argument(
        "--all-policies",
        action="store_true",
        help="evaluate every policy read, in file order, ignoring appliesTo",
    )
    flags.add_cel_backend_flag(evaluate)
    evaluate.add_argument(
        "--disable-rule",
        action="append",
        default=[],
        metavar="[NS/]NAME:RULE=UNTIL",
        help="emergency-disable rule RULE of a policy until an RFC 3339 time (repeatable)",
    )
    evaluate.set_defaults(handler=run_eval)

    check = sub.add_parser(
        "preview",
        help="list the Agents of the cluster a policy change would newly deny, and why",
        description="Evaluate every Agent of the cluster with the current policies and with the given "
        "ones (admission preflight, decision D9 of docs/decisions.md: one context per model, tool and "
        "MCP server) and list each item "
        "whose decision flips to deny. Exit status: 0 none, 3 some, 2 unusable input, 1 cluster error.",
    )
    _add_files(check)
    flags.add_kube_flags(check)
    check.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format (table)"
    )
    flags.add_settings_flags(check)
    check.set_defaults(handler=run_preview)

    serve = sub.add_parser(
        "serve",
        help="run the decision service (POST /v1/policy/evaluate) against a cluster",
        description="Watch Policies and Environments and serve decisions over HTTP until SIGINT or SIGTERM.",
    )
    flags.add_kube_flags(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=flags.port, default=8082, help="port to listen on (default 8082; 0 picks a free one)"
    )
    serve.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="watch Policies of this namespace only (repeatable; shared namespaces are added)",
    )
    serve.add_argument(
        "--max-body",
        type=flags.positive_int,
        default=endpoint.DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"largest request body accepted (default {endpoint.DEFAULT_MAX_BODY})",
    )
    flags.add_settings_flags(serve)
    flags.add_verbosity_flags(serve, verbose="log every policy change")
    serve.set_defaults(handler=run_serve)


def _add_files(parser: argparse.ArgumentParser) -> None:
    documents.add_filename_argument(parser)
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of Policies that have none (default: default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="joch policy", description=(__doc__ or "").splitlines()[0])
    add_subcommands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


# --- eval -----------------------------------------------------------------------------------------------


def run_eval(args: argparse.Namespace) -> int:
    return eval_main(args, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)


def eval_main(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """``joch policy eval`` with its streams injected (tests call this)."""
    try:
        if args.context_file == "-" and "-" in args.files:
            raise InputError("standard input can feed either -f or --input, not both")
        settings = _settings(args)
        options = engine.CompileOptions(cel_backend=settings.cel_backend)
        policies = load_policies(args.files, default_namespace=args.namespace, stdin=stdin, options=options)
        context = load_context(args.context_file, stdin=stdin)
        now = _parse_time(args.now, "--now") if args.now else datetime.datetime.now(datetime.UTC)
        disabled = dict(_disabled_rule(text) for text in args.disable_rule)
        shared = settings.shared_namespaces
    except InputError as exc:
        stderr.write(f"joch policy eval: error: {exc}\n")
        return EXIT_INPUT

    compiled = [_compile(item, options) for item in policies]
    if args.all_policies:
        decision = engine.evaluate(
            compiled, context, now=now, disabled_rules=disabled or None, preflight=args.preflight
        )
    else:
        policy_set = engine.PolicySet(compiled, shared_namespaces=shared)
        namespace, labels, environment = policy_index.agent_of(context)
        selected = policy_set.select(namespace=namespace, labels=labels, environment=environment)
        if not selected:
            stderr.write(
                f"joch policy eval: note: none of the {len(compiled)} policies applies to this context "
                f"(agent namespace {namespace!r}, labels {dict(labels)}, environment {environment!r}); "
                "--all-policies ignores appliesTo\n"
            )
        decision = engine.evaluate(
            selected, context, now=now, disabled_rules=disabled or None, preflight=args.preflight
        )
    stdout.write(json.dumps(decision.to_dict(), indent=2) + "\n")
    return EXIT_DENY if decision.denied else EXIT_OK


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedPolicy:
    where: str
    policy: Policy
    spec: Any
    """The spec as written (what the API server would store and the operator compile)."""

    @property
    def namespace(self) -> str:
        return self.policy.metadata.namespace or ""

    @property
    def name(self) -> str:
        return self.policy.metadata.name or ""

    @property
    def generation(self) -> int:
        generation = self.policy.metadata.generation
        return generation if generation is not None and generation > 0 else 1


def _compile(item: LoadedPolicy, options: engine.CompileOptions) -> engine.CompiledPolicy:
    return engine.compile_policy(
        name=item.name, namespace=item.namespace, generation=item.generation, spec=item.spec, options=options
    )


def load_policies(
    paths: Sequence[str],
    *,
    default_namespace: str,
    stdin: TextIO | None,
    options: engine.CompileOptions | None = None,
) -> list[LoadedPolicy]:
    """Every Policy document of ``paths``, checked (CEL with ``options``' backend); raises InputError
    listing every problem."""
    options = options if options is not None else engine.CompileOptions()
    loaded: list[LoadedPolicy] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for source, index, doc in documents.read_documents(paths, stdin):
        where = f"{source}: document {index + 1}"
        if not isinstance(doc, dict):
            problems.append(f"{where}: expected a Kubernetes object (a map), got {type(doc).__name__}")
            continue
        if (doc.get("apiVersion"), doc.get("kind")) != POLICY_TYPE:
            continue
        where = f"{where} (Policy {_name_of(doc)})"
        try:
            policy = Policy.model_validate(doc)
        except pydantic.ValidationError as exc:
            problems.extend(f"{where}: {location}: {message}" for location, message in _pydantic_errors(exc))
            continue
        if not policy.metadata.name:
            problems.append(f"{where}: metadata.name: required")
            continue
        if not policy.metadata.namespace:
            policy.metadata.namespace = default_namespace
        spec = doc["spec"]
        found = engine.validate_policy_spec(spec, options=options)
        if found:
            problems.extend(f"{where}: {error.path}: {error.message}" for error in found)
            continue
        key = (policy.metadata.namespace, policy.metadata.name)
        if key in seen:
            problems.append(f"{where}: Policy {key[0]}/{key[1]} is also defined in {seen[key]}")
            continue
        seen[key] = where
        loaded.append(LoadedPolicy(where, policy, spec))
    if problems:
        raise InputError("invalid policies:\n" + "\n".join(f"  {problem}" for problem in problems))
    if not loaded:
        raise InputError(f"no Policy ({POLICY_TYPE[0]}) documents in {', '.join(paths)}")
    return loaded


def load_context(path: str, *, stdin: TextIO | None) -> dict[str, Any]:
    """The decision context in ``path`` (JSON), checked; raises InputError naming every problem."""
    if path == "-":
        if stdin is None:
            raise InputError("--input -: standard input is not available")
        source, text = "<stdin>", stdin.read()
    else:
        file = pathlib.Path(path)
        try:
            source, text = path, file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"--input {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--input {path}: cannot read: {exc}") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise InputError(f"{source}: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{source}: not valid JSON: {exc}") from exc
    problems = requests.check_context(value)
    if problems:
        raise InputError(
            f"{source}: not a decision context:\n" + "\n".join(f"  {problem}" for problem in problems)
        )
    assert isinstance(value, dict)
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_time(text: str, flag: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: not an RFC 3339 time (e.g. 2026-11-27T15:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def _disabled_rule(text: str) -> tuple[tuple[str, int], datetime.datetime]:
    target, sep, until = text.partition("=")
    policy_id, sep2, rule = target.rpartition(":")
    if not (sep and sep2 and policy_id and rule.isdigit()):
        raise InputError(f"--disable-rule {text!r}: expected [NAMESPACE/]NAME:RULE=UNTIL")
    return (policy_id, int(rule)), _parse_time(until, "--disable-rule")


# --- preview --------------------------------------------------------------------------------------------

SnapshotReader = Callable[[argparse.Namespace], tuple[preview.Snapshot, list[str]]]


def run_preview(args: argparse.Namespace) -> int:
    return preview_main(args, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)


def preview_main(
    args: argparse.Namespace,
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: TextIO | None = None,
    read: SnapshotReader | None = None,
) -> int:
    """``joch policy preview`` with its streams and cluster reader injected (tests call this)."""
    try:
        settings = _settings(args)
        options = engine.CompileOptions(cel_backend=settings.cel_backend)
        policies = load_policies(args.files, default_namespace=args.namespace, stdin=stdin, options=options)
    except InputError as exc:
        stderr.write(f"joch policy preview: error: {exc}\n")
        return EXIT_INPUT
    try:
        snapshot, warnings = (read or _read_cluster)(args)
    except (errors.KubeError, InputError) as exc:
        stderr.write(f"joch policy preview: error: cannot read the cluster: {exc}\n")
        return EXIT_CLUSTER
    for warning in warnings:
        stderr.write(f"joch policy preview: warning: {warning}\n")
    result = preview.preview(snapshot, [item.policy for item in policies], settings)
    if args.output == "json":
        stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        stdout.write(_table(result))
    return EXIT_DENY if result.newly_denied else EXIT_OK


def _read_cluster(args: argparse.Namespace) -> tuple[preview.Snapshot, list[str]]:
    try:
        configuration = client.load_configuration(args.kubeconfig, context=args.context)
    except Exception as exc:  # the kubernetes config loader raises several unrelated types
        raise InputError(f"no usable kubeconfig: {errors.truncate(str(exc))}") from exc
    kube = client.Kube(client.new_api_client(configuration, pool_size=4), client.Limits(concurrency=4))

    async def read() -> tuple[preview.Snapshot, list[str]]:
        try:
            return await cluster.read_snapshot(kube)
        finally:
            await kube.aclose()

    try:
        return asyncio.run(read())
    finally:
        kube.close()


def _table(result: preview.Preview) -> str:
    policies = ", ".join(result.policies)
    if not result.newly_denied:
        lines = [f"{NO_DENIAL} by {policies} ({result.agents} agent(s) evaluated)"]
    else:
        rows = [("AGENT", "ITEM", "POLICY", "RULE", "REASON")]
        for denial in result.newly_denied:
            d = denial.decision
            rows.append(
                (
                    f"{denial.namespace}/{denial.agent}",
                    denial.item.label,
                    f"{d.policy_namespace}/{d.policy_id} ({d.policy_version})",
                    str(d.rule) if d.rule is not None else "-",
                    d.reason,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "   ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]])
            for row in rows
        ]
        agents = len(result.denied_agents)
        lines.append("")
        lines.append(f"{agents} agent(s) of {result.agents} evaluated would be newly denied by {policies}")
    if result.no_longer_denied:
        lines.append(f"{len(result.no_longer_denied)} denied item(s) would no longer be denied")
    return "\n".join(lines) + "\n"


# --- serve ----------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
    except InputError as exc:
        sys.stderr.write(f"joch policy serve: error: {exc}\n")
        return EXIT_INPUT
    flags.configure_logging(args)
    try:
        serving.run_standalone(
            serving.StandaloneOptions(
                kubeconfig=args.kubeconfig,
                context=args.context,
                host=args.host,
                port=args.port,
                namespaces=tuple(dict.fromkeys(args.namespaces)),
                settings=settings,
                max_body=args.max_body,
            )
        )
    except Exception as exc:
        sys.stderr.write(f"joch policy serve: error: {errors.truncate(str(exc))}\n")
        return EXIT_CLUSTER
    return EXIT_OK


# --- shared ---------------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> OperatorSettings:
    try:
        return flags.settings_from(args, os.environ)
    except SettingsError as exc:
        raise InputError(str(exc)) from exc


def _name_of(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return "<no name>"
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else "<no name>"
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else str(name)


def _pydantic_errors(exc: pydantic.ValidationError) -> Iterator[tuple[str, str]]:
    for error in exc.errors():
        yield ".".join(str(part) for part in error["loc"]) or "(object)", error["msg"]


if __name__ == "__main__":
    sys.exit(main())
