"""Shared test helpers: loading the examples and the generated CRDs."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"


def load_documents(*paths: pathlib.Path) -> list[dict[str, Any]]:
    """Every YAML document in the given files (or directories, sorted), skipping empty ones."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            docs.extend(d for d in yaml.safe_load_all(file.read_text()) if d)
    return docs


def example_documents() -> list[dict[str, Any]]:
    return load_documents(EXAMPLES)


def joch_examples() -> list[dict[str, Any]]:
    """The example documents that are joch kinds (not core objects such as the Namespace)."""
    return [
        d
        for d in example_documents()
        if ".joch.dev/" in d["apiVersion"] or d["apiVersion"].startswith("joch.dev/")
    ]


def doc_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"
