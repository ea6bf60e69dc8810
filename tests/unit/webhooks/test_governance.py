"""The validating webhook writes the governance audit log (joch.webhooks.governance): a denial, an
Approval decision and override, an admitted promotion, each with the actor of the AdmissionReview's
userInfo; dry runs and ordinary writes write nothing."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from joch import audit
from joch.api import v1alpha1
from joch.domain.admission import Admission
from joch.domain.reconcile.cache import Store, parse_entry
from joch.webhooks import AdmissionEndpoint
from tests.unit.admission import factories as f
from tests.unit.admission.test_approvals_admission import NOW, PENDING, apply_patch, approval

USER = {"username": "alice@example.com", "groups": ["sre", "system:authenticated"]}
GROUPS = [{"name": "sre"}, {"name": "system:authenticated"}]


def _log() -> tuple[audit.GovernanceLog, io.StringIO]:
    stream = io.StringIO()
    return audit.GovernanceLog(stream, hash_chain=True), stream


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _review(doc: Any, user: dict[str, Any] = USER, sub_resource: str = "", **kwargs: Any) -> bytes:
    body = f.review(doc, **kwargs)
    body["request"]["userInfo"] = user
    if sub_resource:
        body["request"]["subResource"] = sub_resource
    return json.dumps(body).encode()


def _call(endpoint: AdmissionEndpoint, action: str, body: bytes) -> dict[str, Any]:
    status, payload = endpoint.handle(action, body)  # type: ignore[arg-type]
    assert status == 200, payload
    response: dict[str, Any] = payload["response"]
    return response


def test_a_denial_is_recorded_with_the_requesting_user() -> None:
    log, stream = _log()
    world = f.world(f.prod_scenario())
    endpoint = AdmissionEndpoint(Admission(f.SETTINGS), world.base, governance_log=log)
    denied = f.agent(labels={"env": "prod"})
    assert _call(endpoint, "validate", _review(denied, dry_run=True))["allowed"] is False
    assert _records(stream) == []  # a dry run changes nothing
    assert _call(endpoint, "validate", _review(denied))["allowed"] is False
    (record,) = _records(stream)
    assert record["class_name"] == "Admission Denial"
    assert record["activity_name"] == "Deny"
    assert record["actor"] == {"user": {"name": "alice@example.com", "groups": GROUPS}}
    assert record["joch"]["resource"]["kind"] == "Agent"
    assert record["joch"]["resource"]["name"] == "support-triage"
    assert record["joch"]["details"]["reasons"] == ["PolicyDenied"]
    assert record["message"].startswith("Agent/support-triage: spec.modelRoute.routeRef: ")
    assert record["severity"] == "Medium"
    assert record["metadata"]["sequence"] == 1


def test_an_allowed_write_of_an_ordinary_object_is_not_recorded() -> None:
    log, stream = _log()
    endpoint = AdmissionEndpoint(Admission(f.SETTINGS), f.world(f.prod_scenario()).base, governance_log=log)
    assert _call(endpoint, "validate", _review(f.agent(labels={"env": "dev"})))["allowed"] is True
    assert _records(stream) == []


def _decide(endpoint: AdmissionEndpoint, status: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """One status write as the API server runs it: the mutating webhook's stamps, then validation."""
    old = approval(PENDING, approvers=("user:alice@example.com",))
    new = {**old, "status": {**PENDING, **status}}
    mutated = _call(endpoint, "mutate", _review(new, user, "status", operation="UPDATE", old=old))
    stamped = apply_patch(new, json.loads(base64.b64decode(mutated.get("patch") or "W10=")))
    return _call(endpoint, "validate", _review(stamped, user, "status", operation="UPDATE", old=old))


def test_an_approval_decision_is_recorded_with_the_decider() -> None:
    log, stream = _log()
    endpoint = AdmissionEndpoint(
        Admission(f.SETTINGS), f.world([]).base, governance_log=log, clock=lambda: NOW
    )
    forged = {"decision": "approve", "decidedBy": "mallory"}  # the stamp replaces what the client wrote
    assert _decide(endpoint, forged, USER)["allowed"] is True
    (record,) = _records(stream)
    assert record["class_name"] == "Approval Decision"
    assert record["activity_name"] == "Approve"
    assert record["actor"]["user"]["name"] == "alice@example.com"
    assert record["joch"]["resource"] == {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "namespace": "support",
        "name": "promote-triage",
        "uid": "uid-1",
    }
    assert record["joch"]["details"]["phase"] == "Approved"


def test_a_refused_decision_is_a_denial_of_the_user() -> None:
    log, stream = _log()
    endpoint = AdmissionEndpoint(
        Admission(f.SETTINGS), f.world([]).base, governance_log=log, clock=lambda: NOW
    )
    mallory = {"username": "mallory", "groups": ["system:authenticated"]}
    assert _decide(endpoint, {"decision": "approve"}, mallory)["allowed"] is False
    (record,) = _records(stream)
    assert record["class_name"] == "Admission Denial"
    assert record["actor"]["user"]["name"] == "mallory"


def test_an_admitted_promotion_is_recorded() -> None:
    store = Store()
    for doc in [*f.fleet(), f.agent(), f.eval_()]:
        live = {
            **doc,
            "metadata": {**doc["metadata"], "uid": doc["metadata"]["name"], "resourceVersion": "1"},
        }
        model = v1alpha1.kind_named(doc["kind"])
        assert model is not None
        store.upsert(parse_entry(model, live))
    log, stream = _log()
    endpoint = AdmissionEndpoint(Admission(f.SETTINGS), store, governance_log=log)
    gated = f.deployment(promotion={"requiresEval": "triage-quality"})
    assert _call(endpoint, "validate", _review(gated))["allowed"] is True
    (record,) = _records(stream)
    assert record["class_name"] == "Promotion"
    assert record["activity_name"] == "Allow"
    assert record["actor"]["user"]["name"] == "alice@example.com"
    assert record["joch"]["details"]["promotion"] == {"requiresEval": "triage-quality"}
    again = _call(endpoint, "validate", _review(gated, operation="UPDATE", old=gated))
    assert again["allowed"] is True
    assert len(_records(stream)) == 1  # an UPDATE that leaves the gates alone is no promotion
