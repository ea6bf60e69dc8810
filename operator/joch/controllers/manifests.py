"""What the operator believes about CompiledAgentManifest ConfigMaps, so unchanged ones cost no request.

Filled by the start-up LIST (by label), kept current by the operator's own writes (the API server's
answers) and by the ConfigMap watch (label-selected server-side). :meth:`ManifestCache.observe` says
whether a watched ConfigMap differs from the belief, in which case its Agent is reconciled again: a
ConfigMap deleted or edited by someone else is rewritten. The operator's own writes are announced with
:meth:`ManifestCache.pending` before they are sent, so their watch echo is not mistaken for a foreign
change even when it arrives before the API server's answer.
"""

from __future__ import annotations

from joch.kube.configmaps import ManifestConfigMap

__all__ = ["ManifestCache"]


class ManifestCache:
    def __init__(self) -> None:
        self._by_agent: dict[tuple[str, str], dict[str, ManifestConfigMap]] = {}
        self._by_name: dict[tuple[str, str], ManifestConfigMap] = {}
        self._pending: dict[tuple[str, str], str | None] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, namespace: str, name: str) -> ManifestConfigMap | None:
        return self._by_name.get((namespace, name))

    def of(self, namespace: str, agent: str) -> list[ManifestConfigMap]:
        """Every known ConfigMap owned by (or labelled for) Agent ``agent``, sorted by name."""
        found = self._by_agent.get((namespace, agent), {})
        return [found[name] for name in sorted(found)]

    def agents(self) -> list[tuple[str, str]]:
        """(namespace, agent name) of every Agent some known ConfigMap belongs to."""
        return sorted(key for key, found in self._by_agent.items() if found)

    def put(self, item: ManifestConfigMap) -> None:
        self.drop(item.namespace, item.name)
        self._by_name[(item.namespace, item.name)] = item
        self._by_agent.setdefault((item.namespace, item.agent), {})[item.name] = item

    def drop(self, namespace: str, name: str) -> ManifestConfigMap | None:
        old = self._by_name.pop((namespace, name), None)
        if old is not None:
            found = self._by_agent.get((old.namespace, old.agent))
            if found is not None:
                found.pop(name, None)
                if not found:
                    del self._by_agent[(old.namespace, old.agent)]
        return old

    def pending(self, namespace: str, name: str, sha256: str | None) -> None:
        """A write of ``sha256`` (None: a delete) is about to be sent."""
        self._pending[(namespace, name)] = sha256

    def settled(self, namespace: str, name: str) -> None:
        """The write announced with :meth:`pending` finished (or failed)."""
        self._pending.pop((namespace, name), None)

    def observe(self, deleted: bool, item: ManifestConfigMap) -> bool:
        """Record a watch event; True when it contradicts the belief (the Agent must be reconciled)."""
        where = (item.namespace, item.name)
        known = self._by_name.get(where)
        if known is not None and _older(item, known):
            return False  # a late event (kopf's initial listing, say) of a version already superseded
        if deleted:
            if where in self._pending and self._pending[where] is None:
                return False
            if known is None:
                return False
            self.drop(*where)
            return True
        if where in self._pending and self._pending[where] == item.sha256:
            self.put(item)
            return False
        self.put(item)
        return known is None or not known.same_content(item)


def _older(item: ManifestConfigMap, known: ManifestConfigMap) -> bool:
    """Whether ``item`` is an older version than ``known`` (resourceVersions compared as etcd revisions,
    which kube-apiserver's are; anything unparsable counts as not older)."""
    mine, theirs = item.resource_version, known.resource_version
    return bool(mine and theirs and mine.isdigit() and theirs.isdigit() and int(mine) < int(theirs))
