"""``describe(...) -> Content``: what one Agent's AI bill of materials says, as plain data (pure, cheap).

The document is determined by :attr:`Content.body` (plus the generation and timestamp the renderer is
given), so a caller compares :attr:`Content.content_hash` with the stored one and renders (the expensive
CycloneDX step, render.py) only when it moved.

Shape of ``body`` (JSON-able, every list sorted; render.py is its only reader)::

    {"serialNumber": "urn:uuid:...",
     "agent": {"bomRef", "name", "group", "version", "properties": [[name, value], ...]},
     "supplier": <Team name>,                     # only when a Team owns the namespace
     "metadataProperties": [[name, value], ...],
     "tool": {"group", "name", "version"},
     "components": [{"bomRef", "type", "name", "group"?, "version"?, "supplier"?, "purl"?,
                     "hashes"?: [{"alg", "content"}], "properties": [[name, value], ...],
                     "modelCard"?: {...}, "data"?: [{...}]}, ...],
     "services": [{"bomRef", "name", "group"?, "version"?, "endpoints"?, "properties", "services"?}, ...],
     "dependencies": [[bomRef, [bomRef, ...]], ...],
     "aggregate": "complete" | "incomplete"}

Every component and service carries ``joch:kind`` (Model, Image, Tool, MCPServer, MCPTool, Policy,
Memory, RAG, KnowledgeSource, Secret); its bom-ref is ``<prefix>:<name>`` where the name is what
:class:`HighRisk` and :func:`diff.diff` call it (``model:openai:gpt-5``, ``tool:support/slack.send``).

High-risk findings do not depend on :class:`Options` (a promotion gate must see a risky tool even when
the document leaves tools out); listed components carry them as ``joch:highRisk`` properties.
Completeness does not depend on Options either, except that KnowledgeSources are only looked up (and
so only reported missing) when ``knowledge`` is on.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

from packageurl import PackageURL

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agbom import AgBOMSpec
from joch.api.v1alpha1.knowledgesource import KnowledgeSource
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.tool import Tool
from joch.domain.compilation import Compiled, Gathered, Lookup, ObjectKey, binds, canonical_json, sha256_hex
from joch.domain.compilation.resolve import ResolvedMCPServer

__all__ = [
    "NAMESPACE",
    "RISKY_SIDE_EFFECTS",
    "Content",
    "HighRisk",
    "Options",
    "agent_uid_for",
    "describe",
    "serial_number",
]

NAMESPACE: Final = uuid.UUID("a15aece3-e41d-58f7-8786-558b89df7c47")
"""uuid5(NAMESPACE_URL, "https://joch.dev/agbom"): the namespace of every joch AgBOM serial number."""

RISKY_SIDE_EFFECTS: Final = frozenset({"external_write", "financial", "code_execution"})
"""Side-effect levels that are high risk when calls need no approval."""

TOOL_GROUP: Final = "joch.dev"


def serial_number(agent_uid: str) -> str:
    """``urn:uuid:<uuid5(NAMESPACE, agent_uid)>``: one serial number per Agent, stable across versions."""
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, agent_uid)}"


def agent_uid_for(namespace: str, name: str) -> str:
    """A stable stand-in uid for an Agent read from a file (it has no metadata.uid)."""
    return str(uuid.uuid5(NAMESPACE, f"agent:{namespace}/{name}"))


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Component classes the document lists (AgBOM spec.components); secrets only on request."""

    models: bool = True
    tools: bool = True
    mcp_servers: bool = True
    policies: bool = True
    memory: bool = True
    knowledge: bool = True
    capabilities: bool = True
    secrets: bool = False

    @classmethod
    def from_spec(cls, spec: AgBOMSpec | None) -> Options:
        """Unset fields mean included, except ``secrets``, which is included only when true."""
        wanted = spec.components if spec is not None else None
        if wanted is None:
            return cls()
        return cls(
            models=wanted.models is not False,
            tools=wanted.tools is not False,
            mcp_servers=wanted.mcp_servers is not False,
            policies=wanted.policies is not False,
            memory=wanted.memory is not False,
            knowledge=wanted.knowledge is not False,
            capabilities=wanted.capabilities is not False,
            secrets=wanted.secrets is True,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HighRisk:
    """One high-risk component and why (AgBOM status.highRiskComponents)."""

    kind: str
    name: str
    reason: str

    def wire(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "reason": self.reason}


@dataclasses.dataclass(frozen=True, slots=True)
class Content:
    """Everything the document says except metadata.timestamp and version."""

    agent_namespace: str
    agent_name: str
    agent_uid: str
    body: Mapping[str, Any]
    content_hash: str
    high_risk: tuple[HighRisk, ...]
    complete: bool
    missing: tuple[str, ...]
    dependencies: frozenset[ObjectKey]


def describe(
    gathered: Gathered,
    compiled: Compiled,
    *,
    agent_uid: str,
    options: Options,
    lookup: Lookup,
    tool_version: str,
) -> Content:
    """The content of ``gathered.agent``'s AgBOM; see the module docstring."""
    builder = _Builder(gathered, compiled, options, lookup)
    builder.build()
    missing = tuple(dict.fromkeys(builder.missing))
    complete = not missing
    risks = _merge_risks(builder.risks)
    for risk in risks:
        listed = builder.listed.get((risk.kind, risk.name))
        if listed is not None:
            listed.append(["joch:highRisk", risk.reason])

    agent_props = [["joch:framework", compiled.framework], ["joch:environment", gathered.environment_name]]
    if gathered.team is not None:
        agent_props.append(["joch:team", gathered.team.metadata.name or ""])
    agent_props.extend(["joch:missing", item] for item in missing)
    components = [_finish(item) for item in builder.components.values()]
    services = [_finish(item) for item in builder.services.values()]
    top = sorted(item["bomRef"] for item in (*components, *services))
    dependencies = {agent_uid: top, **{ref: sorted(deps) for ref, deps in builder.depends.items()}}
    body: dict[str, Any] = {
        "serialNumber": serial_number(agent_uid),
        "agent": {
            "bomRef": agent_uid,
            "name": gathered.name,
            "group": gathered.namespace,
            "version": f"g{compiled.generation}",
            "properties": sorted(agent_props),
        },
        "metadataProperties": [["joch:environment", gathered.environment_name]],
        "tool": {"group": TOOL_GROUP, "name": "joch", "version": tool_version},
        "components": sorted(components, key=lambda item: str(item["bomRef"])),
        "services": sorted(services, key=lambda item: str(item["bomRef"])),
        "dependencies": sorted([ref, deps] for ref, deps in dependencies.items()),
        "aggregate": "complete" if complete else "incomplete",
    }
    if gathered.team is not None:
        body["supplier"] = gathered.team.metadata.name or ""
    return Content(
        agent_namespace=gathered.namespace,
        agent_name=gathered.name,
        agent_uid=agent_uid,
        body=body,
        content_hash=sha256_hex(canonical_json(body)),
        high_risk=risks,
        complete=complete,
        missing=missing,
        dependencies=frozenset(builder.consulted),
    )


# --- building ------------------------------------------------------------------------------------------


def _finish(item: dict[str, Any]) -> dict[str, Any]:
    """Sort an item's properties and nested services (in place) and return it."""
    item["properties"] = sorted(item["properties"])
    if "services" in item:
        item["services"] = sorted((_finish(child) for child in item["services"]), key=lambda c: c["bomRef"])
    return item


def _merge_risks(risks: Iterable[HighRisk]) -> tuple[HighRisk, ...]:
    reasons: dict[tuple[str, str], list[str]] = {}
    for risk in risks:
        found = reasons.setdefault((risk.kind, risk.name), [])
        if risk.reason not in found:
            found.append(risk.reason)
    return tuple(HighRisk(kind, name, "; ".join(reasons[kind, name])) for kind, name in sorted(reasons))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _spec_hash(spec: meta.Schema) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": sha256_hex(canonical_json(spec.wire()))}]


def _where(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace is not None else name


_MODALITY_IN: Final = (("text", "text"), ("vision", "image"), ("audio", "audio"))
_MODALITY_OUT: Final = (("text", "text"), ("audio", "audio"))


def _model_card(model: Model, *, capabilities: bool) -> dict[str, Any]:
    caps = model.spec.capabilities.wire() if model.spec.capabilities is not None else {}
    inputs = [{"format": fmt} for key, fmt in _MODALITY_IN if caps.get(key)]
    outputs = [{"format": fmt} for key, fmt in _MODALITY_OUT if caps.get(key)]
    params: dict[str, Any] = {"task": "text-generation"}
    if inputs:
        params["inputs"] = inputs
    if outputs:
        params["outputs"] = outputs
    card: dict[str, Any] = {"modelParameters": params}
    limits = model.spec.limits.wire() if model.spec.limits is not None else {}
    properties = [
        {"name": f"joch:limit:{key}", "value": str(value)}
        for key, value in sorted(limits.items())
        if key != "contextWindowTokens"
    ]
    if "contextWindowTokens" in limits:
        properties.append({"name": "joch:contextWindowTokens", "value": str(limits["contextWindowTokens"])})
    if capabilities:
        properties.extend(
            {"name": f"joch:capability:{key}", "value": "true"} for key in sorted(caps) if caps[key] is True
        )
    if model.spec.limits is not None and model.spec.limits.max_output_tokens is not None:
        card["considerations"] = {
            "technicalLimitations": [
                f"at most {model.spec.limits.max_output_tokens} output tokens per response"
            ]
        }
    if properties:
        card["properties"] = sorted(properties, key=lambda p: (p["name"], p["value"]))
    return card


class _Builder:
    """Collects the components, services, dependencies, risks and gaps of one Agent's document."""

    def __init__(self, gathered: Gathered, compiled: Compiled, options: Options, lookup: Lookup) -> None:
        self.gathered = gathered
        self.spec: Mapping[str, Any] = compiled.manifest.get("spec", {})
        self.options = options
        self.lookup = lookup
        self.components: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.depends: dict[str, set[str]] = {}
        self.risks: list[HighRisk] = []
        self.missing: list[str] = []
        self.consulted: set[ObjectKey] = set()
        self.listed: dict[tuple[str, str], list[list[str]]] = {}
        """(kind, name) -> the properties list of the listed item, for joch:highRisk."""
        self.secrets: dict[str, set[str]] = {}
        """secret bom-ref -> bom-refs of the items that use it."""

    def build(self) -> None:
        self.missing.extend(
            self._missing_name(ref.kind, ref.namespace, ref.name) for ref in self.gathered.missing
        )
        self.missing.extend(
            f"{ref.kind} {ref.namespace}/{ref.name} (namespace not shared)" for ref in self.gathered.forbidden
        )
        self._models()
        self._images()
        tools = self._tools()
        self._mcp_servers(tools)
        for service in tools.values():
            self.services[service["bomRef"]] = service
        self._policies()
        self._memories()
        self._knowledge()
        self._secrets()

    @staticmethod
    def _missing_name(kind: str, namespace: str | None, name: str) -> str:
        return f"{kind} {_where(namespace, name)}"

    def _item(self, kind: str, key: str, bom_ref: str, *, name: str, **fields: Any) -> dict[str, Any]:
        """A component or service; ``key`` is what HighRisk calls it, ``name`` its CycloneDX name."""
        properties: list[list[str]] = [["joch:kind", kind]]
        self.listed[(kind, key)] = properties
        return {"bomRef": bom_ref, "name": name, **fields, "properties": properties}

    def _data_item(
        self, kind: str, prefix: str, namespace: str, name: str, spec: meta.Schema
    ) -> tuple[str, dict[str, Any]]:
        """A ``data`` component for a namespaced object, hashed by its spec: (bom-ref, component)."""
        where = f"{namespace}/{name}"
        bom_ref = f"{prefix}:{where}"
        component = self._item(
            kind, where, bom_ref, name=name, type="data", group=namespace, hashes=_spec_hash(spec)
        )
        return bom_ref, component

    def _uses_secret(self, user: str, ref: meta.Ref | None, default_namespace: str) -> None:
        if ref is not None and self.options.secrets:
            secret = f"secret:{ref.namespace or default_namespace}/{ref.name}"
            self.secrets.setdefault(secret, set()).add(user)
            self.depends.setdefault(user, set()).add(secret)

    # --- classes ---------------------------------------------------------------------------------------

    def _models(self) -> None:
        environment = self.gathered.environment
        allowed = environment.spec.allowed_providers if environment is not None else None
        for item in self.gathered.models:
            provider = item.address.partition(":")[0]
            if environment is not None and allowed is not None and provider not in allowed:
                reason = f"provider {provider} is not allow-listed in environment {environment.metadata.name}"
                self.risks.append(HighRisk("Model", item.address, reason))
            bom_ref = f"model:{item.address}"
            if not self.options.models or item.model is None or bom_ref in self.components:
                continue
            model = item.model
            component = self._item(
                "Model",
                item.address,
                bom_ref,
                name=item.address,
                type="machine-learning-model",
                group=model.metadata.namespace or "",
                version=model.spec.model,
                supplier=model.spec.provider,
                modelCard=_model_card(model, capabilities=self.options.capabilities),
            )
            component["properties"].append(["joch:role", item.role])
            if model.spec.endpoint is not None:
                component["properties"].append(["joch:endpointType", model.spec.endpoint.type])
            self.components[bom_ref] = component
            self._uses_secret(
                bom_ref, model.spec.auth.secret_ref if model.spec.auth else None, component["group"]
            )

    def _images(self) -> None:
        framework: Mapping[str, Any] = self.spec.get("framework", {})
        for role, key in (("adapter", "adapterImage"), ("agent", "image")):
            reference = framework.get(key)
            if not isinstance(reference, str) or not reference:
                continue
            bom_ref = f"image:{reference}"
            if bom_ref in self.components:
                self.components[bom_ref]["properties"].append(["joch:role", role])
                continue
            fields = _image_fields(reference)
            component = self._item("Image", reference, bom_ref, type="container", **fields)
            component["properties"].append(["joch:role", role])
            self.components[bom_ref] = component

    def _tools(self) -> dict[str, dict[str, Any]]:
        """Tool services by Tool name (MCP-bound ones are moved under their server afterwards)."""
        by_name = {item.name: item.tool for item in self.gathered.tools if item.tool is not None}
        out: dict[str, dict[str, Any]] = {}
        namespace = self.gathered.namespace
        for entry in self.spec.get("tools", ()):
            name = str(entry["name"])
            where = f"{namespace}/{name}"
            side_effect = str(entry.get("sideEffect", "unknown"))
            approval = bool(entry.get("requiresApproval"))
            if side_effect in RISKY_SIDE_EFFECTS and not approval:
                self.risks.append(HighRisk("Tool", where, f"{side_effect} side effects without approval"))
            tool = by_name.get(name)
            if not self.options.tools or tool is None:
                continue
            service = self._item("Tool", where, f"tool:{where}", name=name, group=namespace)
            properties = service["properties"]
            properties.append(["joch:toolName", str(entry.get("toolName", name))])
            properties.append(["joch:sideEffect", side_effect])
            properties.append(["joch:requiresApproval", _flag(approval)])
            properties.append(["joch:toolType", tool.spec.type])
            if "schemaSha" in entry:
                properties.append(["joch:schemaSha", str(entry["schemaSha"])])
            if tool.spec.endpoint is not None:
                service["endpoints"] = [tool.spec.endpoint.url]
                auth = tool.spec.endpoint.auth
                self._uses_secret(service["bomRef"], auth.secret_ref if auth else None, namespace)
            service["tool"] = tool
            out[name] = service
        return out

    def _mcp_servers(self, tools: dict[str, dict[str, Any]]) -> None:
        entries = list(self.spec.get("mcpServers", ()))
        for index, item in enumerate(self.gathered.mcp_servers):
            entry: Mapping[str, Any] = entries[index] if index < len(entries) else {}
            server = item.server
            if server is None:
                continue
            where = f"{item.namespace}/{item.name}"
            if server.spec.security.pinned_version is None:
                self.risks.append(HighRisk("MCPServer", where, "no pinned version"))
            drift = [str(line) for line in entry.get("drift", ())]
            if drift:
                self.risks.append(HighRisk("MCPServer", where, "schema drift: " + "; ".join(drift)))
            if self.options.mcp_servers:
                self._mcp_service(item, server, entry, tools, drifted=bool(drift))
        for service in tools.values():
            service.pop("tool", None)

    def _mcp_service(
        self,
        item: ResolvedMCPServer,
        server: MCPServer,
        entry: Mapping[str, Any],
        tools: dict[str, dict[str, Any]],
        *,
        drifted: bool,
    ) -> None:
        where = f"{item.namespace}/{item.name}"
        bom_ref = f"mcp:{where}"
        fields: dict[str, Any] = {"group": item.namespace}
        if server.spec.security.pinned_version is not None:
            fields["version"] = server.spec.security.pinned_version
        if server.spec.endpoint is not None and server.spec.endpoint.url is not None:
            fields["endpoints"] = [server.spec.endpoint.url]
        service = self._item("MCPServer", where, bom_ref, name=item.name, **fields)
        properties = service["properties"]
        properties.append(["joch:transport", server.spec.transport])
        properties.append(["joch:pinned", _flag(server.spec.security.pinned_version is not None)])
        if drifted:
            properties.append(["joch:drifted", "true"])
        if "trustScore" in entry:
            properties.append(["joch:trustScore", str(entry["trustScore"])])
        discovered = list(server.status.discovered_tools or ()) if server.status is not None else []
        children: list[dict[str, Any]] = []
        for name in list(tools):
            tool: Tool = tools[name]["tool"]
            if binds(tool, server):
                child = tools.pop(name)
                child.pop("tool")
                called = tool.spec.tool_name or tool.metadata.name or ""
                if called in discovered:
                    child["properties"].append(["joch:discovered", "true"])
                    discovered.remove(called)
                children.append(child)
        for name in sorted(set(discovered)):
            child = self._item("MCPTool", f"{where}/{name}", f"mcptool:{where}/{name}", name=name)
            child["properties"].append(["joch:discovered", "true"])
            children.append(child)
        if children:
            service["services"] = children
            self.depends.setdefault(bom_ref, set()).update(child["bomRef"] for child in children)
        self.services[bom_ref] = service
        self._uses_secret(bom_ref, server.spec.auth.secret_ref if server.spec.auth else None, item.namespace)

    def _policies(self) -> None:
        if not self.options.policies:
            return
        pins = list(self.spec.get("policies", {}).get("resolved", ()))
        for index, pin in enumerate(str(p) for p in pins):
            name, _, version = pin.rpartition("@")
            namespace, _, short = name.rpartition("/")
            bom_ref = f"policy:{pin}"
            component = self._item(
                "Policy",
                pin,
                bom_ref,
                name=short,
                type="data",
                group=namespace or self.gathered.namespace,
                version=version,
                data=[{"type": "configuration", "name": short}],
            )
            if index < len(self.gathered.policies):
                component["properties"].append(["joch:source", self.gathered.policies[index].source])
            self.components[bom_ref] = component

    def _memories(self) -> None:
        if not self.options.memory:
            return
        for item in self.gathered.memories:
            if item.memory is None:
                continue
            spec = item.memory.spec
            bom_ref, component = self._data_item("Memory", "memory", item.namespace, item.name, spec)
            component["properties"].extend(
                [
                    ["joch:slot", item.slot],
                    ["joch:memoryType", spec.type],
                    ["joch:backend", spec.backend.type],
                ]
            )
            if bom_ref in self.components:  # one Memory in two slots
                component["properties"].extend(
                    p for p in self.components[bom_ref]["properties"] if p[0] == "joch:slot"
                )
            self.components[bom_ref] = component
            self._uses_secret(bom_ref, spec.backend.connection_secret_ref, item.namespace)

    def _knowledge(self) -> None:
        if not self.options.knowledge:
            return
        for item in self.gathered.rags:
            if item.rag is None:
                continue
            spec = item.rag.spec
            bom_ref, component = self._data_item("RAG", "rag", item.namespace, item.name, spec)
            if spec.vector_store is not None:
                component["properties"].append(["joch:vectorStore", spec.vector_store.type])
                self._uses_secret(bom_ref, spec.vector_store.connection_secret_ref, item.namespace)
            self.components[bom_ref] = component
            for source in spec.sources:
                self._knowledge_source(bom_ref, item.namespace, source.name)

    def _knowledge_source(self, rag_ref: str, namespace: str, name: str) -> None:
        self.consulted.add(ObjectKey(KnowledgeSource.crd.kind, namespace, name))
        found = self.lookup.get(KnowledgeSource, namespace, name)
        if found is None:
            self.missing.append(self._missing_name("KnowledgeSource", namespace, name))
            return
        bom_ref = f"knowledge:{namespace}/{name}"
        self.depends.setdefault(rag_ref, set()).add(bom_ref)
        if bom_ref in self.components:
            return
        spec = found.spec
        _, component = self._data_item("KnowledgeSource", "knowledge", namespace, name, spec)
        component["properties"].append(["joch:sourceType", spec.type])
        if spec.classification is not None and spec.classification.sensitivity is not None:
            component["properties"].append(["joch:sensitivity", spec.classification.sensitivity])
        self.components[bom_ref] = component
        self._uses_secret(bom_ref, spec.connector.secret_ref if spec.connector else None, namespace)

    def _secrets(self) -> None:
        for bom_ref, users in self.secrets.items():
            name = bom_ref.removeprefix("secret:")
            component = self._item("Secret", name, bom_ref, name=bom_ref, type="data")
            component["properties"].extend(["joch:usedBy", user] for user in sorted(users))
            self.components[bom_ref] = component


def _image_fields(reference: str) -> dict[str, Any]:
    """name (the repository), purl, and for a digest reference version and hash, of an image reference."""
    named, _, digest = reference.partition("@")
    repository, tag = named, None
    last = named.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = named.rpartition(":")
    qualifiers = {"repository_url": repository}
    if tag:
        qualifiers["tag"] = tag
    purl = PackageURL(
        type="oci", name=repository.rsplit("/", 1)[-1].lower(), version=digest or None, qualifiers=qualifiers
    )
    fields: dict[str, Any] = {"name": repository, "purl": purl.to_string()}
    if digest:
        fields["version"] = digest
        algorithm, _, value = digest.partition(":")
        if algorithm == "sha256" and value:
            fields["hashes"] = [{"alg": "SHA-256", "content": value}]
    return fields
