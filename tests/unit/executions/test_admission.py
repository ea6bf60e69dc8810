"""Admission of Executions, of a worker's status writes and of ToolCalls (joch.domain.admission.executions),
through the public pipeline ``Admission(settings).validate(Request(...), World(store))``.

The World is built over the operator's in-memory store (joch.domain.reconcile.cache.Store) holding the
example fleet (examples/), the Agent support-triage with the status the compile service would write.

Cases: a new Execution needs its Agent (AgentNotFound), compiled (AgentNotCompiled), PolicyCompliant
(AgentNotCompliant), not Suspended, of its own namespace (ForbiddenReference, 403); a modelRouteOverride
must name a ModelRoute that exists; the input must fit MAX_INPUT_BYTES; execution gates are called and
their errors deny. After creation only spec.cancel may change, and only to true. A worker writes only
into the Execution its own Pod runs, and only the reported fields; other users pass. A ToolCall needs
its Execution, the same Agent, and a Tool the Agent is granted.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import pytest

from joch.api import v1alpha1
from joch.api.v1alpha1.execution import Execution
from joch.domain.admission import WATCHED_KIND_NAMES, Admission, Findings, Request, UserInfo, Verdict, World
from joch.domain.compilation import Catalog
from joch.domain.reconcile import executions as plan
from joch.domain.reconcile.cache import WATCHED_KINDS, Store, parse_entry
from joch.domain.reconcile.executions import MAX_INPUT_BYTES, input_json
from joch.domain.settings import OperatorSettings
from tests import factories, helpers

NS = "support"
AGENT = "support-triage"
SHA = "a" * 64
SETTINGS = OperatorSettings()
WORKER = f"system:serviceaccount:{NS}:joch-worker"
POD_NAME = "authentication.kubernetes.io/pod-name"

COMPILED: dict[str, Any] = {
    "phase": "Ready",
    "observedGeneration": 1,
    "compiledManifest": {"name": f"{AGENT}-g1", "sha256": SHA},
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Compiled", "message": "compiled"},
        {"type": "PolicyCompliant", "status": "True", "reason": "PolicyCompliant", "message": "compliant"},
    ],
}


def _live(doc: Mapping[str, Any], rv: str = "10") -> dict[str, Any]:
    out = copy.deepcopy(dict(doc))
    out["metadata"].update(uid=f"uid-{out['metadata']['name']}", resourceVersion=rv, generation=1)
    return out


def store_with(
    agent_status: Mapping[str, Any] | None = COMPILED, *extra: Mapping[str, Any], agent: bool = True
) -> Store:
    """The example fleet in a store; the example Agent with ``agent_status`` (None: no status)."""
    store = Store()
    for doc in helpers.joch_examples():
        model = WATCHED_KINDS.get(doc["kind"])
        if model is None:  # Secrets, Budgets: the operator does not watch them
            continue
        if doc["kind"] == "Agent" and not agent:
            continue
        body = _live(doc)
        if doc["kind"] == "Agent" and agent_status is not None:
            body["status"] = copy.deepcopy(dict(agent_status))
        store.upsert(parse_entry(model, body))
    for added in extra:
        store.upsert(parse_entry(WATCHED_KINDS[added["kind"]], _live(added)))
    return store


def world_of(store: Store) -> World:
    return World(store, known_kinds=WATCHED_KIND_NAMES)


def execution(name: str = "run-1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agentRef": {"name": AGENT},
        "input": {"content": [{"kind": "text", "text": "Triage ticket 42"}]},
        "timeoutSeconds": 600,
    }
    for key, value in spec.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": NS, "annotations": {"joch.dev/requested-by": "ana"}},
        "spec": body,
    }


def tool_call(*, run: str = "run-1", agent: str = AGENT, tool: str = "zendesk.search") -> dict[str, Any]:
    return {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "ToolCall",
        "metadata": {"name": "call-1", "namespace": NS},
        "spec": {"executionRef": {"name": run}, "agentRef": {"name": agent}, "toolRef": {"name": tool}},
    }


def request(
    doc: Mapping[str, Any],
    *,
    operation: str = "CREATE",
    old: Mapping[str, Any] | None = None,
    sub_resource: str = "",
    user: UserInfo | None = None,
) -> Request:
    return Request(
        operation=operation,
        kind=str(doc["kind"]),
        name=doc["metadata"]["name"],
        namespace=doc["metadata"]["namespace"],
        object=copy.deepcopy(dict(doc)),
        old_object=copy.deepcopy(dict(old)) if old is not None else None,
        sub_resource=sub_resource,
        user=user if user is not None else UserInfo("alice", ("system:authenticated",)),
    )


def validate(
    doc: Mapping[str, Any], store: Store | None = None, *, admission: Admission | None = None, **kwargs: Any
) -> Verdict:
    admission = admission if admission is not None else Admission(SETTINGS)
    return admission.validate(request(doc, **kwargs), world_of(store if store is not None else store_with()))


def errors_at(verdict: Verdict, path: str) -> list[str]:
    """The reasons of the errors at ``path``."""
    return [error.reason for error in verdict.errors if error.path == path]


# --- a new Execution ------------------------------------------------------------------------------------


def test_an_execution_of_a_compiled_compliant_agent_is_admitted() -> None:
    verdict = validate(execution())
    assert verdict.allowed, verdict.message()
    assert verdict.code == 200
    assert verdict.warnings == ()


def test_an_execution_of_a_missing_agent_is_rejected() -> None:
    verdict = validate(execution(agentRef={"name": "nobody"}))
    assert not verdict.allowed
    assert errors_at(verdict, "spec.agentRef") == ["AgentNotFound"]
    assert verdict.code == 422
    assert f"Agent {NS}/nobody not found" in verdict.message()
    assert not [w for w in verdict.warnings if w.path.startswith("spec.agentRef")], (
        "the generic missing-reference warning would only repeat the error"
    )

    without_agents = validate(execution(), store_with(agent=False))
    assert errors_at(without_agents, "spec.agentRef") == ["AgentNotFound"]


def test_an_execution_of_an_agent_that_is_not_compiled_is_rejected() -> None:
    failing = {
        "phase": "Failed",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PolicyDenied", "message": "no shell for you"}
        ],
    }
    verdict = validate(execution(), store_with(failing))
    assert errors_at(verdict, "spec.agentRef") == ["AgentNotCompiled"]
    assert verdict.code == 422
    assert "no shell for you" in verdict.message(), "the Agent's Ready message says why"

    never = validate(execution(), store_with(None))
    assert errors_at(never, "spec.agentRef") == ["AgentNotCompiled"], "an Agent without any status"


def test_an_execution_of_an_agent_that_is_not_policy_compliant_is_rejected() -> None:
    status = copy.deepcopy(COMPILED)
    status["conditions"][1] = {
        "type": "PolicyCompliant",
        "status": "False",
        "reason": "PolicyDenied",
        "message": "provider not allow-listed",
    }
    verdict = validate(execution(), store_with(status))
    assert errors_at(verdict, "spec.agentRef") == ["AgentNotCompliant"]
    assert "provider not allow-listed" in verdict.message()


def test_an_execution_of_a_suspended_agent_is_rejected() -> None:
    verdict = validate(execution(), store_with({**COMPILED, "phase": "Suspended"}))
    assert errors_at(verdict, "spec.agentRef") == ["AgentSuspended"]


def test_a_base_without_statuses_skips_the_compiled_checks() -> None:
    catalog = Catalog([factories.parse(doc) for doc in helpers.joch_examples()])
    verdict = Admission(SETTINGS).validate(request(execution()), World(catalog))
    assert verdict.allowed, verdict.message()


def test_an_agent_of_another_namespace_is_forbidden() -> None:
    verdict = validate(execution(agentRef={"name": AGENT, "namespace": "joch-system"}))
    assert not verdict.allowed
    assert errors_at(verdict, "spec.agentRef.namespace") == ["ForbiddenReference"]
    assert verdict.code == 403
    assert verdict.status_reason == "Forbidden"

    own = validate(execution(agentRef={"name": AGENT, "namespace": NS}))
    assert own.allowed, own.message()


def test_a_model_route_override_must_exist() -> None:
    missing = validate(execution(modelRouteOverride={"routeRef": {"name": "no-such-route"}}))
    assert not missing.allowed
    assert errors_at(missing, "spec.modelRouteOverride.routeRef") == ["MissingReference"]
    assert "no-such-route" in missing.message()

    existing = validate(execution(modelRouteOverride={"routeRef": {"name": "research-default"}}))
    assert existing.allowed, existing.message()


def _input_of_size(size: int) -> dict[str, Any]:
    """An input whose compact JSON is exactly ``size`` bytes (parts of at most 60000 characters)."""
    parts = [{"kind": "text", "text": "x" * 60000} for _ in range(size // 60000 + 1)]
    content = {"content": parts}
    probe = Execution.model_validate({**execution(), "spec": {"agentRef": {"name": AGENT}, "input": content}})
    parts[-1]["text"] = "x" * (60000 - (len(input_json(probe).encode()) - size))
    return content


def test_the_input_must_fit_in_a_pod_annotation() -> None:
    fits = execution(input=_input_of_size(MAX_INPUT_BYTES))
    assert len(input_json(Execution.model_validate(fits)).encode()) == MAX_INPUT_BYTES
    assert validate(fits).allowed

    too_large = execution(input=_input_of_size(MAX_INPUT_BYTES + 1))
    verdict = validate(too_large)
    assert not verdict.allowed
    assert errors_at(verdict, "spec.input") == ["TooLarge"]
    assert str(MAX_INPUT_BYTES + 1) in verdict.message()
    assert verdict.code == 422


def test_execution_gates_are_called_and_their_errors_deny() -> None:
    seen: list[tuple[str | None, str | None, World]] = []

    def budget_gate(candidate: Execution, world: World) -> Findings:
        seen.append((candidate.metadata.name, candidate.metadata.namespace, world))
        findings = Findings()
        if candidate.metadata.name == "over-budget":
            findings.error("spec.budgets", "the team's monthly budget is spent", "BudgetExceeded")
        return findings

    admission = Admission(SETTINGS, execution_gates=(budget_gate,))
    store = store_with()
    denied = validate(execution("over-budget"), store, admission=admission)
    assert not denied.allowed
    assert errors_at(denied, "spec.budgets") == ["BudgetExceeded"]
    assert "monthly budget is spent" in denied.message()
    assert [(name, ns) for name, ns, _ in seen] == [("over-budget", NS)]
    assert seen[0][2].get(v1alpha1.Agent, NS, AGENT) is not None, "the gate sees the World"

    assert validate(execution("fine"), store, admission=admission).allowed
    assert [name for name, _, _ in seen] == ["over-budget", "fine"]


# --- after creation ----------------------------------------------------------------------------------


def _stored(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = _live(doc)
    out["status"] = {"phase": "Running", "podName": "pod-a"}
    return out


def test_the_spec_cannot_change_after_creation() -> None:
    old = _stored(execution())
    for key, value in (
        ("agentRef", {"name": "another-agent"}),
        ("input", {"content": [{"kind": "text", "text": "something else"}]}),
        ("timeoutSeconds", 60),
    ):
        new = copy.deepcopy(old)
        new["spec"][key] = value
        verdict = validate(new, operation="UPDATE", old=old)
        assert not verdict.allowed, key
        assert errors_at(verdict, f"spec.{key}") == ["Immutable"]


def test_cancel_may_be_set_once_and_never_undone() -> None:
    old = _stored(execution())
    cancelled = copy.deepcopy(old)
    cancelled["spec"]["cancel"] = True
    verdict = validate(cancelled, operation="UPDATE", old=old)
    assert verdict.allowed, verdict.message()
    gone = validate(cancelled, store_with(agent=False), operation="UPDATE", old=old)
    assert gone.allowed, "a run can be cancelled even when its Agent is gone"

    for undone in (False, None):
        new = copy.deepcopy(cancelled)
        if undone is None:
            del new["spec"]["cancel"]
        else:
            new["spec"]["cancel"] = undone
        verdict = validate(new, operation="UPDATE", old=cancelled)
        assert not verdict.allowed, undone
        assert errors_at(verdict, "spec.cancel") == ["Immutable"]


def test_gates_judge_only_new_executions() -> None:
    calls: list[str | None] = []

    def gate(candidate: Execution, world: World) -> Findings:
        calls.append(candidate.metadata.name)
        findings = Findings()
        findings.error("spec.budgets", "over", "BudgetExceeded")
        return findings

    old = _stored(execution())
    cancelled = copy.deepcopy(old)
    cancelled["spec"]["cancel"] = True
    verdict = validate(
        cancelled, admission=Admission(SETTINGS, execution_gates=(gate,)), operation="UPDATE", old=old
    )
    assert verdict.allowed, verdict.message()
    assert calls == []


# --- a worker's status writes --------------------------------------------------------------------------


def worker(pod: str | None = "pod-a", username: str = WORKER) -> UserInfo:
    extra = {POD_NAME: (pod,)} if pod is not None else {}
    return UserInfo(username, ("system:serviceaccounts", f"system:serviceaccounts:{NS}"), extra)


def _status_write(changes: Mapping[str, Any], user: UserInfo) -> Verdict:
    old = _live(execution())
    old["status"] = {"phase": "Running", "podName": "pod-a", "costUsd": 0.1, "tokens": 100}
    new = copy.deepcopy(old)
    new["status"].update(changes)
    return validate(new, operation="UPDATE", old=old, sub_resource="status", user=user)


def test_a_worker_reports_into_its_own_execution() -> None:
    verdict = _status_write(
        {"costUsd": 0.42, "tokens": 2048, "modelCalls": 3, "toolCalls": 1}, worker("pod-a")
    )
    assert verdict.allowed, verdict.message()


def test_a_worker_of_another_pod_is_forbidden() -> None:
    verdict = _status_write({"costUsd": 0.42}, worker("pod-b"))
    assert not verdict.allowed
    assert verdict.code == 403
    assert errors_at(verdict, "status") == ["Forbidden"]
    assert "reports only into its own Execution" in verdict.message()


def test_a_worker_without_a_bound_token_is_forbidden() -> None:
    verdict = _status_write({"costUsd": 0.42}, worker(None))
    assert not verdict.allowed
    assert verdict.code == 403
    assert errors_at(verdict, "status") == ["Forbidden"]


def test_a_worker_may_not_change_the_phase() -> None:
    verdict = _status_write({"costUsd": 0.42, "phase": "Succeeded"}, worker("pod-a"))
    assert not verdict.allowed
    assert verdict.code == 403
    assert errors_at(verdict, "status.phase") == ["Forbidden"]
    assert "costUsd" in verdict.message()


def test_other_users_may_write_any_status() -> None:
    for user in (
        UserInfo("system:serviceaccount:joch-system:joch-operator", ("system:serviceaccounts",)),
        UserInfo("alice"),
        UserInfo(),
    ):
        verdict = _status_write({"phase": "Succeeded", "podName": "pod-z", "costUsd": 9.0}, user)
        assert verdict.allowed, (user, verdict.message())


# --- ToolCalls ---------------------------------------------------------------------------------------


def _with_run() -> Store:
    return store_with(COMPILED, execution())


def test_a_tool_call_of_a_granted_tool_is_admitted() -> None:
    for tool in ("zendesk.search", "slack.send"):
        verdict = validate(tool_call(tool=tool), _with_run())
        assert verdict.allowed, verdict.message()


def test_a_tool_call_needs_its_execution() -> None:
    verdict = validate(tool_call(run="no-such-run"), _with_run())
    assert not verdict.allowed
    assert errors_at(verdict, "spec.executionRef") == ["MissingReference"]
    assert "no-such-run" in verdict.message()


def test_a_tool_call_names_the_agent_of_its_execution() -> None:
    verdict = validate(tool_call(agent="another-agent"), _with_run())
    assert not verdict.allowed
    assert errors_at(verdict, "spec.agentRef") == ["Mismatch"]


def test_a_tool_call_of_a_tool_the_agent_is_not_granted_is_rejected() -> None:
    verdict = validate(tool_call(tool="shell.exec"), _with_run())
    assert not verdict.allowed
    assert errors_at(verdict, "spec.toolRef") == ["NotGranted"]
    assert "zendesk.search" in verdict.message(), "the message lists what is granted"


def test_a_tool_call_is_not_judged_against_a_base_without_executions() -> None:
    catalog = Catalog([factories.parse(doc) for doc in helpers.joch_examples()])
    verdict = Admission(SETTINGS).validate(request(tool_call(run="unknown-run")), World(catalog))
    assert not errors_at(verdict, "spec.executionRef"), "a base that holds no Executions cannot tell"


# --- what is admitted can run ------------------------------------------------------------------------

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
"""A Kubernetes label value (at most 63 characters, checked apart)."""


@pytest.mark.parametrize(
    ("run", "agent"),
    [
        ("r" * 63, AGENT),
        ("r" * 64, AGENT),
        ("run-" + "x" * 96, AGENT),
        ("run-1", "a" * 64),
    ],
    ids=["name-63", "name-64", "name-100", "agent-64"],
)
def test_an_admitted_execution_makes_a_job_the_api_server_accepts(run: str, agent: str) -> None:
    """The Job carries the Execution's and the Agent's names as label values (at most 63 characters):
    an Execution admitted with a longer name (or of an Agent with one) must still get a valid Job."""
    agent_doc = copy.deepcopy(next(d for d in helpers.joch_examples() if d["kind"] == "Agent"))
    agent_doc["metadata"]["name"] = agent
    store = store_with()
    store.upsert(parse_entry(v1alpha1.Agent, {**_live(agent_doc), "status": copy.deepcopy(COMPILED)}))
    doc = execution(run, agentRef={"name": agent})
    verdict = validate(doc, store)
    if not verdict.allowed:
        return  # rejecting it is a correct answer too
    launch = plan.Launch(f"{agent[:40]}-g1", SHA, "img:1", "http://gw", "http://router", "http://trace")
    job = plan.desired_job(Execution.model_validate(doc), "uid-1", launch, plan.ExecutionSettings())
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        for key, value in labels.items():
            assert len(value) <= 63, f"label {key} is {len(value)} characters long"
            assert LABEL_VALUE.match(value), f"label {key}={value!r}"
    assert len(job["metadata"]["name"]) <= 63, "a Job's name becomes its Pods' job-name label"
