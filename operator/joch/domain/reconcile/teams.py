"""Team members as RoleBindings (pure): what the teams service (joch.controllers.teams) writes.

A Team (ops.joch.dev, cluster-scoped) lists members, each with one role, and the namespaces it owns. In
every namespace of the team there is one RoleBinding per role that has members::

    joch-team-<team>-<role>     roleRef ClusterRole joch-<role>, subjects: the members (kind User, sorted)
                                labels joch.dev/team=<team>, joch.dev/role=<role>,
                                app.kubernetes.io/managed-by=joch; annotation joch.dev/team=<team>;
                                ownerReference: the Team (the garbage collector removes them with it)

The ClusterRoles themselves are joch.manifests.roles. The break-glass ClusterRole (joch-break-glass) is no
Team role: no Team binds it.

:func:`plan` compares those desired RoleBindings with the ones that exist (:class:`BindingView`, the
service's informer of RoleBindings labelled ``joch.dev/team``): what to create, update (subjects, labels,
owner), replace (a roleRef cannot change) and delete (a role without members, a namespace no longer
listed, the Team gone). Only namespaces the operator manages are looked at. A namespace that does not
exist is reported (:attr:`Plan.missing`): the Team is Failed (NamespaceNotFound) until it is created.

:func:`team_status`: phase Ready or Failed, memberCount, observedGeneration and a kstatus ``Ready``
condition (reasons RoleBindingsApplied, NamespaceNotFound, RoleBindingsFailed). Messages are
deterministic, so an unchanged Team recomputes an equal status and nothing is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.team import Team, TeamRole, TeamStatus
from joch.domain.reconcile.status import condition, merge_conditions

__all__ = [
    "MANAGED_BY",
    "OWNED_CONDITIONS",
    "RBAC_GROUP",
    "ROLE_LABEL",
    "ROLE_PREFIX",
    "TEAM_ANNOTATION",
    "TEAM_LABEL",
    "TEAM_ROLES",
    "BindingView",
    "Plan",
    "binding_name",
    "cluster_role",
    "desired_binding",
    "members_by_role",
    "plan",
    "team_label",
    "team_status",
]

TEAM_ROLES: Final[tuple[str, ...]] = typing.get_args(TeamRole)
"""The roles a Team member may have (TeamMember.role), in the model's order."""
ROLE_PREFIX: Final = "joch-"
"""ClusterRole of a role: ``joch-<role>``."""
TEAM_LABEL: Final = "joch.dev/team"
ROLE_LABEL: Final = "joch.dev/role"
TEAM_ANNOTATION: Final = "joch.dev/team"
"""The team's full name (the label value is shortened for names longer than 63 characters)."""
MANAGED_BY: Final = ("app.kubernetes.io/managed-by", "joch")
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
OWNED_CONDITIONS: Final = ("Ready", "Stalled")
"""The conditions the teams service owns on a Team (Stalled only while the Team does not parse)."""

_MAX_LABEL: Final = 63
_MAX_NAME: Final = 253


def cluster_role(role: str) -> str:
    """The ClusterRole a Team role binds: ``joch-<role>``."""
    return f"{ROLE_PREFIX}{role}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def team_label(team: str) -> str:
    """The ``joch.dev/team`` label value of a team: its name, or for a name longer than a label value
    may be, a prefix and a hash of the name."""
    if len(team) <= _MAX_LABEL:
        return team
    return f"{team[: _MAX_LABEL - 11].rstrip('.-')}-{_digest(team)}"


def binding_name(team: str, role: str) -> str:
    """The RoleBinding of one role of a team in each of its namespaces: ``joch-team-<team>-<role>``."""
    name = f"joch-team-{team}-{role}"
    if len(name) <= _MAX_NAME:
        return name
    keep = _MAX_NAME - len(f"joch-team--{_digest(team)}-{role}")
    return f"joch-team-{team[:keep].rstrip('.-')}-{_digest(team)}-{role}"


def members_by_role(team: Team) -> dict[str, tuple[str, ...]]:
    """role -> the users that have it, sorted (roles without members left out)."""
    users: dict[str, set[str]] = {}
    for member in team.spec.members or ():
        users.setdefault(member.role, set()).add(member.user)
    return {role: tuple(sorted(users[role])) for role in TEAM_ROLES if users.get(role)}


def _labels(team: str, role: str) -> dict[str, str]:
    return {TEAM_LABEL: team_label(team), ROLE_LABEL: role, MANAGED_BY[0]: MANAGED_BY[1]}


def desired_binding(team: str, uid: str, namespace: str, role: str, users: Iterable[str]) -> dict[str, Any]:
    """The RoleBinding giving ``users`` the team role ``role`` in ``namespace``."""
    metadata: dict[str, Any] = {
        "name": binding_name(team, role),
        "namespace": namespace,
        "labels": _labels(team, role),
        "annotations": {TEAM_ANNOTATION: team},
    }
    if uid:
        metadata["ownerReferences"] = [
            {"apiVersion": Team.crd.api_version, "kind": "Team", "name": team, "uid": uid}
        ]
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": metadata,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_role(role)},
        "subjects": [{"kind": "User", "apiGroup": RBAC_GROUP, "name": user} for user in users],
    }


