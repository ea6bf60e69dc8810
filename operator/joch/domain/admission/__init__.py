"""Admission: the pure checks behind the webhooks, ``joch validate`` and ``joch apply``.

    admission = Admission(settings)                      # holds the compiled-policy cache
    mutation = admission.mutate(request, world)          # dynamic defaults (D14) as a JSON Patch
    verdict = admission.validate(request, world)         # errors (reject) and warnings (admit)
    verdict.allowed, verdict.message(), verdict.warning_messages()

Decision numbers (D2, D9, ...) refer to docs/decisions.md, catalog sections to docs/catalog.md.

``world`` is a :class:`World`: the compiler's ``Lookup`` (the operator's store, a cluster Catalog, or
nothing) with objects laid over it. Messages read ``<Kind>/<name>: <field path>: <reason>``.

Modules: verdict (Finding, Findings, Verdict), world (World), parsing (raw -> model, field paths),
semantic (per-kind checks), refs (D2 and D10 for every reference), agents (compile checks and policy
preflight, D9), promotion (a Deployment's requiresEval / requiresApproval gates), impact (Agents a
change puts in violation), defaulting (D14), review (the pipeline), batch (documents judged together).
docs/admission.md says what is checked where.
"""

from joch.domain.admission.batch import Document, DocumentResult, check_batch
from joch.domain.admission.defaulting import (
    DEFAULTED_KINDS,
    NEEDS_DEFAULTS,
    Mutation,
    apply_patch,
    defaults_for,
)
from joch.domain.admission.parsing import parse_object
from joch.domain.admission.review import Admission, Request, UserInfo, unchanged
from joch.domain.admission.verdict import Finding, Findings, Verdict
from joch.domain.admission.world import (
    ALL_KINDS,
    COMPILE_KIND_NAMES,
    WATCHED_KIND_NAMES,
    AgentIndex,
    LabelIndex,
    World,
)

__all__ = [
    "ALL_KINDS",
    "COMPILE_KIND_NAMES",
    "DEFAULTED_KINDS",
    "NEEDS_DEFAULTS",
    "WATCHED_KIND_NAMES",
    "Admission",
    "AgentIndex",
    "Document",
    "DocumentResult",
    "Finding",
    "Findings",
    "LabelIndex",
    "Mutation",
    "Request",
    "UserInfo",
    "Verdict",
    "World",
    "apply_patch",
    "check_batch",
    "defaults_for",
    "parse_object",
    "unchanged",
]
