"""The teams service (joch.controllers.teams) over the in-memory API server.

Cases: a Team with two namespaces and members of two roles gets four RoleBindings, one Event
RoleBindingsApplied and a Ready status, and reconciling it again sends nothing; a member removed is one
write per namespace (PATCH of the subjects, or DELETE of a role left empty); the echo of its own write
queues nothing; a RoleBinding deleted or edited by someone else is put back; a refused create makes the
Team Failed (RoleBindingsFailed naming the binding), records a Warning and retries after a delay; a
missing Namespace is NamespaceNotFound until it is created; a deleted Team's RoleBindings are deleted;
a namespace-scoped operator binds only where it manages; the start-up ClusterRole apply creates what is
missing, writes nothing when they are right, patches one that differs and survives a 403.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Hashable, Iterable
from typing import Any

import pytest

from joch.controllers.reconciler import Controller, ControllerConfig
from joch.controllers.teams import RETRY_SECONDS, TeamService, team_key
from joch.domain.reconcile import teams as plan
from joch.kube import events
from joch.manifests import roles
from tests.fake_kube import FakeKube
from tests.unit.controllers.support import NOW, obj, run, settle

RBAC = "rbac.authorization.k8s.io"
BINDINGS = f"/apis/{RBAC}/v1/namespaces/{{}}/rolebindings"
CLUSTERROLES = f"/apis/{RBAC}/v1/clusterroles"
TEAM = "payments"
MEMBERS = (("bob", "operator"), ("alice", "admin"), ("carol", "operator"))


def namespace_doc(name: str) -> dict[str, Any]:
    """A Namespace as the API server stores it (it labels every one with its name)."""
    labels = {"kubernetes.io/metadata.name": name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def team_doc(
    name: str = TEAM,
    *,
    members: Iterable[tuple[str, str]] = MEMBERS,
    namespaces: Iterable[str] = ("alpha", "beta"),
) -> dict[str, Any]:
    return {
        "apiVersion": "ops.joch.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": name},
        "spec": {
            "members": [{"user": user, "role": role} for user, role in members],
            "namespaces": list(namespaces),
        },
    }


def world(*teams: dict[str, Any], namespaces: Iterable[str] = ("alpha", "beta")) -> FakeKube:
    kube = FakeKube()
    for name in namespaces:
        kube.put("", "namespaces", namespace_doc(name))
    for team in teams or (team_doc(),):
        kube.put("ops.joch.dev", "teams", team)
    return kube


def controller_for(kube: FakeKube, **config: Any) -> Controller:
    return Controller(
        kube,  # type: ignore[arg-type]
        ControllerConfig(status_delay=0, **config),
        clock=lambda: NOW,
        services=(TeamService,),
    )


async def started(kube: FakeKube, **config: Any) -> Controller:
    controller = controller_for(kube, **config)
    await controller.start()
    await settle(controller)
    return controller


def service(controller: Controller) -> TeamService:
    (found,) = controller.services
    assert isinstance(found, TeamService)
    return found


def binding_requests(kube: FakeKube, since: int = 0) -> list[tuple[str, str]]:
    """The RoleBinding requests (method, path) from request number ``since`` on."""
    return [(m, p) for m, p in kube.requests[since:] if "/rolebindings" in p]


def binding_writes(kube: FakeKube, since: int = 0) -> list[tuple[str, str, Any]]:
    return [(m, p, b) for m, p, b in kube.landed[since:] if "/rolebindings" in p]


def bindings(kube: FakeKube) -> dict[tuple[str, str], dict[str, Any]]:
    return {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in kube.of("rolebindings")}


def users(body: dict[str, Any]) -> list[str]:
    return [s["name"] for s in body["subjects"]]


def team_status(kube: FakeKube, name: str = TEAM) -> dict[str, Any]:
    status: dict[str, Any] = obj(kube, "teams", name, None)["status"]
    return status


def ready(kube: FakeKube, name: str = TEAM) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in team_status(kube, name)["conditions"] if c["type"] == "Ready"]
    (condition,) = found
    return condition


def status_writes(kube: FakeKube, name: str = TEAM) -> list[dict[str, Any]]:
    path = f"/apis/ops.joch.dev/v1alpha1/teams/{name}/status"
    return [body["status"] for method, p, body in kube.landed if method == "PATCH" and p == path]


def spy_events(controller: Controller) -> list[tuple[str, str, str, str]]:
    """Every Event the service asks the recorder for: (object name, type, reason, message)."""
    said: list[tuple[str, str, str, str]] = []
    record = controller.recorder.record

    def spy(involved: events.InvolvedObject, type_: Any, reason: str, message: str) -> bool:
        said.append((involved.name, type_, reason, message))
        return record(involved, type_, reason, message)

    controller.recorder.record = spy  # type: ignore[method-assign]
    return said


def spy_queue(controller: Controller) -> tuple[list[Hashable], list[tuple[Hashable, float]]]:
    """The keys added to the work queue, and those added with a delay."""
    added: list[Hashable] = []
    delayed: list[tuple[Hashable, float]] = []
    add, add_after = controller.queue.add, controller.queue.add_after

    def spy_add(key: Hashable) -> None:
        added.append(key)
        add(key)

    def spy_add_after(key: Hashable, delay: float) -> None:
        delayed.append((key, delay))
        add_after(key, delay)

    controller.queue.add = spy_add  # type: ignore[method-assign]
    controller.queue.add_after = spy_add_after  # type: ignore[method-assign]
    return added, delayed


def change_team(controller: Controller, kube: FakeKube, **spec: Any) -> None:
    """Change the Team's spec as a client would and deliver the watch event."""
    body = obj(kube, "teams", TEAM, None)
    body["spec"].update(spec)
    body["metadata"]["generation"] += 1
    body["metadata"]["resourceVersion"] = kube._next()
    controller.observe("Team", "MODIFIED", copy.deepcopy(body))


