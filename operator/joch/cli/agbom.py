"""`joch agbom`: AI bills of materials (CycloneDX 1.6 JSON) of Agents, offline, and their differences.

    joch agbom -f FILE|DIR [-f ...] [-o DIR] [--agent [NS/]NAME] [--timestamp RFC3339] [--secrets]
               [-n NAMESPACE] [--default-environment ENV] [--shared-namespaces NS,NS]
    joch agbom diff --from-file OLD.json --to-file NEW.json
    joch agbom diff AGENT -n NAMESPACE --from N --to M [--kubeconfig PATH] [--context NAME]

The first form reads the fleet exactly as ``joch compile -f`` does (KnowledgeSources too, which RAGs
name), compiles every Agent (or one) and builds its document with the operator's own code (generation 1;
timestamp 1970-01-01T00:00:00Z unless ``--timestamp``; the Agent's metadata.uid, or a stable uuid5 of
``namespace/name`` when it has none). Documents go to standard output, one JSON text per Agent sorted by
namespace and name, or with ``-o DIR`` into ``DIR/<namespace>.<name>.cdx.json``. Missing references and
high-risk components are reported on stderr.

Exit status: 0 when every Agent compiled; 1 when some Agent has problems (they are printed; its document,
marked incomplete when references are missing, is still written); 2 when the input is unusable.

``diff`` prints one line per added (``+``), removed (``-``) or changed (``~``) component or service, e.g.
``~ Model openai:gpt-5 version: a -> b``, and exits 0 (2 when a file cannot be read). With ``AGENT
--from N --to M`` it reads generations N and M from the cluster (ConfigMaps ``<agent>-agbom-v<n>``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO
from urllib.parse import quote

from joch import __version__
from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.cli import compile as compile_cmd
from joch.cli import flags
from joch.cli.documents import InputError
from joch.domain import agbom, compilation
from joch.domain import policy as policy_engine
from joch.domain.reconcile import agbom as agbom_plan
from joch.domain.settings import OperatorSettings, SettingsError
from joch.kube.rest import Cluster, ClusterError

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_INPUT: Final = 2

EPOCH: Final = "1970-01-01T00:00:00Z"

_READ_KINDS: Final[tuple[type[meta.Resource], ...]] = (*compilation.COMPILE_KINDS, KnowledgeSource)
_KINDS: Final[dict[tuple[str, str], type[meta.Resource]]] = {
    (kind.crd.api_version, kind.crd.kind): kind for kind in _READ_KINDS
}


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "agbom",
        help="build AI bills of materials (CycloneDX 1.6) of Agents offline, or diff two of them",
        description="Read joch objects from files, compile every Agent (or one) as the operator does and "
        "print its AI bill of materials: a CycloneDX 1.6 JSON document listing its models, images, tools, "
        "MCP servers, policies, memories and knowledge (and, with --secrets, the Secrets it refers to, by "
        "name only). 'joch agbom diff' compares two documents.",
        epilog="Exit status: 0 when every Agent compiled, 1 when some Agent has problems (its document is "
        "still written, marked incomplete), 2 when the input is unusable.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="FILE|DIR",
        help="a YAML file, a directory of them, or - for stdin (repeatable; required unless 'diff')",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="write DIR/<namespace>.<name>.cdx.json per Agent instead of printing (created if needed)",
    )
    parser.add_argument("--agent", metavar="[NS/]NAME", help="only this Agent")
    parser.add_argument(
        "--timestamp",
        default=EPOCH,
        metavar="RFC3339",
        help=f"metadata.timestamp of the documents (default: {EPOCH}, so output is reproducible)",
    )
    parser.add_argument(
        "--secrets",
        action="store_true",
        help="list the Secrets the Agent's models, tools, MCP servers and stores refer to (names only)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for namespaced objects that have none (default: default)",
    )
    flags.add_settings_flags(parser)
    parser.set_defaults(handler=run)

    sub = parser.add_subparsers(dest="agbom_command", metavar="SUBCOMMAND")
    diff_parser = sub.add_parser(
        "diff",
        help="compare two AgBOM documents component by component",
        description="Print one line per component or service added (+), removed (-) or changed (~) from "
        "the first document to the second, e.g. '~ Model openai:gpt-5 version: a -> b'.",
    )
    diff_parser.add_argument(
        "agent", nargs="?", metavar="AGENT", help="an Agent in the cluster (with --from N --to M)"
    )
    diff_parser.add_argument("-n", "--namespace", default="default", help="the Agent's namespace")
    diff_parser.add_argument(
        "--from", dest="from_generation", type=flags.positive_int, metavar="N", help="the older generation"
    )
    diff_parser.add_argument(
        "--to", dest="to_generation", type=flags.positive_int, metavar="M", help="the newer generation"
    )
    diff_parser.add_argument("--from-file", metavar="OLD.json", help="the older document (offline)")
    diff_parser.add_argument("--to-file", metavar="NEW.json", help="the newer document (offline)")
    flags.add_kube_flags(diff_parser)
    diff_parser.set_defaults(handler=run_diff)


def run(args: argparse.Namespace) -> int:
    return main(args, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)


def run_diff(args: argparse.Namespace) -> int:
    return main_diff(args, stdout=sys.stdout, stderr=sys.stderr)


# --- joch agbom -f ---------------------------------------------------------------------------------------


def main(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """The command with its streams injected (tests call this)."""
    try:
        if not args.files:
            raise InputError("-f/--filename is required (a YAML file or directory of the fleet)")
        settings = _settings(args)
        catalog = load_catalog(args.files, default_namespace=args.namespace, settings=settings, stdin=stdin)
        agents = compile_cmd._select(catalog, args.agent)
    except InputError as exc:
        stderr.write(f"joch agbom: error: {exc}\n")
        return EXIT_INPUT

    options = agbom.Options(secrets=args.secrets)
    programs = policy_engine.PolicyCompiler(policy_engine.CompileOptions(cel_backend=settings.cel_backend))
    failed = 0
    for agent in agents:
        gathered = compilation.gather(agent, catalog, settings)
        compiled = compilation.compile_agent(gathered, settings, programs=programs)
        content = agbom.describe(
            gathered,
            compiled,
            agent_uid=agent_uid(agent),
            options=options,
            lookup=catalog,
            tool_version=__version__,
        )
        text = agbom.render(content, generation=1, timestamp=args.timestamp)
        where = f"Agent/{content.agent_namespace}/{content.agent_name}"
        try:
            _emit(text, content, args.output_dir, stdout, stderr)
        except OSError as exc:
            stderr.write(f"joch agbom: error: cannot write the document of {where}: {exc}\n")
            return EXIT_INPUT
        for risk in content.high_risk:
            stderr.write(f"{where}: high risk: {risk.kind} {risk.name}: {risk.reason}\n")
        for problem in compiled.problems:
            stderr.write(f"{where}: {problem.path}: {problem.message}\n")
        extra = [item for item in content.missing if item.startswith("KnowledgeSource ")]
        for item in extra:  # RAG sources: not compiler inputs, so not among compiled.problems
            stderr.write(f"{where}: {item} not found\n")
        if compiled.problems or extra:
            failed += 1
    if failed:
        stderr.write(f"joch agbom: {failed} of {len(agents)} agent(s) have problems\n")
        return EXIT_PROBLEMS
    return EXIT_OK


def agent_uid(agent: Agent) -> str:
    """metadata.uid, or a stable uuid5 of namespace/name for an Agent read from a file."""
    if agent.metadata.uid:
        return agent.metadata.uid
    return agbom.agent_uid_for(agent.metadata.namespace or "", agent.metadata.name or "")


def _emit(text: str, content: agbom.Content, output_dir: str | None, stdout: TextIO, stderr: TextIO) -> None:
    if output_dir is None:
        stdout.write(text)
        return
    directory = pathlib.Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{content.agent_namespace}.{content.agent_name}.cdx.json"
    path.write_text(text, encoding="utf-8")
    stderr.write(f"wrote {path}\n")


def _settings(args: argparse.Namespace) -> OperatorSettings:
    try:
        return flags.settings_from(args, os.environ)
    except SettingsError as exc:
        raise InputError(str(exc)) from exc


def load_catalog(
    paths: Sequence[str], *, default_namespace: str, settings: OperatorSettings, stdin: TextIO | None = None
) -> compilation.Catalog:
    """As ``joch compile``'s loader, plus KnowledgeSources; raises :class:`InputError`."""
    return compile_cmd.load_catalog(
        paths, default_namespace=default_namespace, settings=settings, stdin=stdin, kinds=_KINDS
    )


