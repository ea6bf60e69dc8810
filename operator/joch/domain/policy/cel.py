"""CEL behind one small seam: ``CelBackend.compile(source) -> Program``, ``Program.evaluate(activation)``.

Two implementations, both on PyPI:

    ``common-expression-language``  (``import cel``)    Rust; the DEFAULT: 10-20x faster than cel-python
                                                           on the engine path (benchmarks/policy_bench.py)
    ``cel-python``                  (``import celpy``)  pure Python

``get_backend(name)`` picks one by name (either name above, or the aliases ``cel``/``rust`` and
``celpy``/``python``); without a name, the default. The operator's choice is the setting
``OperatorSettings.cel_backend`` (flag ``--cel-backend`` or ``$JOCH_CEL_BACKEND``, read by joch.cli: this
module never reads the environment), passed to compilers as ``CompileOptions(cel_backend=...)``. Both
libraries are imported lazily: the engine pays for neither when no policy uses CEL.

The seam has three calls:

    ``backend.compile(source) -> Program``     raises CelCompileError
    ``backend.prepare(mapping) -> activation`` converts JSON-shaped values to the library's own ONCE
                                              (the expensive part: ~2 us per object for the Rust
                                              binding), so several programs can share it
    ``program.evaluate(activation) -> value``  ``bool`` for a condition, or raises
        ``CelMissingValue``     the expression read an absent field or an unbound root: "does not match"
        ``CelEvaluationError``  anything else (type error, division by zero, a library panic): "deny"

What gets bound: ``scan`` finds the field chains an expression reads (``agent.labels.env``),
``access_plan`` merges them and ``extract`` copies only those parts of the context, so a large payload
that an expression never reads is never converted. Roots absent from the context are not bound.

Compile-time limits (``CelLimits``, checked by ``scan`` before a library sees the source): the length of
the source, the nesting of brackets, the nesting of comprehension macros (``all``, ``exists``,
``exists_one``, ``map``, ``filter``), and the free names, which must be decision-context roots (so a
typo is a compile error, not a silent non-match). With bounded nesting and a bounded context, an
evaluation's work is bounded; its CPU time is also checked against ``CelLimits.time_budget_seconds``
by the caller (compiling.py), which fails closed when it is exceeded. The check happens when the
evaluation returns (neither library can be interrupted), so the budget bounds what is accepted, and
the compile-time limits bound what can run.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Protocol

from joch.domain.policy import context, errors

CEL_RUST: Final = "common-expression-language"
CEL_PYTHON: Final = "cel-python"
DEFAULT_BACKEND: Final = CEL_RUST
BACKENDS: Final = (CEL_RUST, CEL_PYTHON)

_ALIASES: Final[Mapping[str, str]] = {
    CEL_RUST: CEL_RUST,
    "cel": CEL_RUST,
    "rust": CEL_RUST,
    CEL_PYTHON: CEL_PYTHON,
    "celpy": CEL_PYTHON,
    "python": CEL_PYTHON,
}


class Program(Protocol):
    def evaluate(self, activation: Any) -> Any:
        """Run against an activation made by the same backend's ``prepare``."""
        ...