async def reconcile_again(controller: Controller, name: str = TEAM) -> None:
    controller.queue.add(team_key(name))
    await settle(controller)


def members(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"user": user, "role": role} for user, role in pairs]


# --- a Team's RoleBindings ----------------------------------------------------------------------


def test_a_team_gets_one_role_binding_per_role_and_namespace() -> None:
    async def scenario() -> None:
        kube = world()
        controller = controller_for(kube)
        said = spy_events(controller)
        await controller.start()
        await settle(controller)

        posts = [(m, p) for m, p, _ in binding_writes(kube)]
        assert sorted(posts) == [
            ("POST", BINDINGS.format("alpha")),
            ("POST", BINDINGS.format("alpha")),
            ("POST", BINDINGS.format("beta")),
            ("POST", BINDINGS.format("beta")),
        ]
        stored = bindings(kube)
        assert sorted(stored) == [
            ("alpha", "joch-team-payments-admin"),
            ("alpha", "joch-team-payments-operator"),
            ("beta", "joch-team-payments-admin"),
            ("beta", "joch-team-payments-operator"),
        ]
        team_uid = obj(kube, "teams", TEAM, None)["metadata"]["uid"]
        for (_, name), body in stored.items():
            role = name.rsplit("-", 1)[1]
            assert body["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"joch-{role}"}
            assert users(body) == (["alice"] if role == "admin" else ["bob", "carol"])
            assert body["metadata"]["labels"]["joch.dev/team"] == TEAM
            assert [o["uid"] for o in body["metadata"]["ownerReferences"]] == [team_uid]

        assert [(name, type_, reason) for name, type_, reason, _ in said] == [
            (TEAM, "Normal", "RoleBindingsApplied")
        ]
        assert "4 created" in said[0][3]
        await controller.recorder.flush()
        recorded = [e for e in kube.of("events") if e["involvedObject"]["name"] == TEAM]
        assert [(e["type"], e["reason"]) for e in recorded] == [("Normal", "RoleBindingsApplied")]

        (written,) = status_writes(kube)
        assert written["phase"] == "Ready"
        assert written["memberCount"] == 3
        status = team_status(kube)
        assert (status["phase"], status["memberCount"], status["observedGeneration"]) == ("Ready", 3, 1)
        condition = ready(kube)
        assert (condition["status"], condition["reason"]) == ("True", "RoleBindingsApplied")
        assert condition["message"] == "4 RoleBindings for 3 members in 2 namespaces"
        await controller.stop()

    run(scenario)


def test_reconciling_again_sends_nothing() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        said = spy_events(controller)
        before = len(kube.requests)
        await reconcile_again(controller)
        await reconcile_again(controller)
        assert kube.requests[before:] == []
        assert await controller.resync() == []
        assert said == []
        assert len(status_writes(kube)) == 1
        await controller.stop()

    run(scenario)


def test_a_member_removed_patches_the_subjects_of_their_role() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        said = spy_events(controller)
        before = len(kube.landed)
        change_team(controller, kube, members=members(("bob", "operator"), ("alice", "admin")))
        await settle(controller)

        writes = binding_writes(kube, before)
        assert sorted((m, p) for m, p, _ in writes) == [
            ("PATCH", BINDINGS.format("alpha") + "/joch-team-payments-operator"),
            ("PATCH", BINDINGS.format("beta") + "/joch-team-payments-operator"),
        ]
        assert all([s["name"] for s in body["subjects"]] == ["bob"] for _, _, body in writes)
        assert users(bindings(kube)[("alpha", "joch-team-payments-operator")]) == ["bob"]
        assert users(bindings(kube)[("alpha", "joch-team-payments-admin")]) == ["alice"]
        assert team_status(kube)["memberCount"] == 2
        assert team_status(kube)["observedGeneration"] == 2
        assert [reason for _, _, reason, _ in said] == ["RoleBindingsApplied"]
        await controller.stop()

    run(scenario)


def test_the_last_member_of_a_role_removed_deletes_its_bindings() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        before = len(kube.landed)
        change_team(controller, kube, members=members(("bob", "operator"), ("carol", "operator")))
        await settle(controller)

        assert sorted((m, p) for m, p, _ in binding_writes(kube, before)) == [
            ("DELETE", BINDINGS.format("alpha") + "/joch-team-payments-admin"),
            ("DELETE", BINDINGS.format("beta") + "/joch-team-payments-admin"),
        ]
        assert sorted(bindings(kube)) == [
            ("alpha", "joch-team-payments-operator"),
            ("beta", "joch-team-payments-operator"),
        ]
        assert ready(kube)["message"] == "2 RoleBindings for 2 members in 2 namespaces"
        await controller.stop()

    run(scenario)


def test_a_namespace_dropped_from_the_team_loses_its_bindings() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        before = len(kube.landed)
        change_team(controller, kube, namespaces=["alpha"])
        await settle(controller)
        assert sorted((m, p) for m, p, _ in binding_writes(kube, before)) == [
            ("DELETE", BINDINGS.format("beta") + "/joch-team-payments-admin"),
            ("DELETE", BINDINGS.format("beta") + "/joch-team-payments-operator"),
        ]
        assert {ns for ns, _ in bindings(kube)} == {"alpha"}
        await controller.stop()

    run(scenario)


# --- the RoleBinding informer -------------------------------------------------------------------


def test_the_echo_of_its_own_writes_queues_nothing() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        teams = service(controller)
        added, delayed = spy_queue(controller)
        before = len(kube.requests)
        for body in kube.of("rolebindings"):
            teams.observe_binding("ADDED", copy.deepcopy(body))
            teams.observe_binding("MODIFIED", copy.deepcopy(body))
        assert added == []
        assert delayed == []
        await settle(controller)
        assert kube.requests[before:] == []

        # the echo of a PATCH (a member removed) queues nothing either
        change_team(controller, kube, members=members(("bob", "operator"), ("alice", "admin")))
        await settle(controller)
        added.clear()
        patched = bindings(kube)[("alpha", "joch-team-payments-operator")]
        teams.observe_binding("MODIFIED", copy.deepcopy(patched))
        assert added == []
        await controller.stop()

    run(scenario)


def test_a_binding_deleted_by_someone_else_is_put_back() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        teams = service(controller)
        added, _ = spy_queue(controller)
        key = (RBAC, "rolebindings", "beta", "joch-team-payments-admin")
        gone = kube.objects.pop(key)
        before = len(kube.landed)
        teams.observe_binding("DELETED", copy.deepcopy(gone))
        assert added == [team_key(TEAM)]
        await settle(controller)

        assert [(m, p) for m, p, _ in binding_writes(kube, before)] == [("POST", BINDINGS.format("beta"))]
        again = kube.objects[key]
        assert users(again) == ["alice"]
        assert again["metadata"]["uid"] != gone["metadata"]["uid"]
        assert len(bindings(kube)) == 4

        # its own DELETED echo is ignored once the new one is known: the stale uid queues nothing
        added.clear()
        teams.observe_binding("DELETED", copy.deepcopy(gone))
        assert added == []
        await controller.stop()

    run(scenario)


def test_a_binding_edited_by_someone_else_is_put_back() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        teams = service(controller)
        added, _ = spy_queue(controller)
        key = (RBAC, "rolebindings", "alpha", "joch-team-payments-operator")
        edited = kube.objects[key]
        edited["subjects"].append({"kind": "User", "apiGroup": RBAC, "name": "mallory"})
        edited["metadata"]["resourceVersion"] = kube._next()
        before = len(kube.landed)
        teams.observe_binding("MODIFIED", copy.deepcopy(edited))
        assert added == [team_key(TEAM)]
        await settle(controller)
        assert [(m, p) for m, p, _ in binding_writes(kube, before)] == [
            ("PATCH", BINDINGS.format("alpha") + "/joch-team-payments-operator")
        ]
        assert users(kube.objects[key]) == ["bob", "carol"]
        await controller.stop()

    run(scenario)


def hand_made(role: str, role_ref: str, *, labelled: bool) -> dict[str, Any]:
    """A RoleBinding of the Team's name for ``role`` that binds ``role_ref`` (the team label or not)."""
    body = plan.desired_binding(TEAM, "", "alpha", role, ["zed"])
    body["roleRef"]["name"] = role_ref
    if not labelled:
        del body["metadata"]["labels"], body["metadata"]["annotations"]
    return body


def test_a_binding_with_another_role_ref_is_replaced() -> None:
    async def scenario() -> None:
        kube = world(team_doc(namespaces=["alpha"]))
        kube.put(RBAC, "rolebindings", hand_made("admin", "joch-viewer", labelled=True))
        controller = await started(kube)
        writes = binding_writes(kube)
        assert [(m, p) for m, p, _ in writes] == [
            ("POST", BINDINGS.format("alpha")),  # the operator binding
            ("DELETE", BINDINGS.format("alpha") + "/joch-team-payments-admin"),
            ("POST", BINDINGS.format("alpha")),
        ]
        assert writes[2][2]["metadata"]["name"] == "joch-team-payments-admin"
        found = bindings(kube)[("alpha", "joch-team-payments-admin")]
        assert found["roleRef"]["name"] == "joch-admin"
        assert users(found) == ["alice"]
        assert team_status(kube)["phase"] == "Ready"
        await controller.stop()

    run(scenario)


def test_a_hand_made_binding_of_the_same_name_is_taken_over_with_the_right_role() -> None:
    """An unlabelled RoleBinding of the name exists (POST: 409): the service takes it over. A roleRef
    cannot be patched, so one binding another ClusterRole must be replaced, not just relabelled."""

    async def scenario() -> None:
        kube = world(team_doc(namespaces=["alpha"]))
        kube.put(RBAC, "rolebindings", hand_made("admin", "joch-viewer", labelled=False))
        controller = await started(kube)
        found = bindings(kube)[("alpha", "joch-team-payments-admin")]
        assert users(found) == ["alice"]
        assert found["metadata"]["labels"]["joch.dev/team"] == TEAM
        assert found["roleRef"]["name"] == "joch-admin", "taken over with the old roleRef, status says Ready"
        await controller.stop()

    run(scenario)


def test_bindings_of_a_team_deleted_while_the_operator_was_down_are_deleted_at_start() -> None:
    async def scenario() -> None:
        kube = world()
        ghost = plan.desired_binding("ghost", "uid-of-a-gone-team", "beta", "viewer", ["eve"])
        kube.put(RBAC, "rolebindings", ghost)
        controller = await started(kube)
        assert ("DELETE", BINDINGS.format("beta") + "/joch-team-ghost-viewer") in binding_requests(kube)
        assert ("beta", "joch-team-ghost-viewer") not in bindings(kube)
        assert len(bindings(kube)) == 4
        assert "ghost" not in service(controller).bindings
        await controller.stop()

    run(scenario)


# --- failures -----------------------------------------------------------------------------------


def test_a_refused_create_fails_the_team_and_is_retried_later() -> None:
    async def scenario() -> None:
        kube = world()
        kube.forbidden.add(f"POST {BINDINGS.format('beta')}")
        controller = controller_for(kube)
        said = spy_events(controller)
        _, delayed = spy_queue(controller)
        await controller.start()
        await settle(controller)

        assert sorted(bindings(kube)) == [
            ("alpha", "joch-team-payments-admin"),
            ("alpha", "joch-team-payments-operator"),
        ]
        status = team_status(kube)
        assert status["phase"] == "Failed"
        condition = ready(kube)
        assert (condition["status"], condition["reason"]) == ("False", "RoleBindingsFailed")
        assert "beta/joch-team-payments-admin" in condition["message"]
        assert "beta/joch-team-payments-operator" in condition["message"]
        assert "alpha/" not in condition["message"]

        warnings = [(type_, reason, message) for _, type_, reason, message in said]
        assert [(type_, reason) for type_, reason, _ in warnings] == [("Warning", "RoleBindingsFailed")]
        assert "beta/joch-team-payments-admin" in warnings[0][2]

        retries = [delay for key, delay in delayed if key == team_key(TEAM)]
        assert retries, delayed
        assert all(delay == RETRY_SECONDS and delay > 0 for delay in retries)

        # once allowed, the next reconcile creates what is missing and the Team is Ready
        kube.forbidden.clear()
        await reconcile_again(controller)
        assert len(bindings(kube)) == 4
        assert team_status(kube)["phase"] == "Ready"
        assert ready(kube)["reason"] == "RoleBindingsApplied"
        await controller.stop()

    run(scenario)


def test_a_missing_namespace_is_reported_until_it_exists() -> None:
    async def scenario() -> None:
        kube = world(team_doc(namespaces=["alpha", "gamma"]))
        controller = await started(kube)
        assert {ns for ns, _ in bindings(kube)} == {"alpha"}
        assert team_status(kube)["phase"] == "Failed"
        condition = ready(kube)
        assert (condition["status"], condition["reason"]) == ("False", "NamespaceNotFound")
        assert "gamma" in condition["message"]

        kube.put("", "namespaces", namespace_doc("gamma"))
        controller.observe_namespace("ADDED", namespace_doc("gamma"))
        await settle(controller)
        assert {ns for ns, _ in bindings(kube)} == {"alpha", "gamma"}
        assert team_status(kube)["phase"] == "Ready"
        await controller.stop()

    run(scenario)


# --- a Team deleted -----------------------------------------------------------------------------


def test_a_deleted_team_loses_its_bindings() -> None:
    async def scenario() -> None:
        kube = world(team_doc(), team_doc("billing", members=[("dan", "viewer")], namespaces=["alpha"]))
        controller = await started(kube)
        assert len(bindings(kube)) == 5
        body = kube.objects.pop(("ops.joch.dev", "teams", None, TEAM))
        before = len(kube.landed)
        controller.observe("Team", "DELETED", body)
        await settle(controller)

        assert sorted((m, p) for m, p, _ in binding_writes(kube, before)) == [
            ("DELETE", BINDINGS.format("alpha") + "/joch-team-payments-admin"),
            ("DELETE", BINDINGS.format("alpha") + "/joch-team-payments-operator"),
            ("DELETE", BINDINGS.format("beta") + "/joch-team-payments-admin"),
            ("DELETE", BINDINGS.format("beta") + "/joch-team-payments-operator"),
        ]
        assert sorted(bindings(kube)) == [("alpha", "joch-team-billing-viewer")]
        assert TEAM not in service(controller).bindings
        await controller.stop()

    run(scenario)


def test_a_namespace_scoped_operator_binds_only_where_it_manages() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube, namespaces=("alpha",))
        assert sorted(bindings(kube)) == [
            ("alpha", "joch-team-payments-admin"),
            ("alpha", "joch-team-payments-operator"),
        ]
        assert all("/namespaces/beta/" not in p for _, p in binding_requests(kube))
        assert status_writes(kube) == []  # it does not manage every namespace of the Team
        await controller.stop()

    run(scenario)


