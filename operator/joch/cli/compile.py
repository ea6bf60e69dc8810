"""`joch compile`: compile Agents offline (no cluster) with the operator's own code.

    joch compile -f FILE|DIR [-f ...] [--agent [NS/]NAME] [--namespace-labels NS=KEY=VALUE ...]
                 [-n NAMESPACE] [--default-environment ENV] [--shared-namespaces NS,NS]

Reads every YAML document of the files (a directory: its *.yaml and *.yml files, sorted, not recursive;
``-`` is standard input). joch kinds the compiler reads are parsed and validated; a core Namespace
contributes its labels (decision D5,
docs/decisions.md); every other document is skipped. ``kind: List`` documents (as
``kubectl get -o yaml`` writes) are unpacked.

Output: one YAML document per compiled Agent, sorted by namespace and name, each written as ``---``
followed by exactly the text the operator stores in the ConfigMap's ``manifest.yaml``. The bytes match
the operator's for the same objects; note that objects read from files have no uid and count as
generation 1, so compare against ``kubectl get -o yaml`` output to reproduce a cluster's hashes.

Exit status: 0 when every Agent compiled; 1 when some Agent has problems (each printed to stderr as
``Agent/<ns>/<name>: <path>: <message>``; such an Agent is not printed, as the operator would not write
it); 2 when the input is unusable (unreadable file, bad YAML, an object that fails validation).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import pydantic

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.cli import documents, flags
from joch.cli.documents import InputError
from joch.domain import compilation
from joch.domain import policy as policy_engine
from joch.domain.settings import OperatorSettings, SettingsError

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_INPUT = 2

_KINDS: dict[tuple[str, str], type[meta.Resource]] = {
    (kind.crd.api_version, kind.crd.kind): kind for kind in compilation.COMPILE_KINDS
}


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "compile",
        help="compile Agents into CompiledAgentManifests offline (no cluster needed)",
        description="Read joch objects from files, compile every Agent (or one) exactly as the operator "
        "does, and print the manifests as a multi-document YAML stream. Problems go to stderr; the exit "
        "status is 1 when there are any, 2 when the input is unusable.",
    )
    documents.add_filename_argument(parser)
    parser.add_argument("--agent", metavar="[NS/]NAME", help="compile only this Agent")
    parser.add_argument(
        "--namespace-labels",
        action="append",
        default=[],
        metavar="NS=KEY=VALUE",
        help="set a label on a Namespace (e.g. support=joch.dev/environment=prod); repeatable",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for namespaced objects that have none (default: default)",
    )
    flags.add_settings_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return main(args, stdout=sys.stdout, stderr=sys.stderr, stdin=sys.stdin)


def main(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    """The command with its streams injected (tests call this)."""
    try:
        settings = _settings(args)
        catalog = load_catalog(args.files, default_namespace=args.namespace, settings=settings, stdin=stdin)
        for item in args.namespace_labels:
            namespace, labels = _namespace_label(item)
            catalog.set_namespace_labels(namespace, {**catalog.namespace_labels(namespace), **labels})
        agents = _select(catalog, args.agent)
    except InputError as exc:
        stderr.write(f"joch compile: error: {exc}\n")
        return EXIT_INPUT

    failed = 0
    programs = policy_engine.PolicyCompiler(policy_engine.CompileOptions(cel_backend=settings.cel_backend))
    for agent in agents:
        gathered = compilation.gather(agent, catalog, settings)
        compiled = compilation.compile_agent(gathered, settings, programs=programs)
        if compiled.ok:
            stdout.write("---\n" + compiled.manifest_yaml)
            continue
        failed += 1
        for problem in compiled.problems:
            stderr.write(
                f"Agent/{compiled.namespace}/{compiled.agent_name}: {problem.path}: {problem.message}\n"
            )
    if failed:
        stderr.write(f"joch compile: {failed} of {len(agents)} agent(s) not compiled\n")
        return EXIT_PROBLEMS
    return EXIT_OK


def _settings(args: argparse.Namespace) -> OperatorSettings:
    try:
        return flags.settings_from(args, os.environ)
    except SettingsError as exc:
        raise InputError(str(exc)) from exc


def _namespace_label(text: str) -> tuple[str, dict[str, str]]:
    namespace, sep, rest = text.partition("=")
    key, sep2, value = rest.partition("=")
    if not (namespace and sep and key and sep2):
        raise InputError(f"--namespace-labels {text!r}: expected NS=KEY=VALUE")
    return namespace, {key: value}


def _select(catalog: compilation.Catalog, wanted: str | None) -> list[Agent]:
    agents = catalog.agents()
    if wanted is None:
        return agents
    namespace, _, name = wanted.rpartition("/")
    chosen = [a for a in agents if a.metadata.name == name and namespace in ("", a.metadata.namespace)]
    if not chosen:
        known = ", ".join(f"{a.metadata.namespace}/{a.metadata.name}" for a in agents) or "none"
        raise InputError(f"no Agent {wanted} in the input (agents: {known})")
    if len(chosen) > 1:
        raise InputError(f"--agent {wanted} is ambiguous; write NAMESPACE/NAME")
    return chosen


# --- reading ----------------------------------------------------------------------------------------


def load_catalog(
    paths: Sequence[str],
    *,
    default_namespace: str,
    settings: OperatorSettings,
    stdin: TextIO | None = None,
    kinds: Mapping[tuple[str, str], type[meta.Resource]] = _KINDS,
) -> compilation.Catalog:
    """A Catalog of every object in ``paths`` of ``kinds`` (by apiVersion and kind; default: what the
    compiler reads) and the Namespaces; raises :class:`InputError`."""
    catalog = compilation.Catalog(shared_namespaces=settings.shared_namespaces)
    for source, index, doc in documents.read_documents(paths, stdin):
        where = f"{source}: document {index + 1}"
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a Kubernetes object (a map), got {type(doc).__name__}")
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise InputError(f"{where}: not a Kubernetes object (apiVersion and kind are required)")
        if api_version == "v1" and kind == "Namespace":
            _add_namespace(catalog, doc, where)
            continue
        model = kinds.get((api_version, kind))
        if model is None:
            continue
        where = f"{where} ({kind} {_name_of(doc)})"
        try:
            obj = model.model_validate(doc)
        except pydantic.ValidationError as exc:
            raise InputError(f"{where} is invalid:\n{_validation_errors(exc)}") from exc
        if model.crd.scope == "Namespaced" and not obj.metadata.namespace:
            obj.metadata.namespace = default_namespace
        try:
            catalog.add(obj)
        except compilation.CatalogError as exc:
            raise InputError(f"{where}: {exc}") from exc
    return catalog


def _add_namespace(catalog: compilation.Catalog, doc: dict[str, Any], where: str) -> None:
    metadata = doc.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: a Namespace needs metadata.name")
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InputError(f"{where}: Namespace {name} metadata.labels must map strings to strings")
    catalog.set_namespace_labels(name, {str(k): v for k, v in labels.items()})


def _name_of(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else "<no name>"


def _validation_errors(exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors()[:20]:
        location = ".".join(str(part) for part in error["loc"]) or "(object)"
        lines.append(f"  {location}: {error['msg']}")
    if exc.error_count() > 20:
        lines.append(f"  ... and {exc.error_count() - 20} more")
    return "\n".join(lines)
