"""AdmissionEndpoint: AdmissionReview bytes in, (status, JSON) out; never raises.

| input | expected |
|---|---|
| a valid Agent review | 200, allowed, uid echoed |
| a denied Agent | 200, allowed false, Status code 403 with the field path message |
| warnings | response.warnings |
| a Deployment whose Eval (in the operator's store) failed; then passed | 403 naming the gate; allowed |
| mutate Tool | JSONPatch adding spec.toolName |
| mutate a kind without defaults | allowed, no patch |
| not JSON, invalid UTF-8, a list, a number, deep nesting | 400 |
| not an AdmissionReview (kind, apiVersion, uid, request.kind) | 400 |
| unknown joch kind, wrong group | 200 denial code 400 |
| the operator not ready | 200 denial code 503 |
| a bug in the checks | 200 denial code 500 (fail closed), counted |
| 10,000-element lists, 100-level nesting, 3 MiB strings | a denial or an answer, no exception |
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from joch.api import v1alpha1
from joch.domain.admission import Admission
from joch.domain.reconcile.cache import Store, parse_entry
from joch.webhooks import AdmissionEndpoint
from tests.unit.admission import factories as f


def _endpoint(docs: list[dict[str, Any]] | None = None, **kwargs: Any) -> AdmissionEndpoint:
    world = f.world(docs if docs is not None else f.prod_scenario())
    return AdmissionEndpoint(Admission(f.SETTINGS), world.base, **kwargs)


def _call(endpoint: AdmissionEndpoint, doc: Any, action: str = "validate", **kwargs: Any) -> dict[str, Any]:
    status, body = endpoint.handle(action, f.review_bytes(doc, **kwargs))  # type: ignore[arg-type]
    assert status == 200, body
    return body["response"]


def test_allowed_echoes_the_uid() -> None:
    response = _call(_endpoint(), f.agent(labels={"env": "dev"}), uid="abc-123")
    assert response == {"uid": "abc-123", "allowed": True}


def test_denied_with_status() -> None:
    response = _call(_endpoint(), f.agent(labels={"env": "prod"}))
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403
    assert status["reason"] == "Forbidden"
    assert status["message"].startswith("Agent/support-triage: spec.modelRoute.routeRef: ")
    assert "Policy support/allowlisted-providers-only (v1) rule 0" in status["message"]


def test_warnings_are_returned() -> None:
    response = _call(_endpoint([]), f.agent())
    assert response["allowed"] is True
    assert any("FrameworkAdapter py-sdk not found" in w for w in response["warnings"])


def test_promotion_gates_read_the_operators_store() -> None:
    store = Store()
    for doc in [*f.fleet(), f.agent(), f.eval_(phase="Failed")]:
        live = {
            **doc,
            "metadata": {**doc["metadata"], "uid": doc["metadata"]["name"], "resourceVersion": "1"},
        }
        model = v1alpha1.kind_named(doc["kind"])
        assert model is not None
        store.upsert(parse_entry(model, live))
    endpoint = AdmissionEndpoint(Admission(f.SETTINGS), store)
    gated = f.deployment(promotion={"requiresEval": "triage-quality"})
    status = _call(endpoint, gated)["status"]
    assert status["code"] == 403
    assert status["message"] == (
        "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality: its newest run for "
        "Agent support-triage generation 1 (Execution triage-quality-run) is Failed"
    )
    passed = f.eval_()
    passed["metadata"].update(uid="triage-quality", resourceVersion="2")
    store.upsert(parse_entry(v1alpha1.Eval, passed))
    assert _call(endpoint, gated)["allowed"] is True


def test_mutate_tool_name() -> None:
    response = _call(_endpoint(), f.tool(), "mutate")
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch == [{"op": "add", "path": "/spec/toolName", "value": "zendesk.search"}]


def test_mutate_without_defaults() -> None:
    response = _call(_endpoint(), f.model("m", "openai"), "mutate", uid="u-1")
    assert response == {"uid": "u-1", "allowed": True}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"{not json", "not JSON", id="not JSON"),
        pytest.param(b'{"a": "\xff\xfe"}', "not JSON", id="invalid UTF-8"),
        pytest.param(b"[1, 2]", "not an AdmissionReview", id="a list"),
        pytest.param(b"42", "not an AdmissionReview", id="a number"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "not JSON", id="absurd nesting"),
        pytest.param(b'{"kind": "AdmissionReview"}', "apiVersion must be", id="no apiVersion"),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {}}',
            "apiVersion must be admission.k8s.io/v1",
            id="v1beta1",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}',
            "request.uid",
            id="empty uid",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "u"}}',
            "request.kind",
            id="no request.kind",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "u", '
            b'"kind": {"group": "joch.dev", "version": "v1alpha1", "kind": "Agent"}}}',
            "request.operation",
            id="no operation",
        ),
    ],
)
def test_bad_bodies_are_400(body: bytes, expected: str) -> None:
    endpoint = _endpoint()
    status, payload = endpoint.handle("validate", body)
    assert status == 400
    assert expected in payload["error"]
    assert endpoint.counts["bad_request"] == 1


@pytest.mark.parametrize("action", ["validate", "mutate"])
def test_unknown_kinds_are_denied(action: str) -> None:
    doc = {"apiVersion": "joch.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}}
    response = _call(_endpoint(), doc, action)
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "joch does not serve joch.dev/v1alpha1 Gadget" in response["status"]["message"]


def test_wrong_group_is_denied() -> None:
    review = f.review(f.agent())
    review["request"]["kind"]["group"] = "apps"
    status, body = _endpoint().handle("validate", json.dumps(review).encode())
    assert status == 200
    assert body["response"]["allowed"] is False


def test_not_ready() -> None:
    response = _call(_endpoint(is_ready=lambda: False), f.agent())
    assert response["allowed"] is False
    assert response["status"]["code"] == 503
    assert "joch admission is starting" in response["status"]["message"]


def test_internal_errors_fail_closed(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = _endpoint()

    def explode(*args: Any) -> Any:
        raise RuntimeError("boom")

    endpoint.admission.validate = explode  # type: ignore[method-assign]
    response = _call(endpoint, f.agent())
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "joch admission failed internally (RuntimeError)" in response["status"]["message"]
    assert endpoint.counts["internal_error"] == 1
    assert "boom" in caplog.text


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("doc", "action"),
    [
        pytest.param(f.agent(tools=[{"name": f"t{i}"} for i in range(10_000)]), "validate", id="10k tools"),
        pytest.param(
            f.agent(tools=[{"name": f"t{i}"} for i in range(10_000)]), "mutate", id="10k tools mutate"
        ),
        pytest.param(f.tool(inputSchema=_nested(100)), "validate", id="100-level schema"),
        pytest.param(
            f.policy("deep", [{"when": {"payload.x": _nested(100)}, "action": "deny"}]),
            "validate",
            id="100-level rule",
        ),
        pytest.param(f.agent(description="x" * (3 * 1024 * 1024)), "validate", id="3 MiB string"),
        pytest.param(f.agent(labels={f"k{i}": "v" for i in range(10_000)}), "validate", id="10k labels"),
        pytest.param(
            {"kind": "Agent", "apiVersion": "joch.dev/v1alpha1", "metadata": _nested(100)},
            "validate",
            id="deep metadata",
        ),
        pytest.param(
            {
                "kind": "Trace",
                "apiVersion": "ops.joch.dev/v1alpha1",
                "metadata": {"name": "t"},
                "spec": _nested(100),
            },
            "mutate",
            id="deep trace",
        ),
    ],
)
def test_hostile_objects_get_an_answer(doc: dict[str, Any], action: str) -> None:
    endpoint = _endpoint()
    response = _call(endpoint, doc, action)
    assert "internal_error" not in endpoint.counts
    if not response["allowed"]:
        assert response["status"]["code"] in (400, 403, 422)
        assert len(response["status"]["message"]) < 20_000
