"""``compile_agent(gathered, settings) -> Compiled``: the CompiledAgentManifest (CAM) of one Agent.

Pure and deterministic: the manifest depends only on ``gathered`` and ``settings``; the same inputs give
the same ``manifest_yaml`` bytes, ``sha256`` and ``source_hash`` (collections the Agent declares keep
its order, everything else is sorted). docs/compiled-manifest.md documents every field.

The manifest is built even when there are problems (what could be resolved is filled in), so callers
can show it; the controller writes a ConfigMap only when ``Compiled.ok``.

Hashes (decision D7):

- ``sha256``: sha256 of the manifest's canonical JSON (canonical.py), the
  ``joch.dev/manifest-sha256`` annotation and ``status.compiledManifest.sha256``. It changes whenever
  any byte of the manifest would; compare it to skip no-op writes.
- ``source_hash`` (``spec.sourceHash``): sha256 of the canonical JSON of
  ``{"agent": <Agent spec, wire form>, "inputs": [[<Kind/ns/name>, uid, generation(, trustScore)]...]}``
  with one entry per consulted object (``Gathered.inputs``; uid and generation null when the object does
  not exist), sorted by key. MCP servers add their ``status.trustScore`` because the manifest snapshots
  it. A change to a referenced object's generation, uid (delete and re-create) or existence changes it;
  status-only or label-only changes of a dependency do not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.tool import Tool
from joch.domain import policy as engine
from joch.domain.compilation import canonical, checks, drift, memo, preflight, resolve
from joch.domain.compilation.keys import ObjectKey
from joch.domain.compilation.problems import REFERENCE_REASONS, Problem
from joch.domain.settings import OperatorSettings

__all__ = [
    "API_VERSION",
    "APPROVAL_BY_DEFAULT",
    "KIND",
    "Compiled",
    "compile_agent",
    "manifest_name",
    "schema_sha",
    "source_hash",
]

API_VERSION: Final = "internal.joch.dev/v1"
KIND: Final = "CompiledAgentManifest"
MAX_NAME: Final = 253

APPROVAL_BY_DEFAULT: Final = preflight.APPROVAL_BY_DEFAULT


def manifest_name(agent_name: str, generation: int) -> str:
    """``<agent>-g<generation>`` (decision D7): the CAM and its ConfigMap are both called this."""
    return f"{agent_name}-g{generation}"


@dataclasses.dataclass(frozen=True, slots=True)
class Compiled:
    """The result of one compile. ``manifest`` must not be mutated (it is hashed)."""

    name: str
    namespace: str
    agent_name: str
    generation: int
    manifest: dict[str, Any]
    manifest_yaml: str
    sha256: str
    source_hash: str
    problems: tuple[Problem, ...]
    environment: str
    framework: str
    model_route: str | None
    dependencies: frozenset[ObjectKey]

    @property
    def ok(self) -> bool:
        """No problems: the manifest may be written."""
        return not self.problems

    @property
    def reference_problems(self) -> tuple[Problem, ...]:
        """Missing or forbidden references (the ResolvedRefs condition)."""
        return tuple(p for p in self.problems if p.reason in REFERENCE_REASONS)

    @property
    def compile_problems(self) -> tuple[Problem, ...]:
        """Every other problem (the Compiled condition)."""
        return tuple(p for p in self.problems if p.reason not in REFERENCE_REASONS)

    def status_ref(self) -> dict[str, Any]:
        """``Agent.status.compiledManifest`` (decision D7), camelCase."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "sourceHash": self.source_hash,
            "generation": self.generation,
        }


def schema_sha(tool: Tool) -> str | None:
    """``sha256:<hex>`` of the canonical JSON of {inputSchema, outputSchema} (absent schemas left out);
    None when the Tool declares neither."""
    schemas = {}
    if tool.spec.input_schema is not None:
        schemas["inputSchema"] = tool.spec.input_schema
    if tool.spec.output_schema is not None:
        schemas["outputSchema"] = tool.spec.output_schema
    if not schemas:
        return None
    return "sha256:" + canonical.sha256_hex(canonical.canonical_json(schemas))


