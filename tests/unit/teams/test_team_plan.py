"""The Team plan (joch.domain.reconcile.teams): Team members -> RoleBindings, and the Team's status.

Cases: one RoleBinding per role with members in every managed namespace, subjects sorted Users; a member
removed updates the subjects or deletes the binding of a role left empty; a namespace dropped from
spec.namespaces and a Team gone delete their bindings; another roleRef is a replace; a binding already
right is no write; namespaces the operator does not manage are ignored both ways; a namespace known not to
exist is reported missing (NamespaceNotFound), an unknown one planned; long team names; the owner; the
status (Ready message, failures, observedGeneration, a recomputed status equal to the previous one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from joch.api.v1alpha1.team import Team
from joch.domain.reconcile import teams
from joch.domain.reconcile.status import status_patch

RBAC = "rbac.authorization.k8s.io"
UID = "0b6c6f5e-team-uid"
NOW = "2026-11-27T12:00:00Z"
LATER = "2026-11-27T13:00:00Z"


def team_doc(
    name: str = "payments",
    *,
    members: Iterable[tuple[str, str]] = (("bob", "operator"), ("alice", "admin"), ("carol", "operator")),
    namespaces: Iterable[str] = ("alpha", "beta"),
    generation: int = 3,
) -> Team:
    return Team.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": name, "generation": generation},
            "spec": {
                "members": [{"user": user, "role": role} for user, role in members],
                "namespaces": list(namespaces),
            },
        }
    )


def everywhere(namespace: str) -> bool:
    return True


def exists(namespace: str) -> bool | None:
    return True


def planned(
    team: Team | None,
    existing: Iterable[teams.BindingView] = (),
    *,
    name: str = "payments",
    manages: Callable[[str], bool] = everywhere,
    namespace_exists: Callable[[str], bool | None] = exists,
) -> teams.Plan:
    return teams.plan(
        team, name=name, uid=UID, existing=existing, manages=manages, namespace_exists=namespace_exists
    )


def stored(body: Mapping[str, Any], uid: str = "rb-uid") -> teams.BindingView:
    """The view of ``body`` as the API server would hand it back (with a uid)."""
    metadata = {**body["metadata"], "uid": uid, "resourceVersion": "7"}
    view = teams.BindingView.from_body({**body, "metadata": metadata})
    assert view is not None
    return view


def applied(plan: teams.Plan) -> list[teams.BindingView]:
    """Every binding ``plan`` leads to, as stored views (what exists once it is applied)."""
    return [stored(body) for body in (*plan.create, *plan.update, *plan.replace)]


def where(bodies: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return sorted((b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies)


def users(body: Mapping[str, Any]) -> list[str]:
    return [s["name"] for s in body["subjects"]]


# --- members_by_role, names, desired_binding ----------------------------------------------------


def test_members_by_role_sorts_users_and_leaves_out_roles_without_members() -> None:
    team = team_doc(members=[("zoe", "viewer"), ("bob", "operator"), ("amy", "viewer"), ("carl", "operator")])
    assert teams.members_by_role(team) == {"operator": ("bob", "carl"), "viewer": ("amy", "zoe")}
    assert teams.members_by_role(team_doc(members=[])) == {}


def test_binding_name_and_label_of_a_short_team() -> None:
    assert teams.binding_name("payments", "operator") == "joch-team-payments-operator"
    assert teams.team_label("payments") == "payments"
    assert teams.cluster_role("viewer") == "joch-viewer"


def test_the_desired_binding() -> None:
    body = teams.desired_binding("payments", UID, "alpha", "operator", ["bob", "carol"])
    assert body["apiVersion"] == f"{RBAC}/v1"
    assert body["kind"] == "RoleBinding"
    metadata = body["metadata"]
    assert (metadata["namespace"], metadata["name"]) == ("alpha", "joch-team-payments-operator")
    assert metadata["labels"] == {
        "joch.dev/team": "payments",
        "joch.dev/role": "operator",
        "app.kubernetes.io/managed-by": "joch",
    }
    assert metadata["annotations"] == {"joch.dev/team": "payments"}
    assert body["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "joch-operator"}
    assert body["subjects"] == [
        {"kind": "User", "apiGroup": RBAC, "name": "bob"},
        {"kind": "User", "apiGroup": RBAC, "name": "carol"},
    ]


def test_the_owner_reference_carries_the_team_uid() -> None:
    body = teams.desired_binding("payments", UID, "alpha", "admin", ["alice"])
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner["uid"] == UID
    assert (owner["apiVersion"], owner["kind"], owner["name"]) == (
        "ops.joch.dev/v1alpha1",
        "Team",
        "payments",
    )
    for created in planned(team_doc()).create:
        assert [o["uid"] for o in created["metadata"]["ownerReferences"]] == [UID]


def test_binding_view_from_body_and_matches() -> None:
    body = teams.desired_binding("payments", UID, "alpha", "operator", ["bob", "carol"])
    view = stored(body, uid="rb-1")
    assert view.namespace == "alpha"
    assert view.name == "joch-team-payments-operator"
    assert view.team == "payments"
    assert view.role_ref == "joch-operator"
    assert view.subjects == (("User", RBAC, "bob"), ("User", RBAC, "carol"))
    assert view.owners == (UID,)
    assert view.uid == "rb-1"
    assert view.matches(body)
    assert not view.matches(teams.desired_binding("payments", UID, "alpha", "operator", ["bob"]))
    assert not view.matches(
        teams.desired_binding("payments", "other-uid", "alpha", "operator", ["bob", "carol"])
    )
    unlabelled = {**body, "metadata": {"name": "x", "namespace": "alpha"}}
    assert teams.BindingView.from_body(unlabelled) is None


# --- plan ---------------------------------------------------------------------------------------


def test_one_binding_per_role_with_members_in_every_namespace() -> None:
    plan = planned(team_doc())
    assert where(plan.create) == [
        ("alpha", "joch-team-payments-admin"),
        ("alpha", "joch-team-payments-operator"),
        ("beta", "joch-team-payments-admin"),
        ("beta", "joch-team-payments-operator"),
    ]
    assert (plan.update, plan.replace, plan.delete, plan.missing) == ((), (), (), ())
    assert (plan.bindings, plan.namespaces) == (4, 2)
    assert plan.writes
    by_name = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in plan.create}
    operator = by_name[("beta", "joch-team-payments-operator")]
    assert users(operator) == ["bob", "carol"]
    assert {s["kind"] for s in operator["subjects"]} == {"User"}
    assert operator["roleRef"]["name"] == "joch-operator"
    assert users(by_name[("alpha", "joch-team-payments-admin")]) == ["alice"]


def test_subjects_are_sorted_whatever_the_member_order() -> None:
    team = team_doc(members=[("zed", "viewer"), ("mia", "viewer"), ("abe", "viewer")], namespaces=["alpha"])
    (body,) = planned(team).create
    assert users(body) == ["abe", "mia", "zed"]


def test_bindings_already_right_are_no_writes() -> None:
    first = planned(team_doc())
    again = planned(team_doc(), applied(first))
    assert again == teams.Plan(bindings=4, namespaces=2)
    assert not again.writes


def test_a_member_removed_updates_the_subjects_of_their_role() -> None:
    existing = applied(planned(team_doc()))
    smaller = team_doc(members=[("bob", "operator"), ("alice", "admin")])
    plan = planned(smaller, existing)
    assert where(plan.update) == [
        ("alpha", "joch-team-payments-operator"),
        ("beta", "joch-team-payments-operator"),
    ]
    assert all(users(body) == ["bob"] for body in plan.update)
    assert (plan.create, plan.replace, plan.delete) == ((), (), ())
    assert plan.bindings == 4


def test_the_last_member_of_a_role_removed_deletes_its_bindings() -> None:
    existing = applied(planned(team_doc()))
    plan = planned(team_doc(members=[("bob", "operator"), ("carol", "operator")]), existing)
    assert [(v.namespace, v.name) for v in plan.delete] == [
        ("alpha", "joch-team-payments-admin"),
        ("beta", "joch-team-payments-admin"),
    ]
    assert (plan.create, plan.update, plan.replace) == ((), (), ())
    assert plan.bindings == 2


def test_a_member_changing_role_moves_between_bindings() -> None:
    existing = applied(planned(team_doc(namespaces=["alpha"])))
    plan = planned(
        team_doc(members=[("bob", "operator"), ("alice", "viewer")], namespaces=["alpha"]), existing
    )
    assert where(plan.create) == [("alpha", "joch-team-payments-viewer")]
    assert [users(b) for b in plan.update] == [["bob"]]
    assert [v.name for v in plan.delete] == ["joch-team-payments-admin"]


def test_a_namespace_removed_from_the_team_loses_its_bindings() -> None:
    existing = applied(planned(team_doc()))
    plan = planned(team_doc(namespaces=["alpha"]), existing)
    assert [(v.namespace, v.name) for v in plan.delete] == [
        ("beta", "joch-team-payments-admin"),
        ("beta", "joch-team-payments-operator"),
    ]
    assert (plan.create, plan.update, plan.replace) == ((), (), ())
    assert (plan.bindings, plan.namespaces) == (2, 1)


def test_a_team_gone_deletes_every_binding() -> None:
    existing = applied(planned(team_doc()))
    plan = planned(None, existing)
    assert sorted((v.namespace, v.name) for v in plan.delete) == sorted(
        (v.namespace, v.name) for v in existing
    )
    assert len(plan.delete) == 4
    assert (plan.create, plan.update, plan.replace, plan.missing) == ((), (), (), ())
    assert (plan.bindings, plan.namespaces) == (0, 0)


def test_bindings_of_other_teams_are_left_alone() -> None:
    others = applied(planned(team_doc("billing"), name="billing"))
    assert others
    assert all(v.team == "billing" for v in others)
    plan = planned(None, others)
    assert not plan.writes
    plan = planned(team_doc(), others)
    assert plan.delete == ()
    assert len(plan.create) == 4


def test_another_role_ref_is_replaced() -> None:
    body = teams.desired_binding("payments", UID, "alpha", "admin", ["alice"])
    wrong = {**body, "roleRef": {**body["roleRef"], "name": "joch-viewer"}}
    team = team_doc(members=[("alice", "admin")], namespaces=["alpha"])
    plan = planned(team, [stored(wrong)])
    assert [b["roleRef"]["name"] for b in plan.replace] == ["joch-admin"]
    assert where(plan.replace) == [("alpha", "joch-team-payments-admin")]
    assert (plan.create, plan.update, plan.delete) == ((), (), ())
    assert plan.writes


def test_a_binding_that_lost_its_owner_or_a_label_is_updated() -> None:
    body = teams.desired_binding("payments", UID, "alpha", "admin", ["alice"])
    orphan = {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "ownerReferences"}}
    relabelled = {**body, "metadata": {**body["metadata"], "labels": {"joch.dev/team": "payments"}}}
    team = team_doc(members=[("alice", "admin")], namespaces=["alpha"])
    for drifted in (orphan, relabelled):
        plan = planned(team, [stored(drifted)])
        assert [b["metadata"]["name"] for b in plan.update] == ["joch-team-payments-admin"]
        assert (plan.create, plan.replace, plan.delete) == ((), (), ())


def test_namespaces_the_operator_does_not_manage_are_ignored_both_ways() -> None:
    def only_alpha(namespace: str) -> bool:
        return namespace == "alpha"

    everything = applied(planned(team_doc(namespaces=["alpha", "beta", "gamma"])))
    plan = planned(team_doc(namespaces=["alpha"]), everything, manages=only_alpha)
    assert plan.delete == ()  # beta and gamma are someone else's
    assert not plan.writes
    assert (plan.bindings, plan.namespaces) == (2, 1)

    plan = planned(team_doc(namespaces=["alpha", "beta"]), manages=only_alpha)
    assert {b["metadata"]["namespace"] for b in plan.create} == {"alpha"}

    plan = planned(None, everything, manages=only_alpha)
    assert {v.namespace for v in plan.delete} == {"alpha"}


def test_a_namespace_that_does_not_exist_is_missing() -> None:
    def no_beta(namespace: str) -> bool | None:
        return namespace != "beta"

    plan = planned(team_doc(namespaces=["gamma", "alpha", "beta"]), namespace_exists=lambda ns: ns == "alpha")
    assert plan.missing == ("beta", "gamma")
    assert {b["metadata"]["namespace"] for b in plan.create} == {"alpha"}
    assert (plan.bindings, plan.namespaces) == (2, 1)

    plan = planned(team_doc(), namespace_exists=no_beta)
    assert plan.missing == ("beta",)
    status = teams.team_status(team_doc(), planned=plan, current={}, now=NOW)
    assert status["phase"] == "Failed"
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "NamespaceNotFound")
    assert "beta" in ready["message"]


def test_a_namespace_not_known_either_way_is_planned() -> None:
    plan = planned(team_doc(), namespace_exists=lambda ns: None)
    assert plan.missing == ()
    assert len(plan.create) == 4
    assert plan.namespaces == 2


def test_a_namespace_listed_twice_counts_once() -> None:
    plan = planned(team_doc(namespaces=["alpha", "alpha"]))
    assert where(plan.create) == [
        ("alpha", "joch-team-payments-admin"),
        ("alpha", "joch-team-payments-operator"),
    ]
    assert plan.namespaces == 1


# --- long names ---------------------------------------------------------------------------------


LONG = "a" * 120 + "-platform-payments"
LONG_TOO = "a" * 120 + "-platform-billing"
LONGEST = "b" * 253


@pytest.mark.parametrize("name", [LONG, LONGEST, "c" * 64])
def test_a_long_team_name_fits_label_and_name_limits(name: str) -> None:
    label = teams.team_label(name)
    assert len(label) <= 63
    assert label[0].isalnum()
    assert label[-1].isalnum()
    for role in teams.TEAM_ROLES:
        assert len(teams.binding_name(name, role)) <= 253
    (body,) = planned(team_doc(name, members=[("alice", "admin")], namespaces=["alpha"]), name=name).create
    assert body["metadata"]["labels"]["joch.dev/team"] == label
    assert body["metadata"]["annotations"]["joch.dev/team"] == name
    view = stored(body)
    assert view.team == name  # the annotation keeps the full name


def test_two_long_names_sharing_a_prefix_stay_distinct() -> None:
    assert LONG[:63] == LONG_TOO[:63]
    assert teams.team_label(LONG) != teams.team_label(LONG_TOO)
    assert teams.binding_name(LONG, "admin") != teams.binding_name(LONG_TOO, "admin")
    long_a, long_b = "x" * 250 + "-one", "x" * 250 + "-two"
    assert teams.binding_name(long_a, "viewer") != teams.binding_name(long_b, "viewer")
    assert len(teams.binding_name(long_a, "viewer")) <= 253


def test_a_long_named_team_recognises_its_own_bindings() -> None:
    team = team_doc(LONG)
    first = planned(team, name=LONG)
    again = planned(team, applied(first), name=LONG)
    assert not again.writes
    assert planned(team_doc(LONG_TOO), applied(first), name=LONG_TOO).delete == ()


# --- team_status --------------------------------------------------------------------------------


def test_ready_status_counts_bindings_members_and_namespaces() -> None:
    team = team_doc()
    status = teams.team_status(team, planned=planned(team), current={}, now=NOW)
    assert status["phase"] == "Ready"
    assert status["memberCount"] == 3
    assert status["observedGeneration"] == 3
    (ready,) = status["conditions"]
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "RoleBindingsApplied",
        "message": "4 RoleBindings for 3 members in 2 namespaces",
        "observedGeneration": 3,
        "lastTransitionTime": NOW,
    }


def test_failures_make_the_team_failed_naming_them() -> None:
    team = team_doc()
    failure = "alpha/joch-team-payments-admin: rolebindings is forbidden"
    status = teams.team_status(team, planned=planned(team), failures=[failure], current={}, now=NOW)
    assert status["phase"] == "Failed"
    assert status["memberCount"] == 3
    assert status["observedGeneration"] == 3
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "RoleBindingsFailed")
    assert failure in ready["message"]


def test_failures_take_precedence_over_a_missing_namespace() -> None:
    team = team_doc()
    plan = planned(team, namespace_exists=lambda ns: ns == "alpha")
    status = teams.team_status(team, planned=plan, failures=["alpha/x: boom"], current={}, now=NOW)
    assert status["conditions"][0]["reason"] == "RoleBindingsFailed"


def test_a_recomputed_status_is_equal_and_writes_nothing() -> None:
    team = team_doc()
    plan = planned(team)
    first = teams.team_status(team, planned=plan, current={}, now=NOW)
    again = teams.team_status(team, planned=planned(team, applied(plan)), current=first, now=LATER)
    assert again == first
    assert status_patch(again, first) is None

    missing = planned(team, namespace_exists=lambda ns: ns == "alpha")
    failed = teams.team_status(team, planned=missing, current={}, now=NOW)
    assert teams.team_status(team, planned=missing, current=failed, now=LATER) == failed


def test_a_status_that_changes_keeps_other_conditions_and_moves_the_transition_time() -> None:
    team = team_doc()
    other = {"type": "Synced", "status": "True", "reason": "X", "message": "", "lastTransitionTime": NOW}
    ready = teams.team_status(team, planned=planned(team), current={"conditions": [other]}, now=NOW)
    assert [c["type"] for c in ready["conditions"]] == ["Ready", "Synced"]
    failed = teams.team_status(team, planned=planned(team), failures=["a/b: no"], current=ready, now=LATER)
    assert failed["conditions"][0]["lastTransitionTime"] == LATER
    assert failed["conditions"][1] == other


def test_no_observed_generation_without_a_generation() -> None:
    team = Team.model_validate(
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": "payments"},
            "spec": {"members": [{"user": "alice", "role": "viewer"}], "namespaces": ["alpha"]},
        }
    )
    status = teams.team_status(team, planned=planned(team), current={}, now=NOW)
    assert "observedGeneration" not in status
    assert status["phase"] == "Ready"
