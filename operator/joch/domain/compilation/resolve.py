"""Gather: everything one Agent's compilation reads, resolved through a :class:`~catalog.Lookup`.

``gather(agent, lookup, settings) -> Gathered`` performs every lookup the compiler needs and nothing
else; ``compile_agent`` then works from the ``Gathered`` value alone. The split is the controller's
"gather -> decide" seam, and ``Gathered.dependencies`` is what its reverse index needs.

References (decision D2): a reference without a namespace means the Agent's namespace; a reference into
another namespace resolves only when that namespace is shared (``settings.shared_namespaces``), else it
is reported as a :class:`ForbiddenRef` and not looked up. Models are addressed ``provider:name`` and
resolve in the route's namespace, then in the shared namespaces (D6).

The effective policy set, in this order, de-duplicated by (namespace, name), first occurrence kept:

1. ``explicit``: ``Agent.spec.policies`` in declaration order;
2. ``selector``: Policies whose ``appliesTo`` selects the Agent (scope.py), from the Agent's namespace
   and the shared namespaces, sorted by namespace then name;
3. ``environment``: ``Environment.spec.policies`` of the Agent's environment (D5), in declaration order
   (a reference without a namespace means the Agent's namespace);
4. ``team``: ``Team.spec.defaultPolicies`` of the Team owning the Agent's namespace, in declaration
   order, each looked up in the Agent's namespace.

Not treated as references: ``handoffs.allowedAgents`` (names of peer Agents; an Agent may name one that
does not exist yet without failing). An Environment that does not exist is not a problem either (no
environment policies apply), but it is a dependency, so creating it recompiles the Agent.

``dependencies`` holds the key of every object consulted, present or missing: adapter, route, every
model key tried, tools, MCP servers, memories, RAGs, every effective policy (and missing ones), the
Environment, the Team (when one owns the namespace) and the Namespace (when its label decided, or could
have decided, the environment). Objects that were consulted but did not match (Policies whose selector
does not match, Teams owning other namespaces) are not dependencies: the controller finds the Agents a
changed Policy or Team now affects with :func:`scope.policy_selects` and ``Team.spec.namespaces``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final, Literal

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.frameworkadapter import FrameworkAdapter
from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.memory import Memory
from joch.api.v1alpha1.model import Model
from joch.api.v1alpha1.modelroute import ModelRoute
from joch.api.v1alpha1.policy import Policy
from joch.api.v1alpha1.rag import RAG
from joch.api.v1alpha1.team import Team
from joch.api.v1alpha1.tool import Tool
from joch.domain.compilation import catalog, keys, memo, scope
from joch.domain.compilation.scope import environment_of
from joch.domain.settings import OperatorSettings

__all__ = [
    "ForbiddenRef",
    "Gathered",
    "MissingRef",
    "PolicySource",
    "ResolvedMCPServer",
    "ResolvedMemory",
    "ResolvedModel",
    "ResolvedPolicy",
    "ResolvedRAG",
    "ResolvedTool",
    "environment_of",
    "gather",
    "generation_of",
]

PolicySource = Literal["explicit", "selector", "environment", "team"]


def generation_of(obj: meta.Resource) -> int:
    """metadata.generation, or 1 for an object that has none yet (read from a file, never stored)."""
    return obj.metadata.generation if obj.metadata.generation is not None else 1


@dataclasses.dataclass(frozen=True, slots=True)
class MissingRef:
    """A reference whose target does not exist (yet)."""

    kind: str
    namespace: str | None
    name: str
    path: str
    detail: str = ""

    @property
    def key(self) -> keys.ObjectKey:
        return keys.ObjectKey(self.kind, self.namespace, self.name)

    @property
    def message(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace is not None else self.name
        return f"{self.kind} {where} not found" + (f" ({self.detail})" if self.detail else "")


@dataclasses.dataclass(frozen=True, slots=True)
class ForbiddenRef:
    """A reference into a namespace that is neither the referrer's nor shared (decision D2)."""

    kind: str
    namespace: str
    name: str
    path: str
    allowed: tuple[str, ...]

    @property
    def message(self) -> str:
        allowed = ", ".join(self.allowed) or "none"
        return (
            f"{self.kind} {self.namespace}/{self.name} is in another namespace that is not shared "
            f"(shared namespaces: {allowed})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedModel:
    """One model of the route: ``role`` primary or fallback, ``path`` inside the route."""

    address: str
    role: Literal["primary", "fallback"]
    path: str
    model: Model | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedTool:
    path: str
    name: str
    tool: Tool | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedMCPServer:
    path: str
    namespace: str
    name: str
    server: MCPServer | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedMemory:
    slot: str
    path: str
    namespace: str
    name: str
    memory: Memory | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedRAG:
    path: str
    namespace: str
    name: str
    rag: RAG | None


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """One member of the effective policy set (present objects only; missing ones are MissingRefs)."""

    source: PolicySource
    path: str
    policy: Policy

    @property
    def namespace(self) -> str:
        return self.policy.metadata.namespace or ""

    @property
    def name(self) -> str:
        return self.policy.metadata.name or ""


@dataclasses.dataclass(frozen=True, slots=True)
class Gathered:
    """Every input of one Agent's compilation, resolved. Produced by :func:`gather`."""

    agent: Agent
    namespace: str
    environment_name: str
    environment_source: scope.EnvironmentSource
    environment: Environment | None
    team: Team | None
    adapter: FrameworkAdapter | None
    route: ModelRoute | None
    route_namespace: str | None
    models: tuple[ResolvedModel, ...]
    tools: tuple[ResolvedTool, ...]
    mcp_servers: tuple[ResolvedMCPServer, ...]
    memories: tuple[ResolvedMemory, ...]
    rags: tuple[ResolvedRAG, ...]
    policies: tuple[ResolvedPolicy, ...]
    missing: tuple[MissingRef, ...]
    forbidden: tuple[ForbiddenRef, ...]
    inputs: Mapping[keys.ObjectKey, meta.Resource | None]
    """Every object consulted (None when it does not exist), except the Namespace: the source hash input."""
    dependencies: frozenset[keys.ObjectKey]
    """``inputs`` plus the Namespace when its labels were read: what the controller's reverse index needs."""

    @property
    def name(self) -> str:
        return self.agent.metadata.name or ""

    @property
    def generation(self) -> int:
        return generation_of(self.agent)


class _Gatherer:
    """Accumulates lookups for one Agent; every lookup goes through :meth:`_get` so it is recorded."""

    def __init__(self, agent: Agent, lookup: catalog.Lookup, settings: OperatorSettings) -> None:
        self.agent = agent
        self.lookup = lookup
        self.settings = settings
        self.namespace = agent.metadata.namespace or ""
        self.inputs: dict[keys.ObjectKey, meta.Resource | None] = {}
        self.missing: list[MissingRef] = []
        self.forbidden: list[ForbiddenRef] = []

    def _get(self, kind: type[catalog.R], namespace: str | None, name: str) -> catalog.R | None:
        found = self.lookup.get(kind, namespace, name)
        self.inputs[keys.ObjectKey(kind.crd.kind, namespace, name)] = found
        return found

    def _namespace_for(self, kind: type[meta.Resource], ref: meta.Ref, path: str) -> str | None:
        """The namespace ``ref`` points into, or None (recorded as forbidden) when D2 forbids it."""
        target = ref.namespace or self.namespace
        if target != self.namespace and not self.settings.is_shared(target):
            self.forbidden.append(
                ForbiddenRef(kind.crd.kind, target, ref.name, path, tuple(self.settings.shared_namespaces))
            )
            return None
        return target

    def resolve(self, kind: type[catalog.R], ref: meta.Ref, path: str) -> tuple[str | None, catalog.R | None]:
        """Look up a namespaced reference; records a missing or forbidden ref. Returns (namespace, object)."""
        namespace = self._namespace_for(kind, ref, path)
        if namespace is None:
            return None, None
        return namespace, self.resolve_local(kind, ref.name, path, namespace)

    def resolve_local(
        self, kind: type[catalog.R], name: str, path: str, namespace: str | None = None
    ) -> catalog.R | None:
        """Look up ``name`` in ``namespace`` (default: the Agent's, which D2 always allows); records a
        missing ref."""
        target = self.namespace if namespace is None else namespace
        found = self._get(kind, target, name)
        if found is None:
            self.missing.append(MissingRef(kind.crd.kind, target, name, path))
        return found

    def resolve_cluster(self, kind: type[catalog.R], name: str, path: str) -> catalog.R | None:
        found = self._get(kind, None, name)
        if found is None:
            self.missing.append(MissingRef(kind.crd.kind, None, name, path))
        return found

    def resolve_model(self, address: str, route_namespace: str, path: str) -> Model | None:
        provider, _, name = address.partition(":")
        near_misses: list[str] = []
        for candidate in catalog.model_candidates(route_namespace, self.settings.shared_namespaces):
            found = self._get(Model, candidate, name)
            if found is not None:
                if found.spec.provider == provider:
                    return found
                near_misses.append(f"{candidate}/{name} has provider {found.spec.provider}")
        searched = ", ".join(catalog.model_candidates(route_namespace, self.settings.shared_namespaces))
        detail = f"model address {address}, looked in {searched}" + "".join(f"; {m}" for m in near_misses)
        self.missing.append(MissingRef("Model", route_namespace, name, path, detail))
        return None


def gather(agent: Agent, lookup: catalog.Lookup, settings: OperatorSettings) -> Gathered:
    """Resolve every input of ``agent``'s compilation; see the module docstring for the rules."""
    g = _Gatherer(agent, lookup, settings)
    spec = agent.spec
    namespace = g.namespace
    labels = agent.metadata.labels or {}

    namespace_labels = lookup.namespace_labels(namespace)
    env_source = scope.environment_source(agent, namespace_labels)
    env_name = environment_of(agent, namespace_labels, settings)
    environment = g._get(Environment, None, env_name)

    adapter = g.resolve_cluster(
        FrameworkAdapter, spec.framework.adapter_ref.name, "spec.framework.adapterRef"
    )

    route: ModelRoute | None = None
    route_namespace: str | None = None
    models: list[ResolvedModel] = []
    if spec.model_route is not None:
        route_namespace, route = g.resolve(ModelRoute, spec.model_route.route_ref, "spec.modelRoute.routeRef")
        if route is not None and route_namespace is not None:
            where = f"ModelRoute/{route_namespace}/{route.metadata.name}: "
            strategy = route.spec.strategy
            path = f"{where}spec.strategy.primary"
            models.append(
                ResolvedModel(
                    strategy.primary,
                    "primary",
                    path,
                    g.resolve_model(strategy.primary, route_namespace, path),
                )
            )
            for index, address in enumerate(strategy.fallback or ()):
                path = f"{where}spec.strategy.fallback[{index}]"
                models.append(
                    ResolvedModel(address, "fallback", path, g.resolve_model(address, route_namespace, path))
                )

    tools: list[ResolvedTool] = []
    for index, tool_ref in enumerate(spec.tools or ()):
        path = f"spec.tools[{index}]"
        tool = g.resolve_local(Tool, tool_ref.name, path)
        tools.append(ResolvedTool(path, tool_ref.name, tool))

    servers: list[ResolvedMCPServer] = []
    for index, ref in enumerate(spec.mcp_servers or ()):
        path = f"spec.mcpServers[{index}]"
        target, server = g.resolve(MCPServer, ref, path)
        if target is not None:
            servers.append(ResolvedMCPServer(path, target, ref.name, server))

    memories: list[ResolvedMemory] = []
    for slot in sorted(spec.memories or {}):
        ref = (spec.memories or {})[slot]
        path = f"spec.memories.{slot}"
        target, memory = g.resolve(Memory, ref, path)
        if target is not None:
            memories.append(ResolvedMemory(slot, path, target, ref.name, memory))

    rags: list[ResolvedRAG] = []
    for index, ref in enumerate(spec.rag_refs or ()):
        path = f"spec.ragRefs[{index}]"
        target, rag = g.resolve(RAG, ref, path)
        if target is not None:
            rags.append(ResolvedRAG(path, target, ref.name, rag))

    team = lookup.team_for_namespace(namespace)
    if team is not None:
        g.inputs[keys.ObjectKey("Team", None, team.metadata.name or "")] = team

    policies = _effective_policies(g, labels=labels, environment=environment, env_name=env_name, team=team)

    dependencies = set(g.inputs)
    if env_source != "agent-label":
        dependencies.add(keys.ObjectKey("Namespace", None, namespace))
    return Gathered(
        agent=agent,
        namespace=namespace,
        environment_name=env_name,
        environment_source=env_source,
        environment=environment,
        team=team,
        adapter=adapter,
        route=route,
        route_namespace=route_namespace,
        models=tuple(models),
        tools=tuple(tools),
        mcp_servers=tuple(servers),
        memories=tuple(memories),
        rags=tuple(rags),
        policies=policies,
        missing=tuple(g.missing),
        forbidden=tuple(g.forbidden),
        inputs=dict(g.inputs),
        dependencies=frozenset(dependencies),
    )


def _effective_policies(
    g: _Gatherer,
    *,
    labels: Mapping[str, str],
    environment: Environment | None,
    env_name: str,
    team: Team | None,
) -> tuple[ResolvedPolicy, ...]:
    seen: set[tuple[str, str]] = set()
    out: list[ResolvedPolicy] = []

    def add(source: PolicySource, path: str, policy: Policy | None) -> None:
        if policy is None:
            return
        identity = (policy.metadata.namespace or "", policy.metadata.name or "")
        if identity not in seen:
            seen.add(identity)
            out.append(ResolvedPolicy(source, path, policy))

    for index, ref in enumerate(g.agent.spec.policies or ()):
        path = f"spec.policies[{index}]"
        add("explicit", path, g.resolve(Policy, ref, path)[1])

    for key, policy in _selected_policies(g, labels, env_name):
        g.inputs[key] = policy
        add("selector", "metadata.labels", policy)

    if environment is not None:
        where = f"Environment/{environment.metadata.name}: "
        for index, ref in enumerate(environment.spec.policies or ()):
            path = f"{where}spec.policies[{index}]"
            add("environment", path, g.resolve(Policy, ref, path)[1])

    if team is not None:
        where = f"Team/{team.metadata.name}: "
        for index, name in enumerate(team.spec.default_policies or ()):
            path = f"{where}spec.defaultPolicies[{index}]"
            add("team", path, g.resolve_local(Policy, name, path))
    return tuple(out)


_Selected = tuple[tuple[keys.ObjectKey, Policy], ...]
_selections: Final[memo.Memo[tuple[object, ...], tuple[tuple[Policy, ...], _Selected]]] = memo.Memo(
    "resolve.selection"
)
"""The Policies whose appliesTo selects an Agent, by everything ``scope.policy_selects`` reads: the
Agent's namespace, environment and labels, the shared namespaces, and the identity and version of every
candidate Policy (the value keeps the candidates alive, so their identities are not reused while the
entry lives). Agents with the same labels in one namespace are selected by the same Policies."""


def _selected_policies(g: _Gatherer, labels: Mapping[str, str], env_name: str) -> _Selected:
    """The Policies whose appliesTo selects the Agent, sorted by namespace then name, with their keys."""
    candidates: list[Policy] = []
    for namespace in dict.fromkeys((g.namespace, *g.settings.shared_namespaces)):
        candidates.extend(g.lookup.policies_in(namespace))
    key = (
        g.namespace,
        env_name,
        frozenset(labels.items()),
        g.settings.shared_namespaces,
        tuple((id(policy), memo.version_of(policy)) for policy in candidates),
    )
    found = _selections.get(key)
    if found is not None:
        return found[1]
    candidates.sort(key=lambda p: (p.metadata.namespace or "", p.metadata.name or ""))
    selected = tuple(
        (keys.ObjectKey("Policy", policy.metadata.namespace, policy.metadata.name or ""), policy)
        for policy in candidates
        if scope.policy_selects(
            policy,
            agent_namespace=g.namespace,
            agent_labels=labels,
            environment=env_name,
            settings=g.settings,
        )
    )
    _selections.put(key, (tuple(candidates), selected))
    return selected
