"""Request bodies, read defensively: size, content type, UTF-8, nesting, document count, YAML aliases.

Every refusal is an :class:`~joch.apiserver.errors.ApiError` with a 4xx status naming what was wrong;
a hostile body never reaches a parser that could blow up (a YAML alias bomb, a 10,000-level nesting).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import pydantic
import yaml

from joch.apiserver.errors import ApiError

__all__ = [
    "JSON_TYPES",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "YAML_TYPES",
    "decode",
    "documents",
    "model",
    "too_large",
]

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_DOCUMENTS: Final = 1000
MAX_DEPTH: Final = 64
JSON_TYPES: Final = frozenset({"application/json"})
YAML_TYPES: Final = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})

M = TypeVar("M", bound=pydantic.BaseModel)


def decode(raw: bytes, content_type: str, *, accepted: frozenset[str]) -> str:
    """The body as text, after the checks every body gets."""
    if content_type not in accepted:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"Content-Type {content_type or '(none)'} is not accepted here; send one of "
            + ", ".join(sorted(accepted)),
        )
    if len(raw) > MAX_BODY_BYTES:
        raise too_large()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "BadRequest", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def too_large() -> ApiError:
    return ApiError(413, "TooLarge", f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without anchors' aliases: a body cannot expand into gigabytes (a billion laughs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in a request body", event.start_mark
            )
        return super().compose_node(parent, index)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: a deep value cannot exhaust the stack here)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def _check_depth(value: Any, where: str) -> None:
    if _depth(value) > MAX_DEPTH:
        raise ApiError(400, "BadRequest", f"{where} nests deeper than {MAX_DEPTH} levels")


def documents(text: str, content_type: str) -> list[tuple[str, Any]]:
    """The documents of a multi-document YAML or a JSON body (an object, an array of objects or a
    ``List``): (source label, parsed value)."""
    found = _json_documents(text) if content_type in JSON_TYPES else _yaml_documents(text)
    if len(found) > MAX_DOCUMENTS:
        raise _too_many()
    if not found:
        raise ApiError(400, "BadRequest", "the body holds no document")
    for source, item in found:
        _check_depth(item, source)
    return found


def _json_documents(text: str) -> list[tuple[str, Any]]:
    value = _json(text)
    if isinstance(value, list):  # a JSON array of documents
        values = value
    elif isinstance(value, dict) and value.get("kind") == "List" and isinstance(value.get("items"), list):
        values = value["items"]
    else:
        values = [value]
    return [(f"body#{index}", item) for index, item in enumerate(values, start=1)]


def _yaml_documents(text: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    try:
        for index, item in enumerate(yaml.load_all(text, Loader=_NoAliases), start=1):
            if item is None:
                continue
            if len(found) >= MAX_DOCUMENTS:
                raise _too_many()
            found.append((f"body#{index}", item))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ApiError(400, "BadRequest", f"the body is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ApiError(400, "BadRequest", f"the body nests deeper than {MAX_DEPTH} levels") from None
    return found


def _too_many() -> ApiError:
    return ApiError(413, "TooLarge", f"more than {MAX_DOCUMENTS} documents in one request; split the batch")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ApiError(400, "BadRequest", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"the body is not valid JSON: {exc}") from None


def model(text: str, schema: type[M]) -> M:
    """A JSON object body as ``schema``; 422 naming the field and the reason when it does not fit."""
    value = _json(text) if text.strip() else {}
    _check_depth(value, "the body")
    try:
        return schema.model_validate(value)
    except pydantic.ValidationError as exc:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]) or "(body)", "reason": error["msg"]}
            for error in exc.errors()[:20]
        ]
        first = problems[0]
        raise ApiError(422, "Invalid", f"{first['field']}: {first['reason']}", {"fields": problems}) from None
