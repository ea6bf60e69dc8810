"""The teams service: every Team's members become RoleBindings of the joch-<role> ClusterRoles in each
of its namespaces, and go away with the member, the namespace or the Team.

Keys: ``ObjectKey("Team", None, name)``. For each one the service plans (joch.domain.reconcile.teams)
the RoleBindings the Team wants against the ones it has, writes the difference, records one Event per
reconcile that changed something (RoleBindingsApplied, or Warning RoleBindingsFailed), and writes the
Team's status (phase, memberCount, Ready).

RoleBindings are not in the shared cache: the service keeps trimmed views of those labelled
``joch.dev/team``, fed by its own informer (one LIST and one WATCH per watched namespace). A RoleBinding
edited or deleted by someone else is put back; the echo of the service's own write changes nothing
and queues nothing. A Namespace created or deleted queues the Teams that list it.

At start the service applies the ClusterRoles (joch.manifests.roles) where its credentials allow: it
reads each one and writes it only when it differs, so an install whose chart already created them (and
that grants the operator only ``get`` and ``bind`` on them) costs one GET each and never a refusal.

A namespace-scoped operator binds only in the namespaces it manages, and writes a Team's status only
when it manages every namespace of the Team (two such operators would otherwise take turns rewriting
it); a cluster-wide operator always writes it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final

from joch import metrics
from joch.api.v1alpha1.team import Team
from joch.controllers.service import Change, Host, Service
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import status as statuses
from joch.domain.reconcile import teams as plan
from joch.domain.reconcile.cache import Entry
from joch.kube import errors, events, rbac
from joch.kube.watch import Listed, ObjectWatch
from joch.manifests import roles

__all__ = ["TeamService", "team_key"]

logger = logging.getLogger("joch.controllers.teams")

RETRY_SECONDS: Final = 5.0
"""When a RoleBinding write fails, the wait before the Team is reconciled again."""
TEAMS: Final = "/apis/ops.joch.dev/v1alpha1/teams"


def team_key(name: str) -> ObjectKey:
    return ObjectKey("Team", None, name)


def _trim(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    kept = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")
    return {
        "metadata": {key: metadata[key] for key in kept if key in metadata},
        "roleRef": body.get("roleRef") or {},
        "subjects": body.get("subjects") or [],
    }


def _reason(exc: errors.KubeError) -> str:
    return str(exc).splitlines()[0][:300]


class TeamService(Service):
    name = "teams"
    watches = frozenset({"Team", "Namespace"})
    resync_kinds = ("Team",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.bindings: dict[str, dict[tuple[str, str], plan.BindingView]] = collections.defaultdict(dict)
        """team name -> (namespace, name) -> the RoleBinding as last seen."""
        self.watching = False
        """Whether the RoleBinding informer runs (False: the operator may not list RoleBindings)."""
        self.roles_applied: dict[str, str] = {}
        """ClusterRole -> created | updated | unchanged | refused (the start-up apply)."""
        self._watches: list[ObjectWatch] = []

    # --- what is dirty ----------------------------------------------------------------------------

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind == "Team"

    def observe(self, change: Change) -> None:
        if change.kind == "Team":
            self.host.queue.add(team_key(change.name))
            return
        for entry in self.host.store.entries("Team"):
            if isinstance(entry.obj, Team) and change.name in (entry.obj.spec.namespaces or ()):
                self.host.queue.add(entry.key)

    def start_keys(self) -> Iterable[Hashable]:
        for entry in self.host.store.entries("Team"):
            yield team_key(entry.name)
        # RoleBindings of Teams that are gone (deleted while the operator was down, before the
        # garbage collector got to them).
        for team in list(self.bindings):
            if self.host.store.entry("Team", None, team) is None:
                yield team_key(team)

    # --- the RoleBinding informer and the ClusterRoles --------------------------------------------

    def observe_binding(self, event_type: str, body: Mapping[str, Any]) -> None:
        view = plan.BindingView.from_body(body)
        if view is None:
            return
        where = (view.namespace, view.name)
        known = self.bindings.get(view.team, {})
        if event_type == "DELETED":
            stored = known.get(where)
            if stored is None or (view.uid and stored.uid and stored.uid != view.uid):
                return
            del known[where]
        else:
            if known.get(where) == view:
                return  # the echo of the service's own write
            self.bindings[view.team][where] = view
        self.host.queue.add(team_key(view.team))

    def _remember(self, body: Mapping[str, Any]) -> None:
        view = plan.BindingView.from_body(body)
        if view is not None:
            self.bindings[view.team][(view.namespace, view.name)] = view

    def _forget(self, view: plan.BindingView) -> None:
        self.bindings.get(view.team, {}).pop((view.namespace, view.name), None)

    async def prime(self) -> None:
        await self._apply_cluster_roles()
        kube = self.host.kube
        for namespace in self.host.watch_namespaces() or (None,):
            try:
                items, version = await rbac.list_role_bindings(
                    kube, namespace=namespace, label_selector=plan.TEAM_LABEL
                )
            except errors.Forbidden as exc:
                logger.warning("cannot list RoleBindings (%s): Team members get no RoleBindings", exc)
                continue
            versions = {}
            for item in items:
                trimmed = _trim(item)
                self._remember(trimmed)
                metadata = trimmed["metadata"]
                versions[(metadata.get("namespace") or "", metadata.get("name") or "")] = str(
                    metadata.get("resourceVersion") or ""
                )
            watch = ObjectWatch(
                kube,
                rbac.ROLEBINDINGS,
                self.observe_binding,
                namespace=namespace,
                label_selector=plan.TEAM_LABEL,
                trim=_trim,
            )
            watch.start(Listed(versions, version))
            self._watches.append(watch)
        self.watching = bool(self._watches)

    async def _apply_cluster_roles(self) -> None:
        refused = []
        for role in roles.cluster_roles():
            name = role["metadata"]["name"]
            try:
                self.roles_applied[name] = await rbac.ensure_cluster_role(self.host.kube, role)
            except (errors.Forbidden, errors.Invalid) as exc:
                self.roles_applied[name] = "refused"
                refused.append(f"{name} ({_reason(exc)})")
        applied = {k: v for k, v in self.roles_applied.items() if v != "refused"}
        if applied:
            logger.info("team ClusterRoles: %s", ", ".join(f"{k} {v}" for k, v in sorted(applied.items())))
        if refused:
            logger.info(
                "team ClusterRoles not applied by the operator (install them with the chart, or "
                "kubectl apply -f rbac/team-roles.yaml): %s",
                "; ".join(refused),
            )

    async def stop(self) -> None:
        for watch in self._watches:
            await watch.stop()
        self._watches.clear()

    # --- reconcile --------------------------------------------------------------------------------

    def _plan(self, name: str, entry: Entry | None) -> plan.Plan:
        host = self.host
        team = entry.obj if entry is not None and isinstance(entry.obj, Team) else None
        return plan.plan(
            team,
            name=name,
            uid=entry.uid if entry is not None else "",
            existing=self.bindings.get(name, {}).values(),
            manages=host.manages,
            namespace_exists=host.store.has_namespace,
        )

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ObjectKey)
        host = self.host
        name = key.name
        entry = host.store.entry("Team", None, name)
        if entry is not None and entry.obj is None:
            await self._write_status(entry, None, ())  # InvalidSpec; its RoleBindings are left as they are
            return
        if not self.watching:
            if entry is not None:
                await self._write_status(entry, None, ("the operator may not list RoleBindings",))
            return
        planned = self._plan(name, entry)
        failures = await self._apply(planned)
        if not self.bindings.get(name):
            self.bindings.pop(name, None)
        if entry is None:
            return
        if planned.writes:
            self._announce(entry, planned, failures)
        await self._write_status(entry, planned, failures)
        if failures:
            host.queue.add_after(key, RETRY_SECONDS)

    async def _apply(self, planned: plan.Plan) -> list[str]:
        kube = self.host.kube
        failures: list[str] = []

        async def attempt(where: str, action: Any) -> None:
            try:
                await action()
            except errors.KubeError as exc:
                failures.append(f"{where}: {_reason(exc)}")

        for body in planned.create:
            where = f"{body['metadata']['namespace']}/{body['metadata']['name']}"

            async def create(body: Mapping[str, Any] = body) -> None:
                try:
                    self._remember(_trim(await rbac.create_role_binding(kube, body)))
                except errors.AlreadyExists:
                    # One of that name without the team label (made by hand): take it over; a roleRef
                    # cannot change, so one bound to another role is replaced.
                    metadata = body["metadata"]
                    found = await rbac.read_role_binding(kube, metadata["namespace"], metadata["name"])
                    if (found.get("roleRef") or {}).get("name") == body["roleRef"]["name"]:
                        self._remember(_trim(await rbac.patch_role_binding(kube, body)))
                    else:
                        uid = str((found.get("metadata") or {}).get("uid") or "")
                        await rbac.delete_role_binding(kube, metadata["namespace"], metadata["name"], uid=uid)
                        self._remember(_trim(await rbac.create_role_binding(kube, body)))
                self.host.counts["rolebindings_written"] += 1

            await attempt(where, create)
        for body in planned.update:
            where = f"{body['metadata']['namespace']}/{body['metadata']['name']}"

            async def update(body: Mapping[str, Any] = body) -> None:
                self._remember(_trim(await rbac.patch_role_binding(kube, body)))
                self.host.counts["rolebindings_written"] += 1

            await attempt(where, update)
        for body in planned.replace:
            metadata = body["metadata"]
            where = f"{metadata['namespace']}/{metadata['name']}"

            async def replace(body: Mapping[str, Any] = body, metadata: Mapping[str, Any] = metadata) -> None:
                known = self.bindings.get(metadata["annotations"][plan.TEAM_ANNOTATION], {})
                old = known.get((metadata["namespace"], metadata["name"]))
                await rbac.delete_role_binding(
                    kube, metadata["namespace"], metadata["name"], uid=old.uid if old else ""
                )
                if old is not None:
                    self._forget(old)
                self._remember(_trim(await rbac.create_role_binding(kube, body)))
                self.host.counts["rolebindings_written"] += 1

            await attempt(where, replace)
        for view in planned.delete:

            async def delete(view: plan.BindingView = view) -> None:
                await rbac.delete_role_binding(kube, view.namespace, view.name, uid=view.uid)
                self._forget(view)
                self.host.counts["rolebindings_deleted"] += 1

            await attempt(f"{view.namespace}/{view.name}", delete)
        metrics.record_team_bindings(
            written=len(planned.create) + len(planned.update) + len(planned.replace),
            deleted=len(planned.delete),
            failed=len(failures),
        )
        return failures

    def _announce(self, entry: Entry, planned: plan.Plan, failures: list[str]) -> None:
        involved = events.InvolvedObject(Team.crd.api_version, "Team", None, entry.name, entry.uid)
        if failures:
            message = "; ".join(failures)
            self.host.recorder.record(involved, "Warning", "RoleBindingsFailed", message)
            return
        created = len(planned.create) + len(planned.replace)
        message = (
            f"RoleBindings: {created} created, {len(planned.update)} updated, {len(planned.delete)} deleted "
            f"({planned.bindings} in {planned.namespaces} namespaces)"
        )
        self.host.recorder.record(involved, "Normal", "RoleBindingsApplied", message)

    def _writes_status(self, entry: Entry) -> bool:
        if not self.host.watch_namespaces():  # a cluster-wide operator
            return True
        team = entry.obj
        return isinstance(team, Team) and all(self.host.manages(ns) for ns in team.spec.namespaces or ())

    async def _write_status(self, entry: Entry, planned: plan.Plan | None, failures: Iterable[str]) -> None:
        if not self._writes_status(entry):
            return
        host = self.host
        failed = tuple(failures)

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            if stored.obj is None:
                if stored.error is None:
                    return None
                return statuses.invalid_status(
                    "Team", stored.error, generation=stored.generation, current=stored.status, now=host.now()
                )
            assert isinstance(stored.obj, Team)
            return plan.team_status(
                stored.obj,
                planned=planned or plan.Plan(),
                failures=failed,
                current=stored.status,
                now=host.now(),
            )

        async with host.status_lock(entry.key):
            try:
                await host.write_status(entry.key, entry.uid, desire, owned=plan.OWNED_CONDITIONS)
            except errors.Forbidden as exc:
                logger.warning("Team %s: status write refused: %s", entry.name, exc)

    def drifted(self, entry: Entry) -> Hashable | None:
        """The resync's check: RoleBindings to write, or a status that is not what it should be."""
        if entry.obj is None or not self.watching:
            return None
        planned = self._plan(entry.name, entry)
        if planned.writes:
            return entry.key
        if not self._writes_status(entry):
            return None
        assert isinstance(entry.obj, Team)
        desired = plan.team_status(entry.obj, planned=planned, current=entry.status, now=self.host.now())
        return entry.key if statuses.status_patch(desired, entry.status) is not None else None
