"""Canonical serialisation and hashing: the same value always gives the same bytes.

- :func:`canonical_json` is ``json.dumps(value, sort_keys=True, separators=(",", ":"))``. Every digest
  (the manifest sha256, the source hash, a tool's schemaSha) is the sha256 of this text, UTF-8 encoded.
- :func:`canonical_yaml` is the text stored in the ConfigMap (``data["manifest.yaml"]``) and printed by
  ``joch compile``. It is defined as exactly what PyYAML's pure-Python SafeDumper writes with
  ``sort_keys=True, default_flow_style=False, allow_unicode=True`` and no line folding, without anchors:
  block style, keys sorted, two-space indent, sequences inside mappings not indented.

  Speed: the pure-Python emitter costs about 2 ms per manifest, most of the compile time. So documents
  made of mappings, lists and single-line scalars (every manifest in practice) are written by a small
  block emitter here, which asks PyYAML only how to write each distinct scalar (plain, quoted, ...) and
  remembers the answer. Names and references (letters, digits, ``_ . / - @``, inner colons, starting
  with a letter, digit or ``_``: names, images, digests, URLs, hashes) that YAML would not read as
  another type (``yes``, ``null``, ``1.0``, ``007``, dates ...) are written plain without asking:
  each new Agent brings such names, and PyYAML takes a third of a millisecond per question.
  Anything else (a multi-line string, a key that needs YAML's complex-key form, a non-string key) goes
  through PyYAML whole. Tests check that both paths give the same bytes. The output does not depend on
  whether PyYAML was built with libyaml.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

import yaml
import yaml.resolver

__all__ = ["canonical_json", "canonical_yaml", "sha256_hex"]

_NO_FOLDING: Final = 1 << 30
"""Line width for the YAML emitter: large enough that no scalar is ever folded."""
_LINE_BREAKS: Final = ("\n", "\r", "\x85", "\u2028", "\u2029")
_MAX_SIMPLE_KEY: Final = 100
"""Keys this long or longer take the PyYAML path (it writes keys of 128+ characters as complex keys)."""
_MAX_CACHED: Final = 65_536
_PLAIN_CANDIDATE: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_./@:-]*[A-Za-z0-9_./@-])?")
"""Strings PyYAML writes plain unless its resolver reads them as another type: no indicator can start
them, none of their characters needs quoting (a colon only inside, never followed by a space)."""
_RESOLVER: Final = yaml.resolver.Resolver()
_STR_TAG: Final = "tag:yaml.org,2002:str"


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes anchors or aliases (a shared sub-object is written out each time)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""``json.dumps(value, sort_keys=True, separators=(",", ":"))``, without building an encoder per call."""


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the input of every digest."""
    return _JSON.encode(value)


def sha256_hex(text: str) -> str:
    """Hex sha256 of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pyyaml_dump(value: Any) -> str:
    """The reference definition of :func:`canonical_yaml`: PyYAML's pure-Python emitter."""
    return yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=_NO_FOLDING,
    )


def canonical_yaml(value: Any) -> str:
    """Block-style YAML with sorted keys; byte-identical for equal values (see the module docstring)."""
    if isinstance(value, dict) and value:
        out: list[str] = []
        try:
            _mapping(value, 0, "", out)
        except _Unsupported:
            return pyyaml_dump(value)
        return "".join(out)
    return pyyaml_dump(value)


class _Unsupported(Exception):
    """The fast emitter does not handle this document; PyYAML writes it."""


_scalars: dict[Any, str] = {}
"""How PyYAML writes each scalar seen so far: a string under itself, any other scalar under
``(type, repr)`` (so ``1``, ``1.0`` and ``True`` never share an entry)."""
_key_texts: dict[str, str] = {}
"""``<key>:`` for each mapping key seen so far."""


def _scalar(value: Any) -> str:
    """How PyYAML writes one single-line scalar in block context (cached)."""
    kind = type(value)
    if kind not in (str, int, float, bool) and value is not None:
        raise _Unsupported
    key = value if kind is str else (kind, repr(value))
    text = _scalars.get(key)
    if text is None:
        if kind is str and _is_plain(value):
            text = value
        else:
            if kind is str and any(mark in value for mark in _LINE_BREAKS):
                raise _Unsupported
            dumped = pyyaml_dump([value])  # "- <scalar>\n"
            text = dumped[2:-1]
            if not dumped.startswith("- ") or "\n" in text:  # pragma: no cover - a safety net
                raise _Unsupported
        if len(_scalars) >= _MAX_CACHED:
            _scalars.clear()
        _scalars[key] = text
    return text


def _is_plain(value: str) -> bool:
    """Whether PyYAML writes ``value`` as a plain scalar, decided without running its emitter."""
    return (
        _PLAIN_CANDIDATE.fullmatch(value) is not None
        and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG  # type: ignore[no-untyped-call]
    )


def _key(key: Any) -> str:
    """``<key>:`` for a mapping key the fast emitter can write (a short, non-empty ``str``)."""
    if type(key) is not str:
        raise _Unsupported
    text = _key_texts.get(key)
    if text is None:
        if not key or len(key) >= _MAX_SIMPLE_KEY:
            raise _Unsupported
        text = _scalar(key) + ":"
        if len(_key_texts) >= _MAX_CACHED:
            _key_texts.clear()
        _key_texts[key] = text
    return text


def _mapping(value: dict[Any, Any], indent: int, first_prefix: str, out: list[str]) -> None:
    """A non-empty mapping whose keys start at column ``indent``; the first line starts with
    ``first_prefix`` instead of spaces (used for a mapping that is a sequence item)."""
    try:
        keys = sorted(value)
    except TypeError:
        raise _Unsupported from None
    pad = " " * indent
    prefix = first_prefix or pad
    for key in keys:
        line = prefix + _key(key)
        prefix = pad
        item = value[key]
        if type(item) is str:  # the common case, inlined (a str is never a dict or a list)
            text = _scalars.get(item)
            out.append(f"{line} {_scalar(item) if text is None else text}\n")
        else:
            _value(item, indent, line, out, in_mapping=True)


def _sequence(value: list[Any], indent: int, first_prefix: str, out: list[str]) -> None:
    pad = " " * indent
    prefix = first_prefix or pad
    for item in value:
        line = prefix + "-"
        prefix = pad
        if type(item) is str:
            text = _scalars.get(item)
            out.append(f"{line} {_scalar(item) if text is None else text}\n")
        else:
            _value(item, indent, line, out, in_mapping=False)


def _value(value: Any, indent: int, line: str, out: list[str], *, in_mapping: bool) -> None:
    """Write ``value`` after ``line`` (a ``key:`` or ``-`` at column ``indent``)."""
    if isinstance(value, dict):
        if not value:
            out.append(line + " {}\n")
        elif in_mapping:
            out.append(line + "\n")
            _mapping(value, indent + 2, "", out)
        else:
            _mapping(value, indent + 2, line + " ", out)
    elif isinstance(value, list):
        if not value:
            out.append(line + " []\n")
        elif in_mapping:
            out.append(line + "\n")
            _sequence(value, indent, "", out)  # PyYAML does not indent a sequence inside a mapping
        else:
            _sequence(value, indent + 2, line + " ", out)
    else:
        out.append(line + " " + _scalar(value) + "\n")