# --- the ClusterRoles at start-up ---------------------------------------------------------------


def cluster_role_requests(kube: FakeKube) -> list[tuple[str, str]]:
    return [(m, p) for m, p in kube.requests if p.startswith(CLUSTERROLES)]


def test_missing_cluster_roles_are_created() -> None:
    async def scenario() -> None:
        kube = world()
        controller = await started(kube)
        expected: list[tuple[str, str]] = []
        for name in roles.ROLE_NAMES:
            expected += [("GET", f"{CLUSTERROLES}/{name}"), ("POST", CLUSTERROLES)]
        assert cluster_role_requests(kube) == expected
        assert service(controller).roles_applied == dict.fromkeys(roles.ROLE_NAMES, "created")
        stored = {body["metadata"]["name"]: body for body in kube.of("clusterroles")}
        for role in roles.cluster_roles():
            assert stored[role["metadata"]["name"]]["rules"] == role["rules"]
        await controller.stop()

    run(scenario)


def test_cluster_roles_already_right_are_not_written() -> None:
    async def scenario() -> None:
        kube = world()
        for role in roles.cluster_roles():
            kube.put(RBAC, "clusterroles", role)
        controller = await started(kube)
        assert cluster_role_requests(kube) == [("GET", f"{CLUSTERROLES}/{name}") for name in roles.ROLE_NAMES]
        assert service(controller).roles_applied == dict.fromkeys(roles.ROLE_NAMES, "unchanged")
        await controller.stop()

    run(scenario)