_schema_shas: Final[memo.ObjectMemo[Tool, str | None]] = memo.ObjectMemo("compiler.schema_sha", schema_sha)
""":func:`schema_sha` by Tool version: the Tools of a namespace recur in every Agent's manifest."""


def source_hash(gathered: resolve.Gathered) -> str:
    """spec.sourceHash: see the module docstring."""
    inputs: list[list[Any]] = []
    for key, obj in gathered.inputs.items():
        if obj is None:
            inputs.append([str(key), None, None])
            continue
        entry: list[Any] = [str(key), obj.metadata.uid, resolve.generation_of(obj)]
        if isinstance(obj, MCPServer):
            entry.append(obj.status.trust_score if obj.status is not None else None)
        inputs.append(entry)
    inputs.sort(key=lambda entry: str(entry[0]))
    payload = {"agent": gathered.agent.spec.wire(), "inputs": inputs}
    return canonical.sha256_hex(canonical.canonical_json(payload))


def compile_agent(
    gathered: resolve.Gathered,
    settings: OperatorSettings,
    *,
    programs: preflight.PolicyPrograms | None = None,
) -> Compiled:
    """Compile one Agent from its gathered inputs. ``programs`` caches compiled policies: the operator
    passes its one long-lived ``PolicyCompiler`` (shared with admission and the decision service); None
    compiles the Agent's policies afresh for this call (``joch compile``, tests)."""
    agent = gathered.agent
    spec = agent.spec
    adapter = gathered.adapter
    bindings = adapter.spec.bindings if adapter is not None else None
    tool_gateway = (bindings.tool_gateway_url if bindings else None) or settings.tool_gateway_url
    mcp_gateway = (bindings.mcp_gateway_url if bindings else None) or settings.mcp_gateway_url
    router = (bindings.model_router_url if bindings else None) or settings.model_router_url

    problems: list[Problem] = [Problem("MissingReference", ref.path, ref.message) for ref in gathered.missing]
    problems.extend(Problem("ForbiddenReference", ref.path, ref.message) for ref in gathered.forbidden)

    name = manifest_name(gathered.name, gathered.generation)
    if len(name) > MAX_NAME:
        problems.append(
            Problem("InvalidName", "metadata.name", f"manifest name {name[:40]}... is longer than {MAX_NAME}")
        )

    present_tools = [
        (item.tool, facts)
        for item in gathered.tools
        if item.tool is not None and (facts := preflight.tool_facts(item)) is not None
    ]
    tool_facts = [facts for _, facts in present_tools]
    if programs is None:  # a one-off compile (joch compile, tests): a compiler of its own
        programs = engine.PolicyCompiler(engine.CompileOptions(cel_backend=settings.cel_backend))
    outcome = preflight.run_preflight(gathered, tool_facts, programs)
    problems.extend(checks.capability_problems(gathered))
    problems.extend(checks.requirement_problems(gathered))
    problems.extend(checks.safety_problems(gathered))
    problems.extend(outcome.problems)

    framework: dict[str, Any] = {"adapter": spec.framework.adapter_ref.name}
    _put(framework, "adapterImage", adapter.spec.adapter_image if adapter is not None else None)
    _put(framework, "entrypoint", spec.framework.entrypoint)
    _put(framework, "pythonModule", spec.framework.python_module)
    _put(framework, "image", spec.framework.image)

    body: dict[str, Any] = {
        "agent": {"name": gathered.name, "namespace": gathered.namespace, "generation": gathered.generation},
        "environment": gathered.environment_name,
        "framework": framework,
        "tools": [
            _tool_entry(facts, tool, tool_gateway, outcome.approval_required) for tool, facts in present_tools
        ],
        "mcpServers": [_mcp_entry(gathered, item, mcp_gateway) for item in gathered.mcp_servers],
        "memories": {
            item.slot: {"endpoint": settings.memory_url, "namespace": item.namespace, "name": item.name}
            for item in gathered.memories
        },
        "ragRefs": [_ref(gathered, item.namespace, item.name) for item in gathered.rags],
        "policies": {"resolved": [_pin(gathered, item) for item in gathered.policies]},
        "observability": {
            "tracing": spec.observability.tracing,
            "agbom": spec.observability.agbom,
            "redactSensitiveData": spec.observability.redact_sensitive_data,
            "traceEndpoint": settings.trace_url,
            "abomEndpoint": settings.agbom_url,
        },
    }
    if spec.model_route is not None:
        route: dict[str, Any] = _ref(
            gathered, gathered.route_namespace or gathered.namespace, spec.model_route.route_ref.name
        )
        if gathered.route is not None:
            strategy = gathered.route.spec.strategy
            route["primary"] = strategy.primary
            route["fallback"] = list(strategy.fallback or ())
        body["modelRoute"] = route
        body["modelRouterUrl"] = router
    if gathered.team is not None:
        body["team"] = gathered.team.metadata.name
    if spec.handoffs is not None:
        body["handoffs"] = {"allowedAgents": list(spec.handoffs.allowed_agents)}
    if spec.budgets is not None and (budgets := spec.budgets.wire()):
        body["budgets"] = budgets
    hashed_sources = source_hash(gathered)
    body["sourceHash"] = hashed_sources

    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": gathered.namespace},
        "spec": body,
    }
    return Compiled(
        name=name,
        namespace=gathered.namespace,
        agent_name=gathered.name,
        generation=gathered.generation,
        manifest=manifest,
        manifest_yaml=canonical.canonical_yaml(manifest),
        sha256=canonical.sha256_hex(canonical.canonical_json(manifest)),
        source_hash=hashed_sources,
        problems=tuple(problems),
        environment=gathered.environment_name,
        framework=spec.framework.adapter_ref.name,
        model_route=spec.model_route.route_ref.name if spec.model_route is not None else None,
        dependencies=gathered.dependencies,
    )


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


