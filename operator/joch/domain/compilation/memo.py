"""Bounded memos for what does not change between Agents: values derived from shared objects.

Compiling a fleet reads the same Tools and Policies for every Agent. What the compiler derives from one
of them (a Tool's preflight facts and schema digest, a Policy's scope, which Policies select a given
label set) is remembered here instead of being recomputed for each Agent.

- :class:`ObjectMemo`: a value computed from one object, keyed by the object's identity together with
  its version (uid, generation, resourceVersion). The operator's cache and
  :class:`~joch.domain.compilation.catalog.Catalog` replace a parsed object when it changes (a watch
  event parses a new one), never edit it; the version check also catches metadata edited in place.
  Each entry holds a strong reference to its object, so an identity cannot be reused while remembered.
- :class:`Memo`: plain hashable keys (built by the caller from identities and versions, see
  ``resolve._selected_policies``).

Both are LRU-bounded (:data:`CAPACITY` entries), so memory stays flat whatever the fleet size. A memo
is only ever a cache: a value missing is recomputed, and a remembered value equals what the computation
gives (tests/unit/compilation/test_memo_equivalence.py compiles generated fleets with warm memos and
after :func:`clear_all` and compares the bytes). Not thread-safe, like the compiler's callers.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, Protocol, TypeVar

from joch.api.v1alpha1 import meta

__all__ = ["CAPACITY", "Clearable", "Memo", "ObjectMemo", "clear_all", "register", "sizes", "version_of"]

CAPACITY: Final = 4096

K = TypeVar("K", bound=Hashable)
R = TypeVar("R", bound=meta.Resource)
V = TypeVar("V")


class Clearable(Protocol):
    name: str

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


_ALL: list[Clearable] = []


def register(memo: Clearable) -> None:
    """Count ``memo`` among the compiler's memos (emptied by :func:`clear_all`, listed by :func:`sizes`)."""
    _ALL.append(memo)


def clear_all() -> None:
    """Forget every remembered value (tests and benchmarks; never needed for correctness)."""
    for memo in _ALL:
        memo.clear()


def sizes() -> dict[str, int]:
    """Entries held by each memo, by name."""
    return {memo.name: len(memo) for memo in _ALL}


def version_of(obj: meta.Resource) -> tuple[Any, ...]:
    """What tells one version of an object from another, besides its identity."""
    metadata = obj.metadata
    return (metadata.uid, metadata.generation, metadata.resource_version)


class Memo(Generic[K, V]):
    """A least-recently-used mapping of at most ``capacity`` entries."""

    def __init__(self, name: str, capacity: int = CAPACITY) -> None:
        self.name = name
        self.capacity = capacity
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()
        register(self)

    def get(self, key: K) -> V | None:
        found = self._data.get(key)
        if found is not None:
            self._data.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> V:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class ObjectMemo(Generic[R, V]):
    """``compute(obj)``, remembered by the identity and version of ``obj``."""

    def __init__(self, name: str, compute: Callable[[R], V], capacity: int = CAPACITY) -> None:
        self.compute = compute
        self._memo: Memo[int, tuple[R, tuple[Any, ...], V]] = Memo(name, capacity)

    def __call__(self, obj: R) -> V:
        version = version_of(obj)
        found = self._memo.get(id(obj))
        if found is not None and found[0] is obj and found[1] == version:
            return found[2]
        value = self.compute(obj)
        self._memo.put(id(obj), (obj, version, value))
        return value

    def __len__(self) -> int:
        return len(self._memo)
