"""`joch manifests`: write every generated file (CRDs now; webhook configurations and chart files later)."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from joch.api import v1alpha1
from joch.manifests import crds, files, reference


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "manifests",
        help="generate CRDs and the resource reference from the models (what `make manifests` runs)",
        description="Render crds/<group>_<plural>.yaml from the pydantic models. Files this command "
        "generated earlier but no longer produces are removed.",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(), help="repository root")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rendered = {name: files.dump_yaml(crd) for name, crd in crds.render_all(v1alpha1.KINDS).items()}
    changed = write_dir(args.out / "crds", rendered)
    print(f"crds/: {len(rendered)} CRDs, {changed} changed")
    doc = args.out / "docs" / "resources.md"
    text = reference.render(v1alpha1.KINDS)
    if not doc.exists() or doc.read_text() != text:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
        print("docs/resources.md: changed")
    return 0


def write_dir(directory: pathlib.Path, rendered: dict[str, str]) -> int:
    """Write ``rendered`` (file name -> text) into ``directory``; drop stale generated files."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in directory.glob("*.yaml"):
        if path.name not in rendered and files.is_generated(path.read_text()):
            path.unlink()
            changed += 1
    for name, text in rendered.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed += 1
    return changed