def _ref(gathered: resolve.Gathered, namespace: str, name: str) -> dict[str, Any]:
    """``{name}``, plus ``namespace`` when it is not the Agent's."""
    out: dict[str, Any] = {"name": name}
    if namespace != gathered.namespace:
        out["namespace"] = namespace
    return out


def _pin(gathered: resolve.Gathered, item: resolve.ResolvedPolicy) -> str:
    """``name@vN``, or ``namespace/name@vN`` for a Policy outside the Agent's namespace."""
    prefix = "" if item.namespace == gathered.namespace else f"{item.namespace}/"
    return f"{prefix}{item.name}@v{resolve.generation_of(item.policy)}"


def _tool_entry(
    facts: preflight.ToolFacts, tool: Tool, gateway: str, forced: frozenset[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": facts.name,
        "toolName": facts.tool_name,
        "gatewayUrl": gateway,
        "sideEffect": facts.side_effect,
        "requiresApproval": facts.requires_approval or facts.name in forced,
    }
    _put(entry, "schemaSha", _schema_shas(tool))
    return entry


def _mcp_entry(gathered: resolve.Gathered, item: resolve.ResolvedMCPServer, gateway: str) -> dict[str, Any]:
    entry = _ref(gathered, item.namespace, item.name)
    entry["gatewayUrl"] = gateway
    server = item.server
    if server is not None:
        _put(entry, "pinnedVersion", server.spec.security.pinned_version)
        _put(entry, "trustScore", server.status.trust_score if server.status is not None else None)
        tools = (item.tool for item in gathered.tools if item.tool is not None)
        found = drift.server_drift(server, tools, _schema_shas)
        if found:  # gateways refuse a drifted server until a human re-pins it (joch mcp pin)
            entry["drifted"] = True
            entry["drift"] = list(found)
    return entry
