"""A batch of documents judged together: what ``joch validate`` and ``joch apply`` run before any write.

    results = check_batch(documents, admission=..., base=<cluster Catalog or None>, ...)

Steps (the same pipeline as the webhooks, with the batch laid over the world so references between
documents resolve, whatever their order):

1. Each document is read: joch kinds are parsed (namespaced ones without ``metadata.namespace`` get
   ``default_namespace``); core Namespaces contribute their labels (D5 in docs/decisions.md); any
   other kind is left to the API server. A (kind, namespace, name) given twice is an error on the
   second document.
2. The mutating defaults are applied (defaulting.py), as the API server would before validating.
3. Every joch document is judged (review.Admission.judge) against the world: the base (the cluster, or
   nothing offline) plus the whole batch. With ``strict_missing`` a missing reference is an error
   (``joch apply`` without ``--allow-pending``); otherwise it is a warning. For Policy, Environment,
   ModelRoute and Team documents, impact is computed against the world without that document.

Evals and Approvals (promotion.GATE_KINDS) are judged by their status, which applying a document never
writes (the status subresource). Offline (no base) the document's own ``status`` is what there is, so it
is parsed and used; against a cluster the document gets the status the cluster's object has (none for a
new object), exactly what the object will carry once applied. A Deployment the cluster already holds is
judged as an UPDATE of it: its gates are checked only when its agentRef, environmentRef or promotion
change, as the webhook does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from joch.api.v1alpha1 import meta
from joch.domain.admission import defaulting, impact, parsing, promotion
from joch.domain.admission.review import Admission, Request
from joch.domain.admission.verdict import Findings, Verdict
from joch.domain.admission.world import ALL_KINDS, AgentIndex, World
from joch.domain.compilation import catalog

__all__ = ["Document", "DocumentResult", "check_batch"]


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One YAML/JSON document and where it came from (``file.yaml#2``)."""

    source: str
    raw: Any


@dataclasses.dataclass(frozen=True, slots=True)
class DocumentResult:
    """The judgement of one document. ``obj`` is the parsed (and defaulted) joch object, if any."""

    document: Document
    kind: str
    name: str
    namespace: str | None
    api_version: str
    verdict: Verdict | None
    """None for documents joch does not judge (core and foreign kinds)."""
    body: Mapping[str, Any] | None
    """The object to send to the API server (defaults applied, namespace filled in); None if unusable."""
    obj: meta.Resource | None = None

    @property
    def joch(self) -> bool:
        return self.verdict is not None

    @property
    def ok(self) -> bool:
        return self.body is not None and (self.verdict is None or self.verdict.allowed)

    @property
    def label(self) -> str:
        where = f" (namespace {self.namespace})" if self.namespace else ""
        return f"{self.kind}/{self.name}{where}"


