"""Raw object (a JSON-shaped mapping) -> the kind's pydantic model, with every error as a field path.

The models mirror the CRD schemas (they generate them), so in the cluster this step mostly re-confirms
what the API server checked; it also runs the validators a structural schema cannot express (Eval
thresholds, Approval consistency...). Offline (``joch validate``) it *is* the schema check.

Before validation the object is trimmed: ``status`` (written by controllers through the status
subresource, never admitted here; kept only on request, for the Evals and Approvals of an offline batch
whose status the promotion gates read), ``metadata.managedFields`` and the kubectl last-applied
annotation are dropped. Hostile input (a non-mapping, unknown kinds, absurd nesting) becomes findings,
never an exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import pydantic

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.domain.admission.verdict import Findings

__all__ = ["MAX_PARSE_ERRORS", "Parsed", "field_path", "parse_object", "resolve_kind"]

MAX_PARSE_ERRORS: Final = 20
_DROPPED_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclasses.dataclass(frozen=True, slots=True)
class Parsed:
    """The outcome of parsing: the model (None on errors), its kind class, and the findings."""

    obj: meta.Resource | None
    kind: type[meta.Resource] | None
    findings: Findings


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('spec', 'tools', 1, 'name')`` -> ``spec.tools[1].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(object)"


def resolve_kind(raw: Mapping[str, Any]) -> type[meta.Resource] | None:
    """The joch kind an object claims to be (by apiVersion and kind), or None."""
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return v1alpha1.kind_for(api_version, kind)


def _trimmed(raw: Mapping[str, Any], *, keep_status: bool = False) -> dict[str, Any]:
    doc = {key: value for key, value in raw.items() if keep_status or key != "status"}
    metadata = raw.get("metadata")
    if isinstance(metadata, Mapping):
        trimmed = {key: value for key, value in metadata.items() if key != "managedFields"}
        annotations = trimmed.get("annotations")
        if isinstance(annotations, Mapping) and any(a in annotations for a in _DROPPED_ANNOTATIONS):
            trimmed["annotations"] = {k: v for k, v in annotations.items() if k not in _DROPPED_ANNOTATIONS}
        doc["metadata"] = trimmed
    return doc


def _finding(error: Any) -> tuple[str, str, str]:
    loc = tuple(error.get("loc") or ())
    message = str(error.get("msg") or "is invalid")
    kind = str(error.get("type") or "")
    if kind == "extra_forbidden":
        return field_path(loc), "unknown field", "FieldValueUnknown"
    if kind == "missing":
        return field_path(loc), "required field is missing", "FieldValueRequired"
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        # A validator on a map reports "<field>.<key>: why"; fold the key into the path.
        last = loc[-1] if loc else None
        head, sep, rest = message.partition(": ")
        if sep and isinstance(last, str) and head.startswith(f"{last}.") and " " not in head:
            return field_path(loc[:-1]) + "." + head, rest, "FieldValueInvalid"
    return field_path(loc), message, "FieldValueInvalid"


def parse_object(raw: Any, *, keep_status: bool = False) -> Parsed:
    """Parse ``raw`` as the joch kind it names; every problem becomes a finding with a field path.
    ``keep_status`` parses ``status`` too (its problems are reported under ``status.``)."""
    findings = Findings()
    if not isinstance(raw, Mapping):
        findings.error("(object)", f"must be an object, not {type(raw).__name__}", "FieldValueInvalid")
        return Parsed(None, None, findings)
    kind = resolve_kind(raw)
    if kind is None:
        what = f"{raw.get('apiVersion')!s:.80}, kind {raw.get('kind')!s:.80}"
        findings.error("kind", f"joch does not serve apiVersion {what}", "UnknownKind")
        return Parsed(None, None, findings)
    try:
        obj = kind.model_validate(_trimmed(raw, keep_status=keep_status))
    except pydantic.ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False, include_input=False)[
            :MAX_PARSE_ERRORS
        ]:
            path, message, reason = _finding(error)
            findings.error(path, message, reason)
        more = exc.error_count() - MAX_PARSE_ERRORS
        if more > 0:
            findings.error("(object)", f"and {more} more schema errors", "FieldValueInvalid")
        return Parsed(None, kind, findings)
    except RecursionError:
        findings.error("(object)", "is nested too deeply", "FieldValueInvalid")
        return Parsed(None, kind, findings)
    return Parsed(obj, kind, findings)
