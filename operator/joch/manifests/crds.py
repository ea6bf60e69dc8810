"""Render CustomResourceDefinitions from the pydantic models (style.md habit 8).

The pydantic JSON Schema is turned into a *structural* OpenAPI v3 schema, as the API server requires:

- every ``$ref`` is inlined (CRDs may not contain ``$ref``);
- ``Optional[X]`` (``anyOf: [X, null]``) becomes plain ``X``, not required;
- ``title``, ``additionalProperties: false`` and ``default: null`` are dropped (unknown fields are pruned,
  and kubectl's strict field validation reports them);
- a nested model with a ``default_factory`` gets ``default: {}`` so that the API server fills in its
  defaults too;
- JSON Schema 2020 ``exclusiveMinimum: N`` becomes OpenAPI ``minimum: N, exclusiveMinimum: true``.

:func:`render` returns plain dicts; ``joch.manifests.write`` turns them into files.
"""

from __future__ import annotations

import copy
from typing import Any

import pydantic
from pydantic import json_schema
from pydantic_core import core_schema

from joch.api.v1alpha1 import meta

__all__ = ["SchemaError", "crd_schema", "render", "render_all"]

_KEEP = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "default",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
}


_NESTED = {"properties", "items", "additionalProperties"}


class SchemaError(ValueError):
    """A model cannot be expressed as a structural CRD schema."""


class _Generator(json_schema.GenerateJsonSchema):
    """Emits ``default: {}`` for nested models built by a default factory."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if isinstance(factory, type) and issubclass(factory, pydantic.BaseModel):
            return {}
        return super().get_default_value(schema)


def crd_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a model (no ``$ref``)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, path=model.__name__, depth=0)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = dict(defs[name])
    # Keywords written beside a $ref (description, default, extras) override the target's.
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _flatten(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Resolve ``$ref``, ``Optional`` (anyOf with null), single ``allOf`` and ``const`` into one node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise SchemaError(f"{path}: unions are not structural; use meta.JSONValue or one type")
        node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**_resolve(node["allOf"][0], defs), **{k: v for k, v in node.items() if k != "allOf"}}
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    return node


def _children(node: dict[str, Any], defs: dict[str, Any], *, path: str, depth: int) -> dict[str, Any]:
    """The converted sub-schemas of a node: properties, items and a schema-valued additionalProperties."""
    out: dict[str, Any] = {}
    if "properties" in node:
        out["properties"] = {
            name: _convert(sub, defs, path=f"{path}.{name}", depth=depth + 1)
            for name, sub in node["properties"].items()
        }
    if isinstance(node.get("items"), dict):
        out["items"] = _convert(node["items"], defs, path=f"{path}[]", depth=depth + 1)
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        out["additionalProperties"] = _convert(values, defs, path=f"{path}.*", depth=depth + 1)
    return out


def _convert(node: dict[str, Any], defs: dict[str, Any], *, path: str, depth: int) -> dict[str, Any]:
    if depth > 64:
        raise SchemaError(f"{path}: schema nests deeper than 64 levels (recursive model?)")
    node = _flatten(node, defs, path)
    out = _children(node, defs, path=path, depth=depth)
    for key, value in node.items():
        if key in _KEEP and key not in _NESTED and value is not None:
            out[key] = copy.deepcopy(value)
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[limit], out[bound] = node[bound], True
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        if "properties" not in out:
            raise SchemaError(f"{path}: no type (structural schemas need one)")
        out["type"] = "object"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    # Read-friendly, stable key order: type and description first.
    first: dict[str, Any] = {k: out.pop(k) for k in ("type", "description") if k in out}
    return {**first, **dict(sorted(out.items()))}


def render(kind: type[meta.Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind, as a plain dict."""
    info = kind.crd
    fields = kind.model_fields
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": "APIVersion of this object: " + info.api_version},
        "kind": {"type": "string", "description": "Kind of this object: " + info.kind},
        "metadata": {"type": "object"},
    }
    required = ["spec"]
    for name in ("spec", "status"):
        annotation = fields[name].annotation
        model = _model_of(annotation)
        schema = crd_schema(model)
        if fields[name].description:
            schema["description"] = fields[name].description
        properties[name] = schema
    openapi = {
        "type": "object",
        "description": info.description or (kind.__doc__ or "").strip(),
        "required": required,
        "properties": properties,
    }
    version: dict[str, Any] = {
        "name": meta.VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [_column(c) for c in info.printer_columns],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "joch", "app.kubernetes.io/part-of": "joch"},
        },
        "spec": {
            "group": info.group,
            "names": {
                "kind": info.kind,
                "listKind": info.kind + "List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": ["joch"],
            },
            "scope": info.scope,
            "versions": [version],
        },
    }


def render_all(kinds: tuple[type[meta.Resource], ...]) -> dict[str, dict[str, Any]]:
    """File name (``<group>_<plural>.yaml``) -> CRD, for every kind."""
    return {f"{k.crd.group}_{k.crd.plural}.yaml": render(k) for k in kinds}


def _model_of(annotation: Any) -> type[pydantic.BaseModel]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
            return arg
    raise SchemaError(f"spec/status must be a pydantic model, got {annotation!r}")


def _column(column: meta.PrinterColumn) -> dict[str, Any]:
    out: dict[str, Any] = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
    if column.description:
        out["description"] = column.description
    if column.priority:
        out["priority"] = column.priority
    return out
