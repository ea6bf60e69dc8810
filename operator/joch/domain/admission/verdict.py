"""What an admission check returns: :class:`Finding` values gathered into a :class:`Verdict`.

A finding is a field path (Kubernetes style, camelCase: ``spec.tools[1].name``), a machine reason
(CamelCase, e.g. ``Duplicate``, ``PolicyDenied``) and a human sentence. A Verdict holds the errors (any
error rejects the request) and the warnings (the request is admitted; the API server shows them to the
client, ``kubectl`` prints them as ``Warning: ...``).

Message form (the denial message and each warning)::

    <Kind>/<name>: <field path>: <reason sentence>

several errors joined by ``"; "``, at most :data:`MAX_SHOWN` of them, then ``(and N more)``.

Status code of a denial: 403 Forbidden when an error is a policy denial, a forbidden cross-namespace
reference, a tool safety floor or a failed promotion gate (the object is well-formed but not allowed),
else 422 Invalid (the object is malformed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

__all__ = [
    "FORBIDDEN_REASONS",
    "MAX_SHOWN",
    "MAX_WARNING_CHARS",
    "Finding",
    "Findings",
    "Verdict",
]

MAX_SHOWN: Final = 10
"""Errors spelled out in one denial message; the rest are counted."""

MAX_WARNINGS: Final = 12
"""Warnings returned for one request (the API server truncates long lists anyway)."""

MAX_WARNING_CHARS: Final = 1024
"""Longest warning sent; the API server truncates warnings beyond its own limits too."""

FORBIDDEN_REASONS: Final = frozenset(
    {
        "PolicyDenied",
        "ForbiddenReference",
        "ToolNotAllowed",
        "PromotionGateFailed",
        "Forbidden",
        "BudgetExceeded",
    }
)
"""Reasons that make a denial 403 Forbidden rather than 422 Invalid."""


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or remark) located by a field path of the object under review."""

    path: str
    message: str
    reason: str = "Invalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclasses.dataclass(slots=True)
class Findings:
    """A mutable accumulator used while checking; :meth:`verdict` freezes it."""

    errors: list[Finding] = dataclasses.field(default_factory=list)
    warnings: list[Finding] = dataclasses.field(default_factory=list)

    def error(self, path: str, message: str, reason: str = "Invalid") -> None:
        self.errors.append(Finding(path, message, reason))

    def warn(self, path: str, message: str, reason: str = "Warning") -> None:
        self.warnings.append(Finding(path, message, reason))

    def extend(self, other: Findings) -> None:
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)

    def verdict(self, kind: str, name: str) -> Verdict:
        return Verdict(kind, name, tuple(_unique(self.errors)), tuple(_unique(self.warnings)))


def _unique(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of admitting one object: allowed unless there is an error."""

    kind: str
    name: str
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.errors

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name or '(unnamed)'}"

    @property
    def code(self) -> int:
        """403 for policy/permission denials, 422 for malformed objects, 200 when allowed."""
        if not self.errors:
            return 200
        return 403 if any(e.reason in FORBIDDEN_REASONS for e in self.errors) else 422

    @property
    def status_reason(self) -> str:
        """The Kubernetes Status reason matching :attr:`code`."""
        return {200: "", 403: "Forbidden"}.get(self.code, "Invalid")

    def format(self, finding: Finding) -> str:
        return f"{self.subject}: {finding.path}: {finding.message}"

    def message(self, limit: int = MAX_SHOWN) -> str:
        """The denial message: every error (up to ``limit``) in the documented form."""
        shown = [self.format(e) for e in self.errors[:limit]]
        more = len(self.errors) - limit
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")

    def warning_messages(self, limit: int = MAX_WARNINGS) -> list[str]:
        """The warnings in the documented form, each at most :data:`MAX_WARNING_CHARS` characters."""
        out = [_clip(self.format(w)) for w in self.warnings[:limit]]
        more = len(self.warnings) - limit
        if more > 0:
            out.append(f"{self.subject}: and {more} more warnings")
        return out


def _clip(text: str) -> str:
    return text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "..."
