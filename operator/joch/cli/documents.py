"""Reading Kubernetes objects from YAML files, directories or standard input, for the CLI commands.

Errors are :class:`InputError` with a message that names the file (and line) and the reason; the
commands print it without a traceback.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import yaml

__all__ = ["InputError", "add_filename_argument", "read_documents"]


class InputError(Exception):
    """The input cannot be used; the message says where and why (no traceback is shown)."""


def add_filename_argument(parser: argparse.ArgumentParser) -> None:
    """``-f/--filename FILE|DIR`` (repeatable, required); :func:`read_documents` reads ``args.files``."""
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE|DIR",
        help="a YAML file, a directory of them, or - for stdin (repeatable)",
    )


def read_documents(paths: Sequence[str], stdin: TextIO | None) -> Iterator[tuple[str, int, Any]]:
    """``(source, index, document)`` for every document in ``paths`` (``-`` is standard input).

    A directory contributes its ``*.yaml``/``*.yml`` files in name order; empty documents are skipped; a
    ``kind: List`` (or ``*List``) document contributes its items.
    """
    for raw in paths:
        for source, text in _read(raw, stdin):
            try:
                docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
            except yaml.YAMLError as exc:
                raise InputError(f"{source}: not valid YAML: {_yaml_error(exc)}") from exc
            index = 0
            for doc in docs:
                for item in _unpack(doc):
                    yield source, index, item
                    index += 1


def _read(raw: str, stdin: TextIO | None) -> Iterator[tuple[str, str]]:
    if raw == "-":
        if stdin is None:
            raise InputError("-: standard input is not available")
        yield "<stdin>", stdin.read()
        return
    path = pathlib.Path(raw)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise InputError(f"{raw}: no *.yaml or *.yml files in this directory")
    elif path.exists():
        files = [path]
    else:
        raise InputError(f"{raw}: no such file or directory")
    for file in files:
        try:
            yield str(file), file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: cannot read: {exc}") from exc


def _unpack(doc: Any) -> Iterator[Any]:
    """A ``kind: List`` (or ``*List``) document yields its items; any other document yields itself."""
    if (
        isinstance(doc, dict)
        and str(doc.get("kind", "")).endswith("List")
        and isinstance(doc.get("items"), list)
    ):
        yield from doc["items"]
    else:
        yield doc


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{at}{problem}"
