"""The in-memory API server of the unit tests: a stand-in for ``joch.kube.client.Kube``.

The one shared fake for every test of code that talks to the API server through ``Kube.request``
(the controller and its services, joch.kube's helpers, leader election, the webhook certificate
manager, the resync benchmark). Objects live in a dict keyed by (group, plural, namespace, name);
every write bumps a global resourceVersion. Supported: LIST (with equality label selectors and no
paging; metadata-only when asked for PartialObjectMetadataList), GET, POST (409 AlreadyExists), PUT
(409 on a stale resourceVersion), DELETE, merge PATCH of the status subresource (409 when the patch's
``metadata.resourceVersion`` precondition is stale), and JSON merge or strategic merge PATCH of an
object (lists of named items merged by name, as Kubernetes does for e.g. ``webhooks``).

``requests`` records (method, path) of every call; ``fail`` queues errors to raise; ``forbidden``
holds path patterns answered with 403 (an operator with little RBAC; ``"POST /api/..."`` forbids one
method only); ``down`` makes every call fail as if the server were unreachable; ``gates`` hold chosen
requests back until a test releases them (:class:`Gate`: forcing an interleaving of concurrent
writes); ``landed`` lists the (method, path, body) of every write that reached the store, in order;
``patches`` the (path, body, content type) of every object PATCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from joch.kube import errors


def _route(path: str) -> tuple[str, str, str | None, str | None, str | None]:
    """(group, plural, namespace, name, subresource) of a REST path."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return group, plural, namespace, name, sub


