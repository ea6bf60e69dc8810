"""Cheap Python pre-checks ("guards") taken from a CEL expression, so CEL runs only when it might match.

A CEL clause costs ~10 us (binding the context) where a Python closure costs ~0.2 us. Most CEL rules
start with a selective comparison (``tool.sideEffect == 'financial' && ...``). When the expression is
a top-level chain of ``&&`` (no top-level ``||`` or ``?:``), each conjunct of the form

    path == 'text' | number | true | false        path != 'text' | number | true | false
    path <, <=, >, >= number                      path in ['text', ...]

becomes a guard. A guard answers "certainly false" only when the value at ``path`` is present, has the
literal's type (a string for a string, a non-boolean number for a number, a boolean for a boolean) and
the comparison fails in Python, which is exactly when CEL would evaluate that conjunct to ``false``
(numbers: the same type, or a double value against an int literal, the mixes both libraries accept);
since ``false && x`` is ``false`` in CEL whatever ``x`` is (errors included), the whole expression is
then ``false`` and CEL need not run. In every other case (absent value, other type, a list...) the
guard says nothing and CEL decides. So guards change cost, never the value of an expression. (One
corner: a context the library cannot bind at all, such as an integer beyond 64 bits under cel-python,
fails closed when CEL runs, but is never bound when a guard has already decided.)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from joch.domain.policy import cel, context, model

Token = tuple[str, str]
MayMatch = Callable[[Mapping[str, Any]], bool]

_DECIMAL = re.compile(r"^\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_INT64: Final = 2**63


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    keys: tuple[str, ...]
    op: str
    """One of ==, !=, <, <=, >, >=, in."""
    value: str | int | float | bool | frozenset[str]


def extract(source: str) -> tuple[Guard, ...]:
    """The guards of ``source`` (maybe none). ``source`` has already passed ``cel.scan``."""
    conjuncts = _top_level_conjuncts(list(cel.tokens(source)))
    return tuple(guard for part in conjuncts if (guard := _guard(part)) is not None)


def _top_level_conjuncts(found: list[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    i = 0
    while i < len(found):
        token = found[i]
        following = found[i + 1] if i + 1 < len(found) else ("", "")
        if token[0] == "punct" and token[1] in "([{":
            depth += 1
        elif token[0] == "punct" and token[1] in ")]}":
            depth -= 1
        elif depth == 0 and token == ("punct", "?"):
            return []
        elif depth == 0 and token == following and token in (("punct", "|"), ("punct", "&")):
            if token[1] == "|":
                return []
            parts.append([])
            i += 2
            continue
        parts[-1].append(token)
        i += 1
    return parts


def _guard(part: Sequence[Token]) -> Guard | None:
    if not part or part[0][0] != "name" or part[0][1] not in context.ROOTS:
        return None
    keys = [part[0][1]]
    i = 1
    while i + 1 < len(part) and part[i] == ("punct", ".") and part[i + 1][0] == "name":
        keys.append(part[i + 1][1])
        i += 2
    op, i = _operator(part, i)
    if op is None:
        return None
    value = (
        _list_of_strings(part[i:]) if op == "in" else _literal(part[i:], numbers_only=op not in ("==", "!="))
    )
    if value is None:
        return None
    return Guard(keys=tuple(keys), op=op, value=value)


def _operator(part: Sequence[Token], i: int) -> tuple[str | None, int]:
    if i >= len(part):
        return None, i
    if part[i] == ("name", "in"):
        return "in", i + 1
    first = part[i][1] if part[i][0] == "punct" else ""
    second = part[i + 1][1] if i + 1 < len(part) and part[i + 1][0] == "punct" else ""
    if first + second in ("==", "!=", "<=", ">="):
        return first + second, i + 2
    if first in ("<", ">"):
        return first, i + 1
    return None, i


def _literal(rest: Sequence[Token], *, numbers_only: bool) -> str | int | float | bool | None:
    negative = len(rest) == 2 and rest[0] == ("punct", "-")
    if negative:
        rest = rest[1:]
    if len(rest) != 1:
        return None
    kind, text = rest[0]
    if kind == "number" and _DECIMAL.match(text):
        number: float = int(text) if text.isdigit() else float(text)
        return -number if negative else number
    if negative or numbers_only:
        return None
    if kind == "string":
        return text
    if rest[0] in (("name", "true"), ("name", "false")):
        return text == "true"
    return None


def _list_of_strings(rest: Sequence[Token]) -> frozenset[str] | None:
    if len(rest) < 2 or rest[0] != ("punct", "[") or rest[-1] != ("punct", "]"):
        return None
    inner = rest[1:-1]
    items = [token[1] for token in inner[0::2] if token[0] == "string"]
    commas = inner[1::2]
    if len(items) != len(inner[0::2]) or any(comma != ("punct", ",") for comma in commas):
        return None
    return frozenset(items)


def _is_number(value: Any) -> bool:
    """A number both libraries take as it is: a finite-or-infinite float (not NaN), or an int64."""
    cls = value.__class__
    return (cls is float and not math.isnan(value)) or (cls is int and -_INT64 <= value < _INT64)


def _may_match(guard: Guard) -> MayMatch:
    getter = context.make_getter(guard.keys)
    expected = guard.value
    missing = context.MISSING
    if guard.op == "in":
        allowed = expected
        assert isinstance(allowed, frozenset)
        return lambda ctx: not ((value := getter(ctx)).__class__ is str and value not in allowed)
    compare = model.COMPARISONS[guard.op]
    if isinstance(expected, bool):
        return lambda ctx: not ((value := getter(ctx)).__class__ is bool and not compare(value, expected))
    if isinstance(expected, str):
        return lambda ctx: not ((value := getter(ctx)).__class__ is str and not compare(value, expected))

    kind = expected.__class__
    if guard.op in ("==", "!="):
        # Equality across int and double is where CEL libraries differ: only conclude on the same type.

        def same_type(ctx: Mapping[str, Any]) -> bool:
            value = getter(ctx)
            return value.__class__ is not kind or not _is_number(value) or compare(value, expected)

        return same_type

    def ordered(ctx: Mapping[str, Any]) -> bool:
        value = getter(ctx)
        if value is missing or not _is_number(value):
            return True
        # cel-python compares a double with an int literal, but fails on an int with a double literal.
        if value.__class__ is not kind and not (value.__class__ is float and kind is int):
            return True
        return compare(value, expected)

    return ordered


def compile_guards(guards: Sequence[Guard]) -> MayMatch | None:
    """One closure, False when some guard proves the expression false; None when there are no guards."""
    if not guards:
        return None
    checks = [_may_match(guard) for guard in guards]
    if len(checks) == 1:
        return checks[0]
    return lambda ctx: all(check(ctx) for check in checks)
