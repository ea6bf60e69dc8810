"""Agent compilation: Agent + resolved references + operator settings -> CompiledAgentManifest (pure).

The controller's three steps, and the names it needs::

    gathered = gather(agent, lookup, settings)          # resolve.py: every lookup, via the Lookup protocol
    compiled = compile_agent(gathered, settings)        # compiler.py: manifest, hashes, problems
    if compiled.ok:
        body = desired_configmap(compiled, agent_uid)   # configmap.py: the ConfigMap to write
    stale = stale_manifests([(name, generation), ...], keep=settings.keep_manifests)

``gathered.dependencies`` feeds the reverse index (who depends on what); ``scope.policy_selects`` and
``scope.environment_of`` answer the label-driven part of fan-out. docs/compiled-manifest.md documents
the manifest field by field.

Modules: catalog (Lookup, Catalog), resolve (gather), scope (D5 environment, appliesTo), checks
(capabilities, requirements, tool safety), preflight (policy preflight, D9), compiler (compile_agent),
configmap (D7 storage and retention), canonical (serialisation and hashing), keys (ObjectKey),
problems (Problem).
"""

from __future__ import annotations

from collections.abc import Iterable

from joch.api.v1alpha1.mcpserver import MCPServer
from joch.api.v1alpha1.tool import Tool
from joch.domain.compilation import drift
from joch.domain.compilation.canonical import canonical_json, canonical_yaml, sha256_hex
from joch.domain.compilation.catalog import COMPILE_KINDS, Catalog, CatalogError, Lookup, find_model
from joch.domain.compilation.compiler import (
    API_VERSION,
    APPROVAL_BY_DEFAULT,
    KIND,
    Compiled,
    compile_agent,
    manifest_name,
    schema_sha,
    source_hash,
)
from joch.domain.compilation.configmap import (
    agent_label_value,
    desired_configmap,
    generation_from_labels,
    manifest_selector,
    stale_manifests,
)
from joch.domain.compilation.drift import binds
from joch.domain.compilation.keys import ObjectKey, key_of
from joch.domain.compilation.preflight import PolicyPrograms
from joch.domain.compilation.problems import REFERENCE_REASONS, Problem, Reason
from joch.domain.compilation.resolve import ForbiddenRef, Gathered, MissingRef, gather, generation_of
from joch.domain.compilation.scope import environment_of, policy_selects

__all__ = [
    "API_VERSION",
    "APPROVAL_BY_DEFAULT",
    "COMPILE_KINDS",
    "KIND",
    "REFERENCE_REASONS",
    "Catalog",
    "CatalogError",
    "Compiled",
    "ForbiddenRef",
    "Gathered",
    "Lookup",
    "MissingRef",
    "ObjectKey",
    "PolicyPrograms",
    "Problem",
    "Reason",
    "agent_label_value",
    "binds",
    "canonical_json",
    "canonical_yaml",
    "compile_agent",
    "desired_configmap",
    "environment_of",
    "find_model",
    "gather",
    "generation_from_labels",
    "generation_of",
    "key_of",
    "manifest_name",
    "manifest_selector",
    "policy_selects",
    "schema_sha",
    "server_drift",
    "sha256_hex",
    "source_hash",
    "stale_manifests",
]


def server_drift(server: MCPServer, tools: Iterable[Tool]) -> tuple[str, ...]:
    """An MCPServer's drift from its pins, with tool schemas hashed as in the compiled manifest."""
    return drift.server_drift(server, tools, schema_sha)
