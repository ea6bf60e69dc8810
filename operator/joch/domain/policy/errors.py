"""Errors of the policy engine.

The tree::

    PolicyError                      anything the policy engine reports
    ├── PolicySpecError              a Policy spec is rejected; .errors lists EVERY problem found
    ├── CelCompileError              a CEL expression does not compile (or breaks a compile-time limit)
    └── CelEvaluationError           a CEL expression failed while evaluating: the rule denies (fail closed)
        ├── CelTimeout               ... because it ran over its time budget
        └── CelMissingValue          ... because it read an absent field or variable: NOT a failure,
                                     the clause simply does not match (like an absent path)

``FieldError`` is a value, not an exception: a field path in Kubernetes style
(``spec.rules[2].when.cost.runUsd``), a human message and a machine reason. Admission turns a list of
them into one rejection that names every field.

Evaluation itself never raises: a failing rule becomes a ``deny`` whose reason starts with
``PolicyError``. Only malformed *specs* raise (at compile time), and only with a ``PolicySpecError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final, Literal

FieldErrorReason = Literal["Required", "Invalid", "NotSupported", "Unknown", "CelCompileFailed"]

MAX_FOREIGN_MESSAGE: Final = 256
"""Messages from CEL libraries are truncated to this many characters (some dump the whole activation)."""


def truncate(message: str, limit: int = MAX_FOREIGN_MESSAGE) -> str:
    """First line-ish of a foreign error message, at most ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a Policy spec, located by a field path such as ``spec.rules[1].action``."""

    path: str
    message: str
    reason: FieldErrorReason = "Invalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PolicyError(Exception):
    """Base of every error the policy engine raises."""


class PolicySpecError(PolicyError):
    """A Policy spec is invalid. ``errors`` holds all problems found, in spec order."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("PolicySpecError needs at least one FieldError")
        shown = "; ".join(str(e) for e in self.errors[:5])
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"invalid Policy spec: {shown}{more}")


class CelCompileError(PolicyError):
    """A CEL expression does not parse, or it breaks a compile-time limit (length, nesting, names)."""


class CelEvaluationError(PolicyError):
    """A CEL expression failed at evaluation time (type error, division by zero, non-bool result...)."""


class CelTimeout(CelEvaluationError):
    """A CEL evaluation went over its time budget."""


class CelMissingValue(CelEvaluationError):
    """A CEL expression read a field or variable that the context does not have.

    This is how an absent path shows up inside CEL; the engine treats it as "does not match", exactly
    like an absent path in a structured matcher.
    """
