"""`joch manifests`: write every generated file.

- ``crds/<group>_<plural>.yaml``: the CRDs, from the models;
- ``webhooks/{validating,mutating}.yaml``: the webhook configurations (service mode, no caBundle);
- ``rbac/team-roles.yaml``: the ClusterRoles of the Team roles and joch-break-glass (docs/teams.md);
- ``charts/joch/``: the chart's CRD copies, values, values.schema.json, README, RBAC rules, the
  GitOps health checks and the kube-apiserver audit policy (``files/audit-policy.yaml``);
- ``docs/resources.md``: the field reference;
- ``docs/api/openapi.json``: the OpenAPI 3.1 document of the /v1 API.

Files this command generated earlier but no longer produces are removed from the generated folders.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

from joch.api import v1alpha1
from joch.apiserver import openapi
from joch.domain.compilation import catalog
from joch.manifests import audit, chart, crds, files, reference, roles, webhooks


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "manifests",
        help="generate CRDs, webhook configurations, team roles, chart files and the reference "
        "(`make manifests`)",
        description="Render crds/, webhooks/, rbac/, the generated files of charts/joch/ and "
        "docs/resources.md from the pydantic models. `make verify` fails when the committed files differ.",
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(), help="repository root")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root: pathlib.Path = args.out
    rendered = {name: files.dump_yaml(crd) for name, crd in crds.render_all(v1alpha1.KINDS).items()}
    report = {"crds/": write_dir(root / "crds", rendered)}

    configurations = webhooks.render_files(v1alpha1.KINDS)
    report["webhooks/"] = write_dir(
        root / "webhooks", {name: files.dump_yaml(doc) for name, doc in configurations.items()}
    )

    report["rbac/"] = write_dir(root / "rbac", {"team-roles.yaml": roles.render_file()})

    generated = chart.render(
        crds=rendered,
        kinds=v1alpha1.KINDS,
        reconciled=catalog.COMPILE_KINDS,
        health_lua=(root / "charts/joch/argocd/health.lua").read_text(),
        webhook_configurations=list(configurations.values()),
    )
    report["charts/joch/crds/"] = write_dir(
        root / "charts/joch/crds",
        {path.removeprefix("crds/"): text for path, text in generated.items() if path.startswith("crds/")},
    )
    other = {path: text for path, text in generated.items() if not path.startswith("crds/")}
    chart_root = root / "charts/joch"
    other["files/audit-policy.yaml"] = files.dump_yaml(audit.render(v1alpha1.KINDS))
    report["charts/joch/"] = sum(write_file(chart_root / path, text) for path, text in other.items())
    report["docs/resources.md"] = write_file(root / "docs/resources.md", reference.render(v1alpha1.KINDS))
    api_document = json.dumps(openapi.document(), indent=2, sort_keys=False) + "\n"
    report["docs/api/openapi.json"] = write_file(root / "docs/api/openapi.json", api_document)
    for where, changed in report.items():
        print(f"{where}: {changed} changed")
    return 0


def write_file(path: pathlib.Path, text: str) -> int:
    """Write ``text`` to ``path`` unless it already holds exactly that; 1 if written."""
    if path.exists() and path.read_text() == text:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return 1


def write_dir(directory: pathlib.Path, rendered: dict[str, str]) -> int:
    """Write ``rendered`` (file name -> text) into ``directory``; drop stale generated files."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = 0
    for path in directory.glob("*.yaml"):
        if path.name not in rendered and files.is_generated(path.read_text()):
            path.unlink()
            changed += 1
    return changed + sum(write_file(directory / name, text) for name, text in rendered.items())
