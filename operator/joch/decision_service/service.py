"""The decision service's memory: compiled Policies and Environments, fed by watch events, and ``decide``.

::

    watch events (Policy, Environment) --observe_*()--> compiled policies + environment facts
    POST /v1/policy/evaluate --decide(request, now)--> Decision

Policies are compiled once per (namespace, name, generation) through one ``PolicyCompiler``; the
indexed ``PolicySet`` is rebuilt lazily, at the first decision after a change, so the burst of events
of an initial listing costs one rebuild rather than one per Policy.

Which policies decide, in this order (decision D9's order, docs/decisions.md, without duplicates):

1. the request's explicit ``policies`` (an Agent's ``spec.policies``), in the order given;
2. the policies whose ``appliesTo`` selects the context's agent (``agent.namespace``, ``agent.labels``,
   ``environment.name``; joch.domain.policy.index), sorted by (namespace, name);
3. the ``spec.policies`` of the Environment named by ``environment.name``, when it is known (a
   reference without a namespace means the agent's namespace).

Team ``defaultPolicies`` are not watched here; a caller that needs them lists them in ``policies``.

Environments. When the context names a known Environment, that Environment's ``spec.allowedProviders``
replaces whatever the context says (the cluster is the source of truth; an Environment without the
list allows every provider). An unknown Environment leaves the context as given.

Failing closed. The engine denies when a rule fails; this layer adds three cases, each a ``deny``
whose reason starts with ``PolicyError``: a governing Policy that does not compile (admission should
have rejected it; its last error is in the reason), a bound (explicit or environment) Policy that does
not exist, and a bound Policy that does not compile.

Not thread-safe: the kopf handlers and the HTTP handlers share one event loop.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic

from joch.api.v1alpha1.policy import Policy
from joch.decision_service import requests
from joch.domain import policy as engine
from joch.domain.compilation import scope
from joch.domain.policy import index
from joch.domain.settings import OperatorSettings

__all__ = ["DecisionService", "EnvironmentFacts", "InvalidPolicy"]

logger = logging.getLogger("joch.decision_service")

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class EnvironmentFacts:
    """What decisions need from an Environment: its provider allow-list and its bound policies."""

    name: str
    allowed_providers: tuple[str, ...] | None
    policies: tuple[requests.PolicyRef, ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> EnvironmentFacts:
        """Read defensively from a raw object (the CRD schema already checked the types)."""
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        providers = spec.get("allowedProviders")
        refs: list[requests.PolicyRef] = []
        for ref in spec.get("policies") or ():
            if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
                namespace = ref.get("namespace")
                refs.append(
                    requests.PolicyRef(ref["name"], namespace if isinstance(namespace, str) else None)
                )
        return cls(
            name=str(metadata.get("name") or ""),
            allowed_providers=(
                tuple(str(p) for p in providers) if isinstance(providers, list | tuple) else None
            ),
            policies=tuple(refs),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class InvalidPolicy:
    """A stored Policy whose spec does not compile; it denies every agent it governs."""

    namespace: str
    name: str
    generation: int
    problems: tuple[str, ...]
    policy: Policy | None
    """The parsed object (for its appliesTo), or None when even the envelope does not parse."""

    @property
    def version(self) -> str:
        return f"v{self.generation}"

    def governs(
        self,
        *,
        namespace: str | None,
        labels: Mapping[str, Any],
        environment: str | None,
        settings: OperatorSettings,
    ) -> bool:
        if self.policy is None:  # appliesTo unknown: assume the widest scope it could have
            return self.namespace == namespace or settings.is_shared(self.namespace)
        return scope.policy_selects(
            self.policy,
            agent_namespace=namespace or "",
            agent_labels={k: v for k, v in labels.items() if isinstance(v, str)},
            environment=environment or "",
            settings=settings,
        )

    def decision(self) -> engine.Decision:
        shown = "; ".join(self.problems[:3])
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return engine.Decision(
            "deny",
            f"PolicyError: policy {self.namespace}/{self.name} ({self.version}) is invalid: {shown}{more}",
            policy_id=self.name,
            policy_namespace=self.namespace,
            policy_version=self.version,
        )


def _identity(body: Mapping[str, Any]) -> tuple[str, str, str, int]:
    metadata = body.get("metadata") or {}
    generation = metadata.get("generation")
    return (
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
        str(metadata.get("uid") or ""),
        generation if isinstance(generation, int) and generation > 0 else 1,
    )


class DecisionService:
    """Compiled policies and environment facts kept current from watch events; decisions on demand."""

    def __init__(
        self,
        *,
        settings: OperatorSettings | None = None,
        compiler: engine.PolicyCompiler | None = None,
    ) -> None:
        self.settings = settings or OperatorSettings()
        if compiler is None:
            compiler = engine.PolicyCompiler(engine.CompileOptions(cel_backend=self.settings.cel_backend))
        self.compiler = compiler
        self.ready = False
        """Set once the initial listing is in (the HTTP layer answers 503 before)."""
        self.counts: collections.Counter[str] = collections.Counter()
        """decisions, and decisions by outcome (allow, deny, modify); policy compiles and failures."""
        self._compiled: dict[Key, engine.CompiledPolicy] = {}
        self._invalid: dict[Key, InvalidPolicy] = {}
        self._uids: dict[Key, str] = {}
        self._environments: dict[str, EnvironmentFacts] = {}
        self._set: engine.PolicySet | None = None

    # --- watch events ------------------------------------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of any kind (fed by the operator's controller, which watches every kind once)."""
        if kind == "Policy":
            self.observe_policy(event_type, body)
        elif kind == "Environment":
            self.observe_environment(event_type, body)

    def primed(self, listed: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """The operator's start-up LIST, by kind: replaces everything and makes the service ready."""
        self.load(listed.get("Policy", ()), listed.get("Environment", ()))
        logger.info(
            "decision service primed: %d policies, %d environments",
            len(listed.get("Policy", ())),
            len(listed.get("Environment", ())),
        )

    def observe_policy(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED, or None for a listed object) of a Policy."""
        namespace, name, uid, generation = _identity(body)
        key = (namespace, name)
        if not name:
            return
        if event_type == "DELETED":
            if uid and self._uids.get(key, uid) != uid:
                return  # the deletion of an object since re-created under the same name
            self._forget(key)
            return
        self._uids[key] = uid
        spec = body.get("spec")
        try:
            compiled = self.compiler.compile(name=name, namespace=namespace, generation=generation, spec=spec)
        except engine.PolicySpecError as exc:
            self._mark_invalid(key, body, generation, [str(error) for error in exc.errors])
            return
        except Exception as exc:  # never let one object break the watch; deny what it governs instead
            logger.exception("Policy %s/%s: unexpected error while compiling", namespace, name)
            self._mark_invalid(key, body, generation, [f"internal error {type(exc).__name__}: {exc}"])
            return
        self._invalid.pop(key, None)
        if self._compiled.get(key) is not compiled:
            self._compiled[key] = compiled
            self._set = None
            self.counts["compiles"] += 1
            logger.info("Policy %s/%s %s loaded", namespace, name, compiled.version)

    def _mark_invalid(self, key: Key, body: Mapping[str, Any], generation: int, problems: list[str]) -> None:
        namespace, name = key
        try:
            parsed: Policy | None = Policy.model_validate(body)
        except pydantic.ValidationError:
            parsed = None
        self._invalid[key] = InvalidPolicy(namespace, name, generation, tuple(problems), parsed)
        if self._compiled.pop(key, None) is not None:
            self._set = None
        self.counts["invalid"] += 1
        logger.warning(
            "Policy %s/%s v%d does not compile; it denies every agent it governs: %s",
            namespace,
            name,
            generation,
            "; ".join(problems[:3]),
        )

    def _forget(self, key: Key) -> None:
        namespace, name = key
        self._uids.pop(key, None)
        self._invalid.pop(key, None)
        self.compiler.forget(namespace=namespace, name=name)
        if self._compiled.pop(key, None) is not None:
            self._set = None
            logger.info("Policy %s/%s removed", namespace, name)

    def observe_environment(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """One watch event of an Environment (cluster-scoped)."""
        facts = EnvironmentFacts.from_body(body)
        if not facts.name:
            return
        if event_type == "DELETED":
            self._environments.pop(facts.name, None)
        else:
            self._environments[facts.name] = facts

    def load(self, policies: Iterable[Mapping[str, Any]], environments: Iterable[Mapping[str, Any]]) -> None:
        """Replace everything with a listing (start-up), then mark the service ready."""
        listed_policies = list(policies)
        keep = {_identity(body)[:2] for body in listed_policies}
        for key in [*self._compiled, *self._invalid]:
            if key not in keep:
                self._forget(key)
        for body in listed_policies:
            self.observe_policy(None, body)
        self._environments.clear()
        for body in environments:
            self.observe_environment(None, body)
        self.ready = True

    # --- reading -------------------------------------------------------------------------------------------

    def policy_set(self) -> engine.PolicySet:
        """The indexed set of every compiled policy (rebuilt after a change)."""
        if self._set is None:
            self._set = engine.PolicySet(
                self._compiled.values(), shared_namespaces=self.settings.shared_namespaces
            )
        return self._set

    def environment(self, name: str) -> EnvironmentFacts | None:
        return self._environments.get(name)

    def describe(self) -> list[dict[str, Any]]:
        """Every stored Policy: namespace, name, version, and for an invalid one its problems."""
        out: list[dict[str, Any]] = []
        for key in sorted({*self._compiled, *self._invalid}):
            compiled = self._compiled.get(key)
            if compiled is not None:
                out.append({"namespace": key[0], "name": key[1], "version": compiled.version, "valid": True})
            else:
                invalid = self._invalid[key]
                out.append(
                    {
                        "namespace": key[0],
                        "name": key[1],
                        "version": invalid.version,
                        "valid": False,
                        "problems": list(invalid.problems),
                    }
                )
        return out

    # --- deciding ----------------------------------------------------------------------------------------

    def decide(self, request: requests.EvaluateRequest, *, now: datetime.datetime) -> engine.Decision:
        """The decision for one request (see the module docstring for which policies take part)."""
        decision = self._decide(request, now=now)
        self.counts["decisions"] += 1
        self.counts[decision.decision] += 1
        return decision

    def _decide(self, request: requests.EvaluateRequest, *, now: datetime.datetime) -> engine.Decision:
        context = self.enrich(request.context)
        namespace, labels, environment = index.agent_of(context)
        for invalid in self._invalid.values():
            if invalid.governs(
                namespace=namespace, labels=labels, environment=environment, settings=self.settings
            ):
                return invalid.decision()
        policies = self.policy_set()
        chosen: dict[Key, engine.CompiledPolicy] = {}
        for ref in request.policies:
            key = ref.resolve(namespace)
            found = policies.get(*key)
            if found is None:
                return self._unavailable(key, "bound to the agent")
            chosen.setdefault(key, found)
        for policy in policies.select(namespace=namespace, labels=labels, environment=environment):
            chosen.setdefault(policy.key, policy)
        facts = self._environments.get(environment) if environment is not None else None
        for ref in facts.policies if facts is not None else ():
            key = ref.resolve(namespace)
            found = policies.get(*key)
            if found is None:
                return self._unavailable(key, f"bound to environment {environment}")
            chosen.setdefault(key, found)
        return engine.evaluate(chosen.values(), context, now=now, preflight=request.preflight)

    def _unavailable(self, key: Key, bound: str) -> engine.Decision:
        invalid = self._invalid.get(key)
        if invalid is not None:
            return invalid.decision()
        namespace, name = key
        return engine.Decision(
            "deny",
            f"PolicyError: policy {namespace}/{name} is {bound} but does not exist",
            policy_id=name,
            policy_namespace=namespace,
        )

    def enrich(self, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """``context`` with ``environment.allowedProviders`` taken from the named Environment, if known."""
        environment = context.get("environment")
        if not isinstance(environment, Mapping):
            return context
        name = environment.get("name")
        facts = self._environments.get(name) if isinstance(name, str) else None
        if facts is None:
            return context
        merged = {key: value for key, value in environment.items() if key != "allowedProviders"}
        if facts.allowed_providers is not None:
            merged["allowedProviders"] = list(facts.allowed_providers)
        return {**context, "environment": merged}
