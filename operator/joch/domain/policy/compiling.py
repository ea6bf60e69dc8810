"""Policy spec -> CompiledPolicy: closures for structured matchers, CEL programs for CEL clauses.

Two steps, both pure::

    parsing.parse_policy_spec(spec)            -> model.PolicySpec      (normal form; PolicySpecError)
    compile_policy(name=, namespace=, generation=, spec=)  -> CompiledPolicy    (parses, then compiles)

``validate_policy_spec(spec)`` returns every ``FieldError`` (structure AND CEL compile errors) without
raising; admission uses it to report them all at once.

``PolicyCompiler`` is the cache the operator keeps: one CompiledPolicy per (namespace, name,
generation), reused while the spec is unchanged, and one CEL program per distinct source, shared by
every policy. A compiled rule has ``test(context) -> bool``, its structured clauses ANDed as plain
closures, and ``cel_tests``, its CEL clauses, which run only when ``test`` passed; a CEL clause may
raise ``CelEvaluationError`` (evaluation.py turns that into a fail-closed deny). A CEL clause under a
path (``cost.runUsd: {cel: ...}``) first checks that the path is present; the expression itself sees
the whole context, though only the fields it reads are bound (cel.access_plan).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Final, Protocol

from joch.domain.policy import cel, context, errors, guards, matchers, model, parsing

Timer = Callable[[], float]

MAX_CACHED_PROGRAMS: Final = 10_000
MAX_CACHED_OBJECTS: Final = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class CompileOptions:
    backend: cel.CelBackend | None = None
    """A backend instance (tests inject one); None: the one ``cel_backend`` names."""
    cel_backend: str = cel.DEFAULT_BACKEND
    """The CEL library by name (``OperatorSettings.cel_backend``), resolved only if CEL is used."""
    limits: cel.CelLimits = cel.DEFAULT_LIMITS
    timer: Timer = time.thread_time
    """Measures CEL evaluation time against ``limits.time_budget_seconds``; injectable for tests.

    CPU time of the evaluating thread, not wall time: the budget bounds the work an expression does, so a
    busy machine that preempts the thread does not turn a cheap rule into a fail-closed deny."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cel_backend", cel.canonical_name(self.cel_backend))

    def resolve_backend(self) -> cel.CelBackend:
        return self.backend if self.backend is not None else cel.get_backend(self.cel_backend)


DEFAULT_OPTIONS: Final = CompileOptions()