def _subjects(body: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (str(s.get("kind") or ""), str(s.get("apiGroup") or ""), str(s.get("name") or ""))
        for s in body.get("subjects") or ()
        if isinstance(s, Mapping)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class BindingView:
    """What the service keeps of one RoleBinding labelled ``joch.dev/team``."""

    namespace: str
    name: str
    team: str
    """The team's full name (annotation ``joch.dev/team``, else the label)."""
    role_ref: str
    subjects: tuple[tuple[str, str, str], ...]
    """(kind, apiGroup, name) of each subject, in order."""
    labels: tuple[tuple[str, str], ...]
    owners: tuple[str, ...]
    """The uids of its ownerReferences."""
    uid: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> BindingView | None:
        """The view of a RoleBinding, or None when it carries no ``joch.dev/team`` label."""
        metadata = body.get("metadata") or {}
        labels = metadata.get("labels") or {}
        label = labels.get(TEAM_LABEL)
        if not label:
            return None
        team = (metadata.get("annotations") or {}).get(TEAM_ANNOTATION) or label
        return cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            team=str(team),
            role_ref=str((body.get("roleRef") or {}).get("name") or ""),
            subjects=_subjects(body),
            labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            owners=tuple(str(o.get("uid") or "") for o in metadata.get("ownerReferences") or ()),
            uid=str(metadata.get("uid") or ""),
        )

    def matches(self, desired: Mapping[str, Any]) -> bool:
        """Whether it already is ``desired`` (roleRef, subjects, the joch labels, the owner)."""
        metadata = desired["metadata"]
        labels = dict(self.labels)
        owners = {o["uid"] for o in metadata.get("ownerReferences") or ()}
        return (
            self.role_ref == desired["roleRef"]["name"]
            and self.subjects == _subjects(desired)
            and all(labels.get(k) == v for k, v in metadata["labels"].items())
            and owners <= set(self.owners)
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What to write so that the RoleBindings are what the Team says."""

    create: tuple[dict[str, Any], ...] = ()
    update: tuple[dict[str, Any], ...] = ()
    """Existing RoleBindings whose subjects, labels or owner differ (patched)."""
    replace: tuple[dict[str, Any], ...] = ()
    """Existing RoleBindings with another roleRef (immutable: deleted and created again)."""
    delete: tuple[BindingView, ...] = ()
    missing: tuple[str, ...] = ()
    """Namespaces of the team that do not exist (sorted)."""
    bindings: int = 0
    """How many RoleBindings the Team has once applied."""
    namespaces: int = 0
    """In how many namespaces (managed and existing)."""

    @property
    def writes(self) -> bool:
        return bool(self.create or self.update or self.replace or self.delete)


def plan(
    team: Team | None,
    *,
    name: str,
    uid: str,
    existing: Iterable[BindingView],
    manages: Callable[[str], bool],
    namespace_exists: Callable[[str], bool | None],
) -> Plan:
    """The writes making team ``name``'s RoleBindings what ``team`` says (None: the Team is gone, every
    RoleBinding of it goes). ``existing``: the RoleBindings labelled for this team; ``manages``: whether
    the operator acts in a namespace; ``namespace_exists``: True, False, or None when unknown (the
    operator may not watch Namespaces: the write then finds out)."""
    mine = [view for view in existing if view.team == name and manages(view.namespace)]
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    missing: list[str] = []
    namespaces = 0
    if team is not None:
        roles = members_by_role(team)
        for namespace in dict.fromkeys(team.spec.namespaces or ()):
            if not manages(namespace):
                continue
            if namespace_exists(namespace) is False:
                missing.append(namespace)
                continue
            namespaces += 1
            for role, users in roles.items():
                body = desired_binding(name, uid, namespace, role, users)
                wanted[(namespace, body["metadata"]["name"])] = body
    found = {(view.namespace, view.name): view for view in mine}
    create, update, replace = [], [], []
    for where, body in wanted.items():
        view = found.get(where)
        if view is None:
            create.append(body)
        elif view.role_ref != body["roleRef"]["name"]:
            replace.append(body)
        elif not view.matches(body):
            update.append(body)
    delete = [view for where, view in sorted(found.items()) if where not in wanted]
    return Plan(
        create=tuple(create),
        update=tuple(update),
        replace=tuple(replace),
        delete=tuple(delete),
        missing=tuple(sorted(missing)),
        bindings=len(wanted),
        namespaces=namespaces,
    )


def team_status(
    team: Team,
    *,
    planned: Plan,
    failures: Sequence[str] = (),
    current: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """The status of a Team once ``planned`` was applied; ``failures`` says what could not be written
    (``namespace/name: why``)."""
    generation = team.metadata.generation
    members = len(team.spec.members or ())
    if failures:
        phase, ready = (
            "Failed",
            condition("Ready", "False", "RoleBindingsFailed", "; ".join(failures), generation),
        )
    elif planned.missing:
        message = (
            f"namespaces not found: {', '.join(planned.missing)} (their RoleBindings are created when "
            "they exist)"
        )
        phase, ready = "Failed", condition("Ready", "False", "NamespaceNotFound", message, generation)
    else:
        message = f"{planned.bindings} RoleBindings for {members} members in {planned.namespaces} namespaces"
        phase, ready = "Ready", condition("Ready", "True", "RoleBindingsApplied", message, generation)
    desired: dict[str, Any] = {
        "phase": phase,
        "memberCount": members,
        "conditions": merge_conditions([ready], current.get("conditions"), now, owned=OWNED_CONDITIONS),
    }
    if generation is not None:
        desired["observedGeneration"] = generation
    TeamStatus.model_validate(desired)
    return desired
