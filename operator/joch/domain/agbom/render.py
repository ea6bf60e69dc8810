"""``render(content, generation=, timestamp=) -> str``: the CycloneDX 1.6 JSON text of an AgBOM.

The document is built with cyclonedx-python-lib's model and serialiser; what the library does not model
(component ``modelCard`` and ``data``, ``compositions``) and what it would decide itself (the
``dependencies`` graph, which it cannot express for nested services, and ``metadata.timestamp``, which it
would reformat) are written into its JSON output afterwards. The text reads only ``content.body``, the
generation and the timestamp: equal inputs give identical bytes (sorted keys, compact separators, a final
newline).

Components and services are serialised one by one through the library's model and remembered by
their content (:data:`FRAGMENTS`, bounded): the Tools, MCP servers, policies and images of a namespace
recur in every Agent's document, so a fan-out renders each distinct one once. They are listed in the
body's order (sorted by bom-ref).

Completeness cannot be said on a composition in 1.6 (it has no description), so an incomplete document
names each missing reference as a ``joch:missing`` property of the metadata component.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from cyclonedx.model import HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.lifecycle import LifecyclePhase, PredefinedLifecycle
from cyclonedx.model.service import Service
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema.schema import SchemaVersion1Dot6
from packageurl import PackageURL

from joch.domain.agbom.content import Content
from joch.domain.compilation import memo
from joch.domain.compilation.canonical import canonical_json

__all__ = ["FRAGMENTS", "render"]

FRAGMENTS: Final[memo.Memo[tuple[str, str], dict[str, Any]]] = memo.Memo("agbom.fragments", 8192)
"""(component|service, canonical JSON of its body item) -> its CycloneDX JSON object."""

_JSON_EXTRAS = ("modelCard", "data")
"""Component fields the library does not model; copied from the body into its JSON output."""


def render(content: Content, *, generation: int, timestamp: str) -> str:
    """CycloneDX 1.6 JSON text; byte-identical for equal (content, generation, timestamp); sorted keys,
    no trailing whitespace, ends with a newline. ``generation`` is the document's ``version`` (>= 1)."""
    body = content.body
    bom = _bom(body, generation)
    with warnings.catch_warnings():  # the library warns about the dependency graph it is not given
        warnings.simplefilter("ignore")
        text = JsonV1Dot6(bom).output_as_string()
    document: dict[str, Any] = json.loads(text)
    document["metadata"]["timestamp"] = timestamp
    if body["components"]:
        document["components"] = [_fragment("component", item) for item in body["components"]]
    if body["services"]:
        document["services"] = [_fragment("service", item) for item in body["services"]]
    document["dependencies"] = [
        {"ref": ref, "dependsOn": list(depends)} if depends else {"ref": ref}
        for ref, depends in body["dependencies"]
    ]
    document["compositions"] = [{"aggregate": body["aggregate"], "assemblies": [body["agent"]["bomRef"]]}]
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _bom(body: Mapping[str, Any], generation: int) -> Bom:
    agent = body["agent"]
    root = Component(
        type=ComponentType.APPLICATION,
        bom_ref=agent["bomRef"],
        name=agent["name"],
        group=agent["group"],
        version=agent["version"],
        properties=_properties(agent["properties"]),
    )
    tool = body["tool"]
    metadata = BomMetaData(
        component=root,
        lifecycles=[PredefinedLifecycle(LifecyclePhase.OPERATIONS)],
        tools=ToolRepository(
            components=[
                Component(
                    type=ComponentType.APPLICATION,
                    name=tool["name"],
                    group=tool["group"],
                    version=tool["version"],
                )
            ]
        ),
        supplier=OrganizationalEntity(name=body["supplier"]) if "supplier" in body else None,
        properties=_properties(body["metadataProperties"]),
    )
    return Bom(
        serial_number=uuid.UUID(str(body["serialNumber"]).removeprefix("urn:uuid:")),
        version=generation,
        metadata=metadata,
    )


def _fragment(kind: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """One component or service as CycloneDX JSON (shared: never mutate it)."""
    key = (kind, canonical_json(item))
    found = FRAGMENTS.get(key)
    if found is None:
        model: Any = _component(item) if kind == "component" else _service(item)
        found = json.loads(model.as_json(view_=SchemaVersion1Dot6))  # as_json: py-serializable's
        for extra in _JSON_EXTRAS if kind == "component" else ():
            if extra in item:
                found[extra] = item[extra]
        FRAGMENTS.put(key, found)
    return found


def _properties(pairs: Iterable[Sequence[str]]) -> list[Property]:
    return [Property(name=name, value=value) for name, value in pairs]


def _hashes(items: Iterable[Mapping[str, str]]) -> list[HashType]:
    return [HashType(alg=HashAlgorithm(item["alg"]), content=item["content"]) for item in items]


def _component(item: Mapping[str, Any]) -> Component:
    return Component(
        type=ComponentType(item["type"]),
        bom_ref=item["bomRef"],
        name=item["name"],
        group=item.get("group"),
        version=item.get("version"),
        supplier=OrganizationalEntity(name=item["supplier"]) if "supplier" in item else None,
        purl=PackageURL.from_string(item["purl"]) if "purl" in item else None,
        hashes=_hashes(item.get("hashes", ())),
        properties=_properties(item["properties"]),
    )


def _service(item: Mapping[str, Any]) -> Service:
    return Service(
        bom_ref=item["bomRef"],
        name=item["name"],
        group=item.get("group"),
        version=item.get("version"),
        endpoints=[XsUri(url) for url in item.get("endpoints", ())],
        properties=_properties(item["properties"]),
        services=[_service(child) for child in item.get("services", ())],
    )
