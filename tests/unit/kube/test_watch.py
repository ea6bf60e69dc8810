"""MetadataWatch (joch.kube.watch) against a scripted API server: what it delivers, and when it lists
(its LISTs go through joch.kube.listing on the event loop: ``request``).

Cases: the start LIST (paginated, metadata-only Accept) delivers every item as ADDED, then the watch
resumes from its resourceVersion; ADDED/MODIFIED/DELETED are delivered, BOOKMARKs only move the
resourceVersion; a watch that ends is resumed from the last version seen; 410 Gone (as an ERROR event or
as the HTTP answer) lists again and reports objects deleted in the gap as DELETED; errors are retried
and never end the task; an exception in the receiver is logged and the watch goes on; stop() ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from joch.kube import errors, paths
from joch.kube.listing import METADATA_LIST_ACCEPT as LIST_ACCEPT
from joch.kube.watch import WATCH_ACCEPT, Listed, MetadataWatch


def cm(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)}}


async def chunked_lines(events: list[Mapping[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        yield json.dumps(event).encode() + b"\n"


class ScriptedKube:
    """``request`` answers LISTs from ``lists``; ``stream`` plays ``watches`` (a list of event lists, or
    an exception to raise); when the script is over it fails the watch (retried) until stopped."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[Any]) -> None:
        self.lists = lists
        self.watches = watches
        self.requests: list[tuple[str, dict[str, Any], str]] = []
        self.paged: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, *, query: Mapping[str, Any], accept: str) -> Any:
        self.requests.append(("LIST", dict(query), accept))
        if "continue" in query:
            return {"items": self.paged, "metadata": {"resourceVersion": str(100 + len(self.requests))}}
        items = self.lists.pop(0)
        if len(items) > 2:  # two pages
            self.paged = items[2:]
            return {"items": items[:2], "metadata": {"continue": "next", "resourceVersion": "0"}}
        return {"items": items, "metadata": {"resourceVersion": str(100 + len(self.requests))}}

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, query: Mapping[str, Any], accept: str, read_timeout: float, max_line: int
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        self.requests.append(("WATCH", dict(query), accept))
        if not self.watches:
            raise errors.Unavailable("script over")
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        yield chunked_lines(step)


def play(
    kube: ScriptedKube,
    until: int,
    listed: Listed | None = None,
    bodies: list[Mapping[str, Any]] | None = None,
) -> tuple[list[tuple[str, str]], MetadataWatch]:
    """Run a watch (started with ``listed``) until ``until`` events were delivered; (event type, name)
    in order (and each body appended to ``bodies``)."""

    async def scenario() -> tuple[list[tuple[str, str]], MetadataWatch]:
        seen: list[tuple[str, str]] = []
        done = asyncio.Event()

        def deliver(event_type: str, body: Mapping[str, Any]) -> None:
            seen.append((event_type, body["metadata"]["name"]))
            if bodies is not None:
                bodies.append(body)
            if len(seen) >= until:
                done.set()

        watch = MetadataWatch(kube, paths.CONFIGMAPS, deliver, namespace="ns", label_selector="a=b")  # type: ignore[arg-type]
        watch.max_backoff = 0.01
        watch.start(listed)
        try:
            await asyncio.wait_for(done.wait(), timeout=5)
        finally:
            await watch.stop()
        return seen, watch

    return asyncio.run(scenario())


def test_list_then_watch_delivers_every_event_and_resumes_from_the_last_version() -> None:
    kube = ScriptedKube(
        lists=[[cm("a", 1), cm("b", 2), cm("c", 3)]],
        watches=[
            [
                {"type": "MODIFIED", "object": cm("a", 110)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "120"}}},
            ],
            [{"type": "DELETED", "object": cm("b", 130)}, {"type": "ADDED", "object": cm("d", 131)}],
        ],
    )
    seen, watch = play(kube, until=6)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b"),
                    ("ADDED", "d")]  # fmt: skip
    lists = [r for r in kube.requests if r[0] == "LIST"]
    watches = [r for r in kube.requests if r[0] == "WATCH"]
    assert [q.get("continue") for _, q, _ in lists] == [None, "next"], "paginated"
    assert all(accept == LIST_ACCEPT for _, _, accept in lists)
    assert all(accept == WATCH_ACCEPT for _, _, accept in watches)
    assert watches[0][1]["resourceVersion"] == "102", "from the LIST's version"
    assert watches[1][1]["resourceVersion"] == "120", "resumed from the bookmark"
    assert all(q["labelSelector"] == "a=b" and q["allowWatchBookmarks"] == "true" for _, q, _ in watches)
    assert watch.lists == 1


def test_410_lists_again_and_reports_deletions_in_the_gap() -> None:
    kube = ScriptedKube(
        lists=[[cm("a", 1), cm("b", 2)], [cm("b", 5), cm("c", 6)]],
        watches=[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]],
    )
    bodies: list[Mapping[str, Any]] = []
    seen, watch = play(kube, until=5, bodies=bodies)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert bodies[2] == {"metadata": {"namespace": "ns", "name": "a", "resourceVersion": "1"}}, (
        "identity only"
    )
    assert watch.lists == 2


def test_a_callers_list_is_not_repeated_and_a_later_410_diffs_against_it() -> None:
    kube = ScriptedKube(
        lists=[[cm("b", 5)]],
        watches=[
            [{"type": "MODIFIED", "object": cm("a", 60)}],
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
        ],
    )
    listed = Listed({("ns", "a"): "1", ("ns", "gone"): "2"}, version="50")
    seen, watch = play(kube, until=4, listed=listed)
    assert seen == [("MODIFIED", "a"), ("DELETED", "a"), ("DELETED", "gone"), ("ADDED", "b")]
    first, *_ = kube.requests
    assert first[0] == "WATCH", "no LIST at start: the caller's was used"
    assert first[1]["resourceVersion"] == "50"
    assert watch.lists == 1, "only the re-list after 410"


def test_410_as_the_http_answer_also_lists_again() -> None:
    kube = ScriptedKube(
        lists=[[cm("a", 1)], [cm("z", 9)]],
        watches=[errors.KubeError("too old", status=410)],
    )
    seen, watch = play(kube, until=3)
    assert seen == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "z")]
    assert watch.lists == 2


def test_errors_are_retried_without_ending_the_task() -> None:
    kube = ScriptedKube(
        lists=[[cm("a", 1)]],
        watches=[
            errors.Unavailable("connection refused"),
            ValueError("garbage"),
            [{"type": "ADDED", "object": cm("b", 3)}],
        ],
    )
    seen, _ = play(kube, until=2)
    assert seen == [("ADDED", "a"), ("ADDED", "b")]


def test_a_failing_receiver_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    kube = ScriptedKube(
        lists=[[cm("a", 1), cm("bad", 2)]], watches=[[{"type": "ADDED", "object": cm("c", 3)}]]
    )
    seen: list[str] = []

    async def scenario() -> None:
        done = asyncio.Event()

        def deliver(event_type: str, body: Mapping[str, Any]) -> None:
            name = body["metadata"]["name"]
            if name == "bad":
                raise RuntimeError("receiver bug")
            seen.append(name)
            if name == "c":
                done.set()

        watch = MetadataWatch(kube, paths.CONFIGMAPS, deliver, namespace="ns")  # type: ignore[arg-type]
        watch.start()
        try:
            await asyncio.wait_for(done.wait(), timeout=5)
        finally:
            await watch.stop()
        assert watch.lists == 1, "no re-list: the failure stayed with the receiver"

    asyncio.run(scenario())
    assert seen == ["a", "c"]
    assert "delivering ADDED ns/bad failed" in caplog.text
