"""``diff(old, new) -> [ComponentChange]``: what changed between two parsed AgBOM documents.

Items are matched by bom-ref across ``metadata.component`` (kind Agent), ``components`` and
``services`` (nested ones included). An item's kind is its ``joch:kind`` property (else its CycloneDX
type, or ``Service``) and its name is the part of its bom-ref after the first colon (joch bom-refs are
``<prefix>:<name>``), else its name. Changes are sorted by (kind, name, change). A changed item lists
one detail per differing field: ``version: 1 -> 2``, ``property joch:schemaSha: a -> b``,
``hash SHA-256: a -> b``, ``endpoints: a -> b``, ``modelCard changed``, ``data changed``; an absent
value reads ``(none)``, repeated properties are joined with ``, ``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, Literal

__all__ = ["ComponentChange", "diff"]

_NONE = "(none)"
_COMPARED = ("name", "group", "version", "type")


@dataclasses.dataclass(frozen=True, slots=True)
class ComponentChange:
    """One added, removed or changed component or service."""

    change: Literal["added", "removed", "changed"]
    kind: str
    name: str
    details: tuple[str, ...] = ()

    def line(self) -> str:
        """``+ Tool support/x``, ``- ...``, ``~ Model openai:gpt-5 version: a -> b; ...``."""
        mark = {"added": "+", "removed": "-", "changed": "~"}[self.change]
        text = f"{mark} {self.kind} {self.name}"
        return f"{text} {'; '.join(self.details)}" if self.details else text


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[ComponentChange]:
    """Every component or service added, removed or changed from ``old`` to ``new``."""
    before, after = _index(old), _index(new)
    changes: list[ComponentChange] = []
    for ref in before.keys() - after.keys():
        changes.append(ComponentChange("removed", *_identity(ref, before[ref])))
    for ref in after.keys() - before.keys():
        changes.append(ComponentChange("added", *_identity(ref, after[ref])))
    for ref in before.keys() & after.keys():
        details = _details(before[ref], after[ref])
        if details:
            changes.append(ComponentChange("changed", *_identity(ref, after[ref]), details=details))
    return sorted(changes, key=lambda c: (c.kind, c.name, c.change))


def _index(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    metadata = document.get("metadata")
    root = metadata.get("component") if isinstance(metadata, Mapping) else None
    if isinstance(root, Mapping):
        out[str(root.get("bom-ref", ""))] = {**root, "_kind": "Agent"}
    for item in _walk(document.get("components"), "components"):
        out[str(item.get("bom-ref", item.get("name", "")))] = item
    for item in _walk(document.get("services"), "services"):
        out[str(item.get("bom-ref", item.get("name", "")))] = {"_kind": "Service", **item}
    return out


def _walk(items: Any, nested: str) -> Iterator[Mapping[str, Any]]:
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping):
            yield item
            yield from _walk(item.get(nested), nested)


def _properties(item: Mapping[str, Any]) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for prop in item.get("properties") or ():
        if isinstance(prop, Mapping):
            grouped.setdefault(str(prop.get("name")), []).append(str(prop.get("value", "")))
    return {name: ", ".join(sorted(values)) for name, values in grouped.items()}


def _identity(ref: str, item: Mapping[str, Any]) -> tuple[str, str]:
    if item.get("_kind") == "Agent":
        group, name = item.get("group"), str(item.get("name", ref))
        return "Agent", f"{group}/{name}" if group else name
    kind = _properties(item).get("joch:kind")
    if kind is not None and ":" in ref:
        return kind, ref.partition(":")[2]
    return kind or str(item.get("type") or item.get("_kind") or "Component"), str(item.get("name", ref))


def _text(value: Any) -> str:
    if value is None:
        return _NONE
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or _NONE
    return str(value)


def _details(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    details = [
        f"{key}: {_text(old.get(key))} -> {_text(new.get(key))}"
        for key in _COMPARED
        if old.get(key) != new.get(key)
    ]
    if old.get("endpoints") != new.get("endpoints"):
        details.append(f"endpoints: {_text(old.get('endpoints'))} -> {_text(new.get('endpoints'))}")
    old_hashes = {h.get("alg"): h.get("content") for h in old.get("hashes") or ()}
    new_hashes = {h.get("alg"): h.get("content") for h in new.get("hashes") or ()}
    for alg in sorted(old_hashes.keys() | new_hashes.keys(), key=str):
        if old_hashes.get(alg) != new_hashes.get(alg):
            details.append(f"hash {alg}: {_text(old_hashes.get(alg))} -> {_text(new_hashes.get(alg))}")
    old_props, new_props = _properties(old), _properties(new)
    for name in sorted(old_props.keys() | new_props.keys()):
        if old_props.get(name) != new_props.get(name):
            details.append(f"property {name}: {_text(old_props.get(name))} -> {_text(new_props.get(name))}")
    details.extend(f"{key} changed" for key in ("modelCard", "data") if old.get(key) != new.get(key))
    return tuple(details)
