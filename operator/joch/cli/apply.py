"""`joch apply -f FILE|DIR`: all or nothing. Check everything, dry-run everything, then write everything.

    joch apply -f examples/ [-f more.yaml] [-R] [-n NS] [--allow-pending] [--dry-run]
               [--kubeconfig PATH] [--context NAME] [--field-manager NAME] [--force-conflicts]

1. Read every document (see ``joch validate``); a file that does not parse rejects the batch.
2. List the cluster's joch objects and Namespaces once and judge each document against them with the
   whole batch laid over (references inside the batch resolve, whatever the order; D10). A reference
   that neither the batch nor the cluster satisfies is an error unless ``--allow-pending``.
3. Server-side dry-run of every document (server-side apply with ``dryRun=All``): the API server runs
   its schema validation and the admission webhooks (which have no side effects on dry runs). A
   document in a namespace that only this batch creates cannot be dry-run; it is checked offline only,
   and the report says so.
4. Only when every document passed both, apply them for real (server-side apply), Namespaces first,
   then the joch kinds in dependency order (FrameworkAdapter, Model, ModelRoute, ... Agent, Deployment),
   then anything else. Nothing is written when any document fails; exit status 1.

Exit status: 0 applied (or, with ``--dry-run``, would apply), 1 rejected, 2 usage or connection errors.
Per-document diagnostics go to stdout; nothing is a traceback.

The API calls go through :mod:`joch.kube.rest` (synchronous, with response Warning headers and
untruncated Status messages).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.cli import flags, validate
from joch.domain.admission import ALL_KINDS, Admission, DocumentResult, check_batch, promotion
from joch.domain.compilation import Catalog
from joch.domain.settings import SettingsError
from joch.kube import batch
from joch.kube.rest import Cluster, ClusterError

__all__ = ["ClusterError", "register", "run"]


def cluster_catalog(cluster: Cluster, settings_shared: Sequence[str]) -> tuple[Catalog, set[str]]:
    """Every joch object of the cluster as a Catalog (with Namespace labels); also the namespace names.

    Statuses are dropped, except those the promotion gates read (Evals, Approvals); an object whose
    status the model rejects is kept without it."""
    namespaces = cluster.list_all("/api/v1/namespaces")
    labels = {
        str(ns["metadata"]["name"]): dict((ns.get("metadata") or {}).get("labels") or {}) for ns in namespaces
    }
    catalog = Catalog(namespace_labels=labels, shared_namespaces=settings_shared)
    for model in v1alpha1.KINDS:
        crd = model.crd
        for item in cluster.list_all(f"/apis/{crd.group}/{meta.VERSION}/{crd.plural}"):
            item.setdefault("apiVersion", crd.api_version)
            item.setdefault("kind", crd.kind)
            spec_only = {k: v for k, v in item.items() if k != "status"}
            candidates = [item, spec_only] if issubclass(model, promotion.GATE_KINDS) else [spec_only]
            for candidate in candidates:
                try:
                    catalog.add(model.model_validate(candidate))
                except ValueError:  # an object the model rejects, or a duplicate: treated as absent
                    continue
                break
    return catalog, set(labels)


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "apply",
        help="apply files all-or-nothing: check, server-side dry-run every document, then apply",
        description="Parse every document, judge it with the batch laid over the cluster (references "
        "within the batch resolve), run a server-side dry-run of each, and apply them only when every "
        "document passes. Exit 0 applied, 1 rejected (nothing written), 2 usage or connection errors.",
    )
    validate.add_input_arguments(parser)
    flags.add_settings_flags(parser)
    flags.add_kube_flags(parser)
    parser.add_argument("--field-manager", default="joch", help="server-side apply field manager (joch)")
    parser.add_argument(
        "--force-conflicts", action="store_true", help="take over fields another manager owns"
    )
    parser.add_argument("--dry-run", action="store_true", help="check and dry-run only; never write")
    parser.set_defaults(handler=run)


def _write(args: argparse.Namespace) -> batch.Write:
    return batch.Write(
        field_manager=args.field_manager, force=args.force_conflicts, namespace=args.namespace or "default"
    )


def run(args: argparse.Namespace, *, out: TextIO | None = None, cluster: Cluster | None = None) -> int:
    out = out or sys.stdout
    try:
        settings = flags.settings_from(args, os.environ)
        documents, failures = validate.load_documents(args.filenames, recursive=args.recursive)
        cluster = cluster or Cluster.connect(
            args.kubeconfig, args.context, impersonate=getattr(args, "as_user", None)
        )
        catalog, existing_namespaces = cluster_catalog(cluster, settings.shared_namespaces)
    except (validate.InputError, SettingsError, ClusterError) as exc:
        sys.stderr.write(f"joch apply: error: {exc}\n")
        return 2
    default_namespace = args.namespace or "default"
    results = check_batch(
        documents,
        admission=Admission(settings),
        base=catalog,
        known_kinds=ALL_KINDS,
        default_namespace=default_namespace,
        strict_missing=not args.allow_pending,
    )
    created = {r.name for r in results if r.kind == "Namespace" and r.api_version == "v1"}
    errors: dict[int, list[str]] = {}
    warnings: dict[int, list[str]] = {}
    notes: dict[int, list[str]] = {}
    write = _write(args)
    try:
        for index, result in enumerate(results):
            if result.body is None:
                continue
            checked = batch.dry_run(cluster, result, write, existing=existing_namespaces, created=created)
            errors[index], warnings[index], notes[index] = checked.errors, checked.warnings, checked.notes
    except ClusterError as exc:
        sys.stderr.write(f"joch apply: error: {exc}\n")
        return 2
    out.write(f"joch apply: {len(results) + len(failures)} documents, cluster {cluster.server}\n")
    rejected = validate.print_results(
        results, failures, out, extra_errors=errors, extra_warnings=warnings, notes=notes
    )
    total = len(results) + len(failures)
    if rejected:
        out.write(f"joch apply: {rejected} of {total} documents rejected; nothing was applied\n")
        return 1
    if args.dry_run:
        out.write(f"joch apply: {total} documents would be applied (dry run)\n")
        return 0
    try:
        return _apply_all(cluster, args, results, out)
    except ClusterError as exc:
        sys.stderr.write(f"joch apply: error: {exc}\n")
        return 2


def _apply_all(
    cluster: Cluster, args: argparse.Namespace, results: Sequence[DocumentResult], out: TextIO
) -> int:
    outcome = batch.apply_all(cluster, results, _write(args))
    for result, warnings, _ in outcome.applied:
        out.write(f"  applied  {result.label}\n")
        for warning in warnings:
            out.write(f"        warning: {warning}\n")
    if outcome.failed is not None:
        result, error = outcome.failed
        out.write(f"  FAIL  {result.label}: {error}\n")
        out.write(
            f"joch apply: stopped after {len(outcome.applied)} of {len(results)} documents: the cluster "
            "changed between the dry run and the apply; fix and re-run (apply is idempotent)\n"
        )
        return 1
    out.write(f"joch apply: {len(outcome.applied)} documents applied\n")
    return 0