def _meta(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = raw.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _with_namespace(raw: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    return {**raw, "metadata": {**_meta(raw), "namespace": namespace}}


@dataclasses.dataclass(slots=True)
class _Entry:
    document: Document
    kind: type[meta.Resource]
    body: dict[str, Any]
    namespace: str | None
    name: str
    obj: meta.Resource | None = None
    findings: Findings = dataclasses.field(default_factory=Findings)


def _foreign(document: Document) -> DocumentResult:
    raw = document.raw
    if not isinstance(raw, Mapping):
        verdict = Verdict("Document", document.source, (parsing.parse_object(raw).findings.errors[0],))
        return DocumentResult(document, "Document", document.source, None, "", verdict, None)
    kind = str(raw.get("kind") or "")
    api_version = str(raw.get("apiVersion") or "")
    name = str(_meta(raw).get("name") or "")
    if not kind or not api_version or not name:
        findings = Findings()
        for field, value in (("apiVersion", api_version), ("kind", kind), ("metadata.name", name)):
            if not value:
                findings.error(field, "required field is missing", "FieldValueRequired")
        return DocumentResult(
            document,
            kind or "Document",
            name or document.source,
            None,
            api_version,
            findings.verdict(kind or "Document", name or document.source),
            None,
        )
    namespace = _meta(raw).get("namespace")
    body = dict(raw)
    if api_version.endswith(".joch.dev/v1alpha1") or api_version == "joch.dev/v1alpha1":
        findings = Findings()
        findings.error("kind", f"joch does not serve {kind} in {api_version}", "UnknownKind")
        return DocumentResult(
            document, kind, name, namespace, api_version, findings.verdict(kind, name), None
        )
    return DocumentResult(
        document, kind, name, namespace if isinstance(namespace, str) else None, api_version, None, body
    )


def _parse_final(entry: _Entry, base: catalog.Lookup | None) -> None:
    """Parse the defaulted document; an Eval or Approval gets its status (module docstring)."""
    gate_kind = issubclass(entry.kind, promotion.GATE_KINDS)
    parsed = parsing.parse_object(entry.body, keep_status=gate_kind and base is None)
    entry.obj = parsed.obj
    entry.findings.extend(parsed.findings)
    if gate_kind and base is not None and entry.obj is not None:
        existing = base.get(entry.kind, entry.namespace, entry.name)
        entry.obj = entry.obj.model_copy(update={"status": getattr(existing, "status", None)})


def check_batch(
    documents: Sequence[Document],
    *,
    admission: Admission,
    base: catalog.Lookup | None = None,
    known_kinds: Iterable[str] = ALL_KINDS,
    agent_index: AgentIndex | None = None,
    default_namespace: str = "default",
    strict_missing: bool = False,
) -> list[DocumentResult]:
    """Judge every document of the batch; results are in document order."""
    results: dict[int, DocumentResult] = {}
    entries: dict[int, _Entry] = {}
    seen: dict[tuple[str, str | None, str], str] = {}
    namespace_labels: dict[str, dict[str, str]] = {}

    for index, document in enumerate(documents):
        raw = document.raw
        kind = parsing.resolve_kind(raw) if isinstance(raw, Mapping) else None
        if kind is None or not isinstance(raw, Mapping):
            result = _foreign(document)
            results[index] = result
            if result.kind == "Namespace" and result.api_version == "v1" and isinstance(raw, Mapping):
                labels = _meta(raw).get("labels")
                namespace_labels[result.name] = (
                    {k: str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}
                )
            continue
        body = dict(raw)
        namespace: str | None = None
        if kind.crd.scope == "Namespaced":
            given = _meta(raw).get("namespace")
            namespace = given if isinstance(given, str) and given else default_namespace
            body = _with_namespace(raw, namespace)
        name = str(_meta(raw).get("name") or "")
        entry = _Entry(document, kind, body, namespace, name)
        key = (kind.crd.kind, namespace, name)
        if name and key in seen:
            entry.findings.error(
                "metadata.name", f"{kind.crd.kind} {name} is also defined in {seen[key]}", "Duplicate"
            )
        elif name:
            seen[key] = document.source
        entries[index] = entry

    def world_of(skip: int | None = None) -> World:
        overlay = [
            e.obj for i, e in entries.items() if e.obj is not None and i != skip and not e.findings.errors
        ]
        return World(
            base,
            overlay=overlay,
            known_kinds=known_kinds,
            namespace_labels=namespace_labels,
            agent_index=agent_index,
        )

    for entry in entries.values():  # pass 1: parse as written, so defaults can see the batch
        entry.obj = parsing.parse_object(entry.body).obj
    draft = world_of()
    for entry in entries.values():  # pass 2: defaults, then the final parse
        request = Request("CREATE", entry.kind.crd.kind, entry.name, entry.namespace, entry.body)
        mutation = admission.mutate(request, draft)
        if mutation:
            entry.body = defaulting.apply_patch(entry.body, mutation.patch)
        _parse_final(entry, base)

    world = world_of()
    for index, entry in entries.items():  # pass 3: judge against the whole batch
        kind_name = entry.kind.crd.kind
        if entry.obj is not None and not entry.findings.errors:
            # impact compares the world with and without the object, so judge those kinds without it
            # (their own checks lay the object over the world where they need it)
            judged_in = world_of(skip=index) if isinstance(entry.obj, impact.IMPACT_KINDS) else world
            old = base.get(entry.kind, entry.namespace, entry.name) if base is not None else None
            entry.findings.extend(
                admission.judge(entry.obj, judged_in, strict_missing=strict_missing, old=old)
            )
        verdict = entry.findings.verdict(kind_name, entry.name)
        results[index] = DocumentResult(
            entry.document,
            kind_name,
            entry.name,
            entry.namespace,
            entry.kind.crd.api_version,
            verdict,
            entry.body if entry.obj is not None else None,
            entry.obj,
        )
    return [results[i] for i in range(len(documents))]