# --- joch agbom diff -------------------------------------------------------------------------------------


def main_diff(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO) -> int:
    """``joch agbom diff`` (two files, or two generations of an Agent's AgBOM in the cluster) with its
    streams injected."""
    offline = args.from_file is not None or args.to_file is not None
    online = args.agent is not None or args.from_generation is not None or args.to_generation is not None
    if (
        offline == online
        or (offline and None in (args.from_file, args.to_file))
        or (online and None in (args.agent, args.from_generation, args.to_generation))
    ):
        stderr.write(
            "joch agbom diff: error: give either AGENT --from N --to M (in the cluster) or "
            "--from-file OLD.json --to-file NEW.json\n"
        )
        return EXIT_INPUT
    try:
        if online:
            old, new = cluster_documents(args)
        else:
            old = read_document(args.from_file)
            new = read_document(args.to_file)
    except InputError as exc:
        stderr.write(f"joch agbom diff: error: {exc}\n")
        return EXIT_INPUT
    print_diff(old, new, stdout)
    return EXIT_OK


def cluster_documents(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generations ``--from`` and ``--to`` of the Agent's AgBOM, read from their ConfigMaps."""
    try:
        cluster = Cluster.connect(args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None))
    except ClusterError as exc:
        raise InputError(str(exc)) from None
    found = []
    for generation in (args.from_generation, args.to_generation):
        name = agbom_plan.configmap_name(args.agent, generation)
        path = f"/api/v1/namespaces/{quote(args.namespace, safe='')}/configmaps/{quote(name, safe='')}"
        try:
            answer = cluster.call("GET", path)
        except ClusterError as exc:
            raise InputError(str(exc)) from None
        where = f"AgBOM {args.namespace}/{args.agent} generation {generation}"
        if answer.status == 404:
            raise InputError(f"{where}: ConfigMap {name} not found (the newest 5 generations are kept)")
        if answer.error is not None:
            raise InputError(f"{where}: {answer.error}")
        text = (answer.body.get("data") or {}).get(agbom_plan.DOCUMENT_KEY)
        try:
            document = json.loads(text) if isinstance(text, str) else None
        except json.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise InputError(f"{where}: ConfigMap {name} holds no readable {agbom_plan.DOCUMENT_KEY}")
        found.append(document)
    return found[0], found[1]


def read_document(path: str) -> dict[str, Any]:
    """A parsed CycloneDX JSON document; raises :class:`InputError`."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise InputError(f"{path}: not a CycloneDX document (bomFormat CycloneDX is missing)")
    return document


def print_diff(old: Mapping[str, Any], new: Mapping[str, Any], out: TextIO) -> int:
    """Write one line per component change from ``old`` to ``new``; returns how many."""
    changes = agbom.diff(old, new)
    for change in changes:
        out.write(change.line() + "\n")
    return len(changes)