class CelBackend(Protocol):
    @property
    def name(self) -> str: ...

    def compile(self, source: str) -> Program: ...

    def prepare(self, activation: Mapping[str, Any]) -> Any:
        """Convert a JSON-shaped activation once, so several programs can run against it."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class CelLimits:
    max_length: int = 2048
    max_nesting: int = 24
    max_comprehension_nesting: int = 2
    time_budget_seconds: float = 0.010
    """CPU-time budget of ONE evaluation; over it, the rule fails closed (deny, PolicyError)."""


DEFAULT_LIMITS: Final = CelLimits()


# --- scanning: limits and free names, independent of the library -------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)[uU]?")
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_BUILTIN_NAMES: Final = frozenset(
    {"true", "false", "null", "in"}
    | {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "type", "null_type"}
    | {"duration", "timestamp", "dyn"}
)
_STRING_PREFIXES: Final = frozenset({"r", "b", "rb", "br"})
_OPEN: Final = "([{"
_CLOSE: Final = ")]}"


@dataclasses.dataclass(frozen=True, slots=True)
class ScanResult:
    roots: frozenset[str]
    """The free names, i.e. the decision-context roots the expression reads."""
    paths: frozenset[tuple[str, ...]]
    """The field chains it reads (``agent.labels.env`` -> ("agent", "labels", "env")); see access_plan."""


def scan(source: str, limits: CelLimits = DEFAULT_LIMITS) -> ScanResult:
    """Check ``source`` against ``limits`` and find its free names. Raises CelCompileError."""
    if not isinstance(source, str) or not source.strip():
        raise errors.CelCompileError("the expression is empty")
    if len(source) > limits.max_length:
        raise errors.CelCompileError(
            f"the expression is {len(source)} characters long (limit {limits.max_length})"
        )
    found = list(tokens(source))
    roots: set[str] = set()
    paths: set[tuple[str, ...]] = set()
    bound: set[str] = set()
    macro_opens: set[int] = set()  # token positions of a comprehension macro's "("
    stack: list[bool] = []  # per open bracket: is it a macro's "("?
    for position, (kind, text) in enumerate(found):
        previous = found[position - 1] if position else ("", "")
        following = found[position + 1] if position + 1 < len(found) else ("", "")
        if kind == "name":
            is_call = following == ("punct", "(")
            if previous == ("punct", "."):
                if is_call and text in _MACROS:
                    macro_opens.add(position + 1)
            elif position - 1 in macro_opens:
                bound.add(text)
            elif not is_call and text not in _BUILTIN_NAMES and text not in bound:
                if text not in context.ROOTS:
                    known = ", ".join(sorted(context.ROOTS))
                    raise errors.CelCompileError(f"unknown name {text!r}; the decision context has: {known}")
                roots.add(text)
                paths.add(_chain(found, position))
        elif kind == "punct" and text in _OPEN:
            stack.append(position in macro_opens)
            _check_nesting(stack, limits)
        elif kind == "punct" and text in _CLOSE and stack:
            stack.pop()
    return ScanResult(roots=frozenset(roots), paths=frozenset(paths))


def _chain(found: list[tuple[str, str]], position: int) -> tuple[str, ...]:
    """The field chain starting at the root name at ``position``: ``a.b.c`` but not a trailing
    ``.method(``; indexing (``a.b["c"]``) ends the chain, so the whole of ``a.b`` is kept."""
    chain = [found[position][1]]
    i = position + 1
    while (
        i + 1 < len(found)
        and found[i] == ("punct", ".")
        and found[i + 1][0] == "name"
        and (i + 2 >= len(found) or found[i + 2] != ("punct", "("))
    ):
        chain.append(found[i + 1][1])
        i += 2
    return tuple(chain)


# --- access plans: bind only what an expression reads ----------------------------------------------------

AccessPlan = Mapping[str, "AccessPlan | None"]
"""A tree of the fields an expression reads; ``None`` means "the whole value below here"."""


def access_plan(paths: Iterable[tuple[str, ...]]) -> AccessPlan:
    """Merge field chains into a plan; a shorter chain (a whole object) absorbs longer ones under it."""
    plan: dict[str, Any] = {}
    for path in sorted(paths, key=lambda path: (len(path), path)):
        node = plan
        for depth, key in enumerate(path):
            last = depth == len(path) - 1
            if key in node and node[key] is None:
                break
            if last:
                node[key] = None
            else:
                node = node.setdefault(key, {})
    return plan


def extract(value: Mapping[str, Any], plan: AccessPlan) -> dict[str, Any]:
    """The part of ``value`` that ``plan`` reads. Absent and null fields stay absent; a non-object where
    the plan expects an object is kept whole (the expression then sees its real type)."""
    out: dict[str, Any] = {}
    for key, below in plan.items():
        item = value.get(key)
        if item is None:
            continue
        out[key] = extract(item, below) if below is not None and isinstance(item, Mapping) else item
    return out


def tokens(source: str) -> Iterator[tuple[str, str]]:
    """(kind, text) tokens: ``name``; ``string`` (a plain quoted string without escapes: its text);
    ``number`` (its text); ``literal`` (any other string or bytes literal); single-character ``punct``.
    Whitespace and ``//`` comments are dropped. Good enough for limits, free names and guards; the
    library does the real parsing."""
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end + 1
        elif char in "'\"":
            start, i = i, _skip_string(source, i, raw=False)
            body = source[start + 1 : i - 1]
            plain = not source.startswith(char * 3, start) and "\\" not in body
            yield ("string", body) if plain else ("literal", "")
        elif char.isdigit():
            match = _NUMBER.match(source, i)
            end = match.end() if match else i + 1
            yield ("number", source[i:end])
            i = end
        elif (name := _IDENT.match(source, i)) is not None:
            i = name.end()
            prefix = name.group().lower()
            if prefix in _STRING_PREFIXES and i < n and source[i] in "'\"":
                i = _skip_string(source, i, raw="r" in prefix)
                yield ("literal", "")
            else:
                yield ("name", name.group())
        else:
            i += 1
            yield ("punct", char)


def _skip_string(source: str, start: int, *, raw: bool) -> int:
    quote = source[start]
    triple = source.startswith(quote * 3, start)
    delimiter = quote * 3 if triple else quote
    i = start + len(delimiter)
    while i < len(source):
        if not raw and source[i] == "\\":
            i += 2
            continue
        if source.startswith(delimiter, i):
            return i + len(delimiter)
        if not triple and source[i] == "\n":
            break
        i += 1
    raise errors.CelCompileError("the expression has an unterminated string literal")


def _check_nesting(stack: list[bool], limits: CelLimits) -> None:
    if len(stack) > limits.max_nesting:
        raise errors.CelCompileError(f"the expression nests deeper than {limits.max_nesting} brackets")
    if sum(stack) > limits.max_comprehension_nesting:
        raise errors.CelCompileError(
            f"the expression nests more than {limits.max_comprehension_nesting} comprehension macros"
        )


# --- the two libraries ----------------------------------------------------------------------------------

_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")


class _RustProgram:
    __slots__ = ("_execute",)

    def __init__(self, program: Any) -> None:
        self._execute = program.execute

    def evaluate(self, activation: Any) -> Any:
        try:
            return self._execute(activation)
        except KeyError as exc:
            raise errors.CelMissingValue(f"no such key: {errors.truncate(str(exc))}") from exc
        except BaseException as exc:  # includes pyo3's PanicException, a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            message = str(exc)
            undefined = _UNDEFINED.search(message)
            if undefined is not None and undefined.group(1) in context.ROOTS:
                raise errors.CelMissingValue(f"{undefined.group(1)} is absent") from exc
            raise errors.CelEvaluationError(errors.truncate(f"{type(exc).__name__}: {message}")) from exc


class RustCelBackend:
    """``common-expression-language`` (PyO3 binding of the Rust ``cel`` crate)."""

    name: Final = CEL_RUST

    def __init__(self) -> None:
        # The extension module itself, not the package: xds-protos (Envoy's protos, joch.grpc) ships a
        # ``cel/__init__.py`` of its own, and whichever package pip installs last owns that file.
        from cel import cel as native  # noqa: PLC0415 - lazy: importing it costs ~0.2 s

        self._compile = native.compile
        self._context = native.Context

    def prepare(self, activation: Mapping[str, Any]) -> Any:
        """A ``cel.Context``: the Python -> CEL conversion (the expensive part) happens once, here."""
        try:
            return self._context(dict(activation))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise errors.CelEvaluationError(errors.truncate(f"cannot bind the context: {exc}")) from exc

    def compile(self, source: str) -> Program:
        try:
            return _RustProgram(self._compile(source))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise errors.CelCompileError(errors.truncate(str(exc))) from exc


class _PythonProgram:
    __slots__ = ("_error_type", "_evaluate")

    def __init__(self, program: Any, error_type: type[Exception]) -> None:
        self._evaluate = program.evaluate
        self._error_type = error_type

    def evaluate(self, activation: Any) -> Any:
        try:
            result = self._evaluate(activation)
        except self._error_type as exc:
            raise self._translate(exc) from exc
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise errors.CelEvaluationError(errors.truncate(f"{type(exc).__name__}: {exc}")) from exc
        if isinstance(result, self._error_type):
            raise self._translate(result)
        if isinstance(result, bool):
            return result
        if isinstance(result, int) and type(result).__name__ == "BoolType":
            return bool(result)
        return result

    @staticmethod
    def _translate(exc: Exception) -> errors.CelEvaluationError:
        args = exc.args
        message = str(args[0]) if args else type(exc).__name__
        if len(args) > 1 and args[1] is KeyError:
            return errors.CelMissingValue(errors.truncate(message))
        return errors.CelEvaluationError(errors.truncate(message))


class PythonCelBackend:
    """``cel-python`` (``celpy``), interpreted."""

    name: Final = CEL_PYTHON

    def __init__(self) -> None:
        import celpy  # noqa: PLC0415 - lazy: importing it builds a parser (~0.2 s)
        import celpy.adapter  # noqa: PLC0415
        import celpy.evaluation  # noqa: PLC0415

        self._environment = celpy.Environment()
        self._convert = celpy.adapter.json_to_cel
        self._error_type: type[Exception] = celpy.evaluation.CELEvalError

    def compile(self, source: str) -> Program:
        try:
            program = self._environment.program(self._environment.compile(source))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # CELParseError, and RecursionError on pathological input
            raise errors.CelCompileError(errors.truncate(str(exc) or type(exc).__name__)) from exc
        return _PythonProgram(program, self._error_type)

    def prepare(self, activation: Mapping[str, Any]) -> Any:
        """celpy values (``json_to_cel``) for each root."""
        try:
            return {key: self._convert(value) for key, value in activation.items()}
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise errors.CelEvaluationError(errors.truncate(f"cannot bind the context: {exc}")) from exc


def canonical_name(name: str) -> str:
    """The canonical backend name for ``name`` or one of its aliases. Raises ValueError."""
    try:
        return _ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown CEL backend {name!r}; use {CEL_RUST!r} or {CEL_PYTHON!r}") from None


@functools.cache
def _backend(canonical: str) -> CelBackend:
    return RustCelBackend() if canonical == CEL_RUST else PythonCelBackend()


def get_backend(name: str | None = None) -> CelBackend:
    """The backend called ``name`` (a canonical name or an alias); ``None``: ``DEFAULT_BACKEND``.

    Backends are stateless and shared. Raises ValueError for an unknown name.
    """
    return _backend(canonical_name(DEFAULT_BACKEND if name is None else name))
