"""Structured matchers compiled to plain Python closures (no CEL on this path).

``compile_clause(clause) -> Test`` where ``Test(context) -> bool``. Semantics, per context value ``v`` at
the clause's path:

- ``v`` absent or ``null``: no match, whatever the matcher (except ``not-allowlisted``, below).
- ``v`` a list: the clause matches when ANY element matches (``data.contains: pii`` is membership).
- ``Equals(x)``: same JSON type and equal. Booleans never equal numbers (``true`` is not ``1``);
  ints and floats compare numerically (``5`` equals ``5.0``).
- ``Compare(op, n)``: ``v`` is a number (not a boolean) and ``v op n``. A string never compares.
- ``AnyOf``: any option matches.
- ``NotAllowlisted`` (only on ``model.provider``): the provider is a string and
  ``environment.allowedProviders`` is present and does not contain it. An absent list allows every
  provider; a non-list value there is read as a one-element list if it is a string and otherwise as
  "nothing is allowed" (fail closed).

The closures never raise for JSON-shaped contexts; evaluation.py still guards every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from joch.domain.policy import context, model

Test = Callable[[Mapping[str, Any]], bool]
ValueTest = Callable[[Any], bool]

_ALLOWED_PROVIDERS: Final = context.make_getter(("environment", "allowedProviders"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_test(matcher: model.Equals | model.Compare) -> ValueTest:
    """A predicate over one (non-list) context value."""
    if isinstance(matcher, model.Compare):
        op, number = model.COMPARISONS[matcher.op], matcher.number
        return lambda value: _is_number(value) and op(value, number)
    expected = matcher.value
    if isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, str):
        return lambda value: value == expected and isinstance(value, str)
    return lambda value: value == expected and _is_number(value)


def _lift(getter: context.Getter, test: ValueTest) -> Test:
    """Read the path, then apply ``test`` to the value or, for a list, to any element."""

    def clause(ctx: Mapping[str, Any]) -> bool:
        value = getter(ctx)
        if value is context.MISSING:
            return False
        if isinstance(value, (list, tuple)):  # a tuple is faster than list | tuple here
            return any(test(element) for element in value)
        return test(value)

    return clause


def _not_allowlisted(getter: context.Getter) -> Test:
    def clause(ctx: Mapping[str, Any]) -> bool:
        model = ctx.get("model")
        if model is None:
            return False
        provider = getter(ctx)
        if not isinstance(provider, str):
            return False
        allowed = _ALLOWED_PROVIDERS(ctx)
        if allowed is context.MISSING:
            return False
        if isinstance(allowed, str):
            return provider != allowed
        if isinstance(allowed, list | tuple):
            return provider not in allowed
        return True

    return clause


def compile_clause(clause: model.Clause) -> Test:
    """A closure for a structured clause. CEL clauses are compiled in compiling.py, not here."""
    matcher = clause.matcher
    getter = context.make_getter(clause.keys)
    if isinstance(matcher, model.NotAllowlisted):
        return _not_allowlisted(getter)
    if isinstance(matcher, model.Equals | model.Compare):
        general = _lift(getter, value_test(matcher))
        return _fast_path(clause.keys, matcher, general) if len(clause.keys) == 2 else general
    if isinstance(matcher, model.AnyOf):
        options = matcher.options
        special = [_not_allowlisted(getter) for option in options if isinstance(option, model.NotAllowlisted)]
        tests = [value_test(option) for option in options if not isinstance(option, model.NotAllowlisted)]
        plain = _lift(getter, lambda value: any(test(value) for test in tests)) if tests else None
        if plain is not None and not special and len(clause.keys) == 2:
            return _fast_path(clause.keys, matcher, plain)
        parts = [*special, *([plain] if plain is not None else [])]
        if len(parts) == 1:
            return parts[0]
        return lambda ctx: any(part(ctx) for part in parts)
    raise TypeError(f"not a structured matcher: {matcher!r}")


def _fast_path(keys: tuple[str, ...], matcher: model.Matcher, general: Test) -> Test:
    """The common case inlined: a two-segment path into plain dicts holding a plain str or number.
    Anything else (lists, other mappings, absent values) falls through to ``general``."""
    k0, k1 = keys
    if isinstance(matcher, model.Equals) and isinstance(matcher.value, str):
        expected = matcher.value

        def equals_str(ctx: Mapping[str, Any]) -> bool:
            first = ctx.get(k0)
            if first.__class__ is dict:
                value = first.get(k1)
                if value.__class__ is str:
                    return bool(value == expected)
                if value is None:
                    return False
            elif first is None:
                return False
            return general(ctx)

        return equals_str
    if isinstance(matcher, model.Compare):
        op, number = model.COMPARISONS[matcher.op], matcher.number

        def compare(ctx: Mapping[str, Any]) -> bool:
            first = ctx.get(k0)
            if first.__class__ is dict:
                value = first.get(k1)
                if value.__class__ is float or value.__class__ is int:
                    return op(value, number)
                if value is None:
                    return False
            elif first is None:
                return False
            return general(ctx)

        return compare
    if isinstance(matcher, model.AnyOf) and all(
        isinstance(option, model.Equals) and isinstance(option.value, str) for option in matcher.options
    ):
        strings = frozenset(option.value for option in matcher.options if isinstance(option, model.Equals))

        def any_str(ctx: Mapping[str, Any]) -> bool:
            first = ctx.get(k0)
            if first.__class__ is dict:
                value = first.get(k1)
                if value.__class__ is str:
                    return value in strings
                if value is None:
                    return False
            elif first is None:
                return False
            return general(ctx)

        return any_str
    return general


def all_of(tests: list[Test]) -> Test:
    """AND of several clause closures, specialised for the common small cases."""
    if not tests:
        return lambda ctx: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda ctx: first(ctx) and second(ctx)
    frozen = tuple(tests)
    return lambda ctx: all(test(ctx) for test in frozen)
