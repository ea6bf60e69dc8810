"""Operator settings: the few values the pure domain needs that are not in any resource.

The operator and the CLI build one :class:`OperatorSettings` at start-up (``from_environ(os.environ)``
reads the documented ``JOCH_*`` variables; the domain never reads the environment itself) and pass it to
every domain call. Changing a setting means restarting the operator, which recompiles every Agent.

| field | env var | default | used for |
|---|---|---|---|
| shared_namespaces | JOCH_SHARED_NAMESPACES (commas) | ("joch-system",) | D2 cross-namespace refs, D6 |
| default_environment | JOCH_DEFAULT_ENVIRONMENT | "dev" | D5, when neither label names one |
| tool_gateway_url | JOCH_TOOL_GATEWAY_URL | http://joch-tool-gateway | CAM tools[].gatewayUrl * |
| mcp_gateway_url | JOCH_MCP_GATEWAY_URL | http://joch-mcp-gateway | CAM mcpServers[].gatewayUrl * |
| model_router_url | JOCH_MODEL_ROUTER_URL | http://joch-model-router | CAM modelRouterUrl * |
| memory_url | JOCH_MEMORY_URL | http://joch-memory | CAM memories.<slot>.endpoint |
| trace_url | JOCH_TRACE_URL | http://joch-trace | CAM observability.traceEndpoint |
| agbom_url | JOCH_AGBOM_URL | http://joch-agbom | CAM observability.abomEndpoint |
| keep_manifests | JOCH_KEEP_MANIFESTS | 3 | CAM ConfigMaps kept per Agent (D7) |
| cel_backend | JOCH_CEL_BACKEND | common-expression-language | the CEL library policies compile with ** |
| decision_callers | JOCH_DECISION_CALLERS (commas) | () | users that may call the decision service *** |

(*) The Agent's FrameworkAdapter ``spec.bindings`` wins when it sets the URL; these are the fallbacks.
(**) ``common-expression-language`` (Rust) or ``cel-python``, or an alias (policy/cel.py); stored under its
canonical name. Compilers get it through ``CompileOptions(cel_backend=settings.cel_backend)``.
(***) Kubernetes user names (e.g. ``system:serviceaccount:gateways:envoy``); when any is set, every
``POST /v1/policy/evaluate`` needs a bearer token the API server authenticates as one of them
(joch.decision_service.callers, docs/decision-service.md "Who may ask"); empty: no authentication.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from joch.domain.policy import cel

__all__ = ["ENVIRONMENT_VARIABLES", "OperatorSettings", "SettingsError"]


class SettingsError(ValueError):
    """A setting has an unusable value; the message names the variable."""


ENVIRONMENT_VARIABLES: Mapping[str, str] = {
    "shared_namespaces": "JOCH_SHARED_NAMESPACES",
    "default_environment": "JOCH_DEFAULT_ENVIRONMENT",
    "tool_gateway_url": "JOCH_TOOL_GATEWAY_URL",
    "mcp_gateway_url": "JOCH_MCP_GATEWAY_URL",
    "model_router_url": "JOCH_MODEL_ROUTER_URL",
    "memory_url": "JOCH_MEMORY_URL",
    "trace_url": "JOCH_TRACE_URL",
    "agbom_url": "JOCH_AGBOM_URL",
    "keep_manifests": "JOCH_KEEP_MANIFESTS",
    "cel_backend": "JOCH_CEL_BACKEND",
    "decision_callers": "JOCH_DECISION_CALLERS",
}
"""Setting field -> the environment variable :meth:`OperatorSettings.from_environ` reads it from."""


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorSettings:
    """Values every domain decision may depend on, fixed for the life of an operator process."""

    shared_namespaces: tuple[str, ...] = ("joch-system",)
    default_environment: str = "dev"
    tool_gateway_url: str = "http://joch-tool-gateway"
    mcp_gateway_url: str = "http://joch-mcp-gateway"
    model_router_url: str = "http://joch-model-router"
    memory_url: str = "http://joch-memory"
    trace_url: str = "http://joch-trace"
    agbom_url: str = "http://joch-agbom"
    keep_manifests: int = 3
    cel_backend: str = cel.DEFAULT_BACKEND
    decision_callers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        namespaces: object = self.shared_namespaces
        if isinstance(namespaces, str):
            raise SettingsError("shared_namespaces must be a sequence of namespace names, not a string")
        object.__setattr__(self, "shared_namespaces", tuple(self.shared_namespaces))
        callers: object = self.decision_callers
        if isinstance(callers, str):
            raise SettingsError("decision_callers must be a sequence of user names, not a string")
        object.__setattr__(self, "decision_callers", tuple(dict.fromkeys(self.decision_callers)))
        if any(not user or user != user.strip() for user in self.decision_callers):
            raise SettingsError(f"decision_callers: empty or padded user name in {self.decision_callers}")
        if not self.default_environment:
            raise SettingsError("default_environment must not be empty")
        if self.keep_manifests < 1:
            raise SettingsError(f"keep_manifests must be at least 1, not {self.keep_manifests}")
        try:
            object.__setattr__(self, "cel_backend", cel.canonical_name(self.cel_backend))
        except ValueError as exc:
            raise SettingsError(f"cel_backend: {exc}") from None

    def is_shared(self, namespace: str) -> bool:
        """Whether objects in ``namespace`` may be referenced from any namespace (decision D2)."""
        return namespace in self.shared_namespaces

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OperatorSettings:
        """Settings from the ``JOCH_*`` variables (``ENVIRONMENT_VARIABLES``); unset ones keep defaults."""
        values: dict[str, Any] = {}
        for field, variable in ENVIRONMENT_VARIABLES.items():
            raw = environ.get(variable)
            if raw is None or raw.strip() == "":
                continue
            if field in ("shared_namespaces", "decision_callers"):
                values[field] = tuple(part.strip() for part in raw.split(",") if part.strip())
            elif field == "keep_manifests":
                try:
                    values[field] = int(raw)
                except ValueError:
                    raise SettingsError(f"{variable} must be an integer, not {raw!r}") from None
            elif field == "cel_backend":
                try:
                    values[field] = cel.canonical_name(raw)
                except ValueError as exc:
                    raise SettingsError(f"{variable}: {exc}") from None
            else:
                values[field] = raw.strip()
        return dataclasses.replace(cls(), **values)
