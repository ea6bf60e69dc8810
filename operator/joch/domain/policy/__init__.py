"""The policy engine: Policy specs compiled once, indexed by selector, evaluated in microseconds.

Pure code (no Kubernetes, no I/O, no clock reads). The flow::

    spec (dict) --parsing--> model.PolicySpec --compiling--> CompiledPolicy --index--> PolicySet
    PolicySet.decide(context, now=..., preflight=...) -> Decision        (evaluation)
    compose([Decision, ...]) -> Decision                                   (several guardians)

Modules: errors (the error tree), context (decision-context shape and paths), model (normal form),
parsing (spec -> normal form, all errors), matchers (structured clauses -> closures), cel (CEL backends
and limits), compiling (normal form -> CompiledPolicy, caches), index (PolicySet), evaluation (one
decision), decision (the Decision value), composition (guardians), redaction (modify). The language is
documented in docs/policy-language.md; decision numbers (D8, D9) refer to docs/decisions.md.
"""

from joch.domain.policy.cel import CelBackend, CelLimits, Program, get_backend
from joch.domain.policy.compiling import (
    CompiledPolicy,
    CompiledRule,
    CompileOptions,
    PolicyCompiler,
    PolicyObject,
    compile_policy,
    parse_policy,
    validate_policy_spec,
)
from joch.domain.policy.composition import compose
from joch.domain.policy.context import DecisionContext
from joch.domain.policy.decision import Decision, DisabledRule
from joch.domain.policy.errors import (
    CelCompileError,
    CelEvaluationError,
    CelMissingValue,
    CelTimeout,
    FieldError,
    PolicyError,
    PolicySpecError,
)
from joch.domain.policy.evaluation import DisabledRules, evaluate
from joch.domain.policy.index import PolicySet, applies
from joch.domain.policy.parsing import parse_policy_spec

__all__ = [
    "CelBackend",
    "CelCompileError",
    "CelEvaluationError",
    "CelLimits",
    "CelMissingValue",
    "CelTimeout",
    "CompileOptions",
    "CompiledPolicy",
    "CompiledRule",
    "Decision",
    "DecisionContext",
    "DisabledRule",
    "DisabledRules",
    "FieldError",
    "PolicyCompiler",
    "PolicyError",
    "PolicyObject",
    "PolicySet",
    "PolicySpecError",
    "Program",
    "applies",
    "compile_policy",
    "compose",
    "evaluate",
    "get_backend",
    "parse_policy",
    "parse_policy_spec",
    "validate_policy_spec",
]
