"""Redaction, the one kind of ``modify`` a Policy can ask for.

``{redact: true, redactionRules: [emails, phoneNumbers, ssn]}`` names rules from ``RULES``; an action
that names none means all of them. ``redact(payload, rules)`` returns a copy of a JSON-shaped payload in
which every string value (not map keys) has each match replaced by ``[REDACTED:<rule>]``. Rules apply in
the fixed order of ``RULES`` (not the order written), so the result does not depend on how rules were
listed or merged. The input is never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

RULES: Final[Mapping[str, re.Pattern[str]]] = {
    "ssn": re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"),
    "creditCards": re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
    "emails": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "phoneNumbers": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\w)"
    ),
}
ALL_RULES: Final = tuple(RULES)


def canonical_order(rules: Iterable[str]) -> tuple[str, ...]:
    """``rules`` without duplicates, in the order of ``RULES`` (unknown names dropped)."""
    wanted = set(rules)
    return tuple(name for name in RULES if name in wanted)


def redact(payload: Any, rules: Iterable[str]) -> Any:
    """A redacted copy of ``payload``; see the module docstring."""
    patterns = [(name, RULES[name]) for name in canonical_order(rules)]
    return _walk(payload, patterns)


def _walk(value: Any, patterns: list[tuple[str, re.Pattern[str]]]) -> Any:
    if isinstance(value, str):
        for name, pattern in patterns:
            value = pattern.sub(f"[REDACTED:{name}]", value)
        return value
    if isinstance(value, Mapping):
        return {key: _walk(item, patterns) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, patterns) for item in value]
    return value