def test_a_cluster_role_that_differs_is_patched() -> None:
    async def scenario() -> None:
        kube = world()
        for role in roles.cluster_roles():
            kube.put(RBAC, "clusterroles", role)
        viewer = kube.objects[(RBAC, "clusterroles", None, "joch-viewer")]
        viewer["rules"] = [{"apiGroups": ["joch.dev"], "resources": ["agents"], "verbs": ["get"]}]
        controller = await started(kube)
        writes = [(m, p) for m, p in cluster_role_requests(kube) if m != "GET"]
        assert writes == [("PATCH", f"{CLUSTERROLES}/joch-viewer")]
        assert service(controller).roles_applied["joch-viewer"] == "updated"
        assert kube.objects[(RBAC, "clusterroles", None, "joch-viewer")]["rules"] == roles.rules("viewer")
        await controller.stop()

    run(scenario)


def test_cluster_roles_refused_are_logged_and_the_teams_still_bound(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        kube = world()
        kube.forbidden.add(f"{CLUSTERROLES}(/.*)?")
        controller = await started(kube)
        assert service(controller).roles_applied == dict.fromkeys(roles.ROLE_NAMES, "refused")
        assert all(m == "GET" for m, _ in cluster_role_requests(kube))
        assert len(bindings(kube)) == 4  # the RoleBindings do not depend on it
        assert team_status(kube)["phase"] == "Ready"
        await controller.stop()

    with caplog.at_level(logging.INFO, logger="joch.controllers.teams"):
        run(scenario)
    logged = [r.getMessage() for r in caplog.records if r.name == "joch.controllers.teams"]
    assert any("not applied" in message and "joch-break-glass" in message for message in logged), logged
