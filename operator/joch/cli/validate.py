"""`joch validate -f FILE|DIR`: the admission checks, offline, with the batch as the whole world.

    joch validate -f examples/ [-f more.yaml] [-R] [-n NS] [--allow-pending]
                  [--shared-namespaces NS,NS] [--default-environment ENV]

Every document is parsed and judged exactly as the webhooks would judge it (joch.domain.admission),
with the other documents of the batch as the only other objects in existence: a reference to something
the batch does not define is an error (``--allow-pending`` turns it into a warning). Documents that are
not joch kinds (a Namespace...) are listed but not judged; a Namespace's labels still place the Agents
of that namespace in their environment (decision D5, docs/decisions.md).

Exit status: 0 every document passes, 1 at least one is rejected (or a file does not parse), 2 usage
errors (no input, an unreadable path). Diagnostics go to stdout, one block per document; nothing is
ever a traceback.

This module also holds what ``joch apply`` shares: reading files (:func:`load_documents`), the settings
flags and the report printer.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from joch.cli import flags
from joch.domain.admission import Admission, Document, DocumentResult, check_batch
from joch.domain.settings import SettingsError

__all__ = [
    "InputError",
    "add_input_arguments",
    "load_documents",
    "print_results",
    "register",
    "run",
]

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 64 * 1024 * 1024


class InputError(Exception):
    """A path cannot be read (missing, unreadable, too large); the message says which."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParseFailure:
    """A file (or one of its documents) that is not valid YAML/JSON."""

    source: str
    message: str


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="filenames",
        action="append",
        required=True,
        metavar="FILE|DIR",
        help="a YAML/JSON file, a directory of them, or - for stdin (repeatable)",
    )
    parser.add_argument("-R", "--recursive", action="store_true", help="descend into subdirectories")
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace of namespaced documents that name none"
    )
    parser.add_argument(
        "--allow-pending",
        action="store_true",
        help="admit references to objects that do not exist yet (warnings instead of errors)",
    )


def _files(path: pathlib.Path, recursive: bool) -> list[pathlib.Path]:
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in SUFFIXES)
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory")


def _read(path: pathlib.Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None


def _parse(text: str, source: str) -> tuple[list[Document], list[ParseFailure]]:
    documents: list[Document] = []
    try:
        for index, raw in enumerate(yaml.safe_load_all(text), start=1):
            if raw is not None:
                documents.append(Document(f"{source}#{index}", raw))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return documents, [ParseFailure(source, f"not valid YAML{where}: {problem}")]
    except RecursionError:
        return documents, [ParseFailure(source, "not valid YAML: nested too deeply")]
    return documents, []


def load_documents(
    paths: Sequence[str], *, recursive: bool = False, stdin: TextIO | None = None
) -> tuple[list[Document], list[ParseFailure]]:
    """Every document of ``paths`` (files, directories, ``-``), in order; raises :class:`InputError`."""
    documents: list[Document] = []
    failures: list[ParseFailure] = []
    for given in paths:
        if given == "-":
            found, bad = _parse((stdin or sys.stdin).read(), "<stdin>")
            documents.extend(found)
            failures.extend(bad)
            continue
        files = _files(pathlib.Path(given), recursive)
        if not files:
            raise InputError(f"{given}: no {', '.join(SUFFIXES)} files")
        for file in files:
            found, bad = _parse(_read(file), str(file))
            documents.extend(found)
            failures.extend(bad)
    return documents, failures


def print_results(
    results: Sequence[DocumentResult],
    failures: Sequence[ParseFailure],
    out: TextIO,
    *,
    extra_errors: dict[int, list[str]] | None = None,
    extra_warnings: dict[int, list[str]] | None = None,
    notes: dict[int, list[str]] | None = None,
) -> int:
    """Print one block per document (and per unparsable file); the number of rejected ones."""
    rejected = 0
    for failure in failures:
        rejected += 1
        out.write(f"  FAIL  {failure.source}\n        error: {failure.message}\n")
    for index, result in enumerate(results):
        errors = [result.verdict.format(e) for e in result.verdict.errors] if result.verdict else []
        errors += (extra_errors or {}).get(index, [])
        warnings = result.verdict.warning_messages(limit=50) if result.verdict else []
        warnings += (extra_warnings or {}).get(index, [])
        state = "FAIL" if errors or result.body is None else "ok"
        rejected += state == "FAIL"
        out.write(f"  {state:<4}  {result.label}  [{result.document.source}]\n")
        for line in errors:
            out.write(f"        error: {line}\n")
        for line in warnings:
            out.write(f"        warning: {line}\n")
        for line in (notes or {}).get(index, []):
            out.write(f"        note: {line}\n")
    return rejected


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "validate",
        help="run the admission checks offline on files (the batch is the whole world)",
        description="Parse every document and run the same checks as the admission webhooks (schema, "
        "semantics, references, policy preflight), with the batch as the only objects that exist. "
        "Exit 0 when every document passes, 1 when one is rejected, 2 on usage errors.",
    )
    add_input_arguments(parser)
    flags.add_settings_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = flags.settings_from(args, os.environ)
        documents, failures = load_documents(args.filenames, recursive=args.recursive)
    except (InputError, SettingsError) as exc:
        sys.stderr.write(f"joch validate: error: {exc}\n")
        return 2
    results = check_batch(
        documents,
        admission=Admission(settings),
        default_namespace=args.namespace or "default",
        strict_missing=not args.allow_pending,
    )
    rejected = print_results(results, failures, out)
    total = len(results) + len(failures)
    if rejected:
        out.write(f"joch validate: {rejected} of {total} documents rejected\n")
        return 1
    out.write(f"joch validate: {total} documents valid\n")
    return 0
