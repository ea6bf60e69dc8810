"""What the operator may read, found out once at start-up, so a restricted install runs instead of failing.

With the chart's cluster scope every probe passes. With namespace scope (Roles only) the operator cannot
list cluster-scoped objects (FrameworkAdapter, Environment, Team), Namespaces or CRDs: it then does not
watch them (kopf would retry forbidden watches forever), treats them as absent (an Agent referencing a
FrameworkAdapter waits with ResolvedRefs False, MissingReference; no Namespace label decides an
environment, so the label on the Agent or the default applies), and turns kopf's CRD and namespace
scanning off. A shared namespace the operator may not read is not watched. Permissions granted later
take effect at the next start.

    access = probe(kube, namespaces=("team-a", "joch-system"))   # one LIST (limit 1) per probe
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from joch.domain.reconcile.cache import WATCHED_KINDS
from joch.kube import client, errors, listing, paths

__all__ = ["Access", "probe"]

logger = logging.getLogger("joch.controller")


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    kinds: frozenset[str]
    """The joch kinds (of WATCHED_KINDS) the operator may list and watch."""
    namespace_labels: bool = True
    """Whether core Namespaces may be listed and watched (their label of decision D5, docs/decisions.md)."""
    crds: bool = True
    """Whether CRDs may be listed and watched (kopf notices CRDs installed later)."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; () means every namespace (cluster-wide)."""

    @classmethod
    def everything(cls, namespaces: Sequence[str] = ()) -> Access:
        return cls(frozenset(WATCHED_KINDS), namespaces=tuple(namespaces))


def probe(kube: client.Kube, *, namespaces: Sequence[str] = ()) -> Access:
    """Probe with one LIST (limit 1) per resource type and namespace; synchronous (before kopf runs).

    ``namespaces`` are the namespaces the operator would watch (() = all). A namespace where the
    operator may not even list Agents is dropped; a kind it may not list (in any kept namespace, or
    cluster-wide) is not watched. Raises :class:`joch.kube.errors.Forbidden` when no namespace is left.
    """
    kept = tuple(ns for ns in namespaces if listing.can_list(kube, _AGENTS, namespace=ns))
    for ns in namespaces:
        if ns not in kept:
            logger.warning("no permission to read namespace %s: not watched", ns)
    if namespaces and not kept:
        raise errors.Forbidden(
            f"no permission to list Agents in any of the namespaces {', '.join(namespaces)}"
        )
    kinds = set()
    for kind, model in WATCHED_KINDS.items():
        resource = paths.ResourceType.of(model)
        where: Sequence[str | None] = kept if resource.namespaced and namespaces else (None,)
        if all(listing.can_list(kube, resource, namespace=ns) for ns in where):
            kinds.add(kind)
        else:
            logger.warning(
                "no permission to list %s %s: not watched; references to them stay missing",
                resource.plural,
                "in " + ", ".join(str(ns) for ns in where)
                if namespaces and resource.namespaced
                else "cluster-wide",
            )
    namespace_labels = listing.can_list(kube, paths.NAMESPACES)
    if not namespace_labels:
        logger.warning("no permission to list namespaces: namespace labels do not place Agents (D5)")
    crds = listing.can_list(kube, paths.CRDS)
    return Access(frozenset(kinds), namespace_labels=namespace_labels, crds=crds, namespaces=kept)


_AGENTS = paths.ResourceType.of(WATCHED_KINDS["Agent"])