CelTest = Callable[[Mapping[str, Any], dict[Any, Any]], bool]
"""A CEL clause: ``(context, scratch) -> bool``; ``scratch`` is a per-decision dict (see _cel_test)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    effect: model.Effect
    reason: str | None
    redaction_rules: tuple[str, ...]
    requires: model.Requirement | None
    runtime_only: bool
    """The rule reads a runtime-only root (cost, data, payload, mcpResult): preflight skips it."""
    test: matchers.Test
    """The structured clauses, ANDed (always true when there are none)."""
    cel_tests: tuple[CelTest, ...]
    """The CEL clauses, run only when ``test`` passed."""
    rule: model.Rule

    def matches(self, context: Mapping[str, Any], scratch: dict[Any, Any] | None = None) -> bool:
        """Whether every clause matches; may raise CelEvaluationError (evaluation.py fails closed)."""
        if not self.test(context):
            return False
        if self.cel_tests:
            memo = {} if scratch is None else scratch
            return all(test(context, memo) for test in self.cel_tests)
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class CompiledPolicy:
    name: str
    namespace: str
    generation: int
    spec: model.PolicySpec
    rules: tuple[CompiledRule, ...]

    @property
    def policy_id(self) -> str:
        return self.name

    @property
    def version(self) -> str:
        return f"v{self.generation}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def applies_to(self) -> model.AppliesTo:
        return self.spec.applies_to


def validate_policy_spec(spec: Any, *, options: CompileOptions = DEFAULT_OPTIONS) -> list[errors.FieldError]:
    """Every problem in ``spec``: structure, paths, matchers, actions, CEL limits and CEL compile errors."""
    outcome = parsing.parse(spec, limits=options.limits)
    found = list(outcome.errors)
    if outcome.cel_clauses:
        backend = options.resolve_backend()
        for clause in outcome.cel_clauses:
            assert isinstance(clause.matcher, model.Cel)
            try:
                backend.compile(clause.matcher.source)
            except errors.CelCompileError as exc:
                found.append(_cel_error(clause, exc))
    return found


def compile_policy(
    *,
    name: str,
    namespace: str,
    generation: int,
    spec: Any,
    options: CompileOptions = DEFAULT_OPTIONS,
    programs: MutableMapping[str, cel.Program] | None = None,
) -> CompiledPolicy:
    """Parse and compile one Policy. Raises PolicySpecError listing every problem.

    ``programs`` is a CEL program cache keyed by source (PolicyCompiler passes its own).
    """
    outcome = parsing.parse(spec, limits=options.limits)
    found = list(outcome.errors)
    compiled_programs: dict[str, cel.Program] = {}
    if outcome.cel_clauses:
        backend = options.resolve_backend()
        cache: MutableMapping[str, cel.Program] = programs if programs is not None else {}
        for clause in outcome.cel_clauses:
            assert isinstance(clause.matcher, model.Cel)
            source = clause.matcher.source
            try:
                program = cache.get(source)
                if program is None:
                    program = backend.compile(source)
                    if len(cache) >= MAX_CACHED_PROGRAMS:
                        cache.clear()
                    cache[source] = program
                compiled_programs[source] = program
            except errors.CelCompileError as exc:
                found.append(_cel_error(clause, exc))
    if found or outcome.spec is None:
        raise errors.PolicySpecError(found)
    rules = tuple(_compile_rule(rule, compiled_programs, options) for rule in outcome.spec.rules)
    return CompiledPolicy(
        name=name, namespace=namespace, generation=generation, spec=outcome.spec, rules=rules
    )


def parse_policy(
    *, name: str, namespace: str, generation: int, spec: Any, options: CompileOptions = DEFAULT_OPTIONS
) -> CompiledPolicy:
    """The one-step spelling of ``compile_policy`` (parse, then compile); raises PolicySpecError."""
    return compile_policy(name=name, namespace=namespace, generation=generation, spec=spec, options=options)


def _cel_error(clause: model.Clause, exc: errors.CelCompileError) -> errors.FieldError:
    prefix = parsing.rule_prefix(clause.field_path)
    return errors.FieldError(clause.field_path, f"{prefix}CEL does not compile: {exc}", "CelCompileFailed")


def _compile_rule(
    rule: model.Rule, programs: Mapping[str, cel.Program], options: CompileOptions
) -> CompiledRule:
    structured = [matchers.compile_clause(c) for c in rule.clauses if not isinstance(c.matcher, model.Cel)]
    cel_clauses = [c for c in rule.clauses if isinstance(c.matcher, model.Cel)]
    backend = options.resolve_backend() if cel_clauses else None
    cel_tests = tuple(
        _cel_test(programs[c.matcher.source], c, backend, options)
        for c in cel_clauses
        if isinstance(c.matcher, model.Cel) and backend is not None
    )
    action = rule.action
    return CompiledRule(
        index=rule.index,
        effect=rule.effect,
        reason=action.reason if action is not None else None,
        redaction_rules=action.redaction_rules if action is not None else (),
        requires=rule.require,
        runtime_only=bool(rule.roots & context.RUNTIME_ONLY_ROOTS),
        test=matchers.all_of(structured),
        cel_tests=cel_tests,
        rule=rule,
    )


def _cel_test(
    program: cel.Program, clause: model.Clause, backend: cel.CelBackend, options: CompileOptions
) -> CelTest:
    """The closure for one CEL clause.

    Guards (guards.py) taken from the expression's top-level ``&&`` chain run first, in Python: when
    one proves the expression false, CEL does not run at all.

    Per decision, ``scratch`` remembers (a) the prepared activation for each access plan, so the
    Python -> CEL conversion happens once however many CEL rules read the same fields, and (b) the
    outcome for each source, so a CEL expression shared by several policies runs once. Both are sound
    because a decision's context does not change while it is being decided.
    """
    assert isinstance(clause.matcher, model.Cel)
    source = clause.matcher.source
    plan = cel.access_plan(clause.matcher.paths)
    plan_key = ("plan", backend.name, repr(sorted(clause.matcher.paths)))
    outcome_key = ("outcome", backend.name, source)
    present = context.make_getter(clause.keys) if clause.path is not None else None
    may_match = guards.compile_guards(guards.extract(source))
    budget = options.limits.time_budget_seconds
    timer = options.timer
    evaluate = program.evaluate
    prepare = backend.prepare
    missing = context.MISSING

    def run(ctx: Mapping[str, Any], scratch: dict[Any, Any]) -> bool | errors.CelEvaluationError:
        activation = scratch.get(plan_key)
        if activation is None:
            activation = scratch[plan_key] = prepare(cel.extract(ctx, plan))
        start = timer()
        try:
            result = evaluate(activation)
        except errors.CelMissingValue:
            result = False
        except errors.CelEvaluationError as exc:
            result = exc
        elapsed = timer() - start
        if elapsed > budget:
            return errors.CelTimeout(
                f"CEL evaluation took {elapsed * 1000:.3f} ms, over its budget of {budget * 1000:.3f} ms"
            )
        if result is True or result is False or isinstance(result, errors.CelEvaluationError):
            return result
        return errors.CelEvaluationError(f"the CEL expression returned {type(result).__name__}, not a bool")

    def test(ctx: Mapping[str, Any], scratch: dict[Any, Any]) -> bool:
        if present is not None and present(ctx) is missing:
            return False
        if may_match is not None and not may_match(ctx):
            return False
        outcome = scratch.get(outcome_key)
        if outcome is None:
            outcome = scratch[outcome_key] = run(ctx, scratch)
        if outcome is True or outcome is False:
            return outcome
        raise outcome

    return test


class _Metadata(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def generation(self) -> int | None: ...
    @property
    def uid(self) -> str | None: ...
    @property
    def resource_version(self) -> str | None: ...


class _Spec(Protocol):
    def wire(self) -> Any: ...


class PolicyObject(Protocol):
    """A parsed Policy object (``joch.api.v1alpha1.policy.Policy``), as :meth:`PolicyCompiler.compile_object`
    reads it."""

    @property
    def metadata(self) -> _Metadata: ...
    @property
    def spec(self) -> _Spec: ...


class PolicyCompiler:
    """The one compiled-policy cache of a process; not thread-safe.

    Two levels: one CompiledPolicy per (namespace, name), reused while the generation and the spec are
    unchanged (:meth:`compile`), and, in front of it, one per Policy object version (:meth:`compile_object`:
    keyed by the object's identity with its uid, generation and resourceVersion, LRU-bounded at
    ``capacity`` objects, a strong reference kept so an identity is never reused while cached), which
    skips re-serialising the spec to compare it: the compiler's preflight and admission ask for the same
    Policy objects for every Agent. A spec that does not compile raises ``PolicySpecError`` each time.
    CEL programs are compiled once per source and shared by every policy.
    """

    def __init__(
        self, options: CompileOptions = DEFAULT_OPTIONS, *, capacity: int = MAX_CACHED_OBJECTS
    ) -> None:
        self.options = options
        self.capacity = capacity
        self._programs: dict[str, cel.Program] = {}
        self._policies: dict[tuple[str, str], tuple[Any, CompiledPolicy]] = {}
        self._objects: collections.OrderedDict[
            int, tuple[PolicyObject, tuple[Any, ...], CompiledPolicy | errors.PolicySpecError]
        ] = collections.OrderedDict()

    def compile(self, *, name: str, namespace: str, generation: int, spec: Any) -> CompiledPolicy:
        cached = self._policies.get((namespace, name))
        if cached is not None:
            snapshot, policy = cached
            if policy.generation == generation and snapshot == spec:
                return policy
        policy = compile_policy(
            name=name,
            namespace=namespace,
            generation=generation,
            spec=spec,
            options=self.options,
            programs=self._programs,
        )
        self._policies[(namespace, name)] = (copy.deepcopy(spec), policy)
        return policy

    def compile_object(self, policy: PolicyObject) -> CompiledPolicy:
        """:meth:`compile` of a parsed Policy object, cached by object version (see the class)."""
        metadata = policy.metadata
        generation = 1 if metadata.generation is None else metadata.generation
        version = (metadata.uid, generation, metadata.resource_version)
        key = id(policy)
        found = self._objects.get(key)
        if found is None or found[0] is not policy or found[1] != version:
            outcome: CompiledPolicy | errors.PolicySpecError
            try:
                outcome = self.compile(
                    name=metadata.name or "",
                    namespace=metadata.namespace or "",
                    generation=generation,
                    spec=policy.spec.wire(),
                )
            except errors.PolicySpecError as exc:
                outcome = exc
            found = (policy, version, outcome)
            self._objects[key] = found
            if len(self._objects) > self.capacity:
                self._objects.popitem(last=False)
        else:
            self._objects.move_to_end(key)
        if isinstance(found[2], errors.PolicySpecError):
            raise found[2]
        return found[2]

    def forget(self, *, namespace: str, name: str) -> None:
        self._policies.pop((namespace, name), None)
        for key, (policy, _, _) in list(self._objects.items()):
            if (policy.metadata.namespace or "") == namespace and (policy.metadata.name or "") == name:
                del self._objects[key]

    def __len__(self) -> int:
        return len(self._policies)