def _matches(labels: Mapping[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, has_value, value = term.partition("=")
        if (labels.get(key) != value) if has_value else (key not in labels):  # "key": the label exists
            return False
    return True


@dataclasses.dataclass
class Gate:
    """Holds back the first request ``matches`` accepts until :meth:`release` (it is then sent as is).

    ``reached`` is set once such a request is waiting; ``body`` is what it carries."""

    matches: Callable[[str, str, Any], bool]
    reached: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    opened: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    body: Any = None

    def release(self) -> None:
        self.opened.set()


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str | None, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail: list[errors.KubeError] = []
        self.forbidden: set[str] = set()
        """Regular expressions of paths (without the query) answered with 403."""
        self.gates: list[Gate] = []
        self.landed: list[tuple[str, str, Any]] = []
        self.on_landed: Callable[[str, str, Any], None] | None = None
        self.patches: list[tuple[str, Any, str | None]] = []
        self.down = False
        self._rv = 100

    # --- test helpers -----------------------------------------------------------------------------

    def put(self, group: str, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store an object as a client would create it (uid, generation 1, resourceVersion)."""
        obj = copy.deepcopy(dict(body))
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("generation", 1)
        metadata["resourceVersion"] = self._next()
        self.objects[(group, plural, metadata.get("namespace"), metadata["name"])] = obj
        return obj

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def of(self, plural: str) -> list[dict[str, Any]]:
        ordered = sorted(self.objects.items(), key=lambda kv: str(kv[0]))
        return [obj for (_, p, _, _), obj in ordered if p == plural]

    def one(self, plural: str) -> dict[str, Any]:
        """The only stored object of ``plural``."""
        (only,) = self.of(plural)
        return only

    def at(self, path: str) -> dict[str, Any]:
        """The stored object at REST ``path``."""
        group, plural, namespace, name, _ = _route(path)
        return self.objects[(group, plural, namespace, name or "")]

    def _next(self) -> str:
        self._rv += 1
        return str(self._rv)

    # --- the Kube interface -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Any:
        gate = next((g for g in self.gates if g.matches(method, path, body)), None)
        if gate is not None:
            self.gates.remove(gate)
            gate.body = copy.deepcopy(body)
            gate.reached.set()
            await gate.opened.wait()
        answer = self.send(method, path, body=body, query=query, content_type=content_type, accept=accept)
        if method != "GET":
            self.landed.append((method, path, copy.deepcopy(body)))
            if self.on_landed is not None:
                self.on_landed(method, path, body)
        return answer

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, query: Mapping[str, Any], accept: str, read_timeout: float, max_line: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A watch that stays open and quiet (tests deliver events to the receivers themselves)."""

        async def quiet() -> AsyncIterator[bytes]:
            await asyncio.Event().wait()
            yield b""

        yield quiet()

    def send(  # noqa: PLR0911 - one answer per verb
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Any:
        self.requests.append((method, path))
        if self.down:
            raise errors.Unavailable("connection refused")
        if self.fail:
            raise self.fail.pop(0)
        if any(_forbids(pattern, method, path) for pattern in self.forbidden):
            raise errors.Forbidden(f"{method} {path} is forbidden", status=403)
        group, plural, namespace, name, sub = _route(path)
        if method == "GET" and name is None:
            listed = self._list(group, plural, namespace, (query or {}).get("labelSelector"))
            if "as=PartialObjectMetadataList" in accept:  # metadata only, as the API server answers
                listed["items"] = [{"metadata": item["metadata"]} for item in listed["items"]]
            return listed
        answer = _metadata_only if "as=PartialObjectMetadata" in accept else _whole
        if method == "POST":
            return answer(self._create(group, plural, namespace, body))
        key = (group, plural, namespace, name or "")
        if key not in self.objects:
            raise errors.NotFound(f"{path} not found", status=404)
        if method == "GET":
            return answer(copy.deepcopy(self.objects[key]))
        if method == "DELETE":
            del self.objects[key]
            return {"kind": "Status", "status": "Success"}
        if method == "PUT":
            return answer(self._replace(key, body))
        if method == "PATCH" and sub is None:
            return answer(self._patch(path, key, body, content_type))
        assert (method, sub, content_type) == ("PATCH", "status", "application/merge-patch+json"), path
        precondition = (body.get("metadata") or {}).get("resourceVersion")
        if precondition is not None and precondition != self.objects[key]["metadata"]["resourceVersion"]:
            raise errors.Conflict(f"{path}: the object has been modified", status=409, reason="Conflict")
        return self._patch_status(key, body["status"])

    def _list(self, group: str, plural: str, namespace: str | None, selector: str | None) -> dict[str, Any]:
        items = [
            copy.deepcopy(obj)
            for (g, p, ns, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
            if g == group
            and p == plural
            and (namespace is None or ns == namespace)
            and _matches(obj["metadata"].get("labels") or {}, selector)
        ]
        return {"items": items, "metadata": {"resourceVersion": str(self._rv)}}

    def _create(self, group: str, plural: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        metadata = body["metadata"]
        if "generateName" in metadata and "name" not in metadata:
            metadata = {**metadata, "name": metadata["generateName"] + uuid.uuid4().hex[:5]}
        key = (group, plural, namespace, metadata["name"])
        if key in self.objects:
            raise errors.AlreadyExists(f"{metadata['name']} exists", status=409, reason="AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"] = {**metadata, "uid": str(uuid.uuid4()), "resourceVersion": self._next()}
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _replace(self, key: tuple[str, str, str | None, str], body: dict[str, Any]) -> dict[str, Any]:
        current = self.objects[key]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.Conflict(f"{key}: stale resourceVersion", status=409, reason="Conflict")
        obj = copy.deepcopy(body)
        obj["metadata"] = {
            **body["metadata"],
            "uid": current["metadata"]["uid"],
            "resourceVersion": self._next(),
        }
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _patch(
        self, path: str, key: tuple[str, str, str | None, str], patch: Any, content_type: str | None
    ) -> dict[str, Any]:
        strategic = content_type == "application/strategic-merge-patch+json"
        assert strategic or content_type == "application/merge-patch+json", content_type
        self.patches.append((path, copy.deepcopy(patch), content_type))
        current = self.objects[key]
        merged = _merged(current, patch, strategic=strategic)
        merged["metadata"] = {**merged["metadata"], "resourceVersion": self._next()}
        self.objects[key] = merged
        return copy.deepcopy(merged)

    def _patch_status(self, key: tuple[str, str, str | None, str], patch: dict[str, Any]) -> dict[str, Any]:
        current = self.objects[key]
        status = dict(current.get("status") or {})
        for field, value in patch.items():
            if value is None:
                status.pop(field, None)
            else:
                status[field] = copy.deepcopy(value)
        current["status"] = status
        current["metadata"]["resourceVersion"] = self._next()
        return copy.deepcopy(current)


def _forbids(pattern: str, method: str, path: str) -> bool:
    verb, _, rest = pattern.partition(" ")
    if rest and verb.isupper():
        return verb == method and re.fullmatch(rest, path) is not None
    return re.fullmatch(pattern, path) is not None


def _merged(current: Any, patch: Any, *, strategic: bool) -> Any:
    """``patch`` applied to ``current``: a JSON merge patch (RFC 7386), or with ``strategic`` a strategic
    merge patch as far as the tests need it (lists of objects with a ``name`` merged by name)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(copy.deepcopy(current)) if isinstance(current, Mapping) else {}
    for field, value in patch.items():
        if value is None:
            out.pop(field, None)
        elif strategic and isinstance(value, list) and isinstance(out.get(field), list) and _named(value):
            by_name = {item.get("name"): item for item in out[field] if isinstance(item, Mapping)}
            merged = [dict(item) for item in out[field]]
            for item in value:
                if item["name"] in by_name:
                    index = next(i for i, old in enumerate(merged) if old.get("name") == item["name"])
                    merged[index] = _merged(merged[index], item, strategic=True)
                else:
                    merged.append(copy.deepcopy(item))
            out[field] = merged
        else:
            out[field] = _merged(out.get(field), value, strategic=strategic)
    return out


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, Mapping) and "name" in item for item in items)


def _whole(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _metadata_only(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server answers to ``Accept: ...;as=PartialObjectMetadata``."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
