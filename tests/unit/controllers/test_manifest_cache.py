"""ManifestCache.observe: which watched ConfigMap events contradict what the operator wrote.

Cases: the echo of the operator's own write (announced with pending) is not a contradiction, before or
after the API server's answer; an edit by someone else is; a late event of a superseded version (kopf's
initial listing arriving after the operator rewrote the ConfigMap) is not, for updates and deletions;
a deletion by someone else is.
"""

from __future__ import annotations

from joch.controllers.manifests import ManifestCache
from joch.kube.configmaps import ManifestConfigMap

NS = "team-a"


def item(sha: str, rv: str, name: str = "triage-g1") -> ManifestConfigMap:
    return ManifestConfigMap(
        namespace=NS,
        name=name,
        agent="triage",
        owner_uid="uid-1",
        generation=1,
        sha256=sha,
        resource_version=rv,
    )


def test_the_echo_of_an_own_write_is_not_a_contradiction() -> None:
    cache = ManifestCache()
    cache.put(item("old", "10"))
    cache.pending(NS, "triage-g1", "new")
    assert cache.observe(False, item("new", "20")) is False, "echo before the answer"
    cache.settled(NS, "triage-g1")
    cache.put(item("new", "20"))
    assert cache.observe(False, item("new", "20")) is False, "echo after the answer"


def test_an_edit_by_someone_else_is_a_contradiction() -> None:
    cache = ManifestCache()
    cache.put(item("mine", "10"))
    assert cache.observe(False, item("edited", "11")) is True
    assert cache.get(NS, "triage-g1") == item("edited", "11")


def test_a_late_event_of_a_superseded_version_is_ignored() -> None:
    cache = ManifestCache()
    cache.put(item("new", "500"))  # the operator's rewrite, answered by the API server
    assert cache.observe(False, item("old", "120")) is False, "kopf's initial listing, arriving late"
    assert cache.get(NS, "triage-g1") == item("new", "500"), "the belief keeps the newer version"
    assert cache.observe(True, item("old", "120")) is False, "a late deletion of an older version"
    assert cache.get(NS, "triage-g1") is not None


def test_a_deletion_by_someone_else_is_a_contradiction() -> None:
    cache = ManifestCache()
    cache.put(item("mine", "10"))
    assert cache.observe(True, item("mine", "10")) is True
    assert cache.get(NS, "triage-g1") is None
